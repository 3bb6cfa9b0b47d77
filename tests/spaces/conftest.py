"""Fixtures for the spaces tests: a site with a room priced for every category, slots in Paris time,
charters, bookings made directly in the database, and row counters."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

PARIS = ZoneInfo("Europe/Paris")

#: euro cents per hour, one price per category so a test can tell which tariff was applied.
TARIFFS = {
    "resident_member": 500,
    "member": 1000,
    "ngo": 1500,
    "public_service": 2000,
    "small_company": 3000,
    "other": 4000,
}

_versions = itertools.count(1)


def paris(days_ahead: int, hh_mm: str) -> datetime:
    """An aware datetime in Paris, ``days_ahead`` days from today (always in the future for days >= 2)."""
    day = datetime.now(PARIS).date() + timedelta(days=days_ahead)
    hour, minute = (int(part) for part in hh_mm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS)


def slot(days_ahead: int, start: str, end: str) -> dict[str, str]:
    """{'starts_at', 'ends_at'} as ISO strings with the Paris offset, for request bodies."""
    return {"starts_at": paris(days_ahead, start).isoformat(), "ends_at": paris(days_ahead, end).isoformat()}


def utc_naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


@pytest.fixture
def count(app):
    """count(Model) -> number of rows, read in a fresh app context."""
    from sqlalchemy import func, select

    from node.extensions import db

    def _count(model) -> int:
        with app.app_context():
            return db.session.scalar(select(func.count()).select_from(model))

    return _count


@pytest.fixture
def make_site(app):
    from node.extensions import db
    from node.spaces.models import Site

    def _make(**fields) -> int:
        with app.app_context():
            site = Site(
                name=fields.pop("name", "Les Halles Civiques — Belleville"),
                address=fields.pop("address", "12 rue de Belleville"),
                postal_code=fields.pop("postal_code", "75020"),
                city=fields.pop("city", "Paris"),
                opening_hours=fields.pop("opening_hours", "Mon-Fri 9:00-19:00"),
                accessibility=fields.pop("accessibility", ""),
                **fields,
            )
            db.session.add(site)
            db.session.commit()
            return site.id

    return _make


@pytest.fixture
def make_room(app, make_site):
    from node.extensions import db
    from node.spaces.models import Room

    def _make(site_id: int | None = None, **fields) -> int:
        site_id = site_id or make_site()
        with app.app_context():
            room = Room(
                site_id=site_id,
                name=fields.pop("name", "Salle Olympe de Gouges"),
                capacity=fields.pop("capacity", 30),
                tariffs=fields.pop("tariffs", dict(TARIFFS)),
                description=fields.pop("description", ""),
                amenities=fields.pop("amenities", []),
                booking_seq=0,
                **fields,
            )
            db.session.add(room)
            db.session.commit()
            return room.id

    return _make


@pytest.fixture
def room_id(make_room) -> int:
    return make_room()


@pytest.fixture
def add_booking(app):
    """Insert a booking directly (no rules), to set up a state: returns its id."""
    from node.extensions import db
    from node.spaces.models import Booking

    def _add(room_id: int, starts_at: datetime, ends_at: datetime, **fields) -> int:
        with app.app_context():
            booking = Booking(
                room_id=room_id,
                starts_at=utc_naive(starts_at),
                ends_at=utc_naive(ends_at),
                requester_name=fields.pop("requester_name", "Camille Martin"),
                requester_email=fields.pop("requester_email", "camille@example.org"),
                requester_organisation=fields.pop("requester_organisation", ""),
                category=fields.pop("category", "ngo"),
                purpose=fields.pop("purpose", ""),
                status=fields.pop("status", "pending"),
                price_cents=fields.pop("price_cents", 0),
                **fields,
            )
            db.session.add(booking)
            db.session.commit()
            return booking.id

    return _add


@pytest.fixture
def publish_charter(app):
    """Publish a new current charter version, signed by ``signed_by`` organisations: returns its version."""
    from sqlalchemy import update

    from node.charters.models import CharterSignature, CharterVersion
    from node.extensions import db

    def _publish(signed_by: tuple[int, ...] = (), version: str | None = None) -> str:
        version = version or f"2026.{next(_versions)}"
        body = f"Charte des Halles Civiques, version {version}."
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
        with app.app_context():
            db.session.execute(update(CharterVersion).values(is_current=False))
            charter = CharterVersion(version=version, title="Charte", body=body, sha256=digest, is_current=True)
            db.session.add(charter)
            db.session.flush()
            for organisation_id in signed_by:
                db.session.add(
                    CharterSignature(organisation_id=organisation_id, charter_version_id=charter.id, sha256=digest)
                )
            db.session.commit()
        return version

    return _publish


@pytest.fixture
def booking_row(app):
    """booking_row(id) -> dict of the stored booking's columns."""
    from node.extensions import db
    from node.spaces.models import Booking

    def _row(booking_id: int) -> dict:
        with app.app_context():
            booking = db.session.get(Booking, booking_id)
            return {column.name: getattr(booking, column.name) for column in Booking.__table__.columns}

    return _row
