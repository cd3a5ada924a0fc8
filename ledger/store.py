"""The store: a directory (or object-store prefix) that *is* the database.

Layout (DESIGN.md invariant 4)::

    <root>/ledger.toml                                   optional settings
    <root>/events/<kind>/project=<p>/date=<YYYY-MM-DD>/<writer_id>-<n>.parquet
    <root>/events/<kind>/project=__schema__/date=1970-01-01/schema-v<N>.parquet
    <root>/artifacts/sha256/<aa>/<sha256>                content-addressed files

The zero-row ``schema-v<N>.parquet`` file per kind makes every column exist for any
reader (DuckDB, polars, Spark) even on an empty store or before a kind was ever logged.

Files appear atomically: local writes go to ``.<name>.<uuid>.tmp`` in the same directory
(which no ``*.parquet`` glob and no pyarrow discovery matches), are fsynced, then
``os.replace``-d into place; on an object store one PUT of the final key is atomic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import threading
import uuid
from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.config import CONFIG_FILE, Settings, load_config_file, settings_from
from ledger.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

SCHEMA_PARTITION = "project=__schema__/date=1970-01-01"
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HASH_CHUNK = 1 << 20

# Per-kind Parquet encodings: deltas make steps/timestamps/sequence numbers nearly free,
# byte-stream-split helps zstd on smooth float curves (bytes/point target in README).
# No min/max statistics on float value columns: Parquet statistics leave NaN out, and
# DuckDB 2.0 then proves `isnan(value)` false and prunes or folds it away (wrong
# answers for NaN filters and NaN-skipping min/max; see docs/notes.md).
_WRITE_OPTIONS: dict[str, dict[str, Any]] = {
    "metrics": {
        "write_statistics": ["run_id", "key", "step", "ts", "writer_id", "seq"],
        "use_dictionary": ["run_id", "key", "writer_id"],
        "column_encoding": {
            "step": "DELTA_BINARY_PACKED",
            "ts": "DELTA_BINARY_PACKED",
            "seq": "DELTA_BINARY_PACKED",
            "value": "BYTE_STREAM_SPLIT",
        },
    },
    "summaries": {
        # last_value may be NaN: no statistics on float columns (see "metrics").
        "write_statistics": ["run_id", "key", "writer_id", "ts", "last_step", "last_ts"],
        "use_dictionary": ["run_id", "key", "writer_id"],
    },
    "system": {
        "write_statistics": ["run_id", "ts", "writer_id", "seq", "device", "key"],
        "use_dictionary": ["run_id", "device", "key", "writer_id"],
        "column_encoding": {
            "ts": "DELTA_BINARY_PACKED",
            "seq": "DELTA_BINARY_PACKED",
            "value": "BYTE_STREAM_SPLIT",
        },
    },
}


def check_project_name(project: str) -> str:
    """Return ``project`` if it is a valid partition value.

    Raises:
        ConfigError: for names with characters that do not survive a Hive path.
    """
    if not isinstance(project, str) or not _PROJECT_NAME.match(project):
        raise ConfigError(
            f"Invalid project name {project!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return project


def _is_remote(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


class Store:
    """A ledger store at a local path or an object-store URI (``s3://bucket/prefix``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = str(root)
        self.uri = root
        self.is_local = not _is_remote(root)
        if self.is_local:
            path = root[len("file://") :] if root.startswith("file://") else root
            self.base = os.path.abspath(os.path.expanduser(path))
            self._fs: pafs.FileSystem | None = None
        else:
            self.base = ""
            self._fs = None
        self._settings: Settings | None = None
        self._initialized = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # -- paths -------------------------------------------------------------------------

    @property
    def fs(self) -> pafs.FileSystem:
        """The pyarrow file system behind the store (local or remote)."""
        if self._fs is None:
            import pyarrow.fs as pafs

            if self.is_local:
                self._fs = pafs.LocalFileSystem()
            else:
                self._fs, self.base = pafs.FileSystem.from_uri(self.uri)
                self.base = self.base.rstrip("/")
        return self._fs

    def path(self, *parts: str) -> str:
        """An absolute path (local) or bucket key (remote) under the store root."""
        if not self.is_local:
            self.fs  # noqa: B018 - resolves self.base for remote stores
            return "/".join([self.base, *parts])
        return os.path.join(self.base, *parts)

    def kind_dir(self, kind: str) -> str:
        return self.path("events", kind)

    def partition_dir(self, kind: str, project: str, day: dt.date) -> str:
        return self.path("events", kind, f"project={project}", f"date={day.isoformat()}")

    def kind_glob(self, kind: str) -> str:
        """A glob that matches exactly the complete files of ``kind``."""
        return self.path("events", kind, "*", "*", "*.parquet")

    # -- settings ------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = settings_from(self.read_config())
        return self._settings

    def read_config(self) -> dict[str, Any]:
        """The parsed ``ledger.toml`` at the store root ({} when absent)."""
        if self.is_local:
            return load_config_file(self.path(CONFIG_FILE))
        import sys

        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib
        try:
            with self.fs.open_input_stream(self.path(CONFIG_FILE)) as handle:
                return tomllib.loads(handle.read().decode())
        except FileNotFoundError:
            return {}
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Invalid {self.uri}/{CONFIG_FILE}: {exc}") from exc

    # -- writing ---------------------------------------------------------------------------

    def ensure_initialized(self) -> None:
        """Create the layout and each kind's zero-row schema file (idempotent).

        Raises:
            StoreError: when the store root cannot be created or written.
        """
        if self._initialized:
            return
        with self._lock:
            if self._initialized:
                return
            name = f"schema-v{events.SCHEMA_VERSION}.parquet"
            try:
                for kind in events.KINDS:
                    directory = self.path("events", kind, SCHEMA_PARTITION)
                    if not self.exists(self.path("events", kind, SCHEMA_PARTITION, name)):
                        self.write_parquet(directory, name, events.arrow_schema(kind).empty_table())
            except OSError as exc:
                raise StoreError(f"Cannot initialise store at {self.uri}: {exc}") from exc
            self._initialized = True

    def exists(self, path: str) -> bool:
        if self.is_local:
            return os.path.exists(path)
        import pyarrow.fs as pafs

        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def write_parquet(self, directory: str, name: str, table: pa.Table, kind: str = "") -> int:
        """Write ``table`` to ``directory/name`` atomically; returns the bytes written.

        Writing the same name again replaces the file, so a retried flush is idempotent.
        """
        import pyarrow.parquet as pq

        options = _WRITE_OPTIONS.get(kind, {})
        if self.is_local:
            os.makedirs(directory, exist_ok=True)
            final = os.path.join(directory, name)
            tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
            try:
                pq.write_table(table, tmp, compression="zstd", store_schema=False, **options)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            return os.path.getsize(final)
        final = f"{directory}/{name}"
        with self.fs.open_output_stream(final) as sink:
            pq.write_table(table, sink, compression="zstd", store_schema=False, **options)
            size = sink.tell()
        return int(size)

    def put_artifact(self, local_path: str) -> tuple[str, int, str]:
        """Copy a file into the content-addressed area; returns (sha256, size, uri).

        The uri is relative to the store root, so a store can be moved or copied whole.
        A file whose content is already stored is not copied again.
        """
        digest = hashlib.sha256()
        size = 0
        with open(local_path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        relative = f"artifacts/sha256/{sha[:2]}/{sha}"
        target = self.path(*relative.split("/"))
        if self.exists(target):
            return sha, size, relative
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{os.path.dirname(target)}/.{sha}.{uuid.uuid4().hex}.tmp"
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, target)
        else:
            with open(local_path, "rb") as src, self.fs.open_output_stream(target) as sink:
                shutil.copyfileobj(src, sink, _HASH_CHUNK)
        return sha, size, relative

    def artifact_path(self, uri: str) -> str:
        """The path (or key) of a stored artifact uri, refusing anything outside the store.

        Raises:
            StoreError: for absolute URIs or paths that escape the artifacts area.
        """
        parts = uri.split("/")
        if (
            len(parts) != 4
            or parts[:2] != ["artifacts", "sha256"]
            or not re.fullmatch(r"[0-9a-f]{64}", parts[3])
            or parts[2] != parts[3][:2]
        ):
            raise StoreError(f"Not an artifact stored in this ledger: {uri!r}")
        return self.path(*parts)

    # -- reading (core only needs lookups; analytics owns queries) -------------------------

    def dataset(self, kind: str) -> pads.Dataset:
        """A pyarrow dataset over ``kind``'s complete files, Hive partitions typed."""
        import pyarrow as pa
        import pyarrow.dataset as pads

        self.ensure_initialized()
        partitioning = pads.partitioning(
            pa.schema([("project", pa.string()), ("date", pa.date32())]), flavor="hive"
        )
        schema = events.arrow_schema(kind).append(pa.field("project", pa.string()))
        schema = schema.append(pa.field("date", pa.date32()))
        return pads.dataset(
            self.kind_dir(kind),
            filesystem=self.fs,
            format="parquet",
            partitioning=partitioning,
            schema=schema,
            exclude_invalid_files=False,
        )

    def run_started_rows(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """The ``started`` events of the given runs (for resuming and validating ids)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        dataset = self.dataset("runs")
        filter_ = (pc.field("event") == "started") & pc.field("run_id").isin(run_ids)
        table = dataset.to_table(
            columns=["run_id", "project", "experiment", "name", "parent_run_id"],
            filter=filter_,
        )
        del pads
        return table.to_pylist()


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(root: str | os.PathLike[str] | Store | None = None) -> Store:
    """The process-wide :class:`Store` for ``root`` (resolved as ``resolve_store_root``)."""
    from ledger.config import resolve_store_root

    if isinstance(root, Store):
        return root
    resolved = resolve_store_root(root)
    key = resolved if _is_remote(resolved) else os.path.abspath(os.path.expanduser(resolved))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(resolved)
        return store
