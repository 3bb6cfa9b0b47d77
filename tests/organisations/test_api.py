"""Organisations API: who may write what, and how the directory follows each field's consent."""

from __future__ import annotations

import pytest

from node.organisations.models import Organisation
from tests.organisations.support import WHO, make_cast, row_counts, snapshot


@pytest.fixture
def cast(make_org, make_user):
    return make_cast(make_org, make_user)


NEW_ORG = {"name": "Atelier Citoyen", "description": "Ateliers de lecture des budgets publics."}

# Expected status per endpoint, one column per person in WHO order; one fresh database per case.
#                      anonymous member manager_a manager_b office_manager admin
MATRIX = {
    "create":          (401,      403,   403,      403,      201,           201),
    "update":          (401,      403,   200,      403,      200,           200),
    "update_resident": (401,      403,   403,      403,      200,           200),
    "consent":         (401,      403,   200,      403,      200,           200),
    "delete":          (401,      403,   403,      403,      204,           204),
}


def _call(client, cast, endpoint: str, who: str):
    headers = cast.h(who)
    org = f"/api/v1/organisations/{cast.org_a}"
    if endpoint == "create":
        return client.post("/api/v1/organisations", json=NEW_ORG, headers=headers)
    if endpoint == "update":
        return client.patch(org, json={"description": "Nouvelle description"}, headers=headers)
    if endpoint == "update_resident":
        return client.patch(org, json={"resident": True, "desks_held": 4}, headers=headers)
    if endpoint == "consent":
        return client.put(f"{org}/consent", json={"contact_email": "public"}, headers=headers)
    if endpoint == "delete":
        return client.delete(org, headers=headers)
    raise AssertionError(endpoint)


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(app, client, cast, endpoint, who):
    before = row_counts(app)
    org_before = snapshot(app, Organisation, cast.org_a)
    response = _call(client, cast, endpoint, who)
    expected = dict(zip(WHO, MATRIX[endpoint], strict=True))[who]
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected >= 400:
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["detail"]
        assert row_counts(app) == before
        assert snapshot(app, Organisation, cast.org_a) == org_before


def test_manager_is_told_which_fields_are_reserved(client, cast):
    response = client.patch(
        f"/api/v1/organisations/{cast.org_a}", json={"desks_held": 9}, headers=cast.h("manager_a")
    )
    assert response.status_code == 403
    assert "desks_held" in response.get_json()["detail"]


def test_create_makes_a_unique_slug_and_returns_the_full_record(client, cast):
    first = client.post("/api/v1/organisations", json={"name": "Café des Élus"}, headers=cast.h("office_manager"))
    second = client.post("/api/v1/organisations", json={"name": "Café des élus"}, headers=cast.h("office_manager"))
    assert first.status_code == second.status_code == 201
    assert first.get_json()["slug"] == "cafe-des-elus"
    assert second.get_json()["slug"] == "cafe-des-elus-2"
    assert first.headers["Location"].endswith(f"/api/v1/organisations/{first.get_json()['id']}")
    assert first.get_json()["consent"]["contact_email"] == "private"
    assert first.get_json()["charter_signed"] is True  # no charter published yet


def test_explicit_slug_clash_is_a_conflict(app, client, cast):
    taken = client.get(f"/api/v1/organisations/{cast.org_a}").get_json()["slug"]
    before = row_counts(app)
    response = client.post("/api/v1/organisations", json={"name": "Autre", "slug": taken}, headers=cast.h("admin"))
    assert response.status_code == 409
    assert taken in response.get_json()["detail"]
    assert row_counts(app) == before


BAD_CREATE = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": 42}, "name"),
    ({"name": "X", "resident": "yes"}, "resident"),
    ({"name": "X", "desks_held": -1}, "desks_held"),
    ({"name": "X", "desks_held": "3"}, "desks_held"),
    ({"name": "X", "contact_email": "not-an-email"}, "contact_email"),
    ({"name": "X", "website": "javascript:alert(1)"}, "website"),
    ({"name": "X", "topics": "démocratie"}, "topics"),
    ({"name": "X", "topics": [""]}, "topics"),
    ({"name": "X", "slug": "Pas Un Slug"}, "slug"),
    ({"name": "X", "consent": {"name": "everyone"}}, "consent"),
    ({"name": "X", "consent": {"password": "public"}}, "consent"),
    ({"name": "X", "colour": "red"}, "colour"),
]


@pytest.mark.parametrize("body,field", BAD_CREATE)
def test_bad_create_bodies_are_422_and_change_nothing(app, client, cast, body, field):
    before = row_counts(app)
    response = client.post("/api/v1/organisations", json=body, headers=cast.h("admin"))
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["detail"]
    assert row_counts(app) == before


def test_non_json_bodies_are_refused(app, client, cast):
    before = row_counts(app)
    url = "/api/v1/organisations"
    assert client.post(url, data="name=X", headers=cast.h("admin")).status_code == 415
    assert client.post(url, data="{", content_type="application/json", headers=cast.h("admin")).status_code == 400
    assert client.post(url, json=["name"], headers=cast.h("admin")).status_code == 400
    big = {"name": "X", "description": "x" * 1_100_000}
    assert client.post(url, json=big, headers=cast.h("admin")).status_code == 413
    patch = f"/api/v1/organisations/{cast.org_a}"
    assert client.patch(patch, data="x", headers=cast.h("admin")).status_code == 415
    assert client.put(f"{patch}/consent", json=[], headers=cast.h("admin")).status_code == 400
    assert row_counts(app) == before


@pytest.mark.parametrize(
    "body",
    [{"name": ""}, {"website": "ftp://x"}, {"topics": ["a"] * 21}, {"unknown": 1}, {"resident": None}],
)
def test_bad_updates_change_nothing(app, client, cast, body):
    before = snapshot(app, Organisation, cast.org_a)
    response = client.patch(f"/api/v1/organisations/{cast.org_a}", json=body, headers=cast.h("admin"))
    assert response.status_code == 422
    assert snapshot(app, Organisation, cast.org_a) == before


@pytest.mark.parametrize("body", [{}, {"name": "everyone"}, {"phone": "public"}, {"name": None}])
def test_bad_consent_changes_nothing(app, client, cast, body):
    before = snapshot(app, Organisation, cast.org_a)
    response = client.put(f"/api/v1/organisations/{cast.org_a}/consent", json=body, headers=cast.h("manager_a"))
    assert response.status_code == 422
    assert snapshot(app, Organisation, cast.org_a) == before


def test_unknown_organisation_is_404(app, client, cast):
    before = row_counts(app)
    for call in (
        lambda: client.get("/api/v1/organisations/999"),
        lambda: client.patch("/api/v1/organisations/999", json={"name": "X"}, headers=cast.h("admin")),
        lambda: client.put("/api/v1/organisations/999/consent", json={"name": "public"}, headers=cast.h("admin")),
        lambda: client.delete("/api/v1/organisations/999", headers=cast.h("admin")),
    ):
        response = call()
        assert response.status_code == 404
        assert "999" in response.get_json()["detail"]
    assert row_counts(app) == before


def test_soft_delete_keeps_the_row_and_hides_it(app, client, cast):
    response = client.delete(f"/api/v1/organisations/{cast.org_a}", headers=cast.h("office_manager"))
    assert response.status_code == 204
    assert client.delete(f"/api/v1/organisations/{cast.org_a}", headers=cast.h("admin")).status_code == 204
    record = snapshot(app, Organisation, cast.org_a)
    assert record["deleted_at"] is not None and record["name"] == "Quartiers en Commun"
    ids = [o["id"] for o in client.get("/api/v1/organisations").get_json()["items"]]
    assert cast.org_a not in ids and cast.org_b in ids
    assert client.get(f"/api/v1/organisations/{cast.org_a}").status_code == 404
    assert client.get(f"/api/v1/organisations/{cast.org_a}", headers=cast.h("manager_a")).status_code == 404
    staff_view = client.get(f"/api/v1/organisations/{cast.org_a}", headers=cast.h("office_manager")).get_json()
    assert staff_view["deleted_at"].endswith("Z")
    listed = client.get("/api/v1/organisations?include_deleted=1", headers=cast.h("admin")).get_json()["items"]
    assert cast.org_a in [o["id"] for o in listed]
    # A removed organisation can no longer be changed.
    refused = client.patch(f"/api/v1/organisations/{cast.org_a}", json={"name": "Y"}, headers=cast.h("admin"))
    assert refused.status_code == 409


def test_pagination_walks_every_organisation_once(client, cast, make_org):
    for n in range(5):
        make_org(f"Collectif {n}")
    seen, cursor = [], None
    while True:
        url = "/api/v1/organisations?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url).get_json()
        seen.extend(o["id"] for o in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert client.get("/api/v1/organisations?limit=0").status_code == 400
    assert client.get("/api/v1/organisations?cursor=zzz").status_code == 400
