"""The event filters of the agenda, the map, the widget and the feeds.

A page reads human parameters (``when=weekend``, an inclusive ``end_date``, one checkbox per
accessibility feature) and also the feeds' own parameters (``from``/``to``, comma-separated
``accessible``), and writes one canonical query string — the parameters of ``/events.ics``,
``/events.atom`` and ``/embed`` — so "subscribe to this list" gives exactly the list on screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from werkzeug.datastructures import MultiDict

from node.events.models import ACCESSIBILITY_FEATURES, CATEGORIES
from node.events.periods import PERIODS, period_days
from node.web.helpers import local_midnight, node_zone, query_string, today_local

WHEN_CHOICES = ("today", "weekend", "week", "month", "custom")
#: Periods that move with the calendar: "this weekend" is another weekend next week, so a subscription
#: must not freeze them into dates.
ROLLING = PERIODS
SCOPES = ("network", "local")


def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


@dataclass
class EventFilters:
    when: str = ""
    start_date: date | None = None
    #: Inclusive last day, as people read a date range.
    end_date: date | None = None
    q: str = ""
    city: str = ""
    category: str = ""
    language: str = ""
    free: bool | None = None
    accessible: list[str] = field(default_factory=list)
    scope: str = "network"
    #: Values that were not understood and were left out (shown to the visitor).
    ignored: list[str] = field(default_factory=list)

    # --- reading ------------------------------------------------------------------------------------

    @classmethod
    def from_args(cls, args: MultiDict) -> EventFilters:
        filters = cls()
        when = (args.get("when") or "").strip()
        filters.when = when if when in WHEN_CHOICES else ""
        # The feeds' own range (exclusive ``to``) is accepted so their URLs open as pages too.
        start = _date(args.get("start_date")) or _date(args.get("from"))
        end = _date(args.get("end_date"))
        if end is None and _date(args.get("to")) is not None:
            end = _date(args.get("to")) - timedelta(days=1)
        if start or end:
            filters.when = filters.when or "custom"
        if filters.when == "custom":
            filters.start_date, filters.end_date = start, end
            if start and end and end < start:
                filters.ignored.append("end_date")
                filters.end_date = None
        filters.q = (args.get("q") or "").strip()[:200]
        filters.city = (args.get("city") or "").strip()[:120]
        category = (args.get("category") or "").strip()
        if category in CATEGORIES:
            filters.category = category
        elif category:
            filters.ignored.append("category")
        language = (args.get("language") or "").strip().lower()
        if len(language) == 2 and language.isalpha():
            filters.language = language
        free = (args.get("free") or "").strip().lower()
        filters.free = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(free)
        features: list[str] = []
        for raw in args.getlist("accessible"):
            for part in raw.split(","):
                part = part.strip()
                if part in ACCESSIBILITY_FEATURES and part not in features:
                    features.append(part)
                elif part:
                    filters.ignored.append("accessible")
        filters.accessible = features
        scope = (args.get("scope") or "network").strip()
        filters.scope = scope if scope in SCOPES else "network"
        return filters

    # --- the date range -----------------------------------------------------------------------------

    def date_range(self, today: date | None = None) -> tuple[date | None, date | None]:
        """(first day, day after the last) in the node's zone; (None, None) means "from now on"."""
        today = today or today_local()
        if self.when in PERIODS:
            return period_days(self.when, today)
        if self.when == "custom":
            end = self.end_date + timedelta(days=1) if self.end_date else None
            return self.start_date, end
        return None, None

    def service_kwargs(self, now: datetime, today: date | None = None) -> dict[str, Any]:
        """Keyword arguments of ``events.services.list_occurrences``."""
        first, after = self.date_range(today)
        tz = node_zone()
        start = local_midnight(first, tz) if first else now
        # Occurrences already over are not interesting, even inside the chosen days.
        start = max(start, now) if first is None or first <= (today or today_local()) else start
        return {
            "scope": self.scope,
            "start": start,
            "end": local_midnight(after, tz) if after else None,
            "q": self.q or None,
            "category": self.category or None,
            "city": self.city or None,
            "language": self.language or None,
            "free": self.free,
            "accessible": self.accessible or None,
        }

    # --- writing ------------------------------------------------------------------------------------

    def feed_params(self, today: date | None = None) -> dict[str, Any]:
        """The canonical parameters: what ``/events.ics``, ``/events.atom`` and ``/embed`` read."""
        first, after = self.date_range(today)
        return {
            "scope": self.scope,
            "from": first.isoformat() if first else None,
            "to": after.isoformat() if after else None,
            "q": self.q or None,
            "city": self.city or None,
            "category": self.category or None,
            "language": self.language or None,
            "free": None if self.free is None else ("true" if self.free else "false"),
            "accessible": ",".join(self.accessible) or None,
        }

    def feed_query(self, today: date | None = None) -> str:
        return query_string(self.feed_params(today))

    @property
    def rolling(self) -> bool:
        return self.when in ROLLING

    def widget_query(self) -> str:
        """The widget's parameters: the feed's, with a rolling period by name (``/embed`` reads it each
        time it loads, so "this weekend" stays this weekend)."""
        params = self.feed_params()
        if self.rolling:
            params = {"when": self.when, **params, "from": None, "to": None}
        return query_string(params)

    def calendar_query(self) -> str:
        """The calendar and Atom feeds' parameters: like the widget's, a rolling period by name (the
        feeds read ``when`` at each fetch; a frozen "this weekend" would be empty from Monday on)."""
        return self.widget_query()

    def page_params(self) -> dict[str, Any]:
        """The parameters that reproduce this page (the form's own names)."""
        return {
            "when": self.when or None,
            "start_date": self.start_date.isoformat() if self.when == "custom" and self.start_date else None,
            "end_date": self.end_date.isoformat() if self.when == "custom" and self.end_date else None,
            "q": self.q or None,
            "city": self.city or None,
            "category": self.category or None,
            "language": self.language or None,
            "free": None if self.free is None else ("true" if self.free else "false"),
            "accessible": list(self.accessible),
            "scope": None if self.scope == "network" else self.scope,
        }

    def page_query(self) -> str:
        return query_string(self.page_params())

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list (the scope aside)."""
        return bool(self.when or self.q or self.city or self.category or self.language or self.free is not None
                    or self.accessible)
