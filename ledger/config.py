"""Store resolution and settings (``ledger.toml`` at the store root, then env vars).

One function, :func:`resolve_store_root`, decides which store a command or API call
uses: the explicit argument, then ``LEDGER_STORE``, then ``./.ledger``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from ledger import env
from ledger.durations import parse_duration
from ledger.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_STORE = ".ledger"
CONFIG_FILE = "ledger.toml"


def resolve_store_root(store: str | os.PathLike[str] | None = None) -> str:
    """The store root to use: ``store``, else ``$LEDGER_STORE``, else ``./.ledger``."""
    if store is not None and str(store) != "":
        return str(store)
    from_env = os.environ.get(env.STORE)
    if from_env:
        return from_env
    return DEFAULT_STORE


@dataclass(frozen=True)
class Settings:
    """Writer and view settings; every field can be set in ``ledger.toml`` or the env."""

    flush_interval: float = 5.0
    """Seconds between background flushes of buffered events."""
    flush_rows: int = 1_000_000
    """A buffer this large is flushed at once rather than at the next interval."""
    heartbeat_interval: float = 30.0
    """Seconds between heartbeats of an open run."""
    stall_after: float = 300.0
    """A running run with no heartbeat for this long shows as ``stalled``."""
    capture: bool = True
    """Capture git, packages and host facts at run start (in the background)."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The whole parsed ``ledger.toml``, for sections other modules own."""


def load_config_file(path: str) -> dict[str, Any]:
    """Parse a ``ledger.toml``; a missing file is an empty config.

    Raises:
        ConfigError: when the file is not valid TOML.
    """
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Invalid {path}: {exc}") from exc


def settings_from(raw: dict[str, Any]) -> Settings:
    """Settings from a parsed config, overridden by ``LEDGER_*`` environment variables.

    Raises:
        ConfigError: when a value cannot be parsed.
    """
    writer = raw.get("writer", {})
    runs = raw.get("runs", {})

    def pick(env_name: str, section: dict[str, Any], key: str, default: Any) -> Any:
        return os.environ.get(env_name) or section.get(key, default)

    flush_rows = writer.get("flush_rows", Settings.flush_rows)
    if not isinstance(flush_rows, int) or flush_rows < 1:
        raise ConfigError(f"Invalid writer.flush_rows {flush_rows!r}: use a positive integer")
    return Settings(
        flush_interval=parse_duration(
            pick(env.FLUSH_INTERVAL, writer, "flush_interval", Settings.flush_interval),
            what="flush interval",
        ),
        flush_rows=flush_rows,
        heartbeat_interval=parse_duration(
            pick(env.HEARTBEAT_INTERVAL, runs, "heartbeat_interval", Settings.heartbeat_interval),
            what="heartbeat interval",
        ),
        stall_after=parse_duration(
            pick(env.STALL_AFTER, runs, "stall_after", Settings.stall_after),
            what="stall-after duration",
        ),
        capture=os.environ.get(env.CAPTURE, "1") not in ("0", "false", "no")
        and bool(runs.get("capture", True)),
        raw=raw,
    )
