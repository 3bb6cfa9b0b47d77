"""The production layer every node runs with (node/ops/production.py): proxy trust, secure
cookies, security headers on every kind of response, JSON logs; and what long-running processes do once
started (node/ops/runtime.py)."""

from __future__ import annotations

import json
import logging

import pytest
from flask import current_app, jsonify, request, session

from node.ops.logs import remove_json_logging


def probe(app):
    """A route that shows what the app sees of the request (added for the test only)."""

    @app.get("/_probe")
    def _probe():
        session["seen"] = True
        current_app.logger.warning("probe seen")
        return jsonify(remote=request.remote_addr, scheme=request.scheme, host=request.host,
                       secure=request.is_secure)

    return app.test_client()


def test_behind_the_proxy_the_app_trusts_one_hop_of_forwarded_headers(make_app):
    client = probe(make_app(HALLES_BEHIND_PROXY=True, HALLES_URL="https://halles.example.org"))
    seen = client.get("/_probe", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.5",
                                          "X-Forwarded-Proto": "https", "X-Forwarded-Host": "halles.example.org"}).json
    # Only the address the proxy itself added counts: the visitor could have written the first one.
    assert seen == {"remote": "203.0.113.5", "scheme": "https", "host": "halles.example.org", "secure": True}


def test_without_the_proxy_setting_forwarded_headers_are_ignored(make_app):
    client = probe(make_app(HALLES_BEHIND_PROXY=False))
    seen = client.get("/_probe", headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}).json
    assert seen["remote"] == "127.0.0.1" and seen["scheme"] == "http" and seen["secure"] is False


def test_cookies_are_secure_when_the_public_url_is_https(make_app):
    app = make_app(HALLES_URL="https://halles.example.org", HALLES_BEHIND_PROXY=True)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    cookie = probe(app).get("/_probe", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_cookies_are_not_forced_secure_on_a_local_http_node(make_app):
    app = make_app(HALLES_URL="http://127.0.0.1:5000")
    assert app.config["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize("path", ["/api/v1/events", "/healthz", "/actor", "/static/css/halles.css"])
def test_security_headers_on_every_kind_of_response(make_app, path):
    app = make_app(HALLES_URL="https://halles.example.org")
    response = app.test_client().get(path)
    response.close()  # static files are streamed from an open file
    assert response.status_code in (200, 503)  # /healthz is 503 until a worker ran
    headers = response.headers
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["X-Frame-Options"] == "DENY"


def test_the_map_tile_host_is_allowed_for_images(make_app):
    app = make_app(HALLES_TILE_URL="https://{s}.tiles.example.net/{z}/{x}/{y}.png")
    policy = app.test_client().get("/api/v1/events").headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://*.tiles.example.net" in policy


def test_the_embeddable_widget_can_be_framed_by_other_sites(make_app):
    client = make_app().test_client()
    for path in ("/embed", "/embed.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "frame-ancestors *" in response.headers["Content-Security-Policy"]
        assert "X-Frame-Options" not in response.headers
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_no_hsts_on_a_plain_http_node(make_app):
    response = make_app(HALLES_URL="http://127.0.0.1:5000").test_client().get("/api/v1/events")
    assert "Strict-Transport-Security" not in response.headers


@pytest.fixture
def json_logs():
    yield
    remove_json_logging()


def test_json_logs_one_object_per_line_with_the_request(make_app, json_logs, capsys):
    client = probe(make_app(HALLES_LOG_FORMAT="json"))
    client.get("/_probe", headers={"X-Request-ID": "req-42"})
    lines = [line for line in capsys.readouterr().err.splitlines() if "probe seen" in line]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "warning" and entry["message"] == "probe seen"
    assert entry["path"] == "/_probe" and entry["method"] == "GET" and entry["request_id"] == "req-42"
    assert entry["time"].endswith("Z")


def test_json_logging_is_installed_once(make_app, json_logs):
    make_app(HALLES_LOG_FORMAT="json")
    make_app(HALLES_LOG_FORMAT="json")
    marked = [handler for handler in logging.getLogger().handlers if getattr(handler, "_halles_json", False)]
    assert len(marked) == 1


def test_json_formatter_turns_a_gunicorn_access_record_into_fields():
    from node.ops.logs import JsonFormatter

    atoms = {"h": "127.0.0.1", "m": "POST", "U": "/api/v1/events", "q": "", "s": "201", "B": 512, "f": "-",
             "a": "curl/8", "D": 12345, "{x-forwarded-for}i": "203.0.113.5", "{x-request-id}i": "abc"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(h)s", (atoms,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry == {"time": entry["time"], "level": "info", "logger": "gunicorn.access", "message": "request",
                     "remote_addr": "127.0.0.1", "method": "POST", "path": "/api/v1/events", "status": 201,
                     "bytes": 512, "user_agent": "curl/8", "duration_ms": 12.3, "forwarded_for": "203.0.113.5",
                     "request_id": "abc"}


# --- long-running processes (node/ops/runtime.py) ------------------------------------------------


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_collects_what_starting_left_then_freezes_the_rest():
    import gc
    import weakref

    from node.ops.runtime import settle

    garbage = _Cycle()
    collected = weakref.ref(garbage)
    del garbage
    kept = _Cycle()
    try:
        settle()
        assert collected() is None  # a cycle already unreachable was collected, not frozen
        assert gc.get_freeze_count() > 1000
        assert kept.me is kept
    finally:
        gc.unfreeze()


def test_the_gunicorn_entry_point_settles_once_the_app_is_made(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {"PATH": "/usr/bin:/bin", "HALLES_SECRET_KEY": "test", "HALLES_INSTANCE": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-c", "import gc, node.wsgi; print(gc.get_freeze_count())"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert int(shown.stdout) > 10_000


def test_the_worker_command_settles_before_its_loop(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from node import worker
    from node.cli import main
    from node.ops import runtime

    calls = []
    monkeypatch.setattr(runtime, "settle", lambda: calls.append("settle"))
    monkeypatch.setattr(worker, "run_forever", lambda _app: calls.append("loop"))
    result = CliRunner().invoke(main, ["worker"], env={"HALLES_SECRET_KEY": "test", "HALLES_INSTANCE": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert calls == ["settle", "loop"]
