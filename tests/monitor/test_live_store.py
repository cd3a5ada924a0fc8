"""LiveStore (incremental mirror) and recent_connection agree with the plain views."""

from __future__ import annotations

import datetime as dt
import glob
import os
import time

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
