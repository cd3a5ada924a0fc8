"""The pricing catalog: what an hour of an instance, a GPU or a CPU core costs, what a kWh
costs and how much CO2e it emits — shipped defaults, overridden by ``ledger.toml``.

Every entry carries its source, the date its figure is from, and its ``origin``:

- ``codecarbon``: grid carbon intensity read at run time from the data files the
  installed codecarbon package ships (per country, per Google Cloud region, per US state
  for the AWS US regions, and the world average) — maintained upstream, updated by
  upgrading codecarbon, never typed in here;
- ``shipped``: hourly list prices (instances, GPUs, the CPU core-hour) and the default
  electricity price, transcribed by hand from the providers' public price pages at the
  date given and not re-checked since (no network at build time). Cloud list prices
  change (AWS cut its P4/P5 GPU instance prices in June 2025, after these were taken):
  treat them as placeholders and set your own;
- ``ledger.toml``: the store's ``[pricing]`` tables, which override both.

The catalog reaches SQL as the ``pricing`` view (``queries/pricing.sql``):
:func:`set_pricing_variables` binds it to a DuckDB connection as JSON in the variable
``pricing_json``, next to ``power_paid`` (``[costs] power_paid``).
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ledger.errors import ConfigError

if TYPE_CHECKING:
    import duckdb

    from ledger.store import Store

ITEMS = ("instance", "gpu", "cpu_core", "electricity", "carbon_intensity")
UNITS = {
    "instance": "USD/hour",
    "gpu": "USD/GPU-hour",
    "cpu_core": "USD/core-hour",
    "electricity": "USD/kWh",
    "carbon_intensity": "kg CO2e/kWh",
}
ORIGINS = ("shipped", "codecarbon", "ledger.toml")


@dataclass(frozen=True)
class Price:
    item: str
    name: str
    rate: float
    source: str
    as_of: str
    gpus: int | None = None
    gpu_model: str | None = None
    vcpus: int | None = None
    origin: str = "shipped"

    @property
    def unit(self) -> str:
        return UNITS[self.item]


_HAND = "transcribed by hand, not re-checked since"
_AWS = f"AWS EC2 On-Demand pricing page, Linux, us-east-1 ({_HAND})"
_AWS_GPU = (
    f"AWS EC2 On-Demand pricing page, Linux, us-east-1 ({_HAND}; AWS cut P4/P5 "
    "On-Demand prices in June 2025, after this was taken)"
)
_GCP = f"Google Cloud Compute Engine pricing page, on-demand, us-central1 ({_HAND})"

DEFAULTS: tuple[Price, ...] = (
    # GPU instances (whole-instance $/hour)
    Price("instance", "p4d.24xlarge", 32.7726, _AWS_GPU, "2024-06", 8, "A100", 96),
    Price("instance", "p4de.24xlarge", 40.9657, _AWS_GPU, "2024-06", 8, "A100", 96),
    Price("instance", "p5.48xlarge", 98.32, _AWS_GPU, "2024-06", 8, "H100", 192),
    Price("instance", "p3.2xlarge", 3.06, _AWS, "2024-06", 1, "V100", 8),
    Price("instance", "p3.8xlarge", 12.24, _AWS, "2024-06", 4, "V100", 32),
    Price("instance", "g4dn.xlarge", 0.526, _AWS, "2024-06", 1, "T4", 4),
    Price("instance", "g4dn.12xlarge", 3.912, _AWS, "2024-06", 4, "T4", 48),
    Price("instance", "g6.xlarge", 0.8048, _AWS, "2024-06", 1, "L4", 4),
    Price("instance", "g6.12xlarge", 4.6016, _AWS, "2024-06", 4, "L4", 48),
    Price("instance", "a2-highgpu-1g", 3.673, _GCP, "2024-06", 1, "A100", 12),
    Price("instance", "g2-standard-4", 0.7068, _GCP, "2024-06", 1, "L4", 4),
    # CPU instances
    Price("instance", "m5.large", 0.096, _AWS, "2024-06", 0, None, 2),
    Price("instance", "m5.xlarge", 0.192, _AWS, "2024-06", 0, None, 4),
    Price("instance", "m5.2xlarge", 0.384, _AWS, "2024-06", 0, None, 8),
    Price("instance", "c5.xlarge", 0.17, _AWS, "2024-06", 0, None, 4),
    Price("instance", "c5.2xlarge", 0.34, _AWS, "2024-06", 0, None, 8),
    Price("instance", "c6i.xlarge", 0.17, _AWS, "2024-06", 0, None, 4),
    Price("instance", "r5.xlarge", 0.252, _AWS, "2024-06", 0, None, 4),
    Price("instance", "n2-standard-4", 0.194236, _GCP, "2024-06", 0, None, 4),
    # Per GPU-hour defaults (used when the instance type is unknown): derived from the
    # instance rows above (the single-GPU instance, or the 8-GPU instance / 8).
    Price("gpu", "A100", 4.0966, "derived: p4d.24xlarge row / 8 GPUs", "2024-06"),
    Price("gpu", "H100", 12.29, "derived: p5.48xlarge row / 8 GPUs", "2024-06"),
    Price(
        "gpu",
        "H200",
        10.60,
        f"AWS EC2 p5en.48xlarge On-Demand, us-east-1, / 8 GPUs ({_HAND}; predates the "
        "June 2025 P5 price cut)",
        "2025-01",
    ),
    Price("gpu", "V100", 3.06, "derived: p3.2xlarge row", "2024-06"),
    Price("gpu", "T4", 0.526, "derived: g4dn.xlarge row", "2024-06"),
    Price("gpu", "L4", 0.8048, "derived: g6.xlarge row", "2024-06"),
    # CPU core-hour default: a general-purpose vCPU (m5.xlarge $0.192 / 4 vCPU)
    Price("cpu_core", "default", 0.048, "derived: m5.xlarge row / 4 vCPU", "2024-06"),
    # Electricity: a round figure, not a quote. On-premises users set their own tariff.
    Price(
        "electricity",
        "default",
        0.13,
        "US EIA, average retail price of electricity to commercial customers, about "
        f"13 cents/kWh (rounded; {_HAND})",
        "2023",
    ),
)

# Where the AWS regions are, for their grid intensity: a US state (EPA eGRID via
# codecarbon) or a country (codecarbon's per-country mix). Locations are the regions'
# published cities; AWS publishes no per-region grid intensity.
AWS_REGIONS = {
    "us-east-1": ("USA", "virginia"),
    "us-east-2": ("USA", "ohio"),
    "us-west-1": ("USA", "california"),
    "us-west-2": ("USA", "oregon"),
    "ca-central-1": ("CAN", None),
    "eu-west-1": ("IRL", None),
    "eu-west-2": ("GBR", None),
    "eu-west-3": ("FRA", None),
    "eu-central-1": ("DEU", None),
    "eu-north-1": ("SWE", None),
    "eu-south-1": ("ITA", None),
    "ap-northeast-1": ("JPN", None),
    "ap-northeast-2": ("KOR", None),
    "ap-south-1": ("IND", None),
    "ap-southeast-1": ("SGP", None),
    "ap-southeast-2": ("AUS", None),
    "sa-east-1": ("BRA", None),
}
_LB_PER_MWH_TO_KG_PER_KWH = 0.45359237 / 1000.0
WORLD_FALLBACK = Price(
    "carbon_intensity",
    "default",
    0.475,
    "IEA Global Energy & CO2 Status Report 2019 world average (the figure codecarbon "
    "uses; codecarbon is not installed, so it is not read from its data)",
    "2019",
)


def _codecarbon_data_dir() -> str | None:
    """The installed codecarbon's ``data`` folder, found without importing codecarbon."""
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(next(iter(spec.submodule_search_locations)), "data")
    return folder if os.path.isdir(folder) else None


def _codecarbon_version(data_dir: str) -> str:
    # Read from its _version.py: importlib.metadata would cost ~0.1 s on every connect.
    try:
        with open(os.path.join(os.path.dirname(data_dir), "_version.py"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        pass
    return "?"


@functools.lru_cache(maxsize=4)
def carbon_intensities(data_dir: str | None = None) -> tuple[Price, ...]:
    """Grid carbon intensity (kg CO2e/kWh) from codecarbon's package data.

    Rows: ``default`` (codecarbon's world average), one per country (ISO 3166 alpha-3
    name, e.g. ``FRA``; the year is the data's), one per Google Cloud region
    (``us-central1``), and one per AWS region in :data:`AWS_REGIONS` (its US state's
    EPA eGRID rate, else its country's). Without codecarbon: only the world fallback.
    """
    data_dir = data_dir or _codecarbon_data_dir()
    if data_dir is None:
        return (WORLD_FALLBACK,)
    shipped_by = f"codecarbon {_codecarbon_version(data_dir)}"
    rows: list[Price] = []
    infra = os.path.join(data_dir, "private_infra")

    def load(*parts: str) -> Any:
        with open(os.path.join(*parts), encoding="utf-8") as handle:
            return json.load(handle)

    try:
        per_source = load(infra, "carbon_intensity_per_source.json")
        rows.append(
            Price(
                "carbon_intensity",
                "default",
                round(float(per_source["world_average"]) / 1000.0, 4),
                f"world average, {per_source.get('world_average_source', '?')} "
                f"({shipped_by} data/private_infra/carbon_intensity_per_source.json)",
                "2019",
                origin="codecarbon",
            )
        )
    except (OSError, KeyError, ValueError, TypeError):
        rows.append(WORLD_FALLBACK)
    countries: dict[str, Price] = {}
    try:
        for code, entry in load(infra, "global_energy_mix.json").items():
            value = entry.get("carbon_intensity")
            if isinstance(value, (int, float)):
                countries[code] = Price(
                    "carbon_intensity",
                    code,
                    round(float(value) / 1000.0, 4),
                    f"{entry.get('country_name', code)}: electricity mix "
                    f"({shipped_by} data/private_infra/global_energy_mix.json)",
                    str(entry.get("year", "")),
                    origin="codecarbon",
                )
    except (OSError, ValueError, AttributeError):
        pass
    rows.extend(countries.values())
    try:
        with open(os.path.join(data_dir, "cloud", "impact.csv"), encoding="utf-8-sig") as f:
            for line in csv.DictReader(f):
                if line.get("provider") != "gcp" or not line.get("impact"):
                    continue
                rows.append(
                    Price(
                        "carbon_intensity",
                        line["region"],
                        round(float(line["impact"]) / 1000.0, 4),
                        f"Google Cloud region {line['region']} ({line.get('city') or '?'}), "
                        f"{line.get('source') or 'Google'} ({shipped_by} "
                        "data/cloud/impact.csv; the file gives no year)",
                        "",
                        origin="codecarbon",
                    )
                )
    except (OSError, ValueError, KeyError):
        pass
    states: dict[str, Any] = {}
    state_source, state_year = "EPA eGRID", ""
    try:
        egrid = load(infra, "2023", "usa_emissions.json")
        state_source = egrid.get("_source", {}).get("name", state_source)
        state_year = str(egrid.get("_source", {}).get("year", ""))
        states = {k: v for k, v in egrid.items() if not k.startswith("_")}
    except (OSError, ValueError, AttributeError):
        pass
    for region, (country, state) in AWS_REGIONS.items():
        rate = states.get(state, {}).get("emissions") if state else None
        if isinstance(rate, (int, float)):
            rows.append(
                Price(
                    "carbon_intensity",
                    region,
                    round(rate * _LB_PER_MWH_TO_KG_PER_KWH, 4),
                    f"AWS {region} is in {state.title()}, USA: {state_source} "
                    f"({shipped_by} data/private_infra/2023/usa_emissions.json)",
                    state_year,
                    origin="codecarbon",
                )
            )
        elif country in countries:
            found = countries[country]
            rows.append(
                Price(
                    "carbon_intensity",
                    region,
                    found.rate,
                    f"AWS {region} is in {country}: the country average, {found.source}",
                    found.as_of,
                    origin="codecarbon",
                )
            )
    return tuple(rows)


_CONFIG_SECTIONS = {
    "instances": "instance",
    "gpus": "gpu",
    "electricity": "electricity",
    "carbon_intensity": "carbon_intensity",
}


def catalog(raw_config: dict[str, Any] | None = None) -> list[Price]:
    """The shipped defaults overridden and extended by ``[pricing]`` in ``ledger.toml``.

    A value is either a number (source ``ledger.toml``) or a table with ``rate`` (or
    ``usd_per_hour``), ``source``, ``as_of`` and, for instances, ``gpus``/``gpu_model``.
    ``cpu_core_hour`` sets the default core-hour rate.

    Raises:
        ConfigError: a section that is not a table, or a rate that is not a number >= 0.
    """
    section = (raw_config or {}).get("pricing", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[pricing] in ledger.toml must be a table, got {section!r}")
    prices = {(p.item, p.name): p for p in (*DEFAULTS, *carbon_intensities())}
    for key, item in _CONFIG_SECTIONS.items():
        entries = section.get(key, {})
        if not isinstance(entries, dict):
            raise ConfigError(f"[pricing.{key}] must be a table of name = rate, got {entries!r}")
        for name, value in entries.items():
            prices[(item, str(name))] = _price(item, str(name), value, f"pricing.{key}")
    if "cpu_core_hour" in section:
        prices[("cpu_core", "default")] = _price(
            "cpu_core", "default", section["cpu_core_hour"], "pricing.cpu_core_hour"
        )
    return list(prices.values())


def _price(item: str, name: str, value: Any, where: str) -> Price:
    details: dict[str, Any] = value if isinstance(value, dict) else {"rate": value}
    rate = details.get("rate", details.get("usd_per_hour"))
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
        raise ConfigError(
            f"Invalid {where} {name!r}: rate must be a number >= 0 ({UNITS[item]}), got {rate!r}"
        )
    return Price(
        item,
        name,
        float(rate),
        str(details.get("source", "ledger.toml")),
        str(details.get("as_of", "")),
        details.get("gpus"),
        details.get("gpu_model"),
        details.get("vcpus"),
        origin="ledger.toml",
    )


def power_paid(raw_config: dict[str, Any] | None) -> bool:
    """``[costs] power_paid``: electricity is billed on top of compute (on-premises)."""
    costs = (raw_config or {}).get("costs", {})
    value = costs.get("power_paid", False) if isinstance(costs, dict) else False
    if not isinstance(value, bool):
        raise ConfigError(f"[costs] power_paid must be true or false, got {value!r}")
    return value


def catalog_json(prices: list[Price]) -> str:
    return json.dumps([{**asdict(p), "unit": p.unit} for p in prices])


def set_pricing_variables(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """Bind the store's catalog and ``power_paid`` to ``con`` (read by the ``pricing`` view)."""
    raw = store.settings.raw
    text = catalog_json(catalog(raw)).replace("'", "''")
    con.execute(f"SET VARIABLE pricing_json = '{text}'")
    con.execute(f"SET VARIABLE power_paid = {'true' if power_paid(raw) else 'false'}")
