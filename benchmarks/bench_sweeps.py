"""Tracking overhead on sweeps: an Optuna study and a joblib batch, with and without ledger.

    python benchmarks/bench_sweeps.py            # 200 trials, 64 configs, 6 rounds
    python benchmarks/bench_sweeps.py --quick    # 50 trials, 16 configs, 2 rounds

Study: ``--trials`` trials of a TPE study whose objective does ``--trial-ms`` of fixed
pure-Python work (calibrated at start; it holds the GIL like real Python work, so the
ledger's background flusher competes for it, where ``sleep`` would hide that cost) and
reports 5 intermediate values. Variants, each in a fresh store / database:

  * optuna            no tracking
  * ledger            ``ledger.optuna.LedgerCallback`` (parent run + one run per trial)
  * mlflow            ``optuna_integration.mlflow.MLflowCallback`` on MLflow 3's default
                      sqlite store (database created before timing starts); only in the
                      first ``--mlflow-rounds`` rounds (it is 3-5x slower)

Batch: ``--configs`` configs of ``--config-ms`` busy work each on joblib/loky with
``--jobs`` workers: plain ``joblib.Parallel`` vs ``ledger.parallel.run_experiments``
(one run per config, each logging 5 metric points). Workers are warmed up first.

The machine this runs on is usually shared, so a single wall-clock ratio means little.
The variants therefore run in ABAB rounds (the order flips every round) and each round
gives a *paired* overhead, (with - without) / without, measured seconds apart; the
report gives the median of the paired overheads and their spread (min and max), next to
the medians of each variant. Two direct measures that load barely moves complete it:

  * study: the ledger's own CPU time per trial = CPU time of the callback (thread CPU
    clock around each call, plus ending the study's run and the final flush) + CPU time
    of the ledger's background threads (the writer), over the trials;
  * batch: the CPU time of the loky workers (all their threads), paired like wall time;
    and the ledger's CPU time per config = process CPU time (all threads) of
    ``run_experiments`` on the sequential backend over 16 of the configs minus the CPU
    time of their work (measured around it): everything a worker spends on tracking a
    config, the batch's own parent run and final wait shared out among them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


_ITERATIONS_PER_MS = 0


def calibrate() -> int:
    """Loop iterations per millisecond of this CPU (best of several tries)."""
    best = 0.0
    for _ in range(7):
        started = time.perf_counter()
        spin(200_000)
        best = max(best, 200_000 / ((time.perf_counter() - started) * 1000))
    return int(best)


def spin(iterations: int) -> float:
    x = 0.0
    for _ in range(iterations):
        x += 1.0
    return x


def busy(ms: float, per_ms: int | None = None) -> float:
    """A fixed amount of pure-Python work (``ms`` milliseconds on an idle core): it holds
    the GIL like real Python work, and takes longer, not shorter, on a busy machine."""
    return spin(int(ms * (per_ms or _ITERATIONS_PER_MS)))


# -- the study -------------------------------------------------------------------------------


def make_objective(trial_ms: float):
    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        y = trial.suggest_int("y", 0, 10)
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        for step in range(5):
            busy(trial_ms / 5)
            trial.report((x - 2) ** 2 + y + step, step)
        return (x - 2) ** 2 + y + (kind == "b")

    return objective


class TimedCallback:
    """Wraps a callback and adds up the CPU time of the calling thread spent in it."""

    def __init__(self, callback) -> None:
        self.callback = callback
        self.cpu = 0.0

    def __call__(self, study, trial) -> None:
        started = time.thread_time()
        self.callback(study, trial)
        self.cpu += time.thread_time() - started


def ledger_thread_cpu() -> dict[int, float]:
    """CPU seconds used so far by each of the ledger's background threads (writer, capture)."""
    import threading

    cpu = {}
    for thread in threading.enumerate():
        if thread.name.startswith("ledger") and thread.ident is not None:
            with contextlib.suppress(OSError, ProcessLookupError):
                cpu[thread.ident] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return cpu


def run_study(
    variant: str, trials: int, trial_ms: float, folder: str
) -> tuple[float, float, float]:
    """Wall seconds, process CPU seconds, and the ledger's own CPU seconds (0 without it)."""
    import optuna

    callbacks: list = []
    threads_before: dict[int, float] = {}
    if variant == "ledger":
        from ledger.optuna import LedgerCallback
        from ledger.store import open_store

        store = open_store(os.path.join(folder, "ledger"))
        store.ensure_initialized()
        callbacks.append(TimedCallback(LedgerCallback(project="bench", store=store)))
        threads_before = ledger_thread_cpu()
    elif variant == "mlflow":
        import mlflow
        from optuna_integration.mlflow import MLflowCallback

        uri = f"sqlite:///{os.path.join(folder, 'mlflow.db')}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("warmup")  # creates the database outside the timing
        callbacks.append(MLflowCallback(tracking_uri=uri, metric_name="value"))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    started, cpu = time.perf_counter(), time.process_time()
    study.optimize(make_objective(trial_ms), n_trials=trials, callbacks=callbacks)
    own = 0.0
    if variant == "ledger":
        import ledger

        ending = time.thread_time()
        callbacks[0].callback.end()
        ledger.flush()  # durable before the clock stops
        own = callbacks[0].cpu + time.thread_time() - ending
        own += sum(
            cpu - threads_before.get(ident, 0.0) for ident, cpu in ledger_thread_cpu().items()
        )
    return time.perf_counter() - started, time.process_time() - cpu, own


# -- the batch -------------------------------------------------------------------------------


def plain_task(config: dict, config_ms: float) -> float:
    busy(config_ms, config["per_ms"])
    return config["x"] * 2.0


def ledger_task(config: dict) -> float:
    import ledger

    for step in range(5):
        busy(config["ms"] / 5, config["per_ms"])
        ledger.log_metric("loss", 1.0 / (step + 1 + config["x"]), step=step)
    return config["x"] * 2.0


def warm_worker(store: str) -> None:
    """Pay a worker's one-time costs before timing: imports, and the environment capture
    of its first run (a few seconds of a background thread under load)."""
    import threading

    import ledger

    with ledger.start_run("warm", store=store):
        spin(100_000)
    while any(thread.name == "ledger-capture" for thread in threading.enumerate()):
        time.sleep(0.05)
    ledger.flush()


def run_batch(
    variant: str, configs: int, config_ms: float, jobs: int, folder: str
) -> tuple[float, float, float]:
    import joblib

    items = [{"x": i, "ms": config_ms, "per_ms": _ITERATIONS_PER_MS} for i in range(configs)]
    workers_before = workers_cpu()
    started = time.perf_counter()
    if variant == "joblib":
        joblib.Parallel(n_jobs=jobs, backend="loky")(
            joblib.delayed(plain_task)(item, config_ms) for item in items
        )
    else:
        from ledger.parallel import run_experiments

        results = run_experiments(
            items, ledger_task, n_jobs=jobs, backend="loky", store=os.path.join(folder, "ledger")
        )
        assert all(r.ok for r in results)
    wall = time.perf_counter() - started
    after = workers_cpu()
    spent = sum(cpu - workers_before.get(pid, 0.0) for pid, cpu in after.items())
    return wall, spent, 0.0


def workers_cpu() -> dict[int, float]:
    """CPU seconds (user + system, all threads) of each child process (the loky workers)."""
    import psutil

    cpu = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            cpu[child.pid] = times.user + times.system
    return cpu


_WORK_CPU = [0.0]


def measured_task(config: dict) -> float:
    """``ledger_task``, adding up the thread CPU time of its work (sequential backend)."""
    import ledger

    for step in range(5):
        started = time.thread_time()
        busy(config["ms"] / 5, config["per_ms"])
        _WORK_CPU[0] += time.thread_time() - started
        ledger.log_metric("loss", 1.0 / (step + 1 + config["x"]), step=step)
    return config["x"] * 2.0


def batch_cpu_per_config(configs: int, config_ms: float, folder: str) -> tuple[float, float]:
    """The tracking CPU time of one config, and the work's: ``run_experiments`` on the
    sequential backend (in this process), all threads' CPU time minus the work's own."""
    from ledger.parallel import run_experiments

    items = [{"x": i, "ms": config_ms, "per_ms": _ITERATIONS_PER_MS} for i in range(configs)]
    store = os.path.join(folder, "ledger")
    run_experiments(items[:2], measured_task, backend="sequential", store=store)  # warm
    _WORK_CPU[0] = 0.0
    cpu = time.process_time()
    results = run_experiments(items, measured_task, backend="sequential", store=store)
    assert all(r.ok for r in results)
    total = time.process_time() - cpu
    return (total - _WORK_CPU[0]) / configs, _WORK_CPU[0] / configs


# -- reporting -------------------------------------------------------------------------------


def measure(
    fn, baseline: str, variant: str, rounds: int, extra: str | None = None, extra_rounds: int = 0
) -> dict[str, list[tuple[float, float, float]]]:
    """ABAB rounds: baseline and variant back to back, the order flipped every round (and
    ``extra`` after them in its first ``extra_rounds`` rounds). Round r of every variant
    is paired with round r of the baseline."""
    results: dict[str, list[tuple[float, float, float]]] = {baseline: [], variant: []}
    if extra:
        results[extra] = []
    for round_ in range(rounds):
        order = [baseline, variant] if round_ % 2 == 0 else [variant, baseline]
        if extra and round_ < extra_rounds:
            order.append(extra)
        for name in order:
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
                results[name].append(fn(name, folder))
        print(
            f"  round {round_ + 1}/{rounds}: "
            + "  ".join(f"{name} {results[name][-1][0]:.2f}s" for name in order)
            + f"  load={os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return results


def paired_table(
    title: str,
    results: dict[str, list[tuple[float, float, float]]],
    baseline: str,
    column: int,
    units: int,
    unit: str,
) -> dict[str, float]:
    """Median seconds of each variant, and the paired overheads against the baseline run of
    the same round: their median and their range. Returns the median paired overheads."""
    base = [row[column] for row in results[baseline]]
    print(f"\n{title}")
    print(
        f"{'variant':<8} {'rounds':>6} {'median s':>9} {'per ' + unit + ' ms':>13} "
        f"{'paired overhead: median':>24} {'min':>7} {'max':>7}"
    )
    medians = {}
    for name, rows in results.items():
        values = [row[column] for row in rows]
        # mlflow runs only in the first rounds: pair it with those rounds' baselines
        pairs = [(v - b) / b * 100 for v, b in zip(values, base, strict=False)]
        extra_ms = (
            statistics.median(v - b for v, b in zip(values, base, strict=False)) / units * 1000
        )
        medians[name] = statistics.median(pairs)
        print(
            f"{name:<8} {len(values):>6} {statistics.median(values):>9.3f} {extra_ms:>13.2f} "
            f"{statistics.median(pairs):>23.1f}% {min(pairs):>6.1f}% {max(pairs):>6.1f}%"
        )
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 trials, 16 configs, 2 rounds")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--trial-ms", type=float, default=20.0)
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--config-ms", type=float, default=250.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6, help="ABAB rounds (pairs)")
    parser.add_argument("--mlflow-rounds", type=int, default=2)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.configs, args.rounds, args.mlflow_rounds = 50, 16, 2, 1
    os.environ.setdefault("LEDGER_CAPTURE", "1")
    warnings.filterwarnings("ignore")
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    global _ITERATIONS_PER_MS
    _ITERATIONS_PER_MS = calibrate()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")

    load = os.getloadavg()
    print(
        f"cpus={os.cpu_count()} python={sys.version.split()[0]} optuna={optuna.__version__} "
        f"trials={args.trials}x{args.trial_ms:g}ms configs={args.configs}x{args.config_ms:g}ms "
        f"jobs={args.jobs} rounds={args.rounds} load={load[0]:.1f},{load[1]:.1f},{load[2]:.1f}"
    )
    extra = None
    try:
        import optuna_integration.mlflow  # noqa: F401

        if not args.no_mlflow and args.mlflow_rounds > 0:
            extra = "mlflow"
    except ImportError:
        print("(optuna-integration / mlflow not installed: no MLflow column)")
    # One-time costs a process pays on its first run (pyarrow import in the flusher,
    # environment capture) are paid here, before timing: the tables show per-trial cost.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
        run_study("ledger", 3, 1.0, folder)
    began = time.perf_counter()
    study = measure(
        lambda v, folder: run_study(v, args.trials, args.trial_ms, folder),
        "optuna",
        "ledger",
        args.rounds,
        extra,
        args.mlflow_rounds,
    )
    title = f"Optuna study, {args.trials} trials x {args.trial_ms:g} ms"
    paired_table(f"{title}: wall", study, "optuna", 0, args.trials, "trial")
    paired_table(
        f"{title}: CPU of the process (all threads)", study, "optuna", 1, args.trials, "trial"
    )
    own = [row[2] / args.trials * 1000 for row in study["ledger"]]
    trial_cpu = statistics.median(row[1] for row in study["optuna"]) / args.trials * 1000
    print(
        "ledger's own CPU per trial (callback + its threads): "
        f"median {statistics.median(own):.3f} ms (min {min(own):.3f}, max {max(own):.3f}) = "
        f"{statistics.median(own) / trial_cpu * 100:.2f}% of an untracked trial's "
        f"{trial_cpu:.1f} ms of CPU (objective + sampler)"
    )

    if not args.skip_batch:
        # Warm the loky pool (worker start-up, and the ledger + pyarrow imports a worker
        # pays once in its life) so the batch timings show the per-config cost.
        import joblib

        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
            joblib.Parallel(n_jobs=args.jobs, backend="loky")(
                joblib.delayed(warm_worker)(folder) for _ in range(args.jobs * 4)
            )
        batch = measure(
            lambda v, folder: run_batch(v, args.configs, args.config_ms, args.jobs, folder),
            "joblib",
            "ledger",
            args.rounds,
        )
        paired_table(
            f"joblib batch, {args.configs} configs x {args.config_ms:g} ms on {args.jobs} "
            "loky workers: wall",
            batch,
            "joblib",
            0,
            args.configs,
            "config",
        )
        paired_table(
            "joblib batch: CPU of the workers (all their threads; the work is the same)",
            batch,
            "joblib",
            1,
            args.configs,
            "config",
        )
        measured = []
        for _ in range(3):
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as folder:
                measured.append(batch_cpu_per_config(min(args.configs, 16), args.config_ms, folder))
        own = statistics.median(m[0] for m in measured) * 1000
        work = statistics.median(m[1] for m in measured) * 1000
        print(
            f"ledger's own CPU per config (sequential backend, {args.config_ms:g} ms configs, "
            f"all threads minus the work): median {own:.2f} ms "
            f"(min {min(m[0] for m in measured) * 1000:.2f}, "
            f"max {max(m[0] for m in measured) * 1000:.2f}) = {own / work * 100:.2f}% of the "
            f"config's {work:.0f} ms of CPU"
        )
    load = os.getloadavg()
    print(
        f"\nload at the end={load[0]:.1f},{load[1]:.1f},{load[2]:.1f}; "
        f"benchmark took {time.perf_counter() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
