"""Monitoring latency on a synthetic store: the runs table, a run page, and `ledger status`.

    python benchmarks/bench_monitor.py                 # 100,000 runs (the target store)
    python benchmarks/bench_monitor.py --quick         # 5,000 runs
    python benchmarks/bench_monitor.py --scale-store benchmarks/.scale-store --scale-only

The store is written straight to Parquet in the store's layout (as many flushes would),
once, and reused from --store on later invocations. Each run has a start, an environment
event (~0.6 KB), an end (10% failed; 20 runs still running with fresh heartbeats), three
params, a tag, two metrics x 20 steps, and one cost record; running runs also have system
samples. Latencies are over HTTP to a live `ledger serve` (what a browser waits for) and
of the library call behind `ledger status` (also each `--watch` refresh), plus cold
`ledger status` processes. ``--scale-store`` adds `ledger status`/`watch` over the
issue-9 1,000,000-run store (read through symlinks, never written).

Targets (issue 8): runs table and run page p50 < 200 ms; status < 500 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import pyarrow as pa

from ledger import events
from ledger.store import open_store

PROJECTS = ("vision", "nlp", "speech", "rl")
SCALE_STORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".scale-store")
"""Where ``bench_scale.py`` keeps its 1,000,000-run store (used when present)."""
DAYS = 60
STEPS = 20
RUNNING = 20


def _table(kind: str, columns: dict[str, list]) -> pa.Table:
    schema = events.arrow_schema(kind)
    n = len(next(iter(columns.values())))
    arrays = []
    for field in schema:
        values = columns.get(field.name)
        arrays.append(pa.nulls(n, field.type) if values is None else pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def build(path: str, n_runs: int) -> None:
    store = open_store(path)
    store.ensure_initialized()
    now = dt.datetime.now(dt.timezone.utc)
    env = json.dumps(
        {
            "git": {"commit": "0" * 40, "branch": "main", "dirty": False},
            "python": {"version": "3.11.7"},
            "command": ["python", "train.py", "--epochs", "3"],
            "host": {"os": "Linux", "cpu": "x86_64", "cpus": 16},
            "packages": {f"pkg{i}": "1.0.0" for i in range(20)},
        }
    )
    per_part: dict[tuple[str, dt.date], list[int]] = {}
    for i in range(n_runs):
        project = PROJECTS[i % len(PROJECTS)]
        day = (now - dt.timedelta(days=DAYS * (n_runs - 1 - i) / n_runs)).date()
        per_part.setdefault((project, day), []).append(i)
    for (project, day), ids in per_part.items():
        runs: dict[str, list] = {k: [] for k in ("event_id", "run_id", "ts", "writer_id", "event",
                                                   "experiment", "name", "user", "host", "message",
                                                   "attrs")}  # fmt: skip
        params: dict[str, list] = {k: [] for k in ("event_id", "run_id", "ts", "writer_id", "key",
                                                     "value", "value_type")}  # fmt: skip
        tags: dict[str, list] = {k: [] for k in ("event_id", "run_id", "ts", "writer_id", "key",
                                                   "value")}  # fmt: skip
        metrics: dict[str, list] = {k: [] for k in ("run_id", "key", "value", "step", "ts",
                                                      "writer_id", "seq")}  # fmt: skip
        costs: dict[str, list] = {k: [] for k in ("event_id", "run_id", "ts", "writer_id",
                                                    "kind", "source", "cost_usd",
                                                    "energy_kwh")}  # fmt: skip
        system: dict[str, list] = {k: [] for k in ("run_id", "ts", "writer_id", "seq", "device",
                                                     "key", "value")}  # fmt: skip
        seq = 0
        for i in ids:
            run_id = f"{i:032x}"
            running = i >= n_runs - RUNNING
            start = (
                now - dt.timedelta(minutes=30)
                if running
                else dt.datetime.combine(day, dt.time(12), dt.timezone.utc)
                + dt.timedelta(seconds=i % 3600)
            )
            end = start + dt.timedelta(seconds=60 + i % 600)
            status = "failed" if i % 10 == 3 else "finished"

            def run_event(event: str, ts: dt.datetime, runs=runs, run_id=run_id, **extra) -> None:
                runs["event_id"].append(f"{run_id}{event}")
                runs["run_id"].append(run_id)
                runs["ts"].append(ts)
                runs["writer_id"].append("bench")
                runs["event"].append(event)
                for key in ("experiment", "name", "user", "host", "message", "attrs"):
                    runs[key].append(extra.get(key))

            run_event("started", start, experiment=f"exp-{i % 50}", name=f"run-{i}",
                      user="alice", host="gpu-1")  # fmt: skip
            run_event("environment", start, attrs=env)
            if running:
                run_event("heartbeat", now - dt.timedelta(seconds=5))
            else:
                run_event(
                    status, end, message="RuntimeError: diverged" if status == "failed" else None
                )
            for key, value, vtype in (("lr", f"{0.001 * (1 + i % 7):g}", "float"),
                                      ("batch_size", str(2 ** (5 + i % 4)), "int"),
                                      ("ledger.total_steps", str(STEPS * 5), "int")):  # fmt: skip
                params["event_id"].append(f"{run_id}p{key}")
                params["run_id"].append(run_id)
                params["ts"].append(start)
                params["writer_id"].append("bench")
                params["key"].append(key)
                params["value"].append(value)
                params["value_type"].append(vtype)
            tags["event_id"].append(f"{run_id}t")
            tags["run_id"].append(run_id)
            tags["ts"].append(start)
            tags["writer_id"].append("bench")
            tags["key"].append("team")
            tags["value"].append("cv" if i % 2 else "nlp")
            span = (now - start) if running else (end - start)
            for step in range(STEPS):
                ts = start + span * (step + 1) / STEPS
                for key, value in (("loss", 1.0 / (step + 1 + i % 5)), ("acc", step / STEPS)):
                    metrics["run_id"].append(run_id)
                    metrics["key"].append(key)
                    metrics["value"].append(value)
                    metrics["step"].append(step)
                    metrics["ts"].append(ts)
                    metrics["writer_id"].append("bench")
                    metrics["seq"].append(seq)
                    seq += 1
            costs["event_id"].append(f"{run_id}c")
            costs["run_id"].append(run_id)
            costs["ts"].append(end if not running else now)
            costs["writer_id"].append("bench")
            costs["kind"].append("compute")
            costs["source"].append("bench")
            costs["cost_usd"].append(0.01 * (1 + i % 100))
            costs["energy_kwh"].append(0.002 * (1 + i % 50))
            if running:
                for k in range(120):
                    for device, key in (("cpu", "cpu_percent"), ("gpu0", "gpu_utilization")):
                        system["run_id"].append(run_id)
                        system["ts"].append(now - dt.timedelta(seconds=5 * k))
                        system["writer_id"].append("bench")
                        system["seq"].append(seq)
                        system["device"].append(device)
                        system["key"].append(key)
                        system["value"].append(50.0 + k % 40)
                        seq += 1
        name = f"bench-{project}-{day.isoformat()}.parquet"
        tables = (("runs", runs), ("params", params), ("tags", tags), ("metrics", metrics),
                  ("costs", costs), ("system", system))  # fmt: skip
        for kind, columns in tables:
            if columns["run_id"]:
                store.write_parquet(
                    store.partition_dir(kind, project, day), name, _table(kind, columns), kind
                )


def heartbeat(path: str, n_runs: int) -> None:
    """Fresh heartbeats for the still-running runs (a reused store's went stale)."""
    store = open_store(path)
    now = dt.datetime.now(dt.timezone.utc)
    for project in PROJECTS:
        ids = [f"{i:032x}" for i in range(n_runs - RUNNING, n_runs) if PROJECTS[i % 4] == project]
        n = len(ids)
        table = _table(
            "runs",
            {"event_id": [f"{r}hb{now.timestamp()}" for r in ids], "run_id": ids,
             "ts": [now] * n, "writer_id": ["bench"] * n, "event": ["heartbeat"] * n},
        )  # fmt: skip
        name = f"bench-heartbeat-{int(now.timestamp())}.parquet"
        store.write_parquet(store.partition_dir("runs", project, now.date()), name, table, "runs")


def scale_overlay(scale_root: str, path: str, n_live: int = RUNNING) -> None:
    """A store that reads ``scale_root`` (the issue-9 scale store, left untouched) through
    symlinked partition directories, plus ``n_live`` running runs and a few recently
    failed ones in a project of their own, dated now: `ledger status` over a
    1,000,000-run store with something to show."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    events_dir = os.path.join(scale_root, "events")
    for kind in os.listdir(events_dir):
        for project in os.listdir(os.path.join(events_dir, kind)):
            target = os.path.join(path, "events", kind, project)
            os.makedirs(target)
            for day in os.listdir(os.path.join(events_dir, kind, project)):
                os.symlink(os.path.join(events_dir, kind, project, day), os.path.join(target, day))
    store = open_store(path)
    store.ensure_initialized()
    now = dt.datetime.now(dt.timezone.utc)
    runs: dict[str, list] = {k: [] for k in ("event_id", "run_id", "ts", "writer_id", "event",
                                               "experiment", "name", "message")}  # fmt: skip
    metrics: dict[str, list] = {k: [] for k in ("run_id", "key", "value", "step", "ts",
                                                  "writer_id", "seq")}  # fmt: skip
    system: dict[str, list] = {k: [] for k in ("run_id", "ts", "writer_id", "seq", "device",
                                                 "key", "value")}  # fmt: skip
    params: dict[str, list] = {k: [] for k in ("event_id", "run_id", "ts", "writer_id", "key",
                                                 "value", "value_type")}  # fmt: skip
    seq = 0
    for i in range(n_live + 5):
        run_id, running = f"live{i:028x}", i < n_live
        start = now - dt.timedelta(minutes=30)
        last = "heartbeat" if running else "failed"
        for event, ts in (("started", start), (last, now - dt.timedelta(seconds=5))):
            runs["event_id"].append(f"{run_id}{event}")
            runs["run_id"].append(run_id)
            runs["ts"].append(ts)
            runs["writer_id"].append("bench")
            runs["event"].append(event)
            runs["experiment"].append("live")
            runs["name"].append(f"live-{i}")
            runs["message"].append(None if running else "RuntimeError: diverged")
        params["event_id"].append(f"{run_id}total")
        params["run_id"].append(run_id)
        params["ts"].append(start)
        params["writer_id"].append("bench")
        params["key"].append("ledger.total_steps")
        params["value"].append("1000")
        params["value_type"].append("int")
        for step in range(200):
            for key in ("loss", "acc"):
                metrics["run_id"].append(run_id)
                metrics["key"].append(key)
                metrics["value"].append(1.0 / (step + 1))
                metrics["step"].append(step)
                metrics["ts"].append(start + dt.timedelta(seconds=8 * step))
                metrics["writer_id"].append("bench")
                metrics["seq"].append(seq)
                seq += 1
        for k in range(120):
            system["run_id"].append(run_id)
            system["ts"].append(now - dt.timedelta(seconds=5 * k))
            system["writer_id"].append("bench")
            system["seq"].append(seq)
            system["device"].append("gpu0")
            system["key"].append("gpu_utilization")
            system["value"].append(50.0 + k % 40)
            seq += 1
    for kind, columns in (("runs", runs), ("params", params), ("metrics", metrics),
                          ("system", system)):  # fmt: skip
        store.write_parquet(
            store.partition_dir(kind, "live", now.date()), "bench-live.parquet",
            _table(kind, columns), kind,
        )  # fmt: skip


def _process(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process running ``argv``."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr.read().decode()[-2000:]}")
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024


def scale(scale_root: str, repeat: int) -> None:
    """`ledger status` (one shot, --watch refresh) and one `ledger watch` pass over the
    issue-9 scale store with live runs added (see :func:`scale_overlay`)."""
    from ledger.adapters.notify import watch
    from ledger.analytics import monitor
    from ledger.analytics.alerts import load_rules

    with open(os.path.join(scale_root, "bench-manifest.json")) as handle:
        manifest = json.load(handle)
    path = os.path.join(tempfile.gettempdir(), "ledger-bench-monitor-scale")
    scale_overlay(scale_root, path)
    print(f"scale store: {manifest['runs']:,} runs, {manifest['points']:,} points "
          f"(+{RUNNING} running, 5 failed just now); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    # Cold processes first: a child's peak RSS counts what it inherited from this
    # process before exec, so measure them while this process is still small.
    samples, peaks = [], []
    for _ in range(max(3, repeat // 3)):
        wall, peak = _process([sys.executable, "-m", "ledger", "status", "--store", path,
                               "--format", "json"])  # fmt: skip
        samples.append(wall)
        peaks.append(peak)
    print(f"{'ledger status (cold process, end to end)':42s} {_percentiles(samples)}   "
          f"peak RSS {max(peaks):.0f} MB")  # fmt: skip
    wall, peak = _process([sys.executable, "-m", "ledger", "watch", "--once", "--store", path])
    print(f"{'ledger watch --once (cold process)':42s} {wall * 1000:7.1f} ms   "
          f"peak RSS {peak:.0f} MB")  # fmt: skip
    rows = monitor.store_status(path)
    assert len(rows) == RUNNING + 5, len(rows)
    refresh = []
    for _ in range(repeat):
        started = time.perf_counter()
        monitor.store_status(path)  # what each `ledger status --watch` refresh runs
        refresh.append(time.perf_counter() - started)
    print(f"{'status --watch refresh (in process)':42s} {_percentiles(refresh)}")
    rules = load_rules(open_store(path).read_config(), webhook=None, exec_cmd=None)
    passes = []
    for _ in range(3):
        started = time.perf_counter()
        watch(path, rules, once=True, on_pass=lambda result: None)
        passes.append(time.perf_counter() - started)
    print(f"{'ledger watch pass (in process)':42s} {_percentiles(passes)}")


def _percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


def _http(port: int, path: str) -> bytes:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    con.request("GET", path)
    response = con.getresponse()
    body = response.read()
    con.close()
    assert response.status == 200, (path, response.status, body[:200])
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--store", help="Store to build or reuse (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--scale-store",
        help="Also time `ledger status`/`watch` over this issue-9 scale store (read only, "
        "through symlinks, with live runs added beside it)",
    )
    parser.add_argument("--scale-only", action="store_true", help="Only the --scale-store part")
    parser.add_argument("--quick", action="store_true", help="5,000 runs, fewer repeats")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeat = min(args.runs, 5_000), min(args.repeat, 5)
    elif args.scale_store is None and os.path.exists(
        os.path.join(SCALE_STORE, "bench-manifest.json")
    ):
        args.scale_store = SCALE_STORE  # built by bench_scale.py: measure status over it too
    if args.scale_store:  # first, while this process is small (see scale())
        scale(args.scale_store, args.repeat)
        if args.scale_only:
            return
    path = args.store or os.path.join(tempfile.gettempdir(), f"ledger-bench-monitor-{args.runs}")
    if not os.path.exists(os.path.join(path, "events", "runs")) or not any(
        "bench-" in f
        for _, _, files in os.walk(os.path.join(path, "events", "runs"))
        for f in files
    ):
        started = time.perf_counter()
        build(path, args.runs)
        print(f"built {args.runs:,} runs in {time.perf_counter() - started:.1f} s at {path}")
    else:
        print(f"reusing {path}")
        heartbeat(path, args.runs)

    from ledger.analytics import monitor
    from ledger.analytics.live import LiveStore

    from ledger.web.server import make_server

    server = make_server(path, host="127.0.0.1", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port
    page = json.loads(_http(port, "/api/runs"))
    running_id = json.loads(_http(port, "/api/runs?status=running&limit=1"))["rows"][0]["run_id"]
    finished_id = page["rows"][-1]["run_id"]
    load = os.getloadavg()[0]
    print(f"store: {page['total']:,} runs; load average {load:.1f} on {os.cpu_count()} CPUs")

    def timed(fn, repeat=args.repeat) -> list[float]:
        fn()  # warm-up
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return samples

    def run_page(run_id: str) -> None:
        for suffix in ("", "/metrics", "/system", "/progress"):
            _http(port, f"/api/run/{run_id}{suffix}")

    rows = [
        ("runs table (newest 100)", lambda: _http(port, "/api/runs")),
        ("runs table, search + filter",
         lambda: _http(port, "/api/runs?q=run-4242&status=finished")),
        ("runs table, sort by duration", lambda: _http(port, "/api/runs?sort=duration_s")),
        ("run page, finished (4 requests)", lambda: run_page(finished_id)),
        ("run page, running (4 requests)", lambda: run_page(running_id)),
        ("run page live update (progress+metrics)",
         lambda: [_http(port, f"/api/run/{running_id}/progress"),
                  _http(port, f"/api/run/{running_id}/metrics?after=10")]),
    ]  # fmt: skip
    for label, fn in rows:
        print(f"{label:42s} {_percentiles(timed(fn))}")
    server.shutdown()
    server.server_close()

    live = LiveStore(path, min_interval=0)

    def live_page() -> None:
        cur = live.cursor()  # refresh (list files, load new ones) + query, as serve does
        monitor.status_rows(cur)
        cur.close()

    print(f"{'dashboard Live page (mirror+status)':42s} {_percentiles(timed(live_page))}")
    live.close()

    def one_shot() -> None:
        monitor.store_status(path)  # `ledger status`, and each `status --watch` refresh

    print(f"{'status / --watch refresh (in process)':42s} {_percentiles(timed(one_shot))}")
    cold = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ledger", "status", "--store", path, "--format", "json"],
            check=True,
            capture_output=True,
        )
        cold.append(time.perf_counter() - started)
    print(f"{'ledger status (cold process, end to end)':42s} {_percentiles(cold)}")


if __name__ == "__main__":
    main()
