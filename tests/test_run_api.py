"""The run API: values round-trip through Parquet into the views."""

from __future__ import annotations

import math
import re

import pytest

import ledger


def test_populated_store_fixture_folds_into_views(populated_store):
    runs = ledger.query(
        "SELECT name, status, message FROM runs ORDER BY name", store=populated_store
    )
    assert runs.rows() == [
        ("a", "finished", None),
        ("b", "finished", None),
        ("c", "failed", "RuntimeError: diverged"),
    ]
    latest = ledger.query(
        "SELECT r.name, l.value, l.step, l.min_value, l.max_value, l.n_points "
        "FROM latest_metrics l JOIN runs r USING (run_id) WHERE key = 'acc' ORDER BY r.name",
        store=populated_store,
    ).rows()
    assert latest[0][0] == "a" and latest[0][1] == pytest.approx(0.86) and latest[0][2] == 9
    assert latest[1][0] == "b" and math.isnan(latest[1][1]) and latest[1][2] == 10
    assert latest[1][3:] == (0.6, 0.6, 11)


def test_nan_inf_and_unicode_round_trip(store_path):
    with ledger.start_run("p", store=store_path) as run:
        run.log_metric("lösß/📉", math.nan, step=0)
        run.log_metric("lösß/📉", math.inf, step=1)
        run.log_metric("lösß/📉", -math.inf, step=2)
        run.log_param("名前", "値 ✓")
        run.set_tag("emoji", "🚀")
    values = ledger.query("SELECT value FROM metrics ORDER BY step", store=store_path)
    got = values["value"].to_list()
    assert math.isnan(got[0]) and got[1] == math.inf and got[2] == -math.inf
    assert ledger.query("SELECT key, value FROM params", store=store_path).rows() == [
        ("名前", "値 ✓")
    ]
    assert ledger.query("SELECT value FROM tags", store=store_path).item() == "🚀"


def test_default_steps_count_per_key_and_log_advances_shared_step(store_path):
    with ledger.start_run("p", store=store_path) as run:
        run.log_metric("a", 1.0)
        run.log_metric("a", 2.0)
        run.log_metric("b", 3.0)
        ledger.log({"c": 1.0})
        ledger.log({"c": 2.0, "d": 1.0})
    rows = ledger.query("SELECT key, step FROM metrics ORDER BY key, step", store=store_path)
    assert rows.rows() == [("a", 0), ("a", 1), ("b", 0), ("c", 0), ("c", 1), ("d", 1)]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda r: r.log_metric("loss", "0.5"),
            ledger.InvalidValueError,
            "Metric 'loss' needs a number, got str '0.5'",
        ),
        (
            lambda r: r.log_metric("loss", None),
            ledger.InvalidValueError,
            "Metric 'loss' needs a number, got NoneType None",
        ),
        (
            lambda r: r.log_metrics({"ok": 1.0, "bad": object()}),
            ledger.InvalidValueError,
            "Metric 'bad' needs a number",
        ),
        (lambda r: r.log_metric("", 1.0), ledger.InvalidKeyError, "Metric key must not be empty"),
        (
            lambda r: r.log_metric("k" * 251, 1.0),
            ledger.InvalidKeyError,
            "is 251 characters; the limit is 250",
        ),
        (
            lambda r: r.log_metric(3, 1.0),
            ledger.InvalidKeyError,
            "Metric key must be a string, got int 3",
        ),
        (
            lambda r: r.log_metric("loss", 1.0, step=1.5),
            ledger.InvalidValueError,
            "Step must be an integer, got float 1.5",
        ),
        (lambda r: r.log_param("", 1), ledger.InvalidKeyError, "Param key must not be empty"),
        (
            lambda r: r.end("done"),
            ledger.InvalidValueError,
            "Unknown run status 'done'. Allowed: finished, failed, killed",
        ),
    ],
)
def test_bad_input_raises_typed_errors_and_keeps_nothing(store_path, call, error, message):
    with (
        ledger.start_run("p", store=store_path) as run,
        pytest.raises(error, match=re.escape(message)),
    ):
        call(run)
    assert ledger.query("SELECT count(*) FROM metrics", store=store_path).item() == 0
    assert isinstance(error("x"), ledger.LedgerError)


def test_param_cannot_change_but_may_be_repeated(store_path):
    with ledger.start_run("p", store=store_path, params={"lr": 0.1}) as run:
        run.log_param("lr", 0.1)
        with pytest.raises(
            ledger.ParamConflictError, match=re.escape("Param 'lr' was logged as '0.1'")
        ):
            run.log_params({"depth": 3, "lr": 0.2})
    rows = ledger.query("SELECT key, value, value_type FROM params", store=store_path).rows()
    assert rows == [("lr", "0.1", "float")]  # depth was not kept either


def test_logging_after_end_raises(store_path):
    run = ledger.start_run("p", store=store_path)
    run.end()
    with pytest.raises(ledger.RunStateError, match="has ended"):
        run.log_metric("loss", 1.0)
    with pytest.raises(ledger.RunStateError):
        run.log_metrics({"loss": 1.0}, step=1)
    with pytest.raises(ledger.RunStateError):
        run.set_tag("a", "b")


def test_exception_marks_failed_and_keyboard_interrupt_marks_killed(store_path):
    with pytest.raises(ValueError), ledger.start_run("p", name="bad", store=store_path):
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), ledger.start_run("p", name="stop", store=store_path):
        raise KeyboardInterrupt
    rows = ledger.query("SELECT name, status, message FROM runs ORDER BY name", store=store_path)
    assert rows.rows() == [
        ("bad", "failed", "ValueError: boom"),
        ("stop", "killed", "KeyboardInterrupt"),
    ]


def test_nested_runs_inherit_store_project_and_parent(store_path):
    with ledger.start_run("vision", "exp", name="parent", store=store_path) as parent:
        with ledger.start_run(name="child") as child:
            assert ledger.active_run() is child
            child.log_metric("m", 1.0)
        assert ledger.active_run() is parent
        explicit = ledger.start_run(name="explicit", parent=parent.id)
        explicit.end()
    rows = ledger.query(
        "SELECT name, project, experiment, parent_run_id FROM runs ORDER BY name",
        store=store_path,
    ).rows()
    assert rows == [
        ("child", "vision", "exp", parent.id),
        ("explicit", "vision", "exp", parent.id),
        ("parent", "vision", "exp", None),
    ]


def test_threads_log_to_the_main_threads_run(store_path):
    import threading

    with ledger.start_run("p", store=store_path) as run:

        def work(offset: int) -> None:
            for step in range(1000):
                ledger.log_metric(f"t{offset}", float(step), step=step)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    counts = ledger.query(
        "SELECT key, count(*) AS n, count(DISTINCT step) AS steps FROM metrics "
        f"WHERE run_id = '{run.id}' GROUP BY key ORDER BY key",
        store=store_path,
    ).rows()
    assert counts == [(f"t{i}", 1000, 1000) for i in range(4)]


def test_resume_by_id_and_unknown_id(store_path):
    with ledger.start_run("p", name="first", store=store_path) as run:
        run.log_metric("loss", 1.0, step=0)
    ledger.flush()
    with ledger.start_run(run_id=run.id, store=store_path) as resumed:
        assert (resumed.project, resumed.name) == ("p", "first")
        resumed.log_metric("loss", 0.5, step=1)
    assert ledger.query("SELECT count(*) FROM metrics", store=store_path).item() == 2
    assert ledger.query("SELECT status FROM runs", store=store_path).item() == "finished"
    with pytest.raises(ledger.RunNotFoundError, match="No run with id 'nope'"):
        ledger.start_run(run_id="nope", store=store_path)


def test_fluent_functions_start_a_run_like_mlflow(store_path, monkeypatch):
    monkeypatch.setenv("LEDGER_STORE", store_path)
    ledger.log_param("lr", 3)
    ledger.log_metric("loss", 0.5)
    ledger.set_tag("k", "v")
    run = ledger.active_run()
    assert run is not None
    ledger.end_run()
    assert ledger.active_run() is None
    assert ledger.query("SELECT status FROM runs", store=store_path).item() == "finished"


def test_artifacts_are_content_addressed(store_path, tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights" * 100)
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "a.txt").write_text("same")
    (folder / "b.txt").write_text("same")
    with ledger.start_run("p", store=store_path) as run:
        assert run.log_artifact(model) == ["model.pkl"]
        assert run.log_artifact(folder, "figures") == ["figures/a.txt", "figures/b.txt"]
        run.log_text("hello", "notes/readme.txt")
        run.log_dict({"a": 1}, "config.json")
    rows = ledger.query(
        "SELECT path, size, sha256, uri FROM artifacts ORDER BY path", store=store_path
    ).rows()
    assert [r[0] for r in rows] == [
        "config.json",
        "figures/a.txt",
        "figures/b.txt",
        "model.pkl",
        "notes/readme.txt",
    ]
    import hashlib
    from pathlib import Path

    model_row = rows[3]
    assert model_row[1] == 700 and model_row[2] == hashlib.sha256(b"weights" * 100).hexdigest()
    assert Path(store_path, model_row[3]).read_bytes() == b"weights" * 100
    assert rows[1][3] == rows[2][3]  # identical content stored once
    with pytest.raises(ledger.InvalidValueError, match="does not exist"):
        ledger.start_run("p", store=store_path).log_artifact(tmp_path / "missing")


def test_dataset_fingerprints(store_path, tmp_path):
    import numpy as np
    import polars as pl

    frame = pl.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    with ledger.start_run("p", store=store_path) as run:
        first = run.log_dataset("train", frame, context="training")
        again = run.log_dataset("train-copy", frame.clone())
        array = run.log_dataset("features", np.zeros((4, 2)))
        csv = tmp_path / "data.csv"
        csv.write_text("a,b\n1,2\n")
        path_facts = run.log_dataset("raw", csv)
    assert first["sha256"] == again["sha256"] and (first["rows"], first["columns"]) == (3, 2)
    assert (array["rows"], array["columns"]) == (4, 2)
    assert path_facts["source"] == str(csv)
    rows = ledger.query(
        "SELECT name, rows, columns, context FROM datasets ORDER BY name", store=store_path
    ).rows()
    assert rows == [
        ("features", 4, 2, None),
        ("raw", 1, 2, None),
        ("train", 3, 2, "training"),
        ("train-copy", 3, 2, None),
    ]


def test_seed_is_applied_and_recorded(store_path):
    import json
    import random

    import numpy as np

    with ledger.start_run("p", store=store_path):
        seeds = ledger.seed(42)
        first = (random.random(), np.random.rand())
    ledger.seed(42)
    assert (random.random(), np.random.rand()) == first
    assert seeds["random"] == 42 and seeds["numpy"] == 42
    recorded = json.loads(ledger.query("SELECT seeds FROM runs", store=store_path).item())
    assert recorded["random"] == 42 and recorded["numpy"] == 42
    with pytest.raises(ledger.InvalidValueError):
        ledger.seed(-1)


def test_capture_records_git_and_packages(store_path, tmp_path, monkeypatch):
    import json
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@e.st"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(2)\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("LEDGER_CAPTURE", "1")
    from ledger.capture import capture_environment

    facts = capture_environment()
    assert facts["git"]["dirty"] is True and len(facts["git"]["commit"]) == 40
    assert "duckdb" in {name.lower() for name in facts["packages"]}
    with ledger.start_run("p", store=store_path):
        pass
    from ledger.capture import capture

    capture.wait(10)
    row = ledger.query("SELECT git_commit, git_dirty, environment FROM runs", store=store_path).row(
        0
    )
    assert row[0] == facts["git"]["commit"] and row[1] is True
    assert json.loads(row[2])["python"]["version"]


def test_empty_store_answers_every_view(store_path):
    con = ledger.connect(store_path)
    views = [
        r[0]
        for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    ]
    for view in [
        "runs",
        "params",
        "metrics",
        "latest_metrics",
        "tags",
        "artifacts",
        "system_metrics",
        "costs",
        "datasets",
        "experiments",
    ]:
        assert view in views
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)


def test_import_ledger_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, ledger\n"
        "heavy = [m for m in ('pyarrow', 'duckdb', 'polars', 'optuna', 'sklearn', "
        "'codecarbon', 'mlflow', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
