"""Cost verbs: ``ledger report costs``, ``ledger costs record``, ``ledger costs pricing``."""

from __future__ import annotations

import sys

import click

from ledger.cli import cli, read_options, store_option


def _report_group() -> click.Group:
    # Another area may add its own `ledger report ...` verbs: share one group.
    existing = cli.commands.get("report")
    if isinstance(existing, click.Group):
        return existing

    @cli.group("report")
    def report() -> None:
        """Reports over the store (costs, ...)."""

    return report


report_group = _report_group()


@report_group.command("costs")
@read_options
@click.option(
    "--by",
    default="project",
    show_default=True,
    metavar="GROUP",
    help="project, experiment, user, status, day, week, month, tag:KEY or param:KEY.",
)
@click.option("--since", metavar="DATE", help="Window start: 2025-01-31, an ISO time, or 7d ago.")
@click.option("--until", metavar="DATE", help="Window end (exclusive), same forms as --since.")
@click.option("--project", help="Only this project.")
@click.option("--metric", help="Metric for dominated runs, Pareto fronts and cost efficiency.")
@click.option(
    "--mode",
    type=click.Choice(["max", "min"]),
    default="max",
    show_default=True,
    help="Whether a higher (max) or lower (min) --metric is better.",
)
@click.option("--budget", type=float, metavar="USD", help="Budget per group; exit 3 when over.")
@click.option(
    "--plot", type=click.Path(dir_okay=False), help="With --metric: write metric vs cost PNG."
)
@click.option(
    "--section",
    type=click.Choice(["all", "groups", "efficiency", "front"]),
    default="all",
    show_default=True,
    help="Which part to print; machine formats and --output write one part (default groups).",
)
def report_costs_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    by: str,
    since: str | None,
    until: str | None,
    project: str | None,
    metric: str | None,
    mode: str,
    budget: float | None,
    plot: str | None,
    section: str,
) -> None:
    """Spend, energy and emissions of runs, with totals and wasted spend.

    Costs are split over the days a run spans; failed, killed and stalled runs (and,
    with --metric, runs another run beat for less money) count as wasted.
    Exits with status 3 when a group's spend exceeds --budget.

    \b
    ledger report costs --by experiment --since 2025-01-01
    ledger report costs --by day --project vision --budget 50
    ledger report costs --by tag:team --metric val_acc --mode max --plot front.png
    """
    from ledger.analytics.costs import report_costs
    from ledger.output import render

    report = report_costs(
        store,
        by=by,
        since=since,
        until=until,
        project=project,
        metric=metric,
        mode=mode,
        budget=budget,
        plot=plot,
    )
    parts = [("groups", report.groups, f"Costs by {by}")]
    if report.efficiency is not None:
        parts.append(("efficiency", report.efficiency, f"Cost efficiency ({metric}, {mode})"))
    if report.front is not None:
        parts.append(("front", report.front, f"Pareto front: {metric} vs cost"))
    if section != "all":
        parts = [part for part in parts if part[0] == section]
        if not parts:
            raise click.UsageError(f"--section {section} needs --metric")
    elif fmt not in ("table", "markdown") or output:
        parts = parts[:1]  # one frame per file: pick others with --section
    for _, frame, title in parts:
        if fmt == "markdown" and len(parts) > 1 and not output:
            click.echo(f"\n### {title}\n")
        render(frame, fmt, output, title=title)
    if report.plot and fmt == "table":
        click.echo(f"Plot written to {report.plot}")
    if report.over_budget:
        click.echo(
            f"Over budget (${report.budget:,.2f} per group): {', '.join(report.over_budget)}",
            err=True,
        )
        sys.exit(3)


@cli.group("costs")
def costs_group() -> None:
    """Record real costs and inspect the pricing catalog."""


@costs_group.command("record")
@store_option
@click.argument("run_id")
@click.argument("usd", type=float)
@click.option("--source", default="manual", show_default=True, help="Where the figure is from.")
@click.option("--note", help="Free text kept with the record (e.g. the bill line).")
def costs_record_cmd(
    store: str | None, run_id: str, usd: float, source: str, note: str | None
) -> None:
    """Record what a run really cost (e.g. a cloud bill line); it overrides the estimate.

    Several records for one run add up.

    \b
    ledger costs record 01a2f3 412.50 --source "aws bill 2025-01" --note "p4d spot"
    """
    from ledger.analytics.costs import record_cost

    recorded = record_cost(run_id, usd, source=source, store=store, note=note)
    click.echo(f"Recorded ${recorded['cost_usd']:,.2f} for run {recorded['run_id']}")


@costs_group.command("pricing")
@read_options
@click.option(
    "--item",
    type=click.Choice(["instance", "gpu", "cpu_core", "electricity", "carbon_intensity"]),
    help="Only this kind of price.",
)
@click.option(
    "--origin",
    type=click.Choice(["shipped", "codecarbon", "ledger.toml"]),
    help="Only prices from here.",
)
def costs_pricing_cmd(
    store: str | None, fmt: str, output: str | None, item: str | None, origin: str | None
) -> None:
    """The pricing catalog in use: shipped defaults, codecarbon's grid carbon
    intensities, and [pricing] in ledger.toml — each row with its source, date and
    origin (shipped, codecarbon, ledger.toml).

    \b
    ledger costs pricing --item gpu
    ledger costs pricing --item carbon_intensity --origin codecarbon
    """
    from ledger.analytics.engine import query
    from ledger.output import render

    clauses = [c for c, v in (("item = ?", item), ("origin = ?", origin)) if v]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    frame = query(
        f"SELECT item, name, rate, unit, source, as_of, origin FROM pricing {where} "
        "ORDER BY item, name",
        store,
        [v for v in (item, origin) if v] or None,
    )
    render(frame, fmt, output, title="Pricing catalog")
