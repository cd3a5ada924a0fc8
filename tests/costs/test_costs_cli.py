"""`ledger report costs`, `ledger costs record`, `ledger costs pricing` through click."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from ledger.cli import cli
from tests.costs.test_cost_math import CORE, make_run

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def costed(store_path, monkeypatch):
    from ledger.store import open_store

    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")
    store = open_store(store_path)
    store.ensure_initialized()
    a = make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=2),
        cores=1,
        experiment="x",
        name="a",
        metrics={"val_acc": 0.8},
    )
    b = make_run(
        store,
        start=T0,
        end=T0 + dt.timedelta(hours=3),
        cores=1,
        experiment="x",
        name="b",
        metrics={"val_acc": 0.7},
        status="killed",
    )
    return store_path, a, b


def invoke(*args):
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result


def test_report_json_with_totals(costed):
    store, _, _ = costed
    result = invoke("report", "costs", "--store", store, "--by", "experiment", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["group"] for r in rows] == ["x", "TOTAL"]
    assert rows[0]["cost_usd"] == pytest.approx(5 * CORE)
    assert rows[0]["failed_usd"] == pytest.approx(3 * CORE)


def test_report_table_with_metric_sections_and_plot(costed, tmp_path):
    store, _, _ = costed
    png = tmp_path / "f.png"
    result = invoke("report", "costs", "--store", store, "--metric", "val_acc", "--plot", str(png))
    assert result.exit_code == 0, result.output
    for title in ("Costs by project", "Cost efficiency (val_acc, max)", "Pareto front"):
        assert title in result.output
    assert png.exists()
    front = invoke(
        "report",
        "costs",
        "--store",
        store,
        "--metric",
        "val_acc",
        "--section",
        "front",
        "--format",
        "csv",
    )
    assert front.output.splitlines()[0].startswith("project,experiment,run_id,name,cost_usd")


def test_budget_exit_status_3(costed):
    store, _, _ = costed
    over = invoke("report", "costs", "--store", store, "--budget", "0.1")
    assert over.exit_code == 3
    assert "Over budget ($0.10 per group): p" in over.output
    assert invoke("report", "costs", "--store", store, "--budget", "100").exit_code == 0


def test_bad_options_are_one_line_errors(costed):
    store, _, _ = costed
    result = invoke("report", "costs", "--store", store, "--by", "colour")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Unknown --by 'colour'. Allowed: project,")
    result = invoke("report", "costs", "--store", store, "--since", "yesterday-ish")
    assert result.exit_code == 1 and "Invalid --since 'yesterday-ish'" in result.output


def test_record_and_pricing(costed):
    store, a, _ = costed
    result = invoke("costs", "record", "--store", store, a[:12], "42.5", "--source", "bill")
    assert result.exit_code == 0 and f"Recorded $42.50 for run {a}" in result.output
    rows = json.loads(invoke("report", "costs", "--store", store, "-f", "json").output)
    assert rows[0]["cost_usd"] == pytest.approx(42.5 + 3 * CORE)
    pricing = invoke("costs", "pricing", "--store", store, "--item", "gpu", "-f", "csv")
    names = [line.split(",")[1] for line in pricing.output.splitlines()[1:]]
    assert names == ["A100", "H100", "H200", "L4", "T4", "V100"]
