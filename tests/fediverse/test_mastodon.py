"""A Mastodon account follows a node: its Follow, Undo and account Delete, as Mastodon serializes them
(tests/fediverse/fixtures/mastodon_*.json), go through the real inbox, signed with draft-cavage; the
node's deliveries reach a receiver that, like Mastodon before 4.5, only accepts draft-cavage."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import func, select

from node.extensions import db
from node.fedi.models import Follow, InboxItem, RemoteActor, RemoteServer
from tests.network.helpers import create_event, signed_organisation
from tests.support.nodes import settle

PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def follow_state(node, actor_url: str) -> str | None:
    return node.query(lambda: db.session.scalar(
        select(Follow.state).join(RemoteActor, Follow.actor_id == RemoteActor.id)
        .where(RemoteActor.ap_id == actor_url, Follow.direction == "incoming")))


def flavour_of(node, domain: str) -> str | None:
    return node.query(lambda: db.session.scalar(
        select(RemoteServer.signature_flavour).where(RemoteServer.domain == domain)))


def test_mastodon_follower_gets_public_events_until_it_leaves(make_node, fake_server):
    mastodon = fake_server(accept=("cavage",))
    alice = mastodon.serve_fixture("mastodon_actor.json")
    key_id = alice["publicKey"]["id"]
    node = make_node()

    follow = mastodon.fixture("mastodon_follow.json", node.actor)
    assert mastodon.post(node, follow, key_id=key_id).status_code == 202
    settle([node])
    assert follow_state(node, alice["id"]) == "accepted"  # no charter attestation: accepted at once
    # The Accept went to Alice's inbox: RFC 9421 first, refused, then draft-cavage, remembered.
    attempts = mastodon.attempts()
    assert [(a.path, a.flavour, a.status) for a in attempts] == [("/users/alice/inbox", "rfc9421", 401),
                                                                 ("/users/alice/inbox", "cavage", 202)]
    accept = mastodon.received("Accept")[0]
    assert accept["actor"] == node.actor and accept["object"]["id"] == follow["id"]
    assert accept["object"]["type"] == "Follow" and accept["object"]["actor"] == alice["id"]
    assert flavour_of(node, mastodon.host) == "cavage"

    org = signed_organisation(node)
    event = create_event(node, org, "Assemblée de quartier", image_url=f"{node.url}/media/affiche.jpg",
                         accessibility={"step_free": True})
    create_event(node, org, "Réservé au réseau", visibility="network")
    create_event(node, org, "Réservé aux membres", visibility="members")
    settle([node])
    creates = [c for c in mastodon.received("Create") if c["object"]["type"] == "Event"]
    assert [c["object"]["name"] for c in creates] == ["Assemblée de quartier"]
    # Remembered: one cavage request per delivery from now on, no second knock; events go to the
    # shared inbox (one delivery per server, however many of its accounts follow).
    assert {(a.path, a.flavour, a.status) for a in mastodon.attempts()[2:]} == {("/inbox", "cavage", 202)}
    obj = creates[0]["object"]
    # What Mastodon turns into a status: name, summary (date, place), url on the actor's host, image.
    assert obj["type"] == "Event" and obj["url"] == obj["id"] and obj["url"].startswith(node.url)
    assert "lundi 12 mai 2031, 19:00–21:00 (Europe/Paris)" in obj["summary"]
    assert "Les Halles Civiques, 1 rue de la République, Paris" in obj["summary"]
    assert obj["attachment"][0] == {"type": "Document", "url": f"{node.url}/media/affiche.jpg",
                                    "name": "Assemblée de quartier", "mediaType": "image/jpeg"}
    assert creates[0]["to"] == [PUBLIC] and obj["to"] == [PUBLIC]
    assert "proof" in creates[0] and "proof" in obj

    response = node.client.patch(f"/api/v1/events/{event['id']}", json={"title": "Assemblée de quartier (salle 2)"},
                                 headers=node.admin_headers)
    assert response.status_code == 200, response.get_json()
    node.client.delete(f"/api/v1/events/{event['id']}", headers=node.admin_headers)
    settle([node])
    assert mastodon.received("Update")[0]["object"]["name"] == "Assemblée de quartier (salle 2)"
    delete = mastodon.received("Delete")[0]
    assert delete["object"]["id"] == obj["id"] and delete["object"]["type"] == "Tombstone"

    undo = mastodon.fixture("mastodon_undo_follow.json", node.actor)
    assert mastodon.post(node, undo, key_id=key_id).status_code == 202
    settle([node])
    assert follow_state(node, alice["id"]) == "removed"
    before = len(mastodon.attempts())
    create_event(node, org, "Après le départ d'Alice")
    settle([node])
    assert len(mastodon.attempts()) == before  # nothing more for her


def test_mastodon_account_deletion_forgets_the_follower(make_node, fake_server):
    mastodon = fake_server(accept=("cavage",))
    alice = mastodon.serve_fixture("mastodon_actor.json")
    key_id = alice["publicKey"]["id"]
    node = make_node()
    assert mastodon.post(node, mastodon.fixture("mastodon_follow.json", node.actor), key_id=key_id).status_code == 202
    settle([node])
    assert follow_state(node, alice["id"]) == "accepted"

    # Mastodon deletes the account: its actor URL answers 410, yet the Delete is signed with its key,
    # which the node still has from the follow.
    mastodon.delete(alice["id"])
    delete = mastodon.fixture("mastodon_delete_actor.json", node.actor)
    assert mastodon.post(node, delete, key_id=key_id).status_code == 202
    settle([node])
    assert follow_state(node, alice["id"]) == "removed"
    state = node.query(lambda: db.session.scalar(select(InboxItem.state).where(InboxItem.activity_id == delete["id"])))
    assert state == "applied"
    before = len(mastodon.attempts())
    create_event(node, signed_organisation(node), "Personne ne suit plus")
    settle([node])
    assert len(mastodon.attempts()) == before


def test_delete_of_an_account_never_seen_is_acknowledged_and_not_stored(make_node, fake_server):
    """Mastodon sends an account's Delete to every server it knows; one that never met the account
    cannot fetch its key (410) -- it answers 202 like Mastodon does, and stores nothing."""
    mastodon = fake_server(accept=("cavage",))
    alice = mastodon.fixture("mastodon_actor.json")
    mastodon.delete(alice["id"])
    node = make_node()
    response = mastodon.post(node, mastodon.fixture("mastodon_delete_actor.json", node.actor),
                             key_id=alice["publicKey"]["id"])
    assert response.status_code == 202
    assert node.query(lambda: db.session.scalar(select(func.count(InboxItem.id)))) == 0
    # Anything else from an unknown key is still refused.
    follow = mastodon.fixture("mastodon_follow.json", node.actor)
    refused = mastodon.post(node, follow, key_id=alice["publicKey"]["id"])
    assert refused.status_code == 401 and "unknown key" in refused.json()["detail"]


def test_tampered_mastodon_delivery_is_refused(make_node, fake_server):
    mastodon = fake_server(accept=("cavage",))
    alice = mastodon.serve_fixture("mastodon_actor.json")
    node = make_node()
    response = mastodon.post(node, mastodon.fixture("mastodon_follow.json", node.actor),
                             key_id=alice["publicKey"]["id"], tamper=True)
    assert response.status_code == 401 and "digest" in response.json()["detail"]
    assert node.query(lambda: db.session.scalar(select(func.count(InboxItem.id)))) == 0


def test_key_served_at_its_own_url(make_node, fake_server):
    """GoToSocial gives keys their own URL (<actor>/main-key) and serves a stub of the actor there."""
    server = fake_server(accept=("cavage",))
    actor = server.fixture("mastodon_actor.json")
    key_id = actor["id"] + "/main-key"
    actor["publicKey"]["id"] = key_id
    server.serve(actor)
    server.serve_at(urlsplit(key_id).path, {"@context": actor["@context"], "id": actor["id"], "type": "Person",
                                             "preferredUsername": "alice", "publicKey": actor["publicKey"]})
    node = make_node()
    assert server.post(node, server.fixture("mastodon_follow.json", node.actor), key_id=key_id).status_code == 202
    settle([node])
    assert follow_state(node, actor["id"]) == "accepted"
