"""An event in a room books it through the spaces service: every coming occurrence, re-booked when the
dates or the room change, released on cancel and delete; a taken slot is a 409 that stores nothing."""

from __future__ import annotations

from sqlalchemy import select

from tests.events.conftest import event_body, paris, utc_naive


def _bookings(app, **where) -> list[dict]:
    from node.extensions import db
    from node.spaces.models import Booking

    with app.app_context():
        query = select(Booking).order_by(Booking.starts_at, Booking.id)
        for key, value in where.items():
            query = query.where(getattr(Booking, key) == value)
        return [
            {"id": b.id, "room_id": b.room_id, "event_id": b.event_id, "status": b.status, "category": b.category,
             "organisation_id": b.organisation_id, "starts_at": b.starts_at, "ends_at": b.ends_at}
            for b in db.session.scalars(query)
        ]


def _event_row_id(app, event_uuid: str) -> int:
    from node.events.models import Event
    from node.extensions import db

    with app.app_context():
        return db.session.scalar(select(Event.id).where(Event.uuid == event_uuid))


def test_a_room_event_books_every_occurrence_and_copies_the_address(app, client, world, make_room):
    room_id = make_room()
    body = event_body(location_kind="room", room_id=room_id, address="", city="", rrule="FREQ=WEEKLY;COUNT=3",
                      organiser_ids=[world["org_a"].id])
    response = client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"])
    assert response.status_code == 201, response.get_json()
    event = response.get_json()
    assert event["location"] == {
        "kind": "room", "room_id": room_id, "place_name": "Salle Olympe de Gouges — Les Halles Civiques — Belleville",
        "address": "12 rue de Belleville", "postal_code": "75020", "city": "Paris", "latitude": 48.8722,
        "longitude": 2.3767, "online_url": None,
    }
    bookings = _bookings(app, event_id=_event_row_id(app, event["id"]))
    assert len(bookings) == 3
    assert [b["starts_at"] for b in bookings] == [utc_naive(paris(d, "19:00")) for d in (10, 17, 24)]
    # Booked by the organiser the manager belongs to, at the resident tariff (A is resident), awaiting approval.
    assert {(b["room_id"], b["organisation_id"], b["category"], b["status"]) for b in bookings} == {
        (room_id, world["org_a"].id, "resident_member", "pending")
    }


def test_staff_bookings_are_approved(app, client, world, make_room):
    room_id = make_room()
    body = event_body(location_kind="room", room_id=room_id, organiser_ids=[world["org_b"].id])
    response = client.post("/api/v1/events", json=body, headers=world["headers"]["office_manager"])
    assert response.status_code == 201
    (booking,) = _bookings(app, event_id=_event_row_id(app, response.get_json()["id"]))
    assert (booking["status"], booking["category"], booking["organisation_id"]) == (
        "approved", "member", world["org_b"].id)


def test_a_taken_slot_is_a_409_and_nothing_is_stored(app, client, world, make_room, counts):
    from node.extensions import db
    from node.spaces.models import Booking

    room_id = make_room()
    with app.app_context():
        db.session.add(Booking(room_id=room_id, requester_name="Voisins", requester_email="v@example.org",
                               category="ngo", starts_at=utc_naive(paris(17, "20:00")),
                               ends_at=utc_naive(paris(17, "22:00")), status="approved"))
        db.session.commit()
    before = counts()
    body = event_body(location_kind="room", room_id=room_id, rrule="FREQ=WEEKLY;COUNT=3",
                      organiser_ids=[world["org_a"].id])
    response = client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"])
    assert response.status_code == 409
    problem = response.get_json()
    assert "cannot book the room" in problem["detail"]
    assert paris(17, "19:00").strftime("%Y-%m-%d 19:00") in problem["detail"]
    assert problem["conflict"]["status"] == "approved"
    assert counts() == before


def test_changing_the_dates_rebooks_and_a_title_change_does_not(app, client, world, make_room):
    room_id = make_room()
    body = event_body(location_kind="room", room_id=room_id, rrule="FREQ=WEEKLY;COUNT=2",
                      organiser_ids=[world["org_a"].id])
    event = client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"]).get_json()
    event_row = _event_row_id(app, event["id"])
    first = _bookings(app, event_id=event_row)
    url = f"/api/v1/events/{event['id']}"
    headers = world["headers"]["manager_a"]
    assert client.patch(url, json={"title": "Nouveau titre"}, headers=headers).status_code == 200
    assert _bookings(app, event_id=event_row) == first

    moved = client.patch(url, json={"starts_at": paris(11, "18:00").isoformat(),
                                    "ends_at": paris(11, "20:00").isoformat()}, headers=headers)
    assert moved.status_code == 200, moved.get_json()
    after = _bookings(app, event_id=event_row)
    assert [b["status"] for b in after if b["id"] in {f["id"] for f in first}] == ["cancelled", "cancelled"]
    live = [b for b in after if b["status"] == "pending"]
    assert [b["starts_at"] for b in live] == [utc_naive(paris(11, "18:00")), utc_naive(paris(18, "18:00"))]


def test_a_move_onto_a_taken_slot_changes_nothing(app, client, world, make_room, counts):
    from node.extensions import db
    from node.spaces.models import Booking

    room_id = make_room()
    event = client.post("/api/v1/events", json=event_body(location_kind="room", room_id=room_id,
                                                          organiser_ids=[world["org_a"].id]),
                        headers=world["headers"]["manager_a"]).get_json()
    with app.app_context():
        db.session.add(Booking(room_id=room_id, requester_name="Voisins", requester_email="v@example.org",
                               category="ngo", starts_at=utc_naive(paris(12, "10:00")),
                               ends_at=utc_naive(paris(12, "12:00")), status="pending"))
        db.session.commit()
    url = f"/api/v1/events/{event['id']}"
    snapshot, bookings, before = client.get(url).get_json(), _bookings(app), counts()
    response = client.patch(url, json={"starts_at": paris(12, "11:00").isoformat(),
                                       "ends_at": paris(12, "13:00").isoformat()},
                            headers=world["headers"]["manager_a"])
    assert response.status_code == 409
    assert client.get(url).get_json() == snapshot
    assert _bookings(app) == bookings
    assert counts() == before


def test_cancel_and_delete_release_the_room(app, client, world, make_room):
    room_id = make_room()
    headers = world["headers"]["manager_a"]
    body = event_body(location_kind="room", room_id=room_id, rrule="FREQ=WEEKLY;COUNT=2",
                      organiser_ids=[world["org_a"].id])
    cancelled = client.post("/api/v1/events", json=body, headers=headers).get_json()
    cancelled_row = _event_row_id(app, cancelled["id"])
    assert client.post(f"/api/v1/events/{cancelled['id']}/cancel", headers=headers).status_code == 200
    assert {b["status"] for b in _bookings(app, event_id=cancelled_row)} == {"cancelled"}

    # The slot is free again: the same event can be published anew.
    deleted = client.post("/api/v1/events", json=body, headers=headers).get_json()
    deleted_row = _event_row_id(app, deleted["id"])
    assert len(_bookings(app, event_id=deleted_row)) == 2
    assert client.delete(f"/api/v1/events/{deleted['id']}", headers=headers).status_code == 204
    # Kept for history, detached from the deleted event, no longer holding the room.
    assert _bookings(app, event_id=deleted_row) == []
    assert [b["status"] for b in _bookings(app, room_id=room_id) if b["event_id"] is None] == ["cancelled"] * 2


def test_uncancelling_and_moving_into_a_room_book_it(app, client, world, make_room):
    room_id = make_room()
    headers = world["headers"]["manager_a"]
    event = client.post("/api/v1/events", json=event_body(organiser_ids=[world["org_a"].id]),
                        headers=headers).get_json()
    row = _event_row_id(app, event["id"])
    assert _bookings(app, event_id=row) == []
    url = f"/api/v1/events/{event['id']}"
    assert client.patch(url, json={"location_kind": "room", "room_id": room_id}, headers=headers).status_code == 200
    assert [b["status"] for b in _bookings(app, event_id=row)] == ["pending"]
    assert client.post(f"{url}/cancel", headers=headers).status_code == 200
    assert client.patch(url, json={"status": "confirmed"}, headers=headers).status_code == 200
    assert sorted(b["status"] for b in _bookings(app, event_id=row)) == ["cancelled", "pending"]


def test_an_inactive_room_cannot_host_events(app, client, world, make_room, counts):
    room_id = make_room(active=False)
    before = counts()
    response = client.post("/api/v1/events", json=event_body(location_kind="room", room_id=room_id),
                           headers=world["headers"]["manager_a"])
    assert response.status_code == 422
    assert "no longer offered" in response.get_json()["detail"]
    assert counts() == before
