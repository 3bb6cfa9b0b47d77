"""Storing what other servers tell us: remote events and directory entries, with origin checks and
out-of-order protection (the origin's ``updated`` decides)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select

from node.common.timeutil import utcnow
from node.extensions import db
from node.fedi.converters import ConversionError, object_to_event_fields, parse_time
from node.fedi.models import RemoteActor, RemoteOrganisation


class RefusedObject(Exception):
    """The object cannot be stored; the message says why (logged on the inbox item)."""


def upsert_remote_event(obj: dict[str, Any], origin: RemoteActor, *, shared_by: RemoteActor | None = None) -> str:
    """Create or update the copy of a remote event. Returns what happened: created/updated/stale."""
    from node.events.models import Event

    try:
        fields = object_to_event_fields(obj)
    except ConversionError as exc:
        raise RefusedObject(str(exc)) from exc
    event = db.session.scalar(select(Event).where(Event.ap_id == fields["ap_id"]))
    if event is not None and event.origin_actor_id is None:
        raise RefusedObject("the object id is one of this node's own events")
    if event is not None and event.origin_actor_id != origin.id:
        raise RefusedObject("only the event's origin can change it")
    updated = fields.pop("updated_at") or utcnow()
    if event is not None and event.updated_at >= updated:
        # A duplicate, or an update overtaken by a newer one: the origin's clock decides.
        return "stale"
    created = event is None
    if created:
        event = Event(uuid=str(uuid.uuid4()), origin_actor_id=origin.id, created_at=utcnow())
        db.session.add(event)
    for key, value in fields.items():
        setattr(event, key, value)
    if not event.city:
        event.city = origin.city
    if shared_by is not None and created:
        event.shared_by_actor_id = shared_by.id
    event.updated_at = updated
    event.remote_object = obj
    db.session.flush()
    _expand(event)
    return "created" if created else "updated"


def _expand(event: Any) -> None:
    from node.events.services import expand_occurrences

    expand_occurrences(event)


def delete_remote_object(object_id: str, origin: RemoteActor) -> int:
    """Purge a remote event or directory entry; only its origin may delete it."""
    from node.events.models import Event

    removed = 0
    event = db.session.scalar(select(Event).where(Event.ap_id == object_id))
    if event is not None:
        if event.origin_actor_id != origin.id:
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
    if org is not None and org.updated_at > updated:
        return "stale"
    created = org is None
    if created:
        org = RemoteOrganisation(ap_id=ap_id, origin_actor_id=origin.id)
        db.session.add(org)
    org.name = fields["name"]
    org.fields = fields
    org.updated_at = updated
    return "created" if created else "updated"
