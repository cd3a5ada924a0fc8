"""Example 4: parallel experiments with joblib, and the same batch on a Dask cluster.

Model configurations on scikit-learn's breast cancer data set run in parallel
worker processes with ``ledger.parallel.run_experiments``: each config gets its own child
run (the active run inside the worker, so plain ``ledger.log_metric`` works there), a
failing config becomes a failed run without stopping the batch, and results come back in
order. Then the same batch runs on a ``dask.distributed`` cluster (a LocalCluster of
worker processes here; a real cluster only needs to reach the same store).

    python examples/04_parallel.py --quick
"""

from __future__ import annotations

import argparse
import os

import ledger
from ledger.parallel import run_experiments


def train(config: dict) -> dict:
    """Runs in a worker process: fit one model, log to the worker's active run."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    if config["max_depth"] == 0:
        raise ValueError("max_depth must be positive (this config fails on purpose)")
    x, y = load_breast_cancer(return_X_y=True)
    kind = {"forest": RandomForestClassifier, "extra": ExtraTreesClassifier}[config["model"]]
    model = kind(n_estimators=config["n_estimators"], max_depth=config["max_depth"], random_state=0)
    scores = cross_val_score(model, x, y, cv=3)
    for fold, score in enumerate(scores):
        ledger.log_metric("fold_accuracy", score, step=fold)
    return {"cv_accuracy": float(scores.mean()), "cv_accuracy_std": float(scores.std())}


def configs(quick: bool) -> list[dict]:
    depths = [0, 4] if quick else [0, 2, 4, 8, 16]
    trees = [10] if quick else [50, 100, 200]
    return [
        {"model": model, "max_depth": depth, "n_estimators": n}
        for model in ("forest", "extra")
        for depth in depths
        for n in trees
    ]


def report(title: str, results: list) -> None:
    ok = [r for r in results if r.ok]
    best = max(ok, key=lambda r: r.value["cv_accuracy"])
    print(
        f"{title}: {len(ok)} finished, {len(results) - len(ok)} failed "
        f"({results[0].error}); best {best.value['cv_accuracy']:.3f} with {best.config}"
    )


def main(quick: bool = False, store: str | None = None, dask: bool = True) -> list[str]:
    batch = configs(quick)
    parents = []
    with ledger.start_run(
        "examples", "parallel-joblib", "loky-batch", store=store, tags={"example": "04_parallel"}
    ) as run:
        results = run_experiments(batch, train, n_jobs=2, backend="loky")
        parents.append(run.id)
    report("joblib/loky", results)
    if dask:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            print("dask.distributed is not installed: skipping the Dask batch")
            return parents
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster),
            ledger.start_run(
                "examples",
                "parallel-dask",
                "dask-batch",
                store=store,
                tags={"example": "04_parallel", "cluster": "LocalCluster(2 processes)"},
            ) as run,
        ):
            results = run_experiments(batch, train, backend="dask")
            parents.append(run.id)
        report("dask", results)
    ledger.flush()
    return parents


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 small configs")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask batch")
    parser.add_argument("--store", default=os.environ.get("LEDGER_STORE"))
    args = parser.parse_args()
    main(quick=args.quick, store=args.store, dask=not args.no_dask)
