"""Federation tasks of ``halles worker``: apply received activities, send deliveries, catch up."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import func, select, text

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
    """Apply pending inbox items in order. On PostgreSQL: a savepoint per item and one commit per
    batch (fast, and a failing item rolls back alone). On SQLite: a commit per item, because a
    savepoint that reads then writes fails at once there when the web process wrote meanwhile.

    ``halles worker --processes N`` (PostgreSQL) gives each process a partition (``HALLES_WORKER_PARTITION``
    = (index, count)): items are split by the object they are about, so the Create and the Updates of
    one event are applied by one process, in order, and two processes never race to insert it."""
    query = select(InboxItem).where(InboxItem.state == "pending").order_by(InboxItem.id).limit(limit)
    postgres = db.engine.dialect.name == "postgresql"
    if postgres:
        query = query.with_for_update(skip_locked=True)
        partition = current_app.config.get("HALLES_WORKER_PARTITION")
        if partition and partition[1] > 1:
            query = query.where(func.abs(func.hashtext(_object_key())) % partition[1] == partition[0])
    ids = list(db.session.scalars(query.with_only_columns(InboxItem.id)))
    if not postgres:
        db.session.rollback()
        for item_id in ids:
            _apply_alone(item_id)
        return len(ids)
    for item in db.session.scalars(select(InboxItem).where(InboxItem.id.in_(ids)).order_by(InboxItem.id)):
        try:
            with db.session.begin_nested():
                outcome = apply(item.activity)
            _mark(item, outcome)
        except RefusedObject as exc:
            _mark(item, f"ignored: {exc}", refused=True)
        except Exception as exc:  # noqa: BLE001 - one bad activity must not stop the queue
            log.exception("inbox item %s failed", item.activity_id)
            _mark(item, f"{type(exc).__name__}: {exc}", failed=True)
    db.session.commit()
    return len(ids)


def _object_key():
    """SQL: the id of the object an inbox item is about (embedded or by reference), else its own id."""
    activity = InboxItem.activity
    return func.coalesce(activity["object"]["id"].as_string(), activity["object"].as_string(), InboxItem.activity_id)


def _apply_alone(item_id: int) -> None:
    # The worker's commits need not wait for the disk: WAL keeps them atomic and in order, and after
    # a power loss the last ones roll back *with* the "applied" mark of their item, which is then
    # pending again and applied once more. A commit per item then costs no fsync (3 ms on a VM disk,
    # the whole apply budget). The web process, whose 202 promises the activity is stored, keeps
    # the full setting: this PRAGMA only concerns the worker's connection.
    db.session.execute(text("PRAGMA synchronous=NORMAL"))
    item = db.session.get(InboxItem, item_id)
    if item is None or item.state != "pending":
        return
    try:
        outcome = apply(item.activity)
        _mark(item, outcome)
        db.session.commit()
        return
    except RefusedObject as exc:
        db.session.rollback()
        note, refused, failed = f"ignored: {exc}", True, False
    except Exception as exc:  # noqa: BLE001 - one bad activity must not stop the queue
        db.session.rollback()
        log.exception("inbox item %s failed", item_id)
        note, refused, failed = f"{type(exc).__name__}: {exc}", False, True
    item = db.session.get(InboxItem, item_id)
    _mark(item, note, refused=refused, failed=failed)
    db.session.commit()


def _mark(item: InboxItem, outcome: str, *, refused: bool = False, failed: bool = False) -> None:
    if failed:
        item.state, item.error = "failed", outcome[:1000]
    elif refused or outcome.startswith("ignored"):
        item.state, item.error = "ignored", outcome.removeprefix("ignored: ")[:1000]
    else:
        item.state, item.error = "applied", None
    item.processed_at = utcnow()


register_task("inbox", process_inbox)
register_task("deliveries", delivery.send_due)
register_task("sync", sync.sync_due)
