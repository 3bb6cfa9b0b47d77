"""Room prices: the room's hourly tariff for the booker's category, pro rata per minute.

Pure functions (no database, no Flask) so the rule is easy to test and to show on a quote."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from node.common.errors import InvalidInput
from node.spaces.models import BOOKER_CATEGORIES


def hourly_rate_cents(tariffs: dict[str, Any] | None, category: str) -> int:
    """The price per hour for ``category``, or InvalidInput when the room is not rented to it."""
    if category not in BOOKER_CATEGORIES:
        raise InvalidInput(f"unknown category {category!r}: use one of {', '.join(BOOKER_CATEGORIES)}")
    rate = (tariffs or {}).get(category)
    # A tariff stored as JSON may come back as a float from some backends; bools are not prices.
    if rate is None or isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        raise InvalidInput(f"this room is not rented to {category}")
    return int(rate)


def price_for_minutes(rate_cents_per_hour: int, minutes: int) -> int:
    """Pro rata per minute, rounded half up to the cent: 1000 c/h for 90 min -> 1500 c."""
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    exact = Decimal(rate_cents_per_hour) * Decimal(minutes) / Decimal(60)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def duration_minutes(starts_at: datetime, ends_at: datetime) -> int:
    """Whole minutes between two datetimes (callers only accept minute-aligned times)."""
    return int((ends_at - starts_at) // timedelta(minutes=1))


def booking_price_cents(tariffs: dict[str, Any] | None, category: str, starts_at: datetime, ends_at: datetime) -> int:
    return price_for_minutes(hourly_rate_cents(tariffs, category), duration_minutes(starts_at, ends_at))


def format_euros(cents: int) -> str:
    """1550 -> '15.50' (a string, so no float rounding ever reaches an invoice)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"
