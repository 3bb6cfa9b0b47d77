"""Storing what other servers tell us: remote events and directory entries, with origin checks and
out-of-order protection (the origin's ``updated`` decides).

What the handlers consult (held events, tombstones, actors, blocks, follows, re-shares) goes through
``lookups()``: one activity alone queries each when asked; the worker applying a batch of activities
reads them all up front in a few queries (``Lookups.prefetch``) and keeps what the batch creates."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import selectinload

from federation.urls import same_origin
from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi.converters import ConversionError, object_to_event_fields, parse_time
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
    """The state handlers consult about received objects. Alone (``prefetch`` not called) each
    question is one query; after ``prefetch(activities)`` the answers about those activities come
    from memory, and the events the batch creates are added as they are (``add_event``). Only valid
    while nothing else changes that state: the worker starts a new one after any activity it
    applies on its own (a Delete, a Follow...)."""

    def __init__(self) -> None:
        self.events: dict[str, Any] = {}
        self.tombstones: dict[str, Tombstone | None] = {}
        self.actors: dict[str, RemoteActor | None] = {}
        self.announces: dict[str, OutboxEntry | None] = {}
        self._blocked: set[str] | None = None
        self._followed: set[str] | None = None

    def prefetch(self, activities: Iterable[dict[str, Any]]) -> None:
        from node.events.models import Event

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
            self.events.update(dict.fromkeys(wanted_objects))
            for event in db.session.scalars(select(Event).options(selectinload(Event.occurrences))
                                            .where(Event.ap_id.in_(wanted_objects))):
                self.events[event.ap_id] = event
            self.tombstones.update(dict.fromkeys(wanted_objects))
            for tombstone in db.session.scalars(select(Tombstone).where(Tombstone.ap_id.in_(wanted_objects))):
                self.tombstones[tombstone.ap_id] = tombstone
            self.announces.update(dict.fromkeys(wanted_objects))
            for entry in db.session.scalars(select(OutboxEntry).where(OutboxEntry.object_id.in_(wanted_objects),
                                                                      OutboxEntry.activity_type == "Announce")
                                            .order_by(OutboxEntry.id)):
                self.announces[entry.object_id] = entry  # the latest wins
        wanted_actors = sorted(actors - self.actors.keys())
        if wanted_actors:
            self.actors.update(dict.fromkeys(wanted_actors))
            for actor in db.session.scalars(select(RemoteActor).where(RemoteActor.ap_id.in_(wanted_actors))):
                self.actors[actor.ap_id] = actor
        self.blocked_domains()
        self.followed_domains()

    # --- events -----------------------------------------------------------------------------------

    def event(self, ap_id: str) -> Any:
        if ap_id not in self.events:
            from node.events.models import Event

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
        from node.fedi.keystore import ACTOR_MAX_AGE

        if ap_id not in self.actors:
            self.actors[ap_id] = db.session.scalar(select(RemoteActor).where(RemoteActor.ap_id == ap_id))
        actor = self.actors[ap_id]
        if actor is None or not actor.document or actor.fetched_at <= utcnow() - ACTOR_MAX_AGE:
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


_current: ContextVar[Lookups | None] = ContextVar("halles_lookups", default=None)


def lookups() -> Lookups:
    """The batch's lookups while the worker applies a batch, else a new one (each answer a query)."""
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
    and keeps the ordering key we had, so a later dated update still wins."""
    from node.events.models import Event

    try:
        fields = object_to_event_fields(obj)
    except ConversionError as exc:
        raise RefusedObject(str(exc)) from exc
    updated = fields.pop("updated_at")
    published = fields.pop("published_at")
    known = lookups()
    event = known.event(fields["ap_id"])
    if event is not None and event.origin_actor_id is None:
        raise RefusedObject("the object id is one of this node's own events")
    if event is not None and not _may_change(event, origin):
        raise RefusedObject("only the event's origin can change it")
    if event is not None:
        if updated is not None and event.updated_at >= updated:
            # A duplicate, or an update overtaken by a newer one: the origin's clock decides.
            return "stale"
        if updated is None:
            if event.remote_object == obj:
                return "stale"
            updated = event.updated_at
    created = event is None
    if created and _deleted_after(fields["ap_id"], updated or published, known):
        # A Create or Update overtaken by the Delete (a reordered delivery, a retry after a crash):
        # the tombstone keeps the event from coming back.
        return "stale"
    if created:
        # occurrences=[]: the collection of a new event is known to be empty (no lazy load for it).
        event = Event(uuid=str(uuid.uuid4()), origin_actor_id=origin.id, created_at=utcnow(), occurrences=[])
        db.session.add(event)
        known.add_event(fields["ap_id"], event)
        updated = updated or published or utcnow()
    for key, value in fields.items():
        setattr(event, key, value)
    if not event.city and event.location_kind != "online":
        event.city = origin.city
    if shared_by is not None and created:
        event.shared_by_actor_id = shared_by.id
    event.updated_at = updated
    event.remote_object = obj
    _sync_occurrences(event)
    return "created" if created else "updated"


def _sync_occurrences(event: Any) -> None:
    """The event's occurrences, left to the batch's single flush."""
    from node.events.services import expand_occurrences

    expand_occurrences(event, flush=False)


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
    from node.events.models import Event

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
    from node.events.models import Event

    for event in db.session.scalars(select(Event).where(Event.origin_actor_id == actor.id)):
        db.session.delete(event)
    db.session.execute(delete(RemoteOrganisation).where(RemoteOrganisation.origin_actor_id == actor.id))


def forget_actor(actor: RemoteActor) -> None:
    """The actor deleted itself (Mastodon's Delete of an account): forget what it published, end every
    follow with it, drop deliveries still waiting for its inbox, and the "shared by" credits it had."""
    from node.events.models import Event
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
