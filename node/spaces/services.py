"""Rules for sites, rooms, desks and room bookings.

Services take the acting user (or None) and plain arguments, raise ``node.common.errors`` and never
commit: the caller (a view, the events service, a CLI command) commits once, so a booking and the
email it queues land together or not at all.

No double booking, ever. Every booking write runs, in its own transaction:

1. ``UPDATE rooms SET booking_seq = booking_seq + 1 WHERE id = :room`` — on PostgreSQL this takes
   the room's row lock, on SQLite the database write lock; a concurrent writer for the same room
   waits here until we commit or roll back;
2. the overlap check (``start < other.end AND end > other.start`` among pending/approved bookings),
   which therefore sees every booking committed before us (READ COMMITTED takes a new snapshot per
   statement; SQLite's write lock means nobody committed since);
3. the insert or status change.

A plain SELECT-then-INSERT would let two requests both see a free slot and both insert."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from node.charters.services import current_version, has_signed_current
from node.common.errors import Conflict, Forbidden, InvalidInput, NotFound
from node.common.pagination import BadCursor, decode_cursor, encode_cursor
from node.common.permissions import is_staff, manages, require_manager_of, require_staff, require_user
from node.common.ratelimit import TooManyRequests, parse_rate, take
from node.common.timeutil import as_aware_utc, iso_utc, to_utc_naive, utcnow, zone
from node.events.models import Event
from node.extensions import db
from node.mail.services import queue_email
from node.organisations.models import Organisation
from node.spaces.models import (
    BLOCKING_STATUSES,
    BOOKER_CATEGORIES,
    MEMBER_CATEGORIES,
    Booking,
    Desk,
    Room,
    Site,
)
from node.spaces.pricing import booking_price_cents, format_euros, hourly_rate_cents

#: Longest single booking; longer uses (a residency) are desks, not room bookings.
MAX_BOOKING_DURATION = timedelta(days=14)
#: Longest window one availability request may cover, so a query stays cheap.
MAX_AVAILABILITY_SPAN = timedelta(days=92)
DEFAULT_AVAILABILITY_SPAN = timedelta(days=7)


# --- time helpers ---------------------------------------------------------------------------------


def local_zone_name() -> str:
    return current_app.config.get("HALLES_TIMEZONE") or "Europe/Paris"


def _local(value: datetime) -> datetime:
    return as_aware_utc(value).astimezone(zone(local_zone_name()))


def describe_slot(starts_at: datetime, ends_at: datetime) -> str:
    """'2026-03-02 14:00 to 16:00 (Europe/Paris)', in the node's local time, for people to read."""
    start, end = _local(starts_at), _local(ends_at)
    end_text = end.strftime("%H:%M") if end.date() == start.date() else end.strftime("%Y-%m-%d %H:%M")
    return f"{start.strftime('%Y-%m-%d %H:%M')} to {end_text} ({local_zone_name()})"


def _naive_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a date-time")
    return to_utc_naive(value)


def _check_booking_times(actor: Any, starts_at: datetime, ends_at: datetime) -> tuple[datetime, datetime]:
    starts_at = _naive_utc(starts_at, "starts_at")
    ends_at = _naive_utc(ends_at, "ends_at")
    if ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at")
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.second or value.microsecond:
            # Bookings are shown and priced by the minute; seconds would make touching slots overlap.
            raise InvalidInput(f"{name} must be a whole minute (no seconds), e.g. 14:00 or 14:30")
    if ends_at - starts_at > MAX_BOOKING_DURATION:
        raise InvalidInput(
            f"a booking lasts at most {MAX_BOOKING_DURATION.days} days; split longer uses into several bookings"
        )
    if starts_at < utcnow() and not is_staff(actor):
        raise InvalidInput(
            f"this booking would start in the past ({describe_slot(starts_at, ends_at)}); choose a future time"
        )
    return starts_at, ends_at


# --- sites ----------------------------------------------------------------------------------------

SITE_FIELDS = ("name", "address", "postal_code", "city", "latitude", "longitude", "opening_hours", "accessibility")


def list_sites() -> list[Site]:
    return list(db.session.scalars(select(Site).order_by(Site.name, Site.id)))


def get_site(site_id: int) -> Site:
    site = db.session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} does not exist")
    return site


def create_site(actor: Any, data: dict[str, Any]) -> Site:
    require_staff(actor, "create a site")
    site = Site(**{key: data[key] for key in SITE_FIELDS if key in data})
    site.postal_code = site.postal_code or ""
    site.opening_hours = site.opening_hours or ""
    site.accessibility = site.accessibility or ""
    db.session.add(site)
    db.session.flush()
    return site


def update_site(actor: Any, site_id: int, changes: dict[str, Any]) -> Site:
    require_staff(actor, "change a site")
    site = get_site(site_id)
    for key in SITE_FIELDS:
        if key in changes:
            setattr(site, key, changes[key])
    db.session.flush()
    return site


def delete_site(actor: Any, site_id: int) -> None:
    require_staff(actor, "delete a site")
    site = get_site(site_id)
    rooms = db.session.scalar(select(func.count(Room.id)).where(Room.site_id == site.id))
    desks = db.session.scalar(select(func.count(Desk.id)).where(Desk.site_id == site.id))
    if rooms or desks:
        raise Conflict(
            f"site {site.name!r} still has {rooms} room(s) and {desks} desk(s): delete or move them first "
            "(rooms with bookings stay for history; keep the site)"
        )
    db.session.delete(site)
    db.session.flush()


# --- rooms ----------------------------------------------------------------------------------------

ROOM_FIELDS = ("site_id", "name", "description", "capacity", "amenities", "step_free", "photo_url", "tariffs",
               "active")


def list_rooms(
    actor: Any = None,
    *,
    site_id: int | None = None,
    min_capacity: int | None = None,
    step_free: bool | None = None,
    include_inactive: bool = False,
) -> list[Room]:
    query = select(Room).order_by(Room.site_id, Room.name, Room.id)
    if not (include_inactive and is_staff(actor)):
        query = query.where(Room.active.is_(True))
    if site_id is not None:
        query = query.where(Room.site_id == site_id)
    if min_capacity is not None:
        query = query.where(Room.capacity >= min_capacity)
    if step_free is not None:
        query = query.where(Room.step_free.is_(step_free))
    return list(db.session.scalars(query))


def get_room(room_id: int) -> Room:
    room = db.session.get(Room, room_id)
    if room is None:
        raise NotFound(f"room {room_id} does not exist")
    return room


def _clean_tariffs(tariffs: dict[str, Any]) -> dict[str, int]:
    unknown = [key for key in tariffs if key not in BOOKER_CATEGORIES]
    if unknown:
        raise InvalidInput(f"unknown tariff categories {unknown}: use {', '.join(BOOKER_CATEGORIES)}")
    # Stored in the grid's order so the JSON reads the same way everywhere.
    return {key: int(tariffs[key]) for key in BOOKER_CATEGORIES if key in tariffs}


def create_room(actor: Any, data: dict[str, Any]) -> Room:
    require_staff(actor, "create a room")
    get_site(data["site_id"])
    values = {key: data[key] for key in ROOM_FIELDS if key in data}
    values["tariffs"] = _clean_tariffs(values.get("tariffs") or {})
    values.setdefault("amenities", [])
    values.setdefault("description", "")
    room = Room(booking_seq=0, **values)
    db.session.add(room)
    db.session.flush()
    return room


def update_room(actor: Any, room_id: int, changes: dict[str, Any]) -> Room:
    require_staff(actor, "change a room")
    room = get_room(room_id)
    if "site_id" in changes:
        get_site(changes["site_id"])
    for key in ROOM_FIELDS:
        if key in changes:
            value = _clean_tariffs(changes[key]) if key == "tariffs" else changes[key]
            setattr(room, key, value)
    db.session.flush()
    return room


def delete_room(actor: Any, room_id: int) -> str:
    """Delete a room never booked; deactivate (keep for history) one with bookings.

    Returns "deleted" or "deactivated". Existing bookings are left as they are: the office manager
    decides whether to cancel them (and the requesters get an email when she does)."""
    require_staff(actor, "delete a room")
    room = get_room(room_id)
    has_bookings = db.session.scalar(select(Booking.id).where(Booking.room_id == room.id).limit(1)) is not None
    if has_bookings:
        room.active = False
        db.session.flush()
        return "deactivated"
    db.session.delete(room)
    db.session.flush()
    return "deleted"


def room_availability(room_id: int, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    """Busy intervals (pending and approved bookings) and the free gaps between them in [start, end).

    Public: it says when a room is taken, never by whom."""
    room = get_room(room_id)
    start = _naive_utc(start, "from") if start is not None else utcnow().replace(second=0)
    end = _naive_utc(end, "to") if end is not None else start + DEFAULT_AVAILABILITY_SPAN
    if end <= start:
        raise InvalidInput("'to' must be after 'from'")
    if end - start > MAX_AVAILABILITY_SPAN:
        raise InvalidInput(f"ask for at most {MAX_AVAILABILITY_SPAN.days} days at a time (from/to)")
    bookings = db.session.scalars(
        select(Booking)
        .where(
            Booking.room_id == room.id,
            Booking.status.in_(BLOCKING_STATUSES),
            Booking.starts_at < end,
            Booking.ends_at > start,
        )
        .order_by(Booking.starts_at, Booking.id)
    ).all()
    busy = [{"starts_at": b.starts_at, "ends_at": b.ends_at, "status": b.status} for b in bookings]
    free = []
    cursor = start
    for item in busy:
        if item["starts_at"] > cursor:
            free.append({"starts_at": cursor, "ends_at": item["starts_at"]})
        cursor = max(cursor, item["ends_at"])
    if cursor < end:
        free.append({"starts_at": cursor, "ends_at": end})
    return {
        "room_id": room.id,
        "timezone": local_zone_name(),
        "start": start,
        "end": end,
        "opening_hours": room.site.opening_hours,
        "busy": busy,
        "free": free,
    }


# --- desks ----------------------------------------------------------------------------------------


def list_desks(actor: Any, *, site_id: int | None = None, organisation_id: int | None = None) -> list[Desk]:
    require_user(actor)
    query = select(Desk).order_by(Desk.site_id, Desk.label, Desk.id)
    if site_id is not None:
        query = query.where(Desk.site_id == site_id)
    if organisation_id is not None:
        query = query.where(Desk.organisation_id == organisation_id)
    return list(db.session.scalars(query))


def get_desk(desk_id: int) -> Desk:
    desk = db.session.get(Desk, desk_id)
    if desk is None:
        raise NotFound(f"desk {desk_id} does not exist")
    return desk


def _active_organisation(organisation_id: int) -> Organisation:
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound(f"organisation {organisation_id} does not exist")
    if organisation.deleted_at is not None:
        raise InvalidInput(f"organisation {organisation.name!r} has left the place")
    return organisation


def _sync_desks_held(*organisation_ids: int | None) -> None:
    # Organisation.desks_held mirrors the desks assigned here, so the directory shows the real count.
    for organisation_id in {oid for oid in organisation_ids if oid is not None}:
        organisation = db.session.get(Organisation, organisation_id)
        if organisation is not None:
            organisation.desks_held = db.session.scalar(
                select(func.count(Desk.id)).where(Desk.organisation_id == organisation_id)
            )


def create_desk(actor: Any, data: dict[str, Any]) -> Desk:
    require_staff(actor, "create a desk")
    get_site(data["site_id"])
    if data.get("organisation_id") is not None:
        _active_organisation(data["organisation_id"])
    desk = Desk(site_id=data["site_id"], label=data["label"], organisation_id=data.get("organisation_id"))
    db.session.add(desk)
    db.session.flush()
    _sync_desks_held(desk.organisation_id)
    db.session.flush()
    return desk


def update_desk(actor: Any, desk_id: int, changes: dict[str, Any]) -> Desk:
    """Rename, move or (re)assign a desk; ``organisation_id: None`` frees it."""
    require_staff(actor, "change a desk")
    desk = get_desk(desk_id)
    previous_org = desk.organisation_id
    if "site_id" in changes:
        get_site(changes["site_id"])
        desk.site_id = changes["site_id"]
    if "label" in changes:
        desk.label = changes["label"]
    if "organisation_id" in changes:
        if changes["organisation_id"] is not None:
            _active_organisation(changes["organisation_id"])
        desk.organisation_id = changes["organisation_id"]
    db.session.flush()
    _sync_desks_held(previous_org, desk.organisation_id)
    db.session.flush()
    return desk


def delete_desk(actor: Any, desk_id: int) -> None:
    require_staff(actor, "delete a desk")
    desk = get_desk(desk_id)
    organisation_id = desk.organisation_id
    db.session.delete(desk)
    db.session.flush()
    _sync_desks_held(organisation_id)
    db.session.flush()


# --- bookings: the lock and the overlap rule ------------------------------------------------------


def _lock_room(room_id: int) -> Room:
    """Take the room's booking lock for the rest of the transaction (see the module docstring)."""
    result = db.session.execute(
        update(Room)
        .where(Room.id == room_id)
        .values(booking_seq=Room.booking_seq + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 0:
        raise NotFound(f"room {room_id} does not exist")
    # Re-read after the lock: the tariffs or the active flag may have changed since we first looked.
    return db.session.get(Room, room_id, populate_existing=True)


def _first_overlap(room_id: int, starts_at: datetime, ends_at: datetime, exclude_id: int | None = None):
    query = select(Booking).where(
        Booking.room_id == room_id,
        Booking.status.in_(BLOCKING_STATUSES),
        Booking.starts_at < ends_at,
        Booking.ends_at > starts_at,
    )
    if exclude_id is not None:
        query = query.where(Booking.id != exclude_id)
    return db.session.scalar(query.order_by(Booking.starts_at, Booking.id).limit(1))


def _refuse_overlap(room: Room, starts_at: datetime, ends_at: datetime, exclude_id: int | None = None) -> None:
    other = _first_overlap(room.id, starts_at, ends_at, exclude_id)
    if other is None:
        return
    held_by = "a request awaiting approval" if other.status == "pending" else "an approved booking"
    raise Conflict(
        f"{room.name!r} is already taken from {describe_slot(other.starts_at, other.ends_at)} by {held_by}; "
        "choose a time that does not overlap it",
        conflict={
            "starts_at": iso_utc(other.starts_at),
            "ends_at": iso_utc(other.ends_at),
            "starts_at_local": _local(other.starts_at).isoformat(timespec="seconds"),
            "ends_at_local": _local(other.ends_at).isoformat(timespec="seconds"),
            "status": other.status,
        },
    )


def _bookable_room(room_id: int, category: str) -> Room:
    room = get_room(room_id)
    if not room.active:
        raise InvalidInput(f"room {room.name!r} is no longer offered for booking")
    hourly_rate_cents(room.tariffs, category)
    return room


def _insert_booking(room_id: int, starts_at: datetime, ends_at: datetime, **values: Any) -> Booking:
    """Lock, check, insert. The caller validated everything that needs no lock."""
    room = _lock_room(room_id)
    if not room.active:
        raise InvalidInput(f"room {room.name!r} is no longer offered for booking")
    price = booking_price_cents(room.tariffs, values["category"], starts_at, ends_at)
    _refuse_overlap(room, starts_at, ends_at)
    booking = Booking(room_id=room.id, starts_at=starts_at, ends_at=ends_at, price_cents=price, **values)
    db.session.add(booking)
    db.session.flush()
    return booking


def _check_category(category: str) -> None:
    if category not in BOOKER_CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}: use one of {', '.join(BOOKER_CATEGORIES)}")


def _check_member_category(organisation: Organisation | None, category: str) -> None:
    """Member tariffs: the organisation signed the current charter; resident tariff: it is resident."""
    if category not in MEMBER_CATEGORIES:
        return
    if organisation is None:
        raise InvalidInput(f"the {category} tariff is for member organisations: give organisation_id")
    if not has_signed_current(organisation.id):
        version = current_version()
        label = version.version if version is not None else "?"
        raise Forbidden(
            f"{organisation.name!r} has not signed the current charter (version {label}): an organisation manager "
            f"must sign charter version {label} before booking at the {category} tariff"
        )
    if category == "resident_member" and not organisation.resident:
        raise Forbidden(
            f"{organisation.name!r} is not a resident organisation: book with the 'member' category instead"
        )


# --- bookings: create -----------------------------------------------------------------------------


def book_room(
    actor: Any,
    room_id: int,
    starts_at: datetime,
    ends_at: datetime,
    *,
    organisation_id: int | None,
    category: str,
    purpose: str = "",
    event_id: int | None = None,
    status: str | None = None,
    requester_name: str | None = None,
    requester_email: str | None = None,
    requester_organisation: str | None = None,
) -> Booking:
    """Book a room for ``actor`` (staff: any organisation or none; org_manager: their own).

    Datetimes are naive UTC (aware ones are converted). ``status`` defaults to "approved" for staff and
    "pending" otherwise; only staff may create an approved booking. Raises Unauthorized, Forbidden,
    NotFound, InvalidInput or Conflict (the slot overlaps a pending or approved booking). Does not commit.
    """
    require_user(actor)
    require_manager_of(actor, organisation_id, "book a room for this organisation")
    _check_category(category)
    if status is None:
        status = "approved" if is_staff(actor) else "pending"
    if status not in ("pending", "approved"):
        raise InvalidInput("a new booking is either 'pending' or 'approved'")
    if status == "approved" and not is_staff(actor):
        raise Forbidden("only the office manager or an admin can approve a booking")
    starts_at, ends_at = _check_booking_times(actor, starts_at, ends_at)
    organisation = _active_organisation(organisation_id) if organisation_id is not None else None
    _check_member_category(organisation, category)
    if event_id is not None:
        if db.session.get(Event, event_id) is None:
            raise NotFound(f"event {event_id} does not exist")
    _bookable_room(room_id, category)
    now = utcnow()
    return _insert_booking(
        room_id,
        starts_at,
        ends_at,
        organisation_id=organisation_id,
        requester_name=(requester_name or actor.name or actor.email)[:200],
        requester_email=requester_email or actor.email,
        requester_organisation=(
            requester_organisation
            if requester_organisation is not None
            else (organisation.name if organisation else "")
        ),
        category=category,
        purpose=purpose or "",
        status=status,
        event_id=event_id,
        created_by_id=actor.id,
        decided_by_id=actor.id if status == "approved" else None,
        decided_at=now if status == "approved" else None,
    )


#: Rate-limit bucket of guest booking requests (per client address); the rate is
#: HALLES_RATE_LIMIT_BOOKING_REQUESTS ("COUNT/PERIOD", or "off").
GUEST_REQUESTS_LIMIT = "booking_requests"


def limit_guest_requests(client: str) -> None:
    """Spend one guest booking request of ``client`` (an address), or raise TooManyRequests (429, with
    Retry-After). Call it before the request writes anything: the bucket is taken on its own
    connection, committed at once, so a refused or failed request still counts."""
    rate = parse_rate(str(current_app.config.get("HALLES_RATE_LIMIT_BOOKING_REQUESTS", "10/1h")))
    if rate is None:
        return
    decision = take(GUEST_REQUESTS_LIMIT, client, rate)
    if not decision.allowed:
        raise TooManyRequests(
            f"too many booking requests from {client}: this node accepts {rate} from one address; "
            f"try again in {decision.retry_after} s, or write to the office",
            decision.retry_after,
        )


def request_booking_as_guest(
    room_id: int,
    starts_at: datetime,
    ends_at: datetime,
    *,
    name: str,
    email: str,
    organisation_name: str,
    category: str,
    purpose: str,
) -> Booking:
    """A booking request from someone without an account (the public form): always pending, never at a
    member tariff, and acknowledged by email. Does not commit."""
    _check_category(category)
    if category in MEMBER_CATEGORIES:
        raise InvalidInput(
            f"the {category} tariff is for member organisations: ask your organisation manager to book, "
            f"or choose one of {', '.join(c for c in BOOKER_CATEGORIES if c not in MEMBER_CATEGORIES)}"
        )
    name = (name or "").strip()
    email = (email or "").strip()
    if not name:
        raise InvalidInput("give your name so the office manager knows who asks")
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise InvalidInput("give a valid email address: the answer is sent there")
    starts_at, ends_at = _check_booking_times(None, starts_at, ends_at)
    _bookable_room(room_id, category)
    booking = _insert_booking(
        room_id,
        starts_at,
        ends_at,
        organisation_id=None,
        requester_name=name[:200],
        requester_email=email,
        requester_organisation=(organisation_name or "").strip()[:200],
        category=category,
        purpose=(purpose or "").strip(),
        status="pending",
    )
    _mail_requester(
        booking,
        "Demande de réservation reçue / Booking request received",
        "Nous avons bien reçu votre demande ; l'équipe du lieu vous répondra par email.\n"
        "We received your request; the team will answer by email.",
    )
    return booking


# --- bookings: read -------------------------------------------------------------------------------


def get_booking(actor: Any, booking_id: int) -> Booking:
    """Staff, the manager of the booking's organisation, or the person who made it."""
    require_user(actor)
    booking = db.session.get(Booking, booking_id)
    if booking is None:
        raise NotFound(f"booking {booking_id} does not exist")
    if not (manages(actor, booking.organisation_id) or booking.created_by_id == actor.id):
        raise Forbidden("only the office manager or the booking organisation's manager can see this booking")
    return booking


def list_bookings(
    actor: Any,
    *,
    room_id: int | None = None,
    organisation_id: int | None = None,
    status: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Booking], str | None]:
    """Bookings ordered by start time, a page at a time: staff see all, an org_manager their organisation's.

    ``start``/``end`` keep the bookings that overlap that window. Returns (page, next_cursor)."""
    require_user(actor)
    query = select(Booking)
    if not is_staff(actor):
        if actor.role != "org_manager" or actor.organisation_id is None:
            raise Forbidden("only the office manager or an organisation manager can list bookings")
        if organisation_id is not None and organisation_id != actor.organisation_id:
            raise Forbidden("you can only list your own organisation's bookings")
        organisation_id = actor.organisation_id
    if start is not None and end is not None and end <= start:
        raise InvalidInput("'to' must be after 'from'")
    if organisation_id is not None:
        query = query.where(Booking.organisation_id == organisation_id)
    if room_id is not None:
        query = query.where(Booking.room_id == room_id)
    if status is not None:
        query = query.where(Booking.status == status)
    if start is not None:
        query = query.where(Booking.ends_at > to_utc_naive(start))
    if end is not None:
        query = query.where(Booking.starts_at < to_utc_naive(end))
    if cursor:
        raw_start, last_id = decode_cursor(cursor, 2)
        try:
            last_start = datetime.fromisoformat(raw_start)
            last_id = int(last_id)
        except (TypeError, ValueError):
            raise BadCursor("the cursor is not one this server issued; start again without it") from None
        query = query.where(
            or_(Booking.starts_at > last_start, and_(Booking.starts_at == last_start, Booking.id > last_id))
        )
    rows = list(db.session.scalars(query.order_by(Booking.starts_at, Booking.id).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].starts_at.isoformat(), rows[-1].id)
    return rows, next_cursor


# --- bookings: decisions --------------------------------------------------------------------------


def _load_for_change(booking_id: int) -> Booking:
    booking = db.session.get(Booking, booking_id)
    if booking is None:
        raise NotFound(f"booking {booking_id} does not exist")
    # Serialise with every other write on this room, then read the booking's current state.
    _lock_room(booking.room_id)
    return db.session.get(Booking, booking_id, populate_existing=True)


def approve_booking(actor: Any, booking_id: int, message: str = "") -> Booking:
    """pending (or refused, if the office manager changes her mind) -> approved, after a fresh overlap check."""
    require_staff(actor, "approve a booking")
    booking = _load_for_change(booking_id)
    if booking.status == "approved":
        raise Conflict(f"booking {booking.id} is already approved")
    if booking.status == "cancelled":
        raise Conflict(f"booking {booking.id} was cancelled; ask for a new booking instead")
    _refuse_overlap(booking.room, booking.starts_at, booking.ends_at, exclude_id=booking.id)
    booking.status = "approved"
    booking.decided_by_id = actor.id
    booking.decided_at = utcnow()
    db.session.flush()
    _mail_requester(booking, "Réservation confirmée / Booking approved",
                    "Votre réservation est confirmée.\nYour booking is approved.", message)
    return booking


def refuse_booking(actor: Any, booking_id: int, message: str = "") -> Booking:
    """pending -> refused; the slot becomes free again. (An approved booking is cancelled, not refused.)"""
    require_staff(actor, "refuse a booking")
    booking = _load_for_change(booking_id)
    if booking.status != "pending":
        hint = "; cancel it instead" if booking.status == "approved" else ""
        raise Conflict(f"booking {booking.id} is {booking.status}, only a pending request can be refused{hint}")
    booking.status = "refused"
    booking.decided_by_id = actor.id
    booking.decided_at = utcnow()
    db.session.flush()
    _mail_requester(booking, "Demande de réservation refusée / Booking request declined",
                    "Votre demande de réservation n'a pas pu être acceptée.\n"
                    "Your booking request could not be accepted.", message)
    return booking


def cancel_booking(actor: Any, booking_id: int, message: str = "") -> Booking:
    """pending/approved -> cancelled, by staff or the manager of the booking's organisation."""
    require_user(actor)
    booking = db.session.get(Booking, booking_id)
    if booking is None:
        raise NotFound(f"booking {booking_id} does not exist")
    require_manager_of(actor, booking.organisation_id, "cancel this booking")
    booking = _load_for_change(booking_id)
    if booking.status not in BLOCKING_STATUSES:
        raise Conflict(f"booking {booking.id} is already {booking.status}")
    booking.status = "cancelled"
    booking.decided_by_id = actor.id
    booking.decided_at = utcnow()
    db.session.flush()
    if booking.created_by_id != actor.id:
        _mail_requester(booking, "Réservation annulée / Booking cancelled",
                        "Votre réservation a été annulée.\nYour booking has been cancelled.", message)
    return booking


def cancel_bookings_for_event(event_id: int) -> int:
    """Cancel the pending and approved bookings made for an event (the event was cancelled or deleted).

    The events service has checked who may do this; no email is sent here (the event's own
    notification tells people). Returns how many bookings were cancelled. Does not commit."""
    bookings = db.session.scalars(
        select(Booking)
        .where(Booking.event_id == event_id, Booking.status.in_(BLOCKING_STATUSES))
        .order_by(Booking.room_id, Booking.id)
    ).all()
    # Lock rooms in id order so two such calls can never wait on each other in a cycle.
    for room_id in sorted({b.room_id for b in bookings}):
        _lock_room(room_id)
    now = utcnow()
    count = 0
    for booking in bookings:
        db.session.refresh(booking)
        if booking.status in BLOCKING_STATUSES:
            booking.status = "cancelled"
            booking.decided_at = now
            count += 1
    db.session.flush()
    return count


def detach_event(event_id: int) -> None:
    """Forget the event on its bookings (before the event row is deleted), keeping them for history."""
    db.session.execute(
        update(Booking).where(Booking.event_id == event_id).values(event_id=None)
        .execution_options(synchronize_session=False)
    )


def _mail_requester(booking: Booking, subject: str, opening: str, message: str = "") -> None:
    room = booking.room
    site = room.site
    lines = [
        f"Bonjour {booking.requester_name},",
        "",
        opening,
        "",
        f"Salle / Room: {room.name} — {site.name}, {site.address}, {site.postal_code} {site.city}".rstrip(),
        f"Créneau / Slot: {describe_slot(booking.starts_at, booking.ends_at)}",
        f"Tarif / Price: {format_euros(booking.price_cents)} EUR ({booking.category})",
        f"Référence / Reference: #{booking.id}",
    ]
    if booking.purpose:
        lines.append(f"Objet / Purpose: {booking.purpose}")
    if message:
        lines += ["", message]
    lines += ["", current_app.config.get("HALLES_NAME", "Halles"), current_app.config.get("HALLES_URL", "")]
    queue_email(booking.requester_email, f"{subject} — {room.name}", "\n".join(lines))


__all__ = [
    "book_room",
    "request_booking_as_guest",
    "limit_guest_requests",
    "cancel_bookings_for_event",
    "detach_event",
    "approve_booking",
    "refuse_booking",
    "cancel_booking",
    "get_booking",
    "list_bookings",
    "room_availability",
    "describe_slot",
]
