"""Received activities do not pile up for ever: applied and ignored ones go after
HALLES_INBOX_RETENTION_DAYS, failed ones after three times as long, pending ones never, by the worker (a
little at a time) and by `halles inbox prune`. And forgetting an activity's id is safe: a copy that
arrives again after that (forwarded by another server, the only way an old activity can still be
accepted) changes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, insert, select, update

from node.config import ConfigError, load, validate
from tests.resilience import tally
from tests.resilience.fediworld import ConnectionLog, Remote, RemoteServers, fake_resolver

DAY = timedelta(days=1)


@pytest.fixture
def node_app(make_app):
    return make_app(HALLES_URL="http://127.0.0.1:5000")


def add_items(app, specs: list[tuple[str, str, timedelta]]) -> None:
    """One inbox row per spec (label, state, age), in the order given (ids follow arrival)."""
    from node.common.timeutil import utcnow
    from node.extensions import db
    from node.fedi.models import InboxItem

    with app.app_context():
        now = utcnow()
        for label, state, age in specs:
            activity_id = f"http://lyon.example/activities/{label}"
            db.session.add(InboxItem(activity_id=activity_id, activity_type="Create", signer="http://lyon.example/actor",
                                     activity={"id": activity_id, "type": "Create"}, state=state,
                                     received_at=now - age, processed_at=None if state == "pending" else now - age))
        db.session.commit()


def remaining(app) -> list[str]:
    from node.extensions import db
    from node.fedi.models import InboxItem

    with app.app_context():
        ids = db.session.scalars(select(InboxItem.activity_id).order_by(InboxItem.id)).all()
        db.session.remove()
    return [activity_id.rsplit("/", 1)[1] for activity_id in ids]


SPECS = [
    ("failed-91d", "failed", 91 * DAY),
    ("applied-40d", "applied", 40 * DAY),
    ("pending-35d", "pending", 35 * DAY),
    ("ignored-31d", "ignored", 31 * DAY),
    ("failed-89d", "failed", 89 * DAY),
    ("applied-29d", "applied", 29 * DAY),
    ("ignored-5d", "ignored", 5 * DAY),
    ("pending-1d", "pending", 1 * DAY),
]


def test_prune_command_removes_old_applied_ignored_and_failed_activities(node_app):
    add_items(node_app, SPECS)
    runner = node_app.test_cli_runner()

    result = runner.invoke(args=["inbox", "prune"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("removed 2 applied or ignored activities received more than 30 days ago and "
                                     "1 failed ones received more than 90 days ago")
    # Failed ones stay three times as long (an admin finds out why); pending ones are never touched.
    assert remaining(node_app) == ["pending-35d", "failed-89d", "applied-29d", "ignored-5d", "pending-1d"]

    result = runner.invoke(args=["inbox", "prune", "--older-than", "10"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("removed 1 applied or ignored activities received more than 10 days ago and "
                                     "1 failed ones received more than 30 days ago")
    assert remaining(node_app) == ["pending-35d", "ignored-5d", "pending-1d"]

    again = runner.invoke(args=["inbox", "prune", "--older-than", "10"])
    assert again.output.strip().startswith("removed 0 applied or ignored activities")


def test_prune_command_refuses_a_bad_number_of_days(node_app):
    add_items(node_app, SPECS)
    for bad in ("0", "-3", "a month"):
        result = node_app.test_cli_runner().invoke(args=["inbox", "prune", "--older-than", bad])
        assert result.exit_code != 0, bad
        assert "--older-than" in result.output and "Traceback" not in result.output, result.output
    assert len(remaining(node_app)) == len(SPECS)


def test_the_setting_changes_what_is_kept(make_app):
    app = make_app(HALLES_INBOX_RETENTION_DAYS=3)
    add_items(app, [("failed-10d", "failed", 10 * DAY), ("failed-8d", "failed", 8 * DAY),
                    ("applied-4d", "applied", 4 * DAY), ("applied-2d", "applied", 2 * DAY)])
    result = app.test_cli_runner().invoke(args=["inbox", "prune"])
    assert ("removed 1 applied or ignored activities received more than 3 days ago and 1 failed ones received "
            "more than 9 days ago") in result.output
    assert remaining(app) == ["failed-8d", "applied-2d"]


def test_a_pass_stops_at_the_first_recent_activity(node_app):
    from node.extensions import db
    from node.fedi import inbox_retention

    add_items(node_app, [("applied-40d", "applied", 40 * DAY), ("applied-1d", "applied", DAY)])
    # Rows received out of order after a recent one (within seconds in real life) wait for the next pass.
    add_items(node_app, [("applied-39d", "applied", 39 * DAY)])
    with node_app.app_context():
        pruned = inbox_retention.prune_inbox(batch=1)
        db.session.remove()
    assert (pruned.done, pruned.stopped_after) == (1, None)
    assert remaining(node_app) == ["applied-1d", "applied-39d"]


def test_the_worker_prunes_in_batches_then_once_an_hour(node_app, monkeypatch):
    from node import worker
    from node.common.timeutil import utcnow
    from node.extensions import db
    from node.fedi import inbox_retention
    from node.fedi.models import InboxItem

    monkeypatch.setattr(inbox_retention, "PRUNE_BATCH", 500)
    monkeypatch.setattr(inbox_retention, "PRUNE_BATCHES_PER_ROUND", 1)
    # Old failed activities first (kept): a backlog behind them must not make the worker read them
    # again round after round.
    add_items(node_app, [(f"failed-{n}", "failed", 40 * DAY) for n in range(600)])
    old = utcnow() - 40 * DAY
    with node_app.app_context():
        db.session.execute(insert(InboxItem), [
            {"activity_id": f"http://lyon.example/activities/old-{n}", "activity_type": "Create",
             "signer": "http://lyon.example/actor", "activity": {"type": "Create"}, "state": "applied",
             "received_at": old, "processed_at": old}
            for n in range(900)
        ])
        db.session.commit()
    add_items(node_app, [("keep", "applied", DAY)])

    def rows() -> int:
        with node_app.app_context():
            count = db.session.scalar(select(func.count(InboxItem.id)))
            db.session.remove()
        return count

    rounds = []
    # 500 rows read per round: failed 0-499, failed 500-599 + old 0-399, old 400-899, then the recent
    # row that ends the pass.
    for _ in range(4):
        worker.run_once(node_app)
        rounds.append(rows())
    assert rounds == [1501, 1101, 601, 601]
    assert node_app.extensions["halles_inbox_pruning"]["after"] == 0  # done: the next pass starts over
    # Then nothing until the hour is over, even when rows come of age meanwhile.
    with node_app.app_context():
        db.session.execute(update(InboxItem).where(InboxItem.activity_id.endswith("/keep")).values(received_at=old))
        db.session.commit()
    worker.run_once(node_app)
    assert rows() == 601
    node_app.extensions["halles_inbox_pruning"]["next"] = 0.0  # the hour has passed
    worker.run_once(node_app)  # the kept failed rows are read again (failed 0-499)
    worker.run_once(node_app)  # failed 500-599 and "keep", now old
    assert rows() == 600 and "keep" not in remaining(node_app)


@pytest.mark.parametrize("name", ["HALLES_INBOX_RETENTION_DAYS", "HALLES_DELIVERY_RETENTION_DAYS"])
@pytest.mark.parametrize("raw", ["0", "-5", "3651"])
def test_the_retention_settings_are_validated(name, raw):
    config = load(environ={name: raw, "HALLES_SECRET_KEY": "x" * 40})
    with pytest.raises(ConfigError, match=f"{name} must be a whole number of days"):
        validate(config)


def test_the_retention_setting_must_be_a_number():
    with pytest.raises(ConfigError, match="HALLES_INBOX_RETENTION_DAYS='a month' is not a whole number"):
        load(environ={"HALLES_INBOX_RETENTION_DAYS": "a month"})


# --- forgetting is safe -----------------------------------------------------------------------------------


@pytest.fixture
def world(make_node, monkeypatch):
    """A node that follows remote.test; other.test is a server that forwards remote.test's activities."""
    servers = RemoteServers()
    ConnectionLog(servers).install(monkeypatch)  # remote.test and other.test are served on loopback
    lyon = servers.add(Remote("remote.test"))
    other = servers.add(Remote("other.test"))
    node = make_node("Les Halles Civiques", "Paris", HALLES_ALLOW_PRIVATE_ADDRESSES=False,
                     HALLES_RESOLVER=fake_resolver, HALLES_RATE_LIMIT_INBOX="off")

    def follow() -> None:
        from node.extensions import db
        from node.fedi.keystore import get_actor
        from node.fedi.models import Follow

        actor = get_actor(lyon.actor)
        db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                              activity_id=f"{node.url}/activities/{uuid.uuid4()}"))
        db.session.commit()

    node.query(follow)
    yield SimpleNamespace(node=node, lyon=lyon, other=other)
    servers.close()


def event_name(node, ap_id: str) -> str | None:
    from node.events.models import Event
    from node.extensions import db

    return node.query(lambda: db.session.scalar(select(Event.title).where(Event.ap_id == ap_id)))


def outcomes(node) -> list[tuple[str, str, str | None]]:
    from node.extensions import db
    from node.fedi.models import InboxItem

    return node.query(lambda: [tuple(row) for row in db.session.execute(
        select(InboxItem.activity_type, InboxItem.state, InboxItem.error).order_by(InboxItem.id))])


def forget_everything(node) -> None:
    """What a month later looks like: every received activity pruned."""
    from node.common.timeutil import utcnow
    from node.fedi.inbox_retention import prune_inbox

    pruned = node.query(lambda: prune_inbox(now=utcnow() + 31 * DAY))
    assert pruned.done > 0 and outcomes(node) == []


def test_activities_arriving_again_after_their_ids_are_forgotten_change_nothing(world):
    node, lyon, other = world.node, world.lyon, world.other
    event = lyon.event(name="Atelier v1", updated="2031-01-01T00:00:00Z")
    create = lyon.prove(lyon.activity("Create", lyon.prove(event)))
    update = lyon.prove(lyon.activity("Update", lyon.prove({**event, "name": "Atelier v2",
                                                            "updated": "2031-01-02T00:00:00Z"})))
    for activity in (create, update):
        assert lyon.post(node.url, activity).status_code == 202
    node.work_once()
    assert event_name(node, event["id"]) == "Atelier v2"
    forget_everything(node)

    # Another server forwards the old Create and Update: taken (their ids are forgotten, their proofs
    # hold), applied, and stale: the event keeps its newest version.
    for activity in (create, update):
        assert other.post(node.url, activity).status_code == 202
    node.work_once()
    assert event_name(node, event["id"]) == "Atelier v2"
    assert [state for _type, state, _note in outcomes(node)] == ["applied", "applied"]

    # The event is deleted; the old Update forwarded once more does not bring it back.
    delete = lyon.prove(lyon.activity("Delete", event["id"], published="2031-01-03T00:00:00Z"))
    assert lyon.post(node.url, delete).status_code == 202
    node.work_once()
    assert event_name(node, event["id"]) is None
    forget_everything(node)
    assert other.post(node.url, update).status_code == 202
    node.work_once()
    assert event_name(node, event["id"]) is None

    # Published again later; the old Delete forwarded again is older than what is held: ignored.
    republish = lyon.prove(lyon.activity("Update", lyon.prove({**event, "name": "Atelier v4",
                                                               "updated": "2031-01-04T00:00:00Z"})))
    assert lyon.post(node.url, republish).status_code == 202
    node.work_once()
    assert event_name(node, event["id"]) == "Atelier v4"
    forget_everything(node)
    assert other.post(node.url, delete).status_code == 202
    node.work_once()
    assert event_name(node, event["id"]) == "Atelier v4"
    assert outcomes(node)[-1][1:] == ("ignored", f"{event['id']} was updated after this deletion")
    tally.inputs("inbox: activities forwarded again after their ids were forgotten", 4)


@pytest.mark.parametrize("kind", ["Follow", "Undo", "Accept", "Announce"])
def test_only_create_update_and_delete_are_taken_forwarded(world, kind):
    """A Follow or an Undo takes effect each time it is applied: it must come from its actor's server
    under an HTTP signature (which expires in 12 hours), never forwarded under a proof (which does not)."""
    node, lyon, other = world.node, world.lyon, world.other
    target = f"{lyon.base}/events/{uuid.uuid4()}" if kind == "Announce" else f"{node.url}/actor"
    activity = lyon.prove(lyon.activity(kind, target))
    response = other.post(node.url, activity)
    assert response.status_code == 401, response.text
    assert f"forwarded {kind} is not taken" in response.json()["detail"]
    assert outcomes(node) == []
    # The same activity from its own actor's server is taken.
    assert lyon.post(node.url, activity).status_code == 202
    tally.inputs("inbox: forwarded activities of other types")
