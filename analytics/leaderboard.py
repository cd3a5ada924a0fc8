"""Leaderboards: which runs did best on a metric, ranked by their best value.

MLflow ranks by a metric's last value only; here ``agg`` picks last, best (by
``mode``), min or max, and each row shows the step where that value was reached. The
scope (project, experiment, children of a sweep, a full-SQL ``where``) comes from
:mod:`ledger.analytics.scope`; ``as_of`` re-folds the store as it stood at a moment.

NaN points never win best/min/max; a run whose ranked value is NaN (e.g. the last
point) ranks after every number. Runs that never logged the metric are left out. Ties
share a rank (SQL ``rank()``); among them the earlier-started run is listed first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
from ledger.analytics.cache import register
from ledger.analytics.engine import (
    connection,
    consistent,
    cursor,
    fetch_frame,
    quote_identifier,
    quote_literal,
    views_for,
)
from ledger.analytics.pruning import Snapshot, snapshot_cursor
from ledger.analytics.scope import RUN_COLUMNS, Scope, parse_as_of
from ledger.analytics.summaries import summaries_sql

from ledger.errors import InvalidValueError, QueryError
from ledger.store import Store

if TYPE_CHECKING:
    import polars as pl

MODES = ("max", "min")
AGGS = ("best", "last", "min", "max")
GROUP_COLUMNS = ("project", "experiment", "status", "user", "host", "git_commit", "git_branch")


def value_columns(agg: str, mode: str) -> tuple[str, str]:
    """The ``metric_summaries`` columns holding the value and its step for ``agg``."""
    if agg == "best":
        agg = mode
    return {
        "last": ("last_value", "last_step"),
        "min": ("min_value", "min_step"),
        "max": ("max_value", "max_step"),
    }[agg]


def check_choices(mode: str, agg: str) -> None:
    """Raises InvalidValueError for an unknown mode or agg."""
    if mode not in MODES:
        raise InvalidValueError(f"Unknown mode {mode!r}. Known: {', '.join(MODES)}")
    if agg not in AGGS:
        raise InvalidValueError(f"Unknown agg {agg!r}. Known: {', '.join(AGGS)}")


def parse_group_by(group_by: str) -> tuple[str, str]:
    """``param:KEY`` / ``tag:KEY`` / a run column -> (kind, name).

    Raises:
        InvalidValueError: anything else.
    """
    kind, sep, name = group_by.partition(":")
    if sep and kind in ("param", "tag") and name:
        return kind, name
    if not sep and group_by in GROUP_COLUMNS:
        return "column", group_by
    raise InvalidValueError(
        f"Unknown --group-by {group_by!r}. Use param:KEY, tag:KEY or one of "
        f"{', '.join(GROUP_COLUMNS)}"
    )


def _split(names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [name.strip() for name in names if name.strip()]


def leaderboard(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    metric: str,
    mode: str = "max",
    agg: str = "best",
    project: str | None = None,
    experiment: str | None = None,
    where: str | None = None,
    top: int | None = 10,
    params: str | Sequence[str] | None = None,
    group_by: str | None = None,
    children_of: str | None = None,
    as_of: str | dt.datetime | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """Rank runs by ``metric`` (see the module doc for the rules).

    Args:
        metric: metric key to rank by.
        mode: ``max`` (higher is better) or ``min``.
        agg: ``best`` (max or min by ``mode``), ``last``, ``min`` or ``max``.
        project, experiment: limit to runs of these.
        where: SQL condition over run columns, ``params.<key>``, ``tags.<key>``.
        top: at most this many rows (groups with ``group_by``); None for all.
        params: param keys to show as ``params.<key>`` columns (list or "a,b").
        group_by: ``param:KEY``, ``tag:KEY`` or a run column: one row per group with
            the group's best run, its value, the mean and standard deviation and the
            run count.
        children_of: only the child runs of this run (id, prefix or name).
        as_of: look at the store as it stood then (datetime, ISO text, or "2h" ago).
        con: an open connection to reuse (ignored when ``as_of`` is given).

    Returns:
        rank, run_id, name, experiment, status, <metric>, step, n_points, duration_s,
        start_time, params.<key>..., cost_usd (when any run has costs).

    Raises:
        InvalidValueError: unknown mode/agg/group-by, negative top.
        QueryError: a bad ``where``.
        RunNotFoundError, AmbiguousRunError: ``children_of`` does not name one run.
    """
    check_choices(mode, agg)
    if top is not None and top < 0:
        raise InvalidValueError(f"--top must not be negative, got {top}")
    moment = parse_as_of(as_of)
    with connection(con, store, as_of=moment, views=views_for(_VIEWS, where)) as con:
        return _leaderboard(
            con,
            metric=metric,
            mode=mode,
            agg=agg,
            scope=Scope(
                project=project, experiment=experiment, children_of=children_of, where=where
            ),
            top=top,
            params=_split(params),
            group_by=group_by,
        )


# Views of queries/ a leaderboard reads (a --where may name more: see views_for).
_VIEWS = ("runs", "params", "tags", "costs", "metric_summaries")
# Kinds a leaderboard reads through the views, and those whose files it names itself.
_KINDS = ("runs", "params", "tags", "costs")
_ALSO = ("metrics", "summaries")
_ENDED_STATUSES = ["finished", "failed", "killed"]
_ENDED = f"({', '.join(map(quote_literal, _ENDED_STATUSES))})"


def _leaderboard(
    con: duckdb.DuckDBPyConnection,
    *,
    metric: str,
    mode: str,
    agg: str,
    scope: Scope,
    top: int | None,
    params: list[str],
    group_by: str | None,
) -> pl.DataFrame:
    group = parse_group_by(group_by) if group_by else None
    wanted_params = list(params) + ([group[1]] if group and group[0] == "param" else [])
    wanted_tags = [group[1]] if group and group[0] == "tag" else []
    if group and group[0] == "column":
        scope.extra_columns.append(group[1])

    def ask() -> pl.DataFrame:
        # One listing of the visible files per question (the views would re-glob and
        # filter every row against the commit log at each of their scans).
        with snapshot_cursor(con, _KINDS, _ALSO, project=scope.project) as listed:
            if listed is None:
                with contextlib.closing(cursor(con)) as cur:
                    return _ask(cur, None)
            return _ask(listed.cursor, listed)

    def _ask(cur: duckdb.DuckDBPyConnection, listed: Snapshot | None) -> pl.DataFrame:
        params_files = None if listed is None else listed.files["params"]
        scope.prepare(con, wanted_params, wanted_tags, params_files)
        sources = _sources(cur, listed, scope, metric, mode, agg)
        if listed is not None:
            # The rows shown need their costs. (A --where subquery over a view reads
            # the store's own views: the same rows, listed afresh.)
            if listed.holds_events("costs"):
                listed.ensure("costs")
            else:
                sources["costs"] = ""  # none listed: not even a costs view to plan
        sql, values = _board_sql(scope, mode, metric, top, params, group, sources)
        if "$metric" in sql:  # the plain views' path names the metric in the query
            values["metric"] = metric
        return fetch_frame(cur, sql, values)

    try:
        frame = consistent(con, ask)
    except duckdb.Error as exc:
        if scope.where is not None:
            raise scope.explain_error(exc, con) from exc
        raise QueryError(str(exc)) from exc
    if frame.height == 0:
        known = known_metrics(con)
        if metric not in known:
            raise InvalidValueError(
                f"Unknown metric {metric!r}. Known: {', '.join(sorted(known)) or '(none)'}"
            )
    if "cost_usd" in frame.columns and frame["cost_usd"].null_count() == frame.height:
        frame = frame.drop("cost_usd")
    return frame


def _sources(
    cur: duckdb.DuckDBPyConnection,
    snapshot: Snapshot | None,
    scope: Scope,
    metric: str,
    mode: str,
    agg: str,
) -> dict[str, str]:
    """The relations the ranking reads: ``values`` (the ranked metric of every run),
    ``runs`` (the scope's fold) and the ``params`` / ``tags`` pivots (None: computed in
    the ranking's own query, for the runs in scope).

    Over a snapshot each is a fold kept by :mod:`ledger.analytics.cache` for its exact
    files: only the first question about a set of files pays for it. The ``runs`` fold
    depends on the clock for open runs (a silent one turns ``stalled``, its duration
    grows), so only ended runs are taken from the kept fold; open ones are folded again.
    """
    value_col, step_col = value_columns(agg, mode)
    summaries = summaries_sql(
        cur, keys=[metric], listed=None if snapshot is None else snapshot.files
    )
    # NaN sorts above every number in DuckDB; rank on NULL instead so it goes last.
    values_sql = f"""SELECT run_id, {value_col} AS value, {step_col} AS step, n_points,
        CASE WHEN isnan({value_col}) THEN NULL ELSE {value_col} END AS rank_value
    FROM {summaries}
    WHERE key = $metric"""
    if snapshot is None:
        return {"values": f"({values_sql})"}
    files = snapshot.files
    session = snapshot.session
    register(
        cur,
        "_leaderboard_values",
        values_sql,
        {"metric": metric},
        files["metrics"] + files["summaries"],
        session=session,
        registered=snapshot.kept.tables,
    )
    sources = {"values": "_leaderboard_values"}
    columns = ", ".join(scope.run_columns())
    folded = register(
        cur,
        "_leaderboard_runs",
        f"SELECT {columns} FROM runs",
        None,
        files["runs"],
        lambda: snapshot.ensure("runs"),
        session=session,
        registered=snapshot.kept.tables,
    )
    import pyarrow as pa
    import pyarrow.compute as pc

    ended = pc.is_in(folded["status"], value_set=pa.array(_ENDED_STATUSES))
    open_ids = folded["run_id"].filter(pc.invert(ended)).to_pylist()
    if open_ids:
        snapshot.ensure("runs")
        listed = ", ".join(quote_literal(run_id) for run_id in open_ids)
        sources["runs"] = (
            f"(SELECT {columns} FROM _leaderboard_runs WHERE status IN {_ENDED} "
            f"UNION ALL SELECT {columns} FROM runs WHERE run_id IN ({listed}))"
        )
    else:
        sources["runs"] = "_leaderboard_runs"
    for kind in ("params", "tags"):
        pivot = scope.pivot_sql(kind)
        if pivot is not None:
            register(
                cur,
                f"_leaderboard_{kind}",
                pivot,
                None,
                files[kind],
                lambda kind=kind: snapshot.ensure(kind),
                session=session,
                registered=snapshot.kept.tables,
            )
            sources[kind] = f"_leaderboard_{kind}"
    return sources


def _board_sql(
    scope: Scope,
    mode: str,
    metric: str,
    top: int | None,
    params: list[str],
    group: tuple[str, str] | None,
    sources: dict[str, str],
) -> tuple[str, dict[str, Any]]:
    """The ranking over the relations of :func:`_sources`."""
    direction = "DESC" if mode == "max" else "ASC"
    ctes, values = scope.candidates_sql(
        sources.get("runs", "runs"), sources.get("params"), sources.get("tags")
    )
    body = f"""{ctes},
ranked AS (
    SELECT selected.*, m.value, m.step, m.n_points, m.rank_value
    FROM selected JOIN {sources["values"]} m ON m.run_id = selected.run_id
)"""
    limit = "" if top is None else f"LIMIT {int(top)}"
    metric_col = quote_identifier(metric)
    if group is None:
        param_cols = "".join(
            f", params.{quote_identifier(key)} AS {quote_identifier('params.' + key)}"
            for key in params
        )
        # Costs are summed for the rows shown only.
        costs, cost_col, cost_join = _costs_of(sources, "board")
        sql = f"""{body},
board AS (
    SELECT rank() OVER (ORDER BY rank_value {direction} NULLS LAST) AS rank, *
    FROM ranked
    ORDER BY rank_value {direction} NULLS LAST, start_time, run_id
    {limit}
){costs}
SELECT
    rank,
    board.run_id, name, experiment, status,
    value AS {metric_col}, step, n_points,
    duration_s, start_time{param_cols}, {cost_col}
FROM board{cost_join}
ORDER BY rank_value {direction} NULLS LAST, start_time, board.run_id"""
        return sql, values
    kind, name = group
    key_expr = (
        f"params.{quote_identifier(name)}"
        if kind == "param"
        else f"tags.{quote_identifier(name)}"
        if kind == "tag"
        else quote_identifier(name)
    )
    label = quote_identifier(f"{kind}:{name}" if kind != "column" else name)
    best = "max" if mode == "max" else "min"
    # Among tied groups' best runs, the earlier-started one wins (as in the ranking).
    tie = "-epoch(start_time)" if mode == "max" else "epoch(start_time)"
    order = f"({best}(rank_value)) {direction} NULLS LAST"
    costs, cost_col, cost_join = _costs_of(sources, "ranked")
    sql = f"""{body}{costs},
costed AS (SELECT ranked.*, {cost_col} FROM ranked{cost_join})
SELECT
    rank() OVER (ORDER BY {order}) AS rank,
    {key_expr} AS {label},
    count(*) AS runs,
    {best}(rank_value) AS {metric_col},
    avg(rank_value) AS mean,
    stddev_samp(rank_value) AS std,
    arg_{best}(run_id, (rank_value, {tie})) FILTER (WHERE rank_value IS NOT NULL)
        AS best_run_id,
    arg_{best}(name, (rank_value, {tie})) FILTER (WHERE rank_value IS NOT NULL) AS best_run,
    sum(cost_usd) AS cost_usd
FROM costed
GROUP BY {key_expr}
ORDER BY {order}, {label}
{limit}"""
    return sql, values


def _costs_of(sources: dict[str, str], rows: str) -> tuple[str, str, str]:
    """The CTE summing the costs of the runs of ``rows``, the ``cost_usd`` column and the
    join that brings it: a NULL column and nothing to plan when no costs are listed."""
    costs = sources.get("costs", "costs")
    if not costs:
        return "", "NULL::DOUBLE AS cost_usd", ""
    cte = f""",
c AS (
    SELECT run_id, sum(cost_usd) AS cost_usd
    FROM {costs} WHERE run_id IN (SELECT run_id FROM {rows}) GROUP BY run_id
)"""
    return cte, "c.cost_usd", f" LEFT JOIN c ON c.run_id = {rows}.run_id"


def known_metrics(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Metric keys present in the store (for error messages)."""
    return [row[0] for row in con.execute("SELECT DISTINCT key FROM events_metrics").fetchall()]


__all__ = ["AGGS", "MODES", "RUN_COLUMNS", "leaderboard", "value_columns"]
