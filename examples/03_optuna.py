"""Example 3: Bayesian optimisation with Optuna (TPE), pruning on intermediate values.

An SGD classifier on scikit-learn's digits data set is trained epoch by epoch; each epoch's
validation accuracy is reported to Optuna, whose median pruner stops unpromising trials
early. ``ledger.optuna.track_study`` gives the study one parent run and each trial a child
run (params, objective ``value``, intermediate values as steps, state, duration), and the
trial's own ``ledger.log_metric`` calls land in its run. Then: which hyperparameters
mattered (``ledger importance``; Optuna's fANOVA with a fixed seed).

    python examples/03_optuna.py --quick
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import optuna
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import ledger
from ledger.optuna import track_study


def main(quick: bool = False, store: str | None = None) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    x_train, x_val, y_train, y_val = train_test_split(x, y, stratify=y, random_state=0)
    classes = np.unique(y)
    epochs = 5 if quick else 20
    study = optuna.create_study(
        study_name="sgd-digits",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    with track_study(
        study, "examples", "optuna-tpe", store=store, tags={"example": "03_optuna"}
    ) as callback:

        @callback.track_in_ledger()
        def objective(trial: optuna.Trial) -> float:
            model = SGDClassifier(
                loss=trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"]),
                alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
                penalty=trial.suggest_categorical("penalty", ["l2", "l1", "elasticnet"]),
                eta0=trial.suggest_float("eta0", 1e-4, 1.0, log=True),
                learning_rate=trial.suggest_categorical("learning_rate", ["constant", "adaptive"]),
                random_state=trial.number,
            )
            accuracy = 0.0
            for epoch in range(epochs):
                model.partial_fit(x_train, y_train, classes=classes)
                accuracy = model.score(x_val, y_val)
                ledger.log_metric("train_accuracy", model.score(x_train, y_train), step=epoch)
                trial.report(accuracy, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return accuracy

        study.optimize(objective, n_trials=15 if quick else 80, callbacks=[callback])
    states = [t.state.name for t in study.trials]
    print(
        f"{len(states)} trials: {states.count('COMPLETE')} complete, "
        f"{states.count('PRUNED')} pruned; best {study.best_value:.3f} with {study.best_params}"
    )
    ledger.flush()
    print_importance(study, callback.study_run.id, store)
    return callback.study_run.id


def print_importance(study: optuna.Study, study_run_id: str, store: str | None) -> None:
    """`ledger importance` on the study's runs, next to Optuna's own on the study (same
    evaluator, same seed): the ledger alone gives the same numbers."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    table = ledger.importance(
        metric="value",
        mode="max",
        children_of=study_run_id,
        evaluator="fanova",
        seed=0,
        store=store,
    )
    own = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    print("hyperparameter importance (fANOVA, seed 0):  ledger  optuna")
    for row in table.iter_rows(named=True):
        mine = row["importance"]
        print(
            f"  {row['param']:<14} {'-' if mine is None else f'{mine:.3f}':>36}"
            f"  {own.get(row['param'], float('nan')):>6.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 trials of 5 epochs")
    parser.add_argument("--store", default=os.environ.get("LEDGER_STORE"))
    args = parser.parse_args()
    main(quick=args.quick, store=args.store)
