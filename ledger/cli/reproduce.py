"""Reproduction verbs: ``ledger reproduce``."""

from __future__ import annotations

import sys

import click

from ledger.cli import cli, read_options

DIFFERENCES_EXIT = 4
"""Exit code when ``--check`` finds differences or ``--compare`` finds drifted metrics."""


@cli.command("reproduce")
@read_options
@click.argument("run")
@click.option(
    "--write",
    "write_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Write README.md, reproduce.sh, requirements.txt, patch.diff, environment.json here.",
)
@click.option(
    "--check",
    "check_flag",
    is_flag=True,
    help="Compare the working tree, packages and data sets with the run; exit 4 on differences.",
)
@click.option(
    "--path",
    metavar="DIR",
    type=click.Path(file_okay=False, exists=True),
    help="Working tree to --check (default: the current directory).",
)
@click.option(
    "--python",
    metavar="EXE",
    help="Interpreter whose packages --check compares (default: the one running ledger).",
)
@click.option(
    "--compare",
    "new_run",
    metavar="NEW_RUN",
    help="Compare every metric point with this reproduction; exit 4 when some drifted.",
)
@click.option(
    "--rtol", type=float, default=1e-6, show_default=True, help="Relative tolerance (--compare)."
)
@click.option(
    "--atol", type=float, default=0.0, show_default=True, help="Absolute tolerance (--compare)."
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="GLOB",
    help="Metric keys --compare skips, e.g. 'time/*' (repeatable).",
)
def reproduce_cmd(
    store: str | None,
    fmt: str,
    output: str | None,
    run: str,
    write_dir: str | None,
    check_flag: bool,
    path: str | None,
    python: str | None,
    new_run: str | None,
    rtol: float,
    atol: float,
    ignore: tuple[str, ...],
) -> None:
    """Get a run back: print its recipe, write it as files, check drift, compare metrics.

    RUN is a run id or a unique prefix of one.

    \b
    ledger reproduce 0190a3f2                    # step-by-step recipe
    ledger reproduce 0190a3f2 --write repro/     # ... as files; then repro/reproduce.sh
    ledger reproduce 0190a3f2 --check            # what changed since? (exit 4 if anything)
    ledger reproduce 0190a3f2 --compare 0190b7c1 --rtol 1e-6
    """
    from ledger.analytics import reproduce as repro
    from ledger.output import render

    modes = sum(bool(flag) for flag in (write_dir, check_flag, new_run))
    if modes > 1:
        raise click.UsageError("Use one of --write, --check and --compare at a time")
    if new_run:
        result = repro.compare(store, run, new_run, rtol=rtol, atol=atol, ignore=list(ignore))
        if not result.linked:
            click.echo(
                f"note: {result.reproduced_run} is not a child of {result.original} "
                "(was it started by reproduce.sh, or with LEDGER_PARENT_RUN set?)",
                err=True,
            )
        if result.reproduced:
            click.echo(result.summary())
            if fmt != "table" or output:
                render(result.metrics, fmt, output)
            return
        render(result.drifted(), fmt, output)
        click.echo(result.summary(), err=True)
        sys.exit(DIFFERENCES_EXIT)
    if check_flag:
        checked = repro.check(store, run, path=path, python=python)
        for note in checked.notes:
            click.echo(f"note: {note}", err=True)
        counts = ", ".join(
            f"{n} {area if n != 1 else area.rstrip('s')}" for area, n in checked.checked.items()
        )
        if checked.ok:
            click.echo(f"all match: run {checked.run_id} (commit, {counts} compared)")
            return
        render(checked.frame(), fmt, output)
        click.echo(
            f"{len(checked.differences)} differences from run {checked.run_id} ({counts} compared)",
            err=True,
        )
        sys.exit(DIFFERENCES_EXIT)
    if write_dir:
        written = repro.write_recipe(store, run, write_dir)
        click.echo(repro.recipe(store, run).text(), nl=False)
        click.echo(f"\nWrote {', '.join(written)} to {write_dir}; run {write_dir}/reproduce.sh")
        return
    click.echo(repro.recipe(store, run).text(), nl=False)
