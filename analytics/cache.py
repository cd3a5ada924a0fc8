"""Folds over immutable files, kept in memory for the next question about the same files.

A file of the store never changes once written (DESIGN invariant 1): what a query folds
from a set of files stays right for as long as that exact set is what the query would
read. :func:`register` keys a result by its SQL text, its parameters, the cursor's
variables (the views read ``include_deleted``, ``as_of`` and the like through
``getvariable``) and the path, size, modification time and inode of every file it
read, and registers the kept Arrow table under a name on the cursor. A new flush, a
compaction, an archive (any change of the visible set) gives a new key, so the fold is
computed afresh: never a stale answer.

Only folds whose value does not depend on the clock belong here (the ``runs`` view
does: a silent open run turns ``stalled`` as time passes; see the leaderboard for how
it keeps just the ended runs). Entries live in this process (a notebook, ``ledger
serve``, a benchmark); a one-shot CLI call gains nothing and loses nothing.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import duckdb
from ledger.analytics.engine import arrow_table

if TYPE_CHECKING:
    import pyarrow as pa

MAX_ENTRIES = 32
MAX_ROWS = 20_000_000  # all entries together (about 1 GB at 50 bytes a row)

_entries: OrderedDict[tuple, Any] = OrderedDict()
_rows = 0
_lock = threading.Lock()


def stamps(files: Iterable[str]) -> tuple[tuple[str, int, int, int], ...] | None:
    """(path, size, mtime_ns, inode) of each file, sorted; None when one cannot be read (it
    vanished: do not cache, let the query report or retry)."""
    out = []
    for path in files:
        try:
            info = os.stat(path)
        except OSError:
            return None
        out.append((path, info.st_size, info.st_mtime_ns, info.st_ino))
    return tuple(sorted(out))


def register(
    cur: duckdb.DuckDBPyConnection,
    name: str,
    sql: str,
    params: dict[str, Any] | None,
    files: Iterable[str],
    prepare: Callable[[], None] | None = None,
    *,
    session: tuple[tuple[str, ...], ...],
    registered: dict[str, pa.Table],
) -> pa.Table:
    """Make ``name`` on ``cur`` hold the result of ``sql``, which reads only ``files``:
    from memory when the same SQL over the same files was answered before (else
    ``prepare()`` is called first, then ``sql`` runs). Returns the table.

    ``session``: the variables and time zone ``cur`` copied (``pruning.session_of``);
    ``registered``: what is registered on ``cur`` by name (a kept cursor's), so the very
    table it holds already is not registered again."""
    global _rows
    key_files = stamps(files)
    key = (sql, json.dumps(params or {}, sort_keys=True, default=str), session, key_files)
    with _lock:
        table = _entries.get(key)
        if table is not None:
            _entries.move_to_end(key)
    if table is None:
        if prepare is not None:
            prepare()
        table = arrow_table(cur, sql, params)
        if key_files is not None and table.num_rows <= MAX_ROWS:
            with _lock:
                if key not in _entries:
                    _entries[key] = table
                    _rows += table.num_rows
                while _entries and (len(_entries) > MAX_ENTRIES or _rows > MAX_ROWS):
                    _, dropped = _entries.popitem(last=False)
                    _rows -= dropped.num_rows
    if registered.get(name) is not table:
        cur.register(name, table)
        registered[name] = table
    return table


def clear() -> None:
    """Forget every kept result (tests; memory pressure)."""
    global _rows
    with _lock:
        _entries.clear()
        _rows = 0
