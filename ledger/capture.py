"""Reproducibility facts captured at run start (DESIGN.md invariant 8).

Capture costs tens of milliseconds (``git status`` ~10 ms, listing installed packages
~65 ms), so it runs once per process, in a background thread, and every run the process
starts reuses the result: starting a run stays sub-millisecond.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

_GIT_TIMEOUT_S = 5.0


def _git(args: list[str], cwd: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace")


def git_facts(cwd: str | None = None) -> dict[str, Any] | None:
    """Commit, branch, dirty flag and a hash of the uncommitted diff; None outside git."""
    cwd = cwd or os.getcwd()
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return None
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd) or ""
    facts: dict[str, Any] = {
        "commit": commit.strip(),
        "branch": (branch or "").strip() or None,
        "dirty": bool(status.strip()),
        "root": (_git(["rev-parse", "--show-toplevel"], cwd) or "").strip() or None,
    }
    if facts["dirty"]:
        diff = _git(["diff", "HEAD"], cwd) or ""
        facts["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    remote = _git(["config", "--get", "remote.origin.url"], cwd)
    if remote:
        facts["remote"] = remote.strip()
    return facts


def installed_packages() -> dict[str, str]:
    """``{distribution name: version}`` for everything importable in this interpreter."""
    from importlib import metadata

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            packages[name] = dist.version
    return dict(sorted(packages.items(), key=lambda item: item[0].lower()))


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus() -> list[dict[str, Any]]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_total_bytes": int(memory.total),
                }
            )
        return gpus
    except pynvml.NVMLError:
        return []
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


HOST = socket.gethostname()
USER = user_name()


def capture_environment() -> dict[str, Any]:
    """Everything captured about this process, as a JSON-ready dict."""
    facts: dict[str, Any] = {
        "command": [sys.executable, *sys.argv] if sys.argv and sys.argv[0] else None,
        "cwd": os.getcwd(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "host": {
            "hostname": HOST,
            "os": platform.platform(),
            "machine": platform.machine(),
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
        },
        "gpus": _gpus(),
        "git": git_facts(),
        "packages": installed_packages(),
    }
    with contextlib.suppress(ValueError, OSError, AttributeError):
        facts["host"]["memory_total_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf(
            "SC_PHYS_PAGES"
        )
    return facts


def environment_row(facts: dict[str, Any]) -> dict[str, Any]:
    """The columns of an ``environment`` runs event for captured ``facts``."""
    git = facts.get("git") or {}
    command = facts.get("command")
    return {
        "attrs": json.dumps(facts, default=str),
        "git_commit": git.get("commit"),
        "git_branch": git.get("branch"),
        "git_dirty": git.get("dirty"),
        "command": " ".join(command) if command else None,
        "python_version": (facts.get("python") or {}).get("version"),
    }


class BackgroundCapture:
    """Runs :func:`capture_environment` once per process and hands the result to waiters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._result: dict[str, Any] | None = None
        self._waiters: list[Callable[[dict[str, Any]], None]] = []
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def after_fork_in_child(self) -> None:
        # Keep a finished capture (same code, same argv); drop the parent's lock, thread
        # and waiters, which belong to runs the parent owns.
        self._lock = threading.Lock()
        self._waiters = []
        self._thread = None
        self._pid = os.getpid()

    def when_ready(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(row)`` now if captured, else once the capture finishes.

        ``row`` holds the columns of an ``environment`` event: the facts JSON-encoded
        once per process (``attrs``) and typed copies of the most-asked ones.
        """
        with self._lock:
            if self._result is not None:
                result = self._result
            else:
                self._waiters.append(callback)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="ledger-capture", daemon=True
                    )
                    self._thread.start()
                return
        callback(result)

    def _run(self) -> None:
        try:
            facts = capture_environment()
        except Exception as exc:  # capture must never break a run
            facts = {"error": f"{type(exc).__name__}: {exc}"}
        result = environment_row(facts)
        with self._lock:
            self._result = result
            waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback(result)

    def wait(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


capture = BackgroundCapture()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=capture.after_fork_in_child)
