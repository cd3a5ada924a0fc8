"""Delivering alerts: a JSON webhook (Slack-compatible) and/or a local command, and the
``ledger watch`` loop that detects, delivers and records them.

Delivery is at-least-once: an alert is recorded (an ``alerted`` run event, flushed at
once) only after some channel took it, so a watcher that dies between sending and
recording sends that one alert again after a restart, and one whose channels all fail
retries on the next pass instead of losing the alert.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
from ledger.analytics.alerts import Alert, AlertRules, alert_event, already_alerted, detect
from ledger.analytics.engine import connect
from ledger.analytics.live import recent_connection

from ledger.errors import ConfigError, LedgerError
from ledger.store import Store, open_store
from ledger.writer import writer_for

log = logging.getLogger("ledger")

_ALERT_VIEWS = ("runs", "costs")
"""The views :func:`~ledger.analytics.alerts.detect` reads (besides ``events_runs`` and
``events_metrics``)."""
_RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}


class DeliveryError(LedgerError):
    """An alert could not be delivered on a channel (after retries)."""


def send_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 0.5,
) -> int:
    """POST ``payload`` as JSON; retries timeouts, connection errors, 429 and 5xx with
    exponential backoff. Returns the HTTP status.

    Raises:
        DeliveryError: every attempt failed, or the server refused the request (4xx).
        ConfigError: ``url`` is not http(s).
    """
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"Webhook URL must be http:// or https://, got {url!r}")
    body = json.dumps(payload, default=str).encode()
    last = ""
    for attempt in range(retries):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "ledger-watch"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code not in _RETRY_HTTP:
                raise DeliveryError(f"Webhook {url} refused the alert: {last}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if attempt + 1 < retries:
            time.sleep(backoff * 2**attempt)
    raise DeliveryError(f"Webhook {url} failed after {retries} attempts: {last}")


def alert_env(alert: Alert, payload: dict[str, Any]) -> dict[str, str]:
    """The ``LEDGER_ALERT_*`` variables a ``--exec`` command receives."""
    return {
        "LEDGER_ALERT_CONDITION": alert.condition,
        "LEDGER_ALERT_RUN_ID": alert.run_id,
        "LEDGER_ALERT_PROJECT": alert.project,
        "LEDGER_ALERT_EXPERIMENT": alert.experiment or "",
        "LEDGER_ALERT_NAME": alert.name or "",
        "LEDGER_ALERT_STATUS": alert.status,
        "LEDGER_ALERT_REASON": alert.reason,
        "LEDGER_ALERT_TEXT": alert.text,
        "LEDGER_ALERT_JSON": json.dumps(payload, default=str),
    }


def run_command(command: str, alert: Alert, payload: dict[str, Any], *, timeout: float) -> None:
    """Run ``command`` through the shell with the alert in ``LEDGER_ALERT_*`` env vars.

    Raises:
        DeliveryError: the command failed, timed out or could not start.
    """
    env = {**os.environ, **alert_env(alert, payload)}
    try:
        done = subprocess.run(
            command, shell=True, env=env, timeout=timeout, capture_output=True, text=True
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeliveryError(f"Alert command {command!r} failed: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        raise DeliveryError(
            f"Alert command {command!r} exited with code {done.returncode} {tail[0]}".rstrip()
        )


@dataclass
class PassResult:
    """What one watch pass found and did."""

    detected: list[Alert] = field(default_factory=list)
    sent: list[Alert] = field(default_factory=list)
    failed: list[tuple[Alert, str]] = field(default_factory=list)


def deliver(
    alert: Alert, rules: AlertRules, detected_at: dt.datetime
) -> tuple[list[str], list[str]]:
    """Send ``alert`` on every configured channel: (channels that took it, errors)."""
    payload = alert.payload(detected_at)
    ok, errors = [], []
    if rules.webhook:
        try:
            send_webhook(rules.webhook, payload, timeout=rules.timeout, retries=rules.retries)
            ok.append("webhook")
        except LedgerError as exc:
            errors.append(str(exc))
    if rules.exec_cmd:
        try:
            run_command(rules.exec_cmd, alert, payload, timeout=max(rules.timeout, 30.0))
            ok.append("exec")
        except LedgerError as exc:
            errors.append(str(exc))
    if not rules.webhook and not rules.exec_cmd:
        ok.append("log")  # no channel: the alert is printed by the caller and recorded
    return ok, errors


def watch_once(
    store: str | os.PathLike[str] | Store | None,
    rules: AlertRules,
    *,
    con: Any = None,
    now: dt.datetime | None = None,
) -> PassResult:
    """One pass: detect every condition, deliver those not yet alerted, record them."""
    store_obj = open_store(store)
    own = con is None
    con = con or connect(store_obj, stall_after=rules.stall_after)
    try:
        now = now or dt.datetime.now(dt.timezone.utc)
        result = PassResult(detected=detect(con, rules, now=now))
        done = already_alerted(con)
        writer = writer_for(store_obj)
        for alert in result.detected:
            if (alert.run_id, alert.condition) in done:
                continue
            channels, errors = deliver(alert, rules, now)
            if channels:
                writer.add_event("runs", alert.project, alert_event(alert, channels, now))
                done.add((alert.run_id, alert.condition))
                result.sent.append(alert)
            for error in errors:
                result.failed.append((alert, error))
        if result.sent:
            # Recorded before the next pass (or a restart) looks, so nothing repeats.
            writer.flush()
        return result
    finally:
        if own:
            con.close()


def watch(
    store: str | os.PathLike[str] | Store | None,
    rules: AlertRules,
    *,
    interval: float = 30.0,
    once: bool = False,
    on_pass: Callable[[PassResult], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Watch the store: a pass every ``interval`` seconds until ``should_stop()`` (or one
    pass with ``once``).

    Each pass reads only the runs with events within the lookback (or the stall
    threshold, when longer) through :func:`~ledger.analytics.live.recent_connection`:
    every run a pass can alert on has an event in that window (it is open and
    heartbeats, or it ended or went silent within the lookback), and such a run's
    events, its ``alerted`` records included, are read in full. A pass's cost and memory
    therefore follow the recent activity, not the size of the store.
    """
    store_obj = open_store(store)
    window = max(rules.lookback, rules.stall_after) + 60.0
    while True:
        started = time.monotonic()
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=window)
        try:
            con = recent_connection(
                store_obj, since=since, stall_after=rules.stall_after, views=_ALERT_VIEWS
            )
            try:
                result = watch_once(store_obj, rules, con=con)
            finally:
                con.close()
        except (duckdb.Error, OSError) as exc:
            # A long-running watcher outlives a bad moment (a file system hiccup, a file
            # replaced mid-read): say so and try again next pass. Nothing was recorded,
            # so nothing is lost.
            if once:
                raise
            log.warning("ledger watch: pass over %s failed: %s", store_obj.uri, exc)
            result = None
        if on_pass is not None and result is not None:
            on_pass(result)
        if once or should_stop():
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
        if should_stop():
            return
