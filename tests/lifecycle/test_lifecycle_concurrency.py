"""Compaction and archive while 4 writer processes append and a reader process queries.

The reader checks at every query that no event is seen twice, that no live run's count
ever goes down (a missed event would), and that the finished runs' totals over hot +
archive never change. At the end every writer's events are all there, exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from lifecycle_helpers import counts, finish_churn_and_check, log_runs

import ledger

WRITER = textwrap.dedent(
    """
    import sys, time, ledger
    store, index, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    run = ledger.start_run("live", "writers", f"w{index}", store=store)
    n, end = 0, time.time() + seconds
    while time.time() < end:
        run.log_metric("x", float(n), step=n)
        n += 1
        if n % 40 == 0:
            ledger.flush()
            time.sleep(0.01)
    run.end(wait=True)
    print(run.id, n)
    """
)

READER = textwrap.dedent(
    """
    import json, os, sys, time, ledger
    store, stop, old_total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen, queries, problems, errors = {}, 0, [], []
    while not os.path.exists(stop):
        try:
            frame = ledger.query(
                "SELECT r.project, m.run_id, count(*) AS n, "
                "count(DISTINCT (m.writer_id, m.seq)) AS d "
                "FROM events_metrics m JOIN runs r USING (run_id) GROUP BY ALL",
                store, include_archived=True,
            )
        except Exception as exc:
            errors.append(repr(exc)[:300])
            continue
        queries += 1
        old = 0
        for project, run_id, n, d in frame.iter_rows():
            if n != d:
                problems.append(f"duplicates in {run_id}: {n} rows, {d} distinct")
            if project == "live":
                if n < seen.get(run_id, 0):
                    problems.append(f"{run_id} went from {seen[run_id]} to {n}")
                seen[run_id] = n
            else:
                old += n
        if old != old_total:
            problems.append(f"finished runs total {old} != {old_total}")
    print(json.dumps({"queries": queries, "problems": problems[:20], "errors": errors[:5]}))
    """
)


@pytest.mark.slow
def test_compact_and_archive_while_writers_append_and_a_reader_reads(store_path, tmp_path):
    old = log_runs(store_path, 4, steps=5)
    old_total = counts(store_path)["metrics"]
    stop = tmp_path / "stop"
    env_python = [sys.executable, "-c"]
    writers = [
        subprocess.Popen(
            [*env_python, WRITER, store_path, str(i), "4"], stdout=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    reader = subprocess.Popen(
        [*env_python, READER, store_path, str(stop), str(old_total)],
        stdout=subprocess.PIPE,
        text=True,
    )
    operations = 0
    deadline = time.time() + 6
    i = 0
    while any(w.poll() is None for w in writers) and time.time() < deadline + 30:
        # A short grace (the default is 60 s) so replaced files really get deleted while
        # the reader reads; a query torn by a deletion is retried by the engine.
        ledger.compact(store_path, grace="0.5s")
        ledger.archive(store_path, older_than="0s", runs=[old[i % 4]], grace="0.5s")
        ledger.restore(store_path, runs=[old[(i + 2) % 4]], grace="0.5s")
        operations += 3
        i += 1
    finish_churn_and_check(
        store_path, writers, reader, stop, operations=operations, old_total=old_total, settle_s=0.5
    )
