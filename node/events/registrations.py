"""Registrations without an account: a name, an email, and a secret link to confirm, cancel or erase.

Places. An occurrence of an event with a ``capacity`` has that many places. A place is taken by a
``confirmed`` registration, and *held* by a ``pending`` one for ``PENDING_HOLD`` (48 h) after it was
made, so that a person who registers while places remain does not lose theirs while finding the
email. A pending registration older than that holds nothing but can still be confirmed if places
remain. On confirmation a person gets a place if the confirmed ones plus the holds made *before*
theirs leave one free (first come, first served); otherwise they are ``waitlisted``. When a place
frees up (a cancellation, an erasure, a larger capacity), the earliest waitlisted people are
promoted to ``confirmed`` and told by email.

Tokens. The secret in the links is random (``new_secret``); only its SHA-256 is stored, so a database
dump cannot be used to confirm or cancel for someone. The API never returns the secret: it reaches the
person only by email, which proves they own the address.

Nothing here commits; views do.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from node.common.auth import hash_secret, new_secret
from node.common.errors import Conflict, InvalidInput, NotFound
from node.common.permissions import require_event_manager
from node.common.timeutil import iso_utc, utcnow
from node.events.models import Event, Registration
from node.events.recurrence import local_to_utc, utc_to_local
from node.extensions import db
from node.mail.services import erase_recipient, queue_email

PENDING_HOLD = timedelta(hours=48)
#: Registrations that still count for something (a place, a hold, a waitlist position).
ACTIVE_STATUSES = ("pending", "confirmed", "waitlisted")
CSV_COLUMNS = ("name", "email", "status", "occurrence", "registered_at")


# --- places ---------------------------------------------------------------------------------------


def _taken_clause(now: datetime):
    return or_(
        Registration.status == "confirmed",
        and_(Registration.status == "pending", Registration.created_at > now - PENDING_HOLD),
    )


def places_taken(event_id: int, occurrence_starts_at: datetime, *, before: Registration | None = None) -> int:
    """Confirmed registrations plus fresh pending holds for one occurrence. With ``before``, holds
    made after that registration (and the registration itself) do not count: they come later."""
    now = utcnow()
    query = select(func.count(Registration.id)).where(
        Registration.event_id == event_id,
        Registration.occurrence_starts_at == occurrence_starts_at,
        _taken_clause(now),
    )
    if before is not None:
        query = query.where(
            Registration.id != before.id,
            or_(
                Registration.status == "confirmed",
                Registration.created_at < before.created_at,
                and_(Registration.created_at == before.created_at, Registration.id < before.id),
            ),
        )
    return db.session.scalar(query) or 0


def places_taken_map(pairs: set[tuple[int, datetime]]) -> dict[tuple[int, datetime], int]:
    """places_taken for many (event_id, occurrence start) pairs in one query (for listings)."""
    if not pairs:
        return {}
    event_ids = {event_id for event_id, _ in pairs}
    starts = {start for _, start in pairs}
    rows = db.session.execute(
        select(Registration.event_id, Registration.occurrence_starts_at, func.count(Registration.id))
        .where(
            Registration.event_id.in_(event_ids),
            Registration.occurrence_starts_at.in_(starts),
            _taken_clause(utcnow()),
        )
        .group_by(Registration.event_id, Registration.occurrence_starts_at)
    ).all()
    return {(event_id, start): count for event_id, start, count in rows if (event_id, start) in pairs}


def remaining_from(event: Event, taken: int) -> int | None:
    if event.is_remote:
        remote = (event.remote_object or {}).get("remainingAttendeeCapacity")
        return remote if isinstance(remote, int) and not isinstance(remote, bool) and remote >= 0 else None
    if event.capacity is None:
        return None
    return max(0, event.capacity - taken)


def remaining_places(event: Event, occurrence_starts_at: datetime) -> int | None:
    """Places left for one occurrence (None: unlimited or unknown)."""
    if event.capacity is None or event.is_remote:
        return remaining_from(event, 0)
    return remaining_from(event, places_taken(event.id, occurrence_starts_at))


def _lock_event(event: Event) -> None:
    """Serialise place counting per event for the rest of the transaction: a no-op UPDATE takes the row
    lock on PostgreSQL and the write lock on SQLite, so two confirmations cannot both take the last place."""
    db.session.execute(
        update(Event).where(Event.id == event.id).values(capacity=Event.capacity)
        .execution_options(synchronize_session=False)
    )


# --- text -----------------------------------------------------------------------------------------


def local_time(event: Event, utc_value: datetime) -> datetime:
    return utc_to_local(utc_value, _zone(event))


def local_iso(event: Event, utc_value: datetime) -> str:
    """Naive UTC -> ISO 8601 in the event's zone with its offset, e.g. '2026-03-26T19:00:00+01:00'."""
    return utc_value.replace(tzinfo=UTC).astimezone(_zone(event)).isoformat(timespec="seconds")


def _zone(event: Event) -> ZoneInfo:
    try:
        return ZoneInfo(event.timezone)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def describe_occurrence(event: Event, start: datetime) -> str:
    local = local_time(event, start)
    return f"{local:%Y-%m-%d %H:%M} ({event.timezone})"


def describe_place(event: Event) -> str:
    if event.location_kind == "online":
        return f"En ligne / Online: {event.online_url}"
    parts = [event.place_name, event.address, f"{event.postal_code} {event.city}".strip()]
    return ", ".join(part for part in parts if part)


def link(token: str, action: str) -> str:
    return f"{current_app.config['HALLES_URL']}/registrations/{token}/{action}"


def _signature() -> list[str]:
    return ["", current_app.config.get("HALLES_NAME", "Halles"), current_app.config.get("HALLES_URL", "")]


def _mail(registration: Registration, subject: str, lines: list[str]) -> None:
    if not registration.email:
        return  # erased: nobody to tell
    event = registration.event
    body = [
        f"Bonjour {registration.name},",
        "",
        *lines,
        "",
        f"Événement / Event: {event.title}",
        f"Date: {describe_occurrence(event, registration.occurrence_starts_at)}",
        f"Lieu / Place: {describe_place(event)}",
        f"{event.ap_id}",
        *_signature(),
    ]
    title = event.title if len(event.title) <= 120 else event.title[:119] + "…"
    queue_email(registration.email, f"{subject} — {title}", "\n".join(body))


# --- lookups --------------------------------------------------------------------------------------


def by_token(token: str) -> Registration:
    registration = None
    if token and len(token) <= 200:
        registration = db.session.scalar(select(Registration).where(Registration.token_hash == hash_secret(token)))
    if registration is None:
        raise NotFound("this registration link is unknown: check that the whole link was copied from the email")
    return registration


def pick_occurrence(event: Event, value: datetime | None) -> datetime:
    """The occurrence a person registers for, as naive UTC: the given one, or the next one.
    A value without offset is read in the event's time zone."""
    starts = sorted(occurrence.starts_at for occurrence in event.occurrences)
    now = utcnow()
    if value is None:
        upcoming = [start for start in starts if start > now]
        if not upcoming:
            raise Conflict("this event is over: registration is closed")
        return upcoming[0]
    if value.tzinfo is None:
        start = local_to_utc(value.replace(microsecond=0), _zone(event))
    else:
        start = value.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    if start not in starts:
        upcoming = [describe_occurrence(event, s) for s in starts if s > now][:3]
        hint = f"; the next ones start {', '.join(upcoming)}" if upcoming else ""
        raise InvalidInput(f"occurrence {value.isoformat()} is not a start of this event{hint}")
    return start


# --- the flow -------------------------------------------------------------------------------------


def _check_open(event: Event, occurrence_starts_at: datetime) -> None:
    if event.is_remote:
        where = event.registration_url or event.ap_id
        raise Conflict(
            f"this event is organised on another node: register there ({where})", registration_url=where
        )
    if event.status == "cancelled":
        raise Conflict("this event is cancelled: registration is closed")
    if occurrence_starts_at <= utcnow():
        raise Conflict("this occurrence has already started: registration is closed")


def register(
    event: Event, *, name: str, email: str, occurrence: datetime | None = None
) -> tuple[Registration, str]:
    """Create a pending registration and queue the email with its links. Returns (registration, secret);
    the secret must only be sent by email. Raises Conflict (remote, cancelled, past, duplicate) or
    InvalidInput."""
    if event.is_remote:
        _check_open(event, utcnow() + timedelta(days=1))
    start = pick_occurrence(event, occurrence)
    _check_open(event, start)
    name = (name or "").strip()
    email = (email or "").strip()
    if not name or len(name) > 200:
        raise InvalidInput("name is required (1 to 200 characters)")
    if not email or "@" not in email or len(email) > 254:
        raise InvalidInput("email must be an address where we can send the confirmation link")
    _lock_event(event)
    duplicate = db.session.scalar(
        select(Registration.id).where(
            Registration.event_id == event.id,
            Registration.occurrence_starts_at == start,
            func.lower(Registration.email) == email.lower(),
            Registration.status.in_(ACTIVE_STATUSES),
        )
    )
    if duplicate is not None:
        raise Conflict(
            f"{email} is already registered for {describe_occurrence(event, start)}: use the links in the email "
            "we sent, or cancel that registration first"
        )
    secret = new_secret()
    registration = Registration(
        event_id=event.id,
        occurrence_starts_at=start,
        name=name,
        email=email,
        status="pending",
        token_hash=hash_secret(secret),
        created_at=utcnow(),
    )
    registration.event = event
    db.session.add(registration)
    db.session.flush()
    hours = int(PENDING_HOLD.total_seconds() // 3600)
    _mail(
        registration,
        "Confirmez votre inscription / Confirm your registration",
        [
            "Merci de confirmer votre inscription en ouvrant ce lien :",
            "Please confirm your registration by opening this link:",
            link(secret, "confirm"),
            "",
            f"Votre place est réservée {hours} h en attendant. / Your place is held for {hours} hours meanwhile.",
            "",
            "Pour annuler / To cancel:",
            link(secret, "cancel"),
            "",
            "Pour effacer votre nom et votre adresse de nos données / To erase your name and address:",
            link(secret, "erase"),
        ],
    )
    return registration, secret


def confirm(token: str) -> Registration:
    """pending -> confirmed if a place remains for that occurrence, else waitlisted. Idempotent."""
    registration = by_token(token)
    if registration.status in ("confirmed", "waitlisted"):
        return registration
    if registration.status == "cancelled":
        raise Conflict("this registration was cancelled (or erased): register again if you want to come")
    event = registration.event
    _check_open(event, registration.occurrence_starts_at)
    _lock_event(event)
    taken = places_taken(event.id, registration.occurrence_starts_at, before=registration)
    now = utcnow()
    if event.capacity is None or taken < event.capacity:
        registration.status = "confirmed"
        registration.confirmed_at = now
    else:
        registration.status = "waitlisted"
    db.session.flush()
    return registration


def _release(registration: Registration) -> None:
    held = registration.status in ("confirmed", "pending")
    registration.status = "cancelled"
    registration.cancelled_at = registration.cancelled_at or utcnow()
    db.session.flush()
    if held:
        promote_waitlist(registration.event, registration.occurrence_starts_at)


def cancel(token: str) -> Registration:
    """-> cancelled; a freed place goes to the first waitlisted person. Idempotent."""
    registration = by_token(token)
    if registration.status != "cancelled":
        _lock_event(registration.event)
        _release(registration)
    return registration


def erase(token: str) -> Registration:
    """Blank the name and email for good (erasure on request), cancelling the registration."""
    registration = by_token(token)
    if registration.erased_at is not None:
        return registration
    _lock_event(registration.event)
    if registration.status != "cancelled":
        _release(registration)
    # The mail sent about this registration holds the name, the address and the secret links too.
    erase_recipient(registration.email, mentioning=registration.event.ap_id)
    registration.name = ""
    registration.email = ""
    registration.erased_at = utcnow()
    db.session.flush()
    return registration


def promote_waitlist(event: Event, occurrence_starts_at: datetime) -> list[Registration]:
    """Confirm the earliest waitlisted people while places remain; each gets an email."""
    if event.is_remote or event.status == "cancelled" or occurrence_starts_at <= utcnow():
        return []
    query = (
        select(Registration)
        .where(
            Registration.event_id == event.id,
            Registration.occurrence_starts_at == occurrence_starts_at,
            Registration.status == "waitlisted",
        )
        .order_by(Registration.created_at, Registration.id)
    )
    if event.capacity is not None:
        free = event.capacity - places_taken(event.id, occurrence_starts_at)
        if free <= 0:
            return []
        query = query.limit(free)
    promoted = list(db.session.scalars(query))
    now = utcnow()
    for registration in promoted:
        registration.status = "confirmed"
        registration.confirmed_at = now
        _mail(
            registration,
            "Une place s'est libérée / A place opened up",
            [
                "Une place s'est libérée : votre inscription est confirmée.",
                "A place opened up: your registration is confirmed.",
                "",
                "Si vous ne pouvez plus venir, utilisez le lien d'annulation du premier message.",
                "If you can no longer come, use the cancel link in our first message.",
            ],
        )
    db.session.flush()
    return promoted


def active_registrations(event: Event, *, after: datetime | None = None) -> list[Registration]:
    query = select(Registration).where(
        Registration.event_id == event.id, Registration.status.in_(ACTIVE_STATUSES)
    )
    if after is not None:
        query = query.where(Registration.occurrence_starts_at > after)
    return list(db.session.scalars(query.order_by(Registration.occurrence_starts_at, Registration.id)))


def notify_cancelled(event: Event, registrations: list[Registration], *, only_occurrence: bool = False) -> None:
    """Tell people their event (or their occurrence of it) will not take place."""
    for registration in registrations:
        what = "Cette date est annulée. / This date is cancelled." if only_occurrence else (
            "Cet événement est annulé. / This event is cancelled."
        )
        _mail(registration, "Événement annulé / Event cancelled", [what, "Désolés. / Sorry."])


def notify_moved(registration: Registration, old_start: datetime) -> None:
    _mail(
        registration,
        "Changement d'horaire / New time",
        [
            f"L'horaire a changé (avant : {describe_occurrence(registration.event, old_start)}).",
            f"The time has changed (it was {describe_occurrence(registration.event, old_start)}).",
            "Votre inscription reste valable. / Your registration stands.",
        ],
    )


# --- organisers' view -----------------------------------------------------------------------------


def list_registrations(
    actor: Any, event: Event, *, occurrence_starts_at: datetime | None = None
) -> list[Registration]:
    require_event_manager(actor, [org.id for org in event.organisers], "see who registered")
    query = select(Registration).where(Registration.event_id == event.id)
    if occurrence_starts_at is not None:
        query = query.where(Registration.occurrence_starts_at == occurrence_starts_at)
    return list(db.session.scalars(query.order_by(Registration.occurrence_starts_at, Registration.created_at,
                                                   Registration.id)))


def _csv_cell(value: str) -> str:
    # A cell starting with = + - @ is run as a formula by spreadsheets: a registrant's name must not be.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def registrations_csv(actor: Any, event: Event) -> str:
    """CSV (name,email,status,occurrence,registered_at); occurrence in the event's local time with its
    offset, registered_at in UTC."""
    rows = list_registrations(actor, event)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for registration in rows:
        writer.writerow([
            _csv_cell(registration.name),
            _csv_cell(registration.email),
            registration.status,
            local_iso(event, registration.occurrence_starts_at),
            iso_utc(registration.created_at),
        ])
    return out.getvalue()


def registration_to_dict(registration: Registration, *, private: bool = True) -> dict[str, Any]:
    """``private``: include name and email (organisers, or the person holding the link)."""
    event = registration.event
    data: dict[str, Any] = {
        "id": registration.id,
        "status": registration.status,
        "event": {"id": event.uuid, "title": event.title, "url": event.ap_id},
        "occurrence": {
            "starts_at": iso_utc(registration.occurrence_starts_at),
            "local_start": local_iso(event, registration.occurrence_starts_at),
        },
        "registered_at": iso_utc(registration.created_at),
        "confirmed_at": iso_utc(registration.confirmed_at),
        "cancelled_at": iso_utc(registration.cancelled_at),
        "erased": registration.erased_at is not None,
    }
    if private:
        data["name"] = registration.name
        data["email"] = registration.email
    return data


__all__ = [
    "PENDING_HOLD",
    "register",
    "confirm",
    "cancel",
    "erase",
    "promote_waitlist",
    "remaining_places",
    "places_taken",
    "list_registrations",
    "registrations_csv",
]
