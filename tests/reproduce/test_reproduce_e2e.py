"""End to end: a seeded scikit-learn script in a dirty git repo, run through `ledger run`,
reproduced by the written reproduce.sh in a fresh checkout; --check catches drift.

Everything is real: git, subprocesses, pip installing a wheel at two versions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from repro_helpers import git, make_repo

pytestmark = pytest.mark.slow

SECRET = "wJalrXUtnFEMI-planted-secret-4711"

TRAIN = '''\
"""Seeded scikit-learn training that logs to the ledger."""
import sys

import numpy as np
import pandas as pd
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss

import ledger

data_path, epochs = sys.argv[1], int(sys.argv[2])
with ledger.start_run() as run:
    ledger.seed(7)
    frame = pd.read_csv(data_path)
    run.log_dataset("train", data_path)
    x, y = frame[["a", "b", "c"]].to_numpy(), frame["label"].to_numpy()
    model = SGDClassifier(loss="log_loss", random_state=np.random.randint(1 << 30))
    run.log_params({"epochs": epochs, "alpha": model.alpha})
    for epoch in range(epochs):
        model.partial_fit(x, y, classes=[0, 1])
        run.log_metrics(
            {"acc": accuracy_score(y, model.predict(x)),
             "loss": log_loss(y, model.predict_proba(x))},
            step=epoch,
        )
'''


def _wheel(directory: Path, version: str) -> Path:
    """A real (tiny) wheel of the distribution ``ledger-dummy``."""
    info = f"ledger_dummy-{version}.dist-info"
    files = {
        "ledger_dummy/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: ledger-dummy\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = directory / f"ledger_dummy-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def _pip_install(wheel: Path, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )


def _ledger(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The original run: dirty repo, data file, dummy package 1.0, planted secret."""
    root = tmp_path_factory.mktemp("reproduce")
    repo = make_repo(root / "repo", {"train.py": TRAIN.replace("seed(7)", "seed(3)")})
    (repo / "train.py").write_text(TRAIN)  # the uncommitted change: seed 3 -> 7
    (repo / "notes.py").write_text("# untracked scratch file\n")
    data = root / "data" / "train.csv"
    data.parent.mkdir()
    rows = ["a,b,c,label"]
    for i in range(200):
        a, b, c = ((i * 37) % 17) / 4 - 2, ((i * 11) % 13) / 3 - 2, ((i * 7) % 5) - 2
        rows.append(f"{a},{b},{c},{int(a - 2 * b + 0.5 * c > 0)}")
    data.write_text("\n".join(rows) + "\n")
    wheels = root / "wheels"
    wheels.mkdir()
    wheel_v1, wheel_v2 = _wheel(wheels, "1.0"), _wheel(wheels, "2.0")
    site = root / "site"
    _pip_install(wheel_v1, site)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LEDGER_") and key != "PYTHONHASHSEED"
    }
    env.update(
        {
            "LEDGER_STORE": str(root / "store"),
            "LEDGER_CAPTURE": "1",
            "LEDGER_CAPTURE_ENV": "AWS_*",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(site),
        }
    )
    result = _ledger(
        [
            "run",
            "--project",
            "repro",
            "--experiment",
            "sgd",
            "--",
            sys.executable,
            "train.py",
            str(data),
            "5",
            "--api-key",  # train.py ignores it; the store must never see it
            SECRET,
        ],
        env,
        repo,
    )
    assert result.returncode == 0, result.stderr
    run_id = re.search(r"run ([0-9a-f]{32}) exited with code 0", result.stderr).group(1)
    return {
        "root": root,
        "repo": repo,
        "data": data,
        "site": site,
        "env": env,
        "run_id": run_id,
        "wheel_v1": wheel_v1,
        "wheel_v2": wheel_v2,
        "store": root / "store",
    }


def _query(world, sql: str, params: list) -> list[dict]:
    import ledger

    return ledger.query(sql, str(world["store"]), params).to_dicts()


def test_capture_recorded_everything_reproduction_needs(world):
    facts = json.loads(
        _query(
            world,
            "SELECT environment FROM runs WHERE run_id = ?",
            [world["run_id"]],
        )[0]["environment"]
    )
    repo = world["repo"]
    assert facts["git"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert facts["git"]["changed_files"] == {"train.py": hashlib.sha256(TRAIN.encode()).hexdigest()}
    assert list(facts["git"]["untracked_files"]) == ["notes.py"]
    assert facts["cwd"] == str(repo)
    wheel = world["wheel_v1"]
    pinned = (
        f"ledger-dummy @ file://{wheel}#sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}"
    )
    assert pinned in facts["requirements"]  # PEP 610: installed from a file, pinned by hash
    assert facts["packages"]["ledger-dummy"] == "1.0"
    assert facts["env"]["AWS_DEFAULT_REGION"] == "eu-west-1"  # allow-listed via AWS_*
    assert facts["env"]["OMP_NUM_THREADS"] == "1"
    assert "AWS_SECRET_ACCESS_KEY" not in facts["env"]
    seeds = json.loads(
        _query(world, "SELECT seeds FROM runs WHERE run_id = ?", [world["run_id"]])[0]["seeds"]
    )
    assert seeds["random"] == seeds["numpy"] == 7
    assert seeds["PYTHONHASHSEED_recommended"] == "7"
    artifact = _query(
        world, "SELECT uri FROM artifacts WHERE run_id = ? AND kind = 'patch'", [world["run_id"]]
    )[0]
    stored = (world["store"] / artifact["uri"]).read_bytes()
    assert (
        stored
        == subprocess.run(
            ["git", "diff", "HEAD", "--binary"], cwd=repo, capture_output=True, check=True
        ).stdout
    )


def test_planted_secret_never_reaches_the_store(world):
    store = world["store"]
    found = []
    for path in store.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=str)
        else:
            text = path.read_bytes().decode("utf-8", "replace")
        if SECRET in text or "AWS_SECRET_ACCESS_KEY" in text:
            found.append(str(path))
    assert found == []


def test_reproduce_sh_in_a_fresh_checkout_gives_identical_metrics(world, tmp_path):
    run_id = world["run_id"]
    out = tmp_path / "recipe"
    written = _ledger(["reproduce", run_id, "--write", str(out)], world["env"], world["repo"])
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "environment.json",
        "patch.diff",
        "reproduce.sh",
        "requirements.txt",
    ]
    assert "\nledger-dummy @ file://" in (out / "requirements.txt").read_text()
    readme = (out / "README.md").read_text()
    assert "notes.py" in readme  # untracked: not captured
    assert "recorded as *** (never stored)" in readme
    assert "train.py /" in (out / "reproduce.sh").read_text() and SECRET not in readme
    env = dict(world["env"])
    env["LEDGER_REPRODUCE_PYTHON"] = sys.executable
    env["LEDGER_REPRODUCE_SITE_PACKAGES"] = sysconfig.get_paths()["purelib"]
    fresh = tmp_path / "fresh"
    result = subprocess.run(
        [str(out / "reproduce.sh"), str(fresh)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applying patch.diff" in result.stdout
    assert "reproduced: 2 metrics (10 points)" in result.stdout
    assert (fresh / "train.py").read_text() == TRAIN  # commit + patch = the dirty tree
    children = _query(world, "SELECT run_id FROM runs WHERE parent_run_id = ?", [run_id])
    assert len(children) == 1
    new_id = children[0]["run_id"]
    sql = "SELECT key, step, value FROM metrics WHERE run_id = ? ORDER BY key, step"
    original, reproduced = _query(world, sql, [run_id]), _query(world, sql, [new_id])
    assert len(original) == 10
    assert original == reproduced  # bit-identical, not just within tolerance
    compare = _ledger(["reproduce", run_id, "--compare", new_id], world["env"], world["repo"])
    assert compare.returncode == 0 and compare.stdout.startswith("reproduced: ")


def _check(world) -> tuple[int, list[dict]]:
    result = _ledger(
        ["reproduce", world["run_id"], "--check", "--format", "json"], world["env"], world["repo"]
    )
    assert result.returncode in (0, 4), result.stderr
    return result.returncode, (json.loads(result.stdout) if result.returncode == 4 else [])


def test_check_passes_on_the_unchanged_world(world):
    code, differences = _check(world)
    assert (code, differences) == (0, [])


def test_check_catches_a_changed_data_file(world):
    data = world["data"]
    before = data.read_bytes()
    try:
        data.write_bytes(before + b"0.5,0.5,0.5,1\n")
        code, differences = _check(world)
    finally:
        data.write_bytes(before)
    assert code == 4
    assert [(d["area"], d["item"]) for d in differences] == [("dataset", f"train ({data})")]
    assert differences[0]["recorded"] == hashlib.sha256(before).hexdigest()[:12]


def test_check_catches_a_changed_package_version(world):
    # The same import path, now with ledger-dummy 2.0 installed by pip (a second target:
    # pip --target --upgrade leaves the old .dist-info behind).
    site_v2 = world["root"] / "site-v2"
    _pip_install(world["wheel_v2"], site_v2)
    env = dict(world["env"], PYTHONPATH=str(site_v2))
    code, differences = _check(dict(world, env=env))
    assert code == 4
    assert differences == [
        {"area": "package", "item": "ledger-dummy", "recorded": "1.0", "current": "2.0"}
    ]


def test_check_catches_an_edited_source_file(world):
    train = world["repo"] / "train.py"
    try:
        train.write_text(TRAIN + "# tweak\n")
        code, differences = _check(world)
    finally:
        train.write_text(TRAIN)
    assert code == 4
    assert differences == [
        {
            "area": "code",
            "item": "train.py",
            "recorded": hashlib.sha256(TRAIN.encode()).hexdigest()[:12],
            "current": hashlib.sha256((TRAIN + "# tweak\n").encode()).hexdigest()[:12],
        }
    ]
