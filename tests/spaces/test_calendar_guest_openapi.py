"""The rooms' iCalendar feed, booking requests from people without an account (with real SMTP), and
the OpenAPI description of the spaces API."""

from __future__ import annotations

from datetime import UTC

import pytest
from icalendar import Calendar

from tests.spaces.conftest import paris, utc_naive

# --- iCalendar feed -------------------------------------------------------------------------------


def _events(response) -> list:
    return list(Calendar.from_ical(response.data).walk("VEVENT"))


def test_feed_lists_blocking_bookings_without_personal_data(client, room_id, add_booking, make_user):
    approved = add_booking(room_id, paris(5, "10:00"), paris(5, "12:00"), status="approved",
                           purpose="Assemblée générale\nordre du jour...", requester_name="Camille Martin",
                           requester_email="camille@example.org")
    pending = add_booking(room_id, paris(6, "14:00"), paris(6, "15:30"), status="pending", purpose="Secret project")
    add_booking(room_id, paris(7, "10:00"), paris(7, "11:00"), status="refused")
    add_booking(room_id, paris(8, "10:00"), paris(8, "11:00"), status="cancelled")

    response = client.get(f"/rooms/{room_id}.ics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    events = _events(response)
    assert len(events) == 2
    by_uid = {str(event["UID"]): event for event in events}
    first, second = by_uid[f"booking-{approved}@127.0.0.1"], by_uid[f"booking-{pending}@127.0.0.1"]
    assert str(first["SUMMARY"]) == "Assemblée générale"
    assert str(first["STATUS"]) == "CONFIRMED"
    assert first.decoded("DTSTART") == paris(5, "10:00").astimezone(UTC)
    assert first.decoded("DTSTART").tzinfo is not None and first.decoded("DTSTART").utcoffset().total_seconds() == 0
    assert first.decoded("DTEND") == paris(5, "12:00").astimezone(UTC)
    assert str(second["SUMMARY"]).startswith("Réservé") and str(second["STATUS"]) == "TENTATIVE"
    raw = response.data.decode()
    assert "DTSTART:" in raw and "Z\r\n" in raw
    for private in ("Camille", "camille@example.org", "Secret project"):
        assert private not in raw


def test_feed_uids_are_stable_and_follow_approval(client, room_id, add_booking, make_user):
    _, staff = make_user("office_manager")
    booking = add_booking(room_id, paris(5, "10:00"), paris(5, "12:00"), purpose="Atelier vélo")
    before = client.get(f"/rooms/{room_id}.ics")
    again = client.get(f"/rooms/{room_id}.ics", headers={"If-None-Match": before.headers["ETag"]})
    assert again.status_code == 304
    client.post(f"/api/v1/bookings/{booking}/approve", headers=staff)
    after = client.get(f"/rooms/{room_id}.ics", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200  # the booking write changed the validator
    [old], [new] = _events(before), _events(after)
    assert str(old["UID"]) == str(new["UID"])
    assert str(new["SUMMARY"]) == "Atelier vélo" and str(new["STATUS"]) == "CONFIRMED"


def test_feed_of_unknown_room_is_404(client):
    assert client.get("/rooms/999.ics").status_code == 404


# --- guest requests -------------------------------------------------------------------------------


def _guest(room_id, day=5, start="14:00", end="16:00", **overrides):
    from node.spaces.services import request_booking_as_guest

    values = dict(name="Nadia Kaci", email="nadia@collectif.example", organisation_name="Collectif Voisins",
                  category="ngo", purpose="Réunion de quartier")
    values.update(overrides)
    return request_booking_as_guest(room_id, utc_naive(paris(day, start)), utc_naive(paris(day, end)), **values)


def test_guest_request_is_pending_and_acknowledged_by_email(make_app, smtp_server, make_room):
    from sqlalchemy import select

    from node.extensions import db
    from node.mail.models import OutgoingEmail
    from node.mail.services import send_pending
    from node.spaces.models import Booking, Room, Site

    app = make_app(HALLES_SMTP_URL=smtp_server.url)
    with app.app_context():
        site = Site(name="Les Halles Civiques", address="12 rue de Belleville", city="Paris")
        db.session.add(site)
        db.session.flush()
        room = Room(site_id=site.id, name="Salle Louise Michel", capacity=20, tariffs={"ngo": 1500}, booking_seq=0)
        db.session.add(room)
        db.session.commit()
        booking = _guest(room.id)
        db.session.commit()
        assert (booking.status, booking.organisation_id, booking.created_by_id) == ("pending", None, None)
        assert booking.price_cents == 3000 and booking.requester_organisation == "Collectif Voisins"
        queued = db.session.scalars(select(OutgoingEmail)).all()
        assert [m.to_address for m in queued] == ["nadia@collectif.example"]

        assert send_pending() == (1, 0)
        assert db.session.get(Booking, booking.id).status == "pending"
    [message] = smtp_server.wait_for(1)
    assert message["To"] == "nadia@collectif.example"
    assert "Salle Louise Michel" in message["Subject"]
    text = message.get_content()
    assert "Nadia Kaci" in text and "14:00 to 16:00 (Europe/Paris)" in text and "30.00 EUR" in text


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"category": "member"}, "member organisations"),
        ({"category": "resident_member"}, "member organisations"),
        ({"category": "friends"}, "unknown category"),
        ({"name": "  "}, "name"),
        ({"email": "nadia"}, "email"),
        ({"day": -2}, "past"),
        ({"start": "16:00", "end": "14:00"}, "after"),
    ],
)
def test_guest_request_bad_input(app_ctx, room_id, overrides, fragment):
    from sqlalchemy import func, select

    from node.common.errors import InvalidInput
    from node.extensions import db
    from node.mail.models import OutgoingEmail
    from node.spaces.models import Booking

    with pytest.raises(InvalidInput, match=fragment):
        _guest(room_id, **overrides)
    # Same session: nothing was even flushed before the refusal.
    assert db.session.scalar(select(func.count(Booking.id))) == 0
    assert db.session.scalar(select(func.count(OutgoingEmail.id))) == 0


def test_guest_request_conflicts_and_unknown_room(app_ctx, room_id, add_booking):
    from node.common.errors import Conflict, NotFound

    add_booking(room_id, paris(5, "15:00"), paris(5, "17:00"), status="approved")
    with pytest.raises(Conflict, match="15:00 to 17:00"):
        _guest(room_id)
    with pytest.raises(NotFound):
        _guest(99999)


# --- OpenAPI --------------------------------------------------------------------------------------


@pytest.fixture
def spaces_spec(client, monkeypatch):
    """The document built from the spaces declarations alone, so another domain's work in progress
    cannot hide a mistake here (and apispec warnings fail the test: filterwarnings=error)."""
    import node

    monkeypatch.setattr(node, "DOMAINS", ("spaces",))
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_spaces_api_route_is_documented(app, spaces_spec):
    documented = {
        (path, method.upper())
        for path, operations in spaces_spec["paths"].items()
        for method in operations
    }
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("spaces_api."):
            continue
        path = rule.rule.replace("<int:", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)


def test_error_responses_use_the_problem_schema_and_refs_resolve(spaces_spec):
    schemas = spaces_spec["components"]["schemas"]
    refs = []

    def collect(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    refs.append(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(spaces_spec)
    assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)
    for path, operations in spaces_spec["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"]
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (path, method, status)
    booking_input = schemas["BookingInput"]
    assert set(booking_input["required"]) == {"room_id", "starts_at", "ends_at", "category"}
    assert booking_input["properties"]["starts_at"]["format"] == "date-time"
    availability = spaces_spec["paths"]["/api/v1/rooms/{room_id}/availability"]["get"]
    assert {p["name"] for p in availability["parameters"]} == {"room_id", "from", "to"}
