"""The iCalendar and Atom feeds, parsed back: public events only, same filters as the API."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

import icalendar
import pytest

from tests.events.conftest import event_body

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def published(client, world):
    headers = world["headers"]["manager_a"]

    def make(**fields) -> dict:
        response = client.post("/api/v1/events", json=event_body(**fields), headers=headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    weekly = make(title="Atelier du jeudi", starts_at="2027-03-18T19:00:00", ends_at="2027-03-18T21:00:00",
                  timezone="Europe/Paris", rrule="FREQ=WEEKLY;COUNT=4", exdates=["2027-03-25T19:00:00"],
                  category="workshop", tags=["numérique"], latitude=48.87, longitude=2.38)
    single = make(title="Projection en plein air", days_ahead=20, category="screening")
    cancelled = make(title="Débat reporté", days_ahead=21)
    client.post(f"/api/v1/events/{cancelled['id']}/cancel", headers=headers)
    network = make(title="Réservé au réseau", visibility="network")
    members = make(title="Réservé aux membres", visibility="members")
    return {"weekly": weekly, "single": single, "cancelled": cancelled, "network": network, "members": members}


def _calendar(client, url: str) -> icalendar.Calendar:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/calendar"
    return icalendar.Calendar.from_ical(response.data)


def _vevents(calendar: icalendar.Calendar) -> dict[str, icalendar.Event]:
    return {str(component["SUMMARY"]): component for component in calendar.walk("VEVENT")}


def test_ics_feed_has_one_vevent_per_public_event_with_rrule_exdate_and_timezone(client, published):
    calendar = _calendar(client, "/events.ics?from=2026-01-01")
    events = _vevents(calendar)
    assert set(events) == {"Atelier du jeudi", "Projection en plein air", "Débat reporté"}
    weekly = events["Atelier du jeudi"]
    assert str(weekly["UID"]) == published["weekly"]["ap_id"]
    start = weekly.decoded("DTSTART")
    assert isinstance(start, datetime) and start.tzinfo is not None
    assert (start.hour, start.minute) == (19, 0)
    assert weekly["DTSTART"].params["TZID"] == "Europe/Paris"
    assert weekly["RRULE"].to_ical() == b"FREQ=WEEKLY;COUNT=4"
    exdate = weekly["EXDATE"]
    exdates = [d.dt for d in (exdate if isinstance(exdate, list) else [exdate])[0].dts]
    assert [(d.month, d.day, d.hour) for d in exdates] == [(3, 25, 19)]
    assert str(weekly["URL"]) == published["weekly"]["url"]
    assert "12 rue de Belleville" in str(weekly["LOCATION"])
    assert str(weekly["STATUS"]) == "CONFIRMED"
    assert [str(c) for c in weekly["CATEGORIES"].cats] == ["workshop", "numérique"]
    assert weekly.decoded("GEO") == (48.87, 2.38)
    assert str(events["Débat reporté"]["STATUS"]) == "CANCELLED"
    timezones = [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")]
    assert timezones == ["Europe/Paris"]


def test_ics_feed_accepts_the_api_filters(client, published):
    assert set(_vevents(_calendar(client, "/events.ics?from=2026-01-01&category=screening"))) == {
        "Projection en plein air"}
    assert set(_vevents(_calendar(client, "/events.ics?q=atelier+NUMERIQUE"))) == {"Atelier du jeudi"}
    # Members signed in still get the public feed only.
    assert client.get("/events.ics?from=2026-01-01&limit=100").status_code == 200
    assert client.get("/events.ics?from=soon").status_code == 422


def test_single_event_ics_and_hidden_events(client, world, published):
    calendar = _calendar(client, f"/events/{published['single']['id']}.ics")
    assert list(_vevents(calendar)) == ["Projection en plein air"]
    for hidden in ("network", "members"):
        assert client.get(f"/events/{published[hidden]['id']}.ics").status_code == 404
        # Not even for a signed-in member: feeds are public by nature (links get shared).
        assert client.get(f"/events/{published[hidden]['id']}.ics",
                          headers=world["headers"]["member"]).status_code == 404
    feed = client.get("/events.ics?from=2026-01-01", headers=world["headers"]["admin"]).get_data(as_text=True)
    assert "Réservé" not in feed


def test_atom_feed_is_valid_atom_with_public_entries(client, world, published):
    response = client.get("/events.atom?from=2026-01-01", headers=world["headers"]["admin"])
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    assert response.data.startswith(b"<?xml")
    feed = ET.fromstring(response.data)
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated", "author"):
        assert feed.find(f"{ATOM}{required}") is not None, required
    self_link = [link for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert self_link[0].get("href") == "http://127.0.0.1:5000/events.atom?from=2026-01-01"
    datetime.fromisoformat(feed.find(f"{ATOM}updated").text.replace("Z", "+00:00"))
    entries = {entry.find(f"{ATOM}title").text: entry for entry in feed.findall(f"{ATOM}entry")}
    assert set(entries) == {"Atelier du jeudi", "Projection en plein air", "Débat reporté"}
    weekly = entries["Atelier du jeudi"]
    assert weekly.find(f"{ATOM}id").text == published["weekly"]["ap_id"]
    assert weekly.find(f"{ATOM}updated").text == published["weekly"]["updated_at"]
    alternate = [link for link in weekly.findall(f"{ATOM}link") if link.get("rel") == "alternate"]
    assert alternate[0].get("href") == published["weekly"]["url"]
    assert "2027-03-18 19:00 (Europe/Paris)" in weekly.find(f"{ATOM}summary").text
    assert weekly.find(f"{ATOM}content").text == "Un débat ouvert à toutes et tous."
    assert "CANCELLED" in entries["Débat reporté"].find(f"{ATOM}summary").text


def test_atom_feed_filters_and_caching(client, published):
    feed = ET.fromstring(client.get("/events.atom?from=2026-01-01&category=workshop&limit=5").data)
    assert [e.find(f"{ATOM}title").text for e in feed.findall(f"{ATOM}entry")] == ["Atelier du jeudi"]
    first = client.get("/events.atom")
    assert client.get("/events.atom", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert client.get("/events.atom?limit=1000").status_code == 422


def test_empty_feeds_are_still_valid(client):
    assert icalendar.Calendar.from_ical(client.get("/events.ics").data).walk("VEVENT") == []
    feed = ET.fromstring(client.get("/events.atom").data)
    assert feed.findall(f"{ATOM}entry") == [] and feed.find(f"{ATOM}updated").text.endswith("Z")


def test_vtimezone_covers_the_dates_of_the_events(client, world):
    body = event_body(title="Fête des 20 ans", starts_at="2040-06-20T19:00:00+02:00",
                      ends_at="2040-06-20T23:00:00+02:00", rrule="FREQ=YEARLY;COUNT=3")
    assert client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"]).status_code == 201
    calendar = _calendar(client, "/events.ics?from=2040-01-01")
    (timezone,) = calendar.walk("VTIMEZONE")
    transitions = timezone.to_ical().decode().replace("\r\n ", "")
    assert "2042" in transitions and "1970" not in transitions
    # Read back, the yearly occurrences keep 19:00 in Paris.
    (vevent,) = calendar.walk("VEVENT")
    assert vevent.decoded("DTSTART").utcoffset().total_seconds() == 7200
