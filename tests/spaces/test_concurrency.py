"""No double booking under real concurrency: a threaded HTTP server, simultaneous requests, one winner.

Each request uses its own user and token so nothing but the room lock can serialise them (on
PostgreSQL a shared token row would itself serialise the requests and hide a missing room lock)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from werkzeug.serving import make_server

from tests.spaces.conftest import paris

CONCURRENT_REQUESTS = 12


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture(autouse=True)
def slow_overlap_check(monkeypatch):
    """Widen the race window: pause between the overlap check and the insert. Without the room lock,
    every concurrent request would see a free slot during the pause and insert; with it, they queue."""
    import time

    from node.spaces import services

    original = services._first_overlap

    def slow(*args, **kwargs):
        found = original(*args, **kwargs)
        time.sleep(0.05)
        return found

    monkeypatch.setattr(services, "_first_overlap", slow)


@pytest.fixture
def tokens(make_org, make_user):
    """One token per request: half office managers, half managers of distinct organisations."""
    result = []
    for index in range(CONCURRENT_REQUESTS):
        if index % 2:
            org = make_org()
            result.append((org.id, make_user("org_manager", org.id)[1]))
        else:
            result.append((None, make_user("office_manager")[1]))
    return result


def _fire(url: str, bodies_and_headers: list[tuple[dict, dict]]) -> list[tuple[int, dict]]:
    barrier = threading.Barrier(len(bodies_and_headers))
    results: list[tuple[int, dict] | None] = [None] * len(bodies_and_headers)

    def worker(index: int, body: dict, headers: dict) -> None:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            response = session.post(url, json=body, headers=headers, timeout=60)
            results[index] = (response.status_code, response.json())

    threads = [threading.Thread(target=worker, args=(i, body, headers))
               for i, (body, headers) in enumerate(bodies_and_headers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert all(result is not None for result in results), "a request thread did not finish"
    return results  # type: ignore[return-value]


def _stored(app, room_id: int) -> list:
    from sqlalchemy import select

    from node.extensions import db
    from node.spaces.models import Booking

    with app.app_context():
        return db.session.execute(
            select(Booking.id, Booking.starts_at, Booking.ends_at).where(Booking.room_id == room_id)
        ).all()


def test_simultaneous_overlapping_requests_make_exactly_one_booking(app, live_server, room_id, tokens):
    base = paris(20, "14:00")
    requests_to_send = []
    for index, (organisation_id, headers) in enumerate(tokens):
        # Every slot contains 15:00-16:00, so any two of them overlap; the starts differ.
        start = base + timedelta(minutes=5 * index)
        body = {"room_id": room_id, "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=2)).isoformat(), "category": "ngo"}
        if organisation_id is not None:
            body["organisation_id"] = organisation_id
        requests_to_send.append((body, headers))

    results = _fire(f"{live_server}/api/v1/bookings", requests_to_send)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * (CONCURRENT_REQUESTS - 1), results
    assert all("already taken" in body["detail"] for status, body in results if status == 409)
    assert len(_stored(app, room_id)) == 1


def test_simultaneous_requests_on_two_rooms_make_one_booking_each(app, live_server, make_room, tokens):
    rooms = (make_room(name="Salle Nord"), make_room(name="Salle Sud"))
    start, end = paris(21, "09:00"), paris(21, "12:00")
    requests_to_send = []
    for index, (organisation_id, headers) in enumerate(tokens):
        body = {"room_id": rooms[index % 2], "starts_at": start.isoformat(), "ends_at": end.isoformat(),
                "category": "ngo", "organisation_id": organisation_id}
        requests_to_send.append((body, headers))

    results = _fire(f"{live_server}/api/v1/bookings", requests_to_send)

    assert sorted(status for status, _ in results) == [201, 201] + [409] * (CONCURRENT_REQUESTS - 2), results
    assert [len(_stored(app, room)) for room in rooms] == [1, 1]


def test_concurrent_approvals_of_overlapping_requests_approve_only_one(app, live_server, room_id, make_user,
                                                                       add_booking):
    """Two refused requests for the same slot, re-approved at once by two staff members: one wins."""
    first = add_booking(room_id, paris(22, "10:00"), paris(22, "12:00"), status="refused")
    second = add_booking(room_id, paris(22, "11:00"), paris(22, "13:00"), status="refused")
    staff = [make_user("office_manager")[1] for _ in range(2)]
    results = []
    barrier = threading.Barrier(2)

    def approve(booking_id: int, headers: dict) -> None:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            response = session.post(f"{live_server}/api/v1/bookings/{booking_id}/approve", headers=headers,
                                    timeout=60)
            results.append(response.status_code)

    threads = [threading.Thread(target=approve, args=args) for args in ((first, staff[0]), (second, staff[1]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert sorted(results) == [200, 409]

    from sqlalchemy import select

    from node.extensions import db
    from node.spaces.models import Booking

    with app.app_context():
        statuses = sorted(db.session.scalars(select(Booking.status).where(Booking.room_id == room_id)))
    assert statuses == ["approved", "refused"]


def test_simultaneous_guest_requests_through_the_service(app, room_id):
    """The public form's path has no token (so no earlier write): only the room lock serialises it."""
    from node.common.errors import Conflict
    from node.extensions import db
    from node.spaces.services import request_booking_as_guest

    base = paris(23, "14:00")
    barrier = threading.Barrier(CONCURRENT_REQUESTS)
    outcomes: list[str] = []

    def guest(index: int) -> None:
        start = base + timedelta(minutes=5 * index)
        with app.app_context():
            barrier.wait(timeout=30)
            try:
                request_booking_as_guest(room_id, start, start + timedelta(hours=2), name=f"Guest {index}",
                                         email=f"guest{index}@example.org", organisation_name="Collectif",
                                         category="ngo", purpose="Réunion")
                db.session.commit()
                outcomes.append("booked")
            except Conflict:
                db.session.rollback()
                outcomes.append("conflict")

    threads = [threading.Thread(target=guest, args=(i,)) for i in range(CONCURRENT_REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert sorted(outcomes) == ["booked"] + ["conflict"] * (CONCURRENT_REQUESTS - 1)
    assert len(_stored(app, room_id)) == 1
