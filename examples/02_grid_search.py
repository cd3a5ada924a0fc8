"""Example 2: a grid search as nested runs.

A scaled SVM on scikit-learn's wine data set, tuned over C, gamma and the kernel with
5-fold cross-validation and two scorers. ``ledger.sklearn.log_search`` turns the fitted
search into one parent run (best params, best score, refit time, cv) with one child run
per candidate (its params, mean/std test score per scorer, per-fold scores, fit and score
times, rank), so the sweep can be ranked, filtered and compared with SQL.

    python examples/02_grid_search.py --quick
"""

from __future__ import annotations

import argparse
import os

from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import ledger
from ledger import sklearn as lsk


def main(quick: bool = False, store: str | None = None) -> str:
    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, stratify=y, random_state=0)
    grid = {
        "svc__C": [0.1, 1.0, 10.0] if quick else [0.01, 0.1, 1.0, 10.0, 100.0],
        "svc__gamma": ["scale", 0.01] if quick else ["scale", 0.001, 0.01, 0.1],
        "svc__kernel": ["rbf", "linear"],
    }
    search = GridSearchCV(
        Pipeline([("scale", StandardScaler()), ("svc", SVC())]),
        grid,
        cv=3 if quick else 5,
        scoring={"accuracy": "accuracy", "f1_macro": "f1_macro"},
        refit="accuracy",
        return_train_score=True,
    )
    with ledger.start_run(
        "examples", "grid-search", "svc-wine", store=store, tags={"example": "02_grid_search"}
    ) as run:
        search.fit(x_train, y_train)
        lsk.log_search(search, run=run, log_model=True)
        test_pred = search.predict(x_test)
        lsk.log_classification_report(y_test, test_pred, prefix="test_")
        lsk.log_confusion_matrix(y_test, test_pred)
    ledger.flush()
    top = ledger.query(
        "SELECT r.name, p.params, m.value AS mean_test_accuracy FROM runs r "
        "JOIN (SELECT run_id, string_agg(key || '=' || value, ' ' ORDER BY key) AS params "
        "      FROM params GROUP BY run_id) p USING (run_id) "
        "JOIN latest_metrics m ON m.run_id = r.run_id AND m.key = 'mean_test_accuracy' "
        "WHERE r.parent_run_id = ? ORDER BY m.value DESC, r.name LIMIT 5",
        store=store,
        params=[run.id],
    )
    print(f"{len(search.cv_results_['params'])} candidates; best {search.best_params_}")
    print(f"best cv accuracy {search.best_score_:.3f}; top 5 child runs:")
    for name, params, score in top.rows():
        print(f"  {name:<13} {score:.3f}  {params}")
    return run.id


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid, 3 folds")
    parser.add_argument("--store", default=os.environ.get("LEDGER_STORE"))
    args = parser.parse_args()
    main(quick=args.quick, store=args.store)
