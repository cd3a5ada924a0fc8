"""The query engine: a DuckDB connection with every view of ``queries/`` in place.

Base views ``events_<kind>`` read the store's Parquet files (re-globbed on every query,
so new flushes show up); the views in ``queries/*.sql`` fold them into runs, params,
metrics and the rest. User SQL goes through :func:`run_sql`, which admits only reading
statements, so ``ledger query`` cannot change the store.
"""

from __future__ import annotations

import os
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

import duckdb

from ledger import env, events, txnlog
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


def _tiers(store: Store, include_archived: bool) -> dict[str, Store]:
    tiers = {txnlog.HOT: store}
    if include_archived:
        archive = txnlog.registered_archive(store)
        if archive is not None:
            archive.ensure_initialized()
            tiers[txnlog.ARCHIVE] = archive
    return tiers


def source_globs(store: Store, kind: str, *, include_archived: bool = False) -> list[str]:
    """The Parquet globs a query of ``kind`` reads: the hot tier, plus the archive tier.

    Files replaced by lifecycle operations are filtered out by the commit log
    (:mod:`ledger.txnlog`), which every base view also reads at every query.
    """
    return [tier.kind_glob(kind) for tier in _tiers(store, include_archived).values()]


def _create_base_views(
    con: duckdb.DuckDBPyConnection, store: Store, include_archived: bool = False
) -> None:
    txnlog.ensure_log(store)
    tiers = _tiers(store, include_archived)
    bases = {name: tier.path() for name, tier in tiers.items()}
    con.execute(f"CREATE OR REPLACE VIEW _lifecycle_hidden AS {txnlog.hidden_sql(store, bases)}")
    for kind in events.KINDS:
        globs = ", ".join(
            quote_literal(glob)
            for glob in source_globs(store, kind, include_archived=include_archived)
        )
        # A file is skipped while the commit log hides it (replaced by a committed
        # compaction/archive/purge, or written by one that has not committed yet), so a
        # query never sees an event twice or misses one while files are being replaced.
        con.execute(
            f"CREATE OR REPLACE VIEW events_{kind} AS SELECT * EXCLUDE (filename) "
            f"FROM read_parquet([{globs}], hive_partitioning = true, union_by_name = true, "
            f"filename = true, hive_types = {HIVE_TYPES}) "
            f"WHERE filename NOT IN (SELECT file FROM _lifecycle_hidden WHERE kind = "
            f"{quote_literal(kind)})"
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
    include_archived: bool | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection over ``store`` with every view in place.

    Runs of this process that are still buffered are flushed first, so a script sees
    what it just logged. ``include_archived=True`` (default: ``$LEDGER_INCLUDE_ARCHIVED``)
    makes every view read the archive tier as well as the hot one.

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
    if include_archived is None:
        include_archived = os.environ.get(env.INCLUDE_ARCHIVED, "0") not in ("", "0", "false")
    for attempt in range(_VANISHED_RETRIES + 1):
        try:
            # Creating a view binds it, which globs and opens the files.
            _create_base_views(con, store_obj, include_archived)
            _create_views(con)
            break
        except (duckdb.IOException, QueryError) as exc:
            if attempt == _VANISHED_RETRIES or not _vanished(exc):
                raise
            time.sleep(0.01 * (attempt + 1))
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

    for attempt in range(_VANISHED_RETRIES + 1):
        try:
            frame = pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
            break
        except duckdb.IOException as exc:
            # A lifecycle clean-up deleted a file this query had globbed (only files the
            # commit log already hides are deleted, so re-running sees the same answer).
            if attempt == _VANISHED_RETRIES or not _vanished(exc):
                raise
            time.sleep(0.01 * (attempt + 1))
    assert isinstance(frame, pl.DataFrame)
    return frame


_VANISHED_RETRIES = 5


def _vanished(exc: BaseException) -> bool:
    text = str(exc)
    return "No such file" in text or "No files found" in text or "Cannot open file" in text


def query(
    sql: str,
    store: str | os.PathLike[str] | Store | None = None,
    params: list[Any] | dict[str, Any] | None = None,
    *,
    include_archived: bool | None = None,
) -> pl.DataFrame:
    """Run read-only SQL over the store's views; returns a polars DataFrame.

    Raises:
        QueryError: a refused statement or an SQL error.
    """
    con = connect(store, include_archived=include_archived)
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
                "SELECT view_name FROM duckdb_views() WHERE NOT internal "
                "AND NOT starts_with(view_name, '_') ORDER BY view_name"
            ).fetchall()
        ]
        rows = []
        for name in names:
            for column in con.execute(f"DESCRIBE {quote_identifier(name)}").fetchall():
                rows.append({"view": name, "column": column[0], "type": column[1]})
        return pl.DataFrame(rows, schema={"view": pl.Utf8, "column": pl.Utf8, "type": pl.Utf8})
    finally:
        con.close()
