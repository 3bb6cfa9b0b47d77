"""Named periods that move with the calendar ("this weekend" is another weekend next week), read the
same way by the pages, the API, the feeds and the widget, so a subscription to "this weekend" keeps
showing this weekend instead of the dates it was made on."""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("today", "weekend", "week", "month")


def period_days(when: str, today: date) -> tuple[date, date]:
    """(first day, day after the last) of the period around ``today``."""
    if when == "today":
        return today, today + timedelta(days=1)
    if when == "weekend":
        if today.weekday() >= 5:  # Saturday or Sunday: this weekend, what is left of it
            saturday = today - timedelta(days=today.weekday() - 5)
        else:
            saturday = today + timedelta(days=5 - today.weekday())
        return max(saturday, today), saturday + timedelta(days=2)
    if when == "week":
        return today, today + timedelta(days=7)
    if when == "month":
        last = monthrange(today.year, today.month)[1]
        return today, date(today.year, today.month, last) + timedelta(days=1)
    raise ValueError(f"unknown period {when!r}: use one of {', '.join(PERIODS)}")


def period_bounds(when: str, now_utc: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The period as naive UTC instants: from midnight of its first day to midnight after its last,
    both in ``tz`` (the node's zone: "today" is today where the third-place is)."""
    today = now_utc.replace(tzinfo=UTC).astimezone(tz).date()
    first, after = period_days(when, today)

    def midnight(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC).replace(tzinfo=None)

    return midnight(first), midnight(after)
