"""Signing in and out, reserved pages, password reset by email, invitations."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.web.seed import PASSWORD


def outbox(app, to: str) -> list[str]:
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    with app.app_context():
        return [m.body_text for m in db.session.scalars(
            select(OutgoingEmail).where(OutgoingEmail.to_address == to).order_by(OutgoingEmail.id))]


def test_sign_in_and_out(client, seeded):
    response = client.post("/login", data={"email": seeded.manager_email, "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/manage"
    assert client.get("/manage").status_code == 200
    assert client.post("/logout").status_code == 302
    assert client.get("/manage").status_code == 302


def test_staff_land_on_the_dashboard(client, seeded):
    response = client.post("/login", data={"email": seeded.office_email, "password": PASSWORD})
    assert response.headers["Location"] == "/office"


def test_wrong_password_is_refused_with_the_same_message(client, seeded):
    wrong = client.post("/login", data={"email": seeded.manager_email, "password": "not the password"})
    unknown = client.post("/login", data={"email": "nobody@example.org", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert client.get("/manage").status_code == 302


def test_deactivated_account_cannot_sign_in(app, client, seeded):
    from node.extensions import db
    from node.members import services as members

    with app.app_context():
        members.deactivate_user(None, members.find_user_by_email(seeded.member_email))
        db.session.commit()
    assert client.post("/login", data={"email": seeded.member_email, "password": PASSWORD}).status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_no_open_redirect_after_sign_in(client, seeded, target):
    response = client.post("/login", data={"email": seeded.manager_email, "password": PASSWORD, "next": target})
    assert response.headers["Location"] == "/manage"


def test_next_goes_back_to_the_page_asked(client, seeded):
    response = client.get("/manage/events")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    signed = client.post("/login", data={"email": seeded.manager_email, "password": PASSWORD,
                                         "next": "/manage/events"})
    assert signed.headers["Location"] == "/manage/events"


def test_role_pages(client, seeded, login):
    for page in ("/office", "/admin/users", "/admin/peers", "/admin/settings", "/manage"):
        assert client.get(page).status_code == 302  # visitors are sent to sign in
    login(client, seeded.manager_email)
    for page in ("/office", "/office/organisations", "/admin/users", "/admin/peers", "/admin/charter",
                 "/admin/settings"):
        assert client.get(page).status_code == 403, page
    other_org = seeded.org_ids["Fabrique des Communs"]
    assert client.get(f"/manage/organisations/{other_org}").status_code == 403
    assert client.get(f"/manage/events/{seeded.events['screening']}/registrations").status_code == 403


def test_office_manager_is_not_admin(client, seeded, login):
    login(client, seeded.office_email)
    assert client.get("/office").status_code == 200
    assert client.get("/admin/users").status_code == 200
    for page in ("/admin/peers", "/admin/charter", "/admin/settings"):
        assert client.get(page).status_code == 403


def test_password_reset_by_email(app, client, seeded):
    page = client.post("/password-reset", data={"email": seeded.manager_email})
    assert page.status_code == 200
    same = client.post("/password-reset", data={"email": "nobody@example.org"})
    assert same.status_code == 200  # the same answer: the form does not tell who has an account
    link = re.search(r"http://127\.0\.0\.1:5000(/password-reset/\S+)", outbox(app, seeded.manager_email)[-1]).group(1)
    assert client.get(link).status_code == 200
    mismatch = client.post(link, data={"password": "a new long password", "confirm": "another one here"})
    assert mismatch.status_code == 422
    done = client.post(link, data={"password": "a new long password", "confirm": "a new long password"})
    assert done.status_code == 302  # signed in
    assert client.get("/manage").status_code == 200
    assert client.get(link).status_code == 410  # used
    client.post("/logout")
    assert client.post("/login", data={"email": seeded.manager_email, "password": PASSWORD}).status_code == 401
    ok = client.post("/login", data={"email": seeded.manager_email, "password": "a new long password"})
    assert ok.status_code == 302


def test_bad_reset_link(client):
    assert client.get("/password-reset/not-a-real-token").status_code == 404


def test_invitation_accepted_from_the_email_link(app, client, seeded, login):
    login(client, seeded.office_email)
    org = seeded.org_ids["Collectif Nouvelles Voix"]
    response = client.post("/admin/users", data={"invite-email": "nouveau@example.org", "invite-role": "org_manager",
                                                 "invite-organisation_id": str(org)})
    assert response.status_code == 302
    client.post("/logout")
    link = re.search(r"http://127\.0\.0\.1:5000(/invitations/\S+)", outbox(app, "nouveau@example.org")[-1]).group(1)
    visitor = app.test_client()
    page = visitor.get(link)
    assert page.status_code == 200 and "nouveau@example.org" in page.get_data(as_text=True)
    short = visitor.post(link, data={"name": "Nour", "password": "short", "confirm": "short"})
    assert short.status_code == 422
    done = visitor.post(link, data={"name": "Nour", "password": "une phrase assez longue",
                                    "confirm": "une phrase assez longue"})
    assert done.status_code == 302 and done.headers["Location"] == "/manage"
    assert visitor.get(f"/manage/organisations/{org}").status_code == 200
    assert visitor.get(link).status_code == 410


def test_session_language_survives_sign_in(client, seeded):
    client.get("/?lang=en")
    client.post("/login", data={"email": seeded.manager_email, "password": PASSWORD})
    with client.session_transaction() as session:
        assert session["lang"] == "en"


def test_sign_in_prompt_is_translated(client):
    response = client.get("/manage", follow_redirects=True)
    assert "Connectez-vous pour voir cette page." in response.get_data(as_text=True)
    assert "Please sign in to see this page." in client.get("/manage?lang=en", follow_redirects=True).get_data(
        as_text=True)
