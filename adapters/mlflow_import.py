"""Import MLflow tracking data (SQL stores, ``mlruns/`` file stores, tracking servers).

Three readers produce the same normalised records:

- :class:`SqlReader` reads MLflow's SQL schema directly (``sqlite:///mlflow.db`` through
  the standard library, any other SQLAlchemy URI through SQLAlchemy);
- :class:`FileReader` reads a legacy file store (``mlruns/``, ``file:./mlruns``);
- :class:`ClientReader` goes through MLflow's own ``MlflowClient`` (tracking servers
  ``http(s)://...``, and any URI MLflow itself understands).

The writer side turns records into ledger events with the runs' original timestamps and
writes them as Parquet through :meth:`Store.write_parquet` into the normal layout. Every
identity is derived from MLflow ids (``stable_id``) and every file name from a
deterministic chunk key, so importing again replaces files instead of duplicating
events (see docs/design.md, "MLflow import and compatibility").

MLflow's SQL store keeps ±inf as ±1.7976931348623157e308 and NaN as 0 with an ``is_nan``
flag; every reader maps those back, so one store gives identical events whichever way it
is read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import hashlib
import itertools
import json
import math
import os
import re
import sqlite3
import tempfile
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.errors import ConfigError, LedgerError, StoreError
from ledger.ids import stable_id
from ledger.store import Store, check_project_name, open_store

if TYPE_CHECKING:
    from concurrent.futures import Future

    import polars as pl
    import pyarrow as pa

DEFAULT_PROJECT = "mlflow"
WRITER_ID = "mlflow-import"
ARTIFACT_MODES = ("copy", "reference", "skip")
DBL_MAX = 1.7976931348623157e308
# File-store meta.yaml stores enums as numbers (mlflow.entities.RunStatus / SourceType).
_RUN_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_TERMINAL = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class MlflowImportError(LedgerError):
    """The MLflow source cannot be opened or read as a whole."""


class BrokenRunError(Exception):
    """One run cannot be read (missing files, corrupt meta.yaml, bad metric line)."""


# -- normalised records ---------------------------------------------------------------------


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str | None = None
    lifecycle_stage: str = "active"
    creation_time: int | None = None  # ms


@dataclass
class RunRecord:
    run_id: str
    experiment_id: str
    name: str | None
    status: str  # MLflow's: RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    start_time: int | None  # ms
    end_time: int | None
    lifecycle_stage: str
    user_id: str | None
    artifact_uri: str | None
    deleted_time: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LoggedModel:
    model_id: str
    name: str
    experiment_id: str
    source_run_id: str | None
    artifact_location: str | None
    creation_time: int | None


@dataclass
class ArtifactFile:
    path: str  # relative path within the run (or the model, prefixed with its name)
    size: int | None
    uri: str  # where MLflow keeps it
    local: str | None  # a local file, when it can be read without a download
    kind: str = "file"


@dataclass
class ImportSummary:
    """What an import did (or, with ``dry_run``, would do)."""

    source: str
    dry_run: bool = False
    experiments: int = 0
    runs: int = 0
    new_runs: int = 0
    updated_runs: int = 0
    unchanged_runs: int = 0
    params: int = 0
    tags: int = 0
    metric_points: int = 0
    datasets: int = 0
    artifacts: int = 0
    models: int = 0
    skipped: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_frame(self) -> pl.DataFrame:
        import polars as pl

        rows = [
            ("experiments", self.experiments),
            ("runs", self.runs),
            ("  new", self.new_runs),
            ("  updated", self.updated_runs),
            ("  unchanged", self.unchanged_runs),
            ("params", self.params),
            ("tags", self.tags),
            ("metric points", self.metric_points),
            ("datasets", self.datasets),
            ("artifacts", self.artifacts),
            ("logged models", self.models),
            ("skipped (deleted)", self.skipped),
            ("errors", len(self.errors)),
        ]
        return pl.DataFrame(
            {"item": [r[0] for r in rows], "count": [r[1] for r in rows]},
            schema={"item": pl.Utf8, "count": pl.Int64},
        )


# -- helpers ------------------------------------------------------------------------------


def _metric_value(value: float, is_nan: Any = False) -> float:
    if is_nan:
        return math.nan
    if value >= DBL_MAX:
        return math.inf
    if value <= -DBL_MAX:
        return -math.inf
    return float(value)


def _local_path(uri: str | None) -> str | None:
    """A local file-system path for ``uri`` (plain path or file: URI), else None."""
    if not uri:
        return None
    if uri.startswith("file:"):
        parsed = urllib.parse.urlparse(uri)
        return urllib.parse.unquote(parsed.path)
    if "://" in uri or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", uri):
        return None
    return os.path.abspath(uri)


def _date_ms(value: str | dt.date | dt.datetime | None) -> int | None:
    """``--since``: the UTC midnight starting that day, in ms (whole days; see README)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        day = value.astimezone(dt.timezone.utc).date() if value.tzinfo else value.date()
    elif isinstance(value, dt.date):
        day = value
    else:
        try:
            day = dt.date.fromisoformat(str(value)[:10])
        except ValueError as exc:
            raise ConfigError(f"--since needs a date like 2024-01-31, got {value!r}") from exc
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    return int(start.timestamp() * 1000)


_SIGNED_INT = re.compile(r"[+-]?\d+")


def param_type(text: str) -> str:
    """The type name a param's text would have had when logged from Python."""
    if text.isdigit() and text.isascii():
        return "int"
    if text in ("True", "False"):
        return "bool"
    if text == "None":
        return "null"
    if _SIGNED_INT.fullmatch(text):
        return "int"
    try:
        float(text)
    except ValueError:
        return "str"
    return "float"


_param_type = functools.lru_cache(maxsize=1 << 16)(param_type)


def _dataset_input(
    name: str,
    digest: str | None,
    source_type: str | None,
    source: str | None,
    schema: str | None,
    profile: str | None,
    tags: dict[str, str],
) -> dict[str, Any]:
    return {
        "name": name,
        "digest": digest,
        "source_type": source_type,
        "source": source,
        "schema": schema,
        "profile": profile,
        "tags": dict(sorted(tags.items())),
    }


# -- readers ------------------------------------------------------------------------------


class Reader:
    """The interface every source implements."""

    source: str

    def experiments(self) -> list[Experiment]:
        raise NotImplementedError

    def runs(
        self, experiment_ids: list[str], since_ms: int | None
    ) -> tuple[list[RunRecord], list[tuple[str, str]]]:
        """Every run of the experiments (deleted ones too), and the (run, error) skipped."""
        raise NotImplementedError

    def metrics(self, runs: list[RunRecord]) -> pa.Table:
        """All metric points of ``runs``: run_id, key, value, step, timestamp (ms)."""
        raise NotImplementedError

    def bulk_metrics(
        self, runs: list[RunRecord]
    ) -> tuple[pa.Table | _CodedPoints, dict[str, str]] | None:
        """All points of ``runs`` at once, with the unreadable runs' errors; or None when
        this reader reads chunk by chunk (:meth:`metrics`). Called from a worker thread."""
        return None

    def logged_models(self, experiment_ids: list[str]) -> list[LoggedModel]:
        return []

    def artifacts(self, run: RunRecord) -> list[ArtifactFile]:
        return _walk_local(_local_path(run.artifact_uri), run.artifact_uri or "", "")

    def model_artifacts(self, model: LoggedModel) -> list[ArtifactFile]:
        files = _walk_local(_local_path(model.artifact_location), model.artifact_location or "", "")
        return [
            ArtifactFile(f"{model.name}/{f.path}", f.size, f.uri, f.local, "model") for f in files
        ]

    def fetch(self, artifact: ArtifactFile, folder: str) -> str:
        """A local copy of ``artifact`` (downloaded into ``folder`` when remote)."""
        if artifact.local is not None:
            return artifact.local
        from mlflow.artifacts import download_artifacts

        return str(download_artifacts(artifact_uri=artifact.uri, dst_path=folder))

    def close(self) -> None:
        pass


def _walk_local(root: str | None, uri: str, prefix: str) -> list[ArtifactFile]:
    if root is None or not os.path.isdir(root):
        return []
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            found.append(
                ArtifactFile(
                    f"{prefix}{relative}",
                    os.path.getsize(full),
                    f"{uri.rstrip('/')}/{relative}",
                    full,
                )
            )
    return found


def _string_array(values: list[str]) -> pa.Array:
    import pyarrow as pa

    return pa.array(values, pa.string())


def _metrics_table(columns: tuple[list[Any], ...] | None) -> pa.Table:
    import pyarrow as pa

    names = ["run_id", "key", "value", "step", "timestamp"]
    types = [pa.string(), pa.string(), pa.float64(), pa.int64(), pa.int64()]
    if not columns:
        return pa.table({n: pa.array([], t) for n, t in zip(names, types, strict=True)})
    return pa.table({n: pa.array(c, t) for n, t, c in zip(names, types, columns, strict=True)})


def _adbc_query(path: str, sql: str, params: list[Any]) -> pa.Table:
    """``sql`` on the sqlite file ``path``, straight into Arrow with ADBC's sqlite driver.

    The driver manager's low-level API, not its DB-API module: that one imports pandas
    (~0.2 s), which an import does not need. Raises ImportError without the driver.
    """
    import pyarrow as pa

    with _adbc_reader(path, sql, params) as reader:
        return pa.Table.from_batches(list(reader), reader.schema)


@contextlib.contextmanager
def _adbc_reader(
    path: str, sql: str, params: list[Any], batch_rows: int = 65536
) -> Iterator[pa.RecordBatchReader]:
    """:func:`_adbc_query`'s batches as they come (a caller that consumes each batch at
    once keeps only one in memory)."""
    import adbc_driver_manager as manager
    import adbc_driver_sqlite
    import pyarrow as pa

    database = adbc_driver_sqlite.connect(f"file:{path}?mode=ro")
    try:
        connection = manager.AdbcConnection(database)
        try:
            statement = manager.AdbcStatement(connection)
            try:
                statement.set_sql_query(sql)
                # Big batches: the default 1,024 rows makes thousands of tiny chunks.
                statement.set_options(
                    **{adbc_driver_sqlite.StatementOptions.BATCH_ROWS.value: str(batch_rows)}
                )
                if params:
                    batch = pa.record_batch(
                        {
                            str(i): pa.array(
                                [value], pa.int64() if isinstance(value, int) else pa.string()
                            )
                            for i, value in enumerate(params)
                        }
                    )
                    statement.bind(*reversed(batch.__arrow_c_array__()))
                handle, _ = statement.execute_query()
                reader = pa.RecordBatchReader._import_from_c(handle.address)
                try:
                    yield reader
                finally:
                    reader.close()
            finally:
                statement.close()
        finally:
            connection.close()
    finally:
        database.close()


def _quote_sql(name: str) -> str:
    """``name`` as an SQL identifier (double quotes, doubled inside)."""
    return '"' + name.replace('"', '""') + '"'


# The coded scan's one integer column carries key code, is_nan and step:
# code + _NAN_CODE * is_nan + _STEP_CODE * step (key codes stay below _NAN_CODE:
# SqlReader.KEY_CODES). SQLite's integer arithmetic is exact or, on overflow (a step
# beyond ±2**54), turns REAL, which fails the integer check and falls back to strings.
_NAN_CODE = 256
_STEP_SHIFT = 9
_STEP_CODE = 1 << _STEP_SHIFT


def _sql_values(column: pa.ChunkedArray, nan: Any) -> Any:
    """MLflow SQL ``value``s as logged: ±DBL_MAX back to ±inf, and NaN where ``nan``
    (the is_nan flag), in place on one NumPy copy (Arrow if_else passes cost ~4x)."""
    import numpy as np
    import pyarrow as pa

    value = np.array(column.cast(pa.float64()).to_numpy(), np.float64)
    _restore_specials(value, nan)
    return value


def _restore_specials(value: Any, nan: Any) -> None:
    """In ``value`` (a float64 NumPy array), in place: MLflow's SQL store keeps ±inf as
    ±DBL_MAX and NaN as 0 with is_nan set (``nan``); put them back."""
    import numpy as np

    np.putmask(value, value >= DBL_MAX, math.inf)
    np.putmask(value, value <= -DBL_MAX, -math.inf)
    np.putmask(value, nan, math.nan)


def _buffer_view(array: pa.Array, dtype: Any) -> Any:
    """A primitive Arrow array as a read-only NumPy view of its data buffer.

    Not ``to_numpy``: pyarrow's first conversion in a process imports pandas (~0.2 s of
    CPU holding the GIL), which would hold up the scan threads at their start.
    """
    import numpy as np

    if array.null_count:
        raise MlflowImportError("unexpected NULL in a metric column")
    itemsize = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * itemsize
    )


class _CodedPoints:
    """Metric points as NumPy columns, coded by the reader: ``run`` indexes ``run_ids``
    (-1: a run outside them), ``key`` indexes ``keys`` (sorted).

    Built by :meth:`fill` in parallel, one rowid range per thread, straight from each
    scanned batch into columns allocated once: the scan's Arrow batches (run ids as
    strings) are dropped as soon as they are coded, so a 5,000,000-point import never
    holds them all (every MB a process touches for the first time costs a page fault
    per 4 KiB, a good part of an import's CPU time).
    """

    def __init__(
        self,
        run_ids: list[str],
        keys: list[str],
        size: int,
        spans: tuple[Any, Any, Any] | None = None,
    ) -> None:
        import numpy as np

        self.run_ids, self.keys = run_ids, keys
        # (first rowids ascending, last rowids, run codes) when runs' rows do not
        # interleave: each batch's first column is then rowid, not run_uuid.
        self.spans = spans
        self.run = np.empty(size, np.int32)
        self.key = np.empty(size, np.int32)
        # run code * width + key code, filled by the scan threads too: _Points finds the
        # blocks of equal (run, key) in it, then reuses it for the sort order.
        self.width = max(len(keys), 1)
        wide = np.int64 if (len(run_ids) + 1) * self.width >= 2**31 or size >= 2**31 else np.int32
        self.group = np.empty(size, wide)
        self.value = np.empty(size, np.float64)
        self.step = np.empty(size, np.int64)
        self.stamp = np.empty(size, np.int64)

    def columns(self) -> tuple[Any, Any, Any, Any, Any]:
        return self.run, self.key, self.value, self.step, self.stamp

    def fill(self, reader: pa.RecordBatchReader, at: int, room: int) -> int | None:
        """Code ``reader``'s batches into rows ``at``.. (at most ``room`` rows); the rows
        written, or None when a key code is missing (a key the scan does not know)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        values = None
        position = at
        for batch in reader:
            n = batch.num_rows
            if n == 0:
                continue
            if position + n > at + room:
                raise MlflowImportError("more metric rows than the rowid range holds")
            code = batch.column(1)
            if code.null_count or not pa.types.is_integer(code.type):
                return None
            rows = slice(position, position + n)
            code = _buffer_view(code, np.int64)
            np.right_shift(code, _STEP_SHIFT, out=self.step[rows])  # floor: steps < 0 too
            key = self.key[rows]
            np.bitwise_and(code, _STEP_CODE - 1, out=key, casting="unsafe")
            nan = key >= _NAN_CODE
            key &= _NAN_CODE - 1
            value = self.value[rows]
            value[:] = _buffer_view(batch.column(2).cast(pa.float64()), np.float64)
            _restore_specials(value, nan)
            self.stamp[rows] = _buffer_view(batch.column(3).cast(pa.int64()), np.int64)
            if self.spans is None:
                if values is None:
                    values = pa.array(self.run_ids, pa.string())
                rank = pc.index_in(batch.column(0), value_set=values)
                self.run[rows] = pc.fill_null(rank, -1).to_numpy()
            else:
                rowid = _buffer_view(batch.column(0).cast(pa.int64()), np.int64)
                self.run[rows] = self._span_codes(rowid)
            group = self.group[rows]
            np.multiply(self.run[rows], self.width, out=group, casting="unsafe")
            group += key
            position += n
        return position - at

    def _span_codes(self, rowid: Any) -> Any:
        """The run code of each rowid: the span it falls in (-1 for none: a row added
        after the spans were read)."""
        import numpy as np

        assert self.spans is not None
        first, last, codes = self.spans
        at = np.searchsorted(first, rowid, side="right") - 1
        outside = at < 0
        at[outside] = 0
        outside |= rowid > last[at]
        at[outside] = len(codes)  # codes ends with -1
        return codes[at]

    def keep(self, spans: list[tuple[int, int]]) -> None:
        """Keep only rows [start, stop) of each span (the parts' rows, when they are
        fewer than their rowid ranges)."""
        import numpy as np

        merged: list[tuple[int, int]] = []
        for start, stop in spans:  # neighbouring parts that filled their ranges: one slice
            if merged and merged[-1][1] == start:
                merged[-1] = (merged[-1][0], stop)
            elif stop > start:
                merged.append((start, stop))
        for name in ("run", "key", "value", "step", "stamp", "group"):
            column = getattr(self, name)
            if len(merged) == 1:
                kept = column[merged[0][0] : merged[0][1]]
            else:
                kept = np.concatenate([column[a:b] for a, b in merged] or [column[:0]])
            setattr(self, name, kept)


class SqlReader(Reader):
    """MLflow's SQL schema, read with plain SELECTs (sqlite3, or SQLAlchemy otherwise)."""

    def __init__(self, uri: str) -> None:
        self.source = uri
        self._selection: tuple[str, list[Any]] | None = None
        self._whole_table = False
        self._total_runs = 0
        self._adbc: bool | None = None
        self._prefetch: tuple[tuple[str, list[Any]], Future[Any]] | None = None
        self._run_ids: list[str] | None = None  # the selection's, in the scan's codes
        if uri.startswith("sqlite:"):
            path = uri[len("sqlite:") :].lstrip("/") if uri.startswith("sqlite:////") else None
            path = "/" + path if path is not None else uri[len("sqlite:///") :]
            path = path.split("?")[0]
            if path in ("", ":memory:") or not os.path.exists(path):
                raise MlflowImportError(f"No MLflow sqlite database at {path!r} (from {uri})")
            self._con: Any = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False
            )
            self._path = path
            self._param = "?"
            self._engine = None
        else:
            try:
                import sqlalchemy
            except ImportError as exc:  # pragma: no cover - mlflow brings it
                raise MlflowImportError(
                    f"Reading {uri} needs SQLAlchemy (pip install sqlalchemy)"
                ) from exc
            try:
                self._engine = sqlalchemy.create_engine(uri)
                self._con = self._engine.raw_connection()
            except Exception as exc:
                raise MlflowImportError(f"Cannot connect to {uri}: {exc}") from exc
            self._param = "%s" if self._engine.dialect.paramstyle in ("format", "pyformat") else "?"
        try:
            self._tables = self._table_names()
        except Exception as exc:
            raise MlflowImportError(f"{uri} is not an MLflow database: {exc}") from exc
        if "runs" not in self._tables or "experiments" not in self._tables:
            raise MlflowImportError(f"{uri} is not an MLflow database (no runs table)")

    def _table_names(self) -> set[str]:
        if self._engine is None:
            rows = self._query("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {r[0] for r in rows}
        import sqlalchemy

        return set(sqlalchemy.inspect(self._engine).get_table_names())

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._con.cursor()
        try:
            cursor.execute(sql.replace("?", self._param), tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def _in(self, values: list[str]) -> str:
        return ", ".join("?" for _ in values)

    def experiments(self) -> list[Experiment]:
        rows = self._query(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time "
            "FROM experiments ORDER BY experiment_id"
        )
        return [Experiment(str(r[0]), r[1], r[2], r[3] or "active", r[4]) for r in rows]

    def runs(
        self, experiment_ids: list[str], since_ms: int | None
    ) -> tuple[list[RunRecord], list[tuple[str, str]]]:
        if not experiment_ids:
            return [], []
        where = f"experiment_id IN ({self._in(experiment_ids)})"
        params: list[Any] = [int(e) for e in experiment_ids]
        if since_ms is not None:
            where += " AND start_time >= ?"
            params.append(since_ms)
        columns = "run_uuid, experiment_id, name, status, start_time, end_time, "
        columns += "lifecycle_stage, user_id, artifact_uri"
        has_deleted_time = "deleted_time" in self._column_names("runs")
        columns += ", deleted_time" if has_deleted_time else ", NULL"
        rows = self._query(f"SELECT {columns} FROM runs WHERE {where} ORDER BY run_uuid", params)
        self._selection = (where, list(params))
        self._run_ids = [r[0] for r in rows]
        self._total_runs = self._query("SELECT count(*) FROM runs")[0][0]
        self._whole_table = self._total_runs == len(rows)
        self._start_prefetch(len(rows))
        records = {
            r[0]: RunRecord(
                run_id=r[0],
                experiment_id=str(r[1]),
                name=r[2],
                status=r[3] or "RUNNING",
                start_time=r[4],
                end_time=r[5],
                lifecycle_stage=r[6] or "active",
                user_id=r[7],
                artifact_uri=r[8],
                deleted_time=r[9],
            )
            for r in rows
        }
        sub = f"SELECT run_uuid FROM runs WHERE {where}"
        for key, value, run_id in self._key_values("params", sub, params):
            if run_id in records:
                records[run_id].params[key] = value
        for key, value, run_id in self._key_values("tags", sub, params):
            if run_id in records:
                records[run_id].tags[key] = value
        for record in records.values():
            # The SQL store keeps the run name in runs.name; MLflow's client shows it as
            # the mlflow.runName tag too.
            if record.name and "mlflow.runName" not in record.tags:
                record.tags["mlflow.runName"] = record.name
        if {"inputs", "datasets"} <= self._tables:
            self._read_inputs(records, sub, params)
        return [records[k] for k in sorted(records)], []

    def _key_values(self, table: str, sub: str, params: list[Any]) -> Iterable[tuple[Any, ...]]:
        """(key, value, run_uuid) of the selection's params or tags.

        Through ADBC when it is installed: one call without the GIL, then three column
        conversions. sqlite3 builds a tuple per row and takes the GIL back for each, so
        with the metric scan's threads running it spends more time waiting than working.
        """
        sql = f'SELECT "key", value, run_uuid FROM {table}'
        if not self._whole_table:
            sql += f" WHERE run_uuid IN ({sub})"
        elif params:
            params = []
        if self._has_adbc():
            try:
                found = self._arrow(sql, params)
            except Exception:  # e.g. a value typed unlike the first batch's: use sqlite3
                found = None
            if found is not None:
                return zip(*(column.to_pylist() for column in found.columns), strict=True)
        return self._query(sql, params)

    def _column_names(self, table: str) -> set[str]:
        if self._engine is None:
            return {r[1] for r in self._query(f"PRAGMA table_info({table})")}
        import sqlalchemy

        return {c["name"] for c in sqlalchemy.inspect(self._engine).get_columns(table)}

    def _read_inputs(self, records: dict[str, RunRecord], sub: str, params: list[Any]) -> None:
        rows = self._query(
            "SELECT i.destination_id, i.input_uuid, d.name, d.digest, d.dataset_source_type, "
            "d.dataset_source, d.dataset_schema, d.dataset_profile "
            "FROM inputs i JOIN datasets d ON d.dataset_uuid = i.source_id "
            f"WHERE i.source_type = 'DATASET' AND i.destination_type = 'RUN' "
            f"AND i.destination_id IN ({sub}) ORDER BY i.destination_id, d.name, d.digest",
            params,
        )
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        if rows and "input_tags" in self._tables:
            for input_id, name, value in self._query(
                "SELECT input_uuid, name, value FROM input_tags WHERE input_uuid IN "
                "(SELECT input_uuid FROM inputs WHERE source_type = 'DATASET' AND "
                f"destination_type = 'RUN' AND destination_id IN ({sub}))",
                params,
            ):
                tags[input_id][name] = value
        for run_id, input_id, *dataset in rows:
            if run_id in records:
                records[run_id].inputs.append(
                    _dataset_input(*dataset, tags[input_id])  # type: ignore[call-arg]
                )

    # Up to this many metric rows are read in one sequential scan of the whole table (then
    # sorted once and cut per chunk); bigger tables are read chunk by chunk through the
    # run_uuid index, so memory stays bounded.
    PREFETCH_ROWS = 30_000_000
    # Scans of at least this many rows are split over threads by rowid range.
    PARALLEL_ROWS = 1_000_000

    def bulk_metrics(
        self, runs: list[RunRecord]
    ) -> tuple[pa.Table | _CodedPoints, dict[str, str]] | None:
        """Every point of the selection in one scan, when the table is small enough."""
        prefetch, self._prefetch = self._prefetch, None
        if self._engine is not None or self._selection is None or not runs:
            return None
        if len(runs) * 10 < self._total_runs:
            return None  # a small part (--since): the index is cheaper
        if prefetch is not None and prefetch[0] == self._selection:
            return prefetch[1].result(), {}
        plan = self._scan_plan()
        return (self._scan(*plan), {}) if plan is not None else None

    def _start_prefetch(self, selected: int) -> None:
        """Start :meth:`bulk_metrics`' scan in a thread as soon as the selection is known,
        so that it overlaps reading params and tags (Python work that holds the GIL,
        while ADBC releases it)."""
        if self._engine is not None or not selected or selected * 10 < self._total_runs:
            return
        plan = self._scan_plan()
        if plan is None or not self._has_adbc():  # without ADBC the scan would share self._con
            return
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="ledger-mlflow-scan")
        assert self._selection is not None
        self._prefetch = (self._selection, pool.submit(self._scan, *plan))
        pool.shutdown(wait=False)

    def _scan_plan(self) -> tuple[str, list[Any], int, list[str], Any] | None:
        """(where, params, max rowid, metric keys, run spans) of the whole-selection
        scan, or None when the table is too big for one; read here, on the reader's own
        connection, so that :meth:`_scan` needs none but its ADBC ones and may run in any
        thread."""
        assert self._selection is not None
        top = self._max_rowid()
        if top > self.PREFETCH_ROWS:
            return None
        where, params = self._selection
        if not self._whole_table:
            where, params = f"run_uuid IN (SELECT run_uuid FROM runs WHERE {where})", params
        else:  # every run is selected: a plain sequential scan
            where, params = "true", []
        keys: list[str] = []
        if self._has_adbc():
            # The distinct keys by seeks on MLflow's primary key index ("key" leads it).
            keys = sorted(
                row[0]
                for row in self._query(
                    'WITH RECURSIVE k(key) AS (SELECT min("key") FROM metrics UNION ALL '
                    'SELECT (SELECT min("key") FROM metrics WHERE "key" > k.key) FROM k '
                    f"WHERE k.key IS NOT NULL LIMIT {self.KEY_CODES + 2}) "
                    "SELECT key FROM k WHERE key IS NOT NULL"
                )
            )
        spans = self._run_spans(top) if keys and len(keys) <= self.KEY_CODES else None
        return where, list(params), top, keys, spans

    def _scan(
        self, where: str, params: list[Any], top: int, keys: list[str], spans: Any = None
    ) -> pa.Table | _CodedPoints:
        coded = self._coded_metric_rows(where, params, top, keys, spans)
        return coded if coded is not None else self._metric_rows(where, params, top)

    # Up to this many distinct metric keys are turned into integer codes inside SQLite.
    KEY_CODES = 32

    def _coded_metric_rows(
        self, where: str, params: list[Any], top: int, keys: list[str], spans: Any = None
    ) -> _CodedPoints | None:
        """The selection's points as :class:`_CodedPoints`, with the keys coded inside
        SQLite: one integer per row holds the key's code (a CASE over the distinct
        ``keys``), ``is_nan`` and the step (see _NAN_CODE). Decoding a string per row
        into Arrow, hashing it again to code it, and every column are a good part of a
        scan's cost.

        Rowid ranges are read in parallel threads (the driver and NumPy release the GIL)
        once the table has ``PARALLEL_ROWS``. With ``spans`` (:meth:`_run_spans`) each row's
        run comes from its rowid. None when the keys are too many or unknown, or a key
        appeared that the CASE does not know (a concurrent writer): the caller then scans
        with strings.
        """
        if not keys or len(keys) > self.KEY_CODES or self._run_ids is None:
            return None
        if not self._has_adbc():
            return None
        case = " ".join(f"WHEN ? THEN {i}" for i in range(len(keys)))
        sql = (
            f"SELECT {'run_uuid' if spans is None else 'rowid'}, "
            f'CASE "key" {case} END + {_NAN_CODE} * is_nan + {_STEP_CODE} * step AS code, '
            f"value, timestamp FROM metrics WHERE ({where})"
        )
        coded = _CodedPoints(self._run_ids, keys, top, spans)
        workers = min(4, os.cpu_count() or 1) if top >= max(self.PARALLEL_ROWS, 1) else 1
        edges = [top * i // workers for i in range(workers + 1)]

        def read(lo: int, hi: int) -> int | None:
            # Only integers go into the SQL text (rowid bounds); values stay bound.
            part = f"{sql} AND rowid > {lo} AND rowid <= {hi}"
            with _adbc_reader(self._path, part, [*keys, *params], 1 << 18) as reader:
                return coded.fill(reader, lo, hi - lo)

        try:
            if workers == 1:
                counts = [read(0, top)]
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(workers) as pool:
                    counts = list(pool.map(read, edges[:-1], edges[1:]))
        except Exception:  # e.g. a batch of only unknown keys typed as NULL: use strings
            return None
        if any(count is None for count in counts):
            return None
        coded.keep([(lo, lo + count) for lo, count in zip(edges, counts, strict=False) if count])
        return coded

    # Spans are read when runs have at least this many points on average (two index
    # seeks per run against a string per point).
    SPAN_POINTS = 32

    def _run_spans(self, top: int) -> tuple[Any, Any, Any] | None:
        """Each run's first and last metric rowid, when no two runs' rows interleave:
        (first rowids ascending, last rowids, each span's position in the run ids or -1,
        then a final -1), or None.

        MLflow inserts a run's points as it logs them, so unless runs logged at the same
        time, a run's rows form one rowid span and a row's rowid says its run: the scan
        then reads rowid instead of a 32-character run_uuid per point (a good part of
        its cost). The spans come from MLflow's index on metrics(run_uuid): a skip scan
        over the distinct run ids (every run with points, listed or not), then two seeks
        per run for its smallest and largest rowid.
        """
        import numpy as np

        if self._run_ids is None or top < self.SPAN_POINTS * max(self._total_runs, 1):
            return None
        index = next(
            (
                row[1]
                for row in self._query("PRAGMA index_list(metrics)")
                if [c[2] for c in self._query(f"PRAGMA index_info({_quote_sql(row[1])})")]
                == ["run_uuid"]
            ),
            None,
        )
        if index is None:
            return None
        table = f"metrics INDEXED BY {_quote_sql(index)}"
        try:
            found = self._query(
                f"WITH RECURSIVE r(id) AS (SELECT min(run_uuid) FROM {table} UNION ALL "
                f"SELECT (SELECT min(run_uuid) FROM {table} WHERE run_uuid > r.id) FROM r "
                "WHERE r.id IS NOT NULL) "
                f"SELECT id, (SELECT min(rowid) FROM {table} WHERE run_uuid = r.id), "
                f"(SELECT max(rowid) FROM {table} WHERE run_uuid = r.id) "
                "FROM r WHERE id IS NOT NULL"
            )
        except Exception:  # not usable after all: read run_uuid strings
            return None
        if not found:
            return None
        ids, first, last = zip(*found, strict=True)
        first, last = np.array(first, np.int64), np.array(last, np.int64)
        order = np.argsort(first, kind="stable")
        first, last = first[order], last[order]
        if not np.all(last[:-1] < first[1:]):  # interleaved runs
            return None
        position = {run_id: i for i, run_id in enumerate(self._run_ids)}
        codes = np.array([position.get(ids[i], -1) for i in order] + [-1], np.int32)
        return first, last, codes

    def metrics(self, runs: list[RunRecord]) -> pa.Table:
        if not runs:
            return _metrics_table(None)
        ids = [r.run_id for r in runs]
        return self._metric_rows(f"run_uuid IN ({self._in(ids)})", ids, 0)

    def _max_rowid(self) -> int:
        return int(self._query("SELECT max(rowid) FROM metrics")[0][0] or 0)

    def _metric_rows(self, where: str, params: list[Any], top: int) -> pa.Table:
        import pyarrow as pa

        sql = (
            'SELECT run_uuid AS run_id, "key", value, step, timestamp, is_nan FROM metrics '
            f"WHERE {where}"
        )
        table = self._arrow_scan(sql, params, top)
        if table is None:
            rows = self._query(sql, params)
            if not rows:
                return _metrics_table(None)
            run_ids, keys, values, steps, stamps, nans = zip(*rows, strict=True)
            table = pa.table(
                {
                    "run_id": pa.array(run_ids, pa.string()),
                    "key": pa.array(keys, pa.string()),
                    "value": pa.array(values, pa.float64()),
                    "step": pa.array(steps, pa.int64()),
                    "timestamp": pa.array(stamps, pa.int64()),
                    # an integer in sqlite, a boolean in PostgreSQL/MySQL
                    "is_nan": pa.array([1 if nan else 0 for nan in nans], pa.int64()),
                }
            )
        if table.num_rows == 0:
            return _metrics_table(None)
        nan = table.column("is_nan").cast(pa.int64()).to_numpy() != 0
        return pa.table(
            {
                "run_id": table.column("run_id").cast(pa.string()),
                "key": table.column("key").cast(pa.string()),
                "value": pa.array(_sql_values(table.column("value"), nan), pa.float64()),
                "step": table.column("step").cast(pa.int64()),
                "timestamp": table.column("timestamp").cast(pa.int64()),
            }
        )

    def _arrow_scan(self, sql: str, params: list[Any], top: int) -> pa.Table | None:
        """``_arrow`` over rowid ranges in parallel threads (the driver releases the GIL)."""
        import pyarrow as pa

        workers = min(4, os.cpu_count() or 1)
        if top < max(self.PARALLEL_ROWS, 1) or workers < 2 or not self._has_adbc():
            return self._arrow(sql, params)
        from concurrent.futures import ThreadPoolExecutor

        edges = [top * i // workers for i in range(workers + 1)]
        # Only integers go into the SQL text (rowid bounds); values stay bound parameters.
        parts = [
            f"{sql} AND rowid > {lo} AND rowid <= {hi}" for lo, hi in itertools.pairwise(edges)
        ]
        with ThreadPoolExecutor(workers) as pool:
            tables = list(pool.map(lambda part: _adbc_query(self._path, part, params), parts))
        return pa.concat_tables(tables)

    def _has_adbc(self) -> bool:
        """Whether ADBC's sqlite driver reads this store (probed once)."""
        if self._engine is not None or self._adbc is False:
            return False
        if self._adbc is None:
            try:
                _adbc_query(self._path, "SELECT 1", [])
                self._adbc = True
            except Exception:  # not installed, or cannot open: stay on sqlite3
                self._adbc = False
        return self._adbc

    def _arrow(self, sql: str, params: list[Any]) -> pa.Table | None:
        """Run ``sql`` straight into Arrow through ADBC's sqlite driver, when installed."""
        return _adbc_query(self._path, sql, params) if self._has_adbc() else None

    def logged_models(self, experiment_ids: list[str]) -> list[LoggedModel]:
        if "logged_models" not in self._tables or not experiment_ids:
            return []
        rows = self._query(
            "SELECT model_id, name, experiment_id, source_run_id, artifact_location, "
            f"creation_timestamp_ms FROM logged_models WHERE experiment_id IN "
            f"({self._in(experiment_ids)}) AND (lifecycle_stage IS NULL OR "
            "lifecycle_stage = 'active') ORDER BY model_id",
            [int(e) for e in experiment_ids],
        )
        return [LoggedModel(r[0], r[1], str(r[2]), r[3], r[4], r[5]) for r in rows]

    def close(self) -> None:
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None:  # a scan nobody asked for after all: let it finish
            prefetch[1].exception()
        self._con.close()
        if self._engine is not None:
            self._engine.dispose()


_YAML_RESOLVER: Any = None
_FLAT_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?")


def _flat_yaml(raw: bytes) -> dict[str, Any] | None:
    """A one-level ``key: scalar`` YAML document (what MLflow's ``yaml.safe_dump`` writes
    for meta.yaml files) parsed without a YAML parser, or None for anything else.

    Plain scalars are typed by PyYAML's own resolver, so the result equals
    ``yaml.safe_load``; anything beyond plain or single-quoted one-line scalars, ``[]``
    and ``{}`` (lists, double quotes, multi-line values, comments, floats, dates) returns
    None and the caller uses the real parser. 10x faster than the C loader on 10,000 runs.
    """
    global _YAML_RESOLVER
    if _YAML_RESOLVER is None:
        import yaml

        _YAML_RESOLVER = (yaml.resolver.Resolver(), yaml.ScalarNode)
    resolver, node = _YAML_RESOLVER
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    found: dict[str, Any] = {}
    for line in text.splitlines():
        match = _FLAT_LINE.fullmatch(line)
        if match is None:
            return None
        key, value = match.group(1), match.group(2)
        if key in found:
            return None
        if value is None or value == "":
            found[key] = None
        elif value[0] == "'":
            if len(value) < 2 or value[-1] != "'" or "'" in value[1:-1].replace("''", ""):
                return None
            found[key] = value[1:-1].replace("''", "'")
        elif value == "[]":
            found[key] = []
        elif value == "{}":
            found[key] = {}
        elif value[0] in '"[]{}!&*|>%@`#,?-:' or value != value.strip() or " #" in value:
            return None  # flow collections, anchors, block scalars, comments...
        elif ": " in value:  # not valid as a plain scalar
            return None
        else:
            tag = resolver.resolve(node, value, (True, False))
            if tag == "tag:yaml.org,2002:str":
                found[key] = value
            elif tag == "tag:yaml.org,2002:int" and re.fullmatch(r"[-+]?[0-9]+", value):
                found[key] = int(value)
            elif tag == "tag:yaml.org,2002:null":
                found[key] = None
            elif tag == "tag:yaml.org,2002:bool":
                found[key] = value.lower() in ("yes", "true", "on", "y")
            else:
                return None
    return found


def _read_tree(folder: str) -> dict[str, bytes]:
    """Every file under ``folder`` as {relative path with '/': bytes} ({} when missing)."""
    found: dict[str, bytes] = {}
    stack = [("", folder)]
    while stack:
        prefix, path = stack.pop()
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append((f"{prefix}{entry.name}/", entry.path))
                else:
                    with open(entry.path, "rb") as handle:
                        found[prefix + entry.name] = handle.read()
    return found


def _parse_metric_lines(blob: bytes) -> pa.Table | None:
    """``<timestamp_ms> <value> <step>`` lines as Arrow columns with pyarrow's CSV reader,
    or None when any line is not exactly that (the caller parses line by line then)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as csv

    try:
        return csv.read_csv(
            io.BytesIO(blob),
            read_options=csv.ReadOptions(
                column_names=["timestamp", "value", "step"], block_size=1 << 24
            ),
            parse_options=csv.ParseOptions(
                delimiter=" ", quote_char=False, double_quote=False, escape_char=False
            ),
            convert_options=csv.ConvertOptions(
                column_types={"timestamp": pa.int64(), "value": pa.float64(), "step": pa.int64()},
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _parse_metrics_python(run_id: str, tree: dict[str, bytes]) -> pa.Table:
    """One run's metric files, line by line (blank lines and step-less lines of old MLflow
    versions allowed); raises BrokenRunError naming the first unreadable line."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [])
    for key, data in tree.items():
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                stamp, value = int(parts[0]), float(parts[1])
                step = int(parts[2]) if len(parts) > 2 else 0
            except (IndexError, ValueError) as exc:
                raise BrokenRunError(
                    f"run {run_id}: metric {key!r} line {number} is unreadable: {line[:80]!r}"
                ) from exc
            for column, item in zip(columns, (run_id, key, value, step, stamp), strict=True):
                column.append(item)
    return _metrics_table(columns if columns[0] else None)


class FileReader(Reader):
    """A legacy file store: ``<root>/<experiment_id>/<run_id>/{meta.yaml,params,tags,...}``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.source = root
        if not os.path.isdir(self.root):
            raise MlflowImportError(f"No MLflow file store at {self.root}")
        import yaml

        self._yaml = yaml
        self._loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    # Threads for file reads: the work is open/read system calls (the GIL is released),
    # and on a cold cache it waits on the disk, so more threads than cores pay off.
    THREADS = 8

    def _load(self, path: str) -> dict[str, Any]:
        with open(path, "rb") as handle:
            raw = handle.read()
        data = _flat_yaml(raw)
        if data is None:  # not the flat form MLflow writes: the real YAML parser
            data = self._yaml.load(raw.decode("utf-8"), Loader=self._loader)
        if not isinstance(data, dict):
            raise BrokenRunError(f"{path} is not a YAML mapping")
        return data

    def _experiment_dirs(self) -> Iterator[tuple[str, str]]:
        for base in (self.root, os.path.join(self.root, ".trash")):
            if not os.path.isdir(base):
                continue
            for name in sorted(os.listdir(base)):
                path = os.path.join(base, name)
                if name.startswith(".") or name == "models" or not os.path.isdir(path):
                    continue
                if os.path.exists(os.path.join(path, "meta.yaml")):
                    yield name, path

    def experiments(self) -> list[Experiment]:
        found = []
        self._dirs: dict[str, str] = {}
        for name, path in self._experiment_dirs():
            try:
                meta = self._load(os.path.join(path, "meta.yaml"))
            except Exception:  # an unreadable experiment: its runs cannot be placed either
                continue
            experiment_id = str(meta.get("experiment_id", name))
            self._dirs[experiment_id] = path
            found.append(
                Experiment(
                    experiment_id,
                    str(meta.get("name", experiment_id)),
                    meta.get("artifact_location"),
                    meta.get("lifecycle_stage") or "active",
                    meta.get("creation_time"),
                )
            )
        return sorted(found, key=lambda e: (len(e.experiment_id), e.experiment_id))

    def runs(
        self, experiment_ids: list[str], since_ms: int | None
    ) -> tuple[list[RunRecord], list[tuple[str, str]]]:
        from concurrent.futures import ThreadPoolExecutor

        records: list[RunRecord] = []
        errors: list[tuple[str, str]] = []
        if not hasattr(self, "_dirs"):
            self.experiments()
        candidates: list[tuple[str, str, str]] = []
        for experiment_id in experiment_ids:
            exp_dir = self._dirs.get(experiment_id)
            if exp_dir is None:
                continue
            with os.scandir(exp_dir) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.name in ("models", "datasets", "traces") or not entry.is_dir():
                        continue
                    candidates.append((experiment_id, entry.name, entry.path))

        def read(candidate: tuple[str, str, str]) -> RunRecord | Exception:
            try:
                return self._run(candidate[2], candidate[0])
            except Exception as exc:
                return exc

        with ThreadPoolExecutor(self.THREADS) as pool:
            results = list(pool.map(read, candidates, chunksize=64))
        datasets: dict[str, dict[str, dict[str, Any]]] = {}
        for (experiment_id, name, run_dir), record in zip(candidates, results, strict=True):
            if isinstance(record, Exception):
                errors.append((name, f"{type(record).__name__}: {record}"))
                continue
            if since_ms is not None and (record.start_time or 0) < since_ms:
                continue
            if os.path.isdir(os.path.join(run_dir, "inputs")):
                if experiment_id not in datasets:
                    datasets[experiment_id] = self._datasets(self._dirs[experiment_id])
                try:
                    record.inputs = self._inputs(run_dir, datasets[experiment_id])
                except Exception as exc:
                    errors.append((name, f"inputs: {type(exc).__name__}: {exc}"))
                    continue
            records.append(record)
        return sorted(records, key=lambda r: r.run_id), errors

    def _run(self, run_dir: str, experiment_id: str) -> RunRecord:
        meta_path = os.path.join(run_dir, "meta.yaml")
        if not os.path.exists(meta_path):
            raise BrokenRunError("meta.yaml is missing")
        meta = self._load(meta_path)
        run_id = meta.get("run_id") or meta.get("run_uuid")
        if not run_id:
            raise BrokenRunError("meta.yaml has no run_id")
        status = meta.get("status", 1)
        status = _RUN_STATUS.get(status, str(status)) if isinstance(status, int) else str(status)
        record = RunRecord(
            run_id=str(run_id),
            experiment_id=str(meta.get("experiment_id", experiment_id)),
            name=meta.get("run_name") or None,
            status=status,
            start_time=meta.get("start_time"),
            end_time=meta.get("end_time"),
            lifecycle_stage=meta.get("lifecycle_stage") or "active",
            user_id=meta.get("user_id") or None,
            artifact_uri=meta.get("artifact_uri"),
            deleted_time=meta.get("deleted_time"),
        )
        record.params = self._key_files(os.path.join(run_dir, "params"))
        record.tags = self._key_files(os.path.join(run_dir, "tags"))
        if record.name is None:
            record.name = record.tags.get("mlflow.runName")
        elif "mlflow.runName" not in record.tags:
            record.tags["mlflow.runName"] = record.name
        record._dir = run_dir  # type: ignore[attr-defined]
        return record

    @staticmethod
    def _key_files(folder: str) -> dict[str, str]:
        return {key: data.decode("utf-8") for key, data in _read_tree(folder).items()}

    def _datasets(self, exp_dir: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        folder = os.path.join(exp_dir, "datasets")
        if os.path.isdir(folder):
            for dataset_id in os.listdir(folder):
                path = os.path.join(folder, dataset_id, "meta.yaml")
                if os.path.exists(path):
                    found[dataset_id] = self._load(path)
        return found

    def _inputs(self, run_dir: str, datasets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        inputs = []
        folder = os.path.join(run_dir, "inputs")
        for input_id in sorted(os.listdir(folder)):
            meta = self._load(os.path.join(folder, input_id, "meta.yaml"))
            if meta.get("source_type") != "DATASET" or meta.get("destination_type") != "RUN":
                continue
            dataset = datasets.get(str(meta.get("source_id")))
            if dataset is None:
                raise BrokenRunError(f"dataset {meta.get('source_id')} is missing")
            inputs.append(
                _dataset_input(
                    str(dataset.get("name")),
                    dataset.get("digest"),
                    dataset.get("source_type"),
                    dataset.get("source"),
                    dataset.get("schema"),
                    dataset.get("profile"),
                    {str(k): str(v) for k, v in (meta.get("tags") or {}).items()},
                )
            )
        return sorted(inputs, key=lambda d: (d["name"] or "", d["digest"] or ""))

    def metrics(self, runs: list[RunRecord]) -> pa.Table:
        table, broken = self.bulk_metrics(runs)
        if broken:
            raise BrokenRunError(next(iter(broken.values())))
        return table

    def bulk_metrics(self, runs: list[RunRecord]) -> tuple[pa.Table, dict[str, str]]:
        """Every metric file of ``runs`` read by threads, then parsed in one go by
        pyarrow's CSV reader; runs with a line it cannot parse are parsed line by line,
        which finds and reports the broken ones."""
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa

        def read(record: RunRecord) -> dict[str, bytes] | str:
            try:
                return _read_tree(os.path.join(record._dir, "metrics"))  # type: ignore[attr-defined]
            except OSError as exc:
                return f"metrics: {type(exc).__name__}: {exc}"

        with ThreadPoolExecutor(self.THREADS) as pool:
            trees = list(pool.map(read, runs, chunksize=64))
        broken: dict[str, str] = {}
        readable: list[tuple[RunRecord, dict[str, bytes]]] = []
        for record, tree in zip(runs, trees, strict=True):
            if isinstance(tree, str):
                broken[record.run_id] = tree
            else:
                readable.append((record, tree))
        table = self._parse_all(readable)
        if table is None:  # some line is not "<ts> <value> <step>": run by run
            parts = []
            for record, tree in readable:
                part = self._parse_all([(record, tree)])
                if part is None:
                    try:
                        part = _parse_metrics_python(record.run_id, tree)
                    except BrokenRunError as exc:
                        broken[record.run_id] = str(exc)
                        continue
                parts.append(part)
            table = pa.concat_tables(parts) if parts else _metrics_table(None)
        return table, broken

    @staticmethod
    def _parse_all(readable: list[tuple[RunRecord, dict[str, bytes]]]) -> pa.Table | None:
        import numpy as np
        import pyarrow as pa

        blobs: list[bytes] = []
        owners: list[str] = []
        keys: list[str] = []
        lines: list[int] = []
        for record, tree in readable:
            for key, data in tree.items():
                if not data:
                    continue
                if not data.endswith(b"\n"):
                    data += b"\n"
                blobs.append(data)
                owners.append(record.run_id)
                keys.append(key)
                lines.append(data.count(b"\n"))
        if not blobs:
            return _metrics_table(None)
        parsed = _parse_metric_lines(b"".join(blobs))
        if parsed is None or parsed.num_rows != sum(lines):  # blank lines, old formats
            return None
        per_row = pa.array(np.repeat(np.arange(len(blobs), dtype=np.int64), lines))
        return pa.table(
            {
                "run_id": pa.array(owners, pa.string()).take(per_row),
                "key": pa.array(keys, pa.string()).take(per_row),
                "value": parsed.column("value"),
                "step": parsed.column("step"),
                "timestamp": parsed.column("timestamp"),
            }
        )

    def logged_models(self, experiment_ids: list[str]) -> list[LoggedModel]:
        found = []
        for experiment_id in experiment_ids:
            folder = os.path.join(self._dirs.get(experiment_id, ""), "models")
            if not os.path.isdir(folder):
                continue
            for model_id in sorted(os.listdir(folder)):
                path = os.path.join(folder, model_id, "meta.yaml")
                if not os.path.exists(path):
                    continue
                meta = self._load(path)
                if meta.get("lifecycle_stage", "active") not in ("active", None):
                    continue
                found.append(
                    LoggedModel(
                        str(meta.get("model_id", model_id)),
                        str(meta.get("name", model_id)),
                        experiment_id,
                        meta.get("source_run_id"),
                        meta.get("artifact_location"),
                        meta.get("creation_timestamp"),
                    )
                )
        return found


class ClientReader(Reader):
    """Any tracking URI MLflow understands, through ``MlflowClient`` (REST for servers)."""

    PAGE = 1000

    def __init__(self, uri: str) -> None:
        self.source = uri
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise MlflowImportError(
                f"Reading {uri} needs MLflow's client: pip install mlflow-skinny"
            ) from exc
        self.client = MlflowClient(tracking_uri=uri)
        self._uri = uri

    def experiments(self) -> list[Experiment]:
        from mlflow.entities import ViewType

        found: list[Any] = []
        token = None
        try:
            while True:
                page = self.client.search_experiments(
                    view_type=ViewType.ALL, max_results=self.PAGE, page_token=token
                )
                found.extend(page)
                token = page.token
                if not token:
                    break
        except Exception as exc:
            raise MlflowImportError(f"Cannot list experiments at {self._uri}: {exc}") from exc
        return sorted(
            (
                Experiment(
                    e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time
                )
                for e in found
            ),
            key=lambda e: (len(e.experiment_id), e.experiment_id),
        )

    def runs(
        self, experiment_ids: list[str], since_ms: int | None
    ) -> tuple[list[RunRecord], list[tuple[str, str]]]:
        from mlflow.entities import ViewType

        records = []
        self._metric_keys: dict[str, list[str]] = {}
        token = None
        filter_string = f"attributes.start_time >= {since_ms}" if since_ms is not None else ""
        while experiment_ids:
            page = self.client.search_runs(
                experiment_ids,
                filter_string=filter_string,
                run_view_type=ViewType.ALL,
                max_results=self.PAGE,
                page_token=token,
            )
            for run in page:
                info = run.info
                record = RunRecord(
                    run_id=info.run_id,
                    experiment_id=str(info.experiment_id),
                    name=info.run_name or None,
                    status=info.status,
                    start_time=info.start_time,
                    end_time=info.end_time,
                    lifecycle_stage=info.lifecycle_stage,
                    user_id=info.user_id or None,
                    artifact_uri=info.artifact_uri,
                    params=dict(run.data.params),
                    tags=dict(run.data.tags),
                )
                if record.name and "mlflow.runName" not in record.tags:
                    record.tags["mlflow.runName"] = record.name
                inputs = run.inputs.dataset_inputs if run.inputs else []
                for item in inputs:
                    d = item.dataset
                    record.inputs.append(
                        _dataset_input(
                            d.name,
                            d.digest,
                            d.source_type,
                            d.source,
                            d.schema,
                            d.profile,
                            {t.key: t.value for t in item.tags},
                        )
                    )
                record.inputs.sort(key=lambda x: (x["name"] or "", x["digest"] or ""))
                self._metric_keys[record.run_id] = sorted(run.data.metrics)
                records.append(record)
            token = page.token
            if not token:
                break
        return sorted(records, key=lambda r: r.run_id), []

    def metrics(self, runs: list[RunRecord]) -> pa.Table:
        columns: tuple[list[Any], ...] = ([], [], [], [], [])
        for record in runs:
            for key in self._metric_keys.get(record.run_id, []):
                for point in self.client.get_metric_history(record.run_id, key):
                    columns[0].append(record.run_id)
                    columns[1].append(point.key)
                    columns[2].append(_metric_value(point.value))
                    columns[3].append(point.step)
                    columns[4].append(point.timestamp)
        return _metrics_table(columns if columns[0] else None)

    def logged_models(self, experiment_ids: list[str]) -> list[LoggedModel]:
        found: list[LoggedModel] = []
        token = None
        while experiment_ids:
            try:
                page = self.client.search_logged_models(
                    experiment_ids, max_results=self.PAGE, page_token=token
                )
            except Exception:  # servers older than MLflow 3 have no logged models
                return found
            for model in page:
                found.append(
                    LoggedModel(
                        model.model_id,
                        model.name,
                        str(model.experiment_id),
                        model.source_run_id,
                        model.artifact_location,
                        model.creation_timestamp,
                    )
                )
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda m: m.model_id)

    def artifacts(self, run: RunRecord) -> list[ArtifactFile]:
        local = _local_path(run.artifact_uri)
        if local is not None:
            return super().artifacts(run)
        found: list[ArtifactFile] = []

        def walk(path: str | None) -> None:
            for info in self.client.list_artifacts(run.run_id, path):
                if info.is_dir:
                    walk(info.path)
                else:
                    uri = f"{(run.artifact_uri or '').rstrip('/')}/{info.path}"
                    found.append(ArtifactFile(info.path, info.file_size, uri, None))

        walk(None)
        return found

    def model_artifacts(self, model: LoggedModel) -> list[ArtifactFile]:
        if _local_path(model.artifact_location) is not None:
            return super().model_artifacts(model)
        found: list[ArtifactFile] = []

        def walk(path: str | None) -> None:
            for info in self.client.list_logged_model_artifacts(model.model_id, path):
                if info.is_dir:
                    walk(info.path)
                else:
                    uri = f"{(model.artifact_location or '').rstrip('/')}/{info.path}"
                    found.append(
                        ArtifactFile(
                            f"{model.name}/{info.path}", info.file_size, uri, None, "model"
                        )
                    )

        walk(None)
        return found

    def fetch(self, artifact: ArtifactFile, folder: str) -> str:
        if artifact.local is not None:
            return artifact.local
        from mlflow.artifacts import download_artifacts

        return str(
            download_artifacts(artifact_uri=artifact.uri, dst_path=folder, tracking_uri=self._uri)
        )


def open_reader(tracking_uri: str) -> Reader:
    """The reader for ``tracking_uri``: SQL and file stores directly, others via MLflow.

    Raises:
        MlflowImportError: the source does not exist or is not an MLflow store.
    """
    uri = tracking_uri.strip()
    scheme = uri.split(":", 1)[0].lower() if re.match(r"^[a-zA-Z][\w+.-]*:", uri) else ""
    if scheme.startswith(("sqlite", "postgresql", "mysql", "mssql")):
        return SqlReader(uri)
    if scheme in ("", "file"):
        path = _local_path(uri) or uri
        if os.path.isfile(path) and path.endswith((".db", ".sqlite", ".sqlite3")):
            return SqlReader(f"sqlite:///{os.path.abspath(path)}")
        return FileReader(path)
    return ClientReader(uri)


# -- turning records into events -----------------------------------------------------------


def _us(ms: int | None) -> int | None:
    return None if ms is None else int(ms) * 1000


@dataclass
class _Chunk:
    key: str
    day: dt.date
    runs: list[RunRecord]


def _experiment_selection(
    experiments: list[Experiment], wanted: Iterable[str] | None
) -> list[Experiment]:
    wanted = list(wanted or [])
    if not wanted:
        return experiments
    chosen: list[Experiment] = []
    missing: list[str] = []
    for item in wanted:
        match = [e for e in experiments if item in (e.experiment_id, e.name)]
        if not match:
            missing.append(item)
        chosen.extend(m for m in match if m not in chosen)
    if missing:
        known = ", ".join(f"{e.name} ({e.experiment_id})" for e in experiments[:20])
        raise MlflowImportError(f"Unknown MLflow experiment {missing[0]!r}. Known: {known}")
    return chosen


def _fingerprint(
    record: RunRecord,
    n_points: int,
    last_ts: int,
    artifacts: list[tuple[str, int | None]],
    parts: tuple[str, str] | None = None,
) -> str:
    """What a run's import depends on, hashed: the JSON of ``[status, end_time,
    lifecycle_stage, name, params, tags, inputs, n_points, last_ts, artifacts]``.

    ``parts`` is :func:`_fingerprint_parts` computed beforehand (while the metric scan
    runs): the same JSON text, built around the two figures that need the scan.
    """
    head, tail = parts if parts is not None else _fingerprint_parts(record, artifacts)
    return stable_id(f"[{head}, {int(n_points)}, {int(last_ts)}, {tail}]")


def _fingerprint_parts(
    record: RunRecord, artifacts: list[tuple[str, int | None]]
) -> tuple[str, str]:
    """The fingerprint's JSON before and after (n_points, last_ts): exactly what
    ``json.dumps`` writes for the whole list (items joined by ", ")."""
    dumps = functools.partial(json.dumps, sort_keys=True, default=str)
    head = [
        record.status,
        record.end_time,
        record.lifecycle_stage,
        record.name,
        sorted(record.params.items()),
        sorted(record.tags.items()),
        record.inputs,
    ]
    return ", ".join(dumps(item) for item in head), dumps(artifacts)


def _existing_fingerprints(store: Store, project: str) -> dict[str, str]:
    import pyarrow.compute as pc

    dataset = store.dataset("runs")
    table = dataset.to_table(
        columns=["run_id", "attrs"],
        filter=(pc.field("writer_id") == WRITER_ID)
        & (pc.field("event") == "started")
        & (pc.field("project") == project),
    )
    found = {}
    for run_id, attrs in zip(
        table.column("run_id").to_pylist(), table.column("attrs").to_pylist(), strict=True
    ):
        try:
            found[run_id] = json.loads(attrs)["mlflow"]["fingerprint"]
        except (TypeError, ValueError, KeyError):
            continue
    return found


class _Builder:
    """Rows of every kind for one chunk of runs."""

    def __init__(self, project: str, source: str, experiments: dict[str, Experiment]) -> None:
        self.project = project
        self.source = source
        self.experiments = experiments
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.started: list[dict[str, Any]] = []
        self.members: list[str] = []  # the runs static() was given
        self.prebuilt: dict[str, pa.Table] = {}
        self.columns: dict[str, tuple[list[str], list[str], list[str], list[int]]] = {
            "params": ([], [], [], []),
            "tags": ([], [], [], []),
        }

    def event_id(self, run_id: str, *parts: str) -> str:
        return stable_id("mlflow", run_id, *parts)

    def final(
        self,
        record: RunRecord,
        fingerprint: str,
        artifacts: list[tuple[ArtifactFile, str | None, str | None]],
    ) -> None:
        """The rows that depend on the run's fingerprint and stored artifacts."""
        run_id = record.run_id
        tags = record.tags
        start = _us(record.start_time) or _us(record.end_time) or 0
        end = _us(record.end_time)
        experiment = self.experiments[record.experiment_id]
        attrs: dict[str, Any] = {
            "mlflow": {
                "run_id": run_id,
                "experiment_id": record.experiment_id,
                "status": record.status,
                "lifecycle_stage": record.lifecycle_stage,
                "artifact_uri": record.artifact_uri,
                "source": self.source,
                "fingerprint": fingerprint,
            }
        }
        command = tags.get("mlflow.source.name")
        if command:
            attrs["command"] = command
        if tags.get("mlflow.note.content"):
            attrs["description"] = tags["mlflow.note.content"]
        self.started.append(
            {
                "event_id": self.event_id(run_id, "started"),
                "run_id": run_id,
                "ts": start,
                "writer_id": WRITER_ID,
                "event": "started",
                "experiment": experiment.name,
                "name": record.name or run_id[:8],
                "parent_run_id": tags.get("mlflow.parentRunId") or None,
                "user": record.user_id or tags.get("mlflow.user"),
                "attrs": json.dumps(attrs, sort_keys=True),
            }
        )
        stamp = end if end is not None else start
        for artifact, sha, uri in artifacts:
            self.rows["artifacts"].append(
                {
                    "event_id": self.event_id(run_id, "artifact", artifact.path),
                    "run_id": run_id,
                    "ts": stamp,
                    "writer_id": WRITER_ID,
                    "path": artifact.path,
                    "size": artifact.size,
                    "sha256": sha,
                    "uri": uri,
                    "kind": artifact.kind,
                }
            )

    def static(self, record: RunRecord) -> None:
        """Every other row of the run (built while the metric scan is still running)."""
        run_id = record.run_id
        tags = record.tags
        start = _us(record.start_time) or _us(record.end_time) or 0
        end = _us(record.end_time)
        rows = self.rows["runs"]
        git = {
            k: tags[t]
            for k, t in (
                ("commit", "mlflow.source.git.commit"),
                ("branch", "mlflow.source.git.branch"),
                ("repo", "mlflow.source.git.repoURL"),
            )
            if tags.get(t)
        }
        if git:
            rows.append(
                {
                    "event_id": self.event_id(run_id, "environment"),
                    "run_id": run_id,
                    "ts": start,
                    "writer_id": WRITER_ID,
                    "event": "environment",
                    "attrs": json.dumps({"git": git, "source": "mlflow"}, sort_keys=True),
                    "git_commit": git.get("commit"),
                    "git_branch": git.get("branch"),
                }
            )
        terminal = _TERMINAL.get(record.status)
        if terminal is not None:
            rows.append(
                {
                    "event_id": self.event_id(run_id, "end"),
                    "run_id": run_id,
                    "ts": end if end is not None else start,
                    "writer_id": WRITER_ID,
                    "event": terminal,
                }
            )
        if record.lifecycle_stage == "deleted":
            deleted = _us(record.deleted_time) or end or start
            rows.append(
                {
                    "event_id": self.event_id(run_id, "deleted"),
                    "run_id": run_id,
                    "ts": max(deleted, end or start),
                    "writer_id": WRITER_ID,
                    "event": "deleted",
                    "message": "deleted in MLflow",
                }
            )
        # Params and tags are the bulk of an import's rows: kept as columns, not dicts.
        for kind, items in (("params", record.params), ("tags", record.tags)):
            if items:
                run_ids, keys, values, stamps = self.columns[kind]
                run_ids.extend([run_id] * len(items))
                keys.extend(items)
                values.extend(items.values())
                stamps.extend([start] * len(items))
        for item in record.inputs:
            profile: dict[str, Any] = {}
            schema: dict[str, Any] = {}
            try:
                profile = json.loads(item["profile"]) if item["profile"] else {}
                schema = json.loads(item["schema"]) if item["schema"] else {}
            except (TypeError, ValueError):
                pass
            source = item["source"]
            try:
                parsed = json.loads(source) if source else None
                if isinstance(parsed, dict):
                    source = parsed.get("uri") or parsed.get("url") or parsed.get("path") or source
            except ValueError:
                pass
            colspec = schema.get("mlflow_colspec") if isinstance(schema, dict) else None
            self.rows["datasets"].append(
                {
                    "event_id": self.event_id(run_id, "dataset", item["name"], item["digest"]),
                    "run_id": run_id,
                    "ts": start,
                    "writer_id": WRITER_ID,
                    "name": item["name"],
                    "context": item["tags"].get("mlflow.data.context"),
                    "source": source,
                    "sha256": None,
                    "rows": profile.get("num_rows") if isinstance(profile, dict) else None,
                    "columns": len(colspec) if isinstance(colspec, list) else None,
                    "schema": json.dumps({"mlflow": item}, sort_keys=True),
                }
            )

    def table(self, kind: str) -> pa.Table:
        import pyarrow as pa

        schema = events.arrow_schema(kind)
        if kind in self.columns:
            return self._key_value_table(kind, schema)
        rows = self.rows.get(kind, [])
        if kind == "runs":
            rows = self.started + rows
        columns = {
            name: pa.array([row.get(name) for row in rows], schema.field(name).type)
            for name in schema.names
        }
        return pa.table(columns, schema=schema)

    def _key_value_table(self, kind: str, schema: pa.Schema) -> pa.Table:
        import pyarrow as pa

        run_ids, keys, values, stamps = self.columns[kind]
        word = "param" if kind == "params" else "tag"
        # stable_id("mlflow", run_id, word, key), inlined: one call per row adds up.
        sha = hashlib.sha256
        event_ids = [
            sha(f"mlflow\x1f{run_id}\x1f{word}\x1f{key}".encode()).hexdigest()[:32]
            for run_id, key in zip(run_ids, keys, strict=True)
        ]
        columns: dict[str, Any] = {
            "event_id": event_ids,
            "run_id": run_ids,
            "ts": stamps,
            "writer_id": [WRITER_ID] * len(run_ids),
            "key": keys,
            "value": values,
        }
        if kind == "params":
            columns["value_type"] = [_param_type(value) for value in values]
        return pa.table(
            {name: pa.array(columns[name], schema.field(name).type) for name in schema.names},
            schema=schema,
        )


class _Points:
    """Metric points of an ordered list of runs, in identity order.

    Identity order is (the run's position in ``run_ids``, key, step, timestamp, value):
    ``seq`` is a point's position within its run, the same whichever reader produced the
    points. Sorting works on integer codes in NumPy, never on strings: one stable sort on
    (run, key) codes here, done on blocks of rows (MLflow tables come in logging order,
    so a run's rows are few blocks: see :func:`_stable_order`); each chunk's rows are
    then gathered, checked to be in (step, timestamp, value) order within each series and
    lexsorted only when they are not, in :meth:`events`, which the import runs in its
    writer threads (NumPy releases the GIL).
    """

    def __init__(self, table: pa.Table | _CodedPoints, run_ids: list[str]) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        self.run_ids = run_ids
        n_runs = len(run_ids)
        # The reader's run codes to positions in run_ids, when rows keep the reader's
        # codes (code -1 hits the final -1); None when rows hold positions.
        self._remap: Any = None
        if isinstance(table, _CodedPoints):  # coded by the reader already
            position = {run_id: i for i, run_id in enumerate(run_ids)}
            remap = np.array([position.get(r, -1) for r in table.run_ids] + [-1], np.int32)
            run, key, value, step, stamp = table.columns()
            self.keys = pa.array(table.keys, pa.string())
            if self._from_blocks(table, remap, n_runs):
                return
            for at in range(0, len(run), 1 << 20):  # in place, a slice at a time
                run[at : at + (1 << 20)] = remap[run[at : at + (1 << 20)]]
        elif table.num_rows:
            rank = pc.index_in(table.column("run_id"), value_set=pa.array(run_ids, pa.string()))
            column = table.column("key")
            if pa.types.is_dictionary(column.type):  # sorted keys and codes from the reader
                self.keys = column.chunk(0).dictionary
                key = np.concatenate([c.indices.to_numpy() for c in column.chunks])
            else:
                self.keys = pa.array(sorted(pc.unique(column).to_pylist()), pa.string())
                key = pc.index_in(column, value_set=self.keys).to_numpy()
            # int32 codes (what index_in gives): half the memory traffic of int64
            run = np.asarray(pc.fill_null(rank, -1).to_numpy(), dtype=np.int32)
            key = np.asarray(key, dtype=np.int32)
            step = np.asarray(table.column("step").to_numpy(), dtype=np.int64)
            stamp = np.asarray(table.column("timestamp").to_numpy(), dtype=np.int64)
            value = np.asarray(table.column("value").to_numpy(), dtype=np.float64)
        else:
            column = table.column("key")
            self.keys = (
                column.chunk(0).dictionary
                if pa.types.is_dictionary(column.type) and column.num_chunks
                else pa.array([], pa.string())
            )
            run = key = np.zeros(0, np.int32)
            step = stamp = np.zeros(0, np.int64)
            value = np.zeros(0, np.float64)
        if len(run) and run.min() < 0:  # points of runs outside the selection
            keep = run >= 0
            run, key, value, step, stamp = (a[keep] for a in (run, key, value, step, stamp))
        self._run, self._key, self._value, self._step, self._stamp = run, key, value, step, stamp
        self._width = max(len(self.keys), 1)
        # (run, key) codes, in int32 when they fit (half the memory to touch)
        wide = np.int64 if n_runs * self._width >= 2**31 else np.int32
        group = run.astype(wide)
        group *= self._width
        group += key
        self._order, blocks = _stable_order(group)
        del group
        self.counts = np.bincount(run, minlength=n_runs)
        self.starts = np.zeros(n_runs + 1, np.int64)
        np.cumsum(self.counts, out=self.starts[1:])
        # The last timestamp of each run: the maximum of its blocks' maxima.
        self.last = np.zeros(n_runs, np.int64)
        if len(blocks):
            top = np.full(n_runs, np.iinfo(np.int64).min, np.int64)
            np.maximum.at(top, run[blocks], np.maximum.reduceat(stamp, blocks))
            nonempty = self.counts > 0
            self.last[nonempty] = top[nonempty]

    def _from_blocks(self, coded: _CodedPoints, remap: Any, n_runs: int) -> bool:
        """Order coded points by whole blocks of equal (run, key), found in the group
        column the scan threads filled; no pass over every row but the final order's,
        written into that column's memory (fresh memory costs page faults). False, with
        nothing done, when blocks are short (interleaved points): rows are sorted then.
        """
        import numpy as np

        run, key, value, step, stamp = coded.columns()
        n = len(run)
        if n == 0:
            return False
        group = coded.group
        blocks = np.flatnonzero(group[1:] != group[:-1]) + 1
        if (len(blocks) + 1) * 4 > n:
            return False
        blocks = np.concatenate((np.zeros(1, blocks.dtype), blocks))
        lengths = np.diff(blocks, append=n)
        owner = remap[run[blocks]]  # positions in run_ids; -1: a run not selected
        peak = np.maximum.reduceat(stamp, blocks)
        kept = owner >= 0
        blocks, lengths, owner, peak = blocks[kept], lengths[kept], owner[kept], peak[kept]
        width = max(len(self.keys), 1)
        by = np.argsort(owner.astype(np.int64) * width + key[blocks], kind="stable")
        first, length = blocks[by], lengths[by]
        # Written into the group column's memory: it is no longer needed.
        order = _block_order(first, length, group[: int(length.sum())])
        self._run, self._key, self._value, self._step, self._stamp = run, key, value, step, stamp
        self._remap, self._width, self._order = remap, width, order
        self.counts = np.bincount(owner, weights=lengths, minlength=n_runs).astype(np.int64)
        self.starts = np.zeros(n_runs + 1, np.int64)
        np.cumsum(self.counts, out=self.starts[1:])
        self.last = np.zeros(n_runs, np.int64)
        top = np.full(n_runs, np.iinfo(np.int64).min, np.int64)
        np.maximum.at(top, owner, peak)
        nonempty = self.counts > 0
        self.last[nonempty] = top[nonempty]
        return True

    def count(self, index: int) -> tuple[int, int]:
        """(points, last timestamp in ms) of run ``index``: what a fingerprint records."""
        return int(self.counts[index]), int(self.last[index])

    def events(self, first: int, stop: int, drop: Iterable[int] = ()) -> pa.Table:
        """``metrics`` events of runs ``first``..``stop - 1`` (less the ``drop`` ones).

        run_id, key and writer_id are built as dictionary arrays (Parquet stores them
        dictionary-encoded anyway), so no per-row string is ever materialised.
        """
        import numpy as np
        import pyarrow as pa

        lo, hi = int(self.starts[first]), int(self.starts[stop])
        rows = self._order[lo:hi]
        run, key = self._run[rows], self._key[rows]
        if self._remap is not None:  # rows keep the reader's run codes
            run = self._remap[run]
        step, stamp, value = self._step[rows], self._stamp[rows], self._value[rows]
        group = run.astype(np.int64) * self._width + key
        if not _series_sorted(group, step, stamp, value):
            resort = np.lexsort((value, stamp, step, group))
            run, key, step, stamp, value = (a[resort] for a in (run, key, step, stamp, value))
        seq = np.arange(lo, hi, dtype=np.int64) - self.starts[run]
        dropped = sorted(set(drop))
        if dropped:
            keep = ~np.isin(run - first, dropped)
            run, key, seq = run[keep], key[keep], seq[keep]
            step, stamp, value = step[keep], stamp[keep], value[keep]
        schema = events.arrow_schema("metrics")
        if len(run) == 0:
            return schema.empty_table()
        run_codes, run_values = _compact(run - first, stop - first)
        key_codes, key_values = _compact(key, len(self.keys))
        ids = [self.run_ids[first + int(i)] for i in run_values]
        codes = pa.array(run_codes)
        columns = {
            "run_id": pa.DictionaryArray.from_arrays(codes, pa.array(ids, pa.string())),
            "key": pa.DictionaryArray.from_arrays(
                pa.array(key_codes), self.keys.take(pa.array(key_values))
            ),
            "value": pa.array(value, pa.float64()),
            "step": pa.array(step, pa.int64()),
            "ts": pa.array(stamp * 1000, pa.int64()).cast(schema.field("ts").type),
            "writer_id": pa.DictionaryArray.from_arrays(
                codes, pa.array([f"mlflow:{i}" for i in ids], pa.string())
            ),
            "seq": pa.array(seq, pa.int64()),
        }
        return pa.table(
            [columns[name] for name in schema.names],
            schema=pa.schema(
                [pa.field(name, columns[name].type) for name in schema.names],
                metadata=schema.metadata,
            ),
        )


def _stable_order(group: Any) -> tuple[Any, Any]:
    """``np.argsort(group, kind="stable")``, and where each block of equal neighbours
    starts (in ``group``'s order).

    The sort moves whole blocks: a stable sort of the blocks' values, then each block's
    rows in place. MLflow logs a run's points together, so blocks are long and few, and
    this is two linear passes over one new array instead of an O(n log n) sort of every
    row.
    """
    import numpy as np

    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    blocks = np.flatnonzero(group[1:] != group[:-1]) + 1
    blocks = np.concatenate((np.zeros(1, blocks.dtype), blocks))
    if len(blocks) * 4 > n:  # short blocks (interleaved points): sort the rows
        return np.argsort(group, kind="stable"), blocks
    by = np.argsort(group[blocks], kind="stable")
    first, length = blocks[by], np.diff(blocks, append=n)[by]
    return _block_order(first, length, np.empty(n, np.int32 if n < 2**31 else np.int64)), blocks


def _block_order(first: Any, length: Any, out: Any) -> Any:
    """Into ``out`` (as many rows as the blocks hold): the row positions of the blocks
    starting at ``first`` with ``length`` rows each, block after block — consecutive
    rows within a block; at each block's start, a jump to its first row."""
    import numpy as np

    if len(out):
        out[:] = 1
        out[0] = first[0]
        out[np.cumsum(length[:-1])] = first[1:] - first[:-1] - length[:-1] + 1
        np.cumsum(out, out=out)
    return out


def _series_sorted(group: Any, step: Any, stamp: Any, value: Any) -> bool:
    """Whether rows already sorted by ``group`` are in (step, timestamp, value) order
    within each group (NaN last, as Arrow and NumPy sort it)."""
    import numpy as np

    if len(group) < 2:
        return True
    same = group[1:] == group[:-1]
    s0, s1, t0, t1, v0, v1 = step[:-1], step[1:], stamp[:-1], stamp[1:], value[:-1], value[1:]
    in_order = (s0 < s1) | ((s0 == s1) & ((t0 < t1) | ((t0 == t1) & ((v0 <= v1) | np.isnan(v1)))))
    return bool(np.all(in_order | ~same))


def _compact(codes: Any, size: int) -> tuple[Any, Any]:
    """Re-number ``codes`` (0..size-1) densely: (new codes as int32, the used old codes)."""
    import numpy as np

    used = np.flatnonzero(np.bincount(codes, minlength=size))
    remap = np.zeros(size, np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    return remap[codes], used


def import_runs(
    tracking_uri: str,
    store: str | os.PathLike[str] | Store | None = None,
    *,
    experiments: Iterable[str] | None = None,
    since: str | dt.date | dt.datetime | None = None,
    artifacts: str = "copy",
    include_deleted: bool = False,
    dry_run: bool = False,
    project: str = DEFAULT_PROJECT,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import MLflow experiments and runs into ``store``; safe to repeat.

    Args:
        tracking_uri: ``sqlite:///mlflow.db`` (any SQLAlchemy URI), an ``mlruns/`` folder
            or ``file:`` URI, or a tracking server ``http(s)://host:port``.
        experiments: experiment names or ids to import (default: all).
        since: import only runs started on or after this day (UTC, whole days).
        artifacts: ``copy`` into the content-addressed store, ``reference`` the original
            location, or ``skip``.
        include_deleted: also import deleted runs (marked with a ``deleted`` event).
        dry_run: read and count everything, write nothing.
        project: the ledger project the runs go to; MLflow experiments become ledger
            experiments of that name.
        progress: called as ``progress(done_runs, total_runs)``.

    Returns:
        An :class:`ImportSummary`; broken runs are in ``errors`` and were skipped.

    Raises:
        MlflowImportError: the source cannot be opened or an experiment is unknown.
        ConfigError: a bad option value.
    """
    started = time.perf_counter()
    if artifacts not in ARTIFACT_MODES:
        raise ConfigError(f"Unknown --artifacts mode {artifacts!r}. Allowed: copy, reference, skip")
    check_project_name(project)
    since_ms = _date_ms(since)
    store_obj = open_store(store)
    reader = open_reader(tracking_uri)
    summary = ImportSummary(source=reader.source, dry_run=dry_run)
    # No cyclic garbage collection while the records' millions of small objects are
    # built (none of them are cycles): it cost ~0.15 s per 10,000 runs. Restored after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        selected = [
            e
            for e in _experiment_selection(reader.experiments(), experiments)
            if include_deleted or e.lifecycle_stage != "deleted" or experiments
        ]
        by_id = {e.experiment_id: e for e in selected}
        runs, errors = reader.runs(list(by_id), since_ms)
        summary.errors.extend(errors)
        if not dry_run:
            store_obj.ensure_initialized()
        existing = (
            _existing_fingerprints(store_obj, project)
            if store_obj.exists(store_obj.kind_dir("runs"))
            else {}
        )
        kept = []
        for record in runs:
            if record.experiment_id not in by_id:
                continue
            if record.lifecycle_stage == "deleted" and not (
                include_deleted or record.run_id in existing
            ):
                summary.skipped += 1
                continue
            kept.append(record)
        models: dict[str, list[LoggedModel]] = defaultdict(list)
        if artifacts != "skip":
            for model in reader.logged_models(list(by_id)):
                if model.source_run_id:
                    models[model.source_run_id].append(model)
        chunks = _chunks(kept, by_id)
        summary.experiments = len({r.experiment_id for r in kept})
        _import_chunks(
            chunks,
            reader,
            store_obj,
            by_id,
            models,
            existing,
            artifacts,
            project,
            summary,
            dry_run,
            progress,
        )
    finally:
        if collecting:
            gc.enable()
        reader.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _chunks(runs: list[RunRecord], experiments: dict[str, Experiment]) -> list[_Chunk]:
    """Group runs by (experiment, start day, first id digit): a stable home for each run.

    Chunk membership never changes for a run, so re-importing a chunk replaces its files,
    and a run added later only rewrites the one chunk it joins.
    """
    groups: dict[tuple[str, dt.date, str], list[RunRecord]] = defaultdict(list)
    for record in runs:
        stamp = record.start_time if record.start_time is not None else record.end_time or 0
        day = dt.datetime.fromtimestamp(stamp / 1000, dt.timezone.utc).date()
        groups[(record.experiment_id, day, record.run_id[:1])].append(record)
    chunks = []
    for (experiment_id, day, bucket), members in sorted(groups.items()):
        experiment = experiments[experiment_id]
        key = stable_id(
            "mlflow-chunk", experiment_id, str(experiment.creation_time), day.isoformat(), bucket
        )
        chunks.append(_Chunk(key, day, members))
    return chunks


def _import_chunks(
    chunks: list[_Chunk],
    reader: Reader,
    store: Store,
    experiments: dict[str, Experiment],
    models: dict[str, list[LoggedModel]],
    existing: dict[str, str],
    artifact_mode: str,
    project: str,
    summary: ImportSummary,
    dry_run: bool,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Import every chunk, overlapping the work that can overlap on two cores.

    1. The reader's whole-selection metric scan and its sort into :class:`_Points` run in
       a worker thread (ADBC, file reads and NumPy release the GIL; the sqlite reader
       started the scan already while reading params and tags) while this thread lists
       artifacts, builds every row that does not depend on metrics (params, tags,
       datasets, run events) of each chunk with a new run and queues that chunk's
       params/tags/datasets files for writing, and prepares the fingerprints.
    2. Then each chunk gets its fingerprints and, unless unchanged, its remaining rows
       (built only now for a chunk of runs imported before); its files, metric points
       included, are built and written by two worker threads.

    Readers without a whole-selection scan are read chunk by chunk in step 2.
    """
    from concurrent.futures import ThreadPoolExecutor

    ordered = [record for chunk in chunks for record in chunk.runs]
    total = len(ordered)
    if progress is not None:
        progress(0, total)
    pool = ThreadPoolExecutor(2, thread_name_prefix="ledger-mlflow-import")
    writes: list[tuple[str, Future[int]]] = []
    broken: dict[str, str] = {}
    try:
        bulk = pool.submit(_bulk_points, reader, ordered) if ordered else None
        listed: dict[str, list[ArtifactFile]] = {}
        for record in ordered:
            files: list[ArtifactFile] = []
            if artifact_mode != "skip":
                try:
                    files = reader.artifacts(record)
                    for model in models.get(record.run_id, []):
                        files.extend(reader.model_artifacts(model))
                except Exception as exc:
                    broken[record.run_id] = f"artifacts: {type(exc).__name__}: {exc}"
                    continue
            listed[record.run_id] = files
        builders: list[_Builder | None] = []
        early: list[dict[str, Future[int]] | None] = []
        for chunk in chunks:
            if dry_run or all(r.run_id in existing for r in chunk.runs):
                # Nothing to build for a dry run; nor yet for a chunk of runs imported
                # before: most likely unchanged, known once its fingerprints are.
                builders.append(None)
                early.append(None)
                continue
            builder = _static(chunk, broken, reader, experiments, project)
            builders.append(builder)
            # A chunk with a new run is written: its files that do not depend on metrics
            # are written now, while the scan runs.
            early.append(_submit_writes(builder.prebuilt, chunk, store, project, pool, writes))
        # Fingerprints but for their metric figures, while the scan runs.
        prepared = {
            record.run_id: _fingerprint_parts(
                record, [(f.path, f.size) for f in listed[record.run_id]]
            )
            for record in ordered
            if record.run_id in listed
        }
        result = bulk.result() if bulk is not None else None
        bulk = None
        points: _Points | None = None
        if result is not None:
            points, unreadable = result
            broken.update(unreadable)
            del result
        first = 0
        for index, chunk in enumerate(chunks):
            stop = first + len(chunk.runs)
            if points is not None:
                chunk_points, offset = points, first
            else:
                chunk_points, offset = _chunk_points(reader, chunk, broken), 0
            _import_chunk(
                chunk,
                builders[index],
                early[index],
                dry_run,
                chunk_points,
                offset,
                reader,
                store,
                experiments,
                models,
                listed,
                prepared,
                broken,
                existing,
                artifact_mode,
                project,
                summary,
                pool,
                writes,
            )
            first = stop
            if progress is not None:
                progress(stop, total)
        for path, future in writes:
            try:
                future.result()
            except OSError as exc:
                raise StoreError(f"Cannot write {path}: {exc}") from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for record in ordered:
        if record.run_id in broken:
            summary.errors.append((record.run_id, broken[record.run_id]))


def _bulk_points(reader: Reader, ordered: list[RunRecord]) -> tuple[_Points, dict[str, str]] | None:
    """The reader's whole-selection scan, coded and sorted into :class:`_Points` in the
    same worker thread, so that the sort overlaps the main thread's work too."""
    result = reader.bulk_metrics(ordered)
    if result is None:
        return None
    table, unreadable = result
    del result
    return _Points(table, [r.run_id for r in ordered]), unreadable


def _static(
    chunk: _Chunk,
    broken: dict[str, str],
    reader: Reader,
    experiments: dict[str, Experiment],
    project: str,
) -> _Builder:
    """A chunk's builder with every row that does not depend on its metrics."""
    builder = _Builder(project, reader.source, experiments)
    builder.members = [r.run_id for r in chunk.runs if r.run_id not in broken]
    for record in chunk.runs:
        if record.run_id not in broken:
            builder.static(record)
    builder.prebuilt = {kind: builder.table(kind) for kind in ("params", "tags", "datasets")}
    return builder


def _chunk_points(reader: Reader, chunk: _Chunk, broken: dict[str, str]) -> _Points:
    """The points of one chunk's runs (readers without a whole-selection scan)."""
    import pyarrow as pa

    runs = [r for r in chunk.runs if r.run_id not in broken]
    try:
        table = reader.metrics(runs)
    except BrokenRunError:
        # Find the broken run(s) one by one, keep the rest of the chunk.
        parts = []
        for record in runs:
            try:
                parts.append(reader.metrics([record]))
            except BrokenRunError as exc:
                broken[record.run_id] = str(exc)
        table = pa.concat_tables(parts) if parts else _metrics_table(None)
    return _Points(table, [r.run_id for r in chunk.runs])


def _import_chunk(
    chunk: _Chunk,
    builder: _Builder | None,
    early: dict[str, Future[int]] | None,
    dry_run: bool,
    points: _Points,
    offset: int,
    reader: Reader,
    store: Store,
    experiments: dict[str, Experiment],
    models: dict[str, list[LoggedModel]],
    listed: dict[str, list[ArtifactFile]],
    prepared: dict[str, tuple[str, str]],
    broken: dict[str, str],
    existing: dict[str, str],
    artifact_mode: str,
    project: str,
    summary: ImportSummary,
    pool: Any,
    writes: list[tuple[str, Any]],
) -> None:
    """Count one chunk into ``summary`` and, unless a dry run or nothing changed, queue
    its files for writing.

    ``builder`` has the chunk's rows that do not depend on metrics, or is None (built
    here when needed); ``early`` the writes of those rows already queued, or None. A
    chunk with early writes is always written in full (its runs may all have turned out
    unchanged or broken since).
    """
    position = {r.run_id: offset + i for i, r in enumerate(chunk.runs)}
    good = [r for r in chunk.runs if r.run_id not in broken]
    counts = {r.run_id: points.count(position[r.run_id]) for r in good}
    fingerprints = {
        r.run_id: _fingerprint(
            r,
            *counts[r.run_id],
            [(f.path, f.size) for f in listed[r.run_id]],
            prepared.get(r.run_id),
        )
        for r in good
    }
    states = {
        r.run_id: "new"
        if r.run_id not in existing
        else ("unchanged" if existing[r.run_id] == fingerprints[r.run_id] else "updated")
        for r in good
    }
    unchanged = bool(good) and all(s == "unchanged" for s in states.values())
    if not dry_run and (early is not None or not unchanged):
        if builder is None:
            builder = _static(chunk, broken, reader, experiments, project)
        # A scratch folder only for downloads (local artifacts are read in place).
        remote = artifact_mode == "copy" and any(
            artifact.local is None for record in good for artifact in listed[record.run_id]
        )
        scratch_dir = (
            tempfile.TemporaryDirectory(prefix="ledger-mlflow-")
            if remote
            else contextlib.nullcontext("")
        )
        with scratch_dir as scratch:
            stored_by_run = {}
            for record in good:
                stored: list[tuple[ArtifactFile, str | None, str | None]] = []
                try:
                    for artifact in listed[record.run_id]:
                        if artifact_mode == "copy":
                            local = reader.fetch(artifact, scratch)
                            sha, size, uri = store.put_artifact(local)
                            artifact.size = size
                            stored.append((artifact, sha, uri))
                        else:
                            stored.append((artifact, None, artifact.uri))
                except Exception as exc:
                    broken[record.run_id] = f"artifacts: {type(exc).__name__}: {exc}"
                    continue
                stored_by_run[record.run_id] = stored
        good = [r for r in good if r.run_id not in broken]
        if [r.run_id for r in good] != builder.members:  # a run broke since: rebuild
            builder = _static(chunk, broken, reader, experiments, project)
            if early:  # the rebuilt files must land after the early ones
                from concurrent.futures import wait

                wait(early.values())
            early = None
        for record in good:
            builder.final(record, fingerprints[record.run_id], stored_by_run[record.run_id])
        tables: dict[str, Any] = {
            kind: builder.prebuilt[kind] if kind in builder.prebuilt else builder.table(kind)
            for kind in events.KINDS
            if kind not in _NOT_IMPORTED and kind not in (early or ())
        }
        drop = [i for i, r in enumerate(chunk.runs) if r.run_id in broken]
        tables["metrics"] = functools.partial(points.events, offset, offset + len(chunk.runs), drop)
        _submit_writes(tables, chunk, store, project, pool, writes)
    good = [r for r in good if r.run_id not in broken]
    for record in good:
        summary.runs += 1
        summary.params += len(record.params)
        summary.tags += len(record.tags)
        summary.datasets += len(record.inputs)
        summary.metric_points += counts[record.run_id][0]
        summary.artifacts += sum(f.kind == "file" for f in listed[record.run_id])
        summary.models += len(models.get(record.run_id, [])) if artifact_mode != "skip" else 0
        state = states[record.run_id]
        summary.new_runs += state == "new"
        summary.updated_runs += state == "updated"
        summary.unchanged_runs += state == "unchanged"


def _submit_writes(
    tables: dict[str, Any],
    chunk: _Chunk,
    store: Store,
    project: str,
    pool: Any,
    writes: list[tuple[str, Any]],
) -> dict[str, Future[int]]:
    """Queue the chunk's file of each kind in ``tables`` (an empty one only to replace
    an existing file); the queued writes by kind."""
    name = f"mlflow-{chunk.key}.parquet"
    queued = {}
    for kind, table in tables.items():
        directory = store.partition_dir(kind, project, chunk.day)
        empty = kind != "metrics" and table.num_rows == 0
        if empty and not store.exists(f"{directory}/{name}"):
            continue
        queued[kind] = pool.submit(_write, store, directory, name, table, kind)
        writes.append((f"{directory}/{name}", queued[kind]))
    return queued


def _write(store: Store, directory: str, name: str, table: Any, kind: str) -> int:
    """Build (metric points are built here, in the worker thread) and write one file."""
    if callable(table):
        table = table()
        if table.num_rows == 0 and not store.exists(f"{directory}/{name}"):
            return 0
    return store.write_parquet(directory, name, table, kind=kind)


# Kinds not built by _Builder: metrics come from _Points; summaries are optional (readers
# fold the raw points of metrics files without a twin).
_NOT_IMPORTED = ("metrics", "summaries")
