"""Retention policies from ``ledger.toml``, planned and applied with the lifecycle verbs.

```toml
[retention]
archive_after = "90d"           # archive finished/failed/killed runs ended longer ago
delete_failed_after = "14d"     # purge failed runs ended longer ago
delete_artifacts_after = "30d"  # drop artifacts (files and listing) but keep metrics
keep_top_k = { metric = "val_acc", k = 5, mode = "max" }  # per experiment; archive the rest
```

Pinned runs and runs still running are never touched. ``plan`` and ``apply`` choose runs
with the same code; ``apply`` then calls :func:`ledger.maintenance.purge` and
:func:`ledger.maintenance.archive` (the code behind ``ledger purge``/``ledger archive``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger import maintenance, txnlog
from ledger.durations import parse_duration
from ledger.errors import ConfigError
from ledger.store import Store, open_store

if TYPE_CHECKING:
    import polars as pl

_KNOWN = {"archive_after", "delete_failed_after", "delete_artifacts_after", "keep_top_k"}


@dataclass
class Policy:
    archive_after: float | None = None
    delete_failed_after: float | None = None
    delete_artifacts_after: float | None = None
    top_k_metric: str | None = None
    top_k: int = 0
    top_k_mode: str = "max"


def load_policy(store: Store) -> Policy:
    """The ``[retention]`` section of ``ledger.toml``.

    Raises:
        ConfigError: unknown keys or unreadable values, naming the key.
    """
    section = store.read_config().get("retention", {})
    unknown = set(section) - _KNOWN
    if unknown:
        raise ConfigError(
            f"Unknown retention setting(s) {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(sorted(_KNOWN))}"
        )
    policy = Policy()
    for key in ("archive_after", "delete_failed_after", "delete_artifacts_after"):
        if key in section:
            setattr(policy, key, parse_duration(section[key], what=f"retention.{key}"))
    top = section.get("keep_top_k")
    if top is not None:
        if not isinstance(top, dict) or "metric" not in top or "k" not in top:
            raise ConfigError(
                'Invalid retention.keep_top_k: use { metric = "val_acc", k = 5, mode = "max" }'
            )
        if not isinstance(top["k"], int) or top["k"] < 1:
            raise ConfigError(
                f"Invalid retention.keep_top_k.k {top['k']!r}: use a positive integer"
            )
        mode = top.get("mode", "max")
        if mode not in ("max", "min"):
            raise ConfigError(f"Invalid retention.keep_top_k.mode {mode!r}: use max or min")
        policy.top_k_metric, policy.top_k, policy.top_k_mode = str(top["metric"]), top["k"], mode
    return policy


@dataclass
class Plan:
    """Runs each rule selects, and what the operations would move and free."""

    actions: list[dict[str, Any]] = field(default_factory=list)
    results: list[maintenance.Result] = field(default_factory=list)

    def frame(self) -> pl.DataFrame:
        import polars as pl

        schema = {
            c: pl.Utf8
            for c in ("action", "run_id", "project", "experiment", "name", "status", "reason")
        }
        return pl.DataFrame(self.actions, schema=schema)

    def summary(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame([r.summary() for r in self.results]) if self.results else pl.DataFrame()

    def runs(self, action: str) -> list[str]:
        return [a["run_id"] for a in self.actions if a["action"] == action]


def _latest_metric(store: Store, run_ids: set[str], key: str) -> dict[str, float]:
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from ledger import events

    hidden = txnlog.read_log(store).hidden()
    entries = maintenance.visible_files(store, txnlog.HOT, ["metrics"], hidden)
    if not entries:
        return {}
    dataset = pads.dataset(
        [store.path(*e.rel.split("/")) for e in entries],
        filesystem=store.fs,
        format="parquet",
        schema=events.arrow_schema("metrics"),
    )
    table = dataset.to_table(
        columns=["run_id", "value", "step", "ts", "seq"], filter=pc.field("key") == key
    )
    best: dict[str, tuple[tuple[Any, ...], float]] = {}
    for row in table.to_pylist():
        if row["run_id"] not in run_ids:
            continue
        order = (row["step"], row["ts"], row["seq"])
        if row["run_id"] not in best or order >= best[row["run_id"]][0]:
            best[row["run_id"]] = (order, row["value"])
    return {run_id: value for run_id, (_, value) in best.items()}


def plan(store: str | os.PathLike[str] | Store | None = None, *, dry_run: bool = True) -> Plan:
    """What the store's retention policy selects now (``ledger retention plan``).

    Raises:
        ConfigError: invalid ``[retention]`` settings.
    """
    store_obj = open_store(store)
    policy = load_policy(store_obj)
    infos = maintenance.load_runs(store_obj, (txnlog.HOT,))
    now_us = int(time.time() * 1e6)
    out = Plan()
    eligible = {run_id: info for run_id, info in infos.items() if info.ended and not info.pinned}

    def add(action: str, run_id: str, reason: str) -> None:
        info = infos[run_id]
        out.actions.append(
            {
                "action": action,
                "run_id": run_id,
                "project": info.project,
                "experiment": info.experiment,
                "name": info.name,
                "status": info.status,
                "reason": reason,
            }
        )

    deleted: set[str] = set()
    if policy.delete_failed_after is not None:
        cutoff = now_us - policy.delete_failed_after * 1e6
        for run_id, info in sorted(eligible.items()):
            if info.status == "failed" and (info.last_end_us or 0) <= cutoff:
                deleted.add(run_id)
                add("purge", run_id, "failed run past delete_failed_after")
    to_archive: dict[str, str] = {}
    if policy.archive_after is not None:
        cutoff = now_us - policy.archive_after * 1e6
        chosen, _ = maintenance.select_archive(infos, cutoff_us=int(cutoff))
        for run_id in chosen:
            if run_id not in deleted:
                to_archive[run_id] = "ended before archive_after"
    if policy.top_k_metric is not None:
        by_experiment: dict[tuple[str, str | None], list[str]] = {}
        for run_id, info in eligible.items():
            if run_id not in deleted and info.parent_run_id not in infos:
                by_experiment.setdefault((info.project, info.experiment), []).append(run_id)
        values = _latest_metric(store_obj, set(eligible), policy.top_k_metric)
        for _, members in sorted(by_experiment.items()):
            scored = [r for r in members if r in values and values[r] == values[r]]
            sign = -1.0 if policy.top_k_mode == "max" else 1.0
            scored.sort(key=lambda r: (sign * values[r], r))
            keep = set(scored[: policy.top_k])
            rest = [r for r in members if r not in keep]
            if not keep or not rest:
                continue
            chosen, _ = maintenance.select_archive(infos, cutoff_us=now_us, runs=rest)
            for run_id in chosen:
                to_archive.setdefault(run_id, f"not in top {policy.top_k} by {policy.top_k_metric}")
    for run_id, reason in sorted(to_archive.items()):
        add("archive", run_id, reason)
    artifacts: list[str] = []
    if policy.delete_artifacts_after is not None:
        cutoff = now_us - policy.delete_artifacts_after * 1e6
        with_artifacts = _runs_with_artifacts(store_obj)
        for run_id, info in sorted(eligible.items()):
            if (
                run_id in with_artifacts
                and run_id not in deleted
                and run_id not in to_archive
                and (info.last_end_us or 0) <= cutoff
            ):
                artifacts.append(run_id)
                add("delete-artifacts", run_id, "artifacts past delete_artifacts_after")
    if dry_run:
        if deleted:
            out.results.append(maintenance.purge(store_obj, sorted(deleted), dry_run=True))
        if to_archive:
            out.results.append(
                maintenance.archive(store_obj, runs=sorted(to_archive), dry_run=True)
            )
        if artifacts:
            out.results.append(
                maintenance.purge(store_obj, artifacts, kinds=("artifacts",), dry_run=True)
            )
    return out


def _runs_with_artifacts(store: Store) -> set[str]:
    hidden = txnlog.read_log(store).hidden()
    return {row["run_id"] for row in maintenance._artifact_rows(store, txnlog.HOT, hidden)}


def apply(
    store: str | os.PathLike[str] | Store | None = None, *, grace: str | float | None = None
) -> Plan:
    """Carry out the retention policy (``ledger retention apply``); returns what was done."""
    store_obj = open_store(store)
    chosen = plan(store_obj, dry_run=False)
    purge_runs = chosen.runs("purge")
    archive_runs = chosen.runs("archive")
    artifact_runs = chosen.runs("delete-artifacts")
    if purge_runs:
        chosen.results.append(maintenance.purge(store_obj, purge_runs, yes=True, grace=grace))
    if archive_runs:
        chosen.results.append(maintenance.archive(store_obj, runs=archive_runs, grace=grace))
    if artifact_runs:
        chosen.results.append(
            maintenance.purge(store_obj, artifact_runs, yes=True, kinds=("artifacts",), grace=grace)
        )
    return chosen
