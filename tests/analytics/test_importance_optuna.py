from __future__ import annotations

import json
import math

import pytest

optuna = pytest.importorskip("optuna")

from ledger.analytics.importance import DISTRIBUTIONS_TAG, importance  # noqa: E402

import ledger  # noqa: E402
from ledger.errors import AnalysisError, InvalidValueError  # noqa: E402


def _objective(trial):
    x = trial.suggest_float("x", -4.0, 4.0)
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    layers = trial.suggest_int("layers", 1, 6)
    opt = trial.suggest_categorical("optimizer", ["adam", "sgd", "lion"])
    if trial.number in (7, 19):
        raise optuna.TrialPruned()
    penalty = {"adam": 0.0, "sgd": 0.7, "lion": 0.3}[opt]
    return (x - 1.0) ** 2 + 0.3 * abs(math.log10(lr) + 2) + 0.05 * layers + penalty


@pytest.fixture(scope="module")
def study_store(tmp_path_factory):
    """A real Optuna study whose trials are logged as child runs of one sweep run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = str(tmp_path_factory.mktemp("optuna") / "store")
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=3))
    study.optimize(_objective, n_trials=40)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_CAPTURE", "0")
        with ledger.start_run("opt", "study", "sweep", store=store) as parent:
            for trial in study.trials:
                distributions = {
                    name: optuna.distributions.distribution_to_json(d)
                    for name, d in trial.distributions.items()
                }
                with ledger.start_run(
                    "opt",
                    "study",
                    f"trial-{trial.number}",
                    params=trial.params,
                    tags={DISTRIBUTIONS_TAG: json.dumps(distributions)},
                    parent=parent.id,
                    store=store,
                ) as run:
                    if trial.value is not None:
                        run.log_metric("objective", trial.value, step=0)
                    else:
                        run.end("killed")
        ledger.flush()
    return store, study


@pytest.mark.parametrize(
    ("evaluator", "make"),
    [
        ("ped-anova", lambda seed: optuna.importance.PedAnovaImportanceEvaluator()),
        ("fanova", lambda seed: optuna.importance.FanovaImportanceEvaluator(seed=seed)),
        ("mdi", lambda seed: optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)),
    ],
)
def test_equals_optunas_own_importances(study_store, evaluator, make):
    store, study = study_store
    expected = optuna.importance.get_param_importances(study, evaluator=make(5))
    frame = importance(
        store, metric="objective", mode="min", children_of="sweep", evaluator=evaluator, seed=5
    )
    got = dict(zip(frame["param"].to_list(), frame["importance"].to_list(), strict=True))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert list(got) == list(expected)  # same order: most important first
    assert frame["evaluator"].unique().to_list() == [evaluator]
    assert frame["seed"].to_list()[0] == (None if evaluator == "ped-anova" else 5)
    assert frame["runs_used"][0] == 38
    assert frame["runs_skipped"][0] == 2  # the pruned trials never logged the metric


def test_seed_changes_fanova_and_is_reproducible(study_store):
    store, _ = study_store
    one = importance(
        store, metric="objective", mode="min", children_of="sweep", evaluator="fanova", seed=1
    )
    again = importance(
        store, metric="objective", mode="min", children_of="sweep", evaluator="fanova", seed=1
    )
    assert one.equals(again)


def test_inferred_search_space_spearman_and_eta_by_hand(board):
    frame = importance(
        board.store, metric="val_acc", experiment="sweep", evaluator="fanova", seed=0
    )
    rows = {r["param"]: r for r in frame.iter_rows(named=True)}
    assert set(rows) == {"lr", "model", "depth"}
    assert sum(r["importance"] for r in rows.values()) == pytest.approx(1.0)
    assert rows["lr"]["kind"] == "float"
    assert rows["depth"]["kind"] == "int"
    assert rows["model"]["kind"] == "categorical"
    # best val_acc a .8, b .9, c .85, e .9; lr .1 .01 .001 .2 -> rho = 1/sqrt(22.5)
    assert rows["lr"]["correlation"] == pytest.approx(1 / math.sqrt(22.5))
    assert rows["lr"]["correlation_kind"] == "spearman"
    # resnet {.8, .9}, vit {.9, .85}: eta = sqrt(0.000625 / 0.006875)
    assert rows["model"]["correlation"] == pytest.approx(math.sqrt(0.000625 / 0.006875))
    assert rows["model"]["correlation_kind"] == "eta"
    assert frame["runs_used"][0] == 4
    assert frame["runs_skipped"][0] == 2  # the parent and d have no val_acc


def test_nan_values_are_skipped_and_counted(board):
    frame = importance(board.store, metric="val_acc", agg="last", experiment="sweep")
    assert frame["runs_used"][0] == 3  # b's last value is NaN
    assert frame["runs_skipped"][0] == 3


def test_errors(board):
    with pytest.raises(InvalidValueError, match="Unknown evaluator"):
        importance(board.store, metric="val_acc", evaluator="shap")
    with pytest.raises(AnalysisError, match="at least 2 runs"):
        importance(board.store, metric="val_acc", experiment="other")
