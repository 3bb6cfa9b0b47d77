"""Recurrence: RFC 5545 RRULE values expanded in the event's own time zone.

Rules are expanded on *local wall-clock time* and each occurrence is converted to UTC afterwards, so
a weekly 19:00 Europe/Paris event stays at 19:00 in Paris across daylight-saving changes (its UTC time
moves by an hour). The end of each occurrence keeps the first occurrence's wall-clock duration
(19:00-21:00 stays 19:00-21:00).

Bounds (every rule is finite once stored, so feeds, federation and the occurrence table agree):
- a rule with COUNT or UNTIL may give at most ``MAX_OCCURRENCES`` occurrences, or it is refused;
- an open-ended rule (neither COUNT nor UNTIL) is capped: ``normalize_rule`` appends an UNTIL at the
  first start + ``HORIZON`` (one year), or at the ``MAX_OCCURRENCES``-th occurrence if that comes first.
  To go on, edit the event and move UNTIL.

Pure module: no database, no Flask. Datetimes in and out are naive; "local" ones are wall-clock times
in the event's zone, "utc" ones are UTC (the form the database holds).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

HORIZON = timedelta(days=365)
MAX_OCCURRENCES = 500
#: More frequent rules (HOURLY...) would make occurrences that overlap rooms and flood listings.
ALLOWED_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
ALLOWED_PARTS = (
    "FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH",
    "BYSETPOS", "WKST", "BYHOUR", "BYMINUTE",
)
_UNTIL_FORMATS = (
    (re.compile(r"^\d{8}T\d{6}Z$"), "utc"),
    (re.compile(r"^\d{8}T\d{6}$"), "local"),
    (re.compile(r"^\d{8}$"), "date"),
)


class RecurrenceError(ValueError):
    """A rule or exception date that cannot be used; the message says what to change."""


def local_to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """Naive wall-clock time in ``tz`` -> naive UTC. A time in the spring-forward gap reads with the
    offset before the change (fold=0), so 02:30 on that night becomes 03:30 summer time."""
    return local.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def utc_to_local(utc: datetime, tz: ZoneInfo) -> datetime:
    """Naive UTC -> naive wall-clock time in ``tz``."""
    return utc.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)


def _parts(value: str) -> list[tuple[str, str]]:
    text = value.strip()
    if text[:6].upper() == "RRULE:":
        text = text[6:]
    if not text or any(c in text for c in "\r\n"):
        raise RecurrenceError("rrule must be one RRULE value such as 'FREQ=WEEKLY;COUNT=10'")
    parts: list[tuple[str, str]] = []
    seen: set[str] = set()
    for chunk in text.split(";"):
        if not chunk:
            continue
        key, sep, val = chunk.partition("=")
        key = key.strip().upper()
        val = val.strip().upper()
        if not sep or not val:
            raise RecurrenceError(f"rrule part {chunk!r} must look like NAME=VALUE")
        if key not in ALLOWED_PARTS:
            raise RecurrenceError(f"rrule part {key} is not supported; use: {', '.join(ALLOWED_PARTS)}")
        if key in seen:
            raise RecurrenceError(f"rrule repeats {key}")
        seen.add(key)
        parts.append((key, val))
    freq = dict(parts).get("FREQ")
    if freq is None:
        raise RecurrenceError("rrule needs a FREQ, e.g. 'FREQ=WEEKLY'")
    if freq not in ALLOWED_FREQS:
        raise RecurrenceError(f"rrule FREQ={freq} is not supported; use one of {', '.join(ALLOWED_FREQS)}")
    if "COUNT" in seen and "UNTIL" in seen:
        raise RecurrenceError("rrule may have COUNT or UNTIL, not both (RFC 5545)")
    return parts


def _until_to_utc(value: str, tz: ZoneInfo) -> datetime:
    kind = next((name for pattern, name in _UNTIL_FORMATS if pattern.match(value)), None)
    if kind is None:
        raise RecurrenceError(f"rrule UNTIL={value} must be a date (20261231) or date-time (20261231T180000Z)")
    try:
        if kind == "date":
            # A bare date includes that whole local day.
            local = datetime.combine(datetime.strptime(value, "%Y%m%d").date(), time(23, 59, 59))
            return local_to_utc(local, tz)
        parsed = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
    except ValueError:
        raise RecurrenceError(f"rrule UNTIL={value} is not a real date") from None
    return parsed if kind == "utc" else local_to_utc(parsed, tz)


def _format_utc(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


def _local_rule_text(parts: list[tuple[str, str]], tz: ZoneInfo) -> str:
    """The rule dateutil expands: UNTIL rewritten as a naive local time, since DTSTART is naive local."""
    out = []
    for key, val in parts:
        if key == "UNTIL":
            val = utc_to_local(_until_to_utc(val, tz), tz).strftime("%Y%m%dT%H%M%S")
        out.append(f"{key}={val}")
    return ";".join(out)


def _iterate(parts: list[tuple[str, str]], first_local: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    text = _local_rule_text(parts, tz)
    try:
        rule = rrulestr(text, dtstart=first_local)
    except (ValueError, TypeError, KeyError) as exc:
        raise RecurrenceError(f"rrule is not a valid RFC 5545 RRULE: {exc}") from None
    return iter(rule)


def normalize_rule(value: str, first_local: datetime, tz: ZoneInfo) -> str:
    """Check a rule against the first occurrence and return the form to store.

    Upper-cases it, drops a leading ``RRULE:``, writes UNTIL in UTC (RFC 5545 requires UTC when
    DTSTART has a TZID), and bounds open-ended rules (see the module docstring)."""
    parts = _parts(value)
    keys = {key for key, _ in parts}
    head = list(itertools.islice(_iterate(parts, first_local, tz), MAX_OCCURRENCES + 1))
    if not head:
        raise RecurrenceError("rrule gives no occurrence at all; check UNTIL and the BY... parts")
    if head[0] != first_local:
        raise RecurrenceError(
            f"starts_at ({first_local:%A %Y-%m-%d %H:%M} local) must be the first occurrence of the rule, "
            f"which gives {head[0]:%A %Y-%m-%d %H:%M} first; move starts_at or change the rule"
        )
    if "COUNT" in keys or "UNTIL" in keys:
        if len(head) > MAX_OCCURRENCES:
            raise RecurrenceError(
                f"rrule gives more than {MAX_OCCURRENCES} occurrences; lower COUNT or choose an earlier UNTIL"
            )
        return ";".join(
            f"{key}={_format_utc(_until_to_utc(val, tz)) if key == 'UNTIL' else val}" for key, val in parts
        )
    horizon_end = first_local + HORIZON
    within = [start for start in head[:MAX_OCCURRENCES] if start <= horizon_end]
    return ";".join([f"{key}={val}" for key, val in parts] + [f"UNTIL={_format_utc(local_to_utc(within[-1], tz))}"])


def local_starts(first_local: datetime, rule: str | None, tz: ZoneInfo) -> list[datetime]:
    """Every local start of the rule, at most MAX_OCCURRENCES. Local rules are stored normalised
    (finite); a remote event's open-ended rule stops at the HORIZON after its first start."""
    if not rule:
        return [first_local]
    parts = _parts(rule)
    starts = itertools.islice(_iterate(parts, first_local, tz), MAX_OCCURRENCES)
    if not {key for key, _ in parts} & {"COUNT", "UNTIL"}:
        horizon_end = first_local + HORIZON
        starts = itertools.takewhile(lambda start: start <= horizon_end, starts)
    return list(starts)


def format_local(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def normalize_exdates(values: Iterable[str], starts: list[datetime], tz: ZoneInfo) -> list[str]:
    """Exception dates -> sorted local ISO datetimes, each one an occurrence of the rule.

    Accepts local datetimes ("2026-04-02T19:00:00"), datetimes with an offset (converted to the event's
    zone) and bare dates ("2026-04-02": every occurrence that local day)."""
    known = set(starts)
    result: set[datetime] = set()
    for raw in values:
        if not isinstance(raw, str):
            raise RecurrenceError(f"exdate {raw!r} must be a string such as '2026-04-02T19:00:00'")
        text = raw.strip()
        try:
            parsed = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise RecurrenceError(f"exdate {raw!r} is not an ISO date or datetime") from None
        if not isinstance(parsed, datetime):
            matches = [start for start in starts if start.date() == parsed]
            if not matches:
                raise RecurrenceError(f"exdate {text}: no occurrence on that day")
            result.update(matches)
            continue
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(tz).replace(tzinfo=None)
        if parsed not in known:
            raise RecurrenceError(
                f"exdate {text} is not an occurrence of the event (occurrences start at "
                f"{starts[0]:%H:%M} local time); give the local start of the occurrence to remove"
            )
        result.add(parsed)
    return [format_local(value) for value in sorted(result)]


def expand(
    starts_at: datetime, ends_at: datetime, tzname: str, rule: str | None, exdates: Iterable[str] = ()
) -> list[tuple[datetime, datetime]]:
    """The occurrences of an event as (start, end) naive UTC pairs, sorted, exception dates removed."""
    tz = ZoneInfo(tzname)
    first_local = utc_to_local(starts_at, tz)
    duration = utc_to_local(ends_at, tz) - first_local
    # An event within the autumn change's repeated hour can end earlier in wall-clock time than it
    # starts (02:30 summer time to 02:15 winter time): its occurrences then last its real duration.
    real_duration = None if duration > timedelta(0) else ends_at - starts_at
    removed = {datetime.fromisoformat(value) for value in exdates or ()}
    spans = []
    for local in local_starts(first_local, rule, tz):
        if local in removed:
            continue
        start = local_to_utc(local, tz)
        spans.append((start, local_to_utc(local + duration, tz) if real_duration is None else start + real_duration))
    return spans
