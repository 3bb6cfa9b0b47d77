"""Small helpers shared by the page modules: dates in the right zone and language, money, safe
redirects, the signed-in person, and turning a domain error into a message on the form."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from babel.numbers import format_currency
from flask import current_app, flash, redirect, request, url_for
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup, escape

from node.common.errors import HallesError
from node.common.timeutil import as_aware_utc, zone
from node.extensions import db


def node_zone() -> ZoneInfo:
    return zone(current_app.config["HALLES_TIMEZONE"])


def event_zone(event: Any) -> ZoneInfo:
    try:
        return zone(event.timezone or current_app.config["HALLES_TIMEZONE"])
    except ValueError:
        return ZoneInfo("UTC")


def in_zone(utc_naive: datetime, tz: ZoneInfo) -> datetime:
    return as_aware_utc(utc_naive).astimezone(tz)


# Patterns are translatable: the French catalogue turns "EEEE d MMMM y, HH:mm" into
# "EEEE d MMMM y 'à' HH:mm", so each language gets its own word order.
def pattern(kind: str) -> str:
    patterns = {
        "full": _("EEEE d MMMM y, HH:mm"),
        "day": _("EEEE d MMMM"),
        "day_year": _("EEEE d MMMM y"),
        "short_day": _("EEE d MMM"),
        "time": _("HH:mm"),
        "date": _("d MMMM y"),
        "numeric": _("dd/MM/y HH:mm"),
    }
    # Anything else is a CLDR pattern used as is ("d", "MMM"...).
    return patterns.get(kind, kind)


def format_in(utc_naive: datetime | None, tz: ZoneInfo, kind: str = "full") -> str:
    """A naive UTC datetime shown in ``tz`` in the visitor's language (Flask-Babel)."""
    if utc_naive is None:
        return ""
    return format_datetime(in_zone(utc_naive, tz), pattern(kind), rebase=False)


def event_time(event: Any, utc_naive: datetime | None, kind: str = "full") -> str:
    """An event's time in the event's own time zone (a Lyon event shows Lyon time everywhere)."""
    return format_in(utc_naive, event_zone(event), kind)


def node_time(utc_naive: datetime | None, kind: str = "full") -> str:
    return format_in(utc_naive, node_zone(), kind)


def zone_label(event: Any) -> str:
    """'heure de Paris' style note: the zone's long name in the visitor's language."""
    tz = event_zone(event)
    moment = in_zone(event.starts_at, tz)
    return format_datetime(moment, "zzzz", rebase=False)


def euros(cents: int | None) -> str:
    if cents is None:
        return ""
    return format_currency(Decimal(cents) / 100, "EUR", locale=str(get_locale()))


def price_label(cents: int | None) -> str:
    if not cents:
        return _("Free")
    return euros(cents)


def paragraphs(text: str | None) -> Markup:
    """Plain text -> escaped HTML paragraphs (descriptions are stored as plain text)."""
    blocks = [block.strip() for block in (text or "").replace("\r\n", "\n").split("\n\n") if block.strip()]
    return Markup("".join(f"<p>{escape(block)}</p>".replace("\n", "<br>") for block in blocks))


def web_url(value: Any) -> str:
    """The address if it is an http(s) URL, else "": what other nodes and forms send is not trusted to
    be a link (a ``javascript:`` URL in an href would run on click)."""
    text = str(value or "").strip()
    scheme = urlsplit(text).scheme.lower()
    return text if scheme in ("http", "https") and "//" in text else ""


def actor() -> Any:
    """The signed-in user, or None for a visitor."""
    if current_user and current_user.is_authenticated:
        return current_user._get_current_object()
    return None


def is_safe_next(target: str | None) -> bool:
    """Only a path on this site (never //host or a scheme): no open redirect after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def redirect_back(default_endpoint: str, **values: Any):
    target = request.form.get("next") or request.args.get("next")
    if is_safe_next(target):
        return redirect(target)
    return redirect(url_for(default_endpoint, **values))


def fail(exc: HallesError) -> None:
    """Undo the half-done change and show the service's explanation on the page. The services explain
    in English (the API's language): the page marks it as such under a translated heading."""
    db.session.rollback()
    flash(exc.detail, "detail")


def form_errors(form: Any) -> None:
    """Flash one summary line; each field shows its own error next to it."""
    if form.errors:
        flash(_("Please correct the fields marked below."), "error")


def staff_required(view):
    """Web pages reserved to staff: sign-in first (redirect), then the role (403 page)."""
    from node.common.permissions import require_staff

    @wraps(view)
    def wrapper(*args, **kwargs):
        if actor() is None:
            return current_app.login_manager.unauthorized()
        require_staff(actor(), "open this page")
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    from node.common.permissions import require_admin

    @wraps(view)
    def wrapper(*args, **kwargs):
        if actor() is None:
            return current_app.login_manager.unauthorized()
        require_admin(actor(), "open this page")
        return view(*args, **kwargs)

    return wrapper


def query_string(params: dict[str, Any]) -> str:
    """A query string without empty values, repeated keys for lists."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list | tuple):
            pairs.extend((key, str(item)) for item in value)
        else:
            pairs.append((key, str(value)))
    return urlencode(pairs)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """Midnight of ``day`` in ``tz`` as naive UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def today_local() -> date:
    return datetime.now(node_zone()).date()
