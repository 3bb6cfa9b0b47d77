"""Named periods (``when``) on the API and the feeds: they move with the calendar."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from node.events.periods import period_bounds, period_days
from tests.events.conftest import event_body


def test_period_days():
    wednesday, saturday, sunday = date(2026, 11, 25), date(2026, 11, 28), date(2026, 11, 29)
    assert period_days("today", wednesday) == (wednesday, date(2026, 11, 26))
    assert period_days("weekend", wednesday) == (saturday, date(2026, 11, 30))
    assert period_days("weekend", saturday) == (saturday, date(2026, 11, 30))
    assert period_days("weekend", sunday) == (sunday, date(2026, 11, 30))  # what is left of it
    assert period_days("week", wednesday) == (wednesday, date(2026, 12, 2))
    assert period_days("month", date(2026, 12, 31)) == (date(2026, 12, 31), date(2027, 1, 1))
    with pytest.raises(ValueError, match="unknown period"):
        period_days("fortnight", wednesday)


def test_period_bounds_are_midnights_of_the_nodes_zone():
    # 23:30 UTC on 25 November is already the 26th in Paris.
    start, end = period_bounds("today", datetime(2026, 11, 25, 23, 30), ZoneInfo("Europe/Paris"))
    assert (start, end) == (datetime(2026, 11, 25, 23, 0), datetime(2026, 11, 26, 23, 0))


def test_when_selects_the_period_on_the_api_and_the_feeds(client, world):
    headers = world["headers"]["manager_a"]
    for days, title in ((3, "Dans trois jours"), (20, "Dans vingt jours")):
        assert client.post("/api/v1/events", json=event_body(days_ahead=days, title=title),
                           headers=headers).status_code == 201
    listing = client.get("/api/v1/events?when=week").get_json()
    assert [item["title"] for item in listing["items"]] == ["Dans trois jours"]
    assert len(client.get("/api/v1/events").get_json()["items"]) == 2
    ics = client.get("/events.ics?when=week").get_data(as_text=True)
    assert "Dans trois jours" in ics and "Dans vingt jours" not in ics
    atom = client.get("/events.atom?when=week").get_data(as_text=True)
    assert "Dans trois jours" in atom and "Dans vingt jours" not in atom


def test_a_period_and_dates_together_or_an_unknown_period_are_refused(client):
    both = client.get("/api/v1/events?when=week&from=2030-01-01")
    assert both.status_code == 422 and "either a period" in str(both.get_json())
    unknown = client.get("/events.ics?when=fortnight")
    assert unknown.status_code == 422
