"""`ledger reproduce`: run resolution, --compare, recipes for runs that captured little."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
from click.testing import CliRunner
from ledger.analytics import reproduce as repro
from ledger.analytics.engine import connect

import ledger
from ledger.cli import cli
from ledger.errors import AmbiguousRunError, InvalidValueError, RunNotFoundError


def _run(store, name, points, **kwargs):
    with ledger.start_run("p", "e", name, store=store, **kwargs) as run:
        for key, values in points.items():
            for step, value in enumerate(values):
                run.log_metric(key, value, step=step)
    return run.id


@pytest.fixture
def pair(store_path):
    original = _run(store_path, "orig", {"loss": [1.0, 0.5, math.nan], "acc": [0.1, 0.2, 0.3]})
    return store_path, original


def test_resolve_run_by_full_id_and_unique_prefix(pair):
    store, original = pair
    other = _run(store, "other", {"loss": [1.0]})
    con = connect(store)
    try:
        assert repro.resolve_run(con, original) == original
        assert repro.resolve_run(con, original.upper()) == original
        common = os.path.commonprefix([original, other])  # noqa: RUF071 - ids, not paths
        assert repro.resolve_run(con, original[: len(common) + 1]) == original
        with pytest.raises(AmbiguousRunError, match="matches several runs"):
            repro.resolve_run(con, common)
        with pytest.raises(RunNotFoundError, match="No run with id or id prefix 'zzz'"):
            repro.resolve_run(con, "zzz")
    finally:
        con.close()


def test_compare_identical_runs_reproduce_nan_included(pair):
    store, original = pair
    again = _run(
        store,
        "again",
        {"loss": [1.0, 0.5, math.nan], "acc": [0.1, 0.2, 0.3]},
        parent=original,
    )
    result = repro.compare(store, original, again)
    assert result.reproduced and result.linked
    assert result.metrics["status"].to_list() == ["match", "match"]
    assert result.summary().startswith("reproduced: 2 metrics (6 points)")


def test_compare_lists_drift_beyond_tolerance(pair):
    store, original = pair
    drifted = _run(store, "drift", {"loss": [1.0, 0.5 + 1e-4, math.nan], "new": [1.0]})
    result = repro.compare(store, original, drifted, rtol=1e-6)
    assert not result.reproduced and not result.linked
    rows = {row["key"]: row for row in result.metrics.to_dicts()}
    assert rows["loss"]["status"] == "drifted"
    assert rows["loss"]["drifted_points"] == 1 and rows["loss"]["first_drift_step"] == 1
    assert rows["loss"]["max_abs_diff"] == pytest.approx(1e-4)
    assert rows["acc"]["status"] == "missing"
    assert rows["new"]["status"] == "extra"
    assert "loss" in result.summary() and "acc" in result.summary()
    loose = repro.compare(store, original, drifted, rtol=1e-3, ignore=["acc"])
    assert loose.reproduced  # within 1e-3, acc ignored, extra keys do not fail


def test_compare_rejects_bad_tolerance(pair):
    store, original = pair
    with pytest.raises(InvalidValueError, match="--rtol must be a finite number"):
        repro.compare(store, original, original, rtol=-1)


def test_cli_compare_exit_codes_and_messages(pair):
    store, original = pair
    same = _run(store, "same", {"loss": [1.0, 0.5, math.nan], "acc": [0.1, 0.2, 0.3]})
    worse = _run(store, "worse", {"loss": [1.0, 0.6, math.nan], "acc": [0.1, 0.2, 0.3]})
    runner = CliRunner()
    ok = runner.invoke(cli, ["reproduce", original, "--compare", same, "--store", store])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith(f"reproduced: 2 metrics (6 points) of {original} match {same}")
    bad = runner.invoke(
        cli, ["reproduce", original, "--compare", worse, "--store", store, "--format", "json"]
    )
    assert bad.exit_code == 4
    rows = json.loads(bad.stdout)
    assert [(r["key"], r["status"]) for r in rows] == [("loss", "drifted")]
    assert "not reproduced: 1 of 2 metrics drifted beyond rtol=1e-06 (loss)" in bad.stderr


def test_cli_refuses_two_modes_and_unknown_runs(pair):
    store, original = pair
    runner = CliRunner()
    both = runner.invoke(
        cli, ["reproduce", original, "--check", "--compare", original, "-s", store]
    )
    assert both.exit_code == 2 and "one of --write, --check and --compare" in both.output
    missing = runner.invoke(cli, ["reproduce", "nope", "-s", store])
    assert missing.exit_code == 1
    assert missing.output == "Error: No run with id or id prefix 'nope' in this store\n"


def test_recipe_of_a_run_without_capture_says_what_is_missing(pair, tmp_path):
    store, original = pair  # the test suite runs with LEDGER_CAPTURE=0
    text = repro.recipe(store, original).text()
    assert "no captured environment" in text
    assert "was not in a git repository" in text
    written = repro.write_recipe(store, original, tmp_path / "out")
    assert written == [
        "README.md",
        "environment.json",
        "patch.diff",
        "reproduce.sh",
        "requirements.txt",
    ]
    script = (tmp_path / "out" / "reproduce.sh").read_text()
    assert "the run recorded no command to re-run" in script
    assert os.access(tmp_path / "out" / "reproduce.sh", os.X_OK)
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Not captured" in readme and "seeds: the run set none" in readme


def test_check_of_in_memory_and_remote_data_sets_notes_rather_than_fails(store_path, tmp_path):
    import pyarrow as pa

    with ledger.start_run("p", store=store_path) as run:
        run.log_dataset("frame", pa.table({"x": [1]}), source=str(tmp_path / "x.csv"))
        run.log_dataset("remote", pa.table({"x": [1]}), source="s3://bucket/x")
    result = repro.check(store_path, run.id, path=tmp_path)
    assert not [d for d in result.differences if d["area"] == "dataset"]
    assert any("fingerprinted in memory (arrow)" in note for note in result.notes)
    assert any("remote" in note for note in result.notes)


def test_user_text_cannot_escape_into_reproduce_sh(store_path, tmp_path):
    import subprocess
    import sys
    import sysconfig

    hostile = "x\n$(touch pwned) `touch pwned2`"
    with ledger.start_run("p", hostile, hostile, store=store_path) as run:
        pass
    repro.write_recipe(store_path, run.id, tmp_path / "out")
    script = tmp_path / "out" / "reproduce.sh"
    header = script.read_text().split("set -euo pipefail")[0]
    assert all(line.startswith("#") for line in header.splitlines() if line)
    # Run it for real (fast venv switch): it must stop at "no command", having run nothing
    # from the run's name or experiment.
    env = dict(
        os.environ,
        LEDGER_REPRODUCE_PYTHON=sys.executable,
        LEDGER_REPRODUCE_SITE_PACKAGES=sysconfig.get_paths()["purelib"],
    )
    result = subprocess.run(
        [str(script), str(tmp_path / "ck")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "the run recorded no command to re-run" in result.stderr
    assert not list(tmp_path.rglob("pwned*"))


def test_the_working_process_environment_wins_over_ledger_cli_ones(store_path):
    def environment(run, command, pid):
        facts = {"command": command, "cwd": "/w", "python": {"version": "3.11.7"}}
        run._writer.add_event(
            "runs",
            run.project,
            {"run_id": run.id, "event": "environment", "attrs": json.dumps(facts), "pid": pid},
        )

    with ledger.start_run("p", store=store_path) as run:
        environment(run, ["/v/bin/python", "/v/bin/ledger", "run", "--", "python", "t.py"], 1)
        environment(run, ["/v/bin/python", "t.py", "--epochs", "3"], 2)
        environment(run, ["/v/bin/python", "-m", "ledger", "log", "--end"], 3)
    record = repro.load_record(store_path, run.id)
    assert record.argv == ["python", "t.py", "--epochs", "3"]
    assert record.environments == 3


def test_packages_of_another_interpreter_match_this_one():
    import sys

    # ledger.capture's own listing, in a fresh interpreter: this one's sys.path may have
    # grown (importing ray adds its vendored packages), so its listing can differ.
    own = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from ledger.capture import installed_packages; "
            "print(json.dumps(installed_packages()))",
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    assert repro.packages_of(sys.executable) == json.loads(own.stdout)
    with pytest.raises(InvalidValueError, match="Cannot list the packages"):
        repro.packages_of("/nonexistent/python")
