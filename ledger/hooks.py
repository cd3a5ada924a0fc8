"""Run lifecycle hooks: how side channels (resource sampling, energy metering) follow runs.

The core never imports a wing (DESIGN.md floors), yet a run should be sampled from the
moment it starts. Doors register *installers* by module path (``ledger/__init__.py``
registers ``ledger.adapters.resources:install``); the first run start imports them and
each installer adds its callbacks here. Callbacks run on the caller's thread, so they
must be cheap (hand work to a background thread) and they can never raise into
training: a failing callback is logged once and recorded as a note on the run.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.run import Run

log = logging.getLogger("ledger")

StartHook = Callable[["Run"], None]
EndHook = Callable[["Run", str], None]

_installers: list[str] = []
_installed: set[str] = set()
_start_hooks: list[StartHook] = []
_end_hooks: list[EndHook] = []
_lock = threading.Lock()
_warned: set[str] = set()


def add_installer(target: str) -> None:
    """Register ``"package.module:function"``, imported and called at the first run start.

    The function takes no arguments and registers callbacks with :func:`on_run_start` /
    :func:`on_run_end`. Registering the same target twice is a no-op.
    """
    with _lock:
        if target not in _installers:
            _installers.append(target)


def on_run_start(hook: StartHook) -> None:
    """Call ``hook(run)`` whenever a run starts, resumes or is continued in this process."""
    if hook not in _start_hooks:
        _start_hooks.append(hook)


def on_run_end(hook: EndHook) -> None:
    """Call ``hook(run, status)`` when a run ends (or is detached: status ``"detached"``).

    It runs before the run's terminal event is queued, so events it adds are part of the
    run's last flush.
    """
    if hook not in _end_hooks:
        _end_hooks.append(hook)


def remove(hook: Any) -> None:
    """Unregister a start or end hook (tests, or code that installs its own sampler)."""
    for hooks in (_start_hooks, _end_hooks):
        if hook in hooks:
            hooks.remove(hook)


def _install_pending() -> None:
    if len(_installed) == len(_installers):
        return
    with _lock:
        pending = [target for target in _installers if target not in _installed]
        _installed.update(pending)
    for target in pending:
        module_name, _, function_name = target.partition(":")
        try:
            getattr(importlib.import_module(module_name), function_name)()
        except Exception as exc:  # an optional side channel must not stop runs
            _warn(target, exc, None)


def run_started(run: Run) -> None:
    """Called by the run API once a run is open; never raises."""
    if _installers:
        _install_pending()
    for hook in _start_hooks:
        try:
            hook(run)
        except Exception as exc:
            _warn(getattr(hook, "__qualname__", repr(hook)), exc, run)


def run_ending(run: Run, status: str) -> None:
    """Called by the run API as a run ends or detaches; never raises."""
    for hook in _end_hooks:
        try:
            hook(run, status)
        except Exception as exc:
            _warn(getattr(hook, "__qualname__", repr(hook)), exc, run)


def _warn(name: str, exc: BaseException, run: Run | None) -> None:
    if name not in _warned:
        _warned.add(name)
        log.warning("ledger: run hook %s failed (%s: %s)", name, type(exc).__name__, exc)
    if run is not None:
        with contextlib.suppress(Exception):
            run._event("runs", event="note", message=f"{name} failed: {type(exc).__name__}: {exc}")
