"""Makes the committed fixtures of the upgrade test: a database of schema revision 0001 with sample
rows, dumped as SQL for SQLite and for PostgreSQL (tests/deploy/fixtures/schema_0001.*.sql).

    .venv/bin/python -m tests.deploy.schema_fixture      # PostgreSQL from TEST_DATABASE_URL

Run it only while 0001 is the newest migration (the sample rows are written through today's API).
Once a node is deployed, 0001 never changes again and neither do these files: they stand for the
databases of the nodes already running."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import text

FIXTURES = Path(__file__).parent / "fixtures"
REVISION = "0001"
SQLITE_DUMP = FIXTURES / f"schema_{REVISION}.sqlite.sql"
POSTGRES_DUMP = FIXTURES / f"schema_{REVISION}.postgresql.sql"


def _fill(url: str, instance: Path) -> None:
    from flask_migrate import upgrade

    from node import MIGRATIONS_DIR, create_app
    from node.charters.services import publish_default_charter
    from node.extensions import db
    from node.instance import generate_keys
    from node.ops.doctor import migration_heads
    from tests.deploy.data import seed

    if migration_heads() != {REVISION}:
        sys.exit(f"the newest migration is {migration_heads()}, not {REVISION}: the fixtures stay as committed")
    generate_keys(instance)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "HALLES_INSTANCE": str(instance), "SECRET_KEY": "fixture",
                      "HALLES_URL": "https://halles.example.org", "HALLES_NAME": "Les Halles Civiques",
                      "HALLES_CITY": "Paris", "WTF_CSRF_ENABLED": False, "TESTING": True})
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR, revision=REVISION)
    publish_default_charter(app)
    seed(app)
    with app.app_context():
        # API tokens are secrets even in a fixture: keep the row, not a usable hash.
        db.session.execute(text("UPDATE api_tokens SET token_hash = 'fixture-token-hash'"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def make_sqlite(work: Path) -> None:
    import sqlite3

    path = work / "fixture.db"
    _fill(f"sqlite:///{path}", work / "instance-sqlite")
    connection = sqlite3.connect(path)
    try:
        SQLITE_DUMP.write_text("\n".join(connection.iterdump()) + "\n", encoding="utf-8")
    finally:
        connection.close()


def make_postgresql(work: Path) -> None:
    from tests.support.databases import TEST_DATABASE_URL, _admin_engine, _pg_url

    if not TEST_DATABASE_URL:
        sys.exit("set TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test to make the PostgreSQL fixture")
    name = f"halles_fixture_{uuid.uuid4().hex[:8]}"
    engine = _admin_engine()
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = _pg_url(name)
        _fill(url, work / "instance-postgresql")
        dump = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", "--inserts", "--dbname",
                               url.replace("postgresql+psycopg://", "postgresql://")],
                              capture_output=True, text=True, check=True)
        # Lines only newer pg_dump versions write would stop older servers: the dump must load anywhere.
        lines = [line for line in dump.stdout.splitlines()
                 if not line.startswith(("SET transaction_timeout", "\\restrict", "\\unrestrict"))]
        POSTGRES_DUMP.write_text("\n".join(lines) + "\n", encoding="utf-8")
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def main() -> None:
    FIXTURES.mkdir(exist_ok=True)
    os.environ.setdefault("HALLES_INSTANCE", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as work:
        make_sqlite(Path(work))
        print(f"wrote {SQLITE_DUMP}")
        make_postgresql(Path(work))
        print(f"wrote {POSTGRES_DUMP}")


if __name__ == "__main__":
    main()
