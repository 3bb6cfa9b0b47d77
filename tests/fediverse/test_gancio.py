"""A node follows a Gancio instance (``halles follow URL``) and imports its events, from the payloads
Gancio sends (tests/fediverse/fixtures/gancio_*.json), signed exactly as Gancio signs them: an address
as a plain string, offset-only times with milliseconds, online places as Link attachments, and the
Update carrying the same activity id as the Create."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from node.events.models import Event
from node.extensions import db
from node.fedi.models import Follow, RemoteActor
from tests.network.helpers import create_event, network_titles, signed_organisation
from tests.support.nodes import settle

AS = "https://www.w3.org/ns/activitystreams"
TITLE = "Ciné-club : Les Glaneurs et la Glaneuse"


def outgoing_state(node, actor: str) -> str | None:
    return node.query(lambda: db.session.scalar(
        select(Follow.state).join(RemoteActor, Follow.actor_id == RemoteActor.id)
        .where(RemoteActor.ap_id == actor, Follow.direction == "outgoing")))


def test_gancio_events_are_imported_and_updated(make_node, fake_server):
    gancio = fake_server(accept=("cavage",))
    relay = gancio.serve_fixture("gancio_actor.json")
    key_id = relay["publicKey"]["id"]
    node = make_node()
    result = node.cli("follow", relay["id"])
    assert result.exit_code == 0, result.output
    settle([node])
    follow = gancio.received("Follow")[0]
    assert follow["object"] == relay["id"] and gancio.attempts()[-1].path == "/federation/u/relay/inbox"
    # Gancio's Accept embeds the Follow it received (server/federation/follows.js).
    accept = {"@context": AS, "id": f"{gancio.url}/federation/{secrets.token_hex(16)}", "type": "Accept",
              "actor": relay["id"], "object": follow}
    assert gancio.post_like_gancio(node, accept, key_id=key_id).status_code == 202
    settle([node])
    assert outgoing_state(node, relay["id"]) == "accepted"

    create = gancio.fixture("gancio_event_create.json", node.actor)
    assert gancio.post_like_gancio(node, create, key_id=key_id).status_code == 202
    settle([node])
    item = network_titles(node)[TITLE]
    assert item["starts_at"] == "2031-06-21T17:30:00Z" and item["ends_at"] == "2031-06-21T20:00:00Z"
    assert item["timezone"] == "Etc/GMT-2" and item["local_start"].startswith("2031-06-21T19:30:00")
    assert item["location"]["place_name"] == "La Clef Revival"
    assert item["location"]["address"] == "34 rue Daubenton, 75005 Paris"
    assert item["location"]["online_url"] == "https://peertube.example/w/glaneurs-live"
    assert item["image_url"] == f"{gancio.url}/media/5b3f9a0c1d2e.jpg"
    assert item["tags"] == ["cinema", "prix_libre"] and item["origin"]["actor"] == relay["id"]
    assert item["description"].startswith("Projection du documentaire d'Agnès Varda")

    # Same activity id (<event>#create) with another body: an update, not a duplicate.
    update = gancio.fixture("gancio_event_update.json", node.actor)
    assert update["id"] == create["id"]
    response = gancio.post_like_gancio(node, update, key_id=key_id)
    assert response.status_code == 202 and "X-Halles-Duplicate" not in response.headers
    settle([node])
    titles = network_titles(node)
    assert TITLE not in titles
    assert titles[TITLE + " (complet)"]["starts_at"] == "2031-06-21T18:00:00Z"
    # The same update again is a duplicate, and the Create again changes nothing.
    assert gancio.post_like_gancio(node, update, key_id=key_id).headers.get("X-Halles-Duplicate") == "1"
    assert gancio.post_like_gancio(node, create, key_id=key_id).headers.get("X-Halles-Duplicate") == "1"

    # The instance goes away: its actor answers 410 and it deletes itself; its events go with it.
    gancio.delete(relay["id"])
    goodbye = {"@context": AS, "id": f"{relay['id']}#delete",
               "type": "Delete", "actor": relay["id"], "object": relay["id"]}
    assert gancio.post_like_gancio(node, goodbye, key_id=key_id).status_code == 202
    settle([node])
    assert node.query(lambda: db.session.scalars(select(Event.title).where(Event.origin_actor_id.is_not(None))).all()) \
        == []


def test_gancio_follows_the_node_and_unfollows(make_node, fake_server):
    """Gancio follows with a Follow and leaves with its own ``Unfollow`` type."""
    gancio = fake_server(accept=("cavage",))
    relay = gancio.serve_fixture("gancio_actor.json")
    key_id = relay["publicKey"]["id"]
    node = make_node()
    # helpers.js followActor: the id is <base>/federation/m/<followed actor>#follow, for Unfollow too.
    follow = {"@context": AS, "id": f"{gancio.url}/federation/m/{node.actor}#follow", "type": "Follow",
              "actor": relay["id"], "object": node.actor}
    assert gancio.post_like_gancio(node, follow, key_id=key_id).status_code == 202
    settle([node])
    assert gancio.received("Accept")
    create_event(node, signed_organisation(node), "Ouvert à tous")
    settle([node])
    events = [c["object"] for c in gancio.received("Create") if c["object"]["type"] == "Event"]
    assert [e["name"] for e in events] == ["Ouvert à tous"]
    unfollow = dict(follow, type="Unfollow")
    assert gancio.post_like_gancio(node, unfollow, key_id=key_id).status_code == 202
    settle([node])
    state = node.query(lambda: db.session.scalar(select(Follow.state).where(Follow.direction == "incoming")))
    assert state == "removed"
