"""Event rules: who may publish what, recurrence, room bookings, listings, hooks for federation.

Services take the acting user (or None) and plain data, raise ``node.common.errors`` and never commit;
views commit. ``data`` dicts hold the fields of ``EventInputSchema`` as loaded (datetimes are
``datetime`` objects, aware, or naive when ``timezone`` is given to read them).

Every create/update/cancel/delete calls each function in ``EVENT_CHANGE_HOOKS`` with the action and the
event, after the change is flushed and before the caller commits, so a federation outbox row lands in
the same transaction as the change (or neither does).
"""

from __future__ import annotations

import unicodedata
import uuid as uuid_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from node.charters.services import current_version, has_signed_current
from node.common.errors import Conflict, Forbidden, InvalidInput, NotFound
from node.common.pagination import BadCursor, decode_cursor, encode_cursor
from node.common.permissions import (
    event_visibilities,
    is_staff,
    require_event_manager,
    require_event_publisher,
    require_staff,
)
from node.common.timeutil import to_utc_naive, utcnow, zone
from node.events import registrations, search
from node.events.models import (
    ACCESSIBILITY_FEATURES,
    CATEGORIES,
    LOCATION_KINDS,
    STATUSES,
    VISIBILITIES,
    Event,
    EventOccurrence,
    city_key,
)
from node.events.recurrence import (
    RecurrenceError,
    expand,
    format_local,
    local_starts,
    local_to_utc,
    normalize_exdates,
    normalize_rule,
    utc_to_local,
)
from node.extensions import db
from node.organisations.models import Organisation

#: (action, event) -> None; action is "create", "update", "cancel" or "delete". Called before commit.
EVENT_CHANGE_HOOKS: list[Callable[[str, Event], None]] = []

MAX_LIMIT = 100
DEFAULT_LIMIT = 50
SCOPES = ("local", "network")

# Re-exported: the federation layer reads the remaining places of an occurrence from here.
remaining_places = registrations.remaining_places


def _run_hooks(action: str, event: Event) -> None:
    db.session.flush()
    for hook in list(EVENT_CHANGE_HOOKS):
        hook(action, event)


def _bump(event: Event) -> None:
    """updated_at strictly increases on every change: receivers drop an update whose ``updated`` is not
    newer than what they hold, so two changes within one second must still differ."""
    now = utcnow()
    previous = event.updated_at
    event.updated_at = now if previous is None or now > previous else previous + timedelta(seconds=1)


# --- reading --------------------------------------------------------------------------------------


def can_see(actor: Any, event: Event) -> bool:
    return event.visibility in event_visibilities(actor)


def get_event(actor: Any, event_uuid: str) -> Event:
    """The event with this uuid if ``actor`` may see it; otherwise NotFound (its existence stays private)."""
    event = db.session.scalar(select(Event).where(Event.uuid == str(event_uuid)))
    if event is None or not can_see(actor, event):
        raise NotFound(f"no event {event_uuid} here; it may have been deleted, or it is not visible to you")
    return event


@dataclass
class OccurrenceRow:
    """One line of a listing: an occurrence, its event, and the places left (None: unlimited/unknown)."""

    occurrence: EventOccurrence
    event: Event
    remaining: int | None


def fold(text: str) -> str:
    """Case- and accent-insensitive form for matching ('École' and 'ecole' are equal)."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def _has_tag(tags: Any, wanted: str) -> bool:
    return wanted in {fold(str(tag)).lstrip("#") for tag in tags or []}


def _offers(dialect: str, feature: str):
    """True where the event's accessibility flags hold ``feature: true`` (a JSON true, nothing else:
    a remote's odd value must not break the listing with a failed cast)."""
    if dialect == "postgresql":
        return func.json_extract_path_text(Event.accessibility, feature) == "true"
    return func.json_type(Event.accessibility, f'$."{feature}"') == "true"


def _apply_filters(query, actor: Any, *, scope: str, start: datetime | None, end: datetime | None,
                   q: str | None, category: str | None, city: str | None, tag: str | None,
                   language: str | None, free: bool | None, accessible: Iterable[str] | None,
                   public_only: bool = False):
    """Filters shared by listings and feeds, on a query joining EventOccurrence and Event.

    Every filter is an SQL condition: the city on its folded form (``Event.city_key``), so a city
    listing walks the (starts_at, id) index from the cursor like any other; free text through the
    database's full-text index (node/events/search.py); accessibility on the JSON flags. Only a tag,
    compared folded inside a JSON list, narrows the query in Python to the matching event ids."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
    visibilities = ("public",) if public_only else event_visibilities(actor)
    conditions = [Event.visibility.in_(visibilities)]
    if scope == "local":
        conditions.append(Event.origin_actor_id.is_(None))
    if category is not None:
        if category not in CATEGORIES:
            raise InvalidInput(f"unknown category {category!r}: use one of {', '.join(CATEGORIES)}")
        conditions.append(Event.category == category)
    if language is not None:
        conditions.append(Event.language == language)
    if free is True:
        conditions.append(Event.price_cents == 0)
    elif free is False:
        conditions.append(Event.price_cents > 0)
    range_conditions = []
    if start is not None:
        range_conditions.append(EventOccurrence.ends_at > start)
    if end is not None:
        range_conditions.append(EventOccurrence.starts_at < end)
    features = [feature for feature in (accessible or []) if feature]
    for feature in features:
        if feature not in ACCESSIBILITY_FEATURES:
            raise InvalidInput(f"unknown accessibility feature {feature!r}: use {', '.join(ACCESSIBILITY_FEATURES)}")
    if city:
        conditions.append(Event.city_key == city_key(city))
    dialect = db.session.get_bind().dialect.name
    conditions.extend(_offers(dialect, feature) for feature in features)
    words = search.search_words(q)
    if words:
        conditions.append(search.matching_condition(dialect, words))
    query = query.where(*conditions, *range_conditions)
    folded_tag = fold(tag).strip().lstrip("#") if tag else None
    if folded_tag is not None:
        candidates = select(Event.id, Event.tags).where(*conditions)
        if range_conditions:
            candidates = candidates.where(
                Event.id.in_(select(EventOccurrence.event_id).where(*range_conditions))
            )
        ids = [row.id for row in db.session.execute(candidates) if _has_tag(row.tags, folded_tag)]
        query = query.where(Event.id.in_(ids)) if ids else query.where(Event.id.is_(None))
    return query


def _decode_occurrence_cursor(cursor: str) -> tuple[datetime, int]:
    start_text, occurrence_id = decode_cursor(cursor, 2)
    try:
        start = datetime.fromisoformat(start_text)
    except (TypeError, ValueError):
        raise BadCursor("the cursor is not one this server issued; start again without it") from None
    if not isinstance(occurrence_id, int) or start.tzinfo is not None:
        raise BadCursor("the cursor is not one this server issued; start again without it")
    return start, occurrence_id


def list_occurrences(
    actor: Any,
    *,
    scope: str = "local",
    start: datetime | None = None,
    end: datetime | None = None,
    q: str | None = None,
    category: str | None = None,
    city: str | None = None,
    tag: str | None = None,
    language: str | None = None,
    free: bool | None = None,
    accessible: Iterable[str] | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    public_only: bool = False,
) -> tuple[list[OccurrenceRow], str | None]:
    """Occurrences visible to ``actor``, ordered by (starts_at, occurrence id), one page at a time.

    Keyset pagination: the cursor holds the last row's (starts_at, id) and the next page starts strictly
    after it, so pages never repeat or skip rows that existed when the walk began, whatever is inserted
    meanwhile. ``start``/``end`` (naive UTC or aware) keep occurrences that end after ``start`` and begin
    before ``end``. Returns (rows, next cursor or None)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    query = (
        select(EventOccurrence, Event)
        .join(Event, EventOccurrence.event_id == Event.id)
        .options(selectinload(Event.organisers))
    )
    query = _apply_filters(
        query, actor, scope=scope, start=_utc(start), end=_utc(end), q=q, category=category, city=city, tag=tag,
        language=language, free=free, accessible=accessible, public_only=public_only,
    )
    if cursor:
        after_start, after_id = _decode_occurrence_cursor(cursor)
        # ``starts_at >= x`` first: a plain range the (starts_at, id) index walks from the cursor on.
        # The OR alone makes SQLite gather every later row through two index lookups and sort them.
        query = query.where(
            EventOccurrence.starts_at >= after_start,
            or_(EventOccurrence.starts_at > after_start, EventOccurrence.id > after_id),
        )
    rows = db.session.execute(query.order_by(EventOccurrence.starts_at, EventOccurrence.id).limit(limit + 1)).all()
    page = rows[:limit]
    taken = registrations.places_taken_map(
        {(event.id, occurrence.starts_at) for occurrence, event in page if event.capacity is not None}
    )
    result = [
        OccurrenceRow(occurrence, event, _remaining(event, occurrence, taken))
        for occurrence, event in page
    ]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1][0]
        next_cursor = encode_cursor(last.starts_at.isoformat(), last.id)
    return result, next_cursor


def list_events(actor: Any, *, limit: int = 500, public_only: bool = False, **filters: Any) -> list[Event]:
    """Events with at least one occurrence matching the filters (those of ``list_occurrences``), ordered
    by their first matching occurrence; for feeds, where one entry stands for a whole series."""
    first = func.min(EventOccurrence.starts_at).label("first")
    query = select(EventOccurrence.event_id, first).join(Event, EventOccurrence.event_id == Event.id)
    filters["start"] = _utc(filters.get("start"))
    filters["end"] = _utc(filters.get("end"))
    query = _apply_filters(query, actor, public_only=public_only, **filters)
    ordered = db.session.execute(
        query.group_by(EventOccurrence.event_id).order_by(first, EventOccurrence.event_id).limit(limit)
    ).all()
    ids = [row.event_id for row in ordered]
    loaded = select(Event).where(Event.id.in_(ids)).options(selectinload(Event.organisers))
    by_id = {event.id: event for event in db.session.scalars(loaded)} if ids else {}
    return [by_id[event_id] for event_id in ids if event_id in by_id]


def _utc(value: datetime | None) -> datetime | None:
    return to_utc_naive(value) if value is not None else None


def _remaining(event: Event, occurrence: EventOccurrence, taken: dict) -> int | None:
    return registrations.remaining_from(event, taken.get((event.id, occurrence.starts_at), 0))


def occurrence_rows(event: Event) -> list[OccurrenceRow]:
    """Every occurrence of one event with its places left."""
    occurrences = sorted(event.occurrences, key=lambda occurrence: (occurrence.starts_at, occurrence.id))
    taken = registrations.places_taken_map({(event.id, o.starts_at) for o in occurrences}) if event.capacity else {}
    return [OccurrenceRow(o, event, _remaining(event, o, taken)) for o in occurrences]


# --- occurrences ----------------------------------------------------------------------------------


def occurrence_spans(starts_at: datetime, ends_at: datetime, timezone: str | None, rrule: str | None,
                     exdates: Iterable[str] | None) -> tuple[tuple[datetime, datetime], ...]:
    """The (start, end) pairs, naive UTC, that an event's occurrence rows hold: its rule expanded in its
    zone without the exception dates, or only its own dates when the rule or the zone cannot be read
    (a remote event's). ``expand_occurrences`` matches the rows to them; the worker's run writer
    (node/fedi/remote.py) does the same on rows it writes in a few statements. Remembered for the
    last few thousand dates asked (an update that keeps its event's dates is not expanded again).

    A one-off event (no rule, no exception dates) occurs once, at its own dates: they are returned as
    they are, without the round trip through its zone's local time that a rule needs."""
    if not rrule and not exdates:
        return ((starts_at, ends_at),)
    return _spans(starts_at, ends_at, timezone or "UTC", rrule, tuple(exdates or ()))


@lru_cache(maxsize=4096)
def _spans(starts_at: datetime, ends_at: datetime, timezone: str, rrule: str | None,
           exdates: tuple[str, ...]) -> tuple[tuple[datetime, datetime], ...]:
    try:
        return tuple(expand(starts_at, ends_at, timezone, rrule, exdates))
    except (RecurrenceError, ValueError, KeyError):
        return ((starts_at, ends_at),)


def expand_occurrences(event: Event, *, flush: bool = True) -> list[EventOccurrence]:
    """Make the EventOccurrence rows match the event's dates, rule and exception dates.

    Rows that still exist keep their id (a listing cursor pointing at them stays valid); gone ones are
    deleted, new ones added. A remote event whose rule or zone cannot be read gets one occurrence.
    ``flush=False`` leaves the rows to the caller's next flush."""
    spans = occurrence_spans(event.starts_at, event.ends_at, event.timezone, event.rrule, event.exdates)
    wanted = dict(spans)
    existing = {occurrence.starts_at: occurrence for occurrence in event.occurrences}
    for start, occurrence in existing.items():
        if start not in wanted:
            event.occurrences.remove(occurrence)
    for start, end in spans:
        if start in existing:
            existing[start].ends_at = end
        else:
            event.occurrences.append(EventOccurrence(starts_at=start, ends_at=end))
    if flush:
        db.session.flush()
    return sorted(event.occurrences, key=lambda occurrence: occurrence.starts_at)


# --- validation -----------------------------------------------------------------------------------


def _pick(data: dict[str, Any], event: Event | None, key: str, default: Any = None) -> Any:
    if key in data:
        return data[key]
    return getattr(event, key) if event is not None else default


def _instant(data: dict[str, Any], event: Event | None, key: str, tz: Any) -> datetime:
    if key not in data:
        if event is not None:
            return getattr(event, key)
        raise InvalidInput(f"{key} is required, e.g. 2026-03-26T19:00:00+01:00")
    value = data[key]
    if not isinstance(value, datetime):
        raise InvalidInput(f"{key} must be an ISO 8601 date-time such as 2026-03-26T19:00:00+01:00")
    if value.tzinfo is None:
        if "timezone" not in data:
            raise InvalidInput(
                f"{key} has no UTC offset: write it like 2026-03-26T19:00:00+01:00 (or with Z), "
                "or send 'timezone' so it is read as local time there"
            )
        return local_to_utc(value.replace(microsecond=0), tz)
    return to_utc_naive(value).replace(microsecond=0)


def _text(value: Any, key: str, max_length: int, *, required: bool = False) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise InvalidInput(f"{key} is required")
    if len(text) > max_length:
        raise InvalidInput(f"{key} is longer than {max_length} characters")
    return text


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(f"{key} must be one of {', '.join(choices)} (got {value!r})")
    return value


def _resolve_values(data: dict[str, Any], event: Event | None) -> dict[str, Any]:
    """Merge ``data`` over the event's current values (or the defaults) and check every rule.
    Returns the column values to set. Raises InvalidInput with what to fix."""
    values: dict[str, Any] = {}
    # One line: the title goes into email subjects and feed headers, where a line break would break them.
    values["title"] = " ".join(_text(_pick(data, event, "title"), "title", 300, required=True).split())
    values["description"] = _text(_pick(data, event, "description", ""), "description", 50_000)
    tzname = _pick(data, event, "timezone") or current_app.config["HALLES_TIMEZONE"]
    try:
        tz = zone(tzname)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    values["timezone"] = tzname
    starts_at = _instant(data, event, "starts_at", tz)
    ends_at = _instant(data, event, "ends_at", tz)
    if ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at")
    values["starts_at"], values["ends_at"] = starts_at, ends_at

    first_local = utc_to_local(starts_at, tz)
    rule = _pick(data, event, "rrule") or None
    try:
        rule = normalize_rule(rule, first_local, tz) if rule else None
        starts = local_starts(first_local, rule, tz)
        exdates = _pick(data, event, "exdates", []) or []
        if not rule and "exdates" not in data:
            exdates = []  # the rule was removed: its exception dates go with it
        if exdates and not rule:
            raise RecurrenceError("exdates only apply to a recurring event: send an rrule too, or drop exdates")
        if "exdates" in data:
            exdates = normalize_exdates(exdates, starts, tz)
        else:
            # A changed rule or start may leave old exception dates matching nothing: they are dropped.
            known = {format_local(start) for start in starts}
            exdates = [value for value in exdates if value in known]
    except RecurrenceError as exc:
        raise InvalidInput(str(exc)) from None
    values["rrule"], values["exdates"] = rule, exdates
    spans = expand(starts_at, ends_at, tzname, rule, exdates)
    if not spans:
        raise InvalidInput("the exdates remove every occurrence: cancel the event instead")
    for (_, previous_end), (next_start, _) in zip(spans, spans[1:], strict=False):
        if next_start < previous_end:
            raise InvalidInput(
                "occurrences overlap: each one lasts longer than the time between two of them; "
                "shorten the event or space the rule out"
            )

    values["category"] = _choice(_pick(data, event, "category", "other"), "category", CATEGORIES)
    tags = _pick(data, event, "tags", []) or []
    if not isinstance(tags, list) or len(tags) > 20:
        raise InvalidInput("tags must be a list of at most 20 short words")
    clean_tags: list[str] = []
    for tag in tags:
        text = _text(tag, "each tag", 40, required=True).lstrip("#")
        if text and text not in clean_tags:
            clean_tags.append(text)
    values["tags"] = clean_tags
    language = _pick(data, event, "language", current_app.config.get("HALLES_LANGUAGE", "fr"))
    if not isinstance(language, str) or len(language) != 2 or not language.isalpha():
        raise InvalidInput("language must be a two-letter code such as fr or en")
    values["language"] = language.lower()
    price = _pick(data, event, "price_cents", 0)
    if not isinstance(price, int) or isinstance(price, bool) or price < 0:
        raise InvalidInput("price_cents must be a whole number of euro cents, 0 or more (0 = free)")
    values["price_cents"] = price
    accessibility = _pick(data, event, "accessibility", {}) or {}
    if not isinstance(accessibility, dict):
        raise InvalidInput("accessibility must be an object such as {\"step_free\": true}")
    for key, flag in accessibility.items():
        if key not in ACCESSIBILITY_FEATURES:
            raise InvalidInput(f"unknown accessibility feature {key!r}: use {', '.join(ACCESSIBILITY_FEATURES)}")
        if not isinstance(flag, bool):
            raise InvalidInput(f"accessibility.{key} must be true or false")
    values["accessibility"] = dict(accessibility)
    capacity = _pick(data, event, "capacity")
    if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1):
        raise InvalidInput("capacity must be 1 or more places per occurrence, or null for no limit")
    values["capacity"] = capacity
    values["visibility"] = _choice(_pick(data, event, "visibility", "public"), "visibility", VISIBILITIES)
    values["status"] = _choice(_pick(data, event, "status", "confirmed"), "status", STATUSES)
    values["image_url"] = _pick(data, event, "image_url") or None
    values.update(_resolve_location(data, event))
    return values


def _resolve_location(data: dict[str, Any], event: Event | None) -> dict[str, Any]:
    from node.spaces.models import Room

    kind = _choice(_pick(data, event, "location_kind", "place"), "location_kind", LOCATION_KINDS)
    values: dict[str, Any] = {"location_kind": kind}
    online_url = _pick(data, event, "online_url") or None
    if online_url is not None and not str(online_url).startswith(("https://", "http://")):
        raise InvalidInput("online_url must be an http(s) address")
    values["online_url"] = online_url
    if kind == "room":
        room_id = _pick(data, event, "room_id")
        if room_id is None:
            raise InvalidInput("room_id is required when location_kind is room")
        room = db.session.get(Room, room_id) if isinstance(room_id, int) else None
        if room is None:
            raise InvalidInput(f"room {room_id} does not exist; list rooms with GET /api/v1/rooms")
        if not room.active:
            raise InvalidInput(f"room {room.name!r} is no longer offered for booking")
        site = room.site
        values.update(
            room_id=room.id, place_name=f"{room.name} — {site.name}"[:200], address=site.address,
            postal_code=site.postal_code or "", city=site.city, latitude=site.latitude, longitude=site.longitude,
        )
        return values
    values["room_id"] = None
    values["place_name"] = _text(_pick(data, event, "place_name", ""), "place_name", 200)
    values["address"] = _text(_pick(data, event, "address", ""), "address", 300, required=kind == "place")
    values["postal_code"] = _text(_pick(data, event, "postal_code", ""), "postal_code", 20)
    values["city"] = _text(_pick(data, event, "city", ""), "city", 120, required=kind == "place")
    for key, bound in (("latitude", 90), ("longitude", 180)):
        value = _pick(data, event, key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or abs(value) > bound):
            raise InvalidInput(f"{key} must be a number between -{bound} and {bound}")
        values[key] = value
    if kind == "online" and not online_url:
        raise InvalidInput("online_url is required when location_kind is online")
    return values


def _resolve_organisers(actor: Any, organiser_ids: Any, event: Event | None) -> list[Organisation]:
    """The organising organisations: existing, active, including the actor's own organisation unless the
    actor is staff, and every one of them signed the current charter."""
    if organiser_ids is None:
        if event is not None:
            organisers = list(event.organisers)
        elif actor.role == "org_manager" and actor.organisation_id is not None:
            organisers = [_organisation(actor.organisation_id)]
        else:
            raise InvalidInput("organiser_ids is required: the member organisation(s) organising the event")
    else:
        if not isinstance(organiser_ids, list) or not organiser_ids:
            raise InvalidInput("organiser_ids must list at least one member organisation id")
        unique_ids = list(dict.fromkeys(organiser_ids))
        organisers = [_organisation(org_id) for org_id in unique_ids]
        if not is_staff(actor):
            own = actor.organisation_id
            if own is None or own not in unique_ids:
                name = actor.organisation.name if actor.organisation is not None else "your organisation"
                raise Forbidden(
                    f"as a manager of {name} you can publish only events {name} organises: add its id ({own}) to "
                    "organiser_ids (other member organisations may co-organise)"
                )
    for organisation in organisers:
        if not has_signed_current(organisation.id):
            version = current_version()
            label = version.version if version is not None else "?"
            raise Forbidden(f"{organisation.name} must sign charter version {label} before publishing events")
    return organisers


def _organisation(organisation_id: Any) -> Organisation:
    organisation = db.session.get(Organisation, organisation_id) if isinstance(organisation_id, int) else None
    if organisation is None:
        raise InvalidInput(f"organisation {organisation_id} does not exist")
    if organisation.deleted_at is not None:
        raise InvalidInput(f"{organisation.name} has left the network and cannot organise events")
    return organisation


def _require_local(event: Event, action: str) -> None:
    if event.is_remote:
        raise Conflict(f"this event comes from another node: only its origin can {action} it")


# --- room bookings --------------------------------------------------------------------------------


def _booking_key(event: Event) -> tuple:
    """What the room bookings depend on; when it changes the bookings are made again."""
    if event.location_kind != "room" or event.status == "cancelled":
        return ()
    return (event.room_id, tuple(sorted((o.starts_at, o.ends_at) for o in event.occurrences)))


def _book_rooms(actor: Any, event: Event, organisers: list[Organisation]) -> None:
    """Book the room for every occurrence still to come. A conflict stops everything (the caller's
    transaction rolls back, so no event and no partial bookings remain)."""
    from node.spaces.services import book_room, describe_slot

    if event.location_kind != "room" or event.status == "cancelled":
        return
    booker = next((org for org in organisers if actor.organisation_id == org.id), None) or organisers[0]
    category = "resident_member" if booker.resident else "member"
    now = utcnow()
    for occurrence in sorted(event.occurrences, key=lambda o: o.starts_at):
        if occurrence.starts_at < now:
            continue
        try:
            book_room(
                actor, event.room_id, occurrence.starts_at, occurrence.ends_at,
                organisation_id=booker.id, category=category, purpose=f"Event: {event.title}"[:500],
                event_id=event.id,
            )
        except Conflict as exc:
            when = describe_slot(occurrence.starts_at, occurrence.ends_at)
            raise Conflict(f"the occurrence {when} cannot book the room: {exc.detail}", **exc.extra) from None


def _release_rooms(event: Event) -> None:
    from node.spaces.services import cancel_bookings_for_event

    cancel_bookings_for_event(event.id)


# --- writing --------------------------------------------------------------------------------------


def create_event(actor: Any, data: dict[str, Any]) -> Event:
    """Publish a local event (org_manager for their organisation, or staff), expand its occurrences and
    book its room. Raises Unauthorized, Forbidden (role, organisation, charter), InvalidInput, Conflict
    (room taken). Does not commit."""
    require_event_publisher(actor)
    organisers = _resolve_organisers(actor, data.get("organiser_ids"), None)
    values = _resolve_values(data, None)
    event_uuid = str(uuid_module.uuid4())
    now = utcnow()
    event = Event(
        uuid=event_uuid,
        ap_id=f"{current_app.config['HALLES_URL']}/events/{event_uuid}",
        created_by_id=actor.id,
        created_at=now,
        updated_at=now,
        **values,
    )
    event.organisers = organisers
    db.session.add(event)
    db.session.flush()
    expand_occurrences(event)
    _book_rooms(actor, event, organisers)
    _run_hooks("create", event)
    return event


def update_event(actor: Any, event: Event, data: dict[str, Any]) -> Event:
    """Change a local event (a manager of one of its organisers, or staff). Occurrences are rebuilt,
    the room re-booked when dates or room change, registrations follow their occurrence, and setting
    status to cancelled does what ``cancel_event`` does. Does not commit."""
    _require_local(event, "change")
    require_event_manager(actor, [org.id for org in event.organisers], "change this event")
    if data.get("status") == "cancelled" and event.status != "cancelled":
        rest = {key: value for key, value in data.items() if key != "status"}
        if rest:
            update_event(actor, event, rest)
        return cancel_event(actor, event)
    organisers = _resolve_organisers(actor, data.get("organiser_ids"), event)
    values = _resolve_values(data, event)
    old_key = _booking_key(event)
    old_starts = sorted(o.starts_at for o in event.occurrences)
    old_capacity = event.capacity
    for key, value in values.items():
        setattr(event, key, value)
    event.organisers = organisers
    _bump(event)
    db.session.flush()
    expand_occurrences(event)
    new_key = _booking_key(event)
    if new_key != old_key:
        _release_rooms(event)
        _book_rooms(actor, event, organisers)
    new_starts = sorted(o.starts_at for o in event.occurrences)
    _carry_registrations(event, old_starts, new_starts)
    if event.capacity is None or (old_capacity is not None and event.capacity > old_capacity):
        for start in new_starts:
            registrations.promote_waitlist(event, start)
    _run_hooks("update", event)
    return event


def _carry_registrations(event: Event, old_starts: list[datetime], new_starts: list[datetime]) -> None:
    """Registrations follow their occurrence when the times move: with as many occurrences as before,
    the n-th old one becomes the n-th new one; otherwise an occurrence that disappeared cancels its
    registrations. People are told by email."""
    if old_starts == new_starts:
        return
    still = set(new_starts)
    # Only a shift of the whole series maps by position; when some dates stayed, the others were
    # removed or added (exception dates) and must not inherit each other's registrations.
    shifted = len(old_starts) == len(new_starts) and not still.intersection(old_starts)
    moves = dict(zip(old_starts, new_starts, strict=True)) if shifted else {}
    for registration in registrations.active_registrations(event):
        old = registration.occurrence_starts_at
        if old in moves and moves[old] != old:
            registration.occurrence_starts_at = moves[old]
            registrations.notify_moved(registration, old)
        elif old not in moves and old not in still:
            registration.status = "cancelled"
            registration.cancelled_at = utcnow()
            if old > utcnow():
                registrations.notify_cancelled(event, [registration], only_occurrence=True)
    db.session.flush()


def cancel_event(actor: Any, event: Event) -> Event:
    """Mark a local event cancelled: its room bookings are released and people registered for a coming
    occurrence get an email. Cancelling twice changes nothing. Does not commit."""
    _require_local(event, "cancel")
    require_event_manager(actor, [org.id for org in event.organisers], "cancel this event")
    if event.status == "cancelled":
        return event
    event.status = "cancelled"
    _bump(event)
    _release_rooms(event)
    registrations.notify_cancelled(event, registrations.active_registrations(event, after=utcnow()))
    _run_hooks("cancel", event)
    return event


def delete_event(actor: Any, event: Event) -> None:
    """Delete an event: a local one by its organisers' managers or staff (people registered for a coming
    occurrence are told, the room bookings are cancelled and kept for history); a remote one by staff
    only (moderation: it disappears from this node). Does not commit."""
    from node.spaces.services import detach_event

    if event.is_remote:
        require_staff(actor, "remove an event that comes from another node")
    else:
        require_event_manager(actor, [org.id for org in event.organisers], "delete this event")
        if event.status != "cancelled":
            registrations.notify_cancelled(event, registrations.active_registrations(event, after=utcnow()))
        _release_rooms(event)
    detach_event(event.id)
    _run_hooks("delete", event)
    db.session.delete(event)
    db.session.flush()


__all__ = [
    "EVENT_CHANGE_HOOKS",
    "OccurrenceRow",
    "can_see",
    "cancel_event",
    "create_event",
    "delete_event",
    "expand_occurrences",
    "get_event",
    "list_events",
    "list_occurrences",
    "occurrence_rows",
    "remaining_places",
    "update_event",
]
