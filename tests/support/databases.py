"""Test databases: a migrated SQLite file copied per test, or a fresh PostgreSQL database per test
cloned from a migrated template (CREATE DATABASE ... TEMPLATE is fast)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.requirements import missing

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")


def backend() -> str:
    return "postgres" if TEST_DATABASE_URL else "sqlite"


def _pg_url(database: str | None = None) -> str:
    url = make_url(TEST_DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    if database:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _admin_engine():
    return create_engine(_pg_url(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)


class DatabaseFactory:
    """Makes a new, migrated, empty database for each node a test needs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.template: str | None = None
        self.created: list[str] = []

    def _migrate(self, url: str, instance: Path) -> None:
        from flask_migrate import upgrade

        from node import MIGRATIONS_DIR, create_app

        app = create_app(
            {"SQLALCHEMY_DATABASE_URI": url, "HALLES_INSTANCE": str(instance), "SECRET_KEY": "t", "TESTING": True}
        )
        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR)
            from node.extensions import db

            db.engine.dispose()

    def new(self) -> str:
        if backend() == "sqlite":
            if self.template is None:
                path = self.workdir / "template.db"
                self._migrate(f"sqlite:///{path}", self.workdir)
                self.template = str(path)
            target = self.workdir / f"db-{uuid.uuid4().hex[:8]}.db"
            shutil.copy(self.template, target)
            return f"sqlite:///{target}"
        engine = _admin_engine()
        try:
            if self.template is None:
                name = f"halles_tpl_{uuid.uuid4().hex[:8]}"
                with engine.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                self.created.append(name)
                self._migrate(_pg_url(name), self.workdir)
                self.template = name
            name = f"halles_t_{uuid.uuid4().hex[:10]}"
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
            self.created.append(name)
            return _pg_url(name)
        finally:
            engine.dispose()

    def drop_all(self) -> None:
        if backend() != "postgres" or not self.created:
            return
        engine = _admin_engine()
        with engine.connect() as conn:
            for name in reversed(self.created):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
        self.created.clear()


def check_postgres_available() -> None:
    if not TEST_DATABASE_URL:
        return
    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        missing("postgres", f"cannot connect to TEST_DATABASE_URL: {exc}")


def require_postgres() -> None:
    if not TEST_DATABASE_URL:
        missing("postgres", "TEST_DATABASE_URL is not set")


__all__ = ["DatabaseFactory", "backend", "check_postgres_available", "require_postgres", "pytest"]
