"""Federation tasks of ``halles worker``: apply received activities, send deliveries, catch up.

Applying the inbox. A claimed batch is walked in order. Consecutive activities that need no fetch (a
Create or Update of an embedded object by a known actor: nearly all of a festival burst) form a run,
applied in one transaction: what they are about is read up front in a few queries, each activity is
checked and decided in memory, the events and occurrences of the whole run are written at its end in a
few multi-row statements (``remote.RunLookups``), and the items are marked with one statement per
outcome; the items, the run's reads and its writes go through the driver's own cursor. The event objects
of a claimed batch are converted before any of this (``remote.prepare_events``): on SQLite, before the
write lock is taken. Any other activity (a Follow, a Delete, an Announce to fetch, an unknown actor) is applied on
its own through the ORM, as is every activity of a run that failed: an error or a refusal then rolls
back that activity alone. On SQLite a run is its own transaction, opened with ``BEGIN IMMEDIATE`` (the
write lock is taken before reading, so the run never fails on a lock upgrade, and the ids after the
largest are free for its new events); on PostgreSQL the batch is one transaction holding its claimed
rows (``FOR UPDATE SKIP LOCKED``), a run one savepoint in it, whose writes go to the server in
psycopg's pipeline mode while the run goes on (``_apply_run``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import current_app
from sqlalchemy import text

from node.common import jsontext
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi import delivery, inbox_retention, sync
from node.fedi.handlers import applies_without_fetching, apply, object_id
from node.fedi.models import InboxItem
from node.fedi.remote import (
    PreparedEvent,
    RefusedObject,
    RunLookups,
    batch_lookups,
    driver_pipeline,
    driver_rows,
    in_list,
    note_driver_write,
    prepare_events,
    run_writer,
)
from node.worker import register_task

log = logging.getLogger("halles.inbox")
#: Items claimed at once on SQLite. A run holds SQLite's single write lock while it applies, and the web
#: processes wait for it to store what they receive: 100 (one received batch) keeps that wait near 20 ms
#: where 200 made it 40, and measured faster with web and worker on both cores (ingest benchmark).
INBOX_BATCH = 100
#: Items claimed at once on PostgreSQL, which locks the claimed rows only: the web processes store what
#: they receive meanwhile. A claim's fixed round trips (claim, the run's lookups, ids, savepoint, marks,
#: commit: about 21) go to five times as many items: the apply 205 -> 157 us per activity (ingest
#: benchmark's activities, rounds of 500 alternating 100 and 500, medians of six).
INBOX_BATCH_POSTGRESQL = 500
#: PostgreSQL: a run sends what it has done every this many activities (``_apply_run``), and more often
#: towards its end (``_send_now``), down to every RUN_WRITE_TAIL.
RUN_WRITE_CHUNK = 100
RUN_WRITE_TAIL = 4
#: The worker reads and marks inbox items through the driver's own cursor, in the session's
#: transaction: the activity as its JSON text on SQLite (decoded once, here), decoded by psycopg on
#: PostgreSQL (``activity::text`` measured twice as slow: 3.2 ms for 100 items against 1.7), the mark's
#: time in the form SQLAlchemy binds it (``RunWriter.time``). ``{mark}``: the driver's placeholder.
_CLAIM_SQL = "SELECT id, {activity} FROM inbox_items WHERE state = 'pending'{shard} ORDER BY id LIMIT {mark}{lock}"
_PENDING_SQL = "SELECT id, {activity} FROM inbox_items WHERE id IN ({marks}) AND state = 'pending' ORDER BY id"
_ANY_PENDING_SQL = "SELECT 1 FROM inbox_items WHERE state = 'pending'{shard} LIMIT 1"
_MARK_SQL = "UPDATE inbox_items SET state = {mark}, error = {mark}, processed_at = {mark} WHERE id IN ({marks})"


class _Received:
    """The batch's activities as read: item id -> (what the driver gave: the JSON text on SQLite, the
    value psycopg decoded on PostgreSQL; the activity). A later read of the same value reuses the
    activity, and with it what was prepared from it."""

    def __init__(self) -> None:
        self.items: dict[int, tuple[str, dict[str, Any]]] = {}

    def decode(self, rows: Iterable[tuple[int, Any]]) -> list[tuple[int, dict[str, Any]]]:
        decoded = []
        items = self.items
        for item_id, stored in rows:
            known = items.get(item_id)
            if known is not None and known[0] == stored:
                activity = known[1]
            else:
                activity = jsontext.loads(stored) if isinstance(stored, str) else stored
                items[item_id] = (stored, activity)
            decoded.append((item_id, activity))
        return decoded


def _driver_sql(sql: str, **parts: str) -> tuple[str, bool]:
    postgres = db.engine.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    return sql.format(mark=mark, marks="{marks}", activity="activity", **parts), postgres


def _for_ids(sql: str, ids: list[int]) -> tuple[str, list[Any]]:
    """``sql`` (``IN ({marks})``) for the items ``ids``, and their parameters (``remote.in_list``)."""
    text, postgres = _driver_sql(sql)
    text, params = in_list(text, ids, postgres=postgres)
    return text, list(params)


def _nothing_pending(shard: str, params: list[Any]) -> bool:
    """True when no item waits (in this process's partition), asked on a pooled connection of its own.
    An idle worker polls the inbox again and again; through the session, each poll began and rolled
    back a transaction around its query (65 us on SQLite, against 10 for the query on its own). When
    the session has a transaction open, the claim looks in it as it always did."""
    if db.session.registry.has() and db.session().in_transaction():
        return False
    sql, _postgres = _driver_sql(_ANY_PENDING_SQL, shard=shard)
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchone() is None
        finally:
            cursor.close()
            # A read, ended by a commit rather than left to the pool's rollback: psycopg's own
            # rollback forgets every statement prepared on the connection (node.common.pgconnection
            # keeps them after a clean one; a commit never needed that).
            connection.commit()
    finally:
        connection.close()  # back to the pool


def process_inbox(limit: int | None = None) -> int:
    """Apply up to ``limit`` pending inbox items in order (default: INBOX_BATCH on SQLite,
    INBOX_BATCH_POSTGRESQL on PostgreSQL); returns how many were claimed.

    ``halles worker --processes N`` (PostgreSQL) gives each process a partition (``HALLES_WORKER_PARTITION``
    = (index, count)): items are split by the object they are about (``InboxItem.shard``, set when
    stored), so the Create and the Updates of one event are applied by one process, in order, and two
    processes never race to insert it.

    SQLite: the pending items are read and their event objects converted (``remote.prepare_events``:
    what depends on the activity alone) before the write lock is taken, so the web processes, which
    wait for that lock to store what they receive, wait for the database work only. Under the lock each
    run reads its items again (only those still pending, and an activity whose stored text changed
    meanwhile is decoded and converted again) and everything it decides on."""
    postgres = db.engine.dialect.name == "postgresql"
    if limit is None:
        limit = INBOX_BATCH_POSTGRESQL if postgres else INBOX_BATCH
    shard, params = "", [limit]
    if postgres:
        partition = current_app.config.get("HALLES_WORKER_PARTITION")
        if partition and partition[1] > 1:
            shard, params = " AND shard %% %s = %s", [partition[1], partition[0], limit]
    if _nothing_pending(shard, params[:-1]):
        return 0
    sql, _postgres = _driver_sql(_CLAIM_SQL, shard=shard, lock=" FOR UPDATE SKIP LOCKED" if postgres else "")
    received = _Received()
    rows = received.decode(driver_rows(sql, params))
    if not rows:
        db.session.rollback()
        return 0
    ids = [item_id for item_id, _activity in rows]
    prepared: dict[int, PreparedEvent] = {}

    def prepare() -> None:
        # PostgreSQL: the first activities' objects while the server answers the lookups; the others
        # are converted as the run applies them, while the server writes what it sent before.
        prepared.update(prepare_events(activity for _id, activity in (rows[:RUN_WRITE_CHUNK] if postgres else rows)))

    if postgres:
        # The claimed rows are locked by this transaction: no one else changes them until it ends. The
        # objects are converted while the server answers the first run's lookups.
        _walk(ids, run=_run_in_savepoint, alone=_apply_in_savepoint, begin=lambda: None,
              received=received, prepared=prepared, claimed=rows, meanwhile=prepare)
        db.session.commit()
    else:
        prepare()
        db.session.rollback()
        _walk(ids, run=_run_in_transaction, alone=_apply_alone, begin=_begin_immediate,
              received=received, prepared=prepared)
    return len(ids)


def _walk(ids: list[int], *, run: Callable[[list[tuple[int, dict]], RunLookups], None],
          alone: Callable[[int], None], begin: Callable[[], None], received: _Received | None = None,
          prepared: dict[int, PreparedEvent] | None = None,
          claimed: list[tuple[int, dict[str, Any]]] | None = None,
          meanwhile: Callable[[], None] | None = None) -> None:
    """Apply the items ``ids`` (ascending) in order: runs of activities that need no fetch with
    ``run``, the others one by one with ``alone``. What a run needs is read again after activities
    applied alone (they may have changed follows, blocks, actors, events...). ``received``: the
    activities read so far; ``prepared``: their event objects converted; ``claimed``: the pending rows
    as claimed, when nothing can have changed them since (PostgreSQL's locked rows); ``meanwhile``:
    work done while the server answers the first lookups (``RunLookups.prefetch``)."""
    received = received if received is not None else _Received()
    prepared = prepared if prepared is not None else {}
    remaining = ids
    rows = claimed
    while remaining:
        begin()
        if rows is None:
            rows = _pending(remaining, received)
        if not rows:
            db.session.rollback()
            return
        known = RunLookups(prepared)
        known.prefetch((activity for _id, activity in rows), meanwhile)
        meanwhile = None
        fast = [applies_without_fetching(activity, known) for _id, activity in rows]
        leading = next((index for index, value in enumerate(fast) if value != fast[0]), len(rows))
        if fast[0]:
            run(rows[:leading], known)
        else:
            if db.engine.dialect.name != "postgresql":
                db.session.rollback()  # SQLite: each of them opens its own transaction
            for item_id, _activity in rows[:leading]:
                alone(item_id)
        done = rows[leading - 1][0]
        remaining = [item_id for item_id in remaining if item_id > done]
        rows = None


def _pending(ids: list[int], received: _Received | None = None) -> list[tuple[int, dict[str, Any]]]:
    """The items ``ids`` still pending, in order, with their activities (decoded again only when their
    text is not the one ``received`` holds)."""
    sql, params = _for_ids(_PENDING_SQL, ids)
    return (received or _Received()).decode(driver_rows(sql, params))


def _apply_run(batch: list[tuple[int, dict[str, Any]]], known: RunLookups) -> None:
    """Apply a run and mark its items (processed at the same time), in the current transaction; raises
    on the first failure.

    PostgreSQL: the session's connection is in psycopg's pipeline mode meanwhile, and every
    ``RUN_WRITE_CHUNK`` activities what is done is sent: the server writes it while the
    next activities are converted and decided, instead of the run waiting for all its writes at the
    end (they are most of the server's work: its full-text trigger alone is about 30 us per event). A
    failure is raised when the pipeline ends at the latest, and the run is then applied item by item
    as before."""
    marks: dict[tuple[str, str | None], list[int]] = {}
    at = run_writer().time(utcnow())
    postgres = db.engine.dialect.name == "postgresql"
    with batch_lookups(known), driver_pipeline() as pipeline:
        last_use = _last_use(batch) if postgres else {}
        sent = 0
        for index, (item_id, activity) in enumerate(batch, start=1):
            marks.setdefault(_outcome_state(apply(activity)), []).append(item_id)
            if postgres and _send_now(index - sent, len(batch) - index):
                pipeline.resume()  # after a statement of the ORM's in an activity
                known.write_events(done=lambda ap_id, applied=index: last_use.get(ap_id, len(batch)) <= applied)
                _write_marks(marks, at)
                marks = {}
                sent = index
        pipeline.resume()
        known.write_events()
        db.session.flush()  # what the run wrote through the ORM (directory entries, forwarded re-shares)
        pipeline.resume()
        _write_marks(marks, at)
    note_driver_write()


def _send_now(unsent: int, left: int) -> bool:
    """PostgreSQL: whether a run sends its ``unsent`` activities' writes now, with ``left`` still to
    apply. Every RUN_WRITE_CHUNK, and in halves towards the end (50, 25, 13, 6, 4 of the last 100),
    so that the run ends waiting for the server to write the last few only, not the last hundred
    (about 60 us of server time each: 6 ms a run)."""
    return left > 0 and unsent >= min(RUN_WRITE_CHUNK, max(RUN_WRITE_TAIL, left))


def _last_use(batch: list[tuple[int, dict[str, Any]]]) -> dict[str, int]:
    """Object id -> the position (from 1) of the last activity of ``batch`` about it: an event written
    before the run ends must be one no later activity of it changes."""
    last: dict[str, int] = {}
    for index, (_item_id, activity) in enumerate(batch, start=1):
        target = object_id(activity.get("object"))
        if target:
            last[target] = index
    return last


def _write_marks(marks: dict[tuple[str, str | None], list[int]], at: Any) -> None:
    """Mark the items of ``marks`` (state, note) -> ids: one statement per outcome, "applied" for most."""
    cursor = db.session.connection().connection.cursor()
    try:
        for (state, note), item_ids in marks.items():
            sql, params = _for_ids(_MARK_SQL, item_ids)
            cursor.execute(sql, [state, note, at, *params])
    finally:
        cursor.close()


def _run_in_transaction(batch: list[tuple[int, dict[str, Any]]], known: RunLookups) -> None:
    """SQLite: the run in the transaction ``_begin_immediate`` opened; on any failure each of its
    items is applied alone."""
    try:
        _apply_run(batch, known)
        db.session.commit()
    except Exception:  # noqa: BLE001 - a failing item is found and marked by applying them one by one
        log.debug("run of %d inbox items failed; applying them one by one", len(batch), exc_info=True)
        db.session.rollback()
        for item_id, _activity in batch:
            _apply_alone(item_id)


def _run_in_savepoint(batch: list[tuple[int, dict[str, Any]]], known: RunLookups) -> None:
    """PostgreSQL: the run in one savepoint of the batch's transaction; on any failure each of its
    items is applied in its own savepoint."""
    try:
        with db.session.begin_nested():
            _apply_run(batch, known)
    except Exception:  # noqa: BLE001 - as above
        log.debug("run of %d inbox items failed; applying them one by one", len(batch), exc_info=True)
        for item_id, _activity in batch:
            _apply_in_savepoint(item_id)


def _begin_immediate() -> None:
    """SQLite: take the write lock before reading (a read transaction that later writes fails at
    once when the web process wrote meanwhile). The worker's commits need not wait for the disk: WAL
    keeps them atomic and in order, and after a power loss the last ones roll back *with* the
    "applied" mark of their items, which are then pending again and applied once more. The web
    process, whose 202 promises the activity is stored, keeps the full setting: this PRAGMA only
    concerns the worker's connection."""
    db.session.rollback()
    connection = db.session.connection()
    connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _apply_in_savepoint(item_id: int) -> None:
    item = db.session.get(InboxItem, item_id)
    if item is None or item.state != "pending":
        return
    try:
        with db.session.begin_nested():
            outcome = apply(item.activity)
        _mark(item, outcome)
    except RefusedObject as exc:
        _mark(item, f"ignored: {exc}", refused=True)
    except Exception as exc:  # noqa: BLE001 - one bad activity must not stop the queue
        log.exception("inbox item %s failed", item.activity_id)
        _mark(item, f"{type(exc).__name__}: {exc}", failed=True)
    db.session.flush()


def _apply_alone(item_id: int) -> None:
    """SQLite: one item in its own transaction (see ``_begin_immediate`` for the PRAGMA)."""
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


def _outcome_state(outcome: str, *, refused: bool = False, failed: bool = False) -> tuple[str, str | None]:
    if failed:
        return "failed", outcome[:1000]
    if refused or outcome.startswith("ignored"):
        return "ignored", outcome.removeprefix("ignored: ")[:1000]
    return "applied", None


def _mark(item: InboxItem, outcome: str, *, refused: bool = False, failed: bool = False) -> None:
    item.state, item.error = _outcome_state(outcome, refused=refused, failed=failed)
    item.processed_at = utcnow()


register_task("inbox", process_inbox)
register_task("deliveries", delivery.send_due)
register_task("sync", sync.sync_due)
register_task("inbox-pruning", inbox_retention.prune_due)
