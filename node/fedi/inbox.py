"""Receiving activities: verify -> store -> 202. Nothing is applied here (the worker does it), and
nothing unverified is stored: a bad signature, a forged origin or a tampered proof is a 401 whose
``detail`` names the reason.

The order of the checks matters: the domain blocks first (nothing is fetched for a blocked server),
then the HTTP signature and the proofs, and only then is the activity id looked at (a duplicate is
answered as such to a sender that proved who it is, never to anyone who asks). Storing is one
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` statement committed at once: the unique activity id
decides what is a duplicate, even for two copies arriving at the same moment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from json.decoder import scanstring
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import DBAPIError
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
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi import compat
from node.fedi.handlers import actor_id, object_id
from node.fedi.http import allow_private, resolver
from node.fedi.keystore import KeysOfOneRequest, domain_of, key_problem, resolve_key
from node.fedi.models import InboxItem, RemoteServer, shard_of
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


@dataclass
class Received:
    #: The id of the stored inbox item (None for a duplicate or an activity that is not stored).
    item_id: int | None
    duplicate: bool
    #: A batch: the verdict on each of its activities, in order (``{"id", "status", "detail"?}``, the
    #: status that activity would have had alone: 202 stored, 200 duplicate, 4xx refused).
    results: list[dict[str, Any]] | None = None


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


_INBOX = InboxItem.__table__
#: One statement (the same SQL on SQLite and PostgreSQL but for the placeholders): a new activity is
#: stored and its id returned; a known activity id returns nothing.
_STORE_SQL = (
    "INSERT INTO inbox_items (activity_id, activity_type, signer, activity, state, received_at, shard) "
    "VALUES ({activity_id}, {activity_type}, {signer}, {activity}, 'pending', {received_at}, {shard}) "
    "ON CONFLICT (activity_id) DO NOTHING RETURNING id"
)
_STORE_FIELDS = ("activity_id", "activity_type", "signer", "activity", "received_at", "shard")
_INSERT_COLUMNS = ("activity_id", "activity_type", "signer", "activity", "state", "received_at", "shard")
#: The placeholder style each driver's own cursor takes (SQLAlchemy translates its own to qmark for
#: sqlite3, but sqlite3 also reads named placeholders from a dict).
_PLACEHOLDERS = {"pysqlite": ":{}", "psycopg": "%({})s", "psycopg2": "%({})s"}
#: SQLAlchemy's DateTime on SQLite stores this text; PostgreSQL reads it as a timestamp.
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


_STORED_SQL = "SELECT activity FROM inbox_items WHERE activity_id = {activity_id}"


def _statements() -> tuple[str, str]:
    """The insert and the duplicate lookup in the placeholder style of the driver, per app."""
    found = current_app.extensions.get("halles_inbox_store")
    if found is None:
        driver = db.engine.dialect.driver
        if driver not in _PLACEHOLDERS:
            raise RuntimeError(f"the inbox does not know the placeholders of the {driver} driver")
        names = {name: _PLACEHOLDERS[driver].format(name) for name in _STORE_FIELDS}
        found = current_app.extensions.setdefault("halles_inbox_store",
                                                  (_STORE_SQL.format(**names), _STORED_SQL.format(**names)))
    return found


def _run(driver: Any, sql: str, params: dict[str, Any]) -> Any:
    """The first column of the first row, or None."""
    cursor = driver.cursor()
    try:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return row[0] if row else None


def store(activity: dict[str, Any], signer: str) -> Received:
    """Store a verified activity, durably (committed before the 202). A known activity id is a
    duplicate when the body is the same; a platform that reuses ids for different activities
    (Gancio) gets the new body stored under a derived key (``compat.inbox_key``).

    Through the driver's own connection and cursor: SQLAlchemy's connection and execution machinery
    cost more than this insert and its commit (0.15 ms against 0.06 measured on SQLite). On
    PostgreSQL the connection is in autocommit mode meanwhile: the insert is its own transaction, one
    round trip instead of three (BEGIN, INSERT, COMMIT), and as durable."""
    row = _row(activity, signer)
    insert_sql, stored_sql = _statements()
    with _driver_connection(insert_sql, row) as driver:
        return _store(driver, activity, row, insert_sql, stored_sql)


def store_many(activities: list[dict[str, Any]], signer: str, *, encoded: list[str] | None = None) -> list[Received]:
    """Store verified activities (a batch) with one multi-row ``INSERT ... ON CONFLICT DO NOTHING
    RETURNING`` and one commit; one verdict per activity, in order. ``encoded``: their JSON text, when
    the caller serialised them already. The ids it did not insert (already
    known) go through ``store``'s duplicate rule one by one; an id repeated in the batch is a duplicate."""
    if not activities:
        return []
    texts = encoded if encoded is not None else [None] * len(activities)
    received_at = utcnow().strftime(_TIME_FORMAT)  # one request: one time of receipt
    rows = [_row(activity, signer, text, received_at) for activity, text in zip(activities, texts, strict=True)]
    first_index: dict[str, int] = {}
    for index, row in enumerate(rows):
        first_index.setdefault(row["activity_id"], index)
    unique = [rows[index] for index in sorted(first_index.values())]
    many_sql, params = _insert_many(unique)
    with _driver_connection(many_sql, params) as driver:
        inserted = dict(_insert_when_free(driver, many_sql, params))
        driver.commit()
        return _verdicts(driver, activities, rows, first_index, inserted)


def _verdicts(driver: Any, activities: list[dict[str, Any]], rows: list[dict[str, Any]], first_index: dict[str, int],
              inserted: dict[str, int]) -> list[Received]:
    """One verdict per activity of a batch once its rows went in (``inserted``: activity id -> item id):
    a repeat of an id earlier in the batch is a duplicate, and an id the node knew already goes
    through ``store``'s duplicate rule, one by one."""
    insert_sql, stored_sql = _statements()
    verdicts = []
    for index, (activity, row) in enumerate(zip(activities, rows, strict=True)):
        if first_index[row["activity_id"]] != index:
            verdicts.append(Received(None, True))
        elif row["activity_id"] in inserted:
            verdicts.append(Received(inserted[row["activity_id"]], False))
        else:
            verdicts.append(_store(driver, activity, row, insert_sql, stored_sql))
    return verdicts


#: PostgreSQL: a batch's verified activities go to the server at least this many at a time
#: (``BatchStore``), but for the last ones.
STORE_CHUNK = 4


class BatchStore:
    """Stores the verified activities of one batch (``add`` each in turn), one verdict each, in order
    (``finish``), as ``store_many`` does; ``close`` always (it gives the connection back and rolls back
    what ``finish`` did not commit).

    On PostgreSQL the activities are sent while the next are verified, in one insert of a pipeline
    (psycopg's pipeline mode: sent without waiting for the answer) as soon as those waiting are as many
    as the activities left to verify (and at least ``STORE_CHUNK``): 50, 25, 13, 6, 4 and the last 2 of
    100. All go in one transaction, which ``finish`` commits. The server stores each part while the
    request verifies the next, ten times as long (40 against 400 us per activity), and the request
    waits at the end for the last few only, instead of one insert of all of them (5 ms for a batch of
    100 in the ingest benchmark, a tenth of the batch's time). On SQLite, in the process itself, there
    is nothing to overlap: ``store_many`` stores them at the end."""

    def __init__(self, signer: str) -> None:
        self.signer = signer
        self.activities: list[dict[str, Any]] = []
        self.texts: list[str] = []
        self.pipelined = db.engine.dialect.name == "postgresql"
        self.received_at = utcnow().strftime(_TIME_FORMAT)  # one request: one time of receipt
        self.rows: list[dict[str, Any]] = []
        #: activity id -> index of its first row: a later one is a duplicate within the batch.
        self.first_index: dict[str, int] = {}
        self.unsent: list[dict[str, Any]] = []
        self.cursors: list[Any] = []
        self.driver: Any = None
        self.pipeline = ExitStack()

    def add(self, activity: dict[str, Any], text: str, *, left: int = 0) -> None:
        """``activity`` verified (``text``: what to store); ``left``: how many the batch has after it."""
        self.activities.append(activity)
        self.texts.append(text)
        if not self.pipelined:
            return
        row = _row(activity, self.signer, text, self.received_at)
        self.rows.append(row)
        if row["activity_id"] not in self.first_index:
            self.first_index[row["activity_id"]] = len(self.rows) - 1
            self.unsent.append(row)
            if len(self.unsent) >= max(STORE_CHUNK, left):
                self._send()

    def _send(self) -> None:
        if not self.unsent:
            return
        sql, params = _insert_many(self.unsent)
        self.unsent = []
        if self.driver is None:
            self.driver = db.engine.raw_connection()
            self.pipeline.enter_context(self.driver.driver_connection.pipeline())
        cursor = self.driver.driver_connection.cursor()
        self.cursors.append(cursor)
        with _database_errors(sql, params):
            cursor.execute(sql, params)

    def finish(self) -> list[Received]:
        if not self.pipelined:
            return store_many(self.activities, self.signer, encoded=self.texts)
        if not self.activities:
            return []
        self._send()
        if db.session.registry.has() and db.session().in_transaction():
            db.session.commit()  # what verifying stored (an actor fetched for its key), as store_many does
        with _database_errors(_statements()[0], None):
            self.driver.driver_connection.commit()  # in the pipeline: the COMMIT sent, every answer awaited
            self.pipeline.close()
            inserted = dict(row for cursor in self.cursors for row in cursor.fetchall())
            return _verdicts(self.driver, self.activities, self.rows, self.first_index, inserted)

    def close(self) -> None:
        driver, self.driver = self.driver, None
        if driver is None:
            return
        try:
            with suppress(Exception):
                self.pipeline.close()  # after a failure: its error was raised already
            with suppress(Exception):
                driver.driver_connection.rollback()  # nothing to undo after finish's commit
            for cursor in self.cursors:
                cursor.close()
        finally:
            driver.close()


#: SQLite: how long a request waits for the write lock (the same as every connection's busy_timeout),
#: and how often it looks whether the lock is free.
_LOCK_WAIT_SECONDS = 15.0
_LOCK_POLL_SECONDS = 0.0005
_SQLITE_BUSY = 5


def _insert_when_free(driver: Any, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """Run an ``INSERT ... RETURNING`` and return its rows. On SQLite, while the worker holds the
    write lock (it applies a run: a few milliseconds), look again every half millisecond instead of
    SQLite's own busy wait, which sleeps 1, 2, 5, 10, 15, 20, 25 ms between tries: a request then
    waited up to 25 ms after the lock was free, and the worker, taking it again for its next run before
    the request woke up, kept it waiting for several runs (web processes stood idle a fifth of a
    festival burst on two cores). Gives up, as busy_timeout would, after ``_LOCK_WAIT_SECONDS``."""
    if db.engine.dialect.name != "sqlite":
        cursor = driver.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()
    import sqlite3

    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    restore = f"PRAGMA busy_timeout={int(_LOCK_WAIT_SECONDS * 1000)}"
    cursor = driver.cursor()
    waiting = True
    try:
        driver.rollback()  # no transaction open: BEGIN IMMEDIATE below takes the lock or says it is busy
        cursor.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")  # cheap to try again, unlike the insert itself
                break
            except sqlite3.OperationalError as exc:
                if (exc.sqlite_errorcode & 0xFF) != _SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(_LOCK_POLL_SECONDS)
        cursor.execute(restore)
        waiting = False
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        if waiting:  # the pool's next user expects the usual wait
            with suppress(sqlite3.Error):
                cursor.execute(restore)
        cursor.close()


def _row(activity: dict[str, Any], signer: str, text: str | None = None, received_at: str | None = None,
         ) -> dict[str, Any]:
    return {"activity_id": activity["id"], "activity_type": activity["type"][:40], "signer": signer,
            "activity": text if text is not None else jsontext.dumps(activity),
            "received_at": received_at or utcnow().strftime(_TIME_FORMAT),
            "shard": shard_of(activity)}


#: PostgreSQL: the rows as one array per column, the same statement for every batch. A multi-row VALUES
#: of 100 rows has 600 parameters, and psycopg rewrote that text for every batch (2 ms, a third of
#: storing it); this one is parsed once and prepared. The arrays go in binary (``%b``): as text every
#: quote of every activity was escaped by a regular expression in Python. ``WITH ORDINALITY ... ORDER
#: BY``: the ids follow the batch's order, which is the order the worker applies them in.
_INSERT_ARRAYS = (
    "INSERT INTO inbox_items (activity_id, activity_type, signer, activity, state, received_at, shard) "
    "SELECT activity_id, activity_type, %(signer)s, activity::json, 'pending', %(received_at)s::timestamp, shard "
    "FROM unnest(%(activity_ids)b::text[], %(activity_types)b::text[], %(activities)b::text[], %(shards)b::int[]) "
    "WITH ORDINALITY AS batch (activity_id, activity_type, activity, shard, position) ORDER BY position "
    "ON CONFLICT (activity_id) DO NOTHING RETURNING activity_id, id"
)


def _insert_many(rows: list[dict[str, Any]]) -> tuple[str, Any]:
    """The multi-row insert of ``rows`` (all of one signer, received together) in the driver's style."""
    if db.engine.dialect.name == "postgresql":
        return _INSERT_ARRAYS, {
            "signer": rows[0]["signer"], "received_at": rows[0]["received_at"],
            "activity_ids": [row["activity_id"] for row in rows],
            "activity_types": [row["activity_type"] for row in rows],
            "activities": [row["activity"] for row in rows],
            "shards": [row["shard"] for row in rows]}
    if db.engine.dialect.driver != "pysqlite":
        raise RuntimeError(f"the inbox does not know the placeholders of the {db.engine.dialect.driver} driver")
    return _sqlite_insert_many(len(rows)), [row[name] for row in rows for name in _STORE_FIELDS]


@lru_cache(maxsize=MAX_BATCH_ITEMS)
def _sqlite_insert_many(count: int) -> str:
    """SQLite's multi-row insert of ``count`` rows (positional parameters, ``_STORE_FIELDS`` of each
    row in turn): written once per size, as sqlite3 caches its compiled form by text (at most
    ``MAX_BATCH_ITEMS`` rows of 6 values: within the 999 parameters of the oldest SQLite)."""
    row = "({})".format(", ".join("'pending'" if name == "state" else "?" for name in _INSERT_COLUMNS))
    return (f"INSERT INTO inbox_items ({', '.join(_INSERT_COLUMNS)}) VALUES {', '.join([row] * count)} "
            "ON CONFLICT (activity_id) DO NOTHING RETURNING activity_id, id")


@contextmanager
def _driver_connection(sql: str, params: Any) -> Iterator[Any]:
    """A pooled driver connection (autocommit on PostgreSQL), database errors raised as SQLAlchemy
    would raise them: the problem handlers map a full disk to 507, bad data to 4xx."""
    if db.session.registry.has() and db.session().in_transaction():
        # What verifying stored (an actor document fetched for its key) is committed first: on SQLite
        # that transaction holds the write lock the insert needs.
        db.session.commit()
    driver = db.engine.raw_connection()
    autocommit = db.engine.dialect.name == "postgresql"
    if autocommit:
        driver.driver_connection.autocommit = True
    try:
        with _database_errors(sql, params):
            yield driver
    finally:
        if autocommit:
            driver.driver_connection.autocommit = False  # the pool's other users expect transactions
        driver.close()


@contextmanager
def _database_errors(sql: str, params: Any) -> Iterator[None]:
    """The driver's errors raised as SQLAlchemy would raise them: the problem handlers map a full disk
    to 507, bad data to 4xx."""
    dialect = db.engine.dialect
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc


def _store(driver: Any, activity: dict[str, Any], row: dict[str, Any], insert_sql: str, stored_sql: str) -> Received:
    inserted = _insert_when_free(driver, insert_sql, row)
    item_id = inserted[0][0] if inserted else None
    driver.commit()
    if item_id is not None:
        return Received(item_id, False)
    stored = _run(driver, stored_sql, row)
    driver.rollback()
    key = compat.inbox_key(activity, json.loads(stored) if isinstance(stored, str) else stored)
    if key == activity["id"]:
        return Received(None, True)
    item_id = _run(driver, insert_sql, {**row, "activity_id": key})
    driver.commit()
    return Received(item_id, item_id is None)


def store_verified(activity: dict[str, Any], signer: str) -> bool:
    """Queue an activity obtained by catch-up (its proof was checked), in the caller's transaction.
    False when already known."""
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
