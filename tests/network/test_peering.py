"""Charter-gated peering between real nodes over HTTP on 127.0.0.1."""

from sqlalchemy import select

from tests.support.nodes import settle


def follow_state(node, actor_url, direction):
    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor

    def read():
        return db.session.scalar(
            select(Follow.state).join(RemoteActor, Follow.actor_id == RemoteActor.id)
            .where(RemoteActor.ap_id == actor_url, Follow.direction == direction)
        )

    return node.query(read)


def test_actor_webfinger_and_nodeinfo(make_node):
    paris = make_node("Les Halles Civiques", "Paris")
    actor = paris.client.get("/actor").get_json()
    assert actor["id"] == paris.actor
    assert actor["publicKey"]["id"] == f"{paris.actor}#main-key"
    assert actor["assertionMethod"][0]["type"] == "Multikey"
    assert actor["assertionMethod"][0]["publicKeyMultibase"].startswith("z6Mk")
    assert "https://www.w3.org/ns/cid/v1" in actor["@context"]
    assert actor["charter"]["version"] == "1.0"
    host = paris.url.removeprefix("http://")
    for resource in (f"acct:agenda@{host}", f"acct:agenda@{host.split(':')[0]}"):
        finger = paris.client.get(f"/.well-known/webfinger?resource={resource}").get_json()
        assert {"rel": "self", "type": "application/activity+json", "href": paris.actor} in finger["links"]
    assert paris.client.get("/.well-known/webfinger?resource=acct:nobody@example.org").status_code == 404
    links = paris.client.get("/.well-known/nodeinfo").get_json()["links"]
    info = paris.client.get(links[0]["href"].removeprefix(paris.url)).get_json()
    assert info["software"]["name"] == "halles" and info["protocols"] == ["activitypub"]


def test_peering_request_approve_and_refuse(three_nodes):
    paris, lyon, marseille = three_nodes
    result = lyon.cli("peer", "request", paris.url)
    assert result.exit_code == 0, result.output
    result = marseille.cli("peer", "request", paris.actor)
    assert result.exit_code == 0, result.output
    settle([paris, lyon, marseille])
    assert follow_state(paris, lyon.actor, "incoming") == "pending"
    listing = paris.cli("peer", "list").output
    assert lyon.actor in listing and marseille.actor in listing

    assert paris.cli("peer", "approve", lyon.url).exit_code == 0
    assert paris.cli("peer", "refuse", marseille.actor).exit_code == 0
    settle([paris, lyon, marseille])
    assert follow_state(lyon, paris.actor, "outgoing") == "accepted"
    assert follow_state(marseille, paris.actor, "outgoing") == "rejected"
    assert "charter ok" in paris.cli("peer", "list").output


def test_blocked_domain_is_refused(three_nodes):
    paris, lyon, _ = three_nodes
    assert paris.cli("peer", "block", lyon.url).exit_code == 0
    assert lyon.cli("peer", "request", paris.url).exit_code == 0
    settle([paris, lyon])
    from node.extensions import db
    from node.fedi.models import Delivery

    errors = lyon.query(lambda: [d.last_status for d in db.session.scalars(select(Delivery))])
    assert 403 in errors
    assert follow_state(paris, lyon.actor, "incoming") is None
