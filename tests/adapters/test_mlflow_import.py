"""The MLflow importer against real MLflow stores, checked field by field."""

from __future__ import annotations

import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from ledger.adapters.mlflow_import import DBL_MAX, import_runs
from ledger.analytics.engine import query

from ledger.cli import cli

pytest.importorskip("mlflow")

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


STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def _value(value: float) -> float:
    if value >= DBL_MAX:
        return math.inf
    if value <= -DBL_MAX:
        return -math.inf
    return value


def _key(value: float) -> str:
    return repr(value)


def mlflow_view(uri: str) -> dict[str, dict]:
    """Everything MLflow's own client reads back from ``uri``, per run id."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # reading old mlruns/ folders
    client = MlflowClient(tracking_uri=uri)
    experiments = {
        e.experiment_id: e.name for e in client.search_experiments(view_type=ViewType.ALL)
    }
    found = {}
    for run in client.search_runs(list(experiments), run_view_type=ViewType.ALL):
        info = run.info
        metrics = {
            key: sorted(
                (p.step, p.timestamp, _key(_value(p.value)))
                for p in client.get_metric_history(info.run_id, key)
            )
            for key in run.data.metrics
        }
        artifacts = set()

        def walk(path, run_id=info.run_id, artifacts=artifacts):
            for item in client.list_artifacts(run_id, path):
                if item.is_dir:
                    walk(item.path)
                else:
                    artifacts.add(item.path)

        walk(None)
        models = client.search_logged_models(list(experiments))
        for model in models:
            if model.source_run_id == info.run_id:
                for item in client.list_logged_model_artifacts(model.model_id):
                    artifacts.add(f"{model.name}/{item.path}")
        found[info.run_id] = {
            "experiment": experiments[info.experiment_id],
            "name": info.run_name,
            "status": info.status,
            "start": info.start_time,
            "end": info.end_time,
            "deleted": info.lifecycle_stage == "deleted",
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "metrics": metrics,
            "inputs": sorted(
                (
                    i.dataset.name,
                    i.dataset.digest,
                    {t.key: t.value for t in i.tags}.get("mlflow.data.context"),
                )
                for i in run.inputs.dataset_inputs
            ),
            "artifacts": artifacts,
        }
    return found


def ledger_view(store: str) -> dict[str, dict]:
    """The same fields, read from the ledger's views."""
    runs = query(
        "SELECT r.run_id, r.experiment, r.name, r.status, epoch_ms(r.start_time) AS s, "
        'epoch_ms(r.end_time) AS e, r.parent_run_id, r."user", r.git_commit, r.deleted '
        "FROM runs r",
        store,
        include_deleted=True,  # MLflow's side lists deleted runs too
    )
    found: dict[str, dict] = {}
    for row in runs.iter_rows(named=True):
        found[row["run_id"]] = {
            "experiment": row["experiment"],
            "name": row["name"],
            "status": STATUS.get(row["status"], "RUNNING"),
            "start": row["s"],
            "end": row["e"],
            "deleted": row["deleted"],
            "params": {},
            "tags": {},
            "metrics": {},
            "inputs": [],
            "artifacts": set(),
            "parent": row["parent_run_id"],
            "user": row["user"],
            "git_commit": row["git_commit"],
        }
    for run_id, key, value in query("SELECT run_id, key, value FROM params", store).iter_rows():
        found[run_id]["params"][key] = value
    for run_id, key, value in query("SELECT run_id, key, value FROM tags", store).iter_rows():
        found[run_id]["tags"][key] = value
    for run_id, key, step, stamp, value in query(
        "SELECT run_id, key, step, epoch_ms(ts), value FROM metrics", store
    ).iter_rows():
        found[run_id]["metrics"].setdefault(key, []).append((step, stamp, _key(value)))
    for points in (m for r in found.values() for m in r["metrics"].values()):
        points.sort()
    for run_id, name, digest, context in query(
        "SELECT run_id, name, json_extract_string(schema, '$.mlflow.digest'), context "
        "FROM datasets",
        store,
    ).iter_rows():
        found[run_id]["inputs"].append((name, digest, context))
    for run_id, path in query("SELECT run_id, path FROM artifacts", store).iter_rows():
        found[run_id]["artifacts"].add(path)
    for run in found.values():
        run["inputs"].sort()
    return found


FIELDS = (
    "experiment",
    "name",
    "status",
    "start",
    "end",
    "deleted",
    "params",
    "tags",
    "metrics",
    "inputs",
    "artifacts",
)


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        "sqlite-stdlib",
        "sqlite-parallel",
        "sqlite-indexed",
        "sqlite-strings",
        "sqlite-new-key",
        "sqlite-spans",
        "sqlite-huge-steps",
        "file",
    ],
)
def test_import_matches_what_mlflow_reads(mlflow_stores, store_path, kind, monkeypatch, tmp_path):
    uri = mlflow_stores["sqlite" if kind.startswith("sqlite") else kind]
    if kind == "sqlite-spans":  # runs' rows in rowid spans: the scan reads rowid, no run ids
        from ledger.adapters.mlflow_import import SqlReader

        uri = _contiguous_copy(uri, tmp_path / "spans.db")
        monkeypatch.setattr(SqlReader, "SPAN_POINTS", 0)
        monkeypatch.setattr(SqlReader, "PARALLEL_ROWS", 1)
        found = []
        spans = SqlReader._run_spans
        monkeypatch.setattr(
            SqlReader, "_run_spans", lambda self, top: found.append(spans(self, top)) or found[-1]
        )
    if kind == "sqlite-huge-steps":  # steps whose packed code overflows: string fallback
        from ledger.adapters.mlflow_import import SqlReader

        database = tmp_path / "steps.db"
        shutil.copy(uri[len("sqlite:///") :], database)
        con = sqlite3.connect(database)
        run_id = con.execute("SELECT run_uuid FROM metrics LIMIT 1").fetchone()[0]
        con.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES ('huge', ?, 5, ?, ?, 0)",
            [(1.5, run_id, 2**62), (2.5, run_id, -(2**62)), (3.5, run_id, 2**54 - 1)],
        )
        con.execute(  # what MLflow's client lists a run's metric keys from
            "INSERT INTO latest_metrics (key, value, timestamp, step, run_uuid, is_nan) "
            "VALUES ('huge', 1.5, 5, ?, ?, 0)",
            (2**62, run_id),
        )
        con.commit()
        con.close()
        uri = f"sqlite:///{database}"
        monkeypatch.setattr(SqlReader, "PARALLEL_ROWS", 1)
    if kind == "sqlite-stdlib":  # without the optional ADBC driver: the sqlite3 path
        from ledger.adapters.mlflow_import import SqlReader

        monkeypatch.setattr(SqlReader, "_arrow", lambda self, sql, params: None)
        kind = "sqlite"
    elif kind == "sqlite-parallel":  # rowid-range scans in threads, as for big stores
        from ledger.adapters.mlflow_import import SqlReader

        monkeypatch.setattr(SqlReader, "PARALLEL_ROWS", 1)
        kind = "sqlite"
    elif kind == "sqlite-indexed":  # chunk by chunk through the index, as for huge stores
        from ledger.adapters.mlflow_import import SqlReader

        monkeypatch.setattr(SqlReader, "PREFETCH_ROWS", -1)
        kind = "sqlite"
    elif kind == "sqlite-strings":  # metric keys read as strings, as for many keys
        from ledger.adapters.mlflow_import import SqlReader

        monkeypatch.setattr(SqlReader, "KEY_CODES", 0)
        kind = "sqlite"
    elif kind == "sqlite-new-key":  # a key the coded scan does not know: string fallback
        from ledger.adapters.mlflow_import import SqlReader

        plan = SqlReader._scan_plan

        def missing_a_key(self):  # as if a writer added the key after the keys were read
            found = plan(self)
            return found and (*found[:3], found[3][1:], *found[4:])

        monkeypatch.setattr(SqlReader, "_scan_plan", missing_a_key)
        kind = "sqlite"
    summary = import_runs(uri, store_path, include_deleted=True)
    if kind == "sqlite-spans":
        assert found and found[0] is not None  # the rowid path was taken
    assert summary.errors == []
    expected = mlflow_view(uri)
    got = ledger_view(store_path)
    assert set(got) == set(expected)  # MLflow run ids are the ledger run ids
    for run_id, want in expected.items():
        for name in FIELDS:
            if name == "end" and want["status"] == "RUNNING":
                continue
            assert got[run_id][name] == want[name], (run_id, want["name"], name)
        assert got[run_id]["parent"] == (want["tags"].get("mlflow.parentRunId") or None)
    parent = next(r for r in got.values() if r["name"] == "parent-ü")
    assert parent["git_commit"] == "abc123"
    assert parent["user"]
    loss = [v for _, _, v in parent["metrics"]["loss"]]
    assert {"nan", "inf", "-inf"} <= set(loss)
    assert summary.runs == len(expected)
    assert summary.metric_points == sum(
        len(p) for r in expected.values() for p in r["metrics"].values()
    )
    # Every imported artifact is a real content-addressed copy.
    rows = query("SELECT uri, size, sha256 FROM artifacts", store_path)
    for uri_, size, sha in rows.iter_rows():
        assert uri_.startswith("artifacts/sha256/") and len(sha) == 64
        assert os.path.getsize(os.path.join(store_path, uri_)) == size


def _contiguous_copy(uri: str, database: Path, reverse: bool = True) -> str:
    """A copy of the sqlite store whose metric rows are grouped by run (as when runs log
    one after another), runs in reverse id order so that rowid order is not id order."""
    shutil.copy(uri[len("sqlite:///") :], database)
    con = sqlite3.connect(database)
    order = "run_uuid DESC, rowid" if reverse else "run_uuid, rowid"
    con.execute(f"CREATE TEMP TABLE m AS SELECT * FROM metrics ORDER BY {order}")
    con.execute("DELETE FROM metrics")
    con.execute("INSERT INTO metrics SELECT * FROM m")
    con.commit()
    con.close()
    return f"sqlite:///{database}"


def test_rowid_spans_only_when_runs_do_not_interleave(mlflow_stores, tmp_path, monkeypatch):
    from ledger.adapters.mlflow_import import SqlReader

    monkeypatch.setattr(SqlReader, "SPAN_POINTS", 0)
    uri = _contiguous_copy(mlflow_stores["sqlite"], tmp_path / "spans.db")
    database = uri[len("sqlite:///") :]
    reader = SqlReader(uri)
    try:
        runs, _ = reader.runs([e.experiment_id for e in reader.experiments()], None)
        spans = reader._run_spans(reader._max_rowid())
        assert spans is not None
        first, last, codes = spans
        assert list(first) == sorted(first) and all(last[:-1] < first[1:])
        # every span is one run's: its rows all carry that run's id
        con = sqlite3.connect(database)
        ids = [r.run_id for r in runs]
        for lo, hi, code in zip(first, last, codes[:-1], strict=True):
            owners = {
                row[0]
                for row in con.execute(
                    "SELECT run_uuid FROM metrics WHERE rowid BETWEEN ? AND ?", (int(lo), int(hi))
                )
            }
            assert owners == {ids[code]}
        # one more point of the first run, logged after every other run's: interleaved
        con.execute(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES ('late', 1.0, 1, ?, 0, 0)",
            (ids[int(codes[0])],),
        )
        con.commit()
        con.close()
        assert reader._run_spans(reader._max_rowid()) is None
    finally:
        reader.close()


def test_sqlite_and_file_store_give_the_same_shape(mlflow_stores, tmp_path):
    # Same workflow logged into both kinds of store: apart from ids and times, the
    # imports agree (the file store keeps the repeated point the sqlite store drops, and
    # MLflow 3 re-logs a run's metrics into the file store when a model is logged).
    for kind in ("sqlite", "file"):
        import_runs(mlflow_stores[kind], str(tmp_path / kind), include_deleted=True)
    shapes = {}
    for kind in ("sqlite", "file"):
        shapes[kind] = query(
            "SELECT r.name, p.key, p.value FROM params p JOIN runs r USING (run_id) ORDER BY ALL",
            str(tmp_path / kind),
        ).rows()
    assert shapes["sqlite"] == shapes["file"]


def test_reimport_adds_only_what_is_new(mlflow_stores, store_path, tmp_path):
    database = tmp_path / "copy.db"
    shutil.copy(mlflow_stores["sqlite"][len("sqlite:///") :], database)
    uri = f"sqlite:///{database}"
    first = import_runs(uri, store_path)
    counts = _counts(store_path)
    files = sorted(p.name for p in (tmp_path / "store").rglob("*.parquet"))
    again = import_runs(uri, store_path)
    assert (again.new_runs, again.updated_runs, again.unchanged_runs) == (0, 0, first.runs)
    assert _counts(store_path) == counts
    assert sorted(p.name for p in (tmp_path / "store").rglob("*.parquet")) == files
    # A new run (written the way MLflow's SQL store writes it) arrives later.
    con = sqlite3.connect(database)
    experiment_id, start = con.execute(
        "SELECT experiment_id, max(start_time) FROM runs GROUP BY experiment_id LIMIT 1"
    ).fetchone()
    run_id = uuid.uuid4().hex
    con.execute(
        "INSERT INTO runs (run_uuid, name, source_type, user_id, status, start_time, end_time, "
        "lifecycle_stage, artifact_uri, experiment_id) VALUES (?, 'late', 'LOCAL', 'me', "
        "'FINISHED', ?, ?, 'active', '', ?)",
        (run_id, start + 1, start + 2, experiment_id),
    )
    con.executemany(
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        "VALUES ('loss', ?, ?, ?, ?, 0)",
        [(1.0 / (i + 1), start + i, run_id, i) for i in range(10)],
    )
    con.commit()
    con.close()
    third = import_runs(uri, store_path)
    assert (third.new_runs, third.unchanged_runs) == (1, first.runs)
    after = _counts(store_path)
    assert after["metrics"] == counts["metrics"] + 10
    assert after["runs"] == counts["runs"] + 1
    assert after["params"] == counts["params"]


def _counts(store: str) -> dict[str, int]:
    frame = query(
        "SELECT (SELECT count(*) FROM events_metrics) AS metrics, "
        "(SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM events_params) AS params, "
        "(SELECT count(*) FROM events_tags) AS tags, "
        "(SELECT count(*) FROM events_artifacts) AS artifacts",
        store,
    )
    return frame.to_dicts()[0]


def test_filters_and_modes(mlflow_stores, tmp_path):
    uri = mlflow_stores["sqlite"]
    plain = import_runs(uri, str(tmp_path / "a"))
    assert plain.skipped == 1  # the deleted run
    assert "deleted" not in query("SELECT name FROM runs", str(tmp_path / "a"))["name"].to_list()
    only = import_runs(uri, str(tmp_path / "b"), experiments=["nlp"], artifacts="skip")
    names = sorted(query("SELECT name FROM runs", str(tmp_path / "b"))["name"].to_list())
    assert names == ["kept", "still-running"]
    assert only.artifacts == 0
    future = import_runs(uri, str(tmp_path / "c"), since="2999-01-01")
    assert future.runs == 0
    referenced = import_runs(uri, str(tmp_path / "d"), artifacts="reference")
    assert referenced.artifacts > 0
    rows = query("SELECT path, uri, sha256 FROM artifacts", str(tmp_path / "d"))
    for path, location, sha in rows.iter_rows():
        assert sha is None and os.path.exists(location) and location.endswith(path.split("/")[-1])
    dry = import_runs(uri, str(tmp_path / "e"), dry_run=True)
    assert dry.runs == plain.runs
    assert not (tmp_path / "e" / "events" / "metrics").exists() or not list(
        (tmp_path / "e").rglob("mlflow-*.parquet")
    )


def test_broken_runs_are_reported_and_skipped(mlflow_stores, tmp_path):
    root = tmp_path / "mlruns"
    shutil.copytree(mlflow_stores["file"], root)
    run_dirs = sorted(
        p.parent for p in root.glob("*/*/meta.yaml") if p.parent.name not in ("models",)
    )
    run_dirs = [d for d in run_dirs if any(p.is_file() for p in (d / "metrics").rglob("*"))]
    broken_meta, missing_meta, bad_metric = run_dirs[0], run_dirs[1], run_dirs[2]
    (broken_meta / "meta.yaml").write_text("run_id: [unclosed\n")
    (missing_meta / "meta.yaml").unlink()
    bad = next(p for p in (bad_metric / "metrics").rglob("*") if p.is_file())
    bad.write_text(bad.read_text() + "not a metric line\n")
    summary = import_runs(str(root), str(tmp_path / "store"), include_deleted=True)
    assert len(summary.errors) == 3
    assert any("unreadable" in message for _, message in summary.errors)
    imported = query("SELECT run_id FROM runs", str(tmp_path / "store"), include_deleted=True)
    imported = set(imported["run_id"].to_list())
    assert bad_metric.name not in imported
    assert len(imported) == len(mlflow_view(mlflow_stores["file"])) - 3
    # Params and tags are written early, while metrics are read: a run found broken then
    # leaves none behind.
    for kind in ("params", "tags"):
        owners = query(f"SELECT DISTINCT run_id FROM events_{kind}", str(tmp_path / "store"))
        assert set(owners["run_id"].to_list()) <= imported


def test_cli_import(mlflow_stores, store_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "import",
            "mlflow",
            "--tracking-uri",
            mlflow_stores["sqlite"],
            "--store",
            store_path,
            "--format",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "metric points," in result.output and "runs," in result.output
    result = runner.invoke(
        cli, ["import", "mlflow", "-u", mlflow_stores["sqlite"], "-s", store_path, "-e", "nope"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: Unknown MLflow experiment 'nope'")
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["import", "mlflow", "-u", "/does/not/exist", "-s", store_path])
    assert result.exit_code == 1 and "No MLflow file store" in result.output
    # MLflow's run ids are the ledger's: `ledger diff` takes them as they are.
    con = sqlite3.connect(mlflow_stores["sqlite"][len("sqlite:///") :])
    ids = dict(con.execute("SELECT name, run_uuid FROM runs"))
    con.close()
    result = runner.invoke(
        cli, ["diff", ids["child-0"], ids["child-1"], "-s", store_path, "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    assert "fold" in result.output  # the param that differs


def test_progress_is_reported(mlflow_stores, tmp_path):
    calls: list[tuple[int, int]] = []
    summary = import_runs(
        mlflow_stores["sqlite"],
        str(tmp_path / "store"),
        artifacts="skip",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[0] == (0, summary.runs) and calls[-1] == (summary.runs, summary.runs)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# -- through a real tracking server (REST) ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(mlflow_stores, tmp_path):
    database = tmp_path / "server.db"
    shutil.copy(mlflow_stores["sqlite"][len("sqlite:///") :], database)
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{database}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, MLFLOW_TRACKING_URI=""),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start")
            time.sleep(0.5)
        yield url, f"sqlite:///{database}"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


@pytest.mark.slow
def test_server_import_equals_direct_sql_import(mlflow_server, tmp_path):
    url, database = mlflow_server
    via_rest = import_runs(url, str(tmp_path / "rest"), include_deleted=True)
    via_sql = import_runs(database, str(tmp_path / "sql"), include_deleted=True)
    assert via_rest.errors == [] and via_sql.errors == []
    assert via_rest.runs == via_sql.runs and via_rest.metric_points == via_sql.metric_points
    assert ledger_view(str(tmp_path / "rest")) == ledger_view(str(tmp_path / "sql"))
    sql = "SELECT run_id, key, value, step, ts, writer_id, seq FROM metrics ORDER BY ALL"
    assert query(sql, str(tmp_path / "rest")).equals(query(sql, str(tmp_path / "sql")))
    # Re-importing the same data the other way round replaces, never duplicates.
    again = import_runs(url, str(tmp_path / "sql"), include_deleted=True)
    assert again.new_runs == 0 and again.updated_runs == 0
    assert query(sql, str(tmp_path / "sql")).height == via_sql.metric_points


def test_cli_help_and_readme():
    result = CliRunner().invoke(cli, ["import", "mlflow", "--help"])
    assert result.exit_code == 0
    for option in (
        "--tracking-uri",
        "--experiment",
        "--since",
        "--artifacts",
        "--include-deleted",
        "--dry-run",
        "--project",
    ):
        assert option in result.output
        readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
        assert option in readme.split("## Coming from MLflow")[1]
    assert "ledger import mlflow --tracking-uri sqlite:///mlflow.db" in result.output


# -- any SQLAlchemy URI: MLflow's SQL store in a real PostgreSQL server -------------------

PG_BIN = next(
    (
        os.path.dirname(path)
        for path in (
            shutil.which("initdb"),
            *sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True),
        )
        if path
    ),
    None,
)


def _as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as a normal user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture
def postgres_uri():
    pytest.importorskip("psycopg")
    if PG_BIN is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    folder = tempfile.mkdtemp(prefix="ledger-pg-")
    os.chmod(folder, 0o755)
    data = os.path.join(folder, "data")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = _free_port()
    run = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120)
    subprocess.run(
        _as_server_user([f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust"]), **run
    )
    subprocess.run(
        _as_server_user(
            [
                f"{PG_BIN}/pg_ctl",
                "-D",
                data,
                "-w",
                "-l",
                os.path.join(folder, "log"),
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ]
        ),
        **run,
    )
    try:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                con = psycopg.connect(host="127.0.0.1", port=port, user="postgres", autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        con.execute("CREATE DATABASE mlflow")
        con.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_server_user([f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_store_imports_what_mlflow_reads(postgres_uri, tmp_path):
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    built = subprocess.run(
        [sys.executable, str(HERE / "mlflow_stores.py"), postgres_uri, str(tmp_path / "files")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout.decode(errors="replace")[-3000:]
    store = str(tmp_path / "store")
    summary = import_runs(postgres_uri, store, include_deleted=True)
    assert summary.errors == []
    expected, got = mlflow_view(postgres_uri), ledger_view(store)
    assert set(got) == set(expected)
    for run_id, want in expected.items():
        for name in FIELDS:
            if name == "end" and want["status"] == "RUNNING":
                continue
            assert got[run_id][name] == want[name], (run_id, want["name"], name)
    again = import_runs(postgres_uri, store, include_deleted=True)
    assert (again.new_runs, again.updated_runs) == (0, 0)
