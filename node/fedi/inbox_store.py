"""Storing what the inbox verified: one ``INSERT ... ON CONFLICT (activity_id) DO NOTHING RETURNING``
per activity (``store``) or per batch (``store_many``, ``BatchStore``), committed before the 202. The
unique activity id decides what is a duplicate, even for two copies arriving at the same moment; a
platform that reuses ids for different activities (Gancio) gets its new body stored under a derived key
(``compat.inbox_key``). Through the driver's own connection and cursor: SQLAlchemy's execution machinery
cost more than the insert itself. Nothing is verified here (node/fedi/inbox.py does that first), and
nothing is applied (the worker does)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from node.common import jsontext
from node.common.pgconnection import pooled_connection
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi import compat
from node.fedi.models import InboxItem, shard_of


@dataclass
class Received:
    #: The id of the stored inbox item (None for a duplicate or an activity that is not stored).
    item_id: int | None
    duplicate: bool
    #: A batch: the verdict on each of its activities, in order (``{"id", "status", "detail"?}``, the
    #: status that activity would have had alone: 202 stored, 200 duplicate, 4xx refused).
    results: list[dict[str, Any]] | None = None


#: One statement (the same SQL on SQLite and PostgreSQL but for the placeholders): a new activity is
#: stored and its id returned; a known activity id returns nothing.
_STORE_SQL = (
    "INSERT INTO inbox_items (activity_id, activity_type, signer, activity, state, received_at, shard) "
    "VALUES ({activity_id}, {activity_type}, {signer}, {activity}, 'pending', {received_at}, {shard}) "
    "ON CONFLICT (activity_id) DO NOTHING RETURNING id"
)
_STORE_FIELDS = ("activity_id", "activity_type", "signer", "activity", "received_at", "shard")
_INSERT_COLUMNS = ("activity_id", "activity_type", "signer", "activity", "state", "received_at", "shard")
#: The placeholder style each driver's own cursor takes (SQLAlchemy translates its own to qmark for
#: sqlite3, but sqlite3 also reads named placeholders from a dict).
_PLACEHOLDERS = {"pysqlite": ":{}", "psycopg": "%({})s", "psycopg2": "%({})s"}
#: SQLAlchemy's DateTime on SQLite stores this text; PostgreSQL reads it as a timestamp.
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


_STORED_SQL = "SELECT activity FROM inbox_items WHERE activity_id = {activity_id}"


def _statements() -> tuple[str, str]:
    """The insert and the duplicate lookup in the placeholder style of the driver, per app."""
    found = current_app.extensions.get("halles_inbox_store")
    if found is None:
        driver = db.engine.dialect.driver
        if driver not in _PLACEHOLDERS:
            raise RuntimeError(f"the inbox does not know the placeholders of the {driver} driver")
        names = {name: _PLACEHOLDERS[driver].format(name) for name in _STORE_FIELDS}
        found = current_app.extensions.setdefault("halles_inbox_store",
                                                  (_STORE_SQL.format(**names), _STORED_SQL.format(**names)))
    return found


def _run(driver: Any, sql: str, params: dict[str, Any]) -> Any:
    """The first column of the first row, or None."""
    cursor = driver.cursor()
    try:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return row[0] if row else None


def store(activity: dict[str, Any], signer: str) -> Received:
    """Store a verified activity, durably (committed before the 202). A known activity id is a
    duplicate when the body is the same; a platform that reuses ids for different activities
    (Gancio) gets the new body stored under a derived key (``compat.inbox_key``).

    Through the driver's own connection and cursor: SQLAlchemy's connection and execution machinery
    cost more than this insert and its commit (0.15 ms against 0.06 measured on SQLite). On
    PostgreSQL the connection is in autocommit mode meanwhile: the insert is its own transaction, one
    round trip instead of three (BEGIN, INSERT, COMMIT), and as durable."""
    row = _row(activity, signer)
    insert_sql, stored_sql = _statements()
    with _driver_connection(insert_sql, row) as driver:
        return _store(driver, activity, row, insert_sql, stored_sql)


def store_many(activities: list[dict[str, Any]], signer: str, *, encoded: list[str] | None = None) -> list[Received]:
    """Store verified activities (a batch) with one multi-row ``INSERT ... ON CONFLICT DO NOTHING
    RETURNING`` and one commit; one verdict per activity, in order. ``encoded``: their JSON text, when
    the caller serialised them already. The ids it did not insert (already
    known) go through ``store``'s duplicate rule one by one; an id repeated in the batch is a duplicate."""
    if not activities:
        return []
    texts = encoded if encoded is not None else [None] * len(activities)
    received_at = utcnow().strftime(_TIME_FORMAT)  # one request: one time of receipt
    rows = [_row(activity, signer, text, received_at) for activity, text in zip(activities, texts, strict=True)]
    first_index: dict[str, int] = {}
    for index, row in enumerate(rows):
        first_index.setdefault(row["activity_id"], index)
    unique = [rows[index] for index in sorted(first_index.values())]
    many_sql, params = _insert_many(unique)
    with _driver_connection(many_sql, params) as driver:
        inserted = dict(_insert_when_free(driver, many_sql, params))
        driver.commit()
        return _verdicts(driver, activities, rows, first_index, inserted)


def _verdicts(driver: Any, activities: list[dict[str, Any]], rows: list[dict[str, Any]], first_index: dict[str, int],
              inserted: dict[str, int]) -> list[Received]:
    """One verdict per activity of a batch once its rows went in (``inserted``: activity id -> item id):
    a repeat of an id earlier in the batch is a duplicate, and an id the node knew already goes
    through ``store``'s duplicate rule, one by one."""
    insert_sql, stored_sql = _statements()
    verdicts = []
    for index, (activity, row) in enumerate(zip(activities, rows, strict=True)):
        if first_index[row["activity_id"]] != index:
            verdicts.append(Received(None, True))
        elif row["activity_id"] in inserted:
            verdicts.append(Received(inserted[row["activity_id"]], False))
        else:
            verdicts.append(_store(driver, activity, row, insert_sql, stored_sql))
    return verdicts


#: PostgreSQL: a batch's verified activities go to the server at least this many at a time
#: (``BatchStore``), but for the last ones.
STORE_CHUNK = 4


class BatchStore:
    """Stores the verified activities of one batch (``add`` each in turn), one verdict each, in order
    (``finish``), as ``store_many`` does; ``close`` always (it gives the connection back and rolls back
    what ``finish`` did not commit).

    On PostgreSQL the activities are sent while the next are verified, in one insert of a pipeline
    (psycopg's pipeline mode: sent without waiting for the answer) as soon as those waiting are as many
    as the activities left to verify (and at least ``STORE_CHUNK``): 50, 25, 13, 6, 4 and the last 2 of
    100. All go in one transaction, which ``finish`` commits. The server stores each part while the
    request verifies the next, ten times as long (40 against 400 us per activity), and the request
    waits at the end for the last few only, instead of one insert of all of them (5 ms for a batch of
    100 in the ingest benchmark, a tenth of the batch's time). On SQLite, in the process itself, there
    is nothing to overlap: ``store_many`` stores them at the end."""

    def __init__(self, signer: str) -> None:
        self.signer = signer
        self.activities: list[dict[str, Any]] = []
        self.texts: list[str] = []
        self.pipelined = db.engine.dialect.name == "postgresql"
        self.received_at = utcnow().strftime(_TIME_FORMAT)  # one request: one time of receipt
        self.rows: list[dict[str, Any]] = []
        #: activity id -> index of its first row: a later one is a duplicate within the batch.
        self.first_index: dict[str, int] = {}
        self.unsent: list[dict[str, Any]] = []
        self.cursors: list[Any] = []
        self.driver: Any = None
        self.pipeline = ExitStack()

    def add(self, activity: dict[str, Any], text: str, *, left: int = 0) -> None:
        """``activity`` verified (``text``: what to store); ``left``: how many the batch has after it."""
        self.activities.append(activity)
        self.texts.append(text)
        if not self.pipelined:
            return
        row = _row(activity, self.signer, text, self.received_at)
        self.rows.append(row)
        if row["activity_id"] not in self.first_index:
            self.first_index[row["activity_id"]] = len(self.rows) - 1
            self.unsent.append(row)
            if len(self.unsent) >= max(STORE_CHUNK, left):
                self._send()

    def _send(self) -> None:
        if not self.unsent:
            return
        sql, params = _insert_many(self.unsent)
        self.unsent = []
        if self.driver is None:
            self.driver = db.engine.raw_connection()
            self.pipeline.enter_context(self.driver.driver_connection.pipeline())
        cursor = self.driver.driver_connection.cursor()
        self.cursors.append(cursor)
        with _database_errors(sql, params):
            cursor.execute(sql, params)

    def finish(self) -> list[Received]:
        if not self.pipelined:
            return store_many(self.activities, self.signer, encoded=self.texts)
        if not self.activities:
            return []
        self._send()
        if db.session.registry.has() and db.session().in_transaction():
            db.session.commit()  # what verifying stored (an actor fetched for its key), as store_many does
        with _database_errors(_statements()[0], None):
            self.driver.driver_connection.commit()  # in the pipeline: the COMMIT sent, every answer awaited
            self.pipeline.close()
            inserted = dict(row for cursor in self.cursors for row in cursor.fetchall())
            return _verdicts(self.driver, self.activities, self.rows, self.first_index, inserted)

    def close(self) -> None:
        driver, self.driver = self.driver, None
        if driver is None:
            return
        try:
            with suppress(Exception):
                self.pipeline.close()  # after a failure: its error was raised already
            with suppress(Exception):
                driver.driver_connection.rollback()  # nothing to undo after finish's commit
            for cursor in self.cursors:
                cursor.close()
        finally:
            driver.close()


#: SQLite: how long a request waits for the write lock (the same as every connection's busy_timeout),
#: and how often it looks whether the lock is free.
_LOCK_WAIT_SECONDS = 15.0
_LOCK_POLL_SECONDS = 0.0005
_SQLITE_BUSY = 5


def _insert_when_free(driver: Any, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """Run an ``INSERT ... RETURNING`` and return its rows. On SQLite, while the worker holds the
    write lock (it applies a run: a few milliseconds), look again every half millisecond instead of
    SQLite's own busy wait, which sleeps 1, 2, 5, 10, 15, 20, 25 ms between tries: a request then
    waited up to 25 ms after the lock was free, and the worker, taking it again for its next run before
    the request woke up, kept it waiting for several runs (web processes stood idle a fifth of a
    festival burst on two cores). Gives up, as busy_timeout would, after ``_LOCK_WAIT_SECONDS``."""
    if db.engine.dialect.name != "sqlite":
        cursor = driver.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()
    import sqlite3

    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    restore = f"PRAGMA busy_timeout={int(_LOCK_WAIT_SECONDS * 1000)}"
    cursor = driver.cursor()
    waiting = True
    try:
        driver.rollback()  # no transaction open: BEGIN IMMEDIATE below takes the lock or says it is busy
        cursor.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")  # cheap to try again, unlike the insert itself
                break
            except sqlite3.OperationalError as exc:
                if (exc.sqlite_errorcode & 0xFF) != _SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(_LOCK_POLL_SECONDS)
        cursor.execute(restore)
        waiting = False
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        if waiting:  # the pool's next user expects the usual wait
            with suppress(sqlite3.Error):
                cursor.execute(restore)
        cursor.close()


def _row(activity: dict[str, Any], signer: str, text: str | None = None, received_at: str | None = None,
         ) -> dict[str, Any]:
    return {"activity_id": activity["id"], "activity_type": activity["type"][:40], "signer": signer,
            "activity": text if text is not None else jsontext.dumps(activity),
            "received_at": received_at or utcnow().strftime(_TIME_FORMAT),
            "shard": shard_of(activity)}


#: PostgreSQL: the rows as one array per column, the same statement for every batch. A multi-row VALUES
#: of 100 rows has 600 parameters, and psycopg rewrote that text for every batch (2 ms, a third of
#: storing it); this one is parsed once and prepared. The arrays go in binary (``%b``): as text every
#: quote of every activity was escaped by a regular expression in Python. ``WITH ORDINALITY ... ORDER
#: BY``: the ids follow the batch's order, which is the order the worker applies them in.
_INSERT_ARRAYS = (
    "INSERT INTO inbox_items (activity_id, activity_type, signer, activity, state, received_at, shard) "
    "SELECT activity_id, activity_type, %(signer)s, activity::json, 'pending', %(received_at)s::timestamp, shard "
    "FROM unnest(%(activity_ids)b::text[], %(activity_types)b::text[], %(activities)b::text[], %(shards)b::int[]) "
    "WITH ORDINALITY AS batch (activity_id, activity_type, activity, shard, position) ORDER BY position "
    "ON CONFLICT (activity_id) DO NOTHING RETURNING activity_id, id"
)


def _insert_many(rows: list[dict[str, Any]]) -> tuple[str, Any]:
    """The multi-row insert of ``rows`` (all of one signer, received together) in the driver's style."""
    if db.engine.dialect.name == "postgresql":
        return _INSERT_ARRAYS, {
            "signer": rows[0]["signer"], "received_at": rows[0]["received_at"],
            "activity_ids": [row["activity_id"] for row in rows],
            "activity_types": [row["activity_type"] for row in rows],
            "activities": [row["activity"] for row in rows],
            "shards": [row["shard"] for row in rows]}
    if db.engine.dialect.driver != "pysqlite":
        raise RuntimeError(f"the inbox does not know the placeholders of the {db.engine.dialect.driver} driver")
    return _sqlite_insert_many(len(rows)), [row[name] for row in rows for name in _STORE_FIELDS]


@lru_cache(maxsize=128)
def _sqlite_insert_many(count: int) -> str:
    """SQLite's multi-row insert of ``count`` rows (positional parameters, ``_STORE_FIELDS`` of each
    row in turn): written once per size, as sqlite3 caches its compiled form by text (at most
    ``node.fedi.inbox.MAX_BATCH_ITEMS`` rows of 6 values: within the 999 parameters of the oldest SQLite)."""
    row = "({})".format(", ".join("'pending'" if name == "state" else "?" for name in _INSERT_COLUMNS))
    return (f"INSERT INTO inbox_items ({', '.join(_INSERT_COLUMNS)}) VALUES {', '.join([row] * count)} "
            "ON CONFLICT (activity_id) DO NOTHING RETURNING activity_id, id")


@contextmanager
def _driver_connection(sql: str, params: Any) -> Iterator[Any]:
    """A pooled driver connection (autocommit on PostgreSQL), database errors raised as SQLAlchemy
    would raise them: the problem handlers map a full disk to 507, bad data to 4xx."""
    if db.session.registry.has() and db.session().in_transaction():
        # What verifying stored (an actor document fetched for its key) is committed first: on SQLite
        # that transaction holds the write lock the insert needs.
        db.session.commit()
    with pooled_connection(db.engine, autocommit=db.engine.dialect.name == "postgresql") as driver, \
            _database_errors(sql, params):
        yield driver


@contextmanager
def _database_errors(sql: str, params: Any) -> Iterator[None]:
    """The driver's errors raised as SQLAlchemy would raise them: the problem handlers map a full disk
    to 507, bad data to 4xx."""
    dialect = db.engine.dialect
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc


def _store(driver: Any, activity: dict[str, Any], row: dict[str, Any], insert_sql: str, stored_sql: str) -> Received:
    inserted = _insert_when_free(driver, insert_sql, row)
    item_id = inserted[0][0] if inserted else None
    driver.commit()
    if item_id is not None:
        return Received(item_id, False)
    stored = _run(driver, stored_sql, row)
    driver.rollback()
    key = compat.inbox_key(activity, json.loads(stored) if isinstance(stored, str) else stored)
    if key == activity["id"]:
        return Received(None, True)
    item_id = _run(driver, insert_sql, {**row, "activity_id": key})
    driver.commit()
    return Received(item_id, item_id is None)


def store_verified(activity: dict[str, Any], signer: str) -> bool:
    """Queue an activity obtained by catch-up (its proof was checked), in the caller's transaction.
    False when already known."""
    if db.session.scalar(select(InboxItem.id).where(InboxItem.activity_id == activity["id"])) is not None:
        return False
    db.session.add(
        InboxItem(activity_id=activity["id"], activity_type=str(activity.get("type"))[:40], signer=signer,
                  activity=activity)
    )
    return True
