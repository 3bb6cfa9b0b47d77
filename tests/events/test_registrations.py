"""Registration without an account, end to end over a real SMTP server: the link in the email confirms,
the waitlist is promoted on cancellation, erasure blanks the row, organisers export a CSV."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, text

from tests.events.conftest import event_body, links_in, paris


@pytest.fixture
def app(make_app, smtp_server):
    return make_app(HALLES_SMTP_URL=smtp_server.url)


@pytest.fixture
def deliver(app, smtp_server):
    """Send the queued emails through SMTP; returns every message received so far."""
    from node.mail.services import send_pending

    def _deliver() -> list:
        already = len(smtp_server.messages)
        with app.app_context():
            sent, failed = send_pending()
        assert failed == 0
        return smtp_server.wait_for(already + sent)

    return _deliver


def _register(client, event_id: str, name: str, email: str, **extra):
    return client.post(f"/api/v1/events/{event_id}/registrations", json={"name": name, "email": email, **extra})


def _body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def _row(app, email: str | None = None, registration_id: int | None = None) -> dict:
    from node.events.models import Registration
    from node.extensions import db

    with app.app_context():
        query = select(Registration)
        query = query.where(Registration.id == registration_id) if registration_id else query.where(
            Registration.email == email)
        registration = db.session.scalar(query)
        return {c.name: getattr(registration, c.name) for c in Registration.__table__.columns}


def test_register_confirm_by_the_emailed_link_waitlist_and_promotion(app, client, world, create_event, deliver):
    event = create_event(capacity=1, title="Ciné-débat jeunesse")
    created = _register(client, event["id"], "Inès Dupont", "ines@example.org")
    assert created.status_code == 201
    answer = created.get_json()
    assert answer["status"] == "pending"
    assert answer["remaining"] == 0  # her pending registration holds the place
    assert "token" not in created.get_data(as_text=True).lower()

    (message,) = deliver()
    assert message["To"] == "ines@example.org"
    assert "Ciné-débat jeunesse" in message["Subject"]
    links = links_in(_body(message))
    assert set(links) == {"confirm", "cancel", "erase"}
    confirm_url = next(line for line in _body(message).splitlines() if line.endswith("/confirm"))
    assert confirm_url.startswith("http://127.0.0.1:5000/registrations/")

    # Opening the link (or a mail scanner fetching it) changes nothing: it shows a button.
    page = client.get(urlsplit(confirm_url).path)
    assert page.status_code == 200
    assert b'method="post"' in page.data and "Ciné-débat jeunesse" in page.get_data(as_text=True)
    assert _row(app, "ines@example.org")["status"] == "pending"
    done = client.post(urlsplit(confirm_url).path)
    assert done.status_code == 200
    assert b'data-status="confirmed"' in done.data
    row = _row(app, "ines@example.org")
    assert row["status"] == "confirmed" and row["confirmed_at"] is not None
    # The token itself is not stored, only its SHA-256.
    assert links["confirm"] not in str(row.values())

    # A second person gets the waitlist when they confirm.
    assert _register(client, event["id"], "Yanis Benali", "yanis@example.org").status_code == 201
    second = links_in(_body(deliver()[-1]))
    waitlisted = client.post(f"/api/v1/registrations/{second['confirm']}/confirm")
    assert waitlisted.status_code == 200 and waitlisted.get_json()["status"] == "waitlisted"

    # Inès cancels through her link: Yanis is promoted and told by email.
    cancel_path = f"/registrations/{links['cancel']}/cancel"
    assert b"Annuler" in client.get(cancel_path).data
    assert client.post(cancel_path).status_code == 200
    assert _row(app, "ines@example.org")["status"] == "cancelled"
    assert _row(app, "yanis@example.org")["status"] == "confirmed"
    promoted = deliver()[-1]
    assert promoted["To"] == "yanis@example.org"
    assert "confirmed" in _body(promoted)


def test_erasure_blanks_the_row_and_frees_the_place(app, client, world, create_event, deliver):
    event = create_event(capacity=1)
    _register(client, event["id"], "Camille Martin", "camille@example.org")
    _register(client, event["id"], "Sacha Lévy", "sacha@example.org")
    first, second = (links_in(_body(m)) for m in deliver())
    client.post(f"/api/v1/registrations/{first['confirm']}/confirm")
    assert client.post(f"/api/v1/registrations/{second['confirm']}/confirm").get_json()["status"] == "waitlisted"
    camille_id = _row(app, "camille@example.org")["id"]

    page = client.get(f"/registrations/{first['erase']}/erase")
    assert page.status_code == 200 and _row(app, registration_id=camille_id)["name"] == "Camille Martin"
    erased = client.post(f"/registrations/{first['erase']}/erase")
    assert erased.status_code == 200 and b'data-status="erased"' in erased.data
    row = _row(app, registration_id=camille_id)
    assert (row["name"], row["email"], row["status"]) == ("", "", "cancelled")
    assert row["erased_at"] is not None
    from node.extensions import db

    with app.app_context():
        raw = db.session.execute(text("SELECT * FROM registrations WHERE id = :id"), {"id": camille_id}).one()
    assert not any("camille" in str(value).lower() for value in raw)
    # Nor does the mail about it keep her address, name or links; Sacha's mail is untouched.
    with app.app_context():
        mail = [row._mapping for row in db.session.execute(text("SELECT * FROM outgoing_emails"))]
    assert mail and not any("camille" in str(value).lower() for row in mail for value in row.values())
    assert any(row["to_address"] == "sacha@example.org" and "Sacha" in row["body_text"] for row in mail)
    assert _row(app, "sacha@example.org")["status"] == "confirmed"
    # Erasing again, or using the other links afterwards, is harmless.
    assert client.post(f"/api/v1/registrations/{first['erase']}/erase").get_json()["erased"] is True
    assert client.post(f"/api/v1/registrations/{first['cancel']}/cancel").status_code == 200
    assert client.post(f"/api/v1/registrations/{first['confirm']}/confirm").status_code == 409


def test_pending_holds_come_first_and_confirmation_is_idempotent(app, client, world, create_event, outbox):
    event = create_event(capacity=1)
    _register(client, event["id"], "Première", "first@example.org")
    _register(client, event["id"], "Seconde", "second@example.org")
    first, second = (links_in(body) for _, _, body in outbox())
    # The second confirms first, but the first one's pending registration holds the only place.
    assert client.post(f"/api/v1/registrations/{second['confirm']}/confirm").get_json()["status"] == "waitlisted"
    assert client.post(f"/api/v1/registrations/{first['confirm']}/confirm").get_json()["status"] == "confirmed"
    assert client.post(f"/api/v1/registrations/{first['confirm']}/confirm").get_json()["status"] == "confirmed"
    status = client.get(f"/api/v1/registrations/{first['confirm']}").get_json()
    assert status["email"] == "first@example.org" and status["event"]["id"] == event["id"]


def test_choosing_an_occurrence(client, world, create_event):
    event = create_event(rrule="FREQ=WEEKLY;COUNT=3", capacity=10)
    third = event["occurrences"][2]
    by_utc = _register(client, event["id"], "A", "a@example.org", occurrence=third["starts_at"])
    assert by_utc.get_json()["occurrence"]["starts_at"] == third["starts_at"]
    naive_local = third["local_start"][:19]
    by_local = _register(client, event["id"], "B", "b@example.org", occurrence=naive_local)
    assert by_local.status_code == 201
    assert by_local.get_json()["occurrence"]["local_start"] == third["local_start"]
    default = _register(client, event["id"], "C", "c@example.org")
    assert default.get_json()["occurrence"]["starts_at"] == event["occurrences"][0]["starts_at"]
    wrong = _register(client, event["id"], "D", "d@example.org", occurrence=paris(11, "19:00").isoformat())
    assert wrong.status_code == 422
    assert "not a start of this event" in wrong.get_json()["detail"]


def test_duplicates_cancelled_past_and_remote_events_are_refused(app, client, world, create_event, counts):
    event = create_event(rrule="FREQ=WEEKLY;COUNT=2")
    assert _register(client, event["id"], "Nour", "nour@example.org").status_code == 201
    before = counts()
    duplicate = _register(client, event["id"], "Nour bis", "NOUR@example.org")
    assert duplicate.status_code == 409
    assert "already registered" in duplicate.get_json()["detail"]
    assert counts() == before
    other = _register(client, event["id"], "Nour", "nour@example.org",
                      occurrence=event["occurrences"][1]["starts_at"])
    assert other.status_code == 201

    cancelled = create_event()
    client.post(f"/api/v1/events/{cancelled['id']}/cancel", headers=world["headers"]["manager_a"])
    past = client.post("/api/v1/events", json=event_body(days_ahead=-2, organiser_ids=[world["org_a"].id]),
                       headers=world["headers"]["admin"]).get_json()
    from tests.events.test_listing import _remote_event

    remote = _remote_event(app)
    before = counts()
    refused = _register(client, cancelled["id"], "Zoé", "zoe@example.org")
    assert refused.status_code == 409 and "cancelled" in refused.get_json()["detail"]
    over = _register(client, past["id"], "Zoé", "zoe@example.org")
    assert over.status_code == 409 and "over" in over.get_json()["detail"]
    past_occurrence = _register(client, past["id"], "Zoé", "zoe@example.org", occurrence=past["starts_at"])
    assert past_occurrence.status_code == 409
    elsewhere = _register(client, remote, "Zoé", "zoe@example.org")
    assert elsewhere.status_code == 409
    assert elsewhere.get_json()["registration_url"] == f"https://lyon.example/events/{remote}/register"
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "Sans adresse"}, 422),
        ({"email": "sans-nom@example.org"}, 422),
        ({"name": "  ", "email": "blank@example.org"}, 422),
        ({"name": "Mauvaise", "email": "not-an-email"}, 422),
        ({"name": "Trop", "email": "x@example.org", "comment": "hi"}, 422),
        ({"name": "Date", "email": "x@example.org", "occurrence": "lundi"}, 422),
        ({"name": 42, "email": "x@example.org"}, 422),
        ({"name": "x" * 201, "email": "x@example.org"}, 422),
    ],
)
def test_bad_registration_bodies_store_nothing(client, world, create_event, counts, body, status):
    event = create_event()
    before = counts()
    response = client.post(f"/api/v1/events/{event['id']}/registrations", json=body)
    assert response.status_code == status
    assert counts() == before


def test_bad_registration_requests_store_nothing(client, world, create_event, counts):
    event = create_event()
    before = counts()
    url = f"/api/v1/events/{event['id']}/registrations"
    assert client.post(url, data="name=x", content_type="application/x-www-form-urlencoded").status_code == 415
    assert client.post(url, data="{", content_type="application/json").status_code == 400
    for action in ("confirm", "cancel", "erase", "approve"):
        assert client.post(f"/api/v1/registrations/nope/{action}").status_code == 404, action
        assert client.get(f"/registrations/nope/{action}").status_code == 404, action
        assert client.post(f"/registrations/nope/{action}").status_code == 404, action
    assert client.get("/api/v1/registrations/nope").status_code == 404
    assert counts() == before


def test_organisers_list_and_export(app, client, world, create_event, outbox):
    event = create_event(capacity=5, rrule="FREQ=WEEKLY;COUNT=2")
    _register(client, event["id"], "=HYPERLINK(\"http://evil\")", "a@example.org")
    _register(client, event["id"], "Élodie Ñúñez", "e@example.org", occurrence=event["occurrences"][1]["starts_at"])
    _register(client, event["id"], "Efface Moi", "gone@example.org")
    links = links_in(outbox()[-1][2])
    client.post(f"/api/v1/registrations/{links['erase']}/erase")

    headers = world["headers"]["manager_a"]
    listed = client.get(f"/api/v1/events/{event['id']}/registrations", headers=headers).get_json()["items"]
    assert [r["email"] for r in listed] == ["a@example.org", "", "e@example.org"]
    only_second = client.get(f"/api/v1/events/{event['id']}/registrations",
                             query_string={"occurrence": event["occurrences"][1]["starts_at"]}, headers=headers)
    assert [r["name"] for r in only_second.get_json()["items"]] == ["Élodie Ñúñez"]

    response = client.get(f"/api/v1/events/{event['id']}/registrations.csv", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["name", "email", "status", "occurrence", "registered_at"]
    assert rows[1][0] == "'=HYPERLINK(\"http://evil\")"  # never a formula in a spreadsheet
    assert rows[1][1:3] == ["a@example.org", "pending"]
    assert rows[1][3] == event["occurrences"][0]["local_start"]
    assert rows[1][4].endswith("Z")
    assert rows[2][:3] == ["", "", "cancelled"]
    assert rows[3][:2] == ["Élodie Ñúñez", "e@example.org"]
    assert len(rows) == 4


def test_cancelling_or_moving_the_event_tells_the_registrants(app, client, world, create_event, outbox):
    headers = world["headers"]["manager_a"]
    event = create_event(capacity=1)
    _register(client, event["id"], "Malik", "malik@example.org")
    _register(client, event["id"], "Rose", "rose@example.org")
    malik, rose = (links_in(body) for _, _, body in outbox())
    client.post(f"/api/v1/registrations/{malik['confirm']}/confirm")
    client.post(f"/api/v1/registrations/{rose['confirm']}/confirm")

    # A larger room: the waitlist moves up.
    assert client.patch(f"/api/v1/events/{event['id']}", json={"capacity": 2}, headers=headers).status_code == 200
    assert _row(app, "rose@example.org")["status"] == "confirmed"
    # A new time: registrations follow and people are told.
    new_start = paris(10, "20:00")
    moved = client.patch(f"/api/v1/events/{event['id']}", json={
        "starts_at": new_start.isoformat(), "ends_at": paris(10, "22:00").isoformat()}, headers=headers)
    assert moved.status_code == 200
    from tests.events.conftest import utc_naive

    assert _row(app, "malik@example.org")["occurrence_starts_at"] == utc_naive(new_start)
    sent = outbox()
    assert any(to == "malik@example.org" and "horaire" in subject.lower() for to, subject, _ in sent)
    before = len(sent)
    assert client.post(f"/api/v1/events/{event['id']}/cancel", headers=headers).status_code == 200
    cancelled_mail = outbox()[before:]
    assert sorted(to for to, _, _ in cancelled_mail) == ["malik@example.org", "rose@example.org"]
    assert all("annulé" in subject.lower() for _, subject, _ in cancelled_mail)
    # Confirming on a cancelled event is refused.
    again = client.post(f"/api/v1/registrations/{malik['confirm']}/confirm")
    assert again.status_code == 200  # already confirmed: nothing to do


def test_an_exdate_cancels_the_registrations_of_that_date(app, client, world, create_event, outbox):
    event = create_event(rrule="FREQ=WEEKLY;COUNT=3")
    second = event["occurrences"][1]
    _register(client, event["id"], "Hugo", "hugo@example.org", occurrence=second["starts_at"])
    response = client.patch(f"/api/v1/events/{event['id']}", json={"exdates": [second["local_start"][:19]]},
                            headers=world["headers"]["manager_a"])
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["occurrences"]) == 2
    assert _row(app, "hugo@example.org")["status"] == "cancelled"
    assert "annulée" in outbox()[-1][2]
