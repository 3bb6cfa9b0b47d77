"""Shared steps of the resilience tests: a charter-signed organisation with an event open for
registration, and a room that can be booked, made through the API of an in-process app."""

from __future__ import annotations

import hashlib
import itertools
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
_numbers = itertools.count(1)


def paris(days_ahead: int, hh_mm: str) -> datetime:
    day = datetime.now(PARIS).date() + timedelta(days=days_ahead)
    hour, minute = (int(part) for part in hh_mm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS)


def event_body(title: str = "Débat : la démocratie locale", days_ahead: int = 10, **fields) -> dict:
    body = {
        "title": title,
        "description": "Un débat ouvert à toutes et tous.",
        "starts_at": paris(days_ahead, "19:00").isoformat(),
        "ends_at": paris(days_ahead, "21:00").isoformat(),
        "location_kind": "place",
        "address": "12 rue de Belleville",
        "city": "Paris",
        "category": "debate",
    }
    body.update(fields)
    return body


def publish_and_sign_charter(app, organisation_ids: list[int]) -> None:
    from sqlalchemy import select, update

    from node.charters.models import CharterSignature, CharterVersion
    from node.extensions import db

    with app.app_context():
        charter = db.session.scalar(select(CharterVersion).where(CharterVersion.is_current.is_(True)))
        if charter is None:
            body = f"Charte des Halles Civiques, version {next(_numbers)}."
            db.session.execute(update(CharterVersion).values(is_current=False))
            charter = CharterVersion(version=f"2026.{next(_numbers)}", title="Charte", body=body,
                                     sha256=hashlib.sha256(body.encode()).hexdigest(), is_current=True)
            db.session.add(charter)
            db.session.flush()
        for organisation_id in organisation_ids:
            db.session.add(CharterSignature(organisation_id=organisation_id, charter_version_id=charter.id,
                                            sha256=charter.sha256))
        db.session.commit()


def make_admin(app, role: str = "admin", organisation_id: int | None = None) -> dict[str, str]:
    """A user of ``role`` with an API token in ``app``: returns the auth headers."""
    from node.common.auth import TOKEN_PREFIX, hash_secret, new_secret
    from node.extensions import db
    from node.members.models import ApiToken, User

    with app.app_context():
        user = User(email=f"person{next(_numbers)}@example.org", name="Person", role=role,
                    organisation_id=organisation_id)
        db.session.add(user)
        db.session.flush()
        secret = new_secret(TOKEN_PREFIX)
        db.session.add(ApiToken(user_id=user.id, token_hash=hash_secret(secret), label="resilience"))
        db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


def make_organisation(app, name: str | None = None, *, resident: bool = True) -> int:
    from node.extensions import db
    from node.organisations.models import Organisation

    number = next(_numbers)
    with app.app_context():
        org = Organisation(name=name or f"Association {number}", slug=f"association-r{number}", resident=resident,
                           description="Une association membre.", topics=[])
        db.session.add(org)
        db.session.commit()
        return org.id


def create_local_event(app, headers: dict[str, str] | None = None, **fields) -> str:
    """A public event organised by a charter-signed organisation; returns its uuid."""
    org_id = make_organisation(app)
    publish_and_sign_charter(app, [org_id])
    headers = headers or make_admin(app)
    fields.setdefault("organiser_ids", [org_id])
    response = app.test_client().post("/api/v1/events", json=event_body(**fields), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def create_room(app) -> int:
    from node.extensions import db
    from node.spaces.models import Room, Site

    with app.app_context():
        site = Site(name="Les Halles Civiques — Belleville", address="12 rue de Belleville", postal_code="75020",
                    city="Paris", latitude=48.8722, longitude=2.3767)
        db.session.add(site)
        db.session.flush()
        room = Room(site_id=site.id, name=f"Salle {next(_numbers)}", capacity=40,
                    tariffs={"resident_member": 0, "member": 500, "ngo": 1500}, booking_seq=0)
        db.session.add(room)
        db.session.commit()
        return room.id


def slot(days_ahead: int, start: str, end: str) -> dict[str, str]:
    return {"starts_at": paris(days_ahead, start).isoformat(), "ends_at": paris(days_ahead, end).isoformat()}


def seed_world(app) -> dict:
    """One of everything, made through the API where it can be: two organisations (A resident and
    charter-signed), a person per role, a site, a room, a desk, a booking, an event with a
    registration, an invitation. Returns ids, path values and auth headers per role."""
    from node.extensions import db
    from node.spaces.models import Desk

    org_a = make_organisation(app, "Association Alpha", resident=True)
    org_b = make_organisation(app, "Collectif Béta", resident=False)
    publish_and_sign_charter(app, [org_a, org_b])
    headers = {
        "anonymous": {},
        "member": make_admin(app, "member", org_a),
        "org_manager": make_admin(app, "org_manager", org_a),
        "other_org_manager": make_admin(app, "org_manager", org_b),
        "office_manager": make_admin(app, "office_manager"),
        "admin": make_admin(app, "admin"),
    }
    client = app.test_client()

    def call(method: str, url: str, role: str, body: dict | None = None) -> dict:
        response = client.open(url, method=method, json=body, headers=headers[role])
        assert response.status_code in (200, 201, 202), (method, url, response.get_data(as_text=True)[:500])
        return response.get_json() or {}

    site = call("POST", "/api/v1/sites", "admin", {"name": "Les Halles Civiques — Belleville",
                                                    "address": "12 rue de Belleville", "postal_code": "75020",
                                                    "city": "Paris"})
    room = create_room(app)
    with app.app_context():
        desk = Desk(site_id=site["id"], label="Poste 1", organisation_id=org_a)
        db.session.add(desk)
        db.session.commit()
        desk_id = desk.id
    booking = call("POST", "/api/v1/bookings", "org_manager",
                   {"room_id": room, **slot(9, "14:00", "16:00"), "category": "ngo", "organisation_id": org_a})
    event = call("POST", "/api/v1/events", "org_manager", event_body(capacity=30, organiser_ids=[org_a]))
    call("POST", f"/api/v1/events/{event['id']}/registrations", "anonymous",
         {"name": "Camille", "email": "camille@example.org"})
    call("POST", "/api/v1/invitations", "admin", {"email": "nouvelle@example.org", "role": "member",
                                                   "organisation_id": org_a})
    # The person the user routes act on: not one of the roles (a member may read and edit themself).
    target = make_admin(app, "member", org_b)
    with app.app_context():
        from sqlalchemy import select

        from node.charters.models import CharterVersion
        from node.common.auth import hash_secret
        from node.members.models import ApiToken
        from node.organisations.models import Organisation

        token = target["Authorization"].split(" ", 1)[1]
        target_id = db.session.scalar(select(ApiToken.user_id).where(ApiToken.token_hash == hash_secret(token)))
        charter_version = db.session.scalar(select(CharterVersion.version).where(CharterVersion.is_current.is_(True)))
        slug = db.session.scalar(select(Organisation.slug).where(Organisation.id == org_a))
    return {
        "headers": headers,
        "org_a": org_a,
        "org_b": org_b,
        "paths": {
            "event_uuid": event["id"], "booking_id": booking["id"], "desk_id": desk_id, "room_id": room,
            "site_id": site["id"], "organisation_id": org_a, "org_id": org_a, "user_id": target_id,
            "version": charter_version, "token": "no-such-token", "decision": "approve",
            "activity_uuid": "no-such-activity", "action": "confirm", "slug": slug, "actor_id": 999_999,
        },
    }
