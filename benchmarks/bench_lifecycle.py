"""Query latency on a store of many small files, before and after compaction.

    python benchmarks/bench_lifecycle.py             # 20,000 small files (~1-2 min)
    python benchmarks/bench_lifecycle.py --quick     # 2,000 files

Small files are what many short flushes leave (one per run per flush interval). The
store is built with the store's own atomic writer (``Store.write_parquet``), 50 metric
rows per file, spread over 100 runs, with the runs' lifecycle events, so every view
answers. Then ``ledger.compact`` merges them and the same queries run again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time

import pyarrow as pa
from ledger.analytics.engine import connect, fetch_frame

import ledger
from ledger import events, maintenance
from ledger.ids import new_id
from ledger.store import open_store

QUERIES = {
    "count metrics": "SELECT count(*) FROM metrics",
    "latest_metrics (all runs)": "SELECT count(*) FROM latest_metrics",
    "one run's loss curve": "SELECT step, value FROM metrics WHERE run_id = ? AND key = 'loss'",
    "runs list": "SELECT run_id, status, duration_s FROM runs ORDER BY start_time DESC LIMIT 50",
}


def build(root: str, files: int, rows_per_file: int, n_runs: int) -> tuple[list[str], int]:
    store = open_store(root)
    store.ensure_initialized()
    day = dt.datetime.now(dt.timezone.utc).date()
    run_ids = [new_id() for _ in range(n_runs)]
    t0 = int((time.time() - 3600) * 1e6)
    runs_schema = events.arrow_schema("runs")
    rows = []
    for i, run_id in enumerate(run_ids):
        for event, offset in (("started", 0), ("finished", 3_000_000_000)):
            rows.append(
                {
                    "event_id": new_id(),
                    "run_id": run_id,
                    "ts": t0 + offset + i,
                    "writer_id": "bench",
                    "event": event,
                    "experiment": "bench",
                    "name": f"r{i}",
                    "parent_run_id": None,
                    "user": "bench",
                    "host": "bench",
                    "pid": 1,
                    "message": None,
                    "exit_code": None,
                    "attrs": None,
                }
            )
    store.write_parquet(
        store.partition_dir("runs", "bench", day),
        "bench-runs.parquet",
        pa.Table.from_pylist(rows, schema=runs_schema),
        "runs",
    )
    schema = events.arrow_schema("metrics")
    total = 0
    for n in range(files):
        run_id = run_ids[n % n_runs]
        base_step = (n // n_runs) * (rows_per_file // 2)
        steps = [base_step + j // 2 for j in range(rows_per_file)]
        table = pa.table(
            {
                "run_id": [run_id] * rows_per_file,
                "key": ["loss" if j % 2 == 0 else "acc" for j in range(rows_per_file)],
                "value": [1.0 / (s + 1) for s in steps],
                "step": steps,
                "ts": pa.array(
                    [t0 + n * 1000 + j for j in range(rows_per_file)], pa.timestamp("us", tz="UTC")
                ),
                "writer_id": [f"w{n % n_runs}"] * rows_per_file,
                "seq": [n * rows_per_file + j for j in range(rows_per_file)],
            },
            schema=schema,
        )
        store.write_parquet(
            store.partition_dir("metrics", "bench", day),
            f"w{n % n_runs}-{n:06d}.parquet",
            table,
            "metrics",
        )
        total += rows_per_file
    return run_ids, total


def time_queries(root: str, run_id: str, repeats: int) -> dict[str, float]:
    out = {}
    con = connect(root, threads=2)
    try:
        for name, sql in QUERIES.items():
            params = [run_id] if "?" in sql else None
            fetch_frame(con, sql, params)  # warm: file listing caches
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                fetch_frame(con, sql, params)
                samples.append(time.perf_counter() - start)
            out[name] = statistics.median(samples)
    finally:
        con.close()
    return out


def count_files(root: str) -> int:
    return sum(
        1
        for _, _, names in os.walk(os.path.join(root, "events"))
        for name in names
        if name.endswith(".parquet")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rows-per-file", type=int, default=50)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 files")
    parser.add_argument("--store", help="Build here (default: a temp dir)")
    args = parser.parse_args(argv)
    files = 2_000 if args.quick else args.files
    root = args.store or tempfile.mkdtemp(prefix="ledger-bench-lifecycle-")
    os.environ["LEDGER_CAPTURE"] = "0"
    start = time.perf_counter()
    run_ids, rows = build(root, files, args.rows_per_file, args.runs)
    print(
        f"built {count_files(root)} files, {rows:,} metric rows in "
        f"{time.perf_counter() - start:.1f}s at {root}"
    )
    before = time_queries(root, run_ids[0], args.repeats)
    start = time.perf_counter()
    result = ledger.compact(root, grace=0)
    seconds = time.perf_counter() - start
    print(
        f"compacted {result.files} files ({result.rows:,} rows) into {result.files_written} "
        f"in {seconds:.2f}s: {result.rows / seconds:,.0f} rows/s, "
        f"{result.files / seconds:,.0f} files/s; {count_files(root)} files left"
    )
    after = time_queries(root, run_ids[0], args.repeats)
    print()
    print("| query | before (s) | after (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for name in QUERIES:
        print(
            f"| {name} | {before[name]:.3f} | {after[name]:.3f} | "
            f"{before[name] / after[name]:.0f}x |"
        )
    maintenance.collect_garbage(root, grace=0)


if __name__ == "__main__":
    sys.exit(main())
