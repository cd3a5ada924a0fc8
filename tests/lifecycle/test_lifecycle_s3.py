"""Lifecycle verbs on an S3 bucket (a real moto server on 127.0.0.1): compact, archive to
another bucket, restore, purge, gc, retention; the lease that keeps maintainers apart;
SIGKILLed maintainers; writers, a reader and compaction at once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner
from lifecycle_helpers import assert_same, counts, finish_churn_and_check, log_runs, snapshot
from test_lifecycle_concurrency import READER, WRITER

import ledger
from ledger import maintenance, txnlog
from ledger.cli import cli
from ledger.errors import LeaseLostError, StoreError
from ledger.lease import ObjectLease, s3_client
from ledger.objectstore import split_uri
from ledger.store import open_store

COLD_BUCKET = "ledger-cold"


@pytest.fixture
def cold_uri(s3_server, s3_store_uri) -> str:
    """An archive prefix in a second bucket (created once per session)."""
    client = s3_client(s3_store_uri)
    try:
        client.create_bucket(Bucket=COLD_BUCKET)
    except Exception as exc:  # created by an earlier test
        if "BucketAlready" not in type(exc).__name__ + str(exc):
            raise
    return f"s3://{COLD_BUCKET}/{s3_store_uri.rsplit('/', 1)[1]}"


@pytest.fixture
def short_lease(monkeypatch) -> float:
    """A 1 s lease, so tests that kill a holder wait one second, not thirty."""
    monkeypatch.setenv("LEDGER_LEASE_TTL", "1s")
    return 1.0


def _keys(uri: str) -> list[str]:
    _, bucket, prefix = split_uri(uri)
    client = s3_client(uri)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return [item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", [])]


def _records(uri: str) -> list[str]:
    """The commit log's pending and commit records still in the bucket."""
    ends = ("pending.parquet", "commit.parquet")
    return [k for k in _keys(uri) if k.startswith("_lifecycle/txn/") and k.endswith(ends)]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_every_lifecycle_verb_on_a_bucket_with_the_archive_in_another(s3_store_uri, cold_uri):
    ids = log_runs(s3_store_uri, 4, steps=2)
    before = snapshot(s3_store_uri)
    files_before = len([k for k in _keys(s3_store_uri) if k.startswith("events/metrics/")])

    out = _cli("compact", "--store", s3_store_uri, "--grace", "0s", "--format", "json")
    assert json.loads(out)[0]["files"] > 4
    assert_same(before, snapshot(s3_store_uri))
    # The CLI waited out the grace period and deleted the replaced objects.
    assert len([k for k in _keys(s3_store_uri) if k.startswith("events/metrics/")]) < files_before

    archive = ("archive", "--store", s3_store_uri, "--older-than", "0s", "--to", cold_uri)
    out = _cli(*archive, "--grace", "0s", "--no-wait", "--format", "json")
    assert json.loads(out)[0]["runs"] == 4
    assert counts(s3_store_uri, include_archived=False)["runs"] == 0
    assert any(k.startswith("events/metrics/project=vision") for k in _keys(cold_uri))
    assert_same(before, snapshot(s3_store_uri))  # hot + archive: the same answers
    # Queries see the archive through --include-archived, on the CLI too.
    query = ("query", "SELECT count(*) AS n FROM runs", "--store", s3_store_uri)
    assert _cli(*query, "--include-archived", "--format", "csv").split() == ["n", "4"]
    assert _cli(*query, "--format", "csv").split() == ["n", "0"]

    ledger.restore(s3_store_uri, runs=[ids[0], ids[1]], grace="0s")
    assert counts(s3_store_uri, include_archived=False)["runs"] == 2
    _cli("restore", "--store", s3_store_uri, "--all", "--grace", "0s", "--no-wait")
    assert_same(before, snapshot(s3_store_uri))
    assert counts(s3_store_uri, include_archived=False) == counts(s3_store_uri)

    _cli("pin", "--store", s3_store_uri, ids[3])
    plan = ledger.archive(s3_store_uri, older_than="0s", dry_run=True)
    assert sorted(plan.runs) == sorted(ids[:3]) and ids[3] in plan.skipped

    _cli("purge", "--store", s3_store_uri, ids[2], "--yes", "--grace", "0s", "--no-wait")
    left = ledger.query("SELECT run_id FROM runs", store=s3_store_uri)
    assert sorted(left["run_id"]) == sorted(ids[:2] + ids[3:])
    time.sleep(1.1)  # object ages have one-second resolution
    _cli("gc", "--store", s3_store_uri, "--grace", "0s")
    assert _records(s3_store_uri) == []
    assert counts(s3_store_uri)["metrics"] == 3 * 2 * 2


def test_retention_policies_apply_to_a_bucket(s3_store_uri, cold_uri):
    log_runs(s3_store_uri, 2, steps=2)
    failed = log_runs(s3_store_uri, 1, steps=2, fail=True)
    store = open_store(s3_store_uri)
    with store.fs.open_output_stream(store.path("ledger.toml")) as sink:
        sink.write(
            textwrap.dedent(
                f"""
                [archive]
                path = "{cold_uri}"
                [retention]
                delete_failed_after = "0s"
                archive_after = "0s"
                """
            ).encode()
        )
    result = CliRunner().invoke(
        cli, ["retention", "apply", "--store", s3_store_uri, "--grace", "0s"]
    )
    assert result.exit_code == 0, result.output
    assert counts(s3_store_uri, include_archived=False)["runs"] == 0
    runs = ledger.query("SELECT run_id FROM runs", store=s3_store_uri, include_archived=True)
    assert runs.height == 2 and failed[0] not in runs["run_id"].to_list()
    assert any(k.startswith("events/runs/") for k in _keys(cold_uri))


HOLDER = textwrap.dedent(
    """
    import sys, time
    from ledger import txnlog
    from ledger.store import open_store
    with txnlog.maintenance_lock(open_store(sys.argv[1]), timeout=30):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_the_lease_keeps_a_second_maintainer_out_until_its_holder_dies(s3_store_uri, short_lease):
    store = open_store(s3_store_uri)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, s3_store_uri], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # Alive and renewing: waiting three lease lifetimes is not enough.
        with (
            pytest.raises(StoreError, match="lease held by"),
            txnlog.maintenance_lock(store, timeout=3 * short_lease),
        ):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        with txnlog.maintenance_lock(store, timeout=10):
            waited = time.monotonic() - started
        # The dead holder's lease is taken over once it went one ttl without renewal.
        assert short_lease * 0.9 <= waited < short_lease + 5
        # A released lease is taken at once.
        started = time.monotonic()
        with txnlog.maintenance_lock(store, timeout=10):
            assert time.monotonic() - started < short_lease
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_maintainer_that_lost_its_lease_commits_nothing(s3_store_uri, short_lease):
    log_runs(s3_store_uri, 2, steps=3)
    before = snapshot(s3_store_uri)
    _, bucket, prefix = split_uri(s3_store_uri)
    client = s3_client(s3_store_uri)

    def take_over(stage: str) -> None:
        if stage == "output":  # another maintainer took the lease while this one stalled
            client.put_object(
                Bucket=bucket,
                Key=f"{prefix}/_lifecycle/lease.json",
                Body=json.dumps({"holder": "intruder", "ttl": 1.0, "nonce": "x"}).encode(),
            )

    with pytest.raises(LeaseLostError, match="taken over"):
        ledger.compact(s3_store_uri, grace="0s", hook=take_over)
    assert_same(before, snapshot(s3_store_uri))
    assert any(k.endswith(".pending.parquet") for k in _records(s3_store_uri))
    # The "intruder" never renews: the next compaction takes over, rolls the orphaned
    # outputs back and compacts for real.
    time.sleep(1.1)
    ledger.compact(s3_store_uri, grace="0s")
    assert_same(before, snapshot(s3_store_uri))


def test_a_bucket_reader_sees_before_or_after_a_commit_never_both(s3_store_uri):
    log_runs(s3_store_uri, 2, steps=3)
    before = counts(s3_store_uri)
    assert before["metrics"] == before["distinct_metrics"] == 12
    seen: list[tuple[str, dict[str, int]]] = []
    store = open_store(s3_store_uri)
    watching: list[bool] = []

    def check(stage: str) -> None:
        # The transaction that compacts the metrics partition: its pending record is
        # written, its first output is written (hidden), its commit record is written.
        if stage == "pending":
            log = txnlog.read_log(store)
            open_txns = [rows for txn, rows in log.pending.items() if txn not in log.commits]
            watching.append(any(r["kind"] == "metrics" for rows in open_txns for r in rows))
        if not watching[-1] or (stage == "output" and seen[-1][0] != "pending"):
            return
        seen.append((stage, counts(s3_store_uri)))

    ledger.compact(s3_store_uri, grace="0s", hook=check)
    assert [stage for stage, _ in seen] == ["pending", "output", "commit"]
    assert all(state == before for _, state in seen), seen
    assert counts(s3_store_uri) == before


def test_two_leases_in_one_process_exclude_each_other(s3_store_uri):
    store = open_store(s3_store_uri)
    first, second = ObjectLease(store, ttl=5.0), ObjectLease(store, ttl=5.0)
    first.acquire(timeout=5)
    try:
        with pytest.raises(StoreError, match="running on"):
            second.acquire(timeout=0.5)
        first.renew()
        assert first.valid()
    finally:
        first.release()
    second.acquire(timeout=1)
    second.release()


COMPACTOR = textwrap.dedent(
    """
    import sys, ledger
    ledger.compact(sys.argv[1], grace="0s", target_size="64KB")
    """
)


@pytest.mark.slow
def test_sigkilled_compactions_leave_exact_counts_and_the_next_one_finishes(
    s3_store_uri, short_lease
):
    rng = random.Random(9)
    expected = None
    for trial in range(2):
        log_runs(s3_store_uri, 2, steps=3, project=f"p{trial % 2}")
        expected = counts(s3_store_uri)
        child = subprocess.Popen([sys.executable, "-c", COMPACTOR, s3_store_uri])
        time.sleep(rng.uniform(1.0, 3.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert counts(s3_store_uri) == expected, f"trial {trial}"
    ledger.compact(s3_store_uri, grace="0s")
    time.sleep(1.1)
    maintenance.collect_garbage(s3_store_uri, grace="0s")
    assert counts(s3_store_uri) == expected
    assert _records(s3_store_uri) == []


@pytest.mark.slow
def test_compact_and_archive_while_writers_append_to_a_bucket_and_a_reader_queries(
    s3_store_uri, cold_uri, tmp_path
):
    old = log_runs(s3_store_uri, 3, steps=3)
    old_total = counts(s3_store_uri)["metrics"]
    stop = tmp_path / "stop"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, s3_store_uri, str(i), "2.5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, s3_store_uri, str(stop), str(old_total)],
        stdout=subprocess.PIPE,
        text=True,
    )
    operations, i = 0, 0
    deadline = time.time() + 40
    while any(w.poll() is None for w in writers) and time.time() < deadline:
        # A short grace so replaced objects really are deleted while the reader reads.
        ledger.compact(s3_store_uri, grace="0.5s")
        ledger.archive(s3_store_uri, older_than="0s", to=cold_uri, runs=[old[i % 3]], grace="0.5s")
        ledger.restore(s3_store_uri, runs=[old[(i + 2) % 3]], grace="0.5s")
        operations += 3
        i += 1
    finish_churn_and_check(
        s3_store_uri,
        writers,
        reader,
        stop,
        operations=operations,
        old_total=old_total,
        settle_s=1.0,
    )
