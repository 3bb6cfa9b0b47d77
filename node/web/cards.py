"""What a listing shows of one occurrence: the event, when, where (third-place and city), who
re-shared it, and the places left. Built from ``events.services`` rows for the agenda, the home
page, the map and the widget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from itertools import groupby
from typing import Any

from flask import current_app, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from node.events.models import Event
from node.extensions import db
from node.fedi.models import RemoteActor
from node.web.helpers import event_time, event_zone, in_zone


@dataclass
class Card:
    event: Event
    starts_at: datetime
    ends_at: datetime
    remaining: int | None
    #: The third-place the event belongs to (this node, or the remote node it comes from).
    place: str
    city: str
    #: The node that re-shared a remote event to us, when it is not the origin.
    shared_by: str | None
    origin_url: str | None

    @property
    def url(self) -> str:
        return url_for("web.event", event_uuid=self.event.uuid)

    @property
    def venue(self) -> str:
        """Where inside the third-place: the room's name (its site is the third-place), or the place."""
        event = self.event
        if event.location_kind == "online":
            return str(_l("Online"))
        venue = event.place_name or ""
        if event.location_kind == "room" and " — " in venue:
            venue = venue.split(" — ", 1)[0]
        # "La Fabrique Commune · La Fabrique Commune": the third-place's own hall says it once.
        return "" if venue.casefold() == (self.place or "").casefold() else venue

    @property
    def local_day(self) -> date:
        return in_zone(self.starts_at, event_zone(self.event)).date()

    @property
    def is_remote(self) -> bool:
        return self.event.is_remote

    @property
    def features(self) -> list[str]:
        return [name for name, offered in (self.event.accessibility or {}).items() if offered is True]

    @property
    def full(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


def remote_actors(events: list[Event]) -> dict[int, RemoteActor]:
    ids = {e.origin_actor_id for e in events if e.origin_actor_id} | {
        e.shared_by_actor_id for e in events if e.shared_by_actor_id
    }
    if not ids:
        return {}
    return {a.id: a for a in db.session.scalars(select(RemoteActor).where(RemoteActor.id.in_(ids)))}


def origin_of(event: Event, actors: dict[int, RemoteActor]) -> tuple[str, str, str | None]:
    """(third-place name, city, origin node URL) of an event."""
    config = current_app.config
    if not event.is_remote:
        return config["HALLES_NAME"], event.city or config["HALLES_CITY"], None
    origin = actors.get(event.origin_actor_id)
    if origin is None:
        return "", event.city, None
    home = origin.ap_id.rsplit("/", 1)[0] if origin.ap_id.endswith("/actor") else origin.ap_id
    return origin.name or origin.domain, event.city or origin.city, home


def make_card(event: Event, starts_at: datetime, ends_at: datetime, remaining: int | None,
              actors: dict[int, RemoteActor]) -> Card:
    place, city, home = origin_of(event, actors)
    shared = actors.get(event.shared_by_actor_id) if event.shared_by_actor_id else None
    return Card(event, starts_at, ends_at, remaining, place, city,
                (shared.name or shared.domain) if shared is not None else None, home)


def cards_from_rows(rows: list[Any]) -> list[Card]:
    """``OccurrenceRow`` items (occurrence, event, remaining) -> cards."""
    actors = remote_actors([row.event for row in rows])
    return [make_card(row.event, row.occurrence.starts_at, row.occurrence.ends_at, row.remaining, actors)
            for row in rows]


def by_day(cards: list[Card]) -> list[tuple[str, list[Card]]]:
    """Consecutive cards grouped under a heading such as 'jeudi 26 mars'."""
    groups = []
    for _day, items in groupby(cards, key=lambda card: card.local_day):
        items = list(items)
        groups.append((event_time(items[0].event, items[0].starts_at, "day_year"), items))
    return groups
