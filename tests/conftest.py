"""Shared fixtures: every test gets its own store; none touches a real one."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest

import ledger
from ledger import run as run_module
from ledger.store import Store, open_store


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch) -> Iterator[None]:
    """Point LEDGER_STORE at a temp dir and clear run-related env vars."""
    monkeypatch.setenv("LEDGER_STORE", str(tmp_path / "store"))
    for name in ("LEDGER_RUN_ID", "LEDGER_PROJECT", "LEDGER_EXPERIMENT", "LEDGER_PARENT_RUN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEDGER_CAPTURE", "0")
    # codecarbon's hardware probe costs ~1.5 s of CPU per process; cost tests turn it on.
    monkeypatch.setenv("LEDGER_CARBON", "0")
    yield
    for open_run in list(run_module._open.values()):
        open_run.end()
    ledger.flush()


@pytest.fixture
def store_path(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def empty_store(store_path) -> Store:
    """A store with nothing logged yet (not even initialised)."""
    return open_store(store_path)


@pytest.fixture
def populated_store(store_path) -> Store:
    """Three finished runs in project 'vision' (one failed), with params, tags and curves.

    run a: lr=0.1, loss 1/(s+1) for steps 0..9, acc 0.5 + 0.04 s
    run b: lr=0.01, loss 2/(s+1), acc 0.6 then NaN at the last step
    run c: lr=1.0, failed at step 3 with RuntimeError('diverged')
    """
    with ledger.start_run(
        "vision",
        "sweep",
        "a",
        params={"lr": 0.1, "model": "resnet"},
        tags={"team": "cv"},
        store=store_path,
    ) as run:
        for step in range(10):
            run.log_metrics({"loss": 1 / (step + 1), "acc": 0.5 + 0.04 * step}, step=step)
    with ledger.start_run(
        "vision", "sweep", "b", params={"lr": 0.01, "model": "resnet"}, store=store_path
    ) as run:
        for step in range(10):
            run.log_metrics({"loss": 2 / (step + 1), "acc": 0.6}, step=step)
        run.log_metric("acc", math.nan, step=10)
    with (
        pytest.raises(RuntimeError),
        ledger.start_run(
            "vision", "sweep", "c", params={"lr": 1.0, "model": "vit"}, store=store_path
        ) as run,
    ):
        for step in range(4):
            run.log_metric("loss", 10.0 * step, step=step)
        raise RuntimeError("diverged")
    ledger.flush()
    return open_store(store_path)


def pytest_configure(config) -> None:
    os.environ.setdefault("LEDGER_FLUSH_INTERVAL", "0.2")
