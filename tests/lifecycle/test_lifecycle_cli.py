"""CLI tests of the lifecycle verbs: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json

from click.testing import CliRunner
from lifecycle_helpers import hot_run_ids, log_runs

from ledger.cli import cli


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result


def test_compact_archive_restore_from_the_shell(store_path):
    ids = log_runs(store_path, 2, steps=3)
    out = invoke("compact", "--store", store_path, "--grace", "0s", "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["files"] > 0
    dry = invoke("archive", "--store", store_path, "--older-than", "0s", "--dry-run", "-f", "json")
    summary = json.loads(dry.output)[0]
    assert summary["operation"] == "archive (dry run)" and summary["runs"] == 2
    assert summary["bytes_moved"] > 0 and summary["files"] > 0
    assert hot_run_ids(store_path) == set(ids)
    done = invoke("archive", "--store", store_path, "--older-than", "0s", "--grace", "0s")
    assert done.exit_code == 0 and "archive" in done.output
    assert hot_run_ids(store_path) == set()
    listed = invoke("runs", "--store", store_path, "--include-archived", "-f", "json")
    assert {row["run_id"] for row in json.loads(listed.output)} == set(ids)
    q = invoke(
        "query",
        "--store",
        store_path,
        "--include-archived",
        "-f",
        "json",
        "SELECT count(*) AS n FROM metrics",
    )
    assert json.loads(q.output)[0]["n"] == 2 * 3 * 2
    back = invoke("restore", "--store", store_path, ids[0][:12], "--grace", "0s")
    assert back.exit_code == 0
    assert hot_run_ids(store_path) == {ids[0]}


def test_pin_unpin_and_purge_guards(store_path):
    (run_id,) = log_runs(store_path, 1, steps=1)
    assert invoke("pin", "--store", store_path, run_id).output.strip() == f"pinned {run_id}"
    refused = invoke("purge", "--store", store_path, run_id)
    assert refused.exit_code == 1 and "--yes" in refused.output
    pinned = invoke("purge", "--store", store_path, run_id, "--yes")
    assert pinned.exit_code == 1 and "pinned" in pinned.output and "--force" in pinned.output
    assert invoke("unpin", "--store", store_path, run_id).exit_code == 0
    gone = invoke("purge", "--store", store_path, run_id, "--yes", "--grace", "0s")
    assert gone.exit_code == 0
    assert hot_run_ids(store_path) == set()


def test_errors_are_one_line(store_path):
    log_runs(store_path, 1, steps=1)
    bad = invoke("archive", "--store", store_path, "--older-than", "abc")
    assert bad.exit_code == 1
    assert bad.output.startswith("Error: Invalid --older-than 'abc'")
    neg = invoke("compact", "--store", store_path, "--older-than", "-5d")
    assert neg.exit_code == 1 and "Invalid --older-than '-5d'" in neg.output
    missing = invoke("restore", "--store", store_path, "deadbeef")
    assert missing.exit_code == 1 and "Error:" in missing.output
    nothing = invoke("restore", "--store", store_path)
    assert nothing.exit_code == 1 and "--all" in nothing.output


def test_retention_plan_and_apply(store_path):
    good = log_runs(store_path, 3, steps=2, experiment="exp")
    failed = log_runs(store_path, 1, steps=1, fail=True, experiment="exp")
    with open(f"{store_path}/ledger.toml", "w") as handle:
        handle.write(
            '[retention]\ndelete_failed_after = "0s"\n'
            'keep_top_k = { metric = "loss", k = 1, mode = "min" }\n'
        )
    plan = invoke("retention", "plan", "--store", store_path, "-f", "json")
    assert plan.exit_code == 0, plan.output
    actions = {(row["action"], row["run_id"]) for row in json.loads(plan.output)}
    # r0 has the lowest loss (1/(step+1+i)) among good runs... the highest i wins "min"
    best = good[-1]
    assert ("purge", failed[0]) in actions
    assert {r for a, r in actions if a == "archive"} == set(good) - {best}
    assert hot_run_ids(store_path) == set(good) | set(failed)
    applied = invoke("retention", "apply", "--store", store_path, "--grace", "0s", "-f", "json")
    assert applied.exit_code == 0, applied.output
    assert hot_run_ids(store_path) == {best}


def test_bad_retention_config_is_named(store_path):
    log_runs(store_path, 1, steps=1)
    with open(f"{store_path}/ledger.toml", "w") as handle:
        handle.write('[retention]\narchive_afterr = "9d"\n')
    out = invoke("retention", "plan", "--store", store_path)
    assert out.exit_code == 1 and "archive_afterr" in out.output


def test_gc_verb(store_path):
    log_runs(store_path, 2, steps=2)
    invoke("compact", "--store", store_path, "--grace", "1h", "--no-wait")
    out = invoke("gc", "--store", store_path, "--grace", "0s", "-f", "json")
    assert out.exit_code == 0
    assert json.loads(out.output)[0]["files_deleted"] > 0
