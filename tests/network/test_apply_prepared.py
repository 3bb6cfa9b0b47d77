"""How the worker applies a run cheaply (node/fedi/worker.py, node/fedi/remote.py): the event objects of
the items it claims are converted before it takes SQLite's write lock (``remote.prepare_events``), the
items are read again under the lock, and the run reads and writes through the driver's own cursor
(``remote.RunWriter``). These tests check that each shortcut gives what the plain way gives: the same
stored events whether the objects were prepared beforehand or converted during the run, an activity
changed or no longer pending by the time the lock is taken, the values bound and read as SQLAlchemy
binds and reads them, the listing cache emptied by a run's commit, and an idle poll that opens no session
transaction yet sees an item as soon as it is stored."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, text

from tests.network import test_apply_runs
from tests.network.test_apply_runs import activity, event_id, queue, stored

# The fixtures of test_apply_runs, under the names these tests use: two nodes set up alike, and the worker.
two_nodes = test_apply_runs.nodes
apply_paths = test_apply_runs.paths


def _burst(paris, lyon, grenoble):
    broken = activity(paris, 44, 0, kind="Create", drop=("startTime",))  # refused: no start
    return [
        activity(paris, 40, 0, kind="Create", recurrence="FREQ=WEEKLY;COUNT=3"),
        activity(paris, 40, 2, name="Atelier v2", recurrence="FREQ=WEEKLY;COUNT=4"),
        activity(paris, 40, 1, name="Atelier v1"),  # older: stale
        activity(lyon, 41, 0, kind="Create", drop=("location",)),  # the origin's city
        activity(paris, 42, None, kind="Create"),  # undated
        activity(paris, 42, None, name="Atelier v3"),
        activity(grenoble, 43, 0, kind="Create"),  # not followed
        activity(paris, 1, 0, kind="Create"),  # re-shared by these nodes: forwarded
        activity(paris, 1, 3, name="Débat v5", tag=[{"type": "Hashtag", "name": "#débat"}]),
        broken,
        activity(lyon, 45, 0, kind="Create", accessibility=["step_free"], maximumAttendeeCapacity=30),
    ]


def test_objects_prepared_before_the_run_or_converted_in_it_store_the_same(two_nodes, apply_paths, monkeypatch):
    from node.fedi import worker

    apps, (paris, lyon, grenoble) = two_nodes
    burst = _burst(paris, lyon, grenoble)
    results = []
    for app, prepare in zip(apps, (True, False), strict=True):
        if not prepare:
            monkeypatch.setattr(worker, "prepare_events", lambda _activities: {})
        queue(app, burst)
        apply_paths(app, alone=False)
        results.append(stored(app))
    prepared, converted = results
    assert prepared == converted
    states = [state for state, _note in prepared["items"]]
    assert states == ["applied"] * 6 + ["ignored"] + ["applied"] * 2 + ["ignored", "applied"]
    assert "startTime" in prepared["items"][9][1]
    events = prepared["events"]
    assert events[event_id(paris, 40)]["title"].endswith("v2") and len(events[event_id(paris, 40)]["occurrences"]) == 4
    assert events[event_id(paris, 1)]["tags"] == ["débat"]
    assert events[event_id(lyon, 45)]["accessibility"] == {"step_free": True}
    assert events[event_id(lyon, 41)]["city"] == "Lyon"


def test_what_changed_before_the_lock_is_read_again_under_it(two_nodes, apply_paths, monkeypatch):
    """SQLite: the items are read and converted before the write lock. An activity whose stored text
    changed meanwhile is applied as it now is, and one no longer pending is left alone. (PostgreSQL
    claims the rows locked: no one can change them.)"""
    from node.extensions import db
    from node.fedi import worker

    apps, (paris, lyon, _grenoble) = two_nodes
    app = apps[0]
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL claims the items locked: nothing changes them before the run")
    burst = [activity(paris, 50, 0, kind="Create"), activity(lyon, 51, 0, kind="Create"),
             activity(paris, 52, 0, kind="Create")]
    queue(app, burst)
    changed = activity(paris, 50, 0, kind="Create", name="Atelier changé")
    original = worker.prepare_events
    prepared_before = []

    def prepare_then_change(activities):
        activities = list(activities)
        prepared = original(activities)
        prepared_before.extend(activities)
        with db.engine.begin() as other:  # another connection, as another process would write
            ids = [row[0] for row in other.execute(text("SELECT id FROM inbox_items ORDER BY id"))]
            other.execute(text("UPDATE inbox_items SET activity = :activity WHERE id = :id"),
                          {"activity": json.dumps(changed), "id": ids[0]})
            other.execute(text("UPDATE inbox_items SET state = 'ignored', error = 'moderated' WHERE id = :id"),
                          {"id": ids[1]})
        return prepared

    monkeypatch.setattr(worker, "prepare_events", prepare_then_change)
    assert apply_paths(app, alone=False) == 0
    assert len(prepared_before) == 3
    result = stored(app)
    assert [state for state, _note in result["items"]] == ["applied", "ignored", "applied"]
    assert result["items"][1][1] == "moderated"
    assert result["events"][event_id(paris, 50)]["title"] == "Atelier changé"
    assert event_id(lyon, 51) not in result["events"]
    assert event_id(paris, 52) in result["events"]


def test_a_run_reads_held_events_as_sqlalchemy_reads_them(two_nodes, apply_paths):
    from node.events.models import Event
    from node.extensions import db
    from node.fedi.remote import _HELD_COLUMNS, RunLookups

    apps, (paris, lyon, grenoble) = two_nodes
    app = apps[0]
    queue(app, _burst(paris, lyon, grenoble))
    apply_paths(app, alone=False)
    with app.app_context():
        ap_ids = sorted(db.session.scalars(select(Event.ap_id)))
        expected = {row.ap_id: dict(row._mapping) for row in db.session.execute(
            select(*_HELD_COLUMNS).where(Event.ap_id.in_(ap_ids)))}
        known = RunLookups()
        known.prefetch([{"type": "Update", "actor": paris.actor_url, "object": {"id": ap_id}} for ap_id in ap_ids])
        assert {ap_id: known.event(ap_id).row for ap_id in ap_ids} == expected
        for ap_id in ap_ids:
            held = known.event(ap_id)
            assert held.stored == held.row
            assert sorted(held.stored_ends) == sorted(occurrence[0] for occurrence in held.occurrences)
        assert known.tombstone(event_id(paris, 13)).deleted_at == expected_tombstone(app)
        assert known.last_announce(event_id(paris, 1)).audience == "public"
        assert known.followed_domains() == {urlsplit(paris.actor_url).netloc, urlsplit(lyon.actor_url).netloc}
        assert known.blocked_domains() == set()
        db.session.rollback()


def test_a_run_reads_actors_as_the_orm_reads_them(two_nodes):
    """A run reads what it decides on of an actor (``HeldActor``); ``known_actor`` gives the same
    answer as with the ORM object: an empty document, or one fetched too long ago, needs a fetch."""
    from sqlalchemy import update

    from node.extensions import db
    from node.fedi.models import RemoteActor
    from node.fedi.remote import Lookups, RunLookups

    apps, (paris, lyon, grenoble) = two_nodes
    app = apps[0]
    with app.app_context():
        db.session.execute(update(RemoteActor).where(RemoteActor.ap_id == lyon.actor_url).values(document={}))
        db.session.execute(update(RemoteActor).where(RemoteActor.ap_id == grenoble.actor_url)
                           .values(fetched_at=datetime(2000, 1, 1)))
        db.session.commit()
        urls = [paris.actor_url, lyon.actor_url, grenoble.actor_url, "https://unknown.example/actor"]
        known = RunLookups()
        known.prefetch([{"type": "Create", "actor": url} for url in urls])
        alone = Lookups()
        for url in urls:
            held, orm = known.known_actor(url), alone.known_actor(url)
            assert (held is None) == (orm is None), url
            if orm is not None:
                assert (held.id, held.ap_id, held.domain, held.city, held.fetched_at) == (
                    orm.id, orm.ap_id, orm.domain, orm.city, orm.fetched_at)
        assert known.known_actor(paris.actor_url) is not None and known.known_actor(lyon.actor_url) is None
        assert known.known_actor(grenoble.actor_url) is None
        db.session.rollback()


def expected_tombstone(app):
    from node.extensions import db
    from node.fedi.models import Tombstone

    return db.session.scalar(select(Tombstone.deleted_at))


def test_values_are_bound_as_sqlalchemy_binds_them():
    from sqlalchemy import JSON, DateTime
    from sqlalchemy.dialects import sqlite

    from node.fedi.remote import RunWriter, _json_text, _sqlite_time, _uuid4_texts

    dialect = sqlite.dialect()
    bind_time = DateTime().dialect_impl(dialect).bind_processor(dialect)
    bind_json = JSON().dialect_impl(dialect).bind_processor(dialect)
    for value in (datetime(2031, 6, 21, 17, 30), datetime(2031, 6, 21, 17, 30, 0, 250),
                  datetime(1999, 1, 2, 3, 4, 5, 999999), datetime(2031, 6, 21, 17, 30, tzinfo=UTC), None):
        assert _sqlite_time(value) == bind_time(value)
    for value in ([], {}, None, [1, "é"], {"a": {"b": [True, None, 1.5]}}, 0, "", False, "texte"):
        assert _json_text(value) == bind_json(value)
    writer = RunWriter(dialect)
    row = {"tags": [], "remote_object": {"id": "x"}, "starts_at": datetime(2031, 1, 1, 1, 1, 1)}
    converted = {key: convert for _index, key, convert in writer.converted}
    assert {key: converted[key](value) for key, value in row.items()} == {
        key: (bind_json if key != "starts_at" else bind_time)(value) for key, value in row.items()}
    texts = _uuid4_texts(200)
    assert len(set(texts)) == 200
    for value in texts:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value)


def test_a_run_empties_the_listing_cache_when_it_commits(two_nodes, apply_paths):
    from node.common import microcache

    apps, (paris, _lyon, _grenoble) = two_nodes
    app = apps[0]
    before = microcache.current_generation()
    queue(app, [activity(paris, 60, 0, kind="Create")])
    apply_paths(app, alone=False)
    assert microcache.current_generation() > before
    generation = microcache.current_generation()
    # A run that only marks its items (a stale duplicate) wrote too: its items changed state.
    queue(app, [activity(paris, 60, -1, kind="Update")])
    apply_paths(app, alone=False)
    assert microcache.current_generation() > generation


def test_prepare_event_is_what_the_converter_gives():
    from node.fedi.converters import object_to_event_fields
    from node.fedi.remote import prepare_event

    now = datetime(2031, 3, 30, 0, 30, tzinfo=UTC)
    obj = {"id": "https://lyon.example/events/1", "type": "Event", "name": "Débat",
           "startTime": now.isoformat(), "endTime": (now + timedelta(hours=2)).isoformat(),
           "timezone": "Europe/Paris", "recurrence": "FREQ=DAILY;COUNT=3", "updated": "2031-03-01T10:00:00Z"}
    prepared = prepare_event(obj)
    fields = object_to_event_fields(obj)
    assert prepared.updated == fields.pop("updated_at") and prepared.published == fields.pop("published_at")
    assert prepared.fields == fields and prepared.error is None and prepared.encoded is None
    assert len(prepared.spans) == 3 and prepared.spans[0][0] == datetime(2031, 3, 30, 0, 30)
    refused = prepare_event({**obj, "startTime": "demain"})
    assert refused.fields is None and "startTime" in str(refused.error)


@pytest.mark.parametrize("value", [
    "2026-01-01T10:00:00Z", "2026-01-01T10:00:00.123Z", "2026-01-01T10:00:00.1234567Z", " 2026-06-14T18:30:00z ",
    "2026-01-01Z", "2026-01-01T10Z", "20260101T100000Z", "2026-01-01 10:00Z", "2026-01-01T00:00:00+01:00Z",
    "2026-01-01T10:00:00-00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T25:00Z", "1899-12-31T23:00:00Z",
    "2999-12-31T23:59:59.999999Z", "3000-01-01T00:00:00Z", "Z", "2026-01-01T10:00:00+02:00", "", None, 5,
])
def test_a_utc_time_is_read_as_the_full_parse_reads_it(value):
    """``parse_time`` reads a time ending in Z without converting it: the same value, or the same error."""
    from node.fedi.converters import ConversionError, parse_aware, parse_time, to_naive_utc

    def outcome(parse):
        try:
            return parse()
        except ConversionError as exc:
            return ("refused", str(exc))

    assert outcome(lambda: parse_time(value, "updated")) == outcome(
        lambda: to_naive_utc(parse_aware(value, "updated")))


def test_an_idle_poll_opens_no_session_transaction_and_a_stored_item_is_seen_at_once(two_nodes):
    """``worker._nothing_pending``: an empty inbox is found out on a pooled connection of its own, without
    beginning and rolling back the session's transaction; an item the inbox has just stored (on its own
    connection) is claimed by the next poll."""
    from node.extensions import db
    from node.fedi import worker
    from node.fedi.models import InboxItem

    (app, _other), (paris, _lyon, _grenoble) = two_nodes
    with app.app_context():
        assert worker.process_inbox() == 0
        assert not db.session().in_transaction()
        created = activity(paris, 50, 0, kind="Create")
        queue(app, [created])
        assert worker.process_inbox() == 1
        state = db.session.scalar(select(InboxItem.state).where(InboxItem.activity_id == created["id"]))
        assert state == "applied"
        db.session.rollback()
        assert worker.process_inbox() == 0
        assert not db.session().in_transaction()
