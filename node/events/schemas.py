"""Marshmallow schemas of the events API, and the JSON shape of events, occurrences and registrations.

Input is strict about JSON types (no "12" for 12, no 1 for true) and unknown fields are refused, so a
misspelt field is a 422 naming it. Query strings are lenient about unknown parameters (calendar apps
and caches add their own) but strict about the values of known ones."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from node.common.timeutil import iso_utc, zone
from node.events.models import ACCESSIBILITY_FEATURES, CATEGORIES, LOCATION_KINDS, STATUSES, VISIBILITIES
from node.events.periods import PERIODS

# In a query string an unencoded '+' arrives as a space: '2026-03-02T14:00:00 01:00'.
_SPACE_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")


# --- fields ---------------------------------------------------------------------------------------


class IsoDateTime(fields.DateTime):
    """ISO 8601 date-time; aware when it has an offset or Z, naive otherwise (the service decides
    whether a ``timezone`` says how to read a naive one)."""

    default_error_messages = {
        "invalid": "not a valid ISO 8601 date-time; write it like 2026-03-26T19:00:00+01:00 or 2026-03-26T18:00:00Z",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise self.make_error("invalid")
        try:
            return datetime.fromisoformat(_SPACE_OFFSET.sub(r"\1+\2", value.strip()))
        except ValueError:
            raise self.make_error("invalid") from None


class QueryInstant(fields.Field):
    """A listing bound: ISO date-time with offset or Z, or a bare date (midnight in the node's zone).
    A date-time without offset is refused: around DST changes it is ambiguous."""

    default_error_messages = {
        "invalid": "write a date (2026-03-26) or a date-time with offset (2026-03-26T19:00:00+01:00 or ...Z)",
        "naive": "this date-time has no offset: add +01:00 or Z, or give a bare date (2026-03-26)",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise self.make_error("invalid")
        text = _SPACE_OFFSET.sub(r"\1+\2", value.strip())
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                return datetime.combine(day, time(0), tzinfo=zone(current_app.config["HALLES_TIMEZONE"]))
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise self.make_error("invalid") from None
        if parsed.tzinfo is None:
            raise self.make_error("naive")
        return parsed


class StrictInt(fields.Integer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


class StrictFloat(fields.Float):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBool(fields.Boolean):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(truthy={True}, falsy={False}, **kwargs)


class QueryBool(fields.Boolean):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(truthy={"true", "1", "yes"}, falsy={"false", "0", "no"}, **kwargs)


class FeatureList(fields.Field):
    """'step_free,sign_language' -> ['step_free', 'sign_language'], each a known feature."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if not isinstance(value, str):
            raise ValidationError("a comma-separated list of features")
        features = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [feature for feature in features if feature not in ACCESSIBILITY_FEATURES]
        if unknown:
            raise ValidationError(
                f"unknown feature(s) {', '.join(unknown)}; use {', '.join(ACCESSIBILITY_FEATURES)}"
            )
        return features


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


# --- input ----------------------------------------------------------------------------------------


class EventInputSchema(Schema):
    """Create (POST, title/starts_at/ends_at required) or change (PATCH, every field optional)."""

    class Meta:
        unknown = RAISE

    title = fields.String(required=True, validate=[validate.Length(1, 300), _not_blank])
    description = fields.String(validate=validate.Length(max=50_000))
    starts_at = IsoDateTime(
        required=True,
        metadata={"description": "First occurrence, ISO 8601 with offset or Z (or naive with 'timezone')"},
    )
    ends_at = IsoDateTime(required=True, metadata={"description": "End of the first occurrence; after starts_at"})
    timezone = fields.String(
        validate=validate.Length(1, 64),
        metadata={"description": "IANA zone the event happens in (default: the node's); recurrence follows it"},
    )
    rrule = fields.String(
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={
            "description": "RFC 5545 RRULE value, e.g. FREQ=WEEKLY;COUNT=10. At most 500 occurrences; a rule "
            "without COUNT or UNTIL is capped one year after the first start (an UNTIL is added)."
        },
    )
    exdates = fields.List(
        fields.String(validate=validate.Length(max=40)),
        validate=validate.Length(max=500),
        metadata={"description": "Removed occurrences: local starts (2026-04-02T19:00:00) or dates"},
    )
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    tags = fields.List(fields.String(validate=[validate.Length(1, 40), _not_blank]), validate=validate.Length(max=20))
    language = fields.String(validate=validate.Regexp(r"^[a-zA-Z]{2}$", error="a two-letter code such as fr"))
    price_cents = StrictInt(validate=validate.Range(min=0, max=100_000_000), metadata={"description": "0 = free"})
    accessibility = fields.Dict(keys=fields.String(validate=validate.OneOf(ACCESSIBILITY_FEATURES)),
                                values=StrictBool())
    capacity = StrictInt(allow_none=True, validate=validate.Range(min=1, max=1_000_000),
                         metadata={"description": "Places per occurrence; null = unlimited"})
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES))
    status = fields.String(validate=validate.OneOf(STATUSES))
    location_kind = fields.String(validate=validate.OneOf(LOCATION_KINDS))
    room_id = StrictInt(
        allow_none=True, metadata={"description": "Required for location_kind=room: the event books it"}
    )
    place_name = fields.String(validate=validate.Length(max=200))
    address = fields.String(validate=validate.Length(max=300))
    postal_code = fields.String(validate=validate.Length(max=20))
    city = fields.String(validate=validate.Length(max=120))
    latitude = StrictFloat(allow_none=True, validate=validate.Range(-90, 90))
    longitude = StrictFloat(allow_none=True, validate=validate.Range(-180, 180))
    online_url = fields.Url(allow_none=True, schemes={"http", "https"}, validate=validate.Length(max=500))
    image_url = fields.Url(allow_none=True, schemes={"http", "https"}, validate=validate.Length(max=500))
    organiser_ids = fields.List(
        StrictInt(), validate=validate.Length(1, 20),
        metadata={"description": "Member organisations organising it; an org_manager's own must be among them"},
    )


class EventQuerySchema(Schema):
    """Filters of GET /api/v1/events and of the feeds."""

    class Meta:
        unknown = EXCLUDE

    start = QueryInstant(data_key="from", metadata={"description": "Occurrences ending after this (default: now)"})
    end = QueryInstant(data_key="to", metadata={"description": "Occurrences starting before this"})
    q = fields.String(validate=validate.Length(max=200),
                      metadata={"description": "Words (at most 12), each the start of a word of the title, "
                                "description, tags, place or city; any case, any accents"})
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    city = fields.String(validate=validate.Length(max=120))
    tag = fields.String(validate=validate.Length(max=40))
    language = fields.String(validate=validate.Regexp(r"^[a-z]{2}$", error="a two-letter code such as fr"))
    free = QueryBool()
    accessible = FeatureList(metadata={"description": "Comma-separated features that must all be offered"})
    scope = fields.String(validate=validate.OneOf(("local", "network")),
                          metadata={"description": "local (default) or network (remote events too)"})
    when = fields.String(validate=validate.OneOf(PERIODS), metadata={
        "description": "A period that moves with the calendar, in the node's time zone: today, weekend, week "
                       "(7 days) or month (to its end); instead of from/to"})
    cursor = fields.String(validate=validate.Length(max=200))
    limit = fields.Integer(validate=validate.Range(1, 100))

    @validates_schema
    def _range(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("start") and data.get("end") and data["end"] <= data["start"]:
            raise ValidationError("'to' must be after 'from'", "to")
        if data.get("when") and (data.get("start") or data.get("end")):
            raise ValidationError("give either a period ('when') or dates ('from', 'to'), not both", "when")


class RegistrationInputSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=[validate.Length(1, 200), _not_blank])
    email = fields.Email(required=True, validate=validate.Length(max=254))
    occurrence = IsoDateTime(
        metadata={"description": "Start of the occurrence (default: the next one); without offset, the event's zone"}
    )


class RegistrationQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    occurrence = QueryInstant()


# --- output ---------------------------------------------------------------------------------------


def _local_iso(value: datetime, tzname: str) -> str:
    try:
        tz = zone(tzname)
    except ValueError:
        tz = UTC
    return value.replace(tzinfo=UTC).astimezone(tz).isoformat(timespec="seconds")


def _actor_dict(actor: Any) -> dict[str, Any]:
    """A remote node as listings show it; ``url`` is its home page (the actor's ``url``, else its origin)."""
    document = actor.document if isinstance(actor.document, dict) else {}
    url = document.get("url") if isinstance(document.get("url"), str) else None
    if url is None:
        parts = urlsplit(actor.ap_id)
        url = f"{parts.scheme}://{parts.netloc}"
    return {"actor": actor.ap_id, "url": url, "name": actor.name, "city": actor.city, "domain": actor.domain}


def origin_dict(event: Any, origins: dict[int, Any]) -> dict[str, Any] | None:
    """Where a remote event comes from (None for a local event)."""
    if not event.is_remote:
        return None
    actor = origins.get(event.origin_actor_id)
    data = _actor_dict(actor) if actor is not None else {"actor": None, "url": None, "name": None, "city": None,
                                                         "domain": None}
    return data | {"registration_url": event.registration_url}


def shared_by_dict(event: Any, origins: dict[int, Any]) -> dict[str, Any] | None:
    """The node that re-shared a remote event to us, when it did not come from its origin directly."""
    actor = origins.get(event.shared_by_actor_id) if event.shared_by_actor_id is not None else None
    return _actor_dict(actor) if actor is not None else None


def event_url(event: Any) -> str:
    if event.is_remote:
        remote_url = (event.remote_object or {}).get("url")
        if isinstance(remote_url, str) and remote_url.startswith(("https://", "http://")):
            return remote_url
    return event.ap_id


def location_dict(event: Any) -> dict[str, Any]:
    return {
        "kind": event.location_kind,
        "room_id": event.room_id,
        "place_name": event.place_name,
        "address": event.address,
        "postal_code": event.postal_code,
        "city": event.city,
        "latitude": event.latitude,
        "longitude": event.longitude,
        "online_url": event.online_url,
    }


def event_to_dict(
    event: Any,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    remaining: int | None = None,
    origins: dict[int, Any] | None = None,
) -> dict[str, Any]:
    """An event as the API shows it; ``starts_at``/``ends_at`` of one occurrence when given."""
    start = starts_at or event.starts_at
    end = ends_at or event.ends_at
    features = event.accessibility or {}
    registration_url = (
        event.registration_url if event.is_remote
        else f"{current_app.config['HALLES_URL']}/api/v1/events/{event.uuid}/registrations"
    )
    return {
        "id": event.uuid,
        "url": event_url(event),
        "ap_id": event.ap_id,
        "title": event.title,
        "description": event.description,
        "starts_at": iso_utc(start),
        "ends_at": iso_utc(end),
        "local_start": _local_iso(start, event.timezone),
        "local_end": _local_iso(end, event.timezone),
        "timezone": event.timezone,
        "rrule": event.rrule,
        "exdates": list(event.exdates or []),
        "category": event.category,
        "tags": list(event.tags or []),
        "language": event.language,
        "price_cents": event.price_cents,
        "free": event.price_cents == 0,
        "accessibility": {feature: bool(features.get(feature)) for feature in ACCESSIBILITY_FEATURES},
        "capacity": event.capacity,
        "remaining": remaining,
        "status": event.status,
        "visibility": event.visibility,
        "organisers": [{"id": org.id, "name": org.name} for org in event.organisers],
        "location": location_dict(event),
        "image_url": event.image_url,
        "registration_url": registration_url,
        "origin": origin_dict(event, origins or {}),
        "shared_by": shared_by_dict(event, origins or {}),
        "created_at": iso_utc(event.created_at),
        "updated_at": iso_utc(event.updated_at),
    }


def occurrence_dict(row: Any) -> dict[str, Any]:
    occurrence, event = row.occurrence, row.event
    return {
        "starts_at": iso_utc(occurrence.starts_at),
        "ends_at": iso_utc(occurrence.ends_at),
        "local_start": _local_iso(occurrence.starts_at, event.timezone),
        "local_end": _local_iso(occurrence.ends_at, event.timezone),
        "remaining": row.remaining,
    }


# --- documentation-only output schemas (apispec renders them in the OpenAPI document) ---------------


class OrganiserRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class LocationSchema(Schema):
    kind = fields.String(metadata={"enum": list(LOCATION_KINDS)})
    room_id = fields.Integer(allow_none=True)
    place_name = fields.String()
    address = fields.String()
    postal_code = fields.String()
    city = fields.String()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    online_url = fields.String(allow_none=True)


class RemoteNodeSchema(Schema):
    actor = fields.String(metadata={"description": "ActivityPub id of the node's actor"})
    url = fields.String(metadata={"description": "The node's home page"})
    name = fields.String()
    city = fields.String()
    domain = fields.String()


class OriginSchema(RemoteNodeSchema):
    registration_url = fields.String(allow_none=True, metadata={"description": "Register there, not here"})


class OccurrenceSchema(Schema):
    starts_at = fields.String(metadata={"format": "date-time"})
    ends_at = fields.String(metadata={"format": "date-time"})
    local_start = fields.String()
    local_end = fields.String()
    remaining = fields.Integer(allow_none=True)


class EventSchema(Schema):
    id = fields.String(metadata={"description": "uuid"})
    url = fields.String()
    ap_id = fields.String()
    title = fields.String()
    description = fields.String()
    starts_at = fields.String(metadata={"format": "date-time", "description": "UTC, this occurrence"})
    ends_at = fields.String(metadata={"format": "date-time"})
    local_start = fields.String(metadata={"description": "In the event's zone, with offset"})
    local_end = fields.String()
    timezone = fields.String()
    rrule = fields.String(allow_none=True)
    exdates = fields.List(fields.String())
    category = fields.String(metadata={"enum": list(CATEGORIES)})
    tags = fields.List(fields.String())
    language = fields.String()
    price_cents = fields.Integer()
    free = fields.Boolean()
    accessibility = fields.Dict(keys=fields.String(), values=fields.Boolean())
    capacity = fields.Integer(allow_none=True)
    remaining = fields.Integer(allow_none=True, metadata={"description": "Places left in this occurrence"})
    status = fields.String(metadata={"enum": list(STATUSES)})
    visibility = fields.String(metadata={"enum": list(VISIBILITIES)})
    organisers = fields.List(fields.Nested(OrganiserRefSchema))
    location = fields.Nested(LocationSchema)
    image_url = fields.String(allow_none=True)
    registration_url = fields.String(allow_none=True)
    origin = fields.Nested(OriginSchema, allow_none=True, metadata={"description": "null for local events"})
    shared_by = fields.Nested(RemoteNodeSchema, allow_none=True,
                              metadata={"description": "The node that re-shared a remote event, if not its origin"})
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})


class EventDetailSchema(EventSchema):
    occurrences = fields.List(fields.Nested(OccurrenceSchema))


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))
    next = fields.String(allow_none=True, metadata={"description": "Cursor of the next page, or null"})


class RegistrationOccurrenceSchema(Schema):
    starts_at = fields.String(metadata={"format": "date-time"})
    local_start = fields.String()


class RegistrationEventRefSchema(Schema):
    id = fields.String()
    title = fields.String()
    url = fields.String()


class RegistrationSchema(Schema):
    id = fields.Integer()
    status = fields.String(metadata={"enum": ["pending", "confirmed", "waitlisted", "cancelled"]})
    name = fields.String()
    email = fields.String()
    event = fields.Nested(RegistrationEventRefSchema)
    occurrence = fields.Nested(RegistrationOccurrenceSchema)
    registered_at = fields.String(metadata={"format": "date-time"})
    confirmed_at = fields.String(allow_none=True)
    cancelled_at = fields.String(allow_none=True)
    erased = fields.Boolean()


class RegistrationListSchema(Schema):
    items = fields.List(fields.Nested(RegistrationSchema))


class RegistrationCreatedSchema(Schema):
    status = fields.String()
    event = fields.String()
    occurrence = fields.Nested(RegistrationOccurrenceSchema)
    remaining = fields.Integer(allow_none=True)
    detail = fields.String()
