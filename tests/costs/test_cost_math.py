"""Cost attribution against hand-computed expectations (synthetic events, exact times)."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from ledger.analytics.costs import report_costs

import ledger
from ledger.errors import InvalidValueError
from ledger.ids import new_id
from ledger.store import open_store
from ledger.writer import writer_for

UTC = dt.timezone.utc
CORE = 0.048  # shipped default $/core-hour
A100 = 4.0966  # shipped default $/GPU-hour


def _us(when: dt.datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def make_run(
    store,
    *,
    start: dt.datetime,
    end: dt.datetime | None,
    status: str = "finished",
    project: str = "p",
    experiment: str = "e",
    name: str | None = None,
    cores: int | None = 4,
    gpus: int | None = 0,
    gpu_model: str | None = None,
    sampled: bool = True,
    tags: dict | None = None,
    params: dict | None = None,
    energy: dict | None = None,
    bills: list[float] = (),
    metrics: dict | None = None,
    heartbeat: dt.datetime | None = None,
    user: str = "ana",
    parent: str | None = None,
) -> str:
    run_id = new_id()
    writer = writer_for(store)

    def add(event_kind, when, **row):
        row.update(run_id=run_id, ts=_us(when))
        writer.add_event(event_kind, project, row)

    add(
        "runs",
        start,
        event="started",
        experiment=experiment,
        name=name or run_id[:6],
        user=user,
        parent_run_id=parent,
    )
    if heartbeat is not None:
        add("runs", heartbeat, event="heartbeat")
    if end is not None:
        add("runs", end, event=status)
    if sampled:
        attrs = {"cpu_cores": cores, "gpu_count": gpus, "gpu_model": gpu_model}
        add("costs", start, kind="resources", source="test", attrs=json.dumps(attrs))
    for key, value in (tags or {}).items():
        add("tags", start, key=key, value=value)
    for key, value in (params or {}).items():
        add("params", start, key=key, value=str(value), value_type="str")
    if energy is not None:
        add("costs", end or start, kind="energy", source="test", **energy)
    for amount in bills:
        add("costs", end or start, kind="bill", source="invoice", cost_usd=amount)
    for step, (key, value) in enumerate((metrics or {}).items()):
        add_metric(store, project, run_id, key, value, end or start, step)
    writer.flush()
    return run_id


def add_metric(store, project, run_id, key, value, when, step):
    import pyarrow as pa

    table = pa.table(
        {
            "run_id": [run_id],
            "key": [key],
            "value": [float(value)],
            "step": [step],
            "ts": pa.array([_us(when)], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "writer_id": ["test"],
            "seq": [0],
        }
    )
    store.write_parquet(
        store.partition_dir("metrics", project, when.date()),
        f"m-{run_id}-{key}.parquet",
        table,
        "metrics",
    )


@pytest.fixture
def store(store_path, monkeypatch):
    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")
    s = open_store(store_path)
    s.ensure_initialized()
    return s


def run_cost(store, run_id):
    frame = ledger.query("SELECT * FROM run_costs WHERE run_id = ?", store, [run_id])
    return frame.row(0, named=True)


T0 = dt.datetime(2025, 1, 10, 8, 0, tzinfo=UTC)


def test_instance_type_from_tag_prices_wall_hours(store):
    rid = make_run(
        store, start=T0, end=T0 + dt.timedelta(hours=2), tags={"instance_type": "p3.2xlarge"}
    )
    row = run_cost(store, rid)
    assert row["cost_usd"] == pytest.approx(2 * 3.06)
    assert row["cost_basis"] == "instance"
    assert row["instance_source"] == "tag"


def test_no_instance_type_prices_core_and_gpu_hours_and_says_so(store):
    rid = make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=1.5),
        cores=4,
        gpus=1,
        gpu_model="NVIDIA A100-SXM4-80GB",
    )
    row = run_cost(store, rid)
    assert row["core_hours"] == pytest.approx(6.0)
    assert row["gpu_hours"] == pytest.approx(1.5)
    assert row["cost_usd"] == pytest.approx(6.0 * CORE + 1.5 * A100)
    assert row["cost_basis"] == "core+gpu hours"
    assert "catalog default rates" in row["cost_note"]


def test_unknown_prices_are_unknown_never_zero(store):
    gpu = make_run(store, start=T0, end=T0 + dt.timedelta(hours=1), gpus=2, gpu_model="Acme X9")
    unsampled = make_run(store, start=T0, end=T0 + dt.timedelta(hours=1), sampled=False)
    for rid, why in (
        (gpu, "GPU model Acme X9 not in the pricing catalog"),
        (unsampled, "no resource samples"),
    ):
        row = run_cost(store, rid)
        assert row["cost_usd"] is None
        assert row["cost_basis"] == "unknown"
        assert why in row["cost_note"]
    report = report_costs(store, by="project")
    total = report.groups.row(0, named=True)
    assert total["unknown_cost_runs"] == 2
    assert total["cost_usd"] is None


def test_unknown_instance_type_falls_back_to_core_hours(store):
    rid = make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        cores=2,
        tags={"instance_type": "foo.large"},
    )
    row = run_cost(store, rid)
    assert row["cost_usd"] == pytest.approx(2 * CORE)
    assert "instance type foo.large not in the pricing catalog" in row["cost_note"]


def test_bills_override_estimate_and_add_up(store):
    rid = make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        bills=[100.0, 20.5],
        tags={"instance_type": "p3.2xlarge"},
    )
    row = run_cost(store, rid)
    assert row["cost_usd"] == pytest.approx(120.5)
    assert row["estimated_usd"] == pytest.approx(3.06)
    assert row["cost_basis"] == "bill"


def test_record_cost_api_overrides(store):
    rid = make_run(store, start=T0, end=T0 + dt.timedelta(hours=1), cores=1)
    ledger.record_cost(rid[:10], 7.25, source="gcp invoice", store=store)
    assert run_cost(store, rid)["cost_usd"] == pytest.approx(7.25)
    with pytest.raises(InvalidValueError):
        ledger.record_cost(rid, -1, store=store)


def test_running_run_costs_so_far(store):
    now = dt.datetime.now(UTC)
    rid = make_run(store, start=now - dt.timedelta(minutes=30), end=None, heartbeat=now, cores=2)
    row = run_cost(store, rid)
    assert row["status"] == "running"
    assert row["cost_usd"] == pytest.approx(0.5 * 2 * CORE, rel=0.02)
    assert "run still open" in row["cost_note"]


def test_power_paid_adds_energy_and_catalog_emissions(store, store_path):
    with open(f"{store_path}/ledger.toml", "a") as handle:
        handle.write(
            "[costs]\npower_paid = true\n[pricing.electricity]\nlab = 0.20\n"
            "[pricing.carbon_intensity]\nlab = 0.1\n"
        )
    store = open_store(store_path)
    rid = make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        cores=1,
        tags={"region": "lab"},
        energy={"energy_kwh": 10.0, "emissions_kg": 4.0},
    )
    other = make_run(
        store, start=T0, end=T0 + dt.timedelta(hours=1), cores=1, energy={"energy_kwh": 2.0}
    )
    row = run_cost(store, rid)
    assert row["energy_usd"] == pytest.approx(10 * 0.20)
    assert row["cost_usd"] == pytest.approx(CORE + 2.0)
    assert row["emissions_kg"] == pytest.approx(1.0)  # region intensity wins
    assert row["emissions_source"] == "catalog:lab"
    row = run_cost(store, other)
    assert row["energy_usd"] == pytest.approx(2 * 0.13)  # shipped default electricity rate
    assert row["emissions_kg"] == pytest.approx(2 * 0.475)
    assert row["emissions_source"] == "catalog:default"


def test_run_spanning_days_is_split_by_day_and_window(store):
    start = dt.datetime(2025, 1, 1, 22, 0, tzinfo=UTC)
    make_run(store, start=start, end=start + dt.timedelta(hours=6), cores=2)
    total = 6 * 2 * CORE
    by_day = report_costs(store, by="day").groups
    assert by_day["group"].to_list() == ["2025-01-01", "2025-01-02", "TOTAL"]
    assert by_day["cost_usd"].to_list() == pytest.approx([total / 3, total * 2 / 3, total])
    assert by_day["wall_hours"].to_list() == pytest.approx([2, 4, 6])
    assert by_day["runs"].to_list() == [1, 1, 1]
    since = report_costs(store, by="project", since="2025-01-02").groups
    assert since["cost_usd"][0] == pytest.approx(total * 2 / 3)
    window = report_costs(store, by="day", since="2025-01-01T23:00", until="2025-01-02T01:00")
    assert window.groups["cost_usd"].to_list() == pytest.approx([total / 6, total / 6, total / 3])
    month = report_costs(store, by="month").groups
    assert month["group"].to_list() == ["2025-01", "TOTAL"]
    week = report_costs(store, by="week").groups
    assert week["group"].to_list() == ["2025-W01", "TOTAL"]


def test_group_by_tag_param_user_status(store):
    make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        cores=1,
        tags={"team": "cv"},
        params={"lr": "0.1"},
    )
    make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=2),
        cores=1,
        params={"lr": "0.01"},
        status="failed",
        user="bo",
    )
    by_tag = report_costs(store, by="tag:team").groups
    assert by_tag["group"].to_list() == ["(none)", "cv", "TOTAL"]
    assert by_tag["cost_usd"].to_list() == pytest.approx([2 * CORE, CORE, 3 * CORE])
    by_param = report_costs(store, by="param:lr").groups
    assert by_param["group"].to_list() == ["0.01", "0.1", "TOTAL"]
    by_status = report_costs(store, by="status").groups
    assert by_status["failed_usd"].to_list() == pytest.approx([2 * CORE, 0, 2 * CORE])
    assert report_costs(store, by="user").groups["group"].to_list() == ["ana", "bo", "TOTAL"]
    with pytest.raises(InvalidValueError, match="Unknown --by 'colour'"):
        report_costs(store, by="colour")


def test_wasted_dominated_pareto_and_efficiency(store):
    # cost = hours * 1 core * CORE; metric val_acc (max)
    specs = [
        ("a", 1, 0.70, "finished"),
        ("b", 2, 0.80, "finished"),
        ("c", 3, 0.75, "finished"),
        ("d", 4, 0.90, "finished"),
        ("e", 1, 0.10, "failed"),
    ]
    for index, (name, hours, acc, status) in enumerate(specs):
        start = T0 + dt.timedelta(hours=10 * index)
        make_run(
            store,
            start=start,
            end=start + dt.timedelta(hours=hours),
            cores=1,
            name=name,
            status=status,
            metrics={"val_acc": acc},
        )
    report = report_costs(store, by="experiment", metric="val_acc", mode="max")
    row = report.groups.row(0, named=True)
    assert row["failed_usd"] == pytest.approx(1 * CORE)
    # c (3h, .75) is beaten by b (2h, .80); e failed (counted as failed, not twice)
    assert row["dominated_usd"] == pytest.approx(3 * CORE)
    assert row["wasted_usd"] == pytest.approx(4 * CORE)
    assert report.front["name"].to_list() == ["a", "b", "d"]
    assert report.front["metric_per_usd"].to_list() == pytest.approx(
        [0.70 / CORE, 0.80 / (2 * CORE), 0.90 / (4 * CORE)]
    )
    eff = report.efficiency.row(0, named=True)
    assert eff["best_run"] == "d" and eff["best_metric"] == pytest.approx(0.90)
    assert eff["cost_to_best_usd"] == pytest.approx((1 + 2 + 3 + 4) * CORE)
    assert eff["metric_gain"] == pytest.approx(0.20)
    assert eff["gain_per_usd"] == pytest.approx(0.20 / (10 * CORE))
    low = report_costs(store, by="experiment", metric="val_acc", mode="min")
    assert low.front["name"].to_list() == ["a"]  # failed runs do not compete
    with pytest.raises(InvalidValueError, match=r"Unknown metric 'acc'\. Known: val_acc"):
        report_costs(store, metric="acc")


def test_budget_and_plot(store, tmp_path):
    make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=10),
        cores=1,
        project="p",
        metrics={"val_acc": 0.5},
    )
    make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=1),
        cores=1,
        project="q",
        metrics={"val_acc": 0.6},
    )
    report = report_costs(store, by="project", budget=0.1)
    assert report.over_budget == ["p"]
    assert report.groups["over_budget"].to_list() == [True, False, None]
    png = tmp_path / "front.png"
    report = report_costs(store, metric="val_acc", plot=png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.plot == str(png)
    assert not math.isnan(report.groups["cost_usd"][0])


def test_nested_runs_are_not_billed_twice(store):
    parent = make_run(store, start=T0, end=T0 + dt.timedelta(hours=3), cores=2, name="sweep")
    for index in range(2):
        start = T0 + dt.timedelta(hours=index)
        make_run(store, start=start, end=start + dt.timedelta(hours=1), cores=2, parent=parent)
    row = run_cost(store, parent)
    assert row["run_hours"] == pytest.approx(3) and row["wall_hours"] == pytest.approx(1)
    assert "child runs" in row["cost_note"]
    total = report_costs(store).groups.row(-1, named=True)
    assert total["wall_hours"] == pytest.approx(3)
    assert total["cost_usd"] == pytest.approx(3 * 2 * CORE)


def test_stalled_run_is_wasted_until_its_last_heartbeat(store):
    now = dt.datetime.now(UTC)
    rid = make_run(
        store,
        start=now - dt.timedelta(hours=3),
        end=None,
        cores=1,
        heartbeat=now - dt.timedelta(hours=1),
    )
    row = run_cost(store, rid)
    assert row["status"] == "stalled"
    assert row["cost_usd"] == pytest.approx(2 * CORE, rel=1e-3)
    groups = report_costs(store, by="status").groups
    assert groups.row(0, named=True)["failed_usd"] == pytest.approx(2 * CORE, rel=1e-3)


def test_processes_of_one_run_count_machines_once(store):
    from ledger.writer import Writer

    rid = make_run(store, start=T0, end=T0 + dt.timedelta(hours=1), sampled=False)
    wrapper, child, other_node = Writer(store), Writer(store), Writer(store)

    def add(writer, kind, host, **row):
        attrs = {"host": host, "cpu_cores": 8, "gpu_count": 1, "gpu_model": "NVIDIA T4"}
        row.update(run_id=rid, ts=_us(T0), kind=kind, source="test", attrs=json.dumps(attrs))
        writer.add_event("costs", "p", row)

    # `ledger run` and its Python child on node-a meter the same machine; node-b is a
    # second node continuing the run.
    add(wrapper, "resources", "node-a")
    add(child, "resources", "node-a")
    add(other_node, "resources", "node-b")
    add(wrapper, "energy", "node-a", energy_kwh=1.0, measured=False)
    add(child, "energy", "node-a", energy_kwh=1.5, measured=False)
    add(other_node, "energy", "node-b", energy_kwh=2.0, measured=False)
    for writer in (wrapper, child, other_node):
        writer.flush()
    row = run_cost(store, rid)
    assert row["cpu_cores"] == 16 and row["gpu_count"] == 2
    assert row["energy_kwh"] == pytest.approx(3.5)
    assert row["cost_usd"] == pytest.approx(16 * CORE + 2 * 0.526)


def test_run_cost_days_view_splits_a_run_by_its_share_of_each_day(store):
    start = dt.datetime(2025, 1, 1, 18, 0, tzinfo=UTC)
    long_run = make_run(store, start=start, end=start + dt.timedelta(hours=36), cores=1)
    short_run = make_run(store, start=start, end=start + dt.timedelta(hours=1), cores=1)
    frame = ledger.query(
        "SELECT run_id, day, day_fraction, piece_start, piece_end FROM run_cost_days "
        "ORDER BY run_id, day",
        store,
    )
    long_rows = frame.filter(frame["run_id"] == long_run)
    assert [str(d) for d in long_rows["day"]] == ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert long_rows["day_fraction"].to_list() == pytest.approx([6 / 36, 24 / 36, 6 / 36])
    short_rows = frame.filter(frame["run_id"] == short_run)
    assert short_rows["day_fraction"].to_list() == [1.0]
    assert short_rows["piece_end"][0] - short_rows["piece_start"][0] == dt.timedelta(hours=1)


def test_dominance_ties_self_and_failed_rivals(store):
    """Exactly the pairwise rule: b dominates a when b is finished, b's metric >= a's and
    b's cost <= a's, one of them strictly; a run never dominates itself."""
    hour = dt.timedelta(hours=1)

    def run(name, cores, acc, status="finished"):
        return make_run(
            store, start=T0, end=T0 + hour, status=status, name=name, cores=cores,
            experiment="tie", metrics={"acc": acc},
        )  # fmt: skip

    run("twin-a", 2, 0.8)  # same cost and metric as twin-b: neither dominates
    run("twin-b", 2, 0.8)
    run("same-cost-worse", 2, 0.7)  # same cost, lower metric: dominated
    run("dearer-same", 3, 0.8)  # same metric, dearer: dominated
    run("dearer-better", 4, 0.9)  # better metric: on the front
    run("cheap-failed", 1, 0.95, status="failed")  # failed runs never dominate
    run("lone-dearest", 5, 0.85)  # dominated by dearer-better (cheaper, better)
    report = report_costs(store, by="experiment", metric="acc")
    row = report.groups.filter(report.groups["group"] == "tie").row(0, named=True)
    assert row["dominated_usd"] == pytest.approx((2 + 3 + 5) * CORE)
    assert row["failed_usd"] == pytest.approx(1 * CORE)
    front = report.front.filter(report.front["experiment"] == "tie")
    assert sorted(front["name"].to_list()) in (["dearer-better", "twin-a"],
                                               ["dearer-better", "twin-b"])  # fmt: skip
