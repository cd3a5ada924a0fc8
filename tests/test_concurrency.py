"""Real processes: many writers, a reader in a loop, SIGKILL, SIGTERM, fork."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq

import ledger

POINTS_PER_WRITER = 25_000
WRITERS = 8


def _writer_process(store: str, index: int) -> None:
    os.environ["LEDGER_FLUSH_INTERVAL"] = "0.05"
    with ledger.start_run("load", name=f"w{index}", store=store) as run:
        for step in range(POINTS_PER_WRITER):
            run.log_metric("loss", step / POINTS_PER_WRITER, step=step)
            if step % 5000 == 0:
                time.sleep(0.01)  # let several flushes interleave with the reader


def _reader_process(store: str, stop, errors, seen) -> None:
    while not stop.is_set():
        try:
            count = ledger.query("SELECT count(*) FROM metrics", store=store).item()
            seen.append(count)
        except Exception as exc:  # the assertion is that this never happens
            errors.append(repr(exc))


def test_eight_writers_and_a_reader(store_path):
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    stop, errors, seen = manager.Event(), manager.list(), manager.list()
    ledger.connect(store_path).close()  # initialise before the reader starts
    reader = ctx.Process(target=_reader_process, args=(store_path, stop, errors, seen))
    reader.start()
    writers = [ctx.Process(target=_writer_process, args=(store_path, i)) for i in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    time.sleep(0.3)
    stop.set()
    reader.join(60)
    assert list(errors) == []
    assert len(seen) > 0 and list(seen) == sorted(seen)  # never goes backwards
    totals = ledger.query(
        "SELECT count(*) AS n, count(DISTINCT (writer_id, seq)) AS ids, "
        "count(DISTINCT (run_id, step)) AS points, count(DISTINCT run_id) AS runs FROM metrics",
        store=store_path,
    ).row(0)
    assert totals == (WRITERS * POINTS_PER_WRITER,) * 3 + (WRITERS,)
    statuses = ledger.query("SELECT DISTINCT status FROM runs", store=store_path)
    assert statuses["status"].to_list() == ["finished"]


CRASHING_SCRIPT = textwrap.dedent(
    """
    import sys, time, ledger
    run = ledger.start_run("crash", name="victim", store=sys.argv[1])
    for step in range(1000):
        run.log_metric("loss", float(step), step=step)
    ledger.flush()
    print("flushed", flush=True)
    step = 1000
    while True:  # keeps logging, unflushed, until killed
        run.log_metric("loss", float(step), step=step)
        step += 1
        if step % 1000 == 0:
            time.sleep(0.001)
    """
)


def test_sigkill_leaves_a_readable_store_and_a_stalled_run(store_path, tmp_path):
    script = tmp_path / "victim.py"
    script.write_text(CRASHING_SCRIPT)
    env = dict(os.environ, LEDGER_HEARTBEAT_INTERVAL="0.2", LEDGER_FLUSH_INTERVAL="0.05")
    child = subprocess.Popen(
        [sys.executable, str(script), store_path], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "flushed"
    time.sleep(0.3)  # let background flushes race with the kill
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    for path in Path(store_path, "events").rglob("*.parquet"):
        pq.read_metadata(path)  # every visible file is complete
    con = ledger.connect(store_path, stall_after=1.0)
    steps = con.execute(
        "SELECT count(*), count(DISTINCT step), min(step) FROM metrics WHERE step < 1000"
    ).fetchone()
    assert steps == (1000, 1000, 0)
    assert con.execute(
        "SELECT count(*) - count(DISTINCT (writer_id, seq)) FROM metrics"
    ).fetchone() == (0,)
    time.sleep(1.2)
    assert con.execute("SELECT status FROM runs").fetchone() == ("stalled",)
    # with a long stall threshold the same run still reads as running
    assert ledger.connect(store_path, stall_after=3600).execute(
        "SELECT status FROM runs"
    ).fetchone() == ("running",)


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import sys, time, ledger
    with ledger.start_run("term", name="graceful", store=sys.argv[1]) as run:
        run.log_metric("loss", 1.0, step=0)
        print("ready", flush=True)
        while True:
            time.sleep(0.01)
    """
)


def test_sigterm_marks_the_run_killed_and_flushes(store_path, tmp_path):
    script = tmp_path / "term.py"
    script.write_text(SIGTERM_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), store_path], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 128 + signal.SIGTERM
    rows = ledger.query("SELECT status, message FROM runs", store=store_path).rows()
    assert rows == [("killed", "signal 15")]
    assert ledger.query("SELECT count(*) FROM metrics", store=store_path).item() == 1


def _forked_child(run_id: str) -> None:
    run = ledger.active_run()
    assert run is not None and run.id == run_id
    for step in range(100):
        run.log_metric("child", float(step), step=step)


def test_forked_children_continue_the_run_without_duplicates(store_path):
    ctx = mp.get_context("fork")
    with ledger.start_run("fork", store=store_path) as run:
        for step in range(50):
            run.log_metric("parent", float(step), step=step)  # buffered, not yet flushed
        children = [ctx.Process(target=_forked_child, args=(run.id,)) for _ in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
            assert child.exitcode == 0
    rows = ledger.query(
        "SELECT key, count(*) FROM metrics GROUP BY key ORDER BY key", store=store_path
    ).rows()
    assert rows == [("child", 300), ("parent", 50)]
    assert ledger.query("SELECT status FROM runs", store=store_path).item() == "finished"


def test_ledger_run_passes_the_run_to_the_child(store_path, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
        import ledger
        with ledger.start_run(params={"epochs": 2}) as run:
            for epoch in range(2):
                run.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
            print(run.id)
        """
        )
    )
    from ledger.shell import run_command

    run_id, code = run_command(
        [sys.executable, str(script)], store=store_path, project="wrapped", params={"source": "cli"}
    )
    assert code == 0
    run = ledger.query(
        "SELECT run_id, project, status, exit_code, command FROM runs", store=store_path
    ).row(0)
    assert run[:4] == (run_id, "wrapped", "finished", 0) and "train.py" in run[4]
    params = ledger.query("SELECT key, value FROM params ORDER BY key", store=store_path)
    assert params.rows() == [("epochs", "2"), ("source", "cli")]
    assert (
        ledger.query(
            "SELECT count(*) FROM metrics WHERE run_id = ?", store=store_path, params=[run_id]
        ).item()
        == 2
    )


def test_ledger_run_records_failures_and_exit_codes(store_path):
    from ledger.shell import run_command

    _, code = run_command([sys.executable, "-c", "raise SystemExit(3)"], store=store_path)
    assert code == 3
    assert ledger.query("SELECT status, exit_code, message FROM runs", store=store_path).row(0) == (
        "failed",
        3,
        "exit code 3",
    )
