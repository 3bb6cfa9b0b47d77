"""Calendar (iCalendar, RFC 5545) and Atom 1.0 (RFC 4287) feeds of public events.

One VEVENT per event, not per occurrence: the series travels as DTSTART;TZID + RRULE + EXDATE with
its VTIMEZONE, so a calendar app shows 19:00 local on both sides of a DST change, exactly as we expand
it. Feeds hold public events only (``members`` and ``network`` ones never leave the node this way)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from flask import current_app

from node.common.timeutil import iso_utc, utcnow
from node.events.registrations import describe_place
from node.events.schemas import event_url

ATOM_NS = "http://www.w3.org/2005/Atom"
ICAL_STATUS = {"confirmed": "CONFIRMED", "tentative": "TENTATIVE", "cancelled": "CANCELLED"}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _aware_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def vevent(event: Any) -> icalendar.Event:
    tz = _zone(event.timezone)
    item = icalendar.Event()
    item.add("uid", event.ap_id)
    item.add("dtstamp", _aware_utc(event.updated_at))
    item.add("created", _aware_utc(event.created_at))
    item.add("last-modified", _aware_utc(event.updated_at))
    item.add("dtstart", _aware_utc(event.starts_at).astimezone(tz))
    item.add("dtend", _aware_utc(event.ends_at).astimezone(tz))
    if event.rrule:
        try:
            item.add("rrule", icalendar.vRecur.from_ical(event.rrule))
        except ValueError:
            pass  # a remote event's unreadable rule: its first occurrence still shows
        exdates = []
        for value in event.exdates or []:
            try:
                exdates.append(datetime.fromisoformat(value).replace(tzinfo=tz))
            except (TypeError, ValueError):
                continue
        if exdates:
            item.add("exdate", exdates)
    item.add("summary", event.title)
    if event.description:
        item.add("description", event.description)
    item.add("url", event_url(event))
    place = describe_place(event)
    if place:
        item.add("location", place)
    if event.latitude is not None and event.longitude is not None:
        item.add("geo", (event.latitude, event.longitude))
    item.add("status", ICAL_STATUS.get(event.status, "CONFIRMED"))
    item.add("categories", [event.category, *(event.tags or [])])
    for organisation in event.organisers:
        item.add("x-halles-organiser", organisation.name)
    return item


def _span(events: list[Any]) -> tuple[date, date]:
    """First and last day the calendar covers, so each VTIMEZONE carries exactly the transitions needed."""
    from sqlalchemy import func, select

    from node.events.models import EventOccurrence
    from node.extensions import db

    ids = [event.id for event in events]
    first = min(event.starts_at for event in events).date() - timedelta(days=1)
    last = db.session.scalar(select(func.max(EventOccurrence.ends_at)).where(EventOccurrence.event_id.in_(ids)))
    last = max(last or first, *(event.ends_at for event in events)).date() + timedelta(days=2)
    return first, last


def calendar(events: Iterable[Any], *, name: str) -> bytes:
    events = list(events)
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Halles//Events//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", current_app.config["HALLES_TIMEZONE"])
    for event in events:
        cal.add_component(vevent(event))
    # VTIMEZONE for every TZID used, generated from the tz database over the calendar's span.
    if events:
        first, last = _span(events)
        cal.add_missing_timezones(first_date=first, last_date=last)
    return cal.to_ical()


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def _summary(event: Any) -> str:
    start = _aware_utc(event.starts_at).astimezone(_zone(event.timezone))
    parts = [f"{start:%Y-%m-%d %H:%M} ({event.timezone})"]
    if event.rrule:
        parts.append(f"repeats: {event.rrule}")
    place = describe_place(event)
    if place:
        parts.append(place)
    if event.status == "cancelled":
        parts.insert(0, "CANCELLED / ANNULÉ")
    return " — ".join(parts)


def atom(events: list[Any], *, self_url: str, title: str) -> bytes:
    """A valid Atom 1.0 feed: one entry per event, id = the event's ActivityPub id."""
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    base = current_app.config["HALLES_URL"]
    _sub(feed, "id", self_url)
    _sub(feed, "title", title)
    updated = max((event.updated_at for event in events), default=None) or utcnow()
    _sub(feed, "updated", iso_utc(updated))
    _sub(feed, "link", rel="self", href=self_url, type="application/atom+xml")
    _sub(feed, "link", rel="alternate", href=f"{base}/events", type="text/html")
    author = _sub(feed, "author")
    _sub(author, "name", current_app.config.get("HALLES_NAME", "Halles"))
    _sub(author, "uri", base)
    _sub(feed, "generator", "Halles")
    for event in events:
        entry = _sub(feed, "entry")
        _sub(entry, "id", event.ap_id)
        _sub(entry, "title", event.title)
        _sub(entry, "updated", iso_utc(event.updated_at))
        _sub(entry, "published", iso_utc(event.created_at))
        _sub(entry, "link", rel="alternate", href=event_url(event), type="text/html")
        _sub(entry, "link", rel="related", href=f"{base}/events/{event.uuid}.ics", type="text/calendar")
        for organisation in event.organisers:
            contributor = _sub(entry, "author")
            _sub(contributor, "name", organisation.name)
        _sub(entry, "category", term=event.category)
        for tag in event.tags or []:
            _sub(entry, "category", term=str(tag))
        _sub(entry, "summary", _summary(event), type="text")
        if event.description:
            _sub(entry, "content", event.description, type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
