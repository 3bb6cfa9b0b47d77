"""Sites, rooms, desks and availability: the happy paths and every kind of bad input."""

from __future__ import annotations

import pytest

from tests.spaces.conftest import paris, utc_naive


@pytest.fixture
def staff(make_user):
    return make_user("office_manager")[1]


# --- sites ----------------------------------------------------------------------------------------


def test_site_lifecycle(client, staff):
    created = client.post("/api/v1/sites", json={
        "name": "  Les Halles Civiques — Belleville ", "address": "12 rue de Belleville", "postal_code": "75020",
        "city": "Paris", "latitude": 48.872, "longitude": 2.377, "accessibility": "Entrée de plain-pied",
    }, headers=staff)
    assert created.status_code == 201
    site = created.get_json()
    assert created.headers["Location"].endswith(f"/api/v1/sites/{site['id']}")
    assert site["name"] == "Les Halles Civiques — Belleville"  # trimmed
    assert client.get(f"/api/v1/sites/{site['id']}").get_json() == site
    assert [s["id"] for s in client.get("/api/v1/sites").get_json()["items"]] == [site["id"]]

    changed = client.patch(f"/api/v1/sites/{site['id']}", json={"opening_hours": "Lun-Ven 9h-19h", "latitude": None},
                           headers=staff).get_json()
    assert changed["opening_hours"] == "Lun-Ven 9h-19h" and changed["latitude"] is None
    assert changed["name"] == site["name"]

    assert client.delete(f"/api/v1/sites/{site['id']}", headers=staff).status_code == 204
    assert client.get(f"/api/v1/sites/{site['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "x", "city": "Paris"}, "name"),
        ({"name": "   ", "address": "x", "city": "Paris"}, "name"),
        ({"name": 12, "address": "x", "city": "Paris"}, "name"),
        ({"name": "x" * 201, "address": "x", "city": "Paris"}, "name"),
        ({"name": "a", "address": "x", "city": "Paris", "latitude": "48.8"}, "latitude"),
        ({"name": "a", "address": "x", "city": "Paris", "latitude": 91}, "latitude"),
        ({"name": "a", "address": "x", "city": "Paris", "longitude": True}, "longitude"),
        ({"name": "a", "address": "x", "city": "Paris", "wifi": True}, "wifi"),
    ],
)
def test_site_bad_input(client, staff, count, body, field):
    from node.spaces.models import Site

    response = client.post("/api/v1/sites", json=body, headers=staff)
    assert response.status_code == 422
    problem = response.get_json()
    assert field in problem["errors"] and field in problem["detail"]
    assert count(Site) == 0


def test_site_patch_bad_input_and_unknown(client, staff, make_site, count):
    site = make_site()
    assert client.patch(f"/api/v1/sites/{site}", json={"name": None}, headers=staff).status_code == 422
    assert client.patch(f"/api/v1/sites/{site}", data="x", content_type="text/plain", headers=staff).status_code == 415
    assert client.patch("/api/v1/sites/999", json={"name": "x"}, headers=staff).status_code == 404
    assert client.delete("/api/v1/sites/999", headers=staff).status_code == 404
    assert client.get(f"/api/v1/sites/{site}").get_json()["name"] == "Les Halles Civiques — Belleville"


def test_site_with_rooms_cannot_be_deleted(client, staff, make_site, make_room, count):
    from node.spaces.models import Site

    site = make_site()
    make_room(site)
    response = client.delete(f"/api/v1/sites/{site}", headers=staff)
    assert response.status_code == 409 and "1 room" in response.get_json()["detail"]
    assert count(Site) == 1


# --- rooms ----------------------------------------------------------------------------------------


def test_room_lifecycle(client, staff, make_site):
    site = make_site()
    created = client.post("/api/v1/rooms", json={
        "site_id": site, "name": "Salle Olympe de Gouges", "capacity": 40, "step_free": True,
        "amenities": ["vidéoprojecteur", "cuisine"], "tariffs": {"ngo": 1500, "member": 800},
        "photo_url": "https://halles.example/photos/olympe.jpg",
    }, headers=staff)
    assert created.status_code == 201, created.get_json()
    room = created.get_json()
    assert list(room["tariffs"]) == ["member", "ngo"]  # kept in the grid's order
    assert room["calendar_url"].endswith(f"/rooms/{room['id']}.ics")
    assert room["site_name"] == "Les Halles Civiques — Belleville"

    changed = client.patch(f"/api/v1/rooms/{room['id']}", json={"tariffs": {"other": 5000}, "capacity": 35},
                           headers=staff).get_json()
    assert changed["tariffs"] == {"other": 5000} and changed["capacity"] == 35

    listed = client.get("/api/v1/rooms", query_string={"site_id": site, "min_capacity": 30, "step_free": "true"})
    assert [r["id"] for r in listed.get_json()["items"]] == [room["id"]]
    assert client.get("/api/v1/rooms", query_string={"min_capacity": 36}).get_json()["items"] == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": "40"}, "capacity"),
        ({"capacity": 12.5}, "capacity"),
        ({"step_free": 1}, "step_free"),
        ({"step_free": "yes"}, "step_free"),
        ({"amenities": "projector"}, "amenities"),
        ({"tariffs": {"friends": 100}}, "tariffs"),
        ({"tariffs": {"ngo": -1}}, "tariffs"),
        ({"tariffs": {"ngo": "10"}}, "tariffs"),
        ({"tariffs": ["ngo"]}, "tariffs"),
        ({"photo_url": "javascript:alert(1)"}, "photo_url"),
        ({"site_id": "1"}, "site_id"),
    ],
)
def test_room_bad_input(client, staff, make_site, count, changes, field):
    from node.spaces.models import Room

    body = {"site_id": make_site(), "name": "Salle", "capacity": 10, **changes}
    response = client.post("/api/v1/rooms", json=body, headers=staff)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]
    assert count(Room) == 0


def test_room_unknown_site_and_room(client, staff, room_id, count):
    from node.spaces.models import Room

    response = client.post("/api/v1/rooms", json={"site_id": 999, "name": "Salle", "capacity": 10}, headers=staff)
    assert response.status_code == 404 and "site 999" in response.get_json()["detail"]
    assert client.patch(f"/api/v1/rooms/{room_id}", json={"site_id": 999}, headers=staff).status_code == 404
    assert client.patch("/api/v1/rooms/999", json={"capacity": 3}, headers=staff).status_code == 404
    assert client.get("/api/v1/rooms/999").status_code == 404
    assert client.delete("/api/v1/rooms/999", headers=staff).status_code == 404
    assert count(Room) == 1


def test_deleting_a_booked_room_deactivates_it(client, staff, room_id, add_booking, count):
    from node.spaces.models import Booking, Room

    add_booking(room_id, paris(5, "10:00"), paris(5, "11:00"))
    response = client.delete(f"/api/v1/rooms/{room_id}", headers=staff)
    assert response.status_code == 200 and response.get_json()["active"] is False
    assert count(Room) == 1 and count(Booking) == 1
    assert client.get("/api/v1/rooms").get_json()["items"] == []
    assert client.get(f"/api/v1/rooms/{room_id}").get_json()["active"] is False


# --- availability ---------------------------------------------------------------------------------


def test_availability_lists_busy_and_free(client, room_id, add_booking):
    add_booking(room_id, paris(5, "10:00"), paris(5, "12:00"), status="approved")
    add_booking(room_id, paris(5, "14:00"), paris(5, "15:00"), status="pending")
    add_booking(room_id, paris(5, "16:00"), paris(5, "17:00"), status="refused")
    add_booking(room_id, paris(5, "17:00"), paris(5, "18:00"), status="cancelled")
    window = {"from": paris(5, "09:00").isoformat(), "to": paris(5, "19:00").isoformat()}
    body = client.get(f"/api/v1/rooms/{room_id}/availability", query_string=window).get_json()
    assert body["timezone"] == "Europe/Paris" and body["opening_hours"] == "Mon-Fri 9:00-19:00"
    assert [(b["starts_at_local"], b["status"]) for b in body["busy"]] == [
        (paris(5, "10:00").isoformat(), "approved"),
        (paris(5, "14:00").isoformat(), "pending"),
    ]
    assert [(f["starts_at_local"], f["ends_at_local"]) for f in body["free"]] == [
        (paris(5, "09:00").isoformat(), paris(5, "10:00").isoformat()),
        (paris(5, "12:00").isoformat(), paris(5, "14:00").isoformat()),
        (paris(5, "15:00").isoformat(), paris(5, "19:00").isoformat()),
    ]
    # No personal data in a public answer.
    assert "camille" not in str(body).lower()


def test_availability_accepts_an_unencoded_plus_in_the_offset(client, room_id, add_booking):
    add_booking(room_id, paris(5, "10:00"), paris(5, "12:00"))
    start = paris(5, "00:00").isoformat()
    assert "+" in start
    response = client.get(f"/api/v1/rooms/{room_id}/availability?from={start}")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["from"] == utc_naive(paris(5, "00:00")).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(response.get_json()["busy"]) == 1


def test_availability_defaults_to_the_next_week(client, room_id):
    body = client.get(f"/api/v1/rooms/{room_id}/availability").get_json()
    assert body["busy"] == [] and len(body["free"]) == 1


@pytest.mark.parametrize(
    ("query", "expected", "fragment"),
    [
        ({"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, 422, "after"),
        ({"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, 422, "after"),
        ({"from": "2030-01-01T00:00:00Z", "to": "2030-06-01T00:00:00Z"}, 422, "92 days"),
        ({"from": "2030-01-01T00:00:00"}, 422, "time zone"),
        ({"from": "soon"}, 422, "ISO 8601"),
    ],
)
def test_availability_bad_windows(client, room_id, query, expected, fragment):
    response = client.get(f"/api/v1/rooms/{room_id}/availability", query_string=query)
    assert response.status_code == expected
    assert fragment in response.get_json()["detail"]


def test_availability_unknown_room(client):
    assert client.get("/api/v1/rooms/999/availability").status_code == 404


# --- desks ----------------------------------------------------------------------------------------


def test_desk_assignment_keeps_desks_held_in_step(app, client, staff, make_site, make_org):
    from node.extensions import db
    from node.organisations.models import Organisation

    site = make_site()
    org_a, org_b = make_org("A"), make_org("B")
    created = client.post("/api/v1/desks", json={"site_id": site, "label": "B-12", "organisation_id": org_a.id},
                          headers=staff)
    assert created.status_code == 201
    desk = created.get_json()
    assert desk["organisation_name"] == "A"
    client.post("/api/v1/desks", json={"site_id": site, "label": "B-13", "organisation_id": org_a.id}, headers=staff)

    def held():
        with app.app_context():
            return [db.session.get(Organisation, o.id).desks_held for o in (org_a, org_b)]

    assert held() == [2, 0]
    moved = client.patch(f"/api/v1/desks/{desk['id']}", json={"organisation_id": org_b.id}, headers=staff)
    assert moved.get_json()["organisation_id"] == org_b.id
    assert held() == [1, 1]
    freed = client.patch(f"/api/v1/desks/{desk['id']}", json={"organisation_id": None}, headers=staff)
    assert freed.get_json()["organisation_id"] is None
    assert held() == [1, 0]

    listed = client.get("/api/v1/desks", query_string={"organisation_id": org_a.id}, headers=staff).get_json()
    assert [d["label"] for d in listed["items"]] == ["B-13"]
    assert client.delete(f"/api/v1/desks/{listed['items'][0]['id']}", headers=staff).status_code == 204
    assert held() == [0, 0]


def test_desk_bad_input(client, staff, make_site, make_org, count):
    from node.spaces.models import Desk

    site = make_site()
    cases = [
        ({"label": "B-1"}, 422),
        ({"site_id": site, "label": ""}, 422),
        ({"site_id": site, "label": "B-1", "organisation_id": "3"}, 422),
        ({"site_id": 999, "label": "B-1"}, 404),
        ({"site_id": site, "label": "B-1", "organisation_id": 999}, 404),
    ]
    for body, expected in cases:
        assert client.post("/api/v1/desks", json=body, headers=staff).status_code == expected, body
    assert count(Desk) == 0
    assert client.patch("/api/v1/desks/999", json={"label": "x"}, headers=staff).status_code == 404
    assert client.delete("/api/v1/desks/999", headers=staff).status_code == 404
