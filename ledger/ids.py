"""Time-ordered identities: UUIDv7 as 32 hex characters.

Run ids share MLflow's format (32 hex), so imported MLflow run ids can be kept as is.
UUIDv7's 12-bit ``rand_a`` field holds a counter within the millisecond, so ids made by
one process sort in creation order (RFC 9562, method 1).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_id() -> str:
    """A new UUIDv7 as 32 lowercase hex characters, monotonic within this process."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = 0
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return f"{value:032x}"


def stable_id(*parts: str) -> str:
    """A deterministic 32-hex id from ``parts`` (for idempotent re-imports)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:32]


def id_time_ms(identity: str) -> int:
    """The Unix milliseconds a UUIDv7 id was made at."""
    return int(identity[:12], 16)
