"""Library tests of compact, archive, restore, pin, purge and garbage collection."""

from __future__ import annotations

import os
import time

import pytest
from lifecycle_helpers import assert_same, counts, hot_run_ids, log_runs, snapshot

import ledger
from ledger import maintenance, txnlog
from ledger.durations import parse_duration
from ledger.errors import (
    ConfigError,
    LedgerError,
    RunNotFoundError,
    RunStateError,
    StoreError,
)
from ledger.store import open_store


def event_files(store_path: str) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(store_path, "events")):
        out += [os.path.join(root, f) for f in files if f.endswith(".parquet")]
    return [f for f in out if "__schema__" not in f]


def test_compact_merges_small_files_and_keeps_every_answer(store_path):
    log_runs(store_path, 3, steps=5)
    before = snapshot(store_path)
    n_before = len(event_files(store_path))
    assert n_before > 15
    result = ledger.compact(store_path, grace=0)
    assert result.files >= 15 and result.rows > 0 and result.files_written >= 1
    assert_same(before, snapshot(store_path))
    # one file per (kind, partition) plus the compaction's own maintenance event
    assert len(event_files(store_path)) <= 8
    again = ledger.compact(store_path, grace=0)
    assert again.files == 0


def test_compacted_metrics_are_sorted_and_keep_no_float_statistics(store_path):
    import pyarrow.parquet as pq

    log_runs(store_path, 2, steps=6)
    ledger.compact(store_path, grace=0)
    metric_files = [f for f in event_files(store_path) if "/metrics/" in f]
    assert len(metric_files) == 1
    table = pq.read_table(metric_files[0])
    keys = list(zip(*(table.column(c).to_pylist() for c in ("run_id", "key", "step")), strict=True))
    assert keys == sorted(keys)
    meta = pq.ParquetFile(metric_files[0]).metadata
    value_index = table.schema.get_field_index("value")
    assert not meta.row_group(0).column(value_index).is_stats_set


def test_compact_dry_run_changes_nothing(store_path):
    log_runs(store_path, 2, steps=3)
    files = sorted(event_files(store_path))
    result = ledger.compact(store_path, dry_run=True)
    assert result.dry_run and result.files > 0 and result.bytes_moved > 0
    assert sorted(event_files(store_path)) == files


def test_compact_respects_older_than_and_project(store_path):
    log_runs(store_path, 2, steps=3, project="a")
    log_runs(store_path, 2, steps=3, project="b")
    assert ledger.compact(store_path, older_than="1h", grace=0).files == 0
    result = ledger.compact(store_path, project="a", grace=0)
    assert result.files > 0
    assert all("project=b" in f or "project=a" in f for f in event_files(store_path))
    b_files = [f for f in event_files(store_path) if "project=b" in f]
    assert len(b_files) > 5


def test_archive_moves_runs_and_restore_brings_them_back(store_path):
    ids = log_runs(store_path, 3, steps=3)
    before = snapshot(store_path)
    before_counts = counts(store_path)
    result = ledger.archive(store_path, older_than="0s", grace=0)
    assert sorted(result.runs) == sorted(ids)
    assert result.bytes_moved > 0 and result.bytes_freed > 0 and result.files > 0
    assert hot_run_ids(store_path) == set()
    after = counts(store_path)
    assert {k: after[k] for k in ("runs", "metrics", "params", "tags")} == {
        k: before_counts[k] for k in ("runs", "metrics", "params", "tags")
    }
    assert_same(before, snapshot(store_path))
    assert os.path.isdir(os.path.join(store_path, "archive", "events"))
    restored = ledger.restore(store_path, all_runs=True, grace=0)
    assert sorted(restored.runs) == sorted(ids)
    assert hot_run_ids(store_path) == set(ids)
    assert_same(before, snapshot(store_path, include_archived=False))
    events = ledger.query("SELECT event FROM events_runs WHERE event IN ('archived','restored')")
    assert sorted(events["event"].to_list()) == ["archived"] * 3 + ["restored"] * 3


def test_archive_filters_status_project_keep_tag_and_pins(store_path):
    ok = log_runs(store_path, 2, steps=1)
    failed = log_runs(store_path, 1, steps=1, fail=True)
    other = log_runs(store_path, 1, steps=1, project="other")
    with ledger.start_run("vision", "sweep", "kept", tags={"paper": "yes"}, store=store_path):
        pass
    maintenance.pin(store_path, [ok[0]])
    assert ledger.archive(store_path, older_than="0s", status="failed", dry_run=True).runs == failed
    assert (
        sorted(ledger.archive(store_path, older_than="0s", project="other", dry_run=True).runs)
        == other
    )
    plan = ledger.archive(store_path, older_than="0s", keep_tags=["paper"], dry_run=True)
    assert sorted(plan.runs) == sorted([ok[1], *failed, *other])
    assert ok[0] in plan.skipped and "pinned" in plan.skipped[ok[0]]
    assert ledger.archive(store_path, older_than="1d", dry_run=True).runs == []
    maintenance.pin(store_path, [ok[0]], on=False)
    assert ok[0] in ledger.archive(store_path, older_than="0s", dry_run=True).runs


def test_children_move_with_their_parents(store_path):
    with ledger.start_run("vision", "sweep", "parent", store=store_path) as parent:
        pass
    children = log_runs(store_path, 2, steps=1, parent=parent.id)
    result = ledger.archive(store_path, older_than="0s", runs=[children[0]], grace=0)
    assert sorted(result.runs) == sorted([parent.id, *children])
    assert hot_run_ids(store_path) == set()
    restored = ledger.restore(store_path, runs=[children[1]], grace=0)
    assert sorted(restored.runs) == sorted([parent.id, *children])


def test_running_run_is_never_archived(store_path):
    run = ledger.start_run("vision", "sweep", "live", store=store_path)
    ledger.flush()
    try:
        assert ledger.archive(store_path, older_than="0s", dry_run=True).runs == []
    finally:
        run.end()


def test_artifacts_move_with_runs_and_purge_removes_unshared_blobs(store_path, tmp_path):
    blob = tmp_path / "model.bin"
    blob.write_bytes(b"weights" * 100)
    (a,) = log_runs(store_path, 1, steps=1, artifact=str(blob))
    store = open_store(store_path)
    uri = ledger.query("SELECT uri FROM artifacts")["uri"][0]
    ledger.archive(store_path, older_than="0s", grace=0)
    archive = txnlog.registered_archive(store)
    assert archive is not None
    assert not os.path.exists(store.artifact_path(uri))
    assert os.path.exists(archive.artifact_path(uri))
    ledger.restore(store_path, runs=[a], grace=0)
    assert os.path.exists(store.artifact_path(uri))
    assert not os.path.exists(archive.artifact_path(uri))
    (b,) = log_runs(store_path, 1, steps=1, artifact=str(blob))
    ledger.purge(store_path, [a], yes=True, grace=0)
    assert os.path.exists(store.artifact_path(uri)), "still used by run b"
    ledger.purge(store_path, [b], yes=True, grace=0)
    assert not os.path.exists(store.artifact_path(uri))


def test_purge_needs_yes_and_force_for_pinned_and_leaves_a_contentless_event(store_path):
    ids = log_runs(store_path, 2, steps=2)
    with pytest.raises(LedgerError, match="--yes"):
        ledger.purge(store_path, [ids[0]])
    maintenance.pin(store_path, [ids[0]])
    with pytest.raises(RunStateError, match="pinned"):
        ledger.purge(store_path, [ids[0]], yes=True)
    preview = ledger.purge(store_path, [ids[0]], dry_run=True, force=True)
    assert preview.rows > 0 and preview.files > 0
    result = ledger.purge(store_path, [ids[0]], yes=True, force=True, grace=0)
    assert result.runs == [ids[0]]
    assert hot_run_ids(store_path) == {ids[1]}
    left = ledger.query(
        "SELECT event, message, attrs FROM events_runs WHERE run_id = ?", params=[ids[0]]
    )
    assert left["event"].to_list() == ["deleted"]
    assert left["message"].to_list() == ["purged"]
    assert "r0" not in left["attrs"][0] and "seed" not in left["attrs"][0]
    assert (
        ledger.query("SELECT count(*) AS n FROM metrics WHERE run_id = ?", params=[ids[0]])["n"][0]
        == 0
    )


def test_purge_reaches_archived_runs(store_path):
    ids = log_runs(store_path, 2, steps=2)
    ledger.archive(store_path, older_than="0s", runs=[ids[0]], grace=0)
    ledger.purge(store_path, [ids[0][:12]], yes=True, grace=0)
    assert counts(store_path)["runs"] == 1


def test_unknown_runs_and_empty_selections(store_path):
    log_runs(store_path, 1, steps=1)
    with pytest.raises(RunNotFoundError):
        ledger.purge(store_path, ["ffffffff"], yes=True)
    with pytest.raises(RunNotFoundError):
        maintenance.pin(store_path, ["nope-nope"])
    with pytest.raises(LedgerError, match="--all"):
        ledger.restore(store_path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("30m", 1800), ("12h", 43200), ("90d", 90 * 86400), ("2w", 14 * 86400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "-5d", "", "5 parsecs"])
def test_bad_durations_are_clear_errors(store_path, text):
    log_runs(store_path, 1, steps=1)
    with pytest.raises(ConfigError, match="--older-than"):
        ledger.archive(store_path, older_than=text)
    with pytest.raises(ConfigError, match="--older-than"):
        ledger.compact(store_path, older_than=text)


def test_unwritable_archive_target_changes_nothing(store_path, tmp_path):
    log_runs(store_path, 2, steps=2)
    before = snapshot(store_path, include_archived=False)
    files = sorted(event_files(store_path))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        ledger.archive(store_path, older_than="0s", to=str(a_file))
    with pytest.raises(StoreError, match="not writable"):
        ledger.archive(store_path, older_than="0s", to=str(a_file / "archive"))
    with pytest.raises(StoreError, match="not writable"):
        ledger.archive(store_path, older_than="0s", to="/proc/ledger-archive")
    assert txnlog.registered_archive(open_store(store_path)) is None
    assert sorted(event_files(store_path)) == files
    assert_same(before, snapshot(store_path, include_archived=False))


def test_switching_archive_tier_with_data_is_refused(store_path, tmp_path):
    ids = log_runs(store_path, 2, steps=1)
    ledger.archive(store_path, older_than="0s", runs=[ids[0]], to=str(tmp_path / "cold"), grace=0)
    with pytest.raises(StoreError, match="already archives"):
        ledger.archive(store_path, older_than="0s", to=str(tmp_path / "other"))
    assert counts(store_path)["runs"] == 2


def test_stale_temp_files_are_swept_and_fresh_ones_kept(store_path):
    log_runs(store_path, 1, steps=1)
    partition = os.path.dirname(event_files(store_path)[0])
    stale = os.path.join(partition, ".x.parquet.abc.tmp")
    fresh = os.path.join(partition, ".y.parquet.def.tmp")
    for path in (stale, fresh):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    result = ledger.compact(store_path, grace=0)
    assert result.temp_files_swept == 1
    assert not os.path.exists(stale) and os.path.exists(fresh)


@pytest.mark.parametrize("stage", ["pending", "output", "commit"])
def test_interrupted_transaction_answers_as_before_or_after(store_path, stage):
    log_runs(store_path, 2, steps=4)
    before = snapshot(store_path)

    def crash(at: str) -> None:
        if at == stage:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        ledger.compact(store_path, grace=0, hook=crash)
    assert_same(before, snapshot(store_path))
    ledger.compact(store_path, grace=0)
    assert_same(before, snapshot(store_path))
    maintenance.collect_garbage(store_path, grace=0)
    log = txnlog.read_log(open_store(store_path))
    assert not log.pending and not log.commits


def test_grace_keeps_replaced_files_until_it_passes(store_path):
    log_runs(store_path, 2, steps=3)
    n = len(event_files(store_path))
    ledger.compact(store_path, grace="1h")
    assert len(event_files(store_path)) > n, "inputs stay (hidden) during the grace period"
    before = snapshot(store_path)
    report = maintenance.collect_garbage(store_path, grace=0)
    assert report.files_deleted >= n - 2 and report.transactions_finished >= 1
    assert len(event_files(store_path)) < n  # the replaced inputs are gone now
    assert_same(before, snapshot(store_path))


def test_lock_excludes_a_second_operation(store_path):
    store = open_store(store_path)
    store.ensure_initialized()
    with (
        txnlog.maintenance_lock(store),
        pytest.raises(StoreError, match="Another lifecycle"),
        txnlog.maintenance_lock(store, timeout=0.1),
    ):
        pass


def test_compact_include_archived_merges_archive_files(store_path):
    ids = log_runs(store_path, 3, steps=2)
    for run_id in ids:  # three archive operations leave several small archive files
        ledger.archive(store_path, older_than="0s", runs=[run_id], grace=0)
    before = snapshot(store_path)
    result = ledger.compact(store_path, include_archived=True, grace=0)
    assert result.files > 0
    assert_same(before, snapshot(store_path))


def test_restore_older_than_and_project(store_path):
    a = log_runs(store_path, 1, steps=1, project="a")
    b = log_runs(store_path, 1, steps=1, project="b")
    ledger.archive(store_path, older_than="0s", grace=0)
    assert ledger.restore(store_path, older_than="1d", dry_run=True).runs == []
    assert ledger.restore(store_path, older_than="0s", project="b", grace=0).runs == b
    assert hot_run_ids(store_path) == set(b)
    assert ledger.restore(store_path, runs=b, grace=0).runs == []  # already back: no-op
    assert ledger.restore(store_path, all_runs=True, grace=0).runs == a


def test_retention_drops_artifacts_but_keeps_metrics(store_path, tmp_path):
    from ledger import retention

    blob = tmp_path / "big.ckpt"
    blob.write_bytes(b"x" * 4096)
    (run_id,) = log_runs(store_path, 1, steps=3, artifact=str(blob))
    pinned = log_runs(store_path, 1, steps=1, artifact=str(blob))
    maintenance.pin(store_path, pinned)
    with open(os.path.join(store_path, "ledger.toml"), "w") as handle:
        handle.write('[retention]\ndelete_artifacts_after = "0s"\n')
    plan = retention.plan(store_path)
    assert plan.runs("delete-artifacts") == [run_id]
    metrics_before = counts(store_path)["metrics"]
    retention.apply(store_path, grace=0)
    artifacts = ledger.query("SELECT run_id FROM artifacts")["run_id"].to_list()
    assert artifacts == pinned
    assert counts(store_path)["metrics"] == metrics_before
    assert hot_run_ids(store_path) == {run_id, *pinned}
    uri = ledger.query("SELECT uri FROM artifacts")["uri"][0]
    assert os.path.exists(open_store(store_path).artifact_path(uri)), "the pinned run's file"
