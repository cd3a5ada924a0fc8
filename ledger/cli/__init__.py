"""The ``ledger`` command: each verb parses flags and calls one library function.

Verbs live in one module per area (``core``, ``analytics``, ...); importing a module
registers its verbs on :data:`cli`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ledger.errors import LedgerError

F = TypeVar("F", bound=Callable[..., Any])


class LedgerGroup(click.Group):
    """Turns library errors into one-line ``Error: ...`` messages with exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LedgerError as exc:
            raise click.ClickException(str(exc)) from None


def store_option(func: F) -> F:
    return click.option(
        "--store",
        "-s",
        default=None,
        metavar="PATH_OR_URI",
        help="Store root (default: $LEDGER_STORE, else ./.ledger).",
    )(func)


def read_options(func: F) -> F:
    """``--store`` plus the shared output flags (``--format``, ``--output``)."""
    from ledger.output import output_options

    return store_option(output_options(func))


def assignments(values: tuple[str, ...], what: str) -> dict[str, str]:
    from ledger.shell import parse_assignment

    return dict(parse_assignment(value, what) for value in values)


@click.group(cls=LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ledger-tracking", prog_name="ledger")
def cli() -> None:
    """ledger: an experiment ledger you query with SQL.

    Runs append immutable events to Parquet files under the store (default ./.ledger);
    every verb reads them through DuckDB views.
    """


def main() -> None:
    cli(prog_name="ledger")


# Each import registers that area's verbs.
from ledger.cli import (  # noqa: E402,F401
    analytics,
    core,
    costs,
    lifecycle,
    mlflow,
    monitor,
    remote,
    reproduce,
)
