"""MLflow verbs: ``ledger import mlflow``."""

from __future__ import annotations

import sys
from typing import Any

import click

from ledger.cli import cli, read_options


@cli.group("import")
def import_group() -> None:
    """Import runs from other trackers (MLflow)."""


@import_group.command("mlflow")
@read_options
@click.option(
    "--tracking-uri",
    "-u",
    required=True,
    metavar="URI",
    help="sqlite:///mlflow.db (any SQLAlchemy URI), an mlruns/ folder, or http://host:port.",
)
@click.option(
    "--experiment",
    "-e",
    "experiments",
    multiple=True,
    metavar="NAME_OR_ID",
    help="Import only this experiment (repeatable; default: all).",
)
@click.option("--since", metavar="DATE", help="Only runs started on or after DATE (UTC day).")
@click.option(
    "--artifacts",
    type=click.Choice(["copy", "reference", "skip"]),
    default="copy",
    show_default=True,
    help="Copy artifacts into the store, reference their MLflow location, or skip them.",
)
@click.option("--include-deleted", is_flag=True, help="Also import deleted runs (marked).")
@click.option("--dry-run", is_flag=True, help="Read and count everything; write nothing.")
@click.option(
    "--project",
    default="mlflow",
    show_default=True,
    help="Ledger project the runs go to (MLflow experiments become ledger experiments).",
)
def import_mlflow_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    tracking_uri: str,
    experiments: tuple[str, ...],
    since: str | None,
    artifacts: str,
    include_deleted: bool,
    dry_run: bool,
    project: str,
) -> None:
    """Import MLflow experiments and runs (safe to repeat: only new data is added).

    \b
    ledger import mlflow --tracking-uri sqlite:///mlflow.db
    ledger import mlflow -u ./mlruns --experiment churn --since 2024-01-01 --artifacts skip
    ledger import mlflow -u http://127.0.0.1:5000 --include-deleted --dry-run
    """
    from ledger.adapters.mlflow_import import import_runs
    from ledger.output import render

    with _progress() as progress:
        summary = import_runs(
            tracking_uri,
            store,
            experiments=experiments or None,
            since=since,
            artifacts=artifacts,
            include_deleted=include_deleted,
            dry_run=dry_run,
            project=project,
            progress=progress,
        )
    title = f"{'Dry run: would import' if dry_run else 'Imported'} from {summary.source} "
    title += f"in {summary.seconds:.1f} s"
    render(summary.to_frame(), fmt, output, title=title if fmt == "table" else None)
    for run_id, message in summary.errors:
        click.echo(f"skipped broken run {run_id}: {message}", err=True)


class _progress:
    """A rich progress bar on stderr (only when it is a terminal)."""

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            self._bar = None
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "importing runs",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task("import", total=None)

        def update(done: int, total: int) -> None:
            assert self._bar is not None
            self._bar.update(task, completed=done, total=total)

        return update

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
