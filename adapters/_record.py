"""Recording runs after the fact: a finished trial or a search candidate as one child run.

Adapters learn about most runs only once they are over (an Optuna trial reaches a callback
when it has finished; a fitted ``GridSearchCV`` holds all its candidates at once). Such a
run is written straight to the writer as its events, with the times the foreign system
measured, instead of being opened as a live :class:`ledger.Run` (which would stamp
"started" and "finished" with the moment of logging, give every trial a duration of zero,
and cost a heartbeat buffer each).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ledger.capture import HOST, USER
from ledger.errors import InvalidValueError
from ledger.events import TERMINAL_STATUSES
from ledger.run import _check_key, _metric_value, _step_value, param_text
from ledger.store import Store, check_project_name
from ledger.writer import writer_for

MetricRow = tuple[str, float, int, float]
"""``(key, value, step, unix_seconds)``, as the run buffers hold them."""


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def record_run(
    store: Store,
    *,
    run_id: str,
    project: str,
    experiment: str,
    name: str,
    parent_id: str | None,
    start_s: float,
    end_s: float,
    status: str,
    message: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    metrics: Iterable[MetricRow] = (),
    started: bool = True,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Queue every event of a run that already happened (written by the next flush).

    ``started=False`` completes a run whose ``started`` event was written earlier (an
    Optuna trial opened live by ``track_in_ledger``): only params, tags, metrics and the
    end event are added.

    Raises:
        InvalidKeyError, InvalidValueError: a bad key, value, step or status.
    """
    if status not in TERMINAL_STATUSES:
        raise InvalidValueError(f"Unknown run status {status!r}. Allowed: {TERMINAL_STATUSES}")
    project = check_project_name(project)
    start_us, end_us = _us(start_s), _us(max(end_s, start_s))
    rows: list[tuple[str, dict[str, Any]]] = []
    if started:
        rows.append(
            (
                "runs",
                {
                    "event": "started",
                    "ts": start_us,
                    "experiment": experiment,
                    "name": name,
                    "parent_run_id": parent_id,
                    "user": USER,
                    "host": HOST,
                    "pid": os.getpid(),
                    "attrs": json.dumps(dict(attrs), default=str) if attrs else None,
                },
            )
        )
    for key, value in (params or {}).items():
        text, value_type = param_text(value)
        rows.append(
            (
                "params",
                {
                    "key": _check_key(key, "Param"),
                    "value": text,
                    "value_type": value_type,
                    "ts": start_us,
                },
            )
        )
    for key, value in (tags or {}).items():
        text = value if isinstance(value, str) else param_text(value)[0]
        rows.append(("tags", {"key": _check_key(key, "Tag"), "value": text, "ts": end_us}))
    checked = [
        (
            _check_key(key, "Metric"),
            value if value.__class__ is float else _metric_value(key, value),
            step if step.__class__ is int else _step_value(step),
            float(ts),
        )
        for key, value, step, ts in metrics
    ]
    rows.append(("runs", {"event": status, "ts": end_us, "message": message, "exit_code": None}))
    # Everything is validated before anything is queued: a bad trial adds no half run.
    writer = writer_for(store)
    writer.add_metric_rows(project, run_id, checked)
    for kind, row in rows:
        row["run_id"] = run_id
        writer.add_event(kind, project, row)
