"""Tutorial-style MLflow code, run through the shim and through real MLflow: same ledger.

The workflow (tests/adapters/mlflow_tutorial.py) runs twice in subprocesses: once with
``import ledger.mlflow as mlflow`` logging straight into a ledger store, once with real
MLflow into a sqlite store that is then imported. Both ledgers must hold the same runs,
params, metrics, tags, datasets and artifacts, and the analyzer must pick the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ledger.adapters.mlflow_import import import_runs
from ledger.analytics.engine import query

HERE = Path(__file__).parent
# Tags that differ between any two sessions, or that only MLflow computes (git via
# gitpython); the shim's other system tags must match MLflow's exactly.
VOLATILE_TAGS = {
    "mlflow.parentRunId",
    "mlflow.source.git.commit",
    "mlflow.source.git.branch",
    "mlflow.source.git.repoURL",
}


def _run_workflow(module: str, uri: str, folder: Path) -> subprocess.Popen:
    folder.mkdir()
    env = dict(os.environ, PYTHONPATH=str(HERE), LEDGER_CAPTURE="0")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "LEDGER_STORE"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, str(HERE / "mlflow_tutorial.py"), module, uri, str(folder / "out.json")],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def snapshot(store: str) -> dict[str, dict]:
    """Per run name: everything the user logged, without ids and times."""
    runs = query(
        "SELECT r.run_id, r.name, r.status, r.experiment, p.name AS parent FROM runs r "
        "LEFT JOIN runs p ON p.run_id = r.parent_run_id",
        store,
    )
    names = {}
    found: dict[str, dict] = {}
    for run_id, name, status, experiment, parent in runs.iter_rows():
        names[run_id] = name
        found[name] = {
            "status": status,
            "experiment": experiment,
            "parent": parent,
            "params": {},
            "metrics": {},
            "tags": {},
            "datasets": [],
            "artifacts": set(),
        }
    for run_id, key, value in query("SELECT run_id, key, value FROM params", store).iter_rows():
        found[names[run_id]]["params"][key] = value
    for run_id, key, step, value in query(
        "SELECT run_id, key, step, value FROM metrics ORDER BY run_id, key, step", store
    ).iter_rows():
        found[names[run_id]]["metrics"].setdefault(key, []).append((step, value))
    for run_id, key, value in query("SELECT run_id, key, value FROM tags", store).iter_rows():
        if key not in VOLATILE_TAGS:
            found[names[run_id]]["tags"][key] = value
    for row in query(
        "SELECT run_id, name, context, rows, columns, "
        "json_extract_string(schema, '$.mlflow.digest') FROM datasets",
        store,
    ).iter_rows():
        found[names[row[0]]]["datasets"].append(row[1:])
    for run_id, path in query("SELECT run_id, path FROM artifacts", store).iter_rows():
        # MLflow 3 saves sklearn models as skops files, the shim as a pickle: compare the
        # model folder, not its file names.
        found[names[run_id]]["artifacts"].add("model/" if path.startswith("model/") else path)
    return found


@pytest.mark.slow
def test_tutorial_workflow_shim_equals_real_mlflow(tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    shim_store = str(tmp_path / "shim" / "store")
    database = tmp_path / "real" / "mlflow.db"
    jobs = {
        "shim": _run_workflow("ledger.mlflow", shim_store, tmp_path / "shim"),
        "real": _run_workflow("mlflow", f"sqlite:///{database}", tmp_path / "real"),
    }
    for name, job in jobs.items():
        output, _ = job.communicate(timeout=400)
        assert job.returncode == 0, (name, output.decode(errors="replace")[-3000:])
    summary = import_runs(f"sqlite:///{database}", str(tmp_path / "imported"))
    assert summary.errors == []
    shim, native = snapshot(shim_store), snapshot(str(tmp_path / "imported"))
    assert sorted(shim) == sorted(native)
    assert len(shim) == 3 + 1 + 6 + 3  # classifiers, grid search + children, parallel
    for name in native:
        for field in native[name]:
            assert shim[name][field] == native[name][field], (name, field)
    assert shim["grid-3"]["parent"] == "grid-search"
    assert shim["parallel-C1.0"]["parent"] is None
    forest = shim["random-forest"]
    assert {
        "plots/confusion_matrix.png",
        "plots/feature_importance.png",
        "classification_report.txt",
        "classification_report.json",
        "model/",
    } <= forest["artifacts"]
    assert [step for step, _ in forest["metrics"]["cv_score"]] == [0, 1, 2]
    results = {n: json.loads((tmp_path / n / "out.json").read_text()) for n in jobs}
    assert results["shim"] == results["real"]
    assert results["shim"]["runs"] == 3
