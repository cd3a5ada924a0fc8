"""`ledger import mlflow` into a bucket and `ledger serve` over a bucket (real moto server,
real MLflow store, real HTTP server process on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from click.testing import CliRunner
from ledger.adapters.mlflow_import import import_runs

import ledger
from ledger.cli import cli
from ledger.store import open_store

MLFLOW_STORE = textwrap.dedent(
    """
    import os, sys, warnings
    warnings.filterwarnings("ignore")
    import mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    note = os.path.join(sys.argv[2], "notes.txt")
    with open(note, "w") as handle:
        handle.write("hello bucket\\n")
    mlflow.set_experiment("churn")
    for index in range(3):
        with mlflow.start_run(run_name=f"run-{index}"):
            mlflow.log_params({"lr": 0.1 * (index + 1), "depth": index})
            mlflow.set_tag("team", "growth")
            for step in range(5):
                mlflow.log_metric("auc", 0.5 + 0.01 * step * (index + 1), step=step)
            if index == 0:
                mlflow.log_artifact(note)
    """
)

COUNTS = (
    "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM metrics) AS points, "
    "(SELECT count(*) FROM params) AS params, (SELECT count(*) FROM artifacts) AS artifacts"
)


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory) -> str:
    pytest.importorskip("mlflow")
    folder = tmp_path_factory.mktemp("mlflow")
    # A file store (mlruns/) builds in a fraction of a new sqlite store's time.
    uri = f"file:{folder / 'mlruns'}"
    subprocess.run(
        [sys.executable, "-c", MLFLOW_STORE, uri, str(folder)],
        check=True,
        cwd=folder,
        capture_output=True,
        timeout=180,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"},
    )
    return str(folder / "mlruns")


def test_import_mlflow_into_a_bucket_matches_a_local_import(mlflow_db, s3_store_uri, store_path):
    result = CliRunner().invoke(cli, ["import", "mlflow", "-u", mlflow_db, "-s", s3_store_uri])
    assert result.exit_code == 0, result.output
    import_runs(mlflow_db, store_path)
    remote = ledger.query(COUNTS, store=s3_store_uri).to_dicts()
    assert remote == ledger.query(COUNTS, store=store_path).to_dicts()
    assert remote == [{"runs": 3, "points": 15, "params": 6, "artifacts": 1}]
    best = "SELECT r.name, max(m.value) AS best FROM metrics m JOIN runs r USING (run_id) "
    best += "GROUP BY r.name ORDER BY best DESC"
    assert ledger.query(best, store=s3_store_uri).rows() == ledger.query(best, store_path).rows()
    # The artifact's bytes are in the bucket.
    uri = ledger.query("SELECT uri FROM artifacts", store=s3_store_uri).item()
    store = open_store(s3_store_uri)
    with store.fs.open_input_stream(store.artifact_path(uri)) as handle:
        assert handle.read() == b"hello bucket\n"
    # Importing again adds nothing; the imported store compacts like any other.
    result = CliRunner().invoke(cli, ["import", "mlflow", "-u", mlflow_db, "-s", s3_store_uri])
    assert result.exit_code == 0, result.output
    ledger.compact(s3_store_uri, grace="0s")
    assert ledger.query(COUNTS, store=s3_store_uri).to_dicts() == remote


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_serve_answers_from_a_bucket_across_compaction_and_archive(s3_store_uri, tmp_path):
    for index in range(3):
        with ledger.start_run("vision", "sweep", f"r{index}", store=s3_store_uri) as run:
            for step in range(4):
                run.log_metric("loss", 1.0 / (step + 1 + index), step=step)
                ledger.flush()
    port = _free_port()
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 - read back on failure
    server = subprocess.Popen(
        [sys.executable, "-m", "ledger", "serve", "--store", s3_store_uri, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "LEDGER_LISTING_TTL": "0"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = _get(port, "/api/runs?sort=name&order=asc")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "serve.log").read_text()) from None
                time.sleep(0.2)
        assert isinstance(page, dict) and page["total"] == 3
        assert [row["name"] for row in page["rows"]] == ["r0", "r1", "r2"]
        ids = {row["name"]: row["run_id"] for row in page["rows"]}
        progress = _get(port, f"/api/run/{ids['r1']}/progress")
        assert isinstance(progress, dict) and progress["step"] == 3
        ledger.compact(s3_store_uri, grace="0s")
        ledger.archive(s3_store_uri, older_than="0s", runs=[ids["r0"]], grace="0s")
        page = _get(port, "/api/runs?sort=name&order=asc")
        assert isinstance(page, dict) and [r["name"] for r in page["rows"]] == ["r1", "r2"]
        series = _get(port, f"/api/run/{ids['r2']}/metrics")
        assert isinstance(series, dict) and [point[0] for point in series["loss"]] == [0, 1, 2, 3]
    except Exception:
        print((tmp_path / "serve.log").read_text())
        raise
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
