"""Bookings: no overlap, the decisions (approve / refuse / cancel), listing, bad input, and the service
functions other domains call."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.spaces.conftest import paris, slot, utc_naive


@pytest.fixture
def staff(make_user):
    return make_user("office_manager")[1]


@pytest.fixture
def org_and_manager(make_org, make_user):
    org = make_org("Association Belleville")
    user_id, headers = make_user("org_manager", org.id)
    return org.id, headers


def post_booking(client, headers, room_id, start, end, day=7, **extra):
    body = {"room_id": room_id, **slot(day, start, end), "category": "ngo", **extra}
    return client.post("/api/v1/bookings", json=body, headers=headers)


# --- overlaps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("14:00", "16:00"),  # exact
        ("13:00", "14:30"),  # overlaps the start
        ("15:30", "17:00"),  # overlaps the end
        ("13:00", "17:00"),  # contains it
        ("14:30", "15:00"),  # inside it
    ],
)
def test_overlapping_booking_is_409_and_names_the_slot_in_paris_time(client, staff, room_id, count, start, end):
    from node.spaces.models import Booking

    assert post_booking(client, staff, room_id, "14:00", "16:00").status_code == 201
    response = post_booking(client, staff, room_id, start, end)
    assert response.status_code == 409
    problem = response.get_json()
    day = paris(7, "14:00").strftime("%Y-%m-%d")
    assert f"{day} 14:00 to 16:00 (Europe/Paris)" in problem["detail"]
    assert problem["conflict"]["starts_at_local"] == paris(7, "14:00").isoformat()
    assert count(Booking) == 1


def test_touching_edges_are_allowed(client, staff, room_id):
    assert post_booking(client, staff, room_id, "14:00", "16:00").status_code == 201
    assert post_booking(client, staff, room_id, "16:00", "18:00").status_code == 201
    assert post_booking(client, staff, room_id, "12:00", "14:00").status_code == 201


def test_pending_request_blocks_the_slot_too(client, org_and_manager, staff, room_id):
    _, manager = org_and_manager
    pending = post_booking(client, manager, room_id, "14:00", "16:00")
    assert pending.get_json()["status"] == "pending"
    conflict = post_booking(client, staff, room_id, "15:00", "17:00")
    assert conflict.status_code == 409 and "awaiting approval" in conflict.get_json()["detail"]


def test_other_rooms_are_independent(client, staff, make_room):
    first, second = make_room(), make_room(name="Salle 2")
    assert post_booking(client, staff, first, "14:00", "16:00").status_code == 201
    assert post_booking(client, staff, second, "14:00", "16:00").status_code == 201


@pytest.mark.parametrize("action", ["refuse", "cancel"])
def test_refused_or_cancelled_booking_frees_the_slot(client, org_and_manager, staff, room_id, action):
    _, manager = org_and_manager
    first = post_booking(client, manager, room_id, "14:00", "16:00").get_json()
    assert post_booking(client, staff, room_id, "14:00", "16:00").status_code == 409
    assert client.post(f"/api/v1/bookings/{first['id']}/{action}", headers=staff).status_code == 200
    assert post_booking(client, staff, room_id, "14:00", "16:00").status_code == 201


def test_approve_rechecks_overlaps(client, org_and_manager, staff, room_id, count):
    _, manager = org_and_manager
    first = post_booking(client, manager, room_id, "14:00", "16:00").get_json()
    client.post(f"/api/v1/bookings/{first['id']}/refuse", headers=staff)
    second = post_booking(client, manager, room_id, "15:00", "17:00").get_json()
    # The office manager changes her mind about the first request, but the slot is now held.
    response = client.post(f"/api/v1/bookings/{first['id']}/approve", headers=staff)
    assert response.status_code == 409
    assert "15:00 to 17:00" in response.get_json()["detail"]
    client.post(f"/api/v1/bookings/{second['id']}/cancel", headers=manager)
    approved = client.post(f"/api/v1/bookings/{first['id']}/approve", headers=staff)
    assert approved.status_code == 200 and approved.get_json()["status"] == "approved"


# --- decisions ------------------------------------------------------------------------------------


def test_approve_and_refuse_email_the_requester(app, client, org_and_manager, staff, room_id):
    from sqlalchemy import select

    from node.extensions import db
    from node.mail.models import OutgoingEmail

    _, manager = org_and_manager
    one = post_booking(client, manager, room_id, "09:00", "10:00").get_json()
    two = post_booking(client, manager, room_id, "10:00", "11:00").get_json()
    approved = client.post(f"/api/v1/bookings/{one['id']}/approve", json={"message": "Les clés sont à l'accueil."},
                           headers=staff)
    assert approved.status_code == 200
    body = approved.get_json()
    assert body["decided_by_id"] is not None and body["decided_at"].endswith("Z")
    refused = client.post(f"/api/v1/bookings/{two['id']}/refuse", headers=staff)
    assert refused.get_json()["status"] == "refused"
    with app.app_context():
        mails = db.session.scalars(select(OutgoingEmail).order_by(OutgoingEmail.id)).all()
        assert [m.to_address for m in mails] == [one["requester_email"], two["requester_email"]]
        assert "approved" in mails[0].subject and "Les clés sont à l'accueil." in mails[0].body_text
        assert "09:00 to 10:00 (Europe/Paris)" in mails[0].body_text
        assert "declined" in mails[1].subject


@pytest.mark.parametrize(
    ("status", "action"),
    [("approved", "approve"), ("approved", "refuse"), ("cancelled", "approve"), ("cancelled", "cancel"),
     ("refused", "refuse"), ("refused", "cancel")],
)
def test_impossible_transitions_are_409(client, staff, room_id, add_booking, booking_row, status, action):
    booking = add_booking(room_id, paris(7, "10:00"), paris(7, "11:00"), status=status)
    response = client.post(f"/api/v1/bookings/{booking}/{action}", headers=staff)
    assert response.status_code == 409
    assert response.get_json()["detail"]
    assert booking_row(booking)["status"] == status


def test_decision_on_unknown_booking_is_404(client, staff):
    for action in ("approve", "refuse", "cancel"):
        assert client.post(f"/api/v1/bookings/9999/{action}", headers=staff).status_code == 404
    assert client.get("/api/v1/bookings/9999", headers=staff).status_code == 404


def test_decision_body_is_validated(client, staff, room_id, add_booking, booking_row):
    booking = add_booking(room_id, paris(7, "10:00"), paris(7, "11:00"))
    url = f"/api/v1/bookings/{booking}/approve"
    assert client.post(url, data="yes", content_type="text/plain", headers=staff).status_code == 415
    assert client.post(url, data="{", content_type="application/json", headers=staff).status_code == 400
    assert client.post(url, json={"message": 3}, headers=staff).status_code == 422
    assert client.post(url, json={"reason": "typo"}, headers=staff).status_code == 422
    assert booking_row(booking)["status"] == "pending"


# --- creation input -------------------------------------------------------------------------------


def test_requester_defaults_to_the_acting_user(client, make_user, room_id):
    _, headers = make_user("office_manager", email="bureau@halles.example")
    booking = post_booking(client, headers, room_id, "14:00", "15:00").get_json()
    assert booking["requester_email"] == "bureau@halles.example"
    assert booking["requester_name"].startswith("Person")
    override = post_booking(client, headers, room_id, "15:00", "16:00", requester_name="Aïcha Benali",
                            requester_email="aicha@asso.example", requester_organisation="Asso du 20e").get_json()
    assert (override["requester_name"], override["requester_email"]) == ("Aïcha Benali", "aicha@asso.example")
    assert override["requester_organisation"] == "Asso du 20e"


def test_output_times_are_utc_with_z_and_local(client, staff, room_id):
    booking = post_booking(client, staff, room_id, "14:00", "15:00").get_json()
    assert booking["starts_at"] == utc_naive(paris(7, "14:00")).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert booking["starts_at_local"] == paris(7, "14:00").isoformat()


def _bad_bodies(room_id: int, organisation_id: int) -> list[tuple[str, object, int]]:
    good = {"room_id": room_id, **slot(7, "14:00", "16:00"), "category": "ngo"}

    def but(**changes):
        body = dict(good)
        for key, value in changes.items():
            if value is ...:
                body.pop(key)
            else:
                body[key] = value
        return body

    return [
        ("missing room", but(room_id=...), 422),
        ("missing start", but(starts_at=...), 422),
        ("missing category", but(category=...), 422),
        ("room as string", but(room_id=str(room_id)), 422),
        ("room as bool", but(room_id=True), 422),
        ("start as number", but(starts_at=1700000000), 422),
        ("naive start", but(starts_at=paris(7, "14:00").replace(tzinfo=None).isoformat()), 422),
        ("date only", but(starts_at=paris(7, "14:00").date().isoformat()), 422),
        ("garbage date", but(ends_at="tomorrow"), 422),
        ("end before start", but(**slot(7, "16:00", "14:00")), 422),
        ("zero length", but(**slot(7, "14:00", "14:00")), 422),
        ("seconds", but(starts_at=paris(7, "14:00").replace(second=30).isoformat()), 422),
        ("too long", but(ends_at=(paris(7, "14:00") + timedelta(days=15)).isoformat()), 422),
        ("unknown category", but(category="friends"), 422),
        ("unknown field", but(colour="blue"), 422),
        ("bad email", but(requester_email="not-an-email"), 422),
        ("bad status", but(status="refused"), 422),
        ("unknown room", but(room_id=99999), 404),
        ("unknown organisation", but(organisation_id=99999), 404),
        ("organisation as string", but(organisation_id=str(organisation_id)), 422),
        ("array body", [good], 400),
    ]


def test_bad_input_is_refused_and_changes_nothing(client, staff, room_id, make_org, count):
    from node.mail.models import OutgoingEmail
    from node.spaces.models import Booking, Room

    org = make_org()
    for name, body, expected in _bad_bodies(room_id, org.id):
        response = client.post("/api/v1/bookings", json=body, headers=staff)
        assert response.status_code == expected, (name, response.get_json())
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["detail"], name
    assert count(Booking) == 0 and count(OutgoingEmail) == 0
    assert count(Room) == 1


def test_naive_time_message_says_how_to_fix_it(client, staff, room_id):
    body = {"room_id": room_id, **slot(7, "14:00", "16:00"), "category": "ngo"}
    body["starts_at"] = "2030-03-02T14:00:00"
    detail = client.post("/api/v1/bookings", json=body, headers=staff).get_json()["detail"]
    assert "starts_at" in detail and "+01:00" in detail


def test_non_json_and_oversized_bodies(client, staff, room_id, count):
    from node.spaces.models import Booking

    response = client.post("/api/v1/bookings", data="room=1", content_type="application/x-www-form-urlencoded",
                           headers=staff)
    assert response.status_code == 415
    assert client.post("/api/v1/bookings", data="{not json", content_type="application/json",
                       headers=staff).status_code == 400
    huge = '{"purpose": "' + "x" * 1_100_000 + '"}'
    oversized = client.post("/api/v1/bookings", data=huge, content_type="application/json", headers=staff)
    assert oversized.status_code == 413
    assert "bytes" in oversized.get_json()["detail"]
    assert count(Booking) == 0


def test_past_bookings_only_for_staff(client, org_and_manager, staff, room_id):
    _, manager = org_and_manager
    past = {"room_id": room_id, **slot(-3, "14:00", "16:00"), "category": "ngo"}
    refused = client.post("/api/v1/bookings", json=past, headers=manager)
    assert refused.status_code == 422 and "past" in refused.get_json()["detail"]
    # Staff record a use that already happened (e.g. a walk-in meeting, entered afterwards).
    assert client.post("/api/v1/bookings", json=past, headers=staff).status_code == 201


def test_inactive_room_cannot_be_booked(client, staff, room_id):
    client.patch(f"/api/v1/rooms/{room_id}", json={"active": False}, headers=staff)
    response = post_booking(client, staff, room_id, "14:00", "15:00")
    assert response.status_code == 422 and "no longer offered" in response.get_json()["detail"]


# --- listing --------------------------------------------------------------------------------------


def test_list_filters_and_pages(client, staff, make_room, add_booking):
    room_a, room_b = make_room(), make_room(name="Salle B")
    ids = [add_booking(room_a, paris(3 + i, "10:00"), paris(3 + i, "11:00"), status="approved") for i in range(5)]
    add_booking(room_b, paris(3, "10:00"), paris(3, "11:00"), status="cancelled")

    everything = client.get("/api/v1/bookings", headers=staff).get_json()
    assert len(everything["items"]) == 6 and everything["next_cursor"] is None

    by_room = client.get(f"/api/v1/bookings?room_id={room_b}", headers=staff).get_json()["items"]
    assert [b["room_id"] for b in by_room] == [room_b]
    cancelled = client.get("/api/v1/bookings?status=cancelled", headers=staff).get_json()["items"]
    assert [b["status"] for b in cancelled] == ["cancelled"]

    window = {"from": paris(4, "00:00").isoformat(), "to": paris(6, "00:00").isoformat()}
    in_window = client.get("/api/v1/bookings", query_string=window, headers=staff).get_json()["items"]
    assert [b["id"] for b in in_window] == ids[1:3]

    seen, cursor = [], None
    while True:
        query = {"room_id": room_a, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/bookings", query_string=query, headers=staff).get_json()
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "lost"}, 422),
        ({"limit": 0}, 422),
        ({"limit": 1000}, 422),
        ({"room_id": "abc"}, 422),
        ({"from": "2030-01-01T00:00:00"}, 422),
        ({"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, 422),
        ({"cursor": "not-a-cursor"}, 400),
    ],
)
def test_list_bad_queries(client, staff, query, expected):
    response = client.get("/api/v1/bookings", query_string=query, headers=staff)
    assert response.status_code == expected
    assert response.get_json()["detail"]


# --- services other domains call ------------------------------------------------------------------


def _make_event(title="Débat citoyen") -> int:
    import uuid

    from node.events.models import Event
    from node.extensions import db

    event_uuid = str(uuid.uuid4())
    event = Event(uuid=event_uuid, ap_id=f"http://127.0.0.1:5000/events/{event_uuid}", title=title,
                  starts_at=utc_naive(paris(8, "18:00")), ends_at=utc_naive(paris(8, "21:00")))
    db.session.add(event)
    db.session.flush()
    return event.id


def test_book_room_for_an_event_and_cancel_with_it(app_ctx, make_user, room_id):
    from node.common.errors import Conflict, NotFound
    from node.extensions import db
    from node.members.models import User
    from node.spaces.models import Booking
    from node.spaces.services import book_room, cancel_bookings_for_event

    user_id, _ = make_user("office_manager")
    actor = db.session.get(User, user_id)
    event_id = _make_event()
    start, end = utc_naive(paris(8, "18:00")), utc_naive(paris(8, "21:00"))
    booking = book_room(actor, room_id, start, end, organisation_id=None, category="public_service",
                        purpose="Débat citoyen", event_id=event_id)
    db.session.commit()
    assert (booking.status, booking.event_id, booking.price_cents) == ("approved", event_id, 6000)

    with pytest.raises(Conflict):
        book_room(actor, room_id, start + timedelta(hours=1), end, organisation_id=None, category="ngo")
    db.session.rollback()
    with pytest.raises(NotFound):
        book_room(actor, 99999, start, end, organisation_id=None, category="ngo")
    db.session.rollback()
    with pytest.raises(NotFound):
        book_room(actor, room_id, start - timedelta(days=1), end - timedelta(days=1), organisation_id=None,
                  category="ngo", event_id=424242)
    db.session.rollback()

    assert cancel_bookings_for_event(event_id) == 1
    db.session.commit()
    assert db.session.get(Booking, booking.id).status == "cancelled"
    assert cancel_bookings_for_event(event_id) == 0
    # The slot is free again.
    book_room(actor, room_id, start, end, organisation_id=None, category="ngo")
    db.session.commit()


def test_book_room_for_org_manager_is_pending_and_checks_permissions(app_ctx, make_org, make_user, room_id):
    from node.common.errors import Forbidden, Unauthorized
    from node.extensions import db
    from node.members.models import User
    from node.spaces.services import book_room

    org, other = make_org(), make_org()
    manager = db.session.get(User, make_user("org_manager", org.id)[0])
    start, end = utc_naive(paris(9, "10:00")), utc_naive(paris(9, "11:00"))
    booking = book_room(manager, room_id, start, end, organisation_id=org.id, category="ngo")
    assert booking.status == "pending" and booking.created_by_id == manager.id
    db.session.rollback()
    with pytest.raises(Forbidden):
        book_room(manager, room_id, start, end, organisation_id=other.id, category="ngo")
    with pytest.raises(Unauthorized):
        book_room(None, room_id, start, end, organisation_id=org.id, category="ngo")
