"""A node sends its deliveries to another Halles node in batches (an ``Announce`` whose ``object`` lists
the activities, FEP-4248 shape), because that node's actor document advertises ``batchDelivery``: a
burst of events goes in a few requests, in outbox order, each activity settled by its own line of the
answer; a failed request is sent again whole (the receiver drops what it already has); a receiver that
refuses batches, or asks for smaller ones, gets what it takes; and servers that do not advertise
batches (Mastodon, an older Halles node) keep getting one POST per activity."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from tests.network.helpers import create_event, peer, signed_organisation
from tests.support.nodes import settle


@dataclass
class Post:
    ids: list[str]
    batch: bool
    size: int
    status: int = 0


class InboxTap:
    """WSGI middleware around a node's app: records every POST to /inbox (the activity ids it carried,
    whether it was a batch, its size and the answer's status). ``refuse_batches`` answers batches 415
    as an inbox that does not know them would; ``fail_batches`` lists how the next batches fail:
    "before" answers 500 without reading them, "after" lets the node store them, then answers 500."""

    def __init__(self, node) -> None:
        self.inner = node.app.wsgi_app
        node.app.wsgi_app = self
        self.posts: list[Post] = []
        self.refuse_batches = False
        self.fail_batches: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "POST" or environ.get("PATH_INFO") != "/inbox":
            return self.inner(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        document = json.loads(body)
        batch = isinstance(document.get("object"), list)
        post = Post([item["id"] for item in document["object"]] if batch else [document["id"]], batch, len(body))
        with self.lock:
            self.posts.append(post)
            failure = self.fail_batches.pop(0) if batch and self.fail_batches else None
        if batch and self.refuse_batches:
            return self._answer(post, start_response, "415 UNSUPPORTED MEDIA TYPE",
                                {"title": "Unsupported", "detail": "the activity object must be an object"})
        if failure == "before":
            return self._answer(post, start_response, "500 INTERNAL SERVER ERROR", {"detail": "down"})

        def recording(status, headers, exc_info=None):
            post.status = int(status.split()[0])
            return start_response(status, headers, exc_info) if failure is None else (lambda data: None)

        answer = self.inner(environ, recording)
        if failure == "after":
            b"".join(answer)  # the node stores the batch...
            if hasattr(answer, "close"):
                answer.close()
            return self._answer(post, start_response, "500 INTERNAL SERVER ERROR", {"detail": "lost the answer"})
        return answer

    @staticmethod
    def _answer(post, start_response, status, problem):
        post.status = int(status.split()[0])
        start_response(status, [("Content-Type", "application/problem+json")])
        return [json.dumps(problem).encode()]

    def ids(self) -> list[str]:
        return [activity_id for post in self.posts for activity_id in post.ids]


@pytest.fixture
def network(make_node):
    """Lyon follows Paris (a charter peer): Paris's events go to Lyon's inbox."""

    def make(paris_config=None, lyon_config=None):
        paris = make_node("Les Halles Civiques", "Paris", **(paris_config or {}))
        lyon = make_node("La Fabrique Commune", "Lyon", **(lyon_config or {}))
        peer(lyon, paris, [paris, lyon])
        org = signed_organisation(paris)
        settle([paris, lyon])
        return paris, lyon, org

    return make


def last_entry(node) -> int:
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    return node.query(lambda: db.session.scalar(select(func.max(OutboxEntry.id))) or 0)


def sent_to(node, inbox: str, after: int):
    """(activity id, state, attempts, last status, last error) of the deliveries to ``inbox`` of the
    outbox entries after ``after``, in outbox order."""
    from node.extensions import db
    from node.fedi.models import Delivery, OutboxEntry

    return node.query(lambda: db.session.execute(
        select(OutboxEntry.activity_id, Delivery.state, Delivery.attempts, Delivery.last_status, Delivery.last_error)
        .join(OutboxEntry, Delivery.outbox_entry_id == OutboxEntry.id)
        .where(Delivery.inbox_url == inbox, OutboxEntry.id > after).order_by(OutboxEntry.id)).all())


def deliver_all(paris, lyon, before: int, timeout: float = 60.0) -> None:
    """Run both workers until every delivery to Lyon of the entries after ``before`` is settled (a
    retry after a Retry-After is not "moving" for ``settle``, so it is waited for here)."""
    deadline = time.monotonic() + timeout
    while True:
        settle([paris, lyon])
        if all(row.state != "pending" for row in sent_to(paris, f"{lyon.url}/inbox", before)):
            return
        assert time.monotonic() < deadline, "deliveries still pending"
        time.sleep(0.1)


def received_ids(node) -> list[str]:
    """Activity ids in the node's inbox, in the order it stored them."""
    from node.extensions import db
    from node.fedi.models import InboxItem

    return node.query(lambda: list(db.session.scalars(select(InboxItem.activity_id).order_by(InboxItem.id))))


def remote_titles(node) -> list[str]:
    from node.events.models import Event
    from node.extensions import db

    return node.query(lambda: sorted(db.session.scalars(
        select(Event.title).where(Event.origin_actor_id.is_not(None)))))


def edit_stored_actor(node, actor_url: str, change) -> None:
    """Change the actor document ``node`` keeps for ``actor_url`` (as if it had fetched that), and
    forget what its deliveries read of it."""
    from node.extensions import db
    from node.fedi.models import RemoteActor

    def edit():
        actor = db.session.scalar(select(RemoteActor).where(RemoteActor.ap_id == actor_url))
        document = json.loads(json.dumps(actor.document))
        change(document)
        actor.document = document
        db.session.commit()

    node.query(edit)
    node.app.extensions.pop("halles_batch_inboxes", None)


def publish_notes(node, count: int, label: str) -> None:
    from node.extensions import db
    from node.fedi import outbox

    def write():
        for number in range(count):
            obj = {"id": f"{node.url}/notes/{label}-{number}", "type": "Note", "content": f"{label} {number}"}
            outbox.publish("Create", obj, audience="public", object_id=obj["id"])
        db.session.commit()

    node.query(write)


def test_forty_events_reach_a_halles_follower_in_one_request_in_outbox_order(network):
    paris, lyon, org = network()
    tap = InboxTap(lyon)
    before = last_entry(paris)
    opening = create_event(paris, org, "Festival — ouverture")
    # An Update right after its Create: both go in the same batch, the Create first.
    response = paris.client.patch(f"/api/v1/events/{opening['id']}", headers=paris.admin_headers,
                                  json={"title": "Festival — ouverture (Belleville)"})
    assert response.status_code == 200, response.get_json()
    for number in range(39):
        create_event(paris, org, f"Festival — atelier {number:02}")
    deliver_all(paris, lyon, before)

    deliveries = sent_to(paris, f"{lyon.url}/inbox", before)
    expected = [row.activity_id for row in deliveries]
    assert len(expected) >= 41
    assert [(post.batch, post.status) for post in tap.posts] == [(True, 202)]
    assert tap.ids() == expected
    assert {(row.state, row.attempts, row.last_status) for row in deliveries} == {("sent", 1, 202)}
    # Stored in the batch's order, so applied in it: the update wins.
    stored = received_ids(lyon)
    assert stored[-len(expected):] == expected
    titles = remote_titles(lyon)
    assert "Festival — ouverture (Belleville)" in titles and "Festival — ouverture" not in titles
    assert len(titles) == 40


def test_a_backlog_goes_in_batches_of_at_most_one_hundred(network):
    # Lyon's inbox budget (300 a minute by default) is raised above the 250 activities sent at once.
    paris, lyon, _org = network(lyon_config={"HALLES_RATE_LIMIT_INBOX": "1000/1m"})
    tap = InboxTap(lyon)
    before = last_entry(paris)
    publish_notes(paris, 250, "backlog")
    deliver_all(paris, lyon, before)
    expected = [row.activity_id for row in sent_to(paris, f"{lyon.url}/inbox", before)]
    assert len(expected) == 250
    assert all(post.batch and post.status == 202 for post in tap.posts)
    assert sorted(len(post.ids) for post in tap.posts) == [50, 100, 100]
    # Each batch is a run of the outbox in order (the batches themselves may travel side by side).
    for post in tap.posts:
        start = expected.index(post.ids[0])
        assert post.ids == expected[start:start + len(post.ids)]
    assert sorted(tap.ids()) == sorted(expected)
    assert {row.state for row in sent_to(paris, f"{lyon.url}/inbox", before)} == {"sent"}


def test_batches_stay_within_the_bytes_the_inbox_takes(network):
    paris, lyon, org = network()
    edit_stored_actor(paris, lyon.actor, lambda document: document["batchDelivery"].update(maxBytes=20_000))
    tap = InboxTap(lyon)
    before = last_entry(paris)
    for number in range(24):
        create_event(paris, org, f"Semaine des communs, jour {number}", description="Programme détaillé. " * 100)
    deliver_all(paris, lyon, before)
    deliveries = sent_to(paris, f"{lyon.url}/inbox", before)
    assert {(row.state, row.attempts) for row in deliveries} == {("sent", 1)}
    assert len(tap.posts) > 4  # more than one round's four requests: the rest waited for the next round
    assert all(post.size <= 20_000 for post in tap.posts)
    assert any(post.batch and len(post.ids) > 1 for post in tap.posts)
    assert sorted(tap.ids()) == sorted(row.activity_id for row in deliveries)
    assert len(remote_titles(lyon)) == 24


def test_a_refused_line_settles_only_its_own_delivery(network):
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    # Retries wait ten minutes: what the first batch left is seen as it is.
    paris, lyon, org = network(paris_config={"HALLES_DELIVERY_BACKOFF_SECONDS": 600})
    tap = InboxTap(lyon)
    before = last_entry(paris)
    for number in range(5):
        create_event(paris, org, f"Atelier {number}")

    def tamper():
        entries = list(db.session.scalars(select(OutboxEntry).where(OutboxEntry.id > before)
                                          .order_by(OutboxEntry.id)))
        too_long = dict(entries[1].activity, id=f"{paris.url}/activities/{'x' * 600}")
        changed = dict(entries[3].activity, object=dict(entries[3].activity["object"], name="Changé en route"))
        entries[1].activity, entries[3].activity = too_long, changed
        db.session.commit()
        return entries[1].activity_id, entries[3].activity_id

    too_long_id, changed_id = paris.query(tamper)
    settle([paris, lyon])
    assert [(post.batch, len(post.ids), post.status) for post in tap.posts] == [(True, 5, 202)]
    rows = {row.activity_id: row for row in sent_to(paris, f"{lyon.url}/inbox", before)}
    dead = rows.pop(too_long_id)
    assert (dead.state, dead.attempts, dead.last_status) == ("dead", 1, 400)
    assert dead.last_error.startswith("permanent, not retried: HTTP 400")
    assert "longer than 500" in dead.last_error
    retried = rows.pop(changed_id)  # a 401 line: retried, as a 401 to a single delivery would be
    assert (retried.state, retried.attempts, retried.last_status) == ("pending", 1, 401)
    assert "proof" in retried.last_error and not retried.last_error.startswith("permanent")
    assert {(row.state, row.attempts, row.last_status) for row in rows.values()} == {("sent", 1, 202)}
    assert remote_titles(lyon) == ["Atelier 0", "Atelier 2", "Atelier 4"]


@pytest.mark.parametrize("failure", ["before", "after"])
def test_a_batch_that_failed_is_sent_again_whole_without_loss_or_duplicate(network, failure):
    """500 before storing, or after (the answer was lost): the chunk goes again, the receiver keeps one
    copy of each activity and says 200 for those it had."""
    paris, lyon, org = network()
    tap = InboxTap(lyon)
    tap.fail_batches = [failure]
    before = last_entry(paris)
    for number in range(12):
        create_event(paris, org, f"Ciné-débat {number:02}")
    deliver_all(paris, lyon, before)
    deliveries = sent_to(paris, f"{lyon.url}/inbox", before)
    expected = [row.activity_id for row in deliveries]
    assert [(post.batch, post.status) for post in tap.posts] == [(True, 500), (True, 202)]
    assert tap.posts[0].ids == tap.posts[1].ids == expected
    assert {(row.state, row.attempts) for row in deliveries} == {("sent", 2)}
    stored = received_ids(lyon)
    assert sorted(stored[-len(expected):]) == sorted(expected) and len(set(stored)) == len(stored)
    assert remote_titles(lyon) == [f"Ciné-débat {number:02}" for number in range(12)]


def test_an_inbox_that_refuses_a_batch_gets_single_posts_from_then_on(network):
    paris, lyon, org = network()
    tap = InboxTap(lyon)
    tap.refuse_batches = True
    before = last_entry(paris)
    for number in range(6):
        create_event(paris, org, f"Permanence {number}")
    deliver_all(paris, lyon, before)
    create_event(paris, org, "Permanence 6")
    create_event(paris, org, "Permanence 7")
    deliver_all(paris, lyon, before)
    deliveries = sent_to(paris, f"{lyon.url}/inbox", before)
    first, *rest = tap.posts
    assert (first.batch, first.status, len(first.ids)) == (True, 415, 6)
    assert [(post.batch, post.status) for post in rest] == [(False, 202)] * 8
    assert sorted(tap.ids()[6:]) == sorted(row.activity_id for row in deliveries)
    # The refused batch was not an attempt: each delivery was attempted once, alone, and sent.
    assert {(row.state, row.attempts) for row in deliveries} == {("sent", 1)}
    assert len(remote_titles(lyon)) == 8


def test_a_413_naming_a_size_gets_batches_of_that_size(network):
    # Lyon's inbox takes 20 activities per second (Paris, which Lyon follows, is a partner of Lyon's:
    # its budget is the partners'); Paris's copy of its actor does not say so.
    paris, lyon, org = network(lyon_config={"HALLES_RATE_LIMIT_INBOX": "20/1s",
                                            "HALLES_RATE_LIMIT_INBOX_PARTNERS": "20/1s"})
    assert paris.client.get("/actor").get_json()["batchDelivery"]["maxItems"] == 100
    assert lyon.client.get("/actor").get_json()["batchDelivery"]["maxItems"] == 20
    edit_stored_actor(paris, lyon.actor, lambda document: document["batchDelivery"].pop("maxItems"))
    tap = InboxTap(lyon)
    before = last_entry(paris)
    for number in range(30):
        create_event(paris, org, f"Repair café {number:02}")
    deliver_all(paris, lyon, before)
    deliveries = sent_to(paris, f"{lyon.url}/inbox", before)
    first, *rest = tap.posts
    assert (first.batch, first.status, len(first.ids)) == (True, 413, 30)
    assert rest and all(len(post.ids) <= 20 for post in rest)
    assert {row.state for row in deliveries} == {"sent"}
    assert len(remote_titles(lyon)) == 30


def test_a_halles_node_that_does_not_advertise_batches_gets_single_posts(network):
    paris, lyon, org = network()
    edit_stored_actor(paris, lyon.actor, lambda document: document.pop("batchDelivery"))
    tap = InboxTap(lyon)
    before = last_entry(paris)
    for number in range(5):
        create_event(paris, org, f"Assemblée {number}")
    deliver_all(paris, lyon, before)
    deliveries = sent_to(paris, f"{lyon.url}/inbox", before)
    assert [(post.batch, post.status) for post in tap.posts] == [(False, 202)] * len(deliveries)
    assert {(row.state, row.attempts) for row in deliveries} == {("sent", 1)}
    assert len(remote_titles(lyon)) == 5


def test_a_mastodon_server_gets_single_posts(make_node):
    from tests.fediverse.support import FakeServer

    mastodon = FakeServer(accept=("cavage",))
    try:
        alice = mastodon.serve_fixture("mastodon_actor.json")
        node = make_node("Les Halles Civiques", "Paris")
        follow = mastodon.fixture("mastodon_follow.json", node.actor)
        assert mastodon.post(node, follow, key_id=alice["publicKey"]["id"]).status_code == 202
        settle([node])
        org = signed_organisation(node)
        for number in range(5):
            create_event(node, org, f"Vide-grenier {number}")
        settle([node])
        creates = [activity for activity in mastodon.received("Create") if activity["object"]["type"] == "Event"]
        assert len(creates) == 5
        assert all(not isinstance(attempt.activity.get("object"), list) for attempt in mastodon.attempts())
    finally:
        mastodon.close()


def test_workers_sharing_the_queue_never_put_an_activity_in_two_batches(network):
    from node.fedi.delivery import send_due

    paris, lyon, _org = network(lyon_config={"HALLES_RATE_LIMIT_INBOX": "1000/1m"})
    tap = InboxTap(lyon)
    before = last_entry(paris)
    publish_notes(paris, 300, "shared")

    def worker():
        with paris.app.app_context():
            for _ in range(200):
                if not send_due(limit=2) and all(
                        row.state != "pending" for row in sent_to(paris, f"{lyon.url}/inbox", before)):
                    return
                time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    deliveries = sent_to(paris, f"{lyon.url}/inbox", before)
    assert {(row.state, row.attempts) for row in deliveries} == {("sent", 1)}
    assert sorted(tap.ids()) == sorted(row.activity_id for row in deliveries)  # each once
    assert all(post.batch and post.status == 202 for post in tap.posts)
