"""Member directories travel with per-field consent; withdrawal and deletion purge every copy."""

from sqlalchemy import select

from tests.network.helpers import mutual, peer
from tests.support.nodes import settle


def remote_orgs(node):
    from node.extensions import db
    from node.fedi.models import RemoteOrganisation

    return node.query(lambda: {o.name: dict(o.fields) for o in db.session.scalars(select(RemoteOrganisation))})


def test_directory_consent_change_and_erasure(three_nodes):
    paris, lyon, marseille = three_nodes
    nodes = [paris, lyon, marseille]
    peer(lyon, paris, nodes)  # charter peer: sees network fields
    assert marseille.cli("follow", paris.url).exit_code == 0  # plain follower: public fields only
    settle(nodes)
    response = paris.client.post("/api/v1/organisations", headers=paris.admin_headers, json={
        "name": "Fabrique des Communs", "description": "Accompagne les collectifs d'habitants",
        "website": "https://fabrique.example", "contact_email": "contact@fabrique.example",
        "contact_phone": "+33 1 23 45 67 89", "topics": ["communs"]})
    assert response.status_code == 201, response.get_json()
    org_id = response.get_json()["id"]
    consent = {"name": "public", "description": "public", "website": "public", "topics": "public",
               "contact_email": "network", "contact_phone": "private", "city": "public"}
    assert paris.client.put(f"/api/v1/organisations/{org_id}/consent", json=consent,
                            headers=paris.admin_headers).status_code == 200
    settle(nodes)
    lyon_view = remote_orgs(lyon)["Fabrique des Communs"]
    marseille_view = remote_orgs(marseille)["Fabrique des Communs"]
    assert lyon_view["contact_email"] == "contact@fabrique.example"
    assert "contact_email" not in marseille_view
    assert "contact_phone" not in lyon_view and "contact_phone" not in marseille_view

    # The manager withdraws consent for the email: the peer's copy loses it.
    consent["contact_email"] = "private"
    paris.client.put(f"/api/v1/organisations/{org_id}/consent", json=consent, headers=paris.admin_headers)
    settle(nodes)
    assert "contact_email" not in remote_orgs(lyon)["Fabrique des Communs"]

    # Withdrawing the name withdraws the entry: every receiver purges it.
    consent["name"] = "private"
    paris.client.put(f"/api/v1/organisations/{org_id}/consent", json=consent, headers=paris.admin_headers)
    settle(nodes)
    assert remote_orgs(lyon) == {} and remote_orgs(marseille) == {}

    # Consent given back, then the organisation leaves: deleted everywhere again.
    consent["name"] = "public"
    paris.client.put(f"/api/v1/organisations/{org_id}/consent", json=consent, headers=paris.admin_headers)
    settle(nodes)
    assert "Fabrique des Communs" in remote_orgs(lyon)
    assert paris.client.delete(f"/api/v1/organisations/{org_id}", headers=paris.admin_headers).status_code in (200, 204)
    settle(nodes)
    assert remote_orgs(lyon) == {} and remote_orgs(marseille) == {}
    gone = paris.client.get(f"/organisations/{response.get_json()['slug']}",
                            headers={"Accept": "application/activity+json"})
    assert gone.status_code == 410


def test_peer_remove_purges_its_data(three_nodes):
    from tests.network.helpers import create_event, remote_event_count, signed_organisation

    paris, lyon, _ = three_nodes
    nodes = [paris, lyon]
    mutual(paris, lyon, nodes)
    create_event(paris, signed_organisation(paris), "Ciné-débat")
    settle(nodes)
    assert remote_event_count(lyon) == 1
    assert lyon.cli("peer", "remove", paris.url).exit_code == 0
    settle(nodes)
    assert remote_event_count(lyon) == 0
    listing = paris.cli("peer", "list").output
    assert "they->us: removed" in listing
