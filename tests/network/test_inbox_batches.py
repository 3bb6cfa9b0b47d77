"""The worker applies the inbox in batches (runs of activities that need no fetch in one transaction):
the outcome is the one of applying each activity alone, in order -- the newest ``updated`` wins in any
order of arrival, a Delete in the middle of a run is not undone by an older Update after it, a failing
or refused activity is marked alone and takes nothing of its neighbours with it, a blocked server's
activities are ignored, and a run that creates an event and updates it leaves one event with the
occurrences of its last version."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from benchmarks.origins import Origin, utc_now


@pytest.fixture
def node(app):
    """A node that follows two origins (and knows their actors), with an empty inbox."""
    from node.extensions import db
    from node.fedi.keystore import store_actor
    from node.fedi.models import Follow

    origins = [Origin.make(index) for index in range(2)]
    with app.app_context():
        for origin in origins:
            actor = store_actor(origin.actor_document())
            db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                                  activity_id=f"{origin.actor_url}#follow"))
        db.session.commit()
    app.origins = origins
    return app


def queue(app, *activities) -> list[int]:
    """Store activities as the inbox does (verified, pending); returns their item ids."""
    from node.fedi.inbox_store import store

    with app.app_context():
        return [store(activity, activity["actor"]).item_id for activity in activities]


def work(app) -> None:
    from node.fedi.worker import process_inbox

    with app.app_context():
        while process_inbox():
            pass


def items(app) -> list[tuple[str, str | None]]:
    from node.extensions import db
    from node.fedi.models import InboxItem

    with app.app_context():
        return [(state, error) for state, error in
                db.session.execute(select(InboxItem.state, InboxItem.error).order_by(InboxItem.id))]


def events(app) -> dict[str, tuple[str, list]]:
    """ap_id -> (title, [(occurrence start, end)])."""
    from node.events.models import Event
    from node.extensions import db

    with app.app_context():
        found = {}
        for event in db.session.scalars(select(Event).where(Event.origin_actor_id.is_not(None))):
            found[event.ap_id] = (event.title, [(o.starts_at, o.ends_at) for o in event.occurrences])
        db.session.remove()
        return found


def version(origin: Origin, number: int, seconds: int, *, kind: str = "Update", hours: int = 2, **fields):
    now = utc_now()
    start = (now + timedelta(days=10)).replace(microsecond=0)
    obj = origin.event_object(number, updated=now + timedelta(seconds=seconds), start=start)
    obj["endTime"] = (start + timedelta(hours=hours)).isoformat()
    obj["name"] = f"{obj['name']} v{seconds}"
    obj.update(fields)
    return origin.signed_activity(kind, obj, now=now)


def test_a_run_creates_and_updates_and_the_newest_version_wins_in_any_order(node):
    lyon, lille = node.origins
    queue(node,
          version(lyon, 1, 0, kind="Create"), version(lyon, 1, 2, hours=3), version(lyon, 1, 1, hours=5),
          version(lille, 2, 5, kind="Update", hours=4), version(lille, 2, 3, kind="Create"))
    work(node)
    assert [state for state, _ in items(node)] == ["applied"] * 5
    held = events(node)
    assert len(held) == 2
    first = held[f"{lyon.identity.base_url}/events/{_uuid(lyon, 1)}"]
    assert first[0].endswith("v2")
    assert len(first[1]) == 1 and first[1][0][1] - first[1][0][0] == timedelta(hours=3)
    second = held[f"{lille.identity.base_url}/events/{_uuid(lille, 2)}"]
    assert second[0].endswith("v5") and second[1][0][1] - second[1][0][0] == timedelta(hours=4)


def test_a_delete_between_updates_is_not_undone(node):
    lyon, _ = node.origins
    create = version(lyon, 3, 0, kind="Create")
    target = create["object"]["id"]
    delete = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{lyon.actor_url}/activities/del-3",
              "type": "Delete", "actor": lyon.actor_url,
              "object": {"id": target, "type": "Tombstone", "deleted": (utc_now() + timedelta(seconds=10)).isoformat()}}
    queue(node, create, version(lyon, 3, 1), delete, version(lyon, 3, 2), version(lyon, 4, 0, kind="Create"))
    work(node)
    assert [state for state, _ in items(node)] == ["applied"] * 5
    assert list(events(node)) == [f"{lyon.identity.base_url}/events/{_uuid(lyon, 4)}"]


def test_a_refused_activity_in_a_run_is_marked_alone(node):
    lyon, lille = node.origins
    broken = version(lyon, 5, 1, kind="Create")
    broken["object"]["startTime"] = "not a date"
    queue(node, version(lyon, 6, 0, kind="Create"), broken, version(lille, 7, 0, kind="Create"))
    work(node)
    states = items(node)
    assert [state for state, _ in states] == ["applied", "ignored", "applied"]
    assert "startTime" in states[1][1]
    assert len(events(node)) == 2


def test_activities_of_a_blocked_server_are_ignored_by_the_worker(node):
    from node.extensions import db
    from node.fedi.models import RemoteServer

    lyon, lille = node.origins
    queue(node, version(lyon, 8, 0, kind="Create"), version(lille, 9, 0, kind="Create"))
    with node.app_context():
        db.session.add(RemoteServer(domain="tiers-lieu-0.example", blocked=True))
        db.session.commit()
    work(node)
    assert items(node) == [("ignored", "domain blocked"), ("applied", None)]
    assert list(events(node)) == [f"{lille.identity.base_url}/events/{_uuid(lille, 9)}"]


def test_events_of_servers_not_followed_are_not_imported(node):
    stranger = Origin.make(7)
    from node.extensions import db
    from node.fedi.keystore import store_actor

    with node.app_context():
        store_actor(stranger.actor_document())
        db.session.commit()
    queue(node, version(stranger, 10, 0, kind="Create"), version(node.origins[0], 11, 0, kind="Create"))
    work(node)
    states = items(node)
    assert states[0][0] == "ignored" and "does not follow" in states[0][1]
    assert states[1] == ("applied", None)


def test_a_batch_writes_in_a_few_statements(node):
    """200 Creates and Updates: the queries per activity stay well under one (the ORM applied one at a
    time issued eleven)."""
    from sqlalchemy import event

    from node.extensions import db

    lyon, lille = node.origins
    activities = []
    for number in range(150):
        activities.append(version((lyon, lille)[number % 2], 100 + number, 0, kind="Create"))
    for number in range(50):
        activities.append(version((lyon, lille)[number % 2], 100 + number, 1))
    queue(node, *activities)
    statements = []
    with node.app_context():
        engine = db.engine

        def count(_conn, _cursor, statement, *_args):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            from node.fedi.worker import process_inbox

            assert process_inbox(limit=200) == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        from node.events.models import Event

        assert db.session.scalar(select(func.count(Event.id))) == 150
    assert [state for state, _ in items(node)] == ["applied"] * 200
    assert len(statements) < 40, statements


def test_a_run_on_postgresql_sends_what_is_done_as_it_goes(node, monkeypatch):
    """PostgreSQL: every ``RUN_WRITE_CHUNK`` activities a run sends the events no later activity of it
    changes (the others wait for their last version), with ids taken before any write was sent."""
    from node.extensions import db
    from node.fedi import remote, worker

    with node.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite writes a run at its end, under its write lock")
    monkeypatch.setattr(worker, "RUN_WRITE_CHUNK", 50)

    def no_query_for_ids(count):
        raise AssertionError(f"{count} event ids asked for while the run's writes were on their way")

    monkeypatch.setattr(remote, "_new_event_ids", no_query_for_ids)
    written = []
    write = remote.RunLookups.write_events

    def counting(self, done=None):
        before = len(self.changed)
        write(self, done)
        written.append(before - len(self.changed))

    monkeypatch.setattr(remote.RunLookups, "write_events", counting)
    lyon, lille = node.origins
    creates = [version((lyon, lille)[number % 2], 300 + number, 0, kind="Create") for number in range(150)]
    updates = [version((lyon, lille)[number % 2], 300 + number, 1, hours=4) for number in range(50)]
    queue(node, *creates, *updates)
    work(node)
    # Sent after 50 (the first 50 events are updated at the end: kept), 100 and 150 activities, then the
    # updates of the last 50 in halves (``worker._send_now``): the run ends waiting for its last 2 only.
    assert written == [0, 50, 50, 25, 13, 6, 4, 2]
    assert [state for state, _ in items(node)] == ["applied"] * 200
    held = events(node)
    assert len(held) == 150
    for number, origin in enumerate((lyon, lille) * 25):
        title, occurrences = held[f"{origin.identity.base_url}/events/{_uuid(origin, 300 + number)}"]
        assert title.endswith("v1") and occurrences[0][1] - occurrences[0][0] == timedelta(hours=4)


def test_a_write_failing_in_a_pipelined_run_loses_nothing(node, monkeypatch, caplog):
    """PostgreSQL: a statement the run sent without waiting fails (here its first insert of events,
    while the run goes on); the error surfaces later, the run's savepoint is rolled back and every
    activity is applied alone: all stored, once."""
    import logging

    from node.extensions import db
    from node.fedi import remote, worker

    with node.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite writes a run at its end, under its write lock")
    monkeypatch.setattr(worker, "RUN_WRITE_CHUNK", 20)
    write_rows = remote.RunWriter.write_rows
    failed = []

    def failing_once(self, cursor, kind, rows, keys=()):
        if kind == "insert_event" and not failed:
            failed.append(len(rows))
            cursor.execute("SELECT 1 / 0")  # sent in the pipeline: its error comes back later
            return
        write_rows(self, cursor, kind, rows, keys)

    monkeypatch.setattr(remote.RunWriter, "write_rows", failing_once)
    lyon, lille = node.origins
    creates = [version((lyon, lille)[number % 2], 500 + number, 0, kind="Create") for number in range(60)]
    queue(node, *creates)
    with caplog.at_level(logging.DEBUG, logger="halles.inbox"):
        work(node)
    assert failed == [20]
    assert "applying them one by one" in caplog.text
    assert [state for state, _ in items(node)] == ["applied"] * 60
    assert len(events(node)) == 60


def _uuid(origin: Origin, number: int) -> str:
    import uuid
    import zlib

    return str(uuid.UUID(int=zlib.crc32(origin.identity.base_url.encode()) << 64 | number))
