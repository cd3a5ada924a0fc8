"""`make bench`'s runner: discovery, the --quick convention, reports of any shape."""

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
