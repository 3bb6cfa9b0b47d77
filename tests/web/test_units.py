"""The pure parts of the web layer: filters and their canonical query, recurrence choices <-> RRULE,
safe redirects."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from werkzeug.datastructures import MultiDict

from node.web.filters import EventFilters
from node.web.helpers import is_safe_next
from node.web.recurrence import Recurrence, build_rule, read_rule, weekday_position

PARIS = ZoneInfo("Europe/Paris")


def filters(**args) -> EventFilters:
    multi = MultiDict()
    for key, value in args.items():
        for item in value if isinstance(value, list) else [value]:
            multi.add(key, item)
    return EventFilters.from_args(multi)


@pytest.mark.parametrize(("today", "first", "after"), [
    (date(2026, 11, 25), date(2026, 11, 28), date(2026, 11, 30)),  # Wednesday -> the coming weekend
    (date(2026, 11, 28), date(2026, 11, 28), date(2026, 11, 30)),  # Saturday -> today and tomorrow
    (date(2026, 11, 29), date(2026, 11, 29), date(2026, 11, 30)),  # Sunday -> what is left of it
])
def test_weekend(today, first, after):
    assert filters(when="weekend").date_range(today) == (first, after)


def test_other_ranges():
    today = date(2026, 2, 10)
    assert filters(when="today").date_range(today) == (today, date(2026, 2, 11))
    assert filters(when="week").date_range(today) == (today, date(2026, 2, 17))
    assert filters(when="month").date_range(today) == (today, date(2026, 3, 1))
    assert filters().date_range(today) == (None, None)
    custom = filters(when="custom", start_date="2026-03-01", end_date="2026-03-31")
    assert custom.date_range(today) == (date(2026, 3, 1), date(2026, 4, 1))  # the last day is included


def test_feed_parameters_are_read_back_as_the_same_list():
    """A feed URL opened as a page shows the same list: the exclusive ``to`` becomes the inclusive end."""
    original = filters(when="custom", start_date="2026-03-01", end_date="2026-03-31", city="Lyon",
                       accessible=["step_free", "sign_language"], free="true", q="débat", category="debate")
    params = original.feed_params(date(2026, 1, 1))
    assert params == {"scope": "network", "from": "2026-03-01", "to": "2026-04-01", "q": "débat", "city": "Lyon",
                      "category": "debate", "language": None, "free": "true",
                      "accessible": "step_free,sign_language"}
    again = EventFilters.from_args(MultiDict({k: v for k, v in params.items() if v is not None}))
    assert again.feed_params(date(2026, 1, 1)) == params


def test_unknown_values_are_ignored_and_reported():
    odd = filters(category="cooking", accessible="teleport,step_free", when="yesterday", free="maybe",
                  scope="galaxy", language="français")
    assert odd.category == "" and odd.accessible == ["step_free"] and odd.when == "" and odd.free is None
    assert odd.scope == "network" and odd.language == ""
    assert set(odd.ignored) == {"category", "accessible"}


def test_end_before_start_is_dropped():
    backwards = filters(start_date="2026-03-10", end_date="2026-03-01")
    assert backwards.start_date == date(2026, 3, 10) and backwards.end_date is None


@pytest.mark.parametrize(("kind", "day", "rule"), [
    ("none", date(2026, 3, 12), None),
    ("weekly", date(2026, 3, 12), "FREQ=WEEKLY;COUNT=4"),
    ("monthly_day", date(2026, 3, 12), "FREQ=MONTHLY;COUNT=4"),
    ("monthly_weekday", date(2026, 3, 12), "FREQ=MONTHLY;BYDAY=2TH;COUNT=4"),
    ("monthly_weekday", date(2026, 3, 31), "FREQ=MONTHLY;BYDAY=-1TU;COUNT=4"),  # a fifth Tuesday is the last
])
def test_build_rule(kind, day, rule):
    assert build_rule(Recurrence(kind=kind, count=4), day) == rule


def test_build_rule_with_interval_and_until():
    rule = build_rule(Recurrence(kind="weekly", interval=2, end="until", until=date(2026, 6, 30)), date(2026, 3, 12))
    assert rule == "FREQ=WEEKLY;INTERVAL=2;UNTIL=20260630"


def test_read_rule_round_trips_the_simple_shapes():
    day = date(2026, 3, 12)
    for recurrence in (Recurrence(kind="weekly", count=6), Recurrence(kind="monthly_day", interval=3, count=2),
                       Recurrence(kind="monthly_weekday", count=10)):
        assert read_rule(build_rule(recurrence, day), day, PARIS) == recurrence
    # The events service stores UNTIL in UTC: it reads back as the local day.
    until = read_rule("FREQ=WEEKLY;UNTIL=20260630T215959Z", day, PARIS)
    assert until.end == "until" and until.until == date(2026, 6, 30)
    assert read_rule("FREQ=WEEKLY;BYDAY=MO,TH;COUNT=4", day, PARIS) is None  # kept as is, not simplified
    assert read_rule("FREQ=DAILY;COUNT=4", day, PARIS) is None
    assert read_rule(None, day, PARIS).kind == "none"
    assert weekday_position(date(2026, 3, 1)) == "1SU"


@pytest.mark.parametrize(("target", "safe"), [
    ("/manage", True), ("/events?city=Lyon", True), ("", False), (None, False), ("https://evil.example", False),
    ("//evil.example", False), ("/\\evil.example", False), ("manage", False), ("javascript:alert(1)", False),
])
def test_safe_next(target, safe):
    assert is_safe_next(target) is safe
