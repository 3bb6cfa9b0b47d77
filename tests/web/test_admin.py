"""Administration pages: peering requests (attestation, diff, approve/refuse/block), charter versions,
people and roles, the settings view."""

from __future__ import annotations

import re

from sqlalchemy import select

from tests.web.remote import add_remote


def _pending_request(app, name="Le Comptoir des Quartiers", domain="marseille.test"):
    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor

    with app.app_context():
        actor = RemoteActor(ap_id=f"http://{domain}/actor", domain=domain, name=name, city="Marseille",
                            inbox=f"http://{domain}/inbox", is_halles_node=True, document={})
        db.session.add(actor)
        db.session.flush()
        db.session.add(Follow(actor_id=actor.id, direction="incoming", state="pending",
                              activity_id=f"http://{domain}/follows/1",
                              attestation={"url": "http://127.0.0.1:5000/charter.txt", "version": "1.0",
                                           "sha256": "b" * 64}))
        db.session.commit()
        return actor.id


def _follow_state(app, actor_id):
    from node.extensions import db
    from node.fedi.models import Follow

    with app.app_context():
        return db.session.scalar(select(Follow.state).where(Follow.actor_id == actor_id,
                                                            Follow.direction == "incoming"))


def test_peer_request_is_shown_with_its_attestation_and_approved(app, client, seeded, login):
    from node.extensions import db
    from node.fedi.models import Delivery

    actor_id = _pending_request(app)
    login(client, seeded.admin_email)
    body = client.get("/admin/peers").get_data(as_text=True)
    assert "Le Comptoir des Quartiers" in body and "b" * 64 in body
    detail = client.get(f"/admin/peers/{actor_id}").get_data(as_text=True)
    assert "no reference to the requester" in detail  # the diff explains why there is none
    assert client.post(f"/admin/peers/{actor_id}/approve").status_code == 302
    assert _follow_state(app, actor_id) == "accepted"
    with app.app_context():
        assert db.session.scalar(select(Delivery.inbox_url).where(Delivery.domain == "marseille.test")) == \
            "http://marseille.test/inbox"  # the Accept is on its way


def test_refuse_and_block(app, client, seeded, login):
    from node.extensions import db
    from node.fedi.models import RemoteServer

    first = _pending_request(app)
    second = _pending_request(app, name="Spam Hall", domain="spam.test")
    login(client, seeded.admin_email)
    assert client.post(f"/admin/peers/{first}/refuse").status_code == 302
    assert _follow_state(app, first) == "rejected"
    assert client.post(f"/admin/peers/{second}/block").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(RemoteServer.blocked).where(RemoteServer.domain == "spam.test")) is True
    assert client.post("/admin/peers", data={"form": "block", "block-domain": "other.test"}).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(RemoteServer.blocked).where(RemoteServer.domain == "other.test")) is True


def test_only_admins_decide_peering(app, client, seeded, login):
    actor_id = _pending_request(app)
    login(client, seeded.office_email)
    assert client.post(f"/admin/peers/{actor_id}/approve").status_code == 403
    assert _follow_state(app, actor_id) == "pending"


def test_publish_a_charter_version(app, client, seeded, login):
    from node.charters.services import current_version
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    login(client, seeded.admin_email)
    page = client.get("/admin/charter").get_data(as_text=True)
    assert "1.0" in page
    with app.app_context():
        mails = db.session.query(OutgoingEmail).count()
    body = "# Charte de {{ place_name }}\n\nNouveau texte à {{ city }}.\n"
    response = client.post("/admin/charter", data={"version": "1.1", "title": "Charte 1.1", "body": body})
    assert response.status_code == 302
    with app.app_context():
        current = current_version()
        assert current.version == "1.1" and "Charte de Les Halles Civiques" in current.body
        assert db.session.query(OutgoingEmail).count() > mails  # organisations are asked to sign again
    unknown = client.post("/admin/charter", data={"version": "1.2", "title": "T", "body": "{{ mayor }}"})
    assert unknown.status_code == 422 and "mayor" in unknown.get_data(as_text=True)
    with app.app_context():
        assert current_version().version == "1.1"


def test_users_and_roles(app, client, seeded, login):
    from node.members.services import find_user_by_email

    login(client, seeded.admin_email)
    with app.app_context():
        member_id = find_user_by_email(seeded.member_email).id
    org = seeded.org_ids["Fabrique des Communs"]
    page = client.get("/admin/users").get_data(as_text=True)
    assert seeded.member_email in page and "nouvelle@halles.test" in page
    promoted = client.post(f"/admin/users/{member_id}", data={"role": "org_manager", "organisation_id": str(org)})
    assert promoted.status_code == 302
    with app.app_context():
        assert find_user_by_email(seeded.member_email).role == "org_manager"
    invalid = client.post(f"/admin/users/{member_id}", data={"role": "org_manager", "organisation_id": ""})
    assert invalid.status_code == 302  # the reason is flashed on the page
    with app.app_context():
        assert find_user_by_email(seeded.member_email).organisation_id == org
    assert client.post(f"/admin/users/{member_id}/deactivate").status_code == 302
    with app.app_context():
        assert find_user_by_email(seeded.member_email).active is False


def test_office_manager_cannot_make_admins(app, client, seeded, login):
    from node.members.services import find_user_by_email

    login(client, seeded.office_email)
    page = client.get("/admin/users").get_data(as_text=True)
    assert 'value="admin"' not in page
    with app.app_context():
        member_id = find_user_by_email(seeded.member_email).id
    client.post(f"/admin/users/{member_id}", data={"role": "admin", "organisation_id": ""})
    with app.app_context():
        assert find_user_by_email(seeded.member_email).role == "member"
    refused = client.post("/admin/users", data={"invite-email": "boss@example.org", "invite-role": "admin",
                                                "invite-organisation_id": ""})
    assert refused.status_code == 422


def test_settings_show_where_to_change_them_and_hide_secrets(make_app, login):
    app = make_app(SECRET_KEY="super-secret-value", HALLES_SMTP_URL="smtp://mailer:hunter2@mail.example:587")
    from tests.web.seed import seed

    data = seed(app)
    client = app.test_client()
    login(client, data.admin_email)
    body = client.get("/admin/settings").get_data(as_text=True)
    assert "HALLES_SECRET_KEY" in body and "DATABASE_URL" in body and "HALLES_TILE_URL" in body
    assert "super-secret-value" not in body and "hunter2" not in body
    assert "smtp://mailer:***@mail.example:587" in body


def test_irreversible_admin_buttons_ask_first_without_javascript(app, client, seeded, login):
    """Blocking a node, ending a peering and deactivating an account: the first button only opens a
    question (a <details> disclosure); the form with the real button is inside it."""
    add_remote(app)  # Lyon, a peer both ways
    _pending_request(app, name="Le Quai des Possibles", domain="nantes.test")
    login(client, seeded.admin_email)
    peers = client.get("/admin/peers").get_data(as_text=True)
    for decision in ("block", "remove"):
        form = re.search(rf'<details class="confirm-inline">\s*<summary[^>]*>[^<]*….*?</summary>.*?'
                         rf'action="/admin/peers/\d+/{decision}".*?</details>', peers, re.S)
        assert form, decision
    assert "data-confirm" not in peers.split('id="block-title"')[0]  # no script-only confirmation left
    users = client.get("/admin/users").get_data(as_text=True)
    assert re.search(r'<details class="confirm-inline">.*?Oui, désactiver.*?</details>', users, re.S)
