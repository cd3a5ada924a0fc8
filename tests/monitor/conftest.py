"""Real training processes for the monitoring tests: they log, fail, hang or get killed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest

CHILD = textwrap.dedent(
    """
    import math, os, sys, time
    import ledger

    mode, name = sys.argv[1], sys.argv[2]
    run = ledger.start_run("mon", "exp", name, params={"ledger.total_steps": 10000})
    print(run.id, flush=True)
    if mode == "fail":
        for step in range(3):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        raise RuntimeError("diverged")
    if mode == "nan":
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1), "val_loss": math.nan if step == 3 else 0.5},
                            step=step)
        run.end()
        sys.exit(0)
    if mode == "hang":
        for step in range(3):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        ledger.flush()
        while True:          # heartbeats continue, steps do not: a hung loop
            time.sleep(0.1)
    step = 0
    while True:              # "slow": a live run that keeps stepping until stopped
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10000.0}, step=step)
        run._buffer.system.append(("cpu", "cpu_percent", 40.0 + step % 10, time.time()))
        step += 1
        time.sleep(0.1)
    """
)


def child_env(store: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LEDGER_STORE=store,
        LEDGER_FLUSH_INTERVAL="0.2",
        LEDGER_HEARTBEAT_INTERVAL="0.3",
        LEDGER_CAPTURE="0",
        # The resource sampler's own cpu_percent samples would blend into the synthetic
        # ones the tests check utilisation against (under load they read ~100%).
        LEDGER_SYSTEM_METRICS="0",
        LEDGER_CARBON="0",
    )
    env.pop("LEDGER_RUN_ID", None)
    return env


@pytest.fixture
def spawn(store_path) -> Iterator[Callable[[str, str], tuple[subprocess.Popen, str]]]:
    """Start a child training process; returns (process, run id). All are reaped at the end."""
    children: list[subprocess.Popen] = []

    def start(mode: str, name: str) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, name],
            env=child_env(store_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(proc)
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, proc.stderr.read() if proc.stderr else ""
        return proc, run_id

    yield start
    for proc in children:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, every: float = 0.1) -> object:
    """Poll ``predicate`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


@pytest.fixture
def wait() -> Callable[..., object]:
    return wait_for
