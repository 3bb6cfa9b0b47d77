"""Judged by an independent implementation: a Fedify 2.3.6 server on 127.0.0.1 (tests/interop/fedify/
server.mjs) and a Halles node served over HTTPS with a test certificate authority.

1. Fedify follows the node by its ``acct:`` handle (WebFinger over HTTPS) and by its actor URL, then
   receives the node's Create/Update/Delete of an event, and checks every HTTP signature and every
   FEP-8b32 proof with Fedify's own verifiers before its inbox accepts the delivery.
2. The node follows a Fedify actor (``halles follow acct:…``) that publishes events, and imports them.
Tampered deliveries are refused in both directions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select

from federation.httpsig import sign_request
from node.events.models import Event
from node.extensions import db
from node.fedi.identity import load_identity
from node.fedi.models import Follow, InboxItem, OutboxEntry, RemoteActor, RemoteServer
from tests.network.helpers import create_event, network_titles, signed_organisation
from tests.support.nodes import settle

from .fedify_server import CertificateAuthority, FedifyServer, TLSNode

pytestmark = pytest.mark.fedify


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority(tmp_path)


@pytest.fixture
def fedify_server(ca):
    server = FedifyServer(ca.ca_file)
    yield server
    server.close()


@pytest.fixture
def node(make_app, ca):
    started = TLSNode(make_app, ca=ca, name="Les Halles Civiques", city="Paris").start()
    yield started
    started.stop()


def follows(node, direction: str) -> dict[str, str]:
    return dict(node.query(lambda: db.session.execute(
        select(RemoteActor.ap_id, Follow.state).join(Follow, Follow.actor_id == RemoteActor.id)
        .where(Follow.direction == direction)).all()))


def about(ap_id: str):
    """Reports of deliveries whose object is ``ap_id`` (embedded or referenced)."""
    def match(report: dict) -> bool:
        obj = (report.get("json") or {}).get("object")
        return (obj.get("id") if isinstance(obj, dict) else obj) == ap_id
    return match


def test_fedify_follows_the_node_and_verifies_every_delivery(node, fedify_server):
    fedify = fedify_server
    host = node.url.removeprefix("https://")
    by_handle = fedify.call("follow", identifier="acctreader", target=f"acct:agenda@{host}")
    by_url = fedify.call("follow", identifier="urlreader", target=node.actor)
    assert by_handle["actor"] == by_url["actor"] == node.actor and by_handle["type"] == "Organization"
    assert by_handle["inbox"] == f"{node.url}/inbox"
    settle([node])
    readers = {f"{fedify.url}/users/acctreader", f"{fedify.url}/users/urlreader"}
    assert follows(node, "incoming") == dict.fromkeys(readers, "accepted")
    accepts = fedify.wait_for("events", lambda e: e["type"] == "Accept", count=2)
    assert {(a["recipient"], a["actor"]) for a in accepts} == {("acctreader", node.actor), ("urlreader", node.actor)}

    org = signed_organisation(node)
    event = create_event(node, org, "Atelier vélo : réparer ensemble", image_url=f"{node.url}/media/velo.jpg")
    settle([node])
    response = node.client.patch(f"/api/v1/events/{event['id']}", json={"title": "Atelier vélo (complet)"},
                                 headers=node.admin_headers)
    assert response.status_code == 200, response.get_json()
    settle([node])
    assert node.client.delete(f"/api/v1/events/{event['id']}", headers=node.admin_headers).status_code in (200, 204)
    settle([node])

    # Each reader has its own inbox: 3 activities x 2 inboxes, each checked by Fedify's verifiers.
    reports = fedify.wait_for("reports", about(event["ap_id"]), count=6)
    assert sorted((r["type"], r["path"]) for r in reports) == sorted(
        (kind, f"/users/{reader}/inbox") for kind in ("Create", "Update", "Delete") for reader in ("acctreader",
                                                                                                 "urlreader"))
    for report in reports:
        assert report["status"] == 202, report
        assert report["spec"] == "rfc9421"  # RFC 9421 first, and Fedify accepts it
        assert report["httpSignature"] == {"verified": True, "keyId": f"{node.actor}#main-key", "owner": node.actor}
        assert report["activityProof"]["verified"], report["activityProof"]
        assert report["activityProof"]["keys"] == [f"{node.actor}#ed25519-key"]
        if report["type"] != "Delete":
            assert report["objectProof"]["verified"], report["objectProof"]
    accept_reports = fedify.wait_for("reports", lambda r: r.get("type") == "Accept", count=2)
    assert all(r["httpSignature"]["verified"] and r["activityProof"]["verified"] for r in accept_reports)
    assert node.query(lambda: db.session.scalar(
        select(RemoteServer.signature_flavour).where(RemoteServer.domain == fedify.url.removeprefix("http://")))) \
        in (None, "rfc9421")  # never refused: no second knock was needed

    # What Fedify's own parser made of them.
    parsed = fedify.wait_for("events", lambda e: e["type"] in ("Create", "Update", "Delete")
                             and e["object"]["id"] == event["ap_id"], count=6)
    created = next(e["object"] for e in parsed if e["type"] == "Create")
    assert created["type"] == "Event" and created["name"] == "Atelier vélo : réparer ensemble"
    assert created["startTime"] == "2031-05-12T17:00:00Z" and created["endTime"] == "2031-05-12T19:00:00Z"
    assert created["url"] == event["ap_id"] and created["attributedTo"] == node.actor
    assert "lundi 12 mai 2031" in created["summary"]
    assert next(e["object"] for e in parsed if e["type"] == "Update")["name"] == "Atelier vélo (complet)"
    assert next(e["object"] for e in parsed if e["type"] == "Delete")["type"] == "Tombstone"

    # A delivery altered in transit (signed by the node, body changed afterwards): Fedify refuses it.
    activity = node.query(lambda: db.session.scalar(
        select(OutboxEntry.activity).where(OutboxEntry.object_id == event["ap_id"],
                                           OutboxEntry.activity_type == "Create")))
    inbox = f"{fedify.url}/users/acctreader/inbox"
    body = json.dumps(activity).encode()
    identity = node.query(load_identity)
    headers = {"Content-Type": "application/activity+json"}
    headers.update(sign_request("POST", inbox, headers, body, identity.rsa_key, identity.rsa_key_id,
                                flavour="rfc9421", now=datetime.now(UTC).replace(microsecond=0)))
    forged = body.replace(b"Atelier", b"Gratuit")
    assert forged != body
    assert requests.post(inbox, data=forged, headers=headers, timeout=10).status_code == 401
    [refused] = fedify.wait_for("reports", lambda r: r["status"] == 401)
    assert refused["httpSignature"]["verified"] is False and refused["activityProof"]["verified"] is False


EVENT = {
    "slug": "projection-debat",
    "name": "Projection-débat : Les Communs",
    "content": "<p>Projection suivie d'un débat avec les réalisatrices.</p>",
    "startTime": "2031-07-05T17:00:00Z",
    "endTime": "2031-07-05T19:30:00Z",
    "place": "Cinéma associatif",
    "latitude": 48.8722,
    "longitude": 2.3767,
    "published": "2031-06-01T10:00:00Z",
}


def test_node_follows_a_fedify_actor_and_imports_its_events(node, fedify_server):
    fedify = fedify_server
    publisher = f"{fedify.url}/users/publisher"
    result = node.cli("follow", f"acct:publisher@127.0.0.1:{fedify.port}")
    assert result.exit_code == 0, result.output
    settle([node])
    assert fedify.wait_for("events", lambda e: e["type"] == "Follow" and e["actor"] == node.actor)
    [follow_report] = fedify.wait_for("reports", lambda r: r.get("type") == "Follow")
    assert follow_report["status"] == 202 and follow_report["httpSignature"]["verified"]
    settle([node])  # the node applies Fedify's Accept
    assert follows(node, "outgoing") == {publisher: "accepted"}

    assert fedify.call("publish", kind="Create", event=EVENT)["followers"] == [node.actor]
    settle([node])
    item = network_titles(node)["Projection-débat : Les Communs"]
    assert item["origin"]["actor"] == publisher
    assert item["starts_at"] == "2031-07-05T17:00:00Z" and item["ends_at"] == "2031-07-05T19:30:00Z"
    assert item["timezone"] == "UTC" and item["description"] == "Projection suivie d'un débat avec les réalisatrices."
    assert item["location"]["place_name"] == "Cinéma associatif"
    assert (item["location"]["latitude"], item["location"]["longitude"]) == (48.8722, 2.3767)
    # The node checked Fedify's proof on the activity (the inbox stores only what verified).
    stored = node.query(lambda: db.session.scalar(
        select(InboxItem.activity).where(InboxItem.activity_type == "Create")))
    assert stored["proof"]["cryptosuite"] == "eddsa-jcs-2022"

    fedify.call("publish", kind="Update", event=EVENT | {"name": "Projection-débat : Les Communs (reportée)",
                                                         "startTime": "2031-07-12T17:00:00Z",
                                                         "endTime": "2031-07-12T19:30:00Z",
                                                         "updated": "2031-06-10T09:00:00Z"})
    settle([node])
    titles = network_titles(node)
    assert titles["Projection-débat : Les Communs (reportée)"]["starts_at"] == "2031-07-12T17:00:00Z"
    assert "Projection-débat : Les Communs" not in titles

    def remote_count() -> int:
        return node.query(lambda: db.session.scalar(select(func.count(Event.id)).where(
            Event.origin_actor_id.is_not(None))))

    def inbox_count() -> int:
        return node.query(lambda: db.session.scalar(select(func.count(InboxItem.id))))

    # A Fedify delivery altered in transit: the node answers 401 and stores nothing.
    before = inbox_count()
    forged = fedify.call("tampered", inbox=f"{node.url}/inbox", event=EVENT | {"slug": "autre", "name": "Autre"})
    assert forged["status"] == 401 and "digest" in json.loads(forged["body"])["detail"]
    assert inbox_count() == before

    fedify.call("publish", kind="Delete", event=EVENT)
    settle([node])
    assert remote_count() == 0
