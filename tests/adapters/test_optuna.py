"""Optuna: a study becomes one parent run and one child run per trial, exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import ledger

optuna = pytest.importorskip("optuna")
from ledger.optuna import LedgerCallback, study_run_id, track_study, trial_run_id  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial):
    x = trial.suggest_float("x", -5.0, 5.0)
    layers = trial.suggest_int("layers", 1, 4)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    if kind == "b" and layers == 4 and x > 0:
        raise RuntimeError("boom")
    for step in range(3):
        trial.report(x**2 + step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("note", f"layers={layers}")
    return x**2 + layers + (kind == "b")


def _trial_rows(store):
    return ledger.query(
        "SELECT r.run_id, r.name, r.status, r.parent_run_id, r.message, r.duration_s, "
        "t.value AS number FROM runs r JOIN tags t ON t.run_id = r.run_id "
        "AND t.key = 'optuna.trial_number' ORDER BY CAST(t.value AS INT)",
        store=store,
    )


def test_study_and_trials_land_with_params_values_states(store_path):
    study = optuna.create_study(
        study_name="s1",
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
    study.set_user_attr("dataset", "synthetic")
    callback = LedgerCallback(project="tune", store=store_path)
    study.optimize(_objective, n_trials=25, callbacks=[callback], catch=(RuntimeError,))
    ledger.flush()

    parent = ledger.query(
        "SELECT run_id, name, experiment, project, parent_run_id FROM runs WHERE name = 's1'",
        store=store_path,
    ).rows()
    assert parent == [(callback.study_run.id, "s1", "s1", "tune", None)]
    params = dict(
        ledger.query(
            "SELECT key, value FROM params WHERE run_id = ?",
            store=store_path,
            params=[callback.study_run.id],
        ).rows()
    )
    assert params["sampler"] == "TPESampler" and params["pruner"] == "MedianPruner"
    assert params["direction"] == "minimize" and params["storage"] == "InMemoryStorage"
    study_tags = dict(
        ledger.query(
            "SELECT key, value FROM tags WHERE run_id = ?",
            store=store_path,
            params=[callback.study_run.id],
        ).rows()
    )
    assert study_tags["optuna.study_user_attr.dataset"] == "synthetic"

    rows = _trial_rows(store_path)
    trials = study.get_trials(deepcopy=False)
    assert rows.height == len(trials) == 25
    assert rows["parent_run_id"].unique().to_list() == [callback.study_run.id]
    assert [int(n) for n in rows["number"]] == list(range(25))
    states = {t.state.name for t in trials}
    assert {"COMPLETE", "PRUNED", "FAIL"} <= states  # the study exercised every path

    con = ledger.connect(store_path)
    for trial, row in zip(trials, rows.iter_rows(named=True), strict=True):
        assert row["run_id"] == trial_run_id(callback.study_run.id, trial.number)
        assert row["name"] == f"trial-{trial.number}"
        expected_status = {"COMPLETE": "finished", "PRUNED": "killed", "FAIL": "failed"}
        assert row["status"] == expected_status[trial.state.name]
        assert row["duration_s"] == pytest.approx(trial.duration.total_seconds(), abs=2e-6)
        got = dict(
            con.sql(
                "SELECT key, value_type FROM params WHERE run_id = ?", params=[row["run_id"]]
            ).fetchall()
        )
        assert got == {
            name: {float: "float", int: "int", str: "str"}[type(v)]
            for name, v in trial.params.items()
        }
        metrics = con.sql(
            "SELECT key, value, step FROM metrics WHERE run_id = ? ORDER BY key, step",
            params=[row["run_id"]],
        ).fetchall()
        expected = [
            ("intermediate_value", v, s) for s, v in sorted(trial.intermediate_values.items())
        ]
        if trial.state.name == "COMPLETE":
            expected.append(("value", trial.value, 0))
        assert metrics == expected
        tags = dict(
            con.sql(
                "SELECT key, value FROM tags WHERE run_id = ?", params=[row["run_id"]]
            ).fetchall()
        )
        assert tags["optuna.state"] == trial.state.name
        assert set(json.loads(tags["optuna.distributions"])) == set(trial.distributions)
        if trial.state.name == "COMPLETE":
            assert tags["optuna.user_attr.note"] == trial.user_attrs["note"]
        if trial.state.name == "PRUNED":
            assert row["message"] == f"pruned at step {trial.last_step}"
    best = con.sql(
        "SELECT value FROM latest_metrics WHERE run_id = ? AND key = 'best_value'",
        params=[callback.study_run.id],
    ).fetchall()
    assert best == [(study.best_value,)]
    con.close()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_multi_objective_keeps_every_objective(store_path):
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.set_metric_names(["loss", "accuracy"])

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        return x, 1 - x**2

    study.optimize(objective, n_trials=6, callbacks=[LedgerCallback(store=store_path)])
    ledger.flush()
    got = ledger.query(
        "SELECT CAST(t.value AS INT) AS n, m.key, m.value FROM metrics m "
        "JOIN tags t ON t.run_id = m.run_id AND t.key = 'optuna.trial_number' "
        "ORDER BY n, m.key",
        store=store_path,
    ).rows()
    expected = sorted(
        (t.number, key, v)
        for t in study.trials
        for key, v in zip(["loss", "accuracy"], t.values, strict=True)
    )
    assert sorted(got) == expected

    unnamed = optuna.create_study(study_name="mo2", directions=["minimize", "minimize"])
    unnamed.optimize(
        lambda t: (t.suggest_float("x", 0, 1), 1.0),
        n_trials=2,
        callbacks=[LedgerCallback(store=store_path)],
    )
    ledger.flush()
    keys = ledger.query(
        "SELECT DISTINCT m.key FROM metrics m JOIN runs r USING (run_id) "
        "WHERE r.experiment = 'mo2' ORDER BY 1",
        store=store_path,
    )["key"].to_list()
    assert keys == ["value_0", "value_1"]


def test_threads_log_every_trial_exactly_once(store_path):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    callback = LedgerCallback(store=store_path)
    study.optimize(
        lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=60, n_jobs=4, callbacks=[callback]
    )
    ledger.flush()
    rows = _trial_rows(store_path)
    assert sorted(int(n) for n in rows["number"]) == list(range(60))
    assert rows["run_id"].n_unique() == 60
    values = ledger.query(
        "SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM metrics WHERE key = 'value'",
        store=store_path,
    ).rows()
    assert values == [(60, 60)]


_WORKER = textwrap.dedent(
    """
    import sys, optuna, ledger
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ledger.optuna import LedgerCallback
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = sys.argv[1]
    rdb = target.startswith("sqlite:")
    storage = target if rdb else JournalStorage(JournalFileBackend(target))
    study = optuna.load_study(study_name="shared", storage=storage)
    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        for step in range(2):
            trial.report(x + step, step)
        return x * x
    study.optimize(objective, n_trials=int(sys.argv[2]), n_jobs=1 if rdb else 2,
                   callbacks=[LedgerCallback(project="shared")])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "rdb"])
def test_processes_sharing_a_storage_log_each_trial_once(tmp_path, store_path, backend):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if backend == "rdb":
        location = f"sqlite:///{tmp_path / 'optuna.db'}"
        storage = location
    else:
        location = str(tmp_path / "journal.log")
        storage = JournalStorage(JournalFileBackend(location))
    study = optuna.create_study(study_name="shared", storage=storage)
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "LEDGER_STORE": store_path}
    workers = [
        subprocess.Popen([sys.executable, str(script), location, "12"], env=env) for _ in range(3)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]

    parent_id = study_run_id(study)
    runs = ledger.query(
        "SELECT run_id, parent_run_id, status FROM runs ORDER BY start_time", store=store_path
    )
    assert runs.filter(runs["run_id"] == parent_id).height == 1
    rows = _trial_rows(store_path)
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 36
    assert sorted(int(n) for n in rows["number"]) == list(range(36))
    assert rows["parent_run_id"].unique().to_list() == [parent_id]
    assert runs.height == 37
    points = ledger.query(
        "SELECT key, count(*) AS n FROM metrics GROUP BY key ORDER BY key", store=store_path
    ).rows()
    value_points = dict(points)
    assert value_points["intermediate_value"] == 72 and value_points["value"] == 36


def test_track_study_logs_an_existing_study_once(store_path, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="done", storage=storage)
    study.optimize(lambda t: t.suggest_int("n", 0, 9) * 1.0, n_trials=8)

    callback = track_study(study, store=store_path)
    callback.end()
    again = track_study(optuna.load_study(study_name="done", storage=storage), store=store_path)
    again.end()
    ledger.flush()
    assert again.study_run.id == callback.study_run.id  # same storage + name: same run
    counts = ledger.query(
        "SELECT (SELECT count(*) FROM runs) AS runs, "
        "(SELECT count(*) FROM metrics WHERE key = 'value') AS points",
        store=store_path,
    ).rows()
    assert counts == [(9, 8)]
    values = ledger.query(
        "SELECT p.value AS n, m.value FROM params p JOIN metrics m USING (run_id) "
        "WHERE p.key = 'n' ORDER BY m.value",
        store=store_path,
    ).rows()
    assert sorted(values, key=lambda r: r[1]) == sorted(
        (str(t.params["n"]), t.value) for t in study.trials
    )


def test_track_in_ledger_makes_the_trial_run_active(store_path):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    with track_study(study, store=store_path) as callback:

        @callback.track_in_ledger()
        def objective(trial):
            x = trial.suggest_float("x", 0, 1)
            for epoch in range(3):
                ledger.log_metric("loss", x / (epoch + 1), step=epoch)
            if trial.number == 3:
                raise ValueError("bad trial")
            return x

        with pytest.raises(ValueError, match="bad trial"):
            study.optimize(objective, n_trials=10, callbacks=[callback])
        assert ledger.active_run() is None
    ledger.flush()
    rows = _trial_rows(store_path)
    assert [int(n) for n in rows["number"]] == [0, 1, 2, 3]
    assert rows["status"].to_list() == ["finished"] * 3 + ["failed"]
    assert rows["message"][3] == "ValueError: bad trial"
    losses = ledger.query(
        "SELECT count(*) FROM metrics WHERE key = 'loss'", store=store_path
    ).rows()
    assert losses == [(12,)]
    parent = ledger.query(
        "SELECT status FROM runs WHERE run_id = ?", store=store_path, params=[callback.study_run.id]
    ).rows()
    assert parent == [("finished",)]  # the error was handled inside the block


def test_misuse_raises_typed_errors(store_path):
    study = optuna.create_study(directions=["minimize", "minimize"])
    callback = LedgerCallback(metric_names=["only-one"], store=store_path)
    with pytest.raises(ledger.AdapterError, match="2 objective"):
        study.optimize(
            lambda t: (t.suggest_float("x", 0, 1), 0.0), n_trials=1, callbacks=[callback]
        )
    other = optuna.create_study(study_name="other")
    callback = LedgerCallback(store=store_path)
    optuna.create_study(study_name="first").optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=1, callbacks=[callback]
    )
    with pytest.raises(ledger.AdapterError, match="one callback per study"):
        other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1, callbacks=[callback])


def _trials_from_ledger(store, study_run):
    """Rebuild a study's complete trials from the ledger alone (what `ledger importance`
    does): params with their types, the search space from `optuna.distributions`, `value`."""
    from optuna.distributions import json_to_distribution

    rows = ledger.query(
        "SELECT r.run_id, CAST(n.value AS INT) AS number, d.value AS distributions, m.value "
        "FROM runs r JOIN tags n ON n.run_id = r.run_id AND n.key = 'optuna.trial_number' "
        "JOIN tags d ON d.run_id = r.run_id AND d.key = 'optuna.distributions' "
        "JOIN latest_metrics m ON m.run_id = r.run_id AND m.key = 'value' "
        "WHERE r.parent_run_id = ? AND r.status = 'finished' ORDER BY number",
        store=store,
        params=[study_run],
    )
    params = ledger.query(
        "SELECT p.run_id, p.key, p.value, p.value_type FROM params p JOIN runs r USING (run_id) "
        "WHERE r.parent_run_id = ?",
        store=store,
        params=[study_run],
    )
    cast = {"float": float, "int": int, "str": str, "bool": lambda t: t == "True"}
    by_run: dict = {}
    for run_id, key, value, value_type in params.rows():
        by_run.setdefault(run_id, {})[key] = cast[value_type](value)
    trials = []
    for run_id, _, distributions, value in rows.rows():
        space = {
            name: json_to_distribution(json.dumps(dist))
            for name, dist in json.loads(distributions).items()
        }
        trials.append(
            optuna.trial.create_trial(params=by_run[run_id], distributions=space, value=value)
        )
    return trials


def test_trials_rebuilt_from_the_ledger_give_optunas_own_importance(store_path):
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=7))
    callback = LedgerCallback(store=store_path)

    def objective(trial):
        x = trial.suggest_float("x", -3, 3)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        depth = trial.suggest_int("depth", 1, 8)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        if trial.number % 7 == 6:
            raise optuna.TrialPruned()
        return x**2 + 0.1 * depth + {"a": 0.0, "b": 0.5, "c": 1.0}[kind] + lr

    study.optimize(objective, n_trials=40, callbacks=[callback])
    ledger.flush()
    rebuilt = optuna.create_study()
    rebuilt.add_trials(_trials_from_ledger(store_path, callback.study_run.id))
    assert len(rebuilt.trials) == len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    expected = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    got = get_param_importances(rebuilt, evaluator=FanovaImportanceEvaluator(seed=0))
    assert list(got) == list(expected)
    assert got == pytest.approx(expected, abs=1e-12)

    # `ledger importance` itself (library call and CLI) on the study's runs: Optuna's own
    # numbers, same evaluator and seed, for two evaluators.
    from click.testing import CliRunner
    from ledger.analytics.importance import importance

    from ledger.cli import cli

    for evaluator, make in (
        ("fanova", lambda: FanovaImportanceEvaluator(seed=0)),
        ("ped-anova", lambda: optuna.importance.PedAnovaImportanceEvaluator()),
    ):
        expected = get_param_importances(study, evaluator=make())
        frame = importance(
            store_path,
            metric="value",
            mode="min",
            children_of=callback.study_run.id,
            evaluator=evaluator,
            seed=0,
        )
        assert frame["param"].to_list() == list(expected)
        got = dict(zip(frame["param"].to_list(), frame["importance"].to_list(), strict=True))
        assert got == pytest.approx(expected, abs=1e-9)
        assert set(frame["runs_used"]) == {len(rebuilt.trials)}
    result = CliRunner().invoke(
        cli,
        [
            "importance",
            "--store",
            store_path,
            "-m",
            "value",
            "--mode",
            "min",
            "--children-of",
            callback.study_run.id,
            "--evaluator",
            "fanova",
            "--seed",
            "0",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    expected = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    assert [row["param"] for row in rows] == list(expected)
    assert [row["importance"] for row in rows] == pytest.approx(list(expected.values()), abs=1e-9)


def test_a_trial_the_ledger_refuses_is_a_warning_and_a_note_not_a_dead_study(store_path, caplog):
    """Trials become events at the writer's next flush, in one batch; one that cannot be
    stored (here a user attr whose tag key is over the length limit) must not stop the
    study or the other trials."""
    study = optuna.create_study()

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 2:
            trial.set_user_attr("k" * 300, 1)
        return x

    with track_study(study, store=store_path) as callback:
        study.optimize(objective, n_trials=5, callbacks=[callback])
    ledger.flush()
    assert len(study.trials) == 5
    rows = _trial_rows(store_path)
    assert rows["number"].to_list() == ["0", "1", "3", "4"]
    assert "trial 2 not logged: InvalidKeyError" in caplog.text
    notes = ledger.query(
        "SELECT message FROM events_runs WHERE event = 'note' AND run_id = ?",
        store=store_path,
        params=[callback.study_run.id],
    )["message"].to_list()
    assert any(note.startswith("trial 2 not logged: InvalidKeyError") for note in notes)
    status = ledger.query(
        "SELECT status FROM runs WHERE run_id = ?", store=store_path, params=[callback.study_run.id]
    ).rows()
    assert status == [("finished",)]
