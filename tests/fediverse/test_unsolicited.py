"""Events reach a node's listings only from what it follows. An account that can sign a request but
that the node does not follow cannot push events into them (Create or boost); an account it follows
can boost an event (Mastodon's Announce of a URL: fetched from its origin) and take the boost back."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from node.events.models import Event
from node.extensions import db
from node.fedi.models import InboxItem, RemoteActor
from tests.support.nodes import settle


def remote_events(node) -> list[tuple[str, str | None]]:
    def load():
        rows = db.session.scalars(select(Event).where(Event.origin_actor_id.is_not(None))).all()
        return [(e.title, db.session.get(RemoteActor, e.shared_by_actor_id).ap_id if e.shared_by_actor_id else None)
                for e in rows]
    return node.query(load)


def outcome(node, activity_id: str) -> tuple[str, str | None]:  # (state, reason)
    row = node.query(lambda: db.session.execute(
        select(InboxItem.state, InboxItem.error).where(InboxItem.activity_id == activity_id)).one())
    return tuple(row)


def accept_follow(node, server, actor: dict) -> None:
    """The node follows ``actor`` and the remote server accepts (a Mastodon-style Accept)."""
    assert node.cli("follow", actor["id"]).exit_code == 0
    settle([node])
    follow = server.received("Follow")[-1]
    accept = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{actor['id']}#accepts/follows/1",
              "type": "Accept", "actor": actor["id"], "object": follow}
    assert server.post(node, accept, key_id=actor["publicKey"]["id"]).status_code == 202
    settle([node])


def test_events_from_an_actor_the_node_does_not_follow_are_ignored(make_node, fake_server):
    gancio = fake_server()
    relay = gancio.serve_fixture("gancio_actor.json")
    node = make_node()
    create = gancio.fixture("gancio_event_create.json", node.actor)
    assert gancio.post_like_gancio(node, create, key_id=relay["publicKey"]["id"]).status_code == 202
    settle([node])
    state, reason = outcome(node, create["id"])
    assert state == "ignored" and f"this node does not follow {relay['id']}" in reason
    assert remote_events(node) == []


def test_a_followed_account_boosts_an_event_then_takes_it_back(make_node, fake_server):
    mastodon, mobilizon = fake_server(), fake_server()
    alice = mastodon.serve_fixture("mastodon_actor.json")
    mobilizon.serve_fixture("mobilizon_group.json")
    event = mobilizon.fixture("mobilizon_event_create.json")["object"]
    mobilizon.serve(event)
    node = make_node()

    boost = mastodon.fixture("mastodon_announce.json", node.actor)
    boost["object"] = event["id"]
    # Not followed yet: the boost is ignored.
    assert mastodon.post(node, boost, key_id=alice["publicKey"]["id"]).status_code == 202
    settle([node])
    assert outcome(node, boost["id"])[0] == "ignored" and remote_events(node) == []

    accept_follow(node, mastodon, alice)
    boost["id"] = boost["id"].replace("/activity", f"-{uuid.uuid4().hex[:6]}/activity")
    assert mastodon.post(node, boost, key_id=alice["publicKey"]["id"]).status_code == 202
    settle([node])
    # Fetched from Mobilizon (its origin vouches for it), credited to Alice who shared it.
    assert remote_events(node) == [("Repair Café et débat : réparer plutôt que jeter", alice["id"])]

    undo = mastodon.fixture("mastodon_undo_announce.json", node.actor)
    undo["object"]["id"], undo["object"]["object"] = boost["id"], event["id"]
    assert mastodon.post(node, undo, key_id=alice["publicKey"]["id"]).status_code == 202
    settle([node])
    assert outcome(node, undo["id"]) == ("applied", None)
    assert remote_events(node) == []  # it only reached the node through that boost
