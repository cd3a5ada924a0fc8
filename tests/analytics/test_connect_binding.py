"""connect() creates the events_<kind> views over the schema files (no data file opened);
every query binds them over the store's files: same rows and columns as before."""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pyarrow.parquet as pq
from ledger.analytics.engine import HIVE_TYPES, connect, cursor, quote_literal

import ledger
from ledger.events import arrow_schema
from ledger.store import open_store


def _variables(con) -> set[str]:
    return {row[0] for row in con.execute("SELECT name FROM duckdb_variables()").fetchall()}


def test_views_read_every_file_and_no_binding_variable_is_left(store_path):
    with ledger.start_run("p", "e", "before", params={"lr": 0.1}, store=store_path) as run:
        run.log_metric("loss", 1.0, step=0)
    ledger.flush()
    con = connect(store_path)
    try:
        assert not any(name.startswith("ledger_bind_") for name in _variables(con))
        cur = cursor(con)
        assert not any(name.startswith("ledger_bind_") for name in _variables(cur))
        cur.close()
        # Written after connect: the next query lists it.
        with ledger.start_run("p", "e", "after", store=store_path) as run:
            run.log_metric("loss", 2.0, step=0)
        ledger.flush()
        names = {row[0] for row in con.execute("SELECT name FROM runs").fetchall()}
        assert names == {"before", "after"}
        assert con.execute("SELECT count(*) FROM metrics").fetchall()[0][0] == 2
        # The view's columns are those of the data files (as a direct read gives them).
        glob = open_store(store_path).kind_glob("metrics")
        direct = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({quote_literal(glob)}, "
            f"hive_partitioning = true, union_by_name = true, hive_types = {HIVE_TYPES})"
        ).fetchall()
        view = con.execute("DESCRIBE events_metrics").fetchall()
        assert [row[:2] for row in view] == [row[:2] for row in direct]
    finally:
        con.close()


def test_a_file_of_an_older_schema_reads_with_nulls(store_path):
    with ledger.start_run("p", "e", "r", tags={"team": "a"}, store=store_path) as run:
        run_id = run.id
    ledger.flush()
    store = open_store(store_path)
    # A tags file of an older layout: one column (writer_id) missing.
    old = pa.schema([field for field in arrow_schema("tags") if field.name != "writer_id"])
    row = {
        name: [
            run_id
            if name == "run_id"
            else dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
            if name == "ts"
            else "old"
        ]
        for name in old.names
    }
    folder = store.partition_dir("tags", "p", dt.date(2026, 1, 1))
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.table(row, schema=old), os.path.join(folder, "old-schema.parquet"))
    con = connect(store_path)
    try:
        rows = con.execute(
            "SELECT value, writer_id FROM events_tags WHERE key = $1", ["old"]
        ).fetchall()
        assert rows == [("old", None)]
        assert {row[0] for row in con.execute("SELECT key FROM tags").fetchall()} >= {"team"}
    finally:
        con.close()
