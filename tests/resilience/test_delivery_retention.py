"""Delivery rows do not pile up for ever: sent ones go after HALLES_DELIVERY_RETENTION_DAYS, dead ones
after three times as long, by the worker (a little at a time) and by `halles deliveries prune`. Pending
deliveries and the outbox that peers catch up from are never touched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from node.config import ConfigError, load, validate

DAY = timedelta(days=1)


@pytest.fixture
def node_app(make_app):
    return make_app(HALLES_URL="http://127.0.0.1:5000")


def add_deliveries(app, specs: list[tuple[str, str, timedelta]]) -> dict[str, int]:
    """One outbox entry per spec (label, state, age), with one delivery of that state and age."""
    from node.common.timeutil import utcnow
    from node.extensions import db
    from node.fedi.models import Delivery, OutboxEntry

    ids = {}
    with app.app_context():
        now = utcnow()
        for label, state, age in specs:
            activity_id = f"http://127.0.0.1:5000/activities/{label}"
            entry = OutboxEntry(activity_id=activity_id, activity_type="Create", object_id=f"{activity_id}/object",
                                audience="public", activity={"id": activity_id, "type": "Create"})
            db.session.add(entry)
            db.session.flush()
            when = now - age
            row = Delivery(outbox_entry_id=entry.id, inbox_url=f"http://lyon.example/{label}", domain="lyon.example",
                           state=state, created_at=when, next_attempt_at=when,
                           sent_at=when if state == "sent" else None)
            db.session.add(row)
            db.session.flush()
            ids[label] = row.id
        db.session.commit()
    return ids


def remaining(app) -> set[str]:
    from node.extensions import db
    from node.fedi.models import Delivery

    with app.app_context():
        urls = db.session.scalars(select(Delivery.inbox_url)).all()
        db.session.remove()
    return {url.rsplit("/", 1)[1] for url in urls}


def outbox_total(app) -> int:
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    with app.app_context():
        total = db.session.scalar(select(func.count(OutboxEntry.id)))
        db.session.remove()
    return total


SPECS = [
    ("sent-31d", "sent", 31 * DAY),
    ("sent-29d", "sent", 29 * DAY),
    ("sent-5d", "sent", 5 * DAY),
    ("dead-91d", "dead", 91 * DAY),
    ("dead-89d", "dead", 89 * DAY),
    ("dead-20d", "dead", 20 * DAY),
    ("pending-400d", "pending", 400 * DAY),
]


def test_prune_command_removes_old_sent_and_dead_rows_and_keeps_the_outbox(node_app):
    add_deliveries(node_app, SPECS)
    client = node_app.test_client()
    catch_up = client.get("/outbox?after=0&limit=500").get_json()
    runner = node_app.test_cli_runner()

    result = runner.invoke(args=["deliveries", "prune"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("removed 1 sent deliveries older than 30 days and 1 dead deliveries "
                                     "older than 90 days")
    assert remaining(node_app) == {"sent-29d", "sent-5d", "dead-89d", "dead-20d", "pending-400d"}

    result = runner.invoke(args=["deliveries", "prune", "--older-than", "10"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("removed 1 sent deliveries older than 10 days and 1 dead deliveries "
                                     "older than 30 days")
    assert remaining(node_app) == {"sent-5d", "dead-20d", "pending-400d"}

    # Only delivery rows went: every activity is still in the outbox, and catch-up pages it the same.
    assert outbox_total(node_app) == len(SPECS)
    assert client.get("/outbox?after=0&limit=500").get_json() == catch_up
    assert len(catch_up["orderedItems"]) == len(SPECS)

    again = runner.invoke(args=["deliveries", "prune", "--older-than", "10"])
    assert again.output.strip().startswith("removed 0 sent deliveries")


def test_prune_command_refuses_a_bad_number_of_days(node_app):
    result = node_app.test_cli_runner().invoke(args=["deliveries", "prune", "--older-than", "0"])
    assert result.exit_code != 0
    assert "--older-than" in result.output and "Traceback" not in result.output


def test_the_setting_changes_what_is_kept(make_app):
    app = make_app(HALLES_DELIVERY_RETENTION_DAYS=3)
    add_deliveries(app, [("sent-4d", "sent", 4 * DAY), ("sent-2d", "sent", 2 * DAY),
                         ("dead-10d", "dead", 10 * DAY), ("dead-8d", "dead", 8 * DAY)])
    result = app.test_cli_runner().invoke(args=["deliveries", "prune"])
    assert "removed 1 sent deliveries older than 3 days and 1 dead deliveries older than 9 days" in result.output
    assert remaining(app) == {"sent-2d", "dead-8d"}


def test_the_worker_prunes_in_batches_then_once_an_hour(node_app, monkeypatch):
    from node import worker
    from node.common.timeutil import utcnow
    from node.extensions import db
    from node.fedi import delivery
    from node.fedi.models import Delivery, OutboxEntry

    monkeypatch.setattr(delivery, "PRUNE_BATCHES_PER_ROUND", 1)
    add_deliveries(node_app, [("keep", "sent", 1 * DAY)])
    old = utcnow() - 40 * DAY
    with node_app.app_context():
        entry_id = db.session.scalar(select(OutboxEntry.id))
        db.session.execute(insert(Delivery), [
            {"outbox_entry_id": entry_id, "inbox_url": f"http://lyon.example/old-{n}", "domain": "lyon.example",
             "state": "sent", "attempts": 1, "created_at": old, "next_attempt_at": old, "sent_at": old}
            for n in range(1500)
        ])
        db.session.commit()

    def rows() -> int:
        with node_app.app_context():
            count = db.session.scalar(select(func.count(Delivery.id)))
            db.session.remove()
        return count

    # One batch per round: the worker is never held long by a backlog, and comes back for the rest.
    assert worker.run_once(node_app) >= 1000
    assert rows() == 501
    worker.run_once(node_app)
    assert rows() == 1
    # Then nothing until the hour is over, even when rows come of age meanwhile.
    add_deliveries(node_app, [("late", "sent", 40 * DAY)])
    worker.run_once(node_app)
    assert remaining(node_app) == {"keep", "late"}
    node_app.extensions["halles_delivery_pruning"]["next"] = 0.0  # the hour has passed
    worker.run_once(node_app)
    assert remaining(node_app) == {"keep"}
    assert outbox_total(node_app) == 2


@pytest.mark.parametrize("raw", ["0", "-5", "3651"])
def test_the_retention_setting_is_validated(raw):
    config = load(environ={"HALLES_DELIVERY_RETENTION_DAYS": raw, "HALLES_SECRET_KEY": "x" * 40})
    with pytest.raises(ConfigError, match="HALLES_DELIVERY_RETENTION_DAYS must be a whole number of days"):
        validate(config)


def test_the_retention_setting_must_be_a_number():
    with pytest.raises(ConfigError, match="HALLES_DELIVERY_RETENTION_DAYS='a month' is not a whole number"):
        load(environ={"HALLES_DELIVERY_RETENTION_DAYS": "a month"})
