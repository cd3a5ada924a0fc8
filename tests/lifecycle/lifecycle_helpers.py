"""Shared helpers of the lifecycle tests: small-file stores and view snapshots."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import polars as pl
from ledger.analytics.engine import connect, fetch_frame

import ledger
from ledger.store import Store

SNAPSHOT_SQL = {
    "runs": "SELECT run_id, project, experiment, name, parent_run_id, status, start_time, "
    "end_time, message, exit_code, pinned FROM runs",
    "params": "SELECT * FROM params",
    "tags": "SELECT * FROM tags",
    "metrics": "SELECT * FROM metrics",
    "latest_metrics": "SELECT * FROM latest_metrics",
    "artifacts": "SELECT * FROM artifacts",
    "system": "SELECT * FROM events_system",
}


def log_runs(
    store: str,
    n_runs: int,
    *,
    steps: int = 4,
    project: str = "vision",
    experiment: str = "sweep",
    flush_every_step: bool = True,
    parent: str | None = None,
    fail: bool = False,
    artifact: str | None = None,
) -> list[str]:
    """Finished runs whose metrics land in one small file per step (many small files)."""
    ids = []
    for i in range(n_runs):
        run = ledger.start_run(
            project,
            experiment,
            f"r{i}",
            params={"i": i},
            tags={"seed": str(i)},
            store=store,
            parent=parent,
        )
        for step in range(steps):
            run.log_metrics({"loss": 1.0 / (step + 1 + i), "acc": 0.1 * step}, step=step)
            if flush_every_step:
                ledger.flush()
        if artifact is not None:
            run.log_artifact(artifact)
        run.end("failed" if fail else "finished", wait=True)
        ids.append(run.id)
    ledger.flush()
    return ids


def snapshot(store: str | Store, include_archived: bool = True) -> dict[str, pl.DataFrame]:
    """Every folded view, rows sorted, so two snapshots compare with ``==``."""
    con = connect(store, include_archived=include_archived)
    try:
        out = {}
        for name, sql in SNAPSHOT_SQL.items():
            frame = fetch_frame(con, sql)
            out[name] = frame.sort(frame.columns, nulls_last=True) if frame.height else frame
        return out
    finally:
        con.close()


def assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in a:
        left, right = a[name], b[name]
        assert left.height == right.height, f"{name}: {left.height} rows != {right.height}"
        assert left.equals(right, null_equal=True), f"{name} differs"


def counts(store: str | Store, include_archived: bool = True) -> dict[str, int]:
    con = connect(store, include_archived=include_archived)
    try:
        row = fetch_frame(
            con,
            "SELECT (SELECT count(*) FROM runs) AS runs, "
            "(SELECT count(*) FROM events_metrics) AS metrics, "
            "(SELECT count(*) FROM (SELECT DISTINCT writer_id, seq FROM events_metrics)) "
            "AS distinct_metrics, "
            "(SELECT count(*) FROM events_params) AS params, "
            "(SELECT count(*) FROM events_tags) AS tags",
        ).row(0, named=True)
        return row
    finally:
        con.close()


def hot_run_ids(store: str | Store) -> set[str]:
    con = connect(store, include_archived=False)
    try:
        return set(fetch_frame(con, "SELECT run_id FROM runs")["run_id"].to_list())
    finally:
        con.close()


def full_state(store: str | Store) -> tuple[dict[str, pl.DataFrame], dict[str, int], set[str]]:
    """(snapshot over hot + archive, counts, hot run ids) with two connections."""
    con = connect(store, include_archived=True)
    try:
        snap = {}
        for name, sql in SNAPSHOT_SQL.items():
            frame = fetch_frame(con, sql)
            snap[name] = frame.sort(frame.columns, nulls_last=True) if frame.height else frame
        total = fetch_frame(
            con,
            "SELECT (SELECT count(*) FROM events_metrics) AS metrics, "
            "(SELECT count(*) FROM (SELECT DISTINCT writer_id, seq FROM events_metrics)) AS d",
        ).row(0, named=True)
    finally:
        con.close()
    return snap, total, hot_run_ids(store)


def finish_churn_and_check(
    store: str,
    writers: list[subprocess.Popen[str]],
    reader: subprocess.Popen[str],
    stop: Path,
    *,
    operations: int,
    old_total: int,
    settle_s: float,
) -> None:
    """End a writers + reader + lifecycle churn test: one last compaction, stop the
    reader, then every point each writer logged is there exactly once and the reader
    never saw an error or an inconsistent answer."""
    logged = dict(line.split() for w in writers for line in [w.communicate(timeout=60)[0]])
    ledger.compact(store, grace="0.5s")
    time.sleep(settle_s)
    stop.write_text("stop")
    report = json.loads(reader.communicate(timeout=60)[0])
    assert operations >= 3
    assert report["queries"] >= 2, report
    assert report["errors"] == [], report
    assert report["problems"] == [], report
    final = ledger.query(
        "SELECT run_id, count(*) AS n, count(DISTINCT seq) AS d FROM events_metrics "
        "WHERE project = 'live' GROUP BY run_id",
        store,
        include_archived=True,
    )
    assert {row["run_id"]: row["n"] for row in final.iter_rows(named=True)} == {
        run_id: int(n) for run_id, n in logged.items()
    }
    assert all(final["n"] == final["d"])
    assert counts(store)["metrics"] == old_total + sum(int(n) for n in logged.values())
