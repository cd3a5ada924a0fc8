"""Live state of runs: what ``ledger status``, ``ledger watch`` and ``ledger serve`` read.

The query functions take an open DuckDB connection (from
:func:`ledger.analytics.engine.connect`, a :class:`~ledger.analytics.live.LiveStore`
cursor for the web server, or :func:`~ledger.analytics.live.recent_connection`), so a
refreshing caller pays for the views once and each refresh only runs its queries.
:func:`store_status` is ``ledger status`` itself: a connection over the recent window,
then :func:`status_rows`. Values are always bound parameters.

Progress: a run's step is the highest ``step`` any of its metrics reached. When the run
logged an expected total as the param or tag ``ledger.total_steps`` (the tag wins, since
tags can change), status shows percent done and an ETA from the run's step rate (steps
between its first and latest metric point, over the time between them).

Cost so far sums ``cost_usd`` / ``energy_kwh`` / ``emissions_kg`` of the ``costs`` view;
CPU and GPU utilisation average the latest minute of ``system_metrics`` samples whose
device or key names CPU or GPU and whose key reads as a utilisation (``*util*`` /
``*percent*``, memory keys excluded). Both are ``None`` when nothing was recorded.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import zoneinfo
from typing import TYPE_CHECKING, Any

import duckdb
from ledger.analytics.engine import HIVE_TYPES, fetch_frame, fetch_rows, quote_literal

from ledger.durations import parse_duration
from ledger.errors import InvalidValueError, RunNotFoundError
from ledger.store import Store, open_store

if TYPE_CHECKING:
    import polars as pl

TOTAL_STEPS_KEY = "ledger.total_steps"
"""Param or tag holding a run's expected number of steps (enables percent and ETA)."""
_UTC = zoneinfo.ZoneInfo("UTC")

STATUS_TYPES = {
    "run_id": str, "project": str, "experiment": str, "name": str, "status": str,
    "step": int, "total_steps": int, "percent": float, "eta_s": float, "metrics": str,
    "heartbeat_age_s": float, "cpu_util": float, "gpu_util": float, "cost_usd": float,
    "duration_s": float, "start_time": dt.datetime, "message": str,
}  # fmt: skip
"""Column -> Python type of a status row (``start_time`` is UTC)."""

STATUS_COLUMNS = tuple(STATUS_TYPES)

STATUS_VIEWS = ("runs", "params", "tags", "costs")
"""The views :func:`status` reads (besides ``events_metrics`` / ``events_system``)."""

# Runs worth showing live: open ones, and ones that failed/were killed/went silent lately.
_CANDIDATES_SQL = """
SELECT run_id, project, experiment, name, status, start_time, end_time, duration_s,
       last_heartbeat, message
FROM runs
WHERE (CAST($project AS VARCHAR) IS NULL OR project = $project)
  AND (status = 'running'
       OR (status = 'stalled' AND last_heartbeat >= $since)
       OR (status IN ('failed', 'killed') AND end_time >= $since))
ORDER BY (status = 'running') DESC, start_time DESC
LIMIT $limit
"""

_PROGRESS_SQL = """
SELECT run_id, key,
       arg_max(value, (step, ts, seq)) AS value,
       max(step) AS step, min(step) AS first_step,
       min(ts) AS first_ts, max(ts) AS last_ts
FROM {metrics}
WHERE date >= $since_date
  AND (CAST($projects AS VARCHAR[]) IS NULL OR list_contains($projects, project))
  AND list_contains($ids, run_id)
GROUP BY run_id, key
"""

_TOTALS_SQL = """
SELECT run_id, arg_max(value, prio) AS value FROM (
    SELECT run_id, value, 0 AS prio FROM params WHERE key = $key AND list_contains($ids, run_id)
    UNION ALL
    SELECT run_id, value, 1 AS prio FROM tags WHERE key = $key AND list_contains($ids, run_id)
) GROUP BY run_id
"""

_UTIL_SQL = """
WITH samples AS (
    SELECT run_id, ts, value,
           CASE
               WHEN lower(device) LIKE '%gpu%' OR lower(device) LIKE 'cuda%'
                    OR lower(key) LIKE '%gpu%' THEN 'gpu'
               WHEN lower(device) LIKE 'cpu%' OR lower(key) LIKE 'cpu%' THEN 'cpu'
           END AS what
    FROM {system}
    WHERE date >= $since_date
      AND (CAST($projects AS VARCHAR[]) IS NULL OR list_contains($projects, project))
      AND list_contains($ids, run_id)
      AND (lower(key) LIKE '%util%' OR lower(key) LIKE '%percent%')
      AND lower(key) NOT LIKE '%mem%'
),
latest AS (SELECT run_id, what, max(ts) AS last_ts FROM samples WHERE what IS NOT NULL
           GROUP BY run_id, what)
SELECT s.run_id, s.what, avg(s.value) AS util
FROM samples s JOIN latest l USING (run_id, what)
WHERE s.ts >= l.last_ts - INTERVAL 60 SECOND
GROUP BY s.run_id, s.what
"""

_COSTS_SQL = """
SELECT run_id, sum(cost_usd) AS cost_usd, sum(energy_kwh) AS energy_kwh,
       sum(emissions_kg) AS emissions_kg
FROM costs WHERE list_contains($ids, run_id) GROUP BY run_id
"""


def _seconds(value: str | float | int | None, what: str) -> float | None:
    return None if value is None else parse_duration(value, what=what)


def _frame_rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict]:
    return fetch_frame(con, sql, params).to_dicts()


def _optional_rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any], *, scalar: bool = False
) -> list[dict[str, Any]]:
    """Rows of a query over a view another area owns; [] when that view cannot answer.
    ``scalar``: the query selects only scalar columns, so fetch them without pyarrow."""
    try:
        return (fetch_rows if scalar else _frame_rows)(con, sql, params)
    except duckdb.Error:
        return []


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_value(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def run_progress(
    con: duckdb.DuckDBPyConnection,
    run_ids: list[str],
    *,
    since: dt.datetime | None = None,
    projects: list[str] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """Step, expected total, percent, ETA and latest metric values of each run.

    ``since`` (the oldest start among ``run_ids``) and ``projects`` (theirs) prune metric
    partitions.
    """
    if not run_ids:
        return {}
    now = now or dt.datetime.now(dt.timezone.utc)
    since_date = (since or dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).date()
    params = {"ids": run_ids, "since_date": since_date, "projects": projects}
    result: dict[str, dict[str, Any]] = {
        run_id: {
            "step": None,
            "total_steps": None,
            "percent": None,
            "eta_s": None,
            "latest": {},
            "last_metric_ts": None,
        }
        for run_id in run_ids
    }
    spans: dict[str, list[Any]] = {}
    source = _source(con, "metrics", projects, since_date, _ALL_DATES["hi"])
    # The status path fetches scalar rows straight from DuckDB (fetch_rows): converting a
    # few dozen rows through pyarrow and polars costs more than the query, and importing
    # them costs a fresh `ledger status` process ~0.3 s.
    for row in fetch_rows(con, _PROGRESS_SQL.replace("{metrics}", source), params):
        info = result[row["run_id"]]
        info["latest"][row["key"]] = row["value"]
        if info["step"] is None or row["step"] > info["step"]:
            info["step"] = row["step"]
        if info["last_metric_ts"] is None or row["last_ts"] > info["last_metric_ts"]:
            info["last_metric_ts"] = row["last_ts"]
        span = spans.setdefault(row["run_id"], [row["first_step"], row["first_ts"]])
        if row["first_ts"] < span[1]:
            span[:] = [row["first_step"], row["first_ts"]]
    for row in fetch_rows(con, _TOTALS_SQL, {"ids": run_ids, "key": TOTAL_STEPS_KEY}):
        total = _as_float(row["value"])
        if total is not None and total > 0:
            result[row["run_id"]]["total_steps"] = int(total)
    for run_id, info in result.items():
        total, step = info["total_steps"], info["step"]
        if total is None or step is None:
            continue
        # Steps count from 0: the last of `total` steps is total - 1.
        done = min(step + 1, total)
        info["percent"] = round(100.0 * done / total, 1)
        first_step, first_ts = spans[run_id]
        elapsed = (info["last_metric_ts"] - first_ts).total_seconds()
        if step > first_step and elapsed > 0:
            rate = (step - first_step) / elapsed
            behind = max(0.0, (now - info["last_metric_ts"]).total_seconds())
            info["eta_s"] = max(0.0, (total - done) / rate - behind) if done < total else 0.0
    return result


def utilisation(
    con: duckdb.DuckDBPyConnection,
    run_ids: list[str],
    *,
    since: dt.datetime | None = None,
    projects: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean CPU/GPU utilisation (percent) over each run's latest minute of samples."""
    if not run_ids:
        return {}
    since_date = (since or dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).date()
    out: dict[str, dict[str, float]] = {}
    params = {"ids": run_ids, "since_date": since_date, "projects": projects}
    source = _source(con, "system", projects, since_date, _ALL_DATES["hi"])
    for row in _optional_rows(con, _UTIL_SQL.replace("{system}", source), params, scalar=True):
        out.setdefault(row["run_id"], {})[row["what"]] = row["util"]
    return out


def run_costs(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Cost, energy and emissions recorded so far per run ({} when the costs view is empty)."""
    if not run_ids:
        return {}
    rows = _optional_rows(con, _COSTS_SQL, {"ids": run_ids}, scalar=True)
    return {row["run_id"]: row for row in rows}


def status_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    project: str | None = None,
    recent: str | float = "1h",
    metrics: list[str] | None = None,
    max_metrics: int = 4,
    limit: int = 200,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """:func:`status` as plain dicts (keys and types of :data:`STATUS_TYPES`, in that
    order), for callers that print them without loading polars (``ledger status``).

    Raises:
        InvalidValueError: a negative limit.
        ConfigError: an unreadable ``recent`` duration.
    """
    if limit < 0:
        raise InvalidValueError(f"limit must not be negative, got {limit}")
    now = now or dt.datetime.now(dt.timezone.utc)
    since = now - dt.timedelta(seconds=_seconds(recent, "recent window") or 0.0)
    runs = fetch_rows(
        con, _CANDIDATES_SQL, {"project": project, "since": since, "limit": int(limit)}
    )
    ids = [row["run_id"] for row in runs]
    oldest = min((row["start_time"] for row in runs), default=None)
    projects = sorted({row["project"] for row in runs})
    progress = run_progress(con, ids, since=oldest, projects=projects, now=now)
    util = utilisation(con, ids, since=oldest, projects=projects)
    costs = run_costs(con, ids)
    rows = []
    for run in runs:
        info = progress[run["run_id"]]
        latest = info["latest"]
        keys = [k for k in metrics if k in latest] if metrics else sorted(latest)[:max_metrics]
        # Last heard from: a heartbeat or a metric point, whichever is newer.
        heartbeat = max(
            (t for t in (run["last_heartbeat"], info["last_metric_ts"]) if t is not None),
            default=None,
        )
        row = {
            "run_id": run["run_id"],
            "project": run["project"],
            "experiment": run["experiment"],
            "name": run["name"],
            "status": run["status"],
            "step": info["step"],
            "total_steps": info["total_steps"],
            "percent": info["percent"],
            "eta_s": info["eta_s"] if run["status"] == "running" else None,
            "metrics": "  ".join(f"{k}={format_value(latest[k])}" for k in keys),
            "heartbeat_age_s": (now - heartbeat).total_seconds()
            if heartbeat and run["status"] in ("running", "stalled")
            else None,
            "cpu_util": util.get(run["run_id"], {}).get("cpu"),
            "gpu_util": util.get(run["run_id"], {}).get("gpu"),
            "cost_usd": costs.get(run["run_id"], {}).get("cost_usd"),
            "duration_s": run["duration_s"],
            "start_time": run["start_time"],
            "message": run["message"],
        }
        rows.append({key: _typed(row[key], kind) for key, kind in STATUS_TYPES.items()})
    return rows


def _typed(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (what a polars column of that dtype would hand back)."""
    if value is None:
        return None
    if kind is dt.datetime:
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    return value if isinstance(value, kind) else kind(value)


def store_status(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    project: str | None = None,
    recent: str | float = "1h",
    metrics: list[str] | None = None,
    max_metrics: int = 4,
    limit: int = 200,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """:func:`status_rows` of ``store`` as ``ledger status`` computes them (once, or at
    every ``--watch`` refresh): over a connection that reads only the runs with events
    in the window that can hold a shown run (``recent``, or ``stall_after`` for open
    runs, plus a minute), so the cost follows the recent activity, not the store's size
    (:func:`~ledger.analytics.live.recent_connection`).

    Raises:
        InvalidValueError: a negative limit.
        ConfigError: an unreadable ``recent`` duration.
    """
    from ledger.analytics.live import recent_connection

    store_obj = open_store(store)
    now = now or dt.datetime.now(dt.timezone.utc)
    window = max(_seconds(recent, "recent window") or 0.0, store_obj.settings.stall_after)
    since = now - dt.timedelta(seconds=window + 60)
    con = recent_connection(store_obj, since=since, views=STATUS_VIEWS)
    try:
        return status_rows(
            con,
            project=project,
            recent=recent,
            metrics=metrics,
            max_metrics=max_metrics,
            limit=limit,
            now=now,
        )
    finally:
        con.close()


def status(
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    project: str | None = None,
    recent: str | float = "1h",
    metrics: list[str] | None = None,
    max_metrics: int = 4,
    limit: int = 200,
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """Running runs, plus runs that failed, were killed or stalled within ``recent``.

    One row per run with the columns of :data:`STATUS_COLUMNS`: progress (step, total,
    percent, ETA in seconds), the latest value of key ``metrics`` (default: the first
    ``max_metrics`` keys by name) as ``key=value`` text, heartbeat age in seconds (since
    the last heartbeat or metric point, for open runs),
    CPU/GPU utilisation and cost so far.

    ``con``: a connection with the views (a caller that refreshes keeps one); without
    it, ``store`` is read as ``ledger status`` reads it (:func:`store_status`).

    Raises:
        InvalidValueError: a negative limit.
        ConfigError: an unreadable ``recent`` duration.
    """
    options: dict[str, Any] = {
        "project": project,
        "recent": recent,
        "metrics": metrics,
        "max_metrics": max_metrics,
        "limit": limit,
        "now": now,
    }
    if con is None:
        return status_frame(store_status(store, **options))
    return status_frame(status_rows(con, **options))


def status_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """:func:`status_rows` as the polars frame :func:`status` returns."""
    import polars as pl

    dtypes = {str: pl.Utf8, int: pl.Int64, float: pl.Float64, dt.datetime: pl.Datetime("us", "UTC")}
    return pl.DataFrame(rows, schema={k: dtypes[v] for k, v in STATUS_TYPES.items()})


# -- browsing (the web app) ------------------------------------------------------------------

_DAY = dt.timedelta(days=1)
_ALL_DATES = {"lo": dt.date(1970, 1, 1), "hi": dt.date(9999, 12, 31)}
_SCOPE = "project = $project AND date BETWEEN $lo AND $hi AND run_id = $id"
"""Metric/system rows of one run: its project partition and the dates of its lifetime."""


def _source(con: Any, kind: str, projects: list[str] | None, lo: dt.date, hi: dt.date) -> str:
    """What to scan for ``kind`` in ``projects`` dated ``lo``..``hi``: the view, or (on a
    :class:`~ledger.analytics.live.LiveCursor`) just the files of those partitions, which
    skips binding every file of the store."""
    lister = getattr(con, "scoped_files", None)
    files: list[str] | None = None
    if lister is not None and projects is not None:
        files = []
        for project in projects:
            found = lister(kind, project, lo, hi)
            if found is None:
                files = None
                break
            files.extend(found)
    if files is None:
        return f"events_{kind}"
    if not files:
        return f"(SELECT * FROM events_{kind} LIMIT 0)"
    listing = ", ".join(quote_literal(name) for name in files)
    return (
        f"read_parquet([{listing}], hive_partitioning = true, union_by_name = true, "
        f"hive_types = {HIVE_TYPES})"
    )


def run_scope(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """Bound parameters that confine a scan of a high-volume kind to one run's partitions:
    its project, and the UTC dates from a day before it started to a day after it ended
    (open-ended while it runs). Pruning partitions is what keeps a run page fast on a big
    store; :func:`_scoped` widens to all dates when the window finds nothing (points
    logged with explicit timestamps far outside the run's lifetime).

    Raises:
        RunNotFoundError: no run has this id.
    """
    rows = _frame_rows(
        con, "SELECT project, start_time, end_time FROM runs WHERE run_id = $id", {"id": run_id}
    )
    if not rows:
        raise RunNotFoundError(f"No run with id {run_id!r}")
    row = rows[0]
    return {
        "id": run_id,
        "project": row["project"],
        "lo": (row["start_time"] - _DAY).date() if row["start_time"] else _ALL_DATES["lo"],
        "hi": (row["end_time"] + _DAY).date() if row["end_time"] else _ALL_DATES["hi"],
    }


def _scoped(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict[str, Any],
    scope: dict[str, Any],
    *,
    widen: bool = True,
) -> pl.DataFrame:
    def run(scope: dict[str, Any]) -> pl.DataFrame:
        where = ([scope["project"]], scope["lo"], scope["hi"])
        text = sql.replace("{metrics}", _source(con, "metrics", *where)).replace(
            "{system}", _source(con, "system", *where)
        )
        return fetch_frame(con, text, {**params, **scope})

    frame = run(scope)
    if frame.height == 0 and widen and (scope["lo"], scope["hi"]) != tuple(_ALL_DATES.values()):
        frame = run({**scope, **_ALL_DATES})
    return frame


SORTABLE = {
    "start_time": "start_time",
    "name": "name",
    "status": "status",
    "duration_s": "duration_s",
    "project": "project",
    "experiment": "experiment",
    "user": '"user"',
}
RUN_LIST_COLUMNS = (
    'run_id, project, experiment, name, status, start_time, end_time, duration_s, "user", '
    "host, git_commit, last_heartbeat, parent_run_id, message"
)


def list_runs_page(
    con: duckdb.DuckDBPyConnection,
    *,
    project: str | None = None,
    experiment: str | None = None,
    status: str | None = None,
    search: str | None = None,
    sort: str = "start_time",
    descending: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """(matching count, one page of runs) filtered, searched and sorted.

    ``search`` matches run id prefix, name, experiment, project, user or a tag value,
    case-insensitively.

    Raises:
        InvalidValueError: an unknown sort column or a bad limit/offset.
    """
    if sort not in SORTABLE:
        raise InvalidValueError(f"Unknown sort column {sort!r}. Known: {', '.join(SORTABLE)}")
    if not 0 < limit <= 1000 or offset < 0:
        raise InvalidValueError("limit must be 1..1000 and offset not negative")
    where = """
        (CAST($project AS VARCHAR) IS NULL OR project = $project)
        AND (CAST($experiment AS VARCHAR) IS NULL OR experiment = $experiment)
        AND (CAST($status AS VARCHAR) IS NULL OR status = $status)
        AND (CAST($search AS VARCHAR) IS NULL
             OR starts_with(run_id, lower($search))
             OR contains(lower(coalesce(name, '')), lower($search))
             OR contains(lower(coalesce(experiment, '')), lower($search))
             OR contains(lower(project), lower($search))
             OR contains(lower(coalesce("user", '')), lower($search)))
    """
    params = {
        "project": project or None,
        "experiment": experiment or None,
        "status": status or None,
        "search": search.strip() if search and search.strip() else None,
    }
    order = f"{SORTABLE[sort]} {'DESC' if descending else 'ASC'} NULLS LAST, run_id"
    sql = f"""
        WITH matching AS (SELECT {RUN_LIST_COLUMNS} FROM runs WHERE {where})
        SELECT *, count(*) OVER () AS total FROM matching
        ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}
    """
    rows = _frame_rows(con, sql, params)
    total = rows[0].pop("total") if rows else 0
    for row in rows[1:]:
        row.pop("total")
    if not rows and offset:
        count_sql = f"SELECT count(*) AS n FROM runs WHERE {where}"
        total = _frame_rows(con, count_sql, params)[0]["n"]
    return int(total), rows


def facets(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Projects, experiments and statuses present (for the filter menus)."""
    rows = _frame_rows(
        con,
        "SELECT project, experiment, runs, running FROM experiments ORDER BY project, experiment",
        {},
    )
    return {"experiments": rows, "projects": sorted({row["project"] for row in rows})}


# The latest_metrics view's fold, for one run, scanning only that run's partitions.
_LATEST_SQL = f"""
SELECT key,
       arg_max(value, (step, ts, seq)) AS value,
       max(step) AS step,
       min(value) FILTER (WHERE NOT isnan(value)) AS min_value,
       max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
       count(*) AS n_points
FROM {{metrics}} WHERE {_SCOPE}
GROUP BY key ORDER BY key
"""


def run_detail(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """Everything known about one run: the runs row, params, tags, latest metrics,
    artifacts, data sets, costs and notes.

    Raises:
        RunNotFoundError: no run has this id.
    """
    ids = {"id": run_id}
    found = _frame_rows(con, "SELECT * FROM runs WHERE run_id = $id", ids)
    if not found:
        raise RunNotFoundError(f"No run with id {run_id!r}")
    run = found[0]
    return {
        "run": run,
        "params": _frame_rows(
            con, "SELECT key, value, value_type FROM params WHERE run_id = $id ORDER BY key", ids
        ),
        "tags": _frame_rows(
            con, "SELECT key, value FROM tags WHERE run_id = $id ORDER BY key", ids
        ),
        "metrics": _scoped(con, _LATEST_SQL, {}, run_scope(con, run_id)).to_dicts(),
        "artifacts": _frame_rows(
            con, "SELECT path, size, sha256, kind, ts FROM artifacts WHERE run_id = $id "
            "ORDER BY path", ids,
        ),
        "datasets": _optional_rows(
            con, "SELECT name, context, source, sha256, rows, columns FROM datasets "
            "WHERE run_id = $id ORDER BY ts", ids,
        ),
        "costs": _optional_rows(
            con, "SELECT kind, source, cost_usd, energy_kwh, emissions_kg, measured, ts "
            "FROM costs WHERE run_id = $id ORDER BY ts", ids,
        ),
        "notes": _frame_rows(
            con, "SELECT ts, message FROM events_runs WHERE run_id = $id AND event = 'note' "
            "ORDER BY ts", ids,
        ),
        "children": _frame_rows(
            con, "SELECT run_id, name, status FROM runs WHERE parent_run_id = $id "
            "ORDER BY start_time", ids,
        ),
    }  # fmt: skip


_SERIES_SQL = f"""
WITH points AS (
    SELECT key, step, value, ts,
           row_number() OVER (PARTITION BY key ORDER BY step, ts, seq) AS i,
           count(*) OVER (PARTITION BY key) AS n
    FROM {{metrics}}
    WHERE {_SCOPE} AND step > $after
      AND (CAST($keys AS VARCHAR[]) IS NULL OR list_contains($keys, key))
)
SELECT key, step, value, epoch(ts) AS t FROM points
WHERE n <= $max_points OR i = n OR (i - 1) % ceil(n / $max_points)::BIGINT = 0
ORDER BY key, step, ts
"""


def metric_series(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    keys: list[str] | None = None,
    after_step: int = -1,
    max_points: int = 2000,
) -> dict[str, list[list[Any]]]:
    """``{key: [[step, value], ...]}`` of a run, thinned evenly to ``max_points`` per key
    (the last point always kept). ``after_step`` returns only newer points (live updates).
    NaN and ±inf come back as ``None`` (JSON has no NaN) — charts show them as gaps.
    """
    series: dict[str, list[list[Any]]] = {}
    rows = _scoped(
        con,
        _SERIES_SQL,
        {"after": int(after_step), "keys": keys, "max_points": int(max_points)},
        run_scope(con, run_id),
        widen=after_step < 0,
    )
    for key, step, value in zip(rows["key"], rows["step"], rows["value"], strict=True):
        series.setdefault(key, []).append(
            [step, value if value is not None and math.isfinite(value) else None]
        )
    return series


def system_series(
    con: duckdb.DuckDBPyConnection, run_id: str, *, max_points: int = 600
) -> dict[str, list[list[Any]]]:
    """``{"device/key": [[unix_seconds, value], ...]}`` of a run's resource samples."""
    rows = _scoped(
        con,
        f"""
        WITH s AS (
            SELECT device || '/' || key AS name, epoch(ts) AS t, value,
                   row_number() OVER (PARTITION BY device, key ORDER BY ts) AS i,
                   count(*) OVER (PARTITION BY device, key) AS n
            FROM {{system}} WHERE {_SCOPE}
        )
        SELECT name, t, value FROM s
        WHERE n <= $max_points OR i = n OR (i - 1) % ceil(n / $max_points)::BIGINT = 0
        ORDER BY name, t
        """,
        {"max_points": int(max_points)},
        run_scope(con, run_id),
    ).to_dicts()
    series: dict[str, list[list[Any]]] = {}
    for row in rows:
        value = row["value"]
        series.setdefault(row["name"], []).append(
            [row["t"], value if value is not None and math.isfinite(value) else None]
        )
    return series


def compare_runs(
    con: duckdb.DuckDBPyConnection, run_ids: list[str], *, keys: list[str] | None = None
) -> dict[str, Any]:
    """Runs side by side: their rows, a params/metrics diff table and overlaid curves.

    Raises:
        InvalidValueError: fewer than two or more than 20 runs.
        RunNotFoundError: an id that is not in the store.
    """
    if not 2 <= len(run_ids) <= 20:
        raise InvalidValueError(f"Compare 2 to 20 runs, got {len(run_ids)}")
    ids = {"ids": run_ids}
    runs = _frame_rows(
        con,
        "SELECT run_id, project, experiment, name, status, duration_s FROM runs "
        "WHERE list_contains($ids, run_id)",
        ids,
    )
    missing = sorted(set(run_ids) - {row["run_id"] for row in runs})
    if missing:
        raise RunNotFoundError(f"No run with id {missing[0]!r}")
    order = {run_id: i for i, run_id in enumerate(run_ids)}
    runs.sort(key=lambda row: order[row["run_id"]])
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, sql in (
        ("param", "SELECT run_id, key, value FROM params WHERE list_contains($ids, run_id)"),
        (
            "metric",
            "SELECT run_id, key, value FROM latest_metrics WHERE list_contains($ids, run_id)",
        ),
    ):
        for row in _frame_rows(con, sql, ids):
            value = row["value"]
            if isinstance(value, float) and not math.isfinite(value):
                value = format_value(value)
            table.setdefault((kind, row["key"]), {})[row["run_id"]] = value
    diff = []
    for (kind, key), values in sorted(table.items()):
        cells = [values.get(run_id) for run_id in run_ids]
        diff.append(
            {
                "kind": kind,
                "key": key,
                "values": cells,
                "differs": len({repr(c) for c in cells}) > 1,
            }
        )
    curves = {run_id: metric_series(con, run_id, keys=keys, max_points=500) for run_id in run_ids}
    return {"runs": runs, "diff": diff, "curves": curves}
