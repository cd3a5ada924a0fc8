"""SIGKILL compaction, archive and restore at random moments; the store must not care.

After every kill the store answers exactly as before (hot + archive), the hot tier holds
either the old or the new set of runs (never a mix), and re-running the operation
completes. Children are forked so a trial costs milliseconds, not an interpreter start.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest
from lifecycle_helpers import assert_same, full_state, log_runs

import ledger
from ledger import maintenance, txnlog
from ledger.store import open_store

TRIALS = 20


def _slow(stage: str) -> None:
    time.sleep(0.004)


def _operate(store: str, op: str, runs: list[str]) -> None:
    if op == "compact":
        ledger.compact(store, grace=0, hook=_slow)
    elif op == "archive":
        ledger.archive(store, older_than="0s", runs=runs, grace=0, hook=_slow)
    else:
        ledger.restore(store, runs=runs, grace=0, hook=_slow)


def _child(store: str, op: str, runs: list[str]) -> None:
    _operate(store, op, runs)
    os._exit(0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(store_path):
    rng = random.Random(5)
    ctx = multiprocessing.get_context("fork")
    log_runs(store_path, 3, steps=3)
    killed_mid_way = 0
    for trial in range(TRIALS):
        log_runs(store_path, 1, steps=3, experiment=f"t{trial}")
        before, before_counts, hot_ids = full_state(store_path)
        assert before_counts["metrics"] == before_counts["d"]
        hot = sorted(hot_ids)
        archived = sorted(set(before["runs"]["run_id"].to_list()) - set(hot))
        op = ("compact", "archive", "restore")[trial % 3]
        if op == "restore" and not archived:
            op = "archive"
        pool = hot if op == "archive" else archived
        runs = rng.sample(pool, k=max(1, len(pool) // 2)) if op != "compact" else []
        child = ctx.Process(target=_child, args=(store_path, op, runs))
        child.start()
        time.sleep(rng.uniform(0.0, 0.3))
        if child.is_alive():
            killed_mid_way += 1
            child.kill()  # SIGKILL
        child.join()
        assert child.exitcode in (0, -signal.SIGKILL), f"child failed: {child.exitcode}"
        after, after_counts, after_hot = full_state(store_path)
        assert_same(before, after)
        assert after_counts == before_counts
        moved = set(runs)
        if op == "archive":
            assert after_hot in (set(hot), set(hot) - moved), "a half-archived family"
        elif op == "restore":
            assert after_hot in (set(hot), set(hot) | moved), "a half-restored family"
        _operate(store_path, op, runs)
        if trial % 4 == 3 or trial == TRIALS - 1:
            after, _, after_hot = full_state(store_path)
            assert_same(before, after)
            if op == "archive":
                assert after_hot == set(hot) - moved
    assert killed_mid_way >= TRIALS // 2, "kills should land while the operation runs"
    maintenance.collect_garbage(store_path, grace=0)
    store = open_store(store_path)
    log = txnlog.read_log(store)
    assert not log.pending and not log.commits
    on_disk = {e.rel for e in txnlog.list_event_files(store)}
    assert on_disk == {e.rel for e in maintenance.visible_files(store, txnlog.HOT)}
