"""LiveStore (incremental mirror) and recent_connection agree with the plain views."""

from __future__ import annotations

import datetime as dt
import glob
import os
import time

import pytest
from ledger.analytics import monitor
from ledger.analytics.engine import connect, fetch_frame
from ledger.analytics.live import LiveStore, recent_connection

import ledger
from ledger.writer import writer_for

RUNS_SQL = "SELECT run_id, name, status, start_time, end_time FROM runs ORDER BY run_id"


def _runs(con):
    return fetch_frame(con, RUNS_SQL).drop("end_time").to_dicts()


def test_live_store_loads_new_files_and_drops_vanished_ones(populated_store):
    live = LiveStore(populated_store, min_interval=0)
    try:
        con = live.cursor()
        assert len(_runs(con)) == 3
        con.close()
        run = ledger.start_run("vision", "sweep", "later", store=populated_store)
        run.log_metric("loss", 0.5, step=0)
        ledger.flush()
        con = live.cursor()
        rows = {r["name"]: r for r in _runs(con)}
        assert rows["later"]["status"] == "running"
        assert monitor.run_detail(con, run.id)["metrics"][0]["value"] == 0.5
        con.close()
        run.end(wait=True)
        con = live.cursor()
        assert {r["name"]: r["status"] for r in _runs(con)}["later"] == "finished"
        plain = connect(populated_store)
        assert _runs(con) == _runs(plain)  # the mirror folds exactly like the views
        plain.close()
        con.close()
        # Files that vanish (compaction, archive) take their rows with them.
        for name in glob.glob(os.path.join(populated_store.path("events", "runs"), "*", "*", "*")):
            if "__schema__" not in name and name.endswith(".parquet"):
                os.unlink(name)
        con = live.cursor()
        assert _runs(con) == []
        con.close()
    finally:
        live.close()


def test_recent_connection_finds_long_runs_and_skips_old_ones(store_path):
    store = ledger.start_run("p", "e", "warmup", store=store_path).store
    ledger.end_run()
    writer = writer_for(store)
    now = dt.datetime.now(dt.timezone.utc)
    us = lambda t: int(t.timestamp() * 1_000_000)  # noqa: E731
    long_ago = now - dt.timedelta(days=40)
    # A run started 40 days ago that still heartbeats, and one that ended 20 days ago.
    writer.add_event("runs", "p", {"run_id": "long", "event": "started", "ts": us(long_ago),
                                   "name": "long", "experiment": "e"})  # fmt: skip
    writer.add_event("runs", "p", {"run_id": "long", "event": "heartbeat", "ts": us(now)})
    writer.add_event("runs", "p", {"run_id": "old", "event": "started", "name": "old",
                                   "ts": us(now - dt.timedelta(days=21))})  # fmt: skip
    writer.add_event("runs", "p", {"run_id": "old", "event": "failed",
                                   "ts": us(now - dt.timedelta(days=20))})  # fmt: skip
    writer.add_event("params", "p", {"run_id": "long", "key": "ledger.total_steps",
                                     "value": "100", "ts": us(long_ago)})  # fmt: skip
    writer.flush()
    time.sleep(0.01)
    con = recent_connection(store, since=now - dt.timedelta(hours=1))
    try:
        rows = {r["name"]: r for r in _runs(con)}
        assert set(rows) == {"long", "warmup"}
        assert rows["long"]["status"] == "running"
        assert rows["long"]["start_time"] == long_ago.replace(
            microsecond=long_ago.microsecond
        ).astimezone(rows["long"]["start_time"].tzinfo)
        status = {r["name"]: r for r in monitor.status(con).to_dicts()}
        assert status["long"]["total_steps"] == 100
    finally:
        con.close()


# -- the lifecycle commit log (compaction between refreshes) ---------------------------------

_COUNTS_SQL = " UNION ALL ".join(
    f"SELECT '{kind}' AS kind, count(*) AS n FROM events_{kind}"
    for kind in ("runs", "params", "tags", "metrics")
)


def _snapshot(con, run_ids):
    """What a refresh must agree on: event counts, the folded runs, the running run's
    page, both runs' curves and the status rows (metric points read through the
    mirror's own file listing)."""
    counts = {row["kind"]: row["n"] for row in fetch_frame(con, _COUNTS_SQL).to_dicts()}
    detail = monitor.run_detail(con, run_ids[-1])
    metrics = [(m["key"], m["n_points"], m["value"]) for m in detail["metrics"]]
    series = {run_id: monitor.metric_series(con, run_id) for run_id in run_ids}
    status = [
        {k: row[k] for k in ("run_id", "status", "step", "metrics", "total_steps")}
        for row in monitor.status_rows(con, recent="1d")
    ]
    return counts, _runs(con), metrics, series, status


def _many_files(store):
    """Three runs, each flushed in several pieces, so every partition holds small files
    that compaction merges; one of them still running. Returns a finished and the
    running run's ids."""
    ids = []
    for i in range(3):
        run = ledger.start_run("vision", "sweep", f"r{i}", store=store, params={"i": i})
        run.log_param("ledger.total_steps", 100)
        for chunk in range(3):
            for step in range(chunk * 4, chunk * 4 + 4):
                run.log_metric("loss", 1.0 / (step + 1 + i), step=step)
            run.set_tag(f"chunk{chunk}", "yes")
            ledger.flush()
        ids.append(run.id)
        if i < 2:
            run.end(wait=True)
        else:
            run.detach()
    return ids[1:]


def _interesting(stages):
    """Check a transaction when its outputs are on disk but uncommitted (the first
    'output' stage) and right after it commits; skipping the other stages keeps the
    test fast without missing a visibility change."""

    def wanted(stage: str) -> bool:
        previous = stages[-1] if stages else None
        stages.append(stage)
        return stage == "commit" or (stage == "output" and previous != "output")

    return wanted


@pytest.fixture
def no_sampler(monkeypatch):
    """No resource sampler or energy meter: fewer kinds to compact, a faster test."""
    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")
    monkeypatch.setenv("LEDGER_CARBON", "0")


def test_live_store_and_recent_connection_follow_the_commit_log(store_path, no_sampler):
    """A real compaction between refreshes: at every transaction's uncommitted and
    committed stage, and after garbage collection, the live mirror and a recent
    connection answer exactly as a fresh connection over the plain views."""
    from ledger import maintenance

    store = ledger.start_run("vision", "sweep", "warmup", store=store_path).store
    ledger.end_run()
    ids = _many_files(store)
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    live = LiveStore(store, min_interval=0)
    stages: list[str] = []
    wanted = _interesting(stages)

    def check(stage: str) -> None:
        if not wanted(stage):
            return
        mirror, recent, plain = live.cursor(), recent_connection(store, since=since), connect(store)
        try:
            want = _snapshot(plain, ids)
            assert _snapshot(mirror, ids) == want, stage
            assert _snapshot(recent, ids) == want, stage
        finally:
            mirror.close()
            recent.close()
            plain.close()

    try:
        check("before")
        # Outputs written but not committed (hidden by the pending record), then
        # committed (inputs hidden, still on disk for the grace period).
        result = maintenance.compact(store, grace="1h", hook=check)
        assert result.files > 0 and "commit" in stages
        check("after")
        # Garbage collection deletes the hidden inputs: nothing changes for a reader.
        maintenance.collect_garbage(store, grace="0s")
        check("collected")
    finally:
        live.close()
