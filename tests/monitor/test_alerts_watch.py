"""`ledger watch`: real runs fail, get SIGKILLed, hang and break rules; a real webhook
server on 127.0.0.1 records what it receives."""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from ledger.adapters.notify import DeliveryError, send_webhook, watch, watch_once
from ledger.analytics.alerts import load_rules
from ledger.analytics.engine import connect, fetch_frame

import ledger
from ledger import maintenance
from ledger.cli import cli
from ledger.errors import ConfigError
from ledger.store import open_store

pytestmark = pytest.mark.slow


class Recorder:
    """An HTTP server that records every POSTed JSON body; can fail the first N requests."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.received: list[dict] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.fail_status = fail_status
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.attempts += 1
                if recorder.attempts <= recorder.fail_first:
                    self.send_response(recorder.fail_status)
                    self.end_headers()
                    return
                recorder.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    recorder = Recorder()
    yield recorder
    recorder.close()


def _status(store, run_id):
    con = connect(store, stall_after=3)
    try:
        rows = fetch_frame(con, "SELECT status FROM runs WHERE run_id = $id", {"id": run_id})
        return rows["status"][0] if rows.height else None
    finally:
        con.close()


def _steps(store, run_id):
    con = connect(store)
    try:
        rows = fetch_frame(
            con, "SELECT max(step) AS s FROM metrics WHERE run_id = $id", {"id": run_id}
        )
        return rows["s"][0]
    finally:
        con.close()


def test_watch_alerts_each_condition_once_and_survives_restart(
    store_path, spawn, wait, hook, tmp_path
):
    store = open_store(store_path)
    os.makedirs(store_path, exist_ok=True)
    with open(os.path.join(store_path, "ledger.toml"), "w") as handle:
        handle.write(
            '[[alerts.metric]]\nkey = "val_loss"\nwhen = "nan"\n\n'
            '[[alerts.budget]]\nmax_cost_usd = 5.0\nname = "per-run"\n'
        )
    failing, fail_id = spawn("fail", "diverges")
    killed, kill_id = spawn("slow", "sigkilled")
    hung, hang_id = spawn("hang", "hangs")
    terminated, term_id = spawn("slow", "sigtermed")
    nan_proc, nan_id = spawn("nan", "nan-loss")
    healthy, healthy_id = spawn("slow", "healthy")
    # A run that costs too much (costs are written the way the costs area records them).
    with ledger.start_run("mon", "exp", "pricey", store=store_path) as pricey:
        ledger.writer.writer_for(store).add_event(
            "costs", "mon",
            {"run_id": pricey.id, "kind": "compute", "source": "test", "cost_usd": 7.5,
             "measured": False},
        )  # fmt: skip
    # A failed run that was archived: never alerted.
    with (
        pytest.raises(RuntimeError),
        ledger.start_run("mon", "exp", "old", store=store_path) as old,
    ):
        raise RuntimeError("long ago")
    writer = ledger.writer.writer_for(store)
    writer.add_event("runs", "mon", {"run_id": old.id, "event": "archived"})
    # And one moved to the archive tier by a real `ledger archive`: never alerted either.
    with (
        pytest.raises(RuntimeError),
        ledger.start_run("mon", "exp", "shelved", store=store_path) as shelved,
    ):
        raise RuntimeError("archived for real")
    ledger.flush()
    assert maintenance.archive(store, older_than="0s", runs=[shelved.id]).runs == [shelved.id]

    wait(lambda: (_steps(store_path, kill_id) or 0) >= 3)
    killed.send_signal(signal.SIGKILL)
    terminated.send_signal(signal.SIGTERM)
    assert failing.wait(timeout=20) == 1
    assert terminated.wait(timeout=20) != 0
    assert nan_proc.wait(timeout=20) == 0
    # SIGKILL leaves no trace: the run goes silent and is stalled after stall_after (3 s).
    wait(lambda: _status(store_path, kill_id) == "stalled", timeout=20)

    rules = load_rules(store.read_config(), stall_after="3s", webhook=hook.url)
    result = watch_once(store_path, rules)
    by_run = {(a.run_id, a.condition): a for a in result.sent}
    assert (fail_id, "failed") in by_run
    assert "diverged" in by_run[(fail_id, "failed")].reason
    assert (term_id, "killed") in by_run
    assert (kill_id, "stalled") in by_run
    assert by_run[(kill_id, "stalled")].details["cause"] == "no_heartbeat"
    assert (hang_id, "stalled") in by_run
    assert by_run[(hang_id, "stalled")].details["cause"] == "no_progress"
    assert (nan_id, "metric:val_loss-nan") in by_run
    assert (pricey.id, "budget") in by_run
    assert not any(a.run_id in (old.id, shelved.id, healthy_id) for a in result.sent)
    assert hung.poll() is None and healthy.poll() is None

    # What the webhook got: Slack's text plus structured fields.
    assert len(hook.received) == len(result.sent)
    payload = next(p for p in hook.received if p["run_id"] == fail_id)
    assert payload["condition"] == "failed" and payload["status"] == "failed"
    assert payload["text"].startswith("ledger: run 'diverges' (mon/exp")
    assert payload["project"] == "mon" and payload["name"] == "diverges"

    # A second pass, and a brand-new watcher process, repeat nothing.
    assert watch_once(store_path, rules).sent == []
    out = subprocess.run(
        [sys.executable, "-m", "ledger", "watch", "--once", "--stall-after", "3s",
         "--webhook", hook.url, "--store", store_path],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "ALERT" not in out.stdout
    assert len(hook.received) == len(result.sent)

    # The record is in the store, queryable like any event.
    con = connect(store_path)
    alerted = fetch_frame(
        con,
        "SELECT run_id, json_extract_string(attrs, '$.condition') AS c FROM events_runs "
        "WHERE event = 'alerted'",
    )
    con.close()
    assert alerted.height == len(result.sent)
    assert (fail_id, "failed") in set(alerted.iter_rows())


def test_exec_command_gets_alert_env(store_path, tmp_path):
    with pytest.raises(RuntimeError), ledger.start_run("mon", "exp", "boom", store=store_path):
        raise RuntimeError("out of memory")
    ledger.flush()
    out_file = tmp_path / "alert.txt"
    result = CliRunner().invoke(
        cli,
        ["watch", "--once", "--on", "failed", "--store", store_path, "--exec",
         f'echo "$LEDGER_ALERT_CONDITION|$LEDGER_ALERT_NAME|$LEDGER_ALERT_REASON" >> {out_file}'],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ALERT failed" in result.output
    assert out_file.read_text() == "failed|boom|failed: RuntimeError: out of memory\n"
    again = CliRunner().invoke(
        cli, ["watch", "--once", "--store", store_path, "--exec", f"echo x >> {out_file}"]
    )
    assert again.exit_code == 0
    assert out_file.read_text().count("\n") == 1


def test_webhook_retries_then_delivers(hook):
    hook.fail_first = 2
    assert send_webhook(hook.url, {"text": "hi"}, retries=3, backoff=0.01) == 200
    assert hook.attempts == 3 and hook.received == [{"text": "hi"}]


def test_webhook_client_error_is_not_retried():
    recorder = Recorder(fail_first=5, fail_status=404)
    try:
        with pytest.raises(DeliveryError, match="HTTP 404"):
            send_webhook(recorder.url, {"text": "x"}, retries=3, backoff=0.01)
        assert recorder.attempts == 1
    finally:
        recorder.close()


def test_undelivered_alert_is_retried_next_pass(store_path):
    with pytest.raises(RuntimeError), ledger.start_run("mon", "exp", "x", store=store_path):
        raise RuntimeError("bad")
    ledger.flush()
    recorder = Recorder(fail_first=3)
    try:
        rules = load_rules({}, webhook=recorder.url, retries=3, timeout="2s")
        first = watch_once(store_path, rules)
        assert first.sent == [] and len(first.failed) == 1
        assert "failed after 3 attempts" in first.failed[0][1]
        second = watch_once(store_path, rules)
        assert [a.condition for a in second.sent] == ["failed"]
        assert len(recorder.received) == 1
    finally:
        recorder.close()


def test_webhook_timeout_and_unreachable_are_delivery_errors():
    with pytest.raises(DeliveryError, match="failed after 2 attempts"):
        send_webhook("http://127.0.0.1:9/none", {"text": "x"}, retries=2, backoff=0.01, timeout=1)
    with pytest.raises(ConfigError):
        send_webhook("file:///etc/passwd", {"text": "x"})


def test_rules_from_config_validate():
    rules = load_rules(
        {"alerts": {"stall_after": "15m", "on": ["failed", "metric"],
                    "metric": [{"key": "loss", "when": "no_improvement", "steps": 100}]}},
        webhook="http://127.0.0.1:1/",
    )  # fmt: skip
    assert rules.stall_after == 900 and rules.on == {"failed", "metric"}
    assert rules.metrics[0].name == "loss-no_improvement"
    for bad in (
        {"alerts": {"metric": [{"key": "loss", "when": "sometimes"}]}},
        {"alerts": {"metric": [{"key": "loss", "when": "above"}]}},
        {"alerts": {"budget": [{"project": "x"}]}},
        {"alerts": {"on": "failed,exploded"}},
        {"alerts": {"stall_after": "soon"}},
    ):
        with pytest.raises(ConfigError):
            load_rules(bad)


def test_metric_rules_threshold_and_no_improvement(store_path):
    with ledger.start_run("mon", "exp", "plateau", store=store_path) as run:
        for step in range(50):
            run.log_metric("val_loss", 1.0 if step < 10 else 1.5, step=step)
            run.log_metric("grad_norm", 100.0 * step, step=step)
    ledger.flush()
    rules = load_rules(
        {"alerts": {"metric": [
            {"key": "val_loss", "when": "no_improvement", "steps": 30, "mode": "min"},
            {"key": "grad_norm", "when": "above", "threshold": 1000, "name": "exploding"},
            {"key": "val_loss", "when": "below", "threshold": 0.1, "name": "too-good"},
        ]}},
        on="metric",
    )  # fmt: skip
    sent = watch_once(store_path, rules).sent
    reasons = {a.condition: a.reason for a in sent}
    assert set(reasons) == {"metric:val_loss-no_improvement", "metric:exploding"}
    assert (
        "not improved for 49 steps (best 1 at step 0)" in reasons["metric:val_loss-no_improvement"]
    )
    assert "grad_norm = 4900 is above 1000" in reasons["metric:exploding"]


def test_a_failed_pass_does_not_stop_the_watcher(store_path, caplog):
    """A long-running `ledger watch` outlives a bad pass (here: a corrupt file in a recent
    partition) and alerts once the store reads again."""
    with pytest.raises(RuntimeError), ledger.start_run("mon", "exp", "boom", store=store_path):
        raise RuntimeError("boom")
    ledger.flush()
    (partition,) = glob.glob(os.path.join(store_path, "events", "runs", "project=mon", "*"))
    bad = os.path.join(partition, "corrupt.parquet")
    with open(bad, "wb") as handle:
        handle.write(b"not parquet at all")
    passes, checks = [], []

    def should_stop() -> bool:
        checks.append(1)
        if len(checks) == 1:
            os.unlink(bad)  # after the first pass, which failed
        return bool(passes)

    with caplog.at_level(logging.WARNING, logger="ledger"):
        watch(store_path, load_rules({}, stall_after="1h"), interval=0.05,
              on_pass=passes.append, should_stop=should_stop)  # fmt: skip
    assert "pass over" in caplog.text and "failed" in caplog.text
    assert [alert.condition for alert in passes[0].sent] == ["failed"]
