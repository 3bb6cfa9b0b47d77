"""Nodes as real processes, so that they can be killed with SIGKILL: ``halles init`` makes the
instance, gunicorn serves it, ``halles worker`` runs its queue, each in its own process group.
Databases: a SQLite file in the instance, or a PostgreSQL database from the test factory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.smtp import free_port

STARTUP_TIMEOUT = 60


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


class ProcessNode:
    def __init__(self, folder: Path, name: str, city: str, *, database_url: str | None = None,
                 web_workers: int = 2, **settings: str) -> None:
        self.folder = folder
        self.instance = folder / "instance"
        self.name = name
        self.city = city
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.web_workers = web_workers
        self.env = dict(os.environ)
        self.env.pop("DATABASE_URL", None)
        self.env.update({
            "HALLES_INSTANCE": str(self.instance),
            "HALLES_ALLOW_PRIVATE_ADDRESSES": "true",
            "HALLES_DELIVERY_BACKOFF_SECONDS": "0.2",
            "HALLES_DELIVERY_MAX_ATTEMPTS": "20",
            "HALLES_SYNC_INTERVAL_SECONDS": "3",
            "HALLES_RATE_LIMIT_INBOX": "off",
            "HALLES_RATE_LIMIT_REGISTRATIONS": "off",
            "HALLES_RATE_LIMIT_LOGIN": "off",
            "PYTHONUNBUFFERED": "1",
        })
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.env.update(settings)
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.log = open(folder / "node.log", "ab")  # noqa: SIM115 - closed in stop()
        self.token = ""

    # --- commands ------------------------------------------------------------------------------------

    def halles(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([_bin("halles"), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"halles {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def init(self) -> ProcessNode:
        self.halles("init", "--name", self.name, "--city", self.city, "--url", self.url)
        result = self.halles("admin", "create", f"admin@{self.port}.test", "--no-password")
        self.token = result.stdout.strip().splitlines()[-1]
        return self

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def actor(self) -> str:
        return f"{self.url}/actor"

    # --- processes -----------------------------------------------------------------------------------

    def start_web(self) -> None:
        self.web = subprocess.Popen(
            [_bin("gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.web_workers),
             "--threads", "4", "--graceful-timeout", "5", "node.wsgi:app"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready()

    def start_worker(self) -> None:
        self.worker = subprocess.Popen([_bin("halles"), "worker"], env=self.env, stdout=self.log,
                                       stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> ProcessNode:
        self.start_web()
        self.start_worker()
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web is not None and self.web.poll() is not None:
                raise AssertionError(f"gunicorn for {self.name} exited: see {self.folder / 'node.log'}")
            try:
                if requests.get(f"{self.url}/actor", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.url} did not answer within {timeout} s")

    def web_worker_pids(self) -> list[int]:
        """The gunicorn workers (children of the master)."""
        assert self.web is not None
        children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def kill_worker(self) -> None:
        """SIGKILL ``halles worker``: no cleanup, no rollback, mid-transaction."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=30)
        self.worker = None

    def kill_web(self) -> None:
        """SIGKILL gunicorn, master and workers at once: the node's web side dies mid-request."""
        assert self.web is not None
        os.killpg(self.web.pid, signal.SIGKILL)
        self.web.wait(timeout=30)
        self.web = None

    def kill_one_web_worker(self) -> int:
        """SIGKILL one gunicorn worker; the master starts another."""
        pids = self.web_worker_pids()
        assert pids, "no gunicorn worker found"
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in (self.web, self.worker):
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        self.web = self.worker = None
        self.log.close()

    # --- API -----------------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201, 202, 204),
            timeout: float = 30) -> Any:
        response = requests.request(method, f"{self.url}{path}", json=body, headers=self.headers, timeout=timeout)
        assert response.status_code in ok, (method, path, response.status_code, response.text[:500])
        return response.json() if response.content else None

    def listing(self, scope: str) -> list[dict]:
        """Every item of GET /api/v1/events?scope=..., all pages."""
        items: list[dict] = []
        params: dict[str, Any] = {"scope": scope, "limit": 100, "from": "2000-01-01T00:00:00Z"}
        for _ in range(1000):
            response = requests.get(f"{self.url}/api/v1/events", params=params, headers=self.headers, timeout=30)
            assert response.status_code == 200, response.text[:300]
            page = response.json()
            items.extend(page["items"])
            if not page.get("next"):
                return items
            params["cursor"] = page["next"]
        raise AssertionError("the listing never ended")

    def database_url(self) -> str:
        return self.env.get("DATABASE_URL") or f"sqlite:///{self.instance / 'halles.db'}"

    def sql(self, statement: str, **params: Any) -> list[tuple]:
        from sqlalchemy import create_engine, text

        url = self.database_url()
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(statement), params)]
        finally:
            engine.dispose()


def signed_organisation(node: ProcessNode, name: str) -> int:
    org = node.api("POST", "/api/v1/organisations", {"name": name, "description": "Association membre"})
    charter = node.api("GET", "/api/v1/charter")
    node.api("POST", "/api/v1/charter/signatures", {"organisation_id": org["id"], "sha256": charter["sha256"]})
    return org["id"]


def peer(requester: ProcessNode, target: ProcessNode, timeout: float = 60) -> None:
    """``requester`` asks ``target`` to peer (charter attestation) and ``target``'s admin approves once
    the request has arrived (the requester's worker delivers it)."""
    requester.halles("peer", "request", target.url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.halles("peer", "approve", requester.actor, check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{requester.name}'s peering request never reached {target.name}")


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)[:3000]
