"""The leaderboard keeps folds in memory per exact file set: answers must never go stale.

Each test asks the same question before and after the store changes (a new flush, a
compaction, the clock moving past a silent run's heartbeat) and checks the answer
against what the views say.
"""

from __future__ import annotations

import time

import pytest
from ledger.analytics import cache
from ledger.analytics.engine import connect, fetch_frame
from ledger.analytics.leaderboard import leaderboard

import ledger
from ledger.maintenance import compact
from ledger.store import open_store
from ledger.writer import writer_for

WHERE = "params.opt = 'adam' AND params.bs IN (32, 64)"


def _log(store: str, name: str, acc: list[float], opt: str = "adam", bs: int = 32) -> str:
    with ledger.start_run("p", "e", name, params={"opt": opt, "bs": bs}, store=store) as run:
        for step, value in enumerate(acc):
            run.log_metric("acc", value, step=step)
    ledger.flush()
    return run.id


def _reference(store: str, top: int = 10) -> list[tuple[str, float]]:
    """The same question answered by the plain views, no cache."""
    con = connect(store)
    try:
        frame = fetch_frame(
            con,
            """SELECT r.name, s.max_value FROM runs r
            JOIN metric_summaries s ON s.run_id = r.run_id AND s.key = 'acc'
            JOIN (SELECT run_id FROM params WHERE key = 'opt' AND value = 'adam') o
                ON o.run_id = r.run_id
            JOIN (SELECT run_id FROM params WHERE key = 'bs' AND value IN ('32', '64')) b
                ON b.run_id = r.run_id
            ORDER BY s.max_value DESC, r.start_time LIMIT $top""",
            {"top": top},
        )
    finally:
        con.close()
    return list(zip(frame["name"].to_list(), frame["max_value"].to_list(), strict=True))


def _board(store: str, con=None) -> list[tuple[str, float]]:
    frame = leaderboard(store, metric="acc", where=WHERE, con=con)
    return list(zip(frame["name"].to_list(), frame["acc"].to_list(), strict=True))


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def test_a_new_flush_shows_up_on_the_same_connection(store_path):
    _log(store_path, "a", [0.5, 0.7])
    _log(store_path, "b", [0.6], opt="sgd")
    _log(store_path, "c", [0.4, 0.65], bs=64)
    con = connect(store_path)
    try:
        assert _board(store_path, con) == [("a", 0.7), ("c", 0.65)] == _reference(store_path)
        assert _board(store_path, con) == [("a", 0.7), ("c", 0.65)]  # from memory
        _log(store_path, "d", [0.9])
        _log(store_path, "e", [0.95], bs=128)  # filtered out by --where
        assert _board(store_path, con) == [("d", 0.9), ("a", 0.7), ("c", 0.65)]
        assert _board(store_path, con) == _reference(store_path)
    finally:
        con.close()


def test_compaction_changes_nothing_and_is_seen(store_path):
    for i in range(6):
        _log(store_path, f"r{i}", [0.1 * i, 0.05 * i], bs=32 if i % 2 else 64)
    before = _board(store_path)
    assert before == _reference(store_path)
    result = compact(store_path, target_size="1MB")
    assert result.summary()["files"] > 0  # files were replaced: a new file set
    assert _board(store_path) == before
    _log(store_path, "late", [0.99])
    assert _board(store_path)[0] == ("late", 0.99)


def test_open_run_status_follows_the_clock_not_the_kept_fold(store_path):
    _log(store_path, "done", [0.5])
    run = ledger.start_run("p", "e", "open", params={"opt": "adam", "bs": 32}, store=store_path)
    run.log_metric("acc", 0.8, step=0)
    ledger.flush()
    try:
        con = connect(store_path, stall_after=3600)
        try:
            frame = leaderboard(store_path, metric="acc", con=con)
            assert dict(zip(frame["name"], frame["status"], strict=True)) == {
                "open": "running",
                "done": "finished",
            }
            first = frame.filter(frame["name"] == "open")["duration_s"][0]
        finally:
            con.close()
        time.sleep(0.05)
        # Same files, so the runs fold is kept; the open run must still be re-judged.
        con = connect(store_path, stall_after=0.01)
        try:
            frame = leaderboard(store_path, metric="acc", con=con)
            status = dict(zip(frame["name"], frame["status"], strict=True))
            assert status == {"open": "stalled", "done": "finished"}
        finally:
            con.close()
        con = connect(store_path, stall_after=3600)
        try:
            frame = leaderboard(store_path, metric="acc", con=con)
            later = frame.filter(frame["name"] == "open")["duration_s"][0]
            assert later > first  # a running run's duration grows with the clock
        finally:
            con.close()
    finally:
        run.end()
    ledger.flush()
    frame = leaderboard(store_path, metric="acc")
    assert set(frame["status"]) == {"finished"}


def test_group_by_and_all_rows_agree_with_the_views(store_path):
    for i in range(5):
        _log(store_path, f"r{i}", [0.1 * i], opt="adam" if i % 2 else "sgd")
    grouped = leaderboard(store_path, metric="acc", group_by="param:opt")
    assert grouped["param:opt"].to_list() == ["sgd", "adam"]  # r4 (sgd) is best
    assert grouped["best_run"].to_list() == ["r4", "r3"]
    everything = leaderboard(store_path, metric="acc", top=None)
    assert everything["name"].to_list() == ["r4", "r3", "r2", "r1", "r0"]


def test_object_store_uses_the_plain_views_with_the_same_answers(any_store_uri):
    # No listing or kept folds on a bucket (DuckDB reads it through pyarrow datasets):
    # the same questions must still be answered, and a new run must still show up.
    from ledger.analytics.diff import diff
    from ledger.analytics.runs import metric_history

    first = _log(any_store_uri, "a", [0.5, 0.7])
    _log(any_store_uri, "b", [0.6], opt="sgd")
    assert _board(any_store_uri) == [("a", 0.7)]
    _log(any_store_uri, "c", [0.9], bs=64)
    assert _board(any_store_uri) == [("c", 0.9), ("a", 0.7)]
    assert metric_history(first, store=any_store_uri)["value"].to_list() == [0.5, 0.7]
    rows = {(r[0], r[1]): r[2:] for r in diff(any_store_uri, runs=["a", "c"]).iter_rows()}
    assert rows[("metric", "acc.best")] == ("0.7", "0.9")


def test_a_kept_fold_is_not_shared_across_connections_with_other_variables(store_path):
    """Two connections over the same files but with different view variables
    (include_deleted) must not answer from each other's kept folds."""
    _log(store_path, "kept", [0.5])
    gone = _log(store_path, "gone", [0.9])
    # What the MLflow importer and the shim's delete_run record.
    writer_for(open_store(store_path)).add_event("runs", "p", {"run_id": gone, "event": "deleted"})
    ledger.flush()
    plain = connect(store_path)
    with_deleted = connect(store_path, include_deleted=True)
    try:
        assert [name for name, _ in _board(store_path, con=plain)] == ["kept"]
        assert [name for name, _ in _board(store_path, con=with_deleted)] == ["gone", "kept"]
        assert [name for name, _ in _board(store_path, con=plain)] == ["kept"]
    finally:
        plain.close()
        with_deleted.close()
