"""Capture costs: what a run start pays (nothing: capture is in the background) and what
the background capture itself costs, in the current git checkout and interpreter.

    .venv/bin/python benchmarks/bench_reproduce.py [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    os.environ["LEDGER_CAPTURE"] = "1"
    import ledger
    from ledger.capture import capture, capture_state

    timings = []
    for _ in range(3):
        started = time.perf_counter()
        capture_state()
        timings.append(time.perf_counter() - started)
    print(
        "capture_state (git + packages + env), median of 3: "
        f"{statistics.median(timings) * 1e3:.1f} ms"
    )

    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        first = ledger.start_run("bench", store=store)
        first_ms = (time.perf_counter() - started) * 1e3
        first.end()
        capture.wait(30)
        costs = []
        for _ in range(args.runs):
            started = time.perf_counter()
            run = ledger.start_run("bench", store=store)
            costs.append(time.perf_counter() - started)
            run.end()
        ledger.flush()
        costs.sort()
        print(f"start_run, first in process (capture starts in background): {first_ms:.2f} ms")
        print(
            f"start_run with capture ready, {args.runs} runs: median "
            f"{statistics.median(costs) * 1e3:.3f} ms, "
            f"p95 {costs[int(len(costs) * 0.95)] * 1e3:.3f} ms"
        )


if __name__ == "__main__":
    main()
