"""Analytics verbs: leaderboard, diff, importance, plot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ledger.cli import cli, read_options, store_option

F = TypeVar("F", bound=Callable[..., Any])

_where_help = (
    "SQL condition over run columns, params.<key> and tags.<key> "
    "(OR, IN, BETWEEN, LIKE... all allowed)."
)


def _scoring_options(
    *, metric_help: str, agg_help: str, params_help: str, plot_help: str
) -> Callable[[F], F]:
    """The options leaderboard and importance share: the metric value that scores each
    run, which runs count, as of when, which params, and a plot of the result."""
    options = [
        click.option("--metric", "-m", required=True, help=metric_help),
        click.option(
            "--mode",
            type=click.Choice(["max", "min"]),
            default="max",
            show_default=True,
            help="max: higher is better; min: lower is better.",
        ),
        click.option(
            "--agg",
            type=click.Choice(["best", "last", "min", "max"]),
            default="best",
            show_default=True,
            help=agg_help,
        ),
        click.option("--project", help="Only runs of this project."),
        click.option("--experiment", "-e", help="Only runs of this experiment."),
        click.option("--where", "-w", "where", metavar="SQL", help=_where_help),
        click.option(
            "--children-of", metavar="RUN", help="Only child runs of RUN (a sweep's trials)."
        ),
        click.option("--params", "-p", "params", metavar="KEY,KEY", help=params_help),
        click.option(
            "--as-of", metavar="TIME", help="As it stood then: ISO time or a duration ago (2h)."
        ),
        click.option(
            "--plot",
            "plot_path",
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help=plot_help,
        ),
    ]

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


@cli.command("leaderboard")
@read_options
@_scoring_options(
    metric_help="Metric to rank by.",
    agg_help="Which value of each run's history ranks it.",
    params_help="Params to show as columns.",
    plot_help="Also draw the leaderboard (.png, .svg, .pdf or .html).",
)
@click.option("--top", "-n", type=int, default=10, show_default=True, help="Rows to show (0: all).")
@click.option(
    "--group-by",
    "-g",
    metavar="param:KEY|tag:KEY|COLUMN",
    help="One row per group: its best run, mean, std and run count.",
)
def leaderboard_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    metric: str,
    mode: str,
    agg: str,
    project: str | None,
    experiment: str | None,
    where: str | None,
    top: int,
    params: str | None,
    group_by: str | None,
    children_of: str | None,
    as_of: str | None,
    plot_path: str | None,
) -> None:
    """Rank runs by the best (or last) value of a metric.

    \b
    ledger leaderboard --metric val_acc --experiment resnet-sweep \\
        --where "params.lr < 0.01 OR tags.team IN ('cv', 'nlp')" --params lr,depth
    ledger leaderboard -m val_loss --mode min --children-of sweep-42 --top 5
    ledger leaderboard -m val_acc --group-by param:model --as-of 2026-11-25T18:00:00Z
    """
    from ledger.analytics.leaderboard import leaderboard
    from ledger.output import render

    frame = leaderboard(
        store,
        metric=metric,
        mode=mode,
        agg=agg,
        project=project,
        experiment=experiment,
        where=where,
        top=top or None,
        params=params,
        group_by=group_by,
        children_of=children_of,
        as_of=as_of,
    )
    render(frame, fmt, output, title=f"{agg} {metric} ({mode})")
    if plot_path:
        from ledger.analytics.plots import plot_leaderboard

        click.echo(f"wrote {plot_leaderboard(frame, plot_path, metric=metric)}", err=True)


@cli.command("diff")
@read_options
@click.argument("runs", nargs=-1, required=True)
@click.option("--experiment", "-e", help="Resolve run names within this experiment.")
@click.option("--project", help="Resolve run names within this project.")
@click.option("--all", "show_all", is_flag=True, help="Show facts the runs agree on too.")
def diff_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    runs: tuple[str, ...],
    experiment: str | None,
    project: str | None,
    show_all: bool,
) -> None:
    """Compare runs: params, tags, metrics, data sets, seeds, environment, packages.

    RUNS are ids, unique id prefixes or names (within --experiment). Only the
    differences are shown unless --all is given.

    \b
    ledger diff 01a2165e 01a2171c
    ledger diff lr-0.1 lr-0.01 lr-1.0 --experiment resnet-sweep --all
    """
    from ledger.analytics.diff import diff
    from ledger.output import render

    render(
        diff(store, runs=runs, experiment=experiment, project=project, all=show_all),
        fmt,
        output,
    )


@cli.command("importance")
@read_options
@_scoring_options(
    metric_help="Metric the params are judged by.",
    agg_help="Which value of each run's history is its score.",
    params_help="Only these params.",
    plot_help="Also draw the importances (.png, .svg, .pdf or .html).",
)
@click.option(
    "--evaluator",
    type=click.Choice(["ped-anova", "fanova", "mdi"]),
    default="ped-anova",
    show_default=True,
    help="Optuna importance evaluator.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for fanova/mdi (ped-anova is deterministic).",
)
def importance_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    metric: str,
    mode: str,
    agg: str,
    project: str | None,
    experiment: str | None,
    children_of: str | None,
    where: str | None,
    evaluator: str,
    seed: int,
    params: str | None,
    as_of: str | None,
    plot_path: str | None,
) -> None:
    """Which hyperparameters matter for a metric (Optuna's evaluators), with each
    param's Spearman correlation (eta for categorical params).

    \b
    ledger importance --metric val_acc --experiment resnet-sweep
    ledger importance -m val_loss --mode min --children-of sweep-42 \\
        --evaluator fanova --seed 1 --plot importance.png
    """
    from ledger.analytics.importance import importance
    from ledger.output import render

    frame = importance(
        store,
        metric=metric,
        mode=mode,
        agg=agg,
        project=project,
        experiment=experiment,
        children_of=children_of,
        where=where,
        evaluator=evaluator,
        seed=seed,
        params=params,
        as_of=as_of,
    )
    render(frame, fmt, output, title=f"importance for {metric} ({evaluator})")
    if plot_path:
        from ledger.analytics.plots import plot_importance

        click.echo(f"wrote {plot_importance(frame, plot_path, metric=metric)}", err=True)


@cli.command("plot")
@store_option
@click.argument("runs", nargs=-1, required=True)
@click.option(
    "--metric",
    "-m",
    "metrics",
    required=True,
    multiple=True,
    help="Metric to draw (repeatable: one panel each).",
)
@click.option(
    "--x",
    "x",
    type=click.Choice(["step", "time", "relative"]),
    default="step",
    show_default=True,
    help="x axis: step, wall-clock time, or seconds since start.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write: .png, .svg, .pdf or .html (self-contained).",
)
@click.option("--experiment", "-e", help="Resolve run names within this experiment.")
@click.option("--log-y", is_flag=True, help="Logarithmic y axis.")
def plot_cmd(
    store: str | None,
    runs: tuple[str, ...],
    metrics: tuple[str, ...],
    x: str,
    output: str,
    experiment: str | None,
    log_y: bool,
) -> None:
    """Draw metric curves of runs on one chart (headless; PNG, SVG, PDF or HTML).

    \b
    ledger plot lr-0.1 lr-0.01 --metric loss --output curves.png
    ledger plot 01a2165e 01a2171c -m loss -m val_acc --x relative -o curves.html
    """
    from ledger.analytics.plots import plot

    result = plot(
        store,
        metric=list(metrics),
        runs=runs,
        output=output,
        x=x,
        experiment=experiment,
        log_y=log_y,
    )
    click.echo(
        f"wrote {result['output']} ({result['runs']} runs, {result['points']} points)", err=True
    )
