"""The examples (and `make demo`, which runs them) work end to end in quick mode."""

from __future__ import annotations

import importlib.util
import os

import pytest

import ledger

pytest.importorskip("sklearn")
pytest.importorskip("optuna")

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def _demo():
    spec = importlib.util.spec_from_file_location("demo", os.path.join(EXAMPLES, "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_demo_runs_every_example_quickly(store_path, tmp_path, capfd):
    demo = _demo()
    assert [name for name, _ in demo.EXAMPLES] == sorted(
        name for name in os.listdir(EXAMPLES) if name[:2].isdigit()
    )
    demo.run_examples(store_path, quick=True, output_dir=str(tmp_path / "reports"))
    out = capfd.readouterr().out

    counts = dict(
        ledger.query(
            "SELECT experiment, count(*) FROM runs WHERE project = 'examples' GROUP BY ALL",
            store=store_path,
        ).rows()
    )
    assert counts == {
        "model-comparison": 4,  # the comparison + 3 models
        "grid-search": 13,  # the search + 12 candidates
        "optuna-tpe": 16,  # the study + 15 trials
        "parallel-joblib": 5,  # the batch + 4 configs
        "parallel-dask": 5,
    }
    statuses = dict(
        ledger.query(
            "SELECT experiment || ':' || status, count(*) FROM runs GROUP BY ALL",
            store=store_path,
        ).rows()
    )
    assert statuses["parallel-joblib:failed"] == 2 and statuses["parallel-dask:failed"] == 2

    # Example 1: every model run has its metrics and artifacts.
    models = ledger.query(
        "SELECT r.run_id, r.name FROM runs r WHERE experiment = 'model-comparison' "
        "AND parent_run_id IS NOT NULL ORDER BY name",
        store=store_path,
    )
    assert models["name"].to_list() == [
        "gradient_boosting",
        "logistic_regression",
        "random_forest",
    ]
    for run_id in models["run_id"]:
        keys = set(
            ledger.query(
                "SELECT key FROM latest_metrics WHERE run_id = ?",
                store=store_path,
                params=[run_id],
            )["key"]
        )
        assert {
            "train_accuracy",
            "test_accuracy",
            "cv_accuracy_mean",
            "overfit_gap",
            "test_f1_macro",
            "learning_curve_test_score",
            "cpu_time_s",
            "peak_rss_mb",
        } <= keys
        paths = set(
            ledger.query(
                "SELECT path FROM artifacts WHERE run_id = ?", store=store_path, params=[run_id]
            )["path"]
        )
        assert {
            "model/model.joblib",
            "confusion_matrix.png",
            "classification_report.json",
            "feature_importances.png",
            "learning_curve.png",
        } <= paths
    datasets = ledger.query("SELECT name, rows FROM datasets ORDER BY name", store=store_path)
    assert datasets.rows() == [("test", 143), ("train", 426)]

    # Example 3: trials carry the trial number and intermediate values.
    trials = ledger.query(
        "SELECT count(*) FROM tags t JOIN runs r USING (run_id) "
        "WHERE r.experiment = 'optuna-tpe' AND t.key = 'optuna.trial_number'",
        store=store_path,
    ).rows()
    assert trials == [(15,)]
    assert "hyperparameter importance" in out or "ledger importance" in out

    # Example 5: the analysis printed its sections and drew the plot.
    for section in ("Model comparison", "Best run per example", "Leaderboard", "Diff", "Cost"):
        assert section in out
    with open(tmp_path / "reports" / "leaderboard.png", "rb") as handle:
        assert handle.read(4) == b"\x89PNG"
