"""A node that was down catches up with everything it missed, through every outbox page."""

import time
import uuid

from sqlalchemy import func, select

from tests.network.helpers import create_event, network_titles, peer, signed_organisation
from tests.support.nodes import settle


def delivery_states(node):
    from node.extensions import db
    from node.fedi.models import Delivery

    return node.query(lambda: dict(db.session.execute(
        select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)).all()))


def remote_listing(node):
    return {title: (item["status"], item["starts_at"]) for title, item in network_titles(node).items()
            if item.get("origin")}


def local_listing(node):
    return {title: (item["status"], item["starts_at"]) for title, item in network_titles(node, scope="local").items()}


def test_node_down_during_a_burst_of_200_changes_catches_up(three_nodes):
    paris, lyon, _ = three_nodes
    peer(lyon, paris, [paris, lyon])
    org = signed_organisation(paris)
    lyon.stop()
    # A burst of 200 changes while Lyon is down: creations, updates, cancellations, deletions.
    created = []
    for number in range(120):
        created.append(create_event(paris, org, f"Atelier {number:03d}",
                                    starts_at=f"2031-06-{1 + number % 28:02d}T18:00:00+02:00",
                                    ends_at=f"2031-06-{1 + number % 28:02d}T20:00:00+02:00"))
    for event in created[:40]:
        paris.client.patch(f"/api/v1/events/{event['id']}", json={"title": event["title"] + " (modifié)"},
                           headers=paris.admin_headers)
    for event in created[40:60]:
        paris.client.post(f"/api/v1/events/{event['id']}/cancel", headers=paris.admin_headers)
    for event in created[60:80]:
        paris.client.delete(f"/api/v1/events/{event['id']}", headers=paris.admin_headers)
    # Paris's worker keeps failing to reach Lyon until the retry budget is spent: dead letters.
    deadline = time.monotonic() + 60
    while delivery_states(paris).get("pending") and time.monotonic() < deadline:
        paris.work_once()
        time.sleep(0.05)
    states = delivery_states(paris)
    assert states.get("dead", 0) >= 200 and states.get("pending", 0) == 0, states

    lyon.start()
    result = lyon.cli("sync")
    assert result.exit_code == 0, result.output
    settle([paris, lyon])
    assert remote_listing(lyon) == local_listing(paris)
    assert len(remote_listing(lyon)) == 100

    # Running sync again pulls nothing new and changes nothing.
    again = lyon.cli("sync")
    assert "0 new activities" in again.output
    assert remote_listing(lyon) == local_listing(paris)


def test_an_event_pushed_before_the_follow_was_accepted_arrives_by_catch_up(three_nodes):
    """Found by the kill -9 test: Paris approved Lyon's follow and published at once; Lyon applied the
    Create before the Accept, ignored it ("this node does not follow"), and catch-up, seeing a known
    activity id, never applied it again."""
    from node.extensions import db
    from node.fedi.models import Follow, InboxItem

    paris, lyon, _ = three_nodes
    peer(lyon, paris, [paris, lyon])
    org = signed_organisation(paris)

    def set_follow_state(state):
        def change():
            follow = db.session.scalars(select(Follow).where(Follow.direction == "outgoing")).one()
            follow.state = state
            db.session.commit()
        lyon.query(change)

    set_follow_state("pending")  # the Accept not applied yet
    create_event(paris, org, "Publié trop tôt")
    settle([paris, lyon])
    ignored = lyon.query(lambda: [(item.state, item.error) for item in db.session.scalars(
        select(InboxItem).where(InboxItem.activity_type == "Create"))])
    assert any(state == "ignored" and "does not follow" in (error or "") for state, error in ignored), ignored
    assert "Publié trop tôt" not in remote_listing(lyon)

    set_follow_state("accepted")  # the Accept arrives; the worker then catches up from the start
    result = lyon.cli("sync")
    assert result.exit_code == 0, result.output
    settle([paris, lyon])
    assert "Publié trop tôt" in remote_listing(lyon)
    assert remote_listing(lyon) == local_listing(paris)


def test_catch_up_drops_an_activity_named_on_another_origin(three_nodes):
    """An outbox page may list only its own origin's activities, proof or not: as the inbox, catch-up
    refuses an activity whose id is on another origin than its actor (it would take that id)."""
    from node.fedi.sync import _verified
    from tests.network.test_inbox_security import create, event_object, signed

    paris, lyon, marseille = three_nodes
    genuine = signed(lyon, create(lyon, signed(lyon, event_object(lyon))))
    squatter = signed(lyon, {**create(lyon, signed(lyon, event_object(lyon))),
                             "id": f"{marseille.url}/activities/{uuid.uuid4()}"})
    assert paris.query(lambda: _verified(genuine)) is True
    assert paris.query(lambda: _verified(squatter)) is False
