"""Fixtures of the deployment tests: fresh empty databases of either kind, nodes made by `halles init`."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.databases import TEST_DATABASE_URL, _admin_engine, _pg_url
from tests.support.requirements import missing

KINDS = ("sqlite", "postgresql")


@pytest.fixture
def pg_databases():
    """Factory of empty PostgreSQL databases (dropped afterwards); skips without PostgreSQL."""
    created: list[str] = []

    def _make(prefix: str = "halles_deploy") -> str:
        if not TEST_DATABASE_URL:
            missing("postgres", "TEST_DATABASE_URL is not set")
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        engine = _admin_engine()
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001 - any failure means "not available"
            missing("postgres", f"cannot create a database: {exc}")
        finally:
            engine.dispose()
        created.append(name)
        return _pg_url(name)

    yield _make
    if created:
        engine = _admin_engine()
        with engine.connect() as connection:
            for name in created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def empty_database(pg_databases, tmp_path):
    """``empty_database(kind)`` -> URL of a new, empty database of that kind."""
    counter = iter(range(1000))

    def _make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'empty-{next(counter)}.db'}"
        return pg_databases()

    return _make


@pytest.fixture
def init_node(monkeypatch, tmp_path):
    """``init_node(url, folder=None, **init)`` runs `halles init` in-process on an empty database and
    returns the instance folder."""
    import node
    from node.instance import initialise_instance

    made = []
    real_create_app = node.create_app

    def _capturing_create_app(*args, **kwargs):
        # initialise_instance builds its own app and leaves its pool open: closed below.
        app = real_create_app(*args, **kwargs)
        made.append(app)
        return app

    monkeypatch.setattr(node, "create_app", _capturing_create_app)

    def _init(database_url: str, folder: Path | None = None, *, name: str = "Les Halles Civiques",
              city: str = "Paris", url: str = "https://halles.example.org") -> Path:
        folder = folder or tmp_path / f"instance-{uuid.uuid4().hex[:6]}"
        monkeypatch.setenv("HALLES_INSTANCE", str(folder))  # initialise_instance sets it too; restored after
        monkeypatch.setenv("DATABASE_URL", database_url)
        try:
            initialise_instance(folder, name=name, city=city, url=url, address="1 rue de la République")
        finally:
            monkeypatch.delenv("DATABASE_URL")
            while made:
                dispose(made.pop())
        return folder

    return _init


def node_app(instance: Path, database_url: str, *, validate: bool = True, **overrides):
    """The app of a node made by `halles init`: settings (node.json) and secret key are read from its
    folder, as `halles` and gunicorn do (the folder comes from HALLES_INSTANCE in the environment)."""
    from node import create_app

    config = {"HALLES_INSTANCE": str(instance), "SQLALCHEMY_DATABASE_URI": database_url,
              "HALLES_ALLOW_PRIVATE_ADDRESSES": True, "WTF_CSRF_ENABLED": False}
    config.update(overrides)
    previous = os.environ.get("HALLES_INSTANCE")
    os.environ["HALLES_INSTANCE"] = str(instance)
    try:
        return create_app(config, validate=validate)
    finally:
        if previous is None:
            os.environ.pop("HALLES_INSTANCE", None)
        else:
            os.environ["HALLES_INSTANCE"] = previous


def dispose(app) -> None:
    from node.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()
