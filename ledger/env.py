"""Names of the environment variables the ledger reads, in one place."""

from __future__ import annotations

STORE = "LEDGER_STORE"
"""Store root (path or URI) when ``--store`` / ``store=`` is not given."""

RUN_ID = "LEDGER_RUN_ID"
"""Set by ``ledger run`` (and usable by any parent): ``start_run()`` continues this run."""

PROJECT = "LEDGER_PROJECT"
EXPERIMENT = "LEDGER_EXPERIMENT"
PARENT_RUN = "LEDGER_PARENT_RUN"
"""A run started while this is set becomes a child of that run (used by reproduce)."""

FLUSH_INTERVAL = "LEDGER_FLUSH_INTERVAL"
HEARTBEAT_INTERVAL = "LEDGER_HEARTBEAT_INTERVAL"
STALL_AFTER = "LEDGER_STALL_AFTER"
CAPTURE = "LEDGER_CAPTURE"
"""Set to ``0`` to switch off automatic environment capture."""

CAPTURE_ENV = "LEDGER_CAPTURE_ENV"
"""Extra environment variables to record at capture, comma-separated names or ``PREFIX_*``
patterns (added to the built-in allow-list; names that look like secrets are still dropped)."""

CAPTURE_MAX_DIFF = "LEDGER_CAPTURE_MAX_DIFF"
"""Largest uncommitted diff stored with a run (e.g. ``10MB``); bigger diffs are hashed and
noted, not stored."""
CONFIG = "LEDGER_CONFIG"
"""The per-user config file (``[stores."s3://..."]`` tables); default
``~/.config/ledger/ledger.toml``."""
LISTING_TTL = "LEDGER_LISTING_TTL"
"""Seconds a connection may reuse an object-store listing (default 0: re-list per query)."""
INCLUDE_ARCHIVED = "LEDGER_INCLUDE_ARCHIVED"
"""Set to ``1`` to make every query read the archive tier too (as ``--include-archived``)."""

LEASE_TTL = "LEDGER_LEASE_TTL"
"""Seconds an object-store lifecycle lease outlives its last renewal (default 30s)."""
