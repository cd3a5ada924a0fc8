"""The writer: failures never reach training, nothing is lost, packaging ships everything."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import ledger
from ledger.writer import writer_for


def test_write_failure_warns_once_retries_and_loses_nothing(store_path, caplog):
    blocker = Path(store_path, "events", "metrics", "project=flaky")
    with ledger.start_run("flaky", store=store_path) as run:
        run.log_metric("warm", 1.0)
    ledger.flush()  # store initialised, the partition directory exists
    import shutil

    shutil.rmtree(blocker)
    blocker.write_text("a file where a directory must be")  # every metrics write now fails
    caplog.set_level(logging.WARNING, logger="ledger")
    with ledger.start_run("flaky", name="survivor", store=store_path) as run:
        for step in range(100):
            run.log_metric("loss", float(step), step=step)  # never raises
        writer = writer_for(run.store)
        assert writer.flush() is False and writer.pending_files() > 0
        assert writer.flush() is False
    warnings = [r for r in caplog.records if "could not write" in r.getMessage()]
    assert len(warnings) == 1
    blocker.unlink()
    deadline = time.time() + 30
    while not writer.flush() and time.time() < deadline:
        time.sleep(0.1)
    counts = ledger.query(
        "SELECT count(*), count(DISTINCT step) FROM metrics WHERE key = 'loss'", store=store_path
    ).row(0)
    assert counts == (100, 100)
    notes = ledger.query("SELECT message FROM events_runs WHERE event = 'note'", store=store_path)[
        "message"
    ].to_list()
    assert any("write failed and was retried" in note for note in notes)


def test_flush_files_are_unique_per_writer_and_atomic(store_path):
    with ledger.start_run("p", store=store_path) as run:
        for step in range(10):
            run.log_metric("a", 1.0, step=step)
            ledger.flush()
    files = list(Path(store_path, "events", "metrics").rglob("*"))
    names = [f.name for f in files if f.is_file()]
    assert not [n for n in names if n.endswith(".tmp")]
    data_files = [n for n in names if not n.startswith("schema-")]
    assert len(data_files) == len(set(data_files)) == 10


@pytest.mark.slow
def test_wheel_ships_the_mapped_packages_and_sql(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
    )
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "ledger/analytics/engine.py",
        "ledger/adapters/__init__.py",
        "ledger/queries/runs.sql",
        "ledger/queries/__init__.py",
        "ledger/py.typed",
    ):
        assert expected in names
    assert not [n for n in names if n.startswith(("analytics/", "adapters/", "queries/"))]
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import ledger, ledger.analytics.engine as e; "
        f"assert e.__file__.startswith({str(target)!r}), e.__file__; "
        "print(len(e._view_files()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert int(out.stdout) >= 10


def test_a_flush_of_only_nan_points_writes_and_summarises(store_path):
    import math

    with ledger.start_run("p", store=store_path) as run:
        run.log_metric("loss", math.nan, step=0)
        assert writer_for(run.store).flush() is True
    row = ledger.query(
        "SELECT n_points, min_value, max_value FROM latest_metrics", store=store_path
    ).row(0)
    assert row == (1, None, None)
    board = ledger.leaderboard(store_path, metric="loss")
    assert board.height == 1


def test_producers_queue_rows_at_every_flush_and_multi_run_metrics(store_path, caplog):
    """add_producer: called at the start of each flush (ledger.flush included), its rows
    land in that flush; a producer that raises is one warning and the flush goes on.
    add_metric_rows: the points of many runs become one table, each point its run's."""
    from ledger.store import open_store

    writer = writer_for(open_store(store_path))
    calls = []

    def producer():
        calls.append(len(calls))
        writer.add_metric_rows("p", f"{len(calls):032x}", [("loss", 0.5, 1, time.time())])

    def broken():
        raise RuntimeError("boom")

    writer.add_producer(broken)
    writer.add_producer(producer)
    writer.add_metric_rows("p", "a" * 32, [("loss", 1.0, 0, time.time()), ("acc", 2.0, 3, 1.0)])
    ledger.flush()
    ledger.flush()
    writer.remove_producer(producer)
    writer.remove_producer(broken)
    made = len(calls)  # the background flusher may have called it too
    ledger.flush()
    assert made >= 2 and len(calls) == made
    assert "boom" in caplog.text
    rows = ledger.query(
        "SELECT run_id, key, value, step FROM metrics ORDER BY run_id, key", store=store_path
    ).rows()
    assert rows == [(f"{n:032x}", "loss", 0.5, 1) for n in range(1, made + 1)] + [
        ("a" * 32, "acc", 2.0, 3),
        ("a" * 32, "loss", 1.0, 0),
    ]


def test_a_deferred_end_waits_for_the_next_run_but_not_for_an_idle_process(store_path, monkeypatch):
    """Run.end(flush_within=...): a batch worker's ended runs share one flush while the
    next run is live; with no live run left the write happens at once, so the caller
    waiting for a batch does not wait out the deferral."""
    monkeypatch.setenv("LEDGER_FLUSH_INTERVAL", "60")

    def on_disk(run_id):  # read the files directly: ledger.query flushes this process first
        import pyarrow.compute as pc

        from ledger.store import open_store

        table = open_store(store_path).dataset("runs").to_table(columns=["run_id", "event"])
        mask = pc.and_(pc.equal(table["run_id"], run_id), pc.equal(table["event"], "finished"))
        return table.filter(mask).num_rows

    first = ledger.start_run("defer", store=store_path)
    first.end(flush_within=30)
    time.sleep(1.0)
    assert on_disk(first.id) == 1  # no live run: written within _IDLE_S and a poll

    second = ledger.start_run("defer", store=store_path)
    with ledger.start_run("defer", "next", store=store_path) as live:
        second.end(flush_within=30)
        time.sleep(1.0)
        assert on_disk(second.id) == 0  # deferred while the next run is live
    time.sleep(1.0)
    assert on_disk(second.id) == 1 and on_disk(live.id) == 1
