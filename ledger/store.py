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
``os.replace``-d into place; on an object store the whole file is encoded in memory
first and then sent as one PUT of the final key, which S3 makes visible all at once.

The file helpers at the end of :class:`Store` (``list_files``, ``read_bytes``,
``write_bytes``, ``delete_file``, ``copy_file``, ``get_artifact``...) work the same on
both kinds of root, so features built on them (compaction, archive, import, serve) run
against a bucket unchanged.
"""

from __future__ import annotations

import contextlib
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
from ledger.objectstore import (
    filesystem_for,
    is_object_uri,
    remember_config,
    resolve_options,
    split_uri,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

SCHEMA_PARTITION = "project=__schema__/date=1970-01-01"
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HASH_CHUNK = 1 << 20
_SINGLE_PUT_MAX = 64 << 20  # larger uploads go through a temp key (see Store._put_stream)

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
    "cost_summaries": {
        # energy figures may be NaN: no statistics on float columns (see "metrics").
        "write_statistics": ["run_id", "writer_id", "ts"],
        "use_dictionary": ["run_id", "writer_id", "r_host", "r_gpu_model", "e_source"],
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
    return is_object_uri(root)


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
            scheme, bucket, prefix = split_uri(root)
            self.uri = f"{scheme}://{bucket}/{prefix}".rstrip("/")
            self.base = f"{bucket}/{prefix}".rstrip("/")
            self._fs = None
            # Load pyarrow's S3 support now, not in the final flush at interpreter exit:
            # it registers an atexit hook (refused once shutdown has begun), and loading
            # it before the run API installs its exit flush makes S3 finalise after it.
            import pyarrow.fs  # noqa: F401
        self._settings: Settings | None = None
        self.compression_level: int | None = None
        """zstd level for files written here (None: pyarrow's default); archives go higher."""
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
                self._fs = filesystem_for(self.uri)
        return self._fs

    def path(self, *parts: str) -> str:
        """An absolute path (local) or ``bucket/key`` (remote) under the store root."""
        if not self.is_local:
            return "/".join([self.base, *parts])
        return os.path.join(self.base, *parts)

    def uri_of(self, path: str) -> str:
        """A path from :meth:`path` as other tools take it (``s3://bucket/key`` remotely)."""
        return path if self.is_local else f"{self.uri.split('://', 1)[0]}://{path}"

    def storage_options(self) -> dict[str, str]:
        """Connection settings in polars' ``storage_options`` form ({} for a local store)."""
        return {} if self.is_local else resolve_options(self.uri).polars_storage_options()

    def kind_dir(self, kind: str) -> str:
        return self.path("events", kind)

    def partition_dir(self, kind: str, project: str, day: dt.date) -> str:
        return self.path("events", kind, f"project={project}", f"date={day.isoformat()}")

    def kind_glob(self, kind: str) -> str:
        """A glob that matches exactly the complete files of ``kind`` (a URI remotely)."""
        return self.uri_of(self.path("events", kind, "*", "*", "*.parquet"))

    # -- settings ------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = settings_from(self.read_config())
        return self._settings

    def read_config(self) -> dict[str, Any]:
        """The parsed ``ledger.toml`` at the store root ({} when absent)."""
        if self.is_local:
            config = load_config_file(self.path(CONFIG_FILE))
            remember_config(config)
            return config
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
            except (OSError, StoreError) as exc:
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
        With ``kind``, the file's key-value metadata names the kind and the schema version
        it was written with (DESIGN.md invariant 3), so a reader can upgrade old files.
        """
        import pyarrow.parquet as pq

        metadata = dict(table.schema.metadata or {})
        if kind:
            metadata[b"ledger.kind"] = kind.encode()
            metadata[b"ledger.schema_version"] = str(events.SCHEMA_VERSION).encode()

        def encode(where: Any) -> None:
            # store_schema=False keeps files small but drops the schema's key-value
            # metadata, so the file's own metadata is added explicitly.
            with pq.ParquetWriter(
                where,
                table.schema,
                compression="zstd",
                compression_level=self.compression_level,
                store_schema=False,
                **_WRITE_OPTIONS.get(kind, {}),
            ) as writer:
                writer.write_table(table)
                if metadata:
                    writer.add_key_value_metadata(metadata)

        if self.is_local:
            os.makedirs(directory, exist_ok=True)
            final = os.path.join(directory, name)
            tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
            try:
                encode(tmp)
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
        import pyarrow as pa

        # Encode completely before opening the upload: a failure while encoding must
        # not leave a short object behind (closing an S3 stream publishes what it has).
        buffer = pa.BufferOutputStream()
        encode(buffer)
        data = buffer.getvalue()
        self._put(f"{directory}/{name}", data)
        return data.size

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
            with open(local_path, "rb") as src:
                self._put_stream(src, target, size)
        return sha, size, relative

    def get_artifact(self, uri: str, destination: str) -> str:
        """Copy a stored artifact (``artifacts/sha256/..``) to a local file; returns it.

        Raises:
            StoreError: for a uri outside the artifacts area or a missing artifact.
        """
        source = self.artifact_path(uri)
        parent = os.path.dirname(os.path.abspath(destination))
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(destination)}.{uuid.uuid4().hex}.tmp")
        try:
            with self.fs.open_input_stream(source) as src, open(tmp, "wb") as sink:
                while chunk := src.read(_HASH_CHUNK):
                    sink.write(chunk)
            os.replace(tmp, destination)
        except FileNotFoundError as exc:
            raise StoreError(f"Artifact {uri} is missing from {self.uri}") from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return destination

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
        self.ensure_initialized()
        return kind_dataset(self.fs, self.kind_dir(kind), kind)

    def scan(self, kind: str) -> Any:
        """A polars ``LazyFrame`` over ``kind``'s complete files, in place (local or S3).

        The raw events, as in the ``events_<kind>`` view: Hive columns typed, older files
        missing a newer column read it as null, in-progress files never matched.

        Raises:
            ConfigError: for an unknown kind.
        """
        import polars as pl

        if kind not in events.KINDS:
            raise ConfigError(f"Unknown kind {kind!r}. Known: {', '.join(events.KINDS)}")
        self.ensure_initialized()
        frame = pl.from_arrow(events.arrow_schema(kind).empty_table())
        assert isinstance(frame, pl.DataFrame)
        return pl.scan_parquet(
            self.kind_glob(kind),
            hive_partitioning=True,
            hive_schema={"project": pl.String, "date": pl.Date},
            schema=frame.schema,
            missing_columns="insert",
            extra_columns="ignore",
            hidden_file_prefix=[".", "_"],
            storage_options=self.storage_options() or None,
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

    # -- files (local or remote alike) ---------------------------------------------------

    def _put(self, path: str, data: bytes | pa.Buffer) -> None:
        try:
            with self.fs.open_output_stream(path) as sink:
                sink.write(data)
        except OSError as exc:
            raise StoreError(f"Cannot write {self.uri_of(path)}: {exc}") from exc

    def _put_stream(self, source: Any, path: str, size: int) -> None:
        """Upload a readable binary stream to ``path`` so that it appears all at once.

        pyarrow's S3 output stream publishes whatever it holds when closed, even after an
        error, and cannot abort. Files up to ``_SINGLE_PUT_MAX`` are read whole and sent
        as one PUT; larger ones are uploaded under a hidden temp key, then copied
        server-side to the final key (one request) and the temp key deleted, so a failed
        upload never leaves a short file under a real name.
        """
        if 0 <= size <= _SINGLE_PUT_MAX:
            self._put(path, source.read())
            return
        directory, _, name = path.rpartition("/")
        tmp = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(tmp) as sink:
                while chunk := source.read(_HASH_CHUNK):
                    sink.write(chunk)
            self.fs.copy_file(tmp, path)
        except OSError as exc:
            raise StoreError(f"Cannot write {self.uri_of(path)}: {exc}") from exc
        finally:
            self.delete_file(tmp)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file atomically (temp + rename locally, one PUT remotely)."""
        if not self.is_local:
            self._put(path, data)
            return
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def read_bytes(self, path: str) -> bytes:
        """A whole file's content.

        Raises:
            FileNotFoundError: when there is no such file.
        """
        with self.fs.open_input_stream(path) as handle:
            return bytes(handle.read())

    def list_files(self, path: str, *, suffix: str = "") -> list[pafs.FileInfo]:
        """Every file under ``path`` (recursive; [] when absent), sorted by path.

        Files whose name starts with ``.`` or ``_`` (in-progress temp files) are left out.
        """
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
        infos = [
            info
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and not info.base_name.startswith((".", "_"))
            and info.base_name.endswith(suffix)
        ]
        return sorted(infos, key=lambda info: info.path)

    def delete_file(self, path: str) -> None:
        """Delete one file; a missing file is not an error (deletes are retried)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    def delete_dir(self, path: str) -> None:
        """Delete a directory (a key prefix remotely) and everything under it."""
        import pyarrow.fs as pafs

        if self.fs.get_file_info(path).type != pafs.FileType.NotFound or not self.is_local:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_dir(path)

    def file_info(self, path: str) -> pafs.FileInfo | None:
        """Size and modification time of a file (``None`` when there is none)."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(path)
        return info if info.type == pafs.FileType.File else None

    def open_input(self, path: str) -> Any:
        """A readable binary stream of a file (a context manager; no full download).

        Raises:
            FileNotFoundError: when there is no such file.
        """
        return self.fs.open_input_stream(path)

    def put_file(self, local_path: str, path: str) -> None:
        """Upload (or copy) a local file to ``path`` atomically, streaming it."""
        if self.is_local:
            directory, name = os.path.split(path)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
            try:
                shutil.copyfile(local_path, tmp)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        with open(local_path, "rb") as src:
            self._put_stream(src, path, os.fstat(src.fileno()).st_size)

    def transfer(self, path: str, destination: Store, destination_path: str) -> None:
        """Copy one file from this store to another (e.g. a hot tier to an archive bucket).

        The file appears at the destination all at once (rename locally, one upload
        remotely); the source is left in place, deleting it is the caller's next step.
        """
        if destination is self:
            self.copy_file(path, destination_path)
            return
        if destination.is_local:
            directory, name = os.path.split(destination_path)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
            try:
                with self.open_input(path) as src, open(tmp, "wb") as sink:
                    while chunk := src.read(_HASH_CHUNK):
                        sink.write(chunk)
                os.replace(tmp, destination_path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        info = self.file_info(path)
        with self.open_input(path) as src:
            destination._put_stream(src, destination_path, info.size if info else -1)

    def copy_file(self, source: str, destination: str) -> None:
        """Copy within the store (server-side on S3; atomic like :meth:`write_bytes`)."""
        if self.is_local:
            self.write_bytes(destination, self.read_bytes(source))
        else:
            self.fs.copy_file(source, destination)


def kind_dataset(
    fs: pafs.FileSystem, kind_dir: str, kind: str, exclude: Collection[str] = ()
) -> pads.Dataset:
    """A pyarrow dataset over the complete files under one ``events/<kind>`` directory.

    Discovery lists the directory once (recursively) and skips ``.``/``_`` names, so
    in-progress temp files never show; the dataset is a snapshot of that listing.
    ``exclude`` holds paths (as ``fs`` lists them) to leave out: the files the lifecycle
    commit log hides (:mod:`ledger.txnlog`).
    """
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    partitioning = pads.partitioning(
        pa.schema([("project", pa.string()), ("date", pa.date32())]), flavor="hive"
    )
    # Partition columns in the order DuckDB's read_parquet gives them, so a view has
    # the same columns whichever way it reads.
    schema = events.arrow_schema(kind).append(pa.field("date", pa.date32()))
    schema = schema.append(pa.field("project", pa.string()))
    selector = pafs.FileSelector(kind_dir, recursive=True, allow_not_found=True)
    infos = [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
        and info.base_name.endswith(".parquet")
        and not info.base_name.startswith((".", "_"))
        and info.path not in exclude
    ]
    return pads.FileSystemDatasetFactory(
        fs,
        infos,
        pads.ParquetFileFormat(),
        pads.FileSystemFactoryOptions(partition_base_dir=kind_dir, partitioning=partitioning),
    ).finish(schema)


def check_store(root: str | os.PathLike[str] | Store | None = None) -> Any:
    """Probe a store end to end: settings, list, write, read back, delete, layout.

    Every step runs even when an earlier one failed, and each row says what happened
    and how long it took, so one call tells a user what is wrong with a bucket's
    endpoint, credentials or permissions. Returns a polars DataFrame with columns
    ``check``, ``ok``, ``detail`` and ``ms``; the probe file is removed again and
    nothing else is written.
    """
    import time

    import polars as pl

    store = open_store(root)
    rows: list[dict[str, Any]] = []

    def step(name: str, action: Any) -> Any:
        started = time.perf_counter()
        try:
            detail, result = action()
            ok = True
        except Exception as exc:  # a probe reports every failure, typed or not
            detail, result, ok = f"{type(exc).__name__}: {exc}", None, False
        rows.append(
            {
                "check": name,
                "ok": ok,
                "detail": detail,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }
        )
        return result

    if store.is_local:
        step("location", lambda: (f"local directory {store.base}", None))
    else:
        options = resolve_options(store.uri)
        step(
            "location",
            lambda: (
                f"{store.uri} at {options.endpoint_url or 'AWS (default endpoint)'}, region "
                f"{options.region or 'auto'}, credentials from {options.credentials_from}",
                None,
            ),
        )
    probe = store.path("_ledger_check", f"{uuid.uuid4().hex}.txt")
    payload = f"ledger check {uuid.uuid4().hex}".encode()

    def listing() -> tuple[str, None]:
        if not store.is_local:
            import pyarrow.fs as pafs

            bucket = store.base.split("/", 1)[0]
            if store.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise StoreError(f"bucket {bucket!r} does not exist (or is not visible)")
        return f"{len(store.list_files(store.path('events')))} event files", None

    step("list", listing)

    def write() -> tuple[str, None]:
        store.write_bytes(probe, payload)
        return f"wrote {len(payload)} bytes to {store.uri_of(probe)}", None

    step("write", write)

    def read_back() -> tuple[str, None]:
        if store.read_bytes(probe) != payload:
            raise StoreError("read back different bytes than were written")
        return "read back what was written", None

    step("read", read_back)

    def delete() -> tuple[str, None]:
        store.delete_file(probe)
        store.delete_dir(store.path("_ledger_check"))
        if store.file_info(probe) is not None:
            raise StoreError("the probe file is still there after deleting it")
        return "removed the probe file", None

    step("delete", delete)

    def layout() -> tuple[str, None]:
        name = f"schema-v{events.SCHEMA_VERSION}.parquet"
        present = [
            kind
            for kind in events.KINDS
            if store.exists(store.path("events", kind, SCHEMA_PARTITION, name))
        ]
        if not present:
            return "not initialised yet (the first run or query creates the layout)", None
        missing = sorted(set(events.KINDS) - set(present))
        if missing:
            return f"schema files missing for {', '.join(missing)} (recreated on use)", None
        return f"schema files for all {len(events.KINDS)} kinds present", None

    step("layout", layout)
    return pl.DataFrame(rows)


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(root: str | os.PathLike[str] | Store | None = None) -> Store:
    """The process-wide :class:`Store` for ``root`` (resolved as ``resolve_store_root``)."""
    from ledger.config import resolve_store_root

    if isinstance(root, Store):
        return root
    resolved = resolve_store_root(root)
    if _is_remote(resolved):
        scheme, bucket, prefix = split_uri(resolved)
        key = f"{scheme}://{bucket}/{prefix}".rstrip("/")
    else:
        key = os.path.abspath(os.path.expanduser(resolved))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(resolved)
        return store


def _forget_clients_after_fork() -> None:
    # A forked child must not reuse the parent's S3 client (see ledger.objectstore).
    for store in _stores.values():
        if not store.is_local:
            store._fs = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients_after_fork)
