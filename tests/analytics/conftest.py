"""A small store whose leaderboard, diff and importance answers are worked out by hand.

experiment "sweep" (project "vision"), children of run "sweep-parent":

| run | lr    | model  | depth | team | val_acc by step          | best (step) | last | status   |
|-----|-------|--------|-------|------|--------------------------|-------------|------|----------|
| a   | 0.1   | resnet | 2     | cv   | 0.5 0.8 0.7 0.8 0.6      | 0.8 (1)     | 0.6  | finished |
| b   | 0.01  | vit    | 4     | nlp  | 0.6 0.9 NaN              | 0.9 (1)     | NaN  | finished |
| c   | 0.001 | vit    | 8     | -    | 0.85                     | 0.85 (0)    | 0.85 | failed   |
| d   | 0.05  | resnet | 4     | -    | (no val_acc, loss only)  | -           | -    | finished |
| e   | 0.2   | resnet | 2     | cv   | 0.9 0.7                  | 0.9 (0)     | 0.7  | finished |

plus run "x" in experiment "other" (val_acc 0.99, not a child). Run a has a cost record
of $1.50. ``moments["after_b"]`` lies between b's end and c's start; ``moments["c_running"]``
while c was running with its one point flushed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import dataclass, field

import pytest

import ledger


@dataclass
class Board:
    store: str
    ids: dict[str, str] = field(default_factory=dict)
    moments: dict[str, dt.datetime] = field(default_factory=dict)


def _now() -> dt.datetime:
    time.sleep(0.01)
    moment = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    return moment


def _env(numpy_version: str, dirty: bool) -> str:
    return json.dumps(
        {
            "git": {"commit": "abc123", "branch": "main", "dirty": dirty},
            "python": {"version": "3.11.2"},
            "host": {"hostname": "box"},
            "packages": {"numpy": numpy_version, "torch": "2.5.0"},
        }
    )


@pytest.fixture(scope="session")
def board(tmp_path_factory) -> Board:
    """Built once per session (read-only for the tests): see the module doc."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_CAPTURE", "0")
        return _build(
            str(tmp_path_factory.mktemp("board") / "store"), tmp_path_factory.mktemp("data")
        )


def _build(store_path: str, tmp_path) -> Board:
    result = Board(store_path)
    curves = {"a": [0.5, 0.8, 0.7, 0.8, 0.6], "b": [0.6, 0.9, math.nan], "e": [0.9, 0.7]}
    spec = {
        "a": ({"lr": 0.1, "model": "resnet", "depth": 2}, {"team": "cv"}),
        "b": ({"lr": 0.01, "model": "vit", "depth": 4}, {"team": "nlp"}),
        "c": ({"lr": 0.001, "model": "vit", "depth": 8}, {}),
        "d": ({"lr": 0.05, "model": "resnet", "depth": 4}, {}),
        "e": ({"lr": 0.2, "model": "resnet", "depth": 2}, {"team": "cv"}),
    }
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n3,4\n")
    with ledger.start_run("vision", "sweep", "sweep-parent", store=store_path) as parent:
        result.ids["sweep-parent"] = parent.id
        for name in ("a", "b"):
            params, tags = spec[name]
            with ledger.start_run(
                "vision",
                "sweep",
                name,
                params=params,
                tags=tags,
                parent=parent.id,
                store=store_path,
            ) as run:
                result.ids[name] = run.id
                ledger.seed(1 if name == "a" else 2, run=run)
                run.log_dataset("train", str(data))
                run._event(
                    "runs",
                    event="environment",
                    attrs=_env("2.1.0" if name == "a" else "2.2.0", dirty=False),
                )
                for step, value in enumerate(curves[name]):
                    run.log_metric("val_acc", value, step=step)
                    run.log_metric("loss", 1.0 / (step + 1), step=step)
                if name == "a":
                    run._writer.add_event(
                        "costs",
                        run.project,
                        {
                            "run_id": run.id,
                            "kind": "compute",
                            "source": "test",
                            "cost_usd": 1.5,
                            "measured": True,
                        },
                    )
        ledger.flush()
        result.moments["after_b"] = _now()
        params, tags = spec["c"]
        with (
            pytest.raises(RuntimeError),
            ledger.start_run(
                "vision", "sweep", "c", params=params, parent=parent.id, store=store_path
            ) as run,
        ):
            result.ids["c"] = run.id
            run.log_metric("val_acc", 0.85, step=0)
            ledger.flush()
            result.moments["c_running"] = _now()
            raise RuntimeError("diverged")
        for name in ("d", "e"):
            params, tags = spec[name]
            with ledger.start_run(
                "vision",
                "sweep",
                name,
                params=params,
                tags=tags,
                parent=parent.id,
                store=store_path,
            ) as run:
                result.ids[name] = run.id
                for step, value in enumerate(curves.get(name, [])):
                    run.log_metric("val_acc", value, step=step)
                run.log_metric("loss", 0.5, step=0)
    with ledger.start_run("vision", "other", "x", params={"lr": 0.3}, store=store_path) as run:
        result.ids["x"] = run.id
        run.log_metric("val_acc", 0.99, step=0)
    ledger.flush()
    return result
