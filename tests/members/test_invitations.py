"""Invitations and password resets end to end: the email goes through a real SMTP server, the test
reads the link in it and follows it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from node.members.models import Invitation, PasswordReset, User
from tests.organisations.support import make_cast, row_counts


@pytest.fixture
def app(make_app, smtp_server):
    return make_app(HALLES_SMTP_URL=smtp_server.url)


@pytest.fixture
def cast(make_org, make_user):
    return make_cast(make_org, make_user)


def _deliver(app, smtp_server, count: int):
    from node.mail.services import send_pending

    with app.app_context():
        sent, failed = send_pending()
    assert failed == 0
    return smtp_server.wait_for(count)


def _link(message, path: str) -> str:
    text = message.get_content()
    match = re.search(rf"http://127\.0\.0\.1:5000/{path}/([A-Za-z0-9_\-]+)", text)
    assert match, text
    return match.group(1)


def test_invitation_end_to_end(app, client, cast, smtp_server):
    response = client.post(
        "/api/v1/invitations",
        json={"email": "Nour@Example.org", "role": "org_manager", "organisation_id": cast.org_b},
        headers=cast.h("office_manager"),
    )
    assert response.status_code == 201
    invitation = response.get_json()
    assert invitation["email"] == "nour@example.org"
    assert "token" not in invitation  # the secret travels only by email
    messages = _deliver(app, smtp_server, 1)
    assert len(messages) == 1
    message = messages[0]
    assert message["To"] == "nour@example.org"
    assert "Les Halles Civiques" in message["Subject"]
    assert "Voix des Habitants" in message.get_content()
    token = _link(message, "invitations")
    with app.app_context():
        from node.extensions import db

        stored = db.session.get(Invitation, invitation["id"])
        assert stored.token_hash != token and len(stored.token_hash) == 64
        assert stored.expires_at - stored.created_at == timedelta(days=14)

    pending = client.get("/api/v1/invitations", headers=cast.h("office_manager")).get_json()["items"]
    assert [i["email"] for i in pending] == ["nour@example.org"]

    before = row_counts(app)
    for body, status in (
        ({"name": "Nour", "password": "court"}, 422),
        ({"name": "", "password": "assez long mot de passe"}, 422),
        ({"password": "assez long mot de passe"}, 422),
        ({"name": "Nour", "password": 1234567890123}, 422),
    ):
        assert client.post(f"/api/v1/invitations/{token}/accept", json=body).status_code == status
    assert client.post(f"/api/v1/invitations/{token}/accept", data="x").status_code == 415
    assert row_counts(app) == before

    accepted = client.post(
        f"/api/v1/invitations/{token}/accept", json={"name": "Nour Benali", "password": "assez long mot de passe"}
    )
    assert accepted.status_code == 201, accepted.get_json()
    user = accepted.get_json()
    assert user["role"] == "org_manager" and user["organisation_id"] == cast.org_b and user["active"]
    assert "password" not in user and "password_hash" not in user
    with app.app_context():
        from node.members.services import authenticate

        assert authenticate("nour@example.org", "assez long mot de passe").id == user["id"]

    again = client.post(f"/api/v1/invitations/{token}/accept",
                        json={"name": "Nour", "password": "assez long mot de passe"})
    assert again.status_code == 410 and "already used" in again.get_json()["detail"]
    assert client.get("/api/v1/invitations", headers=cast.h("office_manager")).get_json()["items"] == []


def test_unknown_and_expired_invitations(app, client, cast, smtp_server):
    body = {"name": "Nour", "password": "assez long mot de passe"}
    assert client.post("/api/v1/invitations/not-a-token/accept", json=body).status_code == 404
    assert client.post(f"/api/v1/invitations/{'x' * 300}/accept", json=body).status_code == 404
    client.post("/api/v1/invitations", json={"email": "late@example.org", "role": "member"},
                headers=cast.h("admin"))
    token = _link(_deliver(app, smtp_server, 1)[0], "invitations")
    with app.app_context():
        from node.extensions import db

        invitation = db.session.scalar(db.select(Invitation))
        invitation.expires_at = invitation.created_at - timedelta(seconds=1)
        db.session.commit()
    before = row_counts(app)
    response = client.post(f"/api/v1/invitations/{token}/accept", json=body)
    assert response.status_code == 410 and "expired" in response.get_json()["detail"]
    assert row_counts(app) == before


def test_inviting_an_active_account_is_a_conflict_and_bad_invitations_change_nothing(app, client, cast):
    before = row_counts(app)
    for body, status in (
        ({"email": "member@example.org", "role": "member"}, 409),
        ({"email": "x@example.org", "role": "org_manager"}, 422),
        ({"email": "x@example.org", "role": "member", "organisation_id": 999}, 422),
        ({"email": "x@example.org", "role": "chief"}, 422),
        ({"email": "x", "role": "member"}, 422),
        ({"role": "member"}, 422),
    ):
        response = client.post("/api/v1/invitations", json=body, headers=cast.h("admin"))
        assert response.status_code == status, (body, response.get_json())
    assert client.post("/api/v1/invitations", data="{", content_type="application/json",
                       headers=cast.h("admin")).status_code == 400
    assert row_counts(app) == before


def test_invitation_reactivates_a_deactivated_account(app, client, cast, smtp_server):
    member_id = cast.ids["member"]
    assert client.post(f"/api/v1/users/{member_id}/deactivate", headers=cast.h("admin")).status_code == 200
    response = client.post(
        "/api/v1/invitations", json={"email": "member@example.org", "role": "member", "organisation_id": cast.org_b},
        headers=cast.h("office_manager"),
    )
    assert response.status_code == 201
    token = _link(_deliver(app, smtp_server, 1)[0], "invitations")
    accepted = client.post(f"/api/v1/invitations/{token}/accept",
                           json={"name": "Retour", "password": "de retour parmi vous"})
    assert accepted.status_code == 201
    user = accepted.get_json()
    assert user["id"] == member_id and user["active"] and user["deactivated_at"] is None
    assert user["organisation_id"] == cast.org_b
    # The old token stays revoked: coming back means new credentials.
    assert client.get("/api/v1/users/me", headers=cast.h("member")).status_code == 401


def test_password_reset_flow(app, client, cast, smtp_server):
    from node.extensions import db
    from node.members import services

    with app.app_context():
        services.set_password(db.session.get(User, cast.ids["member"]), "ancien mot de passe")
        db.session.commit()

    before = row_counts(app)
    unknown = client.post("/api/v1/password-resets", json={"email": "nobody@example.org"})
    assert unknown.status_code == 202
    assert row_counts(app) == before  # silent: nothing queued, nothing stored
    assert client.post("/api/v1/password-resets", json={"email": "nope"}).status_code == 422
    assert client.post("/api/v1/password-resets", data="x").status_code == 415

    known = client.post("/api/v1/password-resets", json={"email": "Member@example.org"})
    assert known.status_code == 202 and known.get_json() == unknown.get_json()
    message = _deliver(app, smtp_server, 1)[0]
    assert message["To"] == "member@example.org"
    token = _link(message, "password-reset")
    with app.app_context():
        assert db.session.scalar(db.select(PasswordReset)).token_hash != token

    before = row_counts(app)
    refused = client.post(f"/api/v1/password-resets/{token}", json={"password": "court"})
    assert refused.status_code == 422
    assert client.post("/api/v1/password-resets/wrong", json={"password": "nouveau mot de passe"}).status_code == 404
    assert row_counts(app) == before

    done = client.post(f"/api/v1/password-resets/{token}", json={"password": "nouveau mot de passe"})
    assert done.status_code == 200
    with app.app_context():
        assert services.authenticate("member@example.org", "nouveau mot de passe") is not None
        assert services.authenticate("member@example.org", "ancien mot de passe") is None
    reused = client.post(f"/api/v1/password-resets/{token}", json={"password": "encore un autre mot"})
    assert reused.status_code == 410


def test_password_reset_links_expire_and_are_rate_limited(app, client, cast, smtp_server):
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    for _ in range(5):
        assert client.post("/api/v1/password-resets", json={"email": "member@example.org"}).status_code == 202
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(OutgoingEmail.id))) == 3
    messages = _deliver(app, smtp_server, 3)
    token = _link(messages[0], "password-reset")
    with app.app_context():
        for reset in db.session.scalars(db.select(PasswordReset)):
            reset.expires_at = reset.created_at - timedelta(seconds=1)
        db.session.commit()
    expired = client.post(f"/api/v1/password-resets/{token}", json={"password": "nouveau mot de passe"})
    assert expired.status_code == 410 and "expired" in expired.get_json()["detail"]


def test_deactivation_voids_pending_reset_links(app, client, cast, smtp_server):
    client.post("/api/v1/password-resets", json={"email": "member@example.org"})
    token = _link(_deliver(app, smtp_server, 1)[0], "password-reset")
    client.post(f"/api/v1/users/{cast.ids['member']}/deactivate", headers=cast.h("admin"))
    response = client.post(f"/api/v1/password-resets/{token}", json={"password": "nouveau mot de passe"})
    assert response.status_code == 410


def test_a_very_long_place_name_does_not_break_emails(make_app, smtp_server):
    from node.extensions import db
    from node.members import services
    from node.members.models import User

    app = make_app(HALLES_NAME="Tiers-lieu " + "très " * 60, HALLES_SMTP_URL=smtp_server.url)
    with app.app_context():
        admin = User(email="root@example.org", role="admin")
        db.session.add(admin)
        db.session.flush()
        services.invite(admin, "long@example.org", "member", None)
        services.request_password_reset("root@example.org")
        db.session.commit()
    messages = _deliver(app, smtp_server, 2)
    assert len(messages) == 2
