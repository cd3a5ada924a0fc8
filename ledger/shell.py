"""Logging from shells and non-Python programs: ``ledger log`` and ``ledger run``."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from ledger import env
from ledger.capture import mask_argv
from ledger.errors import InvalidValueError, RunNotFoundError
from ledger.run import Run, continue_run, new_run
from ledger.store import Store, open_store


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    """``"lr=0.1"`` -> ``("lr", "0.1")``.

    Raises:
        InvalidValueError: when there is no ``=`` or the key is empty.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InvalidValueError(f"Invalid {what} {text!r}: use KEY=VALUE")
    return key.strip(), value


def parse_scalar(text: str) -> Any:
    """Shell text to a typed param value: int, float, true/false, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_metric(text: str) -> tuple[str, float]:
    key, value = parse_assignment(text, "--metric")
    try:
        return key, float(value)
    except ValueError:
        raise InvalidValueError(
            f"Invalid --metric {text!r}: value must be a number (nan and inf are allowed)"
        ) from None


def log_from_shell(
    *,
    store: str | os.PathLike[str] | Store | None = None,
    run_id: str | None = None,
    start: bool = False,
    project: str | None = None,
    experiment: str | None = None,
    name: str | None = None,
    parent: str | None = None,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    step: int | None = None,
    end: bool = False,
    status: str = "finished",
    message: str | None = None,
) -> str:
    """Start a run and/or log to it and/or end it, durably; returns the run id.

    Without ``start``, the run is ``run_id`` or ``$LEDGER_RUN_ID``.

    Raises:
        RunNotFoundError: no run given, or the run does not exist.
        InvalidKeyError, InvalidValueError, ParamConflictError: bad values.
    """
    if start:
        run: Run = new_run(project, experiment, name, parent=parent, store=store)
    else:
        target = run_id or os.environ.get(env.RUN_ID)
        if not target:
            raise RunNotFoundError(
                f"No run given: pass --run ID, set ${env.RUN_ID}, or use --start"
            )
        # A one-shot `ledger log` adds values; its own environment says nothing about the
        # run (and capturing it would cost every shell call ~50 ms).
        run = continue_run(target, store=store, owner=end, capture_environment=False)
    try:
        if params:
            run.log_params(params)
        if tags:
            run.set_tags(tags)
        if metrics:
            run.log_metrics(metrics, step=step)
    finally:
        if end:
            run.end(status, message=message, wait=True)
        else:
            run.detach()
            run._writer.flush()
    return run.id


def run_command(
    argv: Sequence[str],
    *,
    store: str | os.PathLike[str] | Store | None = None,
    project: str | None = None,
    experiment: str | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> tuple[str, int]:
    """Run ``argv`` as a run; returns (run id, exit code as a shell reports it).

    The child gets ``LEDGER_RUN_ID`` (and the store and project), so ``ledger.start_run()``
    inside it continues this run. Ctrl-C and SIGTERM are passed on to the child.

    Raises:
        InvalidValueError: empty command.
    """
    if not argv:
        raise InvalidValueError("No command given: use ledger run -- COMMAND [ARGS...]")
    store_obj = open_store(store)
    # Secret-looking option values (--api-key X) never reach the store (capture.mask_argv).
    command = shlex.join(mask_argv(list(argv)))
    run = new_run(
        project,
        experiment,
        name or os.path.basename(argv[0]),
        store=store_obj,
        attrs={"command": command, "cwd": os.getcwd()},
    )
    if params:
        run.log_params(params)
    if tags:
        run.set_tags(tags)
    run._writer.flush()  # the child may look the run up by id
    child_env = dict(os.environ)
    child_env.update(
        {
            env.RUN_ID: run.id,
            env.PROJECT: run.project,
            env.EXPERIMENT: run.experiment,
            env.STORE: store_obj.uri if not store_obj.is_local else store_obj.base,
        }
    )
    received: list[int] = []
    try:
        process = subprocess.Popen(list(argv), env=child_env)
    except OSError as exc:
        run.end(
            "failed", message=f"cannot start {argv[0]!r}: {exc.strerror}", exit_code=127, wait=True
        )
        raise InvalidValueError(f"Cannot run {argv[0]!r}: {exc.strerror}") from None

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if returncode == 0:
        run.end("finished", exit_code=0, wait=True)
    elif returncode < 0 or received:
        signum = -returncode if returncode < 0 else received[0]
        run.end(
            "killed",
            message=f"signal {signal.Signals(signum).name}",
            exit_code=returncode,
            wait=True,
        )
    else:
        run.end("failed", message=f"exit code {returncode}", exit_code=returncode, wait=True)
    return run.id, (128 - returncode if returncode < 0 else returncode)
