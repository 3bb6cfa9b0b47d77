"""The ``web`` blueprint: every HTML page of the node. The app factory registers it (``web``).

Page modules attach their routes to the one blueprint; this module imports them and adds what every
page shares: the language switch (``?lang=fr|en``, kept in the session), template helpers, and
security headers (no framing except the embeddable widget, a Content-Security-Policy)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request, session
from flask_babel import get_locale
from flask_wtf.csrf import generate_csrf
from sqlalchemy.exc import SQLAlchemyError

from node import config as config_module
from node.common.permissions import is_staff
from node.ops.production import is_framable, tile_origin

# Importing the page modules registers their routes on ``web``.
from node.web import account, admin, helpers, labels, manage, office, public  # noqa: F401
from node.web.blueprint import web

__all__ = ["web"]


def N_(message: str) -> str:  # noqa: N802 - the usual name of gettext's "mark only" marker
    """Mark a message for extraction; it is translated later, when used."""
    return message


@web.record_once
def _configure_login(state) -> None:
    """Flask-Login's "please log in" flash, in the visitor's language and styled as a notice."""
    from flask_babel import gettext

    from node.extensions import login_manager

    login_manager.login_message = N_("Please sign in to see this page.")
    login_manager.login_message_category = "info"
    login_manager.localize_callback = gettext


@web.before_app_request
def remember_language() -> None:
    if request.path.startswith("/api/"):
        return  # API clients have no session to keep it in
    chosen = request.args.get("lang")
    if chosen in config_module.LANGUAGES:
        session["lang"] = chosen


def _user() -> Any:
    try:
        return helpers.actor()
    except SQLAlchemyError:  # an error page must render even when the database is the problem
        return None


def _switch_url(lang: str) -> str:
    args = request.args.to_dict(flat=False)
    args["lang"] = [lang]
    return request.path + "?" + helpers.query_string(args)


@web.app_context_processor
def page_context() -> dict[str, Any]:
    user = _user()
    config = current_app.config
    return {
        "node": {
            "name": config["HALLES_NAME"],
            "city": config["HALLES_CITY"],
            "url": config["HALLES_URL"],
            "address": config.get("HALLES_ADDRESS", ""),
        },
        "lang": str(get_locale() or "fr"),
        "languages": config_module.LANGUAGES,
        "switch_url": _switch_url,
        "user": user,
        "user_is_staff": is_staff(user),
        "user_is_admin": user is not None and user.role == "admin",
        "labels": labels,
        "label": labels.label,
        "event_time": helpers.event_time,
        "node_time": helpers.node_time,
        "zone_label": helpers.zone_label,
        "euros": helpers.euros,
        "price_label": helpers.price_label,
        "paragraphs": helpers.paragraphs,
        "web_url": helpers.web_url,
        "csrf_token": generate_csrf,
    }


@web.after_request
def security_headers(response):
    """The site-wide policy (node.ops.production) with one difference for pages: images may come from
    any https host, since events and rooms can show a picture hosted elsewhere."""
    framable = is_framable(request.path)
    tiles = tile_origin(current_app.config.get("HALLES_TILE_URL") or "")
    images = " ".join(filter(None, ["'self'", "data:", "https:", tiles]))
    policy = [
        "default-src 'self'",
        f"img-src {images}",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors *" if framable else "frame-ancestors 'none'",
    ]
    response.headers.setdefault("Content-Security-Policy", "; ".join(policy))
    return response
