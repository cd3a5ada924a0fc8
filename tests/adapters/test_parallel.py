"""Parallel batches: every config becomes exactly one child run, failures included."""

from __future__ import annotations

import os

import pytest

import ledger

joblib = pytest.importorskip("joblib")
from ledger.parallel import run_experiments  # noqa: E402


def train(config):
    if config["lr"] < 0:
        raise ValueError(f"negative lr {config['lr']}")
    for epoch in range(3):
        ledger.log_metric("loss", config["lr"] / (epoch + 1), step=epoch)
    return {"val_acc": 1.0 - config["lr"], "note": "not a number"}


CONFIGS = [{"lr": lr, "depth": d} for lr in (0.1, 0.2, -1.0, 0.4) for d in (2, 3)]


def _check_batch(results, store, parent_id):
    assert [r.index for r in results] == list(range(len(CONFIGS)))
    assert [r.config for r in results] == CONFIGS
    failed = [r for r in results if not r.ok]
    assert [r.config["lr"] for r in failed] == [-1.0, -1.0]
    assert failed[0].error == "ValueError: negative lr -1.0" and failed[0].value is None
    assert [r.value["val_acc"] for r in results if r.ok] == [
        pytest.approx(1.0 - c["lr"]) for c in CONFIGS if c["lr"] >= 0
    ]
    runs = ledger.query(
        "SELECT run_id, status, message, parent_run_id, name FROM runs "
        "WHERE parent_run_id = ? ORDER BY name",
        store=store,
        params=[parent_id],
    )
    assert runs.height == len(CONFIGS)  # exactly once each
    by_id = {row["run_id"]: row for row in runs.iter_rows(named=True)}
    for result in results:
        row = by_id[result.run_id]
        assert row["status"] == result.status
        assert row["message"] == result.error
    metrics = ledger.query(
        "SELECT run_id, key, count(*) AS n, max(value) AS top FROM metrics GROUP BY run_id, key",
        store=store,
    )
    counts = {(r["run_id"], r["key"]): (r["n"], r["top"]) for r in metrics.iter_rows(named=True)}
    for result in results:
        if result.ok:
            assert counts[(result.run_id, "loss")] == (3, pytest.approx(result.config["lr"]))
            assert counts[(result.run_id, "val_acc")] == (1, pytest.approx(result.value["val_acc"]))
    params = ledger.query(
        "SELECT run_id, key, value, value_type FROM params WHERE key = 'depth'", store=store
    )
    assert params.height == len(CONFIGS) and set(params["value_type"]) == {"int"}
    _check_exactly_once(store, parent_id, {r.run_id: r.status for r in results}, points=3)


def _check_exactly_once(store, parent_id, statuses, points):
    """The raw events, not the folded views: one ``started`` and one end event per run,
    each child of ``parent_id``, each param once, ``points`` loss points each."""
    events = ledger.query(
        "SELECT run_id, list(event ORDER BY ts) AS events, "
        "count(DISTINCT parent_run_id) AS parents, any_value(parent_run_id) AS parent "
        "FROM events_runs WHERE event IN ('started', 'finished', 'failed', 'killed') "
        "AND run_id IN (SELECT run_id FROM events_runs WHERE parent_run_id = ?) "
        "GROUP BY run_id",
        store=store,
        params=[parent_id],
    )
    got = {row["run_id"]: row for row in events.iter_rows(named=True)}
    assert set(got) == set(statuses)
    for run_id, status in statuses.items():
        assert got[run_id]["events"] == ["started", status]
        assert got[run_id]["parents"] == 1 and got[run_id]["parent"] == parent_id
    dupes = ledger.query(
        "SELECT run_id, key, count(*) AS n FROM events_params GROUP BY ALL HAVING n > 1",
        store=store,
    )
    assert dupes.height == 0
    losses = dict(
        ledger.query(
            "SELECT run_id, count(*) FROM events_metrics WHERE key = 'loss' GROUP BY ALL",
            store=store,
        ).rows()
    )
    assert losses == {r: points for r, s in statuses.items() if s == "finished"}


@pytest.mark.parametrize("backend", ["loky", "threading", "sequential", "multiprocessing"])
def test_batch_on_joblib_backends(store_path, backend):
    with ledger.start_run("batch", "lr-sweep", "outer", store=store_path) as outer:
        results = run_experiments(CONFIGS, train, n_jobs=2, backend=backend)
    ledger.flush()
    _check_batch(results, store_path, outer.id)
    names = ledger.query("SELECT DISTINCT project, experiment FROM runs", store=store_path)
    assert names.rows() == [("batch", "lr-sweep")]


def test_batch_without_active_run_gets_its_own_parent(store_path):
    results = run_experiments(
        [{"lr": 0.5}, {"lr": -2.0}], train, n_jobs=1, store=store_path, experiment="solo"
    )
    ledger.flush()
    parent = ledger.query(
        "SELECT run_id, status, notes FROM runs WHERE parent_run_id IS NULL", store=store_path
    ).rows()
    # one note for the failed config (the resource sampler may add its own, e.g. no GPU)
    assert len(parent) == 1 and parent[0][1] == "finished" and parent[0][2] >= 1
    children = ledger.query(
        "SELECT name, status FROM runs WHERE parent_run_id = ? ORDER BY name",
        store=store_path,
        params=[parent[0][0]],
    ).rows()
    assert children == [("solo-0", "finished"), ("solo-1", "failed")]
    assert [r.status for r in results] == ["finished", "failed"]


@pytest.mark.slow
def test_batch_on_a_dask_local_cluster(store_path):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        ledger.start_run("dask", "on-cluster", store=store_path) as outer,
    ):
        results = run_experiments(CONFIGS, train, backend="dask", n_jobs=-1)
        worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
    ledger.flush()
    _check_batch(results, store_path, outer.id)
    pids = ledger.query(
        "SELECT DISTINCT pid FROM events_runs WHERE event = 'started' AND parent_run_id = ?",
        store=store_path,
        params=[outer.id],
    )["pid"].to_list()
    assert set(pids) <= worker_pids and pids  # the runs were made by the cluster's workers


def test_waiting_for_a_lost_run_gives_up_with_a_warning(store_path, caplog):
    import datetime as dt

    from ledger.adapters.parallel import _await_durable

    from ledger.store import open_store

    with ledger.start_run("batch", store=store_path) as run:
        pass
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    _await_durable(open_store(store_path), "batch", [run.id], since, timeout=5)  # present
    assert not caplog.records
    _await_durable(open_store(store_path), "batch", [run.id, "f" * 32], since, timeout=0.2)
    assert "1 of 2 runs of the batch were not written" in caplog.text


# -- Ray: the same batch on Ray's joblib backend, and plain Ray tasks ----------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module (start-up takes seconds): 2 CPUs, no
    dashboard. Workers are started by Ray's raylet, not forked from pytest, so they get
    the test environment (no capture, fast flushes) and this folder on their path (to
    unpickle ``train``) from the environment the raylet inherits at ``ray.init``."""
    ray = pytest.importorskip("ray")
    here = os.path.dirname(os.path.abspath(__file__))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "LEDGER_CAPTURE": "0",
            "LEDGER_CARBON": "0",
            "LEDGER_FLUSH_INTERVAL": "0.2",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
        }.items():
            patch.setenv(name, value)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _ray_worker_pids(pids):
    import psutil

    for pid in pids:
        assert pid != os.getpid()
        try:
            command = " ".join(psutil.Process(pid).cmdline()).lower()
        except psutil.NoSuchProcess:  # Ray may already have retired that worker
            continue
        assert "ray" in command


@pytest.mark.slow
def test_batch_on_ray(store_path, ray_cluster):
    with ledger.start_run("ray", "on-ray", store=store_path) as outer:
        results = run_experiments(CONFIGS, train, backend="ray", n_jobs=2)
    ledger.flush()
    _check_batch(results, store_path, outer.id)
    pids = ledger.query(
        "SELECT DISTINCT pid FROM events_runs WHERE event = 'started' AND parent_run_id = ?",
        store=store_path,
        params=[outer.id],
    )["pid"].to_list()
    assert pids
    _ray_worker_pids(pids)  # made by Ray's worker processes, not by pytest


def _ray_task(store, parent_id, index):
    """A plain Ray task that tracks itself: a child run of the driver's run."""
    import os

    import ledger

    with ledger.start_run("ray", "tasks", f"task-{index}", parent=parent_id, store=store) as run:
        run.log_param("index", index)
        for step in range(3):
            ledger.log_metric("loss", 1.0 / (index + step + 1), step=step)
    ledger.flush()  # durable before the task's result is: the driver may query at once
    return run.id, os.getpid()


@pytest.mark.slow
def test_plain_ray_tasks_log_child_runs(store_path, ray_cluster):
    task = ray_cluster.remote(_ray_task)
    with ledger.start_run("ray", "tasks", "driver", store=store_path) as outer:
        ledger.flush()
        returned = ray_cluster.get([task.remote(store_path, outer.id, i) for i in range(6)])
    ledger.flush()
    run_ids = [run_id for run_id, _ in returned]
    assert len(set(run_ids)) == 6
    _ray_worker_pids({pid for _, pid in returned})
    _check_exactly_once(store_path, outer.id, dict.fromkeys(run_ids, "finished"), points=3)
    rows = ledger.query(
        "SELECT r.name, p.value FROM runs r JOIN params p USING (run_id) "
        "WHERE r.parent_run_id = ? AND p.key = 'index' ORDER BY r.name",
        store=store_path,
        params=[outer.id],
    ).rows()
    assert rows == [(f"task-{i}", str(i)) for i in range(6)]
