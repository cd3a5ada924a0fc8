"""Reproducibility facts captured at run start (DESIGN.md invariant 8).

Capture costs tens of milliseconds (``git status`` ~10 ms, listing installed packages
~65 ms), so it runs once per process, in a background thread, and every run the process
starts reuses the result: starting a run stays sub-millisecond.

What is captured, and what ``ledger reproduce`` does with it:

- git: commit, branch, remote, repository root and the working directory inside it; the
  uncommitted diff against ``HEAD`` (stored as a content-addressed artifact up to
  :data:`DEFAULT_MAX_DIFF_BYTES`, hashed and noted when bigger), the content hash of every
  changed tracked file and of every untracked source file (so ``--check`` can name the
  files that differ).
- the interpreter, and every installed distribution both as ``{name: version}`` and as
  pip requirement lines (``name==version``, or ``name @ url`` / ``-e path`` for direct
  installs, from PEP 610 ``direct_url.json``).
- allow-listed environment variables (thread counts, CUDA/cuBLAS determinism switches,
  locale, ``PYTHONHASHSEED``...). A name matching :data:`SECRET_NAME` is never recorded,
  whatever the allow-list says, and credentials inside URL values are masked.
- the command line, working directory, host, OS, CPU and GPUs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import getpass
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ledger import env

if TYPE_CHECKING:
    from ledger.store import Store

_GIT_TIMEOUT_S = 5.0
DEFAULT_MAX_DIFF_BYTES = 10 * 1024 * 1024
"""Uncommitted diffs up to this size are stored with the run (``LEDGER_CAPTURE_MAX_DIFF``)."""
MAX_HASHED_FILES = 2000
"""At most this many changed/untracked files are hashed; the rest are counted."""
MAX_HASHED_FILE_BYTES = 64 * 1024 * 1024
"""Files bigger than this are recorded by size only (hashing them would slow capture)."""
DIFF_ARTIFACT_PATH = "ledger/patch.diff"
"""Where the uncommitted diff shows up in the ``artifacts`` view of each run."""

SOURCE_SUFFIXES = frozenset(
    [
        ".py",
        ".pyi",
        ".pyx",
        ".pxd",
        ".ipynb",
        ".sh",
        ".bash",
        ".zsh",
        ".toml",
        ".cfg",
        ".ini",
        ".yaml",
        ".yml",
        ".json",
        ".jsonc",
        ".sql",
        ".r",
        ".R",
        ".jl",
        ".scala",
        ".java",
        ".kt",
        ".go",
        ".rs",
        ".c",
        ".cc",
        ".cpp",
        ".cxx",
        ".h",
        ".hh",
        ".hpp",
        ".cu",
        ".cuh",
        ".js",
        ".ts",
        ".lua",
        ".m",
        ".mk",
        ".cmake",
        ".proto",
        ".txt",
        ".md",
        ".rst",
        ".lock",
    ]
)
SOURCE_NAMES = frozenset(
    [
        "Makefile",
        "Dockerfile",
        "Snakefile",
        "Justfile",
        "Pipfile",
        ".gitignore",
        ".gitattributes",
        ".python-version",
    ]
)

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.IGNORECASE)
"""Environment variable names that are never recorded, even when allow-listed."""

ENV_ALLOW = (
    "PYTHONHASHSEED",
    "PYTHONPATH",
    "PYTHONOPTIMIZE",
    "PYTHONUTF8",
    "PYTHONWARNINGS",
    "PYTHONDONTWRITEBYTECODE",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
    "CONDA_PREFIX",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "OMP_*",
    "MKL_*",
    "OPENBLAS_*",
    "NUMEXPR_*",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "CUDA_*",
    "CUBLAS_*",
    "CUDNN_*",
    "NCCL_*",
    "NVIDIA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "PYTORCH_*",
    "TORCH_*",
    "TORCHINDUCTOR_*",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_*",
    "TF_ENABLE_*",
    "TF_*_THREADS",
    "TF_XLA_FLAGS",
    "XLA_*",
    "JAX_*",
    "KERAS_*",
    "PL_*",
    "HF_*",
    "TRANSFORMERS_*",
    "DATASETS_*",
    "SKLEARN_*",
    "LEDGER_PROJECT",
    "LEDGER_EXPERIMENT",
)
"""Names (``fnmatch`` patterns) of the environment variables a run records."""

MASK = "***"
"""What a masked secret looks like in the store."""

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def _git(args: list[str], cwd: str) -> str | None:
    raw = _git_bytes(args, cwd)
    return None if raw is None else raw.decode("utf-8", "replace")


def _git_bytes(args: list[str], cwd: str) -> bytes | None:
    try:
        result = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout


def file_sha256(path: str) -> str | None:
    """The sha256 of a file's bytes; None when it is missing or unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def is_source_file(path: str) -> bool:
    """Whether an untracked file counts as source code (and is hashed at capture)."""
    name = os.path.basename(path)
    if name in SOURCE_NAMES:
        return True
    return os.path.splitext(name)[1] in SOURCE_SUFFIXES


def hash_files(root: str, paths: list[str]) -> tuple[dict[str, str | None], list[str]]:
    """``{path: sha256 or None (missing)}`` for files under ``root``, and notes on skips.

    At most :data:`MAX_HASHED_FILES` files are hashed; files over
    :data:`MAX_HASHED_FILE_BYTES` get ``"size:<bytes>"`` instead of a hash.
    """
    hashes: dict[str, str | None] = {}
    notes: list[str] = []
    for path in sorted(paths)[:MAX_HASHED_FILES]:
        full = os.path.join(root, path)
        try:
            size = os.path.getsize(full)
        except OSError:
            hashes[path] = None
            continue
        if size > MAX_HASHED_FILE_BYTES:
            hashes[path] = f"size:{size}"
        else:
            hashes[path] = file_sha256(full)
    if len(paths) > MAX_HASHED_FILES:
        notes.append(f"{len(paths) - MAX_HASHED_FILES} more files were not hashed")
    return hashes, notes


def _split_z(raw: str | None) -> list[str]:
    return [item for item in (raw or "").split("\0") if item]


def max_diff_bytes() -> int:
    """The diff size cap: ``LEDGER_CAPTURE_MAX_DIFF`` (e.g. ``10MB``) or the default."""
    text = os.environ.get(env.CAPTURE_MAX_DIFF)
    if not text:
        return DEFAULT_MAX_DIFF_BYTES
    from ledger.durations import parse_size

    try:
        return int(parse_size(text))
    except Exception:
        return DEFAULT_MAX_DIFF_BYTES


def artifact_uri(sha256: str) -> str:
    """The store-relative uri of content-addressed bytes (same layout as ``put_artifact``)."""
    return f"artifacts/sha256/{sha256[:2]}/{sha256}"


def git_state(cwd: str | None = None) -> tuple[dict[str, Any] | None, bytes | None]:
    """Git facts of the repository around ``cwd`` and the uncommitted diff to store.

    Returns ``(None, None)`` outside a git work tree (or without git). The diff bytes are
    None when the tree is clean or the diff is over the cap (the facts then say why).
    """
    cwd = cwd or os.getcwd()
    head = _git(["rev-parse", "--show-toplevel", "HEAD"], cwd)
    if head is None:
        return None, None
    lines = head.split("\n")
    if len(lines) < 2:
        return None, None
    root, commit = lines[0].strip(), lines[1].strip()
    branch = (_git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or "").strip()
    subdir = os.path.relpath(os.path.realpath(cwd), os.path.realpath(root))
    facts: dict[str, Any] = {
        "commit": commit,
        "branch": branch if branch and branch != "HEAD" else None,
        "root": root,
        "subdir": "" if subdir == "." else subdir.replace(os.sep, "/"),
    }
    remote = _git(["config", "--get", "remote.origin.url"], root)
    if remote and remote.strip():
        facts["remote"] = mask_url_credentials(remote.strip())
    changed = _split_z(_git(["diff", "HEAD", "--name-only", "--no-renames", "-z"], root))
    facts["dirty"] = bool(changed)
    diff: bytes | None = None
    if changed:
        facts["changed_files"], notes = hash_files(root, changed)
        raw = _git_bytes(["diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"], root)
        raw = raw or b""
        facts["diff_sha256"] = hashlib.sha256(raw).hexdigest()
        facts["diff_size"] = len(raw)
        cap = max_diff_bytes()
        if len(raw) > cap:
            facts["diff_stored"] = False
            notes.append(
                f"the uncommitted diff is {len(raw)} bytes, over the {cap}-byte cap "
                f"(${env.CAPTURE_MAX_DIFF}); it was hashed but not stored"
            )
        else:
            facts["diff_stored"] = True
            facts["diff_uri"] = artifact_uri(facts["diff_sha256"])
            diff = raw
        if notes:
            facts["notes"] = notes
    untracked = _split_z(_git(["ls-files", "--others", "--exclude-standard", "-z"], root))
    sources = [path for path in untracked if is_source_file(path)]
    if sources:
        facts["untracked_files"], notes = hash_files(root, sources)
        facts.setdefault("notes", []).extend(notes)
    if len(untracked) > len(sources):
        facts["untracked_other"] = len(untracked) - len(sources)
    if not facts.get("notes"):
        facts.pop("notes", None)
    return facts, diff


def git_facts(cwd: str | None = None) -> dict[str, Any] | None:
    """Commit, branch, dirty flag, diff hash and file hashes; None outside git."""
    return git_state(cwd)[0]


_SECRET_WORDS = frozenset(
    ["key", "apikey", "token", "secret", "password", "passwd", "pwd", "credential", "credentials"]
)


def _secret_option(name: str) -> bool:
    # Whole words only: --api-key, --hf-token, --db-password are secrets; --max-tokens,
    # --tokenizer, --keep-checkpoints are not (masking them would break reproduction).
    words = [word for word in re.split(r"[-_.]+", name.lstrip("-").lower()) if word]
    return any(word in _SECRET_WORDS for word in words) or (
        bool(words) and words[-1].endswith(("apikey", "token", "secret", "password"))
    )


def mask_argv(argv: list[str]) -> list[str]:
    """Command-line arguments with the values of secret-looking options replaced by ``***``.

    ``--api-key X``, ``--api-key=X``, ``--hf-token X``, ``--db-password X`` ... (option
    names with a word such as key, token, secret, password); URL credentials in any
    argument are masked too.
    """
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        name, sep, _ = arg.partition("=")
        if arg.startswith("-") and _secret_option(name):
            if sep:
                masked.append(f"{name}={MASK}")
            else:
                masked.append(arg)
                hide_next = True
            continue
        masked.append(mask_url_credentials(arg))
    return masked


def mask_url_credentials(value: str) -> str:
    """``https://user:pw@host/x`` -> ``https://***@host/x``."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", value)


def _env_patterns() -> list[str]:
    extra = os.environ.get(env.CAPTURE_ENV, "")
    return [*ENV_ALLOW, *(item.strip() for item in extra.split(",") if item.strip())]


def environment_variables(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed environment variables, secrets dropped (by name) and masked (in URLs).

    A name matching :data:`SECRET_NAME` (KEY, TOKEN, SECRET, PASSWORD...) is dropped even
    when it is allow-listed through ``LEDGER_CAPTURE_ENV``.
    """
    source = os.environ if environ is None else environ
    patterns = _env_patterns()
    kept: dict[str, str] = {}
    for name, value in source.items():
        if SECRET_NAME.search(name):
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            kept[name] = mask_url_credentials(value)
    return dict(sorted(kept.items()))


def _requirement(dist: Any, name: str, version: str) -> str:
    """A pip requirement line for an installed distribution (PEP 610 aware)."""
    try:
        text = dist.read_text("direct_url.json")
    except Exception:
        text = None
    if not text:
        return f"{name}=={version}"
    try:
        direct = json.loads(text)
    except ValueError:
        return f"{name}=={version}"
    url = mask_url_credentials(str(direct.get("url", "")))
    if "vcs_info" in direct:
        vcs = direct["vcs_info"]
        ref = vcs.get("commit_id") or vcs.get("requested_revision") or ""
        return f"{name} @ {vcs.get('vcs', 'git')}+{url}" + (f"@{ref}" if ref else "")
    if direct.get("dir_info", {}).get("editable"):
        path = url[len("file://") :] if url.startswith("file://") else url
        return f"-e {path}"
    sha256 = (direct.get("archive_info", {}).get("hashes") or {}).get("sha256")
    if sha256 is None:
        legacy = str(direct.get("archive_info", {}).get("hash", ""))
        sha256 = legacy.partition("=")[2] if legacy.startswith("sha256=") else None
    return f"{name} @ {url}" + (f"#sha256={sha256}" if sha256 and "#" not in url else "")


def is_local_directory_requirement(line: str) -> bool:
    """Whether a requirement line installs from a local directory (content not pinned)."""
    if line.startswith("-e "):
        return True
    _, sep, url = line.partition(" @ ")
    return (
        bool(sep)
        and url.startswith("file:")
        and "#sha256=" not in url
        and not url.endswith((".whl", ".tar.gz", ".zip", ".tar.bz2"))
    )


def installed_distributions() -> list[tuple[str, str, str]]:
    """``(name, version, pip requirement line)`` for everything this interpreter imports."""
    from importlib import metadata

    seen: dict[str, tuple[str, str, str]] = {}
    for dist in metadata.distributions():
        name, version = _name_and_version(dist)
        key = re.sub(r"[-_.]+", "-", name or "").lower()
        if name and version and key not in seen:  # the first on sys.path wins, as for imports
            seen[key] = (name, version, _requirement(dist, name, version))
    return sorted(seen.values(), key=lambda item: item[0].lower())


def _name_and_version(dist: Any) -> tuple[str | None, str | None]:
    # `dist.metadata` parses the whole METADATA file as email (long descriptions included)
    # on every access: ~1 ms per distribution. The two headers sit at the top.
    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    except Exception:
        text = None
    name = version = None
    for line in (text or "").splitlines():
        if not line:
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
        if name and version:
            return name, version
    meta = dist.metadata
    if meta is None:
        return None, None
    return meta["Name"], meta["Version"]


def installed_packages() -> dict[str, str]:
    """``{distribution name: version}`` for everything importable in this interpreter."""
    return {name: version for name, version, _ in installed_distributions()}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus() -> list[dict[str, Any]]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_total_bytes": int(memory.total),
                }
            )
        return gpus
    except pynvml.NVMLError:
        return []
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


HOST = socket.gethostname()
USER = user_name()


def _command() -> list[str] | None:
    # orig_argv keeps interpreter options and `-m module` (argv turns `-m pkg.mod` into a
    # file path, which does not run the same way).
    original = getattr(sys, "orig_argv", None)
    if original:
        return [sys.executable, *mask_argv(original[1:])]
    return [sys.executable, *mask_argv(sys.argv)] if sys.argv and sys.argv[0] else None


def capture_state() -> tuple[dict[str, Any], bytes | None]:
    """Everything captured about this process (JSON-ready) and the diff bytes to store."""
    git, diff = git_state()
    distributions = installed_distributions()
    facts: dict[str, Any] = {
        "command": _command(),
        "cwd": os.getcwd(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
        },
        "host": {
            "hostname": HOST,
            "os": platform.platform(),
            "machine": platform.machine(),
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
        },
        "gpus": _gpus(),
        "git": git,
        "packages": {name: version for name, version, _ in distributions},
        "requirements": [line for _, _, line in distributions],
        "env": environment_variables(),
    }
    with contextlib.suppress(ValueError, OSError, AttributeError):
        facts["host"]["memory_total_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf(
            "SC_PHYS_PAGES"
        )
    return facts, diff


def capture_environment() -> dict[str, Any]:
    """Everything captured about this process, as a JSON-ready dict."""
    return capture_state()[0]


Delivery = Callable[["dict[str, Any]", "dict[str, Any] | None"], None]
"""``callback(row, diff)``: ``row`` holds the columns of an ``environment`` runs event
(the facts JSON-encoded once per process, plus typed copies of the most-asked ones);
``diff`` is ``{"sha256", "size", "uri"}`` once the
uncommitted diff is stored in the run's store, ``{"error": ...}`` when storing failed,
None when there is nothing to store."""


def environment_row(facts: dict[str, Any]) -> dict[str, Any]:
    """The columns of an ``environment`` runs event for captured ``facts``."""
    git = facts.get("git") or {}
    command = facts.get("command")
    return {
        "attrs": json.dumps(facts, default=str),
        "git_commit": git.get("commit"),
        "git_branch": git.get("branch"),
        "git_dirty": git.get("dirty"),
        "command": " ".join(command) if command else None,
        "python_version": (facts.get("python") or {}).get("version"),
    }


class BackgroundCapture:
    """Runs :func:`capture_state` once per process and hands the result to waiters.

    The diff is written to each store once per process (content-addressed, so a store
    that already holds it costs one existence check), always off the caller's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._result: dict[str, Any] | None = None
        self._diff: bytes | None = None
        self._stored: dict[str, dict[str, Any]] = {}
        self._waiters: list[tuple[Delivery, Store | None]] = []
        self._thread: threading.Thread | None = None
        self._helpers: list[threading.Thread] = []
        self._pid = os.getpid()

    def after_fork_in_child(self) -> None:
        # Keep a finished capture (same code, same argv); drop the parent's lock, threads
        # and waiters, which belong to runs the parent owns.
        self._lock = threading.Lock()
        self._waiters = []
        self._thread = None
        self._helpers = []
        self._pid = os.getpid()

    def when_ready(self, callback: Delivery, store: Store | None = None) -> None:
        """Call ``callback(row, diff)`` once the capture (and the diff's write to
        ``store``) is done: now if nothing is left to do, else from a background thread.
        """
        with self._lock:
            if self._result is None:
                self._waiters.append((callback, store))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="ledger-capture", daemon=True
                    )
                    self._thread.start()
                return
            result = self._result
            pending_write = (
                store is not None and self._diff is not None and store.uri not in self._stored
            )
            if pending_write:
                helper = threading.Thread(
                    target=self._deliver, args=(callback, store), name="ledger-capture", daemon=True
                )
                self._helpers.append(helper)
        if pending_write:
            helper.start()
        else:
            callback(result, self._stored.get(store.uri) if store is not None else None)

    def _run(self) -> None:
        try:
            facts, diff = capture_state()
        except Exception as exc:  # capture must never break a run
            facts, diff = {"error": f"{type(exc).__name__}: {exc}"}, None
        result = environment_row(facts)
        with self._lock:
            self._result = result
            self._diff = diff
            waiters, self._waiters = self._waiters, []
        for callback, store in waiters:
            self._deliver(callback, store)

    def _deliver(self, callback: Delivery, store: Store | None) -> None:
        diff = self._store_diff(store) if store is not None else None
        assert self._result is not None
        callback(self._result, diff)

    def _store_diff(self, store: Store) -> dict[str, Any] | None:
        if self._diff is None:
            return None
        known = self._stored.get(store.uri)
        if known is not None:
            return known
        try:
            with tempfile.NamedTemporaryFile(prefix="ledger-diff-", suffix=".diff") as handle:
                handle.write(self._diff)
                handle.flush()
                sha, size, uri = store.put_artifact(handle.name)
            stored: dict[str, Any] = {"sha256": sha, "size": size, "uri": uri}
        except Exception as exc:  # a failed side channel becomes a note, never an error
            return {"error": f"could not store the uncommitted diff: {type(exc).__name__}: {exc}"}
        with self._lock:
            self._stored[store.uri] = stored
        return stored

    def wait(self, timeout: float) -> None:
        for thread in [self._thread, *self._helpers]:
            if thread is not None and thread.is_alive():
                thread.join(timeout)


capture = BackgroundCapture()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=capture.after_fork_in_child)
