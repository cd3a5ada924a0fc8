"""Object-store stores: logging and query latency on S3 (a local moto server) vs a local dir.

Logs the same runs into a local directory and into ``s3://bench/<id>`` on a
``moto_server`` started on 127.0.0.1, flushing after every run (one file per kind per
run, as many short runs from many machines produce), then times:

* logging: wall time and metric points/s for the whole set of runs;
* a new connection + one query (what every CLI command does);
* a query on a long-lived connection, re-listing the bucket before it (the default,
  ``listing_ttl = 0``) and reusing the listing (``listing_ttl = 60s``): the difference is
  the per-query price of freshness.

moto is an in-process Python emulation on the same machine: no network latency, but
its request handling is slower than S3's. Read the numbers as "the ledger's own
overhead", not as S3 latency.

Usage: ``python benchmarks/bench_objectstore.py [--quick] [--runs N] [--points N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

LEADERBOARD = (
    "SELECT r.name, l.max_value FROM latest_metrics l JOIN runs r USING (run_id) "
    "WHERE l.key = 'acc' ORDER BY l.max_value DESC LIMIT 10"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if binary is None:
        raise SystemExit("moto_server not found: pip install 'moto[server]' (dev extra)")
    server = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
    )
    import pyarrow.fs as pafs

    pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="bench",
        secret_key="bench",
        region="us-east-1",
        allow_bucket_creation=True,
    ).create_dir("bench")
    return server, endpoint


def log_runs(store: str, runs: int, points: int) -> float:
    import ledger

    steps = max(1, points // (runs * 2))
    started = time.perf_counter()
    for index in range(runs):
        with ledger.start_run(
            "bench",
            "objectstore",
            f"run-{index}",
            params={"lr": 10 ** -(index % 5), "index": index},
            store=store,
        ) as run:
            for step in range(steps):
                run.log_metrics(
                    {"loss": 1 / (step + 1), "acc": index / runs + step * 1e-6}, step=step
                )
        ledger.flush()
    return time.perf_counter() - started


def timed(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 runs, 40,000 points")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--points", type=int)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    runs = args.runs or (20 if args.quick else 100)
    points = args.points or (40_000 if args.quick else 1_000_000)
    os.environ.setdefault("LEDGER_CAPTURE", "0")
    os.environ.setdefault("LEDGER_FLUSH_INTERVAL", "5")
    server, _ = start_moto()
    local_root = tempfile.mkdtemp(prefix="ledger-bench-local-")
    try:
        from ledger.analytics import engine

        import ledger
        from ledger.store import open_store

        stores = {"local dir": local_root, "S3 (moto)": f"s3://bench/{uuid.uuid4().hex[:8]}"}
        rows = []
        for label, store in stores.items():
            log(f"logging {runs} runs into {label}")
            seconds = log_runs(store, runs, points)
            total = ledger.query("SELECT count(*) FROM metrics", store=store).item()
            opened = open_store(store)
            files = len(opened.list_files(opened.path("events"), suffix=".parquet"))
            new_connection = timed(lambda s=store: ledger.query(LEADERBOARD, store=s), args.repeat)
            results = {}
            for ttl in ("0", "60s"):
                os.environ["LEDGER_LISTING_TTL"] = ttl
                con = engine.connect(store)
                engine.run_sql(con, LEADERBOARD)
                results[ttl] = timed(lambda c=con: engine.run_sql(c, LEADERBOARD), args.repeat)
                con.close()
            os.environ.pop("LEDGER_LISTING_TTL", None)
            rows.append(
                (label, seconds, total, files, new_connection, results["0"], results["60s"])
            )

        print(f"### Object store: {runs} runs, {points:,} metric points, one flush per run")
        print()
        print(
            "| store | logging | points/s | files | new connection + leaderboard | "
            "long-lived, re-list per query | long-lived, listing reused |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, seconds, total, files, fresh, relist, reuse in rows:
            print(
                f"| {label} | {seconds:.2f} s | {total / seconds:,.0f} | {files} | "
                f"{fresh * 1000:.0f} ms | {relist * 1000:.0f} ms | {reuse * 1000:.0f} ms |"
            )
        print()
        print(
            f"- {runs} runs x 2 metrics x {points // (runs * 2):,} steps, params and run "
            "events; `ledger.flush()` after each run, so every run adds one file per kind "
            "it logged. Latencies are medians of "
            f"{args.repeat}; the leaderboard is `latest_metrics` joined to `runs`, top 10."
        )
        print(
            "- 'Re-list per query' is the default (`listing_ttl = 0`: every file whose PUT "
            "finished before the query is seen); 'listing reused' is `listing_ttl = 60s`. "
            "Local stores always re-glob (DuckDB expands the glob per query)."
        )
        print(
            "- S3 here is moto_server on 127.0.0.1 (Python, same 2 cores): it measures the "
            "ledger's overhead and request count, not real S3 latency."
        )
    finally:
        server.terminate()
        shutil.rmtree(local_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
