"""Cost, energy and carbon reports over the ``run_costs`` view.

``report_costs`` answers "what did our runs cost, and what did we get for it": spend per
group with totals, wasted spend (failed, killed, stalled and dominated runs), cost
efficiency per experiment (Pareto front of metric vs cost, cost to reach the best result,
metric gained per dollar) and spend against a budget. The CLI verb ``ledger report
costs`` and the Python API ``ledger.report_costs`` call the same function.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.analytics.engine import connect, consistent, fetch_frame

from ledger.errors import InvalidValueError, RunNotFoundError
from ledger.store import Store, open_store

if TYPE_CHECKING:
    import polars as pl

GROUPS = ("project", "experiment", "user", "status", "day", "week", "month")
"""Plain ``--by`` values; ``tag:KEY`` and ``param:KEY`` group by a tag or param."""

WASTED_STATUSES = ("failed", "killed", "stalled")
_MIN_TS = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MAX_TS = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
_SUMS = ("wall_hours", "core_hours", "gpu_hours", "energy_kwh", "emissions_kg", "cost_usd")


@dataclass
class CostReport:
    """What :func:`report_costs` returns; every part is a polars frame."""

    by: str
    groups: pl.DataFrame
    """One row per group plus a ``TOTAL`` row."""
    efficiency: pl.DataFrame | None = None
    """Per experiment (with ``metric``): best result, cost to reach it, gain per dollar."""
    front: pl.DataFrame | None = None
    """Per experiment (with ``metric``): the runs on the Pareto front of metric vs cost."""
    budget: float | None = None
    over_budget: list[str] = field(default_factory=list)
    """Groups whose spend exceeds ``budget``."""
    plot: str | None = None


def parse_when(value: str | dt.date | dt.datetime | None, what: str) -> dt.datetime | None:
    """A ``--since``/``--until`` value (``2025-01-31``, an ISO datetime, or ``7d`` ago).

    Raises:
        InvalidValueError: the value is not a date, a datetime or a duration.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    text = str(value).strip()
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        pass
    from ledger.durations import parse_duration

    try:
        seconds = parse_duration(text, what=what)
    except Exception:
        raise InvalidValueError(
            f"Invalid {what} {text!r}: use a date (2025-01-31), an ISO datetime "
            "(2025-01-31T12:00) or a duration ago (7d, 12h)"
        ) from None
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)


def _group_expression(by: str) -> tuple[str, str, list[Any]]:
    """(SQL for the group key, extra JOIN, its params) for a ``--by`` value."""
    if by in ("project", "experiment", "status"):
        return f"coalesce(c.{by}, '(none)')", "", []
    if by == "user":
        return "coalesce(c.\"user\", '(none)')", "", []
    # Days, weeks and months group by the date and are named after the aggregation (one
    # strftime per group, not per run); names sort as the dates do.
    if by == "day":
        return "c.day", "", []
    if by == "week":
        return "date_trunc('week', c.day)", "", []
    if by == "month":
        return "date_trunc('month', c.day)", "", []
    kind, _, key = by.partition(":")
    if kind in ("tag", "param") and key:
        table = "tags" if kind == "tag" else "params"
        return (
            "coalesce(g.value, '(none)')",
            f"LEFT JOIN (SELECT run_id, value FROM {table} WHERE key = ?) g ON g.run_id = c.run_id",
            [key],
        )
    raise InvalidValueError(
        f"Unknown --by {by!r}. Allowed: {', '.join(GROUPS)}, tag:KEY, param:KEY"
    )


_LABELS = {
    "day": "strftime(grp, '%Y-%m-%d')",
    "week": "strftime(grp, '%G-W%V')",
    "month": "strftime(grp, '%Y-%m')",
}


def report_costs(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    by: str = "project",
    since: str | dt.date | None = None,
    until: str | dt.date | None = None,
    project: str | None = None,
    metric: str | None = None,
    mode: str = "max",
    budget: float | None = None,
    plot: str | os.PathLike[str] | None = None,
) -> CostReport:
    """Spend, energy and emissions of runs, grouped, with totals and wasted spend.

    Runs are attributed by time: a run's cost (and energy, emissions, hours) is split
    over the days its wall time spans, so ``--by day`` and ``since``/``until`` count only
    the part of a run inside each day or window. Unknown prices stay unknown: a group's
    ``cost_usd`` sums the runs whose cost is known and ``unknown_cost_runs`` counts the
    others.

    Args:
        by: project, experiment, user, status, day, week, month, tag:KEY or param:KEY.
        since, until: window start (inclusive) and end (exclusive): date, ISO datetime
            or a duration ago (``7d``).
        project: only this project.
        metric: with it, runs dominated within their experiment (another run reached a
            better value of ``metric`` for less money) count as wasted, and the report
            gains per-experiment efficiency and Pareto fronts.
        mode: ``max`` (higher is better) or ``min``.
        budget: USD per group; groups above it are listed in ``over_budget``.
        plot: write a PNG of metric vs cost per experiment (needs ``metric``, matplotlib).

    Raises:
        InvalidValueError: bad ``by``, ``mode``, window, budget, or ``plot`` without metric.
    """
    if mode not in ("max", "min"):
        raise InvalidValueError(f"Unknown mode {mode!r}. Allowed: max, min")
    if budget is not None and budget < 0:
        raise InvalidValueError(f"Budget must not be negative, got {budget}")
    if plot is not None and metric is None:
        raise InvalidValueError("--plot needs --metric (it draws metric vs cost)")
    start = parse_when(since, "--since") or _MIN_TS
    stop = parse_when(until, "--until") or _MAX_TS
    if stop <= start:
        raise InvalidValueError(f"--until ({stop:%Y-%m-%d %H:%M}) must be after --since")
    group_sql, join_sql, group_params = _group_expression(by)
    window = (start, stop) if (start > _MIN_TS or stop < _MAX_TS) else None
    con = connect(store)

    def ask() -> tuple[pl.DataFrame, pl.DataFrame | None]:
        # The cost summaries and raw costs files are listed here, not by DuckDB at bind
        # time: run again if a lifecycle commit straddled the listing (consistent()).
        source = _costs_source(con)
        per_run = None
        base_params: list[Any]
        if metric is not None:
            # With a metric, the per-run figures feed three parts (groups, dominated
            # runs, efficiency): fold them once, then query the folded frame.
            per_run = _per_run_frame(con, metric, mode, project, source)
            con.register("_report_runs", per_run.to_arrow())
            base_sql, base_params = "SELECT * FROM _report_runs", []
        else:
            base_sql, base_params = _base_sql(project, source)
        split = by in ("day", "week", "month")
        pieces_sql, pieces_params = _pieces_sql(split, window)
        sql, params = _groups_sql(
            group_sql,
            join_sql,
            split,
            base_sql,
            pieces_sql,
            with_dominated=metric is not None,
            label=_LABELS.get(by, "grp"),
        )
        values = [*base_params, *pieces_params, *group_params, *params]
        return fetch_frame(con, sql, values), per_run

    try:
        groups, per_run = consistent(con, ask)
        groups = _with_totals(groups, metric is not None)
        report = CostReport(by=by, groups=groups, budget=budget)
        if budget is not None:
            report.groups, report.over_budget = _with_budget(groups, budget)
        if per_run is not None and metric is not None:
            in_window = _in_window(per_run, start, stop)
            report.efficiency, report.front = _efficiency(in_window, mode)
            if plot is not None:
                report.plot = _plot(report.front, in_window, metric, os.fspath(plot))
        return report
    finally:
        con.close()


# The columns of ``run_costs`` a report folds; everything else is left unread.
_BASE_COLUMNS = (
    'run_id, project, experiment, name, status, "user", start_time, duration_s, '
    "wall_hours, core_hours, gpu_hours, energy_kwh, emissions_kg, cost_usd"
)


def _costs_source(con: Any) -> str:
    """What the report reads for each run's priced costs: the ``run_costs`` view, or the
    same rows priced from cost summaries (``analytics/cost_summaries.py``) where the store
    has them — one narrow row per run and file instead of every event and JSON document."""
    from ledger.analytics.cost_summaries import cost_inputs_sql

    inputs = cost_inputs_sql(con)
    if inputs is None:
        return "run_costs"
    con.execute(f"CREATE OR REPLACE TEMP VIEW _report_cost_inputs AS SELECT * FROM {inputs}")
    return "run_costs_over('_report_cost_inputs')"


def _base_sql(project: str | None, source: str = "run_costs") -> tuple[str, list[Any]]:
    where = " WHERE project = ?" if project is not None else ""
    return f"SELECT {_BASE_COLUMNS} FROM {source}{where}", (
        [project] if project is not None else []
    )


def _pieces_sql(split: bool, window: tuple[Any, Any] | None) -> tuple[str, list[Any]]:
    """Each run as the pieces a report counts, with ``w``: the share of the run's totals
    in the piece (its wall time inside the piece and the window over its whole wall
    time; a zero-length run counts where it started).

    Without ``--by day|week|month`` a run is one piece, and without a window its share
    is 1 (nothing to compute); with them a run is split over the UTC days it spans."""
    stop_time = "start_time + to_microseconds(CAST(duration_s * 1e6 AS BIGINT))"
    if not split and window is None:
        return "SELECT *, 1.0 AS w FROM base", []
    lo, hi = ("?::TIMESTAMPTZ", "?::TIMESTAMPTZ") if window else ("NULL", "NULL")
    if split:
        # Most runs start and stop on one day: one piece, the run itself (no list to
        # unnest, no bounds to clip). `crossing` marks the runs split over several days
        # (counted once per group: see _groups_sql); a run ending before its start day
        # (a skewed clock) has no piece, as generate_series gives it none.
        spans = f"""
            WITH stops AS (
                SELECT *, date_trunc('day', start_time) AS first_day
                FROM (SELECT *, {stop_time} AS stop_time FROM base)
            )
            SELECT *, false AS crossing, CAST(first_day AS DATE) AS day,
                start_time AS piece_start, stop_time AS piece_end
            FROM stops
            WHERE stop_time >= first_day AND stop_time < first_day + INTERVAL 1 DAY
            UNION ALL
            SELECT * EXCLUDE (day), true AS crossing, CAST(day AS DATE) AS day,
                greatest(start_time, day) AS piece_start,
                least(stop_time, day + INTERVAL 1 DAY) AS piece_end
            FROM (
                SELECT *, unnest(generate_series(first_day, date_trunc('day', stop_time),
                                                 INTERVAL 1 DAY)) AS day
                FROM stops
                WHERE NOT (stop_time >= first_day AND stop_time < first_day + INTERVAL 1 DAY)
            )
        """
    else:
        spans = f"""
            SELECT *, start_time AS piece_start, stop_time AS piece_end
            FROM (SELECT *, {stop_time} AS stop_time FROM base)
        """
    # least/greatest skip NULLs: with no window the piece itself bounds the share.
    sql = f"""
        SELECT *,
            CASE WHEN duration_s > 0
                 THEN greatest(epoch(least(piece_end, {hi}) - greatest(piece_start, {lo})), 0)
                      / duration_s
                 ELSE CAST(piece_start = start_time
                           AND coalesce(start_time < {hi}, true)
                           AND coalesce(start_time >= {lo}, true) AS DOUBLE)
            END AS w
        FROM ({spans})
    """
    # In text order: the share (until, since), the zero-length case (until, since), the
    # window filter (since, until).
    lo_value, hi_value = window if window else (None, None)
    params = [hi_value, lo_value, hi_value, lo_value] if window else []
    if window is not None:
        sql += f" WHERE piece_end >= {lo} AND piece_start < {hi}"
        params += [lo_value, hi_value]
    return sql, params


def _groups_sql(
    group_sql: str,
    join_sql: str,
    split: bool,
    base_sql: str,
    pieces_sql: str,
    *,
    with_dominated: bool,
    label: str = "grp",
) -> tuple[str, list[Any]]:
    """One row per group and the ``TOTAL`` (a grouping set: distinct runs, one pass)."""
    # A run is one piece unless split over days: then count it once per group (a run
    # of one day is one piece there too; only runs crossing midnight need DISTINCT).
    runs = (
        "count(*) FILTER (WHERE NOT c.crossing) "
        "+ count(DISTINCT CASE WHEN c.crossing THEN c.run_id END)"
        if split
        else "count(*)"
    )
    sums = ",\n".join(f"sum(c.{name} * c.w) AS {name}" for name in _SUMS)
    wasted = ", ".join(f"'{status}'" for status in WASTED_STATUSES)
    dominated = (
        f"""coalesce(sum(c.cost_usd * c.w) FILTER (
                WHERE c.dominated AND c.status NOT IN ({wasted})), 0) AS dominated_usd"""
        if with_dominated
        else "0.0 AS dominated_usd"
    )
    unknown = (
        "count(*) FILTER (WHERE c.cost_usd IS NULL AND NOT c.crossing) "
        "+ count(DISTINCT CASE WHEN c.crossing AND c.cost_usd IS NULL THEN c.run_id END)"
        if split
        else "count(*) FILTER (WHERE c.cost_usd IS NULL)"
    )
    sql = f"""
        WITH base AS ({base_sql}),
        c AS ({pieces_sql})
        SELECT
            CASE WHEN grouping(grp) = 1 THEN 'TOTAL' ELSE {label} END AS "group",
            {runs} AS runs,
            {sums},
            {unknown} AS unknown_cost_runs,
            coalesce(sum(c.cost_usd * c.w) FILTER (WHERE c.status IN ({wasted})), 0)
                AS failed_usd,
            {dominated}
        FROM (SELECT c.*, {group_sql} AS grp FROM c {join_sql} WHERE c.w > 0) c
        GROUP BY GROUPING SETS ((grp), ())
        ORDER BY grouping(grp), grp
    """
    return sql, []


def _per_run_frame(
    con: Any, metric: str, mode: str, project: str | None, source: str = "run_costs"
) -> pl.DataFrame:
    """Each run's report figures with its best ``metric`` and whether it is dominated.

    A run is dominated when a finished run of the same experiment reached at least as
    good a metric for at most its cost, better in one of the two. Found with two
    running maxima over the experiment's runs ordered by cost (the best finished
    metric among strictly cheaper runs, and among runs as cheap or cheaper but itself):
    O(n log n), not the O(n^2) pairwise comparison.

    Raises:
        InvalidValueError: no run ever logged ``metric``.
    """
    base_sql, base_params = _base_sql(project, source)
    sign = 1.0 if mode == "max" else -1.0
    best_sql, best_params = _best_sql(con, metric, mode, project)
    frame = fetch_frame(
        con,
        f"""
        WITH base AS ({base_sql}),
        best AS ({best_sql}),
        scored AS (
            SELECT b.*, m.metric,
                CASE WHEN m.metric IS NOT NULL AND b.cost_usd IS NOT NULL
                     THEN m.metric * {sign} END AS v,
                CASE WHEN b.status = 'finished' AND m.metric IS NOT NULL
                          AND b.cost_usd IS NOT NULL
                     THEN m.metric * {sign} END AS rival
            FROM base b LEFT JOIN best m USING (run_id)
        )
        SELECT * EXCLUDE (v, rival),
            coalesce(
                v IS NOT NULL AND (
                    max(rival) OVER cheaper >= v OR max(rival) OVER as_cheap > v
                ),
                false
            ) AS dominated
        FROM scored
        WINDOW
            cheaper AS (PARTITION BY project, experiment ORDER BY cost_usd
                        RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE GROUP),
            as_cheap AS (PARTITION BY project, experiment ORDER BY cost_usd
                         RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                         EXCLUDE CURRENT ROW)
        """,
        [*base_params, *best_params],
    )
    if frame["metric"].null_count() == len(frame):
        found = con.execute("SELECT 1 FROM metrics WHERE key = ? LIMIT 1", [metric]).fetchall()
        if not found:
            names = [
                row[0]
                for row in con.execute(
                    "SELECT DISTINCT key FROM metrics ORDER BY key LIMIT 20"
                ).fetchall()
            ]
            raise InvalidValueError(
                f"Unknown metric {metric!r}. "
                f"Known: {', '.join(names) if names else '(none logged)'}"
            )
    return frame


def _best_sql(con: Any, metric: str, mode: str, project: str | None) -> tuple[str, list[Any]]:
    """Each run's best ``metric`` (NaN skipped) logged in ``project``'s partitions: from the
    metric summaries (``analytics/summaries.py``: a few rows per run, not every point)
    where the store's files can be listed, else from the ``metrics`` view."""
    from ledger.analytics.summaries import _files, summaries_sql

    best = "max" if mode == "max" else "min"
    listed = None
    if project is not None:
        files = {kind: _files(con, kind) for kind in ("metrics", "summaries")}
        if all(found is not None for found in files.values()):
            # The view's `project = ?` reads the partition column: keep the same files.
            marker = f"project={project}/"
            listed = {
                kind: [path for rel, path in found.items() if rel.startswith(marker)]
                for kind, found in files.items()
                if found is not None
            }
    summaries = summaries_sql(con, keys=[metric], listed=listed)
    if summaries != "metric_summaries" and (project is None or listed is not None):
        return f"SELECT run_id, {best}_value AS metric FROM {summaries} WHERE key = ?", [metric]
    where_project = " AND project = ?" if project is not None else ""
    return (
        f"""SELECT run_id, {best}(value) FILTER (WHERE NOT isnan(value)) AS metric
            FROM metrics WHERE key = ?{where_project}
            GROUP BY run_id""",
        [metric, *([project] if project is not None else [])],
    )


def _in_window(runs: pl.DataFrame, start: dt.datetime, stop: dt.datetime) -> pl.DataFrame:
    """The runs whose wall time overlaps ``[start, stop)``."""
    import polars as pl

    if start <= _MIN_TS and stop >= _MAX_TS:
        return runs
    ends = pl.col("start_time") + pl.duration(
        microseconds=(pl.col("duration_s") * 1e6).cast(pl.Int64)
    )
    return runs.filter((pl.col("start_time") < stop) & (ends >= start))


def _with_totals(groups: pl.DataFrame, with_metric: bool) -> pl.DataFrame:
    import polars as pl

    groups = groups.with_columns(
        (pl.col("failed_usd") + pl.col("dominated_usd")).alias("wasted_usd")
    )
    if not with_metric:
        groups = groups.drop("dominated_usd")
    return groups


def _with_budget(groups: pl.DataFrame, budget: float) -> tuple[pl.DataFrame, list[str]]:
    import polars as pl

    body = groups.filter(pl.col("group") != "TOTAL")
    frame = groups.with_columns(
        pl.lit(budget).alias("budget_usd"),
        (pl.col("cost_usd").fill_null(0) / budget * 100 if budget > 0 else pl.lit(None)).alias(
            "budget_used_pct"
        ),
        pl.when(pl.col("group") == "TOTAL")
        .then(None)
        .otherwise(pl.col("cost_usd").fill_null(0) > budget)
        .alias("over_budget"),
    )
    over = [g for g, c in zip(body["group"], body["cost_usd"], strict=True) if (c or 0) > budget]
    return frame, over


def _efficiency(runs: pl.DataFrame, mode: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    import polars as pl

    sign = 1.0 if mode == "max" else -1.0
    rows = []
    for (proj, experiment), part in runs.sort("start_time").group_by(
        ["project", "experiment"], maintain_order=True
    ):
        # Only finished runs compete: a failed run's metric has no model behind it.
        scored = part.filter(
            pl.col("metric").is_not_null()
            & ~pl.col("metric").is_nan()
            & (pl.col("status") == "finished")
        )
        total_cost = part["cost_usd"].sum() if part["cost_usd"].null_count() < len(part) else None
        row: dict[str, Any] = {
            "project": proj,
            "experiment": experiment,
            "runs": len(part),
            "scored_runs": len(scored),
            "total_cost_usd": total_cost,
            "best_metric": None,
            "best_run": None,
            "best_run_cost_usd": None,
            "cost_to_best_usd": None,
            "first_metric": None,
            "metric_gain": None,
            "gain_per_usd": None,
            "best_metric_per_usd": None,
        }
        if len(scored):
            best_index = int((scored["metric"] * sign).arg_max())  # type: ignore[arg-type]
            best = scored.row(best_index, named=True)
            first = scored.row(0, named=True)
            # What it took to find the best: every run started up to and including it.
            before = part.filter(pl.col("start_time") <= best["start_time"])
            cost_to_best = (
                before["cost_usd"].sum() if before["cost_usd"].null_count() == 0 else None
            )
            gain = (best["metric"] - first["metric"]) * sign
            row.update(
                best_metric=best["metric"],
                best_run=best["name"] or best["run_id"][:8],
                best_run_cost_usd=best["cost_usd"],
                cost_to_best_usd=cost_to_best,
                first_metric=first["metric"],
                metric_gain=gain,
                gain_per_usd=gain / cost_to_best if cost_to_best else None,
                best_metric_per_usd=best["metric"] / best["cost_usd"] if best["cost_usd"] else None,
            )
        rows.append(row)
    efficiency_schema = {
        "project": pl.Utf8,
        "experiment": pl.Utf8,
        "runs": pl.Int64,
        "scored_runs": pl.Int64,
        "total_cost_usd": pl.Float64,
        "best_metric": pl.Float64,
        "best_run": pl.Utf8,
        "best_run_cost_usd": pl.Float64,
        "cost_to_best_usd": pl.Float64,
        "first_metric": pl.Float64,
        "metric_gain": pl.Float64,
        "gain_per_usd": pl.Float64,
        "best_metric_per_usd": pl.Float64,
    }
    front_schema = {
        "project": pl.Utf8,
        "experiment": pl.Utf8,
        "run_id": pl.Utf8,
        "name": pl.Utf8,
        "cost_usd": pl.Float64,
        "metric": pl.Float64,
        "metric_per_usd": pl.Float64,
    }
    return pl.DataFrame(rows, schema=efficiency_schema), _front(runs, mode).select(
        [pl.col(name).cast(kind) for name, kind in front_schema.items()]
    )


def _front(runs: pl.DataFrame, mode: str) -> pl.DataFrame:
    """Per experiment, the Pareto front of metric vs cost: the finished, costed runs taken
    cheapest first (better metric first among equal costs), each kept when it beats every
    cheaper run. Experiments in the order their first run started. One vectorised pass (a
    running maximum per experiment), not a Python loop over the runs."""
    import polars as pl

    sign = 1.0 if mode == "max" else -1.0
    ordered = runs.sort("start_time", maintain_order=True).with_row_index("_order")
    experiment = ["project", "experiment"]
    costed = ordered.with_columns(pl.col("_order").min().over(experiment).alias("_group")).filter(
        pl.col("metric").is_not_null()
        & ~pl.col("metric").is_nan()
        & (pl.col("status") == "finished")
        & pl.col("cost_usd").is_not_null()
    )
    costed = costed.sort(
        ["_group", "cost_usd", "metric"],
        descending=[False, False, mode == "max"],
        maintain_order=True,
    )
    value = pl.col("metric") * sign
    beaten = value.cum_max().shift(1).over("_group")
    return costed.filter(beaten.is_null() | (value > beaten)).with_columns(
        pl.when(pl.col("cost_usd") != 0)
        .then(pl.col("metric") / pl.col("cost_usd"))
        .otherwise(None)
        .alias("metric_per_usd")
    )


def _plot(front: pl.DataFrame | None, runs: pl.DataFrame, metric: str, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    runs = runs.filter(runs["cost_usd"].is_not_null() & runs["metric"].is_not_null())
    for (proj, experiment), part in runs.group_by(["project", "experiment"], maintain_order=True):
        label = f"{proj}/{experiment}"
        points = axes.scatter(part["cost_usd"], part["metric"], alpha=0.5, label=label)
        if front is not None:
            line = front.filter(
                (front["project"] == proj) & (front["experiment"] == experiment)
            ).sort("cost_usd")
            axes.step(
                line["cost_usd"],
                line["metric"],
                where="post",
                color=points.get_facecolor()[0],
                linewidth=1.5,
            )
    axes.set_xlabel("cost (USD)")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} vs cost (Pareto front as steps)")
    if len(runs):
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def record_cost(
    run_id: str,
    cost_usd: float,
    *,
    source: str = "manual",
    store: str | os.PathLike[str] | Store | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Record an explicit cost for a run (e.g. a cloud bill line); it overrides the
    estimate, and several records for one run add up.

    Raises:
        InvalidValueError: a negative or non-numeric cost.
        RunNotFoundError: no run has this id (or unique prefix).
    """
    if isinstance(cost_usd, bool) or not isinstance(cost_usd, (int, float)) or cost_usd < 0:
        raise InvalidValueError(f"Cost must be a number >= 0 (USD), got {cost_usd!r}")
    from ledger.writer import writer_for

    store_obj = open_store(store)
    con = connect(store_obj)
    try:
        found = con.execute(
            "SELECT run_id, project FROM runs WHERE run_id = ? OR starts_with(run_id, ?) "
            "ORDER BY run_id = ? DESC LIMIT 2",
            [run_id, run_id, run_id],
        ).fetchall()
    finally:
        con.close()
    if not found or (len(found) > 1 and found[0][0] != run_id):
        raise RunNotFoundError(
            f"No run with id {run_id!r}" if not found else f"Run id prefix {run_id!r} is ambiguous"
        )
    full_id, project = found[0]
    writer = writer_for(store_obj)
    row = {
        "run_id": full_id,
        "kind": "bill",
        "source": source,
        "cost_usd": float(cost_usd),
        "measured": True,
        "attrs": json.dumps({"note": note}) if note else None,
    }
    writer.add_event("costs", project, dict(row))
    writer.flush()
    return {"run_id": full_id, "project": project, "cost_usd": float(cost_usd), "source": source}
