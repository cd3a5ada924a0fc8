"""Reading a few runs without opening every file: prune files by their run_id statistics.

A question about one or two runs (``diff``, a run's metric history) would otherwise make
DuckDB open the footer of every file of a kind (a few hundred on a busy store) to skip
their row groups one by one. The writer keeps min/max statistics on ``run_id`` in every
file, and files are written per writer flush, so a run lives in a handful of them.

:func:`pruned_cursor` lists the visible files of each kind once (the same globs as the
``events_<kind>`` views, minus what the lifecycle commit log hides: a hidden file is
never read), keeps those whose run_id range can hold one of the runs, and returns a
cursor of the connection in which ``events_<kind>`` are temporary views over just those
files. Every view built on them (``runs``, ``params``, ``metrics``...) then reads only
them, with the same columns and values. File statistics are cached by path, size and
modification time, so a replaced file is read afresh.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow.parquet as pq
from ledger.analytics.engine import (
    HIVE_TYPES,
    cursor,
    hidden_files,
    quote_literal,
    view_globs,
)

from ledger.objectstore import is_object_uri

_SCHEMA_PARTITION = "project=__schema__"
_CACHE_LIMIT = 200_000
_cache: dict[tuple[str, str], tuple[int, int, str | None, str | None]] = {}
_lock = threading.Lock()


def visible_files(con: duckdb.DuckDBPyConnection, kind: str) -> list[str] | None:
    """Every file the ``events_<kind>`` view reads now (schema files included); None
    when they cannot be listed here (object stores)."""
    found = visible_files_of(con, [kind])
    return None if found is None else found[kind]


def visible_files_of(
    con: duckdb.DuckDBPyConnection, kinds: Sequence[str]
) -> dict[str, list[str]] | None:
    """:func:`visible_files` of several kinds, listed at once (one glob per pattern; the
    commit log read only when it changed); None when any cannot be listed here."""
    if not kinds:
        return {}
    globs = {kind: view_globs(con, kind) for kind in kinds}
    if any(is_object_uri(p) for patterns in globs.values() for p in patterns):
        return None
    # Files the lifecycle commit log hides (replaced by a compaction, archived, purged,
    # or written by one not committed yet) are left out as the events_<kind> views do.
    hidden = hidden_files(con)
    found: dict[str, list[str]] = {}
    for kind, patterns in globs.items():
        # Listed here rather than with DuckDB's glob(): a question lists several kinds,
        # and one query per kind costs more than the listing. DuckDB's glob, which the
        # views use, matches dot-files too; both give paths as the pattern spells them.
        paths = sorted(
            {path for pattern in patterns for path in glob.glob(pattern, include_hidden=True)}
        )
        found[kind] = [path for path in paths if (kind, path) not in hidden]
    return found


def read_sql(paths: Sequence[str], *, filename: bool = False, by_name: bool = True) -> str:
    """The ``read_parquet`` of ``paths`` with the ``events_<kind>`` views' options (hive
    columns typed, union by name): the rows of those files as the views give them;
    with ``filename``, plus each row's file as a ``filename`` column. ``by_name=False``
    only where the files share one schema (:func:`same_schema`): the same rows."""
    listed = ", ".join(quote_literal(path) for path in paths)
    extra = ", filename = true" if filename else ""
    return (
        f"read_parquet([{listed}], hive_partitioning = true, "
        f"union_by_name = {'true' if by_name else 'false'}, "
        f"hive_types = {HIVE_TYPES}{extra})"
    )


@dataclass
class _Question:
    """What one question (see :func:`stat_once`) has read of each file already."""

    stamps: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    ranges: dict[tuple[str, str], tuple[str | None, str | None] | None] = field(
        default_factory=dict
    )


_question: contextvars.ContextVar[_Question | None] = contextvars.ContextVar(
    "ledger_pruning_question", default=None
)


@contextlib.contextmanager
def stat_once() -> Iterator[None]:
    """Within the block, each file's size and modification time are read once: one
    question that prunes the same files several times (a diff resolves its references,
    then reads four kinds) pays one ``stat`` per file, not one per pruning."""
    token = _question.set(_Question())
    try:
        yield
    finally:
        _question.reset(token)


def _stamp(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path``; None when it is gone."""
    question = _question.get()
    if question is not None and path in question.stamps:
        return question.stamps[path]
    try:
        info = os.stat(path)
        stamp: tuple[int, int] | None = (info.st_size, info.st_mtime_ns)
    except OSError:
        stamp = None
    if question is not None:
        question.stamps[path] = stamp
    return stamp


def _run_id_range(path: str, column_name: str = "run_id") -> tuple[str | None, str | None] | None:
    """(min, max) of a string column (run_id) in a file; (None, None) when it has no
    non-null values; None when unknown (no statistics, no such column): read it."""
    question = _question.get()
    if question is None:
        return _range_of(path, column_name)
    if (path, column_name) not in question.ranges:
        question.ranges[(path, column_name)] = _range_of(path, column_name)
    return question.ranges[(path, column_name)]


def _range_of(path: str, column_name: str) -> tuple[str | None, str | None] | None:
    key = _stamp(path)
    if key is None:
        return None  # vanished: let DuckDB report it as the views would
    with _lock:
        cached = _cache.get((path, column_name))
    if cached is not None and cached[:2] == key:
        return cached[2], cached[3]
    try:
        meta = pq.read_metadata(path)
    except Exception:
        return None
    _remember_schema(path, key, meta)
    low: str | None = None
    high: str | None = None
    names = meta.schema.names
    if column_name not in names:
        return None
    column = names.index(column_name)
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_rows == 0:
            continue
        stats = group.column(column).statistics
        if stats is None or not stats.has_min_max:
            return None
        lo, hi = stats.min, stats.max
        lo = lo.decode() if isinstance(lo, bytes) else lo
        hi = hi.decode() if isinstance(hi, bytes) else hi
        low = lo if low is None or lo < low else low
        high = hi if high is None or hi > high else high
    if meta.num_rows and low is None and column_name == "run_id":
        return None  # rows but only NULL run_ids: no bounds to trust
    with _lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[(path, column_name)] = (*key, low, high)
    return low, high


# path -> (size, mtime_ns, the file's Parquet schema: each leaf column's path and types)
_schemas: dict[str, tuple[int, int, tuple[Any, ...]]] = {}


def _remember_schema(path: str, key: tuple[int, int], meta: Any) -> tuple[Any, ...]:
    schema = tuple(
        (
            column.path,
            column.physical_type,
            str(column.logical_type),
            column.max_definition_level,
            column.max_repetition_level,
        )
        for column in meta.schema
    )
    with _lock:
        if len(_schemas) >= _CACHE_LIMIT:
            _schemas.clear()
        _schemas[path] = (*key, schema)
    return schema


def _schema_of(path: str) -> tuple[Any, ...] | None:
    key = _stamp(path)
    if key is None:
        return None
    with _lock:
        cached = _schemas.get(path)
    if cached is not None and cached[:2] == key:
        return cached[2]
    try:
        return _remember_schema(path, key, pq.read_metadata(path))
    except Exception:
        return None


def same_schema(paths: Sequence[str]) -> bool:
    """True when every file of ``paths`` has the very same Parquet schema (read from
    each footer once and kept by path, size and modification time): reading them by
    name (``union_by_name``) then gives what reading them by position gives, and
    DuckDB binds the by-position read at half the cost (a diff binds a dozen)."""
    first = None
    for path in paths:
        schema = _schema_of(path)
        if schema is None:
            return False
        if first is None:
            first = schema
        elif schema != first:
            return False
    return first is not None


def files_for_runs(files: Iterable[str], run_ids: Sequence[str]) -> list[str]:
    """The ``files`` that may hold a row of one of ``run_ids`` (schema files always)."""
    kept = []
    for path in files:
        if _SCHEMA_PARTITION in path.replace("\\", "/"):
            kept.append(path)
            continue
        bounds = _run_id_range(path)
        if bounds is None:
            kept.append(path)
            continue
        low, high = bounds
        if low is not None and high is not None and any(low <= r <= high for r in run_ids):
            kept.append(path)
    return kept


@dataclass
class KeptCursor:
    """A cursor of a connection kept for the next question (see :func:`kept_cursor`):
    the session it copied, and the kinds it has temporary ``events_<kind>`` views of."""

    session: tuple[tuple[str, str, str], ...]
    cursor: duckdb.DuckDBPyConnection
    views: set[str] = field(default_factory=set)
    tables: dict[str, Any] = field(default_factory=dict)  # registered Arrow tables by name

    def drop_views(self, keep: Iterable[str] = ()) -> None:
        """Drop the temporary views an earlier question made (but those of ``keep``,
        which the caller replaces): left, they would hide the store's own views."""
        for kind in sorted(self.views - set(keep)):
            self.cursor.execute(f"DROP VIEW IF EXISTS temp.main.events_{kind}")
            self.views.discard(kind)


_pool: dict[int, list[KeptCursor]] = {}


def session_of(con: duckdb.DuckDBPyConnection) -> tuple[tuple[str, str, str], ...]:
    """``con``'s time zone and variables (values as text): what :func:`cursor` copies,
    so also what a result kept for a cursor depends on (``cache.register``)."""
    # Two plain queries: one with UNION ALL and ORDER BY costs twice as much.
    ((zone,),) = con.execute("SELECT current_setting('TimeZone')").fetchall()
    rows = con.execute("SELECT name, value::VARCHAR, type FROM duckdb_variables()").fetchall()
    return (("", str(zone), "TimeZone"), *sorted(rows))


@contextlib.contextmanager
def kept_cursor(con: duckdb.DuckDBPyConnection) -> Iterator[KeptCursor]:
    """A cursor of ``con`` for one question, taken from (and given back to) a few kept
    per connection: making one copies every session variable of ``con``, one statement
    each. A kept cursor is used only while ``con``'s variables and time zone are still
    those it copied, and by one question at a time; the caller drops or replaces the
    temporary views an earlier question left (:meth:`KeptCursor.drop_views`). Arrow
    tables registered on it stay until replaced by name or the cursor is closed. A
    question that fails closes its cursor."""
    session = session_of(con)
    key = id(con)
    taken = None
    with _lock:
        idle = _pool.get(key, [])
        while idle and taken is None:
            entry = idle.pop()
            if entry.session == session:
                taken = entry
            else:
                entry.cursor.close()
    if taken is None:
        taken = KeptCursor(session, cursor(con))
    healthy = False
    try:
        yield taken
        healthy = True
    finally:
        if healthy:
            with _lock:
                if key not in _pool:
                    _pool[key] = []
                    weakref.finalize(con, _pool.pop, key, None)
                if len(_pool[key]) < 4:
                    _pool[key].append(taken)
                    taken = None
        if taken is not None:
            taken.cursor.close()


@contextlib.contextmanager
def pruned_cursor(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    kinds: Sequence[str],
    listed: dict[str, list[str]] | None = None,
    exact: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A cursor of ``con`` whose ``events_<kind>`` views read only the files that may
    hold ``run_ids`` (see module doc), for the block; None where pruning does not apply
    (a connection ``as_of`` a moment, object stores, no files): use ``con``. It is a
    :func:`kept_cursor` (making a cursor was a tenth of a diff) whose views are made
    afresh for each question.

    Only rows of ``run_ids`` are complete through it: filter every query by them.
    ``listed``: the visible files by kind when the caller listed them already
    (:func:`visible_files_of`), so one question lists the store once. ``exact``: for
    some kinds, the very files (among ``listed``) that hold the runs' rows, found by a
    read of them (``resolve.resolve_and_locate``); the kind's schema files are added.
    """
    views = _pruned_views(con, run_ids, kinds, listed, exact)
    if views is None:
        yield None
        return
    with kept_cursor(con) as kept:
        kept.drop_views(keep=views)
        for kind, files in views.items():
            source = read_sql(files, by_name=not same_schema(files))
            kept.cursor.execute(
                f"CREATE OR REPLACE TEMP VIEW events_{kind} AS SELECT * FROM {source}"
            )
            kept.views.add(kind)
        yield kept.cursor


def _pruned_views(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    kinds: Sequence[str],
    listed: dict[str, list[str]] | None,
    exact: Mapping[str, Sequence[str]] | None,
) -> dict[str, list[str]] | None:
    """The files each ``events_<kind>`` view of a pruned cursor reads (see
    :func:`pruned_cursor`); None where pruning does not apply."""
    if not run_ids:
        return None
    listed = _listing(con, kinds, (), listed=listed)
    if listed is None:
        return None
    views: dict[str, list[str]] = {}
    for kind in kinds:
        if exact is not None and kind in exact:
            schema = [p for p in listed[kind] if _SCHEMA_PARTITION in p.replace("\\", "/")]
            kept = schema + [p for p in exact[kind] if p not in schema]
        else:
            kept = files_for_runs(listed[kind], run_ids)
        if not kept:
            return None  # no schema file to give the columns: the plain view will do
        views[kind] = kept
    return views


@dataclass
class Snapshot:
    """A cursor (own session: variables and settings carried over) over the files
    visible at one instant: ``files`` by kind; :meth:`ensure` makes its
    ``events_<kind>`` views read them. ``session``: the cursor's variables and time
    zone (:func:`session_of`)."""

    kept: KeptCursor
    files: dict[str, list[str]]
    views: dict[str, list[str]]

    @property
    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.kept.cursor

    @property
    def session(self) -> tuple[tuple[str, str, str], ...]:
        return self.kept.session

    def ensure(self, *kinds: str) -> None:
        """Point ``events_<kind>`` of the cursor at the listed files (creating a view
        binds it: every file's schema is read, so only kinds a question reads)."""
        for kind in kinds:
            if kind in self.kept.views:
                continue
            self.cursor.execute(
                f"CREATE TEMP VIEW events_{kind} AS SELECT * FROM {read_sql(self.views[kind])}"
            )
            self.kept.views.add(kind)

    def holds_events(self, kind: str) -> bool:
        """Whether any listed file of ``kind`` can hold rows (not only schema files)."""
        return any(_SCHEMA_PARTITION not in path for path in self.files[kind])


@contextlib.contextmanager
def snapshot_cursor(
    con: duckdb.DuckDBPyConnection,
    kinds: Sequence[str],
    also: Sequence[str] = (),
    project: str | None = None,
) -> Iterator[Snapshot | None]:
    """The files of ``kinds`` (and of ``also``) visible now, listed once, and a cursor
    (a :func:`kept_cursor`) whose ``events_<kind>`` views read just them once
    :meth:`Snapshot.ensure` is called for the kind: the store's own views re-glob and
    filter every row's file name against the commit log at every scan, which costs as
    much as the scan on a big store. With ``project``, only that project's partitions
    are listed (``project=<name>`` directories: the views' ``project`` column comes
    from that path, so all the project's rows are there). Same rows as the views.
    Files written after the call are not seen through it: take one per question. None
    where it does not apply (``as_of`` connections, object stores).

    Run the question inside :func:`ledger.analytics.engine.consistent`, so a listing
    that straddled a lifecycle commit, or a file deleted after it was listed, makes it
    list and run again.
    """
    with kept_cursor(con) as kept:
        # The session just read holds the variables: no query to ask for as_of.
        as_of = any(name == "as_of" and value is not None for name, value, _ in kept.session)
        listed = None if as_of else _listing(con, kinds, also, project, as_of_checked=True)
        if listed is None:
            yield None
            return
        kept.drop_views()
        yield Snapshot(kept, listed, {kind: listed[kind] for kind in kinds})


def listing(
    con: duckdb.DuckDBPyConnection, kinds: Sequence[str], also: Sequence[str] = ()
) -> dict[str, list[str]] | None:
    """The visible files of ``kinds`` and ``also``, listed once for one question (pass
    it on to :func:`pruned_cursor`, ``summaries_sql``, ``resolve_and_locate``); None where
    listing does not apply (``as_of`` connections, object stores, a kind of ``kinds``
    without a single file): read the views."""
    return _listing(con, kinds, also)


def _listing(
    con: duckdb.DuckDBPyConnection,
    kinds: Sequence[str],
    also: Sequence[str],
    project: str | None = None,
    listed: dict[str, list[str]] | None = None,
    *,
    as_of_checked: bool = False,
) -> dict[str, list[str]] | None:
    """Visible files of ``kinds`` and ``also`` (of one project; ``listed``: as listed
    already); None where files cannot be listed here or a kind of ``kinds`` has none
    (not even a schema file). ``as_of_checked``: the caller knows ``con`` is not a
    connection as of a moment."""
    if (
        not as_of_checked
        and con.execute("SELECT getvariable('as_of') IS NOT NULL").fetchall()[0][0]
    ):
        return None
    if listed is None:
        listed = visible_files_of(con, list(dict.fromkeys([*kinds, *also])))
    if listed is None:
        return None
    if project is not None:
        partition = f"/project={project}/"
        listed = {
            kind: [
                path
                for path in files
                if partition in path.replace("\\", "/") or _SCHEMA_PARTITION in path
            ]
            for kind, files in listed.items()
        }
    if any(not listed[kind] for kind in kinds):
        return None
    return listed


def files_matching(
    files: Iterable[str], column: str, low: str, high: str | None = None
) -> list[str]:
    """The ``files`` whose ``column`` statistics overlap ``[low, high)`` (``high`` None:
    the single value ``low``); schema files and files without statistics always."""
    kept = []
    for path in files:
        if _SCHEMA_PARTITION in path.replace("\\", "/"):
            kept.append(path)
            continue
        bounds = _run_id_range(path, column)
        if bounds is None:
            kept.append(path)
            continue
        lo, hi = bounds
        if lo is None or hi is None:
            continue
        if (high is None and lo <= low <= hi) or (high is not None and lo < high and low <= hi):
            kept.append(path)
    return kept


# path -> (size, mtime_ns, {(project, key): {value_type...}})
_types_cache: dict[str, tuple[int, int, dict[tuple[str, str], set[str | None]]]] = {}


def param_value_types(
    con: duckdb.DuckDBPyConnection,
    project: str | None,
    keys: Sequence[str] | None,
    listed: Sequence[str] | None = None,
) -> dict[str, set[str | None]] | None:
    """``{key: {value_type...}}`` over the visible params files (of ``project``), for
    ``keys`` (None: every key). Each file's answer is cached by path, size and mtime,
    so only files written since the last call are read. ``listed``: the visible params
    files, when the caller listed them. None when it does not apply (``as_of``
    connections, object stores): ask the ``events_params`` view."""
    files = list(listed) if listed is not None else None
    if files is None:
        if con.execute("SELECT getvariable('as_of') IS NOT NULL").fetchall()[0][0]:
            return None
        files = visible_files(con, "params")
    if files is None:
        return None
    if project is not None:
        # The project's partitions only: the views take `project` from that path.
        partition = f"/project={project}/"
        files = [path for path in files if partition in path.replace("\\", "/")]
    stamps: dict[str, tuple[int, int]] = {}
    missing = []
    for path in files:
        stamp = _stamp(path)
        if stamp is None:
            return None
        stamps[path] = stamp
        with _lock:
            cached = _types_cache.get(path)
        if cached is None or cached[:2] != stamps[path]:
            missing.append(path)
    if missing:
        listed = ", ".join(quote_literal(path) for path in missing)
        found: dict[str, dict[tuple[str, str], set[str | None]]] = {p: {} for p in missing}
        for path, project_, key, types in con.execute(
            f"SELECT filename, project, key, list(DISTINCT value_type) "
            f"FROM read_parquet([{listed}], hive_partitioning = true, union_by_name = true, "
            f"filename = true, hive_types = {HIVE_TYPES}) GROUP BY ALL"
        ).fetchall():
            found.setdefault(path, {})[(project_, key)] = set(types)
        with _lock:
            if len(_types_cache) >= _CACHE_LIMIT:
                _types_cache.clear()
            for path in missing:
                _types_cache[path] = (*stamps[path], found.get(path, {}))
    merged: dict[str, set[str | None]] = {}
    wanted = None if keys is None else set(keys)
    with _lock:
        per_file = [_types_cache.get(path) for path in files]
    for entry in per_file:
        if entry is None:
            continue
        for (project_, key), types in entry[2].items():
            if (project is None or project_ == project) and (wanted is None or key in wanted):
                merged.setdefault(key, set()).update(types)
    return merged
