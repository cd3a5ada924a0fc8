"""Overhead of the resource sampler on a CPU-bound training loop.

    python benchmarks/bench_sampler.py            # full: 15 pairs x 2 s of work
    python benchmarks/bench_sampler.py --quick    # 3 pairs x 3 s

The same fixed amount of work (pure-Python arithmetic plus a numpy matmul per step, with
a metric logged per step) runs inside a ledger run with sampling off and with sampling
on at ``--interval`` (default 1 s), alternating to cancel drift on a shared machine.
Energy metering (codecarbon) is off in both so the number is the sampler's alone; its
cost is reported separately as the metering thread's CPU time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def work(steps: int, run) -> None:
    import numpy as np

    a = np.random.default_rng(0).random((96, 96))
    total = 0.0
    for step in range(steps):
        for i in range(2000):
            total += (i * 0.5) % 7
        total += float((a @ a)[0, 0])
        run.log_metric("loss", total / (step + 1), step=step)


def calibrate(seconds: float) -> int:
    class Null:
        def log_metric(self, *args, **kwargs):
            pass

    work(20, Null())  # warm up numpy
    steps = 50
    while True:
        started = time.perf_counter()
        work(steps, Null())
        elapsed = time.perf_counter() - started
        if elapsed > 0.5:
            return max(1, int(steps * seconds / elapsed))
        steps *= 2


def _thread_cpu(native_id: int | None) -> float:
    import psutil

    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return thread.user_time + thread.system_time
    return 0.0


def timed(
    steps: int, sampling: bool, interval: float, store: str
) -> tuple[float, int, float, float]:
    from ledger.adapters import resources

    import ledger

    os.environ["LEDGER_SYSTEM_METRICS"] = "1" if sampling else "0"
    os.environ["LEDGER_SYSTEM_INTERVAL"] = str(interval)
    resources._monitor = None  # settings are read per monitor; start fresh each time
    with ledger.start_run("bench", "sampler", store=store) as run:
        time.sleep(0.05)  # let the sampler thread start
        monitor = resources._monitor
        thread = monitor._thread if monitor is not None else None
        native_id = thread.native_id if thread is not None else None
        cpu_before = _thread_cpu(native_id)
        process_before = time.process_time()
        started = time.perf_counter()
        work(steps, run)
        elapsed = time.perf_counter() - started
        process_cpu = time.process_time() - process_before
        sampler_cpu = _thread_cpu(native_id) - cpu_before
    taken = monitor.samples_taken if monitor is not None else 0
    return elapsed, taken, sampler_cpu, process_cpu


def start_cost(sampling: bool, store: str, n: int = 300) -> tuple[float, float]:
    """Median and p95 microseconds of one ``start_run`` (sampler hook included)."""
    from ledger.adapters import resources

    import ledger

    os.environ["LEDGER_SYSTEM_METRICS"] = "1" if sampling else "0"
    resources._monitor = None
    ledger.start_run("bench", "start", store=store).end()  # first run: threads, imports
    times = []
    for _ in range(n):
        started = time.perf_counter()
        run = ledger.start_run("bench", "start", store=store)
        times.append((time.perf_counter() - started) * 1e6)
        run.end()
    times.sort()
    return statistics.median(times), times[int(n * 0.95)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    pairs, seconds = (3, 3.0) if args.quick else (15, 2.0)
    os.environ["LEDGER_CARBON"] = "0"
    os.environ["LEDGER_CAPTURE"] = "0"
    store = tempfile.mkdtemp(prefix="bench-sampler-")
    steps = calibrate(seconds)
    off, on, samples, sampler_cpu = [], [], 0, 0.0
    cpu_off, cpu_on = [], []
    for _ in range(pairs):
        elapsed, _, _, process_cpu = timed(steps, False, args.interval, store)
        off.append(elapsed)
        cpu_off.append(process_cpu)
        elapsed, taken, cpu, process_cpu = timed(steps, True, args.interval, store)
        on.append(elapsed)
        cpu_on.append(process_cpu)
        samples += taken
        sampler_cpu += cpu
    base, sampled = statistics.median(off), statistics.median(on)
    overhead = (sampled - base) / base * 100
    # Direct cost of one sample (what the sampler thread spends per tick).
    from ledger.adapters.resources import Gpus, HostSampler

    host, gpus = HostSampler(), Gpus()
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        host.sample(time.time())
        gpus.sample(time.time())
    per_sample_ms = (time.perf_counter() - started) / n * 1000
    start_off, start_on = start_cost(False, store), start_cost(True, store)
    print(
        f"start_run: median {start_off[0]:.0f} µs (p95 {start_off[1]:.0f}) sampling off, "
        f"{start_on[0]:.0f} µs (p95 {start_on[1]:.0f}) sampling on"
    )
    print(f"work per run: {steps} steps, ~{base:.1f} s; {pairs} pairs; interval {args.interval} s")
    print(f"sampling off: median {base:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in off)})")
    print(f"sampling on:  median {sampled:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in on)})")
    print(
        f"samples taken while on: {samples}; one sample costs {per_sample_ms:.3f} ms "
        f"(= {per_sample_ms / (args.interval * 1000) * 100:.3f}% of one core at this interval)"
    )
    cpu_base, cpu_sampled = statistics.median(cpu_off), statistics.median(cpu_on)
    print(
        f"process CPU time: median {cpu_base:.3f} s off, {cpu_sampled:.3f} s on: "
        f"{(cpu_sampled - cpu_base) / cpu_base * 100:+.2f}% (less noisy than wall time)"
    )
    print(
        f"sampler thread CPU time: {sampler_cpu:.3f} s over {sum(on):.1f} s of sampled work "
        f"= {sampler_cpu / sum(on) * 100:.3f}% (the sampler's own cost)"
    )
    best_off, best_on = min(off), min(on)
    print(
        f"fastest run: {best_off:.3f} s off, {best_on:.3f} s on: "
        f"{(best_on - best_off) / best_off * 100:+.2f}% (the least disturbed pair of minima)"
    )
    print(
        f"wall-time difference (median on vs off): {overhead:+.2f}% (target < 1%; noisy on a "
        "shared machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
