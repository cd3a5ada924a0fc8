"""Human durations (``30s``, ``15m``, ``12h``, ``90d``, ``2w``) and sizes (``128MB``)."""

from __future__ import annotations

import re

from ledger.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.IGNORECASE)
_BYTES = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds in ``text``: a number of seconds or ``<n><unit>`` with unit ms/s/m/h/d/w.

    Raises:
        ConfigError: for negative, empty or unreadable durations.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ConfigError(f"Invalid {what} {text!r}: must not be negative")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(
            f"Invalid {what} {text!r}: use a number and a unit, e.g. 30s, 15m, 12h, 90d, 2w"
        )
    number, unit = match.groups()
    return float(number) * _SECONDS[unit or "s"]


def parse_size(text: str | int, *, what: str = "size") -> int:
    """Bytes in ``text`` such as ``128MB``, ``1GiB`` or a plain integer.

    Raises:
        ConfigError: for negative or unreadable sizes.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ConfigError(f"Invalid {what} {text!r}: must not be negative")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"Invalid {what} {text!r}: use e.g. 512KB, 128MB, 1GB")
    number, unit = match.groups()
    return int(float(number) * _BYTES[(unit or "b").lower()])


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1h02m``: compact, for tables."""
    if seconds != seconds:  # NaN
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_size(n: int) -> str:
    """``1536`` -> ``1.5 KiB``: compact, for summaries."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
