"""The pricing catalog: what an hour of an instance, a GPU or a CPU core costs, what a kWh
costs and how much CO2e it emits — shipped defaults, overridden by ``ledger.toml``.

Every entry carries its source and the date it was taken from, so a cost can always be
traced to a price. The catalog reaches SQL as the ``pricing`` view (``queries/
pricing.sql``): :func:`set_pricing_variables` binds it to a DuckDB connection as JSON in
the variable ``pricing_json``, next to ``power_paid`` (``[costs] power_paid``).

Shipped rates are public on-demand list prices (Linux, no discounts) as recorded when the
catalog was written, without network access to re-check them: override them with your
own rates (``[pricing.*]``) or record real bills (``ledger cost record``).
"""

from __future__ import annotations

import json
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

    @property
    def unit(self) -> str:
        return UNITS[self.item]


_AWS = "AWS EC2 On-Demand list price, Linux, us-east-1"
_GCP = "Google Cloud Compute Engine on-demand list price, us-central1"

DEFAULTS: tuple[Price, ...] = (
    # GPU instances (whole-instance $/hour)
    Price("instance", "p4d.24xlarge", 32.7726, _AWS, "2024-06", 8, "A100", 96),
    Price("instance", "p4de.24xlarge", 40.9657, _AWS, "2024-06", 8, "A100", 96),
    Price("instance", "p5.48xlarge", 98.32, _AWS, "2024-06", 8, "H100", 192),
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
    # Per GPU-hour defaults (used when the instance type is unknown): the single-GPU
    # instance price, or the 8-GPU instance price / 8, of the cheapest listed instance.
    Price("gpu", "A100", 4.0966, f"{_AWS}: p4d.24xlarge / 8", "2024-06"),
    Price("gpu", "H100", 12.29, f"{_AWS}: p5.48xlarge / 8", "2024-06"),
    Price(
        "gpu",
        "H200",
        10.60,
        f"{_AWS}: p5en.48xlarge / 8 (newest listed rate; verify for your account)",
        "2025-01",
    ),
    Price("gpu", "V100", 3.06, f"{_AWS}: p3.2xlarge", "2024-06"),
    Price("gpu", "T4", 0.526, f"{_AWS}: g4dn.xlarge", "2024-06"),
    Price("gpu", "L4", 0.8048, f"{_AWS}: g6.xlarge", "2024-06"),
    # CPU core-hour default: a general-purpose vCPU (m5.xlarge $0.192 / 4 vCPU)
    Price("cpu_core", "default", 0.048, f"{_AWS}: m5.xlarge / 4 vCPU", "2024-06"),
    # Electricity and grid carbon intensity
    Price(
        "electricity",
        "default",
        0.127,
        "US EIA Electric Power Monthly: average commercial retail price",
        "2024-12",
    ),
    Price(
        "carbon_intensity",
        "default",
        0.475,
        "IEA world average grid carbon intensity (codecarbon's global fallback)",
        "2019",
    ),
)

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
    prices = {(p.item, p.name): p for p in DEFAULTS}
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
