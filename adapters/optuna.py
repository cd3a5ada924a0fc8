"""Optuna: one parent run per study, one child run per trial.

    import ledger.optuna
    cb = ledger.optuna.LedgerCallback(project="tuning")
    study.optimize(objective, n_trials=100, callbacks=[cb])

or, to also log trials already in the study and end the study's run when done::

    with ledger.optuna.track_study(study, project="tuning") as cb:
        study.optimize(objective, n_trials=100, callbacks=[cb])

Identity is what makes "every trial exactly once" hold without coordination: the study's
run id is derived from the storage's location and the study name, and each trial's run id
from the study's run id and the trial number. Several processes sharing one Optuna storage
(a JournalStorage file or an RDB URL) therefore name the same parent run, each logs the
trials it ran itself (Optuna calls callbacks in the process and thread that ran the
trial), and a trial that is logged twice (``track_study`` re-logging a study) still folds
into one run. Studies in memory get a fresh random id.

What a trial run holds (names chosen so ``ledger importance`` can rebuild the study):
params with their native types; the objective as metric ``value`` (several objectives:
the study's metric names, else ``value_0``, ``value_1``, ...); intermediate values as
metric ``intermediate_value`` at their steps; status ``finished`` (COMPLETE), ``killed``
(PRUNED, message "pruned at step N") or ``failed`` (FAIL, with the error when known); tags
``optuna.trial_number``, ``optuna.state``, ``optuna.distributions`` (JSON, Optuna's own
serialisation) and ``optuna.user_attr.<key>``; start and end times from Optuna, so the
``runs`` view's ``duration_s`` is the trial's duration.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ledger.adapters._record import MetricRow, record_run

from ledger.errors import AdapterError, LedgerError
from ledger.ids import new_id, stable_id
from ledger.run import Run, active_run, continue_run, new_run
from ledger.store import Store, open_store
from ledger.writer import writer_for

if TYPE_CHECKING:
    import optuna

__all__ = ["LedgerCallback", "study_run_id", "track_study", "trial_run_id"]

_STATUS = {"COMPLETE": "finished", "PRUNED": "killed", "FAIL": "failed"}

log = logging.getLogger("ledger")


def _storage_key(storage: Any) -> str | None:
    """Where a storage lives, or None for one that only this process can see."""
    from optuna.storages import InMemoryStorage, JournalStorage, RDBStorage

    backend = getattr(storage, "_backend", None)
    if isinstance(storage, InMemoryStorage):
        return None
    if isinstance(storage, RDBStorage):
        return f"rdb:{storage.url}"
    if isinstance(backend, RDBStorage):  # optuna wraps RDB storages in a cache
        return f"rdb:{backend.url}"
    if isinstance(storage, JournalStorage):
        import os

        path = getattr(backend, "_file_path", None)
        if path is not None:
            return f"journal-file:{os.path.abspath(path)}"
        url = getattr(backend, "_url", None) or getattr(backend, "url", None)
        if url is not None:
            return f"journal:{type(backend).__name__}:{url}"
    return None


def _storage_text(storage: Any) -> str:
    key = _storage_key(storage)
    if key is None:
        return type(storage).__name__
    # Never keep a database password in the ledger.
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", key)


def study_run_id(study: optuna.Study) -> str:
    """The ledger run id of a study kept in shared storage (None-safe: random in memory)."""
    key = _storage_key(study._storage)
    if key is None:
        return new_id()
    return stable_id("optuna-study", key, study.study_name)


def trial_run_id(study_run: str, number: int) -> str:
    """The ledger run id of trial ``number`` of the study whose run id is ``study_run``."""
    return stable_id("optuna-trial", study_run, str(number))


def _seconds(moment: Any, default: float) -> float:
    return moment.timestamp() if moment is not None else default


class LedgerCallback:
    """An Optuna callback that logs every finished trial as a child run of the study's run.

    Args:
        project: ledger project (default: the active run's, ``LEDGER_PROJECT``, "default").
        experiment: experiment name (default: the study name).
        metric_names: names of the objective values (default: the study's
            ``metric_names``, else ``value`` or ``value_0``, ``value_1``, ...).
        store: store path or :class:`~ledger.store.Store` (default: the usual resolution).
        parent: a run (or run id) the study's run should be a child of (default: the run
            active when the study's run is created, if any).
        study_run_name: name of the study's run (default: the study name).
        tags: tags for the study's run.
        log_user_attrs: log each trial's user attrs as ``optuna.user_attr.<key>`` tags.

    Safe with ``n_jobs > 1`` (Optuna calls callbacks from its worker threads) and with
    several processes sharing the study's storage.
    """

    def __init__(
        self,
        project: str | None = None,
        experiment: str | None = None,
        *,
        metric_names: Sequence[str] | None = None,
        store: str | Store | None = None,
        parent: Run | str | None = None,
        study_run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        log_user_attrs: bool = True,
    ) -> None:
        self.project = project
        self.experiment = experiment
        self.metric_names = list(metric_names) if metric_names is not None else None
        self.store = open_store(store) if store is not None else None
        self.parent = parent
        self.study_run_name = study_run_name
        self.tags = dict(tags or {})
        self.log_user_attrs = log_user_attrs
        self.study_run: Run | None = None
        self._study_key: tuple[int, str] | None = None
        self._lock = threading.RLock()
        self._logged: set[int] = set()
        self._live: dict[int, tuple[Run, str | None]] = {}
        self._study: optuna.Study | None = None
        # Finished trials waiting to become events: (trial, live run, time of the call).
        # The writer turns them into events at its next flush (``_drain``, a writer
        # producer), in one batch: converting trials one by one between two trials,
        # with caches cold from the objective and the sampler, cost 2-3x the CPU.
        self._queue: list[tuple[optuna.trial.FrozenTrial, tuple[Run, str | None] | None, float]]
        self._queue = []
        self._producer_of: str | None = None  # writer_id of the writer draining the queue
        self._warned = False
        self._spaces: dict[Any, str] = {}  # distributions -> their JSON

    # -- the study's run ------------------------------------------------------------------

    def _study_run(self, study: optuna.Study) -> Run:
        key = (id(study._storage), study.study_name)
        run = self.study_run
        if run is not None and self._study_key == key:
            return run
        with self._lock:
            if self.study_run is not None and self._study_key == key:
                return self.study_run
            if self.study_run is not None:
                raise AdapterError(
                    f"This LedgerCallback tracks study {self._study_key[1]!r}; "  # type: ignore[index]
                    f"use one callback per study (got {study.study_name!r})"
                )
            self.study_run = self._open_study_run(study)
            self._study_key = key
            self._study = study
            return self.study_run

    def _open_study_run(self, study: optuna.Study) -> Run:
        run_id = study_run_id(study)
        store = self.store
        if store is None:
            current = active_run()
            store = current.store if current is not None else open_store(None)
        self.store = store
        writer = writer_for(store)
        if _storage_key(study._storage) is not None:
            if writer.buffered_rows():
                writer.flush()
            if store.run_started_rows([run_id]):
                # Another process (or an earlier session) opened it: add to it, leave it
                # to its owner to end.
                return continue_run(run_id, store=store, owner=False, activate=False)
        directions = [d.name.lower() for d in study.directions]
        run = new_run(
            self.project,
            self.experiment or study.study_name,
            self.study_run_name or study.study_name,
            parent=self.parent,
            store=store,
            run_id=run_id,
            activate=False,
        )
        sampler = study.sampler
        params: dict[str, Any] = {
            "study_name": study.study_name,
            "sampler": type(sampler).__name__,
            "pruner": type(getattr(study, "pruner", None)).__name__,
            "direction" if len(directions) == 1 else "directions": (
                directions[0] if len(directions) == 1 else directions
            ),
            "storage": _storage_text(study._storage),
        }
        names = self._names(study)
        run.log_params(params)
        run.set_tags(
            {
                "ledger.source": "optuna",
                "optuna.study_name": study.study_name,
                "optuna.metric_names": json.dumps(names),
                **{f"optuna.study_user_attr.{k}": v for k, v in study.user_attrs.items()},
                **self.tags,
            }
        )
        # Durable at once, so a process joining the study a moment later finds this run.
        writer.flush()
        return run

    def _names(self, study: optuna.Study) -> list[str]:
        n = len(study.directions)
        names = self.metric_names or getattr(study, "metric_names", None)
        if names is not None:
            if len(names) != n:
                raise AdapterError(f"{n} objective(s) but {len(names)} metric names: {names}")
            return list(names)
        return ["value"] if n == 1 else [f"value_{i}" for i in range(n)]

    # -- trials --------------------------------------------------------------------------

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study_run = self._study_run(study)
        with self._lock:
            if trial.number in self._logged:
                return
            self._logged.add(trial.number)
            live = self._live.pop(trial.number, None)
        # Optuna hands each callback its own deep copy of the trial: safe to keep.
        self._enqueue(study_run, trial, live)
        if (
            trial.state.name == "COMPLETE"
            and len(study.directions) == 1
            and trial.value is not None
        ):
            self._log_best(study, study_run, trial)

    def _enqueue(
        self,
        study_run: Run,
        trial: optuna.trial.FrozenTrial,
        live: tuple[Run, str | None] | None,
    ) -> None:
        writer = writer_for(study_run.store)
        with self._lock:
            if self._producer_of != writer.writer_id:
                if self._producer_of is not None:
                    # A forked child: the parent logs what it had queued.
                    self._queue.clear()
                self._producer_of = writer.writer_id
                writer.add_producer(self._drain)
            self._queue.append((trial, live, time.time()))

    def _drain(self) -> None:
        """Turn the queued trials into events (called by the writer at each flush)."""
        with self._lock:
            queue, self._queue = self._queue, []
        study, study_run = self._study, self.study_run
        if not queue or study is None or study_run is None:
            return
        for trial, live, called in queue:
            try:
                self._log_trial(study, study_run, trial, live, called)
            except LedgerError as exc:
                # Logging must not kill the study: one warning, and a note on its run.
                message = f"trial {trial.number} not logged: {type(exc).__name__}: {exc}"
                if not self._warned:
                    self._warned = True
                    log.warning("ledger: %s", message)
                with contextlib.suppress(LedgerError):
                    study_run.note(message)

    def _log_trial(
        self,
        study: optuna.Study,
        study_run: Run,
        trial: optuna.trial.FrozenTrial,
        live: tuple[Run, str | None] | None = None,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        end_s = _seconds(trial.datetime_complete, now)
        start_s = _seconds(trial.datetime_start, end_s)
        state = trial.state.name
        metrics: list[MetricRow] = [
            ("intermediate_value", float(value), int(step), end_s)
            for step, value in sorted(trial.intermediate_values.items())
        ]
        # Only a complete trial has an objective value (Optuna gives a pruned trial its
        # last intermediate value, which stays in ``intermediate_value``).
        if state == "COMPLETE" and trial.values is not None:
            names = self._names(study)
            metrics.extend(
                (name, float(value), 0, end_s)
                for name, value in zip(names, trial.values, strict=True)
            )
        tags: dict[str, Any] = {
            "optuna.trial_number": trial.number,
            "optuna.state": state,
            "optuna.distributions": self._distributions_json(trial.distributions),
        }
        if self.log_user_attrs:
            for key, value in trial.user_attrs.items():
                tags[f"optuna.user_attr.{key}"] = value
        message = None
        if state == "PRUNED":
            last = trial.last_step
            message = f"pruned at step {last}" if last is not None else "pruned"
        elif state == "FAIL":
            message = (live[1] if live else None) or trial.system_attrs.get("fail_reason")
            message = message or "trial failed"
        status = _STATUS.get(state)
        if status is None:  # RUNNING / WAITING: nothing final to log
            return
        record_run(
            study_run.store,
            run_id=trial_run_id(study_run.id, trial.number),
            project=study_run.project,
            experiment=study_run.experiment,
            name=f"trial-{trial.number}",
            parent_id=study_run.id,
            start_s=start_s,
            end_s=end_s,
            status=status,
            message=message,
            params=trial.params,
            tags=tags,
            metrics=metrics,
            started=live is None,
        )

    def _distributions_json(self, distributions: dict[str, Any]) -> str:
        """The search space as JSON; trials of a study mostly share it, so it is cached."""
        try:
            key: Any = tuple(distributions.items())
            cached = self._spaces.get(key)
        except TypeError:  # an unhashable distribution: no cache
            key, cached = None, None
        if cached is None:
            from optuna.distributions import distribution_to_json

            cached = json.dumps(
                {
                    name: json.loads(distribution_to_json(dist))
                    for name, dist in distributions.items()
                },
                sort_keys=True,
            )
            if key is not None:
                if len(self._spaces) >= 256:  # define-by-run spaces can vary a lot
                    self._spaces.clear()
                self._spaces[key] = cached
        return cached

    def _log_best(
        self, study: optuna.Study, study_run: Run, trial: optuna.trial.FrozenTrial
    ) -> None:
        # The study run's optimisation history: best value so far, step = trial number.
        try:
            # The storage's own best (all processes' trials); Study.best_value would
            # deep-copy the trial first, which is most of this callback's cost.
            best = study._storage.get_best_trial(study._study_id).value
        except ValueError:
            return
        if best is None:
            return
        value = trial.value
        if value is None or math.isnan(value):
            return
        # LedgerError: the study's run was ended while trials still finish.
        with contextlib.suppress(LedgerError):
            study_run.log_metric("best_value", best, step=trial.number)

    # -- the objective inside a run ------------------------------------------------------

    def track_in_ledger(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate the objective so each trial runs inside its own (active) ledger run.

        ``ledger.log_metric`` inside the objective then logs to the trial's run (learning
        curves, extra scores); the callback completes the run when the trial ends.
        """

        def decorator(objective: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(objective)
            def wrapped(trial: optuna.trial.Trial) -> Any:
                import optuna

                study_run = self._study_run(trial.study)
                run = new_run(
                    study_run.project,
                    study_run.experiment,
                    f"trial-{trial.number}",
                    parent=study_run.id,
                    store=study_run.store,
                    run_id=trial_run_id(study_run.id, trial.number),
                )
                error: str | None = None
                try:
                    return objective(trial)
                except optuna.TrialPruned:
                    raise
                except BaseException as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    raise
                finally:
                    # The run stays open (not active) until the callback logs the
                    # trial's final state, which Optuna decides after this returns.
                    run.detach()
                    with self._lock:
                        self._live[trial.number] = (run, error)

            return wrapped

        return decorator

    # -- ending --------------------------------------------------------------------------

    def end(self, status: str = "finished") -> None:
        """Log trials this process ran that no callback saw (an objective raised out of
        ``optimize``), then end the study's run (if this process opened it)."""
        with self._lock:
            leftovers = dict(self._live)
            self._live.clear()
        study, study_run = self._study, self.study_run
        if study is None or study_run is None:
            return
        for number, live in sorted(leftovers.items()):
            with self._lock:
                if number in self._logged:
                    continue
                self._logged.add(number)
            trial = _frozen_trial(study, number)
            if trial is not None:
                self._enqueue(study_run, trial, live)
        # Every trial's events are queued before the study's end event.
        self._drain()
        study_run.end(status)

    def __enter__(self) -> LedgerCallback:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.end("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("killed")
        else:
            self.end("failed")


def _frozen_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial | None:
    try:
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        return study._storage.get_trial(trial_id)
    except (KeyError, ValueError):
        return None


def track_study(
    study: optuna.Study,
    project: str | None = None,
    experiment: str | None = None,
    *,
    log_existing: bool = True,
    **options: Any,
) -> LedgerCallback:
    """Open (or join) ``study``'s run now and return its callback, usable as a context.

    With ``log_existing`` the study's finished trials that the store does not hold yet
    are logged at once, so a study optimised earlier (or by other machines) can be
    brought into the ledger after the fact; trials already there are skipped. Options
    are :class:`LedgerCallback`'s.

        with ledger.optuna.track_study(study, project="tuning") as cb:
            study.optimize(objective, n_trials=50, callbacks=[cb])
    """
    callback = LedgerCallback(project, experiment, **options)
    study_run = callback._study_run(study)
    if log_existing:
        from optuna.trial import TrialState

        finished = study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        )
        if finished:
            store = study_run.store
            ids = {trial_run_id(study_run.id, t.number): t for t in finished}
            writer = writer_for(store)
            if writer.buffered_rows():
                writer.flush()
            present = {row["run_id"] for row in store.run_started_rows(list(ids))}
            for run_id, trial in ids.items():
                if run_id in present:
                    with callback._lock:
                        callback._logged.add(trial.number)
                    continue
                callback(study, trial)
    return callback
