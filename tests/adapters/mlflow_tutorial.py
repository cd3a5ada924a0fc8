"""An MLflow tutorial-style workflow, runnable with real MLflow or with the ledger's shim.

    python mlflow_tutorial.py MODULE TRACKING_URI RESULT_JSON

MODULE is ``mlflow`` or ``ledger.mlflow``. A tracker class logs dataset info, params,
train/test/CV metrics, a confusion matrix and a feature importance plot, a classification
report and the model for three classifiers; a GridSearchCV gets one nested child run per
configuration; a joblib-parallel set of runs; an analyzer compares runs with
``search_runs`` and finds the best one.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings

EXPERIMENT = "iris-tutorial"


class ExperimentTracker:
    def __init__(self, mlflow, experiment: str) -> None:
        self.mlflow = mlflow
        mlflow.set_experiment(experiment)

    def log_dataset_info(self, x_train, x_test, y_train, feature_names) -> None:
        import pandas as pd

        mlflow = self.mlflow
        mlflow.log_params(
            {"train_size": len(x_train), "test_size": len(x_test), "n_features": x_train.shape[1]}
        )
        frame = pd.DataFrame(x_train, columns=feature_names)
        frame["target"] = y_train
        dataset = mlflow.data.from_pandas(
            frame, source="sklearn.datasets.load_iris", name="iris-train", targets="target"
        )
        mlflow.log_input(dataset, context="training")

    def train(self, name, model, data) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        from sklearn.metrics import (
            ConfusionMatrixDisplay,
            accuracy_score,
            classification_report,
            f1_score,
        )
        from sklearn.model_selection import cross_val_score

        mlflow = self.mlflow
        x_train, x_test, y_train, y_test, feature_names = data
        with mlflow.start_run(run_name=name):
            mlflow.set_tag("model_type", type(model).__name__)
            mlflow.set_tag("stage", "comparison")
            mlflow.log_params(model.get_params())
            self.log_dataset_info(x_train, x_test, y_train, feature_names)
            model.fit(x_train, y_train)
            predictions = model.predict(x_test)
            mlflow.log_metrics(
                {
                    "train_accuracy": accuracy_score(y_train, model.predict(x_train)),
                    "test_accuracy": accuracy_score(y_test, predictions),
                    "test_f1": f1_score(y_test, predictions, average="macro"),
                }
            )
            scores = cross_val_score(model, x_train, y_train, cv=3)
            for fold, score in enumerate(scores):
                mlflow.log_metric("cv_score", float(score), step=fold)
            mlflow.log_metrics({"cv_mean": float(np.mean(scores)), "cv_std": float(np.std(scores))})
            figure, axis = plt.subplots(figsize=(4, 4))
            ConfusionMatrixDisplay.from_predictions(y_test, predictions, ax=axis)
            mlflow.log_figure(figure, "plots/confusion_matrix.png")
            plt.close(figure)
            importance = getattr(model, "feature_importances_", None)
            if importance is None:
                importance = np.abs(model.coef_).mean(axis=0)
            figure, axis = plt.subplots(figsize=(4, 3))
            axis.barh(feature_names, importance)
            mlflow.log_figure(figure, "plots/feature_importance.png")
            plt.close(figure)
            mlflow.log_text(classification_report(y_test, predictions), "classification_report.txt")
            mlflow.log_dict(
                classification_report(y_test, predictions, output_dict=True),
                "classification_report.json",
            )
            mlflow.sklearn.log_model(
                model,
                name="model",
                pip_requirements=["scikit-learn"],
                skops_trusted_types=["sklearn.tree._tree.Tree"],
            )

    def grid_search(self, data) -> None:
        from sklearn.metrics import accuracy_score
        from sklearn.model_selection import GridSearchCV
        from sklearn.tree import DecisionTreeClassifier

        mlflow = self.mlflow
        x_train, x_test, y_train, y_test, _ = data
        grid = {"max_depth": [2, 3, None], "min_samples_split": [2, 4]}
        with mlflow.start_run(run_name="grid-search"):
            mlflow.set_tag("stage", "tuning")
            search = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3)
            search.fit(x_train, y_train)
            results = search.cv_results_
            for index, params in enumerate(results["params"]):
                with mlflow.start_run(run_name=f"grid-{index}", nested=True):
                    mlflow.log_params(params)
                    mlflow.log_metric("mean_cv_score", float(results["mean_test_score"][index]))
                    mlflow.log_metric("std_cv_score", float(results["std_test_score"][index]))
            mlflow.log_params({f"best_{k}": v for k, v in search.best_params_.items()})
            mlflow.log_metric("best_cv_score", float(search.best_score_))
            test = accuracy_score(y_test, search.best_estimator_.predict(x_test))
            mlflow.log_metric("test_accuracy", test)


def parallel_run(module: str, uri: str, c_value: float) -> float:
    """One joblib task: its own process, its own top-level run (state does not cross)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    mlflow = importlib.import_module(module)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=42)
    with mlflow.start_run(run_name=f"parallel-C{c_value}"):
        mlflow.set_tag("stage", "parallel")
        mlflow.log_param("C", c_value)
        model = LogisticRegression(C=c_value, max_iter=500).fit(x_train, y_train)
        score = float(model.score(x_test, y_test))
        mlflow.log_metric("test_accuracy", score)
    return score


def analyze(mlflow) -> dict:
    frame = mlflow.search_runs(
        experiment_names=[EXPERIMENT],
        filter_string="attributes.status = 'FINISHED' and tags.stage = 'comparison'",
        order_by=["metrics.test_accuracy DESC", "attributes.run_name"],
    )
    columns = [
        "tags.mlflow.runName",
        "metrics.test_accuracy",
        "metrics.cv_mean",
        "params.n_features",
    ]
    comparison = frame[columns].to_dict(orient="records")
    best = frame.iloc[0]
    return {"best": best["tags.mlflow.runName"], "comparison": comparison, "runs": len(frame)}


def main(module: str, uri: str, result_path: str) -> None:
    warnings.filterwarnings("ignore")
    from joblib import Parallel, delayed
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    mlflow = importlib.import_module(module)
    mlflow.set_tracking_uri(uri)
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.3, random_state=42
    )
    data = (x_train, x_test, y_train, y_test, list(iris.feature_names))
    tracker = ExperimentTracker(mlflow, EXPERIMENT)
    for name, model in [
        ("logistic-regression", LogisticRegression(max_iter=500)),
        ("random-forest", RandomForestClassifier(n_estimators=20, random_state=0)),
        ("decision-tree", DecisionTreeClassifier(max_depth=3, random_state=0)),
    ]:
        tracker.train(name, model, data)
    tracker.grid_search(data)
    Parallel(n_jobs=2)(delayed(parallel_run)(module, uri, c) for c in (0.1, 1.0, 10.0))
    with open(result_path, "w") as handle:
        json.dump(analyze(mlflow), handle, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:4])
