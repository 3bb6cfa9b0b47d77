"""Upgrades: `halles db upgrade` brings a database made by an earlier schema (committed fixture of
revision 0001 with sample rows, see schema_fixture.py) to head with its data intact, and is safe to
run at every start; the whole migration chain goes down to base and up again on both backends."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from datetime import datetime

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from node import MIGRATIONS_DIR
from node.ops.doctor import database_revisions, migration_heads
from tests.deploy.conftest import KINDS, dispose
from tests.deploy.data import EVENT, admin_headers, rows_by_key
from tests.deploy.schema_fixture import POSTGRES_DUMP, REVISION, SQLITE_DUMP
from tests.support.requirements import missing


def load_fixture(kind: str, url: str) -> None:
    if kind == "sqlite":
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            connection.executescript(SQLITE_DUMP.read_text(encoding="utf-8"))
        finally:
            connection.close()
        return
    psql = shutil.which("psql")
    if psql is None:
        missing("postgres", "psql (PostgreSQL client) is not installed")
    subprocess.run([psql, "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--file", str(POSTGRES_DUMP),
                    url.replace("postgresql+psycopg://", "postgresql://")], check=True, capture_output=True)


def columns_of(url: str) -> dict[str, set[str]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            return {name: {column["name"] for column in inspector.get_columns(name)}
                    for name in inspector.get_table_names()}
    finally:
        engine.dispose()


def app_for(url, tmp_path, make_app_config=None):
    from node import create_app
    from node.instance import generate_keys

    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    generate_keys(instance)
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "HALLES_INSTANCE": str(instance), "SECRET_KEY": "t" * 40,
                       "HALLES_URL": "https://halles.example.org", "TESTING": True, "WTF_CSRF_ENABLED": False,
                       **(make_app_config or {})})


@pytest.mark.parametrize("kind", KINDS)
def test_the_fixture_is_a_database_of_revision_0001(kind, empty_database, tmp_path):
    """If 0001 was regenerated (allowed only before any node is deployed), remake the fixtures:
    `TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m tests.deploy.schema_fixture`."""
    from flask_migrate import upgrade

    fixture_url = empty_database(kind)
    load_fixture(kind, fixture_url)
    assert database_revisions(fixture_url) == {REVISION}
    reference_url = empty_database(kind)
    app = app_for(reference_url, tmp_path)
    try:
        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR, revision=REVISION)
    finally:
        dispose(app)
    assert columns_of(fixture_url) == columns_of(reference_url), (
        "tests/deploy/fixtures no longer match migration 0001: remake them with "
        "`python -m tests.deploy.schema_fixture` (see its docstring)")


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_from_an_earlier_schema_keeps_every_row(kind, empty_database, tmp_path):
    url = empty_database(kind)
    load_fixture(kind, url)
    before = rows_by_key(url)
    assert len(before["events"]) == 1 and len(before["organisations"]) == 1 and len(before["follows"]) == 1

    app = app_for(url, tmp_path)
    try:
        runner = app.test_cli_runner()
        for _ in range(2):  # at every start: the second run must change nothing
            result = runner.invoke(args=["db", "upgrade"])
            assert result.exit_code == 0, result.output
        assert database_revisions(url) == migration_heads()

        after = rows_by_key(url)
        for table, rows in before.items():
            if table == "alembic_version":
                continue
            assert set(after[table]) == set(rows), f"rows of {table} changed"
            for key, row in rows.items():
                # New columns may appear; every old column keeps its value.
                assert {column: after[table][key][column] for column in row} == row, f"{table} {key} changed"

        client = app.test_client()
        listing = client.get("/api/v1/events").get_json()
        assert [item["title"] for item in listing["items"]] == [EVENT["title"]]
        # Migration 0002 indexed the events already there for full-text search.
        first_word = EVENT["title"].split()[0]
        found = client.get("/api/v1/events", query_string={"q": first_word.upper()}).get_json()
        assert [item["title"] for item in found["items"]] == [EVENT["title"]]
        # Sequences came through too: new rows get new ids.
        headers = admin_headers(app, "new-admin@halles.example.org")
        response = client.post("/api/v1/organisations", json={"name": "Nouvelle association", "description": "x"},
                               headers=headers)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["id"] not in {key[0] for key in before["organisations"]}
    finally:
        dispose(app)


@pytest.mark.parametrize("kind", KINDS)
def test_downgrade_to_base_and_upgrade_again(kind, empty_database, tmp_path):
    from flask_migrate import downgrade, upgrade

    url = empty_database(kind)
    app = app_for(url, tmp_path)
    try:
        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR)
            tables = set(columns_of(url))
            assert {"events", "organisations", "users", "follows"} <= tables
            downgrade(directory=MIGRATIONS_DIR, revision="base")
            assert set(columns_of(url)) <= {"alembic_version"}
            assert database_revisions(url) == set()
            upgrade(directory=MIGRATIONS_DIR)
            assert set(columns_of(url)) == tables
            assert database_revisions(url) == migration_heads()
        headers = admin_headers(app)
        response = app.test_client().post("/api/v1/organisations", json={"name": "Après", "description": "x"},
                                          headers=headers)
        assert response.status_code == 201
    finally:
        dispose(app)


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_gives_pending_inbox_items_their_shard(kind, empty_database, tmp_path):
    """Migration 0003: a pending item is claimed by the worker process of its object's shard after the
    upgrade as before it; the migration's frozen copy of ``shard_of`` agrees with the model's."""
    import importlib
    import json

    from flask_migrate import upgrade
    from sqlalchemy import text

    from node.extensions import db
    from node.fedi.models import shard_of

    migration = importlib.import_module("node.migrations.versions.0003_inbox_shard")
    about_an_event = {"id": "https://lyon.example.org/activities/1", "type": "Update",
                      "actor": "https://lyon.example.org/actor",
                      "object": {"id": "https://lyon.example.org/events/7", "type": "Event"}}
    by_reference = {"id": "https://lyon.example.org/activities/2", "type": "Delete",
                    "actor": "https://lyon.example.org/actor", "object": "https://lyon.example.org/events/7"}
    no_object = {"id": "https://lyon.example.org/activities/3", "type": "Follow", "actor": "x", "object": None}
    for activity in (about_an_event, by_reference, no_object):
        assert migration.shard_of(activity) == shard_of(activity)
    assert shard_of(about_an_event) == shard_of(by_reference)

    url = empty_database(kind)
    app = app_for(url, tmp_path)
    try:
        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR, revision="0002")
            for state, activity in (("pending", about_an_event), ("applied", by_reference)):
                db.session.execute(text(
                    "INSERT INTO inbox_items (activity_id, activity_type, signer, activity, state, received_at) "
                    "VALUES (:id, :type, :signer, :activity, :state, '2026-11-01 10:00:00')"),
                    {"id": activity["id"], "type": activity["type"], "signer": activity["actor"],
                     "activity": json.dumps(activity), "state": state})
            db.session.commit()
            upgrade(directory=MIGRATIONS_DIR)
            shards = dict(db.session.execute(text("SELECT state, shard FROM inbox_items")).all())
        assert shards == {"pending": shard_of(about_an_event), "applied": 0}
    finally:
        dispose(app)


@pytest.mark.parametrize("kind", KINDS)
def test_received_activities_are_compressed_with_lz4_on_postgresql(kind, empty_database, tmp_path):
    """Migration 0004: on a PostgreSQL server built with LZ4, a received activity large enough to be
    compressed is compressed with it (cheaper than pglz); it reads back whole. Nothing changes on
    SQLite; downgrading gives the column back its server's default."""
    import sqlalchemy as sa
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from node.extensions import db

    activity = {"id": "https://lyon.example.org/activities/1", "type": "Create",
                "actor": "https://lyon.example.org/actor",
                "object": {"id": "https://lyon.example.org/events/1", "type": "Event",
                           "content": "Atelier de réparation de vélos, ouvert à toutes et tous. " * 60}}
    app = app_for(empty_database(kind), tmp_path)
    try:
        with app.app_context():
            upgrade(directory=MIGRATIONS_DIR)
            items = db.metadata.tables["inbox_items"]
            db.session.execute(items.insert().values(
                activity_id=activity["id"], activity_type="Create", signer=activity["actor"], activity=activity,
                state="pending", received_at=datetime(2026, 11, 1, 10), shard=0))
            db.session.commit()
            assert db.session.scalar(sa.select(items.c.activity)) == activity
            if kind != "postgresql":
                return
            has_lz4 = db.session.scalar(text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"))
            column = text("SELECT attcompression FROM pg_attribute "
                          "WHERE attrelid = 'inbox_items'::regclass AND attname = 'activity'")
            stored = db.session.scalar(text("SELECT pg_column_compression(activity) FROM inbox_items"))
            if has_lz4:
                assert db.session.scalar(column) == "l"
                assert stored == "lz4"
            else:
                assert db.session.scalar(column) == ""
            db.session.commit()
            downgrade(directory=MIGRATIONS_DIR, revision="0003")
            assert db.session.scalar(column) == ""
            db.session.commit()
    finally:
        dispose(app)
