"""Receiving activities: verify -> store -> 202. Nothing is applied here (the worker does it), and
nothing unverified is stored: a bad signature, a forged origin or a tampered proof is a 401 whose
``detail`` names the reason."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from federation.fetch import check_url_allowed
from federation.httpsig import verify_request
from federation.proofs import verify_document
from federation.urls import same_origin
from node.common.errors import Forbidden, HallesError, Unauthorized
from node.extensions import db
from node.fedi import compat
from node.fedi.handlers import actor_id, object_id
from node.fedi.http import allow_private, resolver
from node.fedi.keystore import domain_of, key_problem, resolve_key
from node.fedi.models import InboxItem, RemoteServer
from node.fedi.outbox import now_aware

ACCEPTED_TYPES = ("application/activity+json", "application/ld+json", "application/json")
#: Inbox bodies are small; a festival announcement is a few KB.
MAX_INBOX_BYTES = 256 * 1024
MAX_DEPTH = 16
#: Ids are stored in 500-character columns; a longer one is refused rather than failing in the database.
MAX_ID_LENGTH = 500


class BadActivity(HallesError):
    status = 400
    title = "Bad activity"


class UnsupportedMediaType(HallesError):
    status = 415
    title = "Unsupported media type"


class TooLarge(HallesError):
    status = 413
    title = "Payload too large"


@dataclass
class Received:
    item: InboxItem | None
    duplicate: bool


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(f"send activities as application/activity+json, not {mimetype or 'nothing'}")
    if len(body) > MAX_INBOX_BYTES:
        raise TooLarge(f"activities larger than {MAX_INBOX_BYTES} bytes are refused")
    try:
        # NaN and Infinity are not JSON (RFC 8259): Python would accept them, PostgreSQL's json would not.
        activity = json.loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise BadActivity("the body is not valid JSON") from None
    if not isinstance(activity, dict):
        raise BadActivity("the body must be a JSON object")
    if _depth(activity) > MAX_DEPTH:
        raise BadActivity(f"the activity is nested deeper than {MAX_DEPTH} levels")
    for field in ("id", "type", "actor"):
        if field not in activity:
            raise BadActivity(f"the activity has no {field}")
    if not isinstance(activity["id"], str) or urlsplit(activity["id"]).scheme not in ("http", "https"):
        raise BadActivity("the activity id must be an http(s) URL")
    if len(activity["id"]) > MAX_ID_LENGTH:
        raise BadActivity(f"the activity id is longer than {MAX_ID_LENGTH} characters")
    if not isinstance(activity["type"], str):
        raise BadActivity("the activity type must be a string")
    if actor_id(activity) is None:
        raise BadActivity("the activity actor must be a URL")
    return activity


def is_blocked(domain: str) -> bool:
    return bool(db.session.scalar(select(RemoteServer.blocked).where(RemoteServer.domain == domain)))


def blocked_among(domains: set[str]) -> str | None:
    """One of ``domains`` that this node blocks, if any (one query for all of them)."""
    wanted = sorted(domain for domain in domains if domain)
    if not wanted:
        return None
    return db.session.scalar(
        select(RemoteServer.domain).where(RemoteServer.domain.in_(wanted), RemoteServer.blocked.is_(True)).limit(1)
    )


def authenticate(activity: dict[str, Any], signer: str) -> None:
    """The signer must be the activity's actor, or the activity must carry the actor's own proof
    (an activity forwarded by a peer that re-shared the object)."""
    actor = actor_id(activity)
    assert actor is not None
    if signer != actor:
        if "proof" not in activity:
            raise Unauthorized(f"activity actor {actor} and signing key owner {signer} disagree")
        result = verify_document(compat.detach_ld_signature(activity), resolve_key, now=now_aware(),
                                 expected_origin=actor)
        if not result.ok:
            raise Unauthorized(f"forwarded activity: {result.reason}")
    elif "proof" in activity:
        result = verify_document(compat.detach_ld_signature(activity), resolve_key, now=now_aware(),
                                 expected_origin=actor)
        if not result.ok:
            raise Unauthorized(f"activity proof: {result.reason}")
    _check_object(activity, actor)


def _check_object(activity: dict[str, Any], actor: str) -> None:
    kind = activity["type"]
    obj = activity.get("object")
    target = object_id(obj)
    if kind in ("Create", "Update", "Delete") and target is not None and not same_origin(target, actor):
        raise Unauthorized(f"object {target} claims another origin than its actor {actor}")
    if kind in ("Create", "Update") and isinstance(obj, dict):
        attributed = object_id(obj.get("attributedTo"))
        if attributed is not None and not same_origin(attributed, actor):
            raise Unauthorized(f"object attributed to {attributed} was sent by {actor}")
        if "proof" in obj:
            result = verify_document(obj, resolve_key, now=now_aware(), expected_origin=target)
            if not result.ok:
                raise Unauthorized(f"object proof: {result.reason}")
    if kind == "Announce":
        if isinstance(obj, dict):
            origin = object_id(obj.get("attributedTo")) or target
            if "proof" not in obj and target is not None and same_origin(target, actor):
                # A server announcing its own object (a Mobilizon group relaying its event): the signed
                # request vouches for it, and the worker fetches it again from its URL anyway.
                return
            if origin is None or "proof" not in obj:
                raise Unauthorized("an embedded re-shared object must carry its origin's proof")
            if target is None or not same_origin(target, origin):
                raise Unauthorized(f"re-shared object {target} claims another origin than {origin}")
            result = verify_document(obj, resolve_key, now=now_aware(), expected_origin=origin)
            if not result.ok:
                raise Unauthorized(f"re-shared object proof: {result.reason}")
        elif isinstance(obj, str):
            # We will fetch it from its own origin: refuse now what we would never be allowed to fetch.
            try:
                check_url_allowed(obj, allow_private=allow_private(), resolver=resolver())
            except Exception as exc:  # noqa: BLE001 - any refusal is a 400 with its reason
                raise BadActivity(f"the announced object URL is refused: {exc}") from None


def receive(method: str, url: str, headers: Any, body: bytes) -> Received:
    activity = parse_body(headers.get("Content-Type"), body)
    actor = actor_id(activity)
    assert actor is not None
    checked = {domain_of(actor), _key_domain(headers)}
    blocked = blocked_among(checked)
    if blocked:
        raise Forbidden(f"{blocked} is blocked by this node")
    stored = db.session.scalar(select(InboxItem.activity).where(InboxItem.activity_id == activity["id"]))
    key = compat.inbox_key(activity, stored)
    # Nothing stored under the activity's id means the key (that id) is new: no second query then.
    if stored is not None and (
        key == activity["id"]
        or db.session.scalar(select(InboxItem.id).where(InboxItem.activity_id == key)) is not None
    ):
        return Received(None, True)
    result = verify_request(method, url, headers, body, resolve_key, now=now_aware())
    if not result.ok and result.reason == "unknown key" and compat.is_self_delete(activity):
        return Received(None, False)  # an account we never knew deleted itself: nothing to forget
    if not result.ok:
        problem = key_problem() if result.reason == "unknown key" else None
        raise Unauthorized(f"HTTP signature: {result.reason}" + (f" ({problem})" if problem else ""))
    if result.owner and domain_of(result.owner) not in checked and is_blocked(domain_of(result.owner)):
        raise Forbidden(f"{domain_of(result.owner)} is blocked by this node")
    authenticate(activity, result.owner or "")
    item = InboxItem(
        activity_id=key, activity_type=activity["type"][:40], signer=result.owner or "", activity=activity
    )
    db.session.add(item)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # the same activity arrived twice at once: the other copy is stored
        return Received(None, True)
    return Received(item, False)


def store_verified(activity: dict[str, Any], signer: str) -> bool:
    """Queue an activity obtained by catch-up (its proof was checked). False when already known."""
    if db.session.scalar(select(InboxItem.id).where(InboxItem.activity_id == activity["id"])) is not None:
        return False
    db.session.add(
        InboxItem(activity_id=activity["id"], activity_type=str(activity.get("type"))[:40], signer=signer,
                  activity=activity)
    )
    return True


def _key_domain(headers: Any) -> str:
    signature = headers.get("Signature-Input") or headers.get("Signature") or ""
    marker = 'keyid="' if 'keyid="' in signature else 'keyId="'
    if marker not in signature:
        return ""
    key_id = signature.split(marker, 1)[1].split('"', 1)[0]
    return domain_of(key_id)


def request_url(req: Any) -> str:
    """The URL the client addressed: the node's public origin + the path (proxies change the rest)."""
    base = current_app.config["HALLES_URL"]
    path = req.full_path if req.query_string else req.path
    return base + path
