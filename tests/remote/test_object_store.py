"""The core store-level behaviour, on a local directory and on an S3 bucket alike."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time

import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner
from ledger.analytics.engine import connect, fetch_frame, list_views, run_sql

import ledger
from ledger.cli import cli
from ledger.errors import ConfigError
from ledger.store import open_store


def populate(uri: str) -> None:
    """The same three runs as the ``populated_store`` fixture, in any store."""
    with ledger.start_run(
        "vision",
        "sweep",
        "a",
        params={"lr": 0.1, "model": "resnet"},
        tags={"team": "cv"},
        store=uri,
    ) as run:
        for step in range(10):
            run.log_metrics({"loss": 1 / (step + 1), "acc": 0.5 + 0.04 * step}, step=step)
    with ledger.start_run(
        "vision", "sweep", "b", params={"lr": 0.01, "model": "resnet"}, store=uri
    ) as run:
        for step in range(10):
            run.log_metrics({"loss": 2 / (step + 1), "acc": 0.6}, step=step)
        run.log_metric("acc", math.nan, step=10)
    with (
        pytest.raises(RuntimeError),
        ledger.start_run(
            "vision", "sweep", "c", params={"lr": 1.0, "model": "vit"}, store=uri
        ) as run,
    ):
        for step in range(4):
            run.log_metric("loss", 10.0 * step, step=step)
        raise RuntimeError("diverged")
    ledger.flush()


def test_logging_round_trip(any_store_uri, tmp_path):
    populate(any_store_uri)
    runs = ledger.query("SELECT name, status, message FROM runs ORDER BY name", store=any_store_uri)
    assert runs.rows() == [
        ("a", "finished", None),
        ("b", "finished", None),
        ("c", "failed", "RuntimeError: diverged"),
    ]
    latest = ledger.query(
        "SELECT r.name, l.value, l.step, l.n_points FROM latest_metrics l "
        "JOIN runs r USING (run_id) WHERE key = 'acc' ORDER BY r.name",
        store=any_store_uri,
    ).rows()
    assert latest[0][0] == "a" and latest[0][1] == pytest.approx(0.86) and latest[0][2] == 9
    assert latest[1][0] == "b" and math.isnan(latest[1][1]) and latest[1][3] == 11
    params = ledger.query(
        "SELECT r.name, p.value FROM params p JOIN runs r USING (run_id) "
        "WHERE p.key = 'lr' ORDER BY r.name",
        store=any_store_uri,
    ).rows()
    assert params == [("a", "0.1"), ("b", "0.01"), ("c", "1.0")]
    assert ledger.query("SELECT count(*) FROM metrics", store=any_store_uri).item() == 45


def test_artifacts_round_trip(any_store_uri, tmp_path):
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(3 << 20))  # larger than one read chunk
    with ledger.start_run("vision", "sweep", "art", store=any_store_uri) as run:
        run.log_artifact(str(source), artifact_path="models")
        run.log_text("hello", "notes.txt")
    rows = ledger.query(
        "SELECT path, size, uri FROM artifacts ORDER BY path", store=any_store_uri
    ).rows()
    assert [row[:2] for row in rows] == [("models/model.bin", 3 << 20), ("notes.txt", 5)]
    store = open_store(any_store_uri)
    copy = store.get_artifact(rows[0][2], str(tmp_path / "back" / "model.bin"))
    with open(copy, "rb") as handle:
        assert handle.read() == source.read_bytes()
    # Content addressing: the same bytes again are not uploaded twice.
    assert len(store.list_files(store.path("artifacts"))) == 2


def test_views_have_the_same_columns_everywhere(any_store_uri, store_path):
    remote = list_views(any_store_uri)
    local = list_views(str(store_path) + "-reference")
    assert remote.rows() == local.rows()
    assert ledger.query("SELECT count(*) FROM runs", store=any_store_uri).item() == 0


def test_a_long_lived_connection_sees_new_files_on_each_query(any_store_uri):
    populate(any_store_uri)
    con = connect(any_store_uri)
    try:
        assert run_sql(con, "SELECT count(*) AS n FROM runs").item() == 3
        with ledger.start_run("vision", "sweep", "d", store=any_store_uri) as run:
            run.log_metric("loss", 1.0, step=0)
        ledger.flush()
        assert run_sql(con, "SELECT count(*) AS n FROM runs").item() == 4
        assert fetch_frame(con, "SELECT count(*) AS n FROM metrics").item() == 46
    finally:
        con.close()


def test_cli_query_and_runs(any_store_uri):
    populate(any_store_uri)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "query",
            "--store",
            any_store_uri,
            "--format",
            "csv",
            "SELECT name, status FROM runs ORDER BY name",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["name,status", "a,finished", "b,finished", "c,failed"]


def test_store_file_helpers(any_store_uri):
    store = open_store(any_store_uri)
    target = store.path("scratch", "one.json")
    store.write_bytes(target, b"{}")
    assert store.read_bytes(target) == b"{}"
    store.copy_file(target, store.path("scratch", "two.json"))
    names = [info.base_name for info in store.list_files(store.path("scratch"))]
    assert names == ["one.json", "two.json"]
    store.delete_file(target)
    store.delete_file(target)  # idempotent
    store.delete_dir(store.path("scratch"))
    assert store.list_files(store.path("scratch")) == []
    with pytest.raises(FileNotFoundError):
        store.read_bytes(target)


@pytest.mark.parametrize("direction", ["to-s3", "from-s3"])
def test_transfer_between_a_local_store_and_a_bucket(
    direction, store_path, s3_store_uri, tmp_path, monkeypatch
):
    # Above this size uploads go through a temp key and a server-side copy.
    monkeypatch.setattr("ledger.store._SINGLE_PUT_MAX", 4096)
    local, bucket = open_store(store_path), open_store(s3_store_uri)
    source, target = (local, bucket) if direction == "to-s3" else (bucket, local)
    payload = os.urandom((1 << 20) + 17)
    upload = tmp_path / "payload.bin"
    upload.write_bytes(payload)
    source.put_file(str(upload), source.path("tier", "payload.bin"))
    source.transfer(source.path("tier", "payload.bin"), target, target.path("cold", "p.bin"))
    info = target.file_info(target.path("cold", "p.bin"))
    assert info is not None and info.size == len(payload)
    with target.open_input(target.path("cold", "p.bin")) as handle:
        assert handle.read() == payload
    assert target.file_info(target.path("cold", "missing.bin")) is None
    selector = pafs.FileSelector(bucket.base, recursive=True)
    leftovers = [i.path for i in bucket.fs.get_file_info(selector) if i.path.endswith(".tmp")]
    assert leftovers == []


def test_store_config_is_read_from_the_bucket(any_store_uri):
    store = open_store(any_store_uri)
    store.write_bytes(store.path("ledger.toml"), b'[runs]\nstall_after = "7m"\n')
    assert store.settings.stall_after == 420


WRITER = textwrap.dedent(
    """
    import sys
    import ledger

    store, worker = sys.argv[1], int(sys.argv[2])
    for r in range(5):
        with ledger.start_run("fleet", "w", f"w{worker}-r{r}", params={"worker": worker},
                              store=store) as run:
            for step in range(200):
                run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 200}, step=step)
                if step % 50 == 0:
                    ledger.flush()
    """
)


@pytest.mark.slow
def test_four_writer_processes_append_to_one_bucket(s3_store_uri, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "LEDGER_FLUSH_INTERVAL": "0.05"}
    procs = [
        subprocess.Popen([sys.executable, str(script), s3_store_uri, str(worker)], env=env)
        for worker in range(4)
    ]
    seen = []
    con = connect(s3_store_uri)
    try:
        while any(proc.poll() is None for proc in procs):
            seen.append(run_sql(con, "SELECT count(*) FROM metrics").item())
            time.sleep(0.2)
        assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]
        assert seen == sorted(seen), "a reader saw a count go down (torn or vanished file)"
        totals = run_sql(
            con,
            "SELECT count(*) AS points, count(DISTINCT run_id) AS runs, "
            "count(DISTINCT (run_id, key, step)) AS distinct_points FROM metrics",
        ).row(0)
    finally:
        con.close()
    assert totals == (4 * 5 * 200 * 2, 20, 4 * 5 * 200 * 2)
    statuses = ledger.query(
        "SELECT status, count(*) FROM runs GROUP BY 1", store=s3_store_uri
    ).rows()
    assert statuses == [("finished", 20)]


def test_unsupported_uri_scheme_is_a_clear_error():
    with pytest.raises(ConfigError, match="Unsupported store URI 'gs://b/p'"):
        open_store("gs://b/p")
    with pytest.raises(ConfigError, match="names no bucket"):
        open_store("s3:///prefix")


def test_a_missing_bucket_is_a_clear_error(s3_server):
    from ledger.errors import StoreError

    with pytest.raises(StoreError, match=r"Cannot initialise store at s3://no-such-bucket/x"):
        ledger.query("SELECT count(*) FROM runs", store="s3://no-such-bucket/x")


def test_only_the_sources_a_query_reads_are_listed_again(s3_store_uri):
    from ledger.analytics import engine

    populate(s3_store_uri)
    con = connect(s3_store_uri)
    try:
        state = engine._remote[id(con)]
        run_sql(con, "SELECT 1")  # the first query uses the listing connect() made
        before = dict(state.listed_at)
        run_sql(con, "SELECT count(*) FROM params")
        changed = {name for name, at in state.listed_at.items() if at != before[name]}
        assert changed == {"_ledger_source_params_1"}
        # latest_metrics is a view over events_metrics: the dependency is followed.
        before = dict(state.listed_at)
        fetch_frame(con, "SELECT count(*) FROM latest_metrics")
        changed = {name for name, at in state.listed_at.items() if at != before[name]}
        assert changed == {"_ledger_source_metrics_2"}
    finally:
        con.close()


def test_listing_ttl_trades_freshness_for_fewer_listings(s3_store_uri, monkeypatch):
    from ledger.analytics.engine import refresh_sources

    populate(s3_store_uri)
    monkeypatch.setenv("LEDGER_LISTING_TTL", "1h")
    con = connect(s3_store_uri)
    try:
        assert run_sql(con, "SELECT count(*) FROM runs").item() == 3
        with ledger.start_run("vision", "sweep", "late", store=s3_store_uri):
            pass
        ledger.flush()
        assert run_sql(con, "SELECT count(*) FROM runs").item() == 3  # listing reused
        refresh_sources(con, force=True)
        assert run_sql(con, "SELECT count(*) FROM runs").item() == 4
    finally:
        con.close()


def test_store_check_probes_every_step(any_store_uri):
    result = CliRunner().invoke(cli, ["store", "check", "--store", any_store_uri, "-f", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "check,ok,detail,ms"
    assert [line.split(",")[:2] for line in lines[1:]] == [
        [name, "true"] for name in ("location", "list", "write", "read", "delete", "layout")
    ]
    store = open_store(any_store_uri)
    assert store.list_files(store.path("_ledger_check")) == []


def test_store_check_names_a_missing_bucket(s3_server):
    result = CliRunner().invoke(cli, ["store", "check", "--store", "s3://no-such-bucket/x"])
    assert result.exit_code == 1
    assert "bucket 'no-such-bucket' does not exist" in result.output
    assert result.output.strip().endswith("Error: 4 check(s) failed: list, write, read, delete")
    assert "Traceback" not in result.output


def test_a_run_resumed_from_another_process_continues_in_the_bucket(any_store_uri, tmp_path):
    with ledger.start_run("vision", "sweep", "long", store=any_store_uri) as run:
        run.log_metric("loss", 1.0, step=0)
        run_id = run.id
    ledger.flush()
    script = tmp_path / "resume.py"
    script.write_text(
        "import sys, ledger\n"
        "with ledger.start_run(run_id=sys.argv[2], store=sys.argv[1]) as run:\n"
        "    run.log_metric('loss', 0.5, step=1)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), any_store_uri, run_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = ledger.query(
        "SELECT r.name, r.status, l.n_points, l.value FROM runs r "
        "JOIN latest_metrics l USING (run_id) WHERE run_id = $id",
        store=any_store_uri,
        params={"id": run_id},
    ).rows()
    assert rows == [("long", "finished", 2, 0.5)]


def test_a_cursor_for_another_thread_keeps_sources_and_settings(any_store_uri):
    import threading

    from ledger.analytics.engine import cursor

    populate(any_store_uri)
    con = connect(any_store_uri, stall_after=42)
    results: dict[str, object] = {}

    def work() -> None:
        cur = cursor(con)
        results["runs"] = run_sql(cur, "SELECT count(*) FROM runs").item()
        results["settings"] = cur.execute(
            "SELECT getvariable('stall_after_s'), current_setting('TimeZone')"
        ).fetchall()[0]
        with ledger.start_run("vision", "sweep", "from-thread", store=any_store_uri):
            pass
        ledger.flush()
        results["after"] = run_sql(cur, "SELECT count(*) FROM runs").item()
        cur.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    con.close()
    assert results == {"runs": 3, "settings": (42.0, "UTC"), "after": 4}


@pytest.mark.slow
def test_the_multi_machine_example_runs(s3_store_uri):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(root, "examples", "multi_machine.py"),
            "--store",
            s3_store_uri,
            "--workers",
            "2",
            "--trials",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "final status:" in done.stdout
    assert ledger.query(
        "SELECT status, count(*) FROM runs GROUP BY 1", store=s3_store_uri
    ).rows() == [("finished", 2)]


def test_polars_scan_in_place(any_store_uri):
    import polars as pl

    populate(any_store_uri)
    store = open_store(any_store_uri)
    metrics = store.scan("metrics")
    assert metrics.select(pl.len()).collect().item() == 45
    best = (
        metrics.filter((pl.col("key") == "loss") & (pl.col("project") == "vision"))
        .group_by("run_id")
        .agg(pl.col("value").min())
        .join(store.scan("runs").filter(pl.col("event") == "started"), on="run_id")
        .select("name", "value")
        .sort("name")
        .collect()
    )
    assert best.rows() == [("a", 0.1), ("b", 0.2), ("c", 0.0)]
    assert store.scan("runs").collect_schema()["date"] == pl.Date
    with pytest.raises(ConfigError, match="Unknown kind 'nope'"):
        store.scan("nope")


def _forked_worker(uri: str, index: int) -> None:
    with ledger.start_run("vision", "fork", f"child-{index}", store=uri) as run:
        run.log_metric("loss", float(index), step=0)
    ledger.flush()


@pytest.mark.slow
def test_forked_children_log_to_the_bucket(s3_store_uri):
    import multiprocessing

    populate(s3_store_uri)  # the parent's S3 client exists before the fork
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_forked_worker, args=(s3_store_uri, i)) for i in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [child.exitcode for child in children] == [0, 0]
    names = ledger.query(
        "SELECT name FROM runs WHERE experiment = 'fork' ORDER BY name", store=s3_store_uri
    ).rows()
    assert names == [("child-0",), ("child-1",)]
