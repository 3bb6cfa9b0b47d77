"""Storing what other servers tell us: remote events and directory entries, with origin checks and
out-of-order protection (the origin's ``updated`` decides).

What the handlers consult (held events, tombstones, actors, blocks, follows, re-shares) goes through
``lookups()``. An activity applied alone gets a ``Lookups``: each question is one query, and a received
event is written through the ORM. The worker applying a run of activities gets a ``RunLookups``: what
the run is about is read up front in a few queries (``prefetch``), the events it holds are plain rows
(``HeldEvent``: column values and occurrences, no ORM object) that each activity changes in memory after
the same checks, and ``write_events`` writes the run's events and occurrences at the end in a few
statements (SQLAlchemy Core executemany; the full-text search triggers fire as for any other write)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, text, update

from federation.urls import same_origin
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
_UPDATE_EVENT = update(_EVENTS).where(_EVENTS.c.id == bindparam("_id"))
_UPDATE_OCCURRENCE = update(_OCCURRENCES).where(_OCCURRENCES.c.id == bindparam("_id"))
_HELD_EVENTS = select(*_HELD_COLUMNS).where(_EVENTS.c.ap_id.in_(bindparam("ap_ids", expanding=True)))
_HELD_OCCURRENCES = (
    select(_OCCURRENCES.c.id, _OCCURRENCES.c.event_id, _OCCURRENCES.c.starts_at, _OCCURRENCES.c.ends_at)
    .where(_OCCURRENCES.c.event_id.in_(bindparam("event_ids", expanding=True))).order_by(_OCCURRENCES.c.starts_at))
# The IN lists of a run's reads are one expanding parameter each (not one bound literal per value).
_TOMBSTONES = select(Tombstone).where(Tombstone.ap_id.in_(bindparam("ap_ids", expanding=True)))
_ANNOUNCES = (select(OutboxEntry).where(OutboxEntry.object_id.in_(bindparam("ap_ids", expanding=True)),
                                        OutboxEntry.activity_type == "Announce").order_by(OutboxEntry.id))
_ACTORS = select(RemoteActor).where(RemoteActor.ap_id.in_(bindparam("ap_ids", expanding=True)))
_NEXT_EVENT_IDS = text("SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, :count)")


class HeldEvent:
    """An event as a run holds it. ``row``: its column values as the run's activities leave them;
    ``stored``: the values the database has (None for an event the run creates); ``occurrences``:
    ``[id, starts_at, ends_at, order]`` lists (id None for a row to insert, ``order`` the run-wide order
    in which such rows were added, so they get their ids in that order); ``stored_ends``: occurrence
    id -> ``ends_at`` in the database. Reads like an ``Event`` where the checks need it."""

    __slots__ = ("row", "stored", "occurrences", "stored_ends")

    def __init__(self, row: dict[str, Any], stored: dict[str, Any] | None) -> None:
        self.row = row
        self.stored = stored
        self.occurrences: list[list[Any]] = []
        self.stored_ends: dict[int, datetime] = {}

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
    state: the worker makes a new one after any activity it applies on its own (a Delete, a Follow...)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, HeldEvent | None] = {}
        #: ap_id -> the events the run created or changed, in the order of their first change.
        self.changed: dict[str, HeldEvent] = {}
        self._added = itertools.count()
        self._city_keys: dict[str | None, str] = {}

    def prefetch(self, activities: Iterable[dict[str, Any]]) -> None:
        objects: set[str] = set()
        actors: set[str] = set()
        for activity in activities:
            actor = _first_id(activity.get("actor"))
            if actor:
                actors.add(actor)
            obj = _object_of(activity)
            if obj is not None:
                objects.add(obj["id"])
                attributed = _first_id(obj.get("attributedTo"))
                if attributed:
                    actors.add(attributed)
        wanted_objects = sorted(objects - self.events.keys())
        if wanted_objects:
            self._read_events(wanted_objects)
            self.tombstones.update(dict.fromkeys(wanted_objects))
            for tombstone in db.session.scalars(_TOMBSTONES, {"ap_ids": wanted_objects}):
                self.tombstones[tombstone.ap_id] = tombstone
            self.announces.update(dict.fromkeys(wanted_objects))
            for entry in db.session.scalars(_ANNOUNCES, {"ap_ids": wanted_objects}):
                self.announces[entry.object_id] = entry  # the latest wins
        wanted_actors = sorted(actors - self.actors.keys())
        if wanted_actors:
            self.actors.update(dict.fromkeys(wanted_actors))
            for actor in db.session.scalars(_ACTORS, {"ap_ids": wanted_actors}):
                self.actors[actor.ap_id] = actor
        self.blocked_domains()
        self.followed_domains()

    def event(self, ap_id: str) -> HeldEvent | None:
        if ap_id not in self.events:
            self._read_events([ap_id])
        return self.events[ap_id]

    def _read_events(self, ap_ids: list[str]) -> None:
        """The stored events ``ap_ids`` and their occurrences, in two queries."""
        self.events.update(dict.fromkeys(ap_ids))
        keys = [column.key for column in _HELD_COLUMNS]
        by_id: dict[int, HeldEvent] = {}
        for values in db.session.execute(_HELD_EVENTS, {"ap_ids": ap_ids}):
            row = dict(zip(keys, values, strict=True))
            held = self.events[row["ap_id"]] = by_id[row["id"]] = HeldEvent(row, dict(row))
        if by_id:
            for occurrence_id, event_id, starts_at, ends_at in db.session.execute(
                    _HELD_OCCURRENCES, {"event_ids": list(by_id)}):
                held = by_id[event_id]
                held.occurrences.append([occurrence_id, starts_at, ends_at, None])
                held.stored_ends[occurrence_id] = ends_at

    def hold_event(self, held: HeldEvent | None, fields: dict[str, Any], obj: dict[str, Any], origin: RemoteActor,
                   *, updated: datetime, shared_by: RemoteActor | None) -> None:
        """A new event (``held`` None), or the new version of a held one, as ``upsert_remote_event``
        decided it: the same values and occurrences the ORM path would give it."""
        from node.events.services import occurrence_spans

        if held is None:
            row = dict.fromkeys(_EVENT_KEYS)
            row.update(uuid=str(uuid.uuid4()), origin_actor_id=origin.id, created_at=utcnow(),
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
        spans = occurrence_spans(row["starts_at"], row["ends_at"], row["timezone"], row["rrule"], row["exdates"])
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

    def write_events(self) -> None:
        """Write what the run created or changed: the new events in one INSERT, the changed ones in
        one UPDATE per set of changed columns (as the ORM, only columns whose value changed), then the
        occurrences: one DELETE, one UPDATE of ends and one INSERT. Many rows, one statement each
        (executemany). On SQLite the caller holds the write lock (see ``_new_event_ids``)."""
        if not self.changed:
            return
        held = list(self.changed.values())
        self.changed = {}
        new = [event for event in held if event.stored is None]
        if new:
            inserts: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for event, event_id in zip(new, _new_event_ids(len(new)), strict=True):
                row = event.row
                row["id"] = event_id
                defaulted = tuple(key for key in _DEFAULTED_KEYS if row[key] is None)
                if defaulted:
                    row = {key: value for key, value in row.items() if key not in defaulted}
                inserts.setdefault(defaulted, []).append(row)
            for rows in inserts.values():
                db.session.execute(insert(_EVENTS), rows)
        changes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for event in held:
            stored = event.stored
            if stored is None:
                continue
            values = {key: value for key, value in event.row.items() if key not in stored or stored[key] != value}
            if values:
                values["_id"] = event.row["id"]
                changes.setdefault(tuple(values), []).append(values)
        for rows in changes.values():
            db.session.execute(_UPDATE_EVENT, rows)
        gone: list[int] = []
        ends: list[dict[str, Any]] = []
        added: list[tuple[int, dict[str, Any]]] = []
        for event in held:
            kept = set()
            for occurrence_id, starts_at, ends_at, order in event.occurrences:
                if occurrence_id is None:
                    added.append((order, {"event_id": event.row["id"], "starts_at": starts_at, "ends_at": ends_at}))
                else:
                    kept.add(occurrence_id)
                    if event.stored_ends[occurrence_id] != ends_at:
                        ends.append({"_id": occurrence_id, "ends_at": ends_at})
            gone.extend(occurrence_id for occurrence_id in event.stored_ends if occurrence_id not in kept)
        if gone:
            db.session.execute(delete(_OCCURRENCES).where(_OCCURRENCES.c.id.in_(gone)))
        if ends:
            db.session.execute(_UPDATE_OCCURRENCE, ends)
        if added:
            added.sort(key=itemgetter(0))
            db.session.execute(insert(_OCCURRENCES), [values for _order, values in added])
        _expire_orm_copies({event.row["id"] for event in held if event.stored is not None})


def _new_event_ids(count: int) -> Iterable[int]:
    """Ids for the run's new events, known before the INSERT (their occurrences refer to them).
    PostgreSQL: taken from the table's sequence. SQLite: the ones after the largest id, which are free
    because the run holds the write lock (``BEGIN IMMEDIATE``), and are those SQLite itself would give
    (the table has no AUTOINCREMENT)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return list(db.session.scalars(_NEXT_EVENT_IDS, {"count": count}))
    last = db.session.scalar(select(func.max(_EVENTS.c.id))) or 0
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
    try:
        fields = object_to_event_fields(obj)
    except ConversionError as exc:
        raise RefusedObject(str(exc)) from exc
    updated = fields.pop("updated_at")
    published = fields.pop("published_at")
    known = lookups()
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
        known.hold_event(event, fields, obj, origin, updated=updated, shared_by=shared_by)
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


def delete_remote_object(object_id: str, origin: RemoteActor, deleted_at: datetime | None = None) -> int:
    """Purge a remote event or directory entry; only its origin may delete it."""
    if not same_origin(object_id, origin.ap_id):
        raise RefusedObject("only the object's origin can delete it")
    remember_deletion(object_id, "Object", deleted_at or utcnow())
    removed = 0
    event = db.session.scalar(select(Event).where(Event.ap_id == object_id))
    if event is not None:
        if not _may_change(event, origin):
            raise RefusedObject("only the event's origin can delete it")
        db.session.delete(event)
        removed += 1
    org = db.session.scalar(select(RemoteOrganisation).where(RemoteOrganisation.ap_id == object_id))
    if org is not None:
        if org.origin_actor_id != origin.id:
            raise RefusedObject("only the organisation's node can delete it")
        db.session.delete(org)
        removed += 1
    return removed


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
