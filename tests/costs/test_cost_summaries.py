"""Cost summaries: the report read from them equals the report folded from every event."""

from __future__ import annotations

import datetime as dt
import json
import math

import duckdb
import pyarrow as pa
import pytest
from ledger.analytics import cost_summaries as fast
from ledger.analytics import costs
from ledger.analytics.engine import connect
from ledger.analytics.summaries import _files

from ledger import events
from ledger.cost_summaries import ENERGY_FIELDS, RESOURCE_FIELDS, parse_document, summarize_costs
from ledger.ids import new_id
from ledger.maintenance import compact
from ledger.store import open_store
from ledger.writer import Writer

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def _us(when: dt.datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _resources(host="node-a", cores=8, gpus=0, model=None, instance=None) -> str:
    return json.dumps(
        {
            "host": host,
            "cpu_cores": cores,
            "gpu_count": gpus,
            "gpu_model": model,
            "instance_type": instance,
            "instance_source": "env" if instance else None,
            "region": "us-east-1" if instance else None,
        }
    )


def _raw_costs(store, project: str, day: dt.date, rows: list[dict]) -> None:
    """Cost events in a file with no twin summary (another tool, an older ledger)."""
    schema = events.arrow_schema("costs")
    columns = {field.name: [row.get(field.name) for row in rows] for field in schema}
    columns["ts"] = [row["ts"] for row in rows]
    arrays = [
        pa.array(columns[f.name], pa.int64()).cast(f.type)
        if f.name == "ts"
        else pa.array(columns[f.name], f.type)
        for f in schema
    ]
    store.write_parquet(
        store.partition_dir("costs", project, day),
        f"raw-{new_id()}.parquet",
        pa.Table.from_arrays(arrays, schema=schema),
        "costs",
    )


@pytest.fixture
def mixed(store_path, monkeypatch):
    """A store with every case the cost fold handles, summarised and not."""
    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")
    store = open_store(store_path)
    store.ensure_initialized()
    writer = Writer(store)
    ids: dict[str, str] = {}

    def run(label, project, start, hours, *, status="finished", parent=None, **cost):
        run_id = ids[label] = new_id()
        end = start + dt.timedelta(hours=hours)

        def add(event_kind, when, **row):
            row.update(run_id=run_id, ts=_us(when))
            writer.add_event(event_kind, project, row)

        add(
            "runs",
            start,
            event="started",
            experiment=cost.pop("experiment", "e1"),
            name=label,
            user=cost.pop("user", "ana"),
            parent_run_id=parent,
        )
        if status != "running":
            add("runs", end, event=status)
        if "attrs" in cost:
            add("costs", start, kind="resources", source="sampler", attrs=cost.pop("attrs"))
        for when, energy in cost.pop("energy", []):
            add("costs", when, kind="energy", source="codecarbon", **energy)
        for amount, source in cost.pop("bills", []):
            add("costs", end, kind="bill", source=source, cost_usd=amount)
        for key, value in cost.pop("tags", {}).items():
            add("tags", start, key=key, value=value)
        for key, value in cost.pop("params", {}).items():
            add("params", start, key=key, value=value, value_type="str")
        assert not cost, cost
        return run_id

    hour = dt.timedelta(hours=1)
    energy = {"energy_kwh": 0.5, "cpu_energy_kwh": 0.4, "gpu_energy_kwh": 0.1}
    run(
        "gpu",
        "vision",
        T0,
        2,
        attrs=_resources(gpus=2, model="NVIDIA A100-SXM4-80GB"),
        energy=[
            (
                T0 + hour,
                {
                    **energy,
                    "emissions_kg": 0.2,
                    "measured": True,
                    "attrs": json.dumps({"covered_s": 3600}),
                },
            ),
            (
                T0 + 2 * hour,
                {
                    "energy_kwh": 1.0,
                    "emissions_kg": None,
                    "attrs": json.dumps({"covered_s": 7200.5}),
                },
            ),
        ],
        tags={"team": "red"},
        params={"optimizer": "adam"},
    )
    run(
        "instance",
        "vision",
        T0 + hour,
        1,
        attrs=_resources(instance="g6.xlarge"),
        bills=[(3.5, "aws-cur"), (1.0, None)],
        tags={"team": "blue"},
    )
    run(
        "unknown",
        "nlp",
        T0,
        3,
        status="failed",
        attrs=_resources(instance="x9.unlisted"),
        params={"optimizer": "sgd"},
        experiment="e2",
    )
    run("nosample", "nlp", T0, 1, experiment="e2", user="bo")
    run(
        "midnight",
        "nlp",
        dt.datetime(2025, 3, 3, 22, 0, tzinfo=UTC),
        5,
        attrs=_resources(cores=16),
        energy=[(T0 + 14 * hour, energy)],
    )
    run("to-midnight", "nlp", dt.datetime(2025, 3, 2, 23, 0, tzinfo=UTC), 1, attrs=_resources())
    run("instant", "nlp", T0, 0, attrs=_resources())
    run("long", "tabular", dt.datetime(2025, 2, 27, 12, 0, tzinfo=UTC), 80, attrs=_resources())
    run("running", "speech", T0, 1, status="running", attrs=_resources(cores=4))
    parent = run("parent", "speech", T0, 4, attrs=_resources(cores=2), experiment="sweep")
    run(
        "child",
        "speech",
        T0 + hour,
        1,
        parent=parent,
        attrs=_resources(cores=2),
        experiment="sweep",
    )
    # documents the summary cannot parse exactly keep their text for DuckDB to parse
    run("strings", "speech", T0, 1, attrs='{"cpu_cores": "6", "gpu_count": true, "host": 3}')
    run("repeated", "speech", T0, 1, attrs='{"cpu_cores": 4, "cpu_cores": 9, "gpu_count": 0}')
    run("array", "speech", T0, 1, attrs="[1, 2]")
    run("huge", "speech", T0, 1, attrs='{"cpu_cores": 12345678901234567890, "gpu_count": 0}')
    run("deleted", "vision", T0, 1, attrs=_resources())
    writer.flush()
    # soft-deleted: hidden from every report
    writer.add_event(
        "runs", "vision", {"run_id": ids["deleted"], "event": "deleted", "ts": _us(T0 + 3 * hour)}
    )
    # several processes follow one run: two on node-a (counted once), one on node-b
    multi = ids["multi"] = new_id()
    writer.add_event(
        "runs",
        "vision",
        {
            "run_id": multi,
            "event": "started",
            "ts": _us(T0),
            "experiment": "e1",
            "name": "multi",
            "user": "ana",
        },
    )
    writer.add_event("runs", "vision", {"run_id": multi, "event": "finished", "ts": _us(T0 + hour)})
    writer.flush()
    for number, host in enumerate(("node-a", "node-a", "node-b")):
        other = Writer(store)
        other.add_event(
            "costs",
            "vision",
            {
                "run_id": multi,
                "kind": "resources",
                "ts": _us(T0),
                "source": "sampler",
                "attrs": _resources(host=host, gpus=1, model="Tesla T4"),
            },
        )
        other.add_event(
            "costs",
            "vision",
            {
                "run_id": multi,
                "kind": "energy",
                "ts": _us(T0 + hour),
                "source": "codecarbon",
                "energy_kwh": 1.0 + number,
                "attrs": json.dumps({"host": host}),
            },
        )
        other.flush()
    # late cost events after the runs' summaries: a bill, and more energy in raw files
    costs.record_cost(ids["gpu"], 7.25, source="invoice", store=store)
    _raw_costs(
        store,
        "vision",
        T0.date(),
        [
            {
                "run_id": ids["gpu"],
                "kind": "energy",
                "source": "meter",
                "ts": _us(T0 + 3 * hour),
                "energy_kwh": 2.0,
                "cpu_energy_kwh": None,
                "writer_id": writer.writer_id,
            },
            # an event with no writer: the run is folded per process
            {
                "run_id": ids["instance"],
                "kind": "bill",
                "source": "manual",
                "cost_usd": 2.0,
                "ts": _us(T0 + 5 * hour),
                "writer_id": None,
            },
        ],
    )
    # a run whose cost events all live in files without a summary
    raw_only = ids["raw_only"] = new_id()
    writer.add_event(
        "runs",
        "tabular",
        {
            "run_id": raw_only,
            "event": "started",
            "ts": _us(T0),
            "experiment": "e9",
            "name": "raw",
            "user": "cy",
        },
    )
    writer.add_event(
        "runs", "tabular", {"run_id": raw_only, "event": "killed", "ts": _us(T0 + 2 * hour)}
    )
    writer.flush()
    _raw_costs(
        store,
        "tabular",
        T0.date(),
        [
            {
                "run_id": raw_only,
                "kind": "resources",
                "source": "s",
                "ts": _us(T0),
                "attrs": _resources(cores=32),
                "writer_id": "w-raw",
            },
            {
                "run_id": raw_only,
                "kind": "energy",
                "source": "s",
                "ts": _us(T0 + hour),
                "energy_kwh": 4.0,
                "attrs": '{"covered_s": "10"}',
                "writer_id": "w-raw",
            },
        ],
    )
    _metric(store, ids["gpu"], "vision", twin=True)
    _metric(store, ids["instance"], "vision", twin=False)
    _metric(store, ids["multi"], "vision", twin=True)
    _metric(store, ids["unknown"], "nlp", twin=True)
    return store, ids


def _metric(store, run_id: str, project: str, twin: bool) -> None:
    """Points of ``acc`` (a NaN among them), with or without the twin metric summary."""
    from ledger.summaries import summarize

    values = [0.5, 0.6 + int(run_id[-2:], 16) / 1000, math.nan, 0.55]
    table = pa.table(
        {
            "run_id": [run_id] * 4,
            "key": ["acc"] * 4,
            "value": values,
            "step": list(range(4)),
            "ts": pa.array([_us(T0) + i for i in range(4)], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "writer_id": ["test"] * 4,
            "seq": list(range(4)),
        }
    )
    name = f"m-{run_id}.parquet"
    store.write_parquet(store.partition_dir("metrics", project, T0.date()), name, table, "metrics")
    if twin:
        store.write_parquet(
            store.partition_dir("summaries", project, T0.date()),
            name,
            summarize(table),
            "summaries",
        )


def _reference(monkeypatch):
    """Make report_costs read the run_costs view and the metrics view, as before."""
    monkeypatch.setattr(fast, "cost_inputs_sql", lambda con: None)
    import ledger.analytics.summaries as summaries

    monkeypatch.setattr(summaries, "summaries_sql", lambda *a, **k: "metric_summaries")


def _frames_equal(left, right):
    assert left.columns == right.columns
    assert left.height == right.height
    for name in left.columns:
        a, b = left[name].to_list(), right[name].to_list()
        if left[name].dtype.is_float():
            # Sums may differ in the last bit: DuckDB adds partial sums in no fixed order.
            assert [x is None for x in a] == [y is None for y in b], name
            assert [x for x in a if x is not None] == pytest.approx(
                [y for y in b if y is not None], rel=1e-12, nan_ok=True
            ), name
        else:
            assert a == b, name


VARIANTS = [{"by": by} for by in costs.GROUPS] + [
    {"by": "tag:team"},
    {"by": "param:optimizer", "budget": 2.0},
    {"by": "project", "project": "vision"},
    {"by": "day", "since": "2025-03-03T12:00", "until": "2025-03-04T02:00"},
    {"by": "week", "since": "2025-03-03", "until": "2025-03-10"},
    {"by": "experiment", "metric": "acc"},
    {"by": "experiment", "metric": "acc", "mode": "min", "project": "vision"},
    {"by": "month", "metric": "acc", "since": "2025-03-03T10:00"},
]


def _reports(store, monkeypatch):
    out = [costs.report_costs(store, **variant) for variant in VARIANTS]
    with monkeypatch.context() as patch:
        _reference(patch)
        reference = [costs.report_costs(store, **variant) for variant in VARIANTS]
    return out, reference


def _assert_same(store, monkeypatch):
    for got, want in zip(*_reports(store, monkeypatch), strict=True):
        _frames_equal(got.groups, want.groups)
        assert got.over_budget == want.over_budget
        for part in ("efficiency", "front"):
            if getattr(want, part) is None:
                assert getattr(got, part) is None
            else:
                # Row order among runs that started at the same moment is not fixed.
                keys = ["project", "experiment"] + (["run_id"] if part == "front" else [])
                _frames_equal(getattr(got, part).sort(keys), getattr(want, part).sort(keys))


def _rows_differ(store) -> int:
    con = connect(store)
    try:
        inputs = fast.cost_inputs_sql(con)
        assert inputs is not None
        con.execute(f"CREATE TEMP VIEW fast_inputs AS SELECT * FROM {inputs}")
        return sum(
            con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchall()[0][0]
            for a, b in (
                ("SELECT * FROM cost_inputs", "SELECT * FROM fast_inputs"),
                ("SELECT * FROM fast_inputs", "SELECT * FROM cost_inputs"),
                ("SELECT * FROM run_costs", "SELECT * FROM run_costs_over('fast_inputs')"),
                ("SELECT * FROM run_costs_over('fast_inputs')", "SELECT * FROM run_costs"),
            )
        )
    finally:
        con.close()


def test_every_row_and_report_equals_the_full_fold(mixed, monkeypatch):
    store, _ = mixed
    con = connect(store)
    twins = _files(con, "cost_summaries")
    raw = set(_files(con, "costs")) - set(twins)
    con.close()
    assert twins and raw  # both paths are exercised
    assert _rows_differ(store) == 0
    _assert_same(store, monkeypatch)
    report = costs.report_costs(store, by="project")
    vision = report.groups.filter(report.groups["group"] == "vision").row(0, named=True)
    assert vision["runs"] == 3  # gpu, instance, multi; the deleted run is hidden


def test_after_compaction_the_compacted_summaries_give_the_same(mixed, monkeypatch):
    store, _ = mixed
    before = costs.report_costs(store, by="project").groups
    compact(store, grace=0)
    con = connect(store)
    twins, files = _files(con, "cost_summaries"), _files(con, "costs")
    con.close()
    compacted = [rel for rel in files if rel.rsplit("/", 1)[-1].startswith("c-")]
    assert compacted  # the partitions were rewritten ...
    assert all(rel in twins for rel in compacted)  # ... each file with its twin summary
    assert set(twins) <= set(files)  # the replaced files' twins went with them
    assert _rows_differ(store) == 0
    _assert_same(store, monkeypatch)
    _frames_equal(costs.report_costs(store, by="project").groups, before)


def test_without_summaries_the_report_reads_the_view(store_path, monkeypatch):
    store = open_store(store_path)
    store.ensure_initialized()
    con = connect(store)
    assert fast.cost_inputs_sql(con) is None  # nothing to read: the view answers
    con.close()
    con = connect(store, as_of=T0)
    assert fast.cost_inputs_sql(con) is None  # a summary cannot be cut at a moment
    con.close()


def test_writer_leaves_a_twin_summary_beside_each_costs_file(store_path):
    store = open_store(store_path)
    writer = Writer(store)
    run_id = new_id()
    writer.add_event(
        "costs",
        "p",
        {"run_id": run_id, "kind": "resources", "ts": _us(T0), "attrs": _resources(cores=3)},
    )
    writer.add_event(
        "costs",
        "p",
        {"run_id": run_id, "kind": "bill", "ts": _us(T0), "cost_usd": 1.5, "source": "x"},
    )
    writer.flush()
    con = connect(store)
    files, twins = _files(con, "costs"), _files(con, "cost_summaries")
    con.close()
    assert set(files) == set(twins) and len(files) == 1
    row = duckdb.sql(f"SELECT * FROM read_parquet('{next(iter(twins.values()))}')").fetchall()
    assert len(row) == 1


DOCUMENTS = [
    '{"host": "a", "cpu_cores": 8, "gpu_count": 0, "gpu_model": null}',
    '{"cpu_cores": 2.5, "region": "eu-west-1", "extra": {"nested": [1, 2]}}',
    '{"cpu_cores": 1e3, "gpu_count": -0.0, "instance_type": "caf\\u00e9"}',
    "{}",
    '{"cpu_cores": "8"}',
    '{"cpu_cores": true}',
    '{"cpu_cores": 1, "cpu_cores": 2}',
    '{"gpu_model": 5}',
    '{"CPU_CORES": 4}',
    "[1]",
    '"text"',
    "null",
    '{"cpu_cores": 123456789012345678901234567890}',
    '{"cpu_cores": NaN}',
    '{"host": "\\ud800"}',
    '{"host": "\\ud83d\\ude00", "cpu_cores": 1}',
    '{"extra": 1e400, "cpu_cores": 1}',
    "not json",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_a_parsed_document_reads_as_duckdb_reads_it(text):
    """Where the summary parses a document, it gets what from_json gets; elsewhere it
    keeps the text for from_json."""
    for fields in (RESOURCE_FIELDS, ENERGY_FIELDS):
        parsed = parse_document(text, fields)
        if parsed is None:
            continue
        shape = json.dumps(
            {name: "DOUBLE" if kind == "num" else "VARCHAR" for name, kind in fields}
        )
        ((want,),) = duckdb.execute(f"SELECT from_json($1, '{shape}')", [text]).fetchall()
        assert parsed == want


def test_summary_keeps_each_latest_non_null_figure():
    schema = events.arrow_schema("costs")
    rows = [
        {"kind": "energy", "ts": 1, "energy_kwh": 1.0, "emissions_kg": 0.5, "source": "a"},
        {"kind": "energy", "ts": 3, "energy_kwh": 3.0, "emissions_kg": None, "source": None},
        {"kind": "energy", "ts": None, "energy_kwh": 9.0},
        {"kind": "resources", "ts": 2, "attrs": '{"cpu_cores": 4}'},
        {"kind": "resources", "ts": 5, "attrs": None},
        {"kind": "bill", "ts": 4, "cost_usd": 2.0, "source": None},
        {"kind": "note", "ts": 9},
    ]
    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if field.name == "run_id":
            values = ["r"] * len(rows)
        if field.name == "writer_id":
            values = ["w"] * len(rows)
        columns[field.name] = (
            pa.array(values, pa.int64()).cast(field.type)
            if field.name == "ts"
            else pa.array(values, field.type)
        )
    (row,) = summarize_costs(pa.table(columns)).to_pylist()
    assert row["n_events"] == 6 and row["e_n"] == 3 and row["bill_n"] == 1
    assert row["e_energy_kwh"] == 3.0 and row["e_emissions_kg"] == 0.5
    assert row["e_source"] == "a"
    assert row["r_ts"] == dt.datetime.fromtimestamp(5e-6, UTC)
    assert row["r_attrs_ts"] == dt.datetime.fromtimestamp(2e-6, UTC)
    assert row["r_cpu_cores"] == 4.0 and row["r_attrs"] is None
    assert row["bill_usd"] == 2.0 and json.loads(row["bill_sources"]) == []


def test_pareto_front_matches_the_run_by_run_rule():
    import polars as pl

    runs = pl.DataFrame(
        {
            "project": ["p"] * 7 + ["q"] * 2,
            "experiment": ["e"] * 7 + ["f"] * 2,
            "run_id": [f"r{i}" for i in range(9)],
            "name": [f"n{i}" for i in range(9)],
            "status": ["finished"] * 6 + ["failed", "finished", "finished"],
            "start_time": list(range(9)),
            "cost_usd": [1.0, 1.0, 2.0, 3.0, 0.0, None, 0.5, 2.0, 1.0],
            "metric": [0.5, 0.7, 0.7, 0.9, 0.1, 0.99, 0.95, float("nan"), 0.3],
        }
    )
    for mode in ("max", "min"):
        sign = 1.0 if mode == "max" else -1.0
        front = costs._front(runs, mode)
        expected = []
        for (_, _), part in runs.group_by(["project", "experiment"], maintain_order=True):
            best = None
            scored = part.filter(
                (pl.col("status") == "finished")
                & pl.col("cost_usd").is_not_null()
                & ~pl.col("metric").is_nan()
            ).sort(["cost_usd", "metric"], descending=[False, mode == "max"], maintain_order=True)
            for item in scored.iter_rows(named=True):
                if best is None or item["metric"] * sign > best:
                    best = item["metric"] * sign
                    expected.append(item["run_id"])
        assert front["run_id"].to_list() == expected


def test_runs_split_over_days_as_a_brute_force_split_says(mixed):
    """Each run cut at UTC midnights, each piece weighted by its share of the run's wall
    time inside the window; a run counted once per group."""

    store, _ = mixed
    windows = [None, ("2025-03-03T12:00", "2025-03-04T02:00"), ("2025-03-01", "2025-03-03")]
    for by in ("day", "week", "month"):
        for window in windows:
            _check_split(store, by, window)


def _check_split(store, by, window):
    import ledger

    runs = ledger.query(
        "SELECT run_id, start_time, duration_s, cost_usd FROM run_costs", store
    ).rows(named=True)
    lo = dt.datetime.fromisoformat(window[0]).replace(tzinfo=UTC) if window else None
    hi = dt.datetime.fromisoformat(window[1]).replace(tzinfo=UTC) if window else None
    names = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}
    expected: dict[str, tuple[set, float]] = {}
    for run in runs:
        start, seconds = run["start_time"], run["duration_s"]
        stop = start + dt.timedelta(microseconds=round(seconds * 1e6))
        day = dt.datetime(start.year, start.month, start.day, tzinfo=UTC)
        while day <= stop:
            piece = (max(start, day), min(stop, day + dt.timedelta(days=1)))
            if seconds > 0:
                inside = min(piece[1], hi or piece[1]) - max(piece[0], lo or piece[0])
                share = max(inside.total_seconds(), 0) / seconds
            else:
                share = float(
                    piece[0] == start and (hi is None or start < hi) and (lo is None or start >= lo)
                )
            if share > 0:
                key = day.strftime(names[by])
                ids, cost = expected.get(key, (set(), 0.0))
                expected[key] = (ids | {run["run_id"]}, cost + (run["cost_usd"] or 0) * share)
            day += dt.timedelta(days=1)
    report = costs.report_costs(
        store, by=by, since=window[0] if window else None, until=window[1] if window else None
    ).groups.filter(pl_col_ne_total())
    assert report["group"].to_list() == sorted(expected)
    assert report["runs"].to_list() == [len(expected[key][0]) for key in sorted(expected)]
    assert report["cost_usd"].fill_null(0).to_list() == pytest.approx(
        [expected[key][1] for key in sorted(expected)]
    )


def pl_col_ne_total():
    import polars as pl

    return pl.col("group") != "TOTAL"
