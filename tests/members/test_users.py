"""People API: who may create, change, invite and deactivate whom; deactivation keeps history."""

from __future__ import annotations

import pytest

from node.members.models import User
from tests.organisations.support import WHO, make_cast, row_counts, snapshot


@pytest.fixture
def cast(make_org, make_user):
    return make_cast(make_org, make_user)


@pytest.fixture
def target(make_user, cast):
    """Another member of organisation A, the subject of changes."""
    user_id, headers = make_user("member", cast.org_a, email="camille@example.org")
    return user_id, headers


def _matrix(**overrides):
    row = {"anonymous": 401, "member": 403, "manager_a": 403, "manager_b": 403}
    row.update(overrides)
    return row


MATRIX = {
    "create_member": _matrix(office_manager=201, admin=201),
    "create_org_manager": _matrix(office_manager=201, admin=201),
    "create_office_manager": _matrix(office_manager=403, admin=201),
    "create_admin": _matrix(office_manager=403, admin=201),
    "promote_to_org_manager": _matrix(office_manager=200, admin=200),
    "promote_to_admin": _matrix(office_manager=403, admin=200),
    "deactivate_member": _matrix(office_manager=200, admin=200),
    "deactivate_office_manager": _matrix(office_manager=200, admin=200),
    "invite_member": _matrix(office_manager=201, admin=201),
    "invite_org_manager": _matrix(office_manager=201, admin=201),
    "invite_office_manager": _matrix(office_manager=403, admin=201),
}
# The office manager may deactivate only org managers and members: here the target is itself, a
# staff account, so the rule refuses it.
MATRIX["deactivate_office_manager"]["office_manager"] = 403


def _call(client, cast, target_id, endpoint, who):
    headers = cast.h(who)
    if endpoint.startswith("create_"):
        role = endpoint.removeprefix("create_")
        body = {"email": f"new-{role}@example.org", "role": role, "name": "Nouvelle Personne"}
        if role == "org_manager":
            body["organisation_id"] = cast.org_a
        return client.post("/api/v1/users", json=body, headers=headers)
    if endpoint == "promote_to_org_manager":
        return client.patch(f"/api/v1/users/{target_id}", json={"role": "org_manager"}, headers=headers)
    if endpoint == "promote_to_admin":
        return client.patch(f"/api/v1/users/{target_id}", json={"role": "admin"}, headers=headers)
    if endpoint == "deactivate_member":
        return client.post(f"/api/v1/users/{target_id}/deactivate", headers=headers)
    if endpoint == "deactivate_office_manager":
        return client.post(f"/api/v1/users/{cast.ids['office_manager']}/deactivate", headers=headers)
    if endpoint.startswith("invite_"):
        role = endpoint.removeprefix("invite_")
        body = {"email": f"invited-{role}@example.org", "role": role, "organisation_id": cast.org_b}
        return client.post("/api/v1/invitations", json=body, headers=headers)
    raise AssertionError(endpoint)


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(app, client, cast, target, endpoint, who):
    before = row_counts(app)
    target_before = snapshot(app, User, target[0])
    response = _call(client, cast, target[0], endpoint, who)
    expected = MATRIX[endpoint][who]
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected >= 400:
        assert response.get_json()["detail"]
        assert row_counts(app) == before
        assert snapshot(app, User, target[0]) == target_before


@pytest.mark.parametrize("who,expected", [("anonymous", 401), ("member", 403), ("manager_a", 403),
                                          ("office_manager", 200), ("admin", 200)])
def test_only_staff_list_accounts(client, cast, who, expected):
    response = client.get("/api/v1/users", headers=cast.h(who))
    assert response.status_code == expected
    if expected == 200:
        emails = [u["email"] for u in response.get_json()["items"]]
        assert "manager-a@example.org" in emails
        managers = client.get(f"/api/v1/users?role=org_manager&organisation_id={cast.org_a}",
                              headers=cast.h(who)).get_json()["items"]
        assert [u["email"] for u in managers] == ["manager-a@example.org"]
        assert managers[0]["organisation_name"] == "Quartiers en Commun"


def test_list_pages_and_bad_filters(client, cast):
    page = client.get("/api/v1/users?limit=2", headers=cast.h("admin")).get_json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get(f"/api/v1/users?limit=10&cursor={page['next_cursor']}", headers=cast.h("admin")).get_json()
    assert len(rest["items"]) == 3 and rest["next_cursor"] is None
    for query in ("role=king", "active=maybe", "limit=0", "organisation_id=x", "cursor=abc"):
        assert client.get(f"/api/v1/users?{query}", headers=cast.h("admin")).status_code == 400


def test_people_see_and_rename_themselves_only(client, cast, target):
    user_id, headers = target
    assert client.get("/api/v1/users/me", headers=headers).get_json()["id"] == user_id
    assert client.get(f"/api/v1/users/{user_id}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/users/{cast.ids['admin']}", headers=headers).status_code == 403
    renamed = client.patch(f"/api/v1/users/{user_id}", json={"name": "Camille D."}, headers=headers)
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Camille D."
    assert client.patch(f"/api/v1/users/{user_id}", json={"role": "admin"}, headers=headers).status_code == 403
    other = client.patch(f"/api/v1/users/{cast.ids['member']}", json={"name": "X"}, headers=headers)
    assert other.status_code == 403


def test_org_manager_role_needs_an_organisation(app, client, cast, target):
    before = row_counts(app)
    response = client.post("/api/v1/users", json={"email": "x@example.org", "role": "org_manager"},
                           headers=cast.h("admin"))
    assert response.status_code == 422 and "organisation_id" in response.get_json()["detail"]
    response = client.patch(f"/api/v1/users/{target[0]}", json={"role": "org_manager", "organisation_id": None},
                            headers=cast.h("admin"))
    assert response.status_code == 422
    assert row_counts(app) == before
    moved = client.patch(f"/api/v1/users/{target[0]}", json={"role": "org_manager", "organisation_id": cast.org_b},
                         headers=cast.h("office_manager"))
    assert moved.status_code == 200 and moved.get_json()["organisation_id"] == cast.org_b


BAD_CREATE = [
    ({"email": "not-an-email", "role": "member"}, 422, "email"),
    ({"email": "a@example.org", "role": "king"}, 422, "role"),
    ({"email": "a@example.org"}, 422, "role"),
    ({"role": "member"}, 422, "email"),
    ({"email": "a@example.org", "role": "member", "organisation_id": "1"}, 422, "organisation_id"),
    ({"email": "a@example.org", "role": "member", "organisation_id": 999}, 422, "organisation"),
    ({"email": "a@example.org", "role": "member", "password": "1234567890"}, 422, "password"),
    ({"email": "MEMBER@example.org", "role": "member"}, 409, "already"),
]


@pytest.mark.parametrize("body,status,word", BAD_CREATE)
def test_bad_account_creation_changes_nothing(app, client, cast, body, status, word):
    before = row_counts(app)
    response = client.post("/api/v1/users", json=body, headers=cast.h("admin"))
    assert response.status_code == status, response.get_json()
    assert word in response.get_json()["detail"]
    assert row_counts(app) == before


def test_bad_patch_and_unknown_user(app, client, cast, target):
    before = row_counts(app)
    snapshot_before = snapshot(app, User, target[0])
    for body in ({"role": 3}, {"organisation_id": 999}, {"email": "x@example.org"}, {"name": "x" * 201}):
        response = client.patch(f"/api/v1/users/{target[0]}", json=body, headers=cast.h("admin"))
        assert response.status_code == 422, body
    assert client.patch("/api/v1/users/999", json={"name": "x"}, headers=cast.h("admin")).status_code == 404
    assert client.post("/api/v1/users/999/deactivate", headers=cast.h("admin")).status_code == 404
    assert client.patch(f"/api/v1/users/{target[0]}", data="x", headers=cast.h("admin")).status_code == 415
    assert row_counts(app) == before
    assert snapshot(app, User, target[0]) == snapshot_before


def test_deactivation_keeps_history_and_kills_tokens(app, client, cast, target):
    from node.charters.services import publish_charter, sign_charter
    from node.extensions import db
    from node.members import services
    from node.members.models import ApiToken

    user_id, headers = target
    with app.app_context():
        user = db.session.get(User, user_id)
        services.set_password(user, "correct horse battery")
        second_token = services.issue_token(user, "calendar")
        manager = db.session.get(User, cast.ids["manager_a"])
        charter, _ = publish_charter(None, "Charte de {{ place_name }}", "1.0", "Charte")
        sign_charter(manager, cast.org_a, charter.id, charter.sha256)
        db.session.commit()
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200

    response = client.post(f"/api/v1/users/{user_id}/deactivate", headers=cast.h("office_manager"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["active"] is False and body["deactivated_at"].endswith("Z")
    for token_headers in (headers, {"Authorization": f"Bearer {second_token}"}):
        refused = client.get("/api/v1/users/me", headers=token_headers)
        assert refused.status_code == 401
    with app.app_context():
        tokens = db.session.scalars(db.select(ApiToken).where(ApiToken.user_id == user_id)).all()
        assert len(tokens) == 2 and all(t.revoked_at is not None for t in tokens)
        assert services.authenticate("camille@example.org", "correct horse battery") is None
        assert db.session.get(User, user_id).email == "camille@example.org"
    # Deactivating again is harmless; the account stays listed for staff with its history.
    assert client.post(f"/api/v1/users/{user_id}/deactivate", headers=cast.h("admin")).status_code == 200
    listed = client.get("/api/v1/users?active=false", headers=cast.h("admin")).get_json()["items"]
    assert [u["id"] for u in listed] == [user_id]
    # A deactivated account cannot be changed (invite the person again instead).
    assert client.patch(f"/api/v1/users/{user_id}", json={"name": "X"}, headers=cast.h("admin")).status_code == 409
    # Deactivating the org manager keeps the signature they made.
    client.post(f"/api/v1/users/{cast.ids['manager_a']}/deactivate", headers=cast.h("admin"))
    overview = client.get("/api/v1/charter/signatures", headers=cast.h("admin")).get_json()
    assert overview["signatures"][0]["signed_by"]["email"] == "manager-a@example.org"


def test_the_last_admin_cannot_be_removed(client, cast, make_user):
    admin_id = cast.ids["admin"]
    refused = client.post(f"/api/v1/users/{admin_id}/deactivate", headers=cast.h("admin"))
    assert refused.status_code == 409 and "last active admin" in refused.get_json()["detail"]
    demoted = client.patch(f"/api/v1/users/{admin_id}", json={"role": "member"}, headers=cast.h("admin"))
    assert demoted.status_code == 409
    other_admin, other_headers = make_user("admin", email="second-admin@example.org")
    assert client.post(f"/api/v1/users/{admin_id}/deactivate", headers=other_headers).status_code == 200
    assert client.post(f"/api/v1/users/{other_admin}/deactivate", headers=other_headers).status_code == 409


def test_services_for_other_domains(app, cast):
    from node.common.errors import Conflict, Forbidden, InvalidInput
    from node.extensions import db
    from node.members import services

    with app.app_context():
        office = db.session.get(User, cast.ids["office_manager"])
        user = services.create_user(office, "  Lea@Example.org ", "member", cast.org_b, name="Léa")
        assert user.email == "lea@example.org" and user.password_hash == ""
        assert services.authenticate("lea@example.org", "") is None
        services.set_password(user, "un mot de passe long")
        assert user.password_hash.startswith("scrypt:")
        assert services.authenticate("LEA@example.org", "un mot de passe long") is user
        assert services.authenticate("lea@example.org", "wrong password!") is None
        assert services.authenticate("nobody@example.org", "un mot de passe long") is None
        token = services.issue_token(user, "agenda")
        assert token.startswith("hl_")
        with pytest.raises(Forbidden):
            services.create_user(office, "boss@example.org", "admin")
        with pytest.raises(InvalidInput):
            services.create_user(None, "x@example.org", "org_manager")
        with pytest.raises(InvalidInput):
            services.set_password(user, "short")
        with pytest.raises(Conflict):
            services.create_user(None, "lea@example.org", "member")
        db.session.rollback()
