"""Lifecycle operations: compact, archive, restore, purge, pin/unpin, garbage collection.

They only move files, so they live in the core. Every one replaces files through a
:class:`ledger.txnlog.Transaction` (see that module for why readers never see an event
twice or miss one, and why a SIGKILL at any instant is harmless), holds the store's
maintenance lock, and records what it did as ``runs`` events: ``archived``,
``restored``, ``deleted`` (purge) per run, and one ``maintenance`` event per operation
and project (``run_id`` = the operation id, ``attrs`` = its summary).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger import events, txnlog
from ledger.durations import parse_duration, parse_size
from ledger.errors import (
    AmbiguousRunError,
    ConfigError,
    LedgerError,
    RunNotFoundError,
    RunStateError,
    StoreError,
)
from ledger.ids import new_id
from ledger.store import Store, open_store
from ledger.txnlog import ARCHIVE, HOT, FileEntry, Transaction

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

DEFAULT_GRACE = 5.0
"""Seconds a replaced file stays on disk so queries that globbed it can finish (a query
torn by a deletion anyway is retried by the engine, so this only saves wasted work)."""
DEFAULT_TEMP_AGE = 3600.0
"""Temp files of crashed writers older than this are swept (live writers take seconds)."""

SORT_KEYS: dict[str, list[str]] = {
    "metrics": ["run_id", "key", "step", "ts", "seq"],
    "system": ["run_id", "device", "key", "ts", "seq"],
}
"""Compacted files are sorted for the common queries (one run, one key, by step)."""


@dataclass
class Result:
    """What an operation did (or, with ``dry_run``, would do)."""

    op: str
    dry_run: bool
    runs: list[str] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    bytes_moved: int = 0
    bytes_freed: int = 0
    files_written: int = 0
    temp_files_swept: int = 0
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    """run id -> why it was left alone (pinned, running, family member pinned...)."""
    target: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "operation": self.op + (" (dry run)" if self.dry_run else ""),
            "runs": len(self.runs),
            "files": self.files,
            "rows": self.rows,
            "bytes_moved": self.bytes_moved,
            "bytes_freed": self.bytes_freed,
            "files_written": self.files_written,
            "temp_files_swept": self.temp_files_swept,
            "skipped_runs": len(self.skipped),
            "target": self.target,
            "seconds": round(self.seconds, 3),
        }

    def frame(self) -> pl.DataFrame:
        """One-row summary (for csv/json/parquet output)."""
        import polars as pl

        return pl.DataFrame([self.summary()])

    def report(self) -> pl.DataFrame:
        """The summary for people: one line per figure, sizes readable, skips explained."""
        import polars as pl

        from ledger.durations import format_size

        rows = []
        for key, value in self.summary().items():
            if key in ("bytes_moved", "bytes_freed"):
                value = format_size(int(value))
            if key == "target" and not value:
                continue
            rows.append({"": key.replace("_", " "), "value": str(value)})
        for run_id, why in sorted(self.skipped.items()):
            rows.append({"": f"skipped {run_id}", "value": why})
        return pl.DataFrame(rows, schema={"": pl.Utf8, "value": pl.Utf8})


# -- settings ------------------------------------------------------------------------------


def _lifecycle_settings(store: Store) -> tuple[float, float]:
    section = store.read_config().get("lifecycle", {})
    grace = parse_duration(section.get("grace", DEFAULT_GRACE), what="lifecycle.grace")
    temp_age = parse_duration(section.get("temp_age", DEFAULT_TEMP_AGE), what="lifecycle.temp_age")
    return grace, temp_age


def _grace(store: Store, grace: str | float | None) -> tuple[float, float]:
    default_grace, temp_age = _lifecycle_settings(store)
    return (default_grace if grace is None else parse_duration(grace, what="grace")), temp_age


# -- reading visible files -----------------------------------------------------------------


def visible_files(
    store: Store, tier: str, kinds: Sequence[str] | None = None, hidden: set | None = None
) -> list[FileEntry]:
    """The files of ``tier`` a reader sees now (listed minus those the log hides)."""
    target = txnlog.tier_store(store, tier)
    if hidden is None:
        hidden = txnlog.read_log(store).hidden()
    return [
        entry
        for entry in txnlog.list_event_files(target, tuple(kinds) if kinds else None)
        if (tier, entry.rel) not in hidden
    ]


def _read_files(target: Store, entries: list[FileEntry], kind: str) -> pa.Table:
    """All rows of ``entries``, schemas unified by name (older files lack newer columns).

    One multi-threaded dataset scan: far faster than a file at a time on small files.
    """
    import pyarrow.dataset as pads

    factory = pads.FileSystemDatasetFactory(
        target.fs, [target.path(*e.rel.split("/")) for e in entries], pads.ParquetFileFormat()
    )
    schema = factory.inspect(fragments=None)
    return _concat([factory.finish(schema).to_table()], kind)


def _concat(tables: list[pa.Table], kind: str) -> pa.Table:
    """Union by name (older files lack newer columns); kind's columns first, then extras."""
    import pyarrow as pa

    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    known = [name for name, _ in events.COLUMNS[kind] if name in table.column_names]
    extra = [name for name in table.column_names if name not in known]
    table = table.select(known + extra)
    return table.replace_schema_metadata(events.arrow_schema(kind).metadata)


def _sorted(table: pa.Table, kind: str) -> pa.Table:
    keys = [k for k in SORT_KEYS.get(kind, ["run_id", "ts"]) if k in table.column_names]
    return table.sort_by([(k, "ascending") for k in keys]) if table.num_rows > 1 else table


def _run_ids_by_file(target: Store, entries: list[FileEntry], run_ids: set[str]) -> dict[str, int]:
    """Relative path -> number of rows of ``run_ids`` in each file that has any."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    if not entries or not run_ids:
        return {}
    by_path = {target.path(*e.rel.split("/")): e.rel for e in entries}
    dataset = pads.dataset(
        list(by_path),
        filesystem=target.fs,
        format="parquet",
        schema=pa.schema([("run_id", pa.string())]),
    )
    wanted = pa.array(sorted(run_ids), pa.string())
    counts: dict[str, int] = defaultdict(int)
    scanner = dataset.scanner(columns=["run_id"], filter=pc.field("run_id").isin(wanted))
    for tagged in scanner.scan_batches():
        if tagged.record_batch.num_rows:
            counts[by_path[tagged.fragment.path]] += tagged.record_batch.num_rows
    return dict(counts)


# -- runs: a small fold of the runs kind, in Python (the core has no view engine) ---------------


@dataclass
class RunInfo:
    run_id: str
    tier: str
    project: str = ""
    experiment: str | None = None
    name: str | None = None
    parent_run_id: str | None = None
    start_us: int | None = None
    last_open_us: int | None = None
    last_end_us: int | None = None
    end_event: str | None = None
    pinned: bool = False
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.last_end_us is not None and (
            self.last_open_us is None or self.last_end_us >= self.last_open_us
        )

    @property
    def status(self) -> str:
        return self.end_event if self.ended and self.end_event else "running"


def _scan(target: Store, entries: list[FileEntry], columns: list[str], kind: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.dataset as pads

    if not entries:
        return []
    schema = events.arrow_schema(kind)
    dataset = pads.dataset(
        [target.path(*e.rel.split("/")) for e in entries],
        filesystem=target.fs,
        format="parquet",
        schema=schema,
    )
    rows: list[dict] = []
    paths = {target.path(*e.rel.split("/")): e for e in entries}
    for tagged in dataset.scanner(columns=columns).scan_batches():
        batch = tagged.record_batch
        if not batch.num_rows:
            continue
        entry = paths[tagged.fragment.path]
        table = pa.Table.from_batches([batch])
        for row in table.to_pylist():
            row["project"] = entry.project
            rows.append(row)
    return rows


def _us(value: Any) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() * 1_000_000)


def load_runs(store: Store, tiers: Sequence[str] = (HOT, ARCHIVE)) -> dict[str, RunInfo]:
    """Every run with a ``started`` event in ``tiers``, folded like the ``runs`` view."""
    hidden = txnlog.read_log(store).hidden()
    infos: dict[str, RunInfo] = {}
    raw: list[tuple[str, dict]] = []
    tag_rows: list[dict] = []
    for tier in tiers:
        if tier == ARCHIVE and txnlog.registered_archive(store) is None:
            continue
        target = txnlog.tier_store(store, tier)
        entries = visible_files(store, tier, ["runs"], hidden)
        columns = ["run_id", "ts", "event", "experiment", "name", "parent_run_id"]
        raw.extend((tier, row) for row in _scan(target, entries, columns, "runs"))
        tag_entries = visible_files(store, tier, ["tags"], hidden)
        tag_rows.extend(_scan(target, tag_entries, ["run_id", "ts", "key", "value"], "tags"))
    raw.sort(key=lambda item: _us(item[1]["ts"]) or 0)
    pins: dict[str, tuple[int, bool]] = {}
    for tier, row in raw:
        run_id, event, ts = row["run_id"], row["event"], _us(row["ts"]) or 0
        if event in ("pinned", "unpinned"):
            if run_id not in pins or ts >= pins[run_id][0]:
                pins[run_id] = (ts, event == "pinned")
            continue
        info = infos.get(run_id)
        if info is None:
            info = infos[run_id] = RunInfo(run_id, tier, project=row["project"])
        if event == "started" and (info.start_us is None or ts < info.start_us):
            info.start_us = ts
            info.experiment = row["experiment"]
            info.parent_run_id = row["parent_run_id"]
            info.tier = tier
            info.project = row["project"]
        if event in ("started", "renamed"):
            info.name = row["name"]
        if event in ("started", "resumed"):
            info.last_open_us = max(info.last_open_us or ts, ts)
        if event in events.TERMINAL_STATUSES and (
            info.last_end_us is None or ts >= info.last_end_us
        ):
            info.last_end_us = ts
            info.end_event = event
    for run_id, (_, pinned) in pins.items():
        if run_id in infos:
            infos[run_id].pinned = pinned
    tag_rows.sort(key=lambda row: _us(row["ts"]) or 0)
    for row in tag_rows:
        info = infos.get(row["run_id"])
        if info is None:
            continue
        if row["value"] is None:
            info.tags.pop(row["key"], None)
        else:
            info.tags[row["key"]] = row["value"]
    return {run_id: info for run_id, info in infos.items() if info.start_us is not None}


def resolve_runs(infos: dict[str, RunInfo], refs: Iterable[str]) -> list[str]:
    """Full run ids for ids or unique id prefixes.

    Raises:
        RunNotFoundError: a reference matches no run.
        AmbiguousRunError: a prefix matches several runs.
    """
    out: list[str] = []
    for ref in refs:
        if ref in infos:
            out.append(ref)
            continue
        matches = [run_id for run_id in infos if run_id.startswith(ref)] if len(ref) >= 4 else []
        if not matches:
            raise RunNotFoundError(f"No run {ref!r} in this store (hot or archive)")
        if len(matches) > 1:
            raise AmbiguousRunError(
                f"Run prefix {ref!r} matches {len(matches)} runs: {', '.join(sorted(matches)[:5])}"
            )
        out.append(matches[0])
    return list(dict.fromkeys(out))


def _families(infos: dict[str, RunInfo]) -> dict[str, list[str]]:
    """Root run id -> the root and all its descendants (among ``infos``)."""
    children: dict[str, list[str]] = defaultdict(list)
    for info in infos.values():
        if info.parent_run_id and info.parent_run_id in infos:
            children[info.parent_run_id].append(info.run_id)
    families: dict[str, list[str]] = {}
    for info in infos.values():
        if info.parent_run_id and info.parent_run_id in infos:
            continue
        members, stack = [], [info.run_id]
        while stack:
            current = stack.pop()
            if current in members:
                continue
            members.append(current)
            stack.extend(children.get(current, []))
        families[info.run_id] = members
    return families


def _root_of(infos: dict[str, RunInfo], run_id: str) -> str:
    seen = set()
    while infos[run_id].parent_run_id in infos and run_id not in seen:
        seen.add(run_id)
        run_id = infos[run_id].parent_run_id  # type: ignore[assignment]
    return run_id


# -- moving rows between tiers ---------------------------------------------------------------


def _plan_move(
    store: Store,
    txn: Transaction,
    src: str,
    dst: str | None,
    run_ids: set[str],
    hidden: set,
    result: Result,
    kinds: Sequence[str] = events.KINDS,
    build: bool = True,
) -> None:
    """Add to ``txn`` the rewrite of every ``src`` file holding rows of ``run_ids``.

    Kept rows go to a rewritten file per partition in ``src``; moved rows go to one
    file per partition in ``dst`` (or nowhere, for purge).
    """
    source = txnlog.tier_store(store, src)
    for kind in kinds:
        entries = visible_files(store, src, [kind], hidden)
        counts = _run_ids_by_file(source, entries, run_ids)
        if not counts:
            continue
        by_partition: dict[tuple[str, str], list[FileEntry]] = defaultdict(list)
        for entry in entries:
            if entry.rel in counts:
                by_partition[(entry.project, entry.date)].append(entry)
        for (project, date), group in sorted(by_partition.items()):
            size = sum(e.size for e in group)
            result.files += len(group)
            for entry in group:
                txn.add_input(src, entry)
            if not build:
                rows = sum(counts[e.rel] for e in group)
                result.rows += rows
                total = sum(_num_rows(source, e) for e in group) or 1
                moved_bytes = int(size * rows / total)
                result.bytes_freed += moved_bytes
                if dst:
                    result.bytes_moved += moved_bytes
                continue
            import pyarrow.compute as pc

            table = _read_files(source, group, kind)
            mask = pc.is_in(table.column("run_id"), value_set=_array(run_ids))
            moved = table.filter(mask)
            kept = table.filter(pc.invert(mask))
            result.rows += moved.num_rows
            result.bytes_freed += size
            if kept.num_rows:
                txn.add_output(src, kind, project, date, _sorted(kept, kind), "w")
            if dst and moved.num_rows:
                txn.add_output(dst, kind, project, date, _sorted(moved, kind), "m")


def _num_rows(target: Store, entry: FileEntry) -> int:
    import pyarrow.parquet as pq

    with target.fs.open_input_file(target.path(*entry.rel.split("/"))) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _array(values: Iterable[str]) -> pa.Array:
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def _event_table(rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    from ledger.ids import new_id
    from ledger.writer import now_us

    schema = events.arrow_schema("runs")
    full = []
    for row in rows:
        record: dict[str, Any] = {name: None for name, _ in events.COLUMNS["runs"]}
        record.update(row)
        record["event_id"] = record["event_id"] or new_id()
        record["ts"] = record["ts"] or now_us()
        full.append(record)
    table = pa.Table.from_pylist(full, schema=schema.remove_metadata())
    return table.cast(schema)


def _add_events(txn: Transaction, tier: str, by_project: dict[str, list[dict[str, Any]]]) -> None:
    """Lifecycle events join the same transaction: they appear exactly when the data moves."""
    import datetime as dt

    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    for project, rows in sorted(by_project.items()):
        for row in rows:
            row.setdefault("writer_id", f"lifecycle-{txn.id}")
        txn.add_output(tier, "runs", project, today, _event_table(rows), "e")


def _maintenance_events(txn: Transaction, projects: Iterable[str], summary: dict[str, Any]) -> None:
    attrs = json.dumps({"op": txn.op, **summary}, sort_keys=True, default=str)
    _add_events(
        txn,
        HOT,
        {
            project: [{"run_id": txn.id, "event": "maintenance", "message": txn.op, "attrs": attrs}]
            for project in projects
        },
    )


def _commit(txn: Transaction, result: Result, hook: Callable[[str], None] | None) -> None:
    """Commit, then account: bytes moved = files written to the destination tier; bytes
    freed = source bytes replaced minus the rewritten remainder."""
    txn.commit(hook)
    result.files_written += len(txn.outputs)
    for output in txn.outputs:
        if output.name.startswith("m-"):
            result.bytes_moved += output.size
        elif output.name.startswith("w-"):
            result.bytes_freed -= output.size


def _finish(store: Store, result: Result, grace: float, temp_age: float, started: float) -> Result:
    report = txnlog.collect_garbage(store, grace=grace, temp_age=temp_age)
    result.temp_files_swept += report.temp_files_swept
    result.seconds = time.perf_counter() - started
    return result


# -- compact -------------------------------------------------------------------------------


def compact(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    project: str | None = None,
    older_than: str | float = "0s",
    target_size: str | int = "128MB",
    dry_run: bool = False,
    include_archived: bool = False,
    grace: str | float | None = None,
    hook: Callable[[str], None] | None = None,
) -> Result:
    """Merge small files of each partition into large ones sorted by run, key, step.

    Only files older than ``older_than`` and smaller than half of ``target_size`` are
    merged; a partition needs at least two of them that are not compaction outputs.
    Writers keep appending meanwhile.

    Raises:
        ConfigError: an unreadable duration or size.
        StoreError: the store cannot be written, or another operation holds the lock.
    """
    started = time.perf_counter()
    store_obj = open_store(store)
    age = parse_duration(older_than, what="--older-than")
    target = parse_size(target_size, what="--target-size")
    if target <= 0:
        raise ConfigError("Invalid --target-size 0: must be positive")
    grace_s, temp_age = _grace(store_obj, grace)
    result = Result("compact", dry_run)
    tiers = [HOT] + ([ARCHIVE] if include_archived else [])
    with txnlog.maintenance_lock(store_obj):
        store_obj.ensure_initialized()
        if not dry_run:
            result.temp_files_swept += txnlog.collect_garbage(
                store_obj, grace=grace_s, temp_age=temp_age
            ).temp_files_swept
        now = time.time()
        for tier in tiers:
            if tier == ARCHIVE and txnlog.registered_archive(store_obj) is None:
                continue
            source = txnlog.tier_store(store_obj, tier)
            hidden = txnlog.read_log(store_obj).hidden()
            groups: dict[tuple[str, str, str], list[FileEntry]] = defaultdict(list)
            # Summaries are not compacted on their own: each compacted metrics or costs
            # file gets a fresh twin summary (Transaction.add_output) and its inputs'
            # twins go with it.
            twin_kinds = set(events.TWINS.values())
            twins: dict[tuple[str, str, str, str], FileEntry] = {}
            for entry in visible_files(store_obj, tier, None, hidden):
                if entry.kind in twin_kinds:
                    twins[(entry.kind, entry.project, entry.date, entry.name)] = entry
                    continue
                if project is not None and entry.project != project:
                    continue
                if entry.size * 2 >= target or now - entry.mtime < age:
                    continue
                groups[(entry.kind, entry.project, entry.date)].append(entry)
            for (kind, proj, date), group in sorted(groups.items()):
                # Needs two files not yet compacted: a lone new file (e.g. the previous
                # compaction's own event) waits, so repeated runs converge.
                if sum(1 for e in group if not e.name.startswith("c-")) < 2:
                    continue
                size = sum(e.size for e in group)
                result.files += len(group)
                result.bytes_moved += size
                if dry_run:
                    result.rows += sum(_num_rows(source, e) for e in group)
                    result.files_written += max(1, math.ceil(size / target))
                    continue
                txn = Transaction(store_obj, "compact")
                table = _sorted(_read_files(source, group, kind), kind)
                pieces = max(1, math.ceil(size / target))
                per = math.ceil(table.num_rows / pieces) or 1
                for offset in range(0, max(table.num_rows, 1), per):
                    txn.add_output(tier, kind, proj, date, table.slice(offset, per), "c")
                for entry in group:
                    txn.add_input(tier, entry)
                    twin_kind = events.TWINS.get(kind)
                    twin = twins.get((twin_kind or "", entry.project, entry.date, entry.name))
                    if twin is not None:
                        txn.add_input(tier, twin)
                written = txn.commit(hook)
                result.rows += table.num_rows
                result.files_written += len(txn.outputs)
                result.bytes_freed += size - written
        if not dry_run and result.files:
            txn = Transaction(store_obj, "compact")
            projects = {project} if project else _projects(store_obj)
            _maintenance_events(txn, projects, {"files": result.files, "rows": result.rows})
            txn.commit(hook)
        if dry_run:
            result.seconds = time.perf_counter() - started
            return result
        return _finish(store_obj, result, grace_s, temp_age, started)


def _projects(store: Store) -> set[str]:
    return {e.project for e in txnlog.list_event_files(store, ("runs",))} or set()


def settle(
    store: str | os.PathLike[str] | Store | None = None, *, grace: str | float | None = None
) -> txnlog.GcReport:
    """Wait out the grace period, then delete the files the last operation replaced.

    The CLI calls this after a lifecycle verb (unless ``--no-wait``), so the store is
    small and fast when the command returns; library callers may call it, or leave the
    clean-up to the next operation.
    """
    store_obj = open_store(store)
    grace_s, _ = _grace(store_obj, grace)
    # Object stores date objects to the second: ages there get one more second.
    wait = grace_s + (0.0 if store_obj.is_local else 1.0)
    if wait > 0:
        time.sleep(wait + 0.05)
    return collect_garbage(store_obj, grace=grace_s)


def collect_garbage(
    store: str | os.PathLike[str] | Store | None = None, *, grace: str | float | None = None
) -> txnlog.GcReport:
    """Finish interrupted operations and sweep stale temp files (``ledger gc``)."""
    store_obj = open_store(store)
    grace_s, temp_age = _grace(store_obj, grace)
    with txnlog.maintenance_lock(store_obj):
        return txnlog.collect_garbage(store_obj, grace=grace_s, temp_age=temp_age)


# -- archive / restore -----------------------------------------------------------------------


def _check_writable(location: str) -> None:
    """Prove the archive target takes files before anything moves (then undo the probe).

    Raises:
        StoreError: the target is not a directory or cannot be written.
    """
    if "://" in location and not location.startswith("file://"):
        # An object store: PUT and delete a probe object (a missing bucket, wrong
        # endpoint or read-only credentials all fail here, before anything moves).
        try:
            target = open_store(location)
            probe = target.path(txnlog.LIFECYCLE_DIR, f".probe.{new_id()}.tmp")
            with target.fs.open_output_stream(probe) as sink:
                sink.write(b"ok")
            target.fs.delete_file(probe)
        except (OSError, LedgerError) as exc:
            raise StoreError(
                f"Archive target {location} is not writable ({exc}); nothing was moved"
            ) from exc
        return
    path = location[len("file://") :] if location.startswith("file://") else location
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(f"Archive target {location} exists and is not a directory")
    created = []
    probe_dir = path
    while not os.path.exists(probe_dir):
        created.append(probe_dir)
        parent = os.path.dirname(probe_dir)
        if parent == probe_dir:
            break
        probe_dir = parent
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe.{os.getpid()}.tmp")
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        raise StoreError(
            f"Archive target {location} is not writable ({exc.strerror or exc}); nothing was moved"
        ) from exc
    finally:
        for directory in created:
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def select_archive(
    infos: dict[str, RunInfo],
    *,
    cutoff_us: int,
    project: str | None = None,
    statuses: Sequence[str] | None = None,
    keep_tags: Sequence[str] = (),
    runs: Sequence[str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Hot runs to archive (whole families) and the runs left alone with the reason."""
    hot = {k: v for k, v in infos.items() if v.tier == HOT}
    skipped: dict[str, str] = {}
    chosen: list[str] = []
    families = _families(hot)
    wanted_roots: set[str]
    if runs is not None:
        wanted_roots = {_root_of(hot, r) for r in runs if r in hot}
    else:
        wanted_roots = set(families)
    for root in sorted(wanted_roots):
        info = hot[root]
        if runs is None:
            if project is not None and info.project != project:
                continue
            if not info.ended or (info.last_end_us or 0) > cutoff_us:
                continue
            if statuses and info.status not in statuses:
                continue
        reason = None
        for member in families[root]:
            m = hot[member]
            if m.pinned:
                reason = f"run {member} is pinned"
            elif not m.ended:
                reason = f"run {member} is still running"
            elif any(_tag_matches(m.tags, t) for t in keep_tags):
                reason = f"run {member} has a kept tag"
            if reason:
                break
        if reason:
            skipped[root] = reason
            continue
        chosen.extend(families[root])
    return chosen, skipped


def _tag_matches(tags: dict[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    if key not in tags:
        return False
    return not sep or tags[key] == value


def archive(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    older_than: str | float = "90d",
    to: str | None = None,
    project: str | None = None,
    status: str | Sequence[str] | None = None,
    keep_tags: Sequence[str] = (),
    runs: Sequence[str] | None = None,
    dry_run: bool = False,
    grace: str | float | None = None,
    hook: Callable[[str], None] | None = None,
) -> Result:
    """Move finished runs that ended before the cut-off to the archive tier.

    Whole runs move (every kind, children with their parents, their artifacts too).
    Pinned runs, runs still running and runs with a ``keep_tags`` tag (``KEY`` or
    ``KEY=VALUE``) stay, with their whole family.

    Raises:
        ConfigError: unreadable ``older_than`` or unknown ``status``.
        StoreError: the archive target cannot be written (nothing is changed then).
    """
    started = time.perf_counter()
    store_obj = open_store(store)
    cutoff = time.time() - parse_duration(older_than, what="--older-than")
    statuses = [status] if isinstance(status, str) else list(status or [])
    for name in statuses:
        if name not in events.TERMINAL_STATUSES:
            raise ConfigError(
                f"Unknown --status {name!r}. Archivable: {', '.join(events.TERMINAL_STATUSES)}"
            )
    grace_s, temp_age = _grace(store_obj, grace)
    location = txnlog.archive_location(store_obj, to)
    result = Result("archive", dry_run, target=location)
    with txnlog.maintenance_lock(store_obj):
        store_obj.ensure_initialized()
        infos = load_runs(store_obj)
        already: dict[str, str] = {}
        if runs is not None:
            # Idempotent: naming a run that is already archived is not an error.
            runs = resolve_runs(infos, runs)
            already = {r: "already archived" for r in runs if infos[r].tier != HOT}
        chosen, result.skipped = select_archive(
            infos,
            cutoff_us=int(cutoff * 1e6),
            project=project,
            statuses=statuses,
            keep_tags=keep_tags,
            runs=runs,
        )
        result.runs = chosen
        result.skipped.update(already)
        if not chosen:
            result.seconds = time.perf_counter() - started
            return result
        _check_writable(location)
        if not dry_run:
            txnlog.register_archive(store_obj, location)
            archive_store = txnlog.tier_store(store_obj, ARCHIVE)
            try:
                archive_store.ensure_initialized()
            except (OSError, StoreError) as exc:
                raise StoreError(f"Archive target {location} is not writable: {exc}") from exc
        hidden = txnlog.read_log(store_obj).hidden()
        txn = Transaction(store_obj, "archive")
        _plan_move(store_obj, txn, HOT, ARCHIVE, set(chosen), hidden, result, build=not dry_run)
        blobs = _artifact_blobs(store_obj, HOT, set(chosen), hidden)
        if dry_run:
            result.bytes_moved += sum(size for _, size in blobs.values())
            result.seconds = time.perf_counter() - started
            return result
        archive_store = txnlog.tier_store(store_obj, ARCHIVE)
        for uri in blobs:
            _copy_blob(store_obj, archive_store, uri)
        now = _now_us()
        _add_events(
            txn,
            ARCHIVE,
            _group_events(infos, chosen, "archived", now, {"to": location, "op": txn.id}),
        )
        _maintenance_events(
            txn, {infos[r].project for r in chosen}, {"runs": len(chosen), "to": location}
        )
        _commit(txn, result, hook)
        result.bytes_moved += sum(size for _, size in blobs.values())
        _drop_unreferenced_blobs(store_obj, HOT, blobs, result)
        return _finish(store_obj, result, grace_s, temp_age, started)


def restore(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    runs: Sequence[str] = (),
    all_runs: bool = False,
    older_than: str | float | None = None,
    project: str | None = None,
    dry_run: bool = False,
    grace: str | float | None = None,
    hook: Callable[[str], None] | None = None,
) -> Result:
    """Bring archived runs (with their families and artifacts) back to the hot tier.

    Raises:
        LedgerError: nothing selected (no runs, ``--all`` or ``--older-than`` given).
        RunNotFoundError: a given run is not in the archive.
    """
    started = time.perf_counter()
    store_obj = open_store(store)
    if not runs and not all_runs and older_than is None:
        raise LedgerError("Name runs to restore, or use --all or --older-than")
    cutoff = (
        None
        if older_than is None
        else time.time() - parse_duration(older_than, what="--older-than")
    )
    grace_s, temp_age = _grace(store_obj, grace)
    result = Result("restore", dry_run)
    with txnlog.maintenance_lock(store_obj):
        archive_store = txnlog.registered_archive(store_obj)
        if archive_store is None:
            if runs:
                raise RunNotFoundError(f"No archived run {runs[0]!r}: this store has no archive")
            return result
        result.target = archive_store.uri
        infos = load_runs(store_obj)
        archived = {k: v for k, v in infos.items() if v.tier == ARCHIVE}
        if runs:
            # Idempotent: naming a run that is already hot is not an error.
            wanted = [r for r in resolve_runs(infos, runs) if r in archived]
            result.skipped = {r: "not archived" for r in runs if r in infos and r not in archived}
        else:
            wanted = [
                r
                for r, info in archived.items()
                if (project is None or info.project == project)
                and (cutoff is None or (info.last_end_us or 0) <= cutoff * 1e6)
            ]
        families = _families(archived)
        chosen: list[str] = []
        for root in sorted({_root_of(archived, r) for r in wanted}):
            chosen.extend(families[root])
        result.runs = chosen
        if not chosen:
            return result
        hidden = txnlog.read_log(store_obj).hidden()
        txn = Transaction(store_obj, "restore")
        _plan_move(store_obj, txn, ARCHIVE, HOT, set(chosen), hidden, result, build=not dry_run)
        blobs = _artifact_blobs(store_obj, ARCHIVE, set(chosen), hidden)
        if dry_run:
            result.bytes_moved += sum(size for _, size in blobs.values())
            result.seconds = time.perf_counter() - started
            return result
        for uri in blobs:
            _copy_blob(archive_store, store_obj, uri)
        _add_events(txn, HOT, _group_events(infos, chosen, "restored", _now_us(), {"op": txn.id}))
        _maintenance_events(txn, {infos[r].project for r in chosen}, {"runs": len(chosen)})
        _commit(txn, result, hook)
        result.bytes_moved += sum(size for _, size in blobs.values())
        _drop_unreferenced_blobs(store_obj, ARCHIVE, blobs, result)
        return _finish(store_obj, result, grace_s, temp_age, started)


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _group_events(
    infos: dict[str, RunInfo],
    run_ids: Iterable[str],
    event: str,
    ts: int,
    attrs: dict[str, Any],
    message: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    import datetime as dt

    when = dt.datetime.fromtimestamp(ts / 1e6, dt.timezone.utc)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run_id in run_ids:
        grouped[infos[run_id].project].append(
            {
                "run_id": run_id,
                "event": event,
                "ts": when,
                "message": message,
                "attrs": json.dumps(attrs, sort_keys=True),
            }
        )
    return grouped


# -- artifacts -------------------------------------------------------------------------------


def _artifact_rows(store: Store, tier: str, hidden: set) -> list[dict]:
    if tier == ARCHIVE and txnlog.registered_archive(store) is None:
        return []
    target = txnlog.tier_store(store, tier)
    entries = visible_files(store, tier, ["artifacts"], hidden)
    return _scan(target, entries, ["run_id", "uri", "size"], "artifacts")


def _artifact_blobs(
    store: Store, tier: str, run_ids: set[str], hidden: set
) -> dict[str, tuple[str, int]]:
    """Stored blobs (uri -> (tier, size)) referenced by ``run_ids`` in ``tier``."""
    blobs: dict[str, tuple[str, int]] = {}
    for row in _artifact_rows(store, tier, hidden):
        uri = row["uri"] or ""
        if row["run_id"] in run_ids and uri.startswith("artifacts/sha256/"):
            blobs[uri] = (tier, int(row["size"] or 0))
    return blobs


def _copy_blob(source: Store, target: Store, uri: str) -> None:
    src = source.artifact_path(uri)
    dst = target.artifact_path(uri)
    if not source.exists(src) or target.exists(dst):
        return
    if target.is_local and source.is_local:
        import shutil
        import uuid

        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmp = f"{os.path.dirname(dst)}/.{os.path.basename(dst)}.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return
    with source.fs.open_input_stream(src) as reader, target.fs.open_output_stream(dst) as sink:
        while chunk := reader.read(1 << 20):
            sink.write(chunk)


def _drop_unreferenced_blobs(
    store: Store,
    tier: str,
    blobs: dict[str, tuple[str, int]],
    result: Result,
    referencing_tiers: Sequence[str] | None = None,
) -> None:
    """After the commit: remove ``tier``'s copies that no visible artifact row still uses
    (rows of ``referencing_tiers``, default ``tier`` itself)."""
    hidden = txnlog.read_log(store).hidden()
    still: set[str] = set()
    for other in referencing_tiers or [tier]:
        still.update(row["uri"] for row in _artifact_rows(store, other, hidden))
    target = txnlog.tier_store(store, tier)
    for uri, (_, size) in blobs.items():
        if uri in still:
            continue
        try:
            target.fs.delete_file(target.artifact_path(uri))
            result.bytes_freed += size
        except FileNotFoundError:
            pass


# -- purge -----------------------------------------------------------------------------------


def purge(
    store: str | os.PathLike[str] | Store | None = None,
    runs: Sequence[str] = (),
    *,
    yes: bool = False,
    force: bool = False,
    dry_run: bool = False,
    kinds: Sequence[str] | None = None,
    grace: str | float | None = None,
    hook: Callable[[str], None] | None = None,
) -> Result:
    """Hard-delete runs from both tiers: their events, and artifacts no one else uses.

    Records one ``deleted`` event per run (message ``purged``) holding no purged content.
    ``kinds`` limits the purge to some event kinds (retention uses ``("artifacts",)`` to
    drop artifacts but keep metrics).

    Raises:
        LedgerError: without ``yes`` (purge cannot be undone).
        RunStateError: a run is pinned and ``force`` is not set, or still running.
        RunNotFoundError / AmbiguousRunError: for unknown references.
    """
    started = time.perf_counter()
    store_obj = open_store(store)
    if not runs:
        raise LedgerError("Name the runs to purge (ids or unique id prefixes)")
    if not yes and not dry_run:
        raise LedgerError(
            "Purge permanently deletes the runs' events and artifacts from the hot store and "
            "the archive; it cannot be undone. Re-run with --yes (or --dry-run to preview)"
        )
    for kind in kinds or ():
        if kind not in events.KINDS:
            raise ConfigError(f"Unknown kind {kind!r}. Known: {', '.join(events.KINDS)}")
    grace_s, temp_age = _grace(store_obj, grace)
    result = Result("purge", dry_run)
    with txnlog.maintenance_lock(store_obj):
        store_obj.ensure_initialized()
        infos = load_runs(store_obj)
        chosen = resolve_runs(infos, runs)
        for run_id in chosen:
            if infos[run_id].pinned and not force:
                raise RunStateError(f"Run {run_id} is pinned; purge it with --force (or unpin it)")
            if not infos[run_id].ended:
                raise RunStateError(f"Run {run_id} is still running; end it before purging")
        result.runs = chosen
        hidden = txnlog.read_log(store_obj).hidden()
        txn = Transaction(store_obj, "purge")
        tiers = [HOT] + ([ARCHIVE] if txnlog.registered_archive(store_obj) else [])
        selected_kinds = tuple(kinds) if kinds else events.KINDS
        blobs: dict[str, tuple[str, int]] = {}
        for tier in tiers:
            _plan_move(
                store_obj,
                txn,
                tier,
                None,
                set(chosen),
                hidden,
                result,
                kinds=selected_kinds,
                build=not dry_run,
            )
            if "artifacts" in selected_kinds:
                for uri, value in _artifact_blobs(store_obj, tier, set(chosen), hidden).items():
                    blobs[f"{tier}:{uri}"] = value
        if dry_run:
            result.bytes_freed += sum(size for _, size in blobs.values())
            result.seconds = time.perf_counter() - started
            return result
        what = "purged" if kinds is None else f"purged {','.join(selected_kinds)}"
        # A whole-run purge is a `deleted` event; a partial one (retention dropping
        # artifacts) is a `note`, since the run itself lives on.
        event = "deleted" if kinds is None else "note"
        _add_events(
            txn,
            HOT,
            _group_events(infos, chosen, event, _now_us(), {"op": txn.id}, message=what),
        )
        _maintenance_events(txn, {infos[r].project for r in chosen}, {"runs": len(chosen)})
        _commit(txn, result, hook)
        for tier in tiers:
            tier_blobs = {k.split(":", 1)[1]: v for k, v in blobs.items() if v[0] == tier}
            _drop_unreferenced_blobs(store_obj, tier, tier_blobs, result, tiers)
        return _finish(store_obj, result, grace_s, temp_age, started)


# -- pin / unpin -----------------------------------------------------------------------------


def pin(
    store: str | os.PathLike[str] | Store | None = None,
    runs: Sequence[str] = (),
    *,
    on: bool = True,
) -> list[str]:
    """Pin (or unpin) runs: pinned runs are never archived, and purge needs ``force``.

    Raises:
        RunNotFoundError / AmbiguousRunError: for unknown references.
    """
    from ledger.writer import writer_for

    store_obj = open_store(store)
    if not runs:
        raise LedgerError("Name the runs to pin (ids or unique id prefixes)")
    infos = load_runs(store_obj)
    chosen = resolve_runs(infos, runs)
    writer = writer_for(store_obj)
    for run_id in chosen:
        writer.add_event(
            "runs",
            infos[run_id].project,
            {"run_id": run_id, "event": "pinned" if on else "unpinned"},
        )
    if not writer.flush():
        raise StoreError(f"Could not write to {store_obj.uri}; the pin is still buffered")
    return chosen
