from __future__ import annotations

import pytest
from ledger.analytics.diff import diff, metric_mode
from ledger.analytics.engine import connect
from ledger.analytics.resolve import resolve_run, resolve_runs

import ledger
from ledger.errors import AmbiguousRunError, InvalidValueError, RunNotFoundError


def _rows(frame) -> dict[tuple[str, str], list]:
    return {(r[0], r[1]): list(r[2:]) for r in frame.iter_rows()}


def test_diff_shows_only_differences(board):
    rows = _rows(diff(board.store, runs=["a", "b"], experiment="sweep"))
    assert rows[("param", "lr")] == ["0.1", "0.01"]
    assert rows[("param", "depth")] == ["2", "4"]
    assert rows[("param", "model")] == ["resnet", "vit"]
    assert rows[("tag", "team")] == ["cv", "nlp"]
    assert rows[("metric", "val_acc.best")] == ["0.8", "0.9"]
    assert ("metric", "val_acc.best_step") not in rows  # both step 1
    assert rows[("metric", "val_acc.last")] == ["0.6", "NaN"]
    assert rows[("metric", "loss.last")] == ["0.2", "0.3333333333333333"]
    assert rows[("metric", "loss.best")] == ["0.2", "0.3333333333333333"]  # loss: lower
    assert rows[("seed", "random")] == ["1", "2"]
    assert rows[("package", "numpy")] == ["2.1.0", "2.2.0"]
    assert ("package", "torch") not in rows  # same version
    assert ("env", "git.commit") not in rows
    assert ("dataset", "train") not in rows  # same file, same fingerprint
    assert ("run", "experiment") not in rows


def test_diff_all_shows_agreements_and_missing_facts(board):
    frame = diff(board.store, runs=["a", "b", "c"], experiment="sweep", all=True)
    assert frame.columns == ["section", "key", "a", "b", "c"]
    rows = _rows(frame)
    assert rows[("env", "git.commit")] == ["abc123", "abc123", None]
    assert rows[("run", "status")] == ["finished", "finished", "failed"]
    assert rows[("run", "message")][2] == "RuntimeError: diverged"
    assert rows[("dataset", "train")][0] == rows[("dataset", "train")][1]
    assert len(rows[("dataset", "train")][0]) >= 64  # sha256 (+ shape when known)
    assert rows[("tag", "team")] == ["cv", "nlp", None]
    assert rows[("metric", "val_acc.best_step")] == ["1", "1", "0"]


def test_diff_by_id_prefix_and_python_api(board):
    a, e = board.ids["a"], board.ids["e"]
    frame = ledger.diff(board.store, runs=[a[:24], e])
    assert frame.columns[2:] == ["a", "e"]
    assert _rows(frame)[("metric", "val_acc.best_step")] == ["1", "0"]


def test_diff_needs_two_distinct_runs(board):
    with pytest.raises(InvalidValueError, match="at least two"):
        diff(board.store, runs=["a"])
    with pytest.raises(InvalidValueError, match="twice"):
        diff(board.store, runs=["a", board.ids["a"]], experiment="sweep")


def test_resolver_rules(board, tmp_path):
    con = connect(board.store)
    try:
        assert resolve_run(con, board.ids["c"]) == board.ids["c"]
        assert resolve_run(con, board.ids["c"][:26]) == board.ids["c"]
        assert resolve_run(con, "x") == board.ids["x"]
        assert resolve_run(con, "other/x") == board.ids["x"]
        assert resolve_runs(con, ["a", "e"], "sweep") == [board.ids["a"], board.ids["e"]]
        with pytest.raises(AmbiguousRunError, match="matches 7 runs"):
            resolve_run(con, board.ids["a"][:4])
        with pytest.raises(RunNotFoundError, match="No run matches 'zz'"):
            resolve_run(con, "zz")
        with pytest.raises(RunNotFoundError, match="in experiment 'other'"):
            resolve_run(con, "a", experiment="other")
    finally:
        con.close()


def test_same_name_in_two_experiments_is_ambiguous_without_experiment(store_path):
    for experiment in ("one", "two"):
        with ledger.start_run("p", experiment, "dup", store=store_path):
            pass
    ledger.flush()
    con = connect(store_path)
    try:
        with pytest.raises(AmbiguousRunError, match="matches 2 runs"):
            resolve_run(con, "dup")
        assert resolve_run(con, "dup", experiment="two") == resolve_run(con, "two/dup")
    finally:
        con.close()


def test_metric_mode_guess():
    assert metric_mode("val_loss") == "min"
    assert metric_mode("eval/error_rate") == "min"
    assert metric_mode("val_acc") == "max"
    assert metric_mode("val_acc", {"val_acc": "min"}) == "min"


def test_resolver_as_of_sees_only_runs_that_existed_then(board):
    # Regression: the resolver queried through plain cursors, which do not carry the
    # connection's as_of variable, so an as_of connection could not resolve anything.
    con = connect(board.store, as_of=board.moments["after_b"])
    try:
        assert resolve_run(con, "a") == board.ids["a"]
        assert resolve_run(con, board.ids["b"][:-2]) == board.ids["b"]
        assert resolve_runs(con, ["a", "b"]) == [board.ids["a"], board.ids["b"]]
        with pytest.raises(RunNotFoundError):
            resolve_run(con, "c")  # started after the moment
        with pytest.raises(RunNotFoundError):
            resolve_run(con, board.ids["c"])
    finally:
        con.close()
