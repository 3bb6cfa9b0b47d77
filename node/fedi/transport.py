"""Signed HTTP requests to other servers, with the double knock: RFC 9421 first, draft-cavage
``rsa-sha256`` when the server refuses, and the flavour that worked remembered per server."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from sqlalchemy import select

from federation import httpsig
from federation.errors import FetchError
from federation.fetch import check_url_allowed
from node.extensions import db
from node.fedi.http import allow_private, deadline, resolver, session
from node.fedi.identity import load_identity
from node.fedi.keystore import domain_of
from node.fedi.models import RemoteServer
from node.fedi.outbox import now_aware

FLAVOURS = ("rfc9421", "cavage")
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10
#: A response that trickles in (one byte per second) is cut off after this many seconds in total.
TOTAL_DEADLINE = 20
MAX_RESPONSE_BYTES = 1_000_000


@dataclass
class SendResult:
    status: int | None
    flavour: str | None
    error: str | None = None
    #: Set when the double knock found that this server accepts another flavour than we thought.
    learned: str | None = None
    #: Nothing was sent because the address is refused for good (the safe-fetch policy: a private,
    #: loopback or link-local address, a bad scheme): retrying cannot help.
    refused: bool = False
    #: Seconds the server asked us to wait (``Retry-After`` on a 429 or 503), when it said.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def server_flavour(domain: str) -> str | None:
    return db.session.scalar(select(RemoteServer.signature_flavour).where(RemoteServer.domain == domain))


def remember_flavour(domain: str, flavour: str) -> None:
    """Store what a server accepted, in the caller's transaction (no savepoint: on SQLite a
    savepoint that reads then writes fails at once when another writer committed meanwhile)."""
    server = db.session.scalar(select(RemoteServer).where(RemoteServer.domain == domain))
    if server is None:
        server = RemoteServer(domain=domain)
        db.session.add(server)
    server.signature_flavour = flavour


def _signing_key(flavour: str):
    identity = load_identity()
    # Mastodon and most servers only know RSA; RFC 9421 peers get RSA too unless they asked for
    # Ed25519 — RSA verifies everywhere, and the Ed25519 key already signs every object (proofs).
    return identity.rsa_key, identity.rsa_key_id


def _request(method: str, url: str, body: bytes | None, flavour: str, accept: str | None,
             read_answer: bool = False) -> requests.Response:
    key, key_id = _signing_key(flavour)
    headers: dict[str, str] = {}
    if body is not None:
        headers["Content-Type"] = "application/activity+json"
    if accept:
        headers["Accept"] = accept
    headers.update(httpsig.sign_request(method, url, headers, body, key, key_id, flavour=flavour, now=now_aware()))
    # The deadline covers the whole exchange: a server trickling its status line, headers or body
    # one byte at a time is cut off (read timeouts alone only bound the gap between two bytes).
    with deadline(TOTAL_DEADLINE) as state:
        try:
            response = session().request(
                method, url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), stream=True,
                allow_redirects=False,
            )
            if method == "POST" and response.ok and not read_answer:
                if response.headers.get("Content-Length", "").strip() == "0":
                    # An empty answer (ours, Mastodon's): reading it waits for nothing and hands the
                    # connection back to the pool, so the next delivery to this server reuses it.
                    _read_with_deadline(response)
                    return response
                # An inbox's answer body says nothing we need: do not wait for a server that trickles it.
                response.close()
                response._content = b""  # noqa: SLF001
                return response
            _read_with_deadline(response)
        except requests.RequestException as exc:
            if state.expired.is_set():
                raise requests.Timeout(f"cut off after {TOTAL_DEADLINE} s: {url} answers too slowly") from exc
            raise
    return response


def _read_with_deadline(response: requests.Response) -> None:
    started = time.monotonic()
    chunks = []
    size = 0
    try:
        for chunk in response.iter_content(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES or time.monotonic() - started > TOTAL_DEADLINE:
                break
    finally:
        response.close()
    response._content = b"".join(chunks)  # noqa: SLF001 - keep .json()/.text usable after streaming


def signed_send(method: str, url: str, body: bytes | None = None, *, accept: str | None = None,
                preferred: str | None = None, read_answer: bool = False,
                ) -> tuple[requests.Response | None, SendResult]:
    """Send a signed request; on 401/403 knock again with the other flavour once. ``preferred`` is the
    flavour the caller already looked up for this server (delivery threads then need no database).
    The body of a successful POST is dropped unread unless ``read_answer`` (a batch's answer)."""
    try:
        check_url_allowed(url, allow_private=allow_private(), resolver=resolver())
    except FetchError as exc:
        # A name that does not resolve now may resolve later (DNS outage): that one is retried.
        # Every other refusal is about the address itself and stays true on the next attempt.
        refused = not exc.reason.startswith("cannot resolve")
        return None, SendResult(None, None, f"refused before sending: {exc}", refused=refused)
    domain = domain_of(url)
    preferred = preferred or server_flavour(domain) or "rfc9421"
    order = [preferred] + [f for f in FLAVOURS if f != preferred]
    response: requests.Response | None = None
    for attempt, flavour in enumerate(order):
        try:
            response = _request(method, url, body, flavour, accept, read_answer)
        except requests.RequestException as exc:
            return None, SendResult(None, None, f"{type(exc).__name__}: {exc}")
        if response.status_code in (401, 403) and attempt == 0:
            continue
        # The caller stores the flavour that worked (see delivery._record); sending writes nothing.
        learned = flavour if response.status_code < 400 and flavour != preferred else None
        return response, SendResult(response.status_code, flavour, None if response.ok else _error_text(response),
                                    learned=learned, retry_after=_retry_after(response))
    assert response is not None
    return response, SendResult(response.status_code, None, _error_text(response))


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` of a 429 or 503 in seconds (delta-seconds or an HTTP date), else None."""
    if response.status_code not in (429, 503):
        return None
    raw = (response.headers.get("Retry-After") or "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now_aware()).total_seconds())


def _error_text(response: requests.Response) -> str:
    text = response.text[:500] if response.content else ""
    return f"HTTP {response.status_code} {text}".strip()


def post_activity(inbox: str, activity: dict[str, Any] | bytes, *, preferred: str | None = None) -> SendResult:
    """POST an activity (a dict, or its JSON bytes when the caller serialised it once for many inboxes)."""
    body = activity if isinstance(activity, bytes) else json.dumps(activity, ensure_ascii=False,
                                                                    separators=(",", ":")).encode()
    _response, result = signed_send("POST", inbox, body, preferred=preferred)
    return result


def post_batch(inbox: str, body: bytes, *, preferred: str | None = None) -> tuple[SendResult, Any]:
    """POST a batch of activities (the JSON bytes of its ``Announce``): the outcome of the request,
    and the JSON of its answer when it succeeded (None otherwise, or when the answer is not JSON).
    The answer is read within ``TOTAL_DEADLINE`` and ``MAX_RESPONSE_BYTES``."""
    response, result = signed_send("POST", inbox, body, preferred=preferred, read_answer=True)
    if response is None or not result.ok:
        return result, None
    try:
        return result, response.json()
    except ValueError:
        return result, None


def get_signed_json(url: str) -> dict[str, Any]:
    """A signed GET (authorized fetch): peers show their network-scoped outbox entries to peers."""
    response, result = signed_send("GET", url, accept="application/activity+json")
    if response is None or not result.ok:
        raise httpsig_error(result.error or "request failed")
    try:
        data = response.json()
    except ValueError:
        raise httpsig_error(f"{url} did not answer JSON") from None
    if not isinstance(data, dict):
        raise httpsig_error(f"{url} did not answer a JSON object")
    return data


def httpsig_error(message: str) -> Exception:
    return FetchError(message)
