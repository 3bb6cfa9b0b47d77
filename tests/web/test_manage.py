"""An organisation manager's pages: the organisation and its sharing choices, the charter, events with
recurrence, registrations and their export, room bookings."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

from sqlalchemy import func, select


def _org(app, org_id):
    from node.extensions import db
    from node.organisations.models import Organisation

    with app.app_context():
        org = db.session.get(Organisation, org_id)
        db.session.expunge(org)
        return org


def _event_by_title(app, title):
    from node.events.models import Event
    from node.extensions import db

    with app.app_context():
        event = db.session.scalar(select(Event).where(Event.title == title))
        if event is None:
            return None
        return {"uuid": event.uuid, "rrule": event.rrule, "occurrences": len(event.occurrences),
                "timezone": event.timezone, "starts_at": event.starts_at, "ends_at": event.ends_at,
                "accessibility": dict(event.accessibility or {}), "price_cents": event.price_cents,
                "capacity": event.capacity, "visibility": event.visibility, "status": event.status,
                "organisers": [o.id for o in event.organisers], "room_id": event.room_id}


def _count(app, model) -> int:
    from node.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_manager_edits_the_organisation(app, client, seeded, login):
    login(client, seeded.manager_email)
    org_id = seeded.org_ids["Démocratie Ouverte"]
    response = client.post(f"/manage/organisations/{org_id}", data={
        "org-name": "Démocratie Ouverte", "org-description": "Nouvelle description.",
        "org-website": "https://democratie-ouverte.example", "org-topics": "démocratie, tirage au sort , ",
        "org-contact_email": "bonjour@democratie-ouverte.example", "org-contact_phone": "", "org-city": "",
        "org-resident": "",  # not theirs to change: ignored for a manager
    })
    assert response.status_code == 302
    org = _org(app, org_id)
    assert org.description == "Nouvelle description." and org.topics == ["démocratie", "tirage au sort"]
    assert org.contact_email == "bonjour@democratie-ouverte.example" and org.contact_phone is None
    assert org.resident is True


def test_bad_organisation_input_changes_nothing(app, client, seeded, login):
    login(client, seeded.manager_email)
    org_id = seeded.org_ids["Démocratie Ouverte"]
    before = _org(app, org_id)
    response = client.post(f"/manage/organisations/{org_id}", data={
        "org-name": "", "org-website": "not a url", "org-contact_email": "nope"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in body
    after = _org(app, org_id)
    assert (after.name, after.website, after.contact_email) == (before.name, before.website, before.contact_email)


def test_manager_sets_consent_choices(app, client, seeded, login):
    login(client, seeded.manager_email)
    org_id = seeded.org_ids["Démocratie Ouverte"]
    choices = {f"consent-{field}": "public" for field in
               ("name", "description", "website", "topics", "contact_email", "contact_phone", "city")}
    choices["consent-contact_email"] = "private"
    choices["consent-website"] = "network"
    assert client.post(f"/manage/organisations/{org_id}/consent", data=choices).status_code == 302
    org = _org(app, org_id)
    assert org.consent["contact_email"] == "private" and org.consent["website"] == "network"
    visitor = app.test_client().get("/organisations/democratie-ouverte").get_data(as_text=True)
    assert "democratie-ouverte.example" not in visitor and "01 23 45 67 89" in visitor
    bad = client.post(f"/manage/organisations/{org_id}/consent", data={**choices, "consent-website": "everyone"})
    assert bad.status_code == 422 and _org(app, org_id).consent["website"] == "network"


def test_manager_cannot_edit_another_organisation(app, client, seeded, login):
    login(client, seeded.manager_email)
    other = seeded.org_ids["Fabrique des Communs"]
    response = client.post(f"/manage/organisations/{other}", data={"org-name": "Pris"})
    assert response.status_code == 403
    assert _org(app, other).name == "Fabrique des Communs"


def test_signing_the_charter_sends_its_hash(app, client, seeded, login):
    from node.charters.models import CharterSignature
    from node.charters.services import current_version

    with app.app_context():
        digest = current_version().sha256
    login(client, seeded.unsigned_manager_email)
    org_id = seeded.org_ids["Collectif Nouvelles Voix"]
    page = client.get(f"/manage/organisations/{org_id}/charter").get_data(as_text=True)
    assert digest in page and f'value="{digest}"' in page
    before = _count(app, CharterSignature)
    unticked = client.post(f"/manage/organisations/{org_id}/charter", data={"sha256": digest})
    assert unticked.status_code == 422 and _count(app, CharterSignature) == before
    wrong = client.post(f"/manage/organisations/{org_id}/charter", data={"sha256": "a" * 64, "read": "y"})
    assert wrong.status_code == 422 and _count(app, CharterSignature) == before
    signed = client.post(f"/manage/organisations/{org_id}/charter", data={"sha256": digest, "read": "y"})
    assert signed.status_code == 302 and _count(app, CharterSignature) == before + 1
    assert 'name="read"' not in client.get(f"/manage/organisations/{org_id}/charter").get_data(as_text=True)
    again = client.post(f"/manage/organisations/{org_id}/charter", data={"sha256": digest, "read": "y"})
    assert again.status_code == 302 and _count(app, CharterSignature) == before + 1


def _event_form(day: date, **overrides) -> dict:
    form = {
        "title": "Café citoyen", "description": "On parle de tout.", "category": "debate", "tags": "café, débat",
        "language": "fr", "day": day.isoformat(), "start": "19:00", "end": "21:00", "timezone": "Europe/Paris",
        "recurrence": "none", "interval": "1", "recurrence_end": "count", "count": "4", "until": "",
        "location_kind": "place", "room_id": "", "place_name": "Bar du coin", "address": "3 rue des Lilas",
        "postal_code": "75020", "city": "Paris", "online_url": "", "accessibility": ["step_free", "quiet_room"],
        "capacity": "30", "price": "", "visibility": "public", "status": "confirmed",
    }
    form.update(overrides)
    return form


def test_publish_a_weekly_event(app, client, seeded, login):
    login(client, seeded.manager_email)
    day = seeded.today + timedelta(days=14)
    response = client.post("/manage/events/new", data=_event_form(
        day, title="Café citoyen hebdomadaire", recurrence="weekly", count="5", price="2,50",
        organiser_ids=[str(seeded.org_ids["Démocratie Ouverte"])]))
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    event = _event_by_title(app, "Café citoyen hebdomadaire")
    assert event["rrule"] == "FREQ=WEEKLY;COUNT=5" and event["occurrences"] == 5
    assert event["price_cents"] == 250 and event["capacity"] == 30
    assert event["accessibility"] == {"step_free": True, "quiet_room": True}
    assert event["organisers"] == [seeded.org_ids["Démocratie Ouverte"]]
    assert response.headers["Location"] == f"/events/{event['uuid']}"


def test_publish_a_monthly_event_on_the_same_weekday_until_a_date(app, client, seeded, login):
    login(client, seeded.manager_email)
    day = date(2031, 1, 9)  # the second Thursday of January 2031
    response = client.post("/manage/events/new", data=_event_form(
        day, title="Assemblée mensuelle", recurrence="monthly_weekday", recurrence_end="until", until="2031-06-30",
        location_kind="online", online_url="https://visio.example/a"))
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    event = _event_by_title(app, "Assemblée mensuelle")
    assert event["rrule"].startswith("FREQ=MONTHLY;BYDAY=2TH;UNTIL=20310630T")
    assert event["occurrences"] == 6


def test_event_form_errors_keep_the_input_and_change_nothing(app, client, seeded, login):
    from node.events.models import Event

    login(client, seeded.manager_email)
    before = _count(app, Event)
    missing = client.post("/manage/events/new", data={**_event_form(seeded.today), "title": "", "day": ""})
    assert missing.status_code == 422
    # The service's own rule (an address for a place) comes back as a message on the form.
    no_address = client.post("/manage/events/new", data=_event_form(seeded.today + timedelta(days=3), address="",
                                                                    title="Sans adresse"))
    assert no_address.status_code == 422 and "Sans adresse" in no_address.get_data(as_text=True)
    bad_price = client.post("/manage/events/new", data=_event_form(seeded.today + timedelta(days=3), price="gratuit"))
    assert bad_price.status_code == 422
    assert _count(app, Event) == before


def test_unsigned_organisation_cannot_publish(app, client, seeded, login):
    from node.events.models import Event

    login(client, seeded.unsigned_manager_email)
    before = _count(app, Event)
    response = client.post("/manage/events/new", data=_event_form(seeded.today + timedelta(days=5)))
    assert response.status_code == 403 and "charter" in response.get_data(as_text=True).lower()
    assert _count(app, Event) == before


def test_edit_an_event_reads_its_rule_back(app, client, seeded, login):
    login(client, seeded.manager_email)
    uuid = seeded.events["workshop"]
    page = client.get(f"/manage/events/{uuid}/edit").get_data(as_text=True)
    assert re.search(r'<input checked[^>]*value="weekly"', page) and re.search(r'name="count"[^>]*value="6"', page)
    event = _event_by_title(app, "Atelier : budget participatif, mode d'emploi")
    day = (event["starts_at"] + timedelta(hours=1)).date()
    response = client.post(f"/manage/events/{uuid}/edit", data=_event_form(
        day, title="Atelier : budget participatif (nouvelle formule)", start="18:00", end="19:30",
        recurrence="weekly", count="3", location_kind="room", room_id=str(event["room_id"]), capacity="2",
        organiser_ids=[str(seeded.org_ids["Démocratie Ouverte"])]))
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    changed = _event_by_title(app, "Atelier : budget participatif (nouvelle formule)")
    assert changed["rrule"] == "FREQ=WEEKLY;COUNT=3" and changed["occurrences"] == 3


def test_cancel_an_event(app, client, seeded, login):
    login(client, seeded.manager_email)
    uuid = seeded.events["debate"]
    assert client.post(f"/manage/events/{uuid}/cancel").status_code == 302
    assert _event_by_title(app, "Débat : le tirage au sort peut-il sauver la démocratie locale ?")["status"] == \
        "cancelled"
    page = client.get(f"/events/{uuid}").get_data(as_text=True)
    assert "status-cancelled" in page and 'name="email"' not in page


def test_registrations_list_and_csv(client, seeded, login):
    login(client, seeded.manager_email)
    uuid = seeded.events["debate"]
    page = client.get(f"/manage/events/{uuid}/registrations").get_data(as_text=True)
    assert "lucie0@example.org" in page and "Omar Citoyenne" in page
    export = client.get(f"/manage/events/{uuid}/registrations.csv")
    assert export.mimetype == "text/csv" and "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert {row["email"] for row in rows} == {"lucie0@example.org", "omar1@example.org", "chloé2@example.org"}
    assert {row["status"] for row in rows} == {"confirmed"}


def test_member_books_a_room(app, client, seeded, login):
    from node.spaces.models import Booking

    login(client, seeded.manager_email)
    day = seeded.today + timedelta(days=20)
    before = _count(app, Booking)
    response = client.post("/manage/bookings", data={
        "room_id": str(seeded.room_ids[1]), "category": "resident_member", "day": day.isoformat(),
        "start": "10:00", "end": "12:00", "purpose": "Réunion d'équipe"})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    assert _count(app, Booking) == before + 1
    page = client.get("/manage/bookings").get_data(as_text=True)
    assert "Réunion d&#39;équipe" in page or "Réunion d'équipe" in page
    clash = client.post("/manage/bookings", data={
        "room_id": str(seeded.room_ids[1]), "category": "member", "day": day.isoformat(),
        "start": "11:00", "end": "13:00", "purpose": "Autre"})
    assert clash.status_code == 409 and _count(app, Booking) == before + 1
    # The service explains in English (the API's language): the page says so, under a French heading.
    body = clash.get_data(as_text=True)
    assert "Cela n&#39;a pas pu être fait" in body or "Cela n'a pas pu être fait" in body
    assert '<span lang="en">' in body


def test_guest_asks_for_a_room(app, client, seeded):
    from node.spaces.models import Booking

    day = seeded.today + timedelta(days=21)
    before = _count(app, Booking)
    form = {"name": "Aïcha", "email": "aicha@asso.example", "organisation_name": "Asso", "category": "ngo",
            "day": day.isoformat(), "start": "14:00", "end": "16:00", "purpose": "Formation des bénévoles"}
    response = client.post(f"/rooms/{seeded.room_ids[0]}", data=form)
    assert response.status_code == 302 and _count(app, Booking) == before + 1
    assert "50,00" in client.get(f"/rooms/{seeded.room_ids[0]}").get_data(as_text=True)  # 2 h at 25 €
    member_rate = client.post(f"/rooms/{seeded.room_ids[0]}", data={**form, "category": "member", "start": "17:00",
                                                                     "end": "18:00"})
    assert member_rate.status_code == 422 and _count(app, Booking) == before + 1
    backwards = client.post(f"/rooms/{seeded.room_ids[0]}", data={**form, "start": "18:00", "end": "17:00"})
    assert backwards.status_code == 422 and _count(app, Booking) == before + 1


def _timezone_options(page: str) -> list[str]:
    menu = re.search(r'<select[^>]*name="timezone".*?</select>', page, re.S)
    assert menu, "the time zone is a menu"
    return re.findall(r'<option[^>]*value="([^"]+)"', menu.group(0))


def test_time_zone_is_a_menu_of_iana_zones_with_france_first(client, seeded, login):
    login(client, seeded.manager_email)
    page = client.get("/manage/events/new").get_data(as_text=True)
    options = _timezone_options(page)
    assert options[:9] == ["Europe/Paris", "America/Guadeloupe", "America/Martinique", "America/Cayenne",
                           "Indian/Reunion", "Indian/Mayotte", "Pacific/Noumea", "Pacific/Tahiti", "America/Miquelon"]
    assert {"Asia/Tokyo", "America/New_York", "Africa/Dakar", "UTC"} <= set(options) and len(options) > 300
    assert len(options) == len(set(options))  # the zones listed first are not repeated below
    assert re.search(r'<option selected value="Europe/Paris">', page)  # the node's zone by default
    assert "<optgroup" in page and "Guyane" in page


def test_time_zone_choice_is_saved_and_a_bad_one_refused(app, client, seeded, login):
    from node.events.models import Event

    login(client, seeded.manager_email)
    day = seeded.today + timedelta(days=12)
    response = client.post("/manage/events/new", data=_event_form(day, title="Débat à Fort-de-France",
                                                                   timezone="America/Martinique"))
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    event = _event_by_title(app, "Débat à Fort-de-France")
    assert event["timezone"] == "America/Martinique"
    assert event["starts_at"].hour == 23  # 19:00 in Martinique (UTC-4) is 23:00 UTC
    before = _count(app, Event)
    for bad in ("Mars/Olympus", "", "Europe/Paris<script>", "localtime"):
        refused = client.post("/manage/events/new", data=_event_form(day, title="Fuseau inconnu", timezone=bad))
        body = refused.get_data(as_text=True)
        assert refused.status_code == 422, bad
        assert 'id="timezone-error"' in body and 'aria-invalid="true"' in body
    assert "Choisissez un fuseau horaire dans la liste" in body
    assert _count(app, Event) == before
    # Editing keeps the event's zone selected.
    edit = client.get(f"/manage/events/{event['uuid']}/edit").get_data(as_text=True)
    assert re.search(r'<option selected value="America/Martinique">', edit)


def test_time_zone_menu_puts_the_nodes_own_zone_next_to_paris(make_app, login):
    from tests.web.seed import seed

    app = make_app(HALLES_TIMEZONE="Indian/Reunion")
    seeded = seed(app)
    client = login(app.test_client(), seeded.manager_email)
    page = client.get("/manage/events/new").get_data(as_text=True)
    options = _timezone_options(page)
    assert options[:2] == ["Europe/Paris", "Indian/Reunion"] and options.count("Indian/Reunion") == 1
    assert re.search(r'<option selected value="Indian/Reunion">', page)
