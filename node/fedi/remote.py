"""Storing what other servers tell us: remote events and directory entries, with origin checks and
out-of-order protection (the origin's ``updated`` decides).

What the handlers consult (held events, tombstones, actors, blocks, follows, re-shares) goes through
``lookups()``. An activity applied alone gets a ``Lookups``: each question is one query, and a received
event is written through the ORM. The worker applying a run of activities gets a ``RunLookups``: what
the run is about is read up front in a few queries (``prefetch``), the events it holds are plain rows
(``HeldEvent``: column values and occurrences, no ORM object) that each activity changes in memory after
the same checks, and ``write_events`` writes the run's events and occurrences at the end in a few
statements (``RunWriter.write_rows``: multi-row statements on SQLite, one statement over arrays per kind on
PostgreSQL; the full-text search triggers fire as for any other write). What depends on a received
object alone -- its conversion to columns and occurrences, the driver's form of what is stored as
received -- is a ``PreparedEvent``, which the worker makes for a whole batch before it takes SQLite's
write lock (``prepare_events``)."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import JSON, DateTime, String, delete, insert, select, update
from sqlalchemy import event as sqlalchemy_event

from federation.urls import same_origin
from node.common import microcache
from node.common.timeutil import utcnow
from node.events.models import Event, EventOccurrence, city_key
from node.extensions import db
from node.fedi.converters import ConversionError, object_to_event_fields, parse_time
from node.fedi.keystore import ACTOR_MAX_AGE
from node.fedi.models import Follow, OutboxEntry, RemoteActor, RemoteOrganisation, RemoteServer, Tombstone


class RefusedObject(Exception):
    """The object cannot be stored; the message says why (logged on the inbox item)."""


def _object_of(activity: dict[str, Any]) -> dict[str, Any] | None:
    obj = activity.get("object")
    return obj if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None


def _first_id(value: Any) -> str | None:
    value = value[0] if isinstance(value, list) and value else value
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


class Lookups:
    """The state handlers consult about received objects, each question one query (remembered): what
    an activity applied alone uses. Held events are ORM ``Event`` objects, and an event the activity
    creates is added as it is (``add_event``)."""

    def __init__(self) -> None:
        self.events: dict[str, Any] = {}
        self.tombstones: dict[str, Tombstone | None] = {}
        self.actors: dict[str, RemoteActor | None] = {}
        self.announces: dict[str, OutboxEntry | None] = {}
        self._blocked: set[str] | None = None
        self._followed: set[str] | None = None
        self._stale_before: datetime | None = None

    # --- events -----------------------------------------------------------------------------------

    def prepared_event(self, obj: dict[str, Any]) -> PreparedEvent:
        """``obj`` converted (``prepare_event``): done here when asked; a run's lookups may hold it
        already (converted before the run took the database's write lock)."""
        return prepare_event(obj)

    def event(self, ap_id: str) -> Any:
        if ap_id not in self.events:
            self.events[ap_id] = db.session.scalar(select(Event).where(Event.ap_id == ap_id))
        return self.events[ap_id]

    def add_event(self, ap_id: str, event: Any) -> None:
        self.events[ap_id] = event

    def tombstone(self, ap_id: str) -> Tombstone | None:
        if ap_id not in self.tombstones:
            self.tombstones[ap_id] = db.session.scalar(select(Tombstone).where(Tombstone.ap_id == ap_id))
        return self.tombstones[ap_id]

    def last_announce(self, object_id: str) -> OutboxEntry | None:
        """Our latest Announce (re-share) of ``object_id``, if we re-shared it."""
        if object_id not in self.announces:
            self.announces[object_id] = db.session.scalar(
                select(OutboxEntry).where(OutboxEntry.object_id == object_id, OutboxEntry.activity_type == "Announce")
                .order_by(OutboxEntry.id.desc()).limit(1))
        return self.announces[object_id]

    # --- actors and servers -----------------------------------------------------------------------

    def known_actor(self, ap_id: str) -> RemoteActor | None:
        """The stored actor when it can be used without fetching it (present and fresh), else None."""
        if ap_id not in self.actors:
            self.actors[ap_id] = db.session.scalar(select(RemoteActor).where(RemoteActor.ap_id == ap_id))
        actor = self.actors[ap_id]
        if self._stale_before is None:
            self._stale_before = utcnow() - ACTOR_MAX_AGE  # once: these lookups live for one activity or run
        if actor is None or not actor.document or actor.fetched_at <= self._stale_before:
            return None
        return actor

    def actor(self, ap_id: str) -> RemoteActor:
        """The actor, fetched when unknown or stale (``keystore.get_actor``; raises ActorError)."""
        from node.fedi.keystore import get_actor

        actor = self.known_actor(ap_id)
        if actor is None:
            actor = self.actors[ap_id] = get_actor(ap_id)
        return actor

    def blocked_domains(self) -> set[str]:
        if self._blocked is None:
            self._blocked = set(db.session.scalars(select(RemoteServer.domain).where(RemoteServer.blocked.is_(True))))
        return self._blocked

    def followed_domains(self) -> set[str]:
        """Domains of the actors this node follows (accepted)."""
        if self._followed is None:
            self._followed = set(db.session.scalars(
                select(RemoteActor.domain).join(Follow, Follow.actor_id == RemoteActor.id)
                .where(Follow.direction == "outgoing", Follow.state == "accepted").distinct()))
        return self._followed


_EVENTS = Event.__table__
_OCCURRENCES = EventOccurrence.__table__
_EVENT_KEYS = tuple(column.key for column in _EVENTS.c)
#: As the ORM inserts: a None in a column with a default gives the default (JSON columns excepted:
#: theirs is stored as JSON null).
_DEFAULTED_KEYS = tuple(column.key for column in _EVENTS.c
                        if column.default is not None and not column.type.should_evaluate_none)
#: What a run reads of the events it holds: every column but the stored object, read only when an
#: undated object has to be compared with it (``HeldEvent.remote_object``).
_HELD_COLUMNS = tuple(column for column in _EVENTS.c if column.key != "remote_object")
#: SQLite: rows written by one statement at most (``RunWriter.write_rows``), fewer when the values would
#: pass the connection's limit of parameters (32766 since SQLite 3.32, 999 before).
MAX_ROWS_PER_STATEMENT = 500
#: The ids of a run's new events on PostgreSQL (``_new_event_ids``).
_NEXT_EVENT_IDS = "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, %s)"


class HeldTombstone(NamedTuple):
    """What a run reads of a tombstone (``Lookups.tombstone`` gives the ORM object alone)."""

    ap_id: str
    deleted_at: datetime


class HeldActor(NamedTuple):
    """What a run reads of an actor: what its activities are decided on (the ORM object, with its
    document decoded, cost a run more than all its other reads). ``document``: whether the stored
    document is not empty (``Lookups.known_actor`` asks no more of it)."""

    id: int
    ap_id: str
    domain: str
    city: str
    document: bool
    fetched_at: datetime


class HeldAnnounce(NamedTuple):
    """What a run reads of our latest re-share of an object (``Lookups.last_announce``)."""

    object_id: str
    audience: str


class PreparedEvent:
    """What storing a received event object needs that depends on the object alone (and on the node's
    database dialect), computed before the database is asked anything: its column values (``fields``,
    as ``object_to_event_fields`` gives them without the two times), the origin's ``updated`` and
    ``published``, the occurrence spans of those values, and ``encoded``: column -> (value, the value in
    the driver's form) for what a run writes as received (None outside a run). ``error``: the
    ``ConversionError`` that refuses the object, if any."""

    __slots__ = ("obj", "fields", "updated", "published", "spans", "encoded", "error")

    def __init__(self, obj: dict[str, Any], fields: dict[str, Any] | None = None, *,
                 updated: datetime | None = None, published: datetime | None = None,
                 spans: tuple[tuple[datetime, datetime], ...] = (), encoded: dict[str, tuple[Any, Any]] | None = None,
                 error: ConversionError | None = None) -> None:
        self.obj = obj
        self.fields = fields
        self.updated = updated
        self.published = published
        self.spans = spans
        self.encoded = encoded
        self.error = error


def prepare_event(obj: dict[str, Any], writer: RunWriter | None = None) -> PreparedEvent:
    """``obj`` converted to event fields and occurrence spans; with ``writer`` (a run), the values it
    writes as received encoded for the driver too. Pure: reads nothing from the database."""
    from node.events.services import occurrence_spans

    try:
        fields = object_to_event_fields(obj)
    except ConversionError as exc:
        return PreparedEvent(obj, error=exc)
    updated = fields.pop("updated_at")
    published = fields.pop("published_at")
    spans = occurrence_spans(fields["starts_at"], fields["ends_at"], fields["timezone"], fields["rrule"],
                             fields["exdates"])
    encoded = writer.encode_received(fields, obj, updated) if writer is not None else None
    return PreparedEvent(obj, fields, updated=updated, published=published, spans=spans, encoded=encoded)


def _is_event_object(obj: Any) -> bool:
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind == "Event" or (isinstance(kind, list) and "Event" in kind)


def prepare_events(activities: Iterable[dict[str, Any]]) -> dict[int, PreparedEvent]:
    """The embedded event objects of the Create and Update activities among ``activities``, prepared
    (``prepare_event``) for a run: by ``id()`` of the object, which the run's activities must keep
    alive (``RunLookups.prepared_event`` checks it is the same object)."""
    writer = run_writer()
    prepared: dict[int, PreparedEvent] = {}
    for activity in activities:
        obj = activity.get("object")
        if activity.get("type") in ("Create", "Update") and _is_event_object(obj):
            prepared[id(obj)] = prepare_event(obj, writer)
    return prepared


def _json_text(value: Any) -> str:
    """``json.dumps(value)``, the empty list and object (most tags, exception dates and accessibility
    flags) without a call."""
    if not value:
        if value.__class__ is list:
            return "[]"
        if value.__class__ is dict:
            return "{}"
    return json.dumps(value)


def _sqlite_time(value: datetime | None) -> str | None:
    """The text SQLAlchemy's DateTime binds on SQLite ("%Y-%m-%d %H:%M:%S.%f", the zone ignored)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.isoformat(" ", "microseconds")
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


class RunWriter:
    """The SQL of a run's writes and their parameters in the driver's own form, executed through the
    driver's cursor on the session's connection (in its transaction; ``write_rows``): SQLAlchemy's
    per-row bind processing and execution machinery cost about as much as the inserts themselves on
    SQLite. Values are bound as SQLAlchemy would bind them: JSON as the dialect's serializer writes it
    (``jsontext.dumps``; None as JSON null), DateTime as SQLAlchemy's SQLite text or, for psycopg, as is."""

    def __init__(self, dialect: Any) -> None:
        self.postgres = dialect.name == "postgresql"
        self.dialect = dialect
        dumps = _json_text if dialect._json_serializer in (None, json.dumps) else dialect._json_serializer
        mark = "%s" if self.postgres else "?"
        quote = dialect.identifier_preparer.quote
        self.mark = mark
        self.quote = quote
        self.json_keys = frozenset(column.key for column in _EVENTS.c if isinstance(column.type, JSON))
        converters: dict[str, Any] = dict.fromkeys(self.json_keys, dumps)
        if not self.postgres:
            converters.update(dict.fromkeys(
                (column.key for column in _EVENTS.c if isinstance(column.type, DateTime)), _sqlite_time))
        self.converters = converters
        self.time = (lambda value: value) if self.postgres else _sqlite_time
        #: (index in ``_EVENT_KEYS``, key, converter) of the columns whose value the driver cannot take as is.
        self.converted = tuple((index, key, converters[key]) for index, key in enumerate(_EVENT_KEYS)
                               if key in converters)
        self._updates: dict[tuple[str, ...], str] = {}
        #: SQLite older than 3.33 (no UPDATE ... FROM): a run's occurrence updates row by row.
        self.update_occurrence = f"UPDATE event_occurrences SET ends_at = {mark} WHERE id = {mark}"
        self.update_from = not self.postgres and sqlite3.sqlite_version_info >= (3, 33, 0)
        self._statements: dict[tuple[str, int, tuple[str, ...]], str] = {}
        # Reads: the values SQLAlchemy's result processors give (a DateTime's text parsed on SQLite, a
        # JSON's decoded; psycopg hands both over as Python values already).
        self.held_keys = tuple(column.key for column in _HELD_COLUMNS)
        if self.postgres:  # psycopg's own values are SQLAlchemy's: it has no processor for these columns
            self.held_processors: tuple[tuple[int, Any], ...] = ()
            self.read_time = lambda value: value
        else:
            processors = [(index, column.type.dialect_impl(dialect).result_processor(dialect, None))
                          for index, column in enumerate(_HELD_COLUMNS)]
            self.held_processors = tuple((index, process) for index, process in processors if process is not None)
            self.read_time = DateTime().dialect_impl(dialect).result_processor(dialect, None)
        self.held_events = "SELECT {} FROM events WHERE ap_id IN ({{marks}})".format(
            ", ".join(quote(column.name) for column in _HELD_COLUMNS))
        self.held_occurrences = ("SELECT id, event_id, starts_at, ends_at FROM event_occurrences "
                                 "WHERE event_id IN ({marks}) ORDER BY starts_at")
        self.tombstones = "SELECT ap_id, deleted_at FROM tombstones WHERE ap_id IN ({marks})"
        self.announces = ("SELECT object_id, audience FROM outbox_entries WHERE object_id IN ({marks}) "
                          "AND activity_type = 'Announce' ORDER BY id")
        self.blocked = f"SELECT domain FROM remote_servers WHERE blocked = {mark}"
        # What Python calls an empty document, as the JSON type writes it ({} is an actor's default).
        empty = ", ".join(f"'{value}'" for value in ("{}", "[]", "null", '""', "0", "0.0", "false"))
        document = "document::text" if self.postgres else "document"
        self.actors = ("SELECT id, ap_id, domain, city, "
                       f"CASE WHEN document IS NULL OR {document} IN ({empty}) THEN 0 ELSE 1 END, fetched_at "
                       "FROM remote_actors WHERE ap_id IN ({marks})")
        self.followed = ("SELECT DISTINCT remote_actors.domain FROM remote_actors JOIN follows "
                         "ON follows.actor_id = remote_actors.id "
                         "WHERE follows.direction = 'outgoing' AND follows.state = 'accepted'")

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (``IN ({marks})``: one placeholder per parameter) on the session's connection."""
        if "{marks}" in sql:
            sql, params = in_list(sql, params, postgres=self.postgres)
        return driver_rows(sql, params)

    def fetch_many(self, queries: Sequence[tuple[str, Sequence[Any]]],
                   meanwhile: Callable[[], None] | None = None) -> list[list[tuple[Any, ...]]]:
        """The rows of each of ``queries`` (``sql, params`` as ``fetch`` takes them). On PostgreSQL they
        go to the server at once, in one pipeline (one wait instead of one per query), and ``meanwhile``
        (work that asks the database nothing) runs while the server answers them: a claim's lookups took
        about 5 ms for 500 activities, which the conversion of their objects now covers. Elsewhere
        ``meanwhile`` runs first."""
        if not self.postgres or not queries:
            if meanwhile is not None:
                meanwhile()
            return [self.fetch(sql, params) for sql, params in queries]
        connection = db.session.connection().connection.driver_connection
        cursors = []
        try:
            with connection.pipeline():
                for sql, params in queries:
                    if "{marks}" in sql:
                        sql, params = in_list(sql, params, postgres=True)
                    cursor = connection.cursor()
                    cursors.append(cursor)
                    cursor.execute(sql, params)
                if meanwhile is not None:
                    meanwhile()
            return [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def _from_arrays(self, kind: str, keys: tuple[str, ...]) -> str:
        """PostgreSQL's statement of ``write_rows`` over one array per value of a row."""
        found = self._statements.get((kind, 0, keys))
        if found is not None:
            return found
        quote = self.quote
        if kind == "insert_event":
            sql = self._insert_from_arrays("events", list(_EVENTS.c))
        elif kind == "insert_occurrence":
            sql = self._insert_from_arrays("event_occurrences",
                                           [_OCCURRENCES.c[key] for key in ("event_id", "starts_at", "ends_at")])
        elif kind == "delete_occurrence":
            sql = "DELETE FROM event_occurrences WHERE id = ANY(%b::integer[])"
        else:
            table, columns = (("events", [_EVENTS.c[key] for key in keys]) if kind == "update_event"
                              else ("event_occurrences", [_OCCURRENCES.c.ends_at]))
            names = [f"v{index}" for index in range(len(columns))]
            sets = ", ".join(f"{quote(column.name)} = batch.{name}{'::json' if isinstance(column.type, JSON) else ''}"
                             for column, name in zip(columns, names, strict=True))
            arrays = ", ".join(f"%b::{_array_element_type(column, self.dialect)}[]" for column in columns)
            # Each row's id appears once (one change per event or occurrence of a run).
            sql = (f"UPDATE {table} SET {sets} FROM unnest({arrays}, %b::integer[]) "
                   f"AS batch ({', '.join(names)}, row_id) WHERE {table}.id = batch.row_id")
        if len(self._statements) > 256:
            self._statements.clear()
        self._statements[(kind, 0, keys)] = sql
        return sql

    def _insert_from_arrays(self, table: str, columns: list[Any]) -> str:
        """``INSERT INTO table (columns) SELECT ... FROM unnest(<one array per column>)``: the values of
        each column go as one binary array (JSON as its text, read back as json), so the server runs one
        statement for the rows instead of one per row (``write_rows``)."""
        quote = self.quote
        names = ", ".join(quote(column.name) for column in columns)
        arrays = ", ".join(f"%b::{_array_element_type(column, self.dialect)}[]" for column in columns)
        values = ", ".join(f"{quote(column.name)}::json" if isinstance(column.type, JSON) else quote(column.name)
                           for column in columns)
        return f"INSERT INTO {table} ({names}) SELECT {values} FROM unnest({arrays}) AS batch ({names})"

    def update_event(self, keys: tuple[str, ...]) -> str:
        """SQLite older than 3.33 (no ``UPDATE ... FROM``): ``UPDATE events SET <keys> WHERE id = ?``
        (parameters: the values of ``keys``, then the id), run once per row."""
        sql = self._updates.get(keys)
        if sql is None:
            columns = _EVENTS.c
            sets = ", ".join(f"{self.quote(columns[key].name)} = {self.mark}" for key in keys)
            sql = self._updates[keys] = f"UPDATE events SET {sets} WHERE id = {self.mark}"
        return sql

    # --- many rows at once -----------------------------------------------------------------------

    def write_rows(self, cursor: Any, kind: str, rows: Sequence[Sequence[Any]], keys: tuple[str, ...] = ()) -> None:
        """Write ``rows`` with the statement ``kind``: "insert_event" (``_EVENT_KEYS`` values),
        "update_event" (the values of ``keys``, then the id), "delete_occurrence" (the id),
        "update_occurrence" (``ends_at``, then the id) or "insert_occurrence" (event id, start, end).

        PostgreSQL: one statement over one binary array per value of a row (``_from_arrays``); the
        server's work for an inserted event fell from 78-86 to 50-57 us, the process's from 13-17 to
        10-15 (1,400 events of the ingest benchmark in rows of 70, docs/performance.md, session 10)
        against one execute per row, which psycopg pipelines. SQLite: one statement
        for many rows. Each statement that writes to ``events`` runs the full-text triggers, and FTS5
        flushes what it indexed at the end of every statement: row by row, indexing an event cost
        three times what it costs in a statement of a hundred (0.09 against 0.03 ms per event, ingest
        benchmark)."""
        if not rows:
            return
        if self.postgres:
            cursor.execute(self._from_arrays(kind, keys), [list(column) for column in zip(*rows, strict=True)])
            return
        if kind.startswith("update") and not self.update_from:
            cursor.executemany(self.update_event(keys) if kind == "update_event" else self.update_occurrence, rows)
            return
        width = len(rows[0])
        limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        per_statement = max(1, min(MAX_ROWS_PER_STATEMENT, limit // width))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            cursor.execute(self._many(kind, keys, len(chunk), width), [value for row in chunk for value in row])

    def _many(self, kind: str, keys: tuple[str, ...], count: int, width: int) -> str:
        """The SQLite statement of ``write_rows`` for ``count`` rows of ``width`` values."""
        found = self._statements.get((kind, count, keys))
        if found is not None:
            return found
        quote = self.quote
        values = ", ".join(["(" + ", ".join("?" * width) + ")"] * count)
        if kind == "insert_event":
            names = ", ".join(quote(column.name) for column in _EVENTS.c)
            sql = f"INSERT INTO events ({names}) VALUES {values}"
        elif kind == "insert_occurrence":
            sql = f"INSERT INTO event_occurrences (event_id, starts_at, ends_at) VALUES {values}"
        elif kind == "delete_occurrence":
            sql = "DELETE FROM event_occurrences WHERE id IN ({})".format(", ".join("?" * count))
        else:
            table, names = (("events", [_EVENTS.c[key].name for key in keys]) if kind == "update_event"
                            else ("event_occurrences", ["ends_at"]))
            # The new values as a table (v0, v1... then the id) joined to the rows they change.
            columns = [f"v{index}" for index in range(len(names))]
            sets = ", ".join(f"{quote(name)} = changed.{column}" for name, column in zip(names, columns, strict=True))
            sql = (f"WITH changed({', '.join(columns)}, row_id) AS (VALUES {values}) "
                   f"UPDATE {table} SET {sets} FROM changed WHERE {table}.id = changed.row_id")
        if len(self._statements) > 256:
            self._statements.clear()
        self._statements[(kind, count, keys)] = sql
        return sql

    def encode_received(self, fields: dict[str, Any], obj: dict[str, Any],
                        updated: datetime | None) -> dict[str, tuple[Any, Any]]:
        """column -> (value, driver form) for the values a run stores as received (``event_params``
        uses them while the row still holds that very value)."""
        converters = self.converters
        encoded = {key: (value, converters[key](value)) for key, value in fields.items() if key in converters}
        encoded["remote_object"] = (obj, converters["remote_object"](obj))
        if updated is not None and "updated_at" in converters:
            encoded["updated_at"] = (updated, converters["updated_at"](updated))
        return encoded

    def event_params(self, row: dict[str, Any], encoded: dict[str, tuple[Any, Any]] | None) -> list[Any]:
        params = [row[key] for key in _EVENT_KEYS]
        for index, key, convert in self.converted:
            value = params[index]
            known = encoded.get(key) if encoded else None
            params[index] = known[1] if known is not None and known[0] is value else convert(value)
        return params

    def change_params(self, values: dict[str, Any], encoded: dict[str, tuple[Any, Any]] | None) -> list[Any]:
        converters = self.converters
        params = []
        for key, value in values.items():
            convert = converters.get(key)
            if convert is not None:
                known = encoded.get(key) if encoded else None
                value = known[1] if known is not None and known[0] is value else convert(value)
            params.append(value)
        return params


def _array_element_type(column: Any, dialect: Any) -> str:
    """The SQL type of an array of ``column``'s values as ``RunWriter`` sends them. Strings (and JSON, as
    its text) as text: a cast to varchar(n) would cut a value too long, which the insert refuses. A
    foreign key declared without a type has the type of the column it refers to."""
    column_type = column.type
    if column_type._isnull and column.foreign_keys:
        column_type = next(iter(column.foreign_keys)).column.type
    if isinstance(column_type, JSON | String):
        return "text"
    return column_type.compile(dialect)


def in_list(sql: str, params: Sequence[Any], *, postgres: bool) -> tuple[str, Sequence[Any]]:
    """``sql``'s ``IN ({marks})`` with one placeholder per value of ``params`` (SQLite), or on
    PostgreSQL ``= ANY(%s)`` with the values as one array: the same statement text for any number of
    values, which psycopg prepares on the connection once it has run a few times (the server then
    neither parses nor plans it again), instead of a new statement for every length. The array goes in
    binary (``%b``): psycopg writes a text array element by element in Python, quoting each (1.5 ms
    for the 500 event ids of a claim, against 0.14 in binary); an empty one stays text, whose type the
    server infers (a binary empty list has none)."""
    if postgres:
        return sql.replace("IN ({marks})", "= ANY(%b)" if params else "= ANY(%s)"), [list(params)]
    return sql.replace("{marks}", ", ".join(["?"] * len(params))), params


def driver_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (in the driver's placeholder style) through the driver's cursor, on the
    session's connection and in its transaction."""
    cursor = db.session.connection().connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


class DriverPipeline:
    """PostgreSQL: the session's connection in psycopg's pipeline mode (``driver_pipeline``): what the
    driver's cursors execute goes to the server without waiting for its answer, which is awaited when a
    result is read, and for everything when the pipeline ends (where the error of any statement in it
    is raised at the latest). A statement of SQLAlchemy's on the connection ends it first: SQLAlchemy
    reads a result's shape right after executing, which a pipeline gives only once the server has
    answered. ``resume`` starts it again."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.stack = ExitStack()
        self.running = False

    def resume(self) -> None:
        if self.connection is not None and not self.running:
            self.stack.enter_context(self.connection.connection.driver_connection.pipeline())
            self.running = True

    def end(self, exc: BaseException | None = None) -> None:
        if self.running:
            self.running = False
            # With the error the block raised, if any: psycopg then logs its own rather than raising it.
            self.stack.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


_PIPELINE_KEY = "halles_driver_pipeline"


@contextmanager
def driver_pipeline() -> Iterator[DriverPipeline]:
    """The session's connection in pipeline mode for the block (PostgreSQL; elsewhere a pipeline that
    does nothing)."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        yield DriverPipeline(None)
        return
    if not sqlalchemy_event.contains(connection.engine, "before_cursor_execute", _end_pipeline):
        sqlalchemy_event.listen(connection.engine, "before_cursor_execute", _end_pipeline)
    pipeline = DriverPipeline(connection)
    connection.info[_PIPELINE_KEY] = pipeline
    try:
        pipeline.resume()
        yield pipeline
    except BaseException as exc:
        pipeline.end(exc)
        raise
    else:
        pipeline.end()
    finally:
        connection.info.pop(_PIPELINE_KEY, None)


def _end_pipeline(connection: Any, _cursor: Any, _statement: str, _parameters: Any, _context: Any,
                  _executemany: bool) -> None:
    """SQLAlchemy's ``before_cursor_execute``: a pipeline open on the connection ends first."""
    pipeline = connection.info.get(_PIPELINE_KEY)
    if pipeline is not None:
        pipeline.end()


_WRITERS: dict[tuple[str, Any], RunWriter] = {}


def run_writer() -> RunWriter:
    """The writer of the current database's dialect (made once per dialect and JSON serializer)."""
    dialect = db.session.get_bind().dialect
    key = (dialect.name, dialect._json_serializer)
    writer = _WRITERS.get(key)
    if writer is None:
        writer = _WRITERS[key] = RunWriter(dialect)
    return writer


def note_driver_write() -> None:
    """What is written through the driver's cursor bypasses the session's events: tell the listing
    cache (node/common/microcache.py) that the session's transaction wrote, as a write through the
    session itself would, so that its commit empties the cache."""
    microcache.note_write(db.session())


def _uuid4_texts(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as ``str(uuid.uuid4())`` writes them, from one read of the
    system's random source."""
    raw = bytearray(os.urandom(16 * count))
    texts = []
    for start in range(0, 16 * count, 16):
        raw[start + 6] = raw[start + 6] & 0x0F | 0x40  # version 4
        raw[start + 8] = raw[start + 8] & 0x3F | 0x80  # RFC 4122 variant
        hexa = raw[start:start + 16].hex()
        texts.append(f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}")
    return texts


class HeldEvent:
    """An event as a run holds it. ``row``: its column values as the run's activities leave them;
    ``stored``: the values the database has (None for an event the run creates); ``occurrences``:
    ``[id, starts_at, ends_at, order]`` lists (id None for a row to insert, ``order`` the run-wide order
    in which such rows were added, so they get their ids in that order); ``stored_ends``: occurrence
    id -> ``ends_at`` in the database; ``encoded``: the driver's form of the values of the version
    received last (``PreparedEvent.encoded``). Reads like an ``Event`` where the checks need it."""

    __slots__ = ("row", "stored", "occurrences", "stored_ends", "encoded")

    def __init__(self, row: dict[str, Any], stored: dict[str, Any] | None) -> None:
        self.row = row
        self.stored = stored
        self.occurrences: list[list[Any]] = []
        self.stored_ends: dict[int, datetime] = {}
        self.encoded: dict[str, tuple[Any, Any]] | None = None

    @property
    def origin_actor_id(self) -> int | None:
        return self.row["origin_actor_id"]

    @property
    def updated_at(self) -> datetime:
        return self.row["updated_at"]

    @property
    def remote_object(self) -> dict[str, Any] | None:
        """The object as received, read from the database the first time it is asked for."""
        if "remote_object" not in self.row:
            stored = db.session.scalar(select(_EVENTS.c.remote_object).where(_EVENTS.c.id == self.row["id"]))
            self.row["remote_object"] = self.stored["remote_object"] = stored
        return self.row["remote_object"]


class RunLookups(Lookups):
    """The lookups of a run of activities the worker applies together, and the run's writer.

    ``prefetch(activities)`` reads up front, in a few queries, the held events (as ``HeldEvent`` rows
    with their occurrences), tombstones, re-shares and actors those activities are about, and the
    blocked and followed servers. ``upsert_remote_event`` makes the same checks as alone and records
    its outcome in the rows (``hold_event``): a later activity of the run about the same event sees
    that version. ``write_events`` then writes them all. Only valid while nothing else changes that
    state: the worker makes a new one after any activity it applies on its own (a Delete, a Follow...).

    ``prepared``: the run's event objects converted beforehand (``prepare_events``: the worker does it
    before taking SQLite's write lock); an object not among them is converted when it is applied."""

    def __init__(self, prepared: dict[int, PreparedEvent] | None = None) -> None:
        super().__init__()
        self.events: dict[str, HeldEvent | None] = {}
        #: ap_id -> the events the run created or changed, in the order of their first change.
        self.changed: dict[str, HeldEvent] = {}
        self.prepared = prepared if prepared is not None else {}
        self._added = itertools.count()
        self._city_keys: dict[str | None, str] = {}
        self._uuids: list[str] = []
        #: Stored events read whose occurrences are not read yet, by id (``_read_occurrences``).
        self._without_occurrences: dict[int, HeldEvent] = {}
        #: PostgreSQL: ids taken from the events' sequence for the run's new events (``prefetch``).
        self._event_ids: list[int] = []
        #: ``run_writer()``, asked once per run rather than once per activity (it asks the session).
        self._writer: RunWriter | None = None

    def prepared_event(self, obj: dict[str, Any]) -> PreparedEvent:
        prepared = self.prepared.get(id(obj))
        if prepared is None or prepared.obj is not obj:
            if self._writer is None:
                self._writer = run_writer()
            prepared = self.prepared[id(obj)] = prepare_event(obj, self._writer)
        return prepared

    def prefetch(self, activities: Iterable[dict[str, Any]], meanwhile: Callable[[], None] | None = None) -> None:
        """Read what ``activities`` are about. ``meanwhile``: work that asks the database nothing, done
        while the server answers (``RunWriter.fetch_many``)."""
        objects: set[str] = set()
        #: The events a Create or Update carries: those not held may be created by the run.
        carried_events: set[str] = set()
        actors: set[str] = set()
        for activity in activities:
            actor = _first_id(activity.get("actor"))
            if actor:
                actors.add(actor)
            obj = _object_of(activity)
            if obj is not None:
                objects.add(obj["id"])
                if activity.get("type") in ("Create", "Update") and _is_event_object(obj):
                    carried_events.add(obj["id"])
                attributed = _first_id(obj.get("attributedTo"))
                if attributed:
                    actors.add(attributed)
        sql = run_writer()
        read_time = sql.read_time
        queries: list[tuple[str, Sequence[Any], Callable[[list[tuple[Any, ...]]], None]]] = []
        wanted_objects = sorted(objects - self.events.keys())
        if wanted_objects:
            self.events.update(dict.fromkeys(wanted_objects))
            queries.append((sql.held_events, wanted_objects, self._hold_stored_events))
            self.tombstones.update(dict.fromkeys(wanted_objects))

            def tombstones(rows: list[tuple[Any, ...]]) -> None:
                for ap_id, deleted_at in rows:
                    self.tombstones[ap_id] = HeldTombstone(ap_id, read_time(deleted_at))
            queries.append((sql.tombstones, wanted_objects, tombstones))
            self.announces.update(dict.fromkeys(wanted_objects))

            def announces(rows: list[tuple[Any, ...]]) -> None:
                for object_id, audience in rows:
                    self.announces[object_id] = HeldAnnounce(object_id, audience)  # the latest wins
            queries.append((sql.announces, wanted_objects, announces))
        wanted_actors = sorted(actors - self.actors.keys())
        if wanted_actors:
            self.actors.update(dict.fromkeys(wanted_actors))

            def held_actors(rows: list[tuple[Any, ...]]) -> None:
                for actor_id, ap_id, domain, city, document, fetched_at in rows:
                    self.actors[ap_id] = HeldActor(actor_id, ap_id, domain, city, bool(document), read_time(fetched_at))
            queries.append((sql.actors, wanted_actors, held_actors))
        if self._blocked is None:
            def blocked(rows: list[tuple[Any, ...]]) -> None:
                self._blocked = {domain for (domain,) in rows}
            queries.append((sql.blocked, [True], blocked))
        if self._followed is None:
            def followed(rows: list[tuple[Any, ...]]) -> None:
                self._followed = {domain for (domain,) in rows}
            queries.append((sql.followed, [], followed))
        answers = sql.fetch_many([(query, params) for query, params, _handle in queries], meanwhile)
        for (_query, _params, handle), rows in zip(queries, answers, strict=True):
            handle(rows)
        # PostgreSQL: ids for the events the run may create (those it does not hold), taken now with the
        # occurrences of those it does: asked for while the run's writes are on their way, they would
        # make it wait for the server to finish them (``RunLookups.write_events``).
        unheld = 0
        if sql.postgres:
            unheld = sum(1 for ap_id in carried_events.intersection(wanted_objects) if self.events[ap_id] is None)
        if unheld:
            self._read_occurrences([(_NEXT_EVENT_IDS, [unheld], self._reserve_event_ids)])
        else:
            self._read_occurrences()

    def _reserve_event_ids(self, rows: list[tuple[Any, ...]]) -> None:
        self._event_ids.extend(event_id for (event_id,) in rows)

    def new_event_ids(self, count: int) -> list[int]:
        """Ids for ``count`` new events: those reserved by ``prefetch`` first (``_new_event_ids``)."""
        taken, self._event_ids = self._event_ids[:count], self._event_ids[count:]
        return taken + list(_new_event_ids(count - len(taken))) if len(taken) < count else taken

    def event(self, ap_id: str) -> HeldEvent | None:
        if ap_id not in self.events:
            self._read_events([ap_id])
        return self.events[ap_id]

    def _read_events(self, ap_ids: list[str]) -> None:
        """The stored events ``ap_ids`` and their occurrences, in two queries."""
        self.events.update(dict.fromkeys(ap_ids))
        sql = run_writer()
        self._hold_stored_events(sql.fetch(sql.held_events, ap_ids))
        self._read_occurrences()

    def _hold_stored_events(self, rows: list[tuple[Any, ...]]) -> None:
        """The rows of ``RunWriter.held_events`` as held events; their occurrences are read by the next
        ``_read_occurrences``."""
        sql = run_writer()
        keys, processors = sql.held_keys, sql.held_processors
        for stored in rows:
            values = list(stored)
            for index, process in processors:
                values[index] = process(values[index])
            row = dict(zip(keys, values, strict=True))
            held = self.events[row["ap_id"]] = HeldEvent(row, dict(row))
            self._without_occurrences[row["id"]] = held

    def _read_occurrences(self, also: list[tuple[str, Sequence[Any], Callable[[list[tuple[Any, ...]]], None]]] = (),
                          ) -> None:
        """The stored occurrences of the events held since the last call, in one query; ``also``:
        other queries (sql, parameters, what takes their rows) asked in the same round trip."""
        by_id, self._without_occurrences = self._without_occurrences, {}
        sql = run_writer()
        read_time = sql.read_time

        def occurrences(rows: list[tuple[Any, ...]]) -> None:
            for occurrence_id, event_id, starts_at, ends_at in rows:
                held = by_id[event_id]
                ends_at = read_time(ends_at)
                held.occurrences.append([occurrence_id, read_time(starts_at), ends_at, None])
                held.stored_ends[occurrence_id] = ends_at

        queries = [*([(sql.held_occurrences, list(by_id), occurrences)] if by_id else []), *also]
        if not queries:
            return
        answers = sql.fetch_many([(query, params) for query, params, _handle in queries])
        for (_query, _params, handle), rows in zip(queries, answers, strict=True):
            handle(rows)

    def hold_event(self, held: HeldEvent | None, prepared: PreparedEvent, obj: dict[str, Any], origin: RemoteActor,
                   *, updated: datetime, shared_by: RemoteActor | None) -> None:
        """A new event (``held`` None), or the new version of a held one, as ``upsert_remote_event``
        decided it: the same values and occurrences the ORM path would give it."""
        fields = prepared.fields
        if held is None:
            if not self._uuids:
                self._uuids = _uuid4_texts(64)
            row = dict.fromkeys(_EVENT_KEYS)
            row.update(uuid=self._uuids.pop(), origin_actor_id=origin.id, created_at=utcnow(),
                       shared_by_actor_id=shared_by.id if shared_by is not None else None)
            held = self.events[fields["ap_id"]] = HeldEvent(row, None)
        row = held.row
        row.update(fields)
        if not row["city"] and row["location_kind"] != "online":
            row["city"] = origin.city
        city = row["city"]
        if city not in self._city_keys:
            self._city_keys[city] = city_key(city)  # what the Event mapper hook keeps
        row["city_key"] = self._city_keys[city]
        row["updated_at"] = updated
        row["remote_object"] = obj
        held.encoded = prepared.encoded
        spans = prepared.spans  # those of row's dates, rule and exception dates: all of them from ``fields``
        # As expand_occurrences: rows at a start still wanted stay (with their id), the others go.
        wanted = dict(spans)
        kept = {occurrence[1]: occurrence for occurrence in held.occurrences if occurrence[1] in wanted}
        occurrences = list(kept.values())
        for start, end in spans:
            if start in kept:
                kept[start][2] = end
            else:
                occurrences.append([None, start, end, next(self._added)])
        held.occurrences = occurrences
        self.changed[row["ap_id"]] = held

    def write_events(self, done: Callable[[str], bool] | None = None) -> None:
        """Write what the run created or changed: the new events in one INSERT, the changed ones in
        one UPDATE per set of changed columns (as the ORM, only columns whose value changed), then the
        occurrences: one DELETE, one UPDATE of ends and one INSERT, each for many rows
        (``RunWriter.write_rows``). On SQLite the caller holds the write lock (see
        ``_new_event_ids``). ``done``: only the events (by ap_id) it says no later activity of the run
        is about; the others stay held, to be written once in their final version."""
        if not self.changed:
            return
        if done is None:
            held = list(self.changed.values())
            self.changed = {}
        else:
            held = [event for ap_id, event in self.changed.items() if done(ap_id)]
            if not held:
                return
            for event in held:
                del self.changed[event.row["ap_id"]]
        writer = run_writer()
        cursor = db.session.connection().connection.cursor()
        try:
            self._write(held, writer, cursor, self.new_event_ids)
        finally:
            cursor.close()
        note_driver_write()
        _expire_orm_copies({event.row["id"] for event in held if event.stored is not None})

    @staticmethod
    def _write(held: list[HeldEvent], writer: RunWriter, cursor: Any, new_event_ids: Callable[[int], Iterable[int]],
               ) -> None:
        new = [event for event in held if event.stored is None]
        if new:
            plain: list[list[Any]] = []
            defaulted_rows: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for event, event_id in zip(new, new_event_ids(len(new)), strict=True):
                row = event.row
                row["id"] = event_id
                defaulted = tuple(key for key in _DEFAULTED_KEYS if row[key] is None)
                if defaulted:  # the column defaults, as the ORM applies them: SQLAlchemy's insert
                    defaulted_rows.setdefault(defaulted, []).append(
                        {key: value for key, value in row.items() if key not in defaulted})
                else:
                    plain.append(writer.event_params(row, event.encoded))
            writer.write_rows(cursor, "insert_event", plain)
            for rows in defaulted_rows.values():
                db.session.execute(insert(_EVENTS), rows)
        changes: dict[tuple[str, ...], list[list[Any]]] = {}
        for event in held:
            stored = event.stored
            if stored is None:
                continue
            row = event.row
            values = {key: value for key, value in row.items() if key not in stored or stored[key] != value}
            if values:
                params = writer.change_params(values, event.encoded)
                params.append(row["id"])
                changes.setdefault(tuple(values), []).append(params)
        for keys, rows in changes.items():
            writer.write_rows(cursor, "update_event", rows, keys)
        gone: list[tuple[int]] = []
        ends: list[tuple[Any, int]] = []
        added: list[tuple[int, int, datetime, datetime]] = []
        for event in held:
            kept = set()
            event_id = event.row["id"]
            for occurrence_id, starts_at, ends_at, order in event.occurrences:
                if occurrence_id is None:
                    added.append((order, event_id, starts_at, ends_at))
                else:
                    kept.add(occurrence_id)
                    if event.stored_ends[occurrence_id] != ends_at:
                        ends.append((writer.time(ends_at), occurrence_id))
            gone.extend((occurrence_id,) for occurrence_id in event.stored_ends if occurrence_id not in kept)
        writer.write_rows(cursor, "delete_occurrence", gone)
        writer.write_rows(cursor, "update_occurrence", ends)
        if added:
            added.sort(key=itemgetter(0))
            time = writer.time
            writer.write_rows(cursor, "insert_occurrence", [(event_id, time(starts_at), time(ends_at))
                                                            for _order, event_id, starts_at, ends_at in added])


def _new_event_ids(count: int) -> Iterable[int]:
    """Ids for the run's new events, known before the INSERT (their occurrences refer to them).
    PostgreSQL: taken from the table's sequence. SQLite: the ones after the largest id, which are free
    because the run holds the write lock (``BEGIN IMMEDIATE``), and are those SQLite itself would give
    (the table has no AUTOINCREMENT)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return [event_id for (event_id,) in run_writer().fetch(_NEXT_EVENT_IDS, [count])]
    last = run_writer().fetch("SELECT max(id) FROM events", [])[0][0] or 0
    return range(last + 1, last + 1 + count)


def _expire_orm_copies(event_ids: set[int]) -> None:
    """Events (and their occurrences) the session may hold as ORM objects from an activity applied
    alone earlier in the same transaction (PostgreSQL: a batch is one) were written around the ORM:
    expire them so they are read again."""
    if not event_ids:
        return
    for key, instance in list(db.session.identity_map.items()):
        model = key[0]
        if (model is Event and key[1][0] in event_ids) or (
                model is EventOccurrence and instance.__dict__.get("event_id") in event_ids):
            db.session.expire(instance)


_current: ContextVar[Lookups | None] = ContextVar("halles_lookups", default=None)


def lookups() -> Lookups:
    """The run's lookups while the worker applies a run, else a new one (each answer a query)."""
    return _current.get() or Lookups()


@contextmanager
def batch_lookups(batch: Lookups) -> Iterator[Lookups]:
    token = _current.set(batch)
    try:
        yield batch
    finally:
        _current.reset(token)


def _may_change(event: Any, origin: RemoteActor) -> bool:
    """The actor that published the event, or another actor of the same server (FEP-fe34 origins):
    a Mobilizon group's event is updated or deleted by the member who edits it, on the group's server."""
    if event.origin_actor_id == origin.id:
        return True
    owner = db.session.get(RemoteActor, event.origin_actor_id) if event.origin_actor_id else None
    return owner is not None and same_origin(owner.ap_id, origin.ap_id)


def upsert_remote_event(obj: dict[str, Any], origin: RemoteActor, *, shared_by: RemoteActor | None = None) -> str:
    """Create or update the copy of a remote event. Returns what happened: created/updated/stale.

    Ordering: the origin's ``updated`` decides (an older or equal one is stale). An object without
    ``updated`` (Gancio's Create) cannot be ordered: it is applied when it differs from what we hold,
    and keeps the ordering key we had, so a later dated update still wins.

    Alone, the event is written through the ORM; in a run (``RunLookups``), the same decision is kept
    in the run's rows, written at its end."""
    known = lookups()
    prepared = known.prepared_event(obj)
    if prepared.error is not None:
        raise RefusedObject(str(prepared.error)) from prepared.error
    fields = prepared.fields
    updated, published = prepared.updated, prepared.published
    event = known.event(fields["ap_id"])
    if event is not None:
        if event.origin_actor_id is None:
            raise RefusedObject("the object id is one of this node's own events")
        if not _may_change(event, origin):
            raise RefusedObject("only the event's origin can change it")
        if updated is not None and event.updated_at >= updated:
            # A duplicate, or an update overtaken by a newer one: the origin's clock decides.
            return "stale"
        if updated is None:
            if event.remote_object == obj:
                return "stale"
            updated = event.updated_at
    else:
        if _deleted_after(fields["ap_id"], updated or published, known):
            # A Create or Update overtaken by the Delete (a reordered delivery, a retry after a crash):
            # the tombstone keeps the event from coming back.
            return "stale"
        updated = updated or published or utcnow()
    if isinstance(known, RunLookups):
        known.hold_event(event, prepared, obj, origin, updated=updated, shared_by=shared_by)
    else:
        _store_event(event, fields, obj, origin, updated=updated, shared_by=shared_by, known=known)
    return "created" if event is None else "updated"


def _store_event(event: Event | None, fields: dict[str, Any], obj: dict[str, Any], origin: RemoteActor, *,
                 updated: datetime, shared_by: RemoteActor | None, known: Lookups) -> None:
    """The ORM write of ``upsert_remote_event`` (an activity applied alone)."""
    from node.events.services import expand_occurrences

    created = event is None
    if created:
        # occurrences=[]: the collection of a new event is known to be empty (no lazy load for it).
        event = Event(uuid=str(uuid.uuid4()), origin_actor_id=origin.id, created_at=utcnow(), occurrences=[])
        db.session.add(event)
        known.add_event(fields["ap_id"], event)
    for key, value in fields.items():
        setattr(event, key, value)
    if not event.city and event.location_kind != "online":
        event.city = origin.city
    if shared_by is not None and created:
        event.shared_by_actor_id = shared_by.id
    event.updated_at = updated
    event.remote_object = obj
    expand_occurrences(event, flush=False)  # written by the caller's flush or commit


def _deleted_after(ap_id: str, updated: datetime | None, known: Lookups | None = None) -> bool:
    """Deleted at or after ``updated`` (an undated object cannot be newer than its deletion)."""
    tombstone = (known or lookups()).tombstone(ap_id)
    return tombstone is not None and (updated is None or tombstone.deleted_at >= updated)


def remember_deletion(object_id: str, former_type: str, deleted_at: datetime) -> None:
    """Receivers keep a tombstone of what they purged, so a reordered older Create/Update that
    arrives after the Delete does not bring the object back. A newer version (undeleted, consent
    given again) is still accepted."""
    tombstone = db.session.scalar(select(Tombstone).where(Tombstone.ap_id == object_id))
    if tombstone is None:
        db.session.add(Tombstone(ap_id=object_id, former_type=former_type, deleted_at=deleted_at))
    elif deleted_at > tombstone.deleted_at:
        tombstone.deleted_at = deleted_at


class StaleDeletion(Exception):
    """A Delete dated before the version of the object held here: the object was published again (or
    updated) after it, and this Delete was delayed, reordered or replayed."""


def delete_remote_object(object_id: str, origin: RemoteActor, deleted_at: datetime | None = None) -> int:
    """Purge a remote event or directory entry; only its origin may delete it. Raises StaleDeletion,
    removing nothing, when ``deleted_at`` is older than the version held (a Delete without a date is
    taken as made now)."""
    if not same_origin(object_id, origin.ap_id):
        raise RefusedObject("only the object's origin can delete it")
    event = db.session.scalar(select(Event).where(Event.ap_id == object_id))
    if event is not None and not _may_change(event, origin):
        raise RefusedObject("only the event's origin can delete it")
    org = db.session.scalar(select(RemoteOrganisation).where(RemoteOrganisation.ap_id == object_id))
    if org is not None and org.origin_actor_id != origin.id:
        raise RefusedObject("only the organisation's node can delete it")
    held = [found for found in (event, org) if found is not None]
    if deleted_at is not None and any(found.updated_at > deleted_at for found in held):
        raise StaleDeletion(f"{object_id} was updated after this deletion")
    remember_deletion(object_id, "Object", deleted_at or utcnow())
    for found in held:
        db.session.delete(found)
    return len(held)


def purge_actor(actor: RemoteActor) -> None:
    """An actor deleted itself: forget everything it published."""
    for event in db.session.scalars(select(Event).where(Event.origin_actor_id == actor.id)):
        db.session.delete(event)
    db.session.execute(delete(RemoteOrganisation).where(RemoteOrganisation.origin_actor_id == actor.id))


def forget_actor(actor: RemoteActor) -> None:
    """The actor deleted itself (Mastodon's Delete of an account): forget what it published, end every
    follow with it, drop deliveries still waiting for its inbox, and the "shared by" credits it had."""
    from node.fedi.models import Delivery, Follow

    purge_actor(actor)
    db.session.execute(update(Follow).where(Follow.actor_id == actor.id).values(state="removed",
                                                                                decided_at=utcnow()))
    inboxes = {url for url in (actor.inbox, actor.shared_inbox) if url}
    # A shared inbox serves other actors of that server too: only the actor's own inbox is dropped,
    # unless no other follower of ours still uses the shared one.
    still_used = set(db.session.scalars(
        select(RemoteActor.shared_inbox)
        .join(Follow, Follow.actor_id == RemoteActor.id)
        .where(RemoteActor.id != actor.id, Follow.state == "accepted", RemoteActor.shared_inbox.in_(inboxes))
    ))
    if inboxes - still_used:
        db.session.execute(update(Delivery).where(Delivery.inbox_url.in_(inboxes - still_used),
                                                  Delivery.state == "pending")
                           .values(state="dead", last_error="the recipient deleted its account"))
    db.session.execute(update(Event).where(Event.shared_by_actor_id == actor.id).values(shared_by_actor_id=None))


def upsert_remote_organisation(obj: dict[str, Any], origin: RemoteActor) -> str:
    ap_id = obj.get("id")
    if not isinstance(ap_id, str):
        raise RefusedObject("the organisation has no id")
    directory = obj.get("halles:directory") if isinstance(obj.get("halles:directory"), dict) else {}
    fields = {
        "name": str(directory.get("name") or obj.get("name") or "")[:200],
        "description": str(directory.get("description") or obj.get("summary") or ""),
        "website": directory.get("website") or (obj.get("url") if isinstance(obj.get("url"), str) else None),
        "topics": [str(t) for t in directory.get("topics") or []][:30],
        "contact_email": directory.get("contact_email"),
        "contact_phone": directory.get("contact_phone"),
        "city": directory.get("city") or origin.city,
    }
    # Only what the origin sent is kept: a field it no longer sends (consent withdrawn) is gone.
    fields = {key: value for key, value in fields.items() if value not in (None, "", [])}
    if not fields.get("name"):
        raise RefusedObject("the organisation has no name")
    try:
        updated = parse_time(obj["updated"], "updated") if obj.get("updated") else utcnow()
    except ConversionError as exc:
        raise RefusedObject(str(exc)) from exc
    org = db.session.scalar(select(RemoteOrganisation).where(RemoteOrganisation.ap_id == ap_id))
    if org is not None and org.origin_actor_id != origin.id:
        raise RefusedObject("only the organisation's node can change it")
    if org is not None and org.updated_at >= updated:
        return "stale"
    if _deleted_after(ap_id, updated):
        return "stale"
    created = org is None
    if created:
        org = RemoteOrganisation(ap_id=ap_id, origin_actor_id=origin.id)
        db.session.add(org)
    org.name = fields["name"]
    org.fields = fields
    org.updated_at = updated
    return "created" if created else "updated"
