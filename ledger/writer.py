"""Buffered, background writer: the only code that turns logged values into files.

The hot path (``Run.log_metric``) appends one tuple to a plain list and returns; this
module's flusher thread turns those lists into Parquet files by size or time, at run end,
at interpreter exit and on SIGTERM (DESIGN.md invariant 6).

Thread safety without a lock on the hot path: the flusher takes ``n = len(rows)`` then
``rows[:n]`` and ``del rows[:n]``. Each of those is one atomic operation under the GIL
and a concurrent ``append`` only ever adds at the end, so no row is taken twice or lost.

A failed write never raises into training: the built file stays pending under the same
name (a retry replaces rather than duplicates), one warning is logged, the failure is
recorded on the affected runs, and the flusher retries with backoff.
"""

from __future__ import annotations

# pyarrow imports pandas, which imports concurrent.futures.thread, which registers a
# threading atexit hook; done for the first time during interpreter shutdown (the final
# flush) that raises "can't register atexit after shutdown". Import it up front (~5 ms).
import concurrent.futures.thread  # noqa: F401
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.ids import new_id

if TYPE_CHECKING:
    import pyarrow as pa

    from ledger.store import Store

log = logging.getLogger("ledger")

_US_PER_DAY = 86_400_000_000
_MAX_BACKOFF_S = 30.0


def now_us() -> int:
    """Current UTC time in integer microseconds (the store's timestamp unit)."""
    return time.time_ns() // 1000


class RunBuffer:
    """In-memory rows of one open run for the high-volume kinds."""

    __slots__ = (
        "batches",
        "closed",
        "heartbeat",
        "last_heartbeat",
        "metrics",
        "project",
        "run_id",
        "system",
    )

    def __init__(self, run_id: str, project: str, *, heartbeat: bool) -> None:
        self.run_id = run_id
        self.project = project
        self.metrics: list[tuple[str, float, int, float]] = []
        """``(key, value, step, unix_seconds)`` rows appended by the hot path."""
        self.batches: list[tuple[tuple[str, ...], tuple[float, ...], int, float]] = []
        """``(keys, values, step, unix_seconds)``: one ``log_metrics`` call each."""
        self.system: list[tuple[str, str, float, float]] = []
        """``(device, key, value, unix_seconds)`` samples."""
        self.heartbeat = heartbeat
        self.last_heartbeat = time.monotonic()
        self.closed = False


class _PendingFile:
    __slots__ = ("directory", "kind", "name", "run_ids", "table")

    def __init__(
        self, kind: str, directory: str, name: str, table: pa.Table, run_ids: list[str]
    ) -> None:
        self.kind = kind
        self.directory = directory
        self.name = name
        self.table = table
        self.run_ids = run_ids


_IDLE_S = 0.05
"""A deferred flush waits no longer once this process has had no live run this long."""


class Writer:
    """One per (process, store): owns the flusher thread and the writer id."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = store.settings
        self._buffers: list[RunBuffer] = []
        self._events: list[tuple[str, str, dict[str, Any]]] = []
        self._recorded: list[tuple[str, str, list[tuple[str, float, int, float]]]] = []
        """``(project, run_id, metric rows)`` of runs recorded after the fact."""
        self._reset_identity()
        self.rows_written = 0
        self.bytes_written = 0
        self.files_written = 0

    def _reset_identity(self) -> None:
        self.writer_id = new_id()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_no = 0
        self._seq = {"metrics": 0, "system": 0}
        self._pending: list[_PendingFile] = []
        self._failures = 0
        self._next_retry = 0.0
        self._warned = False
        self._last_flush = time.monotonic()
        self._due = math.inf  # when a request_flush(within=...) falls due
        self._deferred_at = 0.0  # when the last one was made
        # Called at the start of every flush (see add_producer); reset here because a
        # forked child must not produce its parent's queued rows a second time.
        self._producers: list[Callable[[], None]] = []

    # -- what runs hand over -----------------------------------------------------------------

    def open_buffer(self, run_id: str, project: str, *, heartbeat: bool) -> RunBuffer:
        buffer = RunBuffer(run_id, project, heartbeat=heartbeat)
        self._buffers.append(buffer)
        self._ensure_thread()
        return buffer

    def add_producer(self, producer: Callable[[], None]) -> None:
        """Call ``producer()`` at the start of every flush, before the rows are gathered.

        For adapters that queue records cheaply on the caller's thread and turn them into
        events in one batch (the flusher's thread, or whoever flushes): ``ledger.flush()``,
        the periodic flush and the final flush at exit all include them. A producer must
        handle its own records' errors; one that raises anyway gets a warning and is
        called again at the next flush.
        """
        self._producers.append(producer)  # _collect iterates over a copy
        self._ensure_thread()

    def remove_producer(self, producer: Callable[[], None]) -> None:
        if producer in self._producers:
            self._producers.remove(producer)

    def add_metric_rows(
        self, project: str, run_id: str, rows: list[tuple[str, float, int, float]]
    ) -> None:
        """Queue the validated metric points of a run recorded after the fact (an Optuna
        trial, a search candidate). Many such runs become one table per flush; a
        :class:`RunBuffer` each would cost a table each (~85 us per run)."""
        if rows:
            self._recorded.append((project, run_id, rows))
            self._ensure_thread()

    def add_event(self, kind: str, project: str, row: dict[str, Any]) -> None:
        """Queue one low-volume event; ``event_id``, ``ts`` and ``writer_id`` default."""
        row.setdefault("event_id", new_id())
        row.setdefault("ts", now_us())
        self._events.append((kind, project, row))
        self._ensure_thread()

    def request_flush(self, within: float = 0.0) -> None:
        """Ask the flusher to write soon, without waiting for it.

        ``within``: seconds the write may wait (never past the next periodic flush), so
        that events of runs ending soon after share one flush: a batch worker ending a
        run every few hundred milliseconds otherwise pays one flush (~5 files) per run.
        """
        if within <= 0:
            self._wake.set()
            return
        now = time.monotonic()
        self._deferred_at = now
        self._due = min(self._due, now + min(within, self.settings.flush_interval))
        self._ensure_thread()

    def buffered_rows(self) -> int:
        """Rows waiting to be written; a ``log_metrics`` call counts as its points.

        Batches are counted as calls x the latest call's width (an estimate, O(1)), so a
        run logging dicts is flushed by size as often as one logging single points: many
        smaller flushes overlap with training and each stays cache-sized.
        """
        total = len(self._events) + len(self._recorded)
        for buffer in self._buffers:
            total += len(buffer.metrics) + len(buffer.system)
            batches = buffer.batches
            with contextlib.suppress(IndexError):  # empty, or emptied by a flush just now
                total += len(batches) * max(1, len(batches[-1][0]))
        return total

    # -- flushing ------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write everything buffered now. Returns False if some files are still pending."""
        with self._flush_lock:
            self._due = math.inf  # this flush takes what was requested so far
            # Rounds for what is buffered now, not for what training adds meanwhile.
            rounds = 1 + self.buffered_rows() // self.settings.flush_rows
            for _ in range(rounds):
                try:
                    more = self._collect()
                except Exception as exc:  # never let a bad row kill the flusher
                    self._report_failure(exc, [])
                    more = False
                written = self._write_pending()
                if not written or not more:
                    break
            return written

    def _collect(self) -> bool:
        """Build the files of about ``flush_rows`` points at most per kind.

        Returns True when rows were left for another round. Bounding each file keeps the
        flush's arrays cache- and allocator-friendly (a 10-million-point flush spends
        more time faulting in fresh pages than converting) and its memory flat.
        """
        for producer in list(self._producers):
            try:
                producer()
            except Exception as exc:  # the flush of everything else goes on
                log.warning("ledger: %r failed: %s: %s", producer, type(exc).__name__, exc)
        limit = self.settings.flush_rows
        room = {"metrics": limit, "system": limit}
        more = False
        tables: dict[tuple[str, str], list[pa.Table]] = defaultdict(list)
        run_ids: dict[tuple[str, str], list[str]] = defaultdict(list)
        taken: list[tuple[list[Any], int]] = []
        for buffer in list(self._buffers):
            sources: tuple[tuple[str, list[Any], Any], ...] = (
                ("metrics", buffer.metrics, self._metric_table),
                ("metrics", buffer.batches, self._batch_table),
                ("system", buffer.system, self._system_table),
            )
            for kind, rows, build in sources:
                n = len(rows)
                if n:
                    width = max(1, len(rows[0][0])) if rows is buffer.batches else 1
                    n = min(n, max(0, room[kind]) // width)
                    if not n and room[kind] == limit:
                        n = 1  # one call wider than the limit still goes out
                    room[kind] -= n * width
                    more = more or n < len(rows)
                if n:
                    tables[(kind, buffer.project)].append(build(buffer.run_id, rows[:n]))
                    run_ids[(kind, buffer.project)].append(buffer.run_id)
                    taken.append((rows, n))
        n = len(self._recorded)
        if n:
            by_project: dict[str, list[tuple[str, list[Any]]]] = defaultdict(list)
            for project, run_id, rows in self._recorded[:n]:
                by_project[project].append((run_id, rows))
            for project, items in by_project.items():
                tables[("metrics", project)].append(self._recorded_table(items))
                run_ids[("metrics", project)].extend(run_id for run_id, _ in items)
            taken.append((self._recorded, n))
        n = len(self._events)
        if n:
            grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            for kind, project, row in self._events[:n]:
                row["writer_id"] = self.writer_id
                grouped[(kind, project)].append(row)
            for target, event_rows in grouped.items():
                schema = events.arrow_schema(target[0])
                tables[target].append(_table_from_rows(event_rows, schema))
                run_ids[target].extend(row["run_id"] for row in event_rows)
            taken.append((self._events, n))
        # Only now, with every table built, take the rows out: if building failed (no
        # pyarrow, a value Arrow refuses), everything stays buffered for the next try.
        for rows, count in taken:
            del rows[:count]
        for buffer in list(self._buffers):
            if buffer.closed and not (buffer.metrics or buffer.batches or buffer.system):
                self._buffers.remove(buffer)
        if not tables:
            return more
        import pyarrow as pa

        self._flush_no += 1
        name = f"{self.writer_id}-{self._flush_no:06d}.parquet"
        for (kind, project), parts in tables.items():
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            for day, part in _split_by_day(table):
                directory = self.store.partition_dir(kind, project, day)
                ids = sorted(set(run_ids[(kind, project)]))
                self._pending.append(_PendingFile(kind, directory, name, part, ids))
                if kind in events.TWINS:
                    self._queue_summary(kind, project, day, name, part, ids)
        return more

    def _queue_summary(
        self, kind: str, project: str, day: Any, name: str, table: pa.Table, run_ids: list[str]
    ) -> None:
        # The twin summary goes after its metrics/costs file (writes are in order), so a
        # crash between them leaves raw events that readers still fold. A summary is only
        # a speed-up: if it cannot be built, readers fold the raw events instead.
        from ledger.summaries import summarize_twin

        try:
            summary = summarize_twin(kind, table)
        except Exception as exc:
            log.warning(
                "ledger: no %s summary for %s (%s: %s)", kind, name, type(exc).__name__, exc
            )
            return
        twin_kind = events.TWINS[kind]
        twin = self.store.partition_dir(twin_kind, project, day)
        self._pending.append(_PendingFile(twin_kind, twin, name, summary, run_ids))

    def _metric_table(self, run_id: str, chunk: list[tuple[str, float, int, float]]) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        n = len(chunk)
        seq = self._take_seq("metrics", n)
        return pa.table(
            {
                "run_id": _constant(run_id, n),
                "key": _dictionary(map(itemgetter(0), chunk), n),
                "value": np.fromiter(map(itemgetter(1), chunk), np.float64, n),
                "step": self._steps(run_id, list(map(itemgetter(2), chunk))),
                "ts": _timestamps(np.fromiter(map(itemgetter(3), chunk), np.float64, n)),
                "writer_id": _constant(self.writer_id, n),
                "seq": np.arange(seq, seq + n, dtype=np.int64),
            }
        )

    def _recorded_table(self, items: list[tuple[str, list[Any]]]) -> pa.Table:
        """One metrics table for the points of many runs (``add_metric_rows``)."""
        import numpy as np
        import pyarrow as pa

        lengths = np.fromiter((len(rows) for _, rows in items), np.int64, len(items))
        flat = list(chain.from_iterable(rows for _, rows in items))
        n = len(flat)
        seq = self._take_seq("metrics", n)
        owners = np.repeat(np.arange(len(items), dtype=np.int32), lengths)
        return pa.table(
            {
                "run_id": pa.DictionaryArray.from_arrays(
                    pa.array(owners), [run_id for run_id, _ in items]
                ),
                "key": _dictionary(map(itemgetter(0), flat), n),
                "value": np.fromiter(map(itemgetter(1), flat), np.float64, n),
                "step": self._steps("", list(map(itemgetter(2), flat))),
                "ts": _timestamps(np.fromiter(map(itemgetter(3), flat), np.float64, n)),
                "writer_id": _constant(self.writer_id, n),
                "seq": np.arange(seq, seq + n, dtype=np.int64),
            }
        )

    def _batch_table(
        self, run_id: str, chunk: list[tuple[tuple[str, ...], tuple[float, ...], int, float]]
    ) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        # Calls of one run mostly repeat a few key tuples ("patterns"): map each call to
        # its pattern once, then build the per-point key codes, steps and times with
        # numpy, instead of touching every point's key string in Python.
        calls = len(chunk)
        key_tuples = list(map(itemgetter(0), chunk))
        patterns = {pattern: index for index, pattern in enumerate(dict.fromkeys(key_tuples))}
        pattern_of_call = np.fromiter(map(patterns.__getitem__, key_tuples), np.intp, calls)
        names = {name: code for code, name in enumerate(dict.fromkeys(chain(*patterns)))}
        pattern_codes = [np.array([names[k] for k in p], np.int32) for p in patterns]
        widths = np.array([len(p) for p in patterns], np.int64)
        if len(patterns) == 1:
            lengths: Any = int(widths[0])
            n = lengths * calls
            key_codes = np.tile(pattern_codes[0], calls)
        else:
            lengths = widths[pattern_of_call]
            n = int(lengths.sum())
            flat = np.concatenate(pattern_codes)
            pattern_start = np.cumsum(widths) - widths
            call_start = np.cumsum(lengths) - lengths
            within = np.arange(n) - np.repeat(call_start, lengths)
            key_codes = flat[np.repeat(pattern_start[pattern_of_call], lengths) + within]
        seq = self._take_seq("metrics", n)
        steps = self._steps(run_id, list(map(itemgetter(2), chunk)))
        micros = _micros(np.fromiter(map(itemgetter(3), chunk), np.float64, calls))
        return pa.table(
            {
                "run_id": _constant(run_id, n),
                "key": pa.DictionaryArray.from_arrays(
                    pa.array(key_codes), pa.array(list(names), pa.string())
                ),
                "value": np.fromiter(chain.from_iterable(map(itemgetter(1), chunk)), np.float64, n),
                "step": pa.array(np.repeat(steps.to_numpy(zero_copy_only=False), lengths))
                if steps.null_count == 0
                else steps.take(pa.array(np.repeat(np.arange(calls), lengths))),
                "ts": pa.array(np.repeat(micros, lengths)).cast(pa.timestamp("us", tz="UTC")),
                "writer_id": _constant(self.writer_id, n),
                "seq": np.arange(seq, seq + n, dtype=np.int64),
            }
        )

    def _steps(self, run_id: str, steps: list[int]) -> pa.Array:
        import numpy as np
        import pyarrow as pa

        try:
            return pa.array(np.fromiter(steps, np.int64, len(steps)))
        except OverflowError:
            # The hot path skips the 64-bit range check; say so rather than drop points.
            kept = [s if -(2**63) <= s < 2**63 else None for s in steps]
            bad = sum(1 for s in kept if s is None)
            buffer = next((b for b in self._buffers if b.run_id == run_id), None)
            if buffer is not None:
                self.add_event(
                    "runs",
                    buffer.project,
                    {
                        "run_id": run_id,
                        "event": "note",
                        "message": f"{bad} metric points had steps beyond 64 bits; stored with "
                        "step NULL",
                    },
                )
            return pa.array(kept, pa.int64())

    def _system_table(self, run_id: str, chunk: list[tuple[str, str, float, float]]) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        n = len(chunk)
        seq = self._take_seq("system", n)
        return pa.table(
            {
                "run_id": _constant(run_id, n),
                "ts": _timestamps(np.fromiter(map(itemgetter(3), chunk), np.float64, n)),
                "writer_id": _constant(self.writer_id, n),
                "seq": np.arange(seq, seq + n, dtype=np.int64),
                "device": _dictionary(map(itemgetter(0), chunk), n),
                "key": _dictionary(map(itemgetter(1), chunk), n),
                "value": np.fromiter(map(itemgetter(2), chunk), np.float64, n),
            }
        )

    def _take_seq(self, kind: str, n: int) -> int:
        first = self._seq[kind]
        self._seq[kind] = first + n
        return first

    def _write_pending(self) -> bool:
        if not self._pending:
            self._last_flush = time.monotonic()
            return True
        try:
            self.store.ensure_initialized()
            while self._pending:
                item = self._pending[0]
                size = self.store.write_parquet(item.directory, item.name, item.table, item.kind)
                self._pending.pop(0)
                self.rows_written += item.table.num_rows
                self.bytes_written += size
                self.files_written += 1
        except Exception as exc:
            self._report_failure(exc, self._pending[0].run_ids if self._pending else [])
            return False
        if self._failures:
            log.warning("ledger: writes to %s work again; nothing was lost", self.store.uri)
        self._failures = 0
        self._last_flush = time.monotonic()
        return True

    def _report_failure(self, exc: BaseException, run_ids: list[str]) -> None:
        self._failures += 1
        self._next_retry = time.monotonic() + min(2.0**self._failures, _MAX_BACKOFF_S)
        if not self._warned:
            self._warned = True
            log.warning(
                "ledger: could not write to %s (%s: %s); keeping events in memory and retrying",
                self.store.uri,
                type(exc).__name__,
                exc,
            )
            for run_id in run_ids:
                project = next((b.project for b in self._buffers if b.run_id == run_id), None)
                if project is not None:
                    self.add_event(
                        "runs",
                        project,
                        {
                            "run_id": run_id,
                            "event": "note",
                            "message": f"write failed and was retried: {type(exc).__name__}: {exc}",
                        },
                    )

    def pending_files(self) -> int:
        return len(self._pending)

    # -- the flusher thread ----------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            # pyarrow imports pandas (when installed) on first use, and pandas imports
            # concurrent.futures.thread, which cannot register its exit hook once the
            # interpreter is shutting down: a run that ends before the first background
            # flush (a script that fails at once) would lose every event at exit.
            # Importing it now, while the interpreter is alive, registers the hook in time.
            import concurrent.futures.thread  # noqa: F401

            with _threads_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._loop, name="ledger-writer", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        # Import the Parquet stack here, off the training thread, before the first flush.
        import numpy  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        interval = self.settings.flush_interval
        poll = max(0.01, min(0.2, interval))
        while True:
            # A deferred flush (request_flush(within=...)) is checked more often: it is
            # due early when this process has no live run left (see _deferred_due).
            self._wake.wait(poll if self._due == math.inf else min(poll, _IDLE_S))
            urgent = self._wake.is_set()
            self._wake.clear()
            try:
                now = time.monotonic()
                self._heartbeats(now)
                if self._pending and now < self._next_retry:
                    continue
                if (
                    urgent
                    or self._pending
                    or self._deferred_due(now)
                    or now - self._last_flush >= interval
                    or self.buffered_rows() >= self.settings.flush_rows
                ):
                    self.flush()
            except Exception as exc:  # the flusher must outlive any single failure
                self._report_failure(exc, [])

    def _deferred_due(self, now: float) -> bool:
        """A deferred flush is due at its time, or as soon as no run of this process has
        been live for _IDLE_S: a batch worker between two configs defers, one whose
        batch is over (nothing started since) writes at once, so the caller waiting for
        the batch's runs does not wait out the deferral."""
        if self._due == math.inf:
            return False
        if now >= self._due:
            return True
        if now - self._deferred_at < _IDLE_S:
            return False
        return not any(b.heartbeat and not b.closed for b in self._buffers)

    def _heartbeats(self, now: float) -> None:
        interval = self.settings.heartbeat_interval
        for buffer in self._buffers:
            if buffer.heartbeat and not buffer.closed and now - buffer.last_heartbeat >= interval:
                buffer.last_heartbeat = now
                self.add_event(
                    "runs", buffer.project, {"run_id": buffer.run_id, "event": "heartbeat"}
                )

    def close(self, attempts: int = 3) -> None:
        """Final flush (at exit): retries a few times, then says what could not be written."""
        for attempt in range(attempts):
            if self.flush():
                return
            time.sleep(0.2 * (attempt + 1))
        lost = sum(item.table.num_rows for item in self._pending) + self.buffered_rows()
        print(
            f"ledger: {lost} events could not be written to {self.store.uri} and are lost",
            file=sys.stderr,
        )

    def _after_fork_in_child(self) -> None:
        # The parent owns what it buffered; the child writes its own rows under a new id.
        for buffer in self._buffers:
            del buffer.metrics[:]
            del buffer.batches[:]
            del buffer.system[:]
        self._buffers = [b for b in self._buffers if not b.closed]
        del self._events[:]
        del self._recorded[:]
        self._reset_identity()
        if self._buffers:
            self._ensure_thread()


def _constant(value: str, n: int) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), [value])


def _dictionary(values: Iterable[str], n: int) -> pa.Array:
    # Python str objects -> dictionary array via C-level iterators (~40 ms per million);
    # pa.array over a million str objects takes ~300 ms. A flush has few distinct keys.
    import numpy as np
    import pyarrow as pa

    items = list(values)
    codes = {value: index for index, value in enumerate(dict.fromkeys(items))}
    indices = np.fromiter(map(codes.__getitem__, items), np.int32, n)
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(list(codes), pa.string()))


def _micros(seconds: Any) -> Any:
    return (seconds * 1e6).astype("int64")


def _timestamps(seconds: Any) -> pa.Array:
    import pyarrow as pa

    return pa.array(_micros(seconds), pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _table_from_rows(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    import pyarrow as pa

    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_timestamp(field.type):
            columns[field.name] = pa.array(values, pa.int64()).cast(field.type)
        else:
            columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=schema)


def _split_by_day(table: pa.Table) -> list[tuple[Any, pa.Table]]:
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:  # e.g. only log_metrics({}) calls: nothing to write
        return []
    micros = table.column("ts").cast(pa.int64()).to_numpy()
    days = np.floor_divide(micros, _US_PER_DAY)
    first, last = int(days.min()), int(days.max())
    epoch = dt.date(1970, 1, 1)
    if first == last:
        return [(epoch + dt.timedelta(days=first), table)]
    parts = []
    day_array = pa.array(days)
    for day in np.unique(days):
        parts.append((epoch + dt.timedelta(days=int(day)), table.filter(pc.equal(day_array, day))))
    return parts


_threads_lock = threading.Lock()
_writers: dict[int, Writer] = {}


def writer_for(store: Store) -> Writer:
    """The process's writer for ``store``."""
    writer = _writers.get(id(store))
    if writer is None:
        with _threads_lock:
            writer = _writers.get(id(store))
            if writer is None:
                writer = _writers[id(store)] = Writer(store)
    return writer


def all_writers() -> list[Writer]:
    return list(_writers.values())


def flush_all() -> bool:
    """Flush every writer of this process; True when nothing is left pending."""
    return all([writer.flush() for writer in all_writers()])


def _after_fork_in_child() -> None:
    global _threads_lock
    _threads_lock = threading.Lock()
    for writer in _writers.values():
        writer._after_fork_in_child()
    if _writers and "multiprocessing" in sys.modules:
        # multiprocessing's fork children leave through os._exit, skipping atexit, but run
        # its finalizers. It clears the finalizer registry right after fork, then runs
        # its after-fork hooks: register the final flush from one of those.
        from multiprocessing import util

        util.register_after_fork(_fork_token, _register_final_flush)


class _ForkToken:
    """A long-lived object to key multiprocessing's (weak) after-fork registry."""


_fork_token = _ForkToken()


def _register_final_flush(_: object) -> None:
    from multiprocessing import util

    util.Finalize(None, flush_all, exitpriority=100)


def _before_fork() -> None:
    # A fork while a flusher thread is still importing the Parquet stack (it does so in
    # the background at start) would leave the child a held import lock and a deadlock at
    # its first flush. Importing here waits for that import to finish before forking.
    if any(writer._thread is not None for writer in _writers.values()):
        import numpy  # noqa: F401
        import pyarrow.compute
        import pyarrow.parquet  # noqa: F401


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
