"""Lifecycle verbs: compact, gc, archive, restore, pin, unpin, purge, retention."""

from __future__ import annotations

import click

from ledger.cli import cli, read_options

_DRY = click.option(
    "--dry-run", is_flag=True, help="Only report runs, files and bytes that would be affected."
)
_GRACE = click.option(
    "--grace",
    metavar="DURATION",
    default=None,
    help="Keep replaced files this long for queries in flight (default: [lifecycle] grace, 5s).",
)
_NO_WAIT = click.option(
    "--no-wait",
    is_flag=True,
    help="Return at once; replaced files are deleted by the next lifecycle command or gc.",
)


def _render(result, fmt: str, output: str | None) -> None:
    from ledger.output import render

    render(result.report() if fmt == "table" else result.frame(), fmt, output)


def _settle(store: str | None, result, grace: str | None, no_wait: bool) -> None:
    """Wait out the grace period and delete what the operation replaced."""
    if no_wait or result.dry_run or not result.files:
        return
    from ledger.maintenance import settle

    settle(store, grace=grace)


@cli.command("compact")
@read_options
@click.option("--project", help="Only this project's partitions.")
@click.option(
    "--older-than",
    default="0s",
    show_default=True,
    metavar="DURATION",
    help="Only merge files at least this old (e.g. 1h).",
)
@click.option(
    "--target-size",
    default="128MB",
    show_default=True,
    metavar="SIZE",
    help="Size of the merged files; files of half this size or more are left alone.",
)
@click.option("--include-archived", is_flag=True, help="Compact the archive tier too.")
@_DRY
@_GRACE
@_NO_WAIT
def compact_cmd(
    store,
    fmt,
    output,
    project,
    older_than,
    target_size,
    include_archived,
    dry_run,
    grace,
    no_wait,
) -> None:
    """Merge small files of each partition into large files sorted by run, key and step.

    Safe while runs keep logging and queries keep reading; also sweeps temp files left
    by crashed writers.

    \b
    ledger compact --older-than 1h --target-size 128MB
    ledger compact --project vision --dry-run
    """
    from ledger.maintenance import compact

    result = compact(
        store,
        project=project,
        older_than=older_than,
        target_size=target_size,
        dry_run=dry_run,
        include_archived=include_archived,
        grace=grace,
    )
    _render(result, fmt, output)
    _settle(store, result, grace, no_wait)


@cli.command("gc")
@read_options
@_GRACE
def gc_cmd(store, fmt, output, grace) -> None:
    """Finish interrupted lifecycle operations and delete files they replaced.

    \b
    ledger gc --grace 0s
    """
    import polars as pl

    from ledger.maintenance import collect_garbage
    from ledger.output import render

    report = collect_garbage(store, grace=grace)
    render(pl.DataFrame([vars(report)]), fmt, output)


@cli.command("archive")
@read_options
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    help="Runs that ended longer ago than this (e.g. 90d, 2w).",
)
@click.option(
    "--to",
    metavar="PATH_OR_URI",
    help="Archive tier (default: ledger.toml [archive] path, else <store>/archive).",
)
@click.option("--project", help="Only runs of this project.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["finished", "failed", "killed"]),
    help="Only runs that ended so (repeatable).",
)
@click.option(
    "--keep-tag",
    "keep_tags",
    multiple=True,
    metavar="KEY[=VALUE]",
    help="Keep runs carrying this tag (repeatable).",
)
@_DRY
@_GRACE
@_NO_WAIT
def archive_cmd(
    store, fmt, output, older_than, to, project, statuses, keep_tags, dry_run, grace, no_wait
) -> None:
    """Move finished runs (children with parents, artifacts too) to the archive tier.

    Pinned and running runs stay. Queries see archived runs with --include-archived.

    \b
    ledger archive --older-than 90d --dry-run
    ledger archive --older-than 90d --status failed --keep-tag paper --to /mnt/cold/ledger
    ledger archive --older-than 90d --store s3://team-bucket/ledger --to s3://team-archive/ledger
    """
    from ledger.maintenance import archive

    result = archive(
        store,
        older_than=older_than,
        to=to,
        project=project,
        status=list(statuses) or None,
        keep_tags=keep_tags,
        dry_run=dry_run,
        grace=grace,
    )
    _render(result, fmt, output)
    _settle(store, result, grace, no_wait)


@cli.command("restore")
@read_options
@click.argument("runs", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Restore every archived run.")
@click.option("--older-than", metavar="DURATION", help="Archived runs that ended longer ago.")
@click.option("--project", help="Only runs of this project.")
@_DRY
@_GRACE
@_NO_WAIT
def restore_cmd(
    store, fmt, output, runs, all_runs, older_than, project, dry_run, grace, no_wait
) -> None:
    """Bring archived runs back to the hot tier (ids or unique id prefixes).

    \b
    ledger restore 01a2166938807001
    ledger restore --all
    """
    from ledger.maintenance import restore

    result = restore(
        store,
        runs=runs,
        all_runs=all_runs,
        older_than=older_than,
        project=project,
        dry_run=dry_run,
        grace=grace,
    )
    _render(result, fmt, output)
    _settle(store, result, grace, no_wait)


def _pin(store: str | None, runs: tuple[str, ...], on: bool) -> None:
    from ledger.maintenance import pin

    for run_id in pin(store, runs, on=on):
        click.echo(f"{'pinned' if on else 'unpinned'} {run_id}")


@cli.command("pin")
@click.option("--store", "-s", default=None, metavar="PATH_OR_URI", help="Store root.")
@click.argument("runs", nargs=-1, required=True)
def pin_cmd(store, runs) -> None:
    """Pin runs: never archived or purged by a retention policy; purge needs --force.

    \b
    ledger pin 01a2166938807001
    """
    _pin(store, runs, True)


@cli.command("unpin")
@click.option("--store", "-s", default=None, metavar="PATH_OR_URI", help="Store root.")
@click.argument("runs", nargs=-1, required=True)
def unpin_cmd(store, runs) -> None:
    """Unpin runs.

    \b
    ledger unpin 01a2166938807001
    """
    _pin(store, runs, False)


@cli.command("purge")
@read_options
@click.argument("runs", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Really delete (purge cannot be undone).")
@click.option("--force", is_flag=True, help="Purge pinned runs too.")
@_DRY
@_GRACE
@_NO_WAIT
def purge_cmd(store, fmt, output, runs, yes, force, dry_run, grace, no_wait) -> None:
    """Hard-delete runs from hot and archive tiers: events, and artifacts no one else uses.

    Records a `deleted` event per run that holds no purged content.

    \b
    ledger purge 01a2166938807001 --dry-run
    ledger purge 01a2166938807001 --yes
    """
    from ledger.maintenance import purge

    result = purge(store, runs, yes=yes, force=force, dry_run=dry_run, grace=grace)
    _render(result, fmt, output)
    _settle(store, result, grace, no_wait)


@cli.group("retention")
def retention_group() -> None:
    """Retention policies declared in ledger.toml [retention]."""


@retention_group.command("plan")
@read_options
def retention_plan_cmd(store, fmt, output) -> None:
    """Show what the retention policy would do now, run by run, then the totals.

    \b
    ledger retention plan
    """
    from ledger.output import render
    from ledger.retention import plan

    result = plan(store)
    render(result.frame(), fmt, output)
    if fmt == "table":
        for done in result.results:
            render(done.report(), fmt, None)


@retention_group.command("apply")
@read_options
@_GRACE
def retention_apply_cmd(store, fmt, output, grace) -> None:
    """Apply the retention policy: purge, archive and drop artifacts as planned.

    \b
    ledger retention apply
    """
    from ledger.output import render
    from ledger.retention import apply

    result = apply(store, grace=grace)
    render(result.frame(), fmt, output)
    if fmt == "table":
        for done in result.results:
            render(done.report(), fmt, None)
