"""Fixtures for the events tests: organisations with managers, a site and room, charters, event
bodies in Paris time, row counters and the email queue."""

from __future__ import annotations

import hashlib
import itertools
import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

PARIS = ZoneInfo("Europe/Paris")
_versions = itertools.count(1)


def paris(days_ahead: int, hh_mm: str) -> datetime:
    """An aware datetime in Paris, ``days_ahead`` days from today."""
    day = datetime.now(PARIS).date() + timedelta(days=days_ahead)
    hour, minute = (int(part) for part in hh_mm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS)


def utc_naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def event_body(days_ahead: int = 10, start: str = "19:00", end: str = "21:00", **fields) -> dict:
    """A valid POST /api/v1/events body (a place in Paris) with overrides."""
    body = {
        "title": "Débat : la démocratie locale",
        "description": "Un débat ouvert à toutes et tous.",
        "starts_at": paris(days_ahead, start).isoformat(),
        "ends_at": paris(days_ahead, end).isoformat(),
        "location_kind": "place",
        "address": "12 rue de Belleville",
        "city": "Paris",
        "category": "debate",
    }
    body.update(fields)
    return body


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
def counts(count):
    """Row counts of every table an events request may write, for 'nothing changed' assertions."""
    from node.events.models import Event, EventOccurrence, Registration, event_organisers
    from node.mail.models import OutgoingEmail
    from node.spaces.models import Booking

    def _counts() -> dict:
        return {
            "events": count(Event),
            "occurrences": count(EventOccurrence),
            "organisers": count(event_organisers),
            "registrations": count(Registration),
            "emails": count(OutgoingEmail),
            "bookings": count(Booking),
        }

    return _counts


@pytest.fixture
def world(make_org, make_user):
    """Two organisations (A resident) and one person per role; ``world["headers"][role]``."""
    org_a = make_org("Association Alpha", resident=True)
    org_b = make_org("Collectif Béta")
    users = {
        "member": make_user("member", org_a.id),
        "manager_a": make_user("org_manager", org_a.id),
        "manager_b": make_user("org_manager", org_b.id),
        "office_manager": make_user("office_manager"),
        "admin": make_user("admin"),
    }
    headers = {"anonymous": {}} | {role: pair[1] for role, pair in users.items()}
    user_ids = {role: pair[0] for role, pair in users.items()}
    return {"org_a": org_a, "org_b": org_b, "headers": headers, "user_ids": user_ids}


@pytest.fixture
def make_room(app):
    from node.extensions import db
    from node.spaces.models import Room, Site

    def _make(name: str = "Salle Olympe de Gouges", **fields) -> int:
        with app.app_context():
            site = Site(name="Les Halles Civiques — Belleville", address="12 rue de Belleville", postal_code="75020",
                        city="Paris", latitude=48.8722, longitude=2.3767)
            db.session.add(site)
            db.session.flush()
            room = Room(site_id=site.id, name=name, capacity=fields.pop("capacity", 40),
                        tariffs=fields.pop("tariffs", {"resident_member": 0, "member": 500, "ngo": 1500}),
                        booking_seq=0, **fields)
            db.session.add(room)
            db.session.commit()
            return room.id

    return _make


@pytest.fixture
def publish_charter(app):
    """Publish a new current charter version signed by ``signed_by``: returns its version label."""
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
def create_event(client, world):
    """POST an event as ``role`` (default: manager of A, organised by A); returns the JSON."""

    def _create(role: str = "manager_a", **fields) -> dict:
        fields.setdefault("organiser_ids", [world["org_a"].id])
        response = client.post("/api/v1/events", json=event_body(**fields), headers=world["headers"][role])
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return _create


@pytest.fixture
def outbox(app):
    """outbox() -> queued emails as (to, subject, body), oldest first."""
    from sqlalchemy import select

    from node.extensions import db
    from node.mail.models import OutgoingEmail

    def _read() -> list[tuple[str, str, str]]:
        with app.app_context():
            rows = db.session.scalars(select(OutgoingEmail).order_by(OutgoingEmail.id)).all()
            return [(row.to_address, row.subject, row.body_text) for row in rows]

    return _read


LINK = re.compile(r"https?://\S+/registrations/([A-Za-z0-9_\-]+)/(confirm|cancel|erase)")


def links_in(body: str) -> dict[str, str]:
    """{'confirm': token, 'cancel': token, 'erase': token} from an email body."""
    return {action: token for token, action in LINK.findall(body)}
