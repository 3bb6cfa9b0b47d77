"""The catch-up cursor must never step over an outbox entry that commits late. On PostgreSQL ids come
from a sequence when the row is inserted, not when it commits: a publication that inserted first and
committed last would sit below a cursor a peer already holds, and be lost to catch-up for good (only
its delivery could still bring it). Publications now take their place in the outbox in commit order."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.resilience import tally
from tests.support.databases import backend


def publish(node, label: str, inserted: threading.Event | None = None, go: threading.Event | None = None) -> str:
    from node.extensions import db
    from node.fedi import outbox

    with node.app.app_context():
        obj = {"id": f"{node.url}/notes/{label}", "type": "Note", "content": label}
        entry = outbox.publish("Create", obj, audience="public", object_id=obj["id"], only_inboxes={})
        activity_id = entry.activity_id
        if inserted is not None:
            inserted.set()
        if go is not None:
            go.wait(timeout=10)
        db.session.commit()
        return activity_id


def page(node, after: str) -> tuple[list[str], str]:
    body = requests.get(f"{node.url}/outbox", params={"after": after, "limit": 500}, timeout=10).json()
    return [item["id"] for item in body["orderedItems"]], body["cursor"]


def test_catch_up_never_steps_over_a_late_commit(make_node):
    if backend() != "postgres":
        pytest.skip("SQLite has one writer at a time: outbox ids already follow commit order")
    paris = make_node("Les Halles Civiques", "Paris")
    _seen, cursor = page(paris, "0")
    inserted, go = threading.Event(), threading.Event()
    results: dict[str, str] = {}
    slow = threading.Thread(target=lambda: results.update(slow=publish(paris, "slow", inserted, go)))
    slow.start()
    assert inserted.wait(timeout=10)
    fast = threading.Thread(target=lambda: results.update(fast=publish(paris, "fast")))
    fast.start()
    fast.join(timeout=1)  # with commit order kept, the fast one waits for the slow one
    first, cursor = page(paris, cursor)  # a peer catching up now
    go.set()
    slow.join(timeout=30)
    fast.join(timeout=30)
    second, _cursor = page(paris, cursor)  # and again, from its cursor
    tally.fault("outbox commits out of order", 1)
    assert set(first) | set(second) == {results["slow"], results["fast"]}, (first, second)
