"""Scale test: a synthetic store of many runs, generated directly as Parquet.

Builds ``events/<kind>/project=<p>/date=<d>/*.parquet`` with the ledger's own writer
settings (same encodings and compression as real flushes), laid out as compaction
leaves it (one file per partition, rows sorted by run, key, step), then times the
interactive questions, each in a fresh process (cold) and repeated (warm), with that
process's peak RSS:

* leaderboard: top 10 runs of one project by best ``val_acc``, filtered on a param;
* diff: params and latest metrics of two runs side by side;
* cost report: cost / energy / emissions per project;
* status: what ``ledger status`` shows;
* one run's points: every metric point of one run.

Each question is the library function its CLI verb calls (``leaderboard``, ``diff``,
``report_costs``, ``status``, ``metric_history``); a failure is reported as one.

Usage::

    python benchmarks/bench_scale.py                      # the full default (see --help)
    python benchmarks/bench_scale.py --quick              # 20,000 runs, 2M points
    python benchmarks/bench_scale.py --runs 1000000 --points 500000000 --store /big/disk

The store is kept (``--store``, default ``benchmarks/.scale-store``) and reused when its
size parameters match, so a second run only re-times the queries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# The default full run is the issue's 1M runs / 500M points (about 5 minutes to generate
# on 2 cores, a few GB on disk); make it smaller with --runs/--points, e.g.
# `--runs 100000 --points 10000000` for a 15-second run.
FULL_RUNS = 1_000_000
FULL_POINTS = 500_000_000
QUICK_RUNS = 20_000
QUICK_POINTS = 2_000_000
PROJECTS = ("vision", "nlp", "speech", "tabular")
DAYS = 50
METRIC_KEYS = ("val_acc", "val_loss", "train_loss", "lr", "grad_norm")
OPTIMIZERS = ("adam", "sgd", "adamw", "lion")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
# Bumped when the generated files change, so a store built by an older generator is
# rebuilt. 2: metrics files have their twin summaries, as real writers leave them.
# 3: cost events as the energy meter writes them (kinds the cost report prices).
# 4: costs files have their twin cost summaries, as real writers leave them (a layout-3
# store is brought to 4 in place by add_cost_summaries, as a compaction would).
LAYOUT = 4


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- generation ---------------------------------------------------------------------------


def run_ids(first: int, count: int) -> list[str]:
    return [f"{index:032x}" for index in range(first, first + count)]


def generate(root: str, runs: int, points: int, seed: int = 7) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    from ledger import events
    from ledger.store import Store
    from ledger.summaries import summarize_twin

    store = Store(root)
    store.ensure_initialized()
    rng = np.random.default_rng(seed)
    partitions = len(PROJECTS) * DAYS
    steps = max(1, points // (runs * len(METRIC_KEYS)))
    per_partition = -(-runs // partitions)
    utc = pa.timestamp("us", tz="UTC")
    written = 0
    started = time.perf_counter()
    for part in range(partitions):
        first = part * per_partition
        count = min(per_partition, runs - first)
        if count <= 0:
            break
        project = PROJECTS[part % len(PROJECTS)]
        day = (T0 + dt.timedelta(days=part // len(PROJECTS))).date()
        ids = run_ids(first, count)
        id_dict = pa.array(ids)
        writer = f"{part:08x}" + "0" * 24
        start_us = (
            int(T0.timestamp() * 1e6)
            + (part // len(PROJECTS)) * 86_400_000_000
            + np.sort(rng.integers(0, 80_000_000_000, count))
        )
        duration_us = rng.integers(60_000_000, 3_600_000_000, count)
        failed = rng.random(count) < 0.08
        experiment = [f"exp-{(first + i) // 50 % 400:03d}" for i in range(count)]

        def write(
            kind: str,
            columns: dict[str, Any],
            name: str = "part-0.parquet",
            project: str = project,
            day: dt.date = day,
        ) -> None:
            nonlocal written
            schema = events.arrow_schema(kind)
            arrays = []
            for field in schema:
                value = columns.get(field.name)
                if value is None:
                    arrays.append(pa.nulls(len(next(iter(columns.values()))), field.type))
                elif isinstance(value, (pa.Array, pa.ChunkedArray)):
                    arrays.append(
                        value
                        if value.type == field.type or pa.types.is_dictionary(value.type)
                        else value.cast(field.type)
                    )
                else:
                    arrays.append(pa.array(value, type=field.type))
            table = pa.Table.from_arrays(arrays, names=schema.names)
            written += store.write_parquet(
                store.partition_dir(kind, project, day), name, table, kind
            )
            if kind in events.TWINS:
                # Every metrics and costs file gets its twin summary, as the writer's
                # flushes and compaction's rewrites do (ledger/summaries.py,
                # ledger/cost_summaries.py).
                written += store.write_parquet(
                    store.partition_dir(events.TWINS[kind], project, day),
                    name,
                    summarize_twin(kind, table),
                    events.TWINS[kind],
                )

        index = np.arange(count)
        # runs: started + finished/failed
        both = np.concatenate([index, index])
        event = ["started"] * count + ["failed" if f else "finished" for f in failed]
        write(
            "runs",
            {
                "event_id": pa.array(
                    [f"{i:032x}" for i in range(2 * first, 2 * first + 2 * count)]
                ),
                "run_id": pa.DictionaryArray.from_arrays(pa.array(both, pa.int32()), id_dict),
                "ts": pa.array(np.concatenate([start_us, start_us + duration_us]), utc),
                "writer_id": pa.array([writer] * (2 * count)),
                "event": pa.array(event),
                "experiment": pa.array(experiment + [None] * count, pa.string()),
                "name": pa.array(
                    [f"run-{first + i}" for i in range(count)] + [None] * count, pa.string()
                ),
                "user": pa.array(["bench"] * count + [None] * count, pa.string()),
                "host": pa.array([f"node-{part % 16:02d}"] * count + [None] * count, pa.string()),
                "message": pa.array(
                    [None] * count + ["RuntimeError: diverged" if f else None for f in failed],
                    pa.string(),
                ),
                "exit_code": pa.array(
                    np.concatenate([np.full(count, -1), failed.astype(np.int64)]),
                    mask=np.concatenate([np.ones(count, bool), np.zeros(count, bool)]),
                ),
            },
        )
        # params: 10 per run
        lr = 10 ** rng.uniform(-5, -1, count)
        values = {
            "lr": [repr(float(v)) for v in lr],
            "batch_size": [str(v) for v in rng.choice([16, 32, 64, 128, 256], count)],
            "optimizer": list(rng.choice(OPTIMIZERS, count)),
            "depth": [str(v) for v in rng.integers(2, 50, count)],
            "dropout": [f"{v:.2f}" for v in rng.uniform(0, 0.5, count)],
            "weight_decay": [repr(float(v)) for v in 10 ** rng.uniform(-6, -2, count)],
            "epochs": [str(v) for v in rng.integers(1, 100, count)],
            "seed": [str(v) for v in rng.integers(0, 10_000, count)],
            "warmup": [str(v) for v in rng.integers(0, 2_000, count)],
            "model": list(rng.choice(["resnet50", "vit-b16", "convnext", "mlp"], count)),
        }
        types = {
            "optimizer": "str",
            "model": "str",
            "lr": "float",
            "dropout": "float",
            "weight_decay": "float",
        }
        keys = list(values)
        write(
            "params",
            {
                "event_id": pa.array([f"{first * 10 + i:031x}p" for i in range(count * len(keys))]),
                "run_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.repeat(index, len(keys)), pa.int32()), id_dict
                ),
                "ts": pa.array(np.repeat(start_us, len(keys)), utc),
                "writer_id": pa.array([writer] * (count * len(keys))),
                "key": pa.array(keys * count),
                "value": pa.array([values[key][i] for i in range(count) for key in keys]),
                "value_type": pa.array(
                    [types.get(key, "int") for _ in range(count) for key in keys]
                ),
            },
        )
        # tags: 2 per run
        write(
            "tags",
            {
                "event_id": pa.array([f"{first * 2 + i:031x}t" for i in range(count * 2)]),
                "run_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.repeat(index, 2), pa.int32()), id_dict
                ),
                "ts": pa.array(np.repeat(start_us, 2), utc),
                "writer_id": pa.array([writer] * (count * 2)),
                "key": pa.array(["team", "stage"] * count),
                "value": pa.array(
                    [
                        value
                        for i in range(count)
                        for value in (f"team-{i % 7}", "dev" if i % 3 else "prod")
                    ]
                ),
            },
        )
        # costs: what the sampler and energy meter write (see cost_columns), as one file
        # per partition sorted by run and time: what `ledger compact` leaves of a day's
        # flushes (with its twin cost summary, as compaction writes it)
        costs = costs_table(cost_columns(first, part, ids, start_us, duration_us, writer, rng))
        write("costs", {name: costs[name] for name in costs.column_names}, name="c-costs.parquet")
        # metrics: sorted by run, key, step (the order compaction writes)
        n_keys = len(METRIC_KEYS)
        rows = count * n_keys * steps
        run_index = np.repeat(index, n_keys * steps).astype(np.int32)
        key_index = np.tile(np.repeat(np.arange(n_keys, dtype=np.int32), steps), count)
        step = np.tile(np.arange(steps, dtype=np.int64), count * n_keys)
        quality = np.repeat(rng.uniform(0.5, 0.99, count), n_keys * steps)
        progress = 1 - np.exp(-(step + 1) / max(1.0, steps / 5))
        noise = rng.normal(0, 0.01, rows)
        value = np.where(
            key_index == 0,
            quality * progress + noise,
            np.where(
                key_index == 3,
                1e-3 * (1 - step / max(1, steps)),
                (1.1 - quality) / progress + noise,
            ),
        )
        ts = np.repeat(start_us, n_keys * steps) + step * 1_000_000 + key_index
        write(
            "metrics",
            {
                "run_id": pa.DictionaryArray.from_arrays(pa.array(run_index), id_dict),
                "key": pa.DictionaryArray.from_arrays(pa.array(key_index), pa.array(METRIC_KEYS)),
                "value": pa.array(value),
                "step": pa.array(step),
                "ts": pa.array(ts, utc),
                "writer_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(rows, np.int32)), pa.array([writer])
                ),
                "seq": pa.array(np.arange(rows, dtype=np.int64)),
            },
        )
        if part % 20 == 0:
            log(
                f"  partition {part + 1}/{partitions}: {written / 2**30:.2f} GiB, "
                f"{time.perf_counter() - started:.0f} s"
            )
    return {
        "runs": runs,
        "points": runs * len(METRIC_KEYS) * steps,
        "steps": steps,
        "bytes": written,
        "seconds": time.perf_counter() - started,
        "layout": LAYOUT,
    }


GPU_MODELS = ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "Tesla T4")
INSTANCE_TYPES = ("g6.xlarge", "p4d.24xlarge", "m5.xlarge", "c5.2xlarge", "x9.unlisted")


def costs_table(by_kind: dict[str, dict[str, Any]]) -> Any:
    """The cost events of one partition (``cost_columns``) as one table sorted by run and
    time, the way compaction rewrites a partition's costs files."""
    import pyarrow as pa

    from ledger import events

    schema = events.arrow_schema("costs")
    tables = []
    for columns in by_kind.values():
        length = len(next(iter(columns.values())))
        arrays = [
            (
                columns[f.name].cast(pa.string())
                if pa.types.is_dictionary(columns[f.name].type)
                else columns[f.name].cast(f.type)
            )
            if f.name in columns
            else pa.nulls(length, f.type)
            for f in schema
        ]
        tables.append(pa.Table.from_arrays(arrays, schema=schema))
    return pa.concat_tables(tables).sort_by([("run_id", "ascending"), ("ts", "ascending")])


def add_cost_summaries(root: str) -> int:
    """Bring a layout-3 store (three costs files per partition, no cost summaries) to
    layout 4 in place: each partition's costs merged into one file sorted by run and time,
    with its twin cost summary, as ``ledger compact`` leaves them; bytes written."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ledger import events
    from ledger.store import Store
    from ledger.summaries import summarize_twin

    store = Store(root)
    store.ensure_initialized()
    base = os.path.join(root, "events", "costs")
    written = 0
    for folder, _, names in sorted(os.walk(base)):
        if "date=" not in folder or "__schema__" in folder:
            continue
        project = folder.split("project=")[1].split(os.sep)[0]
        day = dt.date.fromisoformat(folder.split("date=")[1].split(os.sep)[0])
        old = sorted(name for name in names if name.startswith("part-"))
        if not old:
            continue
        table = pa.concat_tables(
            [pq.read_table(os.path.join(folder, name), partitioning=None) for name in old],
            promote_options="default",
        ).sort_by([("run_id", "ascending"), ("ts", "ascending")])
        table = table.cast(events.arrow_schema("costs"))
        written += store.write_parquet(folder, "c-costs.parquet", table, "costs")
        written += store.write_parquet(
            store.partition_dir("cost_summaries", project, day),
            "c-costs.parquet",
            summarize_twin("costs", table),
            "cost_summaries",
        )
        for name in old:
            os.remove(os.path.join(folder, name))
    return written


def cost_columns(
    first: int, part: int, ids: list[str], start_us: Any, duration_us: Any, writer: str, rng: Any
) -> dict[str, dict[str, Any]]:
    """Cost events as a real run leaves them: one ``resources`` event (hardware and
    placement, JSON attrs) per run, three cumulative ``energy`` events (two metering
    windows and the final one, JSON attrs), and a ``bill`` for 1 run in 100.

    A third of the runs have an instance type (one in five of those not in the catalog,
    so its cost is unknown); the others are priced by core-hours and GPU-hours; 30% have
    GPUs.
    """
    import numpy as np
    import pyarrow as pa

    count = len(ids)
    utc = pa.timestamp("us", tz="UTC")
    id_dict = pa.array(ids)
    index = np.arange(count)
    host = f"node-{part % 16:02d}"
    cores = rng.choice([4, 8, 16, 32], count)
    gpus = np.where(rng.random(count) < 0.3, rng.choice([1, 4, 8], count), 0)
    model = rng.integers(0, len(GPU_MODELS), count)
    placed = rng.random(count) < 0.33
    instance = rng.integers(0, len(INSTANCE_TYPES), count)
    resources_attrs = []
    for i in range(count):
        gpu_model = GPU_MODELS[model[i]] if gpus[i] else None
        facts = {
            "host": host,
            "cpu_cores": int(cores[i]),
            "cpu_count": int(cores[i]) * 2,
            "gpu_count": int(gpus[i]),
            "gpu_model": gpu_model,
            "gpu_models": [gpu_model] * int(gpus[i]),
            "gpu_energy_counter": bool(gpus[i]),
            "instance_type": INSTANCE_TYPES[instance[i]] if placed[i] else None,
            "instance_source": "env:LEDGER_INSTANCE_TYPE" if placed[i] else None,
            "region": "us-east-1" if placed[i] else None,
            "region_source": "env:LEDGER_REGION" if placed[i] else None,
        }
        resources_attrs.append(json.dumps(facts))
    hours = duration_us / 3.6e9
    power_kw = 0.05 * cores / 8 + 0.3 * gpus
    windows = 3
    fraction = np.tile(np.arange(1, windows + 1) / windows, count)
    run = np.repeat(index, windows)
    seconds = np.repeat(duration_us / 1e6, windows) * fraction
    energy = np.repeat(hours * power_kw, windows) * fraction
    gpu_energy = np.repeat(hours * 0.3 * gpus, windows) * fraction
    energy_attrs = [
        json.dumps(
            {
                "host": host,
                "sources": {"cpu": "estimated:codecarbon:tdp", "ram": "estimated:codecarbon"},
                "covered_s": round(float(s), 3),
                "final": bool(f == 1.0),
                "notes": [],
            }
        )
        for s, f in zip(seconds, fraction, strict=True)
    ]
    billed = index[rng.random(count) < 0.01]
    return {
        "resources": {
            "event_id": pa.array([f"{first + i:031x}r" for i in range(count)]),
            "run_id": pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()), id_dict),
            "ts": pa.array(start_us + 1_000_000, utc),
            "writer_id": pa.array([writer] * count),
            "kind": pa.array(["resources"] * count),
            "source": pa.array(["ledger.sampler"] * count),
            "attrs": pa.array(resources_attrs),
        },
        "energy": {
            "event_id": pa.array([f"{(first * windows) + i:031x}e" for i in range(len(run))]),
            "run_id": pa.DictionaryArray.from_arrays(pa.array(run, pa.int32()), id_dict),
            "ts": pa.array(
                np.repeat(start_us, windows)
                + (np.repeat(duration_us, windows) * fraction).astype(np.int64),
                utc,
            ),
            "writer_id": pa.array([writer] * len(run)),
            "kind": pa.array(["energy"] * len(run)),
            "source": pa.array(["codecarbon"] * len(run)),
            "energy_kwh": pa.array(energy),
            "cpu_energy_kwh": pa.array(energy - gpu_energy),
            "gpu_energy_kwh": pa.array(gpu_energy),
            "ram_energy_kwh": pa.array(np.zeros(len(run))),
            "emissions_kg": pa.array(energy * 0.38),
            "measured": pa.array(np.zeros(len(run), bool)),
            "attrs": pa.array(energy_attrs),
        },
        "bill": {
            "event_id": pa.array([f"{first + int(i):031x}b" for i in billed]),
            "run_id": pa.DictionaryArray.from_arrays(pa.array(billed, pa.int32()), id_dict),
            "ts": pa.array(start_us[billed] + duration_us[billed] + 3_600_000_000, utc),
            "writer_id": pa.array([writer] * len(billed)),
            "kind": pa.array(["bill"] * len(billed)),
            "source": pa.array(["aws-cur"] * len(billed)),
            "cost_usd": pa.array(hours[billed] * 1.5),
            "measured": pa.array(np.ones(len(billed), bool)),
        },
    }


# -- the questions ----------------------------------------------------------------------


# Each question is the library call its CLI verb makes ($a, $b: two run ids).
QUESTIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "leaderboard": (
        "ledger.analytics.leaderboard",
        "leaderboard",
        {
            "metric": "val_acc",
            "mode": "max",
            "top": 10,
            "project": "vision",
            "where": "params.optimizer = 'adam'",
        },
    ),
    "diff": ("ledger.analytics.diff", "diff", {"runs": ["$a", "$b"]}),
    "cost report": ("ledger.analytics.costs", "report_costs", {"by": "project"}),
    "status": ("ledger.analytics.monitor", "store_status", {}),
    "one run's points": ("ledger.analytics.runs", "metric_history", {"run_id": "$a"}),
}


def measure(root: str, question: str, repeat: int, a: str, b: str) -> dict[str, Any]:
    """Ask one question ``repeat`` times in this (fresh) process; timings and peak RSS.

    The first call is the cold one: it pays the imports, the connection and the views.
    """
    module_name, function_name, kwargs = QUESTIONS[question]
    started = time.perf_counter()  # the cold call includes importing the ledger
    function = getattr(importlib.import_module(module_name), function_name)
    ids = {"$a": a, "$b": b}
    bound = {
        key: [ids.get(v, v) for v in value] if isinstance(value, list) else ids.get(value, value)
        for key, value in kwargs.items()
    }
    bound["store"] = root
    times = []
    rows = 0
    for _ in range(max(1, repeat)):
        result = function(**bound)
        times.append(time.perf_counter() - started)
        rows = len(getattr(result, "groups", result))  # a cost report: its group rows
        started = time.perf_counter()
    return {
        "question": question,
        "used": f"{module_name}.{function_name}()",
        "cold_s": times[0],
        "warm_s": statistics.median(times[1:]) if len(times) > 1 else times[0],
        "rows": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def du(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(folder, name))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_RUNS:,} runs, {QUICK_POINTS:,} points"
    )
    parser.add_argument("--runs", type=int, help=f"runs (full default {FULL_RUNS:,})")
    parser.add_argument("--points", type=int, help=f"metric points (full default {FULL_POINTS:,})")
    parser.add_argument("--store", help="where to build the store (kept and reused)")
    parser.add_argument("--repeat", type=int, default=4, help="runs per question (1 cold)")
    parser.add_argument("--rebuild", action="store_true", help="regenerate even if present")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    runs = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    points = args.points or (QUICK_POINTS if args.quick else FULL_POINTS)
    root = args.store or os.path.join(HERE, ".scale-store" + ("-quick" if args.quick else ""))
    a, b = f"{7:032x}", f"{runs - 3:032x}"
    if args.measure:
        print(json.dumps(measure(root, args.measure, args.repeat, a, b)))
        return 0

    manifest_path = os.path.join(root, "bench-manifest.json")
    manifest = None
    if os.path.exists(manifest_path) and not args.rebuild:
        with open(manifest_path) as handle:
            manifest = json.load(handle)
        if (manifest["runs"], manifest["requested_points"]) == (runs, points) and manifest.get(
            "layout"
        ) == 3:
            log(f"adding cost summaries to {root} (layout 3 -> {LAYOUT})")
            manifest["bytes"] += add_cost_summaries(root)
            manifest["layout"] = LAYOUT
            with open(manifest_path, "w") as handle:
                json.dump(manifest, handle)
        if (manifest["runs"], manifest["requested_points"], manifest.get("layout")) != (
            runs,
            points,
            LAYOUT,
        ):
            manifest = None
    if manifest is None:
        shutil.rmtree(root, ignore_errors=True)
        log(f"generating {runs:,} runs / {points:,} points under {root}")
        manifest = generate(root, runs, points)
        manifest["requested_points"] = points
        with open(manifest_path, "w") as handle:
            json.dump(manifest, handle)
        fresh = True
    else:
        log(f"reusing {root}")
        fresh = False
    disk = du(os.path.join(root, "events"))

    results = []
    for question in QUESTIONS:
        log(f"timing {question}")
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                question,
                "--store",
                root,
                "--runs",
                str(runs),
                "--points",
                str(points),
                "--repeat",
                str(args.repeat),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            log(done.stderr[-2000:])
            results.append(
                {
                    "question": question,
                    "used": "failed",
                    "cold_s": float("nan"),
                    "warm_s": float("nan"),
                    "rows": 0,
                    "peak_rss_mb": float("nan"),
                }
            )
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"### Scale: {manifest['runs']:,} runs, {manifest['points']:,} metric points")
    print()
    print("| question | cold (new process) | warm (median) | peak RSS | rows | computed by |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r['question']} | {r['cold_s']:.2f} s | {r['warm_s']:.2f} s | "
            f"{r['peak_rss_mb']:,.0f} MB | {r['rows']} | {r['used']} |"
        )
    print()
    print(
        f"- Store: {manifest['runs']:,} runs in {len(PROJECTS)} projects x {DAYS} days, "
        f"{len(METRIC_KEYS)} metrics x {manifest['steps']} steps per run = "
        f"{manifest['points']:,} points; 10 params, 2 tags, 2 run events and 4 cost "
        "events (resources, 3 energy windows) per run, a bill for 1 in 100. One file per "
        "kind and partition, sorted by run/key/step (the layout compaction leaves), each "
        "metrics and costs file with its twin summary (as the writer and compaction write "
        "them)."
    )
    print(
        f"- On disk: {disk / 2**30:.2f} GiB ({disk / manifest['points']:.2f} bytes per "
        "metric point, all kinds included)."
        + (
            f" Generated in {manifest['seconds']:.0f} s."
            if fresh
            else " (Store reused from an earlier run; generation not re-timed.)"
        )
    )
    print(
        "- Cold = first call in a fresh Python process (imports, connect, view creation, "
        "query); warm = median of the next calls in that process, each with a new "
        "connection. Peak RSS is that process's maximum resident set (Python, DuckDB "
        "and the result)."
    )
    print("- Targets (issue 9): every interactive query < 2 s on 2 cores, peak memory < 4 GB.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
