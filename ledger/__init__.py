"""ledger: an event-sourced experiment ledger.

``import ledger`` stays light (no pyarrow, DuckDB, optuna or sklearn): the run API is
plain Python and everything heavier loads on first use.

    import ledger
    with ledger.start_run(project="vision", params={"lr": 0.1}) as run:
        run.log_metric("loss", 0.31, step=10)
    ledger.query("SELECT * FROM runs")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger import hooks as _hooks
from ledger.errors import (
    AdapterError,
    AmbiguousRunError,
    ConfigError,
    InvalidKeyError,
    InvalidValueError,
    LedgerError,
    NoActiveRunError,
    ParamConflictError,
    QueryError,
    RunNotFoundError,
    RunStateError,
    StoreError,
)
from ledger.run import (
    Run,
    active_run,
    end_run,
    flush,
    log,
    log_artifact,
    log_dataset,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    seed,
    set_tag,
    set_tags,
    start_run,
)

if TYPE_CHECKING:
    from ledger.analytics.costs import record_cost, report_costs
    from ledger.analytics.diff import diff
    from ledger.analytics.engine import connect, query
    from ledger.analytics.importance import importance
    from ledger.analytics.leaderboard import leaderboard
    from ledger.maintenance import archive, compact, purge, restore

__version__ = "0.1.0"

# Names served from heavier modules, imported only when first used.
_LAZY = {
    "connect": ("ledger.analytics.engine", "connect"),
    "query": ("ledger.analytics.engine", "query"),
    "report_costs": ("ledger.analytics.costs", "report_costs"),
    "record_cost": ("ledger.analytics.costs", "record_cost"),
    "compact": ("ledger.maintenance", "compact"),
    "archive": ("ledger.maintenance", "archive"),
    "restore": ("ledger.maintenance", "restore"),
    "purge": ("ledger.maintenance", "purge"),
    "leaderboard": ("ledger.analytics.leaderboard", "leaderboard"),
    "diff": ("ledger.analytics.diff", "diff"),
    "importance": ("ledger.analytics.importance", "importance"),
}

# Resource sampling and energy metering follow every run; the adapter is imported at the
# first run start (ledger/hooks.py), not here, so `import ledger` stays light.
_hooks.add_installer("ledger.adapters.resources:install")


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


__all__ = [
    "AdapterError",
    "AmbiguousRunError",
    "ConfigError",
    "InvalidKeyError",
    "InvalidValueError",
    "LedgerError",
    "NoActiveRunError",
    "ParamConflictError",
    "QueryError",
    "Run",
    "RunNotFoundError",
    "RunStateError",
    "StoreError",
    "active_run",
    "archive",
    "compact",
    "connect",
    "diff",
    "end_run",
    "flush",
    "importance",
    "leaderboard",
    "log",
    "log_artifact",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "purge",
    "query",
    "record_cost",
    "report_costs",
    "restore",
    "seed",
    "set_tag",
    "set_tags",
    "start_run",
]
