"""`make bench`'s runner: discovery, the --quick convention, reports of any shape, and
`--only` merging (sections of benchmarks that did not run keep their own stamps)."""

from __future__ import annotations

import importlib.util
import os
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_runner():
    spec = importlib.util.spec_from_file_location(
        "run_all", os.path.join(ROOT, "benchmarks", "run_all.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_collects_every_benchmark(tmp_path):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "bench_alpha.py").write_text(
        textwrap.dedent("""
        import sys
        quick = "--quick" in sys.argv
        print("### Alpha")
        print()
        print("| size | seconds |")
        print("|---|---:|")
        print(f"| {'small' if quick else 'big'} | 0.1 |")
        print("progress...", file=sys.stderr)
    """)
    )
    (folder / "bench_beta.py").write_text("print('plain text: 12 ops/s')\n")
    (folder / "bench_gamma.py").write_text(
        "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n"
    )
    (folder / "helper.py").write_text("raise SystemExit('not a benchmark')\n")
    output = tmp_path / "RESULTS.md"
    runner = load_runner()
    code = runner.main(
        ["--quick", "--benchmarks", str(folder), "--output", str(output), "--no-readme"]
    )
    assert code == 1  # gamma failed; the others still ran
    text = output.read_text()
    assert "| `bench_alpha` | ok |" in text
    assert "| small | 0.1 |" in text  # --quick was passed to the one that knows it
    assert "| `bench_beta` | ok (no --quick: ran its defaults) |" in text
    assert "```text\nplain text: 12 ops/s\n```" in text
    assert "| `bench_gamma` | failed (exit 3)" in text and "boom" in text
    assert "helper" not in text
    assert "| CPU |" in text and "| packages |" in text


def test_readme_block_is_replaced_between_markers(tmp_path, monkeypatch):
    runner = load_runner()
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:begin -->\nold\n<!-- bench:end -->\noutro\n")
    monkeypatch.setattr(runner, "README", str(readme))
    result = {
        "name": "bench_x",
        "status": "ok",
        "seconds": 1.0,
        "stdout": "| a | b |\n|---|---|\n| 1 | 2 |\n\nnotes",
        "stderr": "",
    }
    meta = runner.stamp(result, True, runner.machine_info())
    assert runner.update_readme({"bench_x": (meta, runner.section(result, meta))})
    text = readme.read_text()
    assert "old" not in text and "| 1 | 2 |" in text and "notes" not in text
    assert text.startswith("intro\n") and text.endswith("outro\n")


OLD_FORMAT = """# Benchmark results

Written by `make bench` (`python benchmarks/run_all.py`); do not edit by hand.
Mode: **full**.

## Machine

| | |
|---|---|
| date (UTC) | 2026-11-26 06:23 |
| commit | 586269c |
| CPU | AMD EPYC, 2 logical cores |
| memory | 23.5 GiB |
| load average at start | 12.40, 12.25, 9.89 |

## Summary

| benchmark | status | wall time |
|---|---|---|
| `bench_objectstore` | ok | 56.1 s |
| `bench_scale` | ok | 54.9 s |

## `bench_objectstore`

### Object store

| store | points/s |
|---|---:|
| local dir | 165,646 |

## `bench_scale`

### Scale

| question | warm |
|---|---:|
| leaderboard | 7.71 s |
"""


INFO = [
    ("date (UTC)", "2026-11-26 10:30"),
    ("commit", "abc1234"),
    ("CPU", "AMD EPYC, 2 logical cores"),
    ("memory", "23.5 GiB"),
    ("load average at start", "0.50, 0.40, 0.30"),
]


def fresh(runner, name: str, table_row: str, status: str = "ok"):
    result = {
        "name": name,
        "status": status,
        "seconds": 12.34,
        "stdout": f"### {name}\n\n| a | b |\n|---|---|\n| {table_row} |\n\nnotes",
        "stderr": "trace line",
    }
    meta = runner.stamp(result, True, INFO)
    return {name: (meta, runner.section(result, meta))}


def test_only_replaces_the_sections_that_ran_and_keeps_the_others_stamped():
    runner = load_runner()
    previous = runner.parse_results(OLD_FORMAT)
    assert previous["bench_scale"][0]["date"] == "2026-11-26 06:23"  # from the old machine table
    assert previous["bench_scale"][0]["seconds"] == "54.9"  # from the old summary
    new = fresh(runner, "bench_scale", "x | 1")
    existing = {"bench_objectstore", "bench_scale", "bench_logging"}
    sections = runner.merge_results(previous, new, existing)
    assert list(sections) == ["bench_objectstore", "bench_scale"]
    text = runner.render(sections, INFO)
    # the one that ran: new numbers, new stamp; the old table is gone
    assert "| x | 1 |" in text and "| leaderboard | 7.71 s |" not in text
    assert "| `bench_scale` | ok | 12.3 s | quick | 2026-11-26 10:30 | 0.50, 0.40, 0.30 |" in text
    # the one that did not run: old numbers with the stamp they were measured under
    assert "| local dir | 165,646 |" in text
    old_row = "| `bench_objectstore` | ok | 56.1 s | full | 2026-11-26 06:23 | 12.40, 12.25, 9.89 |"
    assert old_row in text
    # a second merge reads the new format back unchanged
    again = runner.parse_results(text)
    assert runner.render(runner.merge_results(again, {}, existing), INFO) == text


def test_benchmarks_that_no_longer_exist_are_dropped_and_failures_keep_their_tail():
    runner = load_runner()
    previous = runner.parse_results(OLD_FORMAT)
    new = fresh(runner, "bench_logging", "y | 2", status="failed (exit 1)")
    sections = runner.merge_results(previous, new, {"bench_scale", "bench_logging"})
    assert list(sections) == ["bench_logging", "bench_scale"]
    text = runner.render(sections, INFO)
    assert "bench_objectstore" not in text and "trace line" in text


def test_readme_block_shows_each_benchmark_with_its_own_stamp():
    runner = load_runner()
    sections = runner.merge_results(
        runner.parse_results(OLD_FORMAT),
        fresh(runner, "bench_scale", "x | 1"),
        {"bench_objectstore", "bench_scale"},
    )
    block = runner.readme_block(sections)
    assert block.startswith(runner.BEGIN) and block.endswith(runner.END)
    assert "**bench_objectstore** (ok in 56.1 s, full mode, measured 2026-11-26 06:23 UTC" in block
    assert "**bench_scale** (ok in 12.3 s, quick mode, measured 2026-11-26 10:30 UTC" in block
    assert "| local dir | 165,646 |" in block and "| x | 1 |" in block
    assert "notes" not in block and "bench-meta" not in block
