"""`ledger status` without polars or pyarrow: the same rows and the same bytes as the frame
path, in every format, and a new process that imports neither."""

from __future__ import annotations

import datetime as dt
import glob
import json
import math
import os
import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner
from ledger.analytics import engine, live, monitor
from ledger.analytics.engine import connect, fetch_frame, fetch_rows

import ledger
from ledger import output
from ledger.cli import cli


@pytest.fixture
def recent_runs(store_path):
    with (
        pytest.raises(RuntimeError),
        ledger.start_run("mon", "exp", "crashed", store=store_path) as run,
    ):
        run.log_metrics({"loss": math.nan, "acc": 0.5}, step=3)
        raise RuntimeError("diverged | badly")
    open_run = ledger.start_run(
        "mon", "exp", "open", params={monitor.TOTAL_STEPS_KEY: 10}, store=store_path
    )
    open_run.log_metrics({"loss": 0.25, "acc": 1}, step=4)
    ledger.flush()
    yield store_path
    open_run.end()


def _numeric() -> list[str]:
    return [k for k, kind in monitor.STATUS_TYPES.items() if kind in (int, float)]


def test_status_rows_match_the_status_frame(recent_runs):
    con = connect(recent_runs)
    now = dt.datetime.now(dt.timezone.utc)
    frame = monitor.status(con, now=now)
    rows = monitor.status_rows(con, now=now)
    assert frame.height == len(rows) == 2
    assert monitor.status_frame(rows).schema == frame.schema
    for got, want in zip(rows, frame.to_dicts(), strict=True):
        assert list(got) == list(monitor.STATUS_COLUMNS)
        got.pop("duration_s"), want.pop("duration_s")  # open runs: moves with the clock
        assert json.dumps(got, default=str) == json.dumps(want, default=str)


def test_status_of_a_store_reads_the_recent_window_like_the_full_views(recent_runs):
    now = dt.datetime.now(dt.timezone.utc)
    con = connect(recent_runs)
    try:
        want = monitor.status(con, now=now).drop("duration_s")
    finally:
        con.close()
    # What `ledger status` (and each --watch refresh) computes: the recent window only.
    got = monitor.status(store=recent_runs, now=now).drop("duration_s")
    assert got.height == 2 and got.to_dicts() == want.to_dicts()
    assert monitor.store_status(recent_runs, project="other", now=now) == []


def test_fetch_rows_gives_what_fetch_frame_gives_for_scalar_columns(recent_runs):
    con = connect(recent_runs)
    sql = (
        "SELECT run_id, status, start_time, end_time, duration_s, exit_code, pinned, "
        "CAST(1.5 AS DECIMAL(9, 2)) AS d, sum(1) OVER () AS n FROM runs ORDER BY name"
    )
    rows, frame = fetch_rows(con, sql), fetch_frame(con, sql).to_dicts()
    assert len(rows) == 2
    for got, want in zip(rows, frame, strict=True):
        got.pop("duration_s"), want.pop("duration_s")
        assert got == want


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "markdown", "csv"])
def test_render_rows_prints_what_render_prints(recent_runs, fmt, tmp_path, capsys):
    rows = monitor.status_rows(connect(recent_runs))
    frame = monitor.status_frame(rows)
    columns = list(monitor.STATUS_TYPES)
    output.render(frame, fmt)
    want = capsys.readouterr().out
    output.render_rows(rows, columns, fmt, numeric=_numeric(), to_frame=monitor.status_frame)
    assert capsys.readouterr().out == want and want
    output.render(frame, fmt, str(tmp_path / "a"))
    output.render_rows(
        rows, columns, fmt, str(tmp_path / "b"), numeric=_numeric(), to_frame=monitor.status_frame
    )
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text()


def test_render_keeps_every_format_for_other_frames(tmp_path, capsys):
    frame = pl.DataFrame({"n": list(range(1005)), "x": [0.5] * 1005, "s": ["a|b"] * 1005})
    output.render(frame, "table")
    assert "5 more rows not shown" in capsys.readouterr().out
    output.render(frame.head(0), "table")
    assert "(no rows)" in capsys.readouterr().out
    output.render(frame.head(2), "markdown")
    assert capsys.readouterr().out == "| n | x | s |\n| --- | --- | --- |\n| 0 | 0.5 | a\\|b |\n" \
        "| 1 | 0.5 | a\\|b |\n"  # fmt: skip
    output.render(frame, "parquet", str(tmp_path / "f.parquet"))
    assert pl.read_parquet(tmp_path / "f.parquet").equals(frame)


def test_status_cli_formats_and_parquet(recent_runs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["status", "--store", recent_runs, "--format", "json"])
    assert result.exit_code == 0, result.output
    names = {row["name"] for row in json.loads(result.output)}
    assert names == {"open", "crashed"}
    target = tmp_path / "s.parquet"
    result = runner.invoke(
        cli, ["status", "--store", recent_runs, "--format", "parquet", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(target).columns == list(monitor.STATUS_COLUMNS)


def test_a_status_process_imports_neither_polars_nor_pyarrow(recent_runs):
    code = (
        "import sys\nfrom ledger.cli import cli\n"
        "try:\n    cli(['status', '--format', sys.argv[1]], prog_name='ledger')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('polars', 'pyarrow') if m in sys.modules), file=sys.stderr)"
    )
    env = {**os.environ, "LEDGER_STORE": recent_runs}
    for fmt in ("table", "json"):
        done = subprocess.run(
            [sys.executable, "-c", code, fmt], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "crashed" in done.stdout
        assert done.stderr.strip().splitlines()[-1] == "[]"


def test_scandir_listing_matches_glob(recent_runs):
    store = ledger.store.open_store(recent_runs)
    for kind in ("runs", "metrics", "params"):
        pattern = store.kind_glob(kind)
        assert sorted(live._glob(pattern)) == sorted(glob.glob(pattern)) != []
    assert live._glob(os.path.join(recent_runs, "nope", "*", "*", "*.parquet")) == []


def test_only_the_views_asked_for_and_what_they_build_on(recent_runs):
    names = [name for name, _ in engine._with_dependencies(engine._view_files(), ["run_costs"])]
    assert {"run_costs", "runs", "tags", "pricing"} <= set(names)
    assert "experiments" not in names and "latest_metrics" not in names
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    con = live.recent_connection(recent_runs, since=since, views=monitor.STATUS_VIEWS)
    views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert set(monitor.STATUS_VIEWS) <= views and "run_costs" not in views
    assert {row["name"] for row in monitor.status_rows(con)} == {"open", "crashed"}
