"""The lifecycle commit log: how files are replaced while writers and readers keep going.

Compaction, archive, restore and purge all do one thing: replace a set of visible
Parquet files (*inputs*) by another set (*outputs*), possibly in two tiers (the hot store
and its archive). Readers glob ``*.parquet`` at every query, and no file system can swap
many files at once, so visibility is decided by a tiny commit log under the hot store,
``_lifecycle/txn/``, which every reader also reads at every query:

1. ``<txn>.pending.parquet`` lists the outputs (written first; they are hidden).
2. The outputs are written (atomically each, ``Store.write_parquet``).
3. ``<txn>.commit.parquet`` lists the inputs and outputs. Writing it is the commit
   point: from then on the inputs are hidden and the outputs visible, in one rename.

A file is hidden when it is an input of a committed transaction, or an output of a
pending one that has no commit record. Garbage collection (under the maintenance lock,
after a grace period so in-flight queries finish reading) deletes in an order that keeps
that rule true at every instant: committed inputs, then the pending record, then the
commit record; for an uncommitted (crashed) transaction, its outputs, then its pending
record. A SIGKILL at any instant therefore leaves a store that answers exactly as before
or exactly as after, and the next operation finishes the clean-up.

Paths in records are relative to their tier's root (``events/<kind>/project=.../x.parquet``)
so a store can be moved. One maintenance operation runs at a time per store: a
``flock``-ed lock file on a file system (released by the kernel when its holder dies),
the lease object of :mod:`ledger.lease` on an object store (conditional PUTs, fenced
before every commit record and every garbage-collection pass).

On an object store every step above is one PUT of a new, uniquely named object, which S3
makes visible atomically and never half-written; there is no rename, and none is needed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.errors import StoreError
from ledger.ids import new_id
from ledger.store import Store, open_store

if TYPE_CHECKING:
    import pyarrow as pa

LIFECYCLE_DIR = "_lifecycle"
TXN_DIR = "txn"
TIERS_FILE = "tiers.json"
HOT = "hot"
ARCHIVE = "archive"
SCHEMA_NAME = "schema-v1.parquet"
ARCHIVE_ZSTD_LEVEL = 12
"""zstd level of archive files (hot files use the default, 3): smaller, still fast to read."""
RECORD_COLUMNS = ("txn", "state", "op", "tier", "kind", "path", "role")


def record_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in RECORD_COLUMNS])


def txn_dir(store: Store) -> str:
    return store.path(LIFECYCLE_DIR, TXN_DIR)


def txn_glob(store: Store) -> str:
    """The glob of every commit-log record (always matches: a zero-row schema file)."""
    return store.path(LIFECYCLE_DIR, TXN_DIR, "*.parquet")


def log_version(store: Store) -> tuple[str, ...]:
    """The names of the log's record files: changes whenever a transaction starts,
    commits or is cleaned up. Readers compare it before and after a query (see
    ``analytics.engine``): a query's file listing and its reading of the log happen at
    different instants, so one that straddled a log change is run again."""
    if not store.is_local:
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(txn_dir(store), allow_not_found=True)
        return tuple(sorted(info.base_name for info in store.fs.get_file_info(selector)))
    try:
        return tuple(sorted(os.listdir(txn_dir(store))))
    except FileNotFoundError:
        return ()


def holds_records(version: tuple[str, ...]) -> bool:
    """Whether a log at ``version`` (:func:`log_version`) holds any transaction record:
    between lifecycle operations it holds only its schema file, and hides nothing."""
    return version not in ((), (SCHEMA_NAME,))


def ensure_log(store: Store) -> None:
    """Create the commit log's zero-row schema file, so its glob never comes back empty."""
    path = store.path(LIFECYCLE_DIR, TXN_DIR, SCHEMA_NAME)
    if not store.exists(path):
        store.write_parquet(txn_dir(store), SCHEMA_NAME, record_schema().empty_table())


# -- tiers ---------------------------------------------------------------------------------


def archive_location(store: Store, to: str | None = None) -> str:
    """Where ``store``'s archive tier lives: ``to``, else the registered one, else config.

    Resolution: an explicit ``to`` (``--to``, relative to the working directory); else
    the location recorded when the store first archived (``_lifecycle/tiers.json``);
    else ``[archive] path`` in ``ledger.toml`` (relative to the store); else
    ``<store>/archive``.
    """
    import json

    if to is not None and "://" not in to:
        return os.path.abspath(os.path.expanduser(to))  # a --to path is relative to the cwd
    location = to
    if location is None:
        registry = _read_text(store, store.path(LIFECYCLE_DIR, TIERS_FILE))
        if registry:
            location = json.loads(registry).get(ARCHIVE)
    if location is None:
        location = store.read_config().get("archive", {}).get("path")
    if location is None:
        return store.path(ARCHIVE) if store.is_local else f"{store.uri}/{ARCHIVE}"
    location = str(location)
    if "://" in location or os.path.isabs(os.path.expanduser(location)):
        return location
    if not store.is_local:  # relative to the store's prefix, in its bucket
        return f"{store.uri}/{location.strip('/')}"
    return os.path.normpath(store.path(location))


_tier_memos: dict[int, dict[str, Store | None]] = {}
"""id(store) -> its archive tier, kept while this process holds the store's maintenance
lock (only the holder changes ``tiers.json``; on an object store each read is a GET)."""


def registered_archive(store: Store) -> Store | None:
    """The archive tier that holds data of ``store`` (None when nothing was archived)."""
    memo = _tier_memos.get(id(store))
    if memo is not None:
        if ARCHIVE not in memo:
            memo[ARCHIVE] = _registered_archive(store)
        return memo[ARCHIVE]
    return _registered_archive(store)


def _registered_archive(store: Store) -> Store | None:
    import json

    registry = _read_text(store, store.path(LIFECYCLE_DIR, TIERS_FILE))
    if not registry:
        return None
    location = json.loads(registry).get(ARCHIVE)
    if not location:
        return None
    archive = open_store(location)
    level = store.read_config().get("archive", {}).get("compression_level", ARCHIVE_ZSTD_LEVEL)
    archive.compression_level = int(level)
    return archive


def register_archive(store: Store, location: str) -> None:
    """Record ``location`` as the archive tier (refusing to switch tiers with data)."""
    import json

    current = registered_archive(store)
    if current is not None:
        if _same_location(current.uri, location):
            return
        if any(True for _ in list_event_files(current)):
            raise StoreError(
                f"This store already archives to {current.uri}; restore those runs "
                f"(ledger restore --all) before archiving to {location}"
            )
    _write_text(store, store.path(LIFECYCLE_DIR, TIERS_FILE), json.dumps({ARCHIVE: location}))
    _tier_memos.get(id(store), {}).pop(ARCHIVE, None)


def _same_location(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def tier_store(store: Store, tier: str) -> Store:
    if tier == HOT:
        return store
    archive = registered_archive(store)
    if archive is None:
        raise StoreError(f"Store {store.uri} has no archive tier")
    return archive


def _read_text(store: Store, path: str) -> str | None:
    try:
        with store.fs.open_input_stream(path) as handle:
            return bytes(handle.read()).decode()
    except FileNotFoundError:
        return None


def _write_text(store: Store, path: str, text: str) -> None:
    directory, name = path.rsplit("/", 1) if "/" in path else ("", path)
    if store.is_local:
        import uuid

        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    else:
        with store.fs.open_output_stream(path) as sink:
            sink.write(text.encode())


# -- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One complete event file of a tier."""

    kind: str
    project: str
    date: str
    name: str
    size: int
    mtime: float

    @property
    def rel(self) -> str:
        return f"events/{self.kind}/project={self.project}/date={self.date}/{self.name}"


def list_event_files(store: Store, kinds: tuple[str, ...] | None = None) -> Iterator[FileEntry]:
    """Every complete ``*.parquet`` event file of ``store`` (schema files excluded)."""
    import pyarrow.fs as pafs

    from ledger import events

    for kind in kinds or events.KINDS:
        selector = pafs.FileSelector(store.kind_dir(kind), recursive=True, allow_not_found=True)
        for info in store.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            parts = info.path.replace("\\", "/").rsplit("/", 3)
            if len(parts) != 4:
                continue
            _, project_part, date_part, name = parts
            if (
                not name.endswith(".parquet")
                or name.startswith(".")
                or not project_part.startswith("project=")
                or not date_part.startswith("date=")
            ):
                continue
            project = project_part[len("project=") :]
            if project == "__schema__":
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            yield FileEntry(
                kind, project, date_part[len("date=") :], name, int(info.size or 0), mtime
            )


# -- the log -------------------------------------------------------------------------------


@dataclass
class LogState:
    """The commit log read at one instant."""

    pending: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    commits: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    mtimes: dict[tuple[str, str], float] = field(default_factory=dict)
    version: tuple[str, ...] = ()
    """The record names read (:func:`log_version` at the instant of the listing)."""

    def hidden(self) -> set[tuple[str, str]]:
        """(tier, relative path) of every file readers must not see right now."""
        out: set[tuple[str, str]] = set()
        for rows in self.commits.values():
            out.update((r["tier"], r["path"]) for r in rows if r["role"] == "input")
        for txn, rows in self.pending.items():
            if txn not in self.commits:
                out.update((r["tier"], r["path"]) for r in rows if r["role"] == "output")
        return out


def read_log(store: Store, cache: dict[str, list[dict[str, str]]] | None = None) -> LogState:
    """Every record of the commit log (pending and committed transactions).

    ``cache`` (record name -> rows) spares re-reading records across calls: a record is
    never rewritten, only created and deleted (object-store readers list the log before
    every query, and each GET is a round trip).
    """
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    state = LogState()
    selector = pafs.FileSelector(txn_dir(store), allow_not_found=True)
    infos = store.fs.get_file_info(selector)
    state.version = tuple(sorted(info.base_name for info in infos))
    if cache is not None:
        for gone in set(cache) - set(state.version):
            cache.pop(gone, None)
    for info in infos:
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".parquet"):
            continue
        if name.startswith(".") or name == SCHEMA_NAME:
            continue
        txn, _, rest = name.partition(".")
        state_name = rest[: -len(".parquet")]
        rows = cache.get(name) if cache is not None else None
        if rows is None:
            try:
                with store.fs.open_input_file(info.path) as handle:
                    rows = pq.read_table(handle).to_pylist()
            except OSError as exc:
                # Removed by a concurrent clean-up: nothing to hide.
                if object_vanished(exc):
                    continue
                raise
            if cache is not None:
                cache[name] = rows
        target = state.commits if state_name == "commit" else state.pending
        target[txn] = rows
        state.mtimes[(txn, state_name)] = info.mtime.timestamp() if info.mtime else 0.0
    return state


_VANISHED_MARKERS = ("NO_SUCH_KEY", "NoSuchKey", "RESOURCE_NOT_FOUND", "Path does not exist")


def object_vanished(exc: BaseException) -> bool:
    """True when ``exc`` says a file or object that was just listed is gone.

    On S3 an object can go between pyarrow's HEAD and its GET, which pyarrow reports as
    a plain ``OSError`` ("AWS Error NO_SUCH_KEY" or "RESOURCE_NOT_FOUND" during
    GetObject), not a ``FileNotFoundError``.
    """
    if isinstance(exc, FileNotFoundError):
        return True
    text = str(exc)
    return any(marker in text for marker in _VANISHED_MARKERS)


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def hidden_sql(store: Store, tier_bases: dict[str, str]) -> str:
    """SQL giving ``(kind, file)``: absolute paths of the files readers must skip.

    ``tier_bases`` maps tier names to the root path (as globbed) of each tier read.
    """
    glob = quote_literal(txn_glob(store))
    cases = " ".join(
        f"WHEN {quote_literal(tier)} THEN {quote_literal(base.rstrip('/') + '/')}"
        for tier, base in tier_bases.items()
    )
    return (
        f"WITH log AS (SELECT * FROM read_parquet({glob}, union_by_name = true)), "
        "committed AS (SELECT DISTINCT txn FROM log WHERE state = 'commit') "
        f"SELECT kind, (CASE tier {cases} END) || path AS file FROM log "
        f"WHERE tier IN ({', '.join(quote_literal(t) for t in tier_bases)}) AND ("
        "(state = 'commit' AND role = 'input') OR (state = 'pending' AND role = 'output' "
        "AND txn NOT IN (SELECT txn FROM committed)))"
    )


# -- transactions --------------------------------------------------------------------------


@dataclass
class Output:
    tier: str
    kind: str
    project: str
    date: str
    name: str
    table: pa.Table
    size: int = 0

    @property
    def rel(self) -> str:
        return f"events/{self.kind}/project={self.project}/date={self.date}/{self.name}"


class Transaction:
    """Replace ``inputs`` by ``outputs`` across tiers, atomically for every reader."""

    def __init__(self, store: Store, op: str) -> None:
        self.store = store
        self.op = op
        self.id = new_id()
        self.inputs: list[tuple[str, FileEntry]] = []
        self.outputs: list[Output] = []
        self._counter = 0

    def output_name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self.id}-{self._counter:04d}.parquet"

    def add_input(self, tier: str, entry: FileEntry) -> None:
        self.inputs.append((tier, entry))

    def add_output(
        self, tier: str, kind: str, project: str, date: str, table: pa.Table, prefix: str
    ) -> Output:
        from ledger import events

        out = Output(tier, kind, project, date, self.output_name(prefix), table)
        self.outputs.append(out)
        if kind in events.TWINS:
            # Readers use a summary only beside its metrics/costs file of the same name
            # (ledger/summaries.py, ledger/cost_summaries.py): give rewritten files their
            # twin in the same transaction, so compacted and archived runs stay fast to fold.
            from ledger.summaries import summarize_twin

            twin_kind = events.TWINS[kind]
            twin = Output(tier, twin_kind, project, date, out.name, summarize_twin(kind, table))
            self.outputs.append(twin)
        return out

    def _records(self, state: str, with_inputs: bool) -> pa.Table:
        import pyarrow as pa

        rows = [
            {
                "txn": self.id,
                "state": state,
                "op": self.op,
                "tier": o.tier,
                "kind": o.kind,
                "path": o.rel,
                "role": "output",
            }
            for o in self.outputs
        ]
        if with_inputs:
            rows += [
                {
                    "txn": self.id,
                    "state": state,
                    "op": self.op,
                    "tier": tier,
                    "kind": e.kind,
                    "path": e.rel,
                    "role": "input",
                }
                for tier, e in self.inputs
            ]
        return pa.Table.from_pylist(rows, schema=record_schema())

    def commit(self, hook: Any = None) -> int:
        """Write pending record, outputs, commit record; returns bytes written.

        ``hook(stage)`` (tests only) is called between the steps.
        """
        if not self.inputs and not self.outputs:
            return 0
        ensure_log(self.store)
        directory = txn_dir(self.store)
        self.store.write_parquet(
            directory, f"{self.id}.pending.parquet", self._records("pending", False)
        )
        if hook:
            hook("pending")
        written = 0
        tiers: dict[str, Store] = {}
        for out in self.outputs:
            tier = tiers.get(out.tier) or tiers.setdefault(
                out.tier, tier_store(self.store, out.tier)
            )
            out.size = tier.write_parquet(
                tier.path("events", out.kind, f"project={out.project}", f"date={out.date}"),
                out.name,
                out.table,
                out.kind,
            )
            written += out.size
            if hook:
                hook("output")
        # The commit point. On an object store, prove the lease is still ours first
        # (a stalled maintainer whose lease was taken over must not commit).
        from ledger.lease import fence

        fence(self.store)
        self.store.write_parquet(
            directory, f"{self.id}.commit.parquet", self._records("commit", True)
        )
        if hook:
            hook("commit")
        return written


# -- lock and garbage collection -----------------------------------------------------------


@contextlib.contextmanager
def maintenance_lock(store: Store, timeout: float = 60.0) -> Iterator[None]:
    """One lifecycle operation at a time per store (released by the kernel on SIGKILL).

    On an object store this is the lease of :mod:`ledger.lease` (conditional PUTs; it
    expires ``lease_ttl`` after its holder stops renewing, e.g. when killed).

    Raises:
        StoreError: another operation holds the lock for longer than ``timeout``, or the
            store cannot be written.
    """
    if not store.is_local:
        from ledger.lease import object_lease

        with object_lease(store, timeout), _memo_tiers(store):
            yield
        return
    import fcntl

    directory = store.path(LIFECYCLE_DIR)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"Cannot write to store {store.uri}: {exc}") from exc
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"Another lifecycle operation (compact/archive/restore/purge) is "
                        f"running on {store.uri}; try again when it ends"
                    ) from None
                time.sleep(0.05)
        with _memo_tiers(store):
            yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _memo_tiers(store: Store) -> Iterator[None]:
    if id(store) in _tier_memos:  # re-entered
        yield
        return
    _tier_memos[id(store)] = {}
    try:
        yield
    finally:
        _tier_memos.pop(id(store), None)


@dataclass
class GcReport:
    files_deleted: int = 0
    bytes_freed: int = 0
    transactions_finished: int = 0
    transactions_rolled_back: int = 0
    temp_files_swept: int = 0


def collect_garbage(
    store: Store, *, grace: float, temp_age: float, now: float | None = None
) -> GcReport:
    """Finish or roll back old transactions and sweep stale temp files (lock held).

    Records younger than ``grace`` seconds are left alone, so a query that globbed the
    files before the commit can still read them. On an object store, ages are measured
    on the store's clock (objects' LastModified has one-second resolution: one more
    second of grace) and the lease is fenced before anything is deleted.
    """
    from ledger.lease import fence, held_lease

    lease = held_lease(store) if not store.is_local else None
    if now is None:
        now = time.time() if lease is None else lease.server_time() - 1.0
    report = GcReport()
    stalled: list[str] = []
    fence(store)
    log = read_log(store)
    tiers: dict[str, Store] = {}

    def delete_one(target: Store, rel: str) -> int:
        if lease is not None and not lease.valid(margin=lease.ttl / 3):
            stalled.append(rel)  # stop deleting (the next holder finishes, idempotently)
            return -1
        path = target.path(*rel.split("/"))
        try:
            size = target.fs.get_file_info(path).size or 0
            target.fs.delete_file(path)
        except FileNotFoundError:
            return -1
        return int(size)

    def delete(rows: list[dict[str, str]]) -> None:
        # Unlinking is slow on journaling file systems (~2 ms per fsynced file): in parallel.
        from concurrent.futures import ThreadPoolExecutor

        jobs = []
        for row in rows:
            try:
                target = tiers.get(row["tier"]) or tiers.setdefault(
                    row["tier"], tier_store(store, row["tier"])
                )
            except StoreError:
                continue
            jobs.append((target, row["path"]))
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            for size in pool.map(lambda job: delete_one(*job), jobs):
                if size >= 0:
                    report.files_deleted += 1
                    report.bytes_freed += size

    def still_ours() -> bool:
        # A record may only go once every file it hides is gone: a maintainer that
        # stalled past its lease stops here and leaves the rest to the next holder.
        return not stalled and (lease is None or lease.valid(margin=lease.ttl / 3))

    directory = txn_dir(store)
    for txn, rows in sorted(log.commits.items()):
        if now - log.mtimes[(txn, "commit")] < grace:
            continue
        delete([row for row in rows if row["role"] == "input"])
        if not still_ours():
            return report
        _delete_quiet(store, f"{directory}/{txn}.pending.parquet")
        _delete_quiet(store, f"{directory}/{txn}.commit.parquet")
        report.transactions_finished += 1
    for txn, rows in sorted(log.pending.items()):
        if txn in log.commits or now - log.mtimes[(txn, "pending")] < grace:
            continue
        delete(rows)
        if not still_ours():
            return report
        _delete_quiet(store, f"{directory}/{txn}.pending.parquet")
        report.transactions_rolled_back += 1
    report.temp_files_swept = sweep_temp_files(store, older_than=temp_age, now=now)
    archive = registered_archive(store)
    if archive is not None:
        report.temp_files_swept += sweep_temp_files(archive, older_than=temp_age, now=now)
    return report


def _delete_quiet(store: Store, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        store.fs.delete_file(path)


def sweep_temp_files(store: Store, *, older_than: float, now: float | None = None) -> int:
    """Delete ``.<name>.<uuid>.tmp`` files older than ``older_than`` seconds.

    Writers leave them only when killed between writing and renaming; a live writer's
    temp file is seconds old, so a safe age (default one hour) never races a writer.
    """
    import pyarrow.fs as pafs

    now = time.time() if now is None else now
    count = 0
    for top in ("events", "artifacts", LIFECYCLE_DIR):
        selector = pafs.FileSelector(store.path(top), recursive=True, allow_not_found=True)
        for info in store.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            name = info.base_name
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            mtime = info.mtime.timestamp() if info.mtime else now
            if now - mtime >= older_than:
                with contextlib.suppress(FileNotFoundError):
                    store.fs.delete_file(info.path)
                    count += 1
    return count
