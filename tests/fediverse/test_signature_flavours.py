"""Outgoing requests are signed the way each receiver accepts: RFC 9421 first, draft-cavage ``rsa-sha256``
when refused (401/403), and the flavour that worked is remembered per server -- and learnt again when
the server changes (upgrades to RFC 9421, or goes back)."""

from __future__ import annotations

from sqlalchemy import select

from node.extensions import db
from node.fedi.models import Delivery, RemoteServer
from tests.network.helpers import create_event, signed_organisation
from tests.support.nodes import settle


def remembered(node, server) -> str | None:
    return node.query(lambda: db.session.scalar(
        select(RemoteServer.signature_flavour).where(RemoteServer.domain == server.host)))


def follow_node(node, server) -> None:
    alice = server.serve_fixture("mastodon_actor.json")
    response = server.post(node, server.fixture("mastodon_follow.json", node.actor), key_id=alice["publicKey"]["id"])
    assert response.status_code == 202
    settle([node])


def test_rfc9421_receiver_is_signed_rfc9421_once(make_node, fake_server):
    modern = fake_server(accept=("rfc9421",))
    node = make_node()
    follow_node(node, modern)
    assert [(a.flavour, a.status) for a in modern.attempts()] == [("rfc9421", 202)]
    assert remembered(node, modern) in (None, "rfc9421")  # RFC 9421 is what an unknown server gets anyway
    headers = modern.attempts()[0].headers
    assert "Content-Digest" in headers and "Signature-Input" in headers
    assert 'keyid="' + node.actor + '#main-key"' in headers["Signature-Input"]
    assert 'alg="rsa-v1_5-sha256"' in headers["Signature-Input"]
    create_event(node, signed_organisation(node), "Suivant")
    settle([node])
    assert {(a.flavour, a.status) for a in modern.attempts()} == {("rfc9421", 202)}


def test_flavour_is_learnt_again_when_the_server_changes(make_node, fake_server):
    server = fake_server(accept=("cavage",))
    node = make_node()
    follow_node(node, server)
    assert [(a.flavour, a.status) for a in server.attempts()] == [("rfc9421", 401), ("cavage", 202)]
    cavage = server.attempts()[1].headers
    assert 'algorithm="rsa-sha256"' in cavage["Signature"]
    assert 'headers="(request-target) host date digest"' in cavage["Signature"]
    assert cavage["Digest"].startswith("SHA-256=")
    org = signed_organisation(node)

    server.accept = ("rfc9421",)  # the server upgrades (Mastodon 4.5 verifies RFC 9421)
    seen = len(server.attempts())
    create_event(node, org, "Après la mise à jour")
    settle([node])
    # Deliveries to one server go out in parallel: each knocked with cavage, was refused, then RFC 9421.
    new = [(a.flavour, a.status) for a in server.attempts()[seen:]]
    assert sorted(new) == sorted([("cavage", 401), ("rfc9421", 202)] * (len(new) // 2)) and new
    assert remembered(node, server) == "rfc9421"
    seen = len(server.attempts())
    create_event(node, org, "Et la suivante")
    settle([node])
    assert [(a.flavour, a.status) for a in server.attempts()[seen:]] == [("rfc9421", 202)]


def test_a_receiver_refusing_both_flavours_is_retried_then_dead(make_node, fake_server):
    server = fake_server(accept=())
    node = make_node(HALLES_DELIVERY_MAX_ATTEMPTS=2)
    follow_node(node, server)
    flavours = [a.flavour for a in server.attempts()]
    assert flavours == ["rfc9421", "cavage"] * 2  # two knocks per attempt, two attempts
    state = node.query(lambda: db.session.scalar(select(Delivery.state)))
    assert state == "dead" and remembered(node, server) is None
