"""Sending the outbox: ``halles worker`` claims due deliveries, posts them (signed, double knock)
with a per-server concurrency limit, and reschedules transient failures (timeouts, connection errors,
5xx, 429) with exponential backoff, or the server's Retry-After, until the retry budget is spent (dead
letter; ``halles sync`` on the peer's side still catches it up). Failures that no retry can mend (an
address the safe-fetch policy refuses, a 4xx such as 400, 404 or 410) are dead at once, with the reason.

Claiming is safe with several workers: on PostgreSQL rows are picked with ``FOR UPDATE SKIP
LOCKED`` and leased (``next_attempt_at`` pushed past the lease) in one short transaction, so no two
workers send the same delivery; SQLite has one writer at a time, which gives the same guarantee."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from node.common.timeutil import utcnow as utcnow_seconds
from node.extensions import db
from node.fedi.models import Delivery, Follow, OutboxEntry, RemoteActor, RemoteServer
from node.fedi.outbox import PRUNE_BATCH, prune_deliveries
from node.fedi.transport import SendResult, post_activity, remember_flavour
from node.worker import register_task

log = logging.getLogger("halles.delivery")

#: A claimed delivery is not picked by another worker for this long (it is done well before).
LEASE = timedelta(minutes=2)
BATCH_SIZE = 200
MAX_PARALLEL = 16
PER_SERVER_LIMIT = 4
#: Rows looked at per delivery claimed: room to skip a busy server's backlog in the same query.
CANDIDATES_PER_SLOT = 5
MAX_BACKOFF = timedelta(hours=6)
#: Client errors that may pass on a later attempt; every other 4xx means the inbox is gone or refuses
#: this activity for good, and the delivery is given up at once. 401/403 come after the double knock
#: failed with both flavours, most often because the peer could not fetch our key at that moment (our
#: node was slow or down, its key cache was stale): worth a few retries. 408 and 425 are about timing,
#: 429 about volume (its Retry-After is honoured).
RETRIED_CLIENT_ERRORS = frozenset({401, 403, 408, 425, 429})


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


def _claim(limit: int) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries, never more per server than it has free slots in this
    process: a server whose slots are all taken (it is slow, or silent) keeps its queue in the
    database, where it holds no thread, and the deliveries behind it go out."""
    now = utcnow()
    with _in_flight_lock:
        in_flight = dict(_in_flight)
    busy = [domain for domain, count in in_flight.items() if count >= PER_SERVER_LIMIT]
    query = (
        select(Delivery.id, Delivery.domain)
        .where(Delivery.state == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit * CANDIDATES_PER_SLOT)
    )
    if busy:
        query = query.where(Delivery.domain.not_in(busy))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    taken: Counter[str] = Counter()
    candidates = []
    for delivery_id, domain in db.session.execute(query):
        if len(candidates) < limit and in_flight.get(domain, 0) + taken[domain] < PER_SERVER_LIMIT:
            taken[domain] += 1
            candidates.append(delivery_id)
    if not candidates:
        db.session.rollback()
        return []
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
        return []
    rows = db.session.execute(
        select(Delivery.id, Delivery.inbox_url, Delivery.domain, OutboxEntry.activity, OutboxEntry.id)
        .join(OutboxEntry, Delivery.outbox_entry_id == OutboxEntry.id)
        .where(Delivery.id.in_(ids))
    ).all()
    db.session.commit()
    return [Claimed(*row) for row in rows]


def _known_flavours(domains: set[str]) -> dict[str, str]:
    """Signature flavour each of these servers accepted last time (double knock), when known."""
    return {domain: flavour for domain, flavour in db.session.execute(
        select(RemoteServer.domain, RemoteServer.signature_flavour).where(RemoteServer.domain.in_(domains)))
        if flavour}


def _backoff(app: Flask, attempts: int) -> timedelta:
    base = float(app.config.get("HALLES_DELIVERY_BACKOFF_SECONDS", 30))
    return min(MAX_BACKOFF, timedelta(seconds=base * 2 ** max(0, attempts - 1)))


#: Threads live as long as the worker. Deliveries in flight (queued or running) are counted per
#: server: ``_claim`` gives a server at most PER_SERVER_LIMIT at a time, so a slow or silent one
#: holds at most that many threads, each for at most ``transport.TOTAL_DEADLINE``.
_executor: ThreadPoolExecutor | None = None
_in_flight: Counter[str] = Counter()
_in_flight_lock = threading.Lock()
#: At most this many deliveries queued or running in this process (well within the lease).
MAX_IN_FLIGHT = MAX_PARALLEL * 4
#: A round waits this long for its deliveries, then returns; stragglers (their rows stay leased
#: meanwhile) count as work still being done, and the next round records their outcome.
ROUND_WAIT_SECONDS = 0.5


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="halles-delivery")
    return _executor


def send_due(limit: int = BATCH_SIZE) -> int:
    """Worker task: start what is due. Returns how many deliveries were started plus those of this
    app still in flight (so the worker loop, and tests waiting for quiet, know work goes on)."""
    app = current_app._get_current_object()
    with _in_flight_lock:
        room = MAX_IN_FLIGHT - sum(_in_flight.values())
        futures: set[Future] = app.extensions.setdefault("halles_deliveries_in_flight", set())
        finished: deque[tuple[Claimed, SendResult]] = app.extensions.setdefault("halles_deliveries_finished", deque())
    _record_finished(app, finished)  # stragglers of earlier rounds
    claimed = _claim(min(limit, room)) if room > 0 else []
    # Looked up here, once: a thread reading the database holds a pooled connection through its whole
    # HTTP exchange, and sixteen of them exhausted the pool (every other query then waited).
    flavours = _known_flavours({item.domain for item in claimed}) if claimed else {}
    db.session.commit()  # end the read: nothing is held while the round waits for its deliveries
    bodies: dict[int, bytes] = {}

    def send(item: Claimed) -> None:
        # The threads only send; the round records every outcome in one transaction afterwards.
        # Sixteen threads each committing its own outcome queued on SQLite's single write lock (its
        # busy handler sleeps milliseconds at a time) and paid an fsync apiece.
        result = SendResult(None, None, "the delivery thread stopped before sending")
        try:
            with app.app_context():
                try:
                    result = post_activity(item.inbox_url, bodies[item.entry_id],
                                           preferred=flavours.get(item.domain) or "rfc9421")
                except Exception as exc:  # noqa: BLE001 - a delivery failure is recorded, never raised
                    db.session.rollback()
                    result = SendResult(None, None, f"{type(exc).__name__}: {exc}")
        finally:
            finished.append((item, result))
            with _in_flight_lock:
                _in_flight[item.domain] -= 1
                if _in_flight[item.domain] <= 0:
                    del _in_flight[item.domain]

    started = []
    for item in claimed:
        if item.entry_id not in bodies:  # one activity to 200 inboxes is serialised once
            bodies[item.entry_id] = json.dumps(item.activity, ensure_ascii=False, separators=(",", ":")).encode()
        with _in_flight_lock:
            _in_flight[item.domain] += 1
        started.append(_pool().submit(send, item))
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
    return len(claimed) + still


def _record_finished(app: Flask, finished: deque[tuple[Claimed, SendResult]]) -> None:
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


def _record(app: Flask, results: list[tuple[Claimed, SendResult]]) -> None:
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


def _store_outcomes(app: Flask, results: list[tuple[Claimed, SendResult]]) -> None:
    max_attempts = int(app.config.get("HALLES_DELIVERY_MAX_ATTEMPTS", 12))
    if db.engine.dialect.name == "sqlite":
        # No fsync for outcomes: after a power loss a lost "sent" mark only means the delivery goes
        # out again when its lease ends, and receivers drop it as a duplicate (same activity id).
        db.session.execute(text("PRAGMA synchronous=NORMAL"))
    now = utcnow()
    gone: set[str] = set()
    ids = [claimed.id for claimed, _ in results]
    rows = {row.id: row for row in db.session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}
    for item, result in results:
        row = rows.get(item.id)
        if row is None:
            continue
        row.attempts += 1
        row.last_status = result.status
        if result.learned:
            remember_flavour(item.domain, result.learned)
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


def retry_dead(domain: str | None = None) -> int:
    """Put dead deliveries back in the queue (after a peer comes back)."""
    query = update(Delivery).where(Delivery.state == "dead")
    if domain:
        query = query.where(Delivery.domain == domain)
    result = db.session.execute(query.values(state="pending", attempts=0, next_attempt_at=utcnow_seconds()))
    db.session.commit()
    return result.rowcount or 0


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
