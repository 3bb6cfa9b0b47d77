"""The office manager's dashboard: one-click decisions, the occupancy chart, who must sign, email
waiting, federation health; and adding member organisations."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select

from tests.web.remote import add_remote


def _booking(app, booking_id):
    from node.extensions import db
    from node.spaces.models import Booking

    with app.app_context():
        booking = db.session.get(Booking, booking_id)
        return booking.status, booking.requester_email


def _mail_to(app, address):
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    with app.app_context():
        return [m.subject for m in db.session.scalars(select(OutgoingEmail).where(OutgoingEmail.to_address == address))]


def test_dashboard_lists_what_needs_doing(app, client, seeded, login):
    login(client, seeded.office_email)
    body = client.get("/office").get_data(as_text=True)
    assert "Nadia Benali" in body and "Marc Petit" in body  # the two requests
    assert "Collectif Nouvelles Voix" in body  # must sign the charter
    assert "Débat : le tirage au sort" in body  # coming events with registrations
    assert "lucie0@example.org" in body  # queued confirmation emails
    assert 'role="img"' in body and "<svg" in body  # the occupancy chart


def test_approve_and_refuse_in_one_click(app, client, seeded, login):
    login(client, seeded.office_email)
    first, second = seeded.booking_ids
    assert client.post(f"/office/bookings/{first}/approve").status_code == 302
    assert client.post(f"/office/bookings/{second}/refuse").status_code == 302
    assert _booking(app, first)[0] == "approved" and _booking(app, second)[0] == "refused"
    assert any("confirmée" in subject for subject in _mail_to(app, "nadia@asso-quartier.example"))
    assert any("refusée" in subject for subject in _mail_to(app, "marc@mairie.example"))
    client.get("/office")  # the flashed messages go with this page
    body = client.get("/office").get_data(as_text=True)
    requests = body.split('id="requests"')[1].split('id="approved"')[0]
    assert "Nadia Benali" not in requests  # no longer waiting...
    assert "Nadia Benali" in body.split('id="approved"')[1].split('id="occupancy"')[0]  # ...but confirmed
    again = client.post(f"/office/bookings/{second}/refuse")
    assert again.status_code == 302 and _booking(app, second)[0] == "refused"  # a message, not an error page


def test_members_cannot_decide(app, client, seeded, login):
    login(client, seeded.manager_email)
    assert client.post(f"/office/bookings/{seeded.booking_ids[0]}/approve").status_code == 403
    assert _booking(app, seeded.booking_ids[0])[0] == "pending"


def test_occupancy_chart_counts_hours_per_room_and_day(app, client, seeded, login):
    login(client, seeded.office_email)
    client.post(f"/office/bookings/{seeded.booking_ids[0]}/approve")  # 3 h in the big room, day +6
    day = seeded.today + timedelta(days=6)
    body = client.get(f"/office?week={day.isoformat()}").get_data(as_text=True)
    big_room = body.split('id="occupancy"')[1].split("Grande salle Olympe de Gouges", 2)[1]
    assert re.search(r"3\.0 h", big_room)


def test_week_occupancy_splits_bookings_across_days(app, seeded):
    from node.extensions import db
    from node.members.services import find_user_by_email
    from node.spaces.models import Booking
    from node.web.occupancy import week_occupancy

    monday = datetime(2031, 3, 3).date()
    with app.app_context():
        db.session.add(Booking(room_id=seeded.room_ids[1], requester_name="N", requester_email="n@example.org",
                               category="ngo", starts_at=datetime(2031, 3, 4, 21), ends_at=datetime(2031, 3, 5, 2),
                               status="approved"))
        db.session.add(Booking(room_id=seeded.room_ids[1], requester_name="P", requester_email="p@example.org",
                               category="ngo", starts_at=datetime(2031, 3, 6, 8), ends_at=datetime(2031, 3, 6, 10),
                               status="pending"))
        db.session.add(Booking(room_id=seeded.room_ids[1], requester_name="R", requester_email="r@example.org",
                               category="ngo", starts_at=datetime(2031, 3, 6, 12), ends_at=datetime(2031, 3, 6, 14),
                               status="refused"))
        db.session.commit()
        weeks = week_occupancy(find_user_by_email(seeded.office_email), monday)
        small = next(w for w in weeks if w.room.id == seeded.room_ids[1])
        # 21:00-02:00 UTC is 22:00-03:00 in Paris (winter): 2 h on Tuesday, 3 h on Wednesday.
        assert [round(d.approved, 2) for d in small.days] == [0, 2, 3, 0, 0, 0, 0]
        assert [round(d.pending, 2) for d in small.days] == [0, 0, 0, 2, 0, 0, 0]
        assert small.rate == round(100 * 7 / (12 * 7))
        chart = small.bars()
        assert len(chart["bars"]) == 7 and chart["bars"][2]["approved_h"] > chart["bars"][1]["approved_h"] > 0


def test_mail_and_federation_health(app, client, seeded, login):
    from node.extensions import db
    from node.fedi.models import Delivery, OutboxEntry
    from node.mail.models import OutgoingEmail

    add_remote(app)
    with app.app_context():
        db.session.add(OutgoingEmail(to_address="bounce@example.org", subject="Bonjour", body_text="x",
                                     status="failed", attempts=12, last_error="550 mailbox unavailable"))
        entry = OutboxEntry(activity_id="http://127.0.0.1:5000/activities/x", activity_type="Create",
                            object_id="http://127.0.0.1:5000/events/x", audience="public", activity={})
        db.session.add(entry)
        db.session.flush()
        db.session.add(Delivery(outbox_entry_id=entry.id, inbox_url="http://down.test/inbox", domain="down.test",
                                state="dead", attempts=8, last_error="connection refused"))
        db.session.commit()
    login(client, seeded.office_email)
    body = client.get("/office").get_data(as_text=True)
    assert "bounce@example.org" in body and "550 mailbox unavailable" in body
    assert "La Fabrique Commune" in body and "down.test" in body and "connection refused" in body
    assert "HALLES_SMTP_URL" in body  # queued mail and no server configured: say what to set


def test_office_adds_an_organisation(app, client, seeded, login):
    login(client, seeded.office_email)
    response = client.post("/office/organisations", data={"name": "Radio Quartier", "description": "Une radio.",
                                                          "resident": "y"})
    assert response.status_code == 302 and "/manage/organisations/" in response.headers["Location"]
    assert "Radio Quartier" in client.get("/office/organisations").get_data(as_text=True)
    assert client.post("/office/organisations", data={"name": ""}).status_code == 422
