"""Run every ``benchmarks/bench_*.py`` and write ``benchmarks/RESULTS.md`` (+ README table).

The convention every benchmark follows (so this runner needs no list of them):

* ``python benchmarks/bench_<area>.py [--quick]``: the full run by default, a small
  run that finishes in well under a minute with ``--quick``;
* its report goes to **stdout** as Markdown (``###`` headings, tables, short notes
  naming exactly what was measured, MLflow beside it where it does the same job);
  progress and logging go to stderr;
* exit status 0 on success.

Benchmarks that do not follow it are still run: one whose source never mentions
``--quick`` runs with its own defaults (the report says so), and plain-text output is
kept verbatim in a code block.

Usage::

    python benchmarks/run_all.py [--quick] [--only scale,queries] [--timeout 3600]

Each benchmark runs in its own process, one after the other (timings must not share
the 2 cores). A failing or timed-out benchmark is reported as such and the others
still run. The first table of each report also goes into README.md between the
``<!-- bench:begin -->`` / ``<!-- bench:end -->`` markers.

Each benchmark's section carries its own stamp (date, commit, machine, load, mode,
status), so ``--only`` merges: it replaces the sections of the benchmarks it ran and
keeps every other benchmark's latest section as it was measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "RESULTS.md")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PACKAGES = ("duckdb", "pyarrow", "polars", "mlflow", "optuna", "pyspark")


def machine_info() -> list[tuple[str, str]]:
    """Facts that make numbers comparable: CPU, cores, memory, disk, versions, commit."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except Exception:  # psutil is a core dependency; keep the report going regardless
        memory, load = "unknown", "unknown"
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return [
        ("date (UTC)", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("commit", commit),
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("memory", memory),
        ("load average at start", load),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("packages", ", ".join(versions)),
    ]


def first_table(markdown: str) -> str:
    lines, found = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("|"):
            lines.append(line)
            found = True
        elif found:
            break
    return "\n".join(lines)


def supports_quick(path: str) -> bool:
    with open(path, encoding="utf-8") as handle:
        return "--quick" in handle.read()


def is_markdown(text: str) -> bool:
    return any(line.lstrip().startswith("|") for line in text.splitlines())


def as_markdown(text: str, limit: int | None = None) -> str:
    """Markdown output as is; plain text in a code block (cut to ``limit`` lines)."""
    if not text:
        return "_(no output)_"
    if is_markdown(text):
        return text
    lines = text.splitlines()
    if limit is not None and len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more lines in RESULTS.md)"]
    return "\n".join(["```text", *lines, "```"])


def run_one(path: str, quick: bool, timeout: float) -> dict[str, object]:
    quick_flag = quick and supports_quick(path)
    command = [sys.executable, path, *(["--quick"] if quick_flag else [])]
    print(f"==> {' '.join(os.path.relpath(part, ROOT) for part in command[1:])}", file=sys.stderr)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
        )
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        status = f"timed out after {timeout:.0f} s"
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.perf_counter() - started
    sys.stderr.write(stderr[-4000:] if status != "ok" else "")
    print(f"    {status} in {seconds:.1f} s", file=sys.stderr)
    if quick and not quick_flag:
        status += " (no --quick: ran its defaults)"
    return {
        "name": os.path.basename(path)[: -len(".py")],
        "status": status,
        "seconds": seconds,
        "stdout": stdout.strip(),
        "stderr": stderr.strip(),
    }


SECTION = re.compile(r"^## `(bench_[A-Za-z0-9_]+)`[ \t]*$", re.M)
META = re.compile(r"^<!-- bench-meta (\{.*\}) -->$", re.M)


def stamp(result: dict[str, object], quick: bool, info: list[tuple[str, str]]) -> dict[str, str]:
    """What one benchmark's numbers were measured under (kept with its section)."""
    facts = dict(info)
    return {
        "status": str(result["status"]),
        "seconds": f"{float(result['seconds']):.1f}",  # type: ignore[arg-type]
        "mode": "quick" if quick else "full",
        "date": facts["date (UTC)"],
        "commit": facts["commit"],
        "machine": f"{facts['CPU']}, {facts['memory']}",
        "load": facts["load average at start"],
    }


def section(result: dict[str, object], meta: dict[str, str]) -> str:
    """One benchmark's section of RESULTS.md: heading, its own stamp, its report."""
    lines = [
        f"## `{result['name']}`",
        "",
        f"<!-- bench-meta {json.dumps(meta, sort_keys=True)} -->",
        f"_{stamp_line(meta)}_",
        "",
        as_markdown(str(result["stdout"])),
        "",
    ]
    if not meta["status"].startswith("ok"):
        tail = "\n".join(str(result["stderr"]).splitlines()[-20:])
        lines += ["```", tail, "```", ""]
    return "\n".join(lines)


def stamp_line(meta: dict[str, str]) -> str:
    return (
        f"{meta['status']} in {meta['seconds']} s, {meta['mode']} mode, measured "
        f"{meta['date']} UTC on {meta['machine']}, load average {meta['load']} "
        f"(commit {meta['commit']})"
    )


def parse_results(text: str) -> dict[str, tuple[dict[str, str], str]]:
    """The sections of an existing RESULTS.md: name -> (stamp, section text).

    Sections written before stamps existed get the file's one machine table and
    summary row as their stamp, so their numbers keep saying where they came from.
    """
    matches = list(SECTION.finditer(text))
    head = text[: matches[0].start()] if matches else text
    machine = dict(re.findall(r"^\| ([^|]+?) \| ([^|]*?) \|$", head, re.M))
    summary = {
        name: (status, seconds)
        for name, status, seconds in re.findall(
            r"^\| `(bench_\w+)` \| ([^|]+?) \| ([\d.]+) s \|", head, re.M
        )
    }
    mode = re.search(r"^Mode: \*\*(\w+)\*\*", head, re.M)
    sections = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.start() : end].rstrip() + "\n"
        found = META.search(body)
        if found:
            meta = json.loads(found.group(1))
        else:
            status, seconds = summary.get(match.group(1), ("ok", "?"))
            meta = {
                "status": status,
                "seconds": seconds,
                "mode": mode.group(1) if mode else "?",
                "date": machine.get("date (UTC)", "?"),
                "commit": machine.get("commit", "?"),
                "machine": f"{machine.get('CPU', '?')}, {machine.get('memory', '?')}",
                "load": machine.get("load average at start", "?"),
            }
            heading, _, rest = body.partition("\n")
            body = "\n".join(
                [
                    heading,
                    "",
                    f"<!-- bench-meta {json.dumps(meta, sort_keys=True)} -->",
                    f"_{stamp_line(meta)}_",
                    rest.rstrip(),
                    "",
                ]
            )
        sections[match.group(1)] = (meta, body)
    return sections


def merge_results(
    previous: dict[str, tuple[dict[str, str], str]],
    fresh: dict[str, tuple[dict[str, str], str]],
    existing: set[str],
) -> dict[str, tuple[dict[str, str], str]]:
    """Sections after a run: the fresh ones, plus the previous sections of benchmarks
    that still exist and did not run this time (each keeps its own stamp)."""
    kept = {name: item for name, item in previous.items() if name in existing}
    merged = {**kept, **fresh}
    return {name: merged[name] for name in sorted(merged)}


def render(sections: dict[str, tuple[dict[str, str], str]], info: list[tuple[str, str]]) -> str:
    """RESULTS.md from its sections (as merged by :func:`merge_results`)."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python benchmarks/run_all.py [--quick] [--only a,b]`); "
        "do not edit by hand. Each section says when, where and under what load it was "
        "measured; `--only` replaces just the sections it runs.",
        "",
        "## Machine of the latest run",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in info),
        "",
        "## Summary",
        "",
        "| benchmark | status | wall time | mode | measured (UTC) | load average at start |",
        "|---|---|---|---|---|---|",
        *(
            f"| `{name}` | {meta['status']} | {meta['seconds']} s | {meta['mode']} | "
            f"{meta['date']} | {meta['load']} |"
            for name, (meta, _) in sections.items()
        ),
        "",
    ]
    for _, body in sections.values():
        lines += [body.rstrip(), ""]
    return "\n".join(lines)


def readme_block(sections: dict[str, tuple[dict[str, str], str]]) -> str:
    """The README's benchmark block: each benchmark's first table (or its text), stamped."""
    block = [BEGIN, "", "Details in [benchmarks/RESULTS.md](benchmarks/RESULTS.md).", ""]
    for name, (meta, body) in sections.items():
        found = META.search(body)
        after = body[found.end() :] if found else body.split("\n", 1)[-1]
        report = after.strip().split("\n", 1)[-1] if found else after  # drop the stamp line
        block += [f"**{name}** ({stamp_line(meta)})", ""]
        if not meta["status"].startswith("ok"):
            continue
        block += [first_table(report) if is_markdown(report) else _text_block(report), ""]
    block.append(END)
    return "\n".join(block)


def _text_block(report: str, limit: int = 15) -> str:
    inner = [line for line in report.splitlines() if not line.startswith("```")]
    if len(inner) > limit:
        inner = [*inner[:limit], f"... ({len(inner) - limit} more lines in RESULTS.md)"]
    return "\n".join(["```text", *inner, "```"])


def update_readme(sections: dict[str, tuple[dict[str, str], str]]) -> bool:
    try:
        with open(README, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return False
    if BEGIN not in text or END not in text:
        return False
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _: readme_block(sections), text, count=1)
    with open(README, "w", encoding="utf-8") as handle:
        handle.write(new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs of every benchmark")
    parser.add_argument("--only", default="", help="comma-separated names, e.g. scale,queries")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--benchmarks", default=HERE, help="folder holding bench_*.py")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args(argv)
    paths = all_paths = sorted(glob.glob(os.path.join(args.benchmarks, "bench_*.py")))
    if args.only:
        wanted = {f"bench_{name.strip().removeprefix('bench_')}" for name in args.only.split(",")}
        paths = [path for path in paths if os.path.basename(path)[:-3] in wanted]
    if not paths:
        print("no benchmarks found", file=sys.stderr)
        return 1
    results = [run_one(path, args.quick, args.timeout) for path in paths]
    info = machine_info()
    fresh = {}
    for result in results:
        meta = stamp(result, args.quick, info)
        fresh[str(result["name"])] = (meta, section(result, meta))
    try:
        with open(args.output, encoding="utf-8") as handle:
            previous = parse_results(handle.read())
    except FileNotFoundError:
        previous = {}
    existing = {os.path.basename(path)[:-3] for path in all_paths}
    sections = merge_results(previous, fresh, existing)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(render(sections, info))
    print(f"wrote {os.path.relpath(args.output, ROOT)}", file=sys.stderr)
    if not args.no_readme and update_readme(sections):
        print("updated the README benchmark table", file=sys.stderr)
    return 0 if all(str(result["status"]).startswith("ok") for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
