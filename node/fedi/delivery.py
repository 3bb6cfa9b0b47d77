"""Sending the outbox: ``halles worker`` claims due deliveries, posts them (signed, double knock)
with a per-server concurrency limit, and reschedules transient failures (timeouts, connection errors,
5xx, 429) with exponential backoff, or the server's Retry-After, until the retry budget is spent (dead
letter; ``halles sync`` on the peer's side still catches it up). Failures that no retry can mend (an
address the safe-fetch policy refuses, a 4xx such as 400, 404 or 410) are dead at once, with the reason.

Batches: an inbox whose actor document advertises ``batchDelivery`` (``identity.batch_delivery``,
another Halles node) gets its due deliveries in batches, an ``Announce`` whose ``object`` lists the
activities (FEP-4248 shape, received by ``inbox.receive_batch``): at most 100 activities and 2 MB a
request, or less when the inbox says so, in outbox order (a Create before its Update). Each line of
the answer settles its own delivery by the rule of a single delivery (2xx sent, 4xx dead or retried);
a failure of the whole request (401, 429, 5xx, timeout) applies to every delivery of the batch. A
chunk of one activity is posted alone. An inbox that refuses a batch as such (400, 415, 422, or an
answer without one verdict per activity) gets single POSTs for ``BATCH_FALLBACK_SECONDS``; one that
answers 413 gets smaller batches (the size it names in "send at most N at a time", else half); their
deliveries are sent again at once, and that refused batch does not count as an attempt. Every other
inbox (Mastodon, Mobilizon, Gancio, Fedify, a Halles node that does not advertise batches) gets one
POST per delivery.

The per-server limit counts requests, not deliveries: a slow server holds at most PER_SERVER_LIMIT
threads, whether each carries one activity or a hundred. Each activity is serialised once per round
and the same bytes go alone or inside a batch, to every inbox.

Claiming is safe with several workers: on PostgreSQL rows are picked with ``FOR UPDATE SKIP
LOCKED`` and leased (``next_attempt_at`` pushed past the lease) in one short transaction, so no two
workers send the same delivery; SQLite has one writer at a time, which gives the same guarantee."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Text, case, cast, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from node.extensions import db
from node.fedi.identity import AS_CONTEXT, BATCH_TERM, NodeIdentity, load_identity
from node.fedi.inbox import MAX_BATCH_BYTES, MAX_BATCH_ITEMS
from node.fedi.keystore import batch_capability
from node.fedi.models import Delivery, Follow, OutboxEntry, RemoteActor, RemoteServer
from node.fedi.outbox import PRUNE_BATCH, prune_deliveries
from node.fedi.transport import SendResult, post_activity, post_batch, remember_flavour
from node.worker import register_task

log = logging.getLogger("halles.delivery")

#: A claimed delivery is not picked by another worker for this long (it is done well before).
LEASE = timedelta(minutes=2)
#: Requests started per round at most (a batch is one request).
BATCH_SIZE = 200
MAX_PARALLEL = 16
#: Requests in flight to one server at most (queued or running), batches or single activities.
PER_SERVER_LIMIT = 4
#: Rows looked at per request claimed: room to skip a busy server's backlog in the same query.
CANDIDATES_PER_SLOT = 5
MAX_BACKOFF = timedelta(hours=6)
#: Client errors that may pass on a later attempt; every other 4xx means the inbox is gone or refuses
#: this activity for good, and the delivery is given up at once. 401/403 come after the double knock
#: failed with both flavours, most often because the peer could not fetch our key at that moment (our
#: node was slow or down, its key cache was stale): worth a few retries. 408 and 425 are about timing,
#: 429 about volume (its Retry-After is honoured).
RETRIED_CLIENT_ERRORS = frozenset({401, 403, 408, 425, 429})
#: What an inbox's actor document says about batches is read again after this long.
BATCH_CAPABILITY_SECONDS = 60.0
#: An inbox that refused a batch as such gets single POSTs for this long (in this process), and one
#: that answered 413 keeps the smaller batch size it asked for as long.
BATCH_FALLBACK_SECONDS = 3600.0
#: Whole-request answers to a batch that mean "this inbox does not take batches" (a receiver that
#: reads the list as a malformed activity), not "these activities are refused": they go alone.
BATCH_NOT_UNDERSTOOD = frozenset({400, 415, 422})
_AT_MOST = re.compile(r"send at most (\d+) at a time")


def utcnow():
    """Naive UTC with microseconds: retry delays can be shorter than a second (tests, fast retries)."""
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Claimed:
    id: int
    inbox_url: str
    domain: str
    activity: dict[str, Any]
    entry_id: int = 0


@dataclass(frozen=True)
class BatchLimits:
    """What one batch to an inbox may carry: our limits, the inbox's advertised ones, and what it
    asked for in a 413, whichever is smallest."""

    max_items: int
    max_bytes: int


@dataclass
class Claim:
    deliveries: list[Claimed] = field(default_factory=list)
    #: Inboxes that get batches this round: their limits and how many requests they may use.
    batches: dict[str, tuple[BatchLimits, int]] = field(default_factory=dict)


@dataclass
class Outgoing:
    """One POST: a single activity, or a batch of several for one inbox."""

    inbox_url: str
    domain: str
    items: list[Claimed]
    body: bytes
    batch: bool = False


@dataclass
class Outcome:
    item: Claimed
    result: SendResult
    #: Set when this delivery was not really attempted: its batch was refused as a batch (400, 415,
    #: 422, 413...). It is due again at once, alone or in a smaller batch, and this is its note.
    resend: str | None = None


class BatchInboxes:
    """Per app and in memory: which inboxes take batches (read from their actors' documents, kept
    BATCH_CAPABILITY_SECONDS), those that refused one (single POSTs for BATCH_FALLBACK_SECONDS), and
    smaller sizes learned from a 413."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._capability: dict[str, tuple[float, BatchLimits | None]] = {}
        self._refused: dict[str, float] = {}
        self._smaller: dict[str, tuple[float, int]] = {}

    def limits(self, inboxes: set[str]) -> dict[str, BatchLimits]:
        """The inboxes among these that get batches now, with their limits (reads the database for
        those not known or not read for a while)."""
        now = self.clock()
        with self._lock:
            stale = {inbox for inbox in inboxes
                     if inbox not in self._capability or self._capability[inbox][0] <= now}
        if stale:
            advertised = _advertised(stale)
            with self._lock:
                if len(self._capability) > 10_000:
                    self._capability = {k: v for k, v in self._capability.items() if v[0] > now}
                for inbox in stale:
                    self._capability[inbox] = (now + BATCH_CAPABILITY_SECONDS, advertised.get(inbox))
        found = {}
        with self._lock:
            for inbox in inboxes:
                limits = self._capability.get(inbox, (0.0, None))[1]
                if limits is None or self._refused.get(inbox, 0.0) > now:
                    continue
                smaller = self._smaller.get(inbox)
                if smaller is not None and smaller[0] > now and smaller[1] < limits.max_items:
                    limits = BatchLimits(smaller[1], limits.max_bytes)
                if limits.max_items >= 2:
                    found[inbox] = limits
        return found

    def refuse(self, inbox: str) -> None:
        with self._lock:
            self._refused[inbox] = self.clock() + BATCH_FALLBACK_SECONDS

    def shrink(self, inbox: str, items: int) -> None:
        with self._lock:
            self._smaller[inbox] = (self.clock() + BATCH_FALLBACK_SECONDS, items)


def batch_inboxes(app: Flask) -> BatchInboxes:
    found = app.extensions.get("halles_batch_inboxes")
    if found is None:
        found = app.extensions.setdefault("halles_batch_inboxes", BatchInboxes())
    return found


def _advertised(inboxes: set[str]) -> dict[str, BatchLimits]:
    """Batch limits of the inboxes whose actor document advertises ``batchDelivery`` for them, within
    ours. Only documents that mention the term are read: a shared inbox behind which hundreds of
    Mastodon accounts follow costs one indexed lookup, not hundreds of documents."""
    found: dict[str, BatchLimits] = {}
    rows = db.session.execute(
        select(RemoteActor.inbox, RemoteActor.shared_inbox, RemoteActor.document)
        .where(or_(RemoteActor.shared_inbox.in_(inboxes), RemoteActor.inbox.in_(inboxes)),
               cast(RemoteActor.document, Text).contains(BATCH_TERM))
    )
    for own, shared, document in rows:
        for inbox in {own, shared} & inboxes:
            capability = batch_capability(document if isinstance(document, dict) else {}, inbox)
            if capability is not None:
                found[inbox] = BatchLimits(min(MAX_BATCH_ITEMS, capability.max_items or MAX_BATCH_ITEMS),
                                           min(MAX_BATCH_BYTES, capability.max_bytes or MAX_BATCH_BYTES))
    return found


def _claim(app: Flask, limit: int) -> Claim:
    """Lease due deliveries for up to ``limit`` requests, never more requests per server than it has
    free slots in this process: a server whose slots are all taken (it is slow, or silent) keeps its
    queue in the database, where it holds no thread, and the deliveries behind it go out. An inbox
    that takes batches is given its server's free slots, and up to a full batch for each."""
    now = utcnow()
    with _in_flight_lock:
        in_flight = dict(_in_flight)
    busy = [domain for domain, count in in_flight.items() if count >= PER_SERVER_LIMIT]
    query = (
        select(Delivery.id, Delivery.domain, Delivery.inbox_url)
        .where(Delivery.state == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit * CANDIDATES_PER_SLOT)
    )
    if busy:
        query = query.where(Delivery.domain.not_in(busy))
    postgres = db.engine.dialect.name == "postgresql"
    if postgres:
        query = query.with_for_update(skip_locked=True)
    rows = db.session.execute(query).all()
    batchable = batch_inboxes(app).limits({inbox for _id, _domain, inbox in rows}) if rows else {}
    used: Counter[str] = Counter()  # requests given to each server in this round
    requests = 0
    candidates: list[int] = []
    slots: dict[str, int] = {}  # batch inbox -> requests it may use
    servers: dict[str, str] = {}
    for delivery_id, domain, inbox in rows:
        if requests >= limit:
            break
        if in_flight.get(domain, 0) + used[domain] >= PER_SERVER_LIMIT:
            continue
        if inbox in batchable:
            if inbox in slots:
                continue  # its deliveries are picked below, in outbox order
            slots[inbox] = 1
            servers[inbox] = domain
        else:
            candidates.append(delivery_id)
        used[domain] += 1
        requests += 1
    for inbox, domain in servers.items():
        extra = max(0, min(PER_SERVER_LIMIT - in_flight.get(domain, 0) - used[domain], limit - requests))
        slots[inbox] += extra
        used[domain] += extra
        requests += extra
    if slots:
        candidates += _due_for_batches({inbox: count * batchable[inbox].max_items for inbox, count in slots.items()},
                                       now, lock=postgres)
    if not candidates:
        db.session.rollback()
        return Claim()
    # Only the rows this UPDATE really changed are ours: on SQLite two workers can read the same
    # candidates before either writes, and the second UPDATE then finds them leased already.
    ids = list(db.session.scalars(
        update(Delivery)
        .where(Delivery.id.in_(candidates), Delivery.state == "pending", Delivery.next_attempt_at <= now)
        .values(next_attempt_at=now + LEASE)
        .returning(Delivery.id)
    ))
    if not ids:
        db.session.commit()
        return Claim()
    leased = db.session.execute(
        select(Delivery.id, Delivery.inbox_url, Delivery.domain, Delivery.outbox_entry_id).where(Delivery.id.in_(ids))
    ).all()
    # Each activity is read once, however many inboxes it goes to.
    activities = dict(db.session.execute(
        select(OutboxEntry.id, OutboxEntry.activity)
        .where(OutboxEntry.id.in_({entry_id for *_rest, entry_id in leased}))
    ).all())
    db.session.commit()
    claimed = [Claimed(delivery_id, inbox, domain, activities[entry_id], entry_id)
               for delivery_id, inbox, domain, entry_id in leased]
    batches = {inbox: (batchable[inbox], count) for inbox, count in slots.items()}
    return Claim(claimed, batches)


def _due_for_batches(room: dict[str, int], now, *, lock: bool) -> list[int]:
    """Due deliveries of these inboxes, the first ``room[inbox]`` of each in outbox order. One
    statement for all of them; on PostgreSQL rows another worker holds are skipped (the window
    function is in a subquery: FOR UPDATE is not allowed beside one)."""
    number = func.row_number().over(partition_by=Delivery.inbox_url, order_by=Delivery.id).label("number")
    ranked = (
        select(Delivery.id, Delivery.inbox_url, number)
        .where(Delivery.state == "pending", Delivery.next_attempt_at <= now, Delivery.inbox_url.in_(list(room)))
        .subquery()
    )
    wanted = select(ranked.c.id).where(ranked.c.number <= case(room, value=ranked.c.inbox_url, else_=0))
    query = select(Delivery.id).where(Delivery.id.in_(wanted))
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list(db.session.scalars(query))


def _known_flavours(domains: set[str]) -> dict[str, str]:
    """Signature flavour each of these servers accepted last time (double knock), when known."""
    return {domain: flavour for domain, flavour in db.session.execute(
        select(RemoteServer.domain, RemoteServer.signature_flavour).where(RemoteServer.domain.in_(domains)))
        if flavour}


def _backoff(app: Flask, attempts: int) -> timedelta:
    base = float(app.config.get("HALLES_DELIVERY_BACKOFF_SECONDS", 30))
    return min(MAX_BACKOFF, timedelta(seconds=base * 2 ** max(0, attempts - 1)))


#: Threads live as long as the worker. Requests in flight (queued or running) are counted per
#: server: ``_claim`` gives a server at most PER_SERVER_LIMIT at a time, so a slow or silent one
#: holds at most that many threads, each for at most ``transport.TOTAL_DEADLINE``.
_executor: ThreadPoolExecutor | None = None
_in_flight: Counter[str] = Counter()
_in_flight_lock = threading.Lock()
#: At most this many requests queued or running in this process (well within the lease).
MAX_IN_FLIGHT = MAX_PARALLEL * 4
#: A round waits this long for its requests, then returns; stragglers (their rows stay leased
#: meanwhile) count as work still being done, and the next round records their outcome.
ROUND_WAIT_SECONDS = 0.5


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="halles-delivery")
    return _executor


def send_due(limit: int = BATCH_SIZE) -> int:
    """Worker task: start what is due (at most ``limit`` requests). Returns how many deliveries were
    started plus the requests of this app still in flight (so the worker loop, and tests waiting for
    quiet, know work goes on)."""
    app = current_app._get_current_object()
    with _in_flight_lock:
        room = MAX_IN_FLIGHT - sum(_in_flight.values())
        futures: set[Future] = app.extensions.setdefault("halles_deliveries_in_flight", set())
        finished: deque[Outcome] = app.extensions.setdefault("halles_deliveries_finished", deque())
    _record_finished(app, finished)  # stragglers of earlier rounds
    claim = _claim(app, min(limit, room)) if room > 0 else Claim()
    claimed = claim.deliveries
    # Looked up here, once: a thread reading the database holds a pooled connection through its whole
    # HTTP exchange, and sixteen of them exhausted the pool (every other query then waited).
    flavours = _known_flavours({item.domain for item in claimed}) if claimed else {}
    db.session.commit()  # end the read: nothing is held while the round waits for its deliveries
    bodies: dict[int, bytes] = {}
    for item in claimed:
        if item.entry_id not in bodies:  # one activity to 200 inboxes is serialised once
            bodies[item.entry_id] = json.dumps(item.activity, ensure_ascii=False, separators=(",", ":")).encode()
    outgoing, surplus = _requests(claim, bodies, load_identity(app) if claim.batches else None)
    if surplus:
        _release(surplus)

    def send(request: Outgoing) -> None:
        # The threads only send; the round records every outcome in one transaction afterwards.
        # Sixteen threads each committing its own outcome queued on SQLite's single write lock (its
        # busy handler sleeps milliseconds at a time) and paid an fsync apiece.
        outcomes: list[Outcome] = []
        try:
            with app.app_context():
                preferred = flavours.get(request.domain) or "rfc9421"
                try:
                    if request.batch:
                        result, answer = post_batch(request.inbox_url, request.body, preferred=preferred)
                        outcomes = _batch_outcomes(app, request, result, answer)
                    else:
                        outcomes = [Outcome(request.items[0],
                                            post_activity(request.inbox_url, request.body, preferred=preferred))]
                except Exception as exc:  # noqa: BLE001 - a delivery failure is recorded, never raised
                    db.session.rollback()
                    failed = SendResult(None, None, f"{type(exc).__name__}: {exc}")
                    outcomes = [Outcome(item, failed) for item in request.items]
        finally:
            if not outcomes:
                stopped = SendResult(None, None, "the delivery thread stopped before sending")
                outcomes = [Outcome(item, stopped) for item in request.items]
            finished.extend(outcomes)
            with _in_flight_lock:
                _in_flight[request.domain] -= 1
                if _in_flight[request.domain] <= 0:
                    del _in_flight[request.domain]

    started = []
    for request in outgoing:
        with _in_flight_lock:
            _in_flight[request.domain] += 1
        started.append(_pool().submit(send, request))
    with _in_flight_lock:
        futures.update(started)
        pending = {future for future in futures if not future.done()}
    if pending:
        wait(pending, timeout=ROUND_WAIT_SECONDS)
    with _in_flight_lock:
        # Counted before recording: one that finishes after this count has its outcome recorded
        # below or, if it comes even later, it was counted and the worker calls again.
        futures.difference_update({future for future in futures if future.done()})
        still = len(futures)
    _record_finished(app, finished)
    return len(claimed) - len(surplus) + still


def _requests(claim: Claim, bodies: dict[int, bytes],
              identity: NodeIdentity | None) -> tuple[list[Outgoing], list[int]]:
    """The POSTs of a round: one per delivery, except for inboxes that take batches, whose deliveries
    go in outbox order in chunks within their limits (items and bytes), one POST per chunk, a chunk
    of one posted alone. Chunks beyond the requests the inbox was given (large activities filled
    the bytes first) are not sent this round: their deliveries (returned) are released."""
    outgoing: list[Outgoing] = []
    surplus: list[int] = []
    by_inbox: dict[str, list[Claimed]] = {}
    for item in claim.deliveries:
        if item.inbox_url in claim.batches:
            by_inbox.setdefault(item.inbox_url, []).append(item)
        else:
            outgoing.append(Outgoing(item.inbox_url, item.domain, [item], bodies[item.entry_id]))
    for inbox, items in by_inbox.items():
        assert identity is not None
        limits, slots = claim.batches[inbox]
        # The receiver stores a batch in its order and applies what it stored in that order.
        items.sort(key=lambda item: (item.entry_id, item.id))
        head, tail = _envelope(identity)
        chunks = _chunks(items, bodies, limits, len(head) + len(tail))
        for chunk in chunks[:slots]:
            if len(chunk) == 1:
                outgoing.append(Outgoing(inbox, chunk[0].domain, chunk, bodies[chunk[0].entry_id]))
                continue
            head, tail = _envelope(identity)
            body = head + b",".join(bodies[item.entry_id] for item in chunk) + tail
            outgoing.append(Outgoing(inbox, chunk[0].domain, chunk, body, batch=True))
        surplus += [item.id for chunk in chunks[slots:] for item in chunk]
    return outgoing, surplus


def _envelope(identity: NodeIdentity) -> tuple[bytes, bytes]:
    """The bytes before and after the activities of a batch: ``{..., "object": [`` and ``]}``. The
    activities go in as they were serialised for single POSTs; every envelope has the same length."""
    head = json.dumps({"@context": AS_CONTEXT, "id": f"{identity.base_url}/batches/{uuid.uuid4()}",
                       "type": "Announce", "actor": identity.actor_url},
                      ensure_ascii=False, separators=(",", ":")).encode()
    return head[:-1] + b',"object":[', b"]}"


def _chunks(items: list[Claimed], bodies: dict[int, bytes], limits: BatchLimits, envelope: int) -> list[list[Claimed]]:
    chunks: list[list[Claimed]] = []
    current: list[Claimed] = []
    size = envelope
    for item in items:
        length = len(bodies[item.entry_id])
        if current and (len(current) >= limits.max_items or size + 1 + length > limits.max_bytes):
            chunks.append(current)
            current, size = [], envelope
        size += length + (1 if current else 0)  # the comma between two activities
        current.append(item)
    if current:
        chunks.append(current)
    return chunks


def _release(ids: list[int]) -> None:
    """Deliveries claimed but not sent this round are due again at once (their lease would hold them
    back for LEASE otherwise)."""
    try:
        db.session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.state == "pending")
                           .values(next_attempt_at=utcnow()))
        db.session.commit()
    except (OperationalError, IntegrityError):
        db.session.rollback()  # their lease ends in LEASE and they go out then
        log.warning("could not release %d deliveries left for the next round", len(ids))


def _batch_outcomes(app: Flask, request: Outgoing, result: SendResult, answer: Any) -> list[Outcome]:
    """What a batch's answer means for each of its deliveries."""
    items = request.items
    if result.ok:
        verdicts = _verdicts(answer, items)
        if verdicts is not None:
            return [Outcome(item, SendResult(status, result.flavour,
                                             None if 200 <= status < 300 else f"HTTP {status} {detail or ''}".strip(),
                                             learned=result.learned))
                    for item, (status, detail) in zip(items, verdicts, strict=True)]
        note = f"HTTP {result.status} to a batch without one verdict per activity: sent alone from now on"
        batch_inboxes(app).refuse(request.inbox_url)
    elif result.status in BATCH_NOT_UNDERSTOOD:
        note = f"the inbox refused a batch ({result.error or result.status}): sent alone from now on"
        batch_inboxes(app).refuse(request.inbox_url)
    elif result.status == 413:
        said = _AT_MOST.search(result.error or "")
        smaller = int(said.group(1)) if said and int(said.group(1)) < len(items) else len(items) // 2
        note = (f"the inbox refused a batch of {len(items)} as too large (HTTP 413): sent again at most "
                f"{smaller} at a time")
        batch_inboxes(app).shrink(request.inbox_url, max(1, smaller))
    else:
        return [Outcome(item, result) for item in items]
    log.info("batch of %d to %s: %s", len(items), request.inbox_url, note)
    return [Outcome(item, result, resend=note) for item in items]


def _verdicts(answer: Any, items: list[Claimed]) -> list[tuple[int, str | None]] | None:
    """(status, detail) for each activity from a batch's answer, in order; None when the answer does
    not give one well-formed verdict per activity (the receiver did not treat it as a batch)."""
    lines = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(lines, list) or len(lines) != len(items):
        return None
    verdicts = []
    for line, item in zip(lines, items, strict=True):
        if not isinstance(line, dict):
            return None
        status = line.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status < 600:
            return None
        if line.get("id") not in (None, item.activity.get("id")):
            return None
        detail = line.get("detail")
        verdicts.append((status, None if detail is None else str(detail)[:500]))
    return verdicts


def _record_finished(app: Flask, finished: deque[Outcome]) -> None:
    results = []
    while finished:
        results.append(finished.popleft())
    if not results:
        return
    try:
        _record(app, results)
    except Exception:  # noqa: BLE001 - the leases expire and these deliveries are sent again
        db.session.rollback()
        log.exception("could not record the outcome of %d deliveries", len(results))


def _record(app: Flask, results: list[Outcome]) -> None:
    """Store outcomes; retried a few times when SQLite is busy or two workers add the same server."""
    for attempt in range(5):
        try:
            _store_outcomes(app, results)
            return
        except (OperationalError, IntegrityError):
            db.session.rollback()
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def _store_outcomes(app: Flask, results: list[Outcome]) -> None:
    max_attempts = int(app.config.get("HALLES_DELIVERY_MAX_ATTEMPTS", 12))
    if db.engine.dialect.name == "sqlite":
        # No fsync for outcomes: after a power loss a lost "sent" mark only means the delivery goes
        # out again when its lease ends, and receivers drop it as a duplicate (same activity id).
        db.session.execute(text("PRAGMA synchronous=NORMAL"))
    now = utcnow()
    gone: set[str] = set()
    ids = [outcome.item.id for outcome in results]
    rows = {row.id: row for row in db.session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}
    learned: set[tuple[str, str]] = set()
    for outcome in results:
        item, result = outcome.item, outcome.result
        row = rows.get(item.id)
        if row is None:
            continue
        if result.learned and (item.domain, result.learned) not in learned:
            learned.add((item.domain, result.learned))  # once per server, not per activity of a batch
            remember_flavour(item.domain, result.learned)
        row.last_status = result.status
        if outcome.resend is not None:
            row.last_error = outcome.resend[:1000]
            row.next_attempt_at = now
            continue
        row.attempts += 1
        if result.ok:
            row.state = "sent"
            row.sent_at = now
            row.last_error = None
            continue
        permanent = is_permanent(result)
        error = result.error or "failed"
        row.last_error = (f"permanent, not retried: {error}" if permanent else error)[:1000]
        if permanent or row.attempts >= max_attempts:
            row.state = "dead"
            log.warning("delivery %s to %s is dead: %s", row.id, row.inbox_url, row.last_error)
            if result.status == 410:
                gone.add(row.inbox_url)
        else:
            row.next_attempt_at = now + _retry_delay(app, row.attempts, result.retry_after)
    for inbox in gone:
        _inbox_gone(inbox, now)
    db.session.commit()


def is_permanent(result: SendResult) -> bool:
    """True when sending this delivery again cannot succeed: the address is refused by policy, or the
    inbox answered a client error other than those in RETRIED_CLIENT_ERRORS. Timeouts, connection
    errors, 5xx and DNS failures are transient."""
    if result.refused:
        return True
    status = result.status
    return status is not None and 400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS


def _retry_delay(app: Flask, attempts: int, retry_after: float | None) -> timedelta:
    """Our backoff, or longer when the server asked for it (Retry-After), never past MAX_BACKOFF: a
    server cannot park a delivery for a year with one header."""
    delay = _backoff(app, attempts)
    if retry_after is not None:
        delay = max(delay, min(MAX_BACKOFF, timedelta(seconds=retry_after)))
    return delay


def _inbox_gone(inbox: str, now) -> None:
    """410 Gone: nothing more goes to this inbox. Its other pending deliveries die now rather than one
    410 at a time, and followers whose own inbox it is (not a server's shared inbox, which serves
    others too) are removed, as an Undo(Follow) would; they can follow again."""
    reason = "permanent, not retried: the inbox answered 410 Gone"
    db.session.execute(
        update(Delivery).where(Delivery.inbox_url == inbox, Delivery.state == "pending")
        .values(state="dead", last_error=reason)
    )
    actors = select(RemoteActor.id).where(
        RemoteActor.inbox == inbox, (RemoteActor.shared_inbox.is_(None)) | (RemoteActor.shared_inbox == inbox))
    removed = db.session.execute(
        update(Follow).where(Follow.direction == "incoming", Follow.state == "accepted", Follow.actor_id.in_(actors))
        .values(state="removed", decided_at=now)
    ).rowcount
    if removed:
        log.warning("inbox %s is gone (410): %d follower(s) removed", inbox, removed)


#: How often the worker deletes old delivery rows (retention: ``outbox.prune_deliveries``).
PRUNE_INTERVAL_SECONDS = 3600
#: Batches per worker round: a large backlog (the first run on an old node) goes a little at a time,
#: round after round, so sending and applying activities never wait long behind it.
PRUNE_BATCHES_PER_ROUND = 2


def prune_due() -> int:
    """Worker task: once an hour, and every round while a backlog remains, delete sent and dead
    deliveries past their retention. Returns the rows deleted."""
    app = current_app._get_current_object()
    state = app.extensions.setdefault("halles_delivery_pruning", {"next": 0.0})
    if time.monotonic() < state["next"]:
        return 0
    pruned = prune_deliveries(max_batches=PRUNE_BATCHES_PER_ROUND)
    removed = pruned.sent + pruned.dead
    full = PRUNE_BATCHES_PER_ROUND * PRUNE_BATCH
    backlog = pruned.sent >= full or pruned.dead >= full
    state["next"] = 0.0 if backlog else time.monotonic() + PRUNE_INTERVAL_SECONDS
    if removed:
        log.info("pruned %d sent deliveries older than %g days and %d dead ones older than %g days",
                 pruned.sent, pruned.sent_days, pruned.dead, pruned.dead_days)
    return removed


# Registered here rather than beside the other federation tasks: this module is what the worker
# imports to send, and pruning belongs with the rows it sends.
register_task("delivery-pruning", prune_due)
