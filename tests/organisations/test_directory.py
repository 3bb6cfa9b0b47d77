"""The directory shows each field only to the readers its consent allows; changes reach the hooks."""

from __future__ import annotations

import pytest

from node.organisations import services
from node.organisations.models import DIRECTORY_FIELDS, Organisation
from tests.organisations.support import make_cast

CONSENT = {
    "name": "public",
    "description": "public",
    "website": "network",
    "topics": "public",
    "contact_email": "network",
    "contact_phone": "private",
    "city": "private",
}


@pytest.fixture
def cast(app, client, make_org, make_user):
    cast = make_cast(make_org, make_user)
    for org_id in (cast.org_a, cast.org_b):
        response = client.patch(
            f"/api/v1/organisations/{org_id}",
            json={"website": "https://example.org", "contact_phone": "01 23 45 67 89", "city": "Montreuil",
                  "topics": ["démocratie", "budget participatif"]},
            headers=cast.h("admin"),
        )
        assert response.status_code == 200
        assert client.put(f"/api/v1/organisations/{org_id}/consent", json=CONSENT,
                          headers=cast.h("admin")).status_code == 200
    return cast


def _entry(client, cast, who, org_id):
    items = client.get("/api/v1/organisations", headers=cast.h(who)).get_json()["items"]
    matching = [item for item in items if item["id"] == org_id]
    detail = client.get(f"/api/v1/organisations/{org_id}", headers=cast.h(who)).get_json()
    assert matching == [detail]
    return detail


def test_anonymous_sees_only_public_fields(client, cast):
    entry = _entry(client, cast, "anonymous", cast.org_a)
    assert set(entry) == {"id", "slug", "name", "description", "topics"}
    assert entry["topics"] == ["démocratie", "budget participatif"]


@pytest.mark.parametrize("who", ["member", "manager_b"])
def test_people_of_the_node_also_see_network_fields(client, cast, who):
    entry = _entry(client, cast, who, cast.org_a)
    assert set(entry) == {"id", "slug", "name", "description", "topics", "website", "contact_email"}
    assert "contact_phone" not in entry and "resident" not in entry


@pytest.mark.parametrize("who", ["manager_a", "office_manager", "admin"])
def test_staff_and_own_managers_see_everything(client, cast, who):
    entry = _entry(client, cast, who, cast.org_a)
    assert entry["contact_phone"] == "01 23 45 67 89"
    assert entry["city"] == "Montreuil"
    assert entry["consent"] == CONSENT
    assert {"resident", "desks_held", "charter_signed", "created_at"} <= set(entry)


def test_a_manager_sees_other_organisations_as_the_network_does(client, cast):
    entry = _entry(client, cast, "manager_a", cast.org_b)
    assert "contact_phone" not in entry and "contact_email" in entry and "consent" not in entry


def test_hidden_name_removes_the_organisation_from_the_lists_that_cannot_see_it(client, cast):
    response = client.put(f"/api/v1/organisations/{cast.org_a}/consent", json={"name": "network"},
                          headers=cast.h("manager_a"))
    assert response.status_code == 200
    assert response.get_json()["consent"]["description"] == "public"  # fields not named keep theirs
    anonymous_ids = [o["id"] for o in client.get("/api/v1/organisations").get_json()["items"]]
    assert cast.org_a not in anonymous_ids and cast.org_b in anonymous_ids
    assert client.get(f"/api/v1/organisations/{cast.org_a}").status_code == 404
    assert _entry(client, cast, "member", cast.org_a)["name"] == "Quartiers en Commun"
    client.put(f"/api/v1/organisations/{cast.org_a}/consent", json={"name": "private"}, headers=cast.h("manager_a"))
    member_ids = [o["id"] for o in client.get("/api/v1/organisations", headers=cast.h("member")).get_json()["items"]]
    assert cast.org_a not in member_ids
    assert _entry(client, cast, "office_manager", cast.org_a)["name"] == "Quartiers en Commun"


def test_city_defaults_to_the_node_city(app, make_org):
    org = make_org("Sans Ville")
    with app.app_context():
        row = services.get_organisation(org.id)
        assert services.directory_entry(row, "public")["city"] == "Paris"


def test_directory_entry_scopes(app, cast):
    with app.app_context():
        org = services.get_organisation(cast.org_a)
        public = services.directory_entry(org, "public")
        network = services.directory_entry(org, "network")
        everything = services.directory_entry(org, "all")
        assert set(public) < set(network) < set(everything)
        assert set(everything) == {"id", "slug", *DIRECTORY_FIELDS}
        with pytest.raises(ValueError):
            services.directory_entry(org, "friends")


def test_change_hooks_run_inside_the_transaction(app, client, cast):
    from node.extensions import db
    from node.mail.models import OutgoingEmail
    from node.mail.services import queue_email

    calls = []

    def hook(kind: str, organisation: Organisation) -> None:
        assert organisation.id is not None and db.session().in_transaction()
        calls.append((kind, organisation.id))
        # A listener's own rows commit with the change (the federation's outbox relies on it).
        queue_email("outbox@example.org", f"{kind} {organisation.id}", "-")

    services.ORGANISATION_CHANGE_HOOKS.append(hook)
    try:
        created = client.post("/api/v1/organisations", json={"name": "Nouvelle"}, headers=cast.h("admin"))
        new_id = created.get_json()["id"]
        client.patch(f"/api/v1/organisations/{new_id}", json={"description": "d"}, headers=cast.h("admin"))
        client.patch(f"/api/v1/organisations/{new_id}", json={"description": "d"}, headers=cast.h("admin"))
        client.put(f"/api/v1/organisations/{new_id}/consent", json={"city": "private"}, headers=cast.h("admin"))
        client.delete(f"/api/v1/organisations/{new_id}", headers=cast.h("admin"))
        client.delete(f"/api/v1/organisations/{new_id}", headers=cast.h("admin"))
        # Refused changes do not reach the hooks.
        client.patch(f"/api/v1/organisations/{cast.org_a}", json={"resident": True}, headers=cast.h("manager_a"))
    finally:
        services.ORGANISATION_CHANGE_HOOKS.remove(hook)
    # An update that changes nothing and a second delete are not events.
    assert calls == [("create", new_id), ("update", new_id), ("consent", new_id), ("delete", new_id)]
    with app.app_context():
        subjects = db.session.scalars(db.select(OutgoingEmail.subject).order_by(OutgoingEmail.id)).all()
        assert subjects == [f"{kind} {new_id}" for kind in ("create", "update", "consent", "delete")]
