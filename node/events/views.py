"""Events API (/api/v1/events...), registration links and feeds (/events.ics, /events.atom).

Views parse with the schemas, call the services, commit, and answer JSON (or a feed, or a small HTML
page for the links people receive by email)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from sqlalchemy import select

from node.common.api import created, load
from node.common.auth import api_login_required, current_actor, require_actor
from node.common.errors import NotFound
from node.common.ratelimit import rate_limited
from node.common.timeutil import to_utc_naive, utcnow, zone
from node.events import feeds, registrations, services
from node.events.periods import period_bounds
from node.events.schemas import (
    EventDetailSchema,
    EventInputSchema,
    EventPageSchema,
    EventQuerySchema,
    EventSchema,
    RegistrationCreatedSchema,
    RegistrationInputSchema,
    RegistrationListSchema,
    RegistrationQuerySchema,
    RegistrationSchema,
    event_to_dict,
    occurrence_dict,
)
from node.extensions import db

api = Blueprint("events_api", __name__, url_prefix="/api/v1")
web = Blueprint("events_web", __name__, template_folder="templates")

#: The web blueprint's only writes are the registration links, authorised by the secret in the URL
#: (which a cross-site form cannot know), not by a session cookie: CSRF tokens would add nothing and
#: would break the link for someone whose mail client opens it in another browser.
CSRF_EXEMPT = True

#: Feeds reach back this far by default, so a subscribed calendar does not drop an event the moment
#: it ends.
FEED_LOOKBACK = timedelta(days=30)
ICS_MAX_EVENTS = 500
ATOM_DEFAULT_ENTRIES = 50
REGISTRATION_ACTIONS = ("confirm", "cancel", "erase")


def _origins(events: list[Any]) -> dict[int, Any]:
    from node.fedi.models import RemoteActor

    ids = {actor_id for event in events for actor_id in (event.origin_actor_id, event.shared_by_actor_id)
           if actor_id is not None}
    if not ids:
        return {}
    return {actor.id: actor for actor in db.session.scalars(select(RemoteActor).where(RemoteActor.id.in_(ids)))}


def _conditional(response: Response) -> Response:
    """ETag over the body (it depends on who asks: Vary). No Last-Modified: a list changes when places
    are taken or events appear, which no single updated_at tells."""
    response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:32], weak=True)
    response.vary.add("Authorization")
    response.vary.add("Cookie")
    return response.make_conditional(request)


def _filters(args: dict[str, Any], *, default_start, period_from_midnight: bool = False) -> dict[str, Any]:
    """Service filters from a loaded EventQuerySchema. A period (``when``) starts at midnight of its
    first day for a calendar (``period_from_midnight``: today's morning event stays in today's feed),
    and not before ``default_start`` (now) for a list of what is still to come."""
    start, end = args.get("start", default_start), args.get("end")
    if args.get("when"):
        now = utcnow()
        first, end = period_bounds(args["when"], now, zone(current_app.config["HALLES_TIMEZONE"]))
        start = first if period_from_midnight else max(first, to_utc_naive(default_start))
    return {
        "scope": args.get("scope", "local"),
        "start": start,
        "end": end,
        "q": args.get("q"),
        "category": args.get("category"),
        "city": args.get("city"),
        "tag": args.get("tag"),
        "language": args.get("language"),
        "free": args.get("free"),
        "accessible": args.get("accessible"),
    }


def _detail(event: Any) -> dict[str, Any]:
    rows = services.occurrence_rows(event)
    first = rows[0] if rows else None
    data = event_to_dict(event, remaining=first.remaining if first else None, origins=_origins([event]))
    data["occurrences"] = [occurrence_dict(row) for row in rows]
    return data


# --- API: events ----------------------------------------------------------------------------------


@api.get("/events")
def list_events():
    args = EventQuerySchema().load(request.args.to_dict())
    rows, next_cursor = services.list_occurrences(
        current_actor(),
        cursor=args.get("cursor"),
        limit=args.get("limit", services.DEFAULT_LIMIT),
        **_filters(args, default_start=utcnow()),
    )
    origins = _origins([row.event for row in rows])
    items = [
        event_to_dict(row.event, starts_at=row.occurrence.starts_at, ends_at=row.occurrence.ends_at,
                      remaining=row.remaining, origins=origins)
        for row in rows
    ]
    return _conditional(jsonify({"items": items, "next": next_cursor}))


@api.post("/events")
@api_login_required
def create_event():
    data = load(EventInputSchema())
    event = services.create_event(current_actor(), data)
    db.session.commit()
    return created(_detail(event), location=f"/api/v1/events/{event.uuid}")


@api.get("/events/<event_uuid>")
def get_event(event_uuid: str):
    event = services.get_event(current_actor(), event_uuid)
    return _conditional(jsonify(_detail(event)))


@api.patch("/events/<event_uuid>")
@api_login_required
def update_event(event_uuid: str):
    actor = current_actor()
    event = services.get_event(actor, event_uuid)
    data = load(EventInputSchema(), partial=True)
    services.update_event(actor, event, data)
    db.session.commit()
    return jsonify(_detail(event))


@api.delete("/events/<event_uuid>")
@api_login_required
def delete_event(event_uuid: str):
    actor = current_actor()
    services.delete_event(actor, services.get_event(actor, event_uuid))
    db.session.commit()
    return "", 204


@api.post("/events/<event_uuid>/cancel")
@api_login_required
def cancel_event(event_uuid: str):
    actor = current_actor()
    event = services.cancel_event(actor, services.get_event(actor, event_uuid))
    db.session.commit()
    return jsonify(_detail(event))


# --- API: registrations ---------------------------------------------------------------------------


@api.get("/events/<event_uuid>/registrations")
def list_registrations(event_uuid: str):
    actor = current_actor()
    event = services.get_event(actor, event_uuid)
    require_actor()
    args = RegistrationQuerySchema().load(request.args.to_dict())
    occurrence = args.get("occurrence")
    rows = registrations.list_registrations(
        actor, event,
        occurrence_starts_at=services._utc(occurrence) if occurrence is not None else None,
    )
    return jsonify({"items": [registrations.registration_to_dict(row) for row in rows]})


@api.post("/events/<event_uuid>/registrations")
@rate_limited("registrations")
def register(event_uuid: str):
    event = services.get_event(current_actor(), event_uuid)
    data = load(RegistrationInputSchema())
    registration, _secret = registrations.register(
        event, name=data["name"], email=data["email"], occurrence=data.get("occurrence")
    )
    remaining = registrations.remaining_places(event, registration.occurrence_starts_at)
    db.session.commit()
    # The secret is not in the answer: only the email carries it, which proves the address is theirs.
    return created(
        {
            "status": registration.status,
            "event": event.uuid,
            "occurrence": registrations.registration_to_dict(registration)["occurrence"],
            "remaining": remaining,
            "detail": f"we sent a link to {registration.email}: open it to confirm your registration",
        }
    )


@api.get("/events/<event_uuid>/registrations.csv")
def registrations_csv(event_uuid: str):
    actor = current_actor()
    event = services.get_event(actor, event_uuid)
    require_actor()
    body = registrations.registrations_csv(actor, event)
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="registrations-{event.uuid}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


@api.get("/registrations/<token>")
def registration_status(token: str):
    return jsonify(registrations.registration_to_dict(registrations.by_token(token)))


@api.post("/registrations/<token>/<action>")
def registration_action(token: str, action: str):
    registration = _perform(token, action)
    return jsonify(registrations.registration_to_dict(registration))


def _perform(token: str, action: str):
    if action not in REGISTRATION_ACTIONS:
        raise NotFound(f"unknown action {action!r}: use {', '.join(REGISTRATION_ACTIONS)}")
    registration = getattr(registrations, action)(token)
    db.session.commit()
    return registration


# --- web: the links in the emails -----------------------------------------------------------------


@web.get("/registrations/<token>/<action>")
def registration_page(token: str, action: str):
    """Safe for mail scanners that open links: shows what will happen and a button that POSTs."""
    if action not in REGISTRATION_ACTIONS:
        raise NotFound(f"unknown action {action!r}: use {', '.join(REGISTRATION_ACTIONS)}")
    registration = registrations.by_token(token)
    return render_template(
        "events/registration.html", registration=registration, event=registration.event, action=action,
        done=False, when=registrations.describe_occurrence(registration.event, registration.occurrence_starts_at),
        place=registrations.describe_place(registration.event),
    )


@web.post("/registrations/<token>/<action>")
def registration_submit(token: str, action: str):
    registration = _perform(token, action)
    return render_template(
        "events/registration.html", registration=registration, event=registration.event, action=action,
        done=True, when=registrations.describe_occurrence(registration.event, registration.occurrence_starts_at),
        place=registrations.describe_place(registration.event),
    )


# --- web: feeds -----------------------------------------------------------------------------------


def _feed_events(default_limit: int) -> list[Any]:
    args = EventQuerySchema().load(request.args.to_dict())
    return services.list_events(
        None, public_only=True, limit=args.get("limit", default_limit),
        **_filters(args, default_start=utcnow() - FEED_LOOKBACK, period_from_midnight=True),
    )


def _self_url() -> str:
    query = request.query_string.decode("utf-8", "replace")
    return f"{current_app.config['HALLES_URL']}{request.path}" + (f"?{query}" if query else "")


@web.get("/events.ics")
def events_ics():
    body = feeds.calendar(_feed_events(ICS_MAX_EVENTS), name=current_app.config.get("HALLES_NAME", "Halles"))
    return _conditional(Response(body, mimetype="text/calendar"))


@web.get("/events/<event_uuid>.ics")
def event_ics(event_uuid: str):
    event = services.get_event(None, event_uuid)  # public events only, whoever asks
    body = feeds.calendar([event], name=event.title)
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = f'inline; filename="{event.uuid}.ics"'
    return _conditional(response)


@web.get("/events.atom")
def events_atom():
    events = _feed_events(ATOM_DEFAULT_ENTRIES)
    title = f"{current_app.config.get('HALLES_NAME', 'Halles')} — événements / events"
    body = feeds.atom(events, self_url=_self_url(), title=title)
    return _conditional(Response(body, mimetype="application/atom+xml"))


# --- OpenAPI --------------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


_UUID_PARAM = {"name": "event_uuid", "in": "path", "required": True, "schema": {"type": "string"}}
_TOKEN_PARAM = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "The secret from the link in the registration email"}
_QUERY_PARAMS = [
    {"name": "from", "in": "query", "schema": {"type": "string"},
     "description": "Date (node's zone) or date-time with offset; occurrences ending after it. Default: now "
                    "(feeds: 30 days ago)"},
    {"name": "to", "in": "query", "schema": {"type": "string"}, "description": "Occurrences starting before it"},
    {"name": "when", "in": "query", "schema": {"type": "string", "enum": ["today", "weekend", "week", "month"]},
     "description": "A period that moves with the calendar (node's time zone), instead of from/to"},
    {"name": "q", "in": "query", "schema": {"type": "string"},
     "description": "Words (at most 12), each the start of a word of the title, description, tags, place or "
                    "city; any case, any accents (full-text index)"},
    {"name": "category", "in": "query", "schema": {"type": "string"}},
    {"name": "city", "in": "query", "schema": {"type": "string"}},
    {"name": "tag", "in": "query", "schema": {"type": "string"}},
    {"name": "language", "in": "query", "schema": {"type": "string"}},
    {"name": "free", "in": "query", "schema": {"type": "boolean"}},
    {"name": "accessible", "in": "query", "schema": {"type": "string"},
     "description": "Comma-separated accessibility features that must all be offered"},
    {"name": "scope", "in": "query", "schema": {"type": "string", "enum": ["local", "network"]}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "The 'next' of the previous page"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
]
_WRITE = {"security": [{"bearer": []}]}

OPENAPI_SCHEMAS = {
    "EventInput": EventInputSchema,
    "Event": EventSchema,
    "EventDetail": EventDetailSchema,
    "EventPage": EventPageSchema,
    "RegistrationInput": RegistrationInputSchema,
    "Registration": RegistrationSchema,
    "RegistrationList": RegistrationListSchema,
    "RegistrationCreated": RegistrationCreatedSchema,
}

OPENAPI_PATHS = {
    "/api/v1/events": {
        "get": {
            "summary": "Occurrences of the events you may see, by start time (keyset pages)",
            "tags": ["events"],
            "parameters": _QUERY_PARAMS,
            "responses": {"200": _json("EventPage", "One page; 'next' is the cursor of the following one"),
                          "304": {"description": "Not modified (If-None-Match)"},
                          "400": _problem("Bad cursor"), "422": _problem("Bad filter")},
        },
        "post": {
            "summary": "Publish an event (organisation manager for their organisation, or staff)",
            "tags": ["events"], **_WRITE,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EventInput")}}},
            "responses": {"201": _json("EventDetail", "Created; its room is booked for every coming occurrence"),
                          "401": _problem("No token"), "403": _problem("Role, organisation or charter"),
                          "409": _problem("The room is taken"), "422": _problem("Invalid input")},
        },
    },
    "/api/v1/events/{event_uuid}": {
        "get": {"summary": "One event with all its occurrences", "tags": ["events"], "parameters": [_UUID_PARAM],
                "responses": {"200": _json("EventDetail", "The event"), "404": _problem("Unknown or not visible")}},
        "patch": {
            "summary": "Change an event (managers of its organisers, or staff)", "tags": ["events"], **_WRITE,
            "parameters": [_UUID_PARAM],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EventInput")}}},
            "responses": {"200": _json("EventDetail", "Changed"), "403": _problem("Not allowed"),
                          "404": _problem("Unknown"), "409": _problem("Room taken, or a remote event"),
                          "422": _problem("Invalid input")},
        },
        "delete": {"summary": "Delete an event (registrants are told; bookings cancelled)", "tags": ["events"],
                   **_WRITE, "parameters": [_UUID_PARAM],
                   "responses": {"204": {"description": "Deleted"}, "403": _problem("Not allowed"),
                                 "404": _problem("Unknown")}},
    },
    "/api/v1/events/{event_uuid}/cancel": {
        "post": {"summary": "Cancel an event (it stays listed as cancelled; registrants are told)",
                 "tags": ["events"], **_WRITE, "parameters": [_UUID_PARAM],
                 "responses": {"200": _json("EventDetail", "Cancelled"), "403": _problem("Not allowed"),
                               "404": _problem("Unknown"), "409": _problem("A remote event")}},
    },
    "/api/v1/events/{event_uuid}/registrations": {
        "get": {"summary": "Who registered (managers of the organisers, or staff)", "tags": ["registrations"],
                **_WRITE,
                "parameters": [_UUID_PARAM, {"name": "occurrence", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json("RegistrationList", "Registrations"), "401": _problem("No token"),
                              "403": _problem("Not allowed"), "404": _problem("Unknown")}},
        "post": {
            "summary": "Register without an account: a confirmation link is emailed", "tags": ["registrations"],
            "parameters": [_UUID_PARAM],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("RegistrationInput")}}},
            "responses": {"201": _json("RegistrationCreated", "Pending until the link is opened"),
                          "404": _problem("Unknown"),
                          "409": _problem("Cancelled, past, already registered, or a remote event "
                                          "(registration_url says where to register)"),
                          "422": _problem("Invalid input"),
                          "429": _problem("Too many registrations from this address (Retry-After says when to "
                                          "try again)")},
        },
    },
    "/api/v1/events/{event_uuid}/registrations.csv": {
        "get": {"summary": "Registrations as CSV: name,email,status,occurrence,registered_at",
                "tags": ["registrations"], **_WRITE, "parameters": [_UUID_PARAM],
                "responses": {"200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
                              "401": _problem("No token"), "403": _problem("Not allowed")}},
    },
    "/api/v1/registrations/{token}": {
        "get": {"summary": "A registration, for the person holding its link", "tags": ["registrations"],
                "parameters": [_TOKEN_PARAM],
                "responses": {"200": _json("Registration", "The registration"), "404": _problem("Unknown link")}},
    },
    **{
        f"/api/v1/registrations/{{token}}/{action}": {
            "post": {"summary": summary, "tags": ["registrations"], "parameters": [_TOKEN_PARAM],
                     "responses": {"200": _json("Registration", "Done (repeating it changes nothing)"),
                                   "404": _problem("Unknown link"), "409": _problem("Not possible any more")}},
        }
        for action, summary in (
            ("confirm", "Confirm: confirmed if a place remains, otherwise waitlisted"),
            ("cancel", "Cancel: the place goes to the first person on the waitlist"),
            ("erase", "Erase the name and email for good (and cancel)"),
        )
    },
}
