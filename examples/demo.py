"""`make demo`: run quick versions of examples 1-5 into ./.ledger, then show the results.

Each example runs as its own process (as a user would run it), logging into one store;
example 5 then prints the comparison table, best runs, the leaderboard (``ledger
leaderboard`` when this build has it, else a ranking over the ``runs`` and
``latest_metrics`` views), a diff of the two best trials and the cost report
(``ledger report costs`` when available, else wall time per experiment).

    python examples/demo.py              # quick versions, store ./.ledger
    python examples/demo.py --full       # the full-size examples (minutes)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = [
    ("01_tracking.py", "comprehensive tracking: 3 classifiers"),
    ("02_grid_search.py", "grid search with nested runs"),
    ("03_optuna.py", "Bayesian optimisation with Optuna"),
    ("04_parallel.py", "parallel experiments: joblib and Dask"),
    ("05_analysis.py", "analysis: leaderboard, diff, cost report"),
]


def run_examples(store: str, *, quick: bool = True, output_dir: str | None = None) -> float:
    """Run every example against ``store``; returns the seconds it took."""
    started = time.perf_counter()
    env = {**os.environ, "LEDGER_STORE": store}
    for script, title in EXAMPLES:
        print(f"\n### {script}: {title}", flush=True)
        command = [sys.executable, os.path.join(HERE, script), "--store", store]
        if quick:
            command.append("--quick")
        if script == "05_analysis.py":
            command += ["--output-dir", output_dir or os.path.join(store, "reports")]
        begun = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        print(f"({script} took {time.perf_counter() - begun:.1f} s)", flush=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="./.ledger", help="store to log into (./.ledger)")
    parser.add_argument("--full", action="store_true", help="full-size examples, not --quick")
    args = parser.parse_args()
    store = os.path.abspath(args.store)
    seconds = run_examples(store, quick=not args.full)
    print(f"\nDemo done in {seconds:.0f} s. Everything is in {store}; try:")
    print(f"  ledger runs --store {args.store}")
    print(
        f'  ledger query --store {args.store} "SELECT experiment, count(*) FROM runs GROUP BY ALL"'
    )


if __name__ == "__main__":
    main()
