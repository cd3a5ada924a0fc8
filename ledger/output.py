"""Rendering results for the CLI: rich tables for people, files for machines.

Every read verb shares :func:`output_options` (``--format``, ``--output``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # polars loads on first render: the CLI's start-up stays light
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


def _markdown(columns: list[str], rows: Iterable[Sequence[Any]]) -> str:
    header = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    lines = ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join([header, rule, *lines]) + "\n"


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
    if fmt == "csv":
        _emit(frame.write_csv(), output)
        return
    numeric = [dtype.is_numeric() for dtype in frame.dtypes]
    _render(frame.columns, numeric, frame.iter_rows(), frame.height, fmt, output, title)


def render_rows(
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    fmt: str = "table",
    output: str | None = None,
    *,
    numeric: Collection[str] = (),
    to_frame: Callable[[list[dict[str, Any]]], pl.DataFrame],
    title: str | None = None,
) -> None:
    """:func:`render` for rows already in Python (dicts keyed by ``columns``), with the
    same output: table, json, jsonl and markdown print without loading polars (a fresh
    process saves ~0.3 s); csv and parquet go through ``to_frame(rows)``. ``numeric``:
    the columns a table right-aligns (those a frame would hold as numbers).

    Raises:
        click.UsageError: parquet without ``--output``.
    """
    if fmt in ("csv", "parquet"):
        render(to_frame(rows), fmt, output, title=title)
        return
    columns = list(columns)
    aligned = [name in numeric for name in columns]
    values = ([row[name] for name in columns] for row in rows)
    _render(columns, aligned, values, len(rows), fmt, output, title)


def _render(
    columns: list[str],
    numeric: list[bool],
    rows: Iterable[Sequence[Any]],
    height: int,
    fmt: str,
    output: str | None,
    title: str | None,
) -> None:
    if fmt == "table":
        _print_table(columns, numeric, rows, height, output, title)
        return
    if fmt == "markdown":
        text = _markdown(columns, rows)
    else:
        records = [{k: _json_value(v) for k, v in zip(columns, row, strict=True)} for row in rows]
        if fmt == "json":
            text = json.dumps(records, indent=2, ensure_ascii=False, default=str) + "\n"
        else:
            text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    _emit(text, output)


def _emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=False)


def _print_table(
    columns: list[str],
    numeric: list[bool],
    rows: Iterable[Sequence[Any]],
    height: int,
    output: str | None,
    title: str | None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for name, right in zip(columns, numeric, strict=True):
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    shown = 0
    for row in itertools.islice(rows, MAX_TABLE_ROWS):
        table.add_row(*(_cell(value) for value in row))
        shown += 1
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            Console(file=handle, width=200).print(table)
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    hidden = height - shown
    if hidden > 0:
        console.print(
            f"{hidden:,} more rows not shown; use --format csv/json/parquet --output FILE "
            "for all of them"
        )
    elif height == 0:
        console.print("(no rows)")
