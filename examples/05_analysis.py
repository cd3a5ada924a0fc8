"""Example 5: analysis of what examples 1-4 logged.

Reads the store only (no training): a comparison table of the model-comparison runs, the
best run of every example, a leaderboard plot, a diff of the two best runs, and a cost
report. It uses the analytics verbs (``ledger.leaderboard``, ``ledger.diff``,
``ledger.report_costs``) when this build has them, and plain SQL over the views otherwise,
so it runs on any ledger install.

    python examples/05_analysis.py --quick --output-dir ./analysis
"""

from __future__ import annotations

import argparse
import os

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
    """The experiment's finished runs ranked by ``metric`` (leaderboard fallback)."""
    order = "DESC" if mode == "max" else "ASC"
    return ledger.query(
        f"""
        SELECT r.run_id, r.name, m.value AS {metric}, r.duration_s
        FROM runs r JOIN latest_metrics m ON m.run_id = r.run_id AND m.key = ?
        WHERE r.project = 'examples' AND r.experiment = ? AND r.status = 'finished'
          AND NOT isnan(m.value)
        ORDER BY m.value {order}, r.start_time
        LIMIT {int(top)}
        """,
        store=store,
        params=[metric, experiment],
    )


def leaderboard(store: str | None, experiment: str, metric: str, mode: str):
    board = getattr(ledger, "leaderboard", None)
    if board is not None:
        try:
            return board(
                metric=metric,
                mode=mode,
                project="examples",
                experiment=experiment,
                top=10,
                store=store,
            )
        except TypeError:  # an analytics API with other argument names
            pass
    return ranking(store, experiment, metric, mode)


def plot_leaderboard(frame, metric: str, path: str) -> str:
    from matplotlib.figure import Figure

    names = [str(n) for n in frame["name"]][::-1]
    values = [float(v) for v in frame[metric]][::-1]
    figure = Figure(figsize=(7, 0.6 + 0.35 * len(names)), layout="tight")
    axes = figure.add_subplot()
    axes.barh(names, values, color="#4c72b0")
    low = min(values)
    axes.set_xlim(low - (max(values) - low) * 0.5 - 1e-3, max(values) + 1e-3)
    axes.set_xlabel(metric)
    axes.set_title(f"Leaderboard: {metric}")
    figure.savefig(path)
    return path


def diff_runs(store: str | None, run_a: str, run_b: str):
    diff = getattr(ledger, "diff", None)
    if diff is not None:
        try:
            return diff(run_a, run_b, store=store)
        except TypeError:
            pass
    # Params and latest metrics that differ between the two runs.
    return ledger.query(
        """
        WITH facts AS (
            SELECT run_id, 'param' AS kind, key, value FROM params WHERE run_id IN (?, ?)
            UNION ALL
            SELECT run_id, 'metric', key, CAST(round(value, 4) AS VARCHAR)
            FROM latest_metrics WHERE run_id IN (?, ?)
        )
        SELECT kind, key,
               max(value) FILTER (WHERE run_id = ?) AS run_a,
               max(value) FILTER (WHERE run_id = ?) AS run_b
        FROM facts GROUP BY kind, key
        HAVING run_a IS DISTINCT FROM run_b
        ORDER BY kind DESC, key
        """,
        store=store,
        params=[run_a, run_b, run_a, run_b, run_a, run_b],
    )


def cost_report(store: str | None):
    report = getattr(ledger, "report_costs", None)
    if report is not None:
        try:
            return report(by="experiment", project="examples", store=store)
        except TypeError:
            pass
    # Without the cost engine: wall time per experiment, from the runs view.
    return ledger.query(
        """
        SELECT experiment, count(*) AS runs,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               round(sum(duration_s) FILTER (WHERE parent_run_id IS NULL) / 3600, 4)
                   AS wall_hours
        FROM runs WHERE project = 'examples'
        GROUP BY experiment ORDER BY experiment
        """,
        store=store,
    )


def main(quick: bool = False, store: str | None = None, output_dir: str = ".") -> dict:
    import polars as pl

    pl.Config.set_tbl_rows(20)
    pl.Config.set_tbl_cols(12)
    pl.Config.set_fmt_str_lengths(60)
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
    board = leaderboard(store, "optuna-tpe", metric, mode)
    print("\n== Leaderboard: Optuna trials by value")
    print(board)
    out["leaderboard"] = board
    ranked = ranking(store, "optuna-tpe", metric, mode)
    if ranked.height:
        os.makedirs(output_dir, exist_ok=True)
        path = plot_leaderboard(ranked, metric, os.path.join(output_dir, "leaderboard.png"))
        print(f"leaderboard plot: {path}")
        out["plot"] = path
    if ranked.height >= 2:
        run_a, run_b = ranked["run_id"][0], ranked["run_id"][1]
        print(f"\n== Diff of the two best trials ({ranked['name'][0]} vs {ranked['name'][1]})")
        difference = diff_runs(store, run_a, run_b)
        print(difference)
        out["diff"] = difference

    costs = cost_report(store)
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
