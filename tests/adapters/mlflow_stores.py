"""Builds real MLflow stores with real MLflow (run in a subprocess by the tests).

    python mlflow_stores.py TRACKING_URI ARTIFACT_FOLDER

Several experiments, nested runs, finished/failed/killed/deleted runs, NaN and ±inf,
negative and repeated steps, unicode, long params, artifacts, a dataset input and a
logged sklearn model.
"""

from __future__ import annotations

import math
import os
import sys


def build(uri: str, folder: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    os.makedirs(folder, exist_ok=True)
    note = os.path.join(folder, "notes.txt")
    with open(note, "w", encoding="utf-8") as handle:
        handle.write("héllo wörld\n")
    os.makedirs(os.path.join(folder, "plots"), exist_ok=True)
    with open(os.path.join(folder, "plots", "curve.csv"), "w") as handle:
        handle.write("step,loss\n0,1.0\n1,0.5\n")

    mlflow.set_experiment("vision ✓")
    with mlflow.start_run(run_name="parent-ü", description="the main run"):
        mlflow.log_params({"lr": 0.1, "layers": 3, "long": "x" * 5000, "ratio": "1e-3"})
        mlflow.set_tags({"team": "cv", "mlflow.source.git.commit": "abc123", "emoji": "🚀"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("loss", math.nan, step=5)
        mlflow.log_metric("loss", math.inf, step=6)
        mlflow.log_metric("loss", -math.inf, step=7)
        mlflow.log_metric("offset", -1.5, step=-3)
        mlflow.log_metric("dup", 2.0, step=1, timestamp=1_700_000_000_000)
        mlflow.log_metric("dup", 3.0, step=1, timestamp=1_700_000_000_000)
        mlflow.log_metric("dup", 2.0, step=1, timestamp=1_700_000_000_000)
        mlflow.log_metric("val/acc", 0.75)
        mlflow.log_artifact(note)
        mlflow.log_artifacts(os.path.join(folder, "plots"), "plots")
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
        mlflow.log_input(
            mlflow.data.from_pandas(frame, source="data/train.csv", name="train", targets="y"),
            context="training",
        )
        for index in range(2):
            with mlflow.start_run(run_name=f"child-{index}", nested=True):
                mlflow.log_param("fold", index)
                mlflow.log_metric("acc", 0.5 + index / 10, step=0)
        model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    mlflow.start_run(run_name="failed")
    mlflow.log_metric("loss", 9.0)
    mlflow.end_run("FAILED")
    mlflow.start_run(run_name="killed")
    mlflow.end_run("KILLED")
    mlflow.set_experiment("nlp")
    with mlflow.start_run(run_name="kept"):
        mlflow.log_param("model", "bert")
    with mlflow.start_run(run_name="deleted") as deleted:
        mlflow.log_metric("loss", 1.0)
    client.delete_run(deleted.info.run_id)
    running = client.create_run(
        client.get_experiment_by_name("nlp").experiment_id, run_name="still-running"
    )
    client.log_metric(running.info.run_id, "loss", 0.25, step=2)


if __name__ == "__main__":
    build(sys.argv[1], sys.argv[2])
