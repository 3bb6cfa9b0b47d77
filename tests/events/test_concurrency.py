"""The last place goes to one person only: simultaneous confirmations over a threaded HTTP server."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server

CONCURRENT = 8


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def slow_count(monkeypatch):
    """Widen the race window between counting the places and writing the status: without the event
    lock every request would count a free place during the pause."""
    from node.events import registrations

    original = registrations.places_taken

    def slow(*args, **kwargs):
        taken = original(*args, **kwargs)
        time.sleep(0.05)
        return taken

    monkeypatch.setattr(registrations, "places_taken", slow)


def test_simultaneous_confirmations_take_the_last_place_once(app, client, world, create_event, outbox, live_server,
                                                              slow_count):
    from node.events.models import Registration
    from node.extensions import db
    from tests.events.conftest import links_in

    event = create_event(capacity=1)
    for n in range(CONCURRENT):
        response = client.post(f"/api/v1/events/{event['id']}/registrations",
                               json={"name": f"Personne {n}", "email": f"p{n}@example.org"})
        assert response.status_code == 201
    tokens = [links_in(body)["confirm"] for _, _, body in outbox()]
    with app.app_context():
        # Every pending hold has lapsed: nobody has priority, the lock alone decides.
        for registration in db.session.scalars(select(Registration)):
            registration.created_at -= timedelta(days=3)
        db.session.commit()

    barrier = threading.Barrier(CONCURRENT)
    statuses: list[int | None] = [None] * CONCURRENT

    def confirm(index: int) -> None:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            response = session.post(f"{live_server}/api/v1/registrations/{tokens[index]}/confirm", timeout=60)
            statuses[index] = response.status_code

    threads = [threading.Thread(target=confirm, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert statuses == [200] * CONCURRENT
    with app.app_context():
        result = sorted(db.session.scalars(select(Registration.status)))
    assert result == ["confirmed"] + ["waitlisted"] * (CONCURRENT - 1)
