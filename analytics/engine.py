"""The query engine: a DuckDB connection with every view of ``queries/`` in place.

Base views ``events_<kind>`` read the store's Parquet files (re-globbed on every query,
so new flushes show up); the views in ``queries/*.sql`` fold them into runs, params,
metrics and the rest. User SQL goes through :func:`run_sql`, which admits only reading
statements, so ``ledger query`` cannot change the store.
"""

from __future__ import annotations

import datetime as dt
import os
from importlib import resources
from typing import TYPE_CHECKING, Any

import duckdb

from ledger import events
from ledger.errors import QueryError
from ledger.store import Store, open_store
from ledger.writer import all_writers

if TYPE_CHECKING:
    import polars as pl

READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
HIVE_TYPES = "{'project': VARCHAR, 'date': DATE}"


def quote_literal(text: str) -> str:
    """A SQL string literal (for file paths the code itself builds)."""
    return "'" + text.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    """A SQL identifier, quoted so any user-given name is safe to splice."""
    return '"' + name.replace('"', '""') + '"'


def _view_files() -> list[tuple[str, str]]:
    folder = resources.files("ledger.queries")
    return sorted(
        (entry.name[: -len(".sql")], entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )


def source_globs(store: Store, kind: str) -> list[str]:
    """The Parquet globs a query of ``kind`` reads (the hot tier of ``store``)."""
    return [store.kind_glob(kind)]


def _create_base_views(
    con: duckdb.DuckDBPyConnection, store: Store, as_of: dt.datetime | None = None
) -> None:
    # As of a moment, the store is simply the events written up to then (invariant 1:
    # events are immutable, so every past state can be re-folded).
    cutoff = "" if as_of is None else " WHERE ts <= getvariable('as_of')"
    for kind in events.KINDS:
        # Kept on the connection for readers that list files (metric summaries).
        con.execute(f"SET VARIABLE globs_{kind} = $1::VARCHAR[]", [source_globs(store, kind)])
        globs = ", ".join(quote_literal(glob) for glob in source_globs(store, kind))
        con.execute(
            f"CREATE OR REPLACE VIEW events_{kind} AS SELECT * FROM read_parquet([{globs}], "
            f"hive_partitioning = true, union_by_name = true, hive_types = {HIVE_TYPES})"
            f"{cutoff}"
        )


def _create_views(con: duckdb.DuckDBPyConnection) -> None:
    # Views may build on each other; create in passes until all exist (files stay
    # one-view-per-file with no ordering convention to maintain).
    remaining = _view_files()
    while remaining:
        failed: list[tuple[str, str]] = []
        last_error: Exception | None = None
        for name, sql in remaining:
            try:
                con.execute(sql)
            except duckdb.CatalogException as exc:
                failed.append((name, sql))
                last_error = exc
        if len(failed) == len(remaining):
            raise QueryError(f"Cannot create view {failed[0][0]}: {last_error}")
        remaining = failed


def connect(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    stall_after: float | None = None,
    threads: int | None = None,
    as_of: dt.datetime | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over ``store`` with every view in place.

    Runs of this process that are still buffered are flushed first, so a script sees
    what it just logged. With ``as_of`` (a timezone-aware datetime; naive means UTC)
    every view shows the store as it stood at that moment: only events written up to
    then count, and run status is judged at that moment.

    Raises:
        StoreError: the store cannot be initialised.
    """
    store_obj = open_store(store)
    for writer in all_writers():
        if writer.store is store_obj:
            writer.flush()
    store_obj.ensure_initialized()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    stall = store_obj.settings.stall_after if stall_after is None else float(stall_after)
    con.execute(f"SET VARIABLE stall_after_s = {stall!r}::DOUBLE")
    if as_of is not None:
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.timezone.utc)
        con.execute("SET VARIABLE as_of = $1::TIMESTAMPTZ", [as_of])
    _create_base_views(con, store_obj, as_of)
    _create_views(con)
    return con


def check_read_only(sql: str) -> None:
    """Refuse any statement that is not a plain read.

    Raises:
        QueryError: for COPY, CREATE, ATTACH, INSTALL, SET, PRAGMA... or unparsable SQL.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from exc
    if not statements:
        raise QueryError("Empty query: give a SELECT statement")
    for statement in statements:
        if statement.type not in READ_STATEMENTS:
            kind = statement.type.name
            raise QueryError(
                f"Only SELECT, WITH, DESCRIBE, SHOW and EXPLAIN are allowed; {kind} statements "
                "could change the store"
            )


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def run_sql(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> pl.DataFrame:
    """Run read-only ``sql`` on ``con``; the last statement's result as a polars frame.

    Raises:
        QueryError: a refused statement, or any SQL error (message names the problem).
    """
    check_read_only(sql)
    statements = duckdb.extract_statements(sql)
    try:
        for statement in statements[:-1]:
            con.execute(statement.query).fetchall()
        return fetch_frame(con, statements[-1].query, params)
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from exc


def fetch_frame(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> pl.DataFrame:
    """Execute trusted ``sql`` and return the whole result as a polars DataFrame."""
    import polars as pl

    frame = pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def query(
    sql: str,
    store: str | os.PathLike[str] | Store | None = None,
    params: list[Any] | dict[str, Any] | None = None,
) -> pl.DataFrame:
    """Run read-only SQL over the store's views; returns a polars DataFrame.

    Raises:
        QueryError: a refused statement or an SQL error.
    """
    con = connect(store)
    try:
        return run_sql(con, sql, params)
    finally:
        con.close()


def list_views(store: str | os.PathLike[str] | Store | None = None) -> pl.DataFrame:
    """Every view with its columns and types, one row per column."""
    import polars as pl

    con = connect(store)
    try:
        names = [
            row[0]
            for row in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
            ).fetchall()
        ]
        rows = []
        for name in names:
            for column in con.execute(f"DESCRIBE {quote_identifier(name)}").fetchall():
                rows.append({"view": name, "column": column[0], "type": column[1]})
        return pl.DataFrame(rows, schema={"view": pl.Utf8, "column": pl.Utf8, "type": pl.Utf8})
    finally:
        con.close()
