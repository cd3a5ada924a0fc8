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

INCLUDE_ARCHIVED = "LEDGER_INCLUDE_ARCHIVED"
"""Set to ``1`` to make every query read the archive tier too (as ``--include-archived``)."""
