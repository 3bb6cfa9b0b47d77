"""A peer that answers 500, never answers, drops the connection or trickles its answer one byte per
second never holds back deliveries to the healthy ones: they arrive within seconds, exactly once,
while the broken ones are retried and end dead with the reason recorded."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from tests.resilience import tally
from tests.resilience.peers import FakePeer

#: Short transport limits for the test (production: 10 s read timeout, 20 s per exchange).
READ_TIMEOUT = 2
TOTAL_DEADLINE = 3


@pytest.fixture
def short_timeouts(monkeypatch):
    from node.fedi import transport

    monkeypatch.setattr(transport, "READ_TIMEOUT", READ_TIMEOUT)
    monkeypatch.setattr(transport, "TOTAL_DEADLINE", TOTAL_DEADLINE)


class Worker:
    """``halles worker`` in a thread: runs every task until stopped."""

    def __init__(self, node) -> None:
        self.node = node
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            if not self.node.work_once():
                time.sleep(0.05)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)


def queue(node, peers: list[FakePeer], count: int, label: str) -> list[str]:
    """Publish ``count`` notes, each delivered to every peer; returns the activity ids."""
    from node.extensions import db
    from node.fedi import outbox

    def write():
        ids = []
        for number in range(count):
            obj = {"id": f"{node.url}/notes/{label}-{number}", "type": "Note", "content": f"{label} {number}"}
            entry = outbox.publish("Create", obj, audience="public", object_id=obj["id"],
                                   only_inboxes={peer.url: peer.domain for peer in peers})
            ids.append(entry.activity_id)
        db.session.commit()
        return ids

    return node.query(write)


def deliveries(node, peer: FakePeer):
    from node.extensions import db
    from node.fedi.models import Delivery

    return node.query(lambda: db.session.execute(
        select(Delivery.state, Delivery.attempts, Delivery.last_error).where(Delivery.domain == peer.domain)).all())


def wait_for(condition, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


def test_a_peer_that_never_answers_does_not_hold_back_the_queue(make_node, peers, short_timeouts):
    node = make_node("Les Halles Civiques", "Paris", HALLES_DELIVERY_MAX_ATTEMPTS=2)
    silent, healthy = peers("timeout"), peers("ok")
    # Forty deliveries to the silent server come first in the queue; the healthy one's come after.
    queue(node, [silent], 40, "silent")
    expected = set(queue(node, [healthy], 5, "healthy"))
    tally.fault("peer never answers", 40)
    with Worker(node):
        elapsed = wait_for(lambda: set(healthy.received) == expected, timeout=30)
    assert elapsed < READ_TIMEOUT + 3, f"the healthy peer waited {elapsed:.1f} s behind the silent one"
    assert set(healthy.received.values()) == {1}
    tally.checked("deliveries to healthy peers", len(expected))


def test_every_kind_of_broken_peer_at_once(make_node, peers, short_timeouts):
    node = make_node("Les Halles Civiques", "Paris", HALLES_DELIVERY_MAX_ATTEMPTS=2)
    broken = {mode: [peers(mode) for _ in range(3)]
              for mode in ("error", "timeout", "drop", "slow-headers", "slow-body", "slow-error")}
    healthy = [peers("ok") for _ in range(4)]
    bad = [peer for group in broken.values() for peer in group]
    queue(node, bad, 3, "first")
    expected = set(queue(node, healthy, 3, "first"))
    tally.fault("broken peers (500, silent, dropped, trickling)", len(bad) * 3)
    with Worker(node):
        elapsed = wait_for(lambda: all(set(peer.received) == expected for peer in healthy), timeout=60)
        assert elapsed < TOTAL_DEADLINE + 4, f"healthy peers waited {elapsed:.1f} s"
        # A second burst while the broken ones are being retried goes through as fast.
        later = set(queue(node, healthy + bad, 2, "second"))
        elapsed = wait_for(lambda: all(set(peer.received) >= later for peer in healthy), timeout=60)
        assert elapsed < TOTAL_DEADLINE + 4, f"healthy peers waited {elapsed:.1f} s for the second burst"
        # Every broken delivery ends dead (two attempts), with the reason; an inbox that accepted (202)
        # and then trickles its body has the activity: sent, and not listened to any further.
        failing = [peer for mode, group in broken.items() if mode != "slow-body" for peer in group]
        wait_for(lambda: all(state == "dead" for peer in failing for state, _a, _e in deliveries(node, peer))
                 and all(state == "sent" for peer in broken["slow-body"] for state, _a, _e in deliveries(node, peer)),
                 timeout=90)
    for peer in healthy:
        assert set(peer.received) == expected | later
        assert set(peer.received.values()) == {1}, "a healthy peer got an activity twice"
    reasons = {mode: {error for peer in group for _s, _a, error in deliveries(node, peer)}
               for mode, group in broken.items()}
    for peer in failing:
        rows = deliveries(node, peer)
        assert len(rows) == 5 and all(attempts == 2 and error for _s, attempts, error in rows), (peer.mode, rows)
    for peer in broken["slow-body"]:
        assert [attempts for _s, attempts, _e in deliveries(node, peer)] == [1] * 5
        assert peer.hung_up_after and max(peer.hung_up_after) < 2.5, peer.hung_up_after
    assert reasons["error"] == {"HTTP 500 oops!"}
    assert all("timed out" in error for error in reasons["timeout"]), reasons["timeout"]
    assert all("aborted" in error or "reset" in error for error in reasons["drop"]), reasons["drop"]
    for mode in ("slow-headers", "slow-error"):
        assert all(f"cut off after {TOTAL_DEADLINE} s" in error for error in reasons[mode]), reasons[mode]
        # The trickling servers were hung up on at the deadline, not read to the end (that would take
        # hours at a byte a second). A server only notices the hang-up when a send fails, one or two
        # bytes -- seconds -- after it, later still on a busy machine (5.5 s seen in CI): the margin is
        # for that noticing; the client's own cut-off at the deadline is the error checked above.
        for peer in broken[mode]:
            assert peer.hung_up_after, f"{mode}: the client never hung up"
            assert max(peer.hung_up_after) < TOTAL_DEADLINE + 5, (mode, peer.hung_up_after)
    tally.checked("deliveries to healthy peers", len(healthy) * 5)
