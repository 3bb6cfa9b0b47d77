"""Shared fixtures. Factories are callables: ``make_org(name=...)``, ``make_user(role=...)``.

Every test gets its own database (SQLite file, or a PostgreSQL database when TEST_DATABASE_URL is
set) and its own instance folder with node keys."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.support.databases import DatabaseFactory, check_postgres_available
from tests.support.smtp import SmtpServer

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory):
    check_postgres_available()
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.drop_all()


@pytest.fixture
def make_app(database_factory, tmp_path):
    """Build a node app with its own database and instance folder; call it several times for several nodes."""
    from node import create_app
    from node.extensions import db
    from node.instance import generate_keys

    apps = []

    def _make(**overrides):
        instance = Path(tmp_path) / f"instance-{next(_counter)}"
        instance.mkdir()
        generate_keys(instance)
        config = {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": database_factory.new(),
            "HALLES_INSTANCE": str(instance),
            "HALLES_URL": "http://127.0.0.1:5000",
            "HALLES_NAME": "Les Halles Civiques",
            "HALLES_CITY": "Paris",
            "HALLES_ALLOW_PRIVATE_ADDRESSES": True,
            "WTF_CSRF_ENABLED": False,
        }
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def make_org(app):
    from node.extensions import db
    from node.organisations.models import Organisation

    def _make(name: str | None = None, *, resident: bool = False, **fields) -> Organisation:
        n = next(_counter)
        with app.app_context():
            org = Organisation(
                name=name or f"Association {n}",
                slug=fields.pop("slug", f"association-{n}"),
                resident=resident,
                description=fields.pop("description", "Une association membre."),
                topics=fields.pop("topics", []),
                **fields,
            )
            db.session.add(org)
            db.session.commit()
            db.session.refresh(org)
            db.session.expunge(org)
            return org

    return _make


@pytest.fixture
def make_user(app):
    """Create a user and an API token: returns ``(user_id, headers)`` for the test client."""
    from node.common.auth import TOKEN_PREFIX, hash_secret, new_secret
    from node.extensions import db
    from node.members.models import ApiToken, User

    def _make(role: str = "member", organisation_id: int | None = None, email: str | None = None):
        n = next(_counter)
        with app.app_context():
            user = User(email=email or f"person{n}@example.org", name=f"Person {n}", role=role,
                        organisation_id=organisation_id)
            db.session.add(user)
            db.session.flush()
            secret = new_secret(TOKEN_PREFIX)
            db.session.add(ApiToken(user_id=user.id, token_hash=hash_secret(secret), label="test"))
            db.session.commit()
            return user.id, {"Authorization": f"Bearer {secret}"}

    return _make


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()
