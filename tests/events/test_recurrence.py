"""Recurrence rules expanded in the event's own zone (pure functions, no database)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from node.events.recurrence import (
    MAX_OCCURRENCES,
    RecurrenceError,
    expand,
    local_starts,
    local_to_utc,
    normalize_exdates,
    normalize_rule,
)

PARIS = ZoneInfo("Europe/Paris")


def test_weekly_19h_stays_19h_local_across_the_march_change():
    # Thursday 18 March 2027, 19:00 Paris (CET, UTC+1); summer time starts Sunday 28 March 2027.
    start, end = datetime(2027, 3, 18, 18, 0), datetime(2027, 3, 18, 20, 0)
    spans = expand(start, end, "Europe/Paris", "FREQ=WEEKLY;COUNT=4")
    assert [s for s, _ in spans] == [
        datetime(2027, 3, 18, 18, 0),
        datetime(2027, 3, 25, 18, 0),
        datetime(2027, 4, 1, 17, 0),  # CEST: 19:00 local is 17:00 UTC
        datetime(2027, 4, 8, 17, 0),
    ]
    assert all((e - s).total_seconds() == 7200 for s, e in spans)


def test_weekly_19h_stays_19h_local_across_the_october_change_with_exdates():
    # Thursday 14 October 2027, 19:00 Paris (CEST); winter time starts Sunday 31 October 2027.
    start, end = datetime(2027, 10, 14, 17, 0), datetime(2027, 10, 14, 19, 0)
    spans = expand(start, end, "Europe/Paris", "FREQ=WEEKLY;COUNT=4", ["2027-10-21T19:00:00"])
    assert [s for s, _ in spans] == [
        datetime(2027, 10, 14, 17, 0),
        datetime(2027, 10, 28, 17, 0),
        datetime(2027, 11, 4, 18, 0),  # CET: 19:00 local is 18:00 UTC
    ]


def test_an_occurrence_over_the_autumn_night_keeps_its_wall_clock_end():
    # 22:00 -> 06:00 local: 8 wall-clock hours, 9 real hours on the night the clocks go back.
    start = local_to_utc(datetime(2027, 10, 23, 22, 0), PARIS)
    end = local_to_utc(datetime(2027, 10, 24, 6, 0), PARIS)
    spans = expand(start, end, "Europe/Paris", "FREQ=WEEKLY;COUNT=2")
    second_start, second_end = spans[1]
    assert second_start == datetime(2027, 10, 30, 20, 0)  # 22:00 CEST
    assert second_end == datetime(2027, 10, 31, 5, 0)  # 06:00 CET
    assert (second_end - second_start).total_seconds() == 9 * 3600


def test_until_is_written_in_utc_and_local_until_is_converted():
    first = datetime(2027, 3, 18, 19, 0)
    assert normalize_rule("rrule:freq=weekly;until=20270401T190000", first, PARIS) == (
        "FREQ=WEEKLY;UNTIL=20270401T170000Z"
    )
    # A bare date includes that whole local day.
    rule = normalize_rule("FREQ=WEEKLY;UNTIL=20270401", first, PARIS)
    assert rule == "FREQ=WEEKLY;UNTIL=20270401T215959Z"
    assert len(local_starts(first, rule, PARIS)) == 3


def test_open_ended_rule_is_capped_one_year_after_the_first_start():
    first = datetime(2027, 1, 7, 19, 0)
    rule = normalize_rule("FREQ=WEEKLY", first, PARIS)
    assert "UNTIL=" in rule
    starts = local_starts(first, rule, PARIS)
    assert starts[0] == first
    assert starts[-1] <= datetime(2028, 1, 7, 19, 0)
    assert len(starts) == 53


def test_open_ended_rule_is_capped_at_500_occurrences():
    first = datetime(2027, 1, 1, 9, 0)
    rule = normalize_rule("FREQ=DAILY;BYHOUR=9,11,13,15", first, PARIS)
    assert len(local_starts(first, rule, PARIS)) == MAX_OCCURRENCES


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("FREQ=DAILY;COUNT=501", "more than 500"),
        ("FREQ=HOURLY;COUNT=3", "FREQ=HOURLY is not supported"),
        ("FREQ=WEEKLY;COUNT=3;UNTIL=20270401T000000Z", "not both"),
        ("COUNT=3", "needs a FREQ"),
        ("FREQ=WEEKLY;BYDAY=XX", "not a valid RFC 5545"),
        ("FREQ=WEEKLY;FREQ=DAILY", "repeats FREQ"),
        ("FREQ=WEEKLY;DTSTART=20270101", "not supported"),
        ("FREQ=WEEKLY\nRRULE:FREQ=DAILY", "one RRULE value"),
        ("FREQ=WEEKLY;UNTIL=2027-04-01", "must be a date"),
        ("FREQ=WEEKLY;UNTIL=20271340", "not a real date"),
        ("FREQ=WEEKLY;BYDAY=MO;COUNT=3", "must be the first occurrence"),
    ],
)
def test_bad_rules_are_refused_with_what_to_change(rule, message):
    with pytest.raises(RecurrenceError, match=message):
        normalize_rule(rule, datetime(2027, 3, 18, 19, 0), PARIS)  # a Thursday


def test_exdates_accept_local_times_offsets_and_whole_days():
    first = datetime(2027, 3, 18, 19, 0)
    starts = local_starts(first, "FREQ=WEEKLY;COUNT=4", PARIS)
    assert normalize_exdates(["2027-04-01T17:00:00Z", "2027-03-25", "2027-03-25T19:00:00"], starts, PARIS) == [
        "2027-03-25T19:00:00",
        "2027-04-01T19:00:00",
    ]
    with pytest.raises(RecurrenceError, match="not an occurrence"):
        normalize_exdates(["2027-03-25T18:00:00"], starts, PARIS)
    with pytest.raises(RecurrenceError, match="no occurrence on that day"):
        normalize_exdates(["2027-03-26"], starts, PARIS)
    with pytest.raises(RecurrenceError, match="not an ISO"):
        normalize_exdates(["soon"], starts, PARIS)


def test_a_remote_open_ended_rule_expands_over_the_horizon_only():
    first_utc = datetime(2027, 1, 7, 18, 0)
    spans = expand(first_utc, datetime(2027, 1, 7, 20, 0), "Europe/Paris", "FREQ=WEEKLY")
    assert len(spans) == 53


@pytest.mark.parametrize("start, end", [
    (datetime(2027, 6, 3, 17, 0), datetime(2027, 6, 3, 19, 0)),
    # In the hour Paris lives twice (31 October 2027, 02:00-03:00 local): first, then second time.
    (datetime(2027, 10, 31, 0, 30), datetime(2027, 10, 31, 1, 15)),
    (datetime(2027, 10, 31, 1, 30), datetime(2027, 10, 31, 2, 30)),
    # Over the night the clocks go forward (28 March 2027, 02:00 local does not exist).
    (datetime(2027, 3, 28, 0, 30), datetime(2027, 3, 28, 1, 30)),
])
def test_a_one_off_event_occurs_at_its_own_dates(start, end):
    """Its own dates, untouched: the round trip through local time that a rule needs put the end of
    the 00:30-01:15 UTC event (02:30 summer time to 02:15 winter time) an hour late."""
    from node.events.services import occurrence_spans

    assert occurrence_spans(start, end, "Europe/Paris", None, []) == ((start, end),)
    assert occurrence_spans(start, end, "Europe/Paris", "", None) == ((start, end),)


def test_an_event_with_a_rule_or_exception_dates_is_expanded():
    from node.events.services import occurrence_spans

    start, end = datetime(2027, 3, 18, 18, 0), datetime(2027, 3, 18, 20, 0)
    assert len(occurrence_spans(start, end, "Europe/Paris", "FREQ=WEEKLY;COUNT=4", [])) == 4
    spans = occurrence_spans(start, end, "Europe/Paris", "FREQ=WEEKLY;COUNT=4", ["2027-03-25T19:00:00"])
    assert [s for s, _ in spans] == [datetime(2027, 3, 18, 18, 0), datetime(2027, 4, 1, 17, 0),
                                     datetime(2027, 4, 8, 17, 0)]


def test_a_rule_starting_and_ending_in_the_repeated_hour_keeps_its_real_duration():
    # 02:30 summer time to 02:15 winter time on 31 October 2027: 45 minutes, earlier on the wall clock.
    start, end = datetime(2027, 10, 31, 0, 30), datetime(2027, 10, 31, 1, 15)
    spans = expand(start, end, "Europe/Paris", "FREQ=DAILY;COUNT=2")
    assert spans[0] == (start, end)
    assert spans[1] == (datetime(2027, 11, 1, 1, 30), datetime(2027, 11, 1, 2, 15))  # 02:30 CET, 45 min
