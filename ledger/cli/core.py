"""Foundation verbs: log, run, query, views, runs."""

from __future__ import annotations

import sys

import click

from ledger.cli import assignments, cli, read_options, store_option


@cli.command("log")
@store_option
@click.option("--run", "run_id", metavar="ID", help="Run to log to (default: $LEDGER_RUN_ID).")
@click.option("--start", is_flag=True, help="Start a new run and print its id.")
@click.option("--project", help="Project of a new run (with --start).")
@click.option("--experiment", help="Experiment of a new run (with --start).")
@click.option("--name", help="Name of a new run (with --start).")
@click.option("--parent", metavar="ID", help="Parent run of a new run (with --start).")
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    metavar="KEY=VALUE",
    help="Metric to log (repeatable); VALUE may be nan, inf, -inf.",
)
@click.option("--step", type=int, help="Step of the metrics (default: each key's next step).")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Param to log (repeatable)."
)
@click.option(
    "--tag", "-t", "tags", multiple=True, metavar="KEY=VALUE", help="Tag to set (repeatable)."
)
@click.option("--end", is_flag=True, help="End the run after logging.")
@click.option(
    "--status",
    type=click.Choice(["finished", "failed", "killed"]),
    default="finished",
    show_default=True,
    help="Status for --end.",
)
@click.option("--message", help="Message recorded with --end (e.g. the error).")
def log_cmd(
    store: str | None,
    run_id: str | None,
    start: bool,
    project: str | None,
    experiment: str | None,
    name: str | None,
    parent: str | None,
    metrics: tuple[str, ...],
    step: int | None,
    params: tuple[str, ...],
    tags: tuple[str, ...],
    end: bool,
    status: str,
    message: str | None,
) -> None:
    """Log to a run from a shell.

    \b
    RUN=$(ledger log --start --project demo --param lr=0.1)
    ledger log --run $RUN --metric loss=0.42 --metric acc=0.81 --step 1
    ledger log --run $RUN --end --status finished
    """
    from ledger.shell import log_from_shell, parse_metric, parse_scalar

    parsed_metrics = dict(parse_metric(value) for value in metrics)
    parsed_params = {k: parse_scalar(v) for k, v in assignments(params, "--param").items()}
    run = log_from_shell(
        store=store,
        run_id=run_id,
        start=start,
        project=project,
        experiment=experiment,
        name=name,
        parent=parent,
        metrics=parsed_metrics,
        params=parsed_params,
        tags=assignments(tags, "--tag"),
        step=step,
        end=end,
        status=status,
        message=message,
    )
    if start:
        click.echo(run)


@cli.command("run", context_settings={"ignore_unknown_options": True})
@store_option
@click.option("--project", help="Project of the run.")
@click.option("--experiment", help="Experiment of the run.")
@click.option("--name", help="Run name (default: the program's name).")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE")
@click.option("--tag", "-t", "tags", multiple=True, metavar="KEY=VALUE")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_cmd(
    store: str | None,
    project: str | None,
    experiment: str | None,
    name: str | None,
    params: tuple[str, ...],
    tags: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Run a command as a run: records command, exit code, duration and status.

    The command gets LEDGER_RUN_ID, so ledger.start_run() inside it continues this run.
    Exits with the command's exit code.

    \b
    ledger run --project demo -- python train.py --epochs 3
    """
    from ledger.shell import parse_scalar, run_command

    run_id, code = run_command(
        command,
        store=store,
        project=project,
        experiment=experiment,
        name=name,
        params={k: parse_scalar(v) for k, v in assignments(params, "--param").items()},
        tags=assignments(tags, "--tag"),
    )
    click.echo(f"run {run_id} exited with code {code}", err=True)
    sys.exit(code)


_INCLUDE_ARCHIVED = click.option(
    "--include-archived", is_flag=True, help="Read the archive tier too (see ledger archive)."
)

_INCLUDE_DELETED = click.option(
    "--include-deleted",
    is_flag=True,
    help="Show soft-deleted runs in `runs` too (with deleted = true).",
)


@cli.command("query")
@read_options
@_INCLUDE_ARCHIVED
@_INCLUDE_DELETED
@click.argument("sql")
def query_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    include_archived: bool,
    include_deleted: bool,
    sql: str,
) -> None:
    """Run read-only SQL over the views (see `ledger views`).

    \b
    ledger query "SELECT name, status, duration_s FROM runs ORDER BY start_time DESC"
    ledger query "SELECT * FROM metrics WHERE key = 'loss'" --format csv -o loss.csv
    ledger query --include-deleted "SELECT name, deleted_time FROM runs WHERE deleted"
    """
    from ledger.analytics.engine import query
    from ledger.output import render

    frame = query(sql, store, include_archived=include_archived, include_deleted=include_deleted)
    render(frame, fmt, output)


@cli.command("views")
@read_options
def views_cmd(store: str | None, fmt: str, output: str | None) -> None:
    """List every view and its columns.

    \b
    ledger views --format markdown
    """
    from ledger.analytics.engine import list_views
    from ledger.output import render

    render(list_views(store), fmt, output)


@cli.command("runs")
@read_options
@click.option("--project", help="Only runs of this project.")
@click.option("--experiment", help="Only runs of this experiment.")
@click.option(
    "--status", help="Only runs with this status (running, finished, failed, killed, stalled)."
)
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many.")
@_INCLUDE_ARCHIVED
@_INCLUDE_DELETED
def runs_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    project: str | None,
    experiment: str | None,
    status: str | None,
    limit: int,
    include_archived: bool,
    include_deleted: bool,
) -> None:
    """List runs, newest first (soft-deleted runs only with --include-deleted).

    \b
    ledger runs --project demo --status failed
    ledger runs --include-deleted
    """
    from ledger.analytics.runs import list_runs
    from ledger.output import render

    render(
        list_runs(
            store,
            project=project,
            experiment=experiment,
            status=status,
            limit=limit,
            include_archived=include_archived,
            include_deleted=include_deleted,
        ),
        fmt,
        output,
    )
