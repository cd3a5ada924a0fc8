"""Benchmark: importing MLflow stores vs MLflow's own client reading the same data.

    python benchmarks/bench_import.py            # 10,000 runs x (10 params, 5 metrics x 100 steps)
    python benchmarks/bench_import.py --quick    # 1,000 runs
    python benchmarks/bench_import.py --runs 3000 --skip-mlflow-read

The fixture stores are cached in ``benchmarks/.import-cache/<runs>/`` (``--cache DIR`` to
put them elsewhere, ``--no-cache`` for a temporary folder), so a rerun only times.

Fixture stores are generated directly (no MLflow logging calls, which would take hours):
the sqlite store gets MLflow's own schema (created by MLflow's SqlAlchemyStore), then
rows inserted in bulk the way MLflow writes them (params, tags, metrics, latest_metrics);
the file store is written in MLflow's ``mlruns/`` layout (meta.yaml, params/, tags/,
metrics/ with ``<timestamp_ms> <value> <step>`` lines).

"MLflow read" is what a migration script using MLflow's client does: ``search_runs`` over
the experiment (paged) plus ``get_metric_history`` for every (run, metric).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid

N_PARAMS = 10
N_METRICS = 5
N_STEPS = 100
T0 = 1_700_000_000_000


def _run_rows(n_runs: int, seed: int = 0):
    rng = random.Random(seed)
    for index in range(n_runs):
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex
        start = T0 + index * 1000
        yield index, run_id, start


def make_sqlite(path: str, n_runs: int) -> str:
    """An MLflow sqlite store with MLflow's schema and ``n_runs`` runs, in bulk."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{path}"
    store = SqlAlchemyStore(uri, os.path.join(os.path.dirname(path), "artifacts"))
    experiment_id = store.create_experiment("bench")
    store.engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA journal_mode = OFF")
    runs, params, tags, metrics, latest = [], [], [], [], []
    for index, run_id, start in _run_rows(n_runs):
        name = f"run-{index}"
        runs.append(
            (
                run_id,
                name,
                "LOCAL",
                "bench.py",
                "",
                "bench",
                "FINISHED",
                start,
                start + N_STEPS * 10,
                "",
                "active",
                "",
                int(experiment_id),
            )
        )
        params.extend((f"p{k}", str(index * 0.001 * (k + 1)), run_id) for k in range(N_PARAMS))
        tags.extend([("mlflow.runName", name, run_id), ("mlflow.user", "bench", run_id)])
        for k in range(N_METRICS):
            key = f"m{k}"
            for step in range(N_STEPS):
                value = math.sin(index + step * 0.1 + k)
                metrics.append((key, value, start + step * 10, run_id, step, 0))
            latest.append((key, value, start + (N_STEPS - 1) * 10, N_STEPS - 1, run_id, 0))
    con.executemany(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
        "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
        "experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        runs,
    )
    con.executemany('INSERT INTO params ("key", value, run_uuid) VALUES (?,?,?)', params)
    con.executemany('INSERT INTO tags ("key", value, run_uuid) VALUES (?,?,?)', tags)
    con.executemany(
        'INSERT INTO metrics ("key", value, timestamp, run_uuid, step, is_nan) '
        "VALUES (?,?,?,?,?,?)",
        metrics,
    )
    con.executemany(
        'INSERT INTO latest_metrics ("key", value, timestamp, step, run_uuid, is_nan) '
        "VALUES (?,?,?,?,?,?)",
        latest,
    )
    con.commit()
    con.close()
    return uri


def make_file_store(root: str, n_runs: int) -> str:
    """An ``mlruns/`` file store with ``n_runs`` runs, in MLflow's layout."""
    experiment = os.path.join(root, "1")
    os.makedirs(experiment)
    with open(os.path.join(experiment, "meta.yaml"), "w") as handle:
        handle.write(
            f"artifact_location: file://{experiment}\ncreation_time: {T0}\nexperiment_id: '1'\n"
            f"last_update_time: {T0}\nlifecycle_stage: active\nname: bench\n"
        )
    for index, run_id, start in _run_rows(n_runs):
        run_dir = os.path.join(experiment, run_id)
        for sub in ("params", "tags", "metrics", "artifacts"):
            os.makedirs(os.path.join(run_dir, sub))
        with open(os.path.join(run_dir, "meta.yaml"), "w") as handle:
            handle.write(
                f"artifact_uri: file://{run_dir}/artifacts\nend_time: {start + N_STEPS * 10}\n"
                f"entry_point_name: ''\nexperiment_id: '1'\nlifecycle_stage: active\n"
                f"run_id: {run_id}\nrun_name: run-{index}\nsource_name: ''\nsource_type: 4\n"
                f"source_version: ''\nstart_time: {start}\nstatus: 3\ntags: []\nuser_id: bench\n"
            )
        for k in range(N_PARAMS):
            with open(os.path.join(run_dir, "params", f"p{k}"), "w") as handle:
                handle.write(str(index * 0.001 * (k + 1)))
        for key, value in (("mlflow.runName", f"run-{index}"), ("mlflow.user", "bench")):
            with open(os.path.join(run_dir, "tags", key), "w") as handle:
                handle.write(value)
        for k in range(N_METRICS):
            lines = "".join(
                f"{start + step * 10} {math.sin(index + step * 0.1 + k)!r} {step}\n"
                for step in range(N_STEPS)
            )
            with open(os.path.join(run_dir, "metrics", f"m{k}"), "w") as handle:
                handle.write(lines)
    return root


def mlflow_read(uri: str, limit: int | None = None) -> tuple[float, float, int, int]:
    """Seconds for MLflow's client to read every run (or the first ``limit``) and history."""
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow import MlflowClient

    started, cpu = time.perf_counter(), time.process_time()
    client = MlflowClient(tracking_uri=uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs, points, token = 0, 0, None
    while True:
        page = client.search_runs(
            experiment_ids, max_results=min(limit or 50000, 50000), page_token=token
        )
        for run in page:
            runs += 1
            for key in run.data.metrics:
                points += len(client.get_metric_history(run.info.run_id, key))
        token = page.token
        if not token or (limit and runs >= limit):
            break
    return time.perf_counter() - started, time.process_time() - cpu, runs, points


def ledger_import(uri: str, store: str) -> tuple[float, float, int, int]:
    from ledger.adapters.mlflow_import import import_runs

    started, cpu = time.perf_counter(), time.process_time()
    summary = import_runs(uri, store, artifacts="skip")
    seconds = time.perf_counter() - started
    assert not summary.errors, summary.errors[:3]
    return seconds, time.process_time() - cpu, summary.runs, summary.metric_points


def _import_twice(uri: str, store: str) -> list[tuple[float, float, int, int]]:
    """In a fresh process: import into an empty store, then import again (nothing new).
    What an import uses is imported first (MLflow's own import is not timed either)."""
    import ledger.adapters.mlflow_import  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    shutil.rmtree(store, ignore_errors=True)
    try:
        return [ledger_import(uri, store), ledger_import(uri, store)]
    finally:
        shutil.rmtree(store, ignore_errors=True)


def timed_imports(uri: str, store: str, repeat: int) -> list[list[tuple[float, float, int, int]]]:
    """:func:`_import_twice` ``repeat`` times, each in a new process: one import's time
    swings by ~20% with how fast the kernel hands out fresh memory, so the table shows
    the median and the range rather than one draw."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")
    results = []
    for _ in range(repeat):
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            results.append(pool.submit(_import_twice, uri, store).result())
    return results


def _median_row(
    kind: str, what: str, draws: list[tuple[float, float, int, int]]
) -> tuple[str, str, float, float, int, int]:
    ordered = sorted(draws)
    seconds, cpu, runs, points = ordered[len(ordered) // 2]
    if len(draws) > 1:
        what += f" (median of {len(draws)}, {ordered[0][0]:.2f}-{ordered[-1][0]:.2f} s)"
    return kind, what, seconds, cpu, runs, points


CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".import-cache")
FIXTURE_VERSION = "1"  # bump when make_sqlite / make_file_store change


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 runs")
    parser.add_argument("--skip-mlflow-read", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=3, help="imports per store, each in a new process"
    )
    parser.add_argument(
        "--mlflow-read-runs",
        type=int,
        metavar="N",
        help="Time MLflow's client on the first N runs only (rates are per run/point; "
        "default: all runs with --quick, the first 300 otherwise: MLflow needs one "
        "call per run and metric, so reading all 10,000 takes it over an hour).",
    )
    parser.add_argument("--cache", metavar="DIR", help="Where fixture stores are kept.")
    parser.add_argument("--no-cache", action="store_true", help="Build in a temporary folder.")
    parser.add_argument("--keep", metavar="DIR", help=argparse.SUPPRESS)  # old name of --cache
    args = parser.parse_args()
    n_runs = 1000 if args.quick else args.runs
    read_runs = args.mlflow_read_runs
    if read_runs is None and n_runs > 1000:
        read_runs = 300
    if read_runs is not None and read_runs >= n_runs:
        read_runs = None
    if args.no_cache:
        folder = tempfile.mkdtemp(prefix="bench-import-")
    else:
        base = args.cache or args.keep or CACHE
        folder = os.path.join(base, f"v{FIXTURE_VERSION}-{n_runs}")
    os.makedirs(folder, exist_ok=True)
    print(
        f"### MLflow import: {n_runs:,} runs x ({N_PARAMS} params, {N_METRICS} metrics x "
        f"{N_STEPS} steps) = {n_runs * N_METRICS * N_STEPS:,} metric points\n"
    )
    print(f"cores: {os.cpu_count()}, load average before: {_load()}", file=sys.stderr)
    try:
        rows = []
        for kind in ("sqlite", "file"):
            started = time.perf_counter()
            if kind == "sqlite":
                db = os.path.join(folder, "mlflow.db")
                uri = f"sqlite:///{db}" if os.path.exists(db) else make_sqlite(db, n_runs)
            else:
                root = os.path.join(folder, "mlruns")
                if not os.path.exists(os.path.join(root, "done")):
                    shutil.rmtree(root, ignore_errors=True)
                    make_file_store(root, n_runs)
                    open(os.path.join(root, "done"), "w").close()
                uri = root
            print(
                f"  {kind} fixture ready in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            draws = timed_imports(uri, os.path.join(folder, f"ledger-{kind}"), args.repeat)
            rows.append(_median_row(kind, "ledger import", [first for first, _ in draws]))
            rows.append(
                _median_row(kind, "ledger re-import (no changes)", [again for _, again in draws])
            )
            if not args.skip_mlflow_read:
                seconds, cpu, runs, points = mlflow_read(uri, read_runs)
                what = "MLflow client read" + (f" (first {runs:,} runs)" if read_runs else "")
                rows.append((kind, what, seconds, cpu, runs, points))
        print(
            "| store | what | wall s | CPU s | runs/s | metric points/s | all runs at this rate |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")
        for kind, what, seconds, cpu, runs, points in rows:
            print(
                f"| {kind} | {what} | {seconds:.2f} | {cpu:.2f} | {runs / seconds:,.0f} | "
                f"{points / seconds:,.0f} | {seconds * n_runs / max(runs, 1):.1f} s |"
            )
        print(
            "\nruns/s and points/s are per wall-clock second; CPU s is this process's CPU time"
            "\n(all threads), the steadier figure on a shared machine. MLflow's read is"
            "\n`search_runs` (paged) + `get_metric_history` per (run, metric); when it reads"
            "\nthe first N runs only, the last column scales its time to all runs. Each"
            "\nledger import runs in a new process into an empty store (--repeat times)."
            f"\nLoad average after: {_load()} on {os.cpu_count()} cores."
        )
    finally:
        if args.no_cache:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
