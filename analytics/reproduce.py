"""Getting a run back: recipes, reproduction scripts, drift checks and metric comparison.

Everything here reads what the run recorded (``started``/``environment``/``seeded``
events, ``datasets``, the stored diff artifact) and compares it with the present:

- :func:`recipe` / :func:`write_recipe`: step-by-step instructions, and the files
  ``requirements.txt``, ``patch.diff``, ``reproduce.sh``, ``environment.json`` and
  ``README.md`` (what could not be captured).
- :func:`check`: the current working tree, installed packages and data set hashes against
  the recorded ones.
- :func:`compare`: every metric point of the original against a reproduction.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import math
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.analytics.engine import connect, fetch_frame

from ledger import env
from ledger.capture import (
    MASK,
    hash_files,
    installed_packages,
    is_local_directory_requirement,
    is_source_file,
)
from ledger.errors import AmbiguousRunError, InvalidValueError, RunNotFoundError, StoreError
from ledger.store import Store, open_store

if TYPE_CHECKING:
    import duckdb
    import polars as pl

StoreLike = str | os.PathLike[str] | Store | None

REPRODUCE_FILES = (
    "README.md",
    "reproduce.sh",
    "requirements.txt",
    "patch.diff",
    "environment.json",
)
# Exported by reproduce.sh only when recorded; paths that point into the original
# checkout are rewritten to the new one.
_NOT_EXPORTED = {"VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONHASHSEED"}
_PYTHON_EXE = re.compile(r"^python(\d+(\.\d+)?)?$")
_PACKAGES_SNIPPET = (
    "import json, re, importlib.metadata as m\n"
    "seen = {}\n"
    "for d in m.distributions():\n"
    "    meta = d.metadata\n"
    "    n = meta['Name'] if meta else None\n"
    "    k = re.sub(r'[-_.]+', '-', n or '').lower()\n"
    "    if n and meta['Version'] and k not in seen:\n"
    "        seen[k] = (n, meta['Version'])\n"
    "print(json.dumps(dict(seen.values())))\n"
)


# -- resolving runs ---------------------------------------------------------------------------


def resolve_run(con: duckdb.DuckDBPyConnection, ref: str) -> str:
    """The full id of the run ``ref`` names: a full id or a unique id prefix.

    Raises:
        RunNotFoundError: no run matches.
        AmbiguousRunError: the prefix matches several runs.
    """
    ref = ref.strip()
    if not ref:
        raise RunNotFoundError("No run given: pass a run id or a unique prefix of one")
    rows = con.execute(
        "SELECT run_id, name FROM runs WHERE starts_with(run_id, ?) ORDER BY start_time LIMIT 6",
        [ref.lower()],
    ).fetchall()
    exact = [row for row in rows if row[0] == ref.lower()]
    if exact:
        return str(exact[0][0])
    if not rows:
        raise RunNotFoundError(f"No run with id or id prefix {ref!r} in this store")
    if len(rows) > 1:
        shown = ", ".join(f"{row[0]} ({row[1]})" for row in rows[:5])
        raise AmbiguousRunError(f"Run prefix {ref!r} matches several runs: {shown}; give more")
    return str(rows[0][0])


# -- what a run recorded -----------------------------------------------------------------------


@dataclass
class RunRecord:
    """What a run recorded about how to get it back."""

    run_id: str
    project: str
    experiment: str
    name: str
    status: str
    start_time: dt.datetime | None
    store: Store
    environment: dict[str, Any]
    seeds: dict[str, Any]
    datasets: list[dict[str, Any]]
    argv: list[str] | None
    cwd: str | None
    wrapped: bool
    """Started by ``ledger run`` (so reproducing goes through ``ledger run`` too)."""
    environments: int = 1
    problems: list[str] = field(default_factory=list)

    @property
    def git(self) -> dict[str, Any] | None:
        return self.environment.get("git") or None

    @property
    def python_version(self) -> str | None:
        return (self.environment.get("python") or {}).get("version")


def _json(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def load_record(store: StoreLike, run: str) -> RunRecord:
    """Everything ``run`` (an id or unique prefix) recorded for reproduction.

    When several processes captured the environment (``ledger run`` and the program it
    started both do), the program's capture wins: its interpreter, packages and command
    are the ones that produced the results.

    Raises:
        RunNotFoundError, AmbiguousRunError: ``run`` names no single run.
    """
    store_obj = open_store(store)
    con = connect(store_obj)
    try:
        run_id = resolve_run(con, run)
        return _load(con, store_obj, run_id)
    finally:
        con.close()


def _load(con: duckdb.DuckDBPyConnection, store: Store, run_id: str) -> RunRecord:
    row = con.execute(
        "SELECT project, experiment, name, status, start_time FROM runs WHERE run_id = ?",
        [run_id],
    ).fetchone()
    assert row is not None
    events = con.execute(
        "SELECT event, attrs, pid, ts FROM events_runs WHERE run_id = ? "
        "AND event IN ('started', 'environment', 'seeded') ORDER BY ts",
        [run_id],
    ).fetchall()
    started = next((e for e in events if e[0] == "started"), None)
    start_attrs = _json(started[1]) if started else {}
    start_pid = started[2] if started else None
    environments = [(e, _json(e[1])) for e in events if e[0] == "environment"]
    # Prefer the capture of the process that did the work: not a `ledger log`/`ledger run`
    # CLI process, and (for `ledger run`) not the wrapper that started the run.
    programs = [item for item in environments if not _is_ledger_cli(item[1].get("command"))]
    workers = [item for item in programs if item[0][2] is not None and item[0][2] != start_pid]
    candidates = workers or programs or environments
    environment = candidates[-1][1] if candidates else {}
    seeds: dict[str, Any] = {}
    for event in events:
        if event[0] == "seeded":
            seeds.update(_json(event[1]))
    datasets = fetch_frame(
        con,
        "SELECT name, context, source, sha256, rows, columns, schema, fingerprint, ts "
        "FROM datasets WHERE run_id = ? ORDER BY ts",
        [run_id],
    ).to_dicts()
    problems: list[str] = []
    wrapped = bool(start_attrs.get("command"))
    argv: list[str] | None
    if wrapped:
        argv = shlex.split(start_attrs["command"])
        cwd = start_attrs.get("cwd") or environment.get("cwd")
    else:
        command = environment.get("command")
        cwd = environment.get("cwd")
        argv = None
        if isinstance(command, list) and len(command) > 1:
            if "-c" in command[1:] or any(
                "ipykernel" in arg or arg.endswith(("ipython", "jupyter")) for arg in command
            ):
                problems.append(
                    "the run was started from an interactive session or `python -c`, so there "
                    "is no command to re-run"
                )
            else:
                argv = ["python", *command[1:]]
        elif isinstance(command, list):
            problems.append("the run was started from an interactive Python prompt")
        elif environment:
            problems.append("the run recorded no command line")
    if argv and MASK in argv:
        problems.append(
            "secret-looking command-line options were recorded as *** (never stored): "
            "edit the run step of reproduce.sh to pass them"
        )
    if not environment:
        problems.append(
            "the run has no captured environment (capture was off, LEDGER_CAPTURE=0, or "
            "the process ended before it finished)"
        )
    return RunRecord(
        run_id=run_id,
        project=row[0],
        experiment=row[1],
        name=row[2],
        status=row[3],
        start_time=row[4],
        store=store,
        environment=environment,
        seeds=seeds,
        datasets=_latest_datasets(datasets),
        argv=argv,
        cwd=cwd,
        wrapped=wrapped,
        environments=len(environments),
        problems=problems,
    )


def _is_ledger_cli(command: Any) -> bool:
    """Whether a captured command line is the ``ledger`` CLI itself (log, run...)."""
    if not isinstance(command, list) or len(command) < 2:
        return False
    args = [str(arg) for arg in command[1:]]
    if args[:2] == ["-m", "ledger"]:
        return True
    return os.path.basename(args[0]) == "ledger" or args[0].endswith(
        os.path.join("ledger", "__main__.py")
    )


def _latest_datasets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for item in rows:
        latest[(item["name"], item["context"])] = item
    return list(latest.values())


def read_diff(record: RunRecord) -> bytes | None:
    """The stored uncommitted diff of the run; None when clean or not stored.

    Raises:
        StoreError: the diff was recorded as stored but the artifact is missing.
    """
    git = record.git or {}
    uri = git.get("diff_uri")
    if not uri:
        return None
    path = record.store.artifact_path(uri)
    try:
        if record.store.is_local:
            with open(path, "rb") as handle:
                return handle.read()
        with record.store.fs.open_input_stream(path) as stream:
            return bytes(stream.read())
    except (FileNotFoundError, OSError) as exc:
        raise StoreError(
            f"The uncommitted diff of run {record.run_id} ({uri}) is missing from the store"
        ) from exc


# -- the recipe ----------------------------------------------------------------------------------


def requirements_text(record: RunRecord) -> str:
    """``requirements.txt`` with exact pins of every package the run's interpreter had."""
    lines = [
        f"# Exact packages of run {record.run_id} ({record.project}/{record.name}),",
        f"# Python {record.python_version or 'unknown'}. Install: python -m pip install -r "
        "requirements.txt",
    ]
    requirements = record.environment.get("requirements")
    if not requirements:  # captured before requirement lines existed: versions only
        packages = record.environment.get("packages") or {}
        requirements = [f"{name}=={version}" for name, version in packages.items()]
    for line in requirements:
        if line.split("==")[0].strip().lower() in ("pip",):
            continue  # the venv brings its own pip; pinning it buys nothing
        if is_local_directory_requirement(line):
            lines.append(f"# installed from a local directory, not pinned by version: {line}")
        lines.append(line)
    return "\n".join(lines) + "\n"


def _local_installs(record: RunRecord) -> list[str]:
    return [
        line
        for line in record.environment.get("requirements") or []
        if is_local_directory_requirement(line)
    ]


def _hash_seed(record: RunRecord) -> tuple[str | None, bool]:
    """The PYTHONHASHSEED to export and whether it is what the original run had."""
    recorded = record.seeds.get("PYTHONHASHSEED") or (record.environment.get("env") or {}).get(
        "PYTHONHASHSEED"
    )
    if recorded and recorded != "random":
        return str(recorded), True
    recommended = record.seeds.get("PYTHONHASHSEED_recommended")
    return (str(recommended) if recommended else None), False


def _exported_env(record: RunRecord) -> dict[str, str]:
    git = record.git or {}
    root = git.get("root")
    exported = {}
    for name, value in (record.environment.get("env") or {}).items():
        if name in _NOT_EXPORTED or name.startswith("LEDGER_"):
            continue
        exported[name] = value if not root else value.replace(root, "\0CHECKOUT\0")
    return exported


def _shell_word(text: str, root: str | None) -> str:
    """A shell word for ``text``; paths under the original checkout move to $CHECKOUT."""
    if root and (text == root or text.startswith(root + "/")):
        rest = text[len(root) :]
        return '"$CHECKOUT"' + (shlex.quote(rest) if rest else "")
    return shlex.quote(text)


def _shell_value(text: str) -> str:
    parts = text.split("\0CHECKOUT\0")
    return '"$CHECKOUT"'.join(shlex.quote(part) if part else "" for part in parts) or "''"


def _run_words(record: RunRecord) -> list[str] | None:
    """The command that re-runs the program (through ``ledger run`` when it was wrapped)."""
    if record.argv is None:
        return None
    root = (record.git or {}).get("root")
    argv = list(record.argv)
    if argv and _PYTHON_EXE.match(os.path.basename(argv[0])):
        argv[0] = "python"  # the new venv's interpreter, not the original path
    words = [_shell_word(arg, root) if arg != "python" else "python" for arg in argv]
    if record.wrapped:
        wrapper = ["python", "-m", "ledger", "run"]
        for flag, value in (
            ("--project", record.project),
            ("--experiment", record.experiment),
            ("--name", record.name),
        ):
            wrapper += [flag, shlex.quote(value)]
        return [*wrapper, "--", *words]
    return words


def _workdir(record: RunRecord) -> tuple[str, str | None]:
    """The shell expression of the directory to run in, and a note when it is outside git."""
    git = record.git or {}
    root, cwd = git.get("root"), record.cwd
    if root and cwd and (cwd == root or cwd.startswith(root + "/")):
        rest = cwd[len(root) :]
        return '"$CHECKOUT"' + (shlex.quote(rest) if rest else ""), None
    if root and not cwd:
        subdir = git.get("subdir") or ""
        return '"$CHECKOUT"' + (shlex.quote("/" + subdir) if subdir else ""), None
    if cwd:
        return shlex.quote(cwd), f"the run's working directory {cwd} is outside the repository"
    return '"$CHECKOUT"', None


def not_captured(record: RunRecord) -> list[str]:
    """What the run did not (or could not) record, so a reproduction may differ."""
    items = list(record.problems)
    git = record.git
    if not git:
        items.append(
            f"the code: {record.cwd or 'the working directory'} was not in a git repository, "
            "so no commit or diff was recorded; reproduce.sh cannot fetch the code"
        )
    else:
        if not git.get("remote"):
            items.append(
                f"a remote: the repository ({git.get('root')}) had no `origin`, so "
                "reproduce.sh clones the local path; set LEDGER_REPRODUCE_REPO to clone elsewhere"
            )
        if git.get("dirty") and not git.get("diff_stored"):
            items.append(
                f"the uncommitted diff ({git.get('diff_size')} bytes, sha256 "
                f"{git.get('diff_sha256')}) was over the size cap and was not stored"
            )
        for note in git.get("notes") or []:
            items.append(note)
        untracked = git.get("untracked_files") or {}
        if untracked:
            listed = "\n".join(f"  - `{path}` sha256 {sha}" for path, sha in untracked.items())
            items.append(
                "untracked source files (not in the commit or the diff; only their hashes "
                f"were recorded; copy them into the checkout by hand):\n{listed}"
            )
        if git.get("untracked_other"):
            items.append(
                f"{git['untracked_other']} other untracked files (data, outputs...) were "
                "neither stored nor hashed"
            )
    _, outside = _workdir(record)
    if outside:
        items.append(f"{outside}; reproduce.sh runs there, not in the checkout")
    for line in _local_installs(record):
        items.append(
            f"`{line}` was installed from a local directory: its content at run time was "
            "not recorded, requirements.txt installs whatever is there now"
        )
    if not record.seeds:
        items.append("seeds: the run set none through ledger.seed(), so randomness may not repeat")
    hash_seed, exact = _hash_seed(record)
    if record.seeds and not exact:
        items.append(
            "PYTHONHASHSEED was not set for the original run, so str hashing (set and "
            "dict-of-str order) was random; reproduce.sh sets "
            + (f"PYTHONHASHSEED={hash_seed}" if hash_seed else "nothing")
            + " for the reproduction and future runs"
        )
    for item in record.datasets:
        if item.get("fingerprint") in ("arrow", "numpy", "json"):
            items.append(
                f"data set `{item['name']}` was fingerprinted in memory "
                f"({item['fingerprint']}), so its source "
                f"{item.get('source') or '(none given)'} cannot be re-verified by hash"
            )
        else:
            items.append(
                f"data set `{item['name']}` is referenced, not copied: {item.get('source')} "
                f"(sha256 {item['sha256']}); reproduce.sh warns when it changed"
            )
    host = record.environment.get("host") or {}
    gpus = record.environment.get("gpus") or []
    if host:
        hardware = f"{host.get('cpu_model')} x{host.get('cpu_count')}"
        if gpus:
            hardware += ", " + ", ".join(str(g.get("name")) for g in gpus)
        items.append(
            f"hardware and drivers: the run used {hardware} on {host.get('os')}; other "
            "hardware, BLAS/CUDA builds or thread counts can change floating-point results"
        )
    items.append(
        "system libraries and anything outside Python packages (compilers, CUDA, apt "
        "packages), and environment variables outside the allow-list (secrets are never "
        "recorded: set credentials yourself)"
    )
    return items


@dataclass
class Recipe:
    """A reproduction recipe: what to do, in order, and what could not be captured."""

    record: RunRecord
    steps: list[tuple[str, list[str]]]
    not_captured: list[str]

    def text(self) -> str:
        record = self.record
        lines = [
            f"Reproduce run {record.run_id} ({record.project}/{record.experiment}/"
            f"{record.name}, {record.status}"
            + (f", started {record.start_time:%Y-%m-%d %H:%M:%S} UTC" if record.start_time else "")
            + ")",
            "",
        ]
        for number, (title, commands) in enumerate(self.steps, 1):
            lines.append(f"{number}. {title}")
            lines.extend(f"     {command}" for command in commands)
        lines += ["", "Not captured (a reproduction may differ here):"]
        lines += [f"  - {item.splitlines()[0]}" for item in self.not_captured]
        return "\n".join(lines) + "\n"


def recipe(store: StoreLike, run: str) -> Recipe:
    """Step-by-step instructions to reproduce ``run`` (an id or unique prefix).

    Raises:
        RunNotFoundError, AmbiguousRunError: ``run`` names no single run.
    """
    return _recipe(load_record(store, run))


def _recipe(record: RunRecord) -> Recipe:
    git = record.git or {}
    steps: list[tuple[str, list[str]]] = []
    if git:
        source = git.get("remote") or git.get("root")
        steps.append(
            (
                f"Get the code at commit {git.get('commit')}"
                + (f" (branch {git['branch']})" if git.get("branch") else ""),
                [
                    f"git clone {shlex.quote(str(source))} checkout",
                    f"git -C checkout checkout {git.get('commit')}",
                ],
            )
        )
        if git.get("dirty"):
            count = len(git.get("changed_files") or {})
            changed = f"{count} file" + ("s" if count != 1 else "")
            if git.get("diff_stored"):
                steps.append(
                    (
                        f"Apply the uncommitted changes ({changed}, {git.get('diff_size')} bytes)",
                        ["git -C checkout apply --binary patch.diff"],
                    )
                )
            else:
                steps.append(
                    (
                        "The uncommitted changes were over the size cap and not stored: "
                        "the code cannot be restored exactly",
                        [],
                    )
                )
    python = record.python_version or "3"
    major_minor = ".".join(python.split(".")[:2])
    packages = len(record.environment.get("packages") or {})
    steps.append(
        (
            f"Create a Python {python} environment with the {packages} packages pinned",
            [
                f"python{major_minor} -m venv venv",
                "venv/bin/python -m pip install -r requirements.txt",
            ],
        )
    )
    exports = []
    hash_seed, _ = _hash_seed(record)
    if hash_seed:
        exports.append(f"export PYTHONHASHSEED={shlex.quote(hash_seed)}")
    for name, value in _exported_env(record).items():
        exports.append(f"export {name}={_shell_value(value)}".replace('"$CHECKOUT"', "checkout"))
    exports.append(f"export {env.PARENT_RUN}={record.run_id}")
    seeds = {k: v for k, v in record.seeds.items() if not k.startswith("PYTHONHASHSEED")}
    title = "Set seeds and environment"
    if seeds:
        title += " (the code seeds " + ", ".join(f"{k}={v}" for k, v in seeds.items()) + ")"
    steps.append((title, exports))
    checkable = [d for d in record.datasets if d.get("fingerprint") in ("file", "directory", None)]
    if checkable:
        steps.append(
            (
                "Check the data sets are unchanged",
                [f"ledger reproduce {record.run_id} --check"],
            )
        )
    words = _run_words(record)
    workdir, _ = _workdir(record)
    steps.append(
        (
            "Run the recorded command (the new run becomes a child of this one)",
            [
                f"cd {workdir}".replace('"$CHECKOUT"', "checkout"),
                " ".join(words).replace('"$CHECKOUT"', "checkout")
                if words
                else "# no command was recorded",
            ],
        )
    )
    steps.append(
        (
            "Compare the metrics",
            [f"ledger reproduce {record.run_id} --compare NEW_RUN_ID --rtol 1e-6"],
        )
    )
    return Recipe(record=record, steps=steps, not_captured=not_captured(record))


_SCRIPT_HEAD = """\
#!/usr/bin/env bash
# Reproduce ledger run {run_id}
#   ({project}/{experiment}/{name}, {status}).
# Written by `ledger reproduce {run_id} --write`; README.md lists what could not be captured.
#
#   ./reproduce.sh [CHECKOUT_DIR]        (default: ./checkout next to this script)
#
# Steps: clone + check out the commit, apply patch.diff, create a venv with the exact
# packages of requirements.txt, set seeds and environment, check the data sets, run the
# recorded command with {parent_var} set (so the new run is a child of this one), then
# compare its metrics with the original.
#
# Switches (environment variables):
#   LEDGER_REPRODUCE_REPO      clone from here (default: {repo_default})
#   LEDGER_REPRODUCE_PYTHON    interpreter that creates the venv (default: python{major_minor})
#   LEDGER_REPRODUCE_VENV      the venv directory (default: ./venv next to this script)
#   LEDGER_REPRODUCE_SITE_PACKAGES  shortcut for tests: instead of installing
#                              requirements.txt, the venv reuses this site-packages directory
#   LEDGER_REPRODUCE_COMPARE   0 skips the final metric comparison
#   LEDGER_STORE               store for the new run (default: the original's store)
set -euo pipefail

HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
TARGET="${{1:-$HERE/checkout}}"
mkdir -p "$TARGET"
CHECKOUT="$(cd "$TARGET" && pwd)"
REPO="${{LEDGER_REPRODUCE_REPO:-{repo}}}"
COMMIT={commit}
PYTHON="${{LEDGER_REPRODUCE_PYTHON:-python{major_minor}}}"
VENV="${{LEDGER_REPRODUCE_VENV:-$HERE/venv}}"
export LEDGER_STORE="${{LEDGER_STORE:-{store}}}"
"""

_SCRIPT_CODE = """
echo "==> code: $REPO at $COMMIT"
if [ ! -e "$CHECKOUT/.git" ]; then
    git clone --quiet --no-checkout "$REPO" "$CHECKOUT"
elif [ -n "$(git -C "$CHECKOUT" status --porcelain --untracked-files=no)" ] && ! git -C \\
        "$CHECKOUT" apply --binary --reverse --check "$HERE/patch.diff" 2>/dev/null; then
    echo "error: $CHECKOUT has uncommitted changes of its own; use an empty directory" >&2
    exit 1
fi
git -C "$CHECKOUT" -c advice.detachedHead=false checkout --quiet "$COMMIT"
if [ -s "$HERE/patch.diff" ]; then
    if git -C "$CHECKOUT" apply --binary --check "$HERE/patch.diff" 2>/dev/null; then
        echo "==> uncommitted changes: applying patch.diff"
        git -C "$CHECKOUT" apply --binary "$HERE/patch.diff"
    elif git -C "$CHECKOUT" apply --binary --reverse --check "$HERE/patch.diff" 2>/dev/null; then
        echo "==> uncommitted changes: patch.diff is already applied"
    else
        echo "error: patch.diff does not apply to $COMMIT" >&2
        exit 1
    fi
fi
"""

_SCRIPT_NO_CODE = """
echo "==> code: the run recorded no git commit; running in $CHECKOUT as it is"
"""

_SCRIPT_VENV = """
echo "==> Python {python} environment: $VENV"
{version_check}if [ -n "${{LEDGER_REPRODUCE_SITE_PACKAGES:-}}" ]; then
    # Test shortcut: an empty venv that sees an existing site-packages (and its .pth files).
    "$PYTHON" -m venv --clear --without-pip "$VENV"
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$VENV/bin/python" -c 'import sys; print("import site; site.addsitedir(%r)" % sys.argv[1])' \\
        "$LEDGER_REPRODUCE_SITE_PACKAGES" > "$site/_ledger_reproduce.pth"
else
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \\
        -r "$HERE/requirements.txt"
fi
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
"""

_SCRIPT_VERSION_CHECK = """\
have="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$have" != "{major_minor}" ]; then
    echo "error: the run used Python {python}; $PYTHON is $have (set LEDGER_REPRODUCE_PYTHON)" >&2
    exit 1
fi
"""

_SCRIPT_DATA_CHECK = """
echo "==> data sets"
python - "$@" <<'PY'
import hashlib, os, sys
for name, path, expected in {datasets!r}:
    if not os.path.isfile(path):
        print(f"warning: data set {{name}}: {{path}} is missing", file=sys.stderr)
        continue
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        print(f"warning: data set {{name}}: {{path}} changed since the run", file=sys.stderr)
    else:
        print(f"    {{name}}: {{path}} unchanged")
PY
"""

_SCRIPT_RUN = """
echo {display}
cd {workdir}
started="$(date -u +%Y-%m-%dT%H:%M:%S)"
status=0
{command} || status=$?
echo "==> the command exited with code $status"
if [ "${{LEDGER_REPRODUCE_COMPARE:-1}} " != "0 " ] && python -c 'import ledger' 2>/dev/null; then
    new="$(python -m ledger query --format csv "SELECT run_id FROM runs WHERE parent_run_id = \
'{run_id}' AND start_time >= TIMESTAMPTZ '$started+00' ORDER BY start_time DESC LIMIT 1" \\
        | tail -n +2)"
    if [ -n "$new" ]; then
        echo "==> compare: original {run_id} vs reproduction $new"
        compared=0
        python -m ledger reproduce {run_id} --compare "$new" \\
            --rtol "${{LEDGER_REPRODUCE_RTOL:-1e-6}}" || compared=$?
        if [ "$status" = 0 ]; then status=$compared; fi
    fi
fi
exit "$status"
"""


def reproduce_script(record: RunRecord) -> str:
    """The text of ``reproduce.sh`` for ``record``."""
    git = record.git or {}
    python = record.python_version or "3"
    major_minor = ".".join(python.split(".")[:2])
    repo = git.get("remote") or git.get("root") or ""
    store_root = record.store.base if record.store.is_local else record.store.uri
    parts = [
        _SCRIPT_HEAD.format(
            run_id=record.run_id,
            project=_one_line(record.project),
            experiment=_one_line(record.experiment),
            name=_one_line(record.name),
            status=record.status,
            parent_var=env.PARENT_RUN,
            repo_default=_one_line(repo) or "(none recorded)",
            repo=_double_quoted(repo),
            commit=shlex.quote(git.get("commit") or ""),
            major_minor=major_minor,
            store=_double_quoted(store_root),
        )
    ]
    parts.append(_SCRIPT_CODE if git else _SCRIPT_NO_CODE)
    version_check = (
        _SCRIPT_VERSION_CHECK.format(python=python, major_minor=major_minor)
        if record.python_version
        else "# the run recorded no Python version: any python3 will do\n"
    )
    parts.append(_SCRIPT_VENV.format(python=python, version_check=version_check))
    lines = ["", 'echo "==> seeds and environment"']
    hash_seed, _ = _hash_seed(record)
    if hash_seed:
        lines.append(f"export PYTHONHASHSEED={shlex.quote(hash_seed)}")
    seeds = {k: v for k, v in record.seeds.items() if not k.startswith("PYTHONHASHSEED")}
    if seeds:
        lines.append(
            "# seeds the code sets through ledger.seed(): "
            + ", ".join(f"{k}={v}" for k, v in seeds.items())
        )
    for name, value in _exported_env(record).items():
        lines.append(f"export {name}={_shell_value(value)}")
    lines.append(f"export {env.PARENT_RUN}={record.run_id}")
    # The new run lands next to the original unless the code names its own project.
    lines.append(f"export {env.PROJECT}={shlex.quote(record.project)}")
    lines.append(f"export {env.EXPERIMENT}={shlex.quote(record.experiment)}")
    parts.append("\n".join(lines) + "\n")
    files = [
        (d["name"], d["source"], d["sha256"])
        for d in record.datasets
        if d.get("fingerprint") == "file" and d.get("source") and os.path.isabs(d["source"])
    ]
    if files:
        parts.append(_SCRIPT_DATA_CHECK.format(datasets=files))
    words = _run_words(record)
    workdir, _ = _workdir(record)
    if words is None:
        parts.append(
            '\necho "error: the run recorded no command to re-run (see README.md)" >&2\nexit 1\n'
        )
    else:
        command = " ".join(words)
        parts.append(
            _SCRIPT_RUN.format(
                display=shlex.quote(f"==> run: {command}"),
                workdir=workdir,
                command=command,
                run_id=record.run_id,
            )
        )
    return "".join(parts)


def _one_line(text: str) -> str:
    """User text for a shell comment: no line breaks (they would end the comment)."""
    return " ".join(str(text).split())


def _double_quoted(text: str) -> str:
    """``text`` safe inside a double-quoted shell string."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def readme_text(record: RunRecord, written: list[str]) -> str:
    """README.md for a written recipe: what is here, how to run it, what is missing."""
    rec = _recipe(record)
    lines = [
        f"# Reproducing run {record.run_id}",
        "",
        f"Project `{record.project}`, experiment `{record.experiment}`, run `{record.name}` "
        f"({record.status}).",
        "",
        "## Files",
        "",
    ]
    about = {
        "reproduce.sh": "does every step below; `./reproduce.sh [CHECKOUT_DIR]`",
        "requirements.txt": "exact pins of every installed package (`pip install -r`)",
        "patch.diff": "the uncommitted changes at run time (`git apply --binary`)",
        "environment.json": "everything the run captured (git, packages, env, host, seeds)",
    }
    for name in written:
        if name in about:
            lines.append(f"- `{name}`: {about[name]}")
    lines += ["", "## Steps", "", "```"]
    lines += rec.text().split("\n\nNot captured")[0].splitlines()[2:]
    lines += [
        "```",
        "",
        "## Not captured",
        "",
        "A reproduction can differ because of these; check them by hand:",
        "",
    ]
    lines += [f"- {item}" for item in rec.not_captured]
    return "\n".join(lines) + "\n"


def write_recipe(store: StoreLike, run: str, directory: str | os.PathLike[str]) -> list[str]:
    """Write the recipe files for ``run`` into ``directory``; returns their names.

    Raises:
        RunNotFoundError, AmbiguousRunError: ``run`` names no single run.
        StoreError: the recorded diff is missing from the store.
        InvalidValueError: ``directory`` exists and is not a directory.
    """
    record = load_record(store, run)
    target = os.fspath(directory)
    if os.path.exists(target) and not os.path.isdir(target):
        raise InvalidValueError(f"--write target {target!r} exists and is not a directory")
    os.makedirs(target, exist_ok=True)
    written: list[str] = []

    def put(name: str, data: bytes | str, mode: int = 0o644) -> None:
        path = os.path.join(target, name)
        with open(path, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)
        written.append(name)

    put("reproduce.sh", reproduce_script(record), 0o755)
    put("requirements.txt", requirements_text(record))
    put("patch.diff", read_diff(record) or b"")
    put(
        "environment.json",
        json.dumps(
            {
                "run_id": record.run_id,
                "environment": record.environment,
                "seeds": record.seeds,
                "datasets": record.datasets,
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    put("README.md", readme_text(record, [*written, "README.md"]))
    return sorted(written)


# -- --check: what differs now -------------------------------------------------------------------


@dataclass
class CheckResult:
    """Differences between a run's recorded inputs and the present."""

    run_id: str
    differences: list[dict[str, str]]
    notes: list[str]
    checked: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.differences

    def frame(self) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(
            self.differences,
            schema={"area": pl.Utf8, "item": pl.Utf8, "recorded": pl.Utf8, "current": pl.Utf8},
        )


def _git_out(args: list[str], cwd: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.decode("utf-8", "replace") if result.returncode == 0 else None


def _short(value: str | None) -> str:
    if value is None:
        return "(absent)"
    return value[:12] if re.fullmatch(r"[0-9a-f]{40,64}", value) else value


def _check_code(record: RunRecord, path: str, out: list[dict[str, str]], notes: list[str]) -> int:
    git = record.git
    if not git:
        notes.append("code: the run recorded no git state, so the working tree was not compared")
        return 0
    top = _git_out(["rev-parse", "--show-toplevel", "HEAD"], path)
    if top is None:
        out.append(
            {
                "area": "code",
                "item": "repository",
                "recorded": f"git commit {git['commit'][:12]}",
                "current": f"{path} is not a git work tree with commits",
            }
        )
        return 1
    root, commit = [*top.split("\n"), "", ""][:2]
    if commit != git["commit"]:
        out.append({"area": "code", "item": "commit", "recorded": git["commit"], "current": commit})
    has_commit = _git_out(["cat-file", "-e", f"{git['commit']}^{{commit}}"], root) is not None
    if not has_commit:
        notes.append(f"code: commit {git['commit'][:12]} is not in {root}; files were not compared")
        return 1
    recorded: dict[str, str | None] = git.get("changed_files") or {}
    now_changed = [
        item
        for item in (
            _git_out(["diff", git["commit"], "--name-only", "--no-renames", "-z"], root) or ""
        ).split("\0")
        if item
    ]
    current, _ = hash_files(root, now_changed)
    compared = 0
    for name in sorted(set(recorded) | set(current)):
        compared += 1
        was = recorded.get(name, "as committed") if name in recorded else "as committed"
        now = current.get(name, "as committed") if name in current else "as committed"
        if was != now:
            out.append(
                {
                    "area": "code",
                    "item": name,
                    "recorded": "deleted" if name in recorded and was is None else _short(was),
                    "current": "deleted" if name in current and now is None else _short(now),
                }
            )
    recorded_untracked: dict[str, str | None] = git.get("untracked_files") or {}
    listed = _git_out(["ls-files", "--others", "--exclude-standard", "-z"], root) or ""
    sources = [item for item in listed.split("\0") if item and is_source_file(item)]
    untracked, _ = hash_files(root, sources)
    for name in sorted(set(recorded_untracked) | set(untracked)):
        compared += 1
        was, now = recorded_untracked.get(name), untracked.get(name)
        if was != now or (name in recorded_untracked) != (name in untracked):
            out.append(
                {
                    "area": "code",
                    "item": f"{name} (untracked)",
                    "recorded": _short(was) if name in recorded_untracked else "(absent)",
                    "current": _short(now) if name in untracked else "(absent)",
                }
            )
    return compared


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def packages_of(python: str | None = None) -> dict[str, str]:
    """``{name: version}`` installed for ``python`` (default: this interpreter).

    Raises:
        InvalidValueError: ``python`` cannot be run.
    """
    if python is None:
        return installed_packages()
    try:
        result = subprocess.run(
            [python, "-c", _PACKAGES_SNIPPET], capture_output=True, check=True, timeout=120
        )
        packages = json.loads(result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise InvalidValueError(f"Cannot list the packages of --python {python!r}: {exc}") from exc
    return dict(packages)


def _check_packages(
    record: RunRecord, python: str | None, out: list[dict[str, str]], notes: list[str]
) -> int:
    recorded = record.environment.get("packages") or {}
    if not recorded:
        notes.append("packages: the run recorded none, so they were not compared")
        return 0
    current = packages_of(python)
    was = {_normal(k): (k, v) for k, v in recorded.items()}
    now = {_normal(k): (k, v) for k, v in current.items()}
    for key in sorted(set(was) | set(now)):
        if key == "pip":
            continue
        before, after = was.get(key), now.get(key)
        if before is None or after is None or before[1] != after[1]:
            out.append(
                {
                    "area": "package",
                    "item": (before or after or (key, ""))[0],
                    "recorded": before[1] if before else "(not installed)",
                    "current": after[1] if after else "(not installed)",
                }
            )
    version = record.python_version
    if version:
        import platform

        running = (
            platform.python_version()
            if python is None
            else (_python_version(python) or "(unknown)")
        )
        if running != version:
            out.append(
                {"area": "python", "item": "version", "recorded": version, "current": running}
            )
    return len(set(was) | set(now))


def _python_version(python: str) -> str | None:
    try:
        result = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.decode().strip() or None


def _check_datasets(record: RunRecord, out: list[dict[str, str]], notes: list[str]) -> int:
    from ledger.fingerprint import fingerprint

    checked = 0
    for item in record.datasets:
        name, source, method = item["name"], item.get("source"), item.get("fingerprint")
        if not source:
            notes.append(f"data set {name}: no source was recorded, so it was not re-hashed")
            continue
        if "://" in source and not source.startswith("file://"):
            notes.append(f"data set {name}: {source} is remote; it was not re-hashed")
            continue
        if method not in (None, "file", "directory"):
            notes.append(
                f"data set {name}: fingerprinted in memory ({method}); {source} was not re-hashed"
            )
            continue
        path = source[len("file://") :] if source.startswith("file://") else source
        if not os.path.isabs(path) and record.cwd:
            path = os.path.join(record.cwd, path)
        checked += 1
        if not os.path.exists(path):
            out.append(
                {
                    "area": "dataset",
                    "item": name,
                    "recorded": _short(item["sha256"]),
                    "current": f"{path} is missing",
                }
            )
            continue
        now = fingerprint(path)["sha256"]
        if now != item["sha256"]:
            out.append(
                {
                    "area": "dataset",
                    "item": f"{name} ({path})",
                    "recorded": _short(item["sha256"]),
                    "current": _short(now),
                }
            )
    return checked


def check(
    store: StoreLike,
    run: str,
    *,
    path: str | os.PathLike[str] | None = None,
    python: str | None = None,
) -> CheckResult:
    """Compare the working tree, installed packages and data sets with what ``run`` recorded.

    ``path`` is the working tree to compare (default: the current directory); ``python``
    an interpreter whose packages to compare (default: this one).

    Raises:
        RunNotFoundError, AmbiguousRunError: ``run`` names no single run.
        InvalidValueError: ``python`` cannot be run.
    """
    record = load_record(store, run)
    differences: list[dict[str, str]] = []
    notes = list(record.problems)
    checked = {
        "files": _check_code(record, os.fspath(path or os.getcwd()), differences, notes),
        "packages": _check_packages(record, python, differences, notes),
        "data sets": _check_datasets(record, differences, notes),
    }
    return CheckResult(record.run_id, differences, notes, checked)


# -- --compare: did the metrics come back? -------------------------------------------------------

_COMPARE_SQL = """
WITH points AS (
    SELECT run_id, key, step, arg_max(value, (ts, seq)) AS value
    FROM metrics WHERE run_id IN ($original, $new)
    GROUP BY run_id, key, step
),
joined AS (
    SELECT coalesce(a.key, b.key) AS key, coalesce(a.step, b.step) AS step,
           a.value AS a, b.value AS b
    FROM (SELECT * FROM points WHERE run_id = $original) a
    FULL OUTER JOIN (SELECT * FROM points WHERE run_id = $new) b
        ON a.key = b.key AND a.step IS NOT DISTINCT FROM b.step
),
judged AS (
    SELECT *,
        a IS NOT NULL AND b IS NOT NULL AND (
            a = b OR (isnan(a) AND isnan(b))
            OR abs(a - b) <= greatest($atol, $rtol * greatest(abs(a), abs(b)))
        ) AS close,
        CASE WHEN isfinite(a) AND isfinite(b) THEN abs(a - b) END AS abs_diff
    FROM joined
)
SELECT
    key,
    arg_max(a, step) FILTER (WHERE a IS NOT NULL) AS original,
    arg_max(b, step) FILTER (WHERE b IS NOT NULL) AS reproduced,
    count(a) AS original_points,
    count(b) AS reproduced_points,
    count(*) FILTER (WHERE NOT close) AS drifted_points,
    min(step) FILTER (WHERE NOT close) AS first_drift_step,
    max(abs_diff) AS max_abs_diff,
    max(abs_diff / nullif(greatest(abs(a), abs(b)), 0)) AS max_rel_diff
FROM judged
GROUP BY key
ORDER BY key
"""


@dataclass
class CompareResult:
    """Per-metric comparison of an original run and its reproduction."""

    original: str
    reproduced_run: str
    rtol: float
    atol: float
    metrics: pl.DataFrame
    linked: bool

    @property
    def reproduced(self) -> bool:
        return bool(
            self.metrics.filter(self.metrics["status"].is_in(["drifted", "missing"])).height == 0
        )

    def drifted(self) -> pl.DataFrame:
        return self.metrics.filter(self.metrics["status"] != "match")

    def summary(self) -> str:
        frame = self.metrics
        points = int(frame["original_points"].sum()) if frame.height else 0
        tolerance = f"rtol={self.rtol:g}" + (f", atol={self.atol:g}" if self.atol else "")
        if self.reproduced:
            return (
                f"reproduced: {frame.filter(frame['status'] == 'match').height} metrics "
                f"({points} points) of {self.original} match {self.reproduced_run} "
                f"within {tolerance}"
            )
        bad = frame.filter(frame["status"].is_in(["drifted", "missing"]))
        return (
            f"not reproduced: {bad.height} of {frame.filter(frame['status'] != 'extra').height} "
            f"metrics drifted beyond {tolerance} ({', '.join(bad['key'].to_list())})"
        )


def compare(
    store: StoreLike,
    run: str,
    new_run: str,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    ignore: list[str] | tuple[str, ...] = (),
) -> CompareResult:
    """Compare every metric point (per key and step) of ``run`` with ``new_run``.

    A point matches when ``|a - b| <= max(atol, rtol * max(|a|, |b|))`` (NaN matches NaN,
    inf matches the same inf). A metric is ``match``, ``drifted`` (some point differs or
    is missing), ``missing`` (not logged by the reproduction) or ``extra`` (only in the
    reproduction; not a failure). ``ignore`` takes glob patterns of keys to skip (timings).

    Raises:
        RunNotFoundError, AmbiguousRunError: a run reference names no single run.
        InvalidValueError: a negative or non-finite tolerance.
    """
    import polars as pl

    for label, value in (("rtol", rtol), ("atol", atol)):
        if not math.isfinite(value) or value < 0:
            raise InvalidValueError(f"--{label} must be a finite number >= 0, got {value!r}")
    con = connect(store)
    try:
        original = resolve_run(con, run)
        reproduced = resolve_run(con, new_run)
        frame = fetch_frame(
            con,
            _COMPARE_SQL,
            {"original": original, "new": reproduced, "rtol": float(rtol), "atol": float(atol)},
        )
        parent = con.execute(
            "SELECT parent_run_id FROM runs WHERE run_id = ?", [reproduced]
        ).fetchone()
    finally:
        con.close()
    if ignore:
        frame = frame.filter(
            ~pl.col("key").map_elements(
                lambda key: any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore),
                return_dtype=pl.Boolean,
            )
        )
    status = (
        pl.when(pl.col("reproduced_points") == 0)
        .then(pl.lit("missing"))
        .when(pl.col("original_points") == 0)
        .then(pl.lit("extra"))
        .when(pl.col("drifted_points") > 0)
        .then(pl.lit("drifted"))
        .otherwise(pl.lit("match"))
    )
    frame = frame.with_columns(status.alias("status")).select(
        "key",
        "status",
        "original",
        "reproduced",
        "max_abs_diff",
        "max_rel_diff",
        "original_points",
        "reproduced_points",
        "drifted_points",
        "first_drift_step",
    )
    return CompareResult(
        original=original,
        reproduced_run=reproduced,
        rtol=rtol,
        atol=atol,
        metrics=frame,
        linked=bool(parent and parent[0] == original),
    )
