"""The MLflow-compatible API (`import ledger.mlflow as mlflow`) over the ledger."""

from __future__ import annotations

import math
import multiprocessing
import os
import sys

import pytest
from ledger.adapters import mlflow_compat
from ledger.analytics.engine import query

import ledger.mlflow as mlflow


@pytest.fixture(autouse=True)
def _fresh_shim(monkeypatch):
    monkeypatch.setattr(mlflow_compat, "_tracking", mlflow_compat._Tracking())
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_RUN_ID",
        "LEDGER_PROJECT",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_fluent_logging(store_path, tmp_path):
    mlflow.set_tracking_uri(store_path)
    experiment = mlflow.set_experiment("tutorial")
    assert experiment.name == "tutorial" and experiment.experiment_id.isdigit()
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    with mlflow.start_run(run_name="first", tags={"team": "cv"}) as run:
        assert mlflow.active_run() is run
        assert mlflow.log_param("lr", 0.1) == 0.1
        mlflow.log_params({"model": "rf", "depth": None, "grid": [1, 2]})
        mlflow.log_metric("loss", 0.5)  # MLflow: no step means step 0
        mlflow.log_metric("loss", 0.25, step=3, timestamp=1_700_000_000_000)
        mlflow.log_metrics({"acc": 0.9, "f1": math.nan}, step=2)
        mlflow.set_tags({"stage": "dev", "n": 3})
        mlflow.log_artifact(str(source), "docs")
        mlflow.log_text("report", "reports/summary.txt")
        mlflow.log_dict({"a": 1}, "config.json")
    assert mlflow.active_run() is None
    run_id = run.info.run_id
    got = mlflow.MlflowClient().get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "first"
    assert got.info.experiment_id == experiment.experiment_id
    assert got.data.params == {"lr": "0.1", "model": "rf", "depth": "None", "grid": "[1, 2]"}
    assert got.data.metrics["loss"] == 0.25 and got.data.metrics["acc"] == 0.9
    assert math.isnan(got.data.metrics["f1"])
    tags = got.data.tags
    assert tags["team"] == "cv" and tags["n"] == "3" and tags["mlflow.runName"] == "first"
    assert tags["mlflow.source.type"] == "LOCAL" and "mlflow.user" in tags
    history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(3, 0.25), (0, 0.5)]
    assert history[0].timestamp == 1_700_000_000_000
    paths = query("SELECT path FROM artifacts ORDER BY path", store_path)["path"].to_list()
    assert paths == ["config.json", "docs/notes.txt", "reports/summary.txt"]
    files = mlflow.MlflowClient().list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in files] == [
        ("config.json", False),
        ("docs", True),
        ("reports", True),
    ]
    local = mlflow.MlflowClient().download_artifacts(run_id, "docs", str(tmp_path / "dl"))
    with open(os.path.join(local, "notes.txt")) as handle:
        assert handle.read() == "hello"


def test_nested_runs_and_failures(store_path):
    mlflow.set_tracking_uri(store_path)
    with mlflow.start_run(run_name="parent") as parent:
        with pytest.raises(mlflow.MlflowException, match=r"already active.*nested=True"):
            mlflow.start_run()
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("m", 1)
    assert mlflow.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    with pytest.raises(ZeroDivisionError), mlflow.start_run(run_name="boom"):
        1 / 0  # noqa: B018
    mlflow.start_run(run_name="killed")
    mlflow.end_run("KILLED")
    runs = query("SELECT name, status, parent_run_id FROM runs ORDER BY name", store_path)
    assert runs.rows() == [
        ("boom", "failed", None),
        ("child", "finished", parent.info.run_id),
        ("killed", "killed", None),
        ("parent", "finished", None),
    ]


def test_logging_without_a_run_starts_one(store_path):
    mlflow.set_tracking_uri(store_path)
    mlflow.log_metric("x", 1.0)
    run = mlflow.active_run()
    assert run is not None
    mlflow.end_run()
    assert mlflow.get_run(run.info.run_id).info.experiment_id == "0"


def _make_runs(store_path):
    mlflow.set_tracking_uri(store_path)
    experiment = mlflow.set_experiment("search")
    specs = [
        ("a", "rf", 0.95, "FINISHED", {"env": "prod"}),
        ("b", "rf", 0.85, "FINISHED", {"env": "dev"}),
        ("c", "svm", 0.91, "FAILED", {"env": "prod-eu"}),
        ("d", "knn", 0.70, "FINISHED", {}),
    ]
    for name, model, acc, status, tags in specs:
        mlflow.start_run(run_name=name, tags=tags)
        mlflow.log_param("model", model)
        mlflow.log_metric("acc", acc - 0.5, step=0)
        mlflow.log_metric("acc", acc, step=1)
        mlflow.log_metric("odd key", 1.0)
        mlflow.end_run(status)
    return experiment


@pytest.mark.parametrize(
    ("filter_string", "names"),
    [
        ("", ["a", "b", "c", "d"]),
        ("metrics.acc > 0.9", ["a", "c"]),
        ("metrics.acc > 0.9 and params.model = 'rf'", ["a"]),
        ("metrics.acc >= 0.85 AND metrics.acc <= 0.91", ["b", "c"]),
        ("params.model != 'rf'", ["c", "d"]),
        ("params.model IN ('svm', 'knn')", ["c", "d"]),
        ("tags.env LIKE 'prod%'", ["a", "c"]),
        ("tags.env ILIKE 'PROD%'", ["a", "c"]),
        ("tags.env IS NULL", ["d"]),
        ("attributes.status = 'FAILED'", ["c"]),
        ("attributes.status != 'failed'", ["a", "b", "d"]),
        ('attributes.run_name = "b"', ["b"]),
        ("metrics.`odd key` = 1", ["a", "b", "c", "d"]),
        ("tags.`mlflow.runName` = 'd'", ["d"]),
        ("params.model = 'nope'", []),
    ],
)
def test_search_runs_filter_grammar(store_path, filter_string, names):
    experiment = _make_runs(store_path)
    runs = mlflow.MlflowClient().search_runs([experiment.experiment_id], filter_string)
    assert sorted(r.info.run_name for r in runs) == names


def test_search_runs_order_and_frame(store_path):
    experiment = _make_runs(store_path)
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["metrics.acc DESC"], max_results=3
    )
    assert [r.info.run_name for r in runs] == ["a", "c", "b"]
    runs = client.search_runs(experiment.experiment_id, order_by=["params.model", "metrics.acc"])
    assert [r.info.run_name for r in runs] == ["d", "b", "a", "c"]
    assert runs[0].data.params == {"model": "knn"}
    frame = mlflow.search_runs(filter_string="params.model = 'rf'", order_by=["metrics.acc"])
    assert list(frame.columns[:6]) == [
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
    ]
    assert frame["params.model"].tolist() == ["rf", "rf"]
    assert frame["metrics.acc"].tolist() == [0.85, 0.95]
    assert str(frame["start_time"].dtype).startswith("datetime64")
    assert "tags.env" in frame.columns
    best = frame.loc[frame["metrics.acc"].idxmax()]
    assert best["tags.mlflow.runName"] == "a"
    assert mlflow.search_runs(output_format="list")[0].info.run_name in "abcd"


@pytest.mark.parametrize(
    ("filter_string", "message"),
    [
        ("metrics.acc > 0.9 or params.model = 'rf'", "no OR"),
        ("metric.acc >", "value is missing"),
        ("foo.acc > 1", "Invalid entity 'foo'"),
        ("metrics.acc LIKE 'x'", "not allowed for metrics.acc"),
        ("metrics.acc > 'high'", "needs a number"),
        ("params.model = rf", "expected a value"),
        ("attributes.color = 'red'", "Unknown attribute 'color'"),
        ("metrics.acc > 1 params.x = 'y'", "expected AND"),
        ("metrics.acc ~ 1", "cannot parse"),
    ],
)
def test_search_runs_rejects_what_mlflow_rejects(store_path, filter_string, message):
    _make_runs(store_path)
    with pytest.raises(mlflow.FilterError, match=message):
        mlflow.search_runs(filter_string=filter_string)


def test_deleted_runs_and_client_logging(store_path):
    mlflow.set_tracking_uri(store_path)
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("client")
    assert client.get_experiment_by_name("client").experiment_id == experiment_id
    created = client.create_run(experiment_id, run_name="by-client")
    run_id = created.info.run_id
    client.log_metric(run_id, "loss", 0.3, step=4)
    client.log_param(run_id, "opt", "adam")
    client.set_tag(run_id, "k", "v")
    client.set_terminated(run_id, "FAILED")
    run = client.get_run(run_id)
    assert (run.info.status, run.data.params, run.data.metrics) == (
        "FAILED",
        {"opt": "adam"},
        {"loss": 0.3},
    )
    assert run.data.tags["k"] == "v"
    client.log_param(run_id, "late", 1)  # logging to an ended run by id, like MLflow
    mlflow.log_metric("by_id", 1.5, step=2, run_id=run_id)
    mlflow.log_metrics({"by_id_2": 2.5}, run_id=run_id)
    assert client.get_run(run_id).data.metrics["by_id"] == 1.5
    assert client.get_run(run_id).info.status == "FAILED"
    client.delete_run(run_id)
    assert client.search_runs([experiment_id]) == []
    deleted = client.search_runs([experiment_id], run_view_type=mlflow.ViewType.DELETED_ONLY)
    assert [r.info.lifecycle_stage for r in deleted] == ["deleted"]
    assert query("SELECT status FROM runs", store_path)["status"].to_list() == []  # deleted
    shown = query("SELECT status, deleted FROM runs", store_path, include_deleted=True)
    assert shown.rows() == [("failed", True)]


def test_environment_variables(store_path, monkeypatch, tmp_path):
    other = str(tmp_path / "other")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{other}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    with mlflow.start_run(run_name="env") as run:
        mlflow.log_metric("m", 1)
    assert mlflow.get_tracking_uri() == other
    assert query("SELECT experiment FROM runs", other)["experiment"].to_list() == ["from-env"]
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    with mlflow.start_run() as resumed:
        mlflow.log_metric("m", 2, step=1)
    assert resumed.info.run_id == run.info.run_id
    assert mlflow.get_run(run.info.run_id).data.metrics["m"] == 2
    with pytest.warns(UserWarning, match="logs into a ledger store"):
        mlflow.set_tracking_uri("http://127.0.0.1:5000")
    assert mlflow.get_tracking_uri() != other


def test_sklearn_model_round_trip(store_path):
    pytest.importorskip("sklearn")
    from sklearn.tree import DecisionTreeClassifier

    mlflow.set_tracking_uri(store_path)
    model = DecisionTreeClassifier(random_state=0).fit([[0], [1], [2]], [0, 1, 1])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="tree")
    assert info.model_uri == f"runs:/{info.run_id}/tree"
    loaded = mlflow.sklearn.load_model(info.model_uri)
    assert loaded.predict([[2]]).tolist() == [1]
    paths = query("SELECT path FROM artifacts ORDER BY path", store_path)["path"].to_list()
    assert paths == ["tree/MLmodel", "tree/model.pkl"]


def test_log_input_records_the_dataset(store_path):
    pd = pytest.importorskip("pandas")
    mlflow.set_tracking_uri(store_path)
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, source="data/train.csv", name="train", targets="y")
    assert dataset.digest == "41ae9a2e" or len(dataset.digest) == 8
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    row = query("SELECT name, context, source, rows, columns FROM datasets", store_path).row(0)
    assert row == ("train", "training", "data/train.csv", 3, 2)
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert inputs[0].dataset.digest == dataset.digest
    for text in (
        "datasets.name = 'train'",
        f"datasets.digest = '{dataset.digest}'",
        "datasets.context IN ('training', 'eval')",
    ):
        assert mlflow.search_runs(filter_string=text)["run_id"].tolist() == [run.info.run_id]
    assert mlflow.search_runs(filter_string="datasets.name = 'other'").empty


def test_digest_matches_mlflow():
    pd = pytest.importorskip("pandas")
    real = pytest.importorskip("mlflow.data.pandas_dataset")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "c"]})
    ours = mlflow.data.from_pandas(frame, source="d.csv")
    theirs = real.from_pandas(frame, source="d.csv")
    assert ours.digest == theirs.digest
    assert ours.name == theirs.name and ours.profile == theirs.profile


def _child_run(store_path, queue):
    # A forked worker starts with MLflow's state empty, as with MLflow itself.
    queue.put(mlflow.active_run() is None)
    with mlflow.start_run(run_name="in-child") as run:
        mlflow.log_metric("m", 1.0)
    queue.put(run.info.run_id)


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_forked_worker_starts_its_own_top_level_run(store_path):
    mlflow.set_tracking_uri(store_path)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with mlflow.start_run(run_name="parent"):
        process = context.Process(target=_child_run, args=(store_path, queue))
        process.start()
        empty, child_id = queue.get(timeout=60), queue.get(timeout=60)
        process.join(60)
    assert empty is True and process.exitcode == 0
    row = query(
        "SELECT name, parent_run_id, status FROM runs WHERE run_id = ?", store_path, [child_id]
    ).row(0)
    assert row == ("in-child", None, "finished")


def test_install_serves_libraries_that_import_mlflow(store_path, tmp_path):
    previous = mlflow.install()
    try:
        import mlflow as imported
        import mlflow.sklearn as imported_sklearn
        from mlflow.tracking import MlflowClient

        assert imported is mlflow and imported_sklearn is mlflow.sklearn
        assert MlflowClient is mlflow.MlflowClient
        optuna = pytest.importorskip("optuna")
        sys.modules.pop("optuna_integration.mlflow", None)
        sys.modules.pop("optuna_integration", None)
        integration = pytest.importorskip("optuna_integration.mlflow")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        callback = integration.MLflowCallback(tracking_uri=store_path, metric_name="score")
        study = optuna.create_study(study_name="optuna-study", direction="maximize")
        study.optimize(
            lambda t: -(t.suggest_float("x", -1, 1) ** 2), n_trials=3, callbacks=[callback]
        )
    finally:
        mlflow.uninstall()
        sys.modules.pop("optuna_integration.mlflow", None)
    assert sys.modules.get("mlflow") is previous or "mlflow" not in sys.modules
    runs = query(
        "SELECT r.experiment, count(*) AS n, count(DISTINCT p.run_id) AS with_x FROM runs r "
        "LEFT JOIN params p ON p.run_id = r.run_id AND p.key = 'x' GROUP BY ALL",
        store_path,
    )
    assert runs.rows() == [("optuna-study", 3, 3)]
    scores = query("SELECT count(*) FROM latest_metrics WHERE key = 'score'", store_path)
    assert scores.item() == 3


def test_experiment_id_from_the_environment(store_path, monkeypatch):
    experiment_id = mlflow.set_experiment("by-id").experiment_id
    with mlflow.start_run(run_name="first"):
        pass
    monkeypatch.setattr(mlflow_compat, "_tracking", mlflow_compat._Tracking())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    with mlflow.start_run(run_name="second") as run:
        mlflow.log_param("p", 1)
    assert run.info.experiment_id == experiment_id
    frame = query("SELECT name, experiment FROM runs ORDER BY name", store_path)
    assert frame.rows() == [("first", "by-id"), ("second", "by-id")]
