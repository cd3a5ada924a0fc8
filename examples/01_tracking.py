"""Example 1: comprehensive tracking of three classifiers on a real data set.

RandomForest, GradientBoosting and LogisticRegression on scikit-learn's breast cancer
data set (569 tumours, 30 features; ships with scikit-learn, no download). Each model is a
child run of one comparison run and logs: the data sets' fingerprints, its params, train /
test / cross-validation metrics, the overfitting gap, a confusion matrix, a classification
report, feature importances, a learning curve, the fitted model, and resource usage.

    python examples/01_tracking.py --quick
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import ledger
from ledger import sklearn as lsk


def models(quick: bool) -> dict[str, object]:
    trees = 30 if quick else 300
    return {
        "random_forest": RandomForestClassifier(n_estimators=trees, max_depth=6, random_state=0),
        "gradient_boosting": GradientBoostingClassifier(
            n_estimators=trees, learning_rate=0.1, max_depth=2, random_state=0
        ),
        "logistic_regression": make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)
        ),
    }


def main(quick: bool = False, store: str | None = None) -> list[str]:
    data = load_breast_cancer(as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, stratify=data.target, random_state=0
    )
    names = list(data.feature_names)
    cv = 3 if quick else 5
    run_ids = []
    with ledger.start_run(
        "examples",
        "model-comparison",
        "breast-cancer",
        store=store,
        tags={"example": "01_tracking", "quick": quick},
    ) as parent:
        ledger.seed(0)
        parent.log_dataset("train", x_train.assign(target=y_train), context="training")
        parent.log_dataset("test", x_test.assign(target=y_test), context="evaluation")
        parent.log_params({"test_size": 0.25, "cv_folds": cv, "n_features": len(names)})
        for label, model in models(quick).items():
            with ledger.start_run(name=label) as run:
                run.log_params({"model": label, **lsk.flatten_params(model)})
                cpu_before = time.process_time()
                started = time.perf_counter()
                model.fit(x_train, y_train)
                fit_s = time.perf_counter() - started
                train_pred, test_pred = model.predict(x_train), model.predict(x_test)
                test_proba = model.predict_proba(x_test)[:, 1]
                cv_scores = cross_val_score(model, x_train, y_train, cv=cv)
                train_acc = accuracy_score(y_train, train_pred)
                test_acc = accuracy_score(y_test, test_pred)
                run.log_metrics(
                    {
                        "train_accuracy": train_acc,
                        "test_accuracy": test_acc,
                        "test_f1": f1_score(y_test, test_pred),
                        "test_roc_auc": roc_auc_score(y_test, test_proba),
                        "cv_accuracy_mean": cv_scores.mean(),
                        "cv_accuracy_std": cv_scores.std(),
                        "overfit_gap": train_acc - test_acc,
                        "fit_time_s": fit_s,
                    }
                )
                for fold, score in enumerate(cv_scores):
                    run.log_metric("cv_accuracy", score, step=fold)
                lsk.log_confusion_matrix(y_test, test_pred, labels=[0, 1])
                lsk.log_classification_report(
                    y_test, test_pred, target_names=list(data.target_names), prefix="test_"
                )
                lsk.log_feature_importances(model, names, top=15)
                lsk.log_learning_curve(
                    model,
                    x_train,
                    y_train,
                    cv=cv,
                    train_sizes=(0.2, 0.6, 1.0) if quick else (0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
                )
                lsk.log_model(model)
                usage = resource.getrusage(resource.RUSAGE_SELF)
                run.log_metrics(
                    {
                        "cpu_time_s": time.process_time() - cpu_before,
                        "peak_rss_mb": usage.ru_maxrss / 1024,
                    }
                )
                run_ids.append(run.id)
                print(
                    f"{label:<20} test_acc={test_acc:.3f} cv={cv_scores.mean():.3f}"
                    f"±{cv_scores.std():.3f} gap={train_acc - test_acc:+.3f} fit={fit_s:.2f}s"
                )
    ledger.flush()
    return run_ids


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, seconds not minutes")
    parser.add_argument("--store", default=os.environ.get("LEDGER_STORE"))
    args = parser.parse_args()
    main(quick=args.quick, store=args.store)
