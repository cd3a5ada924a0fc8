"""Rendering results for the CLI: rich tables for people, files for machines.

Every read verb shares :func:`output_options` (``--format``, ``--output``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import polars as pl

FORMATS = ("table", "csv", "json", "jsonl", "parquet", "markdown")
MAX_TABLE_ROWS = 1000
F = TypeVar("F", bound=Callable[..., Any])


def output_options(func: F) -> F:
    """Adds ``--format`` and ``--output`` to a click command."""
    func = click.option(
        "--output",
        "-o",
        "output",
        type=click.Path(dir_okay=False),
        help="Write to this file instead of standard output.",
    )(func)
    func = click.option(
        "--format",
        "-f",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format: a table for people, or csv/json/jsonl/parquet/markdown.",
    )(func)
    return func


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = [
        "| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
        for row in frame.iter_rows()
    ]
    return "\n".join([header, rule, *rows]) + "\n"


def render(
    frame: pl.DataFrame, fmt: str = "table", output: str | None = None, *, title: str | None = None
) -> None:
    """Print or write ``frame`` in ``fmt``.

    Raises:
        click.UsageError: parquet without ``--output``.
    """
    if fmt == "parquet":
        if not output:
            raise click.UsageError("--format parquet needs --output FILE")
        frame.write_parquet(output)
        return
    if fmt == "table":
        _print_table(frame, output, title)
        return
    if fmt == "csv":
        text = frame.write_csv()
    elif fmt == "markdown":
        text = _markdown(frame)
    else:
        records = [
            {k: _json_value(v) for k, v in row.items()} for row in frame.iter_rows(named=True)
        ]
        if fmt == "json":
            text = json.dumps(records, indent=2, ensure_ascii=False, default=str) + "\n"
        else:
            text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)


def _print_table(frame: pl.DataFrame, output: str | None, title: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = frame.head(MAX_TABLE_ROWS)
    table = Table(title=title, show_lines=False, header_style="bold")
    for name, dtype in zip(frame.columns, frame.dtypes, strict=True):
        table.add_column(name, justify="right" if dtype.is_numeric() else "left", overflow="fold")
    for row in shown.iter_rows():
        table.add_row(*(_cell(value) for value in row))
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            Console(file=handle, width=200).print(table)
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    hidden = frame.height - shown.height
    if hidden > 0:
        console.print(
            f"{hidden:,} more rows not shown; use --format csv/json/parquet --output FILE "
            "for all of them"
        )
    elif frame.height == 0:
        console.print("(no rows)")
