"""PostgreSQL: a pooled connection the server dropped (a restart, an administrator, a network cut)
fails the one request that meets it with the database's own error, goes away instead of back to the
pool, and the next request is served as usual."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from tests.resilience import tally

ACTIVITY = {"id": "https://lyon.example/activities/1", "type": "Create", "actor": "https://lyon.example/actor",
            "object": {"id": "https://lyon.example/events/1", "type": "Event"}}


def _dropped_by_the_server(db) -> None:
    """The pool holds one connection, which the server then ends (pg_terminate_backend)."""
    db.session.remove()
    db.engine.dispose()
    pooled = db.engine.raw_connection()
    pid = pooled.driver_connection.info.backend_pid
    pooled.close()
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
    tally.fault("database connection dropped by the server")


def test_a_dropped_connection_fails_one_inbox_store_and_leaves_the_pool(app):
    from node.extensions import db
    from node.fedi import inbox_store

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has no server to drop a connection")
        _dropped_by_the_server(db)
        with pytest.raises(OperationalError):
            inbox_store.store(ACTIVITY, ACTIVITY["actor"])
        assert db.engine.pool.checkedout() == 0  # handed back (closed), not leaked
        assert inbox_store.store(ACTIVITY, ACTIVITY["actor"]).item_id is not None


def test_a_dropped_connection_fails_one_rate_limit_take_and_leaves_the_pool(app):
    from node.common import ratelimit
    from node.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has no server to drop a connection")
        _dropped_by_the_server(db)
        rate = ratelimit.Rate(5, 60)
        with pytest.raises(OperationalError):
            ratelimit._take_in_one_statement(db.engine, {"key": "test:x", "capacity": 5.0, "now": 1.0,
                                                         "per_second": 1.0, "spend": 1.0})
        assert db.engine.pool.checkedout() == 0
        assert ratelimit.take("test", "x", rate).allowed


def test_a_dropped_connection_fails_one_batch_and_leaves_the_pool(app):
    from node.common import jsontext
    from node.extensions import db
    from node.fedi import inbox_store

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has no server to drop a connection")
        _dropped_by_the_server(db)
        batch = inbox_store.BatchStore(ACTIVITY["actor"])
        try:
            batch.add(ACTIVITY, jsontext.dumps(ACTIVITY))
            with pytest.raises(OperationalError):
                batch.finish()
        finally:
            batch.close()
        assert db.engine.pool.checkedout() == 0
        assert inbox_store.store(ACTIVITY, ACTIVITY["actor"]).item_id is not None


def test_a_request_meeting_a_dropped_connection_is_answered_503_and_the_next_is_served(app):
    """The API and the pages answer 503 with Retry-After (try again: nothing was saved), not 500."""
    from node.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has no server to drop a connection")
    client = app.test_client()
    for path, kind in (("/api/v1/events", "application/problem+json"), ("/events", "text/html")):
        with app.app_context():
            _dropped_by_the_server(db)
        response = client.get(path)
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.content_type.startswith(kind)
        assert "could not be reached" in response.text
        assert client.get(path).status_code == 200


def test_an_inbox_post_meeting_a_dropped_connection_is_answered_503_and_the_retry_is_stored(make_node):
    """What a peer sees: 503 with Retry-After (its delivery tries again), nothing stored, then 202."""
    from node.extensions import db
    from tests.network.test_inbox_security import create, event_object, inbox_count, post, signed

    paris, lyon = make_node("Les Halles Civiques", "Paris"), make_node("La Fabrique Commune", "Lyon")
    if paris.query(lambda: db.engine.dialect.name) != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    activity = create(lyon, signed(lyon, event_object(lyon)))
    paris.query(lambda: _dropped_by_the_server(db))
    refused = post(paris, lyon, activity)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "5" and "nothing was saved" in refused.json()["detail"]
    assert inbox_count(paris) == 0
    assert post(paris, lyon, activity).status_code == 202
    assert inbox_count(paris) == 1


def test_the_worker_outlives_a_dropped_connection(app, caplog):
    """A worker round that meets a dropped connection logs the failed task and goes on; the next round
    works (nothing to restart after PostgreSQL restarted)."""
    import logging

    from node.extensions import db
    from node.fedi import inbox_store
    from node.worker import run_once

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has no server to drop a connection")
        inbox_store.store(ACTIVITY, ACTIVITY["actor"])  # something for the inbox task to claim
        _dropped_by_the_server(db)
    with caplog.at_level(logging.ERROR):
        run_once(app)  # does not raise
    assert any(record.message.startswith("worker task") and "failed" in record.message for record in caplog.records)
    run_once(app)
    with app.app_context():
        from sqlalchemy import select

        from node.fedi.models import InboxItem

        assert db.session.scalar(select(InboxItem.state)) != "pending"
