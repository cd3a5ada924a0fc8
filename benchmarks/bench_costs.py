"""Cost report latency and peak memory at scale (issue 9: < 2 s, < 4 GB on 2 cores).

    python benchmarks/bench_costs.py --store benchmarks/.scale-store   # 1M runs
    python benchmarks/bench_costs.py --quick                             # 20k runs

Times ``ledger.report_costs`` on the scale store that ``bench_scale.py`` builds (runs,
tags, params, metrics and their summaries, and cost events as real runs leave them:
``bench_scale.cost_columns``, one ``resources`` event, three cumulative ``energy``
windows per run, a bill for 1 run in 100), compacted to one costs file per partition
with its twin cost summary, as ``ledger compact`` leaves a store. A store built by an
older generator (layout 3: three costs files per partition, no cost summaries) is
brought to that layout in place (``bench_scale.add_cost_summaries``).

Each variant runs in a fresh process: the first call (cold: imports, connect, views,
query) and the median of the next calls (warm: a new connection each time), with the
CPU time of each and that process's peak RSS. ``--baseline DIR`` times another checkout
(e.g. the main branch) side by side on the same store, variant by variant.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

VARIANTS: dict[str, dict[str, Any]] = {
    "by project": {"by": "project"},
    "by project, one project": {"by": "project", "project": "vision"},
    "by month": {"by": "month"},
    "by day, 7-day window": {"by": "day", "since": "2026-02-01", "until": "2026-02-08"},
    "by tag:team": {"by": "tag:team"},
    "by param:optimizer, budget": {"by": "param:optimizer", "budget": 1000.0},
    "one project, --metric val_acc": {"by": "experiment", "project": "vision", "metric": "val_acc"},
}


def prepare(store: str, quick: bool) -> int:
    """Build (or bring up to date) the scale store; its number of runs."""
    import bench_scale

    manifest_path = os.path.join(store, "bench-manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        if manifest.get("layout") == 3:
            print("adding cost summaries (layout 3 -> 4)", file=sys.stderr)
            manifest["bytes"] += bench_scale.add_cost_summaries(store)
            manifest["layout"] = bench_scale.LAYOUT
            with open(manifest_path, "w") as handle:
                json.dump(manifest, handle)
    else:
        manifest = {}
    if manifest.get("layout") != bench_scale.LAYOUT:
        command = [sys.executable, os.path.join(HERE, "bench_scale.py"), "--store", store]
        subprocess.run(command + (["--quick"] if quick else []), check=True)
        with open(manifest_path) as handle:
            manifest = json.load(handle)
    return int(manifest["runs"])


def measure(root: str, variant: str, repeat: int) -> dict[str, Any]:
    from ledger.analytics.costs import report_costs

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    times, cpus = [], []
    groups = 0
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), cpu()
        report = report_costs(root, **VARIANTS[variant])
        times.append(time.perf_counter() - started)
        cpus.append(cpu() - cpu_started)
        groups = len(report.groups)
    return {
        "variant": variant,
        "cold_s": times[0],
        "warm_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "cold_cpu_s": cpus[0],
        "warm_cpu_s": statistics.median(cpus[1:]) if len(cpus) > 1 else cpus[0],
        "groups": groups,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_variants(python: str, store: str, variants: list[str], repeat: int) -> list[dict[str, Any]]:
    results = []
    for variant in variants:
        done = subprocess.run(
            [
                python,
                os.path.join(HERE, "bench_costs.py"),
                "--measure",
                variant,
                "--store",
                store,
                "--repeat",
                str(repeat),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="the bench_scale store (default: .scale-store)")
    parser.add_argument("--quick", action="store_true", help="use bench_scale's quick store")
    parser.add_argument("--repeat", type=int, default=4, help="calls per variant (1 cold)")
    parser.add_argument("--only", action="append", help="time only these variants")
    parser.add_argument(
        "--baseline", help="another checkout (its .venv) to time side by side, e.g. main"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        # Time the ledger this interpreter's environment installs (its own checkout),
        # not the one beside this script.
        sys.path.remove(os.path.dirname(HERE))
        print(json.dumps(measure(args.store, args.measure, args.repeat)))
        return 0
    store = os.path.abspath(
        args.store or os.path.join(HERE, ".scale-store" + ("-quick" if args.quick else ""))
    )
    runs = prepare(store, args.quick)
    variants = args.only or list(VARIANTS)
    load = os.getloadavg()
    results, baseline = [], {}
    python = os.path.join(args.baseline, ".venv", "bin", "python") if args.baseline else None
    for variant in variants:
        # Variant by variant, this checkout then the baseline: both see the same load.
        results += run_variants(sys.executable, store, [variant], args.repeat)
        if python is not None:
            baseline.update(
                (row["variant"], row) for row in run_variants(python, store, [variant], args.repeat)
            )
    after = os.getloadavg()
    print(f"### Cost report: {runs:,} runs ({os.cpu_count()} CPUs)")
    print()
    head = "| report_costs(...) | cold (new process) | cold CPU | warm (median) | warm CPU "
    head += "| peak RSS | rows |"
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if baseline:
        head += " baseline cold | baseline cold CPU | baseline warm |"
        rule += "---:|---:|---:|"
    print(head)
    print(rule)
    for r in results:
        line = (
            f"| {r['variant']} | {r['cold_s']:.2f} s | {r['cold_cpu_s']:.2f} s | "
            f"{r['warm_s']:.2f} s | {r['warm_cpu_s']:.2f} s | {r['peak_rss_mb']:,.0f} MB | "
            f"{r['groups']} |"
        )
        old = baseline.get(r["variant"])
        if old:
            line += f" {old['cold_s']:.2f} s | {old['cold_cpu_s']:.2f} s | {old['warm_s']:.2f} s |"
        print(line)
    print()
    print(
        f"- Load average (1 min) {load[0]:.2f} before, {after[0]:.2f} after. Cost events: "
        f"{runs * 4:,} + bills, one compacted costs file per partition with its cost summary."
    )
    if baseline:
        print(
            f"- Baseline: {args.baseline} on the same store, each variant right after this "
            "checkout's (it reads the raw cost events; the cost summaries are files it does "
            "not know)."
        )
    print(
        "- CPU time is user + system time of the call (all threads): on a shared, loaded "
        "machine it is the steadier figure; on a quiet 2-core machine the wall time comes "
        "close to it or below."
    )
    print("- Target (issue 9): < 2 s on 2 cores, peak memory < 4 GB.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
