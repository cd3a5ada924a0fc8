"""Turning what people type (an id, an id prefix, a run name) into run ids.

Every verb that takes runs (``diff``, ``plot``, ``--children-of``, MLflow ids,
``reproduce``) resolves them here, so the rules are the same everywhere:

1. a full run id;
2. a unique prefix of a run id (at least :data:`MIN_PREFIX` characters);
3. a run name, within ``experiment`` (and ``project``) when given; ``EXPERIMENT/NAME``
   also works when no run is literally named so.

A prefix or name that matches several runs raises :class:`AmbiguousRunError` listing
them; nothing matching raises :class:`RunNotFoundError`.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
from ledger.analytics.engine import quote_literal
from ledger.analytics.pruning import (
    files_for_runs,
    files_matching,
    read_sql,
    same_schema,
    visible_files,
)

from ledger.errors import AmbiguousRunError, RunNotFoundError

MIN_PREFIX = 4
# Above every character: [prefix, prefix + _TOP) holds every id starting with prefix.
_TOP = chr(0x10FFFF)
SHOWN = 5

# One scan finds every run the reference could mean (by name or by id prefix); only
# those candidates are then folded, through a literal id list the Parquet scan can prune.
# Several references share one scan (``resolve_runs``). A prefix is also given as the
# range [prefix, prefix + _TOP) so DuckDB can skip files and row groups by their run_id
# statistics when only prefixes are asked for.
# Each condition is its own branch of a UNION: a plain conjunction DuckDB can check
# against the name and run_id statistics of each file, where an OR of them could not.
_CANDIDATES_SQL = """
SELECT DISTINCT run_id FROM ({branches}) LIMIT {limit}
"""

# Names come from the latest started/renamed event, as in the runs view. ``files``: the
# files holding each run's events, when they are read by name (see resolve_and_locate).
_FOLD_SQL = """
SELECT
    run_id,
    arg_max(name, ts) FILTER (WHERE event IN ('started', 'renamed')) AS name,
    arg_min(experiment, ts) FILTER (WHERE event = 'started') AS experiment,
    any_value(project) AS project,
    {files} AS files,
    min(ts) FILTER (WHERE event = 'started') AS start_time
FROM {source}
WHERE run_id IN ({ids})
GROUP BY run_id
HAVING start_time IS NOT NULL
ORDER BY start_time, run_id
"""


def _prefix(ref: str) -> str | None:
    ref = ref.strip()
    hexlike = len(ref) >= MIN_PREFIX and all(ch in "0123456789abcdef" for ch in ref.lower())
    return ref.lower() if hexlike else None


Candidate = tuple[str, str | None, str | None, str | None, list[str] | None]
"""A run a reference may name: (id, name, experiment, project, the visible ``runs``
files holding its events, or None when they were not read one by one)."""


def _candidates(
    con: duckdb.DuckDBPyConnection, refs: list[str], files: list[str] | None = None
) -> dict[str, list[Candidate]]:
    """For each reference, the folded runs it may name (see :data:`Candidate`): at most
    1000 runs per reference, found in one scan and folded in one more.
    ``files``: the visible ``runs`` files when the caller listed them already."""
    # On a local store each branch reads only the files whose name or run_id statistics
    # can match (the visible files: what the commit log hides is never listed).
    if (
        files is None
        and not con.execute("SELECT getvariable('as_of') IS NOT NULL").fetchall()[0][0]
    ):
        files = visible_files(con, "runs")
    branches, values = [], {}

    def branch(condition: str, column: str, low: str, high: str | None) -> None:
        source = "events_runs"
        if files:
            kept = files_matching(files, column, low, high)
            if not kept:
                return
            source = read_sql(kept, by_name=not same_schema(kept))
        branches.append(f"SELECT run_id FROM {source} WHERE {condition}")

    for i, ref in enumerate(refs):
        values[f"name{i}"] = ref
        branch(f"event IN ('started', 'renamed') AND name = $name{i}", "name", ref, None)
        prefix = _prefix(ref)
        if prefix is not None:
            values[f"lo{i}"], values[f"hi{i}"] = prefix, prefix + _TOP
            branch(
                f"event = 'started' AND run_id >= $lo{i} AND run_id < $hi{i} "
                f"AND starts_with(run_id, $lo{i})",
                "run_id",
                prefix,
                prefix + _TOP,
            )
    ids: list[str] = []
    if branches:
        sql = _CANDIDATES_SQL.format(
            branches="\nUNION ALL\n".join(branches), limit=1000 * len(refs)
        )
        used = {key: value for key, value in values.items() if f"${key}" in sql}
        ids = [row[0] for row in con.execute(sql, used).fetchall()]
    if len(ids) >= 1000 * len(refs) and len(refs) > 1:
        # A shared LIMIT may have cut one reference's candidates short: one at a time.
        out: dict[str, list[Candidate]] = {}
        for ref in refs:
            out.update(_candidates(con, [ref], files))
        return out
    rows = []
    if ids:
        listed = ", ".join(quote_literal(run_id) for run_id in ids)
        # The candidates' events only: the files whose run_id statistics can hold them,
        # read with the events_runs view's options (the project column included).
        if files:
            kept = files_for_runs(files, ids)
            source = read_sql(kept, filename=True, by_name=not same_schema(kept))
            located = "list(DISTINCT filename ORDER BY filename)"
        else:
            source, located = "events_runs", "NULL::VARCHAR[]"
        sql = _FOLD_SQL.format(ids=listed, source=source, files=located)
        rows = [row[:5] for row in con.execute(sql).fetchall()]
    out = {}
    for ref in refs:
        prefix = _prefix(ref)
        out[ref] = [
            row
            for row in rows
            if row[1] == ref or (prefix is not None and row[0].startswith(prefix))
        ][:1000]
    return out


def _describe(rows: list[tuple]) -> str:
    shown = ", ".join(
        f"{row[0]} ({row[2]}/{row[1]})" if len(row) > 2 else str(row[0]) for row in rows[:SHOWN]
    )
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    return shown + more


def resolve_run(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    *,
    experiment: str | None = None,
    project: str | None = None,
) -> str:
    """The run id ``ref`` names: a full id, a unique id prefix or a run name.

    Raises:
        RunNotFoundError: nothing matches.
        AmbiguousRunError: the prefix or name matches several runs (they are listed).
    """
    return _resolve(con, ref, None, experiment=experiment, project=project)


def _resolve(
    con: duckdb.DuckDBPyConnection,
    ref: str,
    found: list[Candidate] | None,
    *,
    experiment: str | None,
    project: str | None,
) -> str:
    """:func:`resolve_run`, with the candidates already looked up when ``found``."""
    ref = ref.strip()
    if not ref:
        raise RunNotFoundError("Empty run reference: give a run id, id prefix or name")
    scope = {"experiment": experiment, "project": project}
    prefix = _prefix(ref)
    if found is None:
        found = _candidates(con, [ref])[ref]
    rows = [
        row
        for row in found
        if (experiment is None or row[2] == experiment) and (project is None or row[3] == project)
    ]
    by_name = [(row[0], row[1], row[2]) for row in rows if row[1] == ref]
    if len(by_name) > 1:
        raise AmbiguousRunError(
            f"Run name {ref!r} matches {len(by_name)} runs: {_describe(by_name)}; "
            "give an id (prefix) or --experiment"
        )
    by_prefix = sorted(
        (row[0],) for row in rows if prefix is not None and row[0].startswith(prefix)
    )
    exact = [row for row in by_prefix if row[0] == ref.lower()]
    if exact:
        return exact[0][0]
    if by_name:
        if by_prefix and by_prefix[0][0] != by_name[0][0]:
            raise AmbiguousRunError(
                f"{ref!r} is both the name of run {by_name[0][0]} and a prefix of "
                f"{_describe(by_prefix)}; give more of the id"
            )
        return by_name[0][0]
    if len(by_prefix) == 1:
        return by_prefix[0][0]
    if by_prefix:
        raise AmbiguousRunError(
            f"Run id prefix {ref!r} matches {len(by_prefix)}"
            f"{'+' if len(by_prefix) >= 1000 else ''} runs: "
            f"{_describe(by_prefix)}; give more characters"
        )
    if "/" in ref and experiment is None:
        exp_name, _, run_name = ref.partition("/")
        try:
            return resolve_run(con, run_name, experiment=exp_name, project=project)
        except RunNotFoundError:
            pass
    where = "".join(f" in {label} {value!r}" for label, value in scope.items() if value is not None)
    hint = "" if len(ref) >= MIN_PREFIX else f" (id prefixes need {MIN_PREFIX}+ characters)"
    raise RunNotFoundError(f"No run matches {ref!r}{where}: not an id, id prefix or name{hint}")


def resolve_runs(
    con: duckdb.DuckDBPyConnection,
    refs: Iterable[str],
    experiment: str | None = None,
    *,
    project: str | None = None,
) -> list[str]:
    """Resolve each of ``refs`` with :func:`resolve_run`; ids in the order given.

    Raises:
        RunNotFoundError: a reference matches nothing.
        AmbiguousRunError: a reference matches several runs.
    """
    return resolve_and_locate(con, refs, experiment, project=project)[0]


def resolve_and_locate(
    con: duckdb.DuckDBPyConnection,
    refs: Iterable[str],
    experiment: str | None = None,
    *,
    project: str | None = None,
    files: list[str] | None = None,
) -> tuple[list[str], dict[str, list[str]]]:
    """:func:`resolve_runs`, and for each run found, the ``runs`` files that hold its
    events: resolving reads them anyway, so a question about these runs (``diff``) can
    read just those files instead of every file whose run_id range could hold them.
    Runs are located only when ``files`` are given (a local store, not ``as_of``).

    Raises:
        RunNotFoundError: a reference matches nothing.
        AmbiguousRunError: a reference matches several runs.
    """
    refs = list(refs)
    wanted = list(dict.fromkeys(ref.strip() for ref in refs if ref.strip()))
    found: dict[str, list[Candidate]] = {}
    if wanted:
        found = _candidates(con, wanted, files)
    ids = [
        _resolve(con, ref, found.get(ref.strip()), experiment=experiment, project=project)
        for ref in refs
    ]
    located = {
        row[0]: row[4]
        for rows in found.values()
        for row in rows
        if row[0] in ids and row[4] is not None
    }
    return ids, located
