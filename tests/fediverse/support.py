"""A stand-in for a Mastodon, Mobilizon or Gancio server on 127.0.0.1: it serves the actor documents
(and objects) of the fixtures under its own origin, signs activities with a test key and posts them to
a node's inbox, and records what the node delivers to it -- verifying each HTTP signature and
answering 401 to the signature flavours it does not accept (Mastodon before 4.5: draft-cavage only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from federation import keys
from federation.httpsig import sign_request, verify_request
from tests.support.smtp import free_port

FIXTURES = Path(__file__).parent / "fixtures"
#: The origin the fixtures of each platform were written with; replaced by the fake server's origin.
FIXTURE_ORIGINS = ("https://mobilizon.example", "https://gancio.example", "https://mastodon.example")
#: The node the fixtures address (a Follow's object, a cc).
FIXTURE_NODE_ACTOR = "https://halles.example/actor"
#: One RSA key for every fake server of a test run (generating 2048-bit keys is slow).
TEST_KEY = keys.generate_rsa()
TEST_KEY_PEM = keys.public_key_to_pem(TEST_KEY.public_key())


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    flavour: str | None
    verified: bool
    reason: str | None
    status: int

    @property
    def activity(self) -> dict[str, Any]:
        return json.loads(self.body)


class FakeServer:
    """One remote server. ``accept`` lists the signature flavours its inbox accepts."""

    def __init__(self, *, accept: tuple[str, ...] = ("rfc9421", "cavage")) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.accept = accept
        self.documents: dict[str, dict[str, Any]] = {}
        self.gone: set[str] = set()
        self.deliveries: list[Delivery] = []
        self.node_actors: dict[str, dict[str, Any]] = {}
        self.webfinger: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- documents -----------------------------------------------------------------------------

    def localize(self, data: Any, node_actor: str | None = None) -> Any:
        """A fixture moved to this server: its origin replaced by ours, the node's actor by the real one,
        and every public key by the test key (whose private half signs our requests)."""
        text = json.dumps(data)
        for origin in FIXTURE_ORIGINS:
            text = text.replace(origin, self.url)
        if node_actor:
            text = text.replace(FIXTURE_NODE_ACTOR, node_actor)
        localized = json.loads(text)
        public_key = localized.get("publicKey") if isinstance(localized, dict) else None
        if isinstance(public_key, dict):
            public_key["publicKeyPem"] = TEST_KEY_PEM
        return localized

    def fixture(self, name: str, node_actor: str | None = None) -> dict[str, Any]:
        return self.localize(load_fixture(name), node_actor)

    def serve(self, document: dict[str, Any], *, handle: str | None = None) -> str:
        """Serve a document at the path of its id; an actor can also be found by WebFinger."""
        path = urlsplit(document["id"]).path
        self.documents[path] = document
        self.gone.discard(path)
        if handle:
            self.webfinger[f"acct:{handle}@{self.host}"] = document["id"]
        return document["id"]

    def serve_at(self, path: str, document: dict[str, Any]) -> None:
        """Serve a document at a path other than its id's (a key document at its own URL)."""
        self.documents[path] = document

    def serve_fixture(self, name: str, *, handle: str | None = None) -> dict[str, Any]:
        document = self.fixture(name)
        self.serve(document, handle=handle)
        return document

    def delete(self, url: str) -> None:
        """The object is gone: its URL answers 410 from now on."""
        path = urlsplit(url).path
        self.documents.pop(path, None)
        self.gone.add(path)

    # --- sending -------------------------------------------------------------------------------

    def post(self, node: Any, activity: dict[str, Any], *, key_id: str, flavour: str = "cavage",
             tamper: bool = False) -> requests.Response:
        """Sign ``activity`` with the test key (as ``key_id``) and POST it to the node's inbox."""
        body = json.dumps(activity).encode()
        url = f"{node.url}/inbox"
        headers = {"Content-Type": "application/activity+json"}
        headers.update(sign_request("POST", url, headers, body, TEST_KEY, key_id, flavour=flavour, now=now()))
        if tamper:
            body = body.replace(b'"type": "', b'"type": "X', 1)
        return requests.post(url, data=body, headers=headers, timeout=10)

    def post_like_gancio(self, node: Any, activity: dict[str, Any], *, key_id: str) -> requests.Response:
        """Exactly what Gancio's ``signAndSend`` does (server/federation/helpers.js): draft-cavage over
        ``(request-target) host date digest`` with the host *without* its port, sent as the Host header."""
        body = json.dumps(activity).encode()
        inbox = urlsplit(f"{node.url}/inbox")
        date = format_datetime(now(), usegmt=True)
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        signed = f"(request-target): post {inbox.path}\nhost: {inbox.hostname}\ndate: {date}\ndigest: SHA-256={digest}"
        signature = base64.b64encode(TEST_KEY.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
        headers = {
            "Host": inbox.hostname or "",
            "Date": date,
            "Signature": f'keyId="{key_id}",algorithm="rsa-sha256",headers="(request-target) host date digest",'
                         f'signature="{signature}"',
            "Digest": f"SHA-256={digest}",
            "Content-Type": "application/activity+json",
            "Accept": "application/activity+json",
        }
        return requests.post(f"{node.url}/inbox", data=body, headers=headers, timeout=10)

    # --- receiving -----------------------------------------------------------------------------

    def received(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Activities the node delivered that this server accepted (in order)."""
        with self._lock:
            accepted = [d for d in self.deliveries if d.status == 202]
        return [d.activity for d in accepted if kind is None or d.activity.get("type") == kind]

    def attempts(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def _resolve(self, key_id: str, refresh: bool = False) -> keys.KeyRecord | None:
        actor_url = key_id.split("#", 1)[0]
        document = self.node_actors.get(actor_url) if not refresh else None
        if document is None:
            response = requests.get(actor_url, headers={"Accept": "application/activity+json"}, timeout=10)
            if response.status_code != 200:
                return None
            document = self.node_actors[actor_url] = response.json()
        public_key = document.get("publicKey") or {}
        if public_key.get("id") != key_id:
            return None
        return keys.KeyRecord(key_id, keys.load_public_key(public_key["publicKeyPem"]), public_key["owner"])

    @Request.application
    def _app(self, request: Request) -> Response:
        path = request.path
        if request.method == "GET" and path == "/.well-known/webfinger":
            target = self.webfinger.get(request.args.get("resource", ""))
            if target is None:
                return Response("unknown account", status=404)
            jrd = {"subject": request.args["resource"],
                   "links": [{"rel": "self", "type": "application/activity+json", "href": target}]}
            return Response(json.dumps(jrd), mimetype="application/jrd+json")
        if request.method == "GET":
            if path in self.gone:
                return Response(json.dumps({"error": "Gone"}), status=410, mimetype="application/json")
            if path in self.documents:
                return Response(json.dumps(self.documents[path]), mimetype="application/activity+json")
            return Response("not found", status=404)
        if request.method == "POST":
            body = request.get_data()
            headers = dict(request.headers)
            result = verify_request("POST", self.url + request.full_path.rstrip("?"), headers, body, self._resolve,
                                    now=now())
            status = 202 if result.ok and result.flavour in self.accept else 401
            reason = result.reason if not result.ok else (None if status == 202 else f"{result.flavour} refused")
            with self._lock:
                self.deliveries.append(Delivery(path, headers, body, result.flavour, result.ok, reason, status))
            return Response(reason or "", status=status)
        return Response(status=405)

