"""The query engine: a DuckDB connection with every view of ``queries/`` in place.

Base views ``events_<kind>`` read the store's Parquet files (re-globbed on every query,
so new flushes show up; on an object store, where DuckDB has no reader of its own here,
they read a pyarrow dataset that is re-listed per query, see :func:`refresh_sources`);
the views in ``queries/*.sql`` fold them into runs, params,
metrics and the rest. User SQL goes through :func:`run_sql`, which admits only reading
statements, so ``ledger query`` cannot change the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from ledger import env, events, txnlog
from ledger.durations import parse_duration
from ledger.errors import QueryError
from ledger.objectstore import filesystem_for, is_object_uri
from ledger.store import SCHEMA_PARTITION, Store, kind_dataset, open_store
from ledger.writer import all_writers

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

# DuckDB 2.0 warns that Arrow output of an execute() result makes an extra copy; its
# alternative binds every query twice and is slower here at every size (arrow_table).
warnings.filterwarnings(
    "ignore", message="Arrow output on a DB-API result", category=UserWarning, module=__name__
)

READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
HIVE_TYPES = "{'project': VARCHAR, 'date': DATE}"


def quote_literal(text: str) -> str:
    """A SQL string literal (for file paths the code itself builds)."""
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    """A SQL identifier, quoted so any user-given name is safe to splice."""
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def _view_files() -> tuple[tuple[str, str], ...]:
    """(view name, SQL) of every file of ``queries/``, read once per process."""
    folder = resources.files("ledger.queries")
    return tuple(
        sorted(
            (entry.name[: -len(".sql")], entry.read_text(encoding="utf-8"))
            for entry in folder.iterdir()
            if entry.name.endswith(".sql")
        )
    )


def _tiers(store: Store, include_archived: bool) -> dict[str, Store]:
    tiers = {txnlog.HOT: store}
    if include_archived:
        archive = txnlog.registered_archive(store)
        if archive is not None:
            archive.ensure_initialized()
            tiers[txnlog.ARCHIVE] = archive
    return tiers


LISTING_TTL_ENV = env.LISTING_TTL
_GLOB_TAIL = "/*/*/*.parquet"


@dataclass
class _RemoteSources:
    """The object-store datasets registered on one connection, and when each was listed."""

    store: Store
    ttl: float
    sources: list[tuple[str, str, str]] = field(default_factory=list)  # (name, kind, glob)
    listed_at: dict[str, float] = field(default_factory=dict)  # name -> monotonic time
    datasets: dict[str, Any] = field(default_factory=dict)  # name -> registered dataset
    view_deps: dict[str, set[str]] | None = None  # lower-case view -> names it mentions
    connected_at: float | None = None  # set by connect(), cleared by the first query
    lock: threading.Lock = field(default_factory=threading.Lock)
    log_cache: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    """Commit-log records already read (record name -> rows; records never change)."""


_remote: dict[int, _RemoteSources] = {}
_CONNECT_GRACE_S = 1.0
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def listing_ttl(store: Store) -> float:
    """Seconds a listing of an object store is reused by one connection.

    ``0`` (the default) re-lists the bucket before every query, so every file whose
    PUT completed before the query started is seen. Long-lived connections over big
    buckets (a dashboard) may trade that for fewer LIST requests: ``[query]
    listing_ttl = "5s"`` in ``ledger.toml`` or ``LEDGER_LISTING_TTL=5s``.
    """
    raw = os.environ.get(LISTING_TTL_ENV) or store.settings.raw.get("query", {}).get(
        "listing_ttl", 0
    )
    return parse_duration(raw, what="listing TTL")


def _remote_dataset(
    store: Store, kind: str, glob: str, hidden: set[tuple[str, str]] | None = None
) -> Any:
    if not glob.endswith(_GLOB_TAIL):
        raise QueryError(f"Cannot read {glob!r}: object-store sources must end in {_GLOB_TAIL}")
    kind_uri = glob[: -len(_GLOB_TAIL)]
    fs = filesystem_for(kind_uri, store.settings.raw)
    kind_dir = kind_uri.split("://", 1)[1]
    # The files the lifecycle commit log hides, as this file system lists them: paths in
    # the log are relative to their tier's root (the hot store or its archive).
    tier = txnlog.HOT if glob == store.kind_glob(kind) else txnlog.ARCHIVE
    base = kind_dir[: -len(f"/events/{kind}")]
    prefix = f"events/{kind}/"
    exclude = {
        f"{base}/{rel}" for where, rel in hidden or () if where == tier and rel.startswith(prefix)
    }
    return kind_dataset(fs, kind_dir, kind, exclude)


def _list_remote(state: _RemoteSources, stale: list[tuple[str, str, str]]) -> list[Any]:
    """Datasets for ``stale`` sources, each minus the files the commit log hides.

    The log is read, the sources listed, and the log's record names listed again; if a
    transaction started, committed or was cleaned up in between, the listing may mix
    two states of the store, so it is made again (the same rule the local views follow
    in :func:`consistent`).
    """
    datasets: list[Any] = []
    with ThreadPoolExecutor(max_workers=min(8, len(stale))) as pool:
        for _ in range(_VANISHED_RETRIES + 1):
            log = txnlog.read_log(state.store, state.log_cache)
            hidden = log.hidden()
            datasets = list(
                pool.map(
                    lambda source, hidden=hidden: _remote_dataset(
                        state.store, source[1], source[2], hidden
                    ),
                    stale,
                )
            )
            if txnlog.log_version(state.store) == log.version:
                break
    return datasets


def _sources_used(
    con: duckdb.DuckDBPyConnection, state: _RemoteSources, sql: str
) -> list[tuple[str, str, str]]:
    """The remote sources ``sql`` can reach through the views (an over-approximation).

    Every word of the query and of the views it names, recursively, is treated as a
    possible reference, so a query never misses a source; a stray column named like a
    view only costs an extra listing.
    """
    if state.view_deps is None:
        rows = con.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
        state.view_deps = {
            str(name).lower(): {word.lower() for word in _WORD.findall(str(text or ""))}
            for name, text in rows
        }
    seen: set[str] = set()
    pending = [word.lower() for word in _WORD.findall(sql)]
    while pending:
        word = pending.pop()
        if word in seen:
            continue
        seen.add(word)
        pending.extend(state.view_deps.get(word, ()))
    return [source for source in state.sources if source[0].lower() in seen]


def refresh_sources(
    con: duckdb.DuckDBPyConnection, sql: str | None = None, *, force: bool = False
) -> None:
    """Re-list the object-store sources of ``con`` so new files become visible.

    A registered pyarrow dataset is a snapshot of the files listed when it was built;
    this rebuilds the ones ``sql`` reads through the views (all of them without
    ``sql``), in parallel, one LIST per 1,000 files each, when their listing is older
    than :func:`listing_ttl`. The first query within a second of :func:`connect` uses
    the listing ``connect`` just made (``ledger.query`` and every CLI command connect
    and query at once). No-op for local stores, whose ``read_parquet`` globs DuckDB
    expands on every query anyway.
    """
    state = _remote.get(id(con))
    if state is None:
        return
    with state.lock:
        now = time.monotonic()
        connected_at, state.connected_at = state.connected_at, None
        if not force and connected_at is not None and now - connected_at < _CONNECT_GRACE_S:
            # The first query right after connect(): its listing is the one just made.
            return
        candidates = state.sources if sql is None else _sources_used(con, state, sql)
        stale = [
            source
            for source in candidates
            if force or now - state.listed_at.get(source[0], -1e18) > state.ttl
        ]
        if not stale:
            return
        datasets = _list_remote(state, stale)
        listed = time.monotonic()
        for (name, _, _), dataset in zip(stale, datasets, strict=True):
            con.register(name, dataset)
            state.listed_at[name] = listed
            state.datasets[name] = dataset


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of ``con`` for another thread, with the same views and settings.

    Use this instead of ``con.cursor()``: a plain DuckDB cursor shares the views but not
    the connection's session state, so it would lose its variables (``as_of``: the
    ``events_<kind>`` views of an as-of connection would return nothing; and
    ``stall_after_s``: every silent run would show as ``running``), the UTC time zone,
    and, on an object store, the registered datasets the ``events_<kind>`` views read.
    The cursor starts from ``con``'s current listing and re-lists on its own from then on.
    """
    cur = con.cursor()
    # fetchall, not fetchone: a partly fetched result blocks the next query (DuckDB 2.0).
    for name, value, type_ in con.execute(
        "SELECT name, value, type FROM duckdb_variables()"
    ).fetchall():
        cur.execute(f"SET VARIABLE {quote_identifier(name)} = $1::{type_}", [value])
    ((zone,),) = con.execute("SELECT current_setting('TimeZone')").fetchall()
    cur.execute(f"SET TimeZone = {quote_literal(str(zone))}")
    cur.execute("SET parquet_metadata_cache = true")
    globs = _view_globs.get(id(con))
    if globs is not None:
        _view_globs[id(cur)] = globs
        weakref.finalize(cur, _view_globs.pop, id(cur), None)
    state = _remote.get(id(con))
    if state is not None:
        with state.lock:
            child = _RemoteSources(
                state.store,
                state.ttl,
                list(state.sources),
                dict(state.listed_at),
                dict(state.datasets),
                state.view_deps,
            )
        for name, dataset in child.datasets.items():
            cur.register(name, dataset)
        key = id(cur)
        _remote[key] = child
        weakref.finalize(cur, _remote.pop, key, None)
    return cur


def source_globs(store: Store, kind: str, *, include_archived: bool = False) -> list[str]:
    """The Parquet globs a query of ``kind`` reads: the hot tier, plus the archive tier.

    Files replaced by lifecycle operations are filtered out by the commit log
    (:mod:`ledger.txnlog`), which every local base view also reads at every query.
    """
    return [tier.kind_glob(kind) for tier in _tiers(store, include_archived).values()]


def _create_base_views(
    con: duckdb.DuckDBPyConnection,
    store: Store,
    include_archived: bool = False,
    as_of: dt.datetime | None = None,
) -> None:
    state = _RemoteSources(store, listing_ttl(store))
    # As of a moment, the store is simply the events written up to then (invariant 1:
    # events are immutable, so every past state can be re-folded).
    cutoff = "" if as_of is None else " WHERE ts <= getvariable('as_of')"
    statements = []
    # Local files are filtered by the lifecycle commit log in SQL (DuckDB globs them at
    # every query); object-store datasets leave hidden files out when they are listed
    # (_list_remote).
    if store.is_local:
        txnlog.ensure_log(store)
        _lifecycle_stores[id(con)] = store
        weakref.finalize(con, _lifecycle_stores.pop, id(con), None)
        weakref.finalize(con, _hidden_kept.pop, id(con), None)
        bases = {name: tier.path() for name, tier in _tiers(store, include_archived).items()}
        con.execute(
            f"CREATE OR REPLACE VIEW _lifecycle_hidden AS {txnlog.hidden_sql(store, bases)}"
        )
    listed_globs: dict[str, list[str]] = {}
    for kind in events.KINDS:
        globs = source_globs(store, kind, include_archived=include_archived)
        listed_globs[kind] = globs
        local = [glob for glob in globs if not is_object_uri(glob)]
        parts = []
        if local:
            # While connect() creates the views, the file list is just the schema files
            # (see _BIND); every query afterwards binds the view over the globs.
            listed = (
                f"coalesce(getvariable({quote_literal(_BIND + kind)}), "
                f"[{', '.join(quote_literal(glob) for glob in local)}])"
            )
            con.execute(
                f"SET VARIABLE {quote_identifier(_BIND + kind)} = $1::VARCHAR[]",
                [[_schema_glob(glob) for glob in local]],
            )
            if store.is_local:
                # A file is skipped while the commit log hides it (replaced by a committed
                # compaction/archive/purge, or written by one that has not committed yet),
                # so a query never sees an event twice or misses one while files move.
                parts.append(
                    f"SELECT * EXCLUDE (filename) FROM read_parquet({listed}, "
                    f"hive_partitioning = true, union_by_name = true, filename = true, "
                    f"hive_types = {HIVE_TYPES}) WHERE filename NOT IN "
                    f"(SELECT file FROM _lifecycle_hidden WHERE kind = {quote_literal(kind)})"
                )
            else:
                parts.append(
                    f"SELECT * FROM read_parquet({listed}, hive_partitioning = true, "
                    f"union_by_name = true, hive_types = {HIVE_TYPES})"
                )
        for glob in globs:
            if is_object_uri(glob):
                name = f"_ledger_source_{kind}_{len(state.sources)}"
                state.sources.append((name, kind, glob))
                parts.append(f"SELECT * FROM {quote_identifier(name)}")
        union = " UNION ALL BY NAME ".join(parts)
        body = f"SELECT * FROM ({union}){cutoff}" if cutoff else union
        statements.append(f"CREATE OR REPLACE VIEW events_{kind} AS {body}")
    # Kept for readers that list the views' files themselves (analytics.pruning).
    _view_globs[id(con)] = listed_globs
    weakref.finalize(con, _view_globs.pop, id(con), None)
    if state.sources:
        key = id(con)
        _remote[key] = state
        weakref.finalize(con, _remote.pop, key, None)
        refresh_sources(con, force=True)
        state.connected_at = time.monotonic()
    for statement in statements:
        con.execute(statement)


_BIND = "ledger_bind_"
"""Prefix of the variables holding, while :func:`connect` creates the views, the schema
files each local ``events_<kind>`` view reads instead of its globs.

Creating a view binds its query, and binding ``read_parquet(..., union_by_name = true)``
opens the footer of every file it lists: about 1,200 files on the 1,000,000-run scale
store, a quarter of a cold leaderboard, spent on views a question may never read (the
leaderboard, ``diff`` and run pages read listed files through their own temporary
views). DuckDB binds a view's query again at every query that reads it, so a view
created over the kind's zero-row schema files (every column, one small footer per
tier) reads the full globs from the first query on, with the same columns and rows;
the variables are removed before :func:`connect` returns."""


def _schema_glob(glob: str) -> str:
    """The schema files of the kind whose data files ``glob`` (``.../*/*/*.parquet``) matches."""
    if not glob.endswith(_GLOB_TAIL):
        return glob
    return glob[: -len(_GLOB_TAIL)] + f"/{SCHEMA_PARTITION}/*.parquet"


def _drop_bind_variables(con: duckdb.DuckDBPyConnection) -> None:
    for kind in events.KINDS:
        con.execute(f"RESET VARIABLE {quote_identifier(_BIND + kind)}")


def _create_views(con: duckdb.DuckDBPyConnection, only: Collection[str] | None = None) -> None:
    """Every view of ``queries/``, or with ``only`` just those views and the ones they
    build on (creating a view binds its query: all of them cost a one-shot caller such
    as ``ledger status`` ~40 ms)."""
    # Views may build on each other; create in passes until all exist (files stay
    # one-view-per-file with no ordering convention to maintain).
    remaining = list(_view_files())
    if only is not None:
        remaining = _with_dependencies(remaining, only)
    while remaining:
        failed: list[tuple[str, str]] = []
        last_error: Exception | None = None
        for name, sql in remaining:
            try:
                con.execute(sql)
            except duckdb.CatalogException as exc:
                failed.append((name, sql))
                last_error = exc
        if len(failed) == len(remaining):
            raise QueryError(f"Cannot create view {failed[0][0]}: {last_error}")
        remaining = failed


def _with_dependencies(
    files: list[tuple[str, str]], names: Collection[str]
) -> list[tuple[str, str]]:
    """The view files of ``names`` plus every view their SQL mentions, transitively (a
    name matched as a word; a false match only creates a view more)."""
    texts = dict(files)
    wanted: set[str] = set()
    pending = [name for name in names if name in texts]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(
                other
                for other in texts
                if other not in wanted and re.search(rf"\b{re.escape(other)}\b", texts[name])
            )
    return [(name, sql) for name, sql in files if name in wanted]


def connect(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    stall_after: float | None = None,
    threads: int | None = None,
    include_archived: bool | None = None,
    as_of: dt.datetime | None = None,
    views: Collection[str] | None = None,
    include_deleted: bool = False,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over ``store`` with every view in place.

    Runs of this process that are still buffered are flushed first, so a script sees
    what it just logged. ``include_archived=True`` (default: ``$LEDGER_INCLUDE_ARCHIVED``)
    makes every view read the archive tier as well as the hot one.
    With ``as_of`` (a timezone-aware datetime; naive means UTC)
    every view shows the store as it stood at that moment: only events written up to
    then count, and run status is judged at that moment. ``views``: only these views
    of ``queries/`` (and the ones they build on; the ``events_<kind>`` views are always
    there): creating a view binds it, which reads every file's schema, so a one-shot
    question that reads a few views connects faster (see :func:`views_for`).
    Soft-deleted runs (latest ``deleted``/``restored`` event is ``deleted``) are left
    out of ``runs`` unless ``include_deleted=True``, which shows them with
    ``deleted = true``.

    Raises:
        StoreError: the store cannot be initialised.
    """
    store_obj = open_store(store)
    for writer in all_writers():
        if writer.store is store_obj:
            writer.flush()
    store_obj.ensure_initialized()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # Keep Parquet footers between queries of this connection: every view scans a few
    # hundred files and opening their footers was a third of a one-run lookup. DuckDB
    # checks each file's modification time, so a replaced file is read afresh.
    con.execute("SET parquet_metadata_cache = true")
    # A query bigger than memory spills to disk; for an in-memory database DuckDB would
    # spill into `.tmp/` under the working directory, i.e. into the user's project.
    spill = os.path.join(tempfile.gettempdir(), f"ledger-duckdb-{os.getpid()}")
    con.execute(f"SET temp_directory = {quote_literal(spill)}")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    stall = store_obj.settings.stall_after if stall_after is None else float(stall_after)
    con.execute(f"SET VARIABLE stall_after_s = {stall!r}::DOUBLE")
    from ledger.analytics.pricing import set_pricing_variables

    set_pricing_variables(con, store_obj)
    if as_of is not None:
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.timezone.utc)
        con.execute("SET VARIABLE as_of = $1::TIMESTAMPTZ", [as_of])
    if include_deleted:
        con.execute("SET VARIABLE include_deleted = true")
    if include_archived is None:
        include_archived = os.environ.get(env.INCLUDE_ARCHIVED, "0") not in ("", "0", "false")
    for attempt in range(_VANISHED_RETRIES + 1):
        try:
            # Creating a view binds it, which globs and opens the files.
            try:
                _create_base_views(con, store_obj, include_archived, as_of)
                _create_views(con, views)
            finally:
                _drop_bind_variables(con)
            break
        except (duckdb.IOException, QueryError) as exc:
            if attempt == _VANISHED_RETRIES or not _vanished(exc):
                raise
            time.sleep(min(0.01 * (attempt + 1), 0.1))
    return con


def views_for(needed: Collection[str], *texts: str | None) -> set[str]:
    """``needed`` plus every view of ``queries/`` that user SQL in ``texts`` (a
    ``--where``) names as a word: the ``views`` a one-shot :func:`connect` needs."""
    words = {word.lower() for text in texts if text for word in _WORD.findall(text)}
    return set(needed) | {name for name, _ in _view_files() if name.lower() in words}


def check_read_only(sql: str) -> None:
    """Refuse any statement that is not a plain read.

    Raises:
        QueryError: for COPY, CREATE, ATTACH, INSTALL, SET, PRAGMA... or unparsable SQL.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from exc
    if not statements:
        raise QueryError("Empty query: give a SELECT statement")
    for statement in statements:
        if statement.type not in READ_STATEMENTS:
            kind = statement.type.name
            raise QueryError(
                f"Only SELECT, WITH, DESCRIBE, SHOW and EXPLAIN are allowed; {kind} statements "
                "could change the store"
            )


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def run_sql(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> pl.DataFrame:
    """Run read-only ``sql`` on ``con``; the last statement's result as a polars frame.

    Raises:
        QueryError: a refused statement, or any SQL error (message names the problem).
    """
    check_read_only(sql)
    statements = duckdb.extract_statements(sql)
    refresh_sources(con, sql)
    try:
        for statement in statements[:-1]:
            con.execute(statement.query).fetchall()
        return _fetch(con, statements[-1].query, params)
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from exc


def fetch_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> pl.DataFrame:
    """Execute trusted ``sql`` and return the whole result as a polars DataFrame."""
    refresh_sources(con, sql)
    return _fetch(con, sql, params)


def fetch_rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Execute trusted ``sql`` and return its rows as dicts (column order kept).

    For small results on latency-sensitive paths (``ledger status``): DuckDB's own
    Python conversion, so neither pyarrow nor polars is imported. Scalar columns come
    back as :func:`fetch_frame`'s ``to_dicts()`` would give them; nested types may differ
    (a MAP is a dict here), so use this only for queries of scalar columns.
    """
    refresh_sources(con, sql)

    def rows() -> list[dict[str, Any]]:
        result = con.execute(sql, params)
        names = [column[0] for column in result.description or ()]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    return consistent(con, rows)


def _fetch(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None
) -> pl.DataFrame:
    import polars as pl

    frame = consistent(con, lambda: pl.from_arrow(arrow_table(con, sql, params)))
    assert isinstance(frame, pl.DataFrame)
    return frame


def arrow_table(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> pa.Table:
    """The result of trusted ``sql`` as an Arrow table.

    Through ``execute``, not DuckDB's relation API (``con.sql(...).to_arrow_table()``,
    which DuckDB 2.0's warning suggests): that binds the query once to describe it and
    again to run it, and binding the store's views lists their files. The price is one
    copy of the result. Measured side by side here: a 10,000-run leaderboard 17.0 ->
    15.4 ms, one run's 100,000 points 15.8 -> 15.3 ms; 100,000 wide rows (every run with
    its params and metrics) 1.36 -> 1.53 s, where the copy outweighs the bind.
    """
    return con.execute(sql, params).to_arrow_table()


_T = TypeVar("_T")


def consistent(con: duckdb.DuckDBPyConnection, fetch: Callable[[], _T]) -> _T:
    """``fetch()``, run again while it straddled a lifecycle commit or hit a file that
    a clean-up deleted (the check every query of :func:`fetch_frame` gets). For work
    that lists files itself (:func:`ledger.analytics.pruning.snapshot_cursor`): list
    inside ``fetch``."""
    store = _lifecycle_stores.get(id(con))
    for attempt in range(_VANISHED_RETRIES + 1):
        before = txnlog.log_version(store) if store is not None else None
        try:
            result = fetch()
        except (duckdb.Error, OSError) as exc:
            # A lifecycle clean-up deleted a file this query had globbed or listed (only
            # files the commit log already hides are deleted, so re-running sees the same
            # answer; an object-store listing is made again first).
            if attempt == _VANISHED_RETRIES or not _vanished(exc):
                raise
            time.sleep(min(0.01 * (attempt + 1), 0.1))
            if id(con) in _remote:
                refresh_sources(con, force=True)
            continue
        # DuckDB lists the files when it binds the query and reads the commit log while
        # it runs: a transaction that wrote its outputs before the listing and committed
        # before the log was read would make its inputs hidden and its outputs unlisted.
        # Such a query straddled a log change: run it again.
        if store is None or attempt == _VANISHED_RETRIES or txnlog.log_version(store) == before:
            return result
    raise AssertionError("unreachable: the last attempt returns or raises")


_VANISHED_RETRIES = 20
_lifecycle_stores: dict[int, Store] = {}
"""Connections over file-system stores -> their store, for the commit-log check."""
_hidden_kept: dict[int, tuple[tuple[str, ...], set[tuple[str, str]]]] = {}
_view_globs: dict[int, dict[str, list[str]]] = {}
"""Connections (and their cursors) -> the globs each ``events_<kind>`` view reads."""


def view_globs(con: duckdb.DuckDBPyConnection, kind: str) -> list[str]:
    """The globs ``con``'s ``events_<kind>`` view reads (empty: not a connection of
    :func:`connect` or :func:`cursor`)."""
    return _view_globs.get(id(con), {}).get(kind, [])


def hidden_files(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(kind, absolute path) of the files the lifecycle commit log hides from ``con``'s
    views now (what its ``_lifecycle_hidden`` view gives).

    Kept per connection and log version (the names of the log's record files: a record
    is created or deleted, never rewritten), so a question pays one directory listing;
    between lifecycle operations the log holds no record and nothing is read.
    """
    store = _lifecycle_stores.get(id(con))
    if store is None:  # a cursor, or an object store: ask the view when there is one
        has_log = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = '_lifecycle_hidden'"
        ).fetchall()[0][0]
        if not has_log:
            return set()
        return set(con.execute("SELECT kind, file FROM _lifecycle_hidden").fetchall())
    version = txnlog.log_version(store)
    if not txnlog.holds_records(version):
        return set()
    kept = _hidden_kept.get(id(con))
    if kept is not None and kept[0] == version:
        return kept[1]
    hidden = set(con.execute("SELECT kind, file FROM _lifecycle_hidden").fetchall())
    # Kept only when the log did not change while it was read: a record that came and
    # went in between must not leave its answer under the old name set.
    if txnlog.log_version(store) == version:
        _hidden_kept[id(con)] = (version, hidden)
    return hidden


def _vanished(exc: BaseException) -> bool:
    text = str(exc)
    return (
        "No such file" in text
        or "No files found" in text
        or "Cannot open file" in text
        # An object a registered dataset listed is gone (S3 answers 404 NoSuchKey; some
        # servers, moto among them, make pyarrow report it as a failed GetObject).
        or txnlog.object_vanished(exc)
        or "during GetObject operation" in text
    )


def query(
    sql: str,
    store: str | os.PathLike[str] | Store | None = None,
    params: list[Any] | dict[str, Any] | None = None,
    *,
    include_archived: bool | None = None,
    include_deleted: bool = False,
) -> pl.DataFrame:
    """Run read-only SQL over the store's views; returns a polars DataFrame.

    ``include_archived`` and ``include_deleted`` are as for :func:`connect`.

    Raises:
        QueryError: a refused statement or an SQL error.
    """
    con = connect(store, include_archived=include_archived, include_deleted=include_deleted)
    try:
        return run_sql(con, sql, params)
    finally:
        con.close()


def list_views(store: str | os.PathLike[str] | Store | None = None) -> pl.DataFrame:
    """Every view with its columns and types, one row per column."""
    import polars as pl

    con = connect(store)
    try:
        names = [
            row[0]
            for row in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal "
                "AND NOT starts_with(view_name, '_') ORDER BY view_name"
            ).fetchall()
        ]
        rows = []
        for name in names:
            for column in con.execute(f"DESCRIBE {quote_identifier(name)}").fetchall():
                rows.append({"view": name, "column": column[0], "type": column[1]})
        return pl.DataFrame(rows, schema={"view": pl.Utf8, "column": pl.Utf8, "type": pl.Utf8})
    finally:
        con.close()


@contextlib.contextmanager
def connection(
    con: duckdb.DuckDBPyConnection | None = None,
    store: str | os.PathLike[str] | Store | None = None,
    *,
    as_of: dt.datetime | None = None,
    views: Collection[str] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """``con`` as given (left open), or a connection of its own to ``store``, closed on exit.

    With ``as_of`` it is always a connection of its own: a view of the store as of a
    moment is set up when the connection is made. ``views`` limits the views a
    connection of its own creates (see :func:`connect`).
    """
    if con is not None and as_of is None:
        yield con
        return
    own = connect(store, as_of=as_of, views=views)
    try:
        yield own
    finally:
        own.close()
