"""Remote actors and their keys: fetched once, cached in ``remote_actors``, re-fetched on demand.

``resolve_key`` is the key resolver ``federation`` verifiers are given: it maps a key id to the key
and the actor that owns it, reading both RSA ``publicKey`` and Ed25519 ``Multikey`` entries."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urldefrag, urlsplit

import requests
from flask import current_app, g
from sqlalchemy import select

from federation import keys
from federation.errors import FederationError, FetchError
from federation.keys import KeyRecord
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi.http import fetch_document
from node.fedi.identity import BATCH_TERM, HALLES_NS, load_identity
from node.fedi.models import RemoteActor

#: A cached actor document older than this is fetched again when it is needed.
ACTOR_MAX_AGE = timedelta(days=1)
ACTOR_TYPES = {"Person", "Organization", "Group", "Service", "Application"}
#: Resolved keys stay in this process's memory this long: a burst of activities from one origin then
#: verifies without reading and parsing its actor document (and its PEM key) for every signature and
#: proof. A rotation is still seen at once -- a signature that fails asks again with ``refresh=True``,
#: which bypasses the cache -- and a document another process stored is seen within this delay.
KEY_CACHE_SECONDS = 30.0
KEY_CACHE_SIZE = 4096
#: A key whose lookup failed because a fetch failed (its server is unreachable, slow, or refused by
#: the safe-fetch rules) is not looked up again for this long: every request naming it would
#: otherwise wait for the same fetches again (up to four fetch deadlines, about a minute) before its
#: 401. A server that cannot even be connected to is remembered the same way for all its keys.
FAILED_LOOKUP_SECONDS = 300.0
FAILED_LOOKUP_SIZE = 4096


class KeyCache:
    """A small thread-safe LRU of ``KeyRecord`` with a time to live, one per app (tests run several
    nodes in one process, each with its own database)."""

    def __init__(self, size: int = KEY_CACHE_SIZE, ttl: float = KEY_CACHE_SECONDS) -> None:
        self.size = size
        self.ttl = ttl
        self._entries: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key_id]
                return None
            self._entries.move_to_end(key_id)
            return entry[1]

    def put(self, record: KeyRecord) -> None:
        with self._lock:
            self._entries[record.key_id] = (time.monotonic() + self.ttl, record)
            self._entries.move_to_end(record.key_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget_owner(self, owner: str) -> None:
        with self._lock:
            for key_id in [k for k, (_, record) in self._entries.items() if record.owner == owner]:
                del self._entries[key_id]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def key_cache() -> KeyCache:
    cache = current_app.extensions.get("halles_key_cache")
    if cache is None:
        cache = current_app.extensions.setdefault("halles_key_cache", KeyCache())
    return cache


class FailedLookups:
    """Key ids and hosts whose last lookup failed on a fetch, with the reason, for
    ``FAILED_LOOKUP_SECONDS`` (negative cache, one per app)."""

    def __init__(self, size: int = FAILED_LOOKUP_SIZE, ttl: float = FAILED_LOOKUP_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, name: str) -> str | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        left = entry[0] - self.clock()
        if left <= 0:
            del self._entries[name]
            return None
        return f"{entry[1]}; not fetched again for {math.ceil(left)} s"

    def reason(self, key_id: str) -> str | None:
        """Why ``key_id`` (or its host) failed recently, or None."""
        with self._lock:
            return self._get(key_id) or self._get(_host_entry(key_id))

    def host_down(self, url: str) -> str | None:
        with self._lock:
            return self._get(_host_entry(url))

    def remember(self, name: str, reason: str) -> None:
        with self._lock:
            self._entries[name] = (self.clock() + self.ttl, reason[:300])
            self._entries.move_to_end(name)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def remember_host(self, url: str, reason: str) -> None:
        self.remember(_host_entry(url), reason)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _host_entry(url: str) -> str:
    return "host:" + domain_of(url)


def failed_lookups() -> FailedLookups:
    failed = current_app.extensions.get("halles_failed_key_lookups")
    if failed is None:
        failed = current_app.extensions.setdefault("halles_failed_key_lookups", FailedLookups())
    return failed


def _unreachable(exc: FetchError) -> bool:
    """The server itself could not be reached (no name, no connection, no answer to connect), as
    opposed to one URL of it failing: then none of its keys can be fetched for now."""
    cause = exc.__cause__ or exc.__context__  # federation.fetch raises its errors "from None"
    return isinstance(cause, requests.ConnectionError) or str(exc).startswith("cannot resolve")


def _fetch(url: str) -> dict[str, Any]:
    """``fetch_document``, skipped for a server found unreachable a moment ago."""
    failed = failed_lookups()
    down = failed.host_down(url)
    if down is not None:
        g.halles_key_fetch_failed = True
        raise FetchError(down, url=url)
    try:
        return fetch_document(url)
    except FetchError as exc:
        g.halles_key_fetch_failed = True  # read by resolve_key: this lookup failed on a fetch
        if _unreachable(exc):
            where = exc.url or url  # after redirects, the server that failed
            failed.remember_host(where, f"{domain_of(where)} is unreachable: {exc}")
        raise


class ActorError(Exception):
    """A remote actor cannot be fetched or is not usable; the message says why."""


def domain_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


def store_actor(document: dict[str, Any]) -> RemoteActor:
    ap_id = document.get("id")
    if not isinstance(ap_id, str):
        raise ActorError("actor document has no id")
    actor = db.session.scalar(select(RemoteActor).where(RemoteActor.ap_id == ap_id))
    if actor is None:
        actor = RemoteActor(ap_id=ap_id, domain=domain_of(ap_id))
        db.session.add(actor)
    endpoints = document.get("endpoints") if isinstance(document.get("endpoints"), dict) else {}
    location = document.get("location") if isinstance(document.get("location"), dict) else {}
    address = location.get("address") if isinstance(location.get("address"), dict) else {}
    actor.name = str(document.get("name") or document.get("preferredUsername") or "")[:200]
    actor.city = str(address.get("addressLocality") or "")[:120]
    actor.actor_type = str(document.get("type") or "")[:40]
    actor.inbox = document.get("inbox") if isinstance(document.get("inbox"), str) else None
    actor.shared_inbox = endpoints.get("sharedInbox") if isinstance(endpoints.get("sharedInbox"), str) else None
    actor.outbox = document.get("outbox") if isinstance(document.get("outbox"), str) else None
    actor.is_halles_node = isinstance(document.get("charter"), dict)
    actor.document = document
    actor.fetched_at = utcnow()
    key_cache().forget_owner(ap_id)  # the document may list other keys now
    db.session.flush()
    return actor


@dataclass(frozen=True)
class BatchCapability:
    """What an inbox said it takes in one batch (``identity.batch_delivery``); None where it did not
    say (the sender then keeps its own limits)."""

    max_items: int | None
    max_bytes: int | None


def batch_capability(document: dict[str, Any], inbox: str) -> BatchCapability | None:
    """The batches ``inbox`` takes according to this actor document, or None: the document does not
    advertise ``batchDelivery`` for that inbox, or says it takes fewer than two activities at a time.
    The term is read under its compact name, with the ``halles:`` prefix or as its full IRI (a JSON-LD
    processor may have compacted it either way); members other than these are ignored."""
    found = None
    for name in (BATCH_TERM, f"halles:{BATCH_TERM}", f"{HALLES_NS}{BATCH_TERM}"):
        if name in document:
            found = document[name]
            break
    for entry in found if isinstance(found, list) else [found]:
        if not isinstance(entry, dict):
            continue
        named = entry.get("inbox")
        if isinstance(named, dict):
            named = named.get("id")
        if named != inbox:
            continue
        limits = [_positive(entry.get(name)) for name in ("maxItems", "maxBytes")]
        if limits[0] is not None and limits[0] < 2:
            return None
        return BatchCapability(*limits)
    return None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def get_actor(ap_id: str, *, refresh: bool = False) -> RemoteActor:
    """The cached actor, fetched (again) when missing, stale or ``refresh`` is asked."""
    actor = db.session.scalar(select(RemoteActor).where(RemoteActor.ap_id == ap_id))
    if actor is not None and not refresh and actor.fetched_at > utcnow() - ACTOR_MAX_AGE and actor.document:
        return actor
    try:
        document = _fetch(ap_id)
    except FetchError as exc:
        if actor is not None and actor.document:
            return actor  # keep working with what we know while the server is unreachable
        raise ActorError(f"cannot fetch actor {ap_id}: {exc}") from exc
    if document.get("id") != ap_id:
        raise ActorError(f"actor document fetched from {ap_id} claims another id {document.get('id')!r}")
    if document.get("type") not in ACTOR_TYPES:
        raise ActorError(f"{ap_id} is not an actor (type {document.get('type')!r})")
    return store_actor(document)


def _keys_of(document: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(key id, public key, owner) for every key an actor document lists."""
    found = []
    actor_id = document.get("id", "")
    public_keys = document.get("publicKey")
    for entry in public_keys if isinstance(public_keys, list) else [public_keys]:
        if isinstance(entry, dict) and isinstance(entry.get("publicKeyPem"), str):
            try:
                found.append((entry.get("id"), keys.load_public_key(entry["publicKeyPem"]),
                              entry.get("owner") or actor_id))
            except (FederationError, ValueError):
                continue
    methods = document.get("assertionMethod")
    for entry in methods if isinstance(methods, list) else [methods]:
        if isinstance(entry, dict) and isinstance(entry.get("publicKeyMultibase"), str):
            try:
                found.append((entry.get("id"), keys.multibase_to_ed25519(entry["publicKeyMultibase"]),
                              entry.get("controller") or actor_id))
            except (FederationError, ValueError):
                continue
    return found


class KeysOfOneRequest:
    """``resolve_key`` for the proofs of one request: a batch's 100 activities name the same one or
    two keys, each asked of the app's cache once rather than once per proof (its lock, clock and
    order cost about 2 us a time). A refresh still goes to ``resolve_key``, and its answer is kept."""

    def __init__(self) -> None:
        self._found: dict[str, KeyRecord] = {}

    def __call__(self, key_id: str, refresh: bool = False) -> KeyRecord | None:
        if not refresh:
            found = self._found.get(key_id)
            if found is not None:
                return found
        found = resolve_key(key_id, refresh=refresh)
        if found is not None:
            self._found[key_id] = found
        return found


def resolve_key(key_id: str, refresh: bool = False) -> KeyRecord | None:
    """Key resolver for federation verifiers. Returns None for an unknown key. Found keys are kept in
    memory for ``KEY_CACHE_SECONDS``; ``refresh`` bypasses that cache as well as the database's. A
    key whose lookup failed on a fetch is not looked up again for ``FAILED_LOOKUP_SECONDS``, even
    with ``refresh`` (the 401 then says why)."""
    cache = key_cache()
    if not refresh:
        cached = cache.get(key_id)
        if cached is not None:
            return cached
    failed = failed_lookups()
    reason = failed.reason(key_id)
    if reason is not None:
        note_key_problem(reason)
        return None
    g.pop("halles_key_problem", None)
    record = _resolve_key(key_id, refresh)
    if record is not None:
        cache.put(record)
    elif g.get("halles_key_problem") is not None and g.get("halles_key_fetch_failed"):
        failed.remember(key_id, g.halles_key_problem)
    g.pop("halles_key_fetch_failed", None)
    return record


def note_key_problem(text: str) -> None:
    """Why the last key lookup of this request failed (a refused or failed fetch), so that the 401
    can say it instead of a bare "unknown key"; read with ``key_problem()``."""
    g.halles_key_problem = text[:300]


def key_problem() -> str | None:
    return g.pop("halles_key_problem", None)


def _resolve_key(key_id: str, refresh: bool) -> KeyRecord | None:
    identity = load_identity()
    actor_url, _fragment = urldefrag(key_id)
    if actor_url == identity.actor_url:
        own_keys = {identity.rsa_key_id: identity.rsa_key, identity.ed25519_key_id: identity.ed25519_key}
        if key_id in own_keys:
            return KeyRecord(key_id, own_keys[key_id].public_key(), identity.actor_url)
        return None
    try:
        actor = get_actor(actor_url, refresh=refresh)
    except ActorError as exc:
        note_key_problem(str(exc))
        actor = _actor_from_key_document(key_id, refresh)
        if actor is None:
            return None
    for found_id, public_key, owner in _keys_of(actor.document):
        if found_id == key_id:
            if owner != actor.ap_id:
                note_key_problem(f"key {key_id} names {owner} as its owner, not {actor.ap_id} that lists it")
                return None  # a key that claims another owner than the document listing it
            return KeyRecord(key_id, public_key, actor.ap_id)
    return None


def _actor_from_key_document(key_id: str, refresh: bool) -> RemoteActor | None:
    """Some servers give keys their own URL (a key document with an ``owner``)."""
    try:
        document = _fetch(key_id)
    except FetchError as exc:
        note_key_problem(f"cannot fetch key {key_id}: {exc}")
        return None
    owner = document.get("owner") or document.get("controller")
    embedded = document.get("publicKey")
    if owner is None and isinstance(embedded, dict) and embedded.get("id") == key_id:
        # GoToSocial serves a stub of the actor at the key's own URL: the owner is in ``publicKey``.
        owner = embedded.get("owner")
    if not isinstance(owner, str):
        return None
    try:
        return get_actor(owner, refresh=refresh)
    except ActorError:
        return None
