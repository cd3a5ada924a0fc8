"""Reading per-run cost inputs fast: cost summaries where they exist, raw events where not.

The writer leaves a twin ``cost_summaries`` file next to every costs file it writes (see
``ledger/cost_summaries.py``). :func:`cost_inputs_sql` lists both kinds of files, keeps
the summaries whose costs twin exists, turns the events of costs files without one into
rows of the same shape (one event each), and folds the two into one row per run — the
columns and values of the ``cost_inputs`` view (queries/cost_inputs.sql), which folds
every event and stays the reference. The report prices those rows with the same
``run_costs_over`` macro the ``run_costs`` view uses.

A connection opened ``as_of`` a moment, a store whose files cannot be listed here (an
object store), and a store with no cost summaries at all use the view.
"""

from __future__ import annotations

import json

import duckdb
from ledger.analytics.summaries import _files, _read

from ledger.cost_summaries import ENERGY_COLUMNS, RESOURCE_FIELDS

# The resources fields the writer's summaries parse, with their DuckDB types.
_TYPES = {name: {"num": "DOUBLE", "str": "VARCHAR"}[kind] for name, kind in RESOURCE_FIELDS}
_RESOURCE_FIELDS = tuple(_TYPES)
_RESOURCE_JSON = json.dumps(_TYPES)


def _resources(fields: dict[str, str], raw: str) -> str:
    """A struct of the resources fields and the raw document (when not parsed)."""
    parts = [f"{name} := {fields[name]}" for name in _RESOURCE_FIELDS]
    return f"struct_pack({', '.join(parts)}, raw := {raw})"


def _summary_rows(paths: list[str]) -> str:
    """Cost summary rows as partial folds."""
    energy = ", ".join(f"e_{name}, e_{name}_ts" for name in ENERGY_COLUMNS)
    fields = {name: f"r_{name}" for name in _RESOURCE_FIELDS}
    return f"""SELECT run_id, writer_id, r_ts, r_attrs_ts,
            {_resources(fields, "r_attrs")} AS r,
            e_n, {energy}, e_attrs_ts,
            struct_pack(covered_s := e_covered_s, raw := e_attrs) AS e,
            bill_n, bill_usd, from_json(bill_sources, '["VARCHAR"]') AS bill_sources
        FROM {_read(paths)}"""


def _event_rows(paths: list[str]) -> str:
    """Raw cost events as partial folds of one event each (no aggregation)."""
    res, energy, bill = "kind = 'resources'", "kind = 'energy'", "kind = 'bill'"
    fields = {name: f"CAST(NULL AS {_TYPES[name]})" for name in _RESOURCE_FIELDS}
    columns = []
    for name in ENERGY_COLUMNS:
        columns.append(f"CASE WHEN {energy} THEN {name} END AS e_{name}")
        columns.append(f"CASE WHEN {energy} AND {name} IS NOT NULL THEN ts END AS e_{name}_ts")
    energy_columns = ",\n            ".join(columns)
    return f"""SELECT run_id, writer_id,
            CASE WHEN {res} THEN ts END AS r_ts,
            CASE WHEN {res} AND attrs IS NOT NULL THEN ts END AS r_attrs_ts,
            CASE WHEN {res} AND attrs IS NOT NULL THEN {_resources(fields, "attrs")} END AS r,
            CAST({energy} AS BIGINT) AS e_n,
            {energy_columns},
            CASE WHEN {energy} AND attrs IS NOT NULL THEN ts END AS e_attrs_ts,
            CASE WHEN {energy} AND attrs IS NOT NULL
                 THEN struct_pack(covered_s := CAST(NULL AS DOUBLE), raw := attrs) END AS e,
            CAST({bill} AS BIGINT) AS bill_n,
            CASE WHEN {bill} THEN cost_usd END AS bill_usd,
            CASE WHEN {bill} AND source IS NOT NULL THEN [source] END AS bill_sources
        FROM {_read(paths)}
        WHERE kind IN ('resources', 'energy', 'bill')"""


def _fold(group_by: str, *, writers: bool) -> str:
    """The merge of partial folds per ``group_by``: one aggregate list for both the
    per-run pass and the per-process pass of runs with several processes."""
    energy = ",\n            ".join(
        f"arg_max(e_{name}, e_{name}_ts) AS {'source' if name == 'source' else name}"
        for name in ENERGY_COLUMNS
    )
    who = (
        """min(hash(writer_id)) AS writer_min,
            max(hash(writer_id)) AS writer_max,
            bool_and(writer_id IS NOT NULL) AS writers_known,"""
        if writers
        else ""
    )
    return f"""SELECT {group_by},
            {who}
            max(r_ts) AS r_ts,
            arg_max(r, r_attrs_ts) AS r,
            sum(e_n) > 0 AS has_energy,
            {energy},
            arg_max(e, e_attrs_ts) AS e,
            sum(bill_usd) AS bill_usd,
            sum(bill_n) AS bill_n,
            flatten(list(bill_sources)) AS bill_sources
        FROM partials"""


_PARSED = f"""CASE WHEN r.raw IS NOT NULL THEN from_json(r.raw, '{_RESOURCE_JSON}')
         ELSE struct_pack({", ".join(f"{name} := r.{name}" for name in _RESOURCE_FIELDS)}) END"""
_COVERED = """CASE WHEN e.raw IS NOT NULL
         THEN from_json(e.raw, '{"covered_s": "DOUBLE"}').covered_s ELSE e.covered_s END"""


def cost_inputs_sql(con: duckdb.DuckDBPyConnection) -> str | None:
    """A parenthesised subquery with the ``cost_inputs`` view's columns and rows, read from
    cost summaries (and the raw events of costs files without one); None when the view
    must answer (``as_of``, files not listable here, no cost summaries in the store).

    Raises:
        duckdb.Error: the store's files cannot be listed.
    """
    if con.execute("SELECT getvariable('as_of') IS NOT NULL").fetchall()[0][0]:
        return None
    costs, summaries = _files(con, "costs"), _files(con, "cost_summaries")
    if costs is None or summaries is None:
        return None
    twins = [path for rel, path in summaries.items() if rel in costs]
    raw = [path for rel, path in costs.items() if rel not in summaries]
    if not twins:
        return None
    parts = [_summary_rows(twins)] + ([_event_rows(raw)] if raw else [])
    union = "\nUNION ALL BY NAME\n".join(parts)
    energy = ", ".join(
        f"e_{name} AS {'source' if name == 'source' else name}" for name in ENERGY_COLUMNS
    )
    # Most runs have one partial row (one process, its costs compacted into one file per
    # day): such a row is already the run's fold, taken as it is. Only runs with several
    # rows (several files or processes) or an unknown writer are aggregated.
    return f"""(WITH partials AS NOT MATERIALIZED ({union}),
    merge AS (
        SELECT run_id FROM partials
        GROUP BY run_id
        HAVING count(*) > 1 OR NOT bool_and(writer_id IS NOT NULL)
    ),
    merged AS MATERIALIZED (
        {_fold("run_id", writers=True)}
        SEMI JOIN merge USING (run_id)
        GROUP BY run_id
    ),
    per_run AS (
        SELECT run_id, r_ts, r, e_n > 0 AS has_energy, {energy}, e, bill_usd, bill_n,
            bill_sources
        FROM partials ANTI JOIN merge USING (run_id)
        UNION ALL BY NAME
        SELECT * EXCLUDE (writer_min, writer_max, writers_known)
        FROM merged WHERE writer_min = writer_max AND writers_known
    ),
    single AS (
        SELECT * REPLACE (CASE WHEN bill_n > 0 THEN bill_sources END AS bill_sources),
            {_PARSED} AS a, {_COVERED} AS covered_s
        FROM per_run
    ),
    writers AS (
        {_fold("run_id, writer_id", writers=False)}
        SEMI JOIN (SELECT run_id FROM merged
                   WHERE NOT coalesce(writer_min = writer_max AND writers_known, false))
            USING (run_id)
        GROUP BY run_id, writer_id
    ),
    parsed AS (
        SELECT * REPLACE (CASE WHEN bill_n > 0 THEN bill_sources END AS bill_sources),
            {_PARSED} AS a, {_COVERED} AS covered_s
        FROM writers
    )
    SELECT * FROM cost_inputs_over('single', 'parsed'))"""
