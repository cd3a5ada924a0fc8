"""Hyperparameter importance: which params matter for a metric, by Optuna's evaluators.

Runs in scope become Optuna trials (params + the metric as the trial's value) in an
in-memory study, and Optuna's own evaluator scores them, so for runs that came from an
Optuna study the numbers equal ``optuna.importance.get_param_importances`` on that study
with the same evaluator and seed.

Search space: a run may carry the tag ``optuna.distributions`` (JSON object, param name
to ``optuna.distributions.distribution_to_json``'s text or that JSON as an object, as the
Optuna adapter writes it); those distributions are used as declared. Otherwise they are
inferred from the logged values: int params -> ``IntDistribution(min, max)``, float ->
``FloatDistribution(min, max)``, bool/str/json or mixed types ->
``CategoricalDistribution`` of the values seen.

Runs without the metric, or whose value is NaN/inf, are skipped and counted. Params a
run did not log are missing for that trial; as in Optuna, PED-ANOVA scores every param
(conditional ones too) while fanova and mdi score only params that every trial has (the
others are listed with a NULL importance). Cost grows fast with fanova: about 1 s for
200 runs but minutes for 2,000 (Optuna's own evaluator; ped-anova takes 0.2 s there).

Next to each importance, ``correlation`` shows the param's marginal relationship with
the metric, as W&B's parameter-importance panel does: Spearman's rank correlation for
numeric params, the correlation ratio (eta, 0..1) for categorical ones.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
from ledger.analytics.engine import connection
from ledger.analytics.leaderboard import check_choices, value_columns
from ledger.analytics.scope import Scope, parse_as_of
from ledger.analytics.summaries import summaries_sql

from ledger.errors import AnalysisError, InvalidValueError

if TYPE_CHECKING:
    import polars as pl

EVALUATORS = ("fanova", "ped-anova", "mdi")
DISTRIBUTIONS_TAG = "optuna.distributions"


@dataclass
class Trials:
    """Runs rebuilt as Optuna trials, plus what was left out."""

    run_ids: list[str]
    params: list[dict[str, Any]]
    values: list[float]
    distributions: dict[str, Any]
    kinds: dict[str, str]
    skipped_no_metric: int
    skipped_not_finite: int


def make_evaluator(name: str, seed: int | None) -> Any:
    """The Optuna evaluator called ``name`` (fanova, ped-anova, mdi), seeded.

    Raises:
        InvalidValueError: unknown name.
    """
    from optuna import importance

    if name == "fanova":
        return importance.FanovaImportanceEvaluator(seed=seed)
    if name == "mdi":
        return importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    if name == "ped-anova":
        return importance.PedAnovaImportanceEvaluator()
    raise InvalidValueError(f"Unknown evaluator {name!r}. Known: {', '.join(EVALUATORS)}")


def _typed(text: str | None, value_type: str | None) -> Any:
    if value_type == "int":
        return int(text)  # type: ignore[arg-type]
    if value_type == "float":
        return float(text)  # type: ignore[arg-type]
    if value_type == "bool":
        return text == "True"
    if value_type == "null":
        return None
    return text


def _runs_with_values(
    con: duckdb.DuckDBPyConnection, ctes: str, values: dict[str, Any], value_col: str
) -> list[tuple[Any, ...]]:
    """(run_id, metric value or None, distributions tag or None) per run in scope, in
    start order (the order Optuna numbered the trials)."""
    return con.execute(
        f"""{ctes},
        dist AS (
            SELECT run_id, arg_max_null(value, ts) AS value FROM events_tags
            WHERE key = $dist_tag AND run_id IN (SELECT run_id FROM selected)
            GROUP BY run_id
        )
        SELECT s.run_id, m.{value_col} AS value, dist.value
        FROM selected s
        LEFT JOIN (SELECT * FROM {summaries_sql(con)} WHERE key = $metric) m
            ON m.run_id = s.run_id
        LEFT JOIN dist ON dist.run_id = s.run_id
        ORDER BY s.start_time, s.run_id""",
        values,
    ).fetchall()


def load_trials(
    con: duckdb.DuckDBPyConnection, scope: Scope, *, metric: str, mode: str, agg: str
) -> Trials:
    """Rebuild the runs in ``scope`` as trial data (see the module doc)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
        json_to_distribution,
    )

    scope.prepare(con)
    ctes, values = scope.candidates_sql()
    value_col, _ = value_columns(agg, mode)
    values = {**values, "metric": metric, "dist_tag": DISTRIBUTIONS_TAG}
    try:
        runs = _runs_with_values(con, ctes, values, value_col)
    except duckdb.Error as exc:
        if scope.where is not None:
            raise scope.explain_error(exc, con) from exc
        raise
    kept = [row for row in runs if row[1] is not None and math.isfinite(row[1])]
    no_metric = sum(1 for row in runs if row[1] is None)
    run_ids = [row[0] for row in kept]
    declared: dict[str, Any] = {}
    for row in kept:
        if row[2]:
            try:
                for name, text in json.loads(row[2]).items():
                    # Each value is distribution_to_json's text, or that JSON as an
                    # object (what ledger.optuna.LedgerCallback writes).
                    if not isinstance(text, str):
                        text = json.dumps(text)
                    declared.setdefault(name, json_to_distribution(text))
            except (ValueError, TypeError, KeyError):
                continue
    params: dict[str, dict[str, Any]] = {run_id: {} for run_id in run_ids}
    types: dict[str, set[str]] = {}
    for run_id, key, text, value_type in con.execute(
        "SELECT run_id, key, value, value_type FROM params WHERE run_id IN (SELECT unnest($ids))",
        {"ids": run_ids},
    ).fetchall():
        params[run_id][key] = (text, value_type)
        types.setdefault(key, set()).add(value_type)
    distributions: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    typed_rows: list[dict[str, Any]] = [{} for _ in run_ids]
    for key in sorted(types):
        kinds_seen = types[key]
        numeric = kinds_seen <= {"int", "float"}
        for index, run_id in enumerate(run_ids):
            if key in params[run_id]:
                text, value_type = params[run_id][key]
                value = _typed(text, value_type) if numeric or len(kinds_seen) == 1 else text
                if numeric and kinds_seen != {"int"}:
                    value = float(value)
                typed_rows[index][key] = value
        seen = [row[key] for row in typed_rows if key in row]
        if key in declared:
            distribution = declared[key]
        elif numeric and kinds_seen == {"int"}:
            distribution = IntDistribution(min(seen), max(seen))
        elif numeric:
            distribution = FloatDistribution(min(seen), max(seen))
        else:
            choices = sorted(set(seen), key=lambda v: (str(type(v)), str(v)))
            distribution = CategoricalDistribution(choices)
        distributions[key] = distribution
        kinds[key] = (
            "categorical"
            if isinstance(distribution, CategoricalDistribution)
            else ("int" if isinstance(distribution, IntDistribution) else "float")
        )
    return Trials(
        run_ids=run_ids,
        params=typed_rows,
        values=[row[1] for row in kept],
        distributions=distributions,
        kinds=kinds,
        skipped_no_metric=no_metric,
        skipped_not_finite=len(runs) - len(kept) - no_metric,
    )


class _TrialsStudy:
    """The part of ``optuna.Study`` that importance evaluators read.

    ``Study.add_trials`` deep-copies every trial into its storage (~1-3 ms a trial: seconds
    for 2,000 runs); evaluators only call ``get_trials(deepcopy=False, states=...)`` and
    read the direction, so the trials are handed over as they are. The equality test
    against ``optuna.importance.get_param_importances`` on a real study guards this.
    """

    def __init__(self, frozen: list[Any], direction: Any) -> None:
        self._trials = frozen
        self.direction = direction
        self.directions = [direction]

    def _is_multi_objective(self) -> bool:
        return False

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[Any]:
        if states is None:
            return list(self._trials)
        return [trial for trial in self._trials if trial.state in states]


def _study(trials: Trials, mode: str) -> Any:
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState

    moment = dt.datetime.now()
    frozen = [
        FrozenTrial(
            number=number,
            state=TrialState.COMPLETE,
            value=value,
            datetime_start=moment,
            datetime_complete=moment,
            params=params,
            distributions={k: trials.distributions[k] for k in params},
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=number,
        )
        for number, (params, value) in enumerate(zip(trials.params, trials.values, strict=True))
    ]
    direction = StudyDirection.MAXIMIZE if mode == "max" else StudyDirection.MINIMIZE
    return _TrialsStudy(frozen, direction)


def _correlation(xs: list[Any], ys: list[float], kind: str) -> tuple[float | None, str]:
    if len(xs) < 3:
        return None, "spearman" if kind != "categorical" else "eta"
    if kind != "categorical":
        from scipy.stats import spearmanr

        if len(set(xs)) < 2:
            return None, "spearman"
        rho = float(spearmanr(xs, ys).statistic)
        return (None if math.isnan(rho) else rho), "spearman"
    groups: dict[str, list[float]] = {}
    for x, y in zip(xs, ys, strict=True):
        groups.setdefault(repr(x), []).append(y)
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    if total == 0:
        return None, "eta"
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    return math.sqrt(between / total), "eta"


def importance(
    store: str | os.PathLike[str] | Any | None = None,
    *,
    metric: str,
    mode: str = "max",
    agg: str = "best",
    project: str | None = None,
    experiment: str | None = None,
    children_of: str | None = None,
    where: str | None = None,
    evaluator: str = "ped-anova",
    seed: int | None = 0,
    params: Sequence[str] | str | None = None,
    as_of: str | dt.datetime | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pl.DataFrame:
    """How much each hyperparameter matters for ``metric`` (see the module doc).

    Args:
        metric, mode, agg: the trial value is the run's ``agg`` of ``metric``; ``mode``
            is the study direction.
        project, experiment, children_of, where, as_of: which runs (as for leaderboard).
        evaluator: ``ped-anova`` (Optuna 5's default), ``fanova`` or ``mdi``.
        seed: seed of fanova/mdi's random forest (ped-anova is deterministic).
        params: only these params (default: all in common).

    Returns:
        One row per param, most important first: param, importance (normalised to sum
        to 1, NULL where the evaluator could not score it), kind, correlation,
        correlation_kind, runs (that logged the param), evaluator, seed, runs_used,
        runs_skipped (no metric or a non-finite value).

    Raises:
        InvalidValueError: unknown evaluator/mode/agg.
        AnalysisError: fewer than two usable runs, or no param every run has.
    """
    check_choices(mode, agg)
    make_evaluator(evaluator, seed)
    moment = parse_as_of(as_of)
    with connection(con, store, as_of=moment) as con:
        trials = load_trials(
            con,
            Scope(project=project, experiment=experiment, children_of=children_of, where=where),
            metric=metric,
            mode=mode,
            agg=agg,
        )
    skipped = trials.skipped_no_metric + trials.skipped_not_finite
    if len(trials.values) < 2:
        raise AnalysisError(
            f"Importance needs at least 2 runs with a finite {metric!r}; found "
            f"{len(trials.values)} ({trials.skipped_no_metric} without it, "
            f"{trials.skipped_not_finite} NaN/inf)"
        )
    wanted = [p.strip() for p in params.split(",")] if isinstance(params, str) else params
    # As in Optuna: PED-ANOVA scores every param (conditional ones too); the
    # forest-based evaluators only params that every trial has.
    common = [
        key
        for key in trials.distributions
        if evaluator == "ped-anova" or all(key in row for row in trials.params)
    ]
    scored = [key for key in common if wanted is None or key in wanted]
    if not scored:
        raise AnalysisError(
            f"No param is logged by all {len(trials.values)} runs"
            + (f" among {', '.join(wanted)}" if wanted else "")
            + f"; params seen: {', '.join(trials.distributions) or '(none)'}"
        )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(trials, mode)
    scores = optuna.importance.get_param_importances(
        study, evaluator=make_evaluator(evaluator, seed), params=scored
    )
    import polars as pl

    rows = []
    for key in trials.distributions:
        if wanted is not None and key not in wanted:
            continue
        pairs = [
            (row[key], value)
            for row, value in zip(trials.params, trials.values, strict=True)
            if key in row
        ]
        correlation, correlation_kind = _correlation(
            [p[0] for p in pairs], [p[1] for p in pairs], trials.kinds[key]
        )
        rows.append(
            {
                "param": key,
                "importance": scores.get(key),
                "kind": trials.kinds[key],
                "correlation": correlation,
                "correlation_kind": correlation_kind,
                "runs": len(pairs),
                "evaluator": evaluator,
                "seed": None if evaluator == "ped-anova" else seed,
                "runs_used": len(trials.values),
                "runs_skipped": skipped,
            }
        )
    rows.sort(key=lambda r: (r["importance"] is None, -(r["importance"] or 0.0), r["param"]))
    return pl.DataFrame(
        rows,
        schema={
            "param": pl.Utf8,
            "importance": pl.Float64,
            "kind": pl.Utf8,
            "correlation": pl.Float64,
            "correlation_kind": pl.Utf8,
            "runs": pl.Int64,
            "evaluator": pl.Utf8,
            "seed": pl.Int64,
            "runs_used": pl.Int64,
            "runs_skipped": pl.Int64,
        },
    )
