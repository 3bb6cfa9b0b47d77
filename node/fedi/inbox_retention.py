"""Retention of received activities: ``inbox_items`` rows do not pile up for ever.

Every verified activity is stored (about 2 KB) before the worker applies it, and its id is how a copy
received again is recognised. Once applied (or ignored) the row only serves that recognition, and
after ``HALLES_INBOX_RETENTION_DAYS`` it goes; a failed one is kept three times as long (an admin
looks at it to find out why), a pending one is never touched. Forgetting an id is safe because
nothing that can arrive again after that long changes anything:

- a request as it was sent cannot be replayed: its HTTP signature expires after 12 hours
  (``federation.clock.MAX_SIGNATURE_AGE``), and the retention is at least a day;
- an activity that reaches us from another server than its actor's (a forwarded one, which carries
  its actor's proof and no expiry) is only taken for Create, Update and Delete (``inbox.authenticate``),
  and those are applied by their dates: an older or equal version of an object is stale, a Delete
  older than the version held is stale (``remote.delete_remote_object``), a deleted object's tombstone
  stays. Catch-up copies (read from a peer's outbox) are verified by their proofs the same way.

The rows are walked in the order they were received, oldest first, so that a pass costs the rows it
deletes plus the old ones it keeps (pending or failed), and stops at the first row received after the
cutoff: no index beyond the primary key, nothing added to the ingest path."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi.models import InboxItem

log = logging.getLogger("halles.fedi")

#: Failed activities are kept this many times longer than applied or ignored ones.
FAILED_RETENTION_FACTOR = 3
#: Rows read (and at most deleted) per transaction.
PRUNE_BATCH = 1000
#: How often the worker prunes, and how many batches per round: a large backlog (the first run on an
#: old node) goes a little at a time, so applying activities never waits long behind it.
PRUNE_INTERVAL_SECONDS = 3600
PRUNE_BATCHES_PER_ROUND = 2


@dataclass(frozen=True)
class InboxPruned:
    #: Applied or ignored rows deleted, and failed ones.
    done: int
    failed: int
    days: float
    failed_days: float
    #: The pass stopped at its batch budget with old rows possibly left after this id (where the next
    #: pass goes on from); None: it reached the recent rows or the end.
    stopped_after: int | None = None


def inbox_retention_days() -> int:
    return int(current_app.config.get("HALLES_INBOX_RETENTION_DAYS", 30))


def prune_inbox(*, older_than_days: float | None = None, batch: int | None = None,
                max_batches: int | None = None, start_after: int = 0,
                now: datetime | None = None) -> InboxPruned:
    """Delete applied and ignored activities received more than ``older_than_days`` ago (default
    ``HALLES_INBOX_RETENTION_DAYS``) and failed ones received more than three times that long ago,
    ``batch`` rows read per transaction (default PRUNE_BATCH), from the row after id ``start_after``.
    ``max_batches`` bounds the work of one call (its result says where to go on). Commits."""
    days = float(inbox_retention_days() if older_than_days is None else older_than_days)
    batch = batch or PRUNE_BATCH
    now = now or utcnow()
    done_before = now - timedelta(days=days)
    failed_before = now - timedelta(days=days * FAILED_RETENTION_FACTOR)
    counts = {"done": 0, "failed": 0}
    after, batches = start_after, 0
    while max_batches is None or batches < max_batches:
        rows = db.session.execute(
            select(InboxItem.id, InboxItem.state, InboxItem.received_at)
            .where(InboxItem.id > after).order_by(InboxItem.id).limit(batch)).all()
        batches += 1
        if not rows:
            db.session.rollback()
            return InboxPruned(counts["done"], counts["failed"], days, days * FAILED_RETENTION_FACTOR)
        doomed: list[int] = []
        reached_recent = False
        for item_id, state, received_at in rows:
            if received_at >= done_before:
                # Ids follow arrival: every later row is (within seconds) as recent.
                reached_recent = True
                break
            if state in ("applied", "ignored"):
                doomed.append(item_id)
                counts["done"] += 1
            elif state == "failed" and received_at < failed_before:
                doomed.append(item_id)
                counts["failed"] += 1
        if doomed:
            db.session.execute(delete(InboxItem).where(InboxItem.id.in_(doomed))
                               .execution_options(synchronize_session=False))
            db.session.commit()
        else:
            db.session.rollback()
        if reached_recent or len(rows) < batch:
            return InboxPruned(counts["done"], counts["failed"], days, days * FAILED_RETENTION_FACTOR)
        after = rows[-1][0]
    return InboxPruned(counts["done"], counts["failed"], days, days * FAILED_RETENTION_FACTOR, stopped_after=after)


def prune_due() -> int:
    """Worker task: once an hour, and every round while a backlog remains, delete received activities
    past their retention. Returns the rows deleted."""
    app = current_app._get_current_object()
    state = app.extensions.setdefault("halles_inbox_pruning", {"next": 0.0, "after": 0})
    if time.monotonic() < state["next"]:
        return 0
    pruned = prune_inbox(max_batches=PRUNE_BATCHES_PER_ROUND, start_after=state["after"])
    if pruned.stopped_after is None:  # done: the next pass starts from the oldest row in an hour
        state["next"], state["after"] = time.monotonic() + PRUNE_INTERVAL_SECONDS, 0
    else:  # a backlog: go on from there next round
        state["next"], state["after"] = 0.0, pruned.stopped_after
    removed = pruned.done + pruned.failed
    if removed:
        log.info("pruned %d received activities older than %g days and %d failed ones older than %g days",
                 pruned.done, pruned.days, pruned.failed, pruned.failed_days)
    return removed
