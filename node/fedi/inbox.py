"""Receiving activities: verify -> store -> 202. Nothing is applied here (the worker does it), and
nothing unverified is stored: a bad signature, a forged origin or a tampered proof is a 401 whose
``detail`` names the reason.

The order of the checks matters: the domain blocks first (nothing is fetched for a blocked server),
then the HTTP signature and the proofs, and only then is the activity id looked at (a duplicate is
answered as such to a sender that proved who it is, never to anyone who asks). Storing
(node/fedi/inbox_store.py) is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` statement committed
at once: the unique activity id decides what is a duplicate, even for two copies arriving at the same
moment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from json.decoder import scanstring
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from federation.fetch import check_url_allowed
from federation.httpsig import verify_request
from federation.jcs import SharedCanonicalizer
from federation.proofs import verify_document
from federation.urls import same_origin
from node.common import jsontext
from node.common.errors import (
    BadRequest,
    Forbidden,
    HallesError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from node.extensions import db
from node.fedi import compat
from node.fedi.handlers import actor_id, object_id
from node.fedi.http import allow_private, resolver
from node.fedi.inbox_store import BatchStore, Received, store
from node.fedi.keystore import KeysOfOneRequest, domain_of, key_problem, resolve_key
from node.fedi.models import RemoteServer
from node.fedi.outbox import now_aware

ACCEPTED_TYPES = ("application/activity+json", "application/ld+json", "application/json")
#: Inbox bodies are small; a festival announcement is a few KB.
MAX_INBOX_BYTES = 256 * 1024
#: A batch (``is_batch``): at most this many activities, each within MAX_INBOX_BYTES, in this many bytes.
MAX_BATCH_ITEMS = 100
MAX_BATCH_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 16
#: Ids are stored in 500-character columns; a longer one is refused rather than failing in the database.
MAX_ID_LENGTH = 500
#: The blocked domains are read once per this many seconds per process. A block set in this process
#: (admin page, ``halles peer block`` in the same app) is seen at once; one set by another process
#: within this delay. The worker checks the blocks again when it applies an activity, so nothing
#: from a blocked server is applied after the block is committed.
BLOCKS_CACHE_SECONDS = 5.0


_CONTAINERS = (dict, list)


def _deeper_than(value: Any, limit: int) -> bool:
    """True when more than ``limit`` non-empty objects or arrays nest in each other. Level by level,
    keeping only the non-empty containers: a walk over every value cost more than parsing the body.
    ``value`` is what a JSON parser made (plain dicts and lists: their exact type is checked, twice as
    fast as ``isinstance``)."""
    level, depth = [value] if type(value) in _CONTAINERS else [], 0
    while True:
        level = [item for item in level if item]
        if not level:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [child for item in level for child in (item.values() if type(item) is dict else item)
                 if type(child) in _CONTAINERS]


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_not_json)
_SPACE = frozenset(" \t\n\r")


def _read_keeping_items(text: str) -> tuple[dict[str, Any], list[str] | None]:
    """``json.loads`` of a JSON object, and the text of each element of its ``object`` member when
    that is an array (a batch), as the sender wrote it: the inbox stores a batched activity so instead
    of writing it out again, which cost as much as reading it. Every value is read by json's own
    scanner (``raw_decode``); only the object's members and that array are walked here. Raises
    ValueError or IndexError on anything unusual: the caller then reads the body the ordinary way."""
    index, end = 0, len(text)

    def skip(at: int) -> int:
        while at < end and text[at] in _SPACE:
            at += 1
        return at

    def next_value(at: int, closing: str) -> int:
        """From the end of a value: past the comma before the next one, or at ``closing``."""
        at = skip(at)
        if text[at] == ",":
            at = skip(at + 1)
            if text[at] == closing:
                raise ValueError("value expected after a comma")
        elif text[at] != closing:
            raise ValueError("comma expected")
        return at

    index = skip(index)
    if text[index] != "{":
        raise ValueError("not an object")
    members: dict[str, Any] = {}
    items: list[str] | None = None
    index = skip(index + 1)
    while text[index] != "}":
        if text[index] != '"':
            raise ValueError("member name expected")
        name, index = scanstring(text, index + 1)
        index = skip(index)
        if text[index] != ":":
            raise ValueError("colon expected")
        index = skip(index + 1)
        if name == "object" and text[index] == "[":
            values, items = [], []
            index = skip(index + 1)
            while text[index] != "]":
                value, after = _DECODER.raw_decode(text, index)
                values.append(value)
                items.append(text[index:after])
                index = next_value(after, "]")
            members[name] = values
            index += 1
        else:
            members[name], index = _DECODER.raw_decode(text, index)
            if name == "object":
                items = None  # the last "object" counts, as for json.loads
        index = next_value(index, "}")
    if skip(index + 1) != end:
        raise ValueError("extra data")
    return members, items


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The activity (or batch of activities) a POST carries, checked for shape; BadRequest, 413 or
    415 with the reason otherwise."""
    return parse_received(content_type, body)[0]


def parse_received(content_type: str | None, body: bytes) -> tuple[dict[str, Any], list[str] | None]:
    """``parse_body``, and for a batch the text of each of its activities as sent (else None)."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(f"send activities as application/activity+json, not {mimetype or 'nothing'}")
    if len(body) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(f"activities larger than {MAX_INBOX_BYTES} bytes (batches larger than "
                              f"{MAX_BATCH_BYTES}) are refused")
    texts = None
    # orjson reads nearly every body (a batch of 100: 0.31 ms against 0.89 for the standard library);
    # a batch's activities are then written out again, by orjson too (0.11 ms), to be stored. What it
    # leaves (NaN, a lone surrogate, a huge integer, nesting beyond 1024...) is read as before, and so
    # is a body larger than one activity may be: each of its activities is then measured as its
    # sender wrote it (receive_batch), which only the texts kept by _read_keeping_items tell.
    activity = jsontext.read_fast(body) if len(body) <= MAX_INBOX_BYTES else jsontext.NOT_READ
    if isinstance(activity, dict) and is_batch(activity):
        texts = [jsontext.dumps(item) for item in activity["object"]]
    elif activity is jsontext.NOT_READ:
        try:
            activity, texts = _read_keeping_items(body.decode())
        except (ValueError, IndexError, RecursionError):  # not UTF-8, not an object, not JSON...: said below
            try:
                # NaN and Infinity are not JSON (RFC 8259): Python would accept them, PostgreSQL's json would not.
                activity = json.loads(body, parse_constant=_not_json)
            except (ValueError, RecursionError):
                raise BadRequest("the body is not valid JSON") from None
    if not isinstance(activity, dict):
        raise BadRequest("the body must be a JSON object")
    batch = is_batch(activity)
    if not batch and len(body) > MAX_INBOX_BYTES:
        raise PayloadTooLarge(f"activities larger than {MAX_INBOX_BYTES} bytes are refused")
    if _deeper_than(activity, MAX_DEPTH + batch):
        raise BadRequest(f"the activity is nested deeper than {MAX_DEPTH} levels")
    check_activity(activity)
    if batch and len(activity["object"]) > MAX_BATCH_ITEMS:
        raise PayloadTooLarge(f"a batch carries at most {MAX_BATCH_ITEMS} activities: "
                              f"send at most {MAX_BATCH_ITEMS} at a time")
    return activity, texts if batch else None


def check_activity(activity: dict[str, Any]) -> None:
    """The members every activity must have, in a form this node can store; BadRequest otherwise."""
    for field in ("id", "type", "actor"):
        if field not in activity:
            raise BadRequest(f"the activity has no {field}")
    activity_id = activity["id"]
    if not isinstance(activity_id, str) or (
            not activity_id.startswith(("https://", "http://"))  # the usual form, without parsing it
            and urlsplit(activity_id).scheme not in ("http", "https")):
        raise BadRequest("the activity id must be an http(s) URL")
    if len(activity["id"]) > MAX_ID_LENGTH:
        raise BadRequest(f"the activity id is longer than {MAX_ID_LENGTH} characters")
    if not isinstance(activity["type"], str):
        raise BadRequest("the activity type must be a string")
    if actor_id(activity) is None:
        raise BadRequest("the activity actor must be a URL")


def is_batch(activity: dict[str, Any]) -> bool:
    """An ``Announce`` whose ``object`` is a list of activities (FEP-4248): several activities of the
    sending server in one request."""
    items = activity.get("object")
    return (activity.get("type") == "Announce" and isinstance(items, list) and bool(items)
            and all(isinstance(item, dict) and "actor" in item for item in items))


class BlockedDomains:
    """The set of blocked domains, read again every ``BLOCKS_CACHE_SECONDS`` (one per app: tests run
    several nodes in one process)."""

    def __init__(self) -> None:
        self._domains: frozenset[str] | None = None
        self._until = 0.0
        #: Bumped by ``forget``: a read that started before a block was committed is not kept.
        self._generation = 0
        self._lock = threading.Lock()

    def current(self) -> frozenset[str]:
        domains = self._domains
        if domains is not None and time.monotonic() < self._until:
            return domains
        generation = self._generation
        with db.engine.connect() as connection:
            domains = frozenset(connection.execute(
                select(RemoteServer.domain).where(RemoteServer.blocked.is_(True))).scalars())
        with self._lock:
            if generation == self._generation:
                self._domains, self._until = domains, time.monotonic() + BLOCKS_CACHE_SECONDS
        return domains

    def forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._domains = None


def blocked_domains() -> BlockedDomains:
    blocks = current_app.extensions.get("halles_blocked_domains")
    if blocks is None:
        blocks = current_app.extensions.setdefault("halles_blocked_domains", BlockedDomains())
    return blocks


@event.listens_for(RemoteServer, "after_insert")
@event.listens_for(RemoteServer, "after_update")
@event.listens_for(RemoteServer, "after_delete")
def _note_block_change(_mapper, _connection, server: RemoteServer) -> None:
    state = inspect(server)
    if state.deleted or state.was_deleted or server.blocked or state.attrs.blocked.history.has_changes():
        session = state.session
        if session is not None:
            session.info["halles_blocks_changed"] = True


@event.listens_for(Session, "after_commit")
def _forget_blocks_after_commit(session: Session) -> None:
    if session.info.pop("halles_blocks_changed", False) and has_app_context():
        blocked_domains().forget()


@event.listens_for(Session, "after_soft_rollback")
def _keep_blocks_after_rollback(session: Session, _previous) -> None:
    session.info.pop("halles_blocks_changed", None)


def is_blocked(domain: str) -> bool:
    return domain in blocked_domains().current()


def blocked_among(domains: set[str]) -> str | None:
    """One of ``domains`` that this node blocks, if any."""
    blocked = blocked_domains().current()
    return next((domain for domain in sorted(domains) if domain and domain in blocked), None)


#: What may reach us forwarded (from another server than its actor's, vouched for by the actor's proof,
#: which does not expire): what a re-sharing peer passes on, and what is applied by its dates, so that
#: a copy arriving again long after -- its id forgotten by then (inbox_retention) -- changes nothing.
#: A Follow, an Accept or an Undo takes effect every time it is applied: it must come from its actor's
#: server, under an HTTP signature that expires.
FORWARDABLE_TYPES = frozenset({"Create", "Update", "Delete"})


def authenticate(activity: dict[str, Any], signer: str, now: datetime | None = None,
                 keys: Callable[..., Any] = resolve_key) -> None:
    """The signer must be the activity's actor, or the activity must carry the actor's own proof
    (an activity forwarded by a peer that re-shared the object). ``now``: the time proofs are checked
    against (one per request: a batch's activities are checked within the same second); ``keys``:
    the key resolver (``KeysOfOneRequest`` for a batch)."""
    now = now or now_aware()
    actor = actor_id(activity)
    assert actor is not None
    if not same_origin(activity["id"], actor):
        # Activity ids are unique in the inbox (a replay is a duplicate): a server that could name its
        # activities on another origin could take that origin's ids first and have its real ones dropped.
        raise Unauthorized(f"activity {activity['id']} claims another origin than its actor {actor}")
    # The activity's canonical form contains its object's: written once for both proofs.
    shared = SharedCanonicalizer()
    if signer != actor:
        if "proof" not in activity:
            raise Unauthorized(f"activity actor {actor} and signing key owner {signer} disagree")
        if activity["type"] not in FORWARDABLE_TYPES:
            raise Unauthorized(f"a forwarded {activity['type']} is not taken: only Create, Update and Delete may "
                               f"come from another server than their actor's ({actor}), who must send it")
        result = verify_document(compat.detach_ld_signature(activity), keys, now=now,
                                 expected_origin=actor, canonicalizer=shared)
        if not result.ok:
            raise Unauthorized(f"forwarded activity: {result.reason}")
    elif "proof" in activity:
        result = verify_document(compat.detach_ld_signature(activity), keys, now=now,
                                 expected_origin=actor, canonicalizer=shared)
        if not result.ok:
            raise Unauthorized(f"activity proof: {result.reason}")
    _check_object(activity, actor, now, shared, keys)


def _check_object(activity: dict[str, Any], actor: str, now: datetime,
                  shared: SharedCanonicalizer | None = None, keys: Callable[..., Any] = resolve_key) -> None:
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
            result = verify_document(obj, keys, now=now, expected_origin=target, canonicalizer=shared)
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
            result = verify_document(obj, keys, now=now, expected_origin=origin, canonicalizer=shared)
            if not result.ok:
                raise Unauthorized(f"re-shared object proof: {result.reason}")
        elif isinstance(obj, str):
            # We will fetch it from its own origin: refuse now what we would never be allowed to fetch.
            try:
                check_url_allowed(obj, allow_private=allow_private(), resolver=resolver())
            except Exception as exc:  # noqa: BLE001 - any refusal is a 400 with its reason
                raise BadRequest(f"the announced object URL is refused: {exc}") from None


def receive(method: str, url: str, headers: Any, body: bytes,
            charge_batch: Callable[[int], Any] | None = None) -> Received:
    """Verify and store what a POST carries: one activity, or a batch (``is_batch``), for which
    ``charge_batch(count)`` is called before anything is verified (the rate limit counts activities)."""
    activity, texts = parse_received(headers.get("Content-Type"), body)
    if charge_batch is not None and is_batch(activity):
        charge_batch(len(activity["object"]))
    actor = actor_id(activity)
    assert actor is not None
    checked = {domain_of(actor), _key_domain(headers)}
    blocked = blocked_among(checked)
    if blocked:
        raise Forbidden(f"{blocked} is blocked by this node")
    now = now_aware()  # one time for the request's signature and every proof it carries
    result = verify_request(method, url, headers, body, resolve_key, now=now)
    if not result.ok and result.reason == "unknown key" and compat.is_self_delete(activity):
        return Received(None, False)  # an account we never knew deleted itself: nothing to forget
    if not result.ok:
        problem = key_problem() if result.reason == "unknown key" else None
        raise Unauthorized(f"HTTP signature: {result.reason}" + (f" ({problem})" if problem else ""))
    if result.owner and domain_of(result.owner) not in checked and is_blocked(domain_of(result.owner)):
        raise Forbidden(f"{domain_of(result.owner)} is blocked by this node")
    if is_batch(activity):
        return receive_batch(activity, result.owner or "", texts, now)
    authenticate(activity, result.owner or "", now)
    return store(activity, result.owner or "")


def receive_batch(batch: dict[str, Any], signer: str, texts: list[str] | None = None,
                  now: datetime | None = None) -> Received:
    """The activities of a batch whose HTTP signature was verified: each is checked as it would be
    alone (shape, blocks, actor against signer, proofs), the valid ones stored in one transaction
    (``BatchStore``: on PostgreSQL while the next are verified), and each gets its own verdict: one bad
    activity does not cost the others."""
    if actor_id(batch) != signer:
        raise Unauthorized(f"batch actor {actor_id(batch)} and signing key owner {signer} disagree")
    now = now or now_aware()
    blocked = blocked_domains().current()
    results: list[dict[str, Any]] = []
    valid: list[int] = []
    store = BatchStore(signer)
    keys = KeysOfOneRequest()
    try:
        for position, item in enumerate(batch["object"]):
            try:
                text = _checked_batch_item(item, texts[position] if texts is not None else None, blocked, signer,
                                           now, keys)
            except HallesError as exc:
                item_id = item.get("id")
                results.append({"id": item_id if isinstance(item_id, str) else None, "status": exc.status,
                                "detail": exc.detail})
                continue
            results.append({"id": item["id"], "status": 202})
            valid.append(len(results) - 1)
            store.add(item, text, left=len(batch["object"]) - position - 1)
        stored = store.finish()
    finally:
        store.close()
    for index, received in zip(valid, stored, strict=True):
        if received.duplicate:
            results[index] = {"id": results[index]["id"], "status": 200, "detail": "duplicate"}
    return Received(None, False, results)


def _checked_batch_item(item: Any, text: str | None, blocked: set[str], signer: str, now: datetime,
                        keys: Callable[..., Any] = resolve_key) -> str:
    """One activity of a batch checked as it would be alone; its text to store (``text``: as its sender
    wrote it, else serialised once, measured as the body of one POST). Raises the refusal."""
    check_activity(item)
    if is_batch(item):
        raise BadRequest("a batch cannot carry another batch")
    text = text if text is not None else jsontext.dumps(item)
    if len(text.encode()) > MAX_INBOX_BYTES:
        raise PayloadTooLarge(f"activities larger than {MAX_INBOX_BYTES} bytes are refused")
    domain = domain_of(actor_id(item) or "")
    if domain in blocked:
        raise Forbidden(f"{domain} is blocked by this node")
    authenticate(item, signer, now, keys)
    return text


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
