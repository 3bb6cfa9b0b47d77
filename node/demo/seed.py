"""Seed one demo node through its own JSON API (so the demo data passes the same rules as users'):
people, a site with rooms, member organisations that signed the charter, and upcoming events."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask

from node.demo.data import NODES
from node.extensions import db


class SeedError(RuntimeError):
    pass


def _call(client, method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict:
    response = client.open(url, method=method, json=body, headers=headers)
    if response.status_code >= 400:
        raise SeedError(f"{method} {url} -> {response.status_code}: {response.get_data(as_text=True)[:500]}")
    return response.get_json(silent=True) or {}


def _people(app: Flask, key: str, password: str) -> dict[str, str]:
    from node.members.services import create_user, find_user_by_email, issue_token, set_password

    with app.app_context():
        admin = find_user_by_email(f"admin@{key}.demo") or create_user(None, f"admin@{key}.demo", "admin",
                                                                          name="Camille Admin")
        set_password(admin, password)
        manager = find_user_by_email(f"accueil@{key}.demo") or create_user(
            None, f"accueil@{key}.demo", "office_manager", name="Sam Accueil")
        set_password(manager, password)
        token = issue_token(admin, label="demo seed")
        db.session.commit()
    return {"Authorization": f"Bearer {token}"}


def _local(day: date, hour: float, zone: str) -> datetime:
    whole = int(hour)
    minutes = int(round((hour - whole) * 60))
    return datetime(day.year, day.month, day.day, whole, minutes, tzinfo=ZoneInfo(zone))


def seed(app: Flask, key: str, password: str, *, today: date | None = None) -> list[str]:
    spec = next((node for node in NODES if node["key"] == key), None)
    if spec is None:
        raise SeedError(f"unknown demo node {key!r}; choose one of {', '.join(n['key'] for n in NODES)}")
    headers = _people(app, key, password)
    client = app.test_client()
    lines = []
    site = _call(client, "POST", "/api/v1/sites", headers, spec["site"])
    room_ids = []
    for room in spec["rooms"]:
        created = _call(client, "POST", "/api/v1/rooms", headers, {**room, "site_id": site["id"]})
        room_ids.append(created["id"])
    charter = _call(client, "GET", "/api/v1/charter", headers)
    org_ids = []
    for organisation in spec["organisations"]:
        body = {k: v for k, v in organisation.items() if v is not None}
        created = _call(client, "POST", "/api/v1/organisations", headers, body)
        org_ids.append(created["id"])
        _call(client, "PUT", f"/api/v1/organisations/{created['id']}/consent", headers,
              {"name": "public", "description": "public", "website": "public", "topics": "public",
               "contact_email": "network", "city": "public"})
        _call(client, "POST", "/api/v1/charter/signatures", headers,
              {"organisation_id": created["id"], "sha256": charter["sha256"]})
    lines.append(f"{spec['name']}: {len(room_ids)} rooms, {len(org_ids)} organisations (charter signed)")
    zone = app.config["HALLES_TIMEZONE"]
    start_day = today or date.today()
    for event in spec["events"]:
        day = start_day + timedelta(days=event["days"])
        starts = _local(day, event["hour"], zone)
        ends = starts + timedelta(hours=event["duration"])
        body = {
            "title": event["title"],
            "description": event["description"],
            "starts_at": starts.isoformat(),
            "ends_at": ends.isoformat(),
            "timezone": zone,
            "category": event["category"],
            "tags": event["tags"],
            "language": "fr",
            "accessibility": {k: v for k, v in event["accessibility"].items() if v},
            "capacity": event["capacity"],
            "visibility": "public",
            "organiser_ids": [org_ids[event["org"]]],
            "location_kind": "room",
            "room_id": room_ids[event["room"]],
        }
        if event.get("rrule"):
            body["rrule"] = event["rrule"]
        _call(client, "POST", "/api/v1/events", headers, body)
    lines.append(f"{spec['name']}: {len(spec['events'])} events")
    return lines
