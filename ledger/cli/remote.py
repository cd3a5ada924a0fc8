"""``ledger store check``: is this store (a bucket, usually) reachable and writable?"""

from __future__ import annotations

import click

from ledger.cli import cli, read_options


@cli.group("store")
def store_group() -> None:
    """Inspect the store itself (a directory or an s3:// bucket prefix)."""


@store_group.command("check")
@read_options
def check(store: str | None, fmt: str, output: str | None) -> None:
    """Probe the store end to end: settings, list, write, read back, delete, layout.

    Shows where the endpoint, region and credentials came from (never the keys) and
    how long each step took; exits 1 if any step failed. Nothing is left behind.

    Example:

        ledger store check --store s3://team-bucket/ledger
    """
    from ledger.output import render
    from ledger.store import check_store

    frame = check_store(store)
    render(frame, fmt, output)
    failed = frame.filter(~frame["ok"])
    if len(failed):
        raise click.ClickException(f"{len(failed)} check(s) failed: {', '.join(failed['check'])}")
