"""``ledger serve``: a read-only dashboard over the same query functions as the CLI.

Standard library only (``http.server.ThreadingHTTPServer``): one cursor per request over a
:class:`~ledger.analytics.live.LiveStore` (run-level events mirrored in memory and
refreshed every second in the background; metrics and system samples read from only the
partitions a run lives in). Everything the browser loads ships in ``ledger/web/static`` and
is served from a fixed list of names (no file-system path is ever built from a URL).

Safety:
- Binds to 127.0.0.1 by default; a non-loopback host is refused unless a token is set.
  With a token every request needs it (``Authorization: Bearer``, the ``ledger_token``
  cookie, or ``?token=`` once, which sets the cookie).
- Without a token, requests must name a loopback ``Host`` (blocks DNS-rebinding pages from
  reading the dashboard through the victim's browser).
- GET/HEAD only; every value reaches SQL as a bound parameter.
- Artifact downloads look the artifact up by (run id, logical path) in the ``artifacts``
  view and open it only through ``Store.artifact_path``, which refuses any uri outside the
  store's content-addressed area.
"""

from __future__ import annotations

import datetime as dt
import hmac
import inspect
import ipaddress
import json
import math
import mimetypes
import os
import re
import shutil
import socket
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from ledger.analytics import monitor
from ledger.analytics.live import LiveStore
from ledger.errors import ConfigError, InvalidValueError, LedgerError, RunNotFoundError, StoreError
from ledger.store import Store, open_store

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
OPTIONAL_REPORTS = {
    "leaderboard": "leaderboard",
    "importance": "importance",
    "costs": "report_costs",
}
_RUN_ID = re.compile(r"^[0-9a-zA-Z_-]{1,64}$")
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def is_loopback(host: str, *, resolve: bool = True) -> bool:
    """True when ``host`` (a name or address) resolves only to loopback addresses.

    With ``resolve=False`` (checking a request's ``Host`` header) no DNS lookup is made:
    only loopback literals and ``localhost`` names pass.
    """
    host = host.strip("[]").lower()
    if host in ("localhost", "ip6-localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not resolve:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def to_json(value: Any) -> Any:
    """JSON-safe copy: datetimes as ISO text, NaN/inf as None, frames as row lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "to_dicts") and hasattr(value, "columns"):  # a polars frame
        return {"columns": list(value.columns), "rows": to_json(value.to_dicts())}
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return to_json(dataclasses.asdict(value))
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, store: Store, host: str, port: int, token: str | None, refresh_interval: float = 1.0
    ) -> None:
        self.store = store
        self.token = token
        self.display_host = f"[{host}]" if ":" in host else host
        self.loopback_only = token is None
        self.live = LiveStore(store, min_interval=refresh_interval)
        self.live.start_background()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), DashboardHandler)

    def cursor(self) -> Any:
        """A connection of its own for one request, over the live mirror of the store."""
        return self.live.cursor()

    def server_close(self) -> None:
        super().server_close()
        self.live.close()


def make_server(
    store: str | os.PathLike[str] | Store | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
) -> DashboardServer:
    """A dashboard server bound to ``host:port`` (call ``serve_forever``).

    Raises:
        ConfigError: a non-loopback host without a token, or an empty token.
    """
    if token is not None and len(token) < 8:
        raise ConfigError("--token must be at least 8 characters")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"Refusing to serve on {host!r} without --token: the dashboard shows every run "
            "in the store. Bind to 127.0.0.1 (default) or set --token."
        )
    try:
        return DashboardServer(open_store(store), host, port, token)
    except OSError as exc:
        raise ConfigError(f"Cannot serve on {host}:{port}: {exc.strerror or exc}") from exc


def _call_optional(name: str, store: Store, query: dict[str, str]) -> dict[str, Any]:
    """Call ``ledger.<name>`` (built by another area) with the query's matching keywords."""
    import ledger

    try:
        func = getattr(ledger, name)
    except AttributeError:
        return {"available": False, "reason": f"ledger.{name} is not available in this version"}
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    kwargs: dict[str, Any] = {}
    accepts_any = signature is None or any(
        p.kind is p.VAR_KEYWORD for p in signature.parameters.values()
    )
    for key, value in query.items():
        if value == "" or key in ("store", "token"):
            continue
        if accepts_any or (signature is not None and key in signature.parameters):
            kwargs[key] = _coerce(value)
    if signature is None or "store" in signature.parameters or accepts_any:
        kwargs["store"] = store
    try:
        result = func(**kwargs)
    except TypeError as exc:
        return {"available": True, "error": f"{name}: {exc}"}
    except LedgerError as exc:
        return {"available": True, "error": str(exc)}
    return {"available": True, "result": to_json(result)}


def _coerce(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"
    server_version = "ledger"

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("LEDGER_SERVE_LOG"):
            super().log_message(format, *args)

    # -- plumbing --------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(to_json(value), ensure_ascii=False).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _authorised(self, query: dict[str, str]) -> tuple[bool, dict[str, str]]:
        token = self.server.token
        if token is None:
            header = self.headers.get("Host") or ""
            match = re.match(r"^\[([^\]]*)\]|^([^:]*)", header)
            host = (match.group(1) or match.group(2)) if match else ""
            return (not host or is_loopback(host, resolve=False)), {}
        offered = []
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            offered.append(auth[len("Bearer ") :])
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "ledger_token":
                offered.append(value)
        if "token" in query:
            offered.append(query["token"])
        ok = any(hmac.compare_digest(o.encode(), token.encode()) for o in offered)
        cookie = {}
        if ok and "token" in query:
            cookie = {"Set-Cookie": f"ledger_token={token}; HttpOnly; SameSite=Strict; Path=/"}
        return ok, cookie

    def do_POST(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "The dashboard is read-only")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        ok, cookie = self._authorised(query)
        if not ok:
            self._error(HTTPStatus.UNAUTHORIZED, "A valid token is required")
            return
        path = urllib.parse.unquote(url.path)
        try:
            if path in ("/", "/index.html"):
                self._static("index.html", cookie)
            elif path.startswith("/static/"):
                self._static(path[len("/static/") :], cookie)
            elif path.startswith("/api/"):
                self._api(path[len("/api/") :].split("/"), query)
            elif path.startswith("/artifact/"):
                self._artifact(path[len("/artifact/") :], query)
            else:
                self._error(HTTPStatus.NOT_FOUND, f"No page {path!r}")
        except RunNotFoundError as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except (InvalidValueError, ConfigError, ValueError) as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except StoreError as exc:
            self._error(HTTPStatus.FORBIDDEN, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # one bad request must not take the server down
            traceback.print_exc()
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _static(self, name: str, extra: dict[str, str]) -> None:
        content_type = STATIC_FILES.get(name)
        if content_type is None:
            self._error(HTTPStatus.NOT_FOUND, f"No file {name!r}")
            return
        body = resources.files("ledger.web").joinpath("static", name).read_bytes()
        self._send(HTTPStatus.OK, body, content_type, extra)

    # -- API -------------------------------------------------------------------------------

    def _api(self, parts: list[str], query: dict[str, str]) -> None:
        head = parts[0]
        if head in OPTIONAL_REPORTS and len(parts) == 1:
            self._json(_call_optional(OPTIONAL_REPORTS[head], self.server.store, query))
            return
        for attempt in range(2):
            con = self.server.cursor()
            try:
                self._json(self._api_data(con, parts, query))
                return
            except RunNotFoundError:
                # A run newer than the last background refresh: refresh now, ask again.
                if attempt or not self.server.live.refresh(force=True):
                    raise
            finally:
                con.close()

    def _api_data(self, con: Any, parts: list[str], query: dict[str, str]) -> Any:
        head, rest = parts[0], parts[1:]
        if head == "runs" and not rest:
            total, rows = monitor.list_runs_page(
                con,
                project=query.get("project"),
                experiment=query.get("experiment"),
                status=query.get("status"),
                search=query.get("q"),
                sort=query.get("sort", "start_time"),
                descending=query.get("order", "desc") != "asc",
                limit=int(query.get("limit", "100")),
                offset=int(query.get("offset", "0")),
            )
            return {"total": total, "rows": rows}
        if head == "facets" and not rest:
            return monitor.facets(con)
        if head == "status" and not rest:
            frame = monitor.status(con, project=query.get("project") or None,
                                   recent=query.get("recent", "1h"))  # fmt: skip
            return frame.to_dicts()
        if head == "run" and rest and _RUN_ID.match(rest[0]):
            run_id = rest[0]
            if len(rest) == 1:
                return monitor.run_detail(con, run_id)
            if rest[1:] == ["metrics"]:
                keys = [k for k in query.get("keys", "").split(",") if k] or None
                return monitor.metric_series(
                    con, run_id, keys=keys, after_step=int(query.get("after", "-1"))
                )
            if rest[1:] == ["system"]:
                return monitor.system_series(con, run_id)
            if rest[1:] == ["progress"]:
                found = monitor.fetch_frame(
                    con,
                    "SELECT project, status, start_time, last_heartbeat, duration_s FROM runs "
                    "WHERE run_id = $id",
                    {"id": run_id},
                ).to_dicts()
                if not found:
                    raise RunNotFoundError(f"No run with id {run_id!r}")
                row = found[0]
                info = monitor.run_progress(
                    con, [run_id], since=row["start_time"], projects=[row["project"]]
                )[run_id]
                return {**row, **info}
        if head == "compare" and not rest:
            ids = [i for i in query.get("ids", "").split(",") if i]
            return monitor.compare_runs(con, ids)
        raise RunNotFoundError(f"No API endpoint /api/{'/'.join(parts)}")

    def _artifact(self, run_id: str, query: dict[str, str]) -> None:
        logical = query.get("path", "")
        if not _RUN_ID.match(run_id) or not logical:
            self._error(HTTPStatus.BAD_REQUEST, "Use /artifact/<run id>?path=<artifact path>")
            return
        con = self.server.cursor()
        try:
            rows = monitor.fetch_frame(
                con,
                "SELECT uri, size FROM artifacts WHERE run_id = $id AND path = $path",
                {"id": run_id, "path": logical},
            ).to_dicts()
        finally:
            con.close()
        if not rows:
            self._error(HTTPStatus.NOT_FOUND, f"Run {run_id} has no artifact {logical!r}")
            return
        store = self.server.store
        target = store.artifact_path(rows[0]["uri"])  # raises StoreError outside the store
        name = os.path.basename(logical) or "artifact"
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        quoted = urllib.parse.quote(name)
        with store.fs.open_input_file(target) as handle:
            size = handle.size()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Disposition", f"attachment; filename*=UTF-8''{quoted}")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "sandbox")
            self.end_headers()
            if self.command != "HEAD":
                shutil.copyfileobj(handle, self.wfile, 1 << 16)
