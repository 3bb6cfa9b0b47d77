"""What a failed delivery becomes: given up at once when no retry can mend it (an address the safe-fetch
policy refuses, a 4xx such as 400 or 410), retried with backoff when the failure may pass (5xx, DNS,
429 with its Retry-After honoured, within the backoff ceiling). A 410 on a follower's own inbox removes
that follower."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

#: Long enough that a retried delivery is not due again while the test looks at it.
SLOW_BACKOFF = 600


def wait_for(node, condition, timeout: float) -> None:
    """Run the node's worker until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.work_once()
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s")


def queue_to(node, inboxes: dict[str, str], label: str, count: int = 1) -> None:
    from node.extensions import db
    from node.fedi import outbox

    def write():
        for number in range(count):
            obj = {"id": f"{node.url}/notes/{label}-{number}", "type": "Note", "content": label}
            outbox.publish("Create", obj, audience="public", object_id=obj["id"], only_inboxes=inboxes)
        db.session.commit()

    node.query(write)


def rows(node, inbox: str):
    from node.extensions import db
    from node.fedi.models import Delivery

    return node.query(lambda: db.session.execute(
        select(Delivery.state, Delivery.attempts, Delivery.last_error, Delivery.next_attempt_at)
        .where(Delivery.inbox_url == inbox).order_by(Delivery.id)).all())


def attempted(node, *inboxes: str):
    return lambda: all(row.attempts >= 1 for inbox in inboxes for row in rows(node, inbox))


def test_refused_addresses_are_dead_at_once_without_a_request(make_node, peers):
    # This node keeps the production policy: no private or loopback targets.
    node = make_node("Les Halles Civiques", "Paris", HALLES_ALLOW_PRIVATE_ADDRESSES=False,
                     HALLES_DELIVERY_BACKOFF_SECONDS=0.05, HALLES_DELIVERY_MAX_ATTEMPTS=12)
    loopback = peers("ok")
    targets = {
        loopback.url: "loopback address",
        "http://10.1.2.3/inbox": "private address",
        "http://169.254.169.254/inbox": "link-local address",
        "ftp://lyon.example/inbox": "scheme not allowed",
    }
    queue_to(node, {url: url.split("/")[2] for url in targets}, "refused")
    wait_for(node, lambda: all(row.state == "dead" for url in targets for row in rows(node, url)), timeout=20)
    for url, reason in targets.items():
        [row] = rows(node, url)
        assert row.attempts == 1, (url, row)
        assert row.last_error.startswith("permanent, not retried: refused before sending"), row.last_error
        assert reason in row.last_error, (url, row.last_error)
    assert loopback.requests == 0


def test_link_local_stays_refused_when_private_addresses_are_allowed(make_node):
    node = make_node("Les Halles Civiques", "Paris", HALLES_DELIVERY_BACKOFF_SECONDS=0.05)
    queue_to(node, {"http://169.254.169.254/latest/inbox": "169.254.169.254"}, "metadata")
    wait_for(node, lambda: [row.state for row in rows(node, "http://169.254.169.254/latest/inbox")] == ["dead"],
             timeout=20)
    [row] = rows(node, "http://169.254.169.254/latest/inbox")
    assert row.attempts == 1 and "link-local" in row.last_error


def test_a_name_that_does_not_resolve_is_retried(make_node):
    def no_dns(host, port):
        raise OSError("Temporary failure in name resolution")

    node = make_node("Les Halles Civiques", "Paris", HALLES_RESOLVER=no_dns,
                     HALLES_DELIVERY_BACKOFF_SECONDS=SLOW_BACKOFF)
    inbox = "http://lyon.example/inbox"
    queue_to(node, {inbox: "lyon.example"}, "dns")
    wait_for(node, attempted(node, inbox), timeout=20)
    [row] = rows(node, inbox)
    assert row.state == "pending" and row.attempts == 1
    assert "cannot resolve" in row.last_error and "permanent" not in row.last_error


def test_client_errors_are_given_up_and_server_errors_retried(make_node, peers):
    node = make_node("Les Halles Civiques", "Paris", HALLES_DELIVERY_BACKOFF_SECONDS=SLOW_BACKOFF,
                     HALLES_DELIVERY_MAX_ATTEMPTS=12)
    bad, failing = peers("bad-request"), peers("error")
    queue_to(node, {bad.url: bad.domain, failing.url: failing.domain}, "status", count=2)
    wait_for(node, attempted(node, bad.url, failing.url), timeout=20)
    assert [(row.state, row.attempts) for row in rows(node, bad.url)] == [("dead", 1)] * 2
    assert all(row.last_error == "permanent, not retried: HTTP 400 bad" for row in rows(node, bad.url))
    assert [(row.state, row.attempts) for row in rows(node, failing.url)] == [("pending", 1)] * 2
    assert all(row.last_error == "HTTP 500 oops!" for row in rows(node, failing.url))
    assert bad.requests == 2 and failing.requests == 2


@pytest.mark.parametrize(("retry_after", "expected"), [(900, 900), (10**9, 6 * 3600)])
def test_429_waits_as_long_as_the_server_asks_within_the_ceiling(make_node, peers, retry_after, expected):
    from node.fedi.delivery import utcnow

    node = make_node("Les Halles Civiques", "Paris", HALLES_DELIVERY_BACKOFF_SECONDS=0.05,
                     HALLES_DELIVERY_MAX_ATTEMPTS=12)
    busy = peers("throttle")
    busy.retry_after = retry_after
    queue_to(node, {busy.url: busy.domain}, "throttled")
    wait_for(node, attempted(node, busy.url), timeout=20)
    [row] = rows(node, busy.url)
    assert row.state == "pending" and row.attempts == 1 and row.last_error.startswith("HTTP 429")
    wait = row.next_attempt_at - utcnow()
    assert timedelta(seconds=expected - 30) < wait <= timedelta(seconds=expected), wait
    assert busy.requests == 1


def test_410_gives_up_the_inbox_and_removes_the_follower_who_owned_it(make_node, peers):
    from node.extensions import db
    from node.fedi import outbox
    from node.fedi.models import Follow, RemoteActor

    node = make_node("Les Halles Civiques", "Paris", HALLES_DELIVERY_BACKOFF_SECONDS=SLOW_BACKOFF)
    gone, shared_gone, healthy = peers("gone"), peers("gone"), peers("ok")

    def follow(name: str, inbox: str, shared: str | None = None) -> None:
        actor = RemoteActor(ap_id=f"http://{name}.example/actor", domain=f"{name}.example", inbox=inbox,
                            shared_inbox=shared)
        db.session.add(actor)
        db.session.flush()
        db.session.add(Follow(actor_id=actor.id, direction="incoming", state="accepted",
                              activity_id=f"http://{name}.example/follow"))

    def setup():
        follow("deleted", gone.url)
        # Behind a shared inbox that answers 410: the delivery dies, but that inbox served others too,
        # and this follower's own inbox says nothing about its account.
        follow("behind-shared", f"{healthy.url}/own", shared=shared_gone.url)
        follow("alive", healthy.url)
        db.session.commit()

    node.query(setup)
    queue_to(node, outbox_inboxes := node.query(lambda: outbox.recipients("public")), "first", count=3)
    assert set(outbox_inboxes) == {gone.url, shared_gone.url, healthy.url}
    wait_for(node, lambda: all(row.state == "dead" for url in (gone.url, shared_gone.url) for row in rows(node, url))
             and all(row.state == "sent" for row in rows(node, healthy.url)), timeout=20)
    for url in (gone.url, shared_gone.url):
        assert all(row.last_error.startswith("permanent, not retried") for row in rows(node, url))
        # The other deliveries queued for a gone inbox died with the first 410, not one request each.
        assert rows(node, url)[0].attempts == 1
    states = dict(node.query(lambda: db.session.execute(
        select(RemoteActor.domain, Follow.state).join(Follow, Follow.actor_id == RemoteActor.id)).all()))
    assert states == {"deleted.example": "removed", "behind-shared.example": "accepted", "alive.example": "accepted"}
    # The next publication no longer goes to the removed follower.
    assert set(node.query(lambda: outbox.recipients("public"))) == {shared_gone.url, healthy.url}
