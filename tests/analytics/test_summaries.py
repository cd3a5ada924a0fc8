from __future__ import annotations

import math
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
from ledger.analytics.engine import connect, fetch_frame
from ledger.analytics.leaderboard import leaderboard
from ledger.analytics.summaries import summaries_sql

from ledger.summaries import summarize

COLUMNS = (
    "run_id, key, n_points, n_nan, last_value, last_step, min_value, min_step, max_value, max_step"
)


def _both(store: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    con = connect(store)
    try:
        fast = fetch_frame(con, f"SELECT {COLUMNS} FROM {summaries_sql(con)} ORDER BY ALL")
        view = fetch_frame(con, f"SELECT {COLUMNS} FROM metric_summaries ORDER BY ALL")
    finally:
        con.close()
    return fast, view


def _same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.height == b.height
    # NaN == NaN for this comparison
    assert a.fill_nan(-123.0).equals(b.fill_nan(-123.0))


def _files(store: str, kind: str) -> list[Path]:
    return sorted(
        p for p in (Path(store) / "events" / kind).rglob("*.parquet") if "__schema__" not in str(p)
    )


def test_writer_leaves_a_twin_summary_for_every_metrics_file(board):
    metrics = [
        p.relative_to(Path(board.store) / "events/metrics") for p in _files(board.store, "metrics")
    ]
    twins = [
        p.relative_to(Path(board.store) / "events/summaries")
        for p in _files(board.store, "summaries")
    ]
    assert metrics and metrics == twins


def test_fast_path_equals_the_full_fold(board):
    fast, view = _both(board.store)
    _same(fast, view)
    b_acc = view.filter((pl.col("key") == "val_acc") & (pl.col("n_nan") == 1))
    assert b_acc["max_value"].to_list() == [0.9] and math.isnan(b_acc["last_value"][0])


def test_missing_summaries_fall_back_and_orphans_are_ignored(board, tmp_path):
    store = str(tmp_path / "copy")
    shutil.copytree(board.store, store)
    expected = leaderboard(store, metric="val_acc").drop("duration_s")
    summaries = _files(store, "summaries")
    summaries[0].unlink()  # that metrics file is now folded from its raw points
    fast, view = _both(store)
    _same(fast, view)
    assert leaderboard(store, metric="val_acc").drop("duration_s").equals(expected)
    _files(store, "metrics")[-1].unlink()  # its summary is now an orphan
    fast, view = _both(store)
    _same(fast, view)


def test_summarize_ties_nan_and_several_runs():
    table = pa.table(
        {
            "run_id": ["r1"] * 5 + ["r2"] * 2,
            "key": ["acc"] * 5 + ["acc", "acc"],
            "value": [0.5, 0.8, 0.7, 0.8, math.nan, math.nan, math.nan],
            "step": [0, 1, 2, 3, 4, 0, 1],
            "ts": pa.array([10, 11, 12, 13, 14, 10, 11], pa.timestamp("us", tz="UTC")),
            "writer_id": ["w"] * 7,
            "seq": list(range(7)),
        }
    )
    rows = {r["run_id"]: r for r in summarize(table).to_pylist()}
    r1, r2 = rows["r1"], rows["r2"]
    assert (r1["n_points"], r1["n_nan"], r1["last_step"]) == (5, 1, 4)
    assert math.isnan(r1["last_value"])
    assert (r1["min_value"], r1["min_step"], r1["max_value"], r1["max_step"]) == (0.5, 0, 0.8, 1)
    assert (r2["n_points"], r2["n_nan"], r2["min_value"], r2["max_step"]) == (2, 2, None, None)
