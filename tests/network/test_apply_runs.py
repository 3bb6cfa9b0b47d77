"""The worker applies runs of activities set-based (node/fedi/remote.py ``RunLookups``: decided in
memory, written with a few multi-row statements) and anything else alone through the ORM. These tests
apply the same activities both ways, on two nodes set up alike, and compare what they store: every
column of every event, its occurrences, the full-text index, and the outcome of every inbox item --
creates, updates of events held before the run and of events created earlier in the same run, stale
duplicates and reordered updates, undated (Gancio) objects, a recurring event whose rule changes
(occurrences that stay keep their ids), tombstones, the city fallback, an unfollowed server, the
forwarding of a re-shared event's updates, and a run that fails and is applied item by item."""

from __future__ import annotations

import uuid
import zlib
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from benchmarks.origins import Origin, utc_now

NOW = utc_now().replace(microsecond=0)
START = NOW + timedelta(days=10)


@pytest.fixture
def nodes(make_app):
    """Two nodes alike: both follow the Paris and Lyon origins and know Grenoble's actor without
    following it; both hold a tombstone of Paris's event 13 (deleted at NOW + 10 s) and have re-shared
    Paris's event 1 (its origin's Updates are forwarded to their own followers)."""
    from node.extensions import db
    from node.fedi.keystore import store_actor
    from node.fedi.models import Follow, OutboxEntry
    from node.fedi.remote import remember_deletion

    paris, lyon, grenoble = Origin.make(0), Origin.make(1), Origin.make(8)
    apps = [make_app(), make_app()]
    for app in apps:
        with app.app_context():
            for origin in (paris, lyon, grenoble):
                actor = store_actor(origin.actor_document())
                if origin is not grenoble:
                    db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                                          activity_id=f"{origin.actor_url}#follow"))
            remember_deletion(event_id(paris, 13), "Event", (NOW + timedelta(seconds=10)).replace(tzinfo=None))
            announce = {"id": "http://127.0.0.1:5000/activities/announce-1", "type": "Announce",
                        "object": event_id(paris, 1)}
            db.session.add(OutboxEntry(activity_id=announce["id"], activity_type="Announce",
                                       object_id=event_id(paris, 1), audience="public", activity=announce))
            db.session.commit()
    return apps, (paris, lyon, grenoble)


def event_id(origin: Origin, number: int) -> str:
    """The id ``Origin.event_object`` gives event ``number``."""
    base = origin.identity.base_url
    return f"{base}/events/{uuid.UUID(int=zlib.crc32(base.encode()) << 64 | number)}"


def activity(origin: Origin, number: int, seconds: float | None, *, kind: str = "Update", hours: int = 2,
             drop: tuple[str, ...] = (), sender: Origin | None = None, **fields):
    """``kind`` of ``origin``'s event ``number`` as it was ``seconds`` after NOW (None: an undated
    object, as Gancio sends), with ``fields`` set and the keys ``drop`` removed; sent by ``sender``."""
    updated = NOW + timedelta(seconds=seconds or 0)
    obj = origin.event_object(number, updated=updated, start=START + timedelta(hours=number))
    obj["endTime"] = (START + timedelta(hours=number + hours)).isoformat()
    obj.update(fields)
    for key in drop + (("updated",) if seconds is None else ()):
        obj.pop(key, None)
    return (sender or origin).signed_activity(kind, obj, now=NOW)


def note(origin: Origin):
    obj = {"id": f"{origin.identity.base_url}/notes/1", "type": "Note", "content": "Bonjour",
           "attributedTo": origin.actor_url}
    return origin.signed_activity("Create", obj, now=NOW)


def queue(app, activities) -> None:
    from node.fedi.inbox_store import store

    with app.app_context():
        for item in activities:
            assert store(item, item["actor"]).item_id is not None


@pytest.fixture
def paths(monkeypatch):
    """``apply(app, alone=...)``: the worker on the inbox, by runs as it does, or with every activity
    applied alone; returns how many activities the worker applied alone."""
    from node.fedi import worker

    applied_alone = []
    for name in ("_apply_alone", "_apply_in_savepoint"):
        original = getattr(worker, name)

        def counting(item_id, _original=original):
            applied_alone.append(item_id)
            return _original(item_id)

        monkeypatch.setattr(worker, name, counting)
    runs_allowed = worker.applies_without_fetching

    def apply(app, *, alone: bool) -> int:
        applied_alone.clear()
        monkeypatch.setattr(worker, "applies_without_fetching",
                            (lambda _activity, _known: False) if alone else runs_allowed)
        with app.app_context():
            while worker.process_inbox():
                pass
        return len(applied_alone)

    return apply


SEARCHED = ("v2", "v3", "v5", "paris", "lyon", "grenoble", "atelier", "debat", "tiers", "marseille")


def stored(app) -> dict:
    """Everything the two paths must agree on (ids, uuids and creation times excepted)."""
    from node.events.models import Event, EventOccurrence
    from node.events.search import matching_condition, search_words
    from node.extensions import db
    from node.fedi.models import InboxItem, OutboxEntry

    table = Event.__table__
    with app.app_context():
        events = {}
        for row in db.session.execute(select(table)).mappings():
            values = {key: value for key, value in row.items() if key not in ("id", "uuid", "created_at")}
            values["occurrences"] = [tuple(pair) for pair in db.session.execute(
                select(EventOccurrence.starts_at, EventOccurrence.ends_at)
                .where(EventOccurrence.event_id == row["id"]).order_by(EventOccurrence.starts_at))]
            events[row["ap_id"]] = values
        dialect = db.engine.dialect.name
        found = {word: sorted(db.session.scalars(select(Event.ap_id).where(
            matching_condition(dialect, search_words(word))))) for word in SEARCHED}
        items = [tuple(row) for row in db.session.execute(
            select(InboxItem.state, InboxItem.error).order_by(InboxItem.id))]
        forwarded = [tuple(row) for row in db.session.execute(
            select(OutboxEntry.activity_id, OutboxEntry.activity_type, OutboxEntry.object_id).order_by(OutboxEntry.id))]
        db.session.remove()
    return {"events": events, "search": found, "items": items, "outbox": forwarded}


def occurrence_ids(app, ap_id: str) -> dict:
    from node.events.models import Event, EventOccurrence
    from node.extensions import db

    with app.app_context():
        rows = db.session.execute(select(EventOccurrence.starts_at, EventOccurrence.id).join(Event)
                                  .where(Event.ap_id == ap_id))
        found = dict(rows.all())
        db.session.remove()
        return found


@pytest.fixture(params=["multi-row statements", "two rows per statement", "no UPDATE FROM",
                        "sent every three activities"])
def statements(request, monkeypatch):
    """How a run writes its rows (``RunWriter.write_rows``): on SQLite, multi-row statements, as many as
    the rows need when few fit in one, and single-row updates where SQLite is older than 3.33; on
    PostgreSQL (one statement over arrays per kind of write), what is done is sent while the run goes
    on (``worker.RUN_WRITE_CHUNK``): every three activities here, so that events the run changes again
    later, and statements of the ORM's between, fall across those sends."""
    from node.fedi import remote, worker

    if request.param == "sent every three activities":
        monkeypatch.setattr(worker, "RUN_WRITE_CHUNK", 3)

    monkeypatch.setattr(remote, "_WRITERS", {})
    made = remote.RunWriter.__init__

    def init(self, dialect):
        made(self, dialect)
        if request.param == "no UPDATE FROM":
            self.update_from = False

    monkeypatch.setattr(remote.RunWriter, "__init__", init)
    if request.param == "two rows per statement":
        monkeypatch.setattr(remote, "MAX_ROWS_PER_STATEMENT", 2)
    return request.param


def test_a_run_stores_what_each_activity_applied_alone_stores(nodes, paths, statements):
    apps, (paris, lyon, grenoble) = nodes
    weekly = "FREQ=WEEKLY;COUNT=5"
    before = [
        activity(paris, 1, 0, kind="Create", recurrence=weekly),
        activity(lyon, 2, 0, kind="Create"),
    ]
    first_local = (START + timedelta(hours=1)).astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    second_week = (first_local + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S")
    burst = [
        activity(paris, 10, 0, kind="Create"),
        activity(paris, 10, 2, name="Atelier v2"),  # updates the event created just before, in the run
        activity(paris, 10, 1, name="Atelier v1"),  # older: stale
        activity(paris, 10, 2, name="Atelier v2"),  # the same version again: stale
        # The held recurring event: a longer rule without its second week (rows that stay keep their
        # ids), then longer occurrences.
        activity(paris, 1, 3, recurrence="FREQ=WEEKLY;COUNT=7", exceptionDates=[second_week]),
        activity(paris, 1, 4, hours=3, recurrence="FREQ=WEEKLY;COUNT=7", exceptionDates=[second_week]),
        # Created recurring, then fewer occurrences before the run ends.
        activity(lyon, 11, 0, kind="Create", recurrence="FREQ=DAILY;COUNT=3"),
        activity(lyon, 11, 1, recurrence="FREQ=DAILY;COUNT=2"),
        activity(paris, 13, 5, kind="Create"),  # deleted at +10 s: stale
        activity(paris, 13, 11, kind="Create", name="Débat v5"),  # newer than its deletion: back
        activity(grenoble, 14, 0, kind="Create"),  # not followed
        activity(lyon, 15, 0, kind="Create", drop=("location",)),  # no place: the origin's city
        activity(lyon, 16, 0, kind="Create", drop=("location",), isOnline=True),  # online: no city
        activity(paris, 17, None, kind="Create"),  # undated (Gancio): ordered by "published"
        activity(paris, 17, None, kind="Create"),  # the same again: stale
        activity(paris, 17, None, name="Atelier v3"),  # changed: applied, keeps its ordering key
        activity(lyon, 2, 5, name="Débat v5", location={"type": "Place", "name": "Salle",
                                                      "address": {"type": "PostalAddress",
                                                                  "addressLocality": "Marseille"}}),
        note(lyon),
    ]
    results = []
    for app, alone in zip(apps, (False, True), strict=True):
        queue(app, before)
        paths(app, alone=alone)
        kept_ids = occurrence_ids(app, event_id(paris, 1))
        queue(app, burst)
        applied_alone = paths(app, alone=alone)
        assert applied_alone == (len(burst) if alone else 0)
        after = occurrence_ids(app, event_id(paris, 1))
        survivors = kept_ids.keys() & after.keys()
        assert len(survivors) == 4 and all(kept_ids[start] == after[start] for start in survivors)
        assert len(after) == 6
        results.append(stored(app))
    by_run, by_one = results
    assert by_run["items"] == by_one["items"]
    assert [state for state, _ in by_run["items"]][len(before):] == [
        "applied", "applied", "applied", "applied", "applied", "applied", "applied", "applied", "applied",
        "applied", "ignored", "applied", "applied", "applied", "applied", "applied", "applied", "ignored"]
    assert by_run["events"].keys() == by_one["events"].keys()
    for ap_id, values in by_run["events"].items():
        assert values == by_one["events"][ap_id], ap_id
    assert by_run["search"] == by_one["search"]
    assert by_run["outbox"] == by_one["outbox"]
    # The re-shared event's Updates are forwarded to this node's own audience.
    assert [activity_id for activity_id, kind, _ in by_run["outbox"] if kind == "Update"] == [
        item["id"] for item in burst if item["object"]["id"] == event_id(paris, 1)]
    events = by_run["events"]
    assert event_id(grenoble, 14) not in events and event_id(paris, 13) in events
    assert events[event_id(paris, 10)]["title"].endswith("v2")
    assert events[event_id(lyon, 15)]["city"] == "Lyon" and events[event_id(lyon, 15)]["city_key"] == "lyon"
    assert events[event_id(lyon, 16)]["location_kind"] == "online" and events[event_id(lyon, 16)]["city"] == ""
    assert len(events[event_id(lyon, 11)]["occurrences"]) == 2
    assert events[event_id(lyon, 2)]["city_key"] == "marseille"
    assert by_run["search"]["marseille"] == [event_id(lyon, 2)]
    assert by_run["search"]["v5"] == sorted([event_id(lyon, 2), event_id(paris, 13)])


def test_a_run_with_a_refused_activity_is_applied_one_by_one_with_the_same_result(nodes, paths):
    apps, (paris, lyon, _grenoble) = nodes
    burst = [
        activity(paris, 20, 0, kind="Create"),
        activity(paris, 20, 1, name="Atelier v2", sender=lyon),  # another server's: refused
        activity(lyon, 21, 0, kind="Create"),
        activity(paris, 20, 2, name="Atelier v3"),
    ]
    results = []
    for app, alone in zip(apps, (False, True), strict=True):
        queue(app, burst)
        assert paths(app, alone=alone) == len(burst)  # the failed run, item by item
        results.append(stored(app))
    assert results[0] == results[1]
    assert [state for state, _ in results[0]["items"]] == ["applied", "ignored", "applied", "applied"]
    assert "origin" in results[0]["items"][1][1]
    assert results[0]["events"][event_id(paris, 20)]["title"].endswith("v3")


def test_a_run_refreshes_the_events_the_session_already_holds(nodes):
    """An event loaded through the ORM earlier in the transaction (PostgreSQL applies a whole batch
    in one) is read again after a run changed it around the ORM."""
    from node.events.models import Event
    from node.extensions import db
    from node.fedi import worker
    from node.fedi.remote import RunLookups

    (app, _other), (paris, _lyon, _grenoble) = nodes
    queue(app, [activity(paris, 30, 0, kind="Create", recurrence="FREQ=DAILY;COUNT=2")])
    with app.app_context():
        while worker.process_inbox():
            pass
        held = db.session.scalar(select(Event).where(Event.ap_id == event_id(paris, 30)))
        assert len(held.occurrences) == 2
        update = activity(paris, 30, 1, name="Atelier v2", recurrence="FREQ=DAILY;COUNT=3")
        known = RunLookups()
        known.prefetch([update])
        worker._apply_run([(0, update)], known)
        again = db.session.scalar(select(Event).where(Event.ap_id == event_id(paris, 30)))
        assert again is held and held.title.endswith("v2") and len(held.occurrences) == 3
        db.session.rollback()
