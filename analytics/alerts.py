"""Alert conditions: which runs failed, were killed, stalled, broke a budget or a metric rule.

Detection is a pure read of the views; delivery (webhook, command) and the watch loop live
in :mod:`ledger.adapters.notify`. Alert state is kept in the store itself: each delivered
alert appends a ``runs`` event ``alerted`` whose ``attrs.condition`` names the condition,
so every watcher (and every restart of one) sees what was already reported, and each
condition is reported at most once per run.

Conditions (the names ``--on`` takes):

- ``failed`` / ``killed``: the run ended so.
- ``stalled``: an open run with no heartbeat for ``stall_after`` (the process died
  without a word: SIGKILL, OOM killer, lost node), or one whose heartbeats continue but
  that logged no new metric point for ``stall_after`` (a hung training loop).
- ``budget``: the run's cost so far (``costs`` view) exceeds a ``[[alerts.budget]]`` rule.
- ``metric``: a ``[[alerts.metric]]`` rule holds: the key's values contain NaN/inf
  (``when = "nan"``), its latest value is above/below ``threshold``, or it has not
  improved for ``steps`` steps (``when = "no_improvement"``, ``mode = "min"|"max"``).
  The stored condition is ``metric:<rule name>``.

Archived and deleted runs are never considered. Only runs that are open, or that ended or
went silent within ``lookback`` (default 24 h), are: a watcher started on an old store
does not replay its history, yet one restarted after a pause still catches what ended
while it was down.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

import duckdb
from ledger.analytics.engine import fetch_frame
from ledger.analytics.monitor import format_value

from ledger.durations import parse_duration
from ledger.errors import ConfigError

CONDITIONS = ("failed", "killed", "stalled", "budget", "metric")
METRIC_WHEN = ("nan", "above", "below", "no_improvement")


@dataclass(frozen=True)
class BudgetRule:
    max_cost_usd: float
    project: str | None = None
    experiment: str | None = None
    name: str = "budget"


@dataclass(frozen=True)
class MetricRule:
    key: str
    when: str
    name: str
    threshold: float | None = None
    steps: int | None = None
    mode: str = "min"
    project: str | None = None
    experiment: str | None = None


@dataclass(frozen=True)
class AlertRules:
    """What to watch for; built by :func:`load_rules` from ``[alerts]`` plus CLI flags."""

    stall_after: float = 600.0
    on: frozenset[str] = frozenset(CONDITIONS)
    lookback: float = 86400.0
    budgets: tuple[BudgetRule, ...] = ()
    metrics: tuple[MetricRule, ...] = ()
    webhook: str | None = None
    exec_cmd: str | None = None
    timeout: float = 10.0
    retries: int = 3


@dataclass
class Alert:
    """One condition that holds for one run."""

    condition: str
    run_id: str
    project: str
    experiment: str | None
    name: str | None
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        where = f"{self.project}/{self.experiment}" if self.experiment else self.project
        return f"ledger: run '{self.name}' ({where}, {self.run_id[:12]}) {self.reason}"

    def payload(self, detected_at: dt.datetime) -> dict[str, Any]:
        """The JSON body sent to webhooks: Slack's ``text`` plus structured fields."""
        return {
            "text": self.text,
            "condition": self.condition,
            "run_id": self.run_id,
            "project": self.project,
            "experiment": self.experiment,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "details": self.details,
            "detected_at": detected_at.isoformat(),
        }


def _opt_str(section: dict[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string, got {value!r}")
    return value


def _number(section: dict[str, Any], key: str, where: str, *, required: bool) -> float | None:
    value = section.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where} needs {key} (a number)")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
    return float(value)


def parse_conditions(text: str | None) -> frozenset[str]:
    """``"failed,stalled"`` -> {"failed", "stalled"}; None -> every condition.

    Raises:
        ConfigError: an unknown condition name.
    """
    if text is None:
        return frozenset(CONDITIONS)
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(CONDITIONS))
    if unknown or not names:
        raise ConfigError(
            f"Unknown alert condition {', '.join(unknown) or repr(text)}. "
            f"Known: {', '.join(CONDITIONS)}"
        )
    return frozenset(names)


def load_rules(config: dict[str, Any], **overrides: Any) -> AlertRules:
    """Rules from a parsed ``ledger.toml`` (its ``[alerts]`` section), then ``overrides``
    (CLI flags; ``None`` values are ignored).

    Raises:
        ConfigError: a malformed section, rule or duration.
    """
    section = config.get("alerts", {})
    if not isinstance(section, dict):
        raise ConfigError("[alerts] must be a table")
    budgets = []
    for i, raw in enumerate(section.get("budget", []) or []):
        where = f"alerts.budget[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table")
        limit = _number(raw, "max_cost_usd", where, required=True)
        assert limit is not None
        budgets.append(
            BudgetRule(
                max_cost_usd=limit,
                project=_opt_str(raw, "project", where),
                experiment=_opt_str(raw, "experiment", where),
                name=_opt_str(raw, "name", where) or "budget",
            )
        )
    metrics = []
    for i, raw in enumerate(section.get("metric", []) or []):
        where = f"alerts.metric[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table")
        key = _opt_str(raw, "key", where)
        when = _opt_str(raw, "when", where)
        if not key:
            raise ConfigError(f"{where} needs key (the metric name)")
        if when not in METRIC_WHEN:
            raise ConfigError(f"{where}.when is {when!r}. Known: {', '.join(METRIC_WHEN)}")
        threshold = _number(raw, "threshold", where, required=when in ("above", "below"))
        steps = _number(raw, "steps", where, required=when == "no_improvement")
        mode = _opt_str(raw, "mode", where) or "min"
        if mode not in ("min", "max"):
            raise ConfigError(f"{where}.mode is {mode!r}. Known: min, max")
        metrics.append(
            MetricRule(
                key=key,
                when=when,
                name=_opt_str(raw, "name", where) or f"{key}-{when}",
                threshold=threshold,
                steps=int(steps) if steps is not None else None,
                mode=mode,
                project=_opt_str(raw, "project", where),
                experiment=_opt_str(raw, "experiment", where),
            )
        )
    values: dict[str, Any] = {
        "stall_after": section.get("stall_after", 600.0),
        "on": section.get("on"),
        "lookback": section.get("lookback", 86400.0),
        "webhook": section.get("webhook"),
        "exec_cmd": section.get("exec"),
        "timeout": section.get("timeout", 10.0),
        "retries": section.get("retries", 3),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    on = values["on"]
    if isinstance(on, (list, tuple)):
        on = ",".join(on)
    retries = values["retries"]
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise ConfigError(f"alerts.retries must be a positive integer, got {retries!r}")
    return AlertRules(
        stall_after=parse_duration(values["stall_after"], what="stall-after duration"),
        on=on if isinstance(on, frozenset) else parse_conditions(on),
        lookback=parse_duration(values["lookback"], what="lookback duration"),
        budgets=tuple(budgets),
        metrics=tuple(metrics),
        webhook=values["webhook"],
        exec_cmd=values["exec_cmd"],
        timeout=parse_duration(values["timeout"], what="webhook timeout"),
        retries=retries,
    )


_OPEN = "status = 'running' OR (status = 'stalled' AND last_heartbeat >= $since)"

# Runs that may alert: not archived/deleted; open, or ended/silent within the lookback.
_CANDIDATES_SQL = f"""
WITH hidden AS (
    SELECT run_id FROM events_runs
    WHERE event IN ('archived', 'restored', 'deleted')
    GROUP BY run_id
    HAVING arg_max(event, ts) IN ('archived', 'deleted')
),
last_points AS (
    SELECT run_id, max(ts) AS last_metric_ts, max(step) AS step
    FROM events_metrics
    WHERE date >= $since_date
      AND run_id IN (SELECT run_id FROM runs WHERE {_OPEN})
    GROUP BY run_id
)
SELECT r.run_id, r.project, r.experiment, r.name, r.status, r.message, r.exit_code,
       r.last_heartbeat, r.end_time, p.last_metric_ts, p.step
FROM runs r
LEFT JOIN last_points p USING (run_id)
WHERE r.run_id NOT IN (SELECT run_id FROM hidden)
  AND (r.status = 'running'
       OR (r.status = 'stalled' AND r.last_heartbeat >= $since)
       OR (r.status IN ('finished', 'failed', 'killed') AND r.end_time >= $since))
"""

_ALERTED_SQL = """
SELECT DISTINCT run_id, json_extract_string(attrs, '$.condition') AS condition
FROM events_runs WHERE event = 'alerted'
"""

_METRIC_SQL = """
WITH points AS (
    SELECT run_id, step, ts, seq, value FROM events_metrics
    WHERE key = $key AND list_contains($ids, run_id)
)
SELECT run_id,
       count(*) FILTER (WHERE isnan(value) OR isinf(value)) AS bad_points,
       min(step) FILTER (WHERE isnan(value) OR isinf(value)) AS first_bad_step,
       arg_max(value, (step, ts, seq)) AS latest,
       max(step) AS step,
       min(value) FILTER (WHERE NOT isnan(value)) AS best_min,
       max(value) FILTER (WHERE NOT isnan(value)) AS best_max,
       arg_min(step, (value, step)) FILTER (WHERE NOT isnan(value)) AS best_min_step,
       arg_max(step, (value, -step)) FILTER (WHERE NOT isnan(value)) AS best_max_step
FROM points GROUP BY run_id
"""

_COST_SQL = """
SELECT run_id, sum(cost_usd) AS cost_usd FROM costs
WHERE list_contains($ids, run_id) GROUP BY run_id
"""


def already_alerted(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(run_id, condition) pairs already reported by any watcher (``alerted`` events)."""
    rows = fetch_frame(con, _ALERTED_SQL, {}).iter_rows()
    return {(run_id, condition) for run_id, condition in rows}


def _matches(rule: BudgetRule | MetricRule, run: dict[str, Any]) -> bool:
    return (rule.project is None or rule.project == run["project"]) and (
        rule.experiment is None or rule.experiment == run["experiment"]
    )


def _alert(run: dict[str, Any], condition: str, reason: str, **details: Any) -> Alert:
    return Alert(
        condition=condition,
        run_id=run["run_id"],
        project=run["project"],
        experiment=run["experiment"],
        name=run["name"],
        status=run["status"],
        reason=reason,
        details=details,
    )


def _age(now: dt.datetime, then: dt.datetime | None) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def detect(
    con: duckdb.DuckDBPyConnection, rules: AlertRules, *, now: dt.datetime | None = None
) -> list[Alert]:
    """Every condition in ``rules.on`` that holds now, for each candidate run.

    ``con`` must come from ``connect(store, stall_after=rules.stall_after)`` so the
    ``runs`` view classifies silence with the same threshold.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    since = now - dt.timedelta(seconds=rules.lookback)
    # Metric points never predate their run (a day of margin for explicit timestamps):
    # scanning from the oldest open run's start date finds each one's last point.
    oldest = fetch_frame(
        con,
        f"SELECT min(start_time) AS t FROM runs WHERE {_OPEN}",
        {"since": since},
    )["t"][0]
    since_date = (oldest - dt.timedelta(days=1)).date() if oldest is not None else now.date()
    runs = fetch_frame(con, _CANDIDATES_SQL, {"since": since, "since_date": since_date}).to_dicts()
    alerts: list[Alert] = []
    stall_cut = now - dt.timedelta(seconds=rules.stall_after)
    for run in runs:
        status = run["status"]
        if status == "failed" and "failed" in rules.on:
            detail = run["message"] or (f"exit code {run['exit_code']}" if run["exit_code"] else "")
            alerts.append(_alert(run, "failed", "failed" + (f": {detail}" if detail else ""),
                                 message=run["message"], exit_code=run["exit_code"]))  # fmt: skip
        elif status == "killed" and "killed" in rules.on:
            detail = run["message"] or ""
            alerts.append(_alert(run, "killed", "was killed" + (f": {detail}" if detail else ""),
                                 message=run["message"], exit_code=run["exit_code"]))  # fmt: skip
        elif "stalled" in rules.on and status == "stalled":
            alerts.append(
                _alert(
                    run,
                    "stalled",
                    f"stalled: no heartbeat for {_age(now, run['last_heartbeat'])} (process gone?)",
                    cause="no_heartbeat",
                    last_heartbeat=run["last_heartbeat"],
                    step=run["step"],
                )
            )
        elif (
            "stalled" in rules.on
            and status == "running"
            and run["last_metric_ts"] is not None
            and run["last_metric_ts"] < stall_cut
        ):
            alerts.append(
                _alert(
                    run,
                    "stalled",
                    f"stalled at step {run['step']}: no new metric for "
                    f"{_age(now, run['last_metric_ts'])} (heartbeats continue: hung?)",
                    cause="no_progress",
                    last_metric_ts=run["last_metric_ts"],
                    step=run["step"],
                )
            )
    by_id = {run["run_id"]: run for run in runs}
    if "budget" in rules.on and rules.budgets and by_id:
        alerts.extend(_budget_alerts(con, rules.budgets, by_id))
    if "metric" in rules.on and rules.metrics and by_id:
        alerts.extend(_metric_alerts(con, rules.metrics, by_id))
    return alerts


def _budget_alerts(
    con: duckdb.DuckDBPyConnection, budgets: tuple[BudgetRule, ...], runs: dict[str, dict]
) -> list[Alert]:
    try:
        costs = fetch_frame(con, _COST_SQL, {"ids": list(runs)}).to_dicts()
    except duckdb.Error:  # the costs view belongs to another area; no costs, no alert
        return []
    alerts = []
    for row in costs:
        run, cost = runs[row["run_id"]], row["cost_usd"]
        if cost is None:
            continue
        # The tightest matching budget is the one reported.
        broken = [b for b in budgets if _matches(b, run) and cost > b.max_cost_usd]
        if broken:
            rule = min(broken, key=lambda b: b.max_cost_usd)
            alerts.append(
                _alert(run, "budget",
                       f"cost ${cost:.2f} exceeds budget '{rule.name}' of ${rule.max_cost_usd:.2f}",
                       cost_usd=cost, max_cost_usd=rule.max_cost_usd, rule=rule.name)
            )  # fmt: skip
    return alerts


def _metric_alerts(
    con: duckdb.DuckDBPyConnection, rules: tuple[MetricRule, ...], runs: dict[str, dict]
) -> list[Alert]:
    alerts = []
    for rule in rules:
        ids = [run_id for run_id, run in runs.items() if _matches(rule, run)]
        if not ids:
            continue
        for row in fetch_frame(con, _METRIC_SQL, {"key": rule.key, "ids": ids}).to_dicts():
            run = runs[row["run_id"]]
            reason = _metric_reason(rule, row)
            if reason:
                latest = row["latest"]
                alerts.append(
                    _alert(run, f"metric:{rule.name}", reason, rule=rule.name, key=rule.key,
                           value=format_value(latest) if latest is not None else None,
                           step=row["step"])
                )  # fmt: skip
    return alerts


def _metric_reason(rule: MetricRule, row: dict[str, Any]) -> str | None:
    latest = row["latest"]
    if rule.when == "nan":
        if row["bad_points"]:
            return f"{rule.key} is NaN/inf (first at step {row['first_bad_step']})"
        return None
    if rule.when in ("above", "below"):
        assert rule.threshold is not None
        if latest is None or math.isnan(latest):
            return None
        if (rule.when == "above" and latest > rule.threshold) or (
            rule.when == "below" and latest < rule.threshold
        ):
            return f"{rule.key} = {format_value(latest)} is {rule.when} {rule.threshold:g}"
        return None
    assert rule.steps is not None
    best_step = row["best_min_step"] if rule.mode == "min" else row["best_max_step"]
    best = row["best_min"] if rule.mode == "min" else row["best_max"]
    if best_step is None or row["step"] is None:
        return None
    if row["step"] - best_step >= rule.steps:
        return (
            f"{rule.key} has not improved for {row['step'] - best_step} steps "
            f"(best {format_value(best)} at step {best_step})"
        )
    return None


def alert_event(alert: Alert, channels: list[str], detected_at: dt.datetime) -> dict[str, Any]:
    """The ``runs`` event row that records a delivered alert."""
    return {
        "run_id": alert.run_id,
        "event": "alerted",
        "message": alert.text,
        "attrs": json.dumps(
            {
                "condition": alert.condition,
                "reason": alert.reason,
                "channels": channels,
                "detected_at": detected_at.isoformat(),
            }
        ),
    }
