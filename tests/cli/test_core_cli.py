"""CLI: exit codes, exact messages, no tracebacks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def invoke(store_path):
    runner = CliRunner()

    def _invoke(*args: str):
        result = runner.invoke(
            cli, ["--help"] if args == ("--help",) else list(args), catch_exceptions=False
        )
        return result

    return _invoke


def test_log_start_metrics_end_then_query(invoke, store_path):
    started = invoke(
        "log",
        "--store",
        store_path,
        "--start",
        "--project",
        "demo",
        "--name",
        "shell",
        "--param",
        "lr=0.1",
        "--param",
        "layers=3",
        "--param",
        "fast=true",
        "--tag",
        "team=cv",
    )
    assert started.exit_code == 0
    run_id = started.output.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", run_id)
    logged = invoke(
        "log",
        "--store",
        store_path,
        "--run",
        run_id,
        "--metric",
        "loss=0.5",
        "--metric",
        "acc=nan",
        "--step",
        "3",
    )
    assert logged.exit_code == 0 and logged.output == ""
    assert (
        invoke(
            "log",
            "--store",
            store_path,
            "--run",
            run_id,
            "--end",
            "--status",
            "failed",
            "--message",
            "oom",
        ).exit_code
        == 0
    )
    out = invoke(
        "query", "--store", store_path, "--format", "json", "SELECT name, status, message FROM runs"
    )
    assert json.loads(out.output) == [{"name": "shell", "status": "failed", "message": "oom"}]
    params = invoke(
        "query",
        "-s",
        store_path,
        "-f",
        "csv",
        "SELECT key, value, value_type FROM params ORDER BY key",
    )
    assert params.output.splitlines() == [
        "key,value,value_type",
        "fast,True,bool",
        "layers,3,int",
        "lr,0.1,float",
    ]
    metrics = invoke(
        "query",
        "-s",
        store_path,
        "-f",
        "jsonl",
        "SELECT key, value, step FROM metrics ORDER BY key",
    )
    assert [json.loads(line) for line in metrics.output.splitlines()] == [
        {"key": "acc", "value": "NaN", "step": 3},
        {"key": "loss", "value": 0.5, "step": 3},
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["log", "--run", "0" * 32, "--metric", "a=1"],
            "Error: No run with id '00000000000000000000000000000000' in store",
        ),
        (
            ["log", "--metric", "a=1"],
            "Error: No run given: pass --run ID, set $LEDGER_RUN_ID, or use --start",
        ),
        (
            ["log", "--start", "--metric", "a=abc"],
            "Error: Invalid --metric 'a=abc': value must be a number (nan and inf are allowed)",
        ),
        (
            ["log", "--start", "--param", "novalue"],
            "Error: Invalid --param 'novalue': use KEY=VALUE",
        ),
        (
            ["log", "--start", "--project", "bad name"],
            "Error: Invalid project name 'bad name': use 1-128 letters, digits",
        ),
        (
            ["query", "SELECT nope FROM runs"],
            'Error: Binder Error: Referenced column "nope" not found in FROM clause!',
        ),
        (
            ["query", "SELECT * FROM runz"],
            "Error: Catalog Error: Table with name runz does not exist!",
        ),
        (
            ["query", "COPY runs TO 'x.csv'"],
            "Error: Only SELECT, WITH, DESCRIBE, SHOW and EXPLAIN are allowed; COPY statements "
            "could change the store",
        ),
        (["query", "CREATE TABLE t AS SELECT 1"], "Error: Only SELECT"),
        (["query", "ATTACH 'x.db'"], "Error: Only SELECT"),
        (["query", "INSTALL httpfs"], "Error: Only SELECT"),
        (["query", "SELECT 1; DROP VIEW runs"], "Error: Only SELECT"),
        (["query", "SELEC 1"], 'Error: Parser Error: syntax error at or near "SELEC"'),
        (
            ["runs", "--status", "done"],
            "Error: Unknown status 'done'. Known: running, finished, failed, killed, stalled",
        ),
        (["query", "-f", "parquet", "SELECT 1"], "Error: --format parquet needs --output FILE"),
    ],
)
def test_errors_are_one_line_with_exit_code(invoke, store_path, args, message):
    result = invoke(*args[:1], "--store", store_path, *args[1:])
    assert result.exit_code in (1, 2)
    assert result.output.startswith(message) or message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 or result.exit_code == 2


def test_refused_writes_leave_the_store_untouched(invoke, store_path, tmp_path):
    invoke("log", "--store", store_path, "--start", "--metric", "a=1")
    assert invoke("query", "--store", store_path, "SELECT 1").exit_code == 0  # initialised
    before = sorted(p.name for p in Path(store_path).rglob("*"))
    target = tmp_path / "out.csv"
    for sql in (
        f"COPY (SELECT * FROM metrics) TO '{target}'",
        "DROP VIEW runs",
        "PRAGMA threads=1",
        "SET threads=1",
        "EXPORT DATABASE 'x'",
    ):
        assert invoke("query", "--store", store_path, sql).exit_code == 1
    assert not target.exists()
    assert sorted(p.name for p in Path(store_path).rglob("*")) == before


def test_outputs_in_every_format(invoke, store_path, tmp_path):
    invoke("log", "--store", store_path, "--start", "--name", "r1", "--metric", "a=1.5")
    for fmt in ("table", "csv", "json", "jsonl", "markdown"):
        result = invoke("runs", "--store", store_path, "--format", fmt)
        assert result.exit_code == 0 and "r1" in result.output
    target = tmp_path / "runs.parquet"
    assert invoke("runs", "-s", store_path, "-f", "parquet", "-o", str(target)).exit_code == 0
    import polars as pl

    assert pl.read_parquet(target)["name"].to_list() == ["r1"]
    assert invoke("views", "--store", store_path, "-f", "csv").output.count("latest_metrics") > 3


def test_run_wraps_a_command_and_returns_its_exit_code(invoke, store_path):
    import sys

    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--store",
            store_path,
            "--name",
            "fails",
            "--",
            sys.executable,
            "-c",
            "import sys; sys.exit(4)",
        ],
    )
    assert result.exit_code == 4
    status = invoke("query", "-s", store_path, "-f", "csv", "SELECT status, exit_code FROM runs")
    assert status.output.splitlines()[1] == "failed,4"


def _all_commands(group, prefix=""):
    import click

    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        yield full, command
        if isinstance(command, click.Group):
            yield from _all_commands(command, f"{full} ")


def test_every_verb_has_help_and_is_in_readme(invoke):
    readme = README.read_text()
    for name, command in _all_commands(cli):
        assert command.help, f"ledger {name} has no help text"
        assert f"ledger {name}" in readme, f"`ledger {name}` is not documented in README.md"
        help_output = CliRunner().invoke(cli, [*name.split(), "--help"])
        assert help_output.exit_code == 0 and "Usage:" in help_output.output


def test_store_is_the_flag_then_ledger_store_then_dot_ledger(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEDGER_STORE")
    flag, from_env = tmp_path / "flag", tmp_path / "env"

    def start(*store: str) -> str:
        result = invoke("log", *store, "--start", "--project", "p")
        assert result.exit_code == 0, result.output
        return result.output.strip()

    default_id = start()
    monkeypatch.setenv("LEDGER_STORE", str(from_env))
    env_id = start()
    flag_id = start("--store", str(flag))
    for root, run_id in ((tmp_path / ".ledger", default_id), (from_env, env_id), (flag, flag_id)):
        listed = invoke("query", "--store", str(root), "--format", "csv", "SELECT run_id FROM runs")
        assert listed.output.split() == ["run_id", run_id]
