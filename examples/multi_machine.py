"""Many machines log into one bucket; a laptop queries it while they run.

Runnable as is: with no ``--store`` it starts a throwaway S3-compatible server
(``moto_server``, from the dev extra) on 127.0.0.1 and uses ``s3://ledger-demo/team``.
Against a real bucket, give the URI and set the usual AWS variables (or a
``[stores."s3://..."]`` table in ``~/.config/ledger/ledger.toml``)::

    python examples/multi_machine.py                                  # self-contained
    python examples/multi_machine.py --store s3://my-bucket/ledger --workers 8

Each worker is a separate process with nothing shared but the bucket URI, exactly what
a Slurm array task, a Dask/Ray worker or a Kubernetes pod would be: it trains (a small
numpy model here), logs params and metrics, and its writer PUTs one object per flush.
No worker knows about the others; there is no server and no lock. Meanwhile the
"laptop" loop below queries the same bucket in place and prints a live leaderboard.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

WORKER = r"""
import os, sys, numpy as np, ledger

store, worker, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(worker)
x = rng.normal(size=(2000, 8))
y = x @ rng.normal(size=8) + rng.normal(0, 0.5, 2000)
for trial in range(trials):
    lr = float(10 ** rng.uniform(-3, -0.5))
    params = {"lr": lr, "batch": int(rng.choice([32, 64, 128])), "host": f"worker-{worker}"}
    name = f"w{worker}-t{trial}"
    with ledger.start_run("demo", "linreg", name, params=params, store=store) as run:
        w = np.zeros(8)
        for step in range(60):
            batch = rng.integers(0, 2000, params["batch"])
            grad = x[batch].T @ (x[batch] @ w - y[batch]) / params["batch"]
            w -= lr * grad
            mse = float(np.mean((x @ w - y) ** 2))
            run.log_metrics({"mse": mse, "r2": 1 - mse / float(np.var(y))}, step=step)
"""

LEADERBOARD = """
SELECT r.name, r.status, round(l.max_value, 4) AS best_r2, p.value AS lr
FROM latest_metrics l JOIN runs r USING (run_id)
LEFT JOIN params p ON p.run_id = r.run_id AND p.key = 'lr'
WHERE l.key = 'r2' ORDER BY best_r2 DESC NULLS LAST LIMIT 5
"""


def start_local_bucket() -> tuple[subprocess.Popen[bytes], str]:
    """A moto S3 server on a free port with bucket ``ledger-demo``; AWS_* set for children."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if binary is None:
        sys.exit("moto_server not found: pip install 'moto[server]', or pass --store s3://...")
    server = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_REGION="us-east-1",
    )
    import pyarrow.fs as pafs

    pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="demo",
        secret_key="demo",
        region="us-east-1",
        allow_bucket_creation=True,
    ).create_dir("ledger-demo")
    return server, "s3://ledger-demo/team"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="s3://bucket/prefix (default: a local moto bucket)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=3, help="runs per worker")
    args = parser.parse_args()

    server = None
    store = args.store
    if store is None:
        server, store = start_local_bucket()
    print(f"store: {store}")
    env = {**os.environ, "LEDGER_FLUSH_INTERVAL": "0.5", "LEDGER_CAPTURE": "0"}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, store, str(i), str(args.trials)], env=env)
        for i in range(args.workers)
    ]
    import ledger  # the "laptop": nothing but the URI in common with the workers

    try:
        while True:
            running = sum(worker.poll() is None for worker in workers)
            board = ledger.query(LEADERBOARD, store=store)
            counts = ledger.query(
                "SELECT count(DISTINCT run_id) AS runs, count(*) AS points FROM metrics",
                store=store,
            ).row(0)
            print(f"\n{running} workers running; {counts[0]} runs, {counts[1]} points stored")
            print(board)
            if not running:
                break
            time.sleep(1.5)
        failed = [worker.args for worker in workers if worker.returncode != 0]
        if failed:
            print(f"{len(failed)} workers failed", file=sys.stderr)
            return 1
        print("\nfinal status:")
        print(ledger.query("SELECT status, count(*) AS runs FROM runs GROUP BY 1", store=store))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        if server is not None:
            server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
