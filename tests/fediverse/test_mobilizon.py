"""A node follows a Mobilizon group (``halles follow acct:group@host``) and imports its events, from the
payloads Mobilizon sends (tests/fediverse/fixtures/mobilizon_*.json): the group's Announce of its own
event (what a group's followers receive), a member's Create/Update (same activity id: Mobilizon reuses
``<event>/activity``), the event's deletion, and the group deleting itself."""

from __future__ import annotations

import copy
import json
import uuid

from sqlalchemy import func, select

from node.events.models import Event
from node.extensions import db
from node.fedi.models import Follow, InboxItem, RemoteActor
from tests.network.helpers import network_titles
from tests.support.nodes import settle

TITLE = "Repair Café et débat : réparer plutôt que jeter"
MZ_CONTEXT_KEYS = ("anonymousParticipationEnabled", "repliesModerationOption", "participantCount", "contacts")


def remote_events(node) -> list[dict]:
    def load():
        return [{"title": e.title, "status": e.status, "origin": db.session.get(RemoteActor, e.origin_actor_id).ap_id,
                 "shared_by": e.shared_by_actor_id, "remote_object": e.remote_object}
                for e in db.session.scalars(select(Event).where(Event.origin_actor_id.is_not(None)))]
    return node.query(load)


def follow_group(node, mobilizon, group) -> dict:
    """``halles follow acct:…`` then the group's Accept, as Mobilizon writes it (Actions.Accept)."""
    result = node.cli("follow", f"acct:collectif_belleville@{mobilizon.host}")
    assert result.exit_code == 0, result.output
    settle([node])
    follow = mobilizon.received("Follow")[0]
    assert follow["object"] == group["id"] and follow["actor"] == node.actor and "attestation" not in follow
    assert mobilizon.attempts()[-1].path == "/@collectif_belleville/inbox"
    accept = {
        "@context": group["@context"],
        "type": "Accept",
        "to": [node.actor],
        "actor": group["id"],
        "object": {"type": "Follow", "actor": node.actor, "object": group["id"], "id": follow["id"]},
        "id": f"{group['id']}/accept/follow/{uuid.uuid4()}",
    }
    assert mobilizon.post(node, accept, key_id=group["publicKey"]["id"]).status_code == 202
    settle([node])
    state = node.query(lambda: db.session.scalar(
        select(Follow.state).join(RemoteActor, Follow.actor_id == RemoteActor.id)
        .where(RemoteActor.ap_id == group["id"], Follow.direction == "outgoing")))
    assert state == "accepted"
    return follow


def test_group_announce_imports_the_event_with_its_mobilizon_fields(make_node, fake_server):
    mobilizon = fake_server(accept=("cavage",))
    group = mobilizon.serve_fixture("mobilizon_group.json", handle="collectif_belleville")
    mobilizon.serve_fixture("mobilizon_person.json")
    node = make_node()
    follow_group(node, mobilizon, group)

    announce = mobilizon.fixture("mobilizon_event_announce.json", node.actor)
    mobilizon.serve(announce["object"])  # the event at its own URL: the node fetches it from there
    assert mobilizon.post(node, announce, key_id=group["publicKey"]["id"]).status_code == 202
    settle([node])

    item = network_titles(node)[TITLE]
    assert item["origin"]["actor"] == group["id"] and item["origin"]["name"] == "Collectif Belleville en transition"
    assert item["shared_by"] is None  # the group announcing its own event is its origin, not a re-sharer
    assert item["location"] == {
        "kind": "place", "room_id": None, "place_name": "Maison des Métallos",
        "address": "94 Rue Jean-Pierre Timbaud", "postal_code": "75011", "city": "Paris",
        "latitude": 48.8672, "longitude": 2.3785, "online_url": None,
    }
    assert item["timezone"] == "Europe/Paris" and item["local_start"].startswith("2031-06-14T17:00:00")
    assert item["starts_at"] == "2031-06-14T15:00:00Z" and item["ends_at"] == "2031-06-14T19:00:00Z"
    assert item["status"] == "confirmed" and item["category"] == "debate"
    assert item["accessibility"]["step_free"] and item["accessibility"]["sign_language"]
    assert not item["accessibility"]["hearing_loop"]
    assert item["capacity"] == 40 and item["tags"] == ["reparation", "Belleville"]
    assert item["image_url"] == f"{mobilizon.url}/media/7d0b2c1e9f.jpg"
    assert item["registration_url"] == announce["object"]["id"]
    stored = remote_events(node)[0]["remote_object"]
    assert all(key in stored for key in MZ_CONTEXT_KEYS)  # unknown fields are kept with the event

    # The event is deleted on Mobilizon; the group relays that as one more Announce of the object,
    # whose URL now answers 410: the node learns it from the origin and drops its copy.
    mobilizon.delete(announce["object"]["id"])
    again = dict(announce, id=f"{mobilizon.url}/announces/{uuid.uuid4()}")
    assert mobilizon.post(node, again, key_id=group["publicKey"]["id"]).status_code == 202
    settle([node])
    assert remote_events(node) == []


def test_member_create_update_and_delete_of_a_group_event(make_node, fake_server):
    mobilizon = fake_server(accept=("cavage",))
    group = mobilizon.serve_fixture("mobilizon_group.json", handle="collectif_belleville")
    person = mobilizon.serve_fixture("mobilizon_person.json")
    node = make_node()
    follow_group(node, mobilizon, group)
    person_key = person["publicKey"]["id"]

    create = mobilizon.fixture("mobilizon_event_create.json", node.actor)
    assert create["actor"] == person["id"] and create["object"]["attributedTo"] == group["id"]
    assert mobilizon.post(node, create, key_id=person_key).status_code == 202
    settle([node])
    [event] = remote_events(node)
    assert event["title"] == TITLE and event["origin"] == group["id"]  # the group's event, not Camille's

    # Mobilizon's Update carries the same id as the Create (make_update_data: <event>/activity).
    update = copy.deepcopy(create)
    update["type"] = "Update"
    update["object"].update({"name": TITLE + " (annulé)", "ical:status": "CANCELLED", "status": "CANCELLED",
                             "updated": "2031-06-01T08:00:00Z"})
    response = mobilizon.post(node, update, key_id=person_key)
    assert response.status_code == 202 and "X-Halles-Duplicate" not in response.headers
    settle([node])
    [event] = remote_events(node)
    assert (event["title"], event["status"]) == (TITLE + " (annulé)", "cancelled")
    # The very same delivery again is a duplicate; an older state arriving late is stale.
    assert mobilizon.post(node, update, key_id=person_key).headers.get("X-Halles-Duplicate") == "1"
    late = copy.deepcopy(create)
    late["id"] = create["object"]["id"] + "/activity-late"
    assert mobilizon.post(node, late, key_id=person_key).status_code == 202
    settle([node])
    assert remote_events(node)[0]["status"] == "cancelled"

    # A member deletes it (Types.Events.delete: the full object embedded, id <event>/delete).
    delete = {"@context": create["@context"], "type": "Delete", "actor": person["id"], "object": update["object"],
              "to": [f"{person['id']}/followers", "https://www.w3.org/ns/activitystreams#Public"],
              "id": create["object"]["id"] + "/delete"}
    assert mobilizon.post(node, delete, key_id=person_key).status_code == 202
    settle([node])
    assert remote_events(node) == []


def test_group_deleting_itself_is_purged(make_node, fake_server):
    mobilizon = fake_server(accept=("cavage",))
    group = mobilizon.serve_fixture("mobilizon_group.json", handle="collectif_belleville")
    node = make_node()
    follow_group(node, mobilizon, group)
    announce = mobilizon.fixture("mobilizon_event_announce.json", node.actor)
    mobilizon.serve(announce["object"])
    mobilizon.post(node, announce, key_id=group["publicKey"]["id"])
    settle([node])
    assert len(remote_events(node)) == 1

    mobilizon.delete(group["id"])
    goodbye = {"@context": "https://www.w3.org/ns/activitystreams", "type": "Delete", "actor": group["id"],
               "object": group["id"], "id": f"{group['id']}#delete"}
    assert mobilizon.post(node, goodbye, key_id=group["publicKey"]["id"]).status_code == 202
    settle([node])
    assert remote_events(node) == []
    states = node.query(lambda: set(db.session.scalars(select(Follow.state))))
    assert states == {"removed"}


def test_announce_of_another_servers_object_without_proof_is_refused(make_node, fake_server):
    """Strict where safety needs it: a server may vouch for its own objects, not for another's."""
    mobilizon = fake_server(accept=("cavage",))
    elsewhere = fake_server()
    group = mobilizon.serve_fixture("mobilizon_group.json", handle="collectif_belleville")
    node = make_node()
    announce = mobilizon.fixture("mobilizon_event_announce.json", node.actor)
    announce["object"] = json.loads(json.dumps(announce["object"]).replace(mobilizon.url, elsewhere.url))
    response = mobilizon.post(node, announce, key_id=group["publicKey"]["id"])
    assert response.status_code == 401 and "proof" in response.json()["detail"]
    assert node.query(lambda: db.session.scalar(select(func.count(InboxItem.id)))) == 0
