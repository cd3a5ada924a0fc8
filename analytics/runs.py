"""Listing runs: the ``runs`` view filtered the way people ask for it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ledger.analytics.engine import connect, run_sql

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
) -> pl.DataFrame:
    """Runs, newest first, optionally filtered by project, experiment and status.

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
    con = connect(store, include_archived=include_archived)
    try:
        return run_sql(
            con,
            f"SELECT {LIST_COLUMNS} FROM runs {where} ORDER BY start_time DESC {limit_clause}",
            values,
        )
    finally:
        con.close()
