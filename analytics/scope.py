"""Which runs a report looks at: project, experiment, children of a sweep, a --where
predicate over run columns, params and tags, and the moment (``as_of``) it looks from.

The leaderboard and importance share it, so ``--where`` means the same thing in both.
The predicate is full DuckDB SQL (OR, IN, BETWEEN, LIKE, subqueries over the views...)
evaluated against one row per run::

    status = 'finished' AND (params.lr BETWEEN 1e-4 AND 1e-2 OR tags.team IN ('cv', 'nlp'))

``params.<key>`` and ``tags.<key>`` are typed fields (numbers compare as numbers, booleans
as booleans); every column of the ``runs`` view is there by name.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
from ledger.analytics.engine import quote_identifier
from ledger.analytics.pruning import param_value_types
from ledger.analytics.resolve import resolve_run

from ledger.durations import parse_duration
from ledger.errors import ConfigError, QueryError

RUN_COLUMNS = (
    "run_id",
    "project",
    "experiment",
    "name",
    "parent_run_id",
    "status",
    "start_time",
    "end_time",
    "duration_s",
    '"user"',
    "host",
    "pinned",
)
# Read from each run's captured environment (a JSON document of ~100 package versions):
# folded only when the predicate or a group-by names them, as they cost most of the fold.
ENV_COLUMNS = ("git_commit", "git_branch", "git_dirty", "python_version", "command")
_NUMERIC = {"int", "float"}


def parse_as_of(value: str | dt.datetime | None) -> dt.datetime | None:
    """A moment: a datetime, an ISO date/time (naive = UTC) or a duration ago (``"2h"``).

    Raises:
        ConfigError: the text is neither.
    """
    if value is None or isinstance(value, dt.datetime):
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value
    text = value.strip()
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            seconds = parse_duration(text)
        except Exception as exc:
            raise ConfigError(
                f"--as-of {value!r} is neither an ISO time (2026-11-26T09:30:00Z, "
                "2026-11-26) nor a duration ago (90m, 2h, 7d)"
            ) from exc
        return dt.datetime.fromtimestamp(time.time() - seconds, tz=dt.timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def check_predicate(predicate: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Make sure ``predicate`` is one boolean expression and nothing else.

    It is parsed inside ``SELECT * FROM candidates WHERE (...)``; the parse tree must be
    exactly that (no UNION, ORDER/LIMIT, second statement or comment trick). ``con``: an
    open connection to parse with (else DuckDB's default one, which a fresh process has
    to create first: ~10 ms).

    Raises:
        QueryError: anything else, with DuckDB's parse error when it did not parse.
    """
    if not predicate.strip():
        raise QueryError('--where is empty: give a SQL condition, e.g. "params.lr < 0.01"')
    if predicate in _checked_predicates:  # the answer depends on the text alone
        return
    sql = f"SELECT * FROM candidates WHERE ({predicate}\n)"
    try:
        statements = duckdb.extract_statements(sql)
        parser = duckdb if con is None else con
        tree = json.loads(parser.execute("SELECT json_serialize_sql($1)", [sql]).fetchall()[0][0])
    except duckdb.Error as exc:
        raise QueryError(f"Invalid --where {predicate!r}: {_first_line(exc)}") from exc
    if tree.get("error"):
        raise QueryError(f"Invalid --where {predicate!r}: {tree.get('error_message')}")
    node = tree["statements"][0]["node"] if len(tree["statements"]) == 1 else {}
    from_table = node.get("from_table") or {}
    plain = (
        len(statements) == 1
        and statements[0].type == duckdb.StatementType.SELECT
        and node.get("type") == "SELECT_NODE"
        and not node.get("modifiers")
        and not node.get("cte_map", {}).get("map")
        and not node.get("group_expressions")
        and node.get("having") is None
        and node.get("qualify") is None
        and node.get("sample") is None
        and from_table.get("type") == "BASE_TABLE"
        and from_table.get("table_name") == "candidates"
        and len(node.get("select_list", [])) == 1
    )
    if not plain:
        raise QueryError(
            f"--where must be one condition over runs, params.<key> and tags.<key>, got "
            f"{predicate!r}"
        )
    if len(_checked_predicates) >= 1024:
        _checked_predicates.clear()
    _checked_predicates.add(predicate)


_checked_predicates: set[str] = set()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def _sql_type(types: Sequence[str | None]) -> str:
    known = {t for t in types if t not in (None, "null")}
    if known and known <= {"int"}:
        return "BIGINT"
    if known and known <= _NUMERIC:
        return "DOUBLE"
    if known == {"bool"}:
        return "BOOLEAN"
    return "VARCHAR"


@dataclass
class Scope:
    """The runs a report covers, as SQL the report builds on (see module doc)."""

    project: str | None = None
    experiment: str | None = None
    children_of: str | None = None
    where: str | None = None
    parent_id: str | None = None
    extra_columns: list[str] = field(default_factory=list)
    param_types: dict[str, str] = field(default_factory=dict)
    tag_keys: list[str] = field(default_factory=list)

    def run_columns(self) -> list[str]:
        """The ``runs`` columns the reports read (environment ones only when named)."""
        return list(RUN_COLUMNS) + [
            column
            for column in ENV_COLUMNS
            if column in self.extra_columns or (self.where is not None and column in self.where)
        ]

    def base_sql(self, runs: str = "runs") -> tuple[str, dict[str, Any]]:
        """``SELECT <run columns> FROM runs WHERE <project/experiment/parent>``; ``runs``
        may name another relation with those columns (a cached fold)."""
        conditions, values = ["true"], {}
        if self.project is not None:
            conditions.append("project = $project")
            values["project"] = self.project
        if self.experiment is not None:
            conditions.append("experiment = $experiment")
            values["experiment"] = self.experiment
        if self.parent_id is not None:
            conditions.append("parent_run_id = $parent_id")
            values["parent_id"] = self.parent_id
        columns = self.run_columns()
        sql = f"SELECT {', '.join(columns)} FROM {runs} WHERE {' AND '.join(conditions)}"
        return sql, values

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        wanted_params: Sequence[str] = (),
        wanted_tags: Sequence[str] = (),
        params_files: Sequence[str] | None = None,
    ) -> None:
        """Resolve ``children_of`` and learn the param types / tag keys the SQL needs
        (``params_files``: the visible params files, when the caller listed them).

        Raises:
            RunNotFoundError, AmbiguousRunError: ``children_of`` does not name one run.
            QueryError: ``where`` is not a single condition.
        """
        if self.children_of is not None:
            self.parent_id = resolve_run(con, self.children_of, project=self.project)
        if self.where is not None:
            check_predicate(self.where, con)
        # Types and keys come from the raw events of the project (partition-pruned),
        # not from the folded scope: folding the runs twice would double the cost, and a
        # key's type only has to be one its values cast to.
        values: dict[str, Any] = {"project": self.project}
        in_project = "($project IS NULL OR project = $project)"
        keys: list[str] | None = list(wanted_params)
        if self.where is not None and "params" in self.where:
            mentioned = referenced_keys(self.where, "params")
            keys = None if mentioned is None else list(dict.fromkeys(keys + mentioned))
        self.param_types = {}
        if keys != []:
            key_filter = "" if keys is None else "AND key IN (SELECT unnest($keys))"
            if keys is not None:
                values["keys"] = keys
            # Per-file answers are cached (only new files are read); the view otherwise.
            cached = param_value_types(con, self.project, keys, params_files)
            if cached is not None:
                rows = sorted((key, list(types)) for key, types in cached.items())
            else:
                rows = con.execute(
                    f"""SELECT key, list(DISTINCT value_type) FROM events_params
                    WHERE {in_project} {key_filter} GROUP BY key ORDER BY key""",
                    values,
                ).fetchall()
            self.param_types = {key: _sql_type(types) for key, types in rows}
        for key in wanted_params:  # asked for but never logged: a NULL column
            self.param_types.setdefault(key, "VARCHAR")
        self.tag_keys = list(wanted_tags)
        mentioned_tags = referenced_keys(self.where or "", "tags")
        if mentioned_tags is not None:
            self.tag_keys += [key for key in mentioned_tags if key not in self.tag_keys]
        elif self.where is not None:
            self.tag_keys += [
                row[0]
                for row in con.execute(
                    f"SELECT DISTINCT key FROM events_tags WHERE {in_project} ORDER BY key",
                    {"project": self.project},
                ).fetchall()
                if row[0] not in wanted_tags
            ]

    def pivot_sql(self, kind: str, among: str | None = None) -> str | None:
        """``run_id`` and one column per wanted key of ``kind`` (``params``: typed, first
        value wins; ``tags``: latest value, a deleted tag is NULL), as the params and
        tags views define them, pivoted straight from the raw events in one
        aggregation; None when no key is wanted. ``among``: only the runs of that
        relation (its ``run_id`` column)."""
        if kind == "params":
            keys = list(self.param_types)
            fields = [
                f"TRY_CAST(arg_min(value, ts) FILTER (WHERE key = {_literal(key)}) AS "
                f"{sql_type}) AS {quote_identifier(key)}"
                for key, sql_type in self.param_types.items()
            ]
        else:
            keys = list(self.tag_keys)
            fields = [
                f"arg_max_null(value, ts) FILTER (WHERE key = {_literal(key)}) "
                f"AS {quote_identifier(key)}"
                for key in keys
            ]
        if not keys:
            return None
        listed = ", ".join(_literal(key) for key in keys)
        only = "" if among is None else f" AND run_id IN (SELECT run_id FROM {among})"
        return (
            f"SELECT run_id, {', '.join(fields)} FROM events_{kind} "
            f"WHERE key IN ({listed}){only} GROUP BY run_id"
        )

    def candidates_sql(
        self,
        runs: str = "runs",
        params: str | None = None,
        tags: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """CTEs ending in ``selected``: one row per run in scope that passes ``where``,
        with run columns, a typed ``params`` struct and a ``tags`` struct.

        ``runs``, ``params`` and ``tags`` may name relations that already hold the
        fold (:meth:`base_sql`'s columns) and the pivots (:meth:`pivot_sql` over every
        run); by default they are computed here, for the runs in scope only.
        """
        base, values = self.base_sql(runs)
        ctes = [f"scope AS ({base})"]
        params_struct = tags_struct = "NULL"
        joins = ""
        for kind, given, alias in (("params", params, "p"), ("tags", tags, "t")):
            keys = list(self.param_types) if kind == "params" else list(self.tag_keys)
            pivot = self.pivot_sql(kind, among="scope")
            if pivot is None:
                continue
            ctes.append(f"{alias} AS ({pivot if given is None else f'SELECT * FROM {given}'})")
            struct = (
                "struct_pack("
                + ", ".join(f"{quote_identifier(k)} := {alias}.{quote_identifier(k)}" for k in keys)
                + ")"
            )
            if kind == "params":
                params_struct = struct
            else:
                tags_struct = struct
            joins += f" LEFT JOIN {alias} ON {alias}.run_id = scope.run_id"
        if self.where is not None and "params" in self.where and not self.param_types:
            params_struct = "struct_pack(__no_params__ := NULL)"
        if self.where is not None and "tags" in self.where and not self.tag_keys:
            tags_struct = "struct_pack(__no_tags__ := NULL)"
        ctes.append(
            f"candidates AS (SELECT scope.*, {params_struct} AS params, {tags_struct} AS tags "
            f"FROM scope{joins})"
        )
        where = f"({self.where}\n)" if self.where is not None else "true"
        ctes.append(f"selected AS (SELECT * FROM candidates WHERE {where})")
        return "WITH " + ",\n".join(ctes), values

    def explain_error(
        self, exc: duckdb.Error, con: duckdb.DuckDBPyConnection | None = None
    ) -> QueryError:
        """A readable error for a predicate that parsed but does not bind or run: names
        the run columns and the param and tag keys the store has."""
        message = _first_line(exc)
        params, tags = list(self.param_types), list(self.tag_keys)
        if con is not None:
            project = {"project": self.project}
            in_project = "($project IS NULL OR project = $project)"
            params, tags = (
                [
                    row[0]
                    for row in con.execute(
                        f"SELECT DISTINCT key FROM events_{kind} WHERE {in_project} ORDER BY key",
                        project,
                    ).fetchall()
                ]
                for kind in ("params", "tags")
            )
        known = ", ".join(f"params.{k}" for k in params) or "(none)"
        tag_text = ", ".join(f"tags.{k}" for k in tags) or "(none)"
        columns = ", ".join(c.strip(chr(34)) for c in RUN_COLUMNS + ENV_COLUMNS)
        return QueryError(
            f"--where {self.where!r} failed: {message}. Run columns: {columns}; "
            f"params: {known}; tags: {tag_text}"
        )


def referenced_keys(predicate: str, struct: str) -> list[str] | None:
    """Keys ``predicate`` reads as ``<struct>.<key>``; None when it uses ``struct``
    another way (``params['lr']``, a subquery over the params view...)."""
    word = re.compile(rf"\b{struct}\b", re.IGNORECASE)
    field = re.compile(rf'\b{struct}\s*\.\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)', re.I)
    keys = [
        name[1:-1].replace('""', '"') if name.startswith('"') else name
        for name in field.findall(predicate)
    ]
    if len(word.findall(predicate)) != len(keys):
        return None
    return list(dict.fromkeys(keys))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
