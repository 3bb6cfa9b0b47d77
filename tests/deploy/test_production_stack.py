"""The production stack without Docker, for real: node A is gunicorn (deploy/gunicorn.conf.py) and
`halles worker` on PostgreSQL behind nginx (the shipped site deploy/nginx/halles.conf) with TLS from
a test CA; node B is gunicorn and `halles worker` on loopback. Both are created with `halles init`
and peered with `halles peer request` / `halles peer approve`. An event created over https on A
reaches B; security headers, /healthz, `halles doctor` and `halles backup` are checked through the
stack; everything is then stopped with signals and must exit cleanly."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.deploy.data import EVENT
from tests.deploy.tls import TestCA
from tests.support.databases import TEST_DATABASE_URL
from tests.support.requirements import missing
from tests.support.smtp import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SITE = ROOT / "deploy" / "nginx" / "halles.conf"
STARTUP_TIMEOUT = 60


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def nginx_config(prefix: Path, *, tls_port: int, http_port: int, upstream_port: int, cert: Path, key: Path) -> Path:
    """The shipped site with this machine's ports and the test certificate, inside a main config
    that runs nginx in the foreground with every file under ``prefix``."""
    site = SITE.read_text(encoding="utf-8")
    replacements = [
        (r"^\s*listen \[::\]:\d+.*\n", ""),  # IPv6 may be off on the test machine
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;"),
        (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        (r"server_name halles\.example\.org;", "server_name 127.0.0.1 localhost;"),
        (r"ssl_certificate /etc/letsencrypt/live/halles\.example\.org/fullchain\.pem;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key /etc/letsencrypt/live/halles\.example\.org/privkey\.pem;",
         f"ssl_certificate_key {key};"),
        (r"root /var/www/html;", f"root {prefix / 'www'};"),
    ]
    for pattern, replacement in replacements:
        site, count = re.subn(pattern, replacement, site, flags=re.MULTILINE)
        assert count >= 1, f"deploy/nginx/halles.conf no longer has {pattern!r}: update this test"
    (prefix / "www").mkdir(parents=True, exist_ok=True)
    temp = prefix / "tmp"
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True, exist_ok=True)
        (temp / name).chmod(0o777)  # nginx's workers drop root privileges to write there
    (prefix / "site.conf").write_text(site, encoding="utf-8")
    main = f"""
daemon off;
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / 'access.log'};
    client_body_temp_path {temp / 'body'};
    proxy_temp_path {temp / 'proxy'};
    fastcgi_temp_path {temp / 'fastcgi'};
    uwsgi_temp_path {temp / 'uwsgi'};
    scgi_temp_path {temp / 'scgi'};
    include {prefix / 'site.conf'};
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(main, encoding="utf-8")
    return path


@dataclass
class Stack:
    """Processes started by the test, stopped with signals at the end."""

    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    files: list = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed by kill_all
        self.files.append(log)
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=self.logs)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} stopped (exit {process.returncode}):\n{self.log(name)[-3000:]}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise AssertionError(f"{name} did not stop within {timeout} s after {sig!r}") from None
        return process.returncode

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self.files:
            log.close()


def halles(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "halles"), *args], env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"halles {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def wait_for(what: str, probe, stack: Stack, timeout: float = STARTUP_TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            value = probe()
            if value:
                return value
            last = value
        except (requests.RequestException, AssertionError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def peer_states(env: dict[str, str], actor: str) -> tuple[str, str]:
    """(they->us, us->them) for ``actor`` in `halles peer list`."""
    for line in halles(env, "peer", "list").stdout.splitlines():
        if line.startswith(actor + " "):
            match = re.search(r"they->us: (\S+)\s+us->them: (\S+)", line)
            if match:
                return match.group(1), match.group(2)
    return "-", "-"


def approve_when_requested(env: dict[str, str], actor: str) -> bool:
    result = halles(env, "peer", "approve", actor, check=False)
    return result.returncode == 0


@pytest.fixture
def stack_databases(pg_databases):
    nginx = nginx_binary()
    if nginx is None:
        missing("nginx", "the nginx binary is not installed (Debian package nginx)")
    if not TEST_DATABASE_URL:
        missing("postgres", "TEST_DATABASE_URL is not set")
    return nginx, pg_databases("halles_stack_a"), pg_databases("halles_stack_b")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_shipped_nginx_site_is_valid(tmp_path):
    nginx = nginx_binary()
    if nginx is None:
        missing("nginx", "the nginx binary is not installed (Debian package nginx)")
    ca = TestCA(tmp_path / "ca")
    certificate = ca.issue()
    prefix = tmp_path / "nginx"
    conf = nginx_config(prefix, tls_port=free_port(), http_port=free_port(), upstream_port=free_port(),
                        cert=certificate.cert, key=certificate.key)
    result = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_production_stack_federates_an_event_over_https(stack_databases, tmp_path):
    nginx, database_a, database_b = stack_databases
    ca = TestCA(tmp_path / "ca")
    certificate = ca.issue("halles-a")
    tls_port, http_port, gunicorn_port, port_b = (free_port() for _ in range(4))
    url_a, url_b = f"https://127.0.0.1:{tls_port}", f"http://127.0.0.1:{port_b}"

    base = {key: value for key, value in os.environ.items() if not key.startswith(("HALLES_", "DATABASE_URL"))}
    base.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        # Both nodes trust the test CA (A's public URL), as they would trust Let's Encrypt.
        "REQUESTS_CA_BUNDLE": str(ca.path),
        # The two nodes talk over 127.0.0.1.
        "HALLES_ALLOW_PRIVATE_ADDRESSES": "true",
        "HALLES_DELIVERY_BACKOFF_SECONDS": "0.5",
    })
    env_a = {**base, "HALLES_INSTANCE": str(tmp_path / "node-a"), "DATABASE_URL": _libpq(database_a),
             "HALLES_BEHIND_PROXY": "true", "HALLES_BIND": f"127.0.0.1:{gunicorn_port}", "HALLES_LOG_FORMAT": "json",
             "HALLES_WEB_WORKERS": "2"}
    env_b = {**base, "HALLES_INSTANCE": str(tmp_path / "node-b"), "DATABASE_URL": _libpq(database_b),
             "HALLES_BIND": f"127.0.0.1:{port_b}", "HALLES_WEB_WORKERS": "2"}

    halles(env_a, "init", "--name", "Les Halles Civiques", "--city", "Paris", "--url", url_a)
    halles(env_b, "init", "--name", "La Fabrique Commune", "--city", "Lyon", "--url", url_b)

    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(logs)
    gunicorn = [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
    try:
        stack.start("web-a", gunicorn, env_a)
        stack.start("worker-a", [str(BIN / "halles"), "worker"], env_a)
        stack.start("web-b", gunicorn, env_b)
        stack.start("worker-b", [str(BIN / "halles"), "worker"], env_b)
        prefix = tmp_path / "nginx"
        conf = nginx_config(prefix, tls_port=tls_port, http_port=http_port, upstream_port=gunicorn_port,
                            cert=certificate.cert, key=certificate.key)
        stack.start("nginx", [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")], base)

        https = requests.Session()
        https.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace the CA below
        https.verify = str(ca.path)

        def healthy() -> dict | None:
            response = https.get(f"{url_a}/healthz", timeout=5)
            return response.json() if response.status_code == 200 else None

        health = wait_for("A's /healthz through nginx", healthy, stack)
        assert health["status"] == "ok" and health["checks"]["worker"]["ok"] is True
        assert health["checks"]["database"]["ok"] is True
        wait_for("B's actor", lambda: requests.get(f"{url_b}/actor", timeout=5).status_code == 200, stack)

        # http on nginx only redirects to https.
        redirect = requests.get(f"http://127.0.0.1:{http_port}/api/v1/events", allow_redirects=False, timeout=5)
        assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://")

        # Peering both ways, as two admins would do it: a request attesting the charter, an approval.
        halles(env_b, "peer", "request", url_a)
        wait_for("B's request to reach A", lambda: approve_when_requested(env_a, f"{url_b}/actor"), stack)
        halles(env_a, "peer", "request", url_b)
        wait_for("A's request to reach B", lambda: approve_when_requested(env_b, f"{url_a}/actor"), stack)
        wait_for("both peerings accepted", lambda: peer_states(env_b, f"{url_a}/actor") == ("accepted", "accepted")
                 and peer_states(env_a, f"{url_b}/actor") == ("accepted", "accepted"), stack)

        # An event created over https on A, by an admin's API token.
        token = halles(env_a, "admin", "create", "admin@halles-civiques.example.org",
                       "--no-password").stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        response = https.post(f"{url_a}/api/v1/organisations", json={"name": "Démocratie Ouverte",
                                                                     "description": "Association membre"},
                              headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        org_id = response.json()["id"]
        charter = https.get(f"{url_a}/api/v1/charter", timeout=10).json()
        response = https.post(f"{url_a}/api/v1/charter/signatures",
                              json={"organisation_id": org_id, "sha256": charter["sha256"]}, headers=headers,
                              timeout=10)
        assert response.status_code in (200, 201), response.text
        response = https.post(f"{url_a}/api/v1/events", json={**EVENT, "organiser_ids": [org_id]}, headers=headers,
                              timeout=10)
        assert response.status_code == 201, response.text

        def federated() -> dict | None:
            listing = requests.get(f"{url_b}/api/v1/events", params={"scope": "network",
                                                                     "from": "2030-01-01T00:00:00Z"}, timeout=5)
            return next((item for item in listing.json()["items"] if item["title"] == EVENT["title"]), None)

        item = wait_for("the event to reach B", federated, stack)
        assert item["location"]["city"] == "Paris" and item["origin"]["actor"] == f"{url_a}/actor"

        # Security headers, through nginx, on the API and on the embeddable widget.
        api = https.get(f"{url_a}/api/v1/events", timeout=10)
        assert api.headers["Strict-Transport-Security"].startswith("max-age=")
        assert "frame-ancestors 'none'" in api.headers["Content-Security-Policy"]
        assert "default-src 'self'" in api.headers["Content-Security-Policy"]
        assert api.headers["X-Content-Type-Options"] == "nosniff"
        embed = https.get(f"{url_a}/embed", timeout=10)
        assert "frame-ancestors *" in embed.headers["Content-Security-Policy"]
        assert "X-Frame-Options" not in embed.headers
        page = https.get(f"{url_a}/login", timeout=10)
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        if "Set-Cookie" in page.headers:
            assert "Secure" in page.headers["Set-Cookie"]  # https public URL: cookies only over https

        health = https.get(f"{url_a}/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["checks"]["worker"]["ok"] is True

        # The operator's tools on the running stack.
        doctor = halles(env_a, "doctor", check=False)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert re.search(r"^OK\s+tls\s+certificate valid until", doctor.stdout, re.MULTILINE), doctor.stdout
        assert re.search(r"^OK\s+url\s+https://127\.0\.0\.1:\d+ answers as this node", doctor.stdout, re.MULTILINE)
        assert re.search(r"^OK\s+peers\s+all 1 peers answer", doctor.stdout, re.MULTILINE), doctor.stdout
        backup = halles(env_a, "backup", "--output", str(tmp_path / "backups"))
        assert "postgresql database" in backup.stdout
    finally:
        codes = {}
        try:
            # nginx stops gracefully on QUIT; gunicorn and the worker on TERM.
            if "nginx" in stack.processes:
                codes["nginx"] = stack.stop("nginx", signal.SIGQUIT)
            for name in ("web-a", "worker-a", "web-b", "worker-b"):
                if name in stack.processes:
                    codes[name] = stack.stop(name)
        finally:
            stack.kill_all()

    assert codes == {name: 0 for name in ("nginx", "web-a", "worker-a", "web-b", "worker-b")}, codes
    # JSON logs from gunicorn behind the proxy: one object per line, with the request's path.
    access = [json.loads(line) for line in stack.log("web-a").splitlines() if line.startswith("{")]
    assert any(entry.get("path") == "/api/v1/events" and entry.get("status") == 201 for entry in access)
    assert "Traceback" not in stack.log("worker-a") and "Traceback" not in stack.log("worker-b")
