"""Events (local and federated), their expanded occurrences, organisers and registrations."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from node.common.timeutil import utcnow
from node.extensions import db
from node.organisations.models import Organisation

VISIBILITIES = ("public", "network", "members")
STATUSES = ("confirmed", "tentative", "cancelled")
LOCATION_KINDS = ("room", "place", "online")
#: Accessibility features an event can offer; each is a yes/no flag in ``Event.accessibility``.
ACCESSIBILITY_FEATURES = (
    "step_free",
    "sign_language",
    "hearing_loop",
    "easy_to_read",
    "quiet_room",
    "audio_description",
    "accessible_toilets",
)
CATEGORIES = (
    "debate",
    "workshop",
    "screening",
    "festival",
    "open_day",
    "meeting",
    "exhibition",
    "concert",
    "training",
    "other",
)
REGISTRATION_STATUSES = ("pending", "confirmed", "waitlisted", "cancelled")
CITY_LENGTH = 120


def city_key(city: str | None) -> str:
    """The form in which cities are compared: no accents, no case, no spaces at the ends
    ('Saint-Étienne ' and 'saint-etienne' are the same city)."""
    decomposed = unicodedata.normalize("NFKD", city or "")
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold().strip()[:CITY_LENGTH]

event_organisers = Table(
    "event_organisers",
    db.metadata,
    Column("event_id", ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("organisation_id", ForeignKey("organisations.id"), primary_key=True),
)


class Event(db.Model):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Stable public identifier, used in URLs and in the ActivityPub id of local events.
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    #: ActivityPub id; for local events ``<node url>/events/<uuid>``, for remote ones the origin's id.
    ap_id: Mapped[str] = mapped_column(String(500), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    #: UTC, naive: the first occurrence.
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    #: UTC, naive; strictly after starts_at.
    ends_at: Mapped[datetime] = mapped_column(DateTime)
    #: IANA zone the event happens in; recurrence is expanded in it (so 19:00 stays 19:00 across DST).
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    #: RFC 5545 RRULE value without the "RRULE:" prefix, e.g. "FREQ=WEEKLY;COUNT=10".
    rrule: Mapped[str | None] = mapped_column(String(500))
    #: Cancelled occurrences: local start times (ISO, in ``timezone``) removed from the rule.
    exdates: Mapped[list] = mapped_column(JSON, default=list)
    category: Mapped[str] = mapped_column(String(40), default="other")
    tags: Mapped[list] = mapped_column(JSON, default=list)
    language: Mapped[str] = mapped_column(String(10), default="fr")
    #: Euro cents; 0 is free.
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    #: feature name -> True, for ACCESSIBILITY_FEATURES.
    accessibility: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Places per occurrence; None is unlimited.
    capacity: Mapped[int | None] = mapped_column(Integer)
    visibility: Mapped[str] = mapped_column(String(20), default="public")
    status: Mapped[str] = mapped_column(String(20), default="confirmed")
    location_kind: Mapped[str] = mapped_column(String(20), default="place")
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    place_name: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(300), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    city: Mapped[str] = mapped_column(String(CITY_LENGTH), default="")
    #: ``city_key(city)``, kept by a mapper hook: the city filter is then an SQL condition, checked on
    #: the rows the (starts_at, id) index walk yields, instead of a scan of every event in Python.
    city_key: Mapped[str] = mapped_column(String(CITY_LENGTH), default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    online_url: Mapped[str | None] = mapped_column(String(500))
    image_url: Mapped[str | None] = mapped_column(String(500))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: Last change; for remote events the origin's ``updated`` (out-of-order updates lose to newer ones).
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    # Federation: None for local events.
    origin_actor_id: Mapped[int | None] = mapped_column(ForeignKey("remote_actors.id"))
    #: The node that re-shared (Announce) this remote event to us, if it did not come from its origin.
    shared_by_actor_id: Mapped[int | None] = mapped_column(ForeignKey("remote_actors.id"))
    #: The origin's signed object as received (with its proof), kept to re-share it untouched.
    remote_object: Mapped[dict | None] = mapped_column(JSON)
    #: Registration link at the origin (remote events register there, never here).
    registration_url: Mapped[str | None] = mapped_column(String(500))

    organisers: Mapped[list[Organisation]] = relationship(secondary=event_organisers)
    occurrences: Mapped[list[EventOccurrence]] = relationship(
        back_populates="event", cascade="all, delete-orphan", order_by="EventOccurrence.starts_at"
    )

    @property
    def is_remote(self) -> bool:
        return self.origin_actor_id is not None


@event.listens_for(Event, "before_insert")
@event.listens_for(Event, "before_update")
def _keep_city_key(_mapper, _connection, target: Event) -> None:
    target.city_key = city_key(target.city)


class EventOccurrence(db.Model):
    """One dated occurrence; listings page over this table by (starts_at, id)."""

    __tablename__ = "event_occurrences"
    __table_args__ = (
        UniqueConstraint("event_id", "starts_at"),
        Index("ix_event_occurrences_start_id", "starts_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    #: UTC, naive.
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    #: UTC, naive.
    ends_at: Mapped[datetime] = mapped_column(DateTime)

    event: Mapped[Event] = relationship(back_populates="occurrences")


class Registration(db.Model):
    """A citizen's registration, without an account: a name, an email, and links to confirm or cancel."""

    __tablename__ = "registrations"
    __table_args__ = (Index("ix_registrations_event_occ", "event_id", "occurrence_starts_at", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    #: UTC start of the occurrence registered for (the event's start when it does not recur).
    occurrence_starts_at: Mapped[datetime] = mapped_column(DateTime)
    #: Emptied when the person asks for erasure.
    name: Mapped[str] = mapped_column(String(200))
    #: Emptied when the person asks for erasure.
    email: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    #: SHA-256 hex of the secret in the confirm/cancel links.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime)

    event: Mapped[Event] = relationship()
