"""The event form's simple recurrence choices <-> an RFC 5545 RRULE.

People pick "every week / every month on the same date / every month on the same weekday", an
interval, and an end (a number of times or a last date); this builds the rule the events service
checks and expands, and reads a stored rule back into the form when it is one of these shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass
class Recurrence:
    kind: str = "none"  # none | weekly | monthly_day | monthly_weekday | keep
    interval: int = 1
    end: str = "count"  # count | until
    count: int | None = 4
    until: date | None = None


def weekday_position(day: date) -> str:
    """'2TH' for the second Thursday of its month, '-1TH' for a fifth (that is, last) one."""
    position = (day.day - 1) // 7 + 1
    return f"{-1 if position == 5 else position}{WEEKDAYS[day.weekday()]}"


def build_rule(recurrence: Recurrence, first_day: date) -> str | None:
    """The RRULE value for the form's choices, or None for a one-off event."""
    if recurrence.kind == "none":
        return None
    if recurrence.kind == "weekly":
        parts = ["FREQ=WEEKLY"]
    elif recurrence.kind == "monthly_day":
        parts = ["FREQ=MONTHLY"]
    elif recurrence.kind == "monthly_weekday":
        parts = ["FREQ=MONTHLY", f"BYDAY={weekday_position(first_day)}"]
    else:
        raise ValueError(f"unknown recurrence {recurrence.kind!r}")
    if recurrence.interval and recurrence.interval > 1:
        parts.append(f"INTERVAL={recurrence.interval}")
    if recurrence.end == "until" and recurrence.until is not None:
        # A bare date: the events service reads it as "until the end of that local day".
        parts.append(f"UNTIL={recurrence.until.strftime('%Y%m%d')}")
    else:
        parts.append(f"COUNT={max(1, recurrence.count or 1)}")
    return ";".join(parts)


def read_rule(rule: str | None, first_day: date, tz: ZoneInfo) -> Recurrence | None:
    """The form's choices for a stored rule, or None when the rule has another shape (kept as is)."""
    if not rule:
        return Recurrence(kind="none")
    parts = {}
    for chunk in rule.split(";"):
        key, _sep, value = chunk.partition("=")
        parts[key.strip().upper()] = value.strip().upper()
    known = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY"}
    if set(parts) - known:
        return None
    result = Recurrence()
    freq, byday = parts.get("FREQ"), parts.get("BYDAY")
    if freq == "WEEKLY" and byday in (None, WEEKDAYS[first_day.weekday()]):
        result.kind = "weekly"
    elif freq == "MONTHLY" and byday is None:
        result.kind = "monthly_day"
    elif freq == "MONTHLY" and byday == weekday_position(first_day):
        result.kind = "monthly_weekday"
    else:
        return None
    try:
        result.interval = int(parts.get("INTERVAL", "1"))
        if "COUNT" in parts:
            result.end, result.count = "count", int(parts["COUNT"])
        elif "UNTIL" in parts:
            result.end, result.until = "until", _until_day(parts["UNTIL"], tz)
        else:
            return None
    except ValueError:
        return None
    return result


def _until_day(value: str, tz: ZoneInfo) -> date:
    if len(value) == 8:
        return datetime.strptime(value, "%Y%m%d").date()
    moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
    if value.endswith("Z"):
        return moment.replace(tzinfo=UTC).astimezone(tz).date()
    return moment.date()
