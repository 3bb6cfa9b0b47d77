"""Booking requests from people without an account (the API and the room page's form) are limited per
client address by HALLES_RATE_LIMIT_BOOKING_REQUESTS: past the budget, 429 with Retry-After and a
sentence saying when to try again, and nothing is stored or emailed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from node.config import ConfigError, load, validate
from tests.spaces.conftest import paris

LIMIT = "2/1h"


@pytest.fixture
def app(make_app):
    return make_app(HALLES_RATE_LIMIT_BOOKING_REQUESTS=LIMIT)


def request_body(day: int, **overrides) -> dict:
    body = {
        "starts_at": paris(day, "14:00").isoformat(),
        "ends_at": paris(day, "16:00").isoformat(),
        "name": "Nadia Kaci",
        "email": "nadia@collectif.example",
        "organisation_name": "Collectif Voisins",
        "category": "ngo",
        "purpose": "Réunion de quartier",
    }
    body.update(overrides)
    return body


def form_data(day: int) -> dict:
    start = paris(day, "10:00")
    return {"name": "Nadia Kaci", "email": "nadia@collectif.example", "organisation_name": "Collectif Voisins",
            "category": "ngo", "day": start.date().isoformat(), "start": "10:00", "end": "12:00",
            "purpose": "Réunion de quartier"}


def stored(app) -> tuple[int, int]:
    from node.extensions import db
    from node.mail.models import OutgoingEmail
    from node.spaces.models import Booking

    with app.app_context():
        counts = (db.session.scalar(select(func.count(Booking.id))),
                  db.session.scalar(select(func.count(OutgoingEmail.id))))
        db.session.remove()
    return counts


def from_address(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_the_api_takes_a_request_and_answers_what_the_person_may_see(app, client, room_id):
    response = client.post(f"/api/v1/rooms/{room_id}/booking-requests", json=request_body(5))
    assert response.status_code == 201, response.get_json()
    data = response.get_json()
    assert data["status"] == "pending" and data["room_id"] == room_id and data["price_cents"] > 0
    assert "nadia@collectif.example" in data["detail"]
    assert stored(app) == (1, 1)


@pytest.mark.parametrize(("body", "status"), [
    ({"category": "member"}, 422),  # a member tariff needs an account
    ({"email": "nadia"}, 422),
    ({"ends_at": paris(5, "13:00").isoformat()}, 422),
])
def test_the_api_refuses_bad_requests_and_stores_nothing(app, client, room_id, body, status):
    response = client.post(f"/api/v1/rooms/{room_id}/booking-requests", json=request_body(5, **body))
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert stored(app) == (0, 0)


def test_the_api_answers_429_with_retry_after_past_the_budget(app, client, room_id):
    url = f"/api/v1/rooms/{room_id}/booking-requests"
    for day in (5, 6):
        assert client.post(url, json=request_body(day), **from_address("203.0.113.7")).status_code == 201
    refused = client.post(url, json=request_body(7), **from_address("203.0.113.7"))
    assert refused.status_code == 429
    assert refused.headers["Content-Type"] == "application/problem+json"
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 1800  # one request back every 30 minutes at 2 an hour
    detail = refused.get_json()["detail"]
    assert "too many booking requests from 203.0.113.7" in detail and f"try again in {retry_after} s" in detail
    assert stored(app) == (2, 2)
    # Another address has its own budget.
    assert client.post(url, json=request_body(8), **from_address("198.51.100.4")).status_code == 201


def test_failed_requests_count_too(app, client, room_id):
    url = f"/api/v1/rooms/{room_id}/booking-requests"
    for _ in range(2):
        assert client.post(url, json={"name": "x"}).status_code == 422
    assert client.post(url, json=request_body(5)).status_code == 429
    assert stored(app) == (0, 0)


def test_the_page_and_the_api_share_the_budget_and_the_page_says_when_to_retry(app, client, room_id):
    page = f"/rooms/{room_id}"
    first = client.post(page, data=form_data(5), **from_address("203.0.113.9"))
    assert first.status_code == 302  # request sent, back to the room page
    assert client.post(f"/api/v1/rooms/{room_id}/booking-requests", json=request_body(6),
                       **from_address("203.0.113.9")).status_code == 201
    refused = client.post(page, data=form_data(7), headers={"Accept": "text/html"}, **from_address("203.0.113.9"))
    assert refused.status_code == 429
    assert refused.mimetype == "text/html" and int(refused.headers["Retry-After"]) >= 1
    text = refused.get_data(as_text=True)
    # The room page again, with the form as the person filled it and when to try again, in French.
    assert "Trop de demandes de réservation" in text and "minutes" in text
    assert 'value="Nadia Kaci"' in text and "Réunion de quartier" in text
    assert stored(app) == (2, 2)
    # Reading the room page is never limited.
    assert client.get(page, **from_address("203.0.113.9")).status_code == 200


def test_off_turns_the_limit_off(make_app):
    from node.extensions import db
    from node.spaces.models import Room

    app = make_app(HALLES_RATE_LIMIT_BOOKING_REQUESTS="off")
    with app.app_context():
        from node.spaces.models import Site

        site = Site(name="Les Halles", address="12 rue de Belleville", city="Paris")
        db.session.add(site)
        db.session.flush()
        room = Room(site_id=site.id, name="Salle", capacity=10, tariffs={"ngo": 1000}, booking_seq=0)
        db.session.add(room)
        db.session.commit()
        room_id = room.id
    client = app.test_client()
    for day in range(5, 10):
        assert client.post(f"/api/v1/rooms/{room_id}/booking-requests", json=request_body(day)).status_code == 201


@pytest.mark.parametrize("raw", ["ten", "5/0m", "5 per hour"])
def test_a_bad_setting_is_named_at_start(raw):
    config = load(environ={"HALLES_RATE_LIMIT_BOOKING_REQUESTS": raw, "HALLES_SECRET_KEY": "x" * 40})
    with pytest.raises(ConfigError, match="HALLES_RATE_LIMIT_BOOKING_REQUESTS: .* COUNT/PERIOD"):
        validate(config)
