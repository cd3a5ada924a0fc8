"""Figures with matplotlib (headless: the Agg backend, no display needed).

``output``'s extension picks the format: ``.png``, ``.svg``, ``.pdf``, or ``.html`` — a
self-contained page with the figure inlined as SVG (no scripts, no network), which
opens anywhere and zooms without blurring.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from ledger.analytics.engine import connection, fetch_frame, quote_literal
from ledger.analytics.pruning import pruned_cursor
from ledger.analytics.resolve import resolve_runs

from ledger.errors import InvalidValueError
from ledger.store import Store

if TYPE_CHECKING:
    import polars as pl

FORMATS = (".png", ".svg", ".pdf", ".html")
X_AXES = ("step", "time", "relative")


def _check_output(output: str | os.PathLike[str]) -> str:
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidValueError(
            f"Cannot write a plot to {str(output)!r}: use one of {', '.join(FORMATS)}"
        )
    return suffix


def _figure(width: float = 9.0, height: float = 5.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot) keeps no global state and never needs a display.
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def save_figure(figure: Any, output: str | os.PathLike[str], *, title: str = "ledger") -> str:
    """Write ``figure`` to ``output`` (format from the extension); returns the path."""
    suffix = _check_output(output)
    path = str(output)
    if suffix != ".html":
        figure.savefig(path, dpi=120)
        return path
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.find("<svg") :]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}svg{max-width:100%;height:auto}"
        "</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n{svg}\n</body></html>\n"
    )
    Path(path).write_text(page, encoding="utf-8")
    return path


def metric_curves(
    con: duckdb.DuckDBPyConnection, run_ids: Sequence[str], metrics: Sequence[str]
) -> pl.DataFrame:
    """Every point of ``metrics`` for ``run_ids`` (run_id, name, key, step, ts, value),
    ordered for drawing."""
    # One equality filter per run: DuckDB prunes row groups by run_id statistics for
    # `run_id = '...'` (an IN list is ~10x slower over a large store).
    per_run = "\nUNION ALL\n".join(
        f"""SELECT m.run_id, r.name, m.key, m.step, m.ts, m.value, m.seq,
                   epoch(m.ts) - epoch(r.start_time) AS seconds
            FROM metrics m JOIN runs r ON r.run_id = m.run_id
            WHERE m.run_id = {quote_literal(run_id)} AND r.run_id = {quote_literal(run_id)}
              AND m.key IN (SELECT unnest($keys))"""
        for run_id in dict.fromkeys(run_ids)
    )
    # ...and only the files whose run_id statistics can hold these runs are opened.
    with pruned_cursor(con, list(dict.fromkeys(run_ids)), ("metrics", "runs")) as pruned:
        frame = fetch_frame(
            pruned or con,
            f"SELECT * FROM ({per_run}) ORDER BY run_id, key, step, ts, seq",
            {"keys": list(metrics)},
        )
    return frame.drop("seq")


def plot(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    metric: str | Sequence[str],
    runs: Sequence[str],
    output: str | os.PathLike[str],
    x: str = "step",
    experiment: str | None = None,
    project: str | None = None,
    log_y: bool = False,
    con: duckdb.DuckDBPyConnection | None = None,
) -> dict[str, Any]:
    """Draw ``metric`` curves of ``runs`` on one chart per metric and save them.

    Args:
        metric: one key or several (one panel each).
        runs: run ids, id prefixes or names (within ``experiment``).
        x: ``step``, ``time`` (wall clock) or ``relative`` (seconds since run start).
        output: file to write (.png, .svg, .pdf or .html).

    Returns:
        ``{"output": path, "runs": n, "points": n}``.

    Raises:
        InvalidValueError: bad ``x``/extension, no runs, or no points to draw.
        RunNotFoundError, AmbiguousRunError: a run reference.
    """
    if x not in X_AXES:
        raise InvalidValueError(f"Unknown --x {x!r}. Known: {', '.join(X_AXES)}")
    _check_output(output)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not runs:
        raise InvalidValueError("Give at least one run to plot")
    with connection(con, store) as con:
        ids = resolve_runs(con, runs, experiment, project=project)
        points = metric_curves(con, ids, metrics)
    if points.height == 0:
        raise InvalidValueError(
            f"None of the runs logged {', '.join(repr(m) for m in metrics)}: nothing to plot"
        )
    figure, _ = _figure(9.0, 3.6 * len(metrics) + 0.6)
    figure.clear()
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    column = {"step": "step", "time": "ts", "relative": "seconds"}[x]
    names = dict(zip(points["run_id"].to_list(), points["name"].to_list(), strict=True))
    for ax, key in zip(axes, metrics, strict=True):
        for run_id in ids:
            series = points.filter((points["run_id"] == run_id) & (points["key"] == key))
            if series.height == 0:
                continue
            label = f"{names.get(run_id) or ''} ({run_id[-6:]})".strip()
            style = "-o" if series.height <= 30 else "-"
            ax.plot(
                series[column].to_list(),
                series["value"].to_list(),
                style,
                label=label,
                markersize=3,
                linewidth=1.4,
            )
        ax.set_ylabel(key)
        if log_y:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel({"step": "step", "time": "time (UTC)", "relative": "seconds"}[x])
    path = save_figure(figure, output, title=f"{', '.join(metrics)} by {x}")
    return {"output": path, "runs": points["run_id"].n_unique(), "points": points.height}


def plot_importance(frame: pl.DataFrame, output: str | os.PathLike[str], *, metric: str) -> str:
    """Horizontal bars of an :func:`~ledger.analytics.importance.importance` frame."""
    _check_output(output)
    shown = frame.filter(frame["importance"].is_not_null())
    figure, ax = _figure(8.0, 1.2 + 0.45 * max(shown.height, 1))
    params = shown["param"].to_list()[::-1]
    ax.barh(params, shown["importance"].to_list()[::-1], color="#4878d0")
    evaluator = frame["evaluator"][0] if frame.height else ""
    seed = frame["seed"][0] if frame.height else None
    ax.set_xlabel(
        "importance" + (f" ({evaluator}, seed {seed})" if seed is not None else f" ({evaluator})")
    )
    ax.set_title(f"Hyperparameter importance for {metric}")
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(figure, output, title=f"Importance for {metric}")


def plot_leaderboard(frame: pl.DataFrame, output: str | os.PathLike[str], *, metric: str) -> str:
    """Horizontal bars of a leaderboard frame's metric, best at the top."""
    _check_output(output)
    label_column = "name" if "name" in frame.columns else frame.columns[1]
    labels = [
        f"#{rank} {label}" for rank, label in zip(frame["rank"], frame[label_column], strict=True)
    ][::-1]
    figure, ax = _figure(8.0, 1.2 + 0.4 * max(frame.height, 1))
    ax.barh(labels, frame[metric].fill_nan(None).to_list()[::-1], color="#6acc64")
    ax.set_xlabel(metric)
    ax.set_title(f"Leaderboard: {metric}")
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(figure, output, title=f"Leaderboard: {metric}")
