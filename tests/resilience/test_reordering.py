"""Found by the kill -9 test: a Create (or Update) that reaches a follower after the Delete of the same
event -- a delivery retried after its worker was killed, a catch-up racing a delivery -- brought the
deleted event back on the follower for good. The tombstone now keeps it out."""

from __future__ import annotations

from sqlalchemy import select

from tests.network.helpers import create_event, peer, signed_organisation
from tests.network.test_inbox_security import post
from tests.resilience import tally
from tests.support.nodes import settle


def outbox_activity(node, object_id: str, kind: str) -> dict:
    from node.extensions import db
    from node.fedi.models import OutboxEntry

    return node.query(lambda: db.session.scalar(
        select(OutboxEntry.activity).where(OutboxEntry.object_id == object_id, OutboxEntry.activity_type == kind)
        .order_by(OutboxEntry.id.desc())))


def held(node, ap_id: str) -> bool:
    from node.events.models import Event
    from node.extensions import db

    return node.query(lambda: db.session.scalar(select(Event.id).where(Event.ap_id == ap_id))) is not None


def test_a_create_or_update_after_the_delete_does_not_bring_the_event_back(make_node):
    paris = make_node("Les Halles Civiques", "Paris")
    lyon = make_node("La Fabrique Commune", "Lyon")
    peer(lyon, paris, [paris, lyon])
    org_id = signed_organisation(paris)
    event = create_event(paris, org_id, "Ciné-débat")
    ap_id = event["ap_id"]
    renamed = paris.client.patch(f"/api/v1/events/{event['id']}", json={"title": "Ciné-débat (salle 2)"},
                                 headers=paris.admin_headers)
    assert renamed.status_code == 200
    assert paris.client.delete(f"/api/v1/events/{event['id']}", headers=paris.admin_headers).status_code == 204
    create, update, delete = (outbox_activity(paris, ap_id, kind) for kind in ("Create", "Update", "Delete"))
    # Lyon gets them in the worst order: the Delete first, then the Update, then the Create.
    for activity in (delete, update, create):
        assert post(lyon, paris, activity).status_code == 202
        lyon.work_once()
    assert not held(lyon, ap_id)
    # Paris's own deliveries (in order, late) and a catch-up change nothing.
    settle([paris, lyon])
    assert lyon.cli("sync").exit_code == 0
    settle([paris, lyon])
    assert not held(lyon, ap_id)
    tally.fault("deliveries reordered after a delete", 2)
