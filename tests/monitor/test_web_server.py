"""`ledger serve` over HTTP on 127.0.0.1: API, auth, read-only, traversal-safe downloads."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse

import pytest
from click.testing import CliRunner

import ledger
from ledger.cli import cli
from ledger.errors import ConfigError
from ledger.web.server import make_server
from ledger.writer import writer_for


@pytest.fixture
def serve(populated_store):
    servers = []

    def start(token=None):
        server = make_server(populated_store, host="127.0.0.1", port=0, token=token)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def get(server, path, headers=None, method="GET"):
    con = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    con.request(method, path, headers=headers or {})
    response = con.getresponse()
    body = response.read()
    con.close()
    return response.status, dict(response.getheaders()), body


def get_json(server, path, **kwargs):
    status, _headers, body = get(server, path, **kwargs)
    return status, json.loads(body)


def test_api_answers_runs_run_compare_status(serve, populated_store):
    server = serve()
    status, page = get_json(server, "/api/runs?sort=name&order=asc")
    assert status == 200 and page["total"] == 3
    ids = {r["name"]: r["run_id"] for r in page["rows"]}
    assert get_json(server, "/api/runs?status=failed")[1]["total"] == 1
    assert get_json(server, "/api/runs?q=" + urllib.parse.quote("' OR 1=1 --"))[1]["total"] == 0
    status, detail = get_json(server, f"/api/run/{ids['a']}")
    assert detail["run"]["name"] == "a" and detail["tags"] == [{"key": "team", "value": "cv"}]
    status, series = get_json(server, f"/api/run/{ids['b']}/metrics?after=8")
    assert series["acc"] == [[9, 0.6], [10, None]]  # NaN travels as null
    status, progress = get_json(server, f"/api/run/{ids['a']}/progress")
    assert progress["step"] == 9 and progress["status"] == "finished"
    status, compared = get_json(server, f"/api/compare?ids={ids['a']},{ids['b']}")
    assert status == 200 and len(compared["runs"]) == 2
    assert get_json(server, "/api/status")[1][0]["name"] == "c"
    assert get_json(server, "/api/facets")[1]["projects"] == ["vision"]
    assert get_json(server, "/api/run/nope")[0] == 404
    assert get_json(server, "/api/compare?ids=x")[0] == 400
    assert get_json(server, "/api/runs?sort=secret")[0] == 400
    assert get_json(server, "/api/runs?limit=abc")[0] == 400
    status, headers, body = get(server, "/")
    assert status == 200 and b"/static/app.js" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert get(server, "/static/charts.js")[0] == 200


def test_read_only_and_static_whitelist(serve):
    server = serve()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert get(server, "/api/runs", method=method)[0] == 405
    for path in ("/static/../server.py", "/static/..%2fserver.py", "/static/%2e%2e/__init__.py",
                 "/static/", "/static/app.js/../../server.py", "/../../etc/passwd"):  # fmt: skip
        assert get(server, path)[0] == 404, path


def test_artifact_download_cannot_escape_the_store(serve, populated_store, tmp_path):
    model = tmp_path / "model.txt"
    model.write_text("weights")
    with ledger.start_run("vision", "sweep", "art", store=populated_store) as run:
        run.log_artifact(str(model), artifact_path="out")
        # Events are plain files: a crafted one may name any uri. Downloads must refuse it.
        writer_for(populated_store).add_event(
            "artifacts", "vision",
            {"run_id": run.id, "path": "evil", "uri": "../../../../etc/passwd", "size": 1},
        )  # fmt: skip
        writer_for(populated_store).add_event(
            "artifacts", "vision",
            {"run_id": run.id, "path": "evil2", "uri": "artifacts/sha256/../../ledger.toml"},
        )  # fmt: skip
    ledger.flush()
    server = serve()
    status, headers, body = get(server, f"/artifact/{run.id}?path=out/model.txt")
    assert status == 200 and body == b"weights"
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''model.txt"
    for path in ("evil", "evil2"):
        status, body = get_json(server, f"/artifact/{run.id}?path={path}")
        assert status == 403 and "Not an artifact stored in this ledger" in body["error"]
    assert get(server, f"/artifact/{run.id}?path=../../etc/passwd")[0] == 404
    assert get(server, "/artifact/..%2f..%2fetc?path=passwd")[0] == 400
    assert get(server, f"/artifact/{run.id}")[0] == 400


def test_token_required_for_every_request(serve):
    server = serve(token="s3cret-token")
    assert get(server, "/api/runs")[0] == 401
    assert get(server, "/")[0] == 401
    assert get(server, "/api/runs", headers={"Authorization": "Bearer wrong-token"})[0] == 401
    assert get(server, "/api/runs", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
    status, headers, _ = get(server, "/?token=s3cret-token")
    assert status == 200 and "ledger_token=s3cret-token" in headers["Set-Cookie"]
    assert "HttpOnly" in headers["Set-Cookie"]
    assert get(server, "/api/runs", headers={"Cookie": "ledger_token=s3cret-token"})[0] == 200


def test_non_loopback_host_needs_token():
    with pytest.raises(ConfigError, match="without --token"):
        make_server(host="0.0.0.0", port=0)
    with pytest.raises(ConfigError, match="at least 8"):
        make_server(host="127.0.0.1", port=0, token="short")
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: Refusing to serve on '0.0.0.0' without --token")


def test_loopback_server_refuses_foreign_host_header(serve):
    server = serve()
    assert get(server, "/api/runs", headers={"Host": "attacker.example:8765"})[0] == 401
    assert get(server, "/api/runs", headers={"Host": f"localhost:{server.server_port}"})[0] == 200
    assert get(server, "/api/runs", headers={"Host": "[::1]:8765"})[0] == 200
    assert get(server, "/api/runs", headers={"Host": "127.0.0.1"})[0] == 200
    assert get(server, "/api/runs", headers={"Host": "127.0.0.1.nip.io"})[0] == 401


def test_reports_of_other_areas_degrade_gracefully(serve, monkeypatch):
    server = serve()
    for kind, name in (("leaderboard", "leaderboard"), ("importance", "importance"),
                       ("costs", "report_costs")):  # fmt: skip
        monkeypatch.delattr(ledger, name, raising=False)
        monkeypatch.delitem(ledger._LAZY, name, raising=False)  # no lazy re-import either
        status, body = get_json(server, f"/api/{kind}?metric=loss")
        assert status == 200 and body["available"] is False and name in body["reason"]

    def leaderboard(store=None, *, metric, project=None, limit=10):
        return ledger.query(
            "SELECT run_id, key, value FROM latest_metrics WHERE key = ? ORDER BY value LIMIT ?",
            store, [metric, limit],
        )  # fmt: skip

    monkeypatch.setattr(ledger, "leaderboard", leaderboard, raising=False)
    status, body = get_json(server, "/api/leaderboard?metric=loss&limit=2&junk=1")
    assert body["available"] and body["result"]["columns"] == ["run_id", "key", "value"]
    assert len(body["result"]["rows"]) == 2
    status, body = get_json(server, "/api/leaderboard")
    assert body["available"] and "metric" in body["error"]


def test_port_in_use_is_a_one_line_error(serve):
    server = serve()
    result = CliRunner().invoke(cli, ["serve", "--port", str(server.server_port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: Cannot serve on 127.0.0.1:{server.server_port}:")
