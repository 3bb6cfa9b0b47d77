"""Sending the outbox: ``halles worker`` claims due deliveries, posts them (signed, double knock)
with a per-server concurrency limit, and reschedules failures with exponential backoff until the
retry budget is spent (dead letter; ``halles sync`` on the peer's side still catches it up).

Claiming is safe with several workers: on PostgreSQL rows are picked with ``FOR UPDATE SKIP
LOCKED`` and leased (``next_attempt_at`` pushed past the lease) in one short transaction, so no two
workers send the same delivery; SQLite has one writer at a time, which gives the same guarantee."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, update

from node.common.timeutil import utcnow as utcnow_seconds
from node.extensions import db
from node.fedi.models import Delivery, OutboxEntry
from node.fedi.transport import SendResult, post_activity

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
    ids = list(db.session.scalars(query))
    if not ids:
        db.session.rollback()
        return []
    db.session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(next_attempt_at=now + LEASE))
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


def send_due(limit: int = BATCH_SIZE) -> int:
    """Worker task: send what is due. Returns how many deliveries were attempted."""
    app = current_app._get_current_object()
    claimed = _claim(limit)
    if not claimed:
        return 0
    semaphores: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(PER_SERVER_LIMIT))
    lock = threading.Lock()

    def send(item: Claimed) -> tuple[Claimed, SendResult]:
        with lock:
            gate = semaphores[item.domain]
        with gate, app.app_context():
            try:
                result = post_activity(item.inbox_url, item.activity)
                db.session.commit()  # the signature flavour learned by the double knock
            except Exception as exc:  # noqa: BLE001 - a delivery failure is recorded, never raised
                db.session.rollback()
                result = SendResult(None, None, f"{type(exc).__name__}: {exc}")
            return item, result

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(claimed))) as pool:
        results = list(pool.map(send, claimed))
    _record(app, results)
    return len(results)


def _record(app: Flask, results: list[tuple[Claimed, SendResult]]) -> None:
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
