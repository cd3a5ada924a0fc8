"""An MLflow-compatible tracking API that logs into the ledger.

``import ledger.mlflow as mlflow`` (the thin door over this module) lets typical MLflow
tracking code run unchanged: the fluent functions, ``MlflowClient``, ``search_runs``
with MLflow's filter grammar (translated to SQL over the ledger's views), the
environment variables, ``mlflow.data`` datasets and ``mlflow.sklearn``. ``install()``
registers the shim as ``mlflow`` in ``sys.modules`` for libraries that ``import mlflow``
themselves.

MLflow semantics kept on purpose: a metric logged without ``step`` gets step 0 (not the
ledger's auto-increment), timestamps are milliseconds, params are text, the active-run
stack is per thread and per process (a joblib worker or forked child starts from an
empty stack, as with MLflow), starting a second top-level run without ``nested=True``
raises, and runs get MLflow's system tags (``mlflow.user``, ``mlflow.source.name``,
``mlflow.source.type``, ``mlflow.runName``, ``mlflow.parentRunId``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pickle
import re
import sys
import tempfile
import threading
import types
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger import run as ledger_run
from ledger.capture import USER
from ledger.errors import LedgerError, RunNotFoundError
from ledger.ids import stable_id
from ledger.store import Store, open_store

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_PROJECT = "mlflow"
DEFAULT_EXPERIMENT_NAME = "Default"
DEFAULT_EXPERIMENT_ID = "0"

# MLflow's environment variables, honoured by the shim.
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_NAME_ENV = "MLFLOW_EXPERIMENT_NAME"
EXPERIMENT_ID_ENV = "MLFLOW_EXPERIMENT_ID"
RUN_ID_ENV = "MLFLOW_RUN_ID"


class MlflowException(LedgerError):
    """Raised where MLflow raises ``MlflowException`` (bad filter, unknown run, ...)."""


class FilterError(MlflowException):
    """A ``filter_string`` or ``order_by`` outside MLflow's search grammar."""


# -- entities (the attribute names MLflow code reads) ------------------------------------------


class ViewType:
    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


class RunStatus:
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str = ""
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Metric:
    key: str
    value: float
    timestamp: int
    step: int


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    user_id: str | None
    artifact_uri: str

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class DatasetInput:
    dataset: Any
    tags: list[Any] = field(default_factory=list)


@dataclass
class RunInputs:
    dataset_inputs: list[DatasetInput] = field(default_factory=list)


@dataclass
class Run:
    info: RunInfo
    data: RunData
    inputs: RunInputs = field(default_factory=RunInputs)


@dataclass
class FileInfo:
    path: str
    is_dir: bool
    file_size: int | None


@dataclass
class ModelInfo:
    artifact_path: str
    model_uri: str
    run_id: str
    flavors: dict[str, Any] = field(default_factory=dict)


class PagedList(list[Any]):
    """A list with MLflow's ``token`` attribute (always the last page here)."""

    token: str | None = None


class ActiveRun:
    """What ``start_run`` returns: a context manager with MLflow's ``info``/``data``."""

    def __init__(self, run: ledger_run.Run, experiment_id: str, tracking: _Tracking) -> None:
        self._run = run
        self._experiment_id = experiment_id
        self._tracking = tracking

    @property
    def info(self) -> RunInfo:
        status = "RUNNING" if self._run.status == "running" else self._run.status.upper()
        return RunInfo(
            run_id=self._run.id,
            experiment_id=self._experiment_id,
            run_name=self._run.name,
            status=status,
            start_time=None,
            end_time=None,
            lifecycle_stage="active",
            user_id=USER,
            artifact_uri=_artifact_uri(self._run.id),
        )

    @property
    def data(self) -> RunData:
        return get_client().get_run(self._run.id).data

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        _end(self, status)

    def __repr__(self) -> str:
        return f"<ActiveRun: run_id={self._run.id}, name={self._run.name}>"


def _artifact_uri(run_id: str) -> str:
    return f"runs:/{run_id}"


# -- tracking state (per process; the run stack per thread, as MLflow's) ------------------------


class _Tracking:
    def __init__(self) -> None:
        self.uri: str | None = None
        self.experiment: Experiment | None = None
        self.local = threading.local()
        self.known: dict[str, Experiment] = {}

    def stack(self) -> list[ActiveRun]:
        # As MLflow's ThreadLocalVariable: a forked child starts with an empty run stack
        # (the tracking URI and experiment are inherited).
        entry = getattr(self.local, "stack", None)
        if entry is None or entry[1] != os.getpid():
            entry = self.local.stack = ([], os.getpid())
        return entry[0]


_tracking = _Tracking()


def _project() -> str:
    return os.environ.get("LEDGER_PROJECT") or DEFAULT_PROJECT


_warned: set[str] = set()


def _store_root(uri: str | None) -> str | None:
    """A ledger store root for a tracking URI; None for the ledger's default store."""
    if not uri:
        return None
    if uri.startswith("file:"):
        return uri[len("file://") :] if uri.startswith("file://") else uri[len("file:") :]
    if uri.startswith("ledger://"):
        return uri[len("ledger://") :] or None
    if re.match(r"^(s3|gs|az|abfs|hdfs)://", uri):
        return uri
    if re.match(r"^[a-zA-Z][\w+.-]*:", uri) and not re.match(r"^[a-zA-Z]:[\\/]", uri):
        if uri in _warned:
            return None
        _warned.add(uri)
        warnings.warn(
            f"ledger.mlflow logs into a ledger store, not to {uri!r}; using the ledger store "
            "($LEDGER_STORE or ./.ledger). Pass a store path as tracking URI to choose one.",
            stacklevel=3,
        )
        return None
    return uri


def _store() -> Store:
    uri = _tracking.uri or os.environ.get(TRACKING_URI_ENV)
    return open_store(_store_root(uri))


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Log into the ledger store at ``uri`` (a path, ``file:`` URI or ``s3://...``)."""
    _tracking.uri = os.fspath(uri)
    _store_root(_tracking.uri)  # warns now for URIs the shim cannot log to
    _tracking.experiment = None
    _tracking.known.clear()


def get_tracking_uri() -> str:
    return _store().uri


def is_tracking_uri_set() -> bool:
    return bool(_tracking.uri or os.environ.get(TRACKING_URI_ENV))


# -- experiments ---------------------------------------------------------------------------------


def _computed_id(name: str) -> str:
    if name == DEFAULT_EXPERIMENT_NAME:
        return DEFAULT_EXPERIMENT_ID
    return str(int(stable_id("mlflow-experiment", name)[:15], 16))


def _stored_experiments() -> dict[str, Experiment]:
    """Experiments of the current project, with ids recorded by imports and the shim."""
    from ledger.analytics.engine import connect, fetch_frame

    con = connect(_store())
    try:
        frame = fetch_frame(
            con,
            "SELECT experiment, min(json_extract_string(attrs, '$.mlflow.experiment_id')) "
            "AS experiment_id FROM events_runs WHERE event = 'started' AND project = ? "
            "GROUP BY experiment",
            [_project()],
        )
    finally:
        con.close()
    found = {}
    for name, experiment_id in frame.iter_rows():
        if name is None:
            continue
        found[name] = Experiment(experiment_id or _computed_id(name), name, "")
    return found


def _experiments() -> dict[str, Experiment]:
    found = _stored_experiments()
    for name, experiment in _tracking.known.items():
        found.setdefault(name, experiment)
    return found


def _experiment_by_id(experiment_id: str) -> Experiment | None:
    experiment_id = str(experiment_id)
    for experiment in _experiments().values():
        if experiment.experiment_id == experiment_id:
            return experiment
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        return Experiment(DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME)
    return None


def _experiment_named(name: str, create: bool) -> Experiment | None:
    experiment = _tracking.known.get(name) or _experiments().get(name)
    if experiment is None and create:
        experiment = Experiment(_computed_id(name), name)
    if experiment is not None:
        _tracking.known[name] = experiment
    return experiment


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Make an experiment active (created on first use, as in MLflow).

    Raises:
        MlflowException: neither or both arguments given, or an unknown id.
    """
    if (experiment_name is None) == (experiment_id is None):
        raise MlflowException("Give exactly one of experiment_name or experiment_id")
    if experiment_id is not None:
        experiment = _experiment_by_id(experiment_id)
        if experiment is None:
            raise MlflowException(f"No experiment with id {experiment_id!r}")
    else:
        experiment = _experiment_named(str(experiment_name), create=True)
    assert experiment is not None
    _tracking.known[experiment.name] = experiment
    _tracking.experiment = experiment
    return experiment


def get_experiment_by_name(name: str) -> Experiment | None:
    return _experiment_named(name, create=False)


def get_experiment(experiment_id: str) -> Experiment:
    experiment = _experiment_by_id(experiment_id)
    if experiment is None:
        raise MlflowException(f"No experiment with id {experiment_id!r}")
    return experiment


def create_experiment(name: str, artifact_location: str | None = None, tags: Any = None) -> str:
    if _experiment_named(name, create=False) is not None:
        raise MlflowException(f"Experiment {name!r} already exists")
    experiment = _experiment_named(name, create=True)
    assert experiment is not None
    return experiment.experiment_id


def search_experiments(*args: Any, **kwargs: Any) -> list[Experiment]:
    return sorted(_experiments().values(), key=lambda e: e.name)


def _current_experiment() -> Experiment:
    if _tracking.experiment is not None:
        return _tracking.experiment
    if os.environ.get(EXPERIMENT_NAME_ENV):
        return set_experiment(os.environ[EXPERIMENT_NAME_ENV])
    if os.environ.get(EXPERIMENT_ID_ENV):
        return set_experiment(experiment_id=os.environ[EXPERIMENT_ID_ENV])
    return Experiment(DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME)


# -- runs ------------------------------------------------------------------------------------------


def _source_name() -> str:
    # As MLflow's default run context: the command's sys.argv[0] (a joblib worker keeps
    # its parent's), else the main module's file.
    if sys.argv and sys.argv[0]:
        return sys.argv[0]
    return getattr(sys.modules.get("__main__"), "__file__", None) or ""


def _system_tags(name: str, parent_id: str | None) -> dict[str, str]:
    tags = {
        "mlflow.user": USER or "",
        "mlflow.source.name": _source_name(),
        "mlflow.source.type": "LOCAL",
        "mlflow.runName": name,
    }
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    return tags


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start (or resume, with ``run_id`` / ``MLFLOW_RUN_ID``) a run, as ``mlflow.start_run``.

    Raises:
        MlflowException: a run is already active and ``nested`` is False.
    """
    stack = _tracking.stack()
    run_id = run_id or (os.environ.get(RUN_ID_ENV) if not stack else None)
    if stack and not nested and not parent_run_id:
        raise MlflowException(
            f"Run with UUID {stack[-1]._run.id} is already active. To start a new run, first "
            "end the current run with mlflow.end_run(). To start a nested run, call "
            "start_run with nested=True"
        )
    store = _store()
    if run_id:
        existing = ledger_run._open.get(run_id)
        if existing is not None and not existing._ended:
            run = existing
        else:
            run = ledger_run.continue_run(run_id, store=store, owner=True)
        experiment = _experiment_named(run.experiment, create=True)
        assert experiment is not None
    else:
        if experiment_id is not None:
            experiment = get_experiment(str(experiment_id))
        else:
            experiment = _current_experiment()
        parent = parent_run_id or (stack[-1]._run.id if stack and nested else None)
        name = run_name or ledger_run._default_name()
        attrs: dict[str, Any] = {"mlflow": {"experiment_id": experiment.experiment_id}}
        if description:
            attrs["description"] = description
        run = ledger_run.new_run(
            _project(), experiment.name, name, parent=parent or "", store=store, attrs=attrs
        )
        system = _system_tags(name, parent)
        if description:
            system["mlflow.note.content"] = description
        run.set_tags(system)
    if tags:
        run.set_tags({k: _text(v) for k, v in tags.items()})
    active = ActiveRun(run, experiment.experiment_id, _tracking)
    stack.append(active)
    return active


def _end(active: ActiveRun, status: str) -> None:
    stack = _tracking.stack()
    if active in stack:
        stack.remove(active)
    # MLflow's end_run is synchronous; waiting also keeps a joblib worker that is shut
    # down right after its task from losing the run's last events.
    active._run.end(_ledger_status(status), wait=True)


def _ledger_status(status: str) -> str:
    mapping = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
    if status.upper() not in mapping:
        raise MlflowException(f"Unknown run status {status!r}. Allowed: FINISHED, FAILED, KILLED")
    return mapping[status.upper()]


def end_run(status: str = "FINISHED") -> None:
    stack = _tracking.stack()
    if stack:
        _end(stack[-1], status)


def active_run() -> ActiveRun | None:
    stack = _tracking.stack()
    return stack[-1] if stack else None


def autolog(*args: Any, **kwargs: Any) -> None:
    """Accepted for compatibility; the shim does not patch libraries (log explicitly)."""


def last_active_run() -> Run | None:
    return None


def _target(run_id: str | None = None) -> ledger_run.Run:
    if run_id is not None:
        existing = ledger_run._open.get(run_id)
        if existing is None:
            raise MlflowException(
                f"Run {run_id} is not active in this process; use MlflowClient to log to it"
            )
        return existing
    active = active_run()
    if active is None:  # MLflow's fluent API starts a run on first use
        active = start_run()
    return active._run


def _text(value: Any) -> Any:
    """Params/tags as MLflow stores them: str(value), keeping simple types typed."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if type(value).__module__.split(".")[0] == "numpy" and hasattr(value, "item"):
        return value.item()
    return str(value)


def _seconds(timestamp_ms: int | None) -> float | None:
    return None if timestamp_ms is None else timestamp_ms / 1000.0


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    **_: Any,
) -> None:
    """Log a metric; ``step`` defaults to 0 and ``timestamp`` is Unix ms, as in MLflow."""
    if run_id is not None and run_id not in ledger_run._open:
        get_client().log_metric(run_id, key, value, timestamp, step)
        return
    _target(run_id).log_metric(key, value, step or 0, timestamp=_seconds(timestamp))


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    **_: Any,
) -> None:
    if run_id is not None and run_id not in ledger_run._open:
        with _borrow(run_id, _store()) as run:
            run.log_metrics(dict(metrics), step or 0, timestamp=_seconds(timestamp))
        return
    _target(run_id).log_metrics(dict(metrics), step or 0, timestamp=_seconds(timestamp))


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    _target().log_param(key, _text(value))
    return value


def log_params(params: Mapping[str, Any], synchronous: bool | None = None, **_: Any) -> None:
    _target().log_params({k: _text(v) for k, v in params.items()})


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    _target().set_tag(key, _text(value))


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    _target().set_tags({k: _text(v) for k, v in tags.items()})


def delete_tag(key: str) -> None:
    _target().delete_tag(key)


def log_artifact(
    local_path: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    _target(run_id).log_artifact(local_path, artifact_path)


def log_artifacts(
    local_dir: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    _target(run_id).log_artifacts(local_dir, artifact_path)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    _target(run_id).log_text(text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str, run_id: str | None = None) -> None:
    _target(run_id).log_dict(dictionary, artifact_file)


def log_figure(
    figure: Any, artifact_file: str, *, save_kwargs: dict[str, Any] | None = None, **_: Any
) -> None:
    run = _target()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, os.path.basename(artifact_file))
        figure.savefig(path, **(save_kwargs or {}))
        run.log_artifact(path, os.path.dirname(artifact_file) or None)


def log_input(
    dataset: Any, context: str | None = None, tags: Mapping[str, str] | None = None, **_: Any
) -> None:
    """Record a dataset input (an ``mlflow.data`` dataset from this shim or from MLflow)."""
    run = _target()
    item = _dataset_dict(dataset, context, tags)
    profile = json.loads(item["profile"]) if item["profile"] else {}
    schema = json.loads(item["schema"]) if item["schema"] else {}
    colspec = schema.get("mlflow_colspec") if isinstance(schema, dict) else None
    source = item["source"]
    with contextlib.suppress(TypeError, ValueError):
        parsed = json.loads(source)
        if isinstance(parsed, dict):
            source = parsed.get("uri") or parsed.get("url") or parsed.get("path") or source
    run._event(
        "datasets",
        name=item["name"],
        context=context,
        source=source,
        sha256=None,
        rows=profile.get("num_rows") if isinstance(profile, dict) else None,
        columns=len(colspec) if isinstance(colspec, list) else None,
        schema=json.dumps({"mlflow": item}, sort_keys=True),
    )


def _dataset_dict(dataset: Any, context: str | None, tags: Mapping[str, str] | None) -> dict:
    source = dataset.source
    source_json = source.to_json() if hasattr(source, "to_json") else json.dumps(source)
    source_type = source._get_source_type() if hasattr(source, "_get_source_type") else "unknown"
    schema = dataset.schema
    if schema is not None and not isinstance(schema, str):
        schema = json.dumps({"mlflow_colspec": schema.to_dict()})
    all_tags = dict(tags or {})
    if context:
        all_tags["mlflow.data.context"] = context
    profile = dataset.profile
    return {
        "name": dataset.name,
        "digest": dataset.digest,
        "source_type": source_type,
        "source": source_json,
        "schema": schema,
        "profile": json.dumps(profile) if profile is not None else None,
        "tags": dict(sorted(all_tags.items())),
    }


# -- the client ----------------------------------------------------------------------


@contextlib.contextmanager
def _borrow(run_id: str, store: Store) -> Iterator[ledger_run.Run]:
    """A handle to log to any run by id, without re-opening it (no lifecycle event)."""
    existing = ledger_run._open.get(run_id)
    if existing is not None and not existing._ended:
        yield existing
        return
    from ledger.writer import writer_for

    rows = store.run_started_rows([run_id])
    if not rows:
        raise RunNotFoundError(f"No run with id {run_id!r} in store {store.uri}")
    handle = ledger_run.Run(
        store=store,
        writer=writer_for(store),
        run_id=run_id,
        project=rows[0]["project"],
        experiment=rows[0]["experiment"] or "",
        name=rows[0]["name"] or run_id[:8],
        parent_id=rows[0]["parent_run_id"],
        owner=False,
    )
    try:
        yield handle
    finally:
        handle.detach()


class MlflowClient:
    """The parts of ``mlflow.MlflowClient`` that tracking code uses, over the ledger."""

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        self._uri = tracking_uri

    @property
    def store(self) -> Store:
        if self._uri is not None:
            return open_store(_store_root(self._uri))
        return _store()

    # experiments
    def get_experiment_by_name(self, name: str) -> Experiment | None:
        with self._scope():
            return get_experiment_by_name(name)

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self._scope():
            return get_experiment(experiment_id)

    def create_experiment(self, name: str, artifact_location: str | None = None, tags=None) -> str:
        with self._scope():
            return create_experiment(name)

    def search_experiments(self, *args: Any, **kwargs: Any) -> list[Experiment]:
        with self._scope():
            return search_experiments()

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        if self._uri is None:
            yield
            return
        saved = _tracking.uri
        _tracking.uri = self._uri
        try:
            yield
        finally:
            _tracking.uri = saved

    # runs
    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        with self._scope():
            experiment = get_experiment(experiment_id)
            name = run_name or (tags or {}).get("mlflow.runName") or ledger_run._default_name()
            parent = (tags or {}).get("mlflow.parentRunId")
            run = ledger_run.new_run(
                _project(),
                experiment.name,
                name,
                parent=parent or "",
                store=self.store,
                attrs={"mlflow": {"experiment_id": experiment.experiment_id}},
            )
            ledger_run._forget(run)  # a client-created run is not the fluent active run
            ledger_run._open[run.id] = run
            run.set_tags({**_system_tags(name, parent), **dict(tags or {})})
        return self.get_run(run.id)

    def get_run(self, run_id: str) -> Run:
        runs = _runs(self.store, search_run_ids(self.store, run_ids=[run_id], view=ViewType.ALL))
        if not runs:
            raise MlflowException(f"Run '{run_id}' not found")
        return runs[0]

    def search_runs(
        self,
        experiment_ids: list[str] | str,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        with self._scope():
            names = _experiment_names(experiment_ids)
        found = search_run_ids(
            self.store,
            experiments=names,
            filter_string=filter_string,
            view=run_view_type,
            max_results=max_results,
            order_by=order_by,
        )
        return PagedList(_runs(self.store, found))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        from ledger.analytics.engine import connect, fetch_frame

        con = connect(self.store)
        try:
            frame = fetch_frame(
                con,
                "SELECT key, value, epoch_ms(ts) AS ts, step FROM metrics WHERE run_id = ? "
                "AND key = ? ORDER BY ts, step, seq",
                [run_id, key],
            )
        finally:
            con.close()
        return [Metric(k, v, t, s) for k, v, t, s in frame.iter_rows()]

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        **_: Any,
    ) -> None:
        with _borrow(run_id, self.store) as run:
            run.log_metric(key, value, step or 0, timestamp=_seconds(timestamp))

    def log_param(self, run_id: str, key: str, value: Any, **_: Any) -> Any:
        with _borrow(run_id, self.store) as run:
            run.log_param(key, _text(value))
        return value

    def set_tag(self, run_id: str, key: str, value: Any, **_: Any) -> None:
        with _borrow(run_id, self.store) as run:
            run.set_tag(key, _text(value))

    def delete_tag(self, run_id: str, key: str) -> None:
        with _borrow(run_id, self.store) as run:
            run.delete_tag(key)

    def log_batch(
        self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **_: Any
    ) -> None:
        with _borrow(run_id, self.store) as run:
            for metric in metrics:
                run.log_metric(
                    metric.key,
                    metric.value,
                    metric.step or 0,
                    timestamp=_seconds(metric.timestamp),
                )
            run.log_params({p.key: p.value for p in params})
            run.set_tags({t.key: t.value for t in tags})

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        with _borrow(run_id, self.store) as run:
            run.log_artifact(local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        with _borrow(run_id, self.store) as run:
            run.log_artifacts(local_dir, artifact_path)

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time=None) -> None:
        existing = ledger_run._open.get(run_id)
        if existing is not None:
            for stack_run in list(_tracking.stack()):
                if stack_run._run is existing:
                    _tracking.stack().remove(stack_run)
            existing.end(_ledger_status(status))
            return
        with _borrow(run_id, self.store) as run:
            run._event("runs", event=_ledger_status(status))

    def delete_run(self, run_id: str) -> None:
        with _borrow(run_id, self.store) as run:
            run._event("runs", event="deleted")

    def restore_run(self, run_id: str) -> None:
        with _borrow(run_id, self.store) as run:
            run._event("runs", event="restored")

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        prefix = (path or "").strip("/")
        files = _artifact_rows(self.store, run_id)
        seen: dict[str, FileInfo] = {}
        for artifact_path, size, _ in files:
            if prefix and not artifact_path.startswith(prefix + "/"):
                continue
            rest = artifact_path[len(prefix) + 1 :] if prefix else artifact_path
            head = rest.split("/", 1)[0]
            full = f"{prefix}/{head}" if prefix else head
            is_dir = "/" in rest
            seen[full] = FileInfo(full, is_dir, None if is_dir else size)
        return [seen[k] for k in sorted(seen)]

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        return _download(self.store, run_id, path, dst_path)


def _artifact_rows(store: Store, run_id: str) -> list[tuple[str, int, str]]:
    from ledger.analytics.engine import connect, fetch_frame

    con = connect(store)
    try:
        frame = fetch_frame(
            con,
            "SELECT path, size, uri FROM artifacts WHERE run_id = ? ORDER BY path",
            [run_id],
        )
    finally:
        con.close()
    return list(frame.iter_rows())


def _download(store: Store, run_id: str, path: str, dst_path: str | None) -> str:
    import shutil

    path = path.strip("/")
    target_root = dst_path or tempfile.mkdtemp(prefix="ledger-artifacts-")
    rows = [r for r in _artifact_rows(store, run_id) if r[0] == path or r[0].startswith(path + "/")]
    if not rows:
        raise MlflowException(f"No artifact {path!r} in run {run_id}")
    for artifact_path, _, uri in rows:
        local = os.path.join(target_root, *artifact_path.split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        if uri.startswith("artifacts/"):
            with (
                store.fs.open_input_stream(store.artifact_path(uri)) as src,
                open(local, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
        else:
            source = uri[len("file://") :] if uri.startswith("file://") else uri
            shutil.copyfile(source, local)
    return os.path.join(target_root, *path.split("/"))


_client: MlflowClient | None = None


def get_client() -> MlflowClient:
    return MlflowClient()


def get_run(run_id: str) -> Run:
    return get_client().get_run(run_id)


def delete_run(run_id: str) -> None:
    get_client().delete_run(run_id)


def _experiment_names(experiment_ids: list[str] | None) -> list[str] | None:
    if experiment_ids is None:
        return None
    names = []
    for experiment_id in experiment_ids:
        experiment = _experiment_by_id(str(experiment_id))
        if experiment is not None:
            names.append(experiment.name)
    return names


# -- search: MLflow's filter grammar as SQL over the views --------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ident>(?P<entity>[A-Za-z_]+)\.(?P<key>`[^`]*`|"[^"]*"|[\w./:\-]+))
    | (?P<bare>[A-Za-z_][\w]*)
    | (?P<op>!=|>=|<=|=|>|<)
    | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
    | (?P<number>[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<comma>,)
    )""",
    re.VERBOSE,
)
_ENTITIES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
    "dataset": "datasets",
    "datasets": "datasets",
}
_ATTRIBUTES = {
    "run_id": "run_id",
    "run_name": "run_name",
    "status": "status",
    "start_time": "start_time",
    "end_time": "end_time",
    "user_id": "user_id",
    "experiment_id": "experiment_id",
    "lifecycle_stage": "lifecycle_stage",
    "artifact_uri": "artifact_uri",
    "created": "start_time",
    "Created": "start_time",
}
_NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
_STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "IN", "NOT IN"}
_NUMERIC_OPS = {"=", "!=", ">", ">=", "<", "<="}

_BASE_SQL = """
WITH life AS (
    SELECT run_id, arg_max(event, ts) AS last_life
    FROM events_runs WHERE event IN ('deleted', 'restored') GROUP BY run_id
), ids AS (
    SELECT run_id, json_extract_string(attrs, '$.mlflow.experiment_id') AS experiment_id,
           json_extract_string(attrs, '$.mlflow.artifact_uri') AS mlflow_artifact_uri
    FROM events_runs WHERE event = 'started'
), base AS (
    SELECT r.run_id, r.project, r.experiment, ids.experiment_id, r.name AS run_name,
        CASE r.status WHEN 'finished' THEN 'FINISHED' WHEN 'failed' THEN 'FAILED'
            WHEN 'killed' THEN 'KILLED' ELSE 'RUNNING' END AS status,
        epoch_ms(r.start_time) AS start_time, epoch_ms(r.end_time) AS end_time,
        r."user" AS user_id,
        CASE WHEN life.last_life = 'deleted' THEN 'deleted' ELSE 'active' END
            AS lifecycle_stage,
        coalesce(ids.mlflow_artifact_uri, 'runs:/' || r.run_id) AS artifact_uri
    FROM runs r LEFT JOIN life USING (run_id) LEFT JOIN ids USING (run_id)
)
"""


def _unquote_key(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        return key[1:-1]
    return key


def _literal(kind: str, text: str) -> Any:
    if kind == "string":
        quote = text[0]
        return text[1:-1].replace(quote * 2, quote)
    return float(text) if any(c in text for c in ".eE") else int(text)


def _tokens(text: str) -> list[tuple[str, str, Any]]:
    tokens: list[tuple[str, str, Any]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(
                f"Invalid filter {text!r}: cannot parse at {text[position : position + 20]!r}. "
                "Expected e.g. \"metrics.acc > 0.9 and params.model = 'rf'\""
            )
        position = match.end()
        kind = match.lastgroup
        if kind in ("entity", "key"):
            kind = "ident"
        if kind == "ident":
            entity = match.group("entity")
            key = _unquote_key(match.group("key"))
            tokens.append(("ident", entity, key))
        else:
            assert kind is not None
            tokens.append((kind, match.group(kind), None))
    return tokens


def parse_filter(filter_string: str | None) -> list[tuple[str, str, str, Any]]:
    """MLflow's search grammar → ``[(entity, key, operator, value), ...]`` joined by AND.

    Raises:
        FilterError: anything outside the grammar (OR, unknown entity, bad comparator).
    """
    if not filter_string or not filter_string.strip():
        return []
    tokens = _tokens(filter_string)
    clauses = []
    i = 0

    def expect_value() -> Any:
        nonlocal i
        if i >= len(tokens):
            raise FilterError(f"Invalid filter {filter_string!r}: a value is missing at the end")
        kind, text, _ = tokens[i]
        if kind in ("string", "number"):
            i += 1
            return _literal(kind, text)
        if kind == "lparen":
            i += 1
            values = []
            while i < len(tokens) and tokens[i][0] != "rparen":
                if tokens[i][0] == "comma":
                    i += 1
                    continue
                if tokens[i][0] not in ("string", "number"):
                    raise FilterError(f"Invalid filter {filter_string!r}: bad value in list")
                values.append(_literal(tokens[i][0], tokens[i][1]))
                i += 1
            if i >= len(tokens):
                raise FilterError(f"Invalid filter {filter_string!r}: missing ')'")
            i += 1
            return tuple(values)
        if kind == "bare" and text.upper() == "NULL":
            i += 1
            return None
        raise FilterError(f"Invalid filter {filter_string!r}: expected a value, got {text!r}")

    while i < len(tokens):
        kind, entity_text, key = tokens[i]
        if kind == "bare" and entity_text in _ATTRIBUTES:
            entity, key = "attributes", entity_text
        elif kind != "ident":
            raise FilterError(
                f"Invalid filter {filter_string!r}: expected metrics.<key>, params.<key>, "
                f"tags.<key> or attributes.<name>, got {entity_text!r}"
            )
        else:
            entity = _ENTITIES.get(entity_text.lower(), "")
            if not entity:
                raise FilterError(
                    f"Invalid entity {entity_text!r} in filter {filter_string!r}. Allowed: "
                    "metrics, params, tags, attributes, datasets"
                )
        i += 1
        if i >= len(tokens):
            raise FilterError(f"Invalid filter {filter_string!r}: comparator missing")
        op_kind, op_text, _ = tokens[i]
        i += 1
        if op_kind == "op":
            operator = op_text
        elif op_kind == "bare":
            word = op_text.upper()
            if word == "NOT" and i < len(tokens) and tokens[i][0] == "bare":
                word = f"NOT {tokens[i][1].upper()}"
                i += 1
            elif word == "IS":
                word = "IS"
                if i < len(tokens) and tokens[i][0] == "bare" and tokens[i][1].upper() == "NOT":
                    word = "IS NOT"
                    i += 1
            operator = word
            if operator not in _STRING_OPS | {"IS", "IS NOT"}:
                raise FilterError(f"Invalid comparator {op_text!r} in filter {filter_string!r}")
        else:
            raise FilterError(f"Invalid filter {filter_string!r}: comparator missing")
        value = expect_value()
        clauses.append((entity, key, operator, value))
        if i < len(tokens):
            kind, text, _ = tokens[i]
            if kind == "bare" and text.upper() == "AND":
                i += 1
                if i >= len(tokens):
                    raise FilterError(f"Invalid filter {filter_string!r}: nothing after AND")
                continue
            if kind == "bare" and text.upper() == "OR":
                raise FilterError(
                    f"Invalid filter {filter_string!r}: MLflow's search grammar has no OR; "
                    "run two searches or use `ledger query` with SQL"
                )
            raise FilterError(f"Invalid filter {filter_string!r}: expected AND, got {text!r}")
    return clauses


def _condition(entity: str, key: str, operator: str, value: Any, params: list[Any]) -> str:
    def compare(column: str, numeric: bool) -> str:
        if operator in ("IS", "IS NOT"):
            if value is not None:
                raise FilterError(f"{operator} needs NULL, got {value!r}")
            return f"{column} {operator} NULL"
        if operator in ("IN", "NOT IN"):
            values = value if isinstance(value, tuple) else (value,)
            if not values:
                raise FilterError(f"{operator} needs a non-empty list")
            params.extend(values)
            return f"{column} {operator} ({', '.join('?' for _ in values)})"
        allowed = _NUMERIC_OPS if numeric else _STRING_OPS
        if operator not in allowed:
            raise FilterError(
                f"Comparator {operator!r} is not allowed for {entity}.{key}. "
                f"Allowed: {', '.join(sorted(allowed))}"
            )
        if numeric and not isinstance(value, (int, float)):
            raise FilterError(f"{entity}.{key} needs a number, got {value!r}")
        if not numeric and not isinstance(value, str):
            raise FilterError(f"{entity}.{key} needs a quoted string, got {value!r}")
        params.append(value)
        return f"{column} {operator} ?"

    if entity == "metrics":
        params.append(key)
        return (
            "b.run_id IN (SELECT run_id FROM latest_metrics WHERE key = ? AND "
            f"{compare('value', True)})"
        )
    if entity in ("params", "tags"):
        params.append(key)
        if operator in ("IS", "IS NOT"):
            test = "NOT IN" if operator == "IS" else "IN"
            return f"b.run_id {test} (SELECT run_id FROM {entity} WHERE key = ?)"
        return (
            f"b.run_id IN (SELECT run_id FROM {entity} WHERE key = ? AND {compare('value', False)})"
        )
    if entity == "datasets":
        column = {"name": "name", "digest": "digest", "context": "context"}.get(key)
        if column is None:
            raise FilterError(f"Unknown dataset field {key!r}. Allowed: name, digest, context")
        expression = (
            f"json_extract_string(schema, '$.mlflow.{column}')" if column == "digest" else column
        )
        return f"b.run_id IN (SELECT run_id FROM datasets WHERE {compare(expression, False)})"
    column = _ATTRIBUTES.get(key)
    if column is None:
        raise FilterError(
            f"Unknown attribute {key!r}. Allowed: {', '.join(sorted(set(_ATTRIBUTES.values())))}"
        )
    if column == "status" and isinstance(value, str):
        value = value.upper()
    elif column == "status" and isinstance(value, tuple):
        value = tuple(str(v).upper() for v in value)
    return compare(f"b.{column}", column in _NUMERIC_ATTRIBUTES)


def _order_clause(order_by: list[str] | None, params: list[Any]) -> tuple[str, str]:
    joins, orders = [], []
    for index, item in enumerate(order_by or []):
        words = item.strip().split()
        direction = "ASC"
        if len(words) > 1 and words[-1].upper() in ("ASC", "DESC"):
            direction = words[-1].upper()
            words = words[:-1]
        spec = " ".join(words)
        tokens = _tokens(spec)
        if len(tokens) != 1 or tokens[0][0] not in ("ident", "bare"):
            raise FilterError(
                f"Invalid order_by {item!r}: expected e.g. 'metrics.acc DESC' or 'start_time'"
            )
        kind, entity_text, key = tokens[0]
        if kind == "bare":
            entity, key = "attributes", entity_text
        else:
            entity = _ENTITIES.get(entity_text.lower(), "")
        alias = f"o{index}"
        if entity == "metrics":
            joins.append(
                f"LEFT JOIN (SELECT run_id, value FROM latest_metrics WHERE key = ?) {alias} "
                "USING (run_id)"
            )
            params.append(key)
            orders.append(f"{alias}.value {direction} NULLS LAST")
        elif entity in ("params", "tags"):
            joins.append(
                f"LEFT JOIN (SELECT run_id, value FROM {entity} WHERE key = ?) {alias} "
                "USING (run_id)"
            )
            params.append(key)
            orders.append(f"{alias}.value {direction} NULLS LAST")
        elif entity == "attributes" and key in _ATTRIBUTES:
            orders.append(f"b.{_ATTRIBUTES[key]} {direction} NULLS LAST")
        else:
            raise FilterError(f"Invalid order_by {item!r}: unknown field")
    orders.extend(["b.start_time DESC", "b.run_id"])
    return " ".join(joins), ", ".join(orders)


def search_run_ids(
    store: Store,
    *,
    experiments: list[str] | None = None,
    run_ids: list[str] | None = None,
    filter_string: str = "",
    view: int = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    project: str | None = None,
) -> tuple[Any, list[str]]:
    """Run ids matching an MLflow search, in order; also returns the base rows frame."""
    from ledger.analytics.engine import connect, fetch_frame

    where_params: list[Any] = []
    conditions = []
    if run_ids is None:
        conditions.append("b.project = ?")
        where_params.append(project or _project())
    if experiments is not None:
        if not experiments:
            return None, []
        conditions.append(f"b.experiment IN ({', '.join('?' for _ in experiments)})")
        where_params.extend(experiments)
    if run_ids is not None:
        conditions.append(f"b.run_id IN ({', '.join('?' for _ in run_ids)})")
        where_params.extend(run_ids)
    if view == ViewType.ACTIVE_ONLY:
        conditions.append("b.lifecycle_stage = 'active'")
    elif view == ViewType.DELETED_ONLY:
        conditions.append("b.lifecycle_stage = 'deleted'")
    for clause in parse_filter(filter_string):
        conditions.append(_condition(*clause, where_params))
    order_params: list[Any] = []
    joins, orders = _order_clause(order_by, order_params)
    limit = f"LIMIT {int(max_results)}" if max_results is not None else ""
    sql = (
        f"{_BASE_SQL} SELECT b.* FROM base b {joins} WHERE {' AND '.join(conditions) or 'true'} "
        f"ORDER BY {orders} {limit}"
    )
    # MLflow's view types decide on deleted runs here, so the `runs` view must show them.
    con = connect(store, include_deleted=True)
    try:
        frame = fetch_frame(con, sql, order_params + where_params)
    finally:
        con.close()
    return frame, frame.get_column("run_id").to_list()


def _runs(store: Store, found: tuple[Any, list[str]]) -> list[Run]:
    """MLflow ``Run`` objects for what :func:`search_run_ids` ``found``, in its order."""
    from ledger.analytics.engine import connect, fetch_frame

    frame, ids = found
    if not ids:
        return []
    values: dict[str, dict[str, dict[str, Any]]] = {
        "metrics": {i: {} for i in ids},
        "params": {i: {} for i in ids},
        "tags": {i: {} for i in ids},
    }
    con = connect(store)
    try:
        for kind, view_name in (
            ("metrics", "latest_metrics"),
            ("params", "params"),
            ("tags", "tags"),
        ):
            part = fetch_frame(
                con,
                f"SELECT run_id, key, value FROM {view_name} WHERE run_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [ids],
            )
            for run_id, key, value in part.iter_rows():
                values[kind][run_id][key] = value
        inputs_frame = fetch_frame(
            con,
            "SELECT run_id, schema FROM datasets WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
            [ids],
        )
    finally:
        con.close()
    inputs: dict[str, list[DatasetInput]] = {i: [] for i in ids}
    for run_id, schema in inputs_frame.iter_rows():
        with contextlib.suppress(TypeError, ValueError, KeyError):
            item = json.loads(schema)["mlflow"]
            dataset = types.SimpleNamespace(
                name=item["name"],
                digest=item["digest"],
                source_type=item["source_type"],
                source=item["source"],
                schema=item["schema"],
                profile=item["profile"],
            )
            tags = [types.SimpleNamespace(key=k, value=v) for k, v in item["tags"].items()]
            inputs[run_id].append(DatasetInput(dataset, tags))
    runs = []
    for row in frame.iter_rows(named=True):
        run_id = row["run_id"]
        experiment_id = row["experiment_id"] or _computed_id(row["experiment"] or "")
        info = RunInfo(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=row["run_name"],
            status=row["status"],
            start_time=row["start_time"],
            end_time=row["end_time"],
            lifecycle_stage=row["lifecycle_stage"],
            user_id=row["user_id"],
            artifact_uri=row["artifact_uri"],
        )
        data = RunData(values["metrics"][run_id], values["params"][run_id], values["tags"][run_id])
        runs.append(Run(info, data, RunInputs(inputs[run_id])))
    return runs


def search_runs(
    experiment_ids: list[str] | None = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int = 100000,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
) -> pd.DataFrame | list[Run]:
    """``mlflow.search_runs``: a pandas DataFrame (or a list of runs) over the ledger.

    Raises:
        FilterError: ``filter_string`` or ``order_by`` outside MLflow's grammar.
    """
    if experiment_names:
        names: list[str] | None = list(experiment_names)
    elif experiment_ids:
        names = _experiment_names(
            [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        )
    elif search_all_experiments:
        names = None
    else:
        names = [_current_experiment().name]
    store = _store()
    found = search_run_ids(
        store,
        experiments=names,
        filter_string=filter_string,
        view=run_view_type,
        max_results=max_results,
        order_by=order_by,
    )
    runs = _runs(store, found)
    if output_format == "list":
        return runs
    if output_format != "pandas":
        raise MlflowException(f"Unknown output_format {output_format!r}. Allowed: pandas, list")
    return runs_frame(runs)


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """Runs as MLflow's ``search_runs`` DataFrame (info columns, metrics.*, params.*, tags.*)."""
    import pandas as pd

    info_columns = [
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
    ]
    metric_keys = sorted({k for r in runs for k in r.data.metrics})
    param_keys = sorted({k for r in runs for k in r.data.params})
    tag_keys = sorted({k for r in runs for k in r.data.tags})
    records = []
    for run in runs:
        record: dict[str, Any] = {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "artifact_uri": run.info.artifact_uri,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
        }
        for key in metric_keys:
            record[f"metrics.{key}"] = run.data.metrics.get(key)
        for key in param_keys:
            record[f"params.{key}"] = run.data.params.get(key)
        for key in tag_keys:
            record[f"tags.{key}"] = run.data.tags.get(key)
        records.append(record)
    columns = (
        info_columns
        + [f"metrics.{k}" for k in metric_keys]
        + [f"params.{k}" for k in param_keys]
        + [f"tags.{k}" for k in tag_keys]
    )
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    for key in metric_keys:
        frame[f"metrics.{key}"] = frame[f"metrics.{key}"].astype("float64")
    return frame


# -- mlflow.data ---------------------------------------------------------------------------------


class _Source:
    def __init__(self, source_type: str, payload: dict[str, Any]) -> None:
        self._type = source_type
        self._payload = payload

    def _get_source_type(self) -> str:
        return self._type

    def to_json(self) -> str:
        return json.dumps(self._payload)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._payload)


def _resolve_source(source: Any) -> _Source:
    if source is None:
        return _Source(
            "code",
            {
                "tags": {
                    "mlflow.user": USER or "",
                    "mlflow.source.name": _source_name(),
                    "mlflow.source.type": "LOCAL",
                }
            },
        )
    if hasattr(source, "to_json"):
        return source
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    if re.match(r"^https?://", text):
        return _Source("http", {"url": text})
    if re.match(r"^[a-z][\w+.-]*://", text) and not text.startswith("file://"):
        return _Source(text.split(":", 1)[0], {"uri": text})
    return _Source("local", {"uri": text})


def _colspec_type(dtype: Any) -> str:
    kind = getattr(dtype, "kind", "O")
    return {"b": "boolean", "i": "long", "u": "long", "f": "double", "M": "datetime"}.get(
        kind, "string"
    )


class _ColSpec:
    def __init__(self, columns: list[dict[str, Any]]) -> None:
        self.columns = columns

    def to_dict(self) -> list[dict[str, Any]]:
        return self.columns


@dataclass
class Dataset:
    """``mlflow.data`` datasets: name, digest, source, schema and profile."""

    name: str
    digest: str
    source: Any
    schema: Any
    profile: dict[str, Any] | None
    df: Any = None
    targets: str | None = None


def from_pandas(
    df: pd.DataFrame,
    source: Any = None,
    targets: str | None = None,
    name: str | None = None,
    digest: str | None = None,
    predictions: str | None = None,
) -> Dataset:
    """As ``mlflow.data.from_pandas`` (same 8-hex digest as MLflow computes)."""
    import hashlib

    import numpy as np
    import pandas as pd

    if digest is None:
        trimmed = df.head(10000)
        string_columns = trimmed.columns[(df.map(type) == str).all(axis=0)]  # noqa: E721
        numeric_columns = trimmed.select_dtypes(include=[np.number]).columns
        trimmed = trimmed[string_columns.union(numeric_columns)]
        md5 = hashlib.md5(usedforsecurity=False)
        for element in [pd.util.hash_pandas_object(trimmed).values, np.int64(len(df))] + [
            str(x).encode() for x in df.columns
        ]:
            md5.update(element)
        digest = md5.hexdigest()[:8]
    columns = [
        {"type": _colspec_type(dtype), "name": str(column), "required": True}
        for column, dtype in df.dtypes.items()
    ]
    return Dataset(
        name=name or "dataset",
        digest=digest,
        source=_resolve_source(source),
        schema=_ColSpec(columns),
        profile={"num_rows": len(df), "num_elements": int(df.size)},
        df=df,
        targets=targets,
    )


def from_numpy(
    features: Any,
    source: Any = None,
    targets: Any = None,
    name: str | None = None,
    digest: str | None = None,
) -> Dataset:
    """As ``mlflow.data.from_numpy`` (profile and shape; digest over the arrays)."""
    import hashlib

    import numpy as np

    if digest is None:
        md5 = hashlib.md5(usedforsecurity=False)
        for item in (features, targets):
            if item is None:
                continue
            array = np.asarray(item)
            md5.update(np.ascontiguousarray(array.flatten()[:10000]).tobytes())
            for size in array.shape:
                md5.update(np.int64(size).tobytes())
        digest = md5.hexdigest()[:8]
    features = np.asarray(features)
    profile: dict[str, Any] = {
        "features_shape": list(features.shape),
        "features_size": int(features.size),
    }
    if targets is not None:
        profile["targets_shape"] = list(np.asarray(targets).shape)
    return Dataset(
        name=name or "dataset",
        digest=digest,
        source=_resolve_source(source),
        schema=None,
        profile=profile,
        df=features,
    )


# -- mlflow.sklearn --------------------------------------------------------------------------------

_MLMODEL = """artifact_path: {name}
flavors:
  python_function:
    env:
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: {python}
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: pickle
    sklearn_version: {sklearn}
mlflow_version: ledger
model_uuid: {uuid}
run_id: {run_id}
utc_time_created: '{created}'
"""


def sklearn_log_model(
    sk_model: Any,
    name: str | None = None,
    *,
    artifact_path: str | None = None,
    registered_model_name: str | None = None,
    input_example: Any = None,
    signature: Any = None,
    **_: Any,
) -> ModelInfo:
    """``mlflow.sklearn.log_model``: a pickled model (plus an ``MLmodel`` file) as artifacts."""
    import platform
    import uuid

    run = _target()
    path = (name or artifact_path or "model").strip("/")
    try:
        import sklearn

        sklearn_version = sklearn.__version__
    except ImportError:  # pragma: no cover - a model implies sklearn
        sklearn_version = "unknown"
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "model.pkl"), "wb") as handle:
            pickle.dump(sk_model, handle, protocol=pickle.DEFAULT_PROTOCOL)
        with open(os.path.join(folder, "MLmodel"), "w", encoding="utf-8") as handle:
            handle.write(
                _MLMODEL.format(
                    name=path,
                    python=platform.python_version(),
                    sklearn=sklearn_version,
                    uuid=uuid.uuid4().hex,
                    run_id=run.id,
                    created=dt.datetime.now(dt.timezone.utc).isoformat(),
                )
            )
        run.log_artifacts(folder, path)
    return ModelInfo(
        artifact_path=path,
        model_uri=f"runs:/{run.id}/{path}",
        run_id=run.id,
        flavors={"sklearn": {"pickled_model": "model.pkl"}},
    )


def sklearn_load_model(model_uri: str, dst_path: str | None = None) -> Any:
    """``mlflow.sklearn.load_model`` for ``runs:/<run_id>/<path>`` or a local model folder.

    Raises:
        MlflowException: the URI names no model logged through this shim or the importer.
    """
    match = re.match(r"^runs:/([^/]+)/(.+)$", model_uri)
    if match is None:
        folder = model_uri[len("file://") :] if model_uri.startswith("file://") else model_uri
        if not os.path.isdir(folder):
            raise MlflowException(
                f"Cannot load {model_uri!r}: use runs:/<run_id>/<path> or a model folder"
            )
    else:
        folder = _download(_store(), match.group(1), match.group(2).strip("/"), dst_path)
    for candidate in ("model.pkl", "model.skops"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            break
    else:
        raise MlflowException(f"No model.pkl or model.skops under {model_uri!r}")
    if path.endswith(".skops"):
        import skops.io

        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    with open(path, "rb") as handle:
        return pickle.load(handle)


sklearn = types.ModuleType("ledger.mlflow.sklearn", "MLflow's sklearn flavour, over the ledger.")
sklearn.log_model = sklearn_log_model  # type: ignore[attr-defined]
sklearn.load_model = sklearn_load_model  # type: ignore[attr-defined]
sklearn.autolog = lambda *a, **k: None  # type: ignore[attr-defined]

data = types.ModuleType("ledger.mlflow.data", "MLflow's dataset constructors, over the ledger.")
data.from_pandas = from_pandas  # type: ignore[attr-defined]
data.from_numpy = from_numpy  # type: ignore[attr-defined]
data.Dataset = Dataset  # type: ignore[attr-defined]

entities = types.ModuleType("ledger.mlflow.entities", "MLflow's entity classes.")
for _name, _value in {
    "Run": Run,
    "RunInfo": RunInfo,
    "RunData": RunData,
    "RunInputs": RunInputs,
    "Experiment": Experiment,
    "Metric": Metric,
    "ViewType": ViewType,
    "RunStatus": RunStatus,
    "FileInfo": FileInfo,
}.items():
    setattr(entities, _name, _value)

exceptions = types.ModuleType("ledger.mlflow.exceptions", "MLflow's exception class.")
exceptions.MlflowException = MlflowException  # type: ignore[attr-defined]

tracking = types.ModuleType("ledger.mlflow.tracking", "MLflow's tracking client.")
tracking.MlflowClient = MlflowClient  # type: ignore[attr-defined]

validation = types.ModuleType("ledger.mlflow.utils.validation", "MLflow's size limits.")
validation.MAX_PARAM_VAL_LENGTH = 6000  # type: ignore[attr-defined]
validation.MAX_TAG_VAL_LENGTH = 8000  # type: ignore[attr-defined]
validation.MAX_ENTITY_KEY_LENGTH = 250  # type: ignore[attr-defined]
utils = types.ModuleType("ledger.mlflow.utils", "MLflow utilities that libraries read.")
utils.validation = validation  # type: ignore[attr-defined]

SUBMODULES = {
    "utils": utils,
    "utils.validation": validation,
    "sklearn": sklearn,
    "data": data,
    "entities": entities,
    "exceptions": exceptions,
    "tracking": tracking,
    "client": tracking,
}


def install(module: types.ModuleType) -> types.ModuleType | None:
    """Register ``module`` (the ``ledger.mlflow`` door) as ``mlflow`` in ``sys.modules``.

    Returns the module that was registered as ``mlflow`` before (for :func:`uninstall`).
    """
    previous = sys.modules.get("mlflow")
    saved = {
        name: mod
        for name, mod in sys.modules.items()
        if name == "mlflow" or name.startswith("mlflow.")
    }
    module.__dict__.setdefault("_saved_modules", saved)
    for name in saved:
        del sys.modules[name]
    sys.modules["mlflow"] = module
    for name, submodule in SUBMODULES.items():
        sys.modules[f"mlflow.{name}"] = submodule
    return previous


def uninstall(module: types.ModuleType) -> None:
    """Undo :func:`install`: ``import mlflow`` reaches the real MLflow (if installed) again."""
    for name in [n for n in sys.modules if n == "mlflow" or n.startswith("mlflow.")]:
        del sys.modules[name]
    sys.modules.update(module.__dict__.pop("_saved_modules", {}))
