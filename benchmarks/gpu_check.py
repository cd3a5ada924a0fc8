"""Check GPU sampling and NVML energy counters on a real GPU machine; prints a report.

    python benchmarks/gpu_check.py [--seconds 10] [--load]

Needs psutil and nvidia-ml-py; uses torch for ``--load`` when it is installed. Works
with the full ledger install (then it also queries the store) or with just the repo on
``PYTHONPATH`` (then it reads the run's in-memory buffers instead of the store).

1. NVML probe: devices, names, whether every device has the energy counter.
2. Sampling for --seconds at 1 s: NVML energy-counter delta vs the integral of sampled
   power draw (they should agree within a few percent).
3. A real ledger run with the sampler and energy meter: its GPU samples, its
   ``resources`` event and its final ``energy`` event (GPU energy measured by NVML).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _resources_module():
    try:
        from ledger.adapters import resources

        return resources
    except ImportError:  # repo on PYTHONPATH without the package-dir install
        sys.path.insert(0, ROOT)
        import ledger  # noqa: F401

        spec = importlib.util.spec_from_file_location(
            "ledger.adapters.resources", os.path.join(ROOT, "adapters", "resources.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["ledger.adapters"] = type(sys)("ledger.adapters")
        sys.modules["ledger.adapters.resources"] = module
        spec.loader.exec_module(module)
        return module


def _load(stop: threading.Event) -> str:
    try:
        import torch
    except ImportError:
        return "no torch: GPU idle"
    if not torch.cuda.is_available():
        return "torch without CUDA: GPU idle"
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)

    def spin() -> None:
        while not stop.is_set():
            for _ in range(20):
                a @ a
            torch.cuda.synchronize()

    threading.Thread(target=spin, daemon=True).start()
    return f"torch {torch.__version__}: fp16 matmul load"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--load", action="store_true", help="Keep the GPU busy (needs torch).")
    args = parser.parse_args()
    resources = _resources_module()

    print("== 1. NVML probe")
    gpus = resources.Gpus()
    print(
        json.dumps(
            {"error": gpus.error, "devices": gpus.names, "energy_counter": gpus.energy_counter},
            indent=2,
        )
    )
    if gpus.error:
        print("No usable GPU: nothing more to check here.")
        return 1

    stop = threading.Event()
    load = _load(stop) if args.load else "no load requested: GPU idle"
    print(f"load: {load}")

    print(f"== 2. sampling {args.seconds:.0f} s at 1 s")
    start_mj = gpus.total_energy_mj()
    power_j = 0.0
    last = time.monotonic()
    rows = []
    for _ in range(max(1, round(args.seconds))):
        time.sleep(1.0)
        now = time.monotonic()
        sample = gpus.sample(time.time())
        rows.extend(sample)
        power_j += sum(v for _, k, v, _ in sample if k == "power_w") * (now - last)
        last = now
    end_mj = gpus.total_energy_mj()
    keys = sorted({(d, k) for d, k, _, _ in rows})
    latest = {(d, k): v for d, k, v, _ in rows}
    for device, key in keys:
        print(f"  {device:6} {key:28} {latest[(device, key)]:.6g}")
    if start_mj is not None and end_mj is not None:
        counter_j = (end_mj - start_mj) / 1000
        print(
            f"energy counter delta: {counter_j:.1f} J; integral of sampled power: "
            f"{power_j:.1f} J; ratio {counter_j / power_j if power_j else float('nan'):.3f}"
        )
    else:
        print("energy counter: not available on these devices")

    print("== 3. a real ledger run with the sampler and energy meter")
    import ledger

    store = tempfile.mkdtemp(prefix="ledger-gpu-check-")
    os.environ.setdefault("LEDGER_CARBON_INTERVAL", "2")
    os.environ.setdefault("LEDGER_FLUSH_INTERVAL", "1")
    have_stack = importlib.util.find_spec("duckdb") is not None
    run = ledger.start_run("gpu-check", "nvml", "check", store=store)
    time.sleep(max(6.0, args.seconds))
    buffered = list(run._buffer.system)
    run.end(wait=have_stack)
    stop.set()
    if have_stack:
        print(
            ledger.query(
                "SELECT device, key, count(*) AS n, avg(value) AS mean, "
                "max(value) AS max FROM system_metrics WHERE device LIKE 'gpu%' "
                "GROUP BY ALL ORDER BY 1, 2",
                store,
            )
        )
        costs = ledger.query(
            "SELECT kind, source, energy_kwh, gpu_energy_kwh, measured, attrs "
            "FROM costs ORDER BY ts",
            store,
        )
        for row in costs.iter_rows(named=True):
            print(json.dumps(row, default=str))
    elif importlib.util.find_spec("pyarrow") is not None:
        # No DuckDB (e.g. a bare GPU box with torch's numpy/pyarrow): read the Parquet
        # files the run wrote with pyarrow alone.
        ledger.flush()
        table = run.store.dataset("system").to_table(columns=["device", "key", "value"])
        counts: dict[tuple[str, str], list[float]] = {}
        for device, key, value in zip(
            *(table.column(c).to_pylist() for c in ("device", "key", "value")), strict=True
        ):
            if device.startswith("gpu"):
                counts.setdefault((device, key), []).append(value)
        print(f"GPU samples written to Parquet: {sum(len(v) for v in counts.values())}")
        for (device, key), values in sorted(counts.items()):
            print(f"  {device:6} {key:28} n={len(values):3} mean={sum(values) / len(values):.6g}")
    else:
        gpu_rows = [r for r in buffered if r[0].startswith("gpu")]
        print(f"GPU samples buffered for the run (not yet flushed): {len(gpu_rows)}")
        for row in gpu_rows[-8:]:
            print("  ", row[:3])
        events = [row for kind, _, row in run._writer._events if kind == "costs"]
        for row in events:
            print(
                json.dumps(
                    {
                        k: row.get(k)
                        for k in (
                            "kind",
                            "source",
                            "energy_kwh",
                            "gpu_energy_kwh",
                            "measured",
                            "attrs",
                        )
                    },
                    default=str,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
