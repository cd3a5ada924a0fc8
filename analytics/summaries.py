"""Reading metric summaries fast: per-file summaries where they exist, raw points where not.

The writer leaves a twin ``summaries`` file next to every metrics file it writes (see
``ledger/summaries.py``). :func:`summaries_sql` lists both kinds of files, keeps the
summaries whose metrics twin exists, folds the raw points of metrics files that have no
twin, and merges the two into one row per (run, key) — the same columns and values as
the ``metric_summaries`` view, which folds every point and stays the reference.

A connection opened ``as_of`` a moment uses the view: a file summary cannot be cut at
an arbitrary time.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
from ledger.analytics.engine import quote_literal
from ledger.analytics.pruning import files_for_runs, visible_files

COLUMNS = (
    "run_id, key, n_points, n_nan, last_value, last_step, last_ts, last_seq, "
    "min_value, min_step, max_value, max_step"
)
_SCHEMA_PARTITION = "project=__schema__"


def _files(con: duckdb.DuckDBPyConnection, kind: str) -> dict[str, str] | None:
    """Visible files of ``kind`` by path below ``events/<kind>/``; None when they cannot
    be listed here (object stores: DuckDB has no reader of its own for them)."""
    listed = visible_files(con, kind)
    return None if listed is None else _by_rel(listed, kind)


def _by_rel(paths: list[str], kind: str) -> dict[str, str]:
    marker = f"/events/{kind}/"
    return {
        path.replace("\\", "/").split(marker, 1)[-1]: path
        for path in paths
        if _SCHEMA_PARTITION not in path
    }


def _read(paths: list[str]) -> str:
    listed = ", ".join(quote_literal(path) for path in sorted(paths))
    return f"read_parquet([{listed}], union_by_name = true)"


def summaries_sql(
    con: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str] | None = None,
    *,
    keys: Sequence[str] | None = None,
    listed: dict[str, list[str]] | None = None,
) -> str:
    """A parenthesised subquery with the ``metric_summaries`` view's columns, fast.

    With ``run_ids``, only files whose run_id statistics can hold one of them are read
    (rows of other runs may then be incomplete: filter the result by ``run_ids``).
    With ``keys``, only those metric keys are read and folded (the filter sits in each
    file scan, below the merge). ``listed``: the visible ``metrics`` and ``summaries``
    files when the caller has listed them already (see ``pruning.snapshot_cursor``;
    never for a connection as of a moment, whose files are not all it may read).

    Raises:
        duckdb.Error: the store's files cannot be listed.
    """
    if listed is not None:  # listed, so not a connection as of a moment (see pruning)
        metrics, summaries = (_by_rel(listed[kind], kind) for kind in ("metrics", "summaries"))
    elif con.execute("SELECT getvariable('as_of') IS NOT NULL").fetchall()[0][0]:
        return "metric_summaries"
    else:
        metrics, summaries = _files(con, "metrics"), _files(con, "summaries")
    if metrics is None or summaries is None:
        return "metric_summaries"
    twins = [path for rel, path in summaries.items() if rel in metrics]
    raw = [path for rel, path in metrics.items() if rel not in summaries]
    if run_ids is not None:
        twins, raw = files_for_runs(twins, run_ids), files_for_runs(raw, run_ids)
    key_filter = ""
    if keys is not None:
        key_filter = f"WHERE key IN ({', '.join(quote_literal(key) for key in keys) or 'NULL'})"
    parts = []
    if twins:
        parts.append(f"SELECT {COLUMNS} FROM {_read(twins)} {key_filter}")
    if raw:
        parts.append(
            f"""SELECT
                run_id,
                key,
                count(*) AS n_points,
                count(*) FILTER (WHERE isnan(value)) AS n_nan,
                arg_max(value, (step, ts, seq)) AS last_value,
                max(step) AS last_step,
                arg_max(ts, (step, ts, seq)) AS last_ts,
                arg_max(seq, (step, ts, seq)) AS last_seq,
                min(value) FILTER (WHERE NOT isnan(value)) AS min_value,
                arg_min(step, (value, step)) FILTER (WHERE NOT isnan(value)) AS min_step,
                max(value) FILTER (WHERE NOT isnan(value)) AS max_value,
                arg_max(step, (value, -step)) FILTER (WHERE NOT isnan(value)) AS max_step
            FROM {_read(raw)}
            {key_filter}
            GROUP BY run_id, key"""
        )
    if not parts:
        return "(SELECT * FROM metric_summaries WHERE false)"
    union = "\nUNION ALL\n".join(parts)
    # The merge is associative: last by (step, ts, seq); min/max with the earliest step.
    return f"""(SELECT
        run_id,
        key,
        arg_max(last_value, (last_step, last_ts, last_seq)) AS last_value,
        max(last_step) AS last_step,
        min(min_value) AS min_value,
        arg_min(min_step, (min_value, min_step)) FILTER (WHERE min_value IS NOT NULL)
            AS min_step,
        max(max_value) AS max_value,
        arg_max(max_step, (max_value, -max_step)) FILTER (WHERE max_value IS NOT NULL)
            AS max_step,
        sum(n_points)::BIGINT AS n_points,
        sum(n_nan)::BIGINT AS n_nan
    FROM ({union})
    GROUP BY run_id, key)"""
