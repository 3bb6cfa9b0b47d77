"""Sites, rooms, desks and room bookings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from node.common.timeutil import utcnow
from node.extensions import db
from node.organisations.models import Organisation

#: Who books, in the order of the tariff grid; the price per hour depends on it.
BOOKER_CATEGORIES = ("resident_member", "member", "ngo", "public_service", "small_company", "other")
#: Categories reserved to member organisations that signed the current charter.
MEMBER_CATEGORIES = ("resident_member", "member")
BOOKING_STATUSES = ("pending", "approved", "refused", "cancelled")
#: A booking in one of these states holds its slot: nobody else can book it.
BLOCKING_STATUSES = ("pending", "approved")


class Site(db.Model):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    city: Mapped[str] = mapped_column(String(120))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    #: Free text shown to visitors, e.g. "Mon-Fri 9:00-19:00; Sat 10:00-18:00".
    opening_hours: Mapped[str] = mapped_column(Text, default="")
    #: How to come by: step-free entrance, nearest metro, lift...
    accessibility: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    rooms: Mapped[list[Room]] = relationship(back_populates="site", order_by="Room.id")


class Room(db.Model):
    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    capacity: Mapped[int] = mapped_column(Integer)
    amenities: Mapped[list] = mapped_column(JSON, default=list)
    step_free: Mapped[bool] = mapped_column(Boolean, default=False)
    photo_url: Mapped[str | None] = mapped_column(String(500))
    #: booker category -> price in euro cents per hour; a missing category cannot book.
    tariffs: Mapped[dict] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Bumped by every booking write: the UPDATE takes the row lock that serialises overlap checks
    #: (PostgreSQL row lock, SQLite write lock), so two concurrent requests cannot both pass.
    booking_seq: Mapped[int] = mapped_column(Integer, default=0)

    site: Mapped[Site] = relationship(back_populates="rooms")


class Desk(db.Model):
    __tablename__ = "desks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    label: Mapped[str] = mapped_column(String(100))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))

    organisation: Mapped[Organisation | None] = relationship()


class Booking(db.Model):
    __tablename__ = "bookings"
    __table_args__ = (Index("ix_bookings_room_span", "room_id", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    #: The member organisation booking, or None for an outside requester (form without account).
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    requester_name: Mapped[str] = mapped_column(String(200))
    requester_email: Mapped[str] = mapped_column(String(254))
    requester_organisation: Mapped[str] = mapped_column(String(200), default="")
    category: Mapped[str] = mapped_column(String(30))
    purpose: Mapped[str] = mapped_column(Text, default="")
    #: UTC, naive.
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    #: UTC, naive; strictly after starts_at.
    ends_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    #: Euro cents, computed from the room's tariff at request time.
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", use_alter=True))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    room: Mapped[Room] = relationship()
    organisation: Mapped[Organisation | None] = relationship()
