"""Logging throughput, storage cost and start-up: ledger vs a bare loop vs MLflow 3.

Measured end to end, side by side in one process run:
- single ``log_metric`` calls/s: first call -> data durable in Parquet after ``end()``;
- ``log_metrics`` points/s (dicts of 10 metrics);
- a bare Python loop appending the same tuples to a list (the practical ceiling);
- MLflow 3 ``log_metric`` and ``log_batch`` on its default sqlite store;
- bytes on disk per metric point (random float values) for both;
- ``import`` time and an empty run started and ended.

Usage: python benchmarks/bench_logging.py [--quick] [--json results.json]

The report (Markdown) goes to stdout; ``benchmarks/run_all.py`` collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def _import_seconds(module: str, repeats: int = 5) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, LEDGER_CAPTURE="0"),
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def bench_ledger(workdir: Path, calls: int, batch_calls: int) -> dict[str, float]:
    import ledger

    store = workdir / "ledger-store"
    values = [random.random() for _ in range(calls)]
    # Warm-up: the first run of a process imports pyarrow in the background (~0.3 s once).
    with ledger.start_run("bench", name="warmup", store=store) as run:
        run.log_metric("warm", 1.0)
    ledger.flush()
    metrics_dir = store / "events" / "metrics"
    before = _dir_bytes(metrics_dir, "*.parquet")

    run = ledger.start_run("bench", name="single", store=store)
    log_metric = run.log_metric
    cpu = time.process_time()  # every thread: the loop and the flusher
    start = time.perf_counter()
    for step in range(calls):
        log_metric("loss", values[step], step=step)
    run.end(wait=True)
    single_s = time.perf_counter() - start
    single_cpu = time.process_time() - cpu
    single_bytes = _dir_bytes(metrics_dir, "*.parquet") - before

    keys = [f"metric_{i}" for i in range(10)]
    rows = [
        dict(zip(keys, values[i * 10 % (calls - 10) : i * 10 % (calls - 10) + 10], strict=True))
        for i in range(min(batch_calls, 100_000))
    ]
    run = ledger.start_run("bench", name="batched", store=store)
    log_metrics = run.log_metrics
    cpu = time.process_time()
    start = time.perf_counter()
    for step in range(batch_calls):
        log_metrics(rows[step % len(rows)], step=step)
    run.end(wait=True)
    batch_s = time.perf_counter() - start
    batch_cpu = time.process_time() - cpu

    start = time.perf_counter()
    for _ in range(1000):
        ledger.start_run("bench", name="empty", store=store).end()
    empty_caller_s = (time.perf_counter() - start) / 1000
    ledger.flush()
    empty_durable_s = (time.perf_counter() - start) / 1000

    total = ledger.query("SELECT count(*) FROM metrics WHERE key <> 'warm'", store=store).item()
    assert total == calls + batch_calls * 10, total
    return {
        "single_calls_per_s": calls / single_s,
        "single_calls_per_cpu_s": calls / single_cpu,
        "batch_points_per_s": batch_calls * 10 / batch_s,
        "batch_points_per_cpu_s": batch_calls * 10 / batch_cpu,
        "bytes_per_point": single_bytes / calls,
        "empty_run_caller_ms": empty_caller_s * 1000,
        "empty_run_durable_ms": empty_durable_s * 1000,
    }


def bench_bare_loop(calls: int) -> float:
    values = [random.random() for _ in range(calls)]
    rows: list[tuple[str, float, int, float]] = []
    append = rows.append
    now = time.time
    start = time.perf_counter()
    for step in range(calls):
        append(("loss", values[step], step, now()))
    return calls / (time.perf_counter() - start)


def bench_mlflow(workdir: Path, seconds: float) -> dict[str, float]:
    import logging

    import mlflow
    from mlflow.entities import Metric

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    db = workdir / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    mlflow.set_experiment("bench")
    client = mlflow.MlflowClient()
    with mlflow.start_run():
        pass  # creates the schema before measuring
    size_before = db.stat().st_size

    with mlflow.start_run() as run:
        start = time.perf_counter()
        calls = 0
        while time.perf_counter() - start < seconds:
            mlflow.log_metric("loss", random.random(), step=calls)
            calls += 1
        single_s = time.perf_counter() - start
    single_points = calls

    with mlflow.start_run() as run:
        start = time.perf_counter()
        points = 0
        step = 0
        while time.perf_counter() - start < seconds:
            now_ms = int(time.time() * 1000)
            batch = [
                Metric(f"metric_{i}", random.random(), now_ms, step + j)
                for j in range(100)
                for i in range(10)
            ]
            client.log_batch(run.info.run_id, metrics=batch)
            points += len(batch)
            step += 100
        batch_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(20):
        with mlflow.start_run():
            pass
    empty_ms = (time.perf_counter() - start) / 20 * 1000
    size_after = db.stat().st_size
    return {
        "single_calls_per_s": single_points / single_s,
        "batch_points_per_s": points / batch_s,
        "bytes_per_point": (size_after - size_before) / (single_points + points),
        "empty_run_ms": empty_ms,
    }


def report(
    ours: dict[str, float],
    theirs: dict[str, float] | None,
    bare: float,
    import_ledger: float,
    import_mlflow: float | None,
    calls: int,
    batch_calls: int,
) -> str:
    """The Markdown report: one table, ledger and MLflow side by side, with targets."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    mlflow = theirs or {}
    rows: list[tuple[str, float, float | None, bool, str, bool]] = [
        # (measure, ledger, MLflow, lower is better, target, met)
        (
            "`log_metric` calls/s, end to end",
            ours["single_calls_per_s"],
            mlflow.get("single_calls_per_s"),
            False,
            ">= 1,000,000",
            ours["single_calls_per_s"] >= 1_000_000,
        ),
        (
            "`log_metric` calls per CPU-second (all threads)",
            ours["single_calls_per_cpu_s"],
            None,
            False,
            "",
            True,
        ),
        (
            "`log_metrics` points/s, end to end (MLflow: `log_batch`)",
            ours["batch_points_per_s"],
            mlflow.get("batch_points_per_s"),
            False,
            ">= 3,000,000",
            ours["batch_points_per_s"] >= 3_000_000,
        ),
        (
            "`log_metrics` points per CPU-second (all threads)",
            ours["batch_points_per_cpu_s"],
            None,
            False,
            "",
            True,
        ),
        (
            "bytes on disk per point (random floats)",
            ours["bytes_per_point"],
            mlflow.get("bytes_per_point"),
            True,
            "<= 10",
            ours["bytes_per_point"] <= 10,
        ),
        (
            "empty run start + end, ms (caller)",
            ours["empty_run_caller_ms"],
            mlflow.get("empty_run_ms"),
            True,
            "<= 0.2",
            ours["empty_run_caller_ms"] <= 0.2,
        ),
        ("empty run start + end, ms (durable)", ours["empty_run_durable_ms"], None, True, "", True),
        ("`import` seconds", import_ledger, import_mlflow, True, "<= 0.3", import_ledger <= 0.3),
    ]
    slower = bare / ours["single_calls_per_s"]
    lines = [
        "### Logging speed: ledger vs a bare Python loop vs MLflow 3 (sqlite store)",
        "",
        "| measure | ledger | MLflow 3 | ledger vs MLflow | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, value, other, lower, target, met in rows:
        if other:
            factor = other / value if lower else value / other
            ratio = f"{factor:,.0f}x better"
        else:
            ratio = ""
        number = f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
        other_text = "" if other is None else f"{other:,.0f}" if other >= 100 else f"{other:,.2f}"
        verdict = ("yes" if met else "**no**") if target else ""
        lines.append(f"| {name} | {number} | {other_text} | {ratio} | {target} | {verdict} |")
    lines.append(
        f"| bare Python loop appending the same tuples, /s | {bare:,.0f} | | "
        f"ledger is {slower:.1f}x slower | <= 5x | {'yes' if slower <= 5 else '**no**'} |"
    )
    if theirs:
        single_x = ours["single_calls_per_s"] / theirs["single_calls_per_s"]
        batch_x = ours["batch_points_per_s"] / theirs["batch_points_per_s"]
        lines += [
            "",
            f"- Targets vs MLflow: `log_metric` {single_x:,.0f}x (>= 1,000x: "
            f"{'yes' if single_x >= 1000 else 'no'}), `log_metrics` vs `log_batch` "
            f"{batch_x:,.0f}x (>= 100x: {'yes' if batch_x >= 100 else 'no'}).",
        ]
    else:
        lines.append("")
    lines += [
        f"- {calls:,} single calls and {batch_calls:,} calls of 10 metrics each; end to end = "
        "first call until the data is durable in Parquet after `run.end()`. CPU-seconds "
        "count the process's every thread (training loop and flusher), so they do not "
        "depend on how busy the machine is; end-to-end rates do.",
        f"- Machine: {platform.node()}, {_cpu_model()}, {os.cpu_count()} logical cores, "
        f"Python {platform.python_version()}; load average at the end {load}.",
        "- MLflow 3 on its default sqlite store, timed for a fixed interval per measure; "
        "capture, resource sampling and codecarbon off for the ledger (measured by "
        "bench_reproduce and bench_sampler).",
    ]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    calls = 500_000 if args.quick else 5_000_000
    batch_calls = 100_000 if args.quick else 1_000_000
    workdir = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    # The logging path alone: capture, resource sampling and codecarbon are measured by
    # bench_reproduce / bench_sampler (codecarbon's one-time probe costs ~1.5 s of CPU).
    for name in ("LEDGER_CAPTURE", "LEDGER_SYSTEM_METRICS", "LEDGER_CARBON"):
        os.environ.setdefault(name, "0")
    try:
        ours = bench_ledger(workdir, calls, batch_calls)
        bare = bench_bare_loop(calls)
        theirs = None if args.no_mlflow else bench_mlflow(workdir, 1.0 if args.quick else 3.0)
        import_ledger = _import_seconds("ledger")
        import_mlflow = None if args.no_mlflow else _import_seconds("mlflow", repeats=3)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(report(ours, theirs, bare, import_ledger, import_mlflow, calls, batch_calls))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "ledger": ours,
                    "mlflow": theirs,
                    "bare_loop": bare,
                    "import_ledger_s": import_ledger,
                    "import_mlflow_s": import_mlflow,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
