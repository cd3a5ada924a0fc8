"""Query latency over a large synthetic store, and the same questions asked of MLflow 3.

    .venv/bin/python benchmarks/bench_queries.py            # 100k runs, 50M points
    .venv/bin/python benchmarks/bench_queries.py --quick    # 10k runs (a minute)

The store is generated directly as Parquet in the store's own layout
(``events/<kind>/project=bench/date=<day>/<writer>-<n>.parquet``, written through
``Store.write_parquet`` so encodings match the real writer): N runs across 8 writer ids,
10 params, 2 tags and 5 metrics x 100 steps each, one file per simulated flush of 500
runs, plus one long run with 100,000 points of one metric. Runs fall into experiments of
2,000 runs. A second store holds the first 10,000 runs, and an MLflow 3 sqlite store the
same 10,000 runs (tables filled with the rows MLflow's own log_batch writes: params,
tags, every metric point, latest_metrics). The MLflow store is left as MLflow leaves
its own: MLflow 3 never runs SQLite's ANALYZE (no ``ANALYZE`` or ``PRAGMA optimize`` in
its source), and without those statistics SQLite plans the filtered search about 7x
slower here. The top-10 question is also timed after a manual ANALYZE, and reported
beside it, so both figures are on the page.

Reported: median (and min) latency over repeats on a warm connection, peak RSS.
Generated data is kept under --dir and reused when the sizes match.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from ledger.analytics.diff import diff
from ledger.analytics.engine import connect, fetch_frame
from ledger.analytics.importance import importance
from ledger.analytics.leaderboard import leaderboard
from ledger.analytics.runs import metric_history
from ledger.analytics.summaries import summaries_sql

import ledger
from ledger.events import arrow_schema
from ledger.store import open_store
from ledger.summaries import summarize

WRITERS = 8
RUNS_PER_FILE = 500
STEPS = 100
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "lr")
EXPERIMENT_SIZE = 2000
LONG_RUN_POINTS = 100_000
PROJECT = "bench"
BASE = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
SPACING_S = 8.0  # one run starts every 8 s: 100k runs span ~9 days (9 date partitions)
OPTIMIZERS = np.array(["adam", "sgd", "adamw", "lion"])
MODELS = np.array(["resnet18", "resnet50", "vit-s", "vit-b", "convnext"])
TEAMS = np.array(["cv", "nlp", "speech", "rl"])
PACKAGES = {f"pkg{i}": f"1.{i}.0" for i in range(40)}


def _ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """UUIDv7-shaped hex ids, time-ordered like ledger.ids.new_id."""
    ms = (BASE.timestamp() + np.arange(n) * SPACING_S) * 1000
    rand = rng.integers(0, 2**62, size=n, dtype=np.int64)
    return np.array([f"{int(m):012x}7{int(r):019x}"[:32] for m, r in zip(ms, rand, strict=True)])


def _params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "lr": 10 ** rng.uniform(-5, -1, n),
        "batch_size": rng.choice([16, 32, 64, 128, 256], n),
        "depth": rng.integers(2, 13, n),
        "dropout": rng.uniform(0.0, 0.5, n),
        "optimizer": rng.choice(OPTIMIZERS, n),
        "model": rng.choice(MODELS, n),
        "weight_decay": 10 ** rng.uniform(-6, -2, n),
        "warmup": rng.integers(0, 2000, n),
        "seed": rng.integers(0, 10_000, n),
        "augment": rng.integers(0, 2, n).astype(bool),
    }


def _quality(p: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    lr_term = -((np.log10(p["lr"]) + 3.0) ** 2) * 0.05
    depth_term = 0.01 * p["depth"]
    opt_term = np.where(p["optimizer"] == "adamw", 0.03, 0.0)
    return 0.7 + lr_term + depth_term + opt_term + rng.normal(0, 0.02, len(p["lr"]))


def _table(kind: str, columns: dict[str, pa.Array | np.ndarray | list]) -> pa.Table:
    schema = arrow_schema(kind)
    arrays = []
    length = len(next(iter(columns.values())))
    for field in schema:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(length, field.type))
        elif isinstance(values, pa.Array):
            arrays.append(values.cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _ts(seconds: np.ndarray) -> pa.Array:
    micros = ((BASE.timestamp() + seconds) * 1e6).astype(np.int64)
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"))


def generate_ledger(path: str, n_runs: int, seed: int = 7) -> dict:
    """Write the synthetic store; returns facts the queries need (ids, names)."""
    rng = np.random.default_rng(seed)
    store = open_store(path)
    store.ensure_initialized()
    ids = _ids(n_runs, rng)
    p = _params(n_runs, rng)
    quality = _quality(p, rng)
    start = np.arange(n_runs) * SPACING_S
    duration = rng.uniform(30, 600, n_runs)
    status = np.where(rng.random(n_runs) < 0.03, "failed", "finished")
    experiments = np.array([f"exp-{k // EXPERIMENT_SIZE:03d}" for k in range(n_runs)])
    names = np.array([f"run-{k:06d}" for k in range(n_runs)])
    teams = rng.choice(TEAMS, n_runs)
    nan_last = rng.random(n_runs) < 0.001
    env = json.dumps(
        {
            "git": {"commit": "0" * 40, "branch": "main", "dirty": False},
            "python": {"version": "3.11.2"},
            "host": {"hostname": "bench", "os": "Linux"},
            "packages": PACKAGES,
        }
    )
    points = 0
    writer_of = np.arange(n_runs) % WRITERS
    for writer in range(WRITERS):
        writer_id = f"bench{writer:02d}" + uuid.UUID(int=writer).hex[:8]
        mine = np.flatnonzero(writer_of == writer)
        seq0 = 0
        for flush_no, chunk_start in enumerate(range(0, len(mine), RUNS_PER_FILE)):
            runs = mine[chunk_start : chunk_start + RUNS_PER_FILE]
            days = (BASE + dt.timedelta(seconds=float(start[r])) for r in runs)
            by_day: dict[dt.date, list[int]] = {}
            for r, day in zip(runs, days, strict=True):
                by_day.setdefault(day.date(), []).append(int(r))
            for day, day_runs_list in by_day.items():
                day_runs = np.array(day_runs_list)
                name = f"{writer_id}-{flush_no:06d}.parquet"
                seq0 = _write_chunk(
                    store,
                    day,
                    name,
                    writer_id,
                    day_runs,
                    ids,
                    p,
                    quality,
                    start,
                    duration,
                    status,
                    experiments,
                    names,
                    teams,
                    nan_last,
                    env,
                    rng,
                    seq0,
                )
                points += len(day_runs) * STEPS * len(METRICS)
    long_id = _write_long_run(store, rng)
    return {"ids": ids.tolist(), "points": points + LONG_RUN_POINTS, "long_run": long_id}


def _write_chunk(
    store,
    day,
    name,
    writer_id,
    runs,
    ids,
    p,
    quality,
    start,
    duration,
    status,
    experiments,
    names,
    teams,
    nan_last,
    env,
    rng,
    seq0,
) -> int:
    n = len(runs)
    run_ids = ids[runs]
    # runs: started, environment, finished/failed
    r_ts = np.concatenate([start[runs], start[runs] + 0.01, start[runs] + duration[runs]])
    store.write_parquet(
        store.partition_dir("runs", PROJECT, day),
        name,
        _table(
            "runs",
            {
                "event_id": [uuid.uuid4().hex for _ in range(3 * n)],
                "run_id": np.tile(run_ids, 3),
                "ts": _ts(r_ts),
                "writer_id": [writer_id] * (3 * n),
                "event": ["started"] * n + ["environment"] * n + list(status[runs]),
                "experiment": list(experiments[runs]) + [None] * (2 * n),
                "name": list(names[runs]) + [None] * (2 * n),
                "user": ["bench"] * n + [None] * (2 * n),
                "host": ["bench"] * n + [None] * (2 * n),
                "attrs": [None] * n + [env] * n + [None] * n,
            },
        ),
        kind="runs",
    )
    keys = list(p)
    param_rows = {"event_id": [], "run_id": [], "key": [], "value": [], "value_type": []}
    for key in keys:
        values = p[key][runs]
        kind = (
            "bool"
            if values.dtype == bool
            else "float"
            if values.dtype.kind == "f"
            else "int"
            if values.dtype.kind == "i"
            else "str"
        )
        texts = [repr(float(v)) if kind == "float" else str(v) for v in values]
        param_rows["event_id"] += [uuid.uuid4().hex for _ in range(n)]
        param_rows["run_id"] += list(run_ids)
        param_rows["key"] += [key] * n
        param_rows["value"] += texts
        param_rows["value_type"] += [kind] * n
    m = len(param_rows["run_id"])
    param_rows["ts"] = _ts(np.tile(start[runs], len(keys)))
    param_rows["writer_id"] = [writer_id] * m
    store.write_parquet(
        store.partition_dir("params", PROJECT, day), name, _table("params", param_rows), "params"
    )
    store.write_parquet(
        store.partition_dir("tags", PROJECT, day),
        name,
        _table(
            "tags",
            {
                "event_id": [uuid.uuid4().hex for _ in range(2 * n)],
                "run_id": np.tile(run_ids, 2),
                "ts": _ts(np.tile(start[runs], 2)),
                "writer_id": [writer_id] * (2 * n),
                "key": ["team"] * n + ["stage"] * n,
                "value": list(teams[runs]) + ["sweep"] * n,
            },
        ),
        "tags",
    )
    # metrics: rows grouped by run, then step, then key (as log_metrics(dict, step) lands)
    k = len(METRICS)
    per_run = STEPS * k
    total = n * per_run
    run_index = np.repeat(np.arange(n), per_run)
    step = np.tile(np.repeat(np.arange(STEPS), k), n)
    key_index = np.tile(np.arange(k), n * STEPS)
    q = quality[runs][run_index]
    progress = 1 - np.exp(-(step + 1) / 20.0)
    noise = rng.normal(0, 0.01, total)
    value = np.empty(total)
    for j, metric in enumerate(METRICS):
        sel = key_index == j
        if metric == "val_acc":
            value[sel] = q[sel] * progress[sel] + noise[sel]
        elif metric == "train_acc":
            value[sel] = (q[sel] + 0.05) * progress[sel] + noise[sel]
        elif metric == "val_loss":
            value[sel] = (1.2 - q[sel]) / progress[sel] + noise[sel]
        elif metric == "train_loss":
            value[sel] = (1.1 - q[sel]) / progress[sel] + noise[sel]
        else:
            value[sel] = 1e-3 * (1 - step[sel] / STEPS)
    last_val_acc = (step == STEPS - 1) & (key_index == 0) & nan_last[runs][run_index]
    value[last_val_acc] = np.nan
    seconds = start[runs][run_index] + step * (duration[runs][run_index] / STEPS)
    table = _table(
        "metrics",
        {
            "run_id": pa.DictionaryArray.from_arrays(pa.array(run_index, pa.int32()), run_ids),
            "key": pa.DictionaryArray.from_arrays(
                pa.array(key_index, pa.int32()), pa.array(METRICS)
            ),
            "value": value,
            "step": step,
            "ts": _ts(seconds),
            "writer_id": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(total, np.int32)), pa.array([writer_id])
            ),
            "seq": np.arange(seq0, seq0 + total),
        },
    )
    store.write_parquet(store.partition_dir("metrics", PROJECT, day), name, table, "metrics")
    _write_twin(store, day, name, table)
    return seq0 + total


def _write_twin(store, day, name, table) -> None:
    """The per-file summary the real writer leaves next to each metrics file."""
    store.write_parquet(
        store.partition_dir("summaries", PROJECT, day), name, summarize(table), "summaries"
    )


def _write_long_run(store, rng) -> str:
    """One run with LONG_RUN_POINTS points of one metric, as its own writer wrote it."""
    run_id = uuid.uuid4().hex
    writer_id = "benchlong"
    t0 = 3600.0
    day = (BASE + dt.timedelta(seconds=t0)).date()
    store.write_parquet(
        store.partition_dir("runs", PROJECT, day),
        f"{writer_id}-000001.parquet",
        _table(
            "runs",
            {
                "event_id": [uuid.uuid4().hex, uuid.uuid4().hex],
                "run_id": [run_id, run_id],
                "ts": _ts(np.array([t0, t0 + 5000])),
                "writer_id": [writer_id] * 2,
                "event": ["started", "finished"],
                "experiment": ["long", None],
                "name": ["long-run", None],
            },
        ),
        kind="runs",
    )
    flushes = 20
    per_flush = LONG_RUN_POINTS // flushes
    for f in range(flushes):
        steps = np.arange(f * per_flush, (f + 1) * per_flush)
        name = f"{writer_id}-{f + 1:06d}.parquet"
        table = _table(
            "metrics",
            {
                "run_id": [run_id] * per_flush,
                "key": ["loss"] * per_flush,
                "value": 1 / (steps + 1) + rng.normal(0, 1e-3, per_flush),
                "step": steps,
                "ts": _ts(t0 + steps * 0.05),
                "writer_id": [writer_id] * per_flush,
                "seq": steps,
            },
        )
        store.write_parquet(store.partition_dir("metrics", PROJECT, day), name, table, "metrics")
        _write_twin(store, day, name, table)
    return run_id


def generate_mlflow(ledger_path: str, db_path: str) -> str:
    """An MLflow 3 sqlite store holding the same runs as the ledger store at ledger_path."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{db_path}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("bench")
    con = connect(ledger_path)
    runs = fetch_frame(
        con,
        "SELECT run_id, name, status, epoch_ms(start_time) AS s, epoch_ms(end_time) AS e "
        "FROM runs WHERE experiment <> 'long' ORDER BY start_time",
    )
    db = sqlite3.connect(db_path)
    art = f"/tmp/mlflow-bench/{experiment_id}"
    db.executemany(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, "
        "status, start_time, end_time, source_version, lifecycle_stage, artifact_uri, "
        "experiment_id) VALUES (?, ?, 'UNKNOWN', '', '', 'bench', ?, ?, ?, '', 'active', ?, ?)",
        [
            (r, n, s.upper(), st, e, f"{art}/{r}/artifacts", int(experiment_id))
            for r, n, s, st, e in runs.iter_rows()
        ],
    )
    db.executemany(
        "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
        con.execute("SELECT key, value, run_id FROM params").fetchall(),
    )
    db.executemany(
        "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
        con.execute(
            "SELECT key, value, run_id FROM tags UNION ALL "
            "SELECT 'mlflow.runName', name, run_id FROM runs WHERE experiment <> 'long'"
        ).fetchall(),
    )
    # MLflow's sqlite store keeps NaN as 0 with is_nan=1.
    cursor = con.execute(
        "SELECT key, CASE WHEN isnan(value) THEN 0 ELSE value END, epoch_ms(ts), run_id, step, "
        "isnan(value)::INT FROM metrics WHERE run_id IN (SELECT run_id FROM runs "
        "WHERE experiment <> 'long')"
    )
    while batch := cursor.fetchmany(200_000):
        db.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            batch,
        )
    db.execute(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
        "SELECT key, value, timestamp, step, is_nan, run_uuid FROM ("
        " SELECT *, row_number() OVER (PARTITION BY run_uuid, key "
        "   ORDER BY step DESC, timestamp DESC, value DESC) AS rn FROM metrics) WHERE rn = 1"
    )
    db.commit()
    db.close()
    con.close()
    return experiment_id


def sqlite_statistics(db_path: Path, *, keep: bool) -> None:
    """Gather SQLite's planner statistics (ANALYZE) or drop them: MLflow's own store
    has none, so the headline figure is measured without."""
    db = sqlite3.connect(db_path)
    try:
        if keep:
            db.execute("ANALYZE")
        else:
            has = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
            if has.fetchone()[0]:
                db.execute("DROP TABLE sqlite_stat1")
        db.commit()
    finally:
        db.close()


def _generate_ledger_into(path: str, n: int) -> None:
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    info = generate_ledger(path, n)
    (Path(path) / "bench.json").write_text(json.dumps(info))
    print(
        f"generated {n:,} runs, {info['points']:,} points in "
        f"{time.perf_counter() - t0:.1f} s -> {path}",
        file=sys.stderr,
    )


def _generate_mlflow_into(ledger_path: str, db_path: str) -> None:
    t0 = time.perf_counter()
    Path(db_path + ".tmp").unlink(missing_ok=True)
    generate_mlflow(ledger_path, db_path + ".tmp")
    os.replace(db_path + ".tmp", db_path)
    print(f"generated MLflow sqlite store in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def _in_child(context, target, *args) -> None:
    process = context.Process(target=target, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"data generation failed (exit code {process.exitcode})")


def timed(func: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    func()  # warm-up
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), result


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def all_runs_sql(con) -> str:
    """Every run with its params and last metric values, one wide row per run (what
    mlflow.search_runs returns as a DataFrame)."""
    return f"""
    WITH p AS (PIVOT (SELECT run_id, 'params.' || key AS k, value FROM params)
               ON k USING any_value(value) GROUP BY run_id),
         m AS (PIVOT (SELECT run_id, 'metrics.' || key AS k, last_value
                      FROM {summaries_sql(con)})
               ON k USING any_value(last_value) GROUP BY run_id)
    SELECT r.run_id, r.experiment, r.name, r.status, r.start_time, r.end_time,
           p.* EXCLUDE (run_id), m.* EXCLUDE (run_id)
    FROM runs r LEFT JOIN p USING (run_id) LEFT JOIN m USING (run_id)
    """


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--mlflow-runs", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="10k runs, 2k for MLflow")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", default=os.environ.get("LEDGER_BENCH_DIR", "/tmp/ledger-bench"))
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.mlflow_runs, args.repeat = 10_000, 2_000, 5
    root = Path(args.dir)
    big = root / f"store-{args.runs}"
    small = root / f"store-{args.mlflow_runs}"
    mlflow_db = root / f"mlflow-{args.mlflow_runs}.db"
    # Generation runs in child processes so the peak RSS below is the queries' own.
    spawn = multiprocessing.get_context("spawn")
    facts = {}
    for path, n in ((big, args.runs), (small, args.mlflow_runs)):
        marker = path / "bench.json"
        if not marker.exists():
            _in_child(spawn, _generate_ledger_into, str(path), n)
        facts[n] = json.loads(marker.read_text())
    if not args.no_mlflow:
        if not mlflow_db.exists():
            _in_child(spawn, _generate_mlflow_into, str(small), str(mlflow_db))
        sqlite_statistics(mlflow_db, keep=False)  # a store generated before they were left out

    info = facts[args.runs]
    size = sum(f.stat().st_size for f in big.rglob("*.parquet"))
    rows: list[tuple[str, str, float, float, str]] = []
    con = connect(str(big))
    where = "params.optimizer = 'adamw' AND params.batch_size IN (64, 128)"

    def add(name: str, target: str, func: Callable[[], object], note: str = "") -> object:
        median, best, result = timed(func, args.repeat)
        rows.append((name, target, median, best, note))
        return result

    lb = add(
        f"leaderboard top-10 best val_acc, --where on 2 params ({args.runs:,} runs)",
        "<= 0.300 s",
        lambda: leaderboard(metric="val_acc", where=where, top=10, params="lr,depth", con=con),
    )
    ids = info["ids"]
    add(
        "diff of two runs (by id prefix)",
        "<= 0.100 s",
        lambda: diff(runs=[ids[5][:12], ids[len(ids) // 2][:12]], con=con),
    )
    add(
        "diff of two runs (by name)",
        "<= 0.100 s",
        lambda: diff(runs=["run-000005", "run-000011"], con=con),
    )
    add(
        f"importance over {EXPERIMENT_SIZE:,} runs (ped-anova)",
        "",
        lambda: importance(metric="val_acc", experiment="exp-001", con=con),
    )
    add(
        f"importance over {EXPERIMENT_SIZE:,} runs (mdi, seed 0)",
        "",
        lambda: importance(metric="val_acc", experiment="exp-001", evaluator="mdi", con=con),
    )
    # Optuna's fanova grows fast with trials (minutes at 2,000): time it on 200.
    add(
        "importance over 200 runs (fanova, seed 0)",
        "",
        lambda: importance(
            metric="val_acc",
            experiment="exp-001",
            where="name < 'run-002200'",
            evaluator="fanova",
            con=con,
        ),
    )
    add(
        "runs filtered by tag (team = 'nlp')",
        "",
        lambda: fetch_frame(
            con,
            "SELECT run_id, name, status, start_time, duration_s FROM runs WHERE run_id IN "
            "(SELECT run_id FROM tags WHERE key = 'team' AND value = 'nlp')",
        ),
    )
    long_id = info["long_run"]
    points = add(
        f"read all {LONG_RUN_POINTS:,} points of one run",
        "<= 0.020 s",
        lambda: metric_history(long_id, con=con),
    )
    assert getattr(points, "height", 0) == LONG_RUN_POINTS
    add(
        f"all {args.runs:,} runs as one wide table",
        "",
        lambda: fetch_frame(con, all_runs_sql(con)),
        "",
    )
    con.close()

    n = args.mlflow_runs
    small_con = connect(str(small))
    filter_ml = "params.optimizer = 'adamw' AND params.batch_size = '64'"
    where_small = "params.optimizer = 'adamw' AND params.batch_size = 64"
    ours_top, _, ours = timed(
        lambda: leaderboard(metric="val_acc", agg="last", where=where_small, top=10, con=small_con),
        args.repeat,
    )
    rows.append(
        (f"[{n:,} runs] ledger top-10 last val_acc, filter on 2 params", "", ours_top, ours_top, "")
    )
    ours_all, _, table = timed(lambda: fetch_frame(small_con, all_runs_sql(small_con)), args.repeat)
    rows.append(
        (
            f"[{n:,} runs] ledger all runs as a table",
            "",
            ours_all,
            ours_all,
            f"{getattr(table, 'height', 0):,} rows",
        )
    )
    small_con.close()
    if not args.no_mlflow:
        import logging

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{mlflow_db}")
        experiment = mlflow.get_experiment_by_name("bench")

        def top10():
            return mlflow.search_runs(
                [experiment.experiment_id],
                filter_string=filter_ml,
                order_by=["metrics.val_acc DESC"],
                max_results=10,
            )

        theirs_top, _, top_df = timed(top10, 3)
        ours_ids = ours["run_id"].to_list()  # type: ignore[index]
        same = list(top_df["run_id"]) == ours_ids
        rows.append(
            (
                f"[{n:,} runs] MLflow search_runs top-10 (filter + order_by)",
                f">= 20x: {theirs_top / ours_top:.0f}x",
                theirs_top,
                theirs_top,
                "same runs" if same else "DIFFERENT runs",
            )
        )
        sqlite_statistics(mlflow_db, keep=True)
        try:
            analyzed_top, _, _ = timed(top10, 3)
        finally:
            sqlite_statistics(mlflow_db, keep=False)
        rows.append(
            (
                f"[{n:,} runs] same, after a manual SQLite ANALYZE (MLflow never runs one)",
                f"{analyzed_top / ours_top:.0f}x",
                analyzed_top,
                analyzed_top,
                "",
            )
        )
        theirs_all, _, df = timed(
            lambda: mlflow.search_runs([experiment.experiment_id], max_results=n + 1000), 1
        )
        rows.append(
            (
                f"[{n:,} runs] MLflow search_runs all runs as DataFrame",
                f">= 50x: {theirs_all / ours_all:.0f}x",
                theirs_all,
                theirs_all,
                f"{len(df):,} rows",
            )
        )

    print(
        f"\nledger {ledger.__version__} query benchmark: {args.runs:,} runs, "
        f"{info['points']:,} metric points, {WRITERS} writers, "
        f"{size / 1e6:,.0f} MB of Parquet; {os.cpu_count()} CPUs; "
        f"median of {args.repeat} warm repeats\n"
    )
    print("| query | median s | min s | target | note |\n|---|---:|---:|---|---|")
    for name, target, median, best, note in rows:
        print(f"| {name} | {median:.3f} | {best:.3f} | {target} | {note} |")
    print(f"\npeak RSS: {rss_mb():,.0f} MB (target < 2,048 MB)")
    assert lb is not None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
