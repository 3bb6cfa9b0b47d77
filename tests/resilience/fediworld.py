"""A node that does NOT allow private addresses, facing remote servers that are "public" by name.

``remote.test`` and ``other.test`` resolve (through the node's ``HALLES_RESOLVER``) to public
addresses, and the test maps connections to those names onto one local HTTP server; every other name
resolves to what an attacker would pick (private, loopback, link-local, ULA, IPv4-mapped, CGNAT).
Every TCP connection the process opens is recorded, so a test can prove that none went where it
must not."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3.util.connection

from federation import keys
from federation.httpsig import sign_request
from federation.proofs import sign_document

PUBLIC_NAMES = {"remote.test": "93.184.216.34", "other.test": "93.184.216.35"}
HOSTILE_NAMES = {
    "private.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["93.184.216.36", "192.168.1.1"],
    "ula.test": ["fd00::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "cgnat.test": ["100.64.0.1"],
    "nat64.test": ["64:ff9b::a00:1"],
}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def fake_resolver(host: str, port: int) -> list[str]:
    if host in PUBLIC_NAMES:
        return [PUBLIC_NAMES[host]]
    if host in HOSTILE_NAMES:
        return HOSTILE_NAMES[host]
    # Numeric spellings ("2130706433", "127.1") and /etc/hosts names ("localhost"): what the system
    # makes of them. Anything else fails: the tests never reach the real DNS.
    return [info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)]


class Remote:
    """One remote actor (``http://<host>/actor``) with its keys."""

    def __init__(self, host: str, *, inbox: str | None = None) -> None:
        self.host = host
        self.base = f"http://{host}"
        self.actor = f"{self.base}/actor"
        self.rsa = keys.generate_rsa()
        self.ed25519 = keys.generate_ed25519()
        self.key_id = f"{self.actor}#main-key"
        self.ed_key_id = f"{self.actor}#ed25519-key"
        self.inbox = inbox or f"{self.base}/inbox"

    def document(self) -> dict[str, Any]:
        return {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1",
                         "https://www.w3.org/ns/cid/v1"],
            "id": self.actor,
            "type": "Organization",
            "name": f"Tiers-lieu {self.host}",
            "preferredUsername": "agenda",
            "inbox": self.inbox,
            "outbox": f"{self.base}/outbox",
            "publicKey": {"id": self.key_id, "owner": self.actor,
                          "publicKeyPem": keys.public_key_to_pem(self.rsa.public_key())},
            "assertionMethod": [{"id": self.ed_key_id, "type": "Multikey", "controller": self.actor,
                                 "publicKeyMultibase": keys.ed25519_to_multibase(self.ed25519.public_key())}],
        }

    def activity(self, kind: str = "Create", obj: Any = None, **fields) -> dict[str, Any]:
        activity = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{self.base}/activities/{uuid.uuid4()}",
                    "type": kind, "actor": self.actor}
        if obj is not None:
            activity["object"] = obj
        activity.update(fields)
        return activity

    def event(self, **fields) -> dict[str, Any]:
        obj = {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v2"],
            "id": f"{self.base}/events/{uuid.uuid4()}",
            "type": "Event",
            "attributedTo": self.actor,
            "name": "Atelier",
            "startTime": "2031-03-01T18:00:00+01:00",
            "endTime": "2031-03-01T20:00:00+01:00",
            "updated": "2031-01-01T00:00:00Z",
        }
        obj.update(fields)
        return obj

    def prove(self, document: dict[str, Any]) -> dict[str, Any]:
        return sign_document(document, self.ed25519, self.ed_key_id, created=now())

    def signed_headers(self, url: str, body: bytes, *, key_id: str | None = None, when: datetime | None = None,
                       content_type: str = "application/activity+json", flavour: str = "rfc9421") -> dict[str, str]:
        headers = {"Content-Type": content_type}
        headers.update(sign_request("POST", url, headers, body, self.rsa, key_id or self.key_id,
                                    flavour=flavour, now=when or now()))
        return headers

    def post(self, node_url: str, activity: Any, *, key_id: str | None = None, when: datetime | None = None,
             body: bytes | None = None, path: str = "/inbox", content_type: str = "application/activity+json",
             timeout: float = 30) -> requests.Response:
        raw = body if body is not None else json.dumps(activity).encode()
        url = f"{node_url}{path}"
        headers = self.signed_headers(url, raw, key_id=key_id, when=when, content_type=content_type)
        return requests.post(url, data=raw, headers=headers, timeout=timeout)


class RemoteServers:
    """The local HTTP server behind every "public" name; routes by Host header."""

    def __init__(self) -> None:
        self.remotes: dict[str, Remote] = {}
        self.requests: list[tuple[str, str]] = []
        self.documents: dict[tuple[str, str], dict[str, Any]] = {}
        servers = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                host = (self.headers.get("Host") or "").split(":")[0]
                servers.requests.append((host, self.path))
                parts = urlsplit(self.path)
                remote = servers.remotes.get(host)
                if parts.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                    self.end_headers()
                    return
                if parts.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/activity+json")
                    self.send_header("Content-Length", "2000")
                    self.end_headers()
                    for _ in range(2000):
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.5)
                    return
                if parts.path == "/huge":
                    payload = json.dumps({"id": f"http://{host}/huge", "padding": "x" * 2_000_000}).encode()
                    return self._send(200, payload, "application/activity+json")
                if parts.path == "/html":
                    return self._send(200, b"<html>not an actor</html>", "text/html")
                if (host, parts.path) in servers.documents:
                    return self._send(200, json.dumps(servers.documents[(host, parts.path)]).encode(),
                                      "application/activity+json")
                if remote is not None and parts.path == "/actor":
                    return self._send(200, json.dumps(remote.document()).encode(), "application/activity+json")
                self._send(404, b"{}", "application/json")

            def do_POST(self):  # noqa: N802
                host = (self.headers.get("Host") or "").split(":")[0]
                servers.requests.append((host, self.path))
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(202, b"", "application/json")

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, remote: Remote) -> Remote:
        self.remotes[remote.host] = remote
        return remote

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ConnectionLog:
    """Patches urllib3's ``create_connection``: records every (host, port) the process connects to
    and sends the public test names to the local server."""

    def __init__(self, servers: RemoteServers) -> None:
        self.servers = servers
        self.attempts: list[tuple[str, int]] = []
        self._original = urllib3.util.connection.create_connection

    def create_connection(self, address, *args, **kwargs):
        host, port = address
        self.attempts.append((host, port))
        if host in PUBLIC_NAMES:
            address = ("127.0.0.1", self.servers.port)
        return self._original(address, *args, **kwargs)

    def install(self, monkeypatch) -> ConnectionLog:
        monkeypatch.setattr(urllib3.util.connection, "create_connection", self.create_connection)
        return self

    def hosts(self, *, besides: set[tuple[str, int]]) -> set[tuple[str, int]]:
        return {attempt for attempt in self.attempts if attempt not in besides and attempt[0] not in PUBLIC_NAMES}


def old(hours: float) -> datetime:
    return now() - timedelta(hours=hours)
