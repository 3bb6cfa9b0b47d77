"""The Flask app of one third-place: ``create_app(config=None)``.

Order: configuration -> extensions -> blueprints -> CLI -> validation. Validation runs last so that
``halles init`` (which creates what validation checks) can still start."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from flask import Flask, current_app, request

from node import config as config_module
from node.extensions import babel, csrf, db, login_manager, migrate

#: Anonymous answers the same for every visitor, served from node/common/microcache.py for
#: HALLES_LISTING_CACHE_SECONDS: the home page and the events page (no form, no session for a visitor;
#: an answer that sets a cookie is never kept), the events API list, the feeds and the partners' widget.
PUBLIC_LISTING_PATHS = ("/", "/events", "/api/v1/events", "/events.ics", "/events.atom", "/embed")

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")

#: Domain modules whose ``views`` define blueprints named ``api`` and/or ``web``.
DOMAINS = ("members", "organisations", "charters", "spaces", "events", "mail", "fedi", "ops", "demo", "web")


def _select_locale() -> str:
    from flask import session

    chosen = request.args.get("lang") or session.get("lang")
    if chosen in config_module.LANGUAGES:
        return chosen
    # The node's language (French unless HALLES_LANGUAGE says otherwise); the switch offers the other.
    return current_app.config.get("HALLES_LANGUAGE") or "fr"


def create_app(config: dict[str, Any] | None = None, *, validate: bool = True) -> Flask:
    settings = config_module.load(config)
    app = Flask(__name__, instance_path=settings["HALLES_INSTANCE"], instance_relative_config=False)
    app.config.update(settings)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    babel.init_app(app, locale_selector=_select_locale)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "web.login"

    @login_manager.user_loader
    def _load_user(user_id: str):
        from node.members.models import User

        user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
        return user if user is not None and user.active else None

    from node import models  # noqa: F401 - registers every table on the metadata
    from node.common import problems

    problems.register(app)
    for domain in DOMAINS:
        try:
            views = importlib.import_module(f"node.{domain}.views")
        except ModuleNotFoundError as exc:
            if exc.name != f"node.{domain}.views" and exc.name != f"node.{domain}":
                raise
            continue
        for name in ("api", "web"):
            blueprint = getattr(views, name, None)
            if blueprint is not None:
                if name == "api" or getattr(views, "CSRF_EXEMPT", False):
                    # API writes authenticate with a Bearer token, never with the session cookie,
                    # so a cross-site form cannot ride on them.
                    csrf.exempt(blueprint)
                app.register_blueprint(blueprint)

    from node.openapi import bp as openapi_bp

    app.register_blueprint(openapi_bp)
    if app.config.get("HALLES_LISTING_CACHE_SECONDS"):
        from node.common.microcache import ResponseCache

        # Inside ProxyFix (installed next), so entries are keyed by the visitor's host and scheme.
        app.wsgi_app = ResponseCache(  # type: ignore[method-assign]
            app.wsgi_app, paths=PUBLIC_LISTING_PATHS, ttl=app.config["HALLES_LISTING_CACHE_SECONDS"]
        )
    importlib.import_module("node.ops.production").init_app(app)
    _configure_sqlite(app)
    _configure_postgresql(app)

    from node import cli

    cli.register(app)
    if validate:
        config_module.validate(app.config)
    return app


def _configure_postgresql(app: Flask) -> None:
    """PostgreSQL: connections that keep their prepared statements across clean rollbacks
    (``node.common.pgconnection``)."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return
    from sqlalchemy import event

    from node.common.pgconnection import connect_keeping_prepared

    with app.app_context():
        event.listen(db.engine, "do_connect", connect_keeping_prepared)


def _configure_sqlite(app: Flask) -> None:
    """SQLite: wait for the write lock instead of failing at once, and enforce foreign keys."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from sqlalchemy import event

    from node.common.sqlite_setup import use_wal

    with app.app_context():
        engine = db.engine

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=15000")
            use_wal(cursor)
            cursor.close()
