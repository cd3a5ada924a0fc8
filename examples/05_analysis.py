"""Example 5: analysis of what examples 1-4 logged.

Reads the store only (no training): a comparison table of the model-comparison runs, the
best run of every example, a leaderboard plot, a diff of the two best runs, and a cost
report. It uses the analytics verbs (``ledger.leaderboard``, ``ledger.diff``,
``ledger.report_costs``).

    python examples/05_analysis.py --quick --output-dir ./analysis
"""

from __future__ import annotations

import argparse
import os

from ledger.analytics.plots import plot_leaderboard

import ledger

# Each example's experiment and the metric (and direction) that ranks its runs.
EXPERIMENTS = {
    "model-comparison": ("test_accuracy", "max"),
    "grid-search": ("mean_test_accuracy", "max"),
    "optuna-tpe": ("value", "max"),
    "parallel-joblib": ("cv_accuracy", "max"),
    "parallel-dask": ("cv_accuracy", "max"),
}


def comparison_table(store: str | None):
    """One row per model of example 1 with its key metrics side by side."""
    return ledger.query(
        """
        SELECT r.name AS model,
               max(m.value) FILTER (WHERE m.key = 'test_accuracy') AS test_acc,
               max(m.value) FILTER (WHERE m.key = 'cv_accuracy_mean') AS cv_acc,
               max(m.value) FILTER (WHERE m.key = 'test_roc_auc') AS roc_auc,
               max(m.value) FILTER (WHERE m.key = 'overfit_gap') AS gap,
               max(m.value) FILTER (WHERE m.key = 'fit_time_s') AS fit_s,
               r.status
        FROM runs r JOIN latest_metrics m USING (run_id)
        WHERE r.project = 'examples' AND r.experiment = 'model-comparison'
          AND r.parent_run_id IS NOT NULL
        GROUP BY r.run_id, r.name, r.status, r.start_time
        ORDER BY test_acc DESC, r.start_time DESC
        """,
        store=store,
    )


def ranking(store: str | None, experiment: str, metric: str, mode: str, top: int = 10):
    """The experiment's runs ranked by the best value of ``metric``."""
    return ledger.leaderboard(
        store, metric=metric, mode=mode, project="examples", experiment=experiment, top=top
    )


def main(quick: bool = False, store: str | None = None, output_dir: str = ".") -> dict:
    import polars as pl

    pl.Config.set_tbl_rows(20)
    pl.Config.set_tbl_cols(12)
    pl.Config.set_fmt_str_lengths(60)
    pl.Config.set_tbl_width_chars(180)
    ledger.flush()
    out: dict = {}
    table = comparison_table(store)
    print("== Model comparison (example 1)")
    print(table)
    out["comparison"] = table

    print("\n== Best run per example")
    best_rows = []
    for experiment, (metric, mode) in EXPERIMENTS.items():
        ranked = ranking(store, experiment, metric, mode, top=1)
        if ranked.height:
            row = ranked.row(0, named=True)
            best_rows.append((experiment, row["name"], metric, round(row[metric], 4)))
    best = pl.DataFrame(
        best_rows, schema=["experiment", "best_run", "metric", "value"], orient="row"
    )
    print(best)
    out["best"] = best

    metric, mode = EXPERIMENTS["optuna-tpe"]
    ranked = ranking(store, "optuna-tpe", metric, mode)
    print("\n== Leaderboard: Optuna trials by value")
    print(ranked)
    out["leaderboard"] = ranked
    if ranked.height:
        os.makedirs(output_dir, exist_ok=True)
        path = plot_leaderboard(ranked, os.path.join(output_dir, "leaderboard.png"), metric=metric)
        print(f"leaderboard plot: {path}")
        out["plot"] = path
    if ranked.height >= 2:
        run_a, run_b = ranked["run_id"][0], ranked["run_id"][1]
        print(f"\n== Diff of the two best trials ({ranked['name'][0]} vs {ranked['name'][1]})")
        difference = ledger.diff(store, runs=[run_a, run_b])
        print(difference)
        out["diff"] = difference

    costs = ledger.report_costs(by="experiment", project="examples", store=store).groups
    print("\n== Cost report")
    print(costs)
    out["costs"] = costs
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry")
    parser.add_argument("--store", default=os.environ.get("LEDGER_STORE"))
    parser.add_argument("--output-dir", default=".", help="where leaderboard.png goes")
    args = parser.parse_args()
    main(quick=args.quick, store=args.store, output_dir=args.output_dir)
