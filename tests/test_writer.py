"""The writer: failures never reach training, nothing is lost, packaging ships everything."""

from __future__ import annotations

import logging
import os
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


def test_editable_install_maps_the_wing_packages_to_the_repo(tmp_path):
    # `make venv` installs with -e: the mapped packages must resolve to the checkout's
    # top-level folders from any working directory (not through sys.path tricks).
    root = Path(__file__).resolve().parents[1]
    code = (
        "import ledger, ledger.analytics as a, ledger.adapters as b, ledger.queries as q; "
        "print(ledger.__file__); print(a.__file__); print(b.__file__); print(q.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    if out.returncode != 0 or not out.stdout.startswith(str(root)):
        pytest.skip(f"this interpreter has no editable install of {root}")
    folders = ("ledger", "analytics", "adapters", "queries")
    assert out.stdout.split() == [str(root / folder / "__init__.py") for folder in folders]


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


def test_log_metrics_with_changing_key_sets_keeps_every_point_in_order(store_path):
    # The flush maps each call to its key pattern; widths and key orders vary here.
    calls = [
        ({"loss": 1.0, "acc": 0.5}, 0),
        ({"acc": 0.6, "loss": 0.9}, 1),
        ({}, 2),
        ({"lr": 0.1}, 3),
        ({"loss": 0.8, "acc": 0.7, "lr": 0.05, "ünï": -0.0}, 4),
        ({"loss": 0.7, "acc": 0.8}, 5),
    ]
    with ledger.start_run("p", store=store_path) as run:
        for metrics, step in calls:
            run.log_metrics(metrics, step=step)
    ledger.flush()
    got = ledger.query("SELECT key, value, step FROM metrics ORDER BY seq", store=store_path).rows()
    want = [(k, v, step) for metrics, step in calls for k, v in metrics.items()]
    assert got == want
    latest = dict(ledger.query("SELECT key, step FROM latest_metrics", store=store_path).rows())
    assert latest == {"loss": 5, "acc": 5, "lr": 4, "ünï": 4}


def test_a_flush_of_only_empty_metric_dicts_writes_nothing_and_warns_nothing(store_path, caplog):
    caplog.set_level(logging.WARNING, logger="ledger")
    with ledger.start_run("p", store=store_path) as run:
        run.log_metrics({}, step=1)
    assert ledger.flush() is True
    assert not caplog.records
    assert ledger.query("SELECT count(*) FROM metrics", store=store_path).item() == 0


def test_a_large_buffer_is_written_in_bounded_files(store_path):
    Path(store_path).mkdir(parents=True)
    Path(store_path, "ledger.toml").write_text("[writer]\nflush_rows = 1000\n")
    with ledger.start_run("p", store=store_path) as run:
        writer = writer_for(run.store)
        with writer._flush_lock:  # hold the flusher off: everything stays buffered
            for step in range(450):
                run.log_metrics({f"m{i}": float(step) for i in range(10)}, step=step)
            for step in range(2500):
                run.log_metric("loss", float(step), step=step)
            assert writer.buffered_rows() >= 4500 + 2500  # + the start event
    ledger.flush()
    files = [
        f
        for f in Path(store_path, "events", "metrics").rglob("*.parquet")
        if not f.name.startswith("schema-")
    ]
    assert len(files) >= 7  # 4,500 batched + 2,500 single points, <= 1,000 per file
    import pyarrow.parquet as pq

    assert max(pq.read_metadata(f).num_rows for f in files) <= 1000
    counts = ledger.query("SELECT count(*), count(DISTINCT seq) FROM metrics", store=store_path)
    assert counts.row(0) == (7000, 7000)
    latest = ledger.query("SELECT key, step FROM latest_metrics", store=store_path).rows()
    assert dict(latest) == {**{f"m{i}": 449 for i in range(10)}, "loss": 2499}


def test_every_data_file_records_its_kind_and_schema_version(store_path):
    import pyarrow.parquet as pq

    from ledger.events import SCHEMA_VERSION

    with ledger.start_run("p", store=store_path) as run:
        run.log_metric("a", 1.0)
        run.log_metrics({"b": 2.0}, step=1)
        run.log_param("x", 1)
        run.set_tag("t", "v")
    ledger.flush()
    files = [f for f in Path(store_path, "events").rglob("*.parquet") if "__schema__" not in str(f)]
    kinds = set()
    for file in files:
        metadata = pq.read_metadata(file).metadata
        assert metadata[b"ledger.schema_version"] == str(SCHEMA_VERSION).encode(), file
        kinds.add(metadata[b"ledger.kind"].decode())
        assert file.parts[-4] == metadata[b"ledger.kind"].decode()
    assert {"runs", "metrics", "summaries", "params", "tags"} <= kinds


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
