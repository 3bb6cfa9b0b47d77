"""Charter API: publish, sign with the hash of the text read, re-sign after a new version."""

from __future__ import annotations

import hashlib

import pytest

from tests.organisations.support import WHO, make_cast, row_counts

FIRST = {"version": "1.0", "title": "Charte", "body": "# Charte de {{ place_name }}\n\nÀ {{ city }}, v{{ version }}.\n"}
SECOND = {"version": "1.1", "title": "Charte",
          "body": "# Charte de {{ place_name }}\n\nNous coopérons. v{{ version }}\n"}


@pytest.fixture
def cast(make_org, make_user):
    return make_cast(make_org, make_user)


def _publish(client, cast, data=FIRST):
    response = client.post("/api/v1/charter/versions", json=data, headers=cast.h("admin"))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _sign(client, cast, who, sha, org=None):
    return client.post("/api/v1/charter/signatures", json={"organisation_id": org or cast.org_a, "sha256": sha},
                       headers=cast.h(who))


PUBLISH = {"anonymous": 401, "member": 403, "manager_a": 403, "manager_b": 403, "office_manager": 403, "admin": 201}
SIGN = {"anonymous": 401, "member": 403, "manager_a": 201, "manager_b": 403, "office_manager": 201, "admin": 201}
OVERVIEW = {"anonymous": 401, "member": 403, "manager_a": 403, "manager_b": 403, "office_manager": 200, "admin": 200}


@pytest.mark.parametrize("who", WHO)
def test_publish_permissions(app, client, cast, who):
    before = row_counts(app)
    response = client.post("/api/v1/charter/versions", json=FIRST, headers=cast.h(who))
    assert response.status_code == PUBLISH[who]
    if PUBLISH[who] >= 400:
        assert row_counts(app) == before


@pytest.mark.parametrize("who", WHO)
def test_sign_permissions(app, client, cast, who):
    sha = _publish(client, cast)["sha256"]
    before = row_counts(app)
    response = _sign(client, cast, who, sha)
    assert response.status_code == SIGN[who], response.get_json()
    if SIGN[who] >= 400:
        assert row_counts(app) == before
    else:
        assert response.get_json()["signed_by_id"] == cast.ids[who]


@pytest.mark.parametrize("who", WHO)
def test_overview_permissions(client, cast, who):
    assert client.get("/api/v1/charter/signatures", headers=cast.h(who)).status_code == OVERVIEW[who]


def test_publish_renders_hashes_and_serves_the_text(app, client, cast):
    published = _publish(client, cast)
    assert published["body"] == "# Charte de Les Halles Civiques\n\nÀ Paris, v1.0.\n"
    assert published["sha256"] == hashlib.sha256(published["body"].encode("utf-8")).hexdigest()
    assert {org["id"] for org in published["must_resign"]} == {cast.org_a, cast.org_b}
    current = client.get("/api/v1/charter").get_json()
    assert current["version"] == "1.0" and current["url"] == "http://127.0.0.1:5000/charter.txt"
    assert current["published_at"].endswith("Z")
    text = client.get("/charter.txt")
    assert text.status_code == 200 and text.mimetype == "text/plain"
    assert hashlib.sha256(text.data).hexdigest() == published["sha256"]
    assert text.headers["X-Charter-SHA256"] == published["sha256"]
    assert client.get("/charter.txt", headers={"If-None-Match": f'"{published["sha256"]}"'}).status_code == 304
    assert client.get("/charter/1.0.txt").data == text.data


def test_publish_emails_each_organisation_to_sign(app, client, cast):
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    _publish(client, cast)
    with app.app_context():
        emails = db.session.scalars(db.select(OutgoingEmail).order_by(OutgoingEmail.to_address)).all()
        # A has a contact address; B has none, so its manager is asked.
        assert [e.to_address for e in emails] == ["contact@qec.example.org", "manager-b@example.org"]
        assert all("1.0" in e.subject and "/charter.txt" in e.body_text for e in emails)


def test_no_charter_yet(client, cast):
    assert client.get("/api/v1/charter").status_code == 404
    assert client.get("/charter.txt").status_code == 404
    response = _sign(client, cast, "manager_a", "a" * 64)
    assert response.status_code == 404 and "no charter" in response.get_json()["detail"]


def test_duplicates_are_conflicts_and_only_one_version_is_current(app, client, cast):
    _publish(client, cast)
    before = row_counts(app)
    same_version = client.post("/api/v1/charter/versions", json={**SECOND, "version": "1.0"}, headers=cast.h("admin"))
    assert same_version.status_code == 409
    # Same rendered text under a new number: nothing new to sign.
    same_text = client.post("/api/v1/charter/versions",
                            json={"version": "1.0b", "title": "Charte",
                                  "body": "# Charte de {{ place_name }}\n\nÀ {{ city }}, v1.0.\n"},
                            headers=cast.h("admin"))
    assert same_text.status_code == 409 and "identical" in same_text.get_json()["detail"]
    assert row_counts(app) == before
    _publish(client, cast, SECOND)
    versions = client.get("/api/v1/charter/versions").get_json()["items"]
    assert [(v["version"], v["current"]) for v in versions] == [("1.1", True), ("1.0", False)]
    assert "body" not in versions[0]
    assert client.get("/api/v1/charter/versions/1.0").get_json()["body"].startswith("# Charte")
    assert client.get("/api/v1/charter/versions/9.9").status_code == 404


BAD_VERSIONS = [
    ({"title": "T", "body": "B"}, 422),
    ({"version": "", "title": "T", "body": "B"}, 422),
    ({"version": "1 0", "title": "T", "body": "B"}, 422),
    ({"version": "../x", "title": "T", "body": "B"}, 422),
    ({"version": "2.0", "title": "", "body": "B"}, 422),
    ({"version": "2.0", "title": "T", "body": ""}, 422),
    ({"version": "2.0", "title": "T", "body": "   \n"}, 422),
    ({"version": "2.0", "title": "T", "body": "{{ unknown_thing }}"}, 422),
    ({"version": "2.0", "title": "T", "body": "{% if %}"}, 422),
    ({"version": 2, "title": "T", "body": "B"}, 422),
    ({"version": "2.0", "title": "T", "body": "B", "current": False}, 422),
]


@pytest.mark.parametrize("body,status", BAD_VERSIONS)
def test_bad_versions_change_nothing(app, client, cast, body, status):
    before = row_counts(app)
    response = client.post("/api/v1/charter/versions", json=body, headers=cast.h("admin"))
    assert response.status_code == status, response.get_json()
    assert response.get_json()["detail"]
    assert row_counts(app) == before


def test_signing_is_idempotent_and_needs_the_exact_hash(app, client, cast):
    sha = _publish(client, cast)["sha256"]
    before = row_counts(app)
    wrong = _sign(client, cast, "manager_a", hashlib.sha256(b"another text").hexdigest())
    assert wrong.status_code == 422 and sha in wrong.get_json()["detail"]
    for bad in ({"organisation_id": cast.org_a, "sha256": "abc"}, {"organisation_id": cast.org_a},
                {"organisation_id": "1", "sha256": sha}, {"sha256": sha}):
        response = client.post("/api/v1/charter/signatures", json=bad, headers=cast.h("manager_a"))
        assert response.status_code == 422, bad
    unknown = client.post("/api/v1/charter/signatures", json={"organisation_id": 999, "sha256": sha},
                          headers=cast.h("admin"))
    assert unknown.status_code == 404
    assert client.post("/api/v1/charter/signatures", data="x", headers=cast.h("admin")).status_code == 415
    assert row_counts(app) == before

    first = _sign(client, cast, "manager_a", sha.upper())
    assert first.status_code == 201 and first.get_json()["version"] == "1.0"
    second = _sign(client, cast, "manager_a", sha)
    assert second.status_code == 200 and second.get_json() == first.get_json()
    assert row_counts(app)["charter_signatures"] == before["charter_signatures"] + 1


def test_new_version_requires_re_signing(app, client, cast):
    from node.charters.services import has_signed_current, organisations_to_sign

    old_sha = _publish(client, cast)["sha256"]
    assert _sign(client, cast, "manager_a", old_sha).status_code == 201
    overview = client.get("/api/v1/charter/signatures", headers=cast.h("office_manager")).get_json()
    assert [m["organisation_id"] for m in overview["must_sign"]] == [cast.org_b]

    published = _publish(client, cast, SECOND)
    assert {org["id"] for org in published["must_resign"]} == {cast.org_a, cast.org_b}
    with app.app_context():
        assert not has_signed_current(cast.org_a)
        assert {o.id for o in organisations_to_sign()} == {cast.org_a, cast.org_b}

    before = row_counts(app)
    outdated = _sign(client, cast, "manager_a", old_sha)
    assert outdated.status_code == 409
    detail = outdated.get_json()["detail"]
    assert "1.0" in detail and "1.1" in detail and published["sha256"] in detail
    assert row_counts(app) == before

    overview = client.get("/api/v1/charter/signatures", headers=cast.h("admin")).get_json()
    assert overview["current"] == {"version": "1.1", "sha256": published["sha256"]}
    must = {m["organisation_id"]: m for m in overview["must_sign"]}
    assert must[cast.org_a]["last_signed_version"] == "1.0"
    assert must[cast.org_b]["last_signed_version"] is None
    assert overview["signatures"][0]["signed_by"]["email"] == "manager-a@example.org"

    assert _sign(client, cast, "manager_a", published["sha256"]).status_code == 201
    overview = client.get("/api/v1/charter/signatures", headers=cast.h("admin")).get_json()
    assert [m["organisation_id"] for m in overview["must_sign"]] == [cast.org_b]
    assert [s["version"] for s in overview["signatures"]] == ["1.1", "1.0"]
    with app.app_context():
        assert has_signed_current(cast.org_a)
    listed = client.get(f"/api/v1/organisations/{cast.org_a}", headers=cast.h("admin")).get_json()
    assert listed["charter_signed"] is True


def test_removed_organisations_are_not_asked_to_sign(app, client, cast):
    client.delete(f"/api/v1/organisations/{cast.org_b}", headers=cast.h("admin"))
    published = _publish(client, cast)
    assert [org["id"] for org in published["must_resign"]] == [cast.org_a]
    refused = _sign(client, cast, "manager_b", published["sha256"], org=cast.org_b)
    assert refused.status_code == 404


def test_sign_charter_service_refuses_an_old_version_by_id(app, cast):
    from node.charters.services import publish_charter, sign_charter
    from node.common.errors import Conflict
    from node.extensions import db
    from node.members.models import User

    with app.app_context():
        old, _ = publish_charter(None, "v1", "1", "Charte")
        new, must = publish_charter(None, "v2", "2", "Charte")
        assert len(must) == 2
        manager = db.session.get(User, cast.ids["manager_a"])
        with pytest.raises(Conflict, match="no longer current"):
            sign_charter(manager, cast.org_a, old.id, old.sha256)
        signature = sign_charter(manager, cast.org_a, new.id, new.sha256)
        assert sign_charter(manager, cast.org_a, new.id, new.sha256) is signature
        db.session.rollback()


def test_openapi_describes_these_endpoints(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, method in (
        ("/api/v1/organisations", "post"),
        ("/api/v1/organisations/{organisation_id}", "patch"),
        ("/api/v1/organisations/{organisation_id}/consent", "put"),
        ("/api/v1/users", "get"),
        ("/api/v1/users/{user_id}/deactivate", "post"),
        ("/api/v1/invitations", "post"),
        ("/api/v1/invitations/{token}/accept", "post"),
        ("/api/v1/password-resets", "post"),
        ("/api/v1/charter", "get"),
        ("/api/v1/charter/versions", "post"),
        ("/api/v1/charter/signatures", "post"),
        ("/charter.txt", "get"),
    ):
        assert method in paths[path], (path, method)
