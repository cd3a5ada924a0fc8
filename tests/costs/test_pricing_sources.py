"""Where each catalog price comes from: codecarbon's package data, the shipped table, or
ledger.toml — and that every row says so."""

from __future__ import annotations

import csv
import json
import os

import pytest
from ledger.analytics import pricing
from ledger.analytics.engine import query

KG_PER_LB = 0.45359237


@pytest.fixture(scope="module")
def data_dir() -> str:
    found = pricing._codecarbon_data_dir()
    if found is None:
        pytest.skip("codecarbon is not installed")
    return found


def _rates(prices) -> dict[tuple[str, str], pricing.Price]:
    return {(p.item, p.name): p for p in prices}


def test_every_row_has_source_date_and_origin():
    for price in pricing.catalog({}):
        assert price.source, price
        assert price.origin in pricing.ORIGINS, price
        assert price.rate >= 0
        if price.origin == "shipped":
            assert price.as_of, f"a hand-typed price needs the date it was taken: {price}"
            assert "by hand" in price.source or price.source.startswith("derived:"), price


def test_carbon_intensity_is_read_from_codecarbon_data(data_dir):
    rates = _rates(pricing.catalog({}))
    with open(os.path.join(data_dir, "private_infra", "global_energy_mix.json")) as handle:
        mix = json.load(handle)
    france = rates[("carbon_intensity", "FRA")]
    assert france.origin == "codecarbon"
    assert france.rate == pytest.approx(mix["FRA"]["carbon_intensity"] / 1000, abs=1e-4)
    assert france.as_of == str(mix["FRA"]["year"])
    with open(os.path.join(data_dir, "private_infra", "carbon_intensity_per_source.json")) as f:
        world = json.load(f)["world_average"]
    assert rates[("carbon_intensity", "default")].rate == pytest.approx(world / 1000)
    with open(os.path.join(data_dir, "cloud", "impact.csv"), encoding="utf-8-sig") as handle:
        gcp = {row["region"]: float(row["impact"]) for row in csv.DictReader(handle)}
    assert rates[("carbon_intensity", "us-central1")].rate == pytest.approx(
        gcp["us-central1"] / 1000, abs=1e-4
    )
    with open(os.path.join(data_dir, "private_infra", "2023", "usa_emissions.json")) as f:
        virginia = json.load(f)["virginia"]["emissions"]  # lbs/MWh
    aws = rates[("carbon_intensity", "us-east-1")]
    assert aws.rate == pytest.approx(virginia * KG_PER_LB / 1000, abs=1e-4)
    assert "Virginia" in aws.source and "eGRID" in aws.source
    # An AWS region outside the US takes its country's average, and says so.
    assert rates[("carbon_intensity", "eu-west-3")].rate == france.rate
    assert "country average" in rates[("carbon_intensity", "eu-west-3")].source


def test_without_codecarbon_data_only_the_world_fallback_remains(tmp_path):
    rows = pricing.carbon_intensities(str(tmp_path))
    assert [(p.name, p.rate, p.origin) for p in rows] == [("default", 0.475, "shipped")]


def test_ledger_toml_overrides_and_says_so(store_path):
    from ledger.store import open_store

    open_store(store_path).ensure_initialized()
    with open(f"{store_path}/ledger.toml", "a") as handle:
        handle.write(
            '[pricing.carbon_intensity]\n"us-east-1" = { rate = 0.3, source = "our PPA", '
            'as_of = "2026-01" }\n[pricing.gpus]\nA100 = 1.8\n'
        )
    frame = query(
        "SELECT item, name, rate, source, as_of, origin FROM pricing "
        "WHERE (item = 'carbon_intensity' AND name = 'us-east-1') "
        "OR (item = 'gpu' AND name = 'A100') ORDER BY item",
        store_path,
    )
    rows = frame.to_dicts()
    assert rows[0] == {
        "item": "carbon_intensity",
        "name": "us-east-1",
        "rate": 0.3,
        "source": "our PPA",
        "as_of": "2026-01",
        "origin": "ledger.toml",
    }
    assert rows[1]["rate"] == 1.8 and rows[1]["origin"] == "ledger.toml"


def test_region_intensity_from_codecarbon_prices_emissions(store_path, data_dir):
    import datetime as dt

    from test_cost_math import make_run

    from ledger.store import open_store

    store = open_store(store_path)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    run_id = make_run(
        store,
        start=start,
        end=start + dt.timedelta(hours=1),
        tags={"region": "europe-west9"},
        energy={"energy_kwh": 2.0},
    )
    row = query(
        "SELECT emissions_kg, emissions_source FROM run_costs WHERE run_id = ?",
        store_path,
        [run_id],
    ).to_dicts()[0]
    expected = _rates(pricing.catalog({}))[("carbon_intensity", "europe-west9")].rate
    assert row["emissions_kg"] == pytest.approx(2.0 * expected)
    assert row["emissions_source"] == "catalog:europe-west9"
