"""Every form of the web interface needs its CSRF token: a POST without it is refused (400) and changes
nothing; the same POST with the token from the page goes through."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from tests.web.seed import PASSWORD, seed

SAMPLE_ARGS = {
    "event_uuid": "00000000-0000-0000-0000-000000000000",
    "room_id": 1,
    "org_id": 1,
    "booking_id": 1,
    "decision": "approve",
    "actor_id": 1,
    "user_id": 1,
    "token": "some-token",
}


@pytest.fixture
def csrf_app(make_app):
    app = make_app(WTF_CSRF_ENABLED=True)
    return app, seed(app)


def token_of(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'id="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client, email: str) -> None:
    token = token_of(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302


def snapshot(app) -> dict[str, int]:
    from node.charters.models import CharterSignature, CharterVersion
    from node.events.models import Event, Registration
    from node.extensions import db
    from node.mail.models import OutgoingEmail
    from node.members.models import Invitation, User
    from node.organisations.models import Organisation
    from node.spaces.models import Booking

    with app.app_context():
        counts = {model.__name__: db.session.scalar(select(func.count()).select_from(model)) for model in (
            Registration, Booking, Event, User, Invitation, Organisation, CharterSignature, CharterVersion,
            OutgoingEmail)}
        counts["approved"] = db.session.scalar(select(func.count(Booking.id)).where(Booking.status == "approved"))
        return counts


def web_post_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("web.") and "POST" in (rule.methods or ()):
            yield rule


def test_every_web_form_refuses_a_post_without_token(csrf_app):
    app, data = csrf_app
    client = app.test_client()
    sign_in(client, data.admin_email)
    before = snapshot(app)
    rules = list(web_post_rules(app))
    assert len(rules) >= 20
    for rule in rules:
        url = rule.build({key: SAMPLE_ARGS[key] for key in rule.arguments}, append_unknown=False)[1]
        response = client.post(url, data={"name": "X", "email": "x@example.org", "title": "T", "role": "member"})
        assert response.status_code == 400, (url, response.status_code)
        assert "CSRF" in response.get_data(as_text=True), url
    assert snapshot(app) == before


def test_the_token_from_the_page_is_accepted(csrf_app):
    app, data = csrf_app
    client = app.test_client()
    page = client.get(f"/events/{data.events['debate']}").get_data(as_text=True)
    before = snapshot(app)["Registration"]
    response = client.post(f"/events/{data.events['debate']}/register",
                           data={"name": "Zoé", "email": "zoe@example.org", "csrf_token": token_of(page)})
    assert response.status_code == 302
    assert snapshot(app)["Registration"] == before + 1


def test_one_click_approval_needs_the_token(csrf_app):
    app, data = csrf_app
    client = app.test_client()
    sign_in(client, data.office_email)
    booking = data.booking_ids[0]
    approved = snapshot(app)["approved"]
    refused = client.post(f"/office/bookings/{booking}/approve")
    assert refused.status_code == 400 and snapshot(app)["approved"] == approved
    token = token_of(client.get("/office").get_data(as_text=True))
    done = client.post(f"/office/bookings/{booking}/approve", data={"csrf_token": token})
    assert done.status_code == 302 and snapshot(app)["approved"] == approved + 1


def test_a_token_from_another_session_is_refused(csrf_app):
    app, data = csrf_app
    attacker = app.test_client()
    stolen = token_of(attacker.get("/login").get_data(as_text=True))
    victim = app.test_client()
    sign_in(victim, data.office_email)
    approved = snapshot(app)["approved"]
    response = victim.post(f"/office/bookings/{data.booking_ids[0]}/approve", data={"csrf_token": stolen})
    assert response.status_code == 400 and snapshot(app)["approved"] == approved


def test_confirmation_pages_carry_the_token_and_need_it(csrf_app):
    """Cancelling a booking and deleting an event: the confirmation page's form posts its token; the
    same POST without it is refused and changes nothing."""
    app, data = csrf_app
    client = app.test_client()
    sign_in(client, data.office_email)
    booking = data.booking_ids[0]
    approve = token_of(client.get("/office").get_data(as_text=True))
    assert client.post(f"/office/bookings/{booking}/approve", data={"csrf_token": approve}).status_code == 302
    before = snapshot(app)
    assert client.post(f"/manage/bookings/{booking}/cancel").status_code == 400
    assert client.post(f"/manage/events/{data.events['debate']}/delete").status_code == 400
    assert client.post(f"/manage/events/{data.events['debate']}/cancel").status_code == 400
    assert snapshot(app) == before

    page = client.get(f"/manage/bookings/{booking}/cancel").get_data(as_text=True)
    done = client.post(f"/manage/bookings/{booking}/cancel", data={"csrf_token": token_of(page)})
    assert done.status_code == 302 and snapshot(app)["approved"] == before["approved"] - 1
    page = client.get(f"/manage/events/{data.events['debate']}/delete").get_data(as_text=True)
    done = client.post(f"/manage/events/{data.events['debate']}/delete", data={"csrf_token": token_of(page)})
    assert done.status_code == 302 and snapshot(app)["Event"] == before["Event"] - 1
