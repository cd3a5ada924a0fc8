"""Listing runs: the ``runs`` view filtered the way people ask for it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb
from ledger.analytics.engine import (
    connect,
    connection,
    consistent,
    fetch_frame,
    run_sql,
)

from ledger.errors import InvalidValueError
from ledger.events import STATUSES
from ledger.store import Store

if TYPE_CHECKING:
    import polars as pl

LIST_COLUMNS = (
    "run_id, project, experiment, name, status, start_time, duration_s, parent_run_id, "
    '"user", git_commit'
)


def list_runs(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    project: str | None = None,
    experiment: str | None = None,
    status: str | None = None,
    limit: int | None = 50,
    include_archived: bool | None = None,
    include_deleted: bool = False,
) -> pl.DataFrame:
    """Runs, newest first, optionally filtered by project, experiment and status.

    Soft-deleted runs are left out; ``include_deleted=True`` lists them too, with a
    ``deleted`` column.

    Raises:
        InvalidValueError: unknown status or a negative limit.
    """
    if status is not None and status not in STATUSES:
        raise InvalidValueError(f"Unknown status {status!r}. Known: {', '.join(STATUSES)}")
    if limit is not None and limit < 0:
        raise InvalidValueError(f"--limit must not be negative, got {limit}")
    conditions, values = [], []
    for column, value in (("project", project), ("experiment", experiment), ("status", status)):
        if value is not None:
            conditions.append(f"{column} = ?")
            values.append(value)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    limit_clause = f"LIMIT {int(limit)}" if limit is not None else ""
    columns = LIST_COLUMNS + (", deleted" if include_deleted else "")
    con = connect(store, include_archived=include_archived, include_deleted=include_deleted)
    try:
        return run_sql(
            con,
            f"SELECT {columns} FROM runs {where} ORDER BY start_time DESC {limit_clause}",
            values,
        )
    finally:
        con.close()


def metric_history(
    run_id: str,
    keys: str | Sequence[str] | None = None,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """Every point one run logged: ``key, step, ts, value`` ordered by key and step.

    Only the files whose run_id statistics can hold the run are read (a handful of a
    store's hundreds), so it costs about the same on a large store as on a small one.
    ``run_id`` is a full run id (resolve prefixes and names with
    ``ledger.analytics.resolve.resolve_run``); ``keys`` limits it to these metrics.
    """
    from ledger.analytics.pruning import files_for_runs, listing, read_sql, same_schema

    with connection(con, store, views=("metrics",)) as con:
        wanted = [keys] if isinstance(keys, str) else None if keys is None else list(keys)
        key_filter = "" if wanted is None else "AND key IN (SELECT unnest($keys))"
        values: dict[str, object] = {"run_id": run_id}
        if wanted is not None:
            values["keys"] = wanted
        order = "ORDER BY key, step, ts, seq"

        def read() -> pl.DataFrame:
            assert con is not None
            # The run's files only, read straight (the metrics view is these columns of
            # events_metrics): no cursor, no view to bind, the commit log applied once.
            listed = listing(con, ("metrics",))
            if listed is None:
                return fetch_frame(
                    con,
                    f"SELECT key, step, ts, value FROM metrics WHERE run_id = $run_id "
                    f"{key_filter} {order}",
                    values,
                )
            kept = files_for_runs(listed["metrics"], [run_id])
            source = read_sql(kept, by_name=not same_schema(kept))
            frame = fetch_frame(
                con,
                f"SELECT key, step, ts, value, seq FROM {source} "
                f"WHERE run_id = $run_id {key_filter}",
                values,
            )
            # The view's order (ORDER BY key, step, ts, seq; nulls last), sorted here:
            # per 100,000 points, DuckDB's sort on the string key took ~5 ms of already
            # ordered points (one key, the common case), polars' ~2 ms; five interleaved
            # keys cost both about the same (~15 ms). Exact ties keep no particular
            # order, as in the view.
            return frame.sort(["key", "step", "ts", "seq"], nulls_last=True).drop("seq")

        return consistent(con, read)
