"""The raw layout reads correctly with no ledger code: DuckDB, polars, pyarrow, Spark.

Each engine answers two questions straight from ``events/<kind>/...`` and must agree
with ``ledger query``: how many metric points there are, and a leaderboard (best
``acc`` per run, with the run's name from its ``started`` event).
"""

from __future__ import annotations

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

import ledger
from ledger.store import open_store

LEDGER_LEADERBOARD = (
    "SELECT r.name, max(m.value) AS best FROM metrics m JOIN runs r USING (run_id) "
    "WHERE m.key = 'acc' GROUP BY r.name ORDER BY best DESC, r.name"
)


def build(uri: str) -> None:
    for index in range(6):
        experiment = "cnn" if index % 2 else "vit"
        with ledger.start_run(
            "vision", experiment, f"run-{index}", params={"seed": index}, store=uri
        ) as run:
            for step in range(25):
                run.log_metrics(
                    {"acc": round(0.5 + 0.01 * index + 0.001 * step, 6), "loss": 1 / (step + 1)},
                    step=step,
                )
    with ledger.start_run("audio", "rnn", "other-project", store=uri) as run:
        run.log_metric("acc", 0.99, step=0)
    ledger.flush()


def expected(uri: str) -> tuple[int, list[tuple[str, float]]]:
    count = ledger.query("SELECT count(*) FROM metrics", store=uri).item()
    leaderboard = [
        (name, round(best, 6)) for name, best in ledger.query(LEDGER_LEADERBOARD, store=uri).rows()
    ]
    return count, leaderboard


def normalise(rows) -> list[tuple[str, float]]:
    return sorted(((name, round(best, 6)) for name, best in rows), key=lambda r: (-r[1], r[0]))


@pytest.fixture
def local_layout(store_path) -> str:
    build(store_path)
    return store_path


def test_plain_duckdb_read_parquet(local_layout):
    count, leaderboard = expected(local_layout)
    assert count == 6 * 25 * 2 + 1
    con = duckdb.connect()
    source = (
        "read_parquet('{}/events/{}/*/*/*.parquet', hive_partitioning = true, union_by_name = true)"
    )
    metrics = source.format(local_layout, "metrics")
    runs = source.format(local_layout, "runs")
    assert con.sql(f"SELECT count(*) FROM {metrics}").fetchall()[0][0] == count
    rows = con.sql(
        f"SELECT r.name, max(m.value) FROM {metrics} m JOIN {runs} r "
        "ON m.run_id = r.run_id AND r.event = 'started' WHERE m.key = 'acc' GROUP BY r.name"
    ).fetchall()
    assert normalise(rows) == leaderboard
    assert leaderboard[0] == ("other-project", 0.99)


def polars_answers(root: str, storage_options: dict[str, str] | None) -> tuple[int, list]:
    import polars as pl

    def scan(kind: str) -> pl.LazyFrame:
        return pl.scan_parquet(
            f"{root}/events/{kind}/**/*.parquet",
            hive_partitioning=True,
            storage_options=storage_options or None,
        )

    metrics, runs = scan("metrics"), scan("runs")
    count = metrics.select(pl.len()).collect().item()
    names = runs.filter(pl.col("event") == "started").select("run_id", "name")
    board = (
        metrics.filter(pl.col("key") == "acc")
        .join(names, on="run_id")
        .group_by("name")
        .agg(pl.col("value").max())
        .collect()
    )
    return count, normalise(board.rows())


def pyarrow_answers(root: str, filesystem: pafs.FileSystem) -> tuple[int, list]:
    def table(kind: str, columns: list[str], filter_=None):
        dataset = pads.dataset(
            f"{root}/events/{kind}", filesystem=filesystem, format="parquet", partitioning="hive"
        )
        return dataset.to_table(columns=columns, filter=filter_)

    count = pads.dataset(
        f"{root}/events/metrics", filesystem=filesystem, format="parquet", partitioning="hive"
    ).count_rows()
    acc = table("metrics", ["run_id", "value"], pc.field("key") == "acc")
    names = table("runs", ["run_id", "name"], pc.field("event") == "started")
    best = acc.group_by("run_id").aggregate([("value", "max")]).join(names, "run_id")
    pairs = zip(best["name"].to_pylist(), best["value_max"].to_pylist(), strict=True)
    return count, normalise(pairs)


def test_polars_and_pyarrow_on_a_local_layout(local_layout):
    want = expected(local_layout)
    assert polars_answers(local_layout, None) == want
    assert pyarrow_answers(local_layout, pafs.LocalFileSystem()) == want


def test_polars_and_pyarrow_straight_from_the_bucket(s3_store_uri):
    build(s3_store_uri)
    want = expected(s3_store_uri)
    store = open_store(s3_store_uri)
    # Plain engine settings, as a user with no ledger installed would write them.
    assert polars_answers(s3_store_uri, store.storage_options()) == want
    endpoint = store.storage_options()["aws_endpoint_url"].split("://", 1)[1]
    filesystem = pafs.S3FileSystem(
        endpoint_override=endpoint,
        scheme="http",
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
    )
    assert pyarrow_answers(s3_store_uri.split("://", 1)[1], filesystem) == want


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_reads_the_layout(local_layout):
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    want = expected(local_layout)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("ledger-layout")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        for kind in ("metrics", "runs"):
            spark.read.option("mergeSchema", "true").parquet(
                f"{local_layout}/events/{kind}"
            ).createOrReplaceTempView(kind)
        count = spark.sql("SELECT count(*) FROM metrics").collect()[0][0]
        rows = spark.sql(
            "SELECT r.name, max(m.value) FROM metrics m JOIN runs r "
            "ON m.run_id = r.run_id AND r.event = 'started' WHERE m.key = 'acc' "
            "GROUP BY r.name"
        ).collect()
        projects = {row[0] for row in spark.sql("SELECT DISTINCT project FROM metrics").collect()}
        ts_type = dict(spark.table("metrics").dtypes)["ts"]
    finally:
        spark.stop()
    assert (count, normalise((row[0], row[1]) for row in rows)) == want
    assert projects == {"vision", "audio"}
    assert ts_type == "timestamp"
