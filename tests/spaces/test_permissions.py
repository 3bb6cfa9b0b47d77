"""Who may write what: every role against every write endpoint of the spaces API.

Roles: anonymous, a member of organisation A, the org_manager of A, the org_manager of B, the office
manager, an admin. A refused request (401/403) must leave the database exactly as it was."""

from __future__ import annotations

import pytest

from tests.spaces.conftest import paris, slot

ROLES = ("anonymous", "member", "manager_a", "manager_b", "office_manager", "admin")


def _expect(anonymous, member, manager_a, manager_b, office_manager, admin):
    return dict(zip(ROLES, (anonymous, member, manager_a, manager_b, office_manager, admin), strict=True))


STAFF_ONLY_CREATE = _expect(401, 403, 403, 403, 201, 201)
STAFF_ONLY_CHANGE = _expect(401, 403, 403, 403, 200, 200)
STAFF_ONLY_DELETE = _expect(401, 403, 403, 403, 204, 204)

#: endpoint key -> expected status per role
MATRIX = {
    "create_site": STAFF_ONLY_CREATE,
    "update_site": STAFF_ONLY_CHANGE,
    "delete_site": STAFF_ONLY_DELETE,
    "create_room": STAFF_ONLY_CREATE,
    "update_room": STAFF_ONLY_CHANGE,
    "delete_room": STAFF_ONLY_DELETE,
    "create_desk": STAFF_ONLY_CREATE,
    "assign_desk": STAFF_ONLY_CHANGE,
    "delete_desk": STAFF_ONLY_DELETE,
    "create_booking": _expect(401, 403, 201, 403, 201, 201),
    "approve_booking": STAFF_ONLY_CHANGE,
    "refuse_booking": STAFF_ONLY_CHANGE,
    "cancel_booking": _expect(401, 403, 200, 403, 200, 200),
    # Reads that need an account.
    "read_booking": _expect(401, 403, 200, 403, 200, 200),
    "list_bookings": _expect(401, 403, 200, 200, 200, 200),
    "list_desks": _expect(401, 200, 200, 200, 200, 200),
}


@pytest.fixture
def world(app, make_org, make_user, make_site, make_room, add_booking):
    org_a = make_org("Association A")
    org_b = make_org("Association B")
    headers = {"anonymous": {}}
    headers["member"] = make_user("member", org_a.id)[1]
    headers["manager_a"] = make_user("org_manager", org_a.id)[1]
    headers["manager_b"] = make_user("org_manager", org_b.id)[1]
    headers["office_manager"] = make_user("office_manager")[1]
    headers["admin"] = make_user("admin")[1]
    site = make_site()
    empty_site = make_site(name="Annexe")
    room = make_room(site)
    unbooked_room = make_room(site, name="Petite salle")
    booking = add_booking(room, paris(10, "10:00"), paris(10, "12:00"), organisation_id=org_a.id)

    from node.extensions import db
    from node.spaces.models import Desk

    with app.app_context():
        desk = Desk(site_id=site, label="B-1")
        db.session.add(desk)
        db.session.commit()
        desk_id = desk.id
    return {
        "org_a": org_a.id,
        "org_b": org_b.id,
        "headers": headers,
        "site": site,
        "empty_site": empty_site,
        "room": room,
        "unbooked_room": unbooked_room,
        "booking": booking,
        "desk": desk_id,
    }


def _request(client, key: str, world: dict, headers: dict):
    site, room, booking, desk = world["site"], world["room"], world["booking"], world["desk"]
    calls = {
        "create_site": ("post", "/api/v1/sites", {"name": "Nouveau lieu", "address": "1 rue X", "city": "Lyon"}),
        "update_site": ("patch", f"/api/v1/sites/{site}", {"opening_hours": "Mon-Sat 9:00-20:00"}),
        "delete_site": ("delete", f"/api/v1/sites/{world['empty_site']}", None),
        "create_room": ("post", "/api/v1/rooms", {"site_id": site, "name": "Salle 2", "capacity": 12}),
        "update_room": ("patch", f"/api/v1/rooms/{room}", {"capacity": 40}),
        "delete_room": ("delete", f"/api/v1/rooms/{world['unbooked_room']}", None),
        "create_desk": ("post", "/api/v1/desks", {"site_id": site, "label": "B-2"}),
        "assign_desk": ("patch", f"/api/v1/desks/{desk}", {"organisation_id": world["org_a"]}),
        "delete_desk": ("delete", f"/api/v1/desks/{desk}", None),
        "create_booking": (
            "post",
            "/api/v1/bookings",
            {"room_id": room, **slot(11, "14:00", "16:00"), "organisation_id": world["org_a"], "category": "ngo"},
        ),
        "approve_booking": ("post", f"/api/v1/bookings/{booking}/approve", None),
        "refuse_booking": ("post", f"/api/v1/bookings/{booking}/refuse", None),
        "cancel_booking": ("post", f"/api/v1/bookings/{booking}/cancel", None),
        "read_booking": ("get", f"/api/v1/bookings/{booking}", None),
        "list_bookings": ("get", "/api/v1/bookings", None),
        "list_desks": ("get", "/api/v1/desks", None),
    }
    method, url, body = calls[key]
    kwargs = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    return getattr(client, method)(url, **kwargs)


def _snapshot(app) -> dict:
    """Every spaces row, so a refused request can be shown to change nothing."""
    from sqlalchemy import select

    from node.extensions import db
    from node.mail.models import OutgoingEmail
    from node.spaces.models import Booking, Desk, Room, Site

    with app.app_context():
        state = {}
        for model in (Site, Room, Desk, Booking, OutgoingEmail):
            rows = db.session.scalars(select(model).order_by(model.id)).all()
            state[model.__tablename__] = [
                {c.name: getattr(row, c.name) for c in model.__table__.columns if c.name != "booking_seq"}
                for row in rows
            ]
        return state


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", list(MATRIX))
def test_permission_matrix(app, client, world, key, role):
    before = _snapshot(app)
    response = _request(client, key, world, world["headers"][role])
    expected = MATRIX[key][role]
    assert response.status_code == expected, (key, role, response.get_json())
    if expected in (401, 403):
        problem = response.get_json()
        assert response.mimetype == "application/problem+json"
        assert problem["status"] == expected and problem["detail"]
        assert _snapshot(app) == before


def test_org_manager_sees_only_their_organisations_bookings(client, world, add_booking):
    add_booking(world["room"], paris(12, "10:00"), paris(12, "11:00"), organisation_id=world["org_b"])
    mine = client.get("/api/v1/bookings", headers=world["headers"]["manager_a"]).get_json()["items"]
    assert [b["organisation_id"] for b in mine] == [world["org_a"]]
    theirs = client.get("/api/v1/bookings", headers=world["headers"]["manager_b"]).get_json()["items"]
    assert [b["organisation_id"] for b in theirs] == [world["org_b"]]
    everything = client.get("/api/v1/bookings", headers=world["headers"]["office_manager"]).get_json()["items"]
    assert len(everything) == 2
    asked_other = client.get(f"/api/v1/bookings?organisation_id={world['org_b']}",
                             headers=world["headers"]["manager_a"])
    assert asked_other.status_code == 403


def test_org_manager_books_for_own_organisation_by_default(client, world):
    response = client.post(
        "/api/v1/bookings",
        json={"room_id": world["room"], **slot(11, "09:00", "10:00"), "category": "ngo"},
        headers=world["headers"]["manager_a"],
    )
    assert response.status_code == 201
    booking = response.get_json()
    assert booking["organisation_id"] == world["org_a"]
    assert booking["status"] == "pending"
    assert booking["requester_organisation"] == "Association A"


def test_org_manager_cannot_book_for_another_organisation_or_none(client, world, count):
    from node.spaces.models import Booking

    before = count(Booking)
    for organisation_id in (world["org_b"], None):
        response = client.post(
            "/api/v1/bookings",
            json={"room_id": world["room"], **slot(11, "09:00", "10:00"), "category": "ngo",
                  "organisation_id": organisation_id},
            headers=world["headers"]["manager_a"],
        )
        assert response.status_code == 403
    assert count(Booking) == before


def test_only_staff_create_approved_bookings(client, world):
    response = client.post(
        "/api/v1/bookings",
        json={"room_id": world["room"], **slot(11, "09:00", "10:00"), "category": "ngo", "status": "approved"},
        headers=world["headers"]["manager_a"],
    )
    assert response.status_code == 403
    staff = client.post(
        "/api/v1/bookings",
        json={"room_id": world["room"], **slot(11, "09:00", "10:00"), "category": "ngo"},
        headers=world["headers"]["office_manager"],
    )
    assert staff.status_code == 201 and staff.get_json()["status"] == "approved"
    asked_pending = client.post(
        "/api/v1/bookings",
        json={"room_id": world["room"], **slot(11, "10:00", "11:00"), "category": "ngo", "status": "pending"},
        headers=world["headers"]["admin"],
    )
    assert asked_pending.get_json()["status"] == "pending"


def test_public_reads_need_no_account(client, world):
    for url in ("/api/v1/sites", f"/api/v1/sites/{world['site']}", "/api/v1/rooms", f"/api/v1/rooms/{world['room']}",
                f"/api/v1/rooms/{world['room']}/availability", f"/rooms/{world['room']}.ics"):
        assert client.get(url).status_code == 200, url


def test_inactive_rooms_listed_only_for_staff_who_ask(client, world):
    client.patch(f"/api/v1/rooms/{world['room']}", json={"active": False}, headers=world["headers"]["admin"])
    public = client.get("/api/v1/rooms?include_inactive=true").get_json()["items"]
    assert world["room"] not in [room["id"] for room in public]
    staff = client.get("/api/v1/rooms?include_inactive=true", headers=world["headers"]["admin"]).get_json()["items"]
    assert world["room"] in [room["id"] for room in staff]


def test_bad_token_is_401_with_advice(client, world):
    response = client.post("/api/v1/sites", json={"name": "x", "address": "y", "city": "z"},
                           headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert "token" in response.get_json()["detail"]
