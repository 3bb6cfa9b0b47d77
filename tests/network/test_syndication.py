"""Events travel between three real nodes: create, update, cancel, delete, visibility, re-share."""

import pytest
from sqlalchemy import select

from tests.network.helpers import (
    create_event,
    mutual,
    network_titles,
    peer,
    remote_event_count,
    sign_charter,
    signed_organisation,
)
from tests.support.nodes import settle

# The events API lands with the node core's events module; until then there is nothing to syndicate.
pytest.importorskip("node.events.services")


def test_create_update_cancel_delete_propagate(three_nodes):
    paris, lyon, marseille = three_nodes
    nodes = [paris, lyon, marseille]
    mutual(paris, lyon, nodes)
    mutual(paris, marseille, nodes)
    org = signed_organisation(paris)
    event = create_event(paris, org, "Débat : le tirage au sort")
    settle(nodes)
    for node in (lyon, marseille):
        item = network_titles(node)["Débat : le tirage au sort"]
        assert item["origin"]["url"] == paris.url
        assert item["origin"]["name"] == "Les Halles Civiques"
        assert item["origin"]["city"] == "Paris"
    assert "Débat : le tirage au sort" not in network_titles(lyon, scope="local")

    response = paris.client.patch(f"/api/v1/events/{event['id']}", json={"title": "Débat : tirage au sort et RIC"},
                                  headers=paris.admin_headers)
    assert response.status_code == 200, response.get_json()
    settle(nodes)
    titles = network_titles(lyon)
    assert "Débat : tirage au sort et RIC" in titles and "Débat : le tirage au sort" not in titles

    assert paris.client.post(f"/api/v1/events/{event['id']}/cancel", headers=paris.admin_headers).status_code == 200
    settle(nodes)
    assert network_titles(marseille)["Débat : tirage au sort et RIC"]["status"] == "cancelled"

    assert paris.client.delete(f"/api/v1/events/{event['id']}", headers=paris.admin_headers).status_code in (200, 204)
    settle(nodes)
    assert remote_event_count(lyon) == 0 and remote_event_count(marseille) == 0
    # The deleted object answers 410 with a Tombstone.
    gone = paris.client.get(f"/events/{event['id']}", headers={"Accept": "application/activity+json"})
    assert gone.status_code == 410 and gone.get_json()["type"] == "Tombstone"


def test_visibility_network_and_members(three_nodes):
    paris, lyon, marseille = three_nodes
    nodes = [paris, lyon, marseille]
    peer(lyon, paris, nodes)  # Lyon attests Paris's charter: a charter peer
    # Marseille follows as a plain fediverse follower (no charter attestation).
    assert marseille.cli("follow", paris.url).exit_code == 0
    settle(nodes)
    org = signed_organisation(paris)
    create_event(paris, org, "Ouvert à tous", visibility="public")
    create_event(paris, org, "Réservé au réseau", visibility="network")
    create_event(paris, org, "Réservé aux membres", visibility="members")
    settle(nodes)
    lyon_admin = network_titles(lyon, headers=lyon.admin_headers)
    assert {"Ouvert à tous", "Réservé au réseau"} <= set(lyon_admin)
    assert "Réservé aux membres" not in lyon_admin
    marseille_admin = network_titles(marseille, headers=marseille.admin_headers)
    assert "Ouvert à tous" in marseille_admin
    assert "Réservé au réseau" not in marseille_admin and "Réservé aux membres" not in marseille_admin
    # Network events received by a peer are not shown to its anonymous visitors either.
    assert "Réservé au réseau" not in network_titles(lyon)

    # A new charter version: Lyon's attestation is outdated, so new network events stop reaching it.
    paris.publish_charter("2.0", "Charte du réseau, version 2\n")
    sign_charter(paris, org)
    create_event(paris, org, "Réseau, après la charte 2", visibility="network")
    settle(nodes)
    assert "Réseau, après la charte 2" not in network_titles(lyon, headers=lyon.admin_headers)
    assert "charter OUTDATED" in paris.cli("peer", "list").output
    # Lyon re-attests the new version: it receives network events again.
    assert lyon.cli("peer", "request", paris.url).exit_code == 0
    settle(nodes)
    create_event(paris, org, "Réseau, après ré-attestation", visibility="network")
    settle(nodes)
    assert "Réseau, après ré-attestation" in network_titles(lyon, headers=lyon.admin_headers)


def test_reshare_reaches_third_node_with_origin_proof(three_nodes):
    paris, lyon, marseille = three_nodes
    nodes = [paris, lyon, marseille]
    mutual(paris, lyon, nodes)  # Lyon gets Paris's events
    mutual(lyon, marseille, nodes)  # Marseille gets Lyon's, but does not know Paris
    org = signed_organisation(paris)
    event = create_event(paris, org, "Festival des communs")
    settle(nodes)
    assert "Festival des communs" not in network_titles(marseille)
    ap_id = network_titles(lyon)["Festival des communs"]["ap_id"]

    result = lyon.cli("reshare", ap_id)
    assert result.exit_code == 0, result.output
    settle(nodes)
    item = network_titles(marseille)["Festival des communs"]
    assert item["origin"]["url"] == paris.url
    assert item["shared_by"]["url"] == lyon.url

    # The origin's update and deletion reach the re-shared copy too.
    paris.client.patch(f"/api/v1/events/{event['id']}", json={"title": "Festival des communs (complet)"},
                       headers=paris.admin_headers)
    settle(nodes)
    assert "Festival des communs (complet)" in network_titles(marseille)
    paris.client.delete(f"/api/v1/events/{event['id']}", headers=paris.admin_headers)
    settle(nodes)
    assert remote_event_count(marseille) == 0


def test_duplicate_and_out_of_order_updates(three_nodes):
    from node.events.models import Event
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    paris, lyon, _ = three_nodes
    nodes = [paris, lyon]
    peer(lyon, paris, nodes)
    org = signed_organisation(paris)
    event = create_event(paris, org, "Version 1")
    paris.client.patch(f"/api/v1/events/{event['id']}", json={"title": "Version 2"}, headers=paris.admin_headers)
    settle(nodes)
    activities = paris.query(lambda: [e.activity for e in db.session.scalars(
        select(OutboxEntry).where(OutboxEntry.audience == "public").order_by(OutboxEntry.id))])
    create_activity, update_activity = activities[0], activities[1]
    assert lyon.query(lambda: db.session.scalar(select(Event.title).where(Event.origin_actor_id.is_not(None)))) \
        == "Version 2"
    import uuid

    from tests.network.test_inbox_security import post

    def remote_title():
        return lyon.query(lambda: db.session.scalar(select(Event.title).where(Event.origin_actor_id.is_not(None))))

    # The same delivery twice: the second is recognised by its activity id and changes nothing.
    assert post(lyon, paris, update_activity).headers.get("X-Halles-Duplicate") == "1"
    # An old version arriving late (a new activity carrying the first object): the origin's
    # `updated` says it is older, so the newer title stays.
    late = {"@context": create_activity["@context"], "id": f"{paris.url}/activities/{uuid.uuid4()}",
            "type": "Update", "actor": paris.actor, "object": create_activity["object"]}
    assert post(lyon, paris, late).status_code == 202
    settle(nodes)
    assert remote_title() == "Version 2"
