"""diff and a run's points over the layouts the fast paths must get right: a run whose
events sit in several writers' files, a run still running, a soft-deleted run, files of
two schemas side by side, and files the commit log hides. Each answer is checked by hand
and against the store's own views (no listing, no pruning)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
from ledger.analytics import diff as diff_module
from ledger.analytics import pruning
from ledger.analytics import resolve as resolve_module
from ledger.analytics.diff import diff
from ledger.analytics.engine import connect
from ledger.analytics.runs import metric_history

import ledger
from ledger.events import arrow_schema
from ledger.store import open_store


def _rows(frame) -> dict[tuple[str, str], list]:
    return {(r[0], r[1]): list(r[2:]) for r in frame.iter_rows()}


def _plain_diff(monkeypatch, *args, **kwargs):
    """The same diff with no listing anywhere: resolver and facts read the views."""
    with monkeypatch.context() as patch:
        patch.setattr(diff_module, "listing", lambda *a, **k: None)
        patch.setattr(resolve_module, "visible_files", lambda *a: None)
        return diff(*args, **kwargs)


def _without_duration(frame):
    import polars as pl

    return frame.filter(pl.col("key") != "duration_s")


def _view_points(con, run_id: str) -> list[tuple]:
    return _comparable(
        con.execute(
            "SELECT key, step, ts, value FROM metrics WHERE run_id = $1 "
            "ORDER BY key, step, ts, seq",
            [run_id],
        ).fetchall()
    )


def _comparable(rows) -> list[tuple]:
    """Rows with the value as text, so NaN equals NaN."""
    return [(*row[:3], repr(row[3])) for row in rows]


def _continue_elsewhere(store: str, run_id: str) -> None:
    """Log more of ``run_id`` from another process (another writer id, other files)."""
    code = textwrap.dedent(
        f"""
        import ledger
        from ledger.run import continue_run
        run = continue_run({run_id!r}, store={store!r})
        run.log_param("resumed_by", "worker")
        run.set_tag("phase", "two")
        for step in (3, 4):
            run.log_metrics({{"loss": 1.0 / (step + 1), "acc": 0.1 * step}}, step=step)
        run.end("finished")
        ledger.flush()
        """
    )
    env = {**os.environ, "LEDGER_CAPTURE": "0"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.fixture()
def spread(store_path):
    """Run "spread": steps 0-2 by this process, 3-4 by another; run "other" finished;
    run "live" still running; run "gone" soft-deleted."""
    ids = {}
    run = ledger.start_run("p", "e", "spread", params={"lr": 0.1}, store=store_path)
    ids["spread"] = run.id
    for step in range(3):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": 0.1 * step}, step=step)
        ledger.flush()  # one file per step
    run.detach()
    _continue_elsewhere(store_path, ids["spread"])
    with ledger.start_run("p", "e", "other", params={"lr": 0.2}, store=store_path) as other:
        other.log_metric("loss", 0.7, step=0)
        ids["other"] = other.id
    live = ledger.start_run("p", "e", "live", params={"lr": 0.3}, store=store_path)
    live.log_metric("loss", 0.9, step=0)
    live.log_metric("loss", 0.8, step=1)
    ledger.flush()
    ids["live"] = live.id
    with ledger.start_run("p", "e", "gone", params={"lr": 0.4}, store=store_path) as gone:
        gone.log_metric("loss", 0.5, step=0)
        gone._event("runs", event="deleted")
        ids["gone"] = gone.id
    ledger.flush()
    yield ids
    live.end("finished")


def test_a_run_in_several_writers_files(store_path, spread, monkeypatch):
    con = connect(store_path)
    try:
        writers = con.execute(
            "SELECT count(DISTINCT writer_id) FROM events_metrics WHERE run_id = $1",
            [spread["spread"]],
        ).fetchall()[0][0]
        assert writers == 2
        frame = diff(runs=["spread", "other"], all=True, con=con)
        rows = _rows(frame)
        assert rows[("param", "lr")] == ["0.1", "0.2"]
        assert rows[("param", "resumed_by")] == ["worker", None]
        assert rows[("tag", "phase")] == ["two", None]
        assert rows[("run", "status")] == ["finished", "finished"]
        assert rows[("metric", "loss.last")] == ["0.2", "0.7"]
        assert rows[("metric", "loss.best")] == ["0.2", "0.7"]
        assert rows[("metric", "loss.best_step")] == ["4", "0"]
        assert rows[("metric", "acc.best_step")] == ["4", None]
        plain = _plain_diff(monkeypatch, runs=["spread", "other"], all=True, con=con)
        assert frame.equals(plain)
        points = metric_history(spread["spread"], con=con)
        assert [(r[0], r[1]) for r in points.iter_rows()] == [
            *(("acc", step) for step in range(5)),
            *(("loss", step) for step in range(5)),
        ]
        assert _comparable(points.iter_rows()) == _view_points(con, spread["spread"])
    finally:
        con.close()


def test_a_running_run_and_a_deleted_run(store_path, spread, monkeypatch):
    con = connect(store_path)
    try:
        frame = diff(runs=["live", "other"], all=True, con=con)
        rows = _rows(frame)
        assert rows[("run", "status")] == ["running", "finished"]
        assert rows[("metric", "loss.last")] == ["0.8", "0.7"]
        assert rows[("metric", "loss.best_step")] == ["1", "0"]
        plain = _plain_diff(monkeypatch, runs=["live", "other"], all=True, con=con)
        # A running run's duration grows between the two reads.
        assert _without_duration(frame).equals(_without_duration(plain))
        live = metric_history(spread["live"], con=con)
        assert live["value"].to_list() == [0.9, 0.8]
        # A soft-deleted run is still found by id or name, but the runs view hides its
        # run fields, as the plain views do.
        gone = diff(runs=["gone", "other"], all=True, con=con)
        assert _rows(gone)[("run", "status")] == [None, "finished"]
        assert _rows(gone)[("param", "lr")] == ["0.4", "0.2"]
        assert gone.equals(_plain_diff(monkeypatch, runs=["gone", "other"], all=True, con=con))
    finally:
        con.close()


def test_files_of_two_schemas_are_read_by_name(store_path, spread, monkeypatch):
    """A params file without the value_type column (an older writer) next to new ones:
    the pruned reads must not read by position then."""
    store = open_store(store_path)
    schema = arrow_schema("params")
    old = schema.remove(schema.get_field_index("value_type"))
    table = pa.Table.from_pylist(
        [
            {
                "event_id": "0" * 32,
                "run_id": spread["spread"],
                "ts": pa.scalar(1, pa.timestamp("us", tz="UTC")).as_py(),
                "writer_id": "old-writer",
                "key": "legacy",
                "value": "yes",
            }
        ],
        schema=old,
    )
    directory = sorted(glob.glob(os.path.join(store.kind_dir("params"), "project=p", "*")))[0]
    store.write_parquet(directory, "old-writer-000001.parquet", table, "params")
    con = connect(store_path)
    try:
        listed = pruning.visible_files(con, "params")
        kept = pruning.files_for_runs(listed, [spread["spread"]])
        assert not pruning.same_schema(kept)
        frame = diff(runs=["spread", "other"], all=True, con=con)
        assert _rows(frame)[("param", "legacy")] == ["yes", None]
        assert frame.equals(_plain_diff(monkeypatch, runs=["spread", "other"], all=True, con=con))
    finally:
        con.close()


def test_a_compaction_committed_after_the_connection_opened(store_path, spread):
    """The hidden-file set kept per connection follows the commit log."""
    con = connect(store_path)
    try:
        before = diff(runs=["spread", "other"], all=True, con=con)
        points = metric_history(spread["spread"], con=con)
        files = set(pruning.visible_files(con, "metrics") or [])
        ledger.compact(store_path, older_than="0s", grace=0)
        after_files = set(pruning.visible_files(con, "metrics") or [])
        assert after_files != files and all(os.path.exists(f) for f in after_files)
        assert diff(runs=["spread", "other"], all=True, con=con).equals(before)
        assert metric_history(spread["spread"], con=con).equals(points)
    finally:
        con.close()


def test_kept_cursors_follow_the_connection_session(store_path, spread):
    """A pruned cursor is reused only while the connection's variables are unchanged."""
    con = connect(store_path, stall_after=3600)
    try:
        assert _rows(diff(runs=["live", "other"], all=True, con=con))[("run", "status")][0] == (
            "running"
        )
        con.execute("SET VARIABLE stall_after_s = 0.0::DOUBLE")
        assert _rows(diff(runs=["live", "other"], all=True, con=con))[("run", "status")][0] == (
            "stalled"
        )
    finally:
        con.close()


def test_points_of_interleaved_keys_in_the_views_order(board):
    con = connect(board.store)
    try:
        for run_id in board.ids.values():
            frame = metric_history(run_id, con=con)
            assert _comparable(frame.iter_rows()) == _view_points(con, run_id)
    finally:
        con.close()
