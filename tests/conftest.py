"""Shared fixtures: every test gets its own store; none touches a real one."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest

import ledger
from ledger import run as run_module
from ledger.store import Store, open_store


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch) -> Iterator[None]:
    """Point LEDGER_STORE at a temp dir and clear run-related env vars."""
    monkeypatch.setenv("LEDGER_STORE", str(tmp_path / "store"))
    for name in ("LEDGER_RUN_ID", "LEDGER_PROJECT", "LEDGER_EXPERIMENT", "LEDGER_PARENT_RUN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEDGER_CAPTURE", "0")
    # codecarbon's hardware probe costs ~1.5 s of CPU per process; cost tests turn it on.
    monkeypatch.setenv("LEDGER_CARBON", "0")
    yield
    for open_run in list(run_module._open.values()):
        open_run.end()
    ledger.flush()


@pytest.fixture
def store_path(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def empty_store(store_path) -> Store:
    """A store with nothing logged yet (not even initialised)."""
    return open_store(store_path)


@pytest.fixture
def populated_store(store_path) -> Store:
    """Three finished runs in project 'vision' (one failed), with params, tags and curves.

    run a: lr=0.1, loss 1/(s+1) for steps 0..9, acc 0.5 + 0.04 s
    run b: lr=0.01, loss 2/(s+1), acc 0.6 then NaN at the last step
    run c: lr=1.0, failed at step 3 with RuntimeError('diverged')
    """
    with ledger.start_run(
        "vision",
        "sweep",
        "a",
        params={"lr": 0.1, "model": "resnet"},
        tags={"team": "cv"},
        store=store_path,
    ) as run:
        for step in range(10):
            run.log_metrics({"loss": 1 / (step + 1), "acc": 0.5 + 0.04 * step}, step=step)
    with ledger.start_run(
        "vision", "sweep", "b", params={"lr": 0.01, "model": "resnet"}, store=store_path
    ) as run:
        for step in range(10):
            run.log_metrics({"loss": 2 / (step + 1), "acc": 0.6}, step=step)
        run.log_metric("acc", math.nan, step=10)
    with (
        pytest.raises(RuntimeError),
        ledger.start_run(
            "vision", "sweep", "c", params={"lr": 1.0, "model": "vit"}, store=store_path
        ) as run,
    ):
        for step in range(4):
            run.log_metric("loss", 10.0 * step, step=step)
        raise RuntimeError("diverged")
    ledger.flush()
    return open_store(store_path)


def pytest_configure(config) -> None:
    os.environ.setdefault("LEDGER_FLUSH_INTERVAL", "0.2")


# -- object stores (issue 9): a real S3-compatible server on 127.0.0.1 ----------------------

S3_BUCKET = "ledger-test"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A ``moto_server`` on 127.0.0.1 for the whole session; yields its endpoint URL.

    Sets the standard AWS_* variables for this process and its children (writers started
    by tests inherit them), creates the test bucket, and stops the server at the end.
    """
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("moto")
    port = _free_port()
    executable = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    command = [executable] if executable else [sys.executable, "-m", "moto.server"]
    server = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto_server did not start on {endpoint}") from None
            time.sleep(0.1)
    saved = {name: os.environ.get(name) for name in _S3_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    import pyarrow.fs as pafs

    pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        allow_bucket_creation=True,
    ).create_dir(S3_BUCKET)
    try:
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


_S3_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_PROFILE",
)


@pytest.fixture
def s3_store_uri(s3_server, request) -> str:
    """A fresh, empty ``s3://`` store root on the session's moto server."""
    import uuid

    return f"s3://{S3_BUCKET}/{request.node.name.split('[')[0][:40]}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3"])
def any_store_uri(request, store_path) -> str:
    """The same test against a local directory and against an S3 bucket prefix."""
    if request.param == "local":
        return store_path
    return str(request.getfixturevalue("s3_store_uri"))
