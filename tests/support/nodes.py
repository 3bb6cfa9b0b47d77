"""Several real nodes in one test: each with its own database and instance folder, served over
HTTP on 127.0.0.1 by a threaded WSGI server, each with its own worker driven by the test."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from werkzeug.serving import make_server

from tests.support.smtp import free_port


class Node:
    def __init__(self, make_app, *, name: str, city: str, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = {
            "HALLES_URL": self.url,
            "HALLES_NAME": name,
            "HALLES_CITY": city,
            "HALLES_ALLOW_PRIVATE_ADDRESSES": True,
            "HALLES_DELIVERY_BACKOFF_SECONDS": 0.05,
            "HALLES_DELIVERY_MAX_ATTEMPTS": 4,
            "HALLES_SYNC_INTERVAL_SECONDS": 3600,
        }
        settings.update(config)
        self.app = make_app(**settings)
        self.name = name
        self.city = city
        self.server = None
        self.thread: threading.Thread | None = None
        self.client = self.app.test_client()
        self.admin_headers = self._admin()
        self.publish_charter("1.0", f"Charte du réseau des tiers-lieux — {name}\n")

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Node:
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def actor(self) -> str:
        return f"{self.url}/actor"

    # --- data -----------------------------------------------------------------------------------

    def _admin(self) -> dict[str, str]:
        from node.common.auth import TOKEN_PREFIX, hash_secret, new_secret
        from node.extensions import db
        from node.members.models import ApiToken, User

        with self.app.app_context():
            user = User(email=f"admin@{self.port}.example", name="Admin", role="admin")
            db.session.add(user)
            db.session.flush()
            secret = new_secret(TOKEN_PREFIX)
            db.session.add(ApiToken(user_id=user.id, token_hash=hash_secret(secret), label="tests"))
            db.session.commit()
        return {"Authorization": f"Bearer {secret}"}

    def publish_charter(self, version: str, body: str) -> None:
        from node.charters.models import CharterVersion
        from node.extensions import db

        with self.app.app_context():
            for current in db.session.query(CharterVersion).filter_by(is_current=True):
                current.is_current = False
            db.session.add(CharterVersion(version=version, title="Charte", body=body,
                                          sha256=hashlib.sha256(body.encode()).hexdigest(), is_current=True))
            db.session.commit()

    def cli(self, *args: str):
        result = self.app.test_cli_runner().invoke(args=list(args))
        return result

    def query(self, fn):
        """Run fn() inside this node's app context and return its result."""
        with self.app.app_context():
            return fn()

    # --- worker ---------------------------------------------------------------------------------

    def work_once(self) -> int:
        from node import worker

        return worker.run_once(self.app)


def settle(nodes: list[Node], *, timeout: float = 30.0, quiet_rounds: int = 2) -> None:
    """Run every node's worker until nothing moves anywhere for ``quiet_rounds`` rounds."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        done = sum(node.work_once() for node in nodes if node.server is not None)
        quiet = quiet + 1 if done == 0 else 0
        if quiet >= quiet_rounds:
            return
        if done == 0:
            time.sleep(0.05)
    raise AssertionError("the network did not settle in time")
