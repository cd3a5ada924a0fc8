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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


def summarize(table: pa.Table) -> pa.Table:
    """The ``summaries`` rows of one metrics ``table`` (columns of ``events.COLUMNS``)."""
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
    group_code = run_index * len(keys.dictionary) + key_index
    codes, group = np.unique(group_code, return_inverse=True)
    n_groups = len(codes)
    value = table["value"].to_numpy()
    step = pc.fill_null(table["step"], np.iinfo(np.int64).min).to_numpy()
    ts = pc.cast(table["ts"], pa.int64()).to_numpy()
    seq = table["seq"].to_numpy() if "seq" in table.column_names else np.arange(len(value))
    nan = np.isnan(value)

    def first_per_group(order: np.ndarray) -> np.ndarray:
        result = np.full(n_groups, -1, dtype=np.int64)
        if len(order) == 0:  # e.g. every value NaN: no min/max row in any group
            return result
        ordered = group[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        result[ordered[starts]] = order[starts]
        return result

    # last point: highest (step, ts, seq) -> sort descending on them, take the first
    last = first_per_group(np.lexsort((-seq, -ts, -step, group)))
    valid = np.flatnonzero(~nan)
    low = first_per_group(valid[np.lexsort((step[valid], value[valid], group[valid]))])
    high = first_per_group(valid[np.lexsort((step[valid], -value[valid], group[valid]))])

    def pick(values: np.ndarray, rows: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
        return pa.array(values[np.maximum(rows, 0)], type=arrow_type, mask=rows < 0)

    max_ts = np.full(n_groups, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(max_ts, group, ts)
    timestamp = schema.field("ts").type
    first_rows = first_per_group(np.arange(len(value)))
    columns = {
        "run_id": table["run_id"].combine_chunks().take(pa.array(first_rows)),
        "key": table["key"].combine_chunks().take(pa.array(first_rows)),
        "writer_id": table["writer_id"].combine_chunks().take(pa.array(first_rows)),
        "ts": pa.array(max_ts, type=pa.int64()).cast(timestamp),
        "n_points": pa.array(np.bincount(group, minlength=n_groups), type=pa.int64()),
        "n_nan": pa.array(np.bincount(group, weights=nan, minlength=n_groups).astype(np.int64)),
        "last_value": pick(value, last, pa.float64()),
        "last_step": pick(step, last, pa.int64()),
        "last_ts": pick(ts, last, pa.int64()).cast(timestamp),
        "last_seq": pick(seq, last, pa.int64()),
        "min_value": pick(value, low, pa.float64()),
        "min_step": pick(step, low, pa.int64()),
        "max_value": pick(value, high, pa.float64()),
        "max_step": pick(step, high, pa.int64()),
    }
    return pa.Table.from_arrays(
        [columns[field.name].cast(field.type) for field in schema], schema=schema
    )
