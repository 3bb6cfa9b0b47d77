"""Marshmallow schemas of the spaces API: what sites, rooms, desks and bookings accept and return.

Input schemas are strict about JSON types (no "12" for 12, no 1 for true) and reject unknown fields,
so a typo in a field name is a 422 that names it instead of a silently ignored value. Datetimes must
carry an offset (or Z): a naive time is ambiguous around DST changes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import current_app
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from node.common.timeutil import as_aware_utc, iso_utc, to_utc_naive, zone
from node.organisations.schemas import OptionalUrl
from node.spaces.models import BOOKER_CATEGORIES, BOOKING_STATUSES
from node.spaces.pricing import format_euros
from node.spaces.services import local_zone_name

# In a query string an unencoded '+' arrives as a space: '2026-03-02T14:00:00 01:00'.
_SPACE_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")


def local_iso(value: datetime | None) -> str | None:
    """Naive UTC -> ISO 8601 in the node's time zone with its offset, e.g. '2026-03-02T15:00:00+01:00'."""
    if value is None:
        return None
    return as_aware_utc(value).astimezone(zone(local_zone_name())).isoformat(timespec="seconds")


# --- fields ---------------------------------------------------------------------------------------


class UtcDateTime(fields.DateTime):
    """ISO 8601 with an offset or Z in; naive UTC to the service; '...Z' out."""

    default_error_messages = {
        "invalid": "not a valid ISO 8601 date-time; write it like 2026-03-02T14:00:00+01:00 or 2026-03-02T13:00:00Z",
        "naive": "this date-time has no time zone; add an offset such as +01:00 or Z, e.g. 2026-03-02T14:00:00+01:00",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = _SPACE_OFFSET.sub(r"\1+\2", value.strip())
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise self.make_error("invalid") from None
        if parsed.tzinfo is None:
            raise self.make_error("naive")
        return to_utc_naive(parsed)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso_utc(value)


class StrictInt(fields.Integer):
    """A JSON integer only: '12', 12.5 and true are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


class StrictFloat(fields.Float):
    """A JSON number only (the plain Float field would accept the string '48.8')."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBool(fields.Boolean):
    """true or false only (the plain Boolean field would accept 1, 'yes', 'on')."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


class Text(fields.String):
    """A string with surrounding whitespace removed, so '   ' does not pass as a name."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class QueryBool(fields.Boolean):
    """Booleans in query strings: true/false/1/0 only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(truthy={"true", "1"}, falsy={"false", "0"}, **kwargs)


def _required_text(max_length: int, **kwargs: Any) -> Text:
    return Text(required=True, validate=validate.Length(min=1, max=max_length), **kwargs)


class InputSchema(Schema):
    class Meta:
        unknown = RAISE


class QuerySchema(Schema):
    # Query strings also carry parameters for other layers (?lang=fr), so unknown ones are ignored.
    class Meta:
        unknown = EXCLUDE


TARIFFS_DESCRIPTION = (
    "booker category -> price in euro cents per hour; a category left out cannot book the room. "
    f"Categories: {', '.join(BOOKER_CATEGORIES)}"
)


def _tariffs_field(**kwargs: Any) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=validate.OneOf(BOOKER_CATEGORIES)),
        values=StrictInt(validate=validate.Range(min=0, max=1_000_000)),
        metadata={"description": TARIFFS_DESCRIPTION, "example": {"member": 1000, "ngo": 2000}},
        **kwargs,
    )


# --- sites ----------------------------------------------------------------------------------------


class SiteInput(InputSchema):
    name = _required_text(200, metadata={"example": "Les Halles Civiques — Belleville"})
    address = _required_text(300, metadata={"example": "12 rue de Belleville"})
    postal_code = Text(validate=validate.Length(max=20), load_default="")
    city = _required_text(120, metadata={"example": "Paris"})
    latitude = StrictFloat(allow_none=True, validate=validate.Range(min=-90, max=90), load_default=None)
    longitude = StrictFloat(allow_none=True, validate=validate.Range(min=-180, max=180), load_default=None)
    opening_hours = Text(validate=validate.Length(max=2000), load_default="",
                         metadata={"example": "Mon-Fri 9:00-19:00"})
    accessibility = Text(validate=validate.Length(max=4000), load_default="",
                         metadata={"example": "Step-free entrance; metro Belleville (lines 2, 11)"})


class SiteOutput(Schema):
    id = fields.Integer()
    name = fields.String()
    address = fields.String()
    postal_code = fields.String()
    city = fields.String()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    opening_hours = fields.String()
    accessibility = fields.String()
    created_at = UtcDateTime()


class SiteList(Schema):
    items = fields.List(fields.Nested(SiteOutput))


# --- rooms ----------------------------------------------------------------------------------------


class RoomInput(InputSchema):
    site_id = StrictInt(required=True)
    name = _required_text(200, metadata={"example": "Salle Olympe de Gouges"})
    description = Text(validate=validate.Length(max=4000), load_default="")
    capacity = StrictInt(required=True, validate=validate.Range(min=1, max=100_000))
    amenities = fields.List(Text(validate=validate.Length(min=1, max=100)), validate=validate.Length(max=50),
                            load_default=list, metadata={"example": ["projector", "kitchen"]})
    step_free = StrictBool(load_default=False)
    photo_url = OptionalUrl(allow_none=True, schemes={"http", "https"}, validate=validate.Length(max=500),
                            load_default=None)
    tariffs = _tariffs_field(load_default=dict)
    active = StrictBool(load_default=True)


class RoomOutput(Schema):
    id = fields.Integer()
    site_id = fields.Integer()
    site_name = fields.Function(lambda room: room.site.name, metadata={"type": "string"})
    name = fields.String()
    description = fields.String()
    capacity = fields.Integer()
    amenities = fields.List(fields.String())
    step_free = fields.Boolean()
    photo_url = fields.String(allow_none=True)
    tariffs = fields.Dict(keys=fields.String(), values=fields.Integer(),
                          metadata={"description": TARIFFS_DESCRIPTION})
    active = fields.Boolean()
    calendar_url = fields.Function(
        lambda room: f"{current_app.config['HALLES_URL']}/rooms/{room.id}.ics",
        metadata={"type": "string", "description": "iCalendar feed of the room's bookings (no personal data)"},
    )


class RoomList(Schema):
    items = fields.List(fields.Nested(RoomOutput))


class RoomQuery(QuerySchema):
    site_id = fields.Integer()
    min_capacity = fields.Integer(validate=validate.Range(min=1))
    step_free = QueryBool()
    include_inactive = QueryBool(load_default=False)


class AvailabilityQuery(QuerySchema):
    # ``from`` is a Python keyword, hence data_key.
    start = UtcDateTime(data_key="from")
    end = UtcDateTime(data_key="to")


class Interval(Schema):
    starts_at = UtcDateTime()
    ends_at = UtcDateTime()
    starts_at_local = fields.Function(lambda item: local_iso(item["starts_at"]),
                                      metadata={"type": "string", "format": "date-time"})
    ends_at_local = fields.Function(lambda item: local_iso(item["ends_at"]),
                                    metadata={"type": "string", "format": "date-time"})


class BusyInterval(Interval):
    status = fields.String(metadata={"enum": ["pending", "approved"]})


class Availability(Schema):
    room_id = fields.Integer()
    timezone = fields.String(metadata={"example": "Europe/Paris"})
    start = UtcDateTime(data_key="from")
    end = UtcDateTime(data_key="to")
    opening_hours = fields.String(metadata={"description": "the site's opening hours, as written by the staff"})
    busy = fields.List(fields.Nested(BusyInterval))
    free = fields.List(fields.Nested(Interval), metadata={"description": "gaps between busy intervals"})


# --- desks ----------------------------------------------------------------------------------------


class DeskInput(InputSchema):
    site_id = StrictInt(required=True)
    label = _required_text(100, metadata={"example": "B-12"})
    organisation_id = StrictInt(allow_none=True, load_default=None,
                                metadata={"description": "the organisation the desk is assigned to, or null"})


class DeskOutput(Schema):
    id = fields.Integer()
    site_id = fields.Integer()
    label = fields.String()
    organisation_id = fields.Integer(allow_none=True)
    organisation_name = fields.Function(lambda desk: desk.organisation.name if desk.organisation else None,
                                        metadata={"type": "string", "nullable": True})


class DeskList(Schema):
    items = fields.List(fields.Nested(DeskOutput))


class DeskQuery(QuerySchema):
    site_id = fields.Integer()
    organisation_id = fields.Integer()


# --- bookings -------------------------------------------------------------------------------------


class BookingInput(InputSchema):
    room_id = StrictInt(required=True)
    starts_at = UtcDateTime(required=True, metadata={"example": "2026-03-02T14:00:00+01:00"})
    ends_at = UtcDateTime(required=True, metadata={"example": "2026-03-02T16:30:00+01:00"})
    organisation_id = StrictInt(
        allow_none=True,
        metadata={"description": "the booking organisation; an org_manager's own organisation when left out"},
    )
    category = fields.String(required=True, validate=validate.OneOf(BOOKER_CATEGORIES))
    purpose = Text(validate=validate.Length(max=2000), load_default="")
    requester_name = Text(validate=validate.Length(min=1, max=200),
                          metadata={"description": "defaults to the acting user's name"})
    requester_email = fields.Email(validate=validate.Length(max=254),
                                   metadata={"description": "defaults to the acting user's email"})
    requester_organisation = Text(validate=validate.Length(max=200))
    status = fields.String(
        validate=validate.OneOf(("pending", "approved")),
        metadata={"description": "staff bookings are approved at once unless 'pending' is asked"},
    )

    @validates_schema
    def _end_after_start(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("must be after starts_at", field_name="ends_at")


class GuestBookingInput(InputSchema):
    """A booking request from someone without an account (the public room page's form, as JSON)."""

    starts_at = UtcDateTime(required=True, metadata={"example": "2026-03-02T14:00:00+01:00"})
    ends_at = UtcDateTime(required=True, metadata={"example": "2026-03-02T16:30:00+01:00"})
    name = _required_text(200, metadata={"example": "Nadia Kaci"})
    email = fields.Email(required=True, validate=validate.Length(max=254),
                         metadata={"description": "the answer is sent there"})
    organisation_name = Text(validate=validate.Length(max=200), load_default="")
    category = fields.String(required=True, validate=validate.OneOf(BOOKER_CATEGORIES),
                             metadata={"description": "a non-member category the room has a tariff for"})
    purpose = Text(validate=validate.Length(max=2000), load_default="")

    @validates_schema
    def _end_after_start(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("must be after starts_at", field_name="ends_at")


class GuestBookingOutput(Schema):
    """What the person who asked may see of their request (no account: nothing more to read later)."""

    id = fields.Integer()
    room_id = fields.Integer()
    status = fields.String(metadata={"enum": ["pending"]})
    starts_at = UtcDateTime()
    ends_at = UtcDateTime()
    price_cents = fields.Integer(metadata={"description": "estimated; the office confirms by email"})
    detail = fields.Function(lambda booking: f"request received; the team answers by email at "
                                             f"{booking.requester_email}", metadata={"type": "string"})


class BookingDecisionInput(InputSchema):
    message = Text(validate=validate.Length(max=2000), load_default="",
                   metadata={"description": "added to the email sent to the requester"})


class BookingOutput(Schema):
    id = fields.Integer()
    room_id = fields.Integer()
    room_name = fields.Function(lambda booking: booking.room.name, metadata={"type": "string"})
    organisation_id = fields.Integer(allow_none=True)
    requester_name = fields.String()
    requester_email = fields.String()
    requester_organisation = fields.String()
    category = fields.String(metadata={"enum": list(BOOKER_CATEGORIES)})
    purpose = fields.String()
    starts_at = UtcDateTime()
    ends_at = UtcDateTime()
    starts_at_local = fields.Function(lambda booking: local_iso(booking.starts_at),
                                      metadata={"type": "string", "format": "date-time"})
    ends_at_local = fields.Function(lambda booking: local_iso(booking.ends_at),
                                    metadata={"type": "string", "format": "date-time"})
    status = fields.String(metadata={"enum": list(BOOKING_STATUSES)})
    price_cents = fields.Integer()
    price_euros = fields.Function(lambda booking: format_euros(booking.price_cents),
                                  metadata={"type": "string", "example": "25.00"})
    event_id = fields.Integer(allow_none=True)
    created_by_id = fields.Integer(allow_none=True)
    decided_by_id = fields.Integer(allow_none=True)
    decided_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime()


class BookingList(Schema):
    items = fields.List(fields.Nested(BookingOutput))
    next_cursor = fields.String(allow_none=True, metadata={"description": "pass as ?cursor= for the next page"})


class BookingQuery(QuerySchema):
    room_id = fields.Integer()
    organisation_id = fields.Integer()
    status = fields.String(validate=validate.OneOf(BOOKING_STATUSES))
    start = UtcDateTime(data_key="from")
    end = UtcDateTime(data_key="to")
    limit = fields.Integer(validate=validate.Range(min=1, max=200), load_default=50)
    cursor = fields.String()
