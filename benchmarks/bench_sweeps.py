"""Tracking overhead on sweeps: an Optuna study and a joblib batch, with and without ledger.

    python benchmarks/bench_sweeps.py            # 200 trials, 64 configs, 3 repeats
    python benchmarks/bench_sweeps.py --quick    # 50 trials, 16 configs, 1 repeat

Study: ``--trials`` trials of a TPE study whose objective does ``--trial-ms`` of fixed
pure-Python work (calibrated at start; it holds the GIL like real Python work, so the
ledger's background flusher competes for it, where ``sleep`` would hide that cost) and
reports 5 intermediate values. Wall time and the process's CPU time (all threads: the
callback and the flusher included) are reported; CPU time barely moves when other
programs load the machine, wall time does.
Variants, each in a fresh store / database, order rotated between repeats:

  * optuna            no tracking
  * ledger            ``ledger.optuna.LedgerCallback`` (parent run + one run per trial)
  * mlflow            ``optuna_integration.mlflow.MLflowCallback`` on MLflow 3's default
                      sqlite store (database created before timing starts)

Batch: ``--configs`` configs of ``--config-ms`` busy work each on joblib/loky with
``--jobs`` workers: plain ``joblib.Parallel`` vs ``ledger.parallel.run_experiments``
(one run per config, each logging 5 metric points). Workers are warmed up first.

Medians and minima over ``--repeats``; overhead = (median - baseline median) / baseline
median, and the same for the minima ("per trial/config ms" uses the minima).
"""

from __future__ import annotations

import argparse
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


def run_study(variant: str, trials: int, trial_ms: float, folder: str) -> tuple[float, float]:
    import optuna

    callbacks = []
    if variant == "ledger":
        from ledger.optuna import LedgerCallback
        from ledger.store import open_store

        store = open_store(os.path.join(folder, "ledger"))
        store.ensure_initialized()
        callbacks.append(LedgerCallback(project="bench", store=store))
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
    if variant == "ledger":
        import ledger

        callbacks[0].end()
        ledger.flush()  # durable before the clock stops
    return time.perf_counter() - started, time.process_time() - cpu


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


def warm_worker() -> None:
    import pyarrow.parquet  # noqa: F401

    import ledger  # noqa: F401
    from ledger.parallel import run_experiments  # noqa: F401

    spin(100_000)


def run_batch(
    variant: str, configs: int, config_ms: float, jobs: int, folder: str
) -> tuple[float, float]:
    import joblib

    items = [{"x": i, "ms": config_ms, "per_ms": _ITERATIONS_PER_MS} for i in range(configs)]
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
    return time.perf_counter() - started, 0.0


# -- reporting -------------------------------------------------------------------------------


def measure(
    fn, variants: list[str], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    walls: dict[str, list[float]] = {v: [] for v in variants}
    cpus: dict[str, list[float]] = {v: [] for v in variants}
    for repeat in range(repeats):
        order = variants[repeat % len(variants) :] + variants[: repeat % len(variants)]
        for variant in order:
            with tempfile.TemporaryDirectory() as folder:
                wall, cpu = fn(variant, folder)
            walls[variant].append(wall)
            cpus[variant].append(cpu)
    return walls, cpus


def table(title: str, times: dict[str, list[float]], baseline: str, units: int, unit: str) -> None:
    """Median and best of each variant; overheads against the baseline's median and best
    (on a shared machine the best of a few repeats is the least disturbed figure)."""
    base = statistics.median(times[baseline])
    base_min = min(times[baseline])
    print(f"\n{title}")
    print(
        f"{'variant':<10} {'median s':>9} {'min s':>8} {'per ' + unit + ' ms':>14} "
        f"{'overhead':>9} {'overhead(min)':>14}"
    )
    for variant, values in times.items():
        median = statistics.median(values)
        extra = (median - base) / base * 100
        extra_min = (min(values) - base_min) / base_min * 100
        per = (min(values) - base_min) / units * 1000
        print(
            f"{variant:<10} {median:>9.3f} {min(values):>8.3f} "
            f"{per:>14.2f} {extra:>8.1f}% {extra_min:>13.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 trials, 16 configs, 1 repeat")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--trial-ms", type=float, default=20.0)
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--config-ms", type=float, default=250.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.configs, args.repeats = 50, 16, 1
    os.environ.setdefault("LEDGER_CAPTURE", "1")
    warnings.filterwarnings("ignore")
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    global _ITERATIONS_PER_MS
    _ITERATIONS_PER_MS = calibrate()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")

    print(
        f"cpus={os.cpu_count()} python={sys.version.split()[0]} optuna={optuna.__version__} "
        f"trials={args.trials}x{args.trial_ms:g}ms configs={args.configs}x{args.config_ms:g}ms "
        f"jobs={args.jobs} repeats={args.repeats} load={os.getloadavg()[0]:.1f}"
    )
    variants = ["optuna", "ledger"]
    try:
        import optuna_integration.mlflow  # noqa: F401

        if not args.no_mlflow:
            variants.append("mlflow")
    except ImportError:
        print("(optuna-integration / mlflow not installed: no MLflow column)")
    # One-time costs a process pays on its first run (pyarrow import in the flusher,
    # environment capture) are paid here, before timing: the tables show per-trial cost.
    with tempfile.TemporaryDirectory() as folder:
        run_study("ledger", 3, 1.0, folder)
    study_times, study_cpu = measure(
        lambda v, folder: run_study(v, args.trials, args.trial_ms, folder), variants, args.repeats
    )
    table(f"Optuna study, {args.trials} trials: wall", study_times, "optuna", args.trials, "trial")
    table(
        f"Optuna study, {args.trials} trials: CPU of the process (all threads)",
        study_cpu,
        "optuna",
        args.trials,
        "trial",
    )

    # Warm the loky pool (worker start-up, and the ledger + pyarrow imports a worker pays
    # once in its life) so the batch timings show the per-config cost.
    import joblib

    joblib.Parallel(n_jobs=args.jobs, backend="loky")(
        joblib.delayed(warm_worker)() for _ in range(args.jobs * 4)
    )
    batch_times, _ = measure(
        lambda v, folder: run_batch(v, args.configs, args.config_ms, args.jobs, folder),
        ["joblib", "ledger"],
        args.repeats,
    )
    table(
        f"joblib batch, {args.configs} configs on {args.jobs} loky workers",
        batch_times,
        "joblib",
        args.configs,
        "config",
    )


if __name__ == "__main__":
    main()
