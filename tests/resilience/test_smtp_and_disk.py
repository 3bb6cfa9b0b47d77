"""SMTP down then back: mail stays queued with its attempts recorded, then goes out once, exactly once.
A full database (SQLite ``max_page_count``): a clear 507 problem, the process keeps serving, nothing
stored before is lost, and writes work again once there is room."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text

from tests.network.test_inbox_security import create, event_object, signed
from tests.resilience import tally
from tests.resilience.support import create_local_event, event_body, make_admin, make_organisation
from tests.support.databases import backend
from tests.support.smtp import SmtpServer, _Collector, free_port


def mail_rows(app):
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    with app.app_context():
        return db.session.execute(
            select(OutgoingEmail.to_address, OutgoingEmail.status, OutgoingEmail.attempts, OutgoingEmail.last_error)
            .order_by(OutgoingEmail.id)).all()


class _RefusingCollector(_Collector):
    def __init__(self, refuse: int) -> None:
        super().__init__()
        self.refuse = refuse

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook name
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Temporary failure, try again later"
        return await super().handle_DATA(server, session, envelope)


class FlakySmtp(SmtpServer):
    """An SMTP server that answers 451 (try later) to the first ``refuse`` messages."""

    def __init__(self, port: int, refuse: int) -> None:
        self.port = port
        self.collector = _RefusingCollector(refuse)
        self.controller = Controller(self.collector, hostname="127.0.0.1", port=self.port)


def later(monkeypatch, minutes: float) -> None:
    """The mail queue's clock moves ``minutes`` ahead (its backoff is a minute and more)."""
    from node.common import timeutil
    from node.mail import services

    monkeypatch.setattr(services, "utcnow", lambda: timeutil.utcnow() + timedelta(minutes=minutes))


def test_mail_waits_for_smtp_to_come_back_and_goes_out_once(make_app, monkeypatch):
    from node import worker

    port = free_port()
    app = make_app(HALLES_SMTP_URL=f"smtp://127.0.0.1:{port}", HALLES_RATE_LIMIT_REGISTRATIONS="off")
    event = create_local_event(app, capacity=50)
    client = app.test_client()
    people = [f"citoyen{n}@example.org" for n in range(6)]
    for n, address in enumerate(people):
        response = client.post(f"/api/v1/events/{event}/registrations", json={"name": f"Citoyen {n}", "email": address})
        assert response.status_code == 201
    # SMTP is down: nothing listens on the port.
    worker.run_once(app)
    worker.run_once(app)  # too early for a retry: the backoff is respected
    rows = mail_rows(app)
    assert [row.to_address for row in rows] == people
    assert {(row.status, row.attempts) for row in rows} == {("queued", 1)}
    assert all("cannot reach SMTP server" in row.last_error for row in rows)
    tally.fault("SMTP down", 1)
    # It comes back, but refuses the first two messages for now (451).
    server = FlakySmtp(port, refuse=2).start()
    try:
        later(monkeypatch, 2)
        worker.run_once(app)
        rows = mail_rows(app)
        assert [row.status for row in rows].count("sent") == 4
        refused = [row for row in rows if row.status == "queued"]
        assert len(refused) == 2 and all(row.attempts == 2 and "451" in row.last_error for row in refused)
        tally.fault("SMTP temporary refusal", 2)
        later(monkeypatch, 10)
        worker.run_once(app)
        worker.run_once(app)
        server.wait_for(6)
    finally:
        server.stop()
    rows = mail_rows(app)
    assert {row.status for row in rows} == {"sent"}
    received = sorted(message["To"] for message in server.messages)
    assert received == sorted(people), "every message exactly once"
    tally.checked("queued emails", len(people))
    tally.lost(len(set(people) - set(received)))
    tally.duplicated(len(received) - len(set(received)))


# --- a full database -------------------------------------------------------------------------------


@pytest.fixture
def full_disk_app(make_app):
    """A SQLite node whose database may grow by only a few pages (``limit(pages)`` sets the room)."""
    if backend() != "sqlite":
        pytest.skip("max_page_count is SQLite's; PostgreSQL disk-full answers are covered by is_disk_full")
    from node.extensions import db

    app = make_app(HALLES_RATE_LIMIT_REGISTRATIONS="off", HALLES_RATE_LIMIT_INBOX="off")
    room = {"pages": None}
    with app.app_context():
        engine = db.engine

        @sa_event.listens_for(engine, "connect")
        def _cap(dbapi_connection, _record):
            if room["pages"] is not None:
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA max_page_count = {int(room['pages'])}")
                cursor.close()

    def limit(extra_pages: int | None) -> None:
        with app.app_context():
            if extra_pages is None:
                room["pages"] = 2**31 - 2
            else:
                used = db.session.execute(text("PRAGMA page_count")).scalar()
                room["pages"] = used + extra_pages
            db.session.remove()
            db.engine.dispose()  # new connections get the new cap

    app.limit_room = limit
    return app


def test_full_database_answers_507_and_loses_nothing(full_disk_app):
    from node.events.models import Event
    from node.extensions import db

    app = full_disk_app
    headers = make_admin(app)
    org_id = make_organisation(app)
    from tests.resilience.support import publish_and_sign_charter

    publish_and_sign_charter(app, [org_id])
    client = app.test_client()
    app.limit_room(12)
    created: list[str] = []
    refusal = None
    for n in range(200):
        body = event_body(title=f"Atelier {n}", description="x" * 3000, organiser_ids=[org_id])
        response = client.post("/api/v1/events", json=body, headers=headers)
        if response.status_code == 201:
            created.append(response.get_json()["id"])
            continue
        refusal = response
        break
    assert refusal is not None, "the database never filled up"
    tally.fault("database full", 1)
    assert refusal.status_code == 507, refusal.get_data(as_text=True)
    assert refusal.headers["Content-Type"].startswith("application/problem+json")
    assert "database is full" in refusal.get_json()["detail"]
    # Still serving, and everything stored before is there (and the refused event is not, even partly).
    for _ in range(3):
        listing = client.get("/api/v1/events", query_string={"limit": 100})
        assert listing.status_code == 200
    with app.app_context():
        titles = set(db.session.scalars(select(Event.title)))
        assert db.session.scalar(select(func.count(Event.id))) == len(created)
    assert titles == {f"Atelier {n}" for n in range(len(created))}
    # Registrations and inbox deliveries meet the same clean refusal, never a 500.
    if created:
        registration = client.post(f"/api/v1/events/{created[0]}/registrations",
                                   json={"name": "Camille", "email": "camille@example.org"})
        assert registration.status_code in (201, 507), registration.get_data(as_text=True)
    # The worker survives a full database too.
    from node import worker

    worker.run_once(app)
    # Room again: writes work.
    app.limit_room(None)
    again = client.post("/api/v1/events", json=event_body(title="Après", organiser_ids=[org_id]), headers=headers)
    assert again.status_code == 201, again.get_data(as_text=True)
    tally.checked("events kept through a full database", len(created))
    tally.lost(len(created) - len(titles))


def test_full_database_inbox_answers_507(make_node, monkeypatch):
    if backend() != "sqlite":
        pytest.skip("max_page_count is SQLite's")
    from node.extensions import db
    from node.fedi.models import InboxItem

    paris = make_node("Les Halles Civiques", "Paris", HALLES_RATE_LIMIT_INBOX="off")
    lyon = make_node("La Fabrique Commune", "Lyon")
    # Fill Paris up to its cap with a first activity (the key fetch stores Lyon's actor too).
    from tests.network.test_inbox_security import post

    assert post(paris, lyon, create(lyon, signed(lyon, event_object(lyon)))).status_code == 202

    def cap(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA page_count")
        used = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {used}")
        cursor.close()

    with paris.app.app_context():
        sa_event.listen(db.engine, "connect", cap)
        db.session.remove()
        db.engine.dispose()
    statuses = []
    for _ in range(20):
        big = create(lyon, signed(lyon, event_object(lyon, content="<p>" + "long text " * 2000 + "</p>")))
        statuses.append(post(paris, lyon, big))
        if statuses[-1].status_code != 202:
            break
    last = statuses[-1]
    assert last.status_code == 507, last.text
    assert "database is full" in last.json()["detail"]
    tally.fault("database full (inbox)", 1)
    accepted = sum(1 for response in statuses if response.status_code == 202)
    with paris.app.app_context():
        assert db.session.scalar(select(func.count(InboxItem.id))) == 1 + accepted
        sa_event.remove(db.engine, "connect", cap)
        db.session.remove()
        db.engine.dispose()
    # The sender retries later and it goes in.
    retry = post(paris, lyon, big)
    assert retry.status_code == 202
    assert requests.get(f"{paris.url}/actor", timeout=10).status_code == 200
    tally.checked("inbox items kept through a full database", 1 + accepted)


def test_postgres_disk_full_is_recognised_and_other_errors_are_not():
    from sqlalchemy.exc import OperationalError

    from node.common.problems import is_disk_full

    class DiskFull(Exception):
        sqlstate = "53100"

    class Deadlock(Exception):
        sqlstate = "40P01"

    assert is_disk_full(OperationalError("INSERT", {}, DiskFull("could not extend file: No space left on device")))
    assert not is_disk_full(OperationalError("UPDATE", {}, Deadlock("deadlock detected")))
    assert not is_disk_full(OperationalError("SELECT", {}, Exception("database is locked")))
