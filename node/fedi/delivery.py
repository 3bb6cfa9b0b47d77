"""Sending the outbox: ``halles worker`` claims due deliveries, posts them (signed, double knock)
with a per-server concurrency limit, and reschedules failures with exponential backoff until the
retry budget is spent (dead letter; ``halles sync`` on the peer's side still catches it up).

Claiming is safe with several workers: on PostgreSQL rows are picked with ``FOR UPDATE SKIP
LOCKED`` and leased (``next_attempt_at`` pushed past the lease) in one short transaction, so no two
workers send the same delivery; SQLite has one writer at a time, which gives the same guarantee."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from node.common.timeutil import utcnow as utcnow_seconds
from node.extensions import db
from node.fedi.models import Delivery, OutboxEntry
from node.fedi.transport import SendResult, post_activity, remember_flavour

log = logging.getLogger("halles.delivery")

#: A claimed delivery is not picked by another worker for this long (it is done well before).
LEASE = timedelta(minutes=2)
BATCH_SIZE = 200
MAX_PARALLEL = 16
PER_SERVER_LIMIT = 4
MAX_BACKOFF = timedelta(hours=6)
#: Answers after which retrying is pointless: the inbox is gone or refuses the activity for good.
PERMANENT_FAILURES = {400, 404, 405, 410, 413, 422}


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


def _claim(limit: int) -> list[Claimed]:
    now = utcnow()
    query = (
        select(Delivery.id)
        .where(Delivery.state == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates = list(db.session.scalars(query))
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
        select(Delivery.id, Delivery.inbox_url, Delivery.domain, OutboxEntry.activity)
        .join(OutboxEntry, Delivery.outbox_entry_id == OutboxEntry.id)
        .where(Delivery.id.in_(ids))
    ).all()
    db.session.commit()
    return [Claimed(*row) for row in rows]


def _backoff(app: Flask, attempts: int) -> timedelta:
    base = float(app.config.get("HALLES_DELIVERY_BACKOFF_SECONDS", 30))
    return min(MAX_BACKOFF, timedelta(seconds=base * 2 ** max(0, attempts - 1)))


#: Threads and per-server gates live as long as the worker: a slow server's deliveries keep their
#: slots across rounds instead of a new round opening more connections to it.
_executor: ThreadPoolExecutor | None = None
_gates: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(PER_SERVER_LIMIT))
_gates_lock = threading.Lock()
#: How long a round waits for its deliveries; stragglers (a server answering one byte per second)
#: finish in the background and record their own outcome, their rows stay leased meanwhile.
ROUND_WAIT_SECONDS = 10


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="halles-delivery")
    return _executor


def send_due(limit: int = BATCH_SIZE) -> int:
    """Worker task: send what is due. Returns how many deliveries were started."""
    app = current_app._get_current_object()
    claimed = _claim(limit)
    if not claimed:
        return 0

    def send(item: Claimed) -> None:
        with _gates_lock:
            gate = _gates[item.domain]
        with gate, app.app_context():
            try:
                result = post_activity(item.inbox_url, item.activity)
            except Exception as exc:  # noqa: BLE001 - a delivery failure is recorded, never raised
                db.session.rollback()
                result = SendResult(None, None, f"{type(exc).__name__}: {exc}")
            try:
                _record(app, [(item, result)])
            except Exception:  # noqa: BLE001 - the lease expires and the delivery is retried
                db.session.rollback()
                log.exception("could not record the outcome of delivery %s", item.id)

    futures = [_pool().submit(send, item) for item in claimed]
    wait(futures, timeout=ROUND_WAIT_SECONDS)
    return len(claimed)


def _record(app: Flask, results: list[tuple[Claimed, SendResult]]) -> None:
    """Store outcomes; retried a few times when SQLite is busy or two threads add the same server."""
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
    now = utcnow()
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
        row.last_error = (result.error or "failed")[:1000]
        if result.status in PERMANENT_FAILURES or row.attempts >= max_attempts:
            row.state = "dead"
            log.warning("delivery %s to %s is dead: %s", row.id, row.inbox_url, row.last_error)
        else:
            row.next_attempt_at = now + _backoff(app, row.attempts)
    db.session.commit()


def retry_dead(domain: str | None = None) -> int:
    """Put dead deliveries back in the queue (after a peer comes back)."""
    query = update(Delivery).where(Delivery.state == "dead")
    if domain:
        query = query.where(Delivery.domain == domain)
    result = db.session.execute(query.values(state="pending", attempts=0, next_attempt_at=utcnow_seconds()))
    db.session.commit()
    return result.rowcount or 0
