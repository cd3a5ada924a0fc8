"""The run API: ``start_run``, :class:`Run` and the module-level fluent functions.

Reading order for "how does a metric reach disk": ``run.py`` (validate, append a tuple)
-> ``writer.py`` (background flush to Parquet) -> ``store.py`` (atomic files).
"""

from __future__ import annotations

import atexit
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

from ledger import env, hooks
from ledger.capture import DIFF_ARTIFACT_PATH, HOST, USER, capture
from ledger.errors import (
    InvalidKeyError,
    InvalidValueError,
    LedgerError,
    ParamConflictError,
    RunNotFoundError,
    RunStateError,
)
from ledger.events import TERMINAL_STATUSES
from ledger.ids import new_id
from ledger.store import Store, check_project_name, open_store
from ledger.writer import Writer, flush_all, writer_for

MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = 65_536
DEFAULT_PROJECT = "default"
DEFAULT_EXPERIMENT = "default"

_time = time.time
_FLOAT_ONLY = frozenset([float])
_STEP_LIMIT = 2**63


class _ClosedRows(list[Any]):
    """Stands in for an ended run's row buffer, so the hot path needs no 'ended' check."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def append(self, item: Any) -> None:
        raise RunStateError(f"Run {self.run_id} has ended; start or resume a run to log to it")

    extend = append


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str):
        raise InvalidKeyError(f"{what} key must be a string, got {type(key).__name__} {key!r}")
    if not key or not key.strip():
        raise InvalidKeyError(f"{what} key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"{what} key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}"
        )
    return key


def _metric_value(key: str, value: Any) -> float:
    if isinstance(value, (str, bytes)) or value is None:
        raise InvalidValueError(
            f"Metric {key!r} needs a number, got {type(value).__name__} {value!r:.60}"
        )
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidValueError(
            f"Metric {key!r} needs a number, got {type(value).__name__} {value!r:.60}"
        ) from exc


def _step_value(step: Any) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise InvalidValueError(f"Step must be an integer, got {type(step).__name__} {step!r}")
    step = int(step.__index__())
    if not -_STEP_LIMIT <= step < _STEP_LIMIT:
        raise InvalidValueError(f"Step {step} does not fit in 64 bits")
    return step


def _timestamp_seconds(timestamp: Any) -> float:
    if hasattr(timestamp, "timestamp"):  # datetime
        return float(timestamp.timestamp())
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        return float(timestamp)
    raise InvalidValueError(
        f"timestamp must be Unix seconds or a datetime, got {type(timestamp).__name__}"
    )


def param_text(value: Any) -> tuple[str, str]:
    """A param value as stored: its text (as MLflow stores params) and its type name."""
    if value is None:
        return "None", "null"
    if isinstance(value, bool):
        return str(value), "bool"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, float):
        return repr(value), "float"
    if isinstance(value, str):
        return value, "str"
    module = type(value).__module__.split(".")[0]
    if module == "numpy" and hasattr(value, "item"):
        return param_text(value.item())
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, sort_keys=True, default=str), "json"
        except (TypeError, ValueError):
            pass
    return str(value), "str"


def _check_text(key: str, text: str, what: str) -> str:
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidValueError(
            f"{what} {key!r} value is {len(text)} characters; the limit is {MAX_VALUE_LENGTH}"
        )
    return text


_ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "deft",
    "eager",
    "fair",
    "gentle",
    "hardy",
    "keen",
    "lucid",
    "merry",
    "noble",
    "polar",
    "quiet",
    "rapid",
    "sunny",
    "tidy",
    "vivid",
)
_NOUNS = (
    "otter",
    "falcon",
    "heron",
    "lynx",
    "marten",
    "newt",
    "orca",
    "puffin",
    "quail",
    "raven",
    "stoat",
    "tern",
    "viper",
    "wren",
    "yak",
    "zebra",
    "bison",
    "crane",
)


def _default_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randrange(1000):03d}"


class Run:
    """One run: log metrics, params, tags, artifacts and data sets to it.

    Use as a context manager: leaving the block ends the run ``finished``, an exception
    ends it ``failed`` (with the error), Ctrl-C or SIGTERM ends it ``killed``.
    """

    def __init__(
        self,
        *,
        store: Store,
        writer: Writer,
        run_id: str,
        project: str,
        experiment: str,
        name: str,
        parent_id: str | None,
        owner: bool,
    ) -> None:
        self.id = run_id
        self.project = project
        self.experiment = experiment
        self.name = name
        self.parent_id = parent_id
        self.store = store
        self.status = "running"
        self._writer = writer
        self._owner = owner
        self._buffer = writer.open_buffer(run_id, project, heartbeat=True)
        self._metrics: list[Any] = self._buffer.metrics
        self._batches: list[Any] = self._buffer.batches
        self._metric_keys: set[str] = set()
        self._auto_steps: dict[str, int] = {}
        self._log_step = 0
        self._params: dict[str, str] = {}
        self._lock = threading.Lock()
        self._ended = False

    def __repr__(self) -> str:
        return (
            f"Run(id={self.id!r}, name={self.name!r}, project={self.project!r}, "
            f"experiment={self.experiment!r}, status={self.status!r})"
        )

    # -- metrics (the hot path) ----------------------------------------------------------

    def log_metric(
        self, key: str, value: float, step: int | None = None, *, timestamp: Any = None
    ) -> None:
        """Log one metric value; NaN and ±inf are kept as is.

        ``step`` defaults to this key's next step (0, 1, 2, ...).

        Raises:
            InvalidKeyError: empty, over-long or non-string key.
            InvalidValueError: a value that is not a number, or a bad step.
            RunStateError: the run has ended.
        """
        if key not in self._metric_keys:
            self._new_metric_key(key)
        if value.__class__ is not float:
            value = _metric_value(key, value)
        if step is None:
            step = self._auto_steps.get(key, 0)
            self._auto_steps[key] = step + 1
        elif step.__class__ is not int:
            step = _step_value(step)
        self._metrics.append(
            (key, value, step, _time() if timestamp is None else _timestamp_seconds(timestamp))
        )

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, *, timestamp: Any = None
    ) -> None:
        """Log several metrics at one step (all validated before any is kept).

        Raises:
            InvalidKeyError, InvalidValueError, RunStateError: as for :meth:`log_metric`.
        """
        keys = tuple(metrics)
        values = tuple(metrics.values())
        # Set operations check every key and value type in C; the loops run only on misses.
        if not self._metric_keys.issuperset(keys):
            for key in keys:
                if key not in self._metric_keys:
                    self._new_metric_key(key)
        if not _FLOAT_ONLY.issuperset(map(type, values)):
            values = tuple(
                value if value.__class__ is float else _metric_value(key, value)
                for key, value in zip(keys, values, strict=True)
            )
        stamp = _time() if timestamp is None else _timestamp_seconds(timestamp)
        if step is None:
            auto = self._auto_steps
            rows = []
            for key, value in zip(keys, values, strict=True):
                auto_step = auto.get(key, 0)
                auto[key] = auto_step + 1
                rows.append((key, value, auto_step, stamp))
            self._metrics.extend(rows)
            return
        if step.__class__ is not int:
            step = _step_value(step)
        self._batches.append((keys, values, step, stamp))

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """W&B-style: log a dict of metrics; without ``step`` each call is the next step."""
        if step is None:
            step = self._log_step
        self._log_step = max(self._log_step, _step_value(step) + 1)
        self.log_metrics(metrics, step=step)

    def _new_metric_key(self, key: str) -> None:
        if self._ended:
            raise RunStateError(f"Run {self.id} has ended; start or resume a run to log to it")
        _check_key(key, "Metric")
        self._metric_keys.add(key)

    # -- params and tags -----------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Log a hyperparameter. Params are immutable within a run (MLflow semantics).

        Raises:
            ParamConflictError: the param was already logged with another value.
        """
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log several params; none is kept if any is invalid or conflicting."""
        self._check_open()
        checked = []
        with self._lock:
            for key, value in params.items():
                _check_key(key, "Param")
                text, value_type = param_text(value)
                _check_text(key, text, "Param")
                previous = self._params.get(key)
                if previous is not None and previous != text:
                    raise ParamConflictError(
                        f"Param {key!r} was logged as {previous!r}; a run's params cannot "
                        f"change (got {text!r}). Log it under another key or start a new run"
                    )
                if previous is None:
                    checked.append((key, text, value_type))
            for key, text, _ in checked:
                self._params[key] = text
        for key, text, value_type in checked:
            self._event("params", key=key, value=text, value_type=value_type)

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag (tags may change; the latest value wins)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._check_open()
        checked = []
        for key, value in tags.items():
            _check_key(key, "Tag")
            text = value if isinstance(value, str) else param_text(value)[0]
            checked.append((key, _check_text(key, text, "Tag")))
        for key, text in checked:
            self._event("tags", key=key, value=text)

    def delete_tag(self, key: str) -> None:
        self._check_open()
        self._event("tags", key=_check_key(key, "Tag"), value=None)

    # -- files and data --------------------------------------------------------------------

    def log_artifact(
        self,
        local_path: str | os.PathLike[str],
        artifact_path: str | None = None,
        *,
        kind: str = "file",
    ) -> list[str]:
        """Copy a file (or every file of a directory) into the store, content-addressed.

        Returns the stored paths within the run. Raises:
            InvalidValueError: the path does not exist.
        """
        self._check_open()
        local = os.fspath(local_path)
        if not os.path.exists(local):
            raise InvalidValueError(f"Artifact path {local!r} does not exist")
        prefix = (artifact_path or "").strip("/")
        if os.path.isdir(local):
            logged = []
            for folder, _, names in sorted(os.walk(local)):
                for file_name in sorted(names):
                    full = os.path.join(folder, file_name)
                    relative = os.path.relpath(full, local).replace(os.sep, "/")
                    logged.append(
                        self._put(full, f"{prefix}/{relative}" if prefix else relative, kind)
                    )
            return logged
        name = os.path.basename(local)
        return [self._put(local, f"{prefix}/{name}" if prefix else name, kind)]

    def log_artifacts(
        self, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[str]:
        return self.log_artifact(local_dir, artifact_path)

    def _put(self, local: str, logical: str, kind: str) -> str:
        sha, size, uri = self.store.put_artifact(local)
        self._event("artifacts", path=logical, size=size, sha256=sha, uri=uri, kind=kind)
        return logical

    def log_text(self, text: str, artifact_file: str) -> str:
        """Store ``text`` as the artifact ``artifact_file`` (e.g. ``"notes/report.txt"``)."""
        return self._log_bytes(text.encode("utf-8"), artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> str:
        """Store a dict as JSON (or YAML when the name ends in .yaml/.yml and PyYAML exists)."""
        if artifact_file.endswith((".yaml", ".yml")):
            try:
                import yaml

                return self.log_text(
                    yaml.safe_dump(dict(dictionary), sort_keys=False), artifact_file
                )
            except ImportError:
                pass
        return self.log_text(json.dumps(dictionary, indent=2, default=str), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> str:
        """Store a matplotlib (or any ``savefig``-capable) figure as an image artifact."""
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, os.path.basename(artifact_file))
            figure.savefig(path)
            directory = os.path.dirname(artifact_file) or None
            return self.log_artifact(path, directory)[0]

    def _log_bytes(self, data: bytes, artifact_file: str) -> str:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, os.path.basename(artifact_file))
            with open(path, "wb") as handle:
                handle.write(data)
            directory = os.path.dirname(artifact_file) or None
            return self.log_artifact(path, directory)[0]

    def log_dataset(
        self, name: str, data: Any, *, source: str | None = None, context: str | None = None
    ) -> dict[str, Any]:
        """Record a data set's fingerprint (hash, rows, columns, schema) on the run.

        ``data`` is a path, DataFrame (pandas/polars), pyarrow Table, numpy array or list.
        """
        from ledger.fingerprint import fingerprint

        self._check_open()
        _check_key(name, "Data set")
        facts = fingerprint(data)
        if source is None and isinstance(data, (str, os.PathLike)):
            source = os.path.abspath(os.fspath(data))
        self._event(
            "datasets",
            name=name,
            context=context,
            source=source,
            sha256=facts["sha256"],
            rows=facts["rows"],
            columns=facts["columns"],
            schema=json.dumps(facts["schema"], default=str),
            fingerprint=facts["fingerprint"],
        )
        return {"name": name, "source": source, **facts}

    def note(self, message: str) -> None:
        """Record a remark or problem on the run (shown by ``ledger diff`` and the runs view)."""
        self._event("runs", event="note", message=message)

    # -- lifecycle -------------------------------------------------------------------------

    def end(
        self,
        status: str = "finished",
        *,
        message: str | None = None,
        exit_code: int | None = None,
        wait: bool = False,
        flush_within: float = 0.0,
    ) -> None:
        """End the run (idempotent). The final write happens in the background within
        milliseconds; ``wait=True`` blocks until it is durable. ``flush_within``: seconds
        the background write may wait to share a flush with runs ending soon after (a
        batch worker's next configs); never later than the next periodic flush.

        Raises:
            InvalidValueError: ``status`` is not finished, failed or killed.
        """
        if status not in TERMINAL_STATUSES:
            raise InvalidValueError(
                f"Unknown run status {status!r}. Allowed: {', '.join(TERMINAL_STATUSES)}"
            )
        with self._lock:
            if self._ended:
                return
            self._ended = True
        hooks.run_ending(self, status)
        self._metrics = self._batches = _ClosedRows(self.id)
        if self._owner:
            self._event("runs", event=status, message=message, exit_code=exit_code)
        elif status != "finished":
            self._event(
                "runs",
                event="note",
                message=f"a process continuing this run ended "
                f"{status}" + (f": {message}" if message else ""),
            )
        self.status = status
        self._buffer.closed = True
        _forget(self)
        if wait:
            self._writer.flush()
        else:
            self._writer.request_flush(flush_within)

    def detach(self) -> None:
        """Stop logging to the run from this process without ending it (it stays open)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        hooks.run_ending(self, "detached")
        self._metrics = self._batches = _ClosedRows(self.id)
        self._buffer.closed = True
        _forget(self)
        self._writer.request_flush()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.end("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("killed", message="KeyboardInterrupt")
        elif issubclass(exc_type, SystemExit):
            code = exc.code if exc is not None else None
            if _terminated_by is not None:
                self.end("killed", message=f"signal {_terminated_by}")
            elif code in (0, None):
                self.end("finished")
            else:
                self.end(
                    "failed",
                    message=f"SystemExit: {code}",
                    exit_code=code if isinstance(code, int) else 1,
                )
        else:
            self.end("failed", message=f"{exc_type.__name__}: {exc}"[:MAX_VALUE_LENGTH])

    # -- internals -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise RunStateError(f"Run {self.id} has ended; start or resume a run to log to it")

    def _event(self, event_kind: str, /, **row: Any) -> None:
        # Positional-only: artifact rows carry a column named `kind` themselves.
        row["run_id"] = self.id
        self._writer.add_event(event_kind, self.project, row)

    def _record_seeds(self, seeds: Mapping[str, Any]) -> None:
        self._event("runs", event="seeded", attrs=json.dumps(dict(seeds), default=str))


# -- the active-run stacks -------------------------------------------------------------------

_local = threading.local()
_main_stack: list[Run] = []
_open: dict[str, Run] = {}
_pending_seeds: dict[str, Any] = {}
_registry_lock = threading.Lock()
_terminated_by: int | None = None
_uncaught: BaseException | None = None
_handlers_installed = False


def _stack() -> list[Run]:
    if threading.current_thread() is threading.main_thread():
        return _main_stack
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def active_run() -> Run | None:
    """The innermost open run of this thread; other threads see the main thread's run."""
    stack = _stack()
    if stack:
        return stack[-1]
    return _main_stack[-1] if _main_stack else None


def _forget(run: Run) -> None:
    with _registry_lock:
        _open.pop(run.id, None)
        for stack in (_stack(), _main_stack):
            if run in stack:
                stack.remove(run)
                break


def start_run(
    project: str | None = None,
    experiment: str | None = None,
    name: str | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    parent: Run | str | None = None,
    store: str | os.PathLike[str] | Store | None = None,
    run_id: str | None = None,
    description: str | None = None,
) -> Run:
    """Start (or resume) a run and make it the active run.

    A run started while another is active becomes its child. ``run_id`` resumes an
    existing run. With ``LEDGER_RUN_ID`` set (by ``ledger run`` or a parent process) and
    no active run, the call continues that run instead of starting a new one.

    Raises:
        RunNotFoundError: ``run_id`` names no run in the store.
        ConfigError: invalid project name or store settings.
    """
    inherited = os.environ.get(env.RUN_ID) if run_id is None and active_run() is None else None
    if run_id is not None or inherited:
        run = continue_run(run_id or inherited or "", store=store, owner=run_id is not None)
    else:
        run = new_run(
            project,
            experiment,
            name,
            parent=parent,
            store=store,
            attrs={"description": description} if description else None,
        )
    if params:
        run.log_params(params)
    if tags:
        run.set_tags(tags)
    return run


def new_run(
    project: str | None = None,
    experiment: str | None = None,
    name: str | None = None,
    *,
    parent: Run | str | None = None,
    store: str | os.PathLike[str] | Store | None = None,
    attrs: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    activate: bool = True,
) -> Run:
    """Start a new run, never continuing ``LEDGER_RUN_ID`` (see :func:`start_run`).

    ``run_id`` gives the new run a chosen id (adapters use deterministic ids so that
    several processes, or a re-run, name the same run). ``activate=False`` keeps the run
    off this thread's active-run stack, for runs a library opens on the user's behalf
    (a study's parent run must not capture the user's later ``ledger.log_metric`` calls).
    """
    current = active_run()
    # A nested run lives in its parent's store unless told otherwise.
    store_obj = open_store(store) if store is not None or current is None else current.store
    writer = writer_for(store_obj)
    parent_id = parent.id if isinstance(parent, Run) else parent
    if parent_id is None:
        parent_id = (
            current.id
            if current is not None
            else os.environ.get(env.PARENT_RUN) or os.environ.get(env.RUN_ID)
        )
    project = check_project_name(
        project
        or (current.project if current else None)
        or os.environ.get(env.PROJECT)
        or DEFAULT_PROJECT
    )
    experiment = (
        experiment
        or (current.experiment if current else None)
        or os.environ.get(env.EXPERIMENT)
        or DEFAULT_EXPERIMENT
    )
    run = Run(
        store=store_obj,
        writer=writer,
        run_id=run_id or new_id(),
        project=project,
        experiment=experiment,
        name=name or _default_name(),
        parent_id=parent_id or None,
        owner=True,
    )
    run._event(
        "runs",
        event="started",
        experiment=run.experiment,
        name=run.name,
        parent_run_id=run.parent_id,
        user=USER,
        host=HOST,
        pid=os.getpid(),
        attrs=json.dumps(dict(attrs)) if attrs else None,
    )
    _after_start(run, writer, activate=activate)
    return run


def continue_run(
    run_id: str,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    owner: bool = True,
    capture_environment: bool = True,
    activate: bool = True,
) -> Run:
    """Continue an existing run in this process and make it the active run.

    An owner (``start_run(run_id=...)``) re-opens the run and ends it on exit; a
    non-owner (a worker continuing ``LEDGER_RUN_ID``) adds to it and keeps it alive with
    heartbeats, but leaves ending it to the process that owns it.

    Raises:
        RunNotFoundError: no run with this id exists in the store.
    """
    store_obj = open_store(store)
    writer = writer_for(store_obj)
    project = None if owner else os.environ.get(env.PROJECT)
    experiment = name = parent_id = None
    if project is None:
        if writer.buffered_rows():
            writer.flush()
        rows = store_obj.run_started_rows([run_id])
        if not rows:
            raise RunNotFoundError(f"No run with id {run_id!r} in store {store_obj.uri}")
        project = rows[0]["project"]
        experiment, name, parent_id = (
            rows[0]["experiment"],
            rows[0]["name"],
            rows[0]["parent_run_id"],
        )
    run = Run(
        store=store_obj,
        writer=writer,
        run_id=run_id,
        project=check_project_name(project),
        experiment=experiment or os.environ.get(env.EXPERIMENT) or DEFAULT_EXPERIMENT,
        name=name or run_id[:8],
        parent_id=parent_id,
        owner=owner,
    )
    run._event(
        "runs", event="resumed" if owner else "attached", host=HOST, user=USER, pid=os.getpid()
    )
    _after_start(run, writer, capture_environment=capture_environment, activate=activate)
    return run


def _after_start(
    run: Run, writer: Writer, *, capture_environment: bool = True, activate: bool = True
) -> None:
    with _registry_lock:
        _open[run.id] = run
        if activate:
            _stack().append(run)
    if _pending_seeds:
        run._record_seeds(_pending_seeds)
    if writer.settings.capture and capture_environment:
        capture.when_ready(
            lambda row, diff: _record_environment(run, writer, row, diff), writer.store
        )
    if not _handlers_installed:
        _install_handlers()
    if capture_environment:  # a one-shot `ledger log` is not where the run's work happens
        hooks.run_started(run)


def _record_environment(
    run: Run, writer: Writer, environment: Mapping[str, Any], diff: Mapping[str, Any] | None
) -> None:
    # Runs on the capture thread: the run may have ended meanwhile, so this writes through
    # the writer directly rather than through the run's (possibly closed) buffers.
    row = {**environment, "run_id": run.id, "event": "environment", "pid": os.getpid()}
    writer.add_event("runs", run.project, row)
    if diff is None:
        return
    if "error" in diff:
        writer.add_event(
            "runs", run.project, {"run_id": run.id, "event": "note", "message": str(diff["error"])}
        )
        return
    # The diff is also an artifact of the run, so artifact listings (and any cleanup
    # that keeps referenced artifacts) see it.
    writer.add_event(
        "artifacts",
        run.project,
        {
            "run_id": run.id,
            "path": DIFF_ARTIFACT_PATH,
            "size": diff["size"],
            "sha256": diff["sha256"],
            "uri": diff["uri"],
            "kind": "patch",
        },
    )


def end_run(status: str = "finished") -> None:
    """End the active run (no-op when none is active)."""
    run = active_run()
    if run is not None:
        run.end(status)


def _active_or_start() -> Run:
    # MLflow's fluent API starts a run on first use; existing code relies on that.
    run = active_run()
    return run if run is not None else start_run()


def log(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log a dict of metrics to the active run (W&B style); starts a run if none is active."""
    _active_or_start().log(metrics, step=step)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    _active_or_start().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    _active_or_start().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    _active_or_start().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _active_or_start().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _active_or_start().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _active_or_start().set_tags(tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> list[str]:
    return _active_or_start().log_artifact(local_path, artifact_path)


def log_dataset(name: str, data: Any, **kwargs: Any) -> dict[str, Any]:
    return _active_or_start().log_dataset(name, data, **kwargs)


def seed(value: int, *, run: Run | None = None) -> dict[str, Any]:
    """Seed ``random``, numpy and torch (when installed) and record the seeds on the run.

    With no active run the seeds are recorded on the next run this process starts.
    ``PYTHONHASHSEED`` cannot be changed once Python runs: it is recorded as it is, and
    when unset, ``PYTHONHASHSEED_recommended`` (this seed) is recorded for
    ``ledger reproduce`` to export.

    Raises:
        InvalidValueError: ``value`` is not an integer in [0, 2**32).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise InvalidValueError(f"Seed must be an integer in [0, 2**32), got {value!r}")
    import importlib.util

    random.seed(value)
    seeds: dict[str, Any] = {"random": value}
    if importlib.util.find_spec("numpy") is not None:
        import numpy

        numpy.random.seed(value)
        seeds["numpy"] = value
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(value)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(value)
        seeds["torch"] = value
    # str hashing (set/dict iteration order of strings) is fixed only by PYTHONHASHSEED,
    # which must be set before the interpreter starts: record it, and when it is unset or
    # random, the value to export next time (`ledger reproduce` does).
    hash_seed = os.environ.get("PYTHONHASHSEED")
    seeds["PYTHONHASHSEED"] = hash_seed
    if hash_seed in (None, "", "random"):
        seeds["PYTHONHASHSEED_recommended"] = str(value)
    target = run or active_run()
    if target is not None:
        target._record_seeds(seeds)
    else:
        _pending_seeds.update(seeds)
    return seeds


def flush() -> bool:
    """Write everything this process has buffered, now. True when nothing is pending."""
    return flush_all()


# -- process exit, signals and fork --------------------------------------------------------------


def _install_handlers() -> None:
    global _handlers_installed
    with _registry_lock:
        if _handlers_installed:
            return
        _handlers_installed = True
    atexit.register(_at_exit)
    previous_hook = sys.excepthook

    def _excepthook(exc_type: Any, exc: BaseException, tb: Any) -> None:
        global _uncaught
        _uncaught = exc
        previous_hook(exc_type, exc, tb)

    sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # not allowed here (embedded interpreters)
            pass


def _on_sigterm(signum: int, frame: Any) -> None:
    global _terminated_by
    _terminated_by = signum
    # Unwinds the training loop like Ctrl-C does, so `with` blocks end runs as killed.
    raise SystemExit(128 + signum)


def _at_exit() -> None:
    for run in list(_open.values()):
        try:
            if _terminated_by is not None:
                run.end("killed", message=f"signal {_terminated_by}")
            elif _uncaught is not None:
                run.end("failed", message=f"{type(_uncaught).__name__}: {_uncaught}")
            else:
                run.end("finished")
        except LedgerError:
            pass
    capture.wait(timeout=5.0)
    from ledger.writer import all_writers

    for writer in all_writers():
        writer.close()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for run in _open.values():
        run._owner = False  # the parent process ends its runs, not its children


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
