"""Soft-deleted runs (a `deleted` lifecycle event, e.g. an imported deleted MLflow run)."""

from __future__ import annotations

from click.testing import CliRunner

import ledger
from ledger.cli import cli
from ledger.writer import writer_for


def _lifecycle(run: ledger.Run, event: str) -> None:
    # What the MLflow importer and the shim's delete_run/restore_run record.
    writer_for(run.store).add_event("runs", run.project, {"run_id": run.id, "event": event})
    ledger.flush()


def _two_runs(store_path: str) -> ledger.Run:
    """Runs 'kept' and 'gone'; returns 'gone'."""
    with ledger.start_run("p", "e", "kept", store=store_path) as kept:
        kept.log_metric("loss", 1.0)
    with ledger.start_run("p", "e", "gone", store=store_path) as gone:
        gone.log_metric("loss", 2.0)
    return gone


def test_a_deleted_run_is_hidden_from_runs_by_default(store_path):
    gone = _two_runs(store_path)
    _lifecycle(gone, "deleted")
    names = ledger.query("SELECT name FROM runs", store=store_path)["name"].to_list()
    assert names == ["kept"]
    counts = ledger.query("SELECT runs FROM experiments", store=store_path)["runs"].to_list()
    assert counts == [1]


def test_include_deleted_shows_it_flagged_and_restore_brings_it_back(store_path):
    gone = _two_runs(store_path)
    _lifecycle(gone, "deleted")
    every = ledger.query(
        "SELECT name, status, deleted, deleted_time IS NOT NULL AS stamped FROM runs ORDER BY name",
        store=store_path,
        include_deleted=True,
    ).rows()
    assert every == [("gone", "finished", True, True), ("kept", "finished", False, False)]
    _lifecycle(gone, "restored")
    names = ledger.query("SELECT name FROM runs ORDER BY name", store=store_path)
    assert names["name"].to_list() == ["gone", "kept"]


def test_cli_runs_and_query_take_include_deleted(store_path):
    gone = _two_runs(store_path)
    _lifecycle(gone, "deleted")
    runner = CliRunner()
    hidden = runner.invoke(cli, ["runs", "--store", store_path, "--format", "csv"])
    assert hidden.exit_code == 0 and "gone" not in hidden.output and "kept" in hidden.output
    shown = runner.invoke(
        cli, ["runs", "--store", store_path, "--format", "csv", "--include-deleted"]
    )
    assert shown.exit_code == 0, shown.output
    header, *rows = shown.output.strip().splitlines()
    assert header.endswith(",deleted")
    assert sorted(row.rsplit(",", 1)[1] for row in rows) == ["false", "true"]
    queried = runner.invoke(
        cli,
        ["query", "--store", store_path, "--format", "csv", "--include-deleted",
         "SELECT name FROM runs WHERE deleted"],
    )  # fmt: skip
    assert queried.exit_code == 0 and queried.output.split() == ["name", "gone"]
