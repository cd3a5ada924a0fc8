"""scikit-learn: searches as nested runs, autolog, and the evaluation helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ledger
from ledger.store import open_store

pytest.importorskip("sklearn")
import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from ledger import sklearn as lsk


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return data.data, data.target, list(data.feature_names)


@pytest.fixture(autouse=True)
def _autolog_off():
    yield
    lsk.disable()


def _artifact(store_path, run_id, path):
    uri = ledger.query(
        "SELECT uri FROM artifacts WHERE run_id = ? AND path = ?",
        store=store_path,
        params=[run_id, path],
    )["uri"]
    assert uri.len() == 1, f"no artifact {path}"
    return open_store(store_path).artifact_path(uri[0])


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _children(store_path, parent_id):
    return ledger.query(
        "SELECT run_id, name, status FROM runs WHERE parent_run_id = ? ORDER BY start_time",
        store=store_path,
        params=[parent_id],
    )


def test_grid_search_becomes_parent_and_candidate_runs(store_path, iris):
    x, y, _ = iris
    search = GridSearchCV(
        KNeighborsClassifier(),
        {"n_neighbors": [1, 5, 15], "weights": ["uniform", "distance"]},
        cv=3,
        scoring={"accuracy": "accuracy", "f1": "f1_macro"},
        refit="accuracy",
    ).fit(x, y)
    with ledger.start_run("sk", "grid", store=store_path) as outer:
        parent = lsk.log_search(search)
    ledger.flush()
    assert parent.parent_id == outer.id and parent.name == "GridSearchCV(KNeighborsClassifier)"
    params = dict(
        ledger.query(
            "SELECT key, value FROM params WHERE run_id = ?", store=store_path, params=[parent.id]
        ).rows()
    )
    assert params["best_n_neighbors"] == str(search.best_params_["n_neighbors"])
    assert params["n_candidates"] == "6" and params["n_splits"] == "3"
    assert params["refit"] == "accuracy"
    summary = dict(
        ledger.query(
            "SELECT key, value FROM latest_metrics WHERE run_id = ?",
            store=store_path,
            params=[parent.id],
        ).rows()
    )
    assert summary["best_score"] == pytest.approx(search.best_score_)
    assert summary["refit_time_s"] == pytest.approx(search.refit_time_)

    children = _children(store_path, parent.id)
    assert children.height == 6 and set(children["status"]) == {"finished"}
    results = search.cv_results_
    metrics = ledger.query(
        "SELECT r.name, m.key, m.value FROM latest_metrics m JOIN runs r USING (run_id) "
        "WHERE r.parent_run_id = ?",
        store=store_path,
        params=[parent.id],
    )
    got = {(name, key): value for name, key, value in metrics.rows()}
    for i in range(6):
        for key in ("mean_test_accuracy", "std_test_f1", "rank_test_accuracy", "mean_fit_time"):
            assert got[(f"candidate-{i}", key)] == pytest.approx(float(results[key][i]))
        assert got[(f"candidate-{i}", "split2_test_f1")] == pytest.approx(
            float(results["split2_test_f1"][i])
        )
    typed = ledger.query(
        "SELECT p.key, p.value, p.value_type FROM params p JOIN runs r USING (run_id) "
        "WHERE r.parent_run_id = ? AND r.name = 'candidate-0' ORDER BY p.key",
        store=store_path,
        params=[parent.id],
    ).rows()
    assert typed == [("n_neighbors", "1", "int"), ("weights", "uniform", "str")]


def test_randomized_and_halving_searches(store_path, iris):
    x, y, _ = iris
    randomized = RandomizedSearchCV(
        Ridge(), {"alpha": np.logspace(-3, 2, 20)}, n_iter=5, cv=3, random_state=0
    ).fit(x, y)
    halving = HalvingGridSearchCV(
        RandomForestClassifier(random_state=0),
        {"max_depth": [2, 4, None], "n_estimators": [5, 10]},
        cv=3,
        factor=2,
        random_state=0,
    ).fit(x, y)
    runs = [lsk.log_search(randomized, store=store_path), lsk.log_search(halving)]
    ledger.flush()
    assert _children(store_path, runs[0].id).height == 5
    n_rows = len(halving.cv_results_["params"])
    children = _children(store_path, runs[1].id)
    assert children.height == n_rows
    iters = ledger.query(
        "SELECT m.value FROM latest_metrics m JOIN runs r USING (run_id) "
        "WHERE r.parent_run_id = ? AND m.key = 'iter' ORDER BY r.start_time, r.name",
        store=store_path,
        params=[runs[1].id],
    )["value"].to_list()
    assert sorted(iters) == sorted(float(v) for v in halving.cv_results_["iter"])


def test_log_search_refuses_an_unfitted_search():
    with pytest.raises(ValueError, match="not fitted"):
        lsk.log_search(GridSearchCV(Ridge(), {"alpha": [1.0]}))


def test_autolog_logs_top_level_fits_only_and_changes_nothing(store_path, iris):
    x, y, _ = iris
    baseline = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=200)).fit(x, y)
    forest_baseline = RandomForestClassifier(n_estimators=8, n_jobs=2, random_state=1).fit(x, y)

    lsk.autolog()
    with ledger.start_run("sk", "auto", store=store_path) as outer:
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=200)).fit(x, y)
        forest = RandomForestClassifier(n_estimators=8, n_jobs=2, random_state=1).fit(x, y)
    lsk.disable()
    ledger.flush()
    np.testing.assert_array_equal(pipe.predict_proba(x), baseline.predict_proba(x))
    np.testing.assert_array_equal(forest.predict_proba(x), forest_baseline.predict_proba(x))

    runs = _children(store_path, outer.id)
    assert runs["name"].to_list() == ["Pipeline", "RandomForestClassifier"]
    assert ledger.query("SELECT count(*) FROM runs", store=store_path).rows() == [(3,)]
    pipe_id = runs["run_id"][0]
    params = {
        key: (value, value_type)
        for key, value, value_type in ledger.query(
            "SELECT key, value, value_type FROM params WHERE run_id = ?",
            store=store_path,
            params=[pipe_id],
        ).rows()
    }
    assert params["logisticregression__C"] == ("0.5", "float")
    assert params["logisticregression__max_iter"] == ("200", "int")
    assert params["logisticregression"] == ("LogisticRegression", "str")
    metrics = dict(
        ledger.query(
            "SELECT key, value FROM latest_metrics WHERE run_id = ?",
            store=store_path,
            params=[pipe_id],
        ).rows()
    )
    assert metrics["training_accuracy"] == pytest.approx(pipe.score(x, y))
    assert metrics["training_time_s"] > 0
    model = joblib.load(_artifact(store_path, pipe_id, "model/model.joblib"))
    np.testing.assert_array_equal(model.predict(x), pipe.predict(x))

    # Off again: nothing more is logged and the original methods are back.
    assert not getattr(LogisticRegression.fit, "_ledger_autolog", False)
    LogisticRegression(max_iter=200).fit(x, y)
    ledger.flush()
    assert ledger.query("SELECT count(*) FROM runs", store=store_path).rows() == [(3,)]


def test_autolog_search_gets_candidates_and_new_classes_are_patched(store_path, iris):
    x, y, _ = iris
    lsk.autolog(log_models=False)
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Majority(ClassifierMixin, BaseEstimator):  # defined after autolog()
        def __init__(self, bias=0):
            self.bias = bias

        def fit(self, x, y):
            self.classes_ = np.unique(y)
            self.label_ = np.bincount(y).argmax()
            return self

        def predict(self, x):
            return np.full(len(x), self.label_)

    Majority(bias=2).fit(x, y)
    search = GridSearchCV(Ridge(), {"alpha": [0.1, 1.0, 10.0]}, cv=3).fit(x, y)
    ledger.flush()
    runs = ledger.query(
        "SELECT run_id, name, parent_run_id FROM runs WHERE parent_run_id IS NULL "
        "ORDER BY start_time",
        store=open_store(None),
    )
    assert runs["name"].to_list() == ["Majority", "GridSearchCV"]
    children = _children(None, runs["run_id"][1])
    assert children.height == 3  # the candidates; the 9 + 1 inner fits are not runs
    best = ledger.query(
        "SELECT value FROM latest_metrics WHERE run_id = ? AND key = 'best_score'",
        params=[runs["run_id"][1]],
    ).rows()
    assert best == [(pytest.approx(search.best_score_),)]


def test_helpers_log_tables_metrics_and_pngs(store_path, iris):
    x, y, names = iris
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x[::2], y[::2])
    predicted = model.predict(x[1::2])
    with ledger.start_run("sk", "helpers", store=store_path) as run:
        matrix = lsk.log_confusion_matrix(y[1::2], predicted)
        report = lsk.log_classification_report(y[1::2], predicted, prefix="test_")
        ranked = lsk.log_feature_importances(model, names)
        curve = lsk.log_learning_curve(
            DecisionTreeClassifier(max_depth=3, random_state=0),
            x,
            y,
            cv=3,
            train_sizes=(0.3, 0.6, 1.0),
        )
    ledger.flush()
    from sklearn.metrics import confusion_matrix, f1_score

    assert matrix == confusion_matrix(y[1::2], predicted).tolist()
    stored = json.loads(_read(_artifact(store_path, run.id, "confusion_matrix.json")))
    assert stored["matrix"] == matrix and stored["labels"] == [0, 1, 2]
    for png in ("confusion_matrix.png", "feature_importances.png", "learning_curve.png"):
        with open(_artifact(store_path, run.id, png), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    metrics = dict(
        ledger.query(
            "SELECT key, value FROM latest_metrics WHERE run_id = ?",
            store=store_path,
            params=[run.id],
        ).rows()
    )
    assert metrics["test_f1_macro"] == pytest.approx(f1_score(y[1::2], predicted, average="macro"))
    assert metrics["test_accuracy"] == pytest.approx(report["accuracy"])
    csv = _read(_artifact(store_path, run.id, "feature_importances.csv")).splitlines()
    assert csv[0] == "feature,importance" and len(csv) == 5
    assert [pair[0] for pair in ranked] == [line.split('"')[1] for line in csv[1:]]
    assert ranked[0][1] == pytest.approx(model.feature_importances_.max())
    steps = ledger.query(
        "SELECT step, value FROM metrics WHERE run_id = ? AND key = 'learning_curve_test_score' "
        "ORDER BY step",
        store=store_path,
        params=[run.id],
    ).rows()
    assert [s for s, _ in steps] == curve["train_sizes"]
    assert [v for _, v in steps] == pytest.approx(curve["test_mean"])
    with pytest.raises(ledger.NoActiveRunError):
        lsk.log_confusion_matrix([0, 1], [0, 1])
