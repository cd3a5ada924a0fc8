from __future__ import annotations

import math

import pytest
from ledger.analytics.leaderboard import leaderboard

import ledger
from ledger.errors import InvalidValueError, QueryError, RunNotFoundError


def _names(frame) -> list[str]:
    return frame["name"].to_list()


def test_ranks_by_best_with_step_of_best_ties_share_rank(board):
    frame = leaderboard(board.store, metric="val_acc", experiment="sweep")
    assert _names(frame) == ["b", "e", "c", "a"]  # d never logged val_acc
    assert frame["rank"].to_list() == [1, 1, 3, 4]
    assert frame["val_acc"].to_list() == [0.9, 0.9, 0.85, 0.8]
    assert frame["step"].to_list() == [1, 0, 0, 1]  # a: 0.8 at steps 1 and 3 -> earliest
    assert frame["status"].to_list() == ["finished", "finished", "failed", "finished"]
    assert frame["n_points"].to_list() == [3, 2, 1, 5]


def test_last_value_nan_ranks_after_numbers(board):
    frame = leaderboard(board.store, metric="val_acc", agg="last", experiment="sweep")
    assert _names(frame) == ["c", "e", "a", "b"]
    assert frame["val_acc"][:3].to_list() == [0.85, 0.7, 0.6]
    assert math.isnan(frame["val_acc"][3])
    assert frame["step"].to_list() == [0, 1, 4, 2]


def test_min_mode_and_explicit_aggs(board):
    best_min = leaderboard(board.store, metric="val_acc", mode="min", experiment="sweep")
    assert _names(best_min) == ["a", "b", "e", "c"]
    assert best_min["val_acc"].to_list() == [0.5, 0.6, 0.7, 0.85]
    by_max = leaderboard(board.store, metric="val_acc", agg="max", mode="min", experiment="sweep")
    assert _names(by_max) == ["a", "c", "b", "e"]  # ascending max: 0.8, 0.85, 0.9, 0.9


def test_where_is_full_sql_over_params_tags_and_run_columns(board):
    frame = leaderboard(
        board.store,
        metric="val_acc",
        experiment="sweep",
        where="params.lr >= 0.05 OR tags.team = 'nlp'",
    )
    assert _names(frame) == ["b", "e", "a"]
    frame = leaderboard(
        board.store, metric="val_acc", where="params.model IN ('vit') AND status = 'failed'"
    )
    assert _names(frame) == ["c"]
    frame = leaderboard(
        board.store, metric="val_acc", where="params.depth BETWEEN 3 AND 8 AND name LIKE '%'"
    )
    assert _names(frame) == ["b", "c"]


@pytest.mark.parametrize(
    "bad",
    [
        "1=1) UNION SELECT * FROM runs --",
        "true) ORDER BY 1 LIMIT 1 --",
        "x; DROP TABLE runs",
        "",
    ],
)
def test_where_that_is_not_one_condition_is_refused(board, bad):
    with pytest.raises(QueryError):
        leaderboard(board.store, metric="val_acc", where=bad)


def test_where_unknown_param_names_the_known_ones(board):
    with pytest.raises(QueryError, match=r"params\.depth, params\.lr, params\.model"):
        leaderboard(board.store, metric="val_acc", where="params.nope > 1")


def test_children_of_by_name_excludes_other_runs(board):
    all_runs = leaderboard(board.store, metric="val_acc")
    assert _names(all_runs)[0] == "x"
    children = leaderboard(board.store, metric="val_acc", children_of="sweep-parent", top=2)
    assert _names(children) == ["b", "e"]


def test_params_columns_and_cost_when_present(board):
    frame = leaderboard(board.store, metric="val_acc", experiment="sweep", params="lr,model")
    assert frame["params.lr"].to_list() == [0.01, 0.2, 0.001, 0.1]
    assert frame["params.model"].to_list() == ["vit", "resnet", "vit", "resnet"]
    assert frame["cost_usd"].to_list() == [None, None, None, 1.5]
    no_cost = leaderboard(board.store, metric="val_acc", experiment="other")
    assert "cost_usd" not in no_cost.columns


def test_group_by_param_gives_best_run_mean_std_count(board):
    frame = leaderboard(board.store, metric="val_acc", experiment="sweep", group_by="param:model")
    assert frame["param:model"].to_list() == ["resnet", "vit"]
    assert frame["rank"].to_list() == [1, 1]
    assert frame["runs"].to_list() == [2, 2]
    assert frame["best_run"].to_list() == ["e", "b"]
    assert frame["mean"].to_list() == pytest.approx([0.85, 0.875])
    assert frame["std"].to_list() == pytest.approx([math.sqrt(0.005), math.sqrt(0.00125)])
    assert frame["cost_usd"].to_list() == [1.5, None]  # summed per group


def test_a_store_without_costs_has_no_cost_column(store_path):
    for i, value in enumerate((0.5, 0.7)):
        with ledger.start_run("p", "e", f"r{i}", params={"model": "m"}, store=store_path) as run:
            run.log_metric("val_acc", value)
    ledger.flush()
    ranked = leaderboard(store_path, metric="val_acc")
    grouped = leaderboard(store_path, metric="val_acc", group_by="param:model")
    assert ranked["name"].to_list() == ["r1", "r0"] and "cost_usd" not in ranked.columns
    assert grouped["runs"].to_list() == [2] and "cost_usd" not in grouped.columns


def test_group_by_tag_and_column(board):
    frame = leaderboard(board.store, metric="val_acc", experiment="sweep", group_by="tag:team")
    assert frame["tag:team"].to_list() == ["cv", "nlp", None]
    assert frame["best_run"].to_list() == ["e", "b", "c"]
    frame = leaderboard(board.store, metric="val_acc", group_by="experiment")
    assert frame["experiment"].to_list() == ["other", "sweep"]


def test_as_of_shows_the_past(board):
    past = leaderboard(board.store, metric="val_acc", as_of=board.moments["after_b"])
    assert _names(past) == ["b", "a"]
    assert past["val_acc"].to_list() == [0.9, 0.8]
    running = leaderboard(board.store, metric="val_acc", as_of=board.moments["c_running"])
    assert dict(zip(_names(running), running["status"].to_list(), strict=True))["c"] == "running"
    iso = board.moments["after_b"].isoformat()
    assert _names(leaderboard(board.store, metric="val_acc", as_of=iso)) == ["b", "a"]


def test_errors_name_the_bad_value(board):
    with pytest.raises(InvalidValueError, match=r"Unknown metric 'acc'\. Known: loss, val_acc"):
        leaderboard(board.store, metric="acc")
    with pytest.raises(InvalidValueError, match="Unknown mode"):
        leaderboard(board.store, metric="val_acc", mode="up")
    with pytest.raises(InvalidValueError, match="--group-by"):
        leaderboard(board.store, metric="val_acc", group_by="model")
    with pytest.raises(RunNotFoundError):
        leaderboard(board.store, metric="val_acc", children_of="no-such-run")


def test_python_api_is_lazy_and_the_same_function(board):
    assert ledger.leaderboard is leaderboard
    assert _names(ledger.leaderboard(board.store, metric="val_acc", top=1)) == ["x"]


def test_empty_store_gives_unknown_metric(empty_store):
    with pytest.raises(InvalidValueError, match=r"Known: \(none\)"):
        leaderboard(empty_store, metric="val_acc")


def test_referenced_keys_limits_the_pivot():
    from ledger.analytics.scope import referenced_keys

    assert referenced_keys("params.lr < 1 OR params.\"odd key\" = 'x'", "params") == [
        "lr",
        "odd key",
    ]
    assert referenced_keys("run_id IN (SELECT run_id FROM params)", "params") is None
    assert referenced_keys("status = 'failed'", "tags") == []


def test_where_on_a_quoted_param_and_a_subquery(board):
    frame = leaderboard(
        board.store,
        metric="val_acc",
        where="run_id IN (SELECT run_id FROM params WHERE key = 'depth' AND value = '4')",
    )
    assert _names(frame) == ["b"]
    frame = leaderboard(board.store, metric="val_acc", where='params."depth" = 8')
    assert _names(frame) == ["c"]


def test_as_of_with_children_of(board):
    past = leaderboard(
        board.store, metric="val_acc", children_of="sweep-parent", as_of=board.moments["after_b"]
    )
    assert _names(past) == ["b", "a"]
