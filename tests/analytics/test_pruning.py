"""File pruning by run_id statistics: same answers as the plain views, fewer files read,
and never a file the lifecycle commit log hides."""

from __future__ import annotations

import os

import pytest
from ledger.analytics import diff as diff_module
from ledger.analytics import resolve as resolve_module
from ledger.analytics.diff import diff
from ledger.analytics.engine import connect
from ledger.analytics.pruning import files_for_runs, files_matching, pruned_cursor, visible_files
from ledger.analytics.summaries import summaries_sql

import ledger


def _rows(frame) -> list[tuple]:
    return sorted(frame.iter_rows())


@pytest.mark.parametrize("pair", [("a", "b"), ("b", "c", "d"), ("a", "e")])
def test_pruned_diff_equals_the_plain_views(board, monkeypatch, pair):
    pruned = diff(board.store, runs=list(pair), experiment="sweep", all=True)
    # No listing anywhere: the resolver and the facts read the store's own views.
    monkeypatch.setattr(diff_module, "listing", lambda *args, **kwargs: None)
    monkeypatch.setattr(resolve_module, "visible_files", lambda *args: None)
    plain = diff(board.store, runs=list(pair), experiment="sweep", all=True)
    assert pruned.columns == plain.columns
    assert _rows(pruned) == _rows(plain)


def _log(store: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        with ledger.start_run(
            "p", "e", f"r{i}", params={"i": i}, tags={"t": str(i)}, store=store
        ) as run:
            run.log_metrics({"m": float(i), "loss": 1.0 / (i + 1)}, step=0)
            run.log_metric("m", float(i) + 0.5, step=1)
            ids.append(run.id)
        ledger.flush()  # one set of files per run
    return ids


def test_pruning_keeps_only_files_that_can_hold_the_run(store_path):
    ids = _log(store_path, 4)
    con = connect(store_path)
    try:
        for kind in ("params", "metrics", "runs"):
            files = visible_files(con, kind)
            data = [f for f in files if "__schema__" not in f]
            kept = [f for f in files_for_runs(files, [ids[1]]) if "__schema__" not in f]
            assert 1 <= len(kept) < len(data)
        kinds = ("runs", "params", "tags", "metrics")
        with pruned_cursor(con, [ids[1], ids[3]], kinds) as cur:
            assert cur is not None
            for sql in (
                "SELECT * FROM runs WHERE run_id IN ($1, $2) ORDER BY run_id",
                "SELECT run_id, key, value FROM params WHERE run_id IN ($1, $2) ORDER BY ALL",
                "SELECT run_id, key, value FROM tags WHERE run_id IN ($1, $2) ORDER BY ALL",
                "SELECT run_id, key, step, value FROM metrics WHERE run_id IN ($1, $2) "
                "ORDER BY ALL",
            ):
                args = [ids[1], ids[3]]
                assert cur.execute(sql, args).fetchall() == con.execute(sql, args).fetchall()
            # A session variable the views need came along (stall_after_s).
            assert (
                cur.execute("SELECT getvariable('stall_after_s')").fetchall()
                == con.execute("SELECT getvariable('stall_after_s')").fetchall()
            )
        fast = con.execute(
            f"SELECT * FROM {summaries_sql(con, [ids[2]])} WHERE run_id = $1 ORDER BY key",
            [ids[2]],
        ).fetchall()
        full = con.execute(
            f"SELECT * FROM {summaries_sql(con)} WHERE run_id = $1 ORDER BY key", [ids[2]]
        ).fetchall()
        assert fast == full and len(fast) == 2
    finally:
        con.close()


def test_files_matching_ranges(store_path):
    ids = _log(store_path, 3)
    con = connect(store_path)
    try:
        files = visible_files(con, "runs")
        by_name = [f for f in files_matching(files, "name", "r1") if "__schema__" not in f]
        assert by_name  # the file with r1's started event
        assert len(by_name) < len([f for f in files if "__schema__" not in f])
        prefix = ids[0][:10]
        ranged = files_matching(files, "run_id", prefix, prefix + "g")
        assert any(
            ids[0] in str(con.execute("SELECT list(run_id) FROM read_parquet($1)", [f]).fetchall())
            for f in ranged
        )
    finally:
        con.close()


def test_hidden_files_are_never_listed(store_path):
    ids = _log(store_path, 3)

    def stop(stage: str) -> None:
        if stage == "commit":  # committed, inputs not yet removed: the log hides them
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ledger.compact(store_path, grace=0, hook=stop)
    con = connect(store_path)
    try:
        hidden = con.execute("SELECT kind, file FROM _lifecycle_hidden").fetchall()
        assert len(hidden) >= 2 and all(os.path.exists(f) for _, f in hidden)
        for kind in {kind for kind, _ in hidden} | {"runs", "params", "metrics"}:
            listed = set(visible_files(con, kind) or [])
            assert not listed & {f for _, f in hidden}
            assert files_for_runs(listed, ids) and not set(files_for_runs(listed, ids)) - listed
            assert all(os.path.exists(f) for f in listed)
        frame = diff(store_path, runs=[ids[0], ids[2]], all=True)
        rows = {(r[0], r[1]): r[2:] for r in frame.iter_rows()}
        assert rows[("param", "i")] == ("0", "2")
        assert rows[("metric", "m.last")] == ("0.5", "2.5")
    finally:
        con.close()


def test_listing_is_what_duckdb_globs_and_follows_the_commit_log(store_path):
    """The Python listing equals DuckDB's glob (dot-files included) minus the files the
    log hides, and a connection's kept hidden set follows a new log record."""
    _log(store_path, 3)
    con = connect(store_path)
    try:

        def by_duckdb(kind: str) -> list[str]:
            pattern = os.path.join(store_path, "events", kind, "*", "*", "*.parquet")
            return [
                row[0]
                for row in con.execute(
                    "SELECT file FROM glob($1) WHERE file NOT IN "
                    "(SELECT file FROM _lifecycle_hidden WHERE kind = $2) ORDER BY file",
                    [pattern, kind],
                ).fetchall()
            ]

        params_file = next(f for f in visible_files(con, "params") if "__schema__" not in f)
        dot_file = os.path.join(os.path.dirname(params_file), ".copied.parquet")
        with open(params_file, "rb") as src, open(dot_file, "wb") as dst:
            dst.write(src.read())
        assert dot_file in visible_files(con, "params")
        for kind in ("runs", "params", "metrics"):
            assert visible_files(con, kind) == by_duckdb(kind)
        os.remove(dot_file)

        def stop(stage: str) -> None:
            if stage == "commit":
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            ledger.compact(store_path, grace=0, hook=stop)
        assert con.execute("SELECT count(*) FROM _lifecycle_hidden").fetchall()[0][0] >= 2
        for kind in ("runs", "params", "metrics"):
            assert visible_files(con, kind) == by_duckdb(kind)
    finally:
        con.close()


def test_metric_history_reads_one_run_like_the_metrics_view(store_path):
    from ledger.analytics.runs import metric_history

    ids = _log(store_path, 3)
    frame = metric_history(ids[1], store=store_path)
    assert frame.columns == ["key", "step", "ts", "value"]
    assert [(r[0], r[1], r[3]) for r in frame.iter_rows()] == [
        ("loss", 0, 0.5),
        ("m", 0, 1.0),
        ("m", 1, 1.5),
    ]
    only = metric_history(ids[2], "m", store=store_path)
    assert only["value"].to_list() == [2.0, 2.5]
    assert metric_history("0" * 32, store=store_path).height == 0


def test_param_types_are_cached_per_file_and_follow_new_files(store_path):
    from ledger.analytics.pruning import param_value_types

    with ledger.start_run("p", "e", "one", params={"x": 1, "y": "a"}, store=store_path):
        pass
    ledger.flush()
    con = connect(store_path)
    try:
        assert param_value_types(con, "p", ["x"]) == {"x": {"int"}}
        assert param_value_types(con, "other", None) == {}
        with ledger.start_run("p", "e", "two", params={"x": "wide"}, store=store_path):
            pass
        ledger.flush()
        assert param_value_types(con, "p", ["x", "y"]) == {"x": {"int", "str"}, "y": {"str"}}
        view = dict(
            con.execute(
                "SELECT key, list(DISTINCT value_type) FROM events_params GROUP BY key"
            ).fetchall()
        )
        assert {k: set(v) for k, v in view.items()} == param_value_types(con, None, None)
    finally:
        con.close()


def test_a_kept_cursor_leaves_no_pruned_view_to_the_next_question(board):
    """A diff leaves its cursor (with views over two runs' files) for the next question
    on the connection; a leaderboard taking it, its --where reading a store view, still
    sees every run (as on a fresh connection)."""
    from ledger.analytics import cache
    from ledger.analytics.leaderboard import leaderboard

    where = "run_id IN (SELECT run_id FROM metrics WHERE key = 'loss')"
    fresh = leaderboard(board.store, metric="val_acc", where=where)
    con = connect(board.store)
    try:
        diff(runs=["a", "b"], experiment="sweep", con=con)
        cache.clear()  # the leaderboard folds afresh, making views on the kept cursor
        reused = leaderboard(metric="val_acc", where=where, con=con)
        assert reused.equals(fresh) and reused.height == 3
        diff(runs=["a", "e"], experiment="sweep", con=con)  # and back again
        assert leaderboard(metric="val_acc", where=where, con=con).equals(fresh)
    finally:
        con.close()
