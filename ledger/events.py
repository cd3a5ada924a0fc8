"""Event kinds and their Arrow schemas: the on-disk contract of the store.

Each kind is its own Hive-partitioned Parquet dataset
(``events/<kind>/project=<p>/date=<YYYY-MM-DD>/<file>.parquet``). ``project`` and
``date`` live in the path only. Low-volume kinds carry a UUIDv7 ``event_id``; metrics and
system samples are identified by ``(writer_id, seq)``, with ``seq`` assigned in bulk at
flush so the logging hot path does no per-call identity work (DESIGN.md invariant 2).

Schemas only ever gain columns; readers use union-by-name, so older files stay readable.
Bump :data:`SCHEMA_VERSION` when a column is added and note the change in
``docs/design.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 2

KINDS = (
    "runs",
    "params",
    "metrics",
    "tags",
    "artifacts",
    "datasets",
    "system",
    "costs",
    "summaries",
    "cost_summaries",
)
"""Every event kind, in the order views are built."""

HIGH_VOLUME_KINDS = ("metrics", "system")

RUN_EVENTS = (
    "started",  # a run began; carries experiment, name, parent, user, host
    "resumed",  # a later session re-opened the run (start_run(run_id=...))
    "attached",  # another process added to the open run (LEDGER_RUN_ID); a heartbeat
    "heartbeat",  # the owning process is alive
    "environment",  # captured reproducibility facts (git, packages, host...)
    "seeded",  # seeds the run set through ledger.seed
    "note",  # a problem or remark recorded on the run (e.g. a logging failure)
    "finished",
    "failed",
    "killed",
    "renamed",
    "archived",
    "restored",
    "pinned",
    "unpinned",
    "deleted",
    "alerted",  # `ledger watch` reported a condition (attrs.condition); once per run each
    "deleted",  # purged (message 'purged'); the run's other events are gone
    "maintenance",  # a lifecycle operation (run_id = operation id, attrs = its summary)
)
TERMINAL_STATUSES = ("finished", "failed", "killed")
STATUSES = ("running", "finished", "failed", "killed", "stalled")

# Column lists are plain data so the core can describe them without importing pyarrow.
_TS = "timestamp[us, tz=UTC]"
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "runs": [
        ("event_id", "string"),
        ("run_id", "string"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("event", "string"),
        ("experiment", "string"),
        ("name", "string"),
        ("parent_run_id", "string"),
        ("user", "string"),
        ("host", "string"),
        ("pid", "int64"),
        ("message", "string"),
        ("exit_code", "int64"),
        ("attrs", "string"),
        # Typed copies of the most-asked capture facts (set on `environment` events), so
        # the runs view need not parse each run's environment JSON.
        ("git_commit", "string"),
        ("git_branch", "string"),
        ("git_dirty", "bool"),
        ("command", "string"),
        ("python_version", "string"),
    ],
    "params": [
        ("event_id", "string"),
        ("run_id", "string"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("key", "string"),
        ("value", "string"),
        ("value_type", "string"),
    ],
    "metrics": [
        ("run_id", "string"),
        ("key", "string"),
        ("value", "float64"),
        ("step", "int64"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("seq", "int64"),
    ],
    "tags": [
        ("event_id", "string"),
        ("run_id", "string"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("key", "string"),
        ("value", "string"),
    ],
    "artifacts": [
        ("event_id", "string"),
        ("run_id", "string"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("path", "string"),
        ("size", "int64"),
        ("sha256", "string"),
        ("uri", "string"),
        ("kind", "string"),
    ],
    "datasets": [
        ("event_id", "string"),
        ("run_id", "string"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("name", "string"),
        ("context", "string"),
        ("source", "string"),
        ("sha256", "string"),
        ("rows", "int64"),
        ("columns", "int64"),
        ("schema", "string"),
        ("fingerprint", "string"),  # v2: how sha256 was made (file, directory, arrow...)
    ],
    "system": [
        ("run_id", "string"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("seq", "int64"),
        ("device", "string"),
        ("key", "string"),
        ("value", "float64"),
    ],
    "costs": [
        ("event_id", "string"),
        ("run_id", "string"),
        ("ts", _TS),
        ("writer_id", "string"),
        ("kind", "string"),
        ("source", "string"),
        ("cost_usd", "float64"),
        ("energy_kwh", "float64"),
        ("cpu_energy_kwh", "float64"),
        ("gpu_energy_kwh", "float64"),
        ("ram_energy_kwh", "float64"),
        ("emissions_kg", "float64"),
        ("measured", "bool"),
        ("attrs", "string"),
    ],
}

# Per (run, key) summary of the points in ONE metrics file, written by the writer as that
# file's twin (same partition, same file name under events/summaries/). Summaries merge
# exactly across files (see ledger/summaries.py); readers use a summary only while its
# metrics twin exists and fold the raw points of metrics files without one.
COLUMNS["summaries"] = [
    ("run_id", "string"),
    ("key", "string"),
    ("writer_id", "string"),
    ("ts", _TS),
    ("n_points", "int64"),
    ("n_nan", "int64"),
    ("last_value", "float64"),
    ("last_step", "int64"),
    ("last_ts", _TS),
    ("last_seq", "int64"),
    ("min_value", "float64"),
    ("min_step", "int64"),
    ("max_value", "float64"),
    ("max_step", "int64"),
]

# Per (run, writer) fold of the cost events in ONE costs file, written as that file's twin
# (same partition, same file name under events/cost_summaries/) by the writer and by every
# lifecycle rewrite. What the cost report folds per run, with each figure's time so rows
# of many files merge exactly: the latest resources document (parsed; ``r_attrs`` keeps
# the raw text when it cannot be parsed exactly as DuckDB's from_json would), each energy
# figure with the time of its latest non-null value, bills summed. Readers use a cost
# summary only while its costs twin exists (see ledger/cost_summaries.py).
COLUMNS["cost_summaries"] = [
    ("run_id", "string"),
    ("writer_id", "string"),
    ("ts", _TS),
    ("n_events", "int64"),
    ("r_ts", _TS),
    ("r_attrs_ts", _TS),
    ("r_host", "string"),
    ("r_cpu_cores", "float64"),
    ("r_gpu_count", "float64"),
    ("r_gpu_model", "string"),
    ("r_instance_type", "string"),
    ("r_instance_source", "string"),
    ("r_region", "string"),
    ("r_attrs", "string"),
    ("e_n", "int64"),
    ("e_source", "string"),
    ("e_source_ts", _TS),
    ("e_energy_kwh", "float64"),
    ("e_energy_kwh_ts", _TS),
    ("e_cpu_energy_kwh", "float64"),
    ("e_cpu_energy_kwh_ts", _TS),
    ("e_gpu_energy_kwh", "float64"),
    ("e_gpu_energy_kwh_ts", _TS),
    ("e_ram_energy_kwh", "float64"),
    ("e_ram_energy_kwh_ts", _TS),
    ("e_emissions_kg", "float64"),
    ("e_emissions_kg_ts", _TS),
    ("e_measured", "bool"),
    ("e_measured_ts", _TS),
    ("e_attrs_ts", _TS),
    ("e_covered_s", "float64"),
    ("e_attrs", "string"),
    ("bill_n", "int64"),
    ("bill_usd", "float64"),
    ("bill_sources", "string"),
]

TWINS = {"metrics": "summaries", "costs": "cost_summaries"}
"""Kinds whose every file has a summary twin of the same name (``kind -> twin kind``)."""

PARTITION_COLUMNS = (("project", "string"), ("date", "date32"))


def arrow_schema(kind: str) -> pa.Schema:
    """The Arrow schema of ``kind``'s files, with the schema version in its metadata."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        _TS: pa.timestamp("us", tz="UTC"),
    }
    return pa.schema(
        [pa.field(name, types[type_name]) for name, type_name in COLUMNS[kind]],
        metadata={"ledger.kind": kind, "ledger.schema_version": str(SCHEMA_VERSION)},
    )
