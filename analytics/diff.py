"""What differs between runs: params, tags, environment, data sets, seeds and metrics.

One row per fact (``section``, ``key``) and one column per run, values as text so
numbers, hashes and versions sit side by side. Only rows where the runs disagree are
kept unless ``all=True`` (a fact one run lacks counts as a difference).

Metrics show three rows each: ``<key>.last`` (value at the latest step),
``<key>.best`` and ``<key>.best_step``. "Best" is the minimum for keys that look like
losses or errors (:data:`LOWER_IS_BETTER` words) and the maximum otherwise;
``modes={"key": "min"}`` overrides it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
from ledger.analytics.engine import connection, consistent, quote_literal
from ledger.analytics.pruning import listing, pruned_cursor, stat_once
from ledger.analytics.resolve import resolve_and_locate
from ledger.analytics.summaries import summaries_sql

from ledger.errors import InvalidValueError
from ledger.store import Store

if TYPE_CHECKING:
    import polars as pl

LOWER_IS_BETTER = re.compile(
    r"(loss|err|error|mse|mae|rmse|perplexity|ppl|wer|cer|nll|regret|latency|time|cost)",
    re.IGNORECASE,
)
ENV_FIELDS = (
    ("git.commit", ("git", "commit")),
    ("git.branch", ("git", "branch")),
    ("git.dirty", ("git", "dirty")),
    ("git.diff_sha256", ("git", "diff_sha256")),
    ("python.version", ("python", "version")),
    ("python.implementation", ("python", "implementation")),
    ("host.hostname", ("host", "hostname")),
    ("host.os", ("host", "os")),
    ("host.machine", ("host", "machine")),
    ("host.cpu_model", ("host", "cpu_model")),
    ("host.cpu_count", ("host", "cpu_count")),
    ("cwd", ("cwd",)),
)
_FACT_KINDS = ("runs", "params", "tags", "datasets")
RUN_FIELDS = (
    "name",
    "project",
    "experiment",
    "status",
    "parent_run_id",
    "start_time",
    "duration_s",
    "user",
    "host",
    "command",
    "exit_code",
    "message",
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def metric_mode(key: str, modes: Mapping[str, str] | None = None) -> str:
    """``min`` or ``max``: which way is better for ``key``."""
    if modes and key in modes:
        return modes[key]
    return "min" if LOWER_IS_BETTER.search(key) else "max"


def _dig(facts: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(facts, dict):
            return None
        facts = facts.get(part)
    return facts


def _column_labels(ids: list[str], names: dict[str, str | None]) -> list[str]:
    labels = []
    for run_id in ids:
        label = names.get(run_id) or run_id[:12]
        if label in labels or sum(1 for i in ids if names.get(i) == names.get(run_id)) > 1:
            label = f"{label} ({run_id[-8:]})"
        labels.append(label)
    return labels


def diff(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    runs: Sequence[str],
    experiment: str | None = None,
    project: str | None = None,
    all: bool = False,
    modes: Mapping[str, str] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """Compare two or more runs side by side.

    Args:
        runs: run ids, unique id prefixes or names (names within ``experiment``).
        all: keep rows where every run agrees too.
        modes: per metric ``min``/``max`` for "best" (default: guessed from the key).

    Returns:
        Columns ``section`` (run, param, tag, env, package, dataset, seed, metric),
        ``key`` and one column per run, labelled by run name.

    Raises:
        InvalidValueError: fewer than two runs, or the same run twice.
        RunNotFoundError, AmbiguousRunError: a reference does not name exactly one run.
    """
    if len(runs) < 2:
        raise InvalidValueError(f"diff needs at least two runs, got {len(runs)}")
    views = (*_FACT_KINDS, "metric_summaries")
    with connection(con, store, views=views) as con:

        def compare() -> tuple[list[str], dict[tuple[str, str], dict[str, str | None]]]:
            assert con is not None
            # One listing of every kind the question reads, shared by the resolver, the
            # facts and the metric summaries; taken inside consistent(), so a listing
            # that straddled a lifecycle commit (or lost a file to its clean-up) is made
            # again.
            with stat_once():
                listed = listing(con, _FACT_KINDS, ("metrics", "summaries"))
                files = listed["runs"] if listed is not None else None
                ids, located = resolve_and_locate(
                    con, runs, experiment, project=project, files=files
                )
                if len(set(ids)) < len(ids):
                    raise InvalidValueError(f"The same run is given twice: {', '.join(runs)}")
                return ids, _facts(con, ids, modes, listed, located)

        ids, rows = consistent(con, compare)
        labels = _column_labels(ids, rows.get(("run", "name"), {}))
    import polars as pl

    records = []
    for (section, key), values in rows.items():
        cells = [values.get(run_id) for run_id in ids]
        if not all and len(set(cells)) == 1:
            continue
        records.append([section, key, *cells])
    schema = {"section": pl.Utf8, "key": pl.Utf8, **{label: pl.Utf8 for label in labels}}
    return pl.DataFrame(records, schema=schema, orient="row")


def _facts(
    con: duckdb.DuckDBPyConnection,
    ids: list[str],
    modes: Mapping[str, str] | None,
    listed: dict[str, list[str]] | None,
    located: Mapping[str, Sequence[str]] | None,
) -> dict[tuple[str, str], dict[str, str | None]]:
    # Only the files whose run_id statistics can hold these runs are read (a handful of
    # a few hundred), and a literal IN list lets DuckDB skip row groups within them. The
    # runs files are known exactly when resolving located the runs (``located``).
    exact = None
    if located is not None and all(run_id in located for run_id in ids):
        exact = {"runs": sorted({path for run_id in ids for path in located[run_id]})}
    if listed is None:
        return _read_facts(con, con, ids, modes, listed)
    with pruned_cursor(con, ids, _FACT_KINDS, listed, exact) as pruned:
        return _read_facts(pruned or con, con, ids, modes, listed)


# Every fact of the runs in one statement (one plan, one round trip instead of five): one
# branch per view, each with its own columns, the rest NULL (UNION ALL BY NAME).
_FACTS_SQL = """
SELECT 'run' AS section, run_id, {run_columns}, seeds, environment FROM runs WHERE {in_ids}
UNION ALL BY NAME
SELECT 'param' AS section, run_id, key, value AS text FROM params WHERE {in_ids}
UNION ALL BY NAME
SELECT 'tag' AS section, run_id, key, value AS text FROM tags WHERE {in_ids}
UNION ALL BY NAME
SELECT 'dataset' AS section, run_id, name AS key, context, sha256 AS text,
    "rows" AS n_rows, "columns" AS n_columns
FROM datasets WHERE {in_ids}
QUALIFY row_number() OVER (PARTITION BY run_id, name, context ORDER BY ts DESC) = 1
UNION ALL BY NAME
SELECT 'metric' AS section, run_id, key, last_value, min_value, min_step, max_value, max_step
FROM {summaries} WHERE {in_ids}
"""


def _read_facts(
    cur: duckdb.DuckDBPyConnection,
    con: duckdb.DuckDBPyConnection,
    ids: list[str],
    modes: Mapping[str, str] | None,
    listed: dict[str, list[str]] | None,
) -> dict[tuple[str, str], dict[str, str | None]]:
    rows: dict[tuple[str, str], dict[str, str | None]] = {}

    def put(section: str, key: str, run_id: str, value: Any) -> None:
        rows.setdefault((section, key), {})[run_id] = _text(value)

    sql = _FACTS_SQL.format(
        run_columns=", ".join(f'"{c}"' for c in RUN_FIELDS),
        in_ids=f"run_id IN ({', '.join(quote_literal(run_id) for run_id in ids)})",
        summaries=summaries_sql(con, ids, listed=listed),
    )
    result = cur.execute(sql)
    names = [column[0] for column in result.description or ()]
    for values in result.fetchall():
        record = dict(zip(names, values, strict=True))
        section, run_id = record["section"], record["run_id"]
        if section == "run":
            _put_run(put, run_id, record)
        elif section in ("param", "tag"):
            put(section, record["key"], run_id, record["text"])
        elif section == "dataset":
            context, n_rows = record["context"], record["n_rows"]
            label = record["key"] if not context else f"{record['key']} ({context})"
            shape = f" [{n_rows}x{record['n_columns']}]" if n_rows is not None else ""
            put("dataset", label, run_id, f"{record['text']}{shape}")
        else:
            key = record["key"]
            if metric_mode(key, modes) == "min":
                best, step = record["min_value"], record["min_step"]
            else:
                best, step = record["max_value"], record["max_step"]
            put("metric", f"{key}.last", run_id, record["last_value"])
            put("metric", f"{key}.best", run_id, best)
            put("metric", f"{key}.best_step", run_id, step)
    order = {
        "run": 0,
        "param": 1,
        "tag": 2,
        "metric": 3,
        "dataset": 4,
        "seed": 5,
        "env": 6,
        "package": 7,
    }
    return dict(sorted(rows.items(), key=lambda item: (order[item[0][0]], item[0][1])))


def _put_run(put: Any, run_id: str, record: dict[str, Any]) -> None:
    """The run's own fields, its captured environment, packages and seeds."""
    for name in RUN_FIELDS:
        value = record[name]
        if name == "duration_s" and value is not None:
            value = round(value, 3)
        put("run", name, run_id, value)
    environment = json.loads(record["environment"]) if record["environment"] else {}
    for label, path in ENV_FIELDS:
        put("env", label, run_id, _dig(environment, path))
    gpus = environment.get("gpus")
    if gpus:
        put(
            "env",
            "gpus",
            run_id,
            [g.get("name", g) if isinstance(g, dict) else g for g in gpus],
        )
    for package, version in (environment.get("packages") or {}).items():
        put("package", package, run_id, version)
    seeds = json.loads(record["seeds"]) if record["seeds"] else {}
    for name, value in seeds.items():
        put("seed", name, run_id, value)
