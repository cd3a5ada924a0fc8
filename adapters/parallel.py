"""Parallel experiment batches on joblib (loky, threads, Dask, Ray, ...).

    from ledger.parallel import run_experiments

    def train(config):
        model = fit(**config)
        ledger.log_metric("val_acc", model.score(X_val, y_val))   # the config's own run
        return model.score(X_val, y_val)

    results = run_experiments([{"C": c} for c in (0.1, 1, 10)], train, n_jobs=-1)

Each config runs in a joblib worker inside its own child run (the worker's active run,
so plain ``ledger.log_metric`` lands there). The run ids are chosen before the batch is
dispatched, so every config maps to exactly one run whatever the backend does; workers
only need to reach the store, which is all the ledger asks of a Dask or Ray cluster
(DESIGN.md "Scale-out"). A failing config becomes a ``failed`` run with its error and
does not stop the batch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.ids import new_id
from ledger.run import Run, active_run, new_run
from ledger.store import Store, open_store

__all__ = ["ExperimentResult", "run_experiments"]

log = logging.getLogger("ledger")


@dataclass
class ExperimentResult:
    """What one config of a batch gave."""

    index: int
    config: dict[str, Any]
    run_id: str
    status: str
    """``finished`` or ``failed``."""
    value: Any = None
    """``train_fn``'s return value (None when it failed)."""
    error: str | None = None
    duration_s: float = 0.0
    traceback: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "finished"


def _numeric(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
        type(value).__module__ == "numpy"
        and hasattr(value, "item")
        and not isinstance(value.item(), (bool, str))
    )


def _run_one(
    store_root: str,
    project: str,
    experiment: str,
    parent_id: str | None,
    run_id: str,
    name: str,
    index: int,
    config: dict[str, Any],
    train_fn: Callable[[dict[str, Any]], Any],
    log_params: bool,
    log_result: bool,
    wait: bool = False,
) -> ExperimentResult:
    """Runs in the worker (any process or thread): one config inside its own run.

    ``wait``: make the run durable before returning, for backends whose workers may be
    killed as soon as the batch's last result is in (see ``_WORKERS_OUTLIVE_THE_BATCH``).
    """
    started = time.perf_counter()
    run = new_run(project, experiment, name, parent=parent_id, store=store_root, run_id=run_id)
    status, value, error, trace = "finished", None, None, None
    try:
        if log_params and config:
            run.log_params(config)
        value = train_fn(config)
        if log_result:
            _log_result(run, value)
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc()
    finally:
        # Without ``wait`` this worker's flusher writes the run while the worker goes on
        # with its next config, and the caller waits for the files once per batch
        # (_await_durable) instead of every config paying its fsyncs in turn. The write
        # may wait up to _FLUSH_WITHIN s so that the runs of several configs share one
        # flush: one flush (~5 files, ~10 ms of CPU) per config was half of a worker's
        # tracking cost on 250 ms configs.
        run.end(status, message=error, wait=wait, flush_within=_FLUSH_WITHIN)
    return ExperimentResult(
        index=index,
        config=config,
        run_id=run_id,
        status=status,
        value=value,
        error=error,
        duration_s=time.perf_counter() - started,
        traceback=trace,
    )


def _log_result(run: Run, value: Any) -> None:
    """A returned number becomes metric ``result``; a dict's numbers become metrics."""
    if _numeric(value):
        if "result" not in run._metric_keys:
            run.log_metric("result", float(value))
    elif isinstance(value, Mapping):
        numbers = {
            str(k): float(v)
            for k, v in value.items()
            if _numeric(v) and str(k) not in run._metric_keys
        }
        if numbers:
            run.log_metrics(numbers)


_FLUSH_WITHIN = 2.0
"""Seconds a worker's run may wait to share a flush (capped by the flush interval)."""

# joblib backends whose workers stay alive after ``Parallel`` returns (loky's reusable
# executor, a Dask cluster's workers, this process's threads), so their background
# flushes finish while the caller waits in ``_await_durable``. Others end their pool with
# the batch: Ray's joblib backend kills its pool's actors and the multiprocessing backend
# terminates its processes, which would lose every run still queued in a worker (found
# with Ray: 4 of 8 runs lost). Their workers make each run durable before returning it.
_WORKERS_OUTLIVE_THE_BATCH = frozenset(
    {"LokyBackend", "ThreadingBackend", "SequentialBackend", "DaskDistributedBackend"}
)


def _workers_outlive_the_batch() -> bool:
    """Whether the active joblib backend's workers outlive the batch (see above)."""
    from joblib.parallel import get_active_backend

    return type(get_active_backend()[0]).__name__ in _WORKERS_OUTLIVE_THE_BATCH


def _backend_ready(backend: str | None) -> None:
    if backend == "ray":
        from ray.util.joblib import register_ray

        register_ray()


def run_experiments(
    configs: Iterable[Mapping[str, Any]],
    train_fn: Callable[[dict[str, Any]], Any],
    n_jobs: int = -1,
    backend: str | None = "loky",
    parent: Run | str | None = None,
    *,
    project: str | None = None,
    experiment: str | None = None,
    name: str | None = None,
    store: str | Store | None = None,
    log_params: bool = True,
    log_result: bool = True,
    **parallel_options: Any,
) -> list[ExperimentResult]:
    """Run ``train_fn(config)`` for every config in parallel, one child run per config.

    Args:
        configs: one dict per experiment; logged as the run's params (``log_params``).
        train_fn: called with the config in a worker; its run is the active run there.
            It must be picklable for process backends (loky uses cloudpickle, so
            lambdas and local functions work).
        n_jobs, backend, parallel_options: passed to :class:`joblib.Parallel`
            (``backend="dask"`` needs a ``dask.distributed.Client``; ``"ray"`` needs Ray).
        parent: the runs' parent (default: the active run; with none, the batch gets a
            parent run of its own, ended when the batch is done).
        name: run name prefix (default: the experiment); runs are ``<name>-<index>``.
        log_result: a number returned by ``train_fn`` is logged as metric ``result``,
            the numbers of a returned dict as metrics (keys the run already has are
            left alone).

    Returns:
        One :class:`ExperimentResult` per config, in the order of ``configs``.
    """
    import joblib

    configs = [dict(config) for config in configs]
    current = active_run()
    store_obj = (
        open_store(store)
        if store is not None
        else (current.store if current is not None else open_store(None))
    )
    own_parent: Run | None = None
    if parent is None and current is not None:
        parent = current
    if parent is None:
        own_parent = new_run(project, experiment, name or "batch", store=store_obj, activate=False)
        own_parent.log_params({"n_configs": len(configs), "backend": str(backend)})
        parent = own_parent
    parent_run = parent if isinstance(parent, Run) else None
    parent_id = parent.id if isinstance(parent, Run) else parent
    project = (
        project
        or (parent_run.project if parent_run else None)
        or (current.project if current else None)
    )
    experiment = (
        experiment
        or (parent_run.experiment if parent_run else None)
        or (current.experiment if current else None)
    )
    from ledger.run import DEFAULT_EXPERIMENT, DEFAULT_PROJECT

    project = project or DEFAULT_PROJECT
    experiment = experiment or DEFAULT_EXPERIMENT
    prefix = name or experiment
    # The parent's and every earlier event reach disk before workers start, so a worker
    # process that reads the store (resuming, checking ids) sees a consistent picture.
    from ledger.writer import writer_for

    writer_for(store_obj).flush()
    _backend_ready(backend)
    batch_start = dt.datetime.now(dt.timezone.utc)
    run_ids = [new_id() for _ in configs]

    def tasks(wait: bool) -> Iterable[Any]:
        return (
            joblib.delayed(_run_one)(
                store_obj.base if store_obj.is_local else store_obj.uri,
                project,
                experiment,
                parent_id,
                run_ids[index],
                f"{prefix}-{index}",
                index,
                config,
                train_fn,
                log_params,
                log_result,
                wait,
            )
            for index, config in enumerate(configs)
        )

    try:
        # parallel_config (not Parallel(backend=...)) is what registers joblib's
        # external backends such as "dask"; backend=None keeps the caller's config.
        config = (
            joblib.parallel_config(backend=backend, n_jobs=n_jobs)
            if backend is not None
            else contextlib.nullcontext()
        )
        with config:
            wait = not _workers_outlive_the_batch()
            results: list[ExperimentResult] = list(
                joblib.Parallel(
                    **({} if backend is not None else {"n_jobs": n_jobs}), **parallel_options
                )(tasks(wait))
            )
    except BaseException:
        if own_parent is not None:
            own_parent.end("failed", message="the batch was interrupted")
        raise
    _await_durable(store_obj, project, run_ids, batch_start)
    if own_parent is not None:
        failed = sum(not result.ok for result in results)
        if failed:
            own_parent.note(f"{failed} of {len(results)} configs failed")
        own_parent.log_metrics({"n_failed": failed, "n_finished": len(results) - failed})
        own_parent.end("finished")
    return results


def _await_durable(
    store: Store,
    project: str,
    run_ids: list[str],
    since: dt.datetime,
    timeout: float | None = None,
) -> None:
    """Wait until every run of the batch has its end event on disk.

    Workers in this process are flushed directly; workers elsewhere (loky, Dask, Ray)
    flush in the background right after each run ends, so the batch's partitions are
    polled, each new file read once, until every run id shows a terminal event. A worker
    that is gone without flushing cannot be waited for: after the timeout the missing
    runs are reported in a warning (the results are returned all the same).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyarrow import fs as pafs

    from ledger.events import TERMINAL_STATUSES
    from ledger.run import flush

    flush()
    missing = set(run_ids)
    seen: set[str] = set()
    if timeout is None:
        timeout = max(30.0, 3 * store.settings.flush_interval)
    deadline = time.monotonic() + timeout
    wanted = pa.array(sorted(missing))
    terminal = pa.array(list(TERMINAL_STATUSES))
    while True:
        today = dt.datetime.now(dt.timezone.utc).date()
        days = [since.date() + dt.timedelta(days=n) for n in range((today - since.date()).days + 1)]
        for day in days:
            selector = pafs.FileSelector(
                store.partition_dir("runs", project, day), allow_not_found=True
            )
            for info in store.fs.get_file_info(selector):
                if (
                    info.base_name.startswith(".")
                    or not info.base_name.endswith(".parquet")
                    or info.path in seen
                ):
                    continue
                seen.add(info.path)
                table = pq.read_table(info.path, columns=["run_id", "event"], filesystem=store.fs)
                mask = pc.and_(
                    pc.is_in(table["run_id"], value_set=wanted),
                    pc.is_in(table["event"], value_set=terminal),
                )
                missing.difference_update(table.filter(mask)["run_id"].to_pylist())
        if not missing:
            return
        if time.monotonic() > deadline:
            log.warning(
                "ledger: %d of %d runs of the batch were not written within %.0f s "
                "(a worker may have died before flushing): %s",
                len(missing),
                len(run_ids),
                timeout,
                ", ".join(sorted(missing)[:5]),
            )
            return
        time.sleep(0.05)
