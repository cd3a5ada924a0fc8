"""Per-file cost summaries: what the cost report folds per run, without re-reading events.

For each costs file the writer (and every compaction, archive or purge that rewrites one)
also writes a twin ``cost_summaries`` file (same partition, same name) with one row per
(run, writer) holding that file's part of the ``run_costs`` fold:

- the time of the latest ``resources`` event, and the latest non-null resources document
  (with its time) already parsed into the fields the report prices by;
- the number of ``energy`` events and, for each energy column, its latest non-null value
  with that value's time (the view takes each column's latest non-null value on its own);
- the latest non-null energy document's ``covered_s``;
- the number of ``bill`` events, their sum and their distinct sources.

Rows of the same (run, writer) from many files merge exactly (``arg_max`` by the kept
times, sums, counts), so a reader folds one narrow row per run and file instead of every
event and every JSON document. Readers trust a cost summary only while its costs twin
exists and fold the raw events of costs files without one (stores written before cost
summaries existed, files written by other tools): the answer never depends on them.

A document is parsed here only where Python's reading provably equals DuckDB's
``from_json`` into the view's types (an object, no repeated keys, numbers for number
fields and strings for text fields); any other document is kept as raw text in
``r_attrs`` / ``e_attrs`` and the reader parses it with ``from_json``, as the view does.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

RESOURCE_FIELDS = (
    ("host", "str"),
    ("cpu_cores", "num"),
    ("gpu_count", "num"),
    ("gpu_model", "str"),
    ("instance_type", "str"),
    ("instance_source", "str"),
    ("region", "str"),
)
"""The fields of a ``resources`` document the cost fold reads (DuckDB types VARCHAR/DOUBLE)."""
ENERGY_FIELDS = (("covered_s", "num"),)
ENERGY_COLUMNS = (
    "source",
    "energy_kwh",
    "cpu_energy_kwh",
    "gpu_energy_kwh",
    "ram_energy_kwh",
    "emissions_kg",
    "measured",
)
"""Columns of ``energy`` events the fold keeps, each its latest non-null value."""
FOLDED_KINDS = ("resources", "energy", "bill")
_EXACT_INT = 2**53
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class _Untrusted(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Untrusted  # DuckDB keeps the first of repeated keys, Python the last
    return dict(pairs)


def parse_document(text: str, fields: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    """``fields`` of the JSON object ``text``, as ``from_json(text, <struct>)`` reads them;
    None when this reading might differ from DuckDB's (the caller keeps the raw text)."""
    if _SURROGATE.search(text):
        return None  # DuckDB rejects a lone surrogate escape that Python accepts
    try:
        document = json.loads(
            text, object_pairs_hook=_pairs, parse_constant=_reject, parse_float=_finite
        )
    except (ValueError, _Untrusted, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    out: dict[str, Any] = {}
    for name, kind in fields:
        value = document.get(name)
        if value is None:
            out[name] = None
        elif kind == "num":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None
            if isinstance(value, int) and abs(value) > _EXACT_INT:
                return None
            if isinstance(value, float) and not math.isfinite(value):
                return None
            out[name] = float(value)
        else:
            if not isinstance(value, str):
                return None
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escape: leave it to DuckDB
                return None
            out[name] = value
    return out


def _reject(constant: str) -> Any:
    raise _Untrusted  # NaN / Infinity are not JSON


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Untrusted  # 1e400: out of range; leave it to DuckDB
    return value


def _latest(current: tuple[int, Any] | None, ts: int, value: Any) -> tuple[int, Any] | None:
    """Keep the value with the highest time (the first seen among equal times)."""
    if value is None:
        return current
    if current is None or ts > current[0]:
        return (ts, value)
    return current


def summarize_costs(table: pa.Table) -> pa.Table:
    """The ``cost_summaries`` rows of one costs ``table`` (columns of ``events.COLUMNS``).

    Cost events are few (a handful per run per flush), so a plain loop over the rows is
    cheap next to writing the file; events of other kinds are not part of the fold.
    """
    import pyarrow as pa

    from ledger.events import arrow_schema

    schema = arrow_schema("cost_summaries")
    names = set(table.column_names)

    def column(name: str) -> list[Any]:
        if name not in names:
            return [None] * table.num_rows
        values = table[name]
        if pa.types.is_timestamp(values.type):
            values = values.cast(pa.int64())
        return values.to_pylist()

    kinds, run_ids, writers, stamps = (column(n) for n in ("kind", "run_id", "writer_id", "ts"))
    attrs, costs = column("attrs"), column("cost_usd")
    energy = {name: column(name) for name in ENERGY_COLUMNS}  # "source" among them
    sources = energy["source"]
    groups: dict[tuple[Any, Any], dict[str, Any]] = {}
    for i, kind in enumerate(kinds):
        if kind not in FOLDED_KINDS or run_ids[i] is None:
            continue
        ts = stamps[i]
        key = (run_ids[i], writers[i])
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "ts": None,
                "n_events": 0,
                "r_ts": None,
                "r_attrs": None,
                "e_n": 0,
                "e_attrs": None,
                "bill_n": 0,
                "bill_usd": None,
                "bill_sources": set(),
                **{f"e_{name}": None for name in ENERGY_COLUMNS},
            }
        group["n_events"] += 1
        if ts is not None and (group["ts"] is None or ts > group["ts"]):
            group["ts"] = ts
        # arg_max skips a NULL time: such an event counts but never is the "latest"
        ts_known = ts is not None
        if kind == "resources":
            if ts_known:
                if group["r_ts"] is None or ts > group["r_ts"]:
                    group["r_ts"] = ts
                group["r_attrs"] = _latest(group["r_attrs"], ts, attrs[i])
        elif kind == "energy":
            group["e_n"] += 1
            if ts_known:
                for name in ENERGY_COLUMNS:
                    group[f"e_{name}"] = _latest(group[f"e_{name}"], ts, energy[name][i])
                group["e_attrs"] = _latest(group["e_attrs"], ts, attrs[i])
        else:
            group["bill_n"] += 1
            if costs[i] is not None:
                group["bill_usd"] = (group["bill_usd"] or 0.0) + costs[i]
            if sources[i] is not None:
                group["bill_sources"].add(sources[i])
    rows: dict[str, list[Any]] = {field.name: [] for field in schema}
    for (run_id, writer_id), group in groups.items():
        rows["run_id"].append(run_id)
        rows["writer_id"].append(writer_id)
        for name in ("ts", "n_events", "r_ts", "e_n", "bill_n", "bill_usd"):
            rows[name].append(group[name])
        resources = group["r_attrs"]
        parsed = parse_document(resources[1], RESOURCE_FIELDS) if resources else None
        rows["r_attrs_ts"].append(resources[0] if resources else None)
        rows["r_attrs"].append(resources[1] if resources and parsed is None else None)
        for name, _ in RESOURCE_FIELDS:
            rows[f"r_{name}"].append(parsed[name] if parsed else None)
        for name in ENERGY_COLUMNS:
            latest = group[f"e_{name}"]
            rows[f"e_{name}"].append(latest[1] if latest else None)
            rows[f"e_{name}_ts"].append(latest[0] if latest else None)
        document = group["e_attrs"]
        parsed = parse_document(document[1], ENERGY_FIELDS) if document else None
        rows["e_attrs_ts"].append(document[0] if document else None)
        rows["e_attrs"].append(document[1] if document and parsed is None else None)
        rows["e_covered_s"].append(parsed["covered_s"] if parsed else None)
        rows["bill_sources"].append(
            json.dumps(sorted(group["bill_sources"])) if group["bill_n"] else None
        )
    arrays = []
    for field in schema:
        values = rows[field.name]
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(values, type=pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
