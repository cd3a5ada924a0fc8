"""Per-file metric summaries: what a leaderboard needs, without re-reading every point.

For each metrics file the writer also writes a twin ``summaries`` file (same partition,
same name) with one row per (run, key): point and NaN counts, the last point (by step,
then time, then sequence), and the min and max (NaN skipped) with the earliest step
reaching each. Rows for the same (run, key) from many files merge exactly — the merge is
associative — so a reader folds a few rows per run instead of every point, and a run's
summary is as fresh as its last flush: running runs need no special case.

Readers trust a summary only while its metrics twin exists, and fold the raw points of
metrics files that have no twin (stores written before summaries existed, files rewritten
by other tools), so the answer never depends on summaries being there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def _dense_groups(run_index: Any, key_index: Any, n_keys: int) -> tuple[Any, int]:
    """Dense group ids for (run, key) pairs, and how many groups there are."""
    import numpy as np

    code = run_index * n_keys + key_index
    span = int(code.max()) + 1
    if span <= 4 * len(code) + 1024:  # the usual case: few runs x keys; no sort needed
        present = np.zeros(span, dtype=bool)
        present[code] = True
        dense = np.cumsum(present) - 1
        return dense[code], int(present.sum())
    codes, group = np.unique(code, return_inverse=True)
    return group, len(codes)


def summarize(table: pa.Table) -> pa.Table:
    """The ``summaries`` rows of one metrics ``table`` (columns of ``events.COLUMNS``).

    Grouped reductions with ``ufunc.at`` (linear time): this runs on every flush, so a
    sort of the flush's rows (three of them, as a first version did) cost more than
    writing the file.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ledger.events import arrow_schema

    schema = arrow_schema("summaries")
    if table.num_rows == 0:
        return schema.empty_table()
    runs = pc.dictionary_encode(table["run_id"]).combine_chunks()
    keys = pc.dictionary_encode(table["key"]).combine_chunks()
    run_index = runs.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    key_index = keys.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    group, n_groups = _dense_groups(run_index, key_index, len(keys.dictionary))
    n = len(group)
    rows = np.arange(n, dtype=np.int64)
    value = table["value"].to_numpy()
    int_min, int_max = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    step = pc.fill_null(table["step"], int_min).to_numpy()
    ts = pc.cast(table["ts"], pa.int64()).to_numpy()
    seq = table["seq"].to_numpy() if "seq" in table.column_names else rows
    nan = np.isnan(value)

    def group_max(values: Any, mask: Any = None) -> Any:
        out = np.full(n_groups, int_min, dtype=np.int64)
        if mask is None:
            np.maximum.at(out, group, values)
        else:
            np.maximum.at(out, group[mask], values[mask])
        return out

    def group_min(values: Any, mask: Any, fill: Any, dtype: Any) -> Any:
        out = np.full(n_groups, fill, dtype=dtype)
        np.minimum.at(out, group[mask], values[mask])
        return out

    # last point: highest step, then time, then sequence; the earliest row among full ties
    tied = step == group_max(step)[group]
    tied &= ts == group_max(ts, tied)[group]
    tied &= seq == group_max(seq, tied)[group]
    last = group_min(rows, tied, n, np.int64)

    # min / max over non-NaN values, each with the earliest step reaching it
    valid = ~nan
    has_valid = np.bincount(group[valid], minlength=n_groups) > 0
    low_value = group_min(value, valid, np.inf, np.float64)
    high_value = -group_min(-value, valid, np.inf, np.float64)
    low_step = group_min(step, valid & (value == low_value[group]), int_max, np.int64)
    high_step = group_min(step, valid & (value == high_value[group]), int_max, np.int64)

    def masked(values: Any, present: Any, arrow_type: pa.DataType) -> pa.Array:
        return pa.array(values, type=arrow_type, mask=~present)

    timestamp = schema.field("ts").type
    first_rows = pa.array(group_min(rows, np.ones(n, dtype=bool), n, np.int64))
    columns = {
        "run_id": table["run_id"].combine_chunks().take(first_rows),
        "key": table["key"].combine_chunks().take(first_rows),
        "writer_id": table["writer_id"].combine_chunks().take(first_rows),
        "ts": pa.array(group_max(ts), type=pa.int64()).cast(timestamp),
        "n_points": pa.array(np.bincount(group, minlength=n_groups), type=pa.int64()),
        "n_nan": pa.array(np.bincount(group, weights=nan, minlength=n_groups).astype(np.int64)),
        "last_value": pa.array(value[last], type=pa.float64()),
        "last_step": pa.array(step[last], type=pa.int64()),
        "last_ts": pa.array(ts[last], type=pa.int64()).cast(timestamp),
        "last_seq": pa.array(seq[last], type=pa.int64()),
        "min_value": masked(low_value, has_valid, pa.float64()),
        "min_step": masked(low_step, has_valid, pa.int64()),
        "max_value": masked(high_value, has_valid, pa.float64()),
        "max_step": masked(high_step, has_valid, pa.int64()),
    }
    return pa.Table.from_arrays(
        [columns[field.name].cast(field.type) for field in schema], schema=schema
    )


def summarize_twin(kind: str, table: pa.Table) -> pa.Table:
    """The twin summary (kind ``events.TWINS[kind]``) of one ``kind`` file's ``table``."""
    if kind == "metrics":
        return summarize(table)
    if kind == "costs":
        from ledger.cost_summaries import summarize_costs

        return summarize_costs(table)
    raise ValueError(f"Kind {kind!r} has no summary twin")
