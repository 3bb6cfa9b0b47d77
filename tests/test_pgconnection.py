"""node/common/pgconnection.py on a real PostgreSQL server: statements psycopg prepared survive the
rollbacks of transactions that went well (the pool's, the session's, the worker's idle poll) and are
forgotten, as psycopg does, after a transaction that failed; the connection works either way."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.requirements import missing

PROBE = "SELECT count(*) FROM inbox_items WHERE state = %s"


@pytest.fixture
def pg_app(make_app):
    app = make_app()
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        missing("postgres", "TEST_DATABASE_URL is not set")
    return app


def dbapi_connection():
    from node.extensions import db

    return db.session.connection().connection.dbapi_connection


def server_statements(connection) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements", prepare=False)
        return [row[0] for row in cursor.fetchall()]


def run_probe(connection, times: int = 6) -> None:
    with connection.cursor() as cursor:
        for _ in range(times):  # psycopg prepares a statement from its fifth run on a connection
            cursor.execute(PROBE, ["pending"])
            assert cursor.fetchone() == (0,)


def is_prepared(connection) -> bool:
    return any("FROM inbox_items WHERE state" in statement for statement in server_statements(connection))


def test_the_engine_connects_with_the_keeping_connection(pg_app):
    from node.common.pgconnection import KeepPreparedConnection

    with pg_app.app_context():
        assert isinstance(dbapi_connection(), KeepPreparedConnection)


def test_a_clean_rollback_keeps_prepared_statements(pg_app):
    from node.extensions import db

    with pg_app.app_context():
        connection = dbapi_connection()
        run_probe(connection)
        assert is_prepared(connection)
        db.session.rollback()  # a read-only transaction ends: the session rolls it back
        connection = dbapi_connection()
        assert is_prepared(connection)
        run_probe(connection, times=1)  # psycopg still names it, and the server still holds it
        db.session.remove()  # the pool takes it back (its own rollback)
        assert is_prepared(dbapi_connection())


def test_after_a_failed_transaction_they_are_forgotten_and_the_connection_works(pg_app):
    from sqlalchemy.exc import DataError

    from node.extensions import db

    with pg_app.app_context():
        connection = dbapi_connection()
        run_probe(connection)
        with pytest.raises(DataError):
            db.session.execute(text("SELECT 1 / 0"))
        db.session.rollback()
        connection = dbapi_connection()
        assert not is_prepared(connection)  # psycopg's own rollback: everything deallocated
        run_probe(connection)  # prepared again, no "prepared statement does not exist"
        assert is_prepared(connection)


def test_a_rollback_in_a_pipeline_is_psycopgs_own(pg_app):
    with pg_app.app_context():
        connection = dbapi_connection()
        run_probe(connection)
        with connection.pipeline():
            connection.execute("SELECT 1")
            connection.rollback()
        run_probe(connection, times=1)


def test_the_workers_idle_poll_leaves_the_prepared_statements(pg_app):
    from node.extensions import db
    from node.fedi.worker import _nothing_pending

    with pg_app.app_context():
        run_probe(dbapi_connection())
        db.session.commit()
        assert _nothing_pending("", [])
        assert is_prepared(dbapi_connection())


def test_a_two_phase_transaction_keeps_psycopgs_rules(pg_app):
    """psycopg refuses ``rollback()`` during a two-phase transaction; so does this connection."""
    import psycopg

    from node.extensions import db

    with pg_app.app_context():
        connection = db.engine.raw_connection()
        try:
            dbapi = connection.dbapi_connection
            dbapi.rollback()
            dbapi.tpc_begin(dbapi.xid(1, "halles-test", "branch"))
            dbapi.execute("SELECT 1")
            with pytest.raises(psycopg.ProgrammingError, match="two-phase"):
                dbapi.rollback()
            dbapi.tpc_rollback()
        finally:
            connection.close()


def test_psycopgs_state_is_where_the_connection_reads_it(pg_app):
    """The fast rollback reads private psycopg state; a release that renamed it would silently make
    every rollback psycopg's own again (correct, but slower): this test says so first."""
    from node.common.pgconnection import PSYCOPG_STATE

    with pg_app.app_context():
        connection = dbapi_connection()
        idle = {name: getattr(connection, name, "missing") for name in PSYCOPG_STATE}
        assert idle == {"_pipeline": None, "_num_transactions": 0, "_tpc": None}
        with connection.pipeline():
            assert connection._pipeline is not None
        with connection.transaction():
            assert connection._num_transactions == 1


def test_when_psycopgs_state_cannot_be_read_the_rollback_is_psycopgs_own(pg_app, monkeypatch):
    from node.common import pgconnection
    from node.extensions import db

    monkeypatch.setattr(pgconnection, "PSYCOPG_STATE", ("_pipeline", "_renamed_in_a_later_release", "_tpc"))
    with pg_app.app_context():
        connection = dbapi_connection()
        run_probe(connection)
        assert is_prepared(connection)
        db.session.rollback()
        connection = dbapi_connection()
        assert not is_prepared(connection)  # forgotten, as psycopg itself does
        run_probe(connection)
        assert is_prepared(connection)
