"""Cancelling an approved booking (office manager, or the manager of the booking's organisation) and
cancelling or deleting an event, each behind a confirmation page that works without JavaScript: who may,
what changes, and what the visitor sees afterwards (the freed slot, the event gone, its page 410)."""

from __future__ import annotations

from datetime import time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from tests.web.remote import add_remote

DEBATE = "Débat : le tirage au sort peut-il sauver la démocratie locale ?"


def _booking(app, booking_id):
    from node.extensions import db
    from node.spaces.models import Booking

    with app.app_context():
        booking = db.session.get(Booking, booking_id)
        return {"status": booking.status, "event_id": booking.event_id}


def _mail(app, address):
    from node.extensions import db
    from node.mail.models import OutgoingEmail

    with app.app_context():
        return [(m.subject, m.body_text) for m in
                db.session.scalars(select(OutgoingEmail).where(OutgoingEmail.to_address == address))]


def _count(app, model, *where) -> int:
    from node.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _room_week(client, seeded, day) -> str:
    return client.get(f"/rooms/{seeded.room_ids[0]}?week={day.isoformat()}").get_data(as_text=True)


# --- bookings -------------------------------------------------------------------------------------


def test_office_manager_cancels_an_approved_booking_after_confirming(app, client, seeded, login):
    from node.spaces.models import Booking

    login(client, seeded.office_email)
    booking = seeded.booking_ids[0]  # Nadia, big room, day +6, 14:00-17:00
    day = seeded.today + timedelta(days=6)
    client.post(f"/office/bookings/{booking}/approve")
    assert "14:00–17:00" in _room_week(client, seeded, day)  # taken

    dashboard = client.get("/office").get_data(as_text=True)
    confirmed = dashboard.split('id="approved"')[1].split('id="occupancy"')[0]
    assert "Nadia Benali" in confirmed and f"/manage/bookings/{booking}/cancel" in confirmed

    page = client.get(f"/manage/bookings/{booking}/cancel?next=/office%23approved")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Nadia Benali" in body and "Grande salle Olympe de Gouges" in body and 'name="message"' in body
    assert _booking(app, booking)["status"] == "approved"  # looking at the page changes nothing

    done = client.post(f"/manage/bookings/{booking}/cancel",
                       data={"message": "La salle est en travaux ce jour-là.", "next": "/office#approved"})
    assert done.status_code == 302 and done.headers["Location"] == "/office#approved"
    assert _booking(app, booking)["status"] == "cancelled"
    cancelled = [body for subject, body in _mail(app, "nadia@asso-quartier.example") if "annulée" in subject]
    assert cancelled and "La salle est en travaux" in cancelled[0]
    assert "est libre" in client.get("/office").get_data(as_text=True)  # the flash says the slot is free

    # The slot shows as available again, and can be asked for again.
    assert "14:00–17:00" not in _room_week(client, seeded, day)
    before = _count(app, Booking)
    again = client.post(f"/rooms/{seeded.room_ids[0]}", data={
        "name": "Autre Asso", "email": "autre@asso.example", "category": "ngo", "day": day.isoformat(),
        "start": "14:00", "end": "17:00", "purpose": "Réunion"})
    assert again.status_code == 302 and _count(app, Booking) == before + 1


def test_organisation_manager_cancels_its_own_booking_only(app, client, seeded, login):
    from node.spaces.models import Booking

    login(client, seeded.manager_email)
    day = seeded.today + timedelta(days=20)
    response = client.post("/manage/bookings", data={
        "room_id": str(seeded.room_ids[1]), "category": "resident_member", "day": day.isoformat(),
        "start": "10:00", "end": "12:00", "purpose": "Réunion d'équipe"})
    assert response.status_code == 302
    with app.app_context():
        from node.extensions import db

        own = db.session.scalar(select(Booking.id).where(Booking.purpose == "Réunion d'équipe"))
    _approve(app, own)
    listing = client.get("/manage/bookings").get_data(as_text=True)
    assert f"/manage/bookings/{own}/cancel" in listing
    # A guest's request belongs to no organisation: only the office manager decides on it.
    guest = seeded.booking_ids[1]
    assert client.get(f"/manage/bookings/{guest}/cancel").status_code == 403
    assert client.post(f"/manage/bookings/{guest}/cancel").status_code == 403
    assert _booking(app, guest)["status"] == "pending"

    assert client.get(f"/manage/bookings/{own}/cancel").status_code == 200
    done = client.post(f"/manage/bookings/{own}/cancel", data={"next": "//evil.example/"})
    assert done.status_code == 302 and done.headers["Location"] == "/manage/bookings"  # no open redirect
    assert _booking(app, own)["status"] == "cancelled"

    # Already cancelled: the page says so and offers no button; posting again changes nothing.
    page = client.get(f"/manage/bookings/{own}/cancel").get_data(as_text=True)
    assert "ne peut plus être annulée" in page and "button-danger-solid" not in page
    assert client.post(f"/manage/bookings/{own}/cancel").status_code == 302
    assert _booking(app, own)["status"] == "cancelled"


def test_others_cannot_cancel_a_booking(app, client, seeded, login):
    from node.extensions import db
    from node.members.services import find_user_by_email
    from node.spaces import services as spaces

    with app.app_context():
        manager = find_user_by_email(seeded.manager_email)
        day = seeded.today + timedelta(days=22)
        booking = spaces.book_room(manager, seeded.room_ids[1], *_slot(app, day), category="resident_member",
                                   organisation_id=manager.organisation_id, purpose="Atelier")
        db.session.commit()
        booking_id = booking.id
    _approve(app, booking_id)
    assert client.get(f"/manage/bookings/{booking_id}/cancel").status_code == 302  # to the sign-in page
    for email in (seeded.unsigned_manager_email, seeded.member_email):
        other = app.test_client()
        login(other, email)
        assert other.get(f"/manage/bookings/{booking_id}/cancel").status_code == 403
        assert other.post(f"/manage/bookings/{booking_id}/cancel").status_code == 403
    assert _booking(app, booking_id)["status"] == "approved"


def _approve(app, booking_id) -> None:
    from node.extensions import db
    from node.members.services import find_user_by_email
    from node.spaces import services as spaces

    with app.app_context():
        spaces.approve_booking(find_user_by_email("accueil@halles.test"), booking_id)
        db.session.commit()
    assert _booking(app, booking_id)["status"] == "approved"


def _slot(app, day):
    from node.web.helpers import local_to_utc

    tz = ZoneInfo(app.config["HALLES_TIMEZONE"])
    return local_to_utc(day, time(10), tz), local_to_utc(day, time(12), tz)


# --- events: cancel and delete ----------------------------------------------------------------------


def test_cancel_and_delete_are_two_distinct_steps(client, seeded, login):
    login(client, seeded.manager_email)
    uuid = seeded.events["debate"]
    listing = client.get("/manage/events").get_data(as_text=True)
    assert f"/manage/events/{uuid}/cancel" in listing and f"/manage/events/{uuid}/delete" in listing
    cancel = client.get(f"/manage/events/{uuid}/cancel").get_data(as_text=True)
    delete = client.get(f"/manage/events/{uuid}/delete").get_data(as_text=True)
    assert "garde sa page" in cancel and "3 personnes inscrites" in cancel
    assert "disparaît" in delete and "irréversible" in delete
    assert f"/manage/events/{uuid}/cancel" in delete  # the delete page offers to cancel instead
    # The event page shows its managers both, and visitors neither.
    page = client.get(f"/events/{uuid}").get_data(as_text=True)
    assert f"/manage/events/{uuid}/delete" in page and f"/manage/events/{uuid}/cancel" in page
    assert "/delete" not in app_client_page(client, uuid)


def app_client_page(client, uuid) -> str:
    visitor = client.application.test_client()
    return visitor.get(f"/events/{uuid}").get_data(as_text=True)


def test_cancelling_keeps_the_page(app, client, seeded, login):
    login(client, seeded.manager_email)
    uuid = seeded.events["debate"]
    response = client.post(f"/manage/events/{uuid}/cancel", data={"next": f"/events/{uuid}"})
    assert response.status_code == 302 and response.headers["Location"] == f"/events/{uuid}"
    page = client.get(f"/events/{uuid}")
    assert page.status_code == 200 and "status-cancelled" in page.get_data(as_text=True)
    again = client.get(f"/manage/events/{uuid}/cancel").get_data(as_text=True)
    assert "déjà annulé" in again and f"/manage/events/{uuid}/delete" in again


def test_organiser_deletes_an_event(app, client, seeded, login):
    from node.events.models import Event
    from node.spaces.models import Booking

    login(client, seeded.manager_email)
    uuid = seeded.events["debate"]
    with app.app_context():
        from node.extensions import db

        event_id = db.session.scalar(select(Event.id).where(Event.uuid == uuid))
        room_booking = db.session.scalar(select(Booking.id).where(Booking.event_id == event_id))
    assert _booking(app, room_booking)["status"] == "approved"
    assert DEBATE in client.get("/events").get_data(as_text=True)

    response = client.post(f"/manage/events/{uuid}/delete", data={"next": f"/events/{uuid}"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/manage/events"  # never back to the deleted page
    assert _count(app, Event, Event.uuid == uuid) == 0
    assert _booking(app, room_booking)["status"] == "cancelled"  # kept for history, slot free
    assert any("annulé" in subject.lower() for subject, _body in _mail(app, "lucie0@example.org"))
    assert "est supprimé" in client.get("/manage/events").get_data(as_text=True)

    visitor = app.test_client()
    for path in ("/events", "/", "/map", "/events.ics", "/events.atom", "/embed"):
        assert DEBATE not in visitor.get(path).get_data(as_text=True), path
    gone = visitor.get(f"/events/{uuid}")
    assert gone.status_code == 410
    body = gone.get_data(as_text=True)
    assert "Cette page a été supprimée" in body and 'class="site-header"' in body  # the site's own page
    assert client.get(f"/manage/events/{uuid}/delete").status_code in (404, 410)


def test_who_may_delete_an_event(app, seeded, login):
    from node.events.models import Event

    uuid = seeded.events["debate"]
    anonymous = app.test_client()
    assert anonymous.get(f"/manage/events/{uuid}/delete").status_code == 302  # sign in first
    assert anonymous.post(f"/manage/events/{uuid}/delete").status_code == 302
    for email in (seeded.unsigned_manager_email, seeded.member_email):
        other = login(app.test_client(), email)
        assert other.get(f"/manage/events/{uuid}/delete").status_code == 403
        assert other.post(f"/manage/events/{uuid}/delete").status_code == 403
        assert other.post(f"/manage/events/{uuid}/cancel").status_code == 403
    assert _count(app, Event, Event.uuid == uuid) == 1
    # Staff may delete any local event.
    office = login(app.test_client(), seeded.office_email)
    assert office.post(f"/manage/events/{uuid}/delete").status_code == 302
    assert _count(app, Event, Event.uuid == uuid) == 0
    admin = login(app.test_client(), seeded.admin_email)
    screening = seeded.events["screening"]
    assert admin.post(f"/manage/events/{screening}/delete").status_code == 302
    assert _count(app, Event, Event.uuid == screening) == 0


def test_staff_remove_an_event_of_another_node_from_this_node(app, client, seeded, login):
    from node.events.models import Event

    remote = add_remote(app)
    manager = login(app.test_client(), seeded.manager_email)
    assert manager.get(f"/manage/events/{remote.public_uuid}/delete").status_code == 403
    assert "/delete" not in manager.get(f"/events/{remote.public_uuid}").get_data(as_text=True)

    login(client, seeded.office_email)
    page = client.get(f"/events/{remote.public_uuid}").get_data(as_text=True)
    assert f"/manage/events/{remote.public_uuid}/delete" in page
    assert f"/manage/events/{remote.public_uuid}/cancel" not in page  # only its origin can cancel it
    confirm = client.get(f"/manage/events/{remote.public_uuid}/delete").get_data(as_text=True)
    assert "de ce nœud seulement" in confirm
    response = client.post(f"/manage/events/{remote.public_uuid}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/events"
    assert _count(app, Event, Event.uuid == remote.public_uuid) == 0
    client.get("/events")  # the flash goes with this page
    assert "Débat citoyen : l&#39;eau" not in client.get("/events").get_data(as_text=True)
