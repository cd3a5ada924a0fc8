"""Capture, completed: diff artifact, file hashes, requirements, env allow-list, seeds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading

import pytest
from repro_helpers import git, make_repo

import ledger
from ledger import capture as capture_module
from ledger import run as run_module
from ledger.capture import (
    BackgroundCapture,
    environment_variables,
    git_state,
    installed_distributions,
    mask_url_credentials,
)
from ledger.fingerprint import fingerprint
from ledger.store import open_store


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo", {"train.py": "print('hi')\n", "lib/util.py": "X = 1\n"})


def test_clean_tree_records_commit_and_no_diff(repo, monkeypatch):
    monkeypatch.chdir(repo / "lib")
    facts, diff = git_state()
    assert facts["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert facts["branch"] == "main"
    assert facts["subdir"] == "lib"
    assert facts["dirty"] is False
    assert diff is None
    assert "changed_files" not in facts and "diff_uri" not in facts


def test_dirty_tree_keeps_the_diff_and_hashes_changed_and_untracked_files(repo):
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "lib" / "util.py").unlink()
    (repo / "new_module.py").write_text("Y = 2\n")
    (repo / "notes.bin").write_bytes(b"\x00\x01")  # untracked, not source: counted only
    (repo / ".gitignore").write_text("ignored.py\n")
    (repo / "ignored.py").write_text("secret = 1\n")
    facts, diff = git_state(str(repo))
    expected = subprocess.run(
        ["git", "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    assert diff == expected
    assert facts["dirty"] is True
    assert facts["diff_sha256"] == hashlib.sha256(expected).hexdigest()
    assert (
        facts["diff_uri"] == f"artifacts/sha256/{facts['diff_sha256'][:2]}/{facts['diff_sha256']}"
    )
    assert facts["diff_stored"] is True
    assert facts["changed_files"] == {
        "lib/util.py": None,
        "train.py": hashlib.sha256(b"print('changed')\n").hexdigest(),
    }
    assert facts["untracked_files"] == {
        ".gitignore": hashlib.sha256(b"ignored.py\n").hexdigest(),
        "new_module.py": hashlib.sha256(b"Y = 2\n").hexdigest(),
    }
    assert facts["untracked_other"] == 1  # notes.bin; ignored.py is gitignored


def test_diff_over_the_cap_is_hashed_and_noted_not_stored(repo, monkeypatch):
    monkeypatch.setenv("LEDGER_CAPTURE_MAX_DIFF", "64B")
    (repo / "train.py").write_text("print('x')\n" * 50)
    facts, diff = git_state(str(repo))
    assert diff is None
    assert facts["diff_stored"] is False
    assert "diff_uri" not in facts
    assert facts["diff_size"] > 64
    assert any("over the 64-byte cap" in note for note in facts["notes"])


def test_outside_git_there_are_no_git_facts(tmp_path):
    assert git_state(str(tmp_path)) == (None, None)


def test_secret_names_never_recorded_even_when_allow_listed(monkeypatch):
    environ = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
        "AWS_ACCESS_KEY_ID": "AKIA123",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "HF_TOKEN": "hf_abc",
        "DB_PASSWORD": "pw",
        "OMP_NUM_THREADS": "4",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "HOME": "/root",
        "HF_ENDPOINT": "https://user:pass@hub.example.com/x",
    }
    monkeypatch.setenv("LEDGER_CAPTURE_ENV", "AWS_*, DB_*")
    kept = environment_variables(environ)
    assert kept == {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "HF_ENDPOINT": "https://***@hub.example.com/x",
        "OMP_NUM_THREADS": "4",
    }


def test_mask_url_credentials():
    assert mask_url_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert mask_url_credentials("https://tok@github.com/o/r") == "https://***@github.com/o/r"


def test_requirements_are_exact_pins_pip_understands():
    from packaging.requirements import Requirement

    distributions = installed_distributions()
    assert len(distributions) > 20
    by_name = {name.lower(): line for name, _, line in distributions}
    assert by_name["duckdb"] == f"duckdb=={__import__('duckdb').__version__}"
    for name, version, line in distributions:
        if line.startswith("-e "):
            continue
        requirement = Requirement(line)
        assert requirement.name == name
        if not requirement.url:
            assert str(requirement.specifier) == f"=={version}"


def test_capture_stores_diff_once_per_store_and_delivers_off_thread(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    (repo / "train.py").write_text("print('dirty')\n")
    background = BackgroundCapture()
    store_a = open_store(tmp_path / "a")
    store_b = open_store(tmp_path / "b")
    got: list[tuple[str, dict, str]] = []
    done = threading.Event()

    def callback(facts, diff):
        got.append((facts, diff, threading.current_thread().name))
        done.set()

    background.when_ready(callback, store_a)
    background.wait(10)
    assert done.wait(10)
    facts = json.loads(got[0][0]["attrs"])
    diff = got[0][1]
    assert got[0][2] == "ledger-capture"
    assert diff["uri"] == facts["git"]["diff_uri"]
    with open(store_a.artifact_path(diff["uri"]), "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == facts["git"]["diff_sha256"]
    # Same store again: delivered at once from the caller's thread, nothing rewritten.
    background.when_ready(callback, store_a)
    assert got[1][1] == diff and got[1][2] == threading.current_thread().name
    # A new store after capture finished: written off the caller's thread.
    done.clear()
    background.when_ready(callback, store_b)
    assert done.wait(10)
    background.wait(10)
    assert got[2][2] == "ledger-capture"
    assert os.path.exists(store_b.artifact_path(diff["uri"]))


def test_runs_get_environment_and_diff_artifact_events(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(repo)
    monkeypatch.setenv("LEDGER_CAPTURE", "1")
    (repo / "train.py").write_text("print('dirty run')\n")
    fresh = BackgroundCapture()
    monkeypatch.setattr(capture_module, "capture", fresh)
    monkeypatch.setattr(run_module, "capture", fresh)
    store = str(tmp_path / "store")
    with ledger.start_run("p", store=store) as run:
        pass
    fresh.wait(10)
    ledger.flush()
    env_rows = ledger.query(
        "SELECT attrs, pid FROM events_runs WHERE run_id = ? AND event = 'environment'",
        store,
        [run.id],
    )
    assert env_rows.height == 1 and env_rows["pid"][0] == os.getpid()
    facts = json.loads(env_rows["attrs"][0])
    assert facts["git"]["dirty"] and facts["cwd"] == str(repo)
    artifacts = ledger.query(
        "SELECT path, uri, kind FROM artifacts WHERE run_id = ?", store, [run.id]
    )
    assert artifacts.to_dicts() == [
        {"path": "ledger/patch.diff", "uri": facts["git"]["diff_uri"], "kind": "patch"}
    ]


def test_seed_records_a_pythonhashseed_recommendation(monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    seeds = ledger.seed(123)
    assert seeds["random"] == seeds["numpy"] == 123
    assert seeds["PYTHONHASHSEED"] is None
    assert seeds["PYTHONHASHSEED_recommended"] == "123"
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    seeds = ledger.seed(5)
    assert seeds["PYTHONHASHSEED"] == "0" and "PYTHONHASHSEED_recommended" not in seeds
    ledger.run._pending_seeds.clear()


def test_csv_data_sets_keep_rows_columns_and_schema(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('a,b,label\n1.5,"x\ny",0\n2.5,z,1\n')
    facts = fingerprint(path)
    assert facts["rows"] == 2 and facts["columns"] == 3
    assert facts["schema"] == {"a": "double", "b": "string", "label": "int64"}
    assert facts["fingerprint"] == "file"
    assert facts["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_log_dataset_records_every_field(tmp_path):
    import pyarrow as pa

    path = tmp_path / "train.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    store = str(tmp_path / "store")
    with ledger.start_run("p", store=store) as run:
        run.log_dataset("train", str(path), context="training")
        run.log_dataset("frame", pa.table({"x": [1, 2, 3]}), source="s3://bucket/x.parquet")
    rows = {
        row["name"]: row
        for row in ledger.query(
            "SELECT * FROM datasets WHERE run_id = ?", store, [run.id]
        ).to_dicts()
    }
    assert rows["train"]["source"] == str(path)
    assert rows["train"]["rows"] == 2 and rows["train"]["columns"] == 2
    assert json.loads(rows["train"]["schema"]) == {"a": "int64", "b": "int64"}
    assert rows["train"]["fingerprint"] == "file" and rows["train"]["context"] == "training"
    assert rows["frame"]["source"] == "s3://bucket/x.parquet"
    assert rows["frame"]["fingerprint"] == "arrow" and rows["frame"]["rows"] == 3


def test_secret_command_line_options_are_masked_but_lookalikes_kept():
    from ledger.capture import mask_argv

    argv = [
        "train.py",
        "--api-key",
        "sk-123",
        "--hf_token=hf_abc",
        "--max-tokens",
        "512",
        "--tokenizer",
        "gpt2",
        "--db-password",
        "pw",
        "--lr=0.1",
        "--data",
        "https://bob:pw@example.com/x.csv",
    ]
    assert mask_argv(argv) == [
        "train.py",
        "--api-key",
        "***",
        "--hf_token=***",
        "--max-tokens",
        "512",
        "--tokenizer",
        "gpt2",
        "--db-password",
        "***",
        "--lr=0.1",
        "--data",
        "https://***@example.com/x.csv",
    ]
