"""Property test: random sequences of log / compact / archive / restore / purge / gc.

A reader checks after every step: no event twice, nothing lost but purged runs, the hot
tier holds exactly the runs the model says, and every view answers as it did when the
runs were logged (across compaction and archive + restore).
"""

from __future__ import annotations

import shutil
import tempfile

import polars as pl
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from lifecycle_helpers import counts, hot_run_ids, log_runs, snapshot

import ledger
from ledger import maintenance

COMPARED = ("runs", "params", "tags", "metrics", "latest_metrics")


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ledger-prop-")
        self.store = f"{self.dir}/store"
        self.tier: dict[str, str] = {}
        self.points: dict[str, int] = {}
        self.reference: dict[str, pl.DataFrame] = {}
        self.n = 0

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def alive(self, tier: str | None = None) -> list[str]:
        return sorted(r for r, t in self.tier.items() if tier is None or t == tier)

    @rule(steps=st.integers(1, 3))
    def log(self, steps: int) -> None:
        self.n += 1
        (run_id,) = log_runs(self.store, 1, steps=steps, experiment=f"e{self.n % 2}")
        self.tier[run_id] = "hot"
        self.points[run_id] = 2 * steps
        self.reference = snapshot(self.store)

    @rule(grace=st.sampled_from([0, "1h"]), size=st.sampled_from(["128MB", "4KB"]))
    def compact(self, grace, size) -> None:
        ledger.compact(self.store, grace=grace, target_size=size)

    @rule(data=st.data())
    def archive(self, data) -> None:
        hot = self.alive("hot")
        if not hot:
            return
        chosen = data.draw(st.lists(st.sampled_from(hot), min_size=1, unique=True))
        result = ledger.archive(self.store, older_than="0s", runs=chosen, grace=0)
        assert sorted(result.runs) == sorted(chosen)
        for run_id in chosen:
            self.tier[run_id] = "archive"

    @rule(data=st.data())
    def restore(self, data) -> None:
        archived = self.alive("archive")
        if not archived:
            return
        if data.draw(st.booleans()):
            ledger.restore(self.store, all_runs=True, grace=0)
            chosen = archived
        else:
            chosen = data.draw(st.lists(st.sampled_from(archived), min_size=1, unique=True))
            ledger.restore(self.store, runs=chosen, grace=0)
        for run_id in chosen:
            self.tier[run_id] = "hot"

    @rule(data=st.data())
    def purge(self, data) -> None:
        if not self.tier:
            return
        run_id = data.draw(st.sampled_from(self.alive()))
        ledger.purge(self.store, [run_id], yes=True, grace=data.draw(st.sampled_from([0, "1h"])))
        del self.tier[run_id]
        del self.points[run_id]

    @rule()
    def gc(self) -> None:
        maintenance.collect_garbage(self.store, grace=0)

    @invariant()
    def answers_hold(self) -> None:
        if not self.reference:
            return
        total = counts(self.store)
        assert total["runs"] == len(self.tier)
        assert total["metrics"] == sum(self.points.values())
        assert total["distinct_metrics"] == total["metrics"], "an event is seen twice"
        assert total["params"] == len(self.tier)
        assert hot_run_ids(self.store) == set(self.alive("hot"))
        now = snapshot(self.store)
        alive = pl.Series(self.alive(), dtype=pl.Utf8)
        for name in COMPARED:
            expected = self.reference[name].filter(pl.col("run_id").is_in(alive.implode()))
            assert now[name].equals(expected, null_equal=True), f"{name} changed"


@pytest.mark.slow
def test_lifecycle_state_machine():
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=6,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
