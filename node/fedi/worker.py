"""Federation tasks of ``halles worker``: apply received activities, send deliveries, catch up."""

from __future__ import annotations

import logging

from sqlalchemy import select

from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi import delivery, sync
from node.fedi.handlers import apply
from node.fedi.models import InboxItem
from node.fedi.remote import RefusedObject
from node.worker import register_task

log = logging.getLogger("halles.inbox")
INBOX_BATCH = 200


def process_inbox(limit: int = INBOX_BATCH) -> int:
    """Apply pending inbox items in order, one savepoint each, one commit per batch."""
    query = select(InboxItem).where(InboxItem.state == "pending").order_by(InboxItem.id).limit(limit)
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    items = db.session.scalars(query).all()
    for item in items:
        try:
            with db.session.begin_nested():
                outcome = apply(item.activity)
            item.state = "ignored" if outcome.startswith("ignored") else "applied"
            item.error = outcome if item.state == "ignored" else None
        except RefusedObject as exc:
            item.state = "ignored"
            item.error = str(exc)[:1000]
        except Exception as exc:  # noqa: BLE001 - one bad activity must not stop the queue
            log.exception("inbox item %s failed", item.activity_id)
            item.state = "failed"
            item.error = f"{type(exc).__name__}: {exc}"[:1000]
        item.processed_at = utcnow()
    db.session.commit()
    return len(items)


register_task("inbox", process_inbox)
register_task("deliveries", delivery.send_due)
register_task("sync", sync.sync_due)
