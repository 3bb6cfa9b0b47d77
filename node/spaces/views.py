"""Spaces API (/api/v1: sites, rooms, availability, desks, bookings) and the rooms' iCalendar feeds.

Reads of sites, rooms and availability are public; every write needs a Bearer token. Views parse,
call a service, commit once and answer JSON; the rules live in ``node.spaces.services``."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request
from icalendar import Calendar
from icalendar import Event as CalendarEvent
from marshmallow import Schema
from sqlalchemy import select

from node.common.api import created, json_body, load
from node.common.auth import api_login_required, current_actor
from node.common.permissions import require_staff
from node.common.ratelimit import client_address
from node.common.timeutil import as_aware_utc, utcnow
from node.extensions import db
from node.spaces import services
from node.spaces.models import BLOCKING_STATUSES, Booking
from node.spaces.schemas import (
    Availability,
    AvailabilityQuery,
    BookingDecisionInput,
    BookingInput,
    BookingList,
    BookingOutput,
    BookingQuery,
    BusyInterval,
    DeskInput,
    DeskList,
    DeskOutput,
    DeskQuery,
    GuestBookingInput,
    GuestBookingOutput,
    Interval,
    RoomInput,
    RoomList,
    RoomOutput,
    RoomQuery,
    SiteInput,
    SiteList,
    SiteOutput,
)

api = Blueprint("spaces_api", __name__, url_prefix="/api/v1")
# Named ``web`` so the app factory registers it; the blueprint's own name avoids the web domain's.
web = Blueprint("spaces_web", __name__)


def _query(schema: Schema) -> dict[str, Any]:
    return schema.load(request.args.to_dict())


def _optional_body(schema: Schema) -> dict[str, Any]:
    """Decision endpoints work with no body at all; a body, when sent, must be valid JSON."""
    if not request.content_length:
        return schema.load({})
    return schema.load(json_body())


# --- sites ----------------------------------------------------------------------------------------


@api.get("/sites")
def list_sites():
    return jsonify(SiteList().dump({"items": services.list_sites()}))


@api.post("/sites")
@api_login_required
def create_site():
    actor = current_actor()
    require_staff(actor, "create a site")
    site = services.create_site(actor, load(SiteInput()))
    db.session.commit()
    return created(SiteOutput().dump(site), f"/api/v1/sites/{site.id}")


@api.get("/sites/<int:site_id>")
def get_site(site_id: int):
    return jsonify(SiteOutput().dump(services.get_site(site_id)))


@api.patch("/sites/<int:site_id>")
@api_login_required
def update_site(site_id: int):
    actor = current_actor()
    require_staff(actor, "change a site")
    services.get_site(site_id)
    site = services.update_site(actor, site_id, load(SiteInput(), partial=True))
    db.session.commit()
    return jsonify(SiteOutput().dump(site))


@api.delete("/sites/<int:site_id>")
@api_login_required
def delete_site(site_id: int):
    services.delete_site(current_actor(), site_id)
    db.session.commit()
    return Response(status=204)


# --- rooms ----------------------------------------------------------------------------------------


@api.get("/rooms")
def list_rooms():
    args = _query(RoomQuery())
    rooms = services.list_rooms(current_actor(), **args)
    return jsonify(RoomList().dump({"items": rooms}))


@api.post("/rooms")
@api_login_required
def create_room():
    actor = current_actor()
    require_staff(actor, "create a room")
    room = services.create_room(actor, load(RoomInput()))
    db.session.commit()
    return created(RoomOutput().dump(room), f"/api/v1/rooms/{room.id}")


@api.get("/rooms/<int:room_id>")
def get_room(room_id: int):
    return jsonify(RoomOutput().dump(services.get_room(room_id)))


@api.patch("/rooms/<int:room_id>")
@api_login_required
def update_room(room_id: int):
    actor = current_actor()
    require_staff(actor, "change a room")
    services.get_room(room_id)
    room = services.update_room(actor, room_id, load(RoomInput(), partial=True))
    db.session.commit()
    return jsonify(RoomOutput().dump(room))


@api.delete("/rooms/<int:room_id>")
@api_login_required
def delete_room(room_id: int):
    outcome = services.delete_room(current_actor(), room_id)
    db.session.commit()
    if outcome == "deleted":
        return Response(status=204)
    # Rooms with bookings stay (history, invoices): the answer shows the room, now inactive.
    return jsonify(RoomOutput().dump(services.get_room(room_id)))


@api.get("/rooms/<int:room_id>/availability")
def room_availability(room_id: int):
    args = _query(AvailabilityQuery())
    result = services.room_availability(room_id, args.get("start"), args.get("end"))
    return jsonify(Availability().dump(result))


# --- desks ----------------------------------------------------------------------------------------


@api.get("/desks")
@api_login_required
def list_desks():
    desks = services.list_desks(current_actor(), **_query(DeskQuery()))
    return jsonify(DeskList().dump({"items": desks}))


@api.post("/desks")
@api_login_required
def create_desk():
    actor = current_actor()
    require_staff(actor, "create a desk")
    desk = services.create_desk(actor, load(DeskInput()))
    db.session.commit()
    return created(DeskOutput().dump(desk), f"/api/v1/desks/{desk.id}")


@api.patch("/desks/<int:desk_id>")
@api_login_required
def update_desk(desk_id: int):
    actor = current_actor()
    require_staff(actor, "change a desk")
    services.get_desk(desk_id)
    desk = services.update_desk(actor, desk_id, load(DeskInput(), partial=True))
    db.session.commit()
    return jsonify(DeskOutput().dump(desk))


@api.delete("/desks/<int:desk_id>")
@api_login_required
def delete_desk(desk_id: int):
    services.delete_desk(current_actor(), desk_id)
    db.session.commit()
    return Response(status=204)


# --- bookings -------------------------------------------------------------------------------------


@api.get("/bookings")
@api_login_required
def list_bookings():
    args = _query(BookingQuery())
    items, next_cursor = services.list_bookings(current_actor(), **args)
    return jsonify(BookingList().dump({"items": items, "next_cursor": next_cursor}))


@api.post("/bookings")
@api_login_required
def create_booking():
    actor = current_actor()
    data = load(BookingInput())
    organisation_id = data.get("organisation_id")
    if "organisation_id" not in data and actor.role == "org_manager":
        # An organisation manager books for their own organisation unless they say otherwise.
        organisation_id = actor.organisation_id
    booking = services.book_room(
        actor,
        data["room_id"],
        data["starts_at"],
        data["ends_at"],
        organisation_id=organisation_id,
        category=data["category"],
        purpose=data.get("purpose", ""),
        status=data.get("status"),
        requester_name=data.get("requester_name"),
        requester_email=data.get("requester_email"),
        requester_organisation=data.get("requester_organisation"),
    )
    db.session.commit()
    return created(BookingOutput().dump(booking), f"/api/v1/bookings/{booking.id}")


@api.get("/bookings/<int:booking_id>")
@api_login_required
def get_booking(booking_id: int):
    return jsonify(BookingOutput().dump(services.get_booking(current_actor(), booking_id)))


def _decide(action, booking_id: int):
    actor = current_actor()
    message = _optional_body(BookingDecisionInput())["message"]
    booking = action(actor, booking_id, message)
    db.session.commit()
    return jsonify(BookingOutput().dump(booking))


@api.post("/bookings/<int:booking_id>/approve")
@api_login_required
def approve_booking(booking_id: int):
    require_staff(current_actor(), "approve a booking")
    return _decide(services.approve_booking, booking_id)


@api.post("/bookings/<int:booking_id>/refuse")
@api_login_required
def refuse_booking(booking_id: int):
    require_staff(current_actor(), "refuse a booking")
    return _decide(services.refuse_booking, booking_id)


@api.post("/bookings/<int:booking_id>/cancel")
@api_login_required
def cancel_booking(booking_id: int):
    return _decide(services.cancel_booking, booking_id)


# --- guest booking requests -----------------------------------------------------------------------


@api.post("/rooms/<int:room_id>/booking-requests")
def request_booking(room_id: int):
    """The public room page's request form as an API: no account, always pending, acknowledged by email."""
    services.limit_guest_requests(client_address())  # first: before anything is read or written
    data = load(GuestBookingInput())
    booking = services.request_booking_as_guest(
        room_id, data["starts_at"], data["ends_at"], name=data["name"], email=data["email"],
        organisation_name=data["organisation_name"], category=data["category"], purpose=data["purpose"],
    )
    db.session.commit()
    return created(GuestBookingOutput().dump(booking))


# --- iCalendar feed -------------------------------------------------------------------------------

#: How far back the feed goes: calendar apps need recent history, not years of it.
FEED_HISTORY = timedelta(days=90)


@web.get("/rooms/<int:room_id>.ics")
def room_calendar(room_id: int):
    """The room's pending and approved bookings as iCalendar, with no personal data: approved ones
    show their purpose, pending ones only that the slot is held."""
    room = services.get_room(room_id)
    bookings = db.session.scalars(
        select(Booking)
        .where(
            Booking.room_id == room.id,
            Booking.status.in_(BLOCKING_STATUSES),
            Booking.ends_at >= utcnow() - FEED_HISTORY,
        )
        .order_by(Booking.starts_at, Booking.id)
    ).all()
    host = urlsplit(current_app.config["HALLES_URL"]).hostname or "localhost"
    calendar = Calendar()
    calendar.add("prodid", "-//Halles//Rooms//FR")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"{room.name} — {room.site.name}")
    calendar.add("x-wr-timezone", current_app.config.get("HALLES_TIMEZONE", "Europe/Paris"))
    for booking in bookings:
        item = CalendarEvent()
        # Stable across status changes and re-fetches, so calendar apps update rather than duplicate.
        item.add("uid", f"booking-{booking.id}@{host}")
        item.add("dtstamp", as_aware_utc(booking.decided_at or booking.created_at))
        item.add("dtstart", as_aware_utc(booking.starts_at).astimezone(UTC))
        item.add("dtend", as_aware_utc(booking.ends_at).astimezone(UTC))
        if booking.status == "approved":
            item.add("summary", booking.purpose.strip().splitlines()[0][:200] if booking.purpose.strip() else "Réservé")
            item.add("status", "CONFIRMED")
        else:
            item.add("summary", "Réservé (en attente de confirmation)")
            item.add("status", "TENTATIVE")
        item.add("location", f"{room.name}, {room.site.address}, {room.site.city}")
        item.add("transp", "OPAQUE")
        calendar.add_component(item)
    response = Response(calendar.to_ical(), mimetype="text/calendar")
    response.headers["Content-Type"] = "text/calendar; charset=utf-8"
    response.headers["Content-Disposition"] = f'inline; filename="room-{room.id}.ics"'
    # booking_seq moves with every booking write on this room: a cheap, exact validator.
    response.set_etag(f"room-{room.id}-{room.booking_seq}-{utcnow().date().isoformat()}")
    return response.make_conditional(request)


# --- OpenAPI --------------------------------------------------------------------------------------

# Leaves first: apispec then references them from the lists that nest them.
OPENAPI_SCHEMAS = {
    "Site": SiteOutput,
    "SiteInput": SiteInput,
    "SiteList": SiteList,
    "Room": RoomOutput,
    "RoomInput": RoomInput,
    "RoomList": RoomList,
    "AvailabilityInterval": Interval,
    "BusyInterval": BusyInterval,
    "Availability": Availability,
    "Desk": DeskOutput,
    "DeskInput": DeskInput,
    "DeskList": DeskList,
    "Booking": BookingOutput,
    "BookingInput": BookingInput,
    "BookingDecision": BookingDecisionInput,
    "GuestBookingRequest": GuestBookingInput,
    "GuestBookingReceived": GuestBookingOutput,
    "BookingList": BookingList,
}

_ERRORS = {
    400: "the body is not valid JSON, or the cursor is not one this server issued",
    401: "no or an unknown Bearer token",
    403: "your role does not allow this",
    404: "no such object",
    409: "conflicts with the current state (e.g. the slot is already booked)",
    413: "the body is larger than the server accepts",
    415: "the body is not sent as application/json",
    422: "invalid fields; 'errors' lists them",
    429: "too many requests from this address: Retry-After says when to try again",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str,
    *,
    ok: tuple[int, str | None],
    errors: tuple[int, ...],
    body: str | None = None,
    params: tuple[dict[str, Any], ...] = (),
    query: type[Schema] | None = None,
    auth: bool = True,
    tag: str = "spaces",
    description: str = "",
) -> dict[str, Any]:
    status, schema_name = ok
    responses: dict[Any, Any] = {
        str(status): (
            {"description": "OK", "content": {"application/json": {"schema": _ref(schema_name)}}}
            if schema_name
            else {"description": "done, no content"}
        )
    }
    for code in errors:
        responses[str(code)] = {
            "description": _ERRORS[code],
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        operation["description"] = description
    parameters = list(params)
    if query is not None:
        parameters.append({"in": "query", "schema": query})
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if auth:
        operation["security"] = [{"bearer": []}]
    return operation


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


_WRITE = (400, 401, 403, 413, 415, 422)
_SITE, _ROOM, _DESK, _BOOKING = (_path_id(n) for n in ("site_id", "room_id", "desk_id", "booking_id"))
_PATCH_NOTE = "Send only the fields to change."

OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/sites": {
        "get": _op("List the sites", ok=(200, "SiteList"), errors=(), auth=False),
        "post": _op("Create a site (staff)", ok=(201, "Site"), errors=_WRITE, body="SiteInput"),
    },
    "/api/v1/sites/{site_id}": {
        "get": _op("One site", ok=(200, "Site"), errors=(404,), params=(_SITE,), auth=False),
        "patch": _op("Change a site (staff)", ok=(200, "Site"), errors=(*_WRITE, 404), params=(_SITE,),
                     body="SiteInput", description=_PATCH_NOTE),
        "delete": _op("Delete a site without rooms or desks (staff)", ok=(204, None), errors=(401, 403, 404, 409),
                      params=(_SITE,)),
    },
    "/api/v1/rooms": {
        "get": _op("List the rooms (active ones; staff may add include_inactive=true)", ok=(200, "RoomList"),
                   errors=(422,), query=RoomQuery, auth=False),
        "post": _op("Create a room (staff)", ok=(201, "Room"), errors=(*_WRITE, 404), body="RoomInput"),
    },
    "/api/v1/rooms/{room_id}": {
        "get": _op("One room", ok=(200, "Room"), errors=(404,), params=(_ROOM,), auth=False),
        "patch": _op("Change a room (staff)", ok=(200, "Room"), errors=(*_WRITE, 404), params=(_ROOM,),
                     body="RoomInput", description=_PATCH_NOTE),
        "delete": _op(
            "Delete a room (staff)", ok=(200, "Room"), errors=(401, 403, 404), params=(_ROOM,),
            description="204 when the room was never booked and is deleted; 200 with the room, now inactive, "
            "when it has bookings (kept for history).",
        ),
    },
    "/api/v1/rooms/{room_id}/availability": {
        "get": _op(
            "When a room is busy and free", ok=(200, "Availability"), errors=(404, 422), params=(_ROOM,),
            query=AvailabilityQuery, auth=False,
            description="from/to are ISO 8601 with an offset (default: now, and 7 days later; at most 92 days). "
            "Busy intervals are pending and approved bookings, with no personal data.",
        ),
    },
    "/api/v1/rooms/{room_id}/booking-requests": {
        "post": _op(
            "Ask for a room without an account", ok=(201, "GuestBookingReceived"),
            errors=(400, 404, 409, 413, 415, 422, 429), params=(_ROOM,), body="GuestBookingRequest", auth=False,
            description="The booking is pending until the office answers by email; member tariffs need an "
            "account. Each client address may send HALLES_RATE_LIMIT_BOOKING_REQUESTS requests (default 10 "
            "an hour, counted whether they succeed or not; the room page's form shares the budget): past it, "
            "429 with Retry-After.",
        ),
    },
    "/api/v1/desks": {
        "get": _op("List the desks (signed-in users)", ok=(200, "DeskList"), errors=(401, 422), query=DeskQuery),
        "post": _op("Create a desk (staff)", ok=(201, "Desk"), errors=(*_WRITE, 404), body="DeskInput"),
    },
    "/api/v1/desks/{desk_id}": {
        "patch": _op("Rename, move or assign a desk to an organisation (staff)", ok=(200, "Desk"),
                     errors=(*_WRITE, 404), params=(_DESK,), body="DeskInput",
                     description=_PATCH_NOTE + " organisation_id null frees the desk."),
        "delete": _op("Delete a desk (staff)", ok=(204, None), errors=(401, 403, 404), params=(_DESK,)),
    },
    "/api/v1/bookings": {
        "get": _op("List bookings (staff: all; org_manager: their organisation's)", ok=(200, "BookingList"),
                   errors=(400, 401, 403, 422), query=BookingQuery),
        "post": _op(
            "Book a room (staff, or an org_manager for their organisation)", ok=(201, "Booking"),
            errors=(*_WRITE, 404, 409), body="BookingInput",
            description="The price is the room's hourly tariff for the category, pro rata per minute. "
            "Member categories need an organisation that signed the current charter (403 otherwise). "
            "409 when the slot overlaps a pending or approved booking.",
        ),
    },
    "/api/v1/bookings/{booking_id}": {
        "get": _op("One booking", ok=(200, "Booking"), errors=(401, 403, 404), params=(_BOOKING,)),
    },
}
OPENAPI_PATHS["/api/v1/rooms/{room_id}"]["delete"]["responses"]["204"] = {"description": "deleted (never booked)"}
for _action, _who in (("approve", "staff"), ("refuse", "staff"), ("cancel", "staff or the organisation's manager")):
    OPENAPI_PATHS[f"/api/v1/bookings/{{booking_id}}/{_action}"] = {
        "post": _op(
            f"{_action.capitalize()} a booking ({_who})", ok=(200, "Booking"),
            errors=(400, 401, 403, 404, 409, 413, 415, 422), params=(_BOOKING,),
            description="The body is optional; its message is added to the email sent to the requester.",
        )
        | {"requestBody": {"required": False, "content": {"application/json": {"schema": _ref("BookingDecision")}}}}
    }
