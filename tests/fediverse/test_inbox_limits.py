"""Strict where safety needs it: what the inbox refuses from any platform before storing anything."""

from __future__ import annotations

from sqlalchemy import func, select

from node.extensions import db
from node.fedi.models import InboxItem


def test_an_activity_id_longer_than_its_column_is_refused_with_a_reason(make_node, fake_server):
    mastodon = fake_server()
    alice = mastodon.serve_fixture("mastodon_actor.json")
    node = make_node()
    follow = mastodon.fixture("mastodon_follow.json", node.actor)
    follow["id"] = alice["id"] + "#follows/" + "1" * 600
    response = mastodon.post(node, follow, key_id=alice["publicKey"]["id"])
    assert response.status_code == 400
    assert response.json()["detail"] == "the activity id is longer than 500 characters"
    assert node.query(lambda: db.session.scalar(select(func.count(InboxItem.id)))) == 0
