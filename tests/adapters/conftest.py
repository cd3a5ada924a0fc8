"""Real MLflow stores (sqlite and file store), built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _build(folder: Path, uri: str, file_store: bool) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true" if file_store else "false")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, str(HERE / "mlflow_stores.py"), uri, str(folder / "files")],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="session")
def mlflow_stores(tmp_path_factory) -> dict[str, str]:
    """{'sqlite': 'sqlite:///.../mlflow.db', 'file': '.../mlruns'} built by real MLflow."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow-stores")
    sql_dir, file_dir = root / "sql", root / "file"
    stores = {
        "sqlite": f"sqlite:///{sql_dir / 'mlflow.db'}",
        "file": str(file_dir / "mlruns"),
    }
    jobs = [
        _build(sql_dir, stores["sqlite"], False),
        _build(file_dir, f"file://{file_dir / 'mlruns'}", True),
    ]
    for job in jobs:
        output, _ = job.communicate(timeout=300)
        if job.returncode != 0:
            raise RuntimeError(output.decode(errors="replace")[-3000:])
    return stores
