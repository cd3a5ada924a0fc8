"""A live, incrementally refreshed mirror of a store's low-volume events, for processes that
query the same store again and again (``ledger serve``, ``ledger status --watch``).

Why: every query over the plain views binds ``read_parquet(glob, union_by_name=true)``,
which opens every file's footer of every kind it touches — ~0.7 ms per file here, so a
few hundred files cost 150-250 ms per view per query before any row is read. Store files
are immutable (DESIGN.md invariant 1: a write creates new files), so a long-lived process
can load each file once: :class:`LiveStore` keeps the run-level kinds (``runs``, ``params``,
``tags``, ``artifacts``, ``datasets``, ``costs``) in DuckDB tables, and on refresh (at
most every ``min_interval`` seconds) lists the files again, loads only the new ones and
drops the rows of files that disappeared (compaction, archive). ``events_<kind>`` views
are re-pointed at those tables, so every view in ``queries/`` works unchanged on top.
High-volume kinds (``metrics``, ``system``) stay on Parquet, where filters on
``run_id``/``project``/``date`` prune row groups and partitions.

A refresh lists the same globs the plain views read (``engine.source_globs``); stores on
object stores (no cheap listing here) fall back to the plain views.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
import re
import threading
import time
from collections.abc import Collection
from typing import Any

import duckdb
from ledger.analytics.engine import (
    HIVE_TYPES,
    _create_views,
    _view_files,
    connect,
    quote_identifier,
    quote_literal,
    source_globs,
)
from ledger.analytics.engine import (
    cursor as engine_cursor,
)

from ledger import events, txnlog
from ledger.store import Store, open_store

log = logging.getLogger("ledger")
SCHEMA_PROJECT = "__schema__"

MIRRORED_KINDS = ("runs", "params", "tags", "artifacts", "datasets", "costs")
LISTED_KINDS = ("metrics", "system")
_PARTITION = re.compile(r"(?:^|/)project=([^/]*)/date=(\d{4}-\d{2}-\d{2})/[^/]*$")


class LiveCursor:
    """A DuckDB connection plus :meth:`scoped_files`, which the monitor queries use to read
    only one run's partitions of a high-volume kind. Everything else is the connection's."""

    def __init__(self, con: duckdb.DuckDBPyConnection, live: LiveStore) -> None:
        self._con = con
        self._live = live

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def scoped_files(self, kind: str, project: str, lo: dt.date, hi: dt.date) -> list[str] | None:
        """Files of ``kind`` in ``project`` dated ``lo``..``hi`` (None: not listed here)."""
        return self._live.scoped_files(kind, project, lo, hi)


class LiveStore:
    """One DuckDB database over ``store`` whose run-level events are mirrored in memory.

    Use :meth:`cursor` per query (thread-safe: each caller gets its own connection to
    the shared database, refreshed first when older than ``min_interval``).
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None = None,
        *,
        stall_after: float | None = None,
        min_interval: float = 1.0,
    ) -> None:
        self.store = open_store(store)
        self.min_interval = min_interval
        self.stall_after = (
            self.store.settings.stall_after if stall_after is None else float(stall_after)
        )
        self.db = connect(self.store, stall_after=self.stall_after)
        # Refreshes (possibly from a background thread) run on a connection of their own:
        # one DuckDB connection object must not be used by two threads at once.
        self._rcon = self.db.cursor()
        self._rcon.execute("SET TimeZone = 'UTC'")
        self._rcon.execute(f"SET VARIABLE stall_after_s = {self.stall_after!r}::DOUBLE")
        self.mirrored = self.store.is_local
        self._loaded: dict[str, set[str]] = {kind: set() for kind in MIRRORED_KINDS}
        # (kind, project) -> [(date, file)] of the high-volume kinds, from the last refresh.
        self._listing: dict[tuple[str, str], list[tuple[dt.date, str]]] = {}
        self._columns: dict[str, list[str]] = {}
        # Mirrored file -> the integer id its rows carry in ``_file``.
        self._file_ids: dict[str, int] = {}
        self._next_file_id = 0
        # The commit log's hidden files, keyed by the log version they were read at.
        self._hidden: tuple[tuple[str, ...], set[tuple[str, str]]] | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._last = float("-inf")
        self.generation = 0
        self._background = False
        self._snapshot = False
        if self.mirrored:
            for kind in MIRRORED_KINDS:
                self._create_mirror(kind)
            self.refresh(force=True)
            self._create_runs_snapshot()

    def _create_mirror(self, kind: str) -> None:
        columns = [name for name, _ in events.COLUMNS[kind]] + ["project", "date"]
        self._columns[kind] = columns
        table = f"mirror_{kind}"
        # The zero-row schema file gives every column its type (plus the hive columns).
        self.db.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT *, 0::INTEGER AS _file "
            f"FROM events_{kind} LIMIT 0"
        )
        self.db.execute(
            f"CREATE OR REPLACE VIEW events_{kind} AS SELECT * EXCLUDE (_file) FROM {table}"
        )

    def _create_runs_snapshot(self) -> None:
        # Folding 100,000 runs takes ~0.7 s here: too slow per request. The fold is kept
        # in a table and, on each refresh, recomputed only for runs that gained or lost
        # events plus open ones (whose status and duration move with the clock). The
        # ``runs`` view then reads that table; views built on it (experiments) follow.
        sql = dict(_view_files())["runs"]
        header = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+runs\s+AS", re.IGNORECASE)
        source = "FROM events_runs"
        self.db.execute(header.sub("CREATE OR REPLACE VIEW runs_live AS", sql, count=1))
        if header.search(sql) and sql.count(source) == 1:
            # The touched runs' rows by rowid: filtering mirror_runs on run_id directly
            # makes DuckDB fetch every column of every row first (~25 ms for 300,000
            # events here, on each refresh); the rowid lookup fetches only the matches.
            touched = sql.replace(
                source,
                "FROM (SELECT * EXCLUDE (_file) FROM mirror_runs WHERE rowid IN "
                "(SELECT rowid FROM mirror_runs "
                "WHERE run_id IN (SELECT run_id FROM live_touched)))",
            )
            touched = header.sub("CREATE OR REPLACE VIEW runs_touched AS", touched, count=1)
        else:  # the view changed shape: fold everything, then pick
            touched = (
                "CREATE OR REPLACE VIEW runs_touched AS SELECT * FROM runs_live "
                "WHERE run_id IN (SELECT run_id FROM live_touched)"
            )
        self.db.execute("CREATE OR REPLACE TABLE live_touched (run_id VARCHAR)")
        self.db.execute(touched)
        self.db.execute("CREATE OR REPLACE TABLE runs_snapshot AS SELECT * FROM runs_live")
        self.db.execute("CREATE OR REPLACE VIEW runs AS SELECT * FROM runs_snapshot")
        self._snapshot = True

    def _update_runs_snapshot(self, touched: set[str]) -> None:
        open_runs = self._rcon.execute(
            "SELECT run_id FROM runs_snapshot WHERE status IN ('running', 'stalled')"
        ).fetchall()
        ids = sorted(touched | {row[0] for row in open_runs})
        if not ids:
            return
        self._rcon.execute("BEGIN TRANSACTION")
        try:
            self._rcon.execute("DELETE FROM live_touched")
            self._rcon.execute("INSERT INTO live_touched SELECT unnest($ids)", {"ids": ids})
            self._rcon.execute(
                "DELETE FROM runs_snapshot WHERE run_id IN (SELECT run_id FROM live_touched)"
            )
            self._rcon.execute("INSERT INTO runs_snapshot SELECT * FROM runs_touched")
            self._rcon.execute("COMMIT")
        except BaseException:
            self._rcon.execute("ROLLBACK")
            raise

    def _visible_listing(self) -> dict[str, set[str]]:
        """The files of every mirrored and listed kind a plain view would read now: the
        listing minus what the lifecycle commit log hides (see :func:`visible_listing`).
        The hidden set is re-read only when the log's record files changed."""

        def hidden(version: tuple[str, ...]) -> set[tuple[str, str]]:
            if self._hidden is None or self._hidden[0] != version:
                self._hidden = (version, _hidden_files(self._rcon, self.store, version))
            return self._hidden[1]

        listing = visible_listing(self.store, MIRRORED_KINDS + LISTED_KINDS, hidden)
        return {kind: {path for _, _, path in files} for kind, files in listing.items()}

    def refresh(self, *, force: bool = False) -> bool:
        """Load new files and forget vanished ones; True when anything changed."""
        if not self.mirrored:
            return False
        with self._refresh_lock:
            now = time.monotonic()
            if not force and now - self._last < self.min_interval:
                return False
            self._last = now
            changed = False
            touched: set[str] = set()
            listed = self._visible_listing()
            for kind in MIRRORED_KINDS:
                present = listed[kind]
                loaded = self._loaded[kind]
                new, gone = sorted(present - loaded), sorted(loaded - present)
                if kind == "runs" and gone:
                    touched.update(self._run_ids_of(gone))  # before their rows go
                if gone:
                    self._rcon.execute(
                        f"DELETE FROM mirror_{kind} WHERE list_contains($gone, _file)",
                        {"gone": [self._file_ids.pop(name) for name in gone]},
                    )
                    loaded.difference_update(gone)
                    changed = True
                if new:
                    added = self._load(kind, new)
                    loaded.update(added)
                    changed = True
                    if kind == "runs" and added:
                        touched.update(self._run_ids_of(added))
            if self._snapshot:
                self._update_runs_snapshot(touched)
            listing: dict[tuple[str, str], list[tuple[dt.date, str]]] = {}
            for kind in LISTED_KINDS:
                for name in listed[kind]:
                    match = _PARTITION.search(name.replace(os.sep, "/"))
                    if match:
                        day = dt.date.fromisoformat(match.group(2))
                        listing.setdefault((kind, match.group(1)), []).append((day, name))
            self._listing = listing
            if changed:
                self.generation += 1
            return changed

    def scoped_files(self, kind: str, project: str, lo: dt.date, hi: dt.date) -> list[str] | None:
        """Files of a high-volume ``kind`` for ``project`` dated ``lo``..``hi``, from the
        last refresh's listing (None when this store is not listed: query the views)."""
        if not self.mirrored or kind not in LISTED_KINDS:
            return None
        return sorted(f for day, f in self._listing.get((kind, project), ()) if lo <= day <= hi)

    def _run_ids_of(self, files: list[str]) -> set[str]:
        rows = self._rcon.execute(
            "SELECT DISTINCT run_id FROM mirror_runs WHERE list_contains($ids, _file)",
            {"ids": [self._file_ids[name] for name in files]},
        ).fetchall()
        return {row[0] for row in rows}

    def _load(self, kind: str, files: list[str]) -> list[str]:
        """Insert the rows of ``files``; returns the files actually loaded.

        Rows carry their file as a small integer id (``_file``), not its path: a path is
        ~100 bytes on every row, a fifth of the mirror's memory on a big store."""
        columns = ", ".join(quote_identifier(c) for c in self._columns[kind])
        listing = ", ".join(quote_literal(f) for f in files)
        ids = list(range(self._next_file_id, self._next_file_id + len(files)))
        try:
            self._rcon.execute(
                f"INSERT INTO mirror_{kind} BY NAME SELECT {columns}, m._live_id AS _file "
                f"FROM read_parquet([{listing}], hive_partitioning = true, union_by_name = true, "
                f"hive_types = {HIVE_TYPES}, filename = true) r "
                "JOIN (SELECT unnest($files) AS _live_file, unnest($ids) AS _live_id) m "
                "ON r.filename = m._live_file",
                {"files": files, "ids": ids},
            )
            self._next_file_id += len(files)
            self._file_ids.update(zip(files, ids, strict=True))
            return files
        except duckdb.IOException:
            if len(files) == 1:
                return []  # vanished between listing and reading (compaction/archive)
            # Load the survivors one by one; a later refresh sees any replacement.
            return [name for one in files for name in self._load(kind, [one])]

    def start_background(self) -> None:
        """Refresh every ``min_interval`` seconds in a daemon thread, so queries never wait
        for a refresh (they see the store as of the last one)."""

        def loop() -> None:
            while not self._stop.wait(self.min_interval):
                try:
                    self.refresh(force=True)
                except Exception as exc:  # a bad file must not stop live updates
                    log.warning("ledger: live refresh of %s failed: %s", self.store.uri, exc)

        self._background = True
        threading.Thread(target=loop, name="ledger-live-refresh", daemon=True).start()

    def cursor(self) -> LiveCursor | duckdb.DuckDBPyConnection:
        """A fresh connection to the shared database (after a refresh when due, unless a
        background thread keeps it fresh)."""
        if not self._background:
            self.refresh()
        if not self.mirrored:
            # Over an object store the events_<kind> views read datasets registered on
            # the connection, which a plain DuckDB cursor does not share, and the engine
            # re-lists them per query by the connection's identity: hand out the
            # engine's own cursor, unwrapped (no files are listed here to scope).
            with self._lock:
                return engine_cursor(self.db)
        with self._lock:
            cur = self.db.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(f"SET VARIABLE stall_after_s = {self.stall_after!r}::DOUBLE")
        return LiveCursor(cur, self)

    def close(self) -> None:
        self._stop.set()
        with self._refresh_lock:
            self._rcon.close()
            self.db.close()


_LAYOUT = os.sep.join(("", "*", "*", "*.parquet"))


def _glob(pattern: str) -> list[str]:
    """``glob.glob(pattern)``; for the store's layout (``<dir>/*/*/*.parquet``, see
    ``Store.kind_glob``) a plain walk of the partition directories, about 3x faster
    than glob's pattern matching (a refresh lists every partition of every kind)."""
    prefix = pattern[: -len(_LAYOUT)]
    if not pattern.endswith(_LAYOUT) or glob.has_magic(prefix):
        return glob.glob(pattern)
    found: list[str] = []
    for project in _entries(prefix):
        if project.is_dir():
            for day in _entries(project.path):
                if day.is_dir():
                    found.extend(
                        entry.path
                        for entry in _entries(day.path)
                        if entry.name.endswith(".parquet")
                    )
    return found


def _partitioned_files(store: Store, kind: str) -> list[tuple[str, dt.date, str]]:
    """(project, date, path) of every file of ``kind`` (schema files included)."""
    out = []
    for pattern in source_globs(store, kind):
        for name in _glob(pattern):
            match = _PARTITION.search(name.replace(os.sep, "/"))
            if match:
                out.append((match.group(1), dt.date.fromisoformat(match.group(2)), name))
    return out


_LISTING_RETRIES = 5


def _hidden_files(
    con: duckdb.DuckDBPyConnection, store: Store, version: tuple[str, ...]
) -> set[tuple[str, str]]:
    """(kind, absolute path) of the hot tier's files the commit log hides, read with
    DuckDB (no pyarrow: ``ledger status`` stays light). Nothing to read when the log
    holds no transaction record (its usual state between lifecycle operations)."""
    if not txnlog.holds_records(version):
        return set()
    rows = con.execute(txnlog.hidden_sql(store, {txnlog.HOT: store.path()})).fetchall()
    return {(kind, path) for kind, path in rows}


def visible_listing(
    store: Store,
    kinds: Collection[str],
    hidden: Any,
) -> dict[str, list[tuple[str, dt.date, str]]]:
    """(project, date, path) of every file of ``kinds`` that the plain views read now:
    listed, minus the files the lifecycle commit log hides (inputs of a committed
    compaction/archive/purge, outputs of one not committed yet).

    ``hidden(version)`` returns the hidden (kind, path) pairs at a log version. The file
    listing and the log are read at different instants, so the log's version is read
    before and after: a listing that straddled a commit (whose outputs it may have
    missed while the log already hides the inputs) is taken again.
    """
    for attempt in range(_LISTING_RETRIES):
        before = txnlog.log_version(store)
        try:
            gone = hidden(before)
        except duckdb.IOException:
            if attempt == _LISTING_RETRIES - 1:
                raise
            continue  # a record was cleaned up while being read: the version moved
        listing = {kind: _partitioned_files(store, kind) for kind in kinds}
        if txnlog.log_version(store) == before:
            break
    if not gone:
        return listing
    return {
        kind: [entry for entry in files if (kind, entry[2]) not in gone]
        for kind, files in listing.items()
    }


def recent_connection(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    since: dt.datetime,
    stall_after: float | None = None,
    views: Collection[str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A connection whose views hold only the runs with any event since ``since`` (all of
    their events), for one-shot questions about recent activity (``ledger status``).

    Opening the full views binds every file of the store (~1 s for a 100,000-run store
    here); this lists the partition directories by name, then reads the files of only
    the partitions dated from the oldest start among those runs (files the lifecycle
    commit log hides are left out, as the plain views do). Run events never predate
    their run's ``started`` event (DESIGN.md invariant 2: ts is the time of logging), so
    widening the window back until every recent run's start is found gives each of them
    its complete history. Object stores fall back to
    :func:`~ledger.analytics.engine.connect`.

    ``views``: create only these views of ``queries/`` (plus those they build on), not
    all of them (``ledger status`` passes ``monitor.STATUS_VIEWS``); every
    ``events_<kind>`` view exists either way.
    """
    store_obj = open_store(store)
    stall = store_obj.settings.stall_after if stall_after is None else float(stall_after)
    if not store_obj.is_local:
        return connect(store_obj, stall_after=stall)
    store_obj.ensure_initialized()
    for attempt in range(_LISTING_RETRIES):
        con = duckdb.connect(":memory:")
        try:
            before = txnlog.log_version(store_obj)
            hidden = _hidden_files(con, store_obj, before)
            _recent_views(con, store_obj, since, stall, hidden)
            # The listing and the log were read at different instants: a connection
            # built across a log change (a commit, a clean-up) is built again.
            if txnlog.log_version(store_obj) == before or attempt == _LISTING_RETRIES - 1:
                _create_views(con, views)
                return con
        except duckdb.IOException:
            if attempt == _LISTING_RETRIES - 1:
                con.close()
                raise
        con.close()
    raise AssertionError("unreachable")


def _partition_dirs(store: Store, kind: str) -> list[tuple[str, dt.date, str]]:
    """(project, date, directory) of every partition of ``kind`` (schema included), from
    the names of the directories alone: a window of dates lists only its own files."""
    out = []
    for pattern in source_globs(store, kind):
        prefix = pattern[: -len(_LAYOUT)]
        if not pattern.endswith(_LAYOUT) or glob.has_magic(prefix):
            # Not the store's layout: the directories of the files the glob matches.
            for name in sorted({os.path.dirname(p) for p in glob.glob(pattern)}):
                match = _PARTITION.search(os.path.join(name, "x").replace(os.sep, "/"))
                if match:
                    day = dt.date.fromisoformat(match.group(2))
                    out.append((match.group(1), day, name))
            continue
        for project in _entries(prefix):
            if not (project.name.startswith("project=") and project.is_dir()):
                continue
            for day in _entries(project.path):
                if day.name.startswith("date=") and day.is_dir():
                    try:
                        date = dt.date.fromisoformat(day.name[len("date=") :])
                    except ValueError:
                        continue
                    out.append((project.name[len("project=") :], date, day.path))
    return out


def _entries(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as listing:
            return [entry for entry in listing if not entry.name.startswith(".")]
    except OSError:  # missing, or removed while listing (as glob does: skip it)
        return []


def _recent_views(
    con: duckdb.DuckDBPyConnection,
    store: Store,
    since: dt.datetime,
    stall: float,
    hidden: set[tuple[str, str]],
) -> None:
    """The ``events_<kind>`` views of :func:`recent_connection` on ``con``."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET VARIABLE stall_after_s = {stall!r}::DOUBLE")
    partitions = {kind: _partition_dirs(store, kind) for kind in events.KINDS}
    listed: dict[str, list[str]] = {}

    def files(kind: str, lo: dt.date, hi: dt.date = dt.date.max) -> str:
        chosen = []
        for proj, day, directory in partitions[kind]:
            if proj == SCHEMA_PROJECT or lo <= day <= hi:
                if directory not in listed:
                    listed[directory] = [
                        entry.path
                        for entry in _entries(directory)
                        if entry.name.endswith(".parquet") and (kind, entry.path) not in hidden
                    ]
                chosen.extend(listed[directory])
        return ", ".join(quote_literal(p) for p in chosen)

    def scan(kind: str, lo: dt.date, hi: dt.date = dt.date.max) -> str:
        return (
            f"read_parquet([{files(kind, lo, hi)}], hive_partitioning = true, "
            f"union_by_name = true, hive_types = {HIVE_TYPES})"
        )

    cutoff = since.date()
    recent = con.execute(
        f"SELECT run_id, bool_or(event = 'started') FROM {scan('runs', cutoff)} GROUP BY run_id"
    ).fetchall()
    ids = [row[0] for row in recent]
    missing = [row[0] for row in recent if not row[1]]
    oldest = min(
        (day for proj, day, _ in partitions["runs"] if proj != SCHEMA_PROJECT), default=cutoff
    )
    step = 7
    while missing and cutoff > oldest:
        lower = max(oldest, cutoff - dt.timedelta(days=step))
        found = con.execute(
            f"SELECT DISTINCT run_id FROM {scan('runs', lower, cutoff - dt.timedelta(days=1))} "
            "WHERE event = 'started' AND list_contains($missing, run_id)",
            {"missing": missing},
        ).fetchall()
        cutoff, step = lower, step * 4
        missing = sorted(set(missing) - {row[0] for row in found})
    con.execute("CREATE TABLE scope_ids AS SELECT unnest($ids::VARCHAR[]) AS run_id", {"ids": ids})
    for kind in events.KINDS:
        con.execute(
            f"CREATE VIEW events_{kind} AS SELECT * FROM {scan(kind, cutoff)} "
            "WHERE run_id IN (SELECT run_id FROM scope_ids)"
        )
