"""``halles worker --processes N`` (the ingest benchmark's two-core mode): the inbox is split by object
between processes, so a Create and the Updates of one event are applied by one process, in order; on
SQLite the option is refused with the reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from tests.support.databases import require_postgres

HALLES = Path(sys.executable).parent / "halles"


def queue_activities(app, *, events: int = 12, updates: int = 6) -> dict[str, str]:
    """Store (as the inbox would) Creates of ``events`` events and Updates of the first ``updates``
    ones, from 3 followed origins; returns object id -> newest ``updated``."""
    from benchmarks.origins import Origin, utc_now
    from node.extensions import db
    from node.fedi.keystore import store_actor
    from node.fedi.models import Follow, InboxItem

    origins = [Origin.make(index) for index in range(3)]
    now = utc_now()
    newest: dict[str, str] = {}
    with app.app_context():
        for origin in origins:
            actor = store_actor(origin.actor_document())
            db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                                  activity_id=f"{origin.actor_url}#follow"))
        plan = [(number, 0) for number in range(events)] + [(number, 1) for number in range(updates)]
        for number, version in plan:
            origin = origins[number % len(origins)]
            obj = origin.event_object(number, updated=now + timedelta(seconds=version), start=now + timedelta(days=9))
            activity = origin.signed_activity("Update" if version else "Create", obj, now=now)
            newest[obj["id"]] = obj["updated"]
            db.session.add(InboxItem(activity_id=activity["id"], activity_type=activity["type"],
                                     signer=origin.actor_url, activity=activity))
        db.session.commit()
    return newest


def stored_versions(app) -> dict[str, str]:
    from node.events.models import Event
    from node.extensions import db

    with app.app_context():
        rows = db.session.execute(select(Event.ap_id, Event.updated_at)).all()
        db.session.remove()
    return {ap_id: updated.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for ap_id, updated in rows}


def pending(app) -> int:
    from node.extensions import db
    from node.fedi.models import InboxItem

    with app.app_context():
        count = db.session.scalar(select(func.count(InboxItem.id)).where(InboxItem.state == "pending"))
        db.session.remove()
    return count


def test_partitions_split_the_inbox_by_object(app):
    require_postgres()
    from node.extensions import db
    from node.fedi.models import InboxItem
    from node.fedi.worker import process_inbox

    newest = queue_activities(app)
    applied_by = {}
    for index in (0, 1):
        app.config["HALLES_WORKER_PARTITION"] = (index, 2)
        with app.app_context():
            while process_inbox():
                pass
            for item in db.session.scalars(select(InboxItem).where(InboxItem.state != "pending")):
                obj = item.activity["object"]["id"]
                applied_by.setdefault(obj, set()).add(item.id)
                assert item.state == "applied", item.error
        if index == 0:
            first = {obj for obj, ids in applied_by.items()}
            # an object's Create and Update are applied together or not at all by one partition
            with app.app_context():
                for item in db.session.scalars(select(InboxItem).where(InboxItem.state == "pending")):
                    assert item.activity["object"]["id"] not in first
    assert pending(app) == 0
    assert 0 < len(first) < len(newest), "both partitions had work"
    assert stored_versions(app) == newest


def test_several_processes_apply_everything(app, tmp_path):
    require_postgres()
    newest = queue_activities(app, events=30, updates=15)
    config = app.config
    env = {
        **os.environ,
        "HALLES_INSTANCE": config["HALLES_INSTANCE"],
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://"),
        "HALLES_SECRET_KEY": "a-test-secret-key-of-more-than-32-characters",
        "HALLES_URL": config["HALLES_URL"],
        "HALLES_NAME": config["HALLES_NAME"],
        "HALLES_CITY": config["HALLES_CITY"],
    }
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen([str(HALLES), "worker", "--processes", "2"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while pending(app) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert pending(app) == 0, (tmp_path / "worker.log").read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert "2 processes" in (tmp_path / "worker.log").read_text()
    assert stored_versions(app) == newest


def test_several_processes_are_refused_on_sqlite(tmp_path):
    from node.cli import main
    from node.instance import generate_keys

    generate_keys(tmp_path)
    env = {"HALLES_INSTANCE": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'halles.db'}",
           "HALLES_SECRET_KEY": "x" * 40, "HALLES_URL": "http://127.0.0.1:5000"}
    result = CliRunner(env=env).invoke(main, ["worker", "--processes", "2"])
    assert result.exit_code == 1
    assert "need PostgreSQL" in result.output and "Traceback" not in result.output
