"""A short-lived response cache for the public listings (the events API list and the feeds).

The anonymous agenda is the same for every visitor and the most requested thing a node serves (the
site, widgets on partners' sites, calendar apps, other nodes). Rebuilding a page of 50 events costs
about 10 ms of CPU; serving the bytes it built a moment ago costs a few microseconds. So a GET of one
of ``paths`` from a client that carries no credentials (no ``Authorization``, ``Cookie`` or HTTP
signature: what it may see does not depend on who it is) is answered from memory for ``ttl`` seconds
(``HALLES_LISTING_CACHE_SECONDS``, 0 turns it off), the same way a reverse proxy "microcache" would,
but inside every deployment, with the node's own knowledge of when its data changed:

- every commit that wrote something through this process's ORM sessions empties the cache at once, so
  what a person just changed is never hidden from the next page they open on the same process;
- what another process wrote (the federation worker, the other gunicorn workers) shows within ``ttl``;
- concurrent misses of one key wait for a single computation instead of each rebuilding the page, and
  once an answer is older than ``ttl`` the others keep getting it while one thread rebuilds it;
- only complete ``200`` answers without ``Set-Cookie`` or ``Cache-Control: no-store|private`` are kept;
  ``If-None-Match`` is answered ``304`` from the kept ETag; an ``Age`` header tells how old a hit is;
- memory is bounded: at most ``max_entries`` answers of at most ``max_body_bytes`` each, least
  recently used first out.

It is a WSGI middleware rather than a Flask hook so that a hit costs no routing, no request context
and no session: that is what lets the node serve its listing at close to the rate of a static answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

#: Bumped after every commit that wrote through an ORM session of this process.
_generation = 0
_generation_lock = threading.Lock()

_CREDENTIAL_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_SIGNATURE", "HTTP_SIGNATURE_INPUT")
# Request headers an answer may depend on besides the URL (content negotiation, language of messages).
_KEY_HEADERS = ("HTTP_HOST", "HTTP_ACCEPT", "HTTP_ACCEPT_LANGUAGE", "HTTP_ACCEPT_ENCODING")


def current_generation() -> int:
    return _generation


def note_write(session: Session, *_args: Any) -> None:
    """This session's transaction wrote (through the ORM, or through the driver by code that says so):
    its commit empties the cache."""
    session.info["halles_wrote"] = True


def _bump_after_commit(session: Session) -> None:
    global _generation
    if session.info.pop("halles_wrote", False):
        with _generation_lock:
            _generation += 1


def _note_bulk_write(orm_execute_state: Any) -> None:
    # INSERT/UPDATE/DELETE statements run through the session without a flush (bulk SQL).
    if orm_execute_state.is_insert or orm_execute_state.is_update or orm_execute_state.is_delete:
        orm_execute_state.session.info["halles_wrote"] = True


def _forget_rollback(session: Session, *_args: Any) -> None:
    session.info.pop("halles_wrote", None)


event.listen(Session, "after_flush", note_write)
event.listen(Session, "do_orm_execute", _note_bulk_write)
event.listen(Session, "after_commit", _bump_after_commit)
event.listen(Session, "after_soft_rollback", _forget_rollback)


@dataclass
class _Entry:
    stored_at: float
    generation: int
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    etag: str | None


@dataclass
class _Flight:
    """One computation of a missing key that concurrent requests for the same key wait for."""

    done: threading.Event = field(default_factory=threading.Event)
    entry: _Entry | None = None


class ResponseCache:
    def __init__(self, app: Callable, *, paths: Iterable[str], ttl: float, max_entries: int = 512,
                 max_body_bytes: int = 2_000_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.ttl = float(ttl)
        self.max_entries = max_entries
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.flights: dict[tuple, _Flight] = {}
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _cacheable(self, environ: dict[str, Any]) -> bool:
        return (
            self.ttl > 0
            and environ.get("REQUEST_METHOD") == "GET"
            and environ.get("PATH_INFO") in self.paths
            and not any(environ.get(name) for name in _CREDENTIAL_HEADERS)
        )

    def _fresh(self, entry: _Entry | None, now: float) -> bool:
        return entry is not None and entry.generation == _generation and now - entry.stored_at < self.ttl

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if not self._cacheable(environ):
            return self.app(environ, start_response)
        key = (environ.get("PATH_INFO"), environ.get("QUERY_STRING", ""), environ.get("wsgi.url_scheme"),
               *(environ.get(name, "") for name in _KEY_HEADERS))
        now = self.clock()
        with self.lock:
            entry = self.entries.get(key)
            flight = self.flights.get(key)
            if self._fresh(entry, now) or (flight is not None and entry is not None
                                           and entry.generation == _generation):
                # Fresh; or only older than the TTL while another thread already rebuilds it: the
                # previous answer, a few milliseconds staler, rather than everyone waiting on the rebuild.
                self.entries.move_to_end(key)
                self.hits += 1
            else:
                entry = None
                leader = flight is None
                if leader:
                    flight = self.flights[key] = _Flight()
        if entry is None and not leader:
            flight.done.wait(timeout=30)
            entry = flight.entry
            if entry is None:  # the leader's answer was not cacheable: compute our own
                return self.app(environ, start_response)
            with self.lock:
                self.hits += 1
        if entry is None:
            try:
                entry, answer = self._compute(environ)
                if entry is not None:
                    self._store(key, entry)  # before the flight ends: no second leader in between
                flight.entry = entry
            finally:
                # Even when the app raised: the waiters then compute their own answer at once.
                with self.lock:
                    self.misses += 1
                    self.flights.pop(key, None)
                flight.done.set()
            if entry is None:
                status, headers, body = answer
                start_response(status, headers)
                return [body]
            start_response(entry.status, entry.headers)
            return [entry.body]
        return self._answer(entry, environ, start_response)

    def _compute(self, environ: dict[str, Any]) -> tuple[_Entry | None, tuple[str, list, bytes]]:
        generation = _generation  # read before: a write committed meanwhile makes this entry stale
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = status, list(headers)
            return lambda _data: None

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = captured["status"], captured["headers"]
        names = {name.lower(): value for name, value in headers}
        cache_control = names.get("cache-control", "").lower()
        keep = (
            status.startswith("200 ")
            and "set-cookie" not in names
            and "no-store" not in cache_control
            and "private" not in cache_control
            and len(body) <= self.max_body_bytes
        )
        if not keep:
            return None, (status, headers, body)
        return _Entry(self.clock(), generation, status, headers, body, names.get("etag")), (status, headers, body)

    def _store(self, key: tuple, entry: _Entry) -> None:
        with self.lock:
            self.entries[key] = entry
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

    def _answer(self, entry: _Entry, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        age = ("Age", str(int(self.clock() - entry.stored_at)))
        if entry.etag and _matches(environ.get("HTTP_IF_NONE_MATCH", ""), entry.etag):
            kept = [(name, value) for name, value in entry.headers
                    if name.lower() in ("etag", "vary", "cache-control", "last-modified")]
            start_response("304 NOT MODIFIED", [*kept, age])
            return [b""]
        start_response(entry.status, [*entry.headers, age])
        return [entry.body]


def _matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2), as a GET's If-None-Match asks."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == wanted for candidate in if_none_match.split(","))
