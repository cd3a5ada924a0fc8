"""MLflow's tracking API over the ledger: ``import ledger.mlflow as mlflow``.

Typical MLflow code runs unchanged and logs into the ledger store (``MLFLOW_TRACKING_URI``
or ``set_tracking_uri`` may name a store path). For libraries that ``import mlflow``
themselves, call :func:`install` first::

    import ledger.mlflow
    ledger.mlflow.install()      # sys.modules["mlflow"] is now this module
    import mlflow                # ... and so is every later `import mlflow`

The implementation lives in :mod:`ledger.adapters.mlflow_compat`; this door stays thin.
"""

from __future__ import annotations

import sys
from typing import Any

from ledger.adapters import mlflow_compat as _compat
from ledger.adapters.mlflow_compat import (
    ActiveRun,
    Experiment,
    FilterError,
    MlflowClient,
    MlflowException,
    Run,
    RunStatus,
    ViewType,
    active_run,
    autolog,
    create_experiment,
    data,
    delete_run,
    delete_tag,
    end_run,
    entities,
    exceptions,
    get_experiment,
    get_experiment_by_name,
    get_run,
    get_tracking_uri,
    is_tracking_uri_set,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    search_experiments,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    sklearn,
    start_run,
    tracking,
    utils,
)

__all__ = [
    "ActiveRun",
    "Experiment",
    "FilterError",
    "MlflowClient",
    "MlflowException",
    "Run",
    "RunStatus",
    "ViewType",
    "active_run",
    "autolog",
    "create_experiment",
    "data",
    "delete_run",
    "delete_tag",
    "end_run",
    "entities",
    "exceptions",
    "get_experiment",
    "get_experiment_by_name",
    "get_run",
    "get_tracking_uri",
    "install",
    "is_tracking_uri_set",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "sklearn",
    "start_run",
    "tracking",
    "uninstall",
    "utils",
]

__version__ = "3.0.0+ledger"


def install() -> Any:
    """Register this module as ``mlflow`` (and ``mlflow.sklearn``, ``mlflow.tracking``, ...)
    so code that does ``import mlflow`` logs into the ledger. Returns the previous module."""
    return _compat.install(sys.modules[__name__])


def uninstall() -> None:
    """Undo :func:`install`."""
    _compat.uninstall(sys.modules[__name__])
