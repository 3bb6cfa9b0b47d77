"""The standards surface other servers discover a node by: WebFinger (acct: with and without the
port), NodeInfo 2.1 with real usage counts, content negotiation on object URLs, 410 Tombstones."""

from __future__ import annotations

import pytest
import requests

from tests.fediverse.support import FakeServer
from tests.network.helpers import create_event, network_titles, signed_organisation
from tests.support.nodes import settle

AP = "application/activity+json"
LD = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def webfinger(node, resource: str) -> requests.Response:
    return requests.get(f"{node.url}/.well-known/webfinger", params={"resource": resource}, timeout=10)


def test_webfinger_with_and_without_port(make_node):
    node = make_node()
    host = node.url.removeprefix("http://")
    for resource in (f"acct:agenda@{host}", "acct:agenda@127.0.0.1", node.actor):
        response = webfinger(node, resource)
        assert response.status_code == 200, resource
        assert response.headers["Content-Type"].startswith("application/jrd+json")
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        jrd = response.json()
        assert jrd["subject"] == f"acct:agenda@{host}"
        assert {"rel": "self", "type": AP, "href": node.actor} in jrd["links"]
    assert webfinger(node, f"acct:someone@{host}").status_code == 404
    assert requests.get(f"{node.url}/.well-known/webfinger", timeout=10).status_code == 400


def test_webfinger_on_a_default_port(make_app):
    app = make_app(HALLES_URL="https://halles-civiques.example")
    response = app.test_client().get("/.well-known/webfinger?resource=acct:agenda@halles-civiques.example")
    assert response.status_code == 200
    assert response.get_json()["links"][0]["href"] == "https://halles-civiques.example/actor"


def test_nodeinfo_counts_users_and_local_events(make_node, fake_server):
    node = make_node()
    links = requests.get(f"{node.url}/.well-known/nodeinfo", timeout=10).json()["links"]
    assert links == [{"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1", "href": f"{node.url}/nodeinfo/2.1"}]
    empty = requests.get(links[0]["href"], timeout=10)
    assert empty.headers["Content-Type"].startswith("application/json")
    assert "schema/2.1" in empty.headers["Content-Type"]
    info = empty.json()
    assert info["version"] == "2.1" and info["software"]["name"] == "halles" and info["protocols"] == ["activitypub"]
    assert info["usage"]["users"]["total"] == 1 and info["usage"]["localPosts"] == 0  # the test admin

    org = signed_organisation(node)
    create_event(node, org, "Un")
    create_event(node, org, "Deux", visibility="members")
    # A remote event (from a Gancio instance the node follows) is not one of this node's posts.
    gancio: FakeServer = fake_server()
    relay = gancio.serve_fixture("gancio_actor.json")
    node.cli("follow", relay["id"])
    settle([node])
    accept = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{gancio.url}/federation/accept-1",
              "type": "Accept", "actor": relay["id"], "object": gancio.received("Follow")[0]}
    gancio.post(node, accept, key_id=relay["publicKey"]["id"])
    gancio.post(node, gancio.fixture("gancio_event_create.json", node.actor), key_id=relay["publicKey"]["id"])
    settle([node])
    assert network_titles(node)["Ciné-club : Les Glaneurs et la Glaneuse"]["origin"]["actor"] == relay["id"]
    usage = requests.get(links[0]["href"], timeout=10).json()["usage"]
    assert usage["localPosts"] == 2 and usage["users"]["total"] == 1


@pytest.mark.parametrize("accept", [AP, LD, f"{LD}, {AP}"])
def test_event_url_answers_activitypub_to_servers(make_node, accept):
    node = make_node()
    event = create_event(node, signed_organisation(node), "Débat : la ville à 15 minutes")
    response = requests.get(event["ap_id"], headers={"Accept": accept}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(AP) and "Accept" in response.headers["Vary"]
    obj = response.json()
    assert obj["id"] == event["ap_id"] and obj["type"] == "Event" and obj["name"] == "Débat : la ville à 15 minutes"
    assert obj["proof"]["cryptosuite"] == "eddsa-jcs-2022"


def test_event_url_answers_html_to_browsers_and_410_once_deleted(make_node):
    node = make_node()
    org = signed_organisation(node)
    event = create_event(node, org, "Fête des voisins")
    page = requests.get(event["ap_id"], headers={"Accept": BROWSER}, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Fête des voisins" in page.text

    members_only = create_event(node, org, "Réunion interne", visibility="members")
    assert requests.get(members_only["ap_id"], headers={"Accept": AP}, timeout=10).status_code == 404

    assert node.client.delete(f"/api/v1/events/{event['id']}", headers=node.admin_headers).status_code in (200, 204)
    gone = requests.get(event["ap_id"], headers={"Accept": AP}, timeout=10)
    assert gone.status_code == 410
    tombstone = gone.json()
    assert tombstone["type"] == "Tombstone" and tombstone["formerType"] == "Event"
    assert tombstone["id"] == event["ap_id"] and tombstone["deleted"].endswith("Z")
    assert requests.get(event["ap_id"], headers={"Accept": BROWSER}, timeout=10).status_code == 410


def test_organisation_url_answers_its_public_directory_entry(make_node):
    node = make_node()
    signed_organisation(node, "Démocratie Ouverte")
    slug = node.client.get("/api/v1/organisations").get_json()["items"][0]["slug"]
    response = requests.get(f"{node.url}/organisations/{slug}", headers={"Accept": AP}, timeout=10)
    assert response.status_code == 200
    assert response.json()["type"] == "Organization" and response.json()["name"] == "Démocratie Ouverte"
