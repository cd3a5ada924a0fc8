"""`ledger status` and the monitor queries, over real runs (one a live process)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from ledger.analytics import monitor
from ledger.analytics.engine import connect

import ledger
from ledger.cli import cli
from ledger.writer import writer_for


def _row(con, run_id, **kwargs):
    rows = [r for r in monitor.status(con, **kwargs).to_dicts() if r["run_id"] == run_id]
    return rows[0] if rows else None


def test_status_shows_progress_eta_metrics_util_and_cost(store_path, spawn, wait):
    proc, live_id = spawn("slow", "live")
    with pytest.raises(RuntimeError), ledger.start_run("mon", "exp", "crashed", store=store_path):
        raise RuntimeError("CUDA out of memory")
    with ledger.start_run("mon", "exp", "done", store=store_path) as done:
        done.log_metric("loss", 0.1)
    writer_for(done.store).add_event(
        "costs", "mon", {"run_id": live_id, "kind": "compute", "cost_usd": 1.25}
    )
    ledger.flush()
    con = connect(store_path)
    try:
        wait(lambda: (row := _row(con, live_id)) and (row["step"] or 0) >= 2)
        rows = {row["name"]: row for row in monitor.status(con).to_dicts()}
        assert set(rows) == {"live", "crashed"}  # finished runs are not shown
        live = rows["live"]
        assert live["status"] == "running" and live["total_steps"] == 10000
        assert live["percent"] == pytest.approx(100 * (live["step"] + 1) / 10000, abs=0.1)
        assert live["eta_s"] is not None and live["eta_s"] > 0
        assert live["metrics"].startswith("acc=") and "loss=" in live["metrics"]
        assert 0 <= live["heartbeat_age_s"] < 5
        assert 40 <= live["cpu_util"] < 50 and live["gpu_util"] is None
        assert live["cost_usd"] == 1.25
        crashed = rows["crashed"]
        assert crashed["status"] == "failed" and "CUDA out of memory" in crashed["message"]
        assert crashed["cost_usd"] is None and crashed["percent"] is None
        # The step advances between refreshes on the same connection.
        before = live["step"]
        wait(lambda: _row(con, live_id, project="mon")["step"] > before)
        assert monitor.status(con, project="other").height == 0
        picked = _row(con, live_id, metrics=["loss"])["metrics"]
        assert picked.startswith("loss=") and "acc" not in picked
    finally:
        con.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_progress_percent_and_eta_math(store_path):
    run = ledger.start_run("mon", "exp", "timed", store=store_path)
    run.set_tag("ledger.total_steps", 200)  # a tag overrides; no param needed
    t0 = time.time() - 100
    for step in range(100):
        run.log_metric("loss", 1.0, step=step, timestamp=t0 + step)  # 1 step per second
    ledger.flush()
    con = connect(store_path)
    try:
        info = monitor.run_progress(con, [run.id])[run.id]
    finally:
        con.close()
        run.end()
    assert info["step"] == 99 and info["total_steps"] == 200 and info["percent"] == 50.0
    # 100 steps left at 1 step/s, minus the ~1 s since the last point.
    assert 97 <= info["eta_s"] <= 100.5


def test_status_cli_table_and_json(populated_store, store_path):
    run = ledger.start_run("vision", "sweep", "now", store=store_path)
    run.log_metric("loss", math.nan, step=4)
    ledger.flush()
    table = CliRunner().invoke(cli, ["status", "--store", store_path])
    assert table.exit_code == 0, table.output
    assert "now" in table.output and "running" in table.output and "loss=NaN" in table.output
    assert "diverged" in table.output  # run c failed within the hour
    as_json = CliRunner().invoke(cli, ["status", "--store", store_path, "--format", "json"])
    rows = json.loads(as_json.output)
    assert {r["name"]: r["status"] for r in rows} == {"now": "running", "c": "failed"}
    assert rows[0]["step"] == 4
    empty = CliRunner().invoke(cli, ["status", "--store", store_path, "--project", "none"])
    assert "no running runs" in empty.output
    bad = CliRunner().invoke(cli, ["status", "--store", store_path, "--recent", "soon"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: Invalid recent window 'soon'")
    run.end()


def test_status_watch_refreshes_until_interrupted(populated_store, store_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger", "status", "--watch", "--interval", "0.2s",
         "--store", store_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "ledger status" in out and "Traceback" not in err


def test_runs_page_filters_sorts_searches_and_binds(populated_store):
    con = connect(populated_store)
    try:
        total, rows = monitor.list_runs_page(con)
        assert total == 3 and [r["name"] for r in rows] == ["c", "b", "a"]
        total, rows = monitor.list_runs_page(con, status="failed")
        assert total == 1 and rows[0]["name"] == "c"
        total, rows = monitor.list_runs_page(con, sort="name", descending=False, limit=2)
        assert total == 3 and [r["name"] for r in rows] == ["a", "b"]
        total, rows = monitor.list_runs_page(con, sort="name", descending=False, offset=2)
        assert [r["name"] for r in rows] == ["c"]
        assert monitor.list_runs_page(con, search="B")[0] == 1
        assert monitor.list_runs_page(con, search=rows[0]["run_id"][:24])[0] == 1
        assert monitor.list_runs_page(con, search="x' OR '1'='1")[0] == 0
        assert monitor.list_runs_page(con, offset=10) == (3, [])
        with pytest.raises(ledger.InvalidValueError, match="Unknown sort column"):
            monitor.list_runs_page(con, sort="name; DROP TABLE runs")
    finally:
        con.close()


def test_run_detail_series_and_compare(populated_store):
    con = connect(populated_store)
    try:
        ids = {r["name"]: r["run_id"] for r in monitor.list_runs_page(con)[1]}
        detail = monitor.run_detail(con, ids["a"])
        assert detail["run"]["name"] == "a"
        assert {p["key"]: p["value"] for p in detail["params"]} == {"lr": "0.1", "model": "resnet"}
        assert detail["tags"] == [{"key": "team", "value": "cv"}]
        series = monitor.metric_series(con, ids["b"])
        assert series["acc"][-1] == [10, None]  # NaN comes back as a gap
        assert len(monitor.metric_series(con, ids["a"], max_points=4)["loss"]) <= 5
        assert monitor.metric_series(con, ids["a"], after_step=7)["loss"] == [
            [8, 1 / 9],
            [9, 1 / 10],
        ]
        compared = monitor.compare_runs(con, [ids["a"], ids["c"]])
        lr = next(d for d in compared["diff"] if d["key"] == "lr")
        assert lr["values"] == ["0.1", "1.0"] and lr["differs"]
        assert set(compared["curves"][ids["c"]]) == {"loss"}
        with pytest.raises(ledger.RunNotFoundError):
            monitor.run_detail(con, "nope")
        with pytest.raises(ledger.InvalidValueError):
            monitor.compare_runs(con, [ids["a"]])
    finally:
        con.close()
