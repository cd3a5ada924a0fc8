"""Content fingerprints of data sets: hash, rows, columns and schema.

Accepts a path (file or directory), a pandas / polars DataFrame, a pyarrow Table, a
numpy array or a plain list. Frameworks are recognised by module name, so nothing is
imported that the caller has not already imported.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ledger.errors import InvalidValueError

_CHUNK = 1 << 20
_MAX_PARSED_CSV_BYTES = 1 << 30
"""CSV files up to this size are parsed for rows, columns and types (bigger: hash only)."""


def _hash_file(path: str, digest: Any) -> int:
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size


def _csv_shape(path: str, delimiter: str) -> dict[str, Any]:
    """Rows, columns and the inferred column types of a CSV file (streamed by pyarrow)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
        rows = sum(batch.num_rows for batch in reader)
    except (pa.ArrowInvalid, OSError, StopIteration):
        return {}  # not parseable as CSV: the content hash still stands
    schema = reader.schema
    return {
        "rows": rows,
        "columns": len(schema),
        "schema": {field.name: str(field.type) for field in schema},
    }


def _fingerprint_path(path: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    if os.path.isdir(path):
        files = sorted(
            os.path.relpath(os.path.join(folder, name), path)
            for folder, _, names in os.walk(path)
            for name in names
        )
        total = 0
        for relative in files:
            digest.update(relative.encode() + b"\0")
            total += _hash_file(os.path.join(path, relative), digest)
        return {
            "sha256": digest.hexdigest(),
            "rows": None,
            "columns": None,
            "schema": {"files": len(files), "bytes": total},
            "fingerprint": "directory",
        }
    size = _hash_file(path, digest)
    facts: dict[str, Any] = {
        "sha256": digest.hexdigest(),
        "rows": None,
        "columns": None,
        "schema": {"bytes": size},
    }
    facts["fingerprint"] = "file"
    lowered = path.lower()
    if lowered.endswith((".csv", ".tsv")) and size <= _MAX_PARSED_CSV_BYTES:
        facts.update(_csv_shape(path, delimiter="\t" if lowered.endswith(".tsv") else ","))
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        facts["rows"] = meta.num_rows
        facts["columns"] = meta.num_columns
        facts["schema"] = {f.name: str(f.type) for f in meta.schema.to_arrow_schema()}
    return facts


def _fingerprint_arrow(table: Any) -> dict[str, Any]:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    digest = hashlib.sha256(sink.getvalue()).hexdigest()
    return {
        "sha256": digest,
        "rows": table.num_rows,
        "columns": table.num_columns,
        "schema": {f.name: str(f.type) for f in table.schema},
        "fingerprint": "arrow",
    }


def fingerprint(data: Any) -> dict[str, Any]:
    """``{"sha256", "rows", "columns", "schema", "fingerprint"}`` describing ``data``.

    ``fingerprint`` names how the hash was made: ``file`` (the bytes of one file, so
    ``sha256sum`` agrees), ``directory`` (relative names and bytes of every file, sorted),
    ``arrow`` (Arrow IPC stream of a table/frame), ``numpy`` or ``json``. Only ``file``
    and ``directory`` hashes can be recomputed later from the source path.

    Raises:
        InvalidValueError: for types that cannot be fingerprinted, or missing paths.
    """
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.exists(path):
            raise InvalidValueError(f"Data set path {path!r} does not exist")
        return _fingerprint_path(path)
    module = type(data).__module__.split(".")[0]
    if module == "pyarrow":
        return _fingerprint_arrow(data)
    if module == "polars":
        return _fingerprint_arrow(data.to_arrow())
    if module == "pandas":
        import pyarrow as pa

        return _fingerprint_arrow(pa.Table.from_pandas(data, preserve_index=True))
    if module == "numpy":
        import numpy as np

        array = np.ascontiguousarray(data)
        digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
        return {
            "sha256": digest.hexdigest(),
            "rows": int(array.shape[0]) if array.ndim else 1,
            "columns": int(array.shape[1]) if array.ndim > 1 else 1,
            "schema": {"dtype": array.dtype.str, "shape": list(array.shape)},
            "fingerprint": "numpy",
        }
    if isinstance(data, (list, tuple)):
        try:
            encoded = json.dumps(data, sort_keys=True, default=str).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidValueError(f"Cannot fingerprint list data: {exc}") from exc
        return {
            "sha256": hashlib.sha256(encoded).hexdigest(),
            "rows": len(data),
            "columns": None,
            "schema": {"type": type(data).__name__},
            "fingerprint": "json",
        }
    raise InvalidValueError(
        f"Cannot fingerprint data of type {type(data).__name__}: pass a path, a pandas or "
        "polars DataFrame, a pyarrow Table, a numpy array or a list"
    )
