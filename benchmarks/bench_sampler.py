"""Overhead of the resource sampler on a CPU-bound training loop (target: < 1% at 1 s).

    python benchmarks/bench_sampler.py            # full: 20 pairs x 3 s of work
    python benchmarks/bench_sampler.py --quick    # 6 pairs x 1.5 s

The same fixed amount of work (pure-Python arithmetic plus a numpy matmul per step, with
a metric logged per step) runs inside a ledger run with sampling off (A) and on (B) at
``--interval`` (default 1 s). On a shared, noisy machine a difference of medians says
little, so the benchmark reports three things:

1. Paired wall-time differences: the runs are interleaved in pairs whose order
   alternates (AB, BA, AB, ...), so drift in the machine's load hits both arms alike;
   each pair gives (B - A) / A, and the report gives their median and mean with 95%
   bootstrap confidence intervals (10,000 resamples, fixed seed).
2. The same for process CPU time (less sensitive to other processes than wall time).
3. The direct measure: the CPU time of the sampler thread itself (per-thread user +
   system time from the kernel), per sample and as a share of the sampled runs' wall
   time. In CPython the sampler holds the GIL while it runs, so this is the time it can
   take from a single-threaded training loop: an upper bound on its overhead there.

Energy metering (codecarbon) is off in both arms so the number is the sampler's alone.
The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import random
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
    """Steps that take ``seconds`` of CPU time (not wall time: on a loaded machine wall
    time would size the work by how busy the machine was)."""

    class Null:
        def log_metric(self, *args, **kwargs):
            pass

    work(20, Null())  # warm up numpy
    steps = 50
    while True:
        started = time.process_time()
        work(steps, Null())
        elapsed = time.process_time() - started
        if elapsed > 0.5:
            return max(1, int(steps * seconds / elapsed))
        steps *= 2


def _thread_cpu(thread) -> float:
    """CPU time of ``thread`` from its own POSIX clock (nanosecond resolution; psutil's
    per-thread times tick in 10 ms, coarser than one sample)."""
    if thread is None or thread.ident is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (OSError, AttributeError):  # the thread has exited
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
        taken_before = monitor.samples_taken if monitor is not None else 0
        cpu_before = _thread_cpu(thread)
        process_before = time.process_time()
        started = time.perf_counter()
        work(steps, run)
        elapsed = time.perf_counter() - started
        process_cpu = time.process_time() - process_before
        sampler_cpu = _thread_cpu(thread) - cpu_before
        taken = (monitor.samples_taken if monitor is not None else 0) - taken_before
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


def bootstrap(values: list[float], stat, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``stat`` over ``values``."""
    rng = random.Random(seed)
    k = len(values)
    draws = sorted(stat([values[rng.randrange(k)] for _ in range(k)]) for _ in range(n))
    return draws[int(0.025 * n)], draws[int(0.975 * n) - 1]


def describe(name: str, diffs: list[float]) -> str:
    median_ci = bootstrap(diffs, statistics.median)
    mean_ci = bootstrap(diffs, statistics.fmean)
    return (
        f"{name}: median {statistics.median(diffs):+.2f}% "
        f"(95% CI {median_ci[0]:+.2f}% .. {median_ci[1]:+.2f}%), "
        f"mean {statistics.fmean(diffs):+.2f}% (95% CI {mean_ci[0]:+.2f}% .. {mean_ci[1]:+.2f}%)"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, help="pairs of runs (default 20, quick 6)")
    parser.add_argument("--seconds", type=float, help="work per run (default 3, quick 1.5)")
    args = parser.parse_args()
    pairs = args.pairs or (6 if args.quick else 20)
    seconds = args.seconds or (1.5 if args.quick else 3.0)
    os.environ["LEDGER_CARBON"] = "0"
    os.environ["LEDGER_CAPTURE"] = "0"
    # One BLAS thread: the loop is single-threaded, and idle BLAS workers spinning
    # after each matmul would add noise to the process CPU time of both arms.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    load_before = os.getloadavg()
    store = tempfile.mkdtemp(prefix="bench-sampler-")
    steps = calibrate(seconds)
    for sampling in (False, True):  # warm-up pair, not counted (imports, first flushes)
        timed(max(1, steps // 4), sampling, args.interval, store)
    wall_diffs, cpu_diffs = [], []
    off, on = [], []
    samples, sampler_cpu = 0, 0.0
    for pair in range(pairs):
        results = {}
        for sampling in (False, True) if pair % 2 == 0 else (True, False):
            results[sampling] = timed(steps, sampling, args.interval, store)
        (wall_a, _, _, cpu_a), (wall_b, taken, thread_cpu, cpu_b) = results[False], results[True]
        off.append(wall_a)
        on.append(wall_b)
        wall_diffs.append((wall_b - wall_a) / wall_a * 100)
        cpu_diffs.append((cpu_b - cpu_a) / cpu_a * 100)
        samples += taken
        sampler_cpu += thread_cpu
    # Direct cost of one sample in a tight loop (what the sampler thread does per tick).
    from ledger.adapters.resources import Gpus, HostSampler

    host, gpus = HostSampler(), Gpus()
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        host.sample(time.time())
        gpus.sample(time.time())
    per_sample_ms = (time.perf_counter() - started) / n * 1000
    start_off, start_on = start_cost(False, store), start_cost(True, store)
    load_after = os.getloadavg()
    sampled_wall = sum(on)
    per_sample_thread_ms = sampler_cpu / samples * 1000 if samples else float("nan")
    thread_share = sampler_cpu / sampled_wall * 100

    def interval(diffs: list[float]) -> str:
        low, high = bootstrap(diffs, statistics.median)
        return f"{statistics.median(diffs):+.2f}% [{low:+.2f}%, {high:+.2f}%]"

    print(f"### Resource sampler overhead (interval {args.interval:g} s, target < 1%)")
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| sampler thread CPU per sample | {per_sample_thread_ms:.3f} ms |")
    print(f"| sampler thread CPU / sampled wall time (direct) | {thread_share:.3f}% |")
    print(f"| paired wall-time difference, median [95% CI] | {interval(wall_diffs)} |")
    print(f"| paired process-CPU difference, median [95% CI] | {interval(cpu_diffs)} |")
    print(f"| one sample in a tight loop | {per_sample_ms:.3f} ms |")
    print(f"| start_run median, off / on | {start_off[0]:.0f} µs / {start_on[0]:.0f} µs |")
    print()
    print(
        f"- {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
        f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.2f}' for x in load_after)} after."
    )
    print(
        f"- Work per run: {steps} steps, ~{seconds:.1f} s of CPU time; {pairs} pairs, "
        "order alternating AB/BA; energy metering off in both arms; one BLAS thread."
    )
    print(
        f"- Sampling off: median {statistics.median(off):.3f} s; on: median "
        f"{statistics.median(on):.3f} s (wall)."
    )
    print(f"- {describe('Paired wall-time difference (on - off) / off', wall_diffs)}.")
    print(f"- {describe('Paired process-CPU difference (on - off) / off', cpu_diffs)}.")
    print(
        f"- Sampler thread: {sampler_cpu * 1000:.1f} ms of CPU for {samples} samples over "
        f"{sampled_wall:.1f} s of sampled work. It holds the GIL while it runs, so this is "
        "what it can take from a single-threaded loop: the direct, load-independent measure."
    )
    print(
        f"- start_run p95: {start_off[1]:.0f} µs off, {start_on[1]:.0f} µs on; one sample "
        f"in a tight loop = {per_sample_ms / (args.interval * 1000) * 100:.3f}% of one core "
        "at this interval."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
