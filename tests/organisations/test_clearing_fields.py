"""An empty string clears an optional field, through every optional text field of the organisations
API (and a room's photo): it is never kept as the old value, nor refused as a malformed URL or address.
A cleared city shows the node's own city (documented: most members work in the place itself)."""

from __future__ import annotations

import pytest

from node.organisations.models import Organisation
from tests.organisations.support import make_cast, snapshot

FILLED = {"city": "Lyon", "contact_phone": "01 23 45 67 89", "contact_email": "bonjour@qec.example.org",
          "website": "https://qec.example.org", "description": "Ateliers de quartier."}


@pytest.fixture
def cast(make_org, make_user):
    return make_cast(make_org, make_user)


def stored(app, org_id: int) -> dict:
    from node.extensions import db

    with app.app_context():
        org = db.session.get(Organisation, org_id)
        values = {field: getattr(org, field) for field in FILLED}
        db.session.remove()
    return values


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize("field", ["city", "contact_phone", "contact_email", "website"])
def test_an_empty_string_clears_an_optional_field(app, client, cast, field, blank):
    url = f"/api/v1/organisations/{cast.org_a}"
    assert client.patch(url, json=FILLED, headers=cast.h("admin")).status_code == 200
    response = client.patch(url, json={field: blank}, headers=cast.h("admin"))
    assert response.status_code == 200, response.get_json()
    expected = {**FILLED, field: None}
    assert stored(app, cast.org_a) == expected
    # The answer shows what is stored; a cleared city shows the node's city, not the old one.
    shown = response.get_json()[field]
    assert shown == (app.config["HALLES_CITY"] if field == "city" else None)
    assert shown != FILLED[field]


def test_null_clears_the_same_way_and_description_empties(app, client, cast):
    url = f"/api/v1/organisations/{cast.org_a}"
    client.patch(url, json=FILLED, headers=cast.h("manager_a"))
    response = client.patch(url, json={"city": None, "contact_email": None, "website": None, "contact_phone": None,
                                       "description": ""}, headers=cast.h("manager_a"))
    assert response.status_code == 200
    assert stored(app, cast.org_a) == {"city": None, "contact_phone": None, "contact_email": None, "website": None,
                                       "description": ""}


def test_an_organisation_can_be_created_with_empty_optional_fields(app, client, cast):
    response = client.post("/api/v1/organisations", json={"name": "Atelier Citoyen", "city": "", "website": "",
                                                          "contact_email": "", "contact_phone": ""},
                           headers=cast.h("admin"))
    assert response.status_code == 201, response.get_json()
    assert stored(app, response.get_json()["id"]) == {"city": None, "contact_phone": None, "contact_email": None,
                                                      "website": None, "description": ""}


@pytest.mark.parametrize("body", [{"website": "pas une adresse"}, {"contact_email": "nobody"},
                                  {"city": "x" * 121}, {"name": ""}, {"name": "  "}])
def test_malformed_values_are_still_refused_and_change_nothing(app, client, cast, body):
    client.patch(f"/api/v1/organisations/{cast.org_a}", json=FILLED, headers=cast.h("admin"))
    before = snapshot(app, Organisation, cast.org_a)
    response = client.patch(f"/api/v1/organisations/{cast.org_a}", json=body, headers=cast.h("admin"))
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == set(body)
    assert snapshot(app, Organisation, cast.org_a) == before


def test_a_room_photo_is_cleared_by_an_empty_string(app, client, make_user):
    from tests.spaces.conftest import TARIFFS

    _, staff = make_user("office_manager")
    site = client.post("/api/v1/sites", json={"name": "Belleville", "address": "12 rue de Belleville",
                                              "city": "Paris"}, headers=staff).get_json()
    room = client.post("/api/v1/rooms", json={"site_id": site["id"], "name": "Salle", "capacity": 10,
                                              "photo_url": "https://example.org/salle.jpg", "tariffs": TARIFFS},
                       headers=staff).get_json()
    response = client.patch(f"/api/v1/rooms/{room['id']}", json={"photo_url": ""}, headers=staff)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["photo_url"] is None
    assert client.get(f"/api/v1/rooms/{room['id']}").get_json()["photo_url"] is None
    bad = client.patch(f"/api/v1/rooms/{room['id']}", json={"photo_url": "salle.jpg"}, headers=staff)
    assert bad.status_code == 422
