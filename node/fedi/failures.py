"""What went wrong with federation, for an admin to see and act on: received activities whose
application failed (a bug, a constraint the data broke), and deliveries given up after
``HALLES_DELIVERY_MAX_ATTEMPTS`` (a peer down for a day or more). Both are kept (``inbox_retention``,
``outbox.prune_deliveries``) long enough to be looked at and sent round again once the cause is gone:
after an upgrade that fixes the bug, when the peer is back. Used by ``halles inbox failed|retry``,
``halles deliveries retry`` and the admin's peers page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from node.common.errors import NotFound
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi.models import Delivery, InboxItem, RemoteServer


@dataclass(frozen=True)
class FailedActivity:
    id: int
    activity_id: str
    activity_type: str
    #: The actor whose key signed the request that brought it.
    signer: str
    error: str | None
    received_at: datetime
    processed_at: datetime | None


def count_failed_activities() -> int:
    return db.session.scalar(select(func.count(InboxItem.id)).where(InboxItem.state == "failed")) or 0


def failed_activities(limit: int = 20) -> list[FailedActivity]:
    """The latest failed received activities, newest first."""
    rows = db.session.execute(
        select(InboxItem.id, InboxItem.activity_id, InboxItem.activity_type, InboxItem.signer, InboxItem.error,
               InboxItem.received_at, InboxItem.processed_at)
        .where(InboxItem.state == "failed").order_by(InboxItem.id.desc()).limit(limit))
    return [FailedActivity(*row) for row in rows]


def retry_failed_activities(item_ids: Sequence[int] | None = None) -> int:
    """Queue failed received activities for the worker again: all of them, or those ``item_ids`` (all
    of which must be failed ones, else NotFound naming the others and nothing changes). Returns how
    many; the caller commits."""
    query = update(InboxItem).where(InboxItem.state == "failed")
    if item_ids is not None:
        wanted = set(item_ids)
        found = set(db.session.scalars(select(InboxItem.id).where(InboxItem.id.in_(wanted),
                                                                  InboxItem.state == "failed")))
        missing = sorted(wanted - found)
        if missing:
            raise NotFound("no failed received activity with id " + ", ".join(map(str, missing)))
        query = query.where(InboxItem.id.in_(wanted))
    result = db.session.execute(query.values(state="pending", error=None, processed_at=None)
                                .execution_options(synchronize_session=False))
    return result.rowcount or 0


def _given_up() -> tuple[Any, ...]:
    """Deliveries given up, except those to a blocked domain (blocking gave them up on purpose)."""
    blocked = select(RemoteServer.domain).where(RemoteServer.blocked.is_(True))
    return Delivery.state == "dead", Delivery.domain.not_in(blocked)


def given_up_deliveries() -> list[tuple[str, int]]:
    """(domain, deliveries given up) for every domain not blocked that has some, the most first."""
    count = func.count(Delivery.id)
    rows = db.session.execute(select(Delivery.domain, count).where(*_given_up())
                              .group_by(Delivery.domain).order_by(count.desc(), Delivery.domain))
    return [(domain, total) for domain, total in rows]


def retry_given_up_deliveries(domain: str | None = None) -> int:
    """Queue deliveries given up again, from their first attempt (after a peer comes back): all of them,
    or those to ``domain``; never those to a blocked domain. Returns how many; the caller commits."""
    query = update(Delivery).where(*_given_up())
    if domain:
        query = query.where(Delivery.domain == domain)
    result = db.session.execute(query.values(state="pending", attempts=0, next_attempt_at=utcnow())
                                .execution_options(synchronize_session=False))
    return result.rowcount or 0
