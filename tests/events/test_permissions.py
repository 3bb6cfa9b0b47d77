"""Who may do what with events: every role against every protected action. The event is organised by
organisation A; manager_b manages B. A refused request leaves the database exactly as it was."""

from __future__ import annotations

import pytest

from tests.events.conftest import event_body

ROLES = ("anonymous", "member", "manager_a", "manager_b", "office_manager", "admin")


def _expect(*statuses: int) -> dict[str, int]:
    return dict(zip(ROLES, statuses, strict=True))


MATRIX = {
    "create": _expect(401, 403, 201, 403, 201, 201),
    "update": _expect(401, 403, 200, 403, 200, 200),
    "delete": _expect(401, 403, 204, 403, 204, 204),
    "cancel": _expect(401, 403, 200, 403, 200, 200),
    "list_registrations": _expect(401, 403, 200, 403, 200, 200),
    "export": _expect(401, 403, 200, 403, 200, 200),
}


def _call(client, action: str, event_id: str, org_a: int, headers: dict):
    if action == "create":
        return client.post("/api/v1/events", json=event_body(organiser_ids=[org_a]), headers=headers)
    if action == "update":
        return client.patch(f"/api/v1/events/{event_id}", json={"title": "Changé"}, headers=headers)
    if action == "delete":
        return client.delete(f"/api/v1/events/{event_id}", headers=headers)
    if action == "cancel":
        return client.post(f"/api/v1/events/{event_id}/cancel", headers=headers)
    if action == "list_registrations":
        return client.get(f"/api/v1/events/{event_id}/registrations", headers=headers)
    return client.get(f"/api/v1/events/{event_id}/registrations.csv", headers=headers)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(MATRIX))
def test_permission_matrix(client, world, create_event, counts, action, role):
    event = create_event(capacity=5)
    registered = client.post(f"/api/v1/events/{event['id']}/registrations",
                             json={"name": "Inès Dupont", "email": "ines@example.org"})
    assert registered.status_code == 201
    snapshot = client.get(f"/api/v1/events/{event['id']}").get_json()
    before = counts()
    response = _call(client, action, event["id"], world["org_a"].id, world["headers"][role])
    expected = MATRIX[action][role]
    assert response.status_code == expected, (action, role, response.get_data(as_text=True))
    if expected >= 400:
        assert response.mimetype == "application/problem+json"
        assert counts() == before
        assert client.get(f"/api/v1/events/{event['id']}").get_json() == snapshot
    elif action in ("list_registrations", "export"):
        assert "ines@example.org" in response.get_data(as_text=True)


def test_members_cannot_see_who_registered_even_for_their_own_organisation(client, world, create_event):
    event = create_event()
    response = client.get(f"/api/v1/events/{event['id']}/registrations", headers=world["headers"]["member"])
    assert response.status_code == 403
    assert "manager" in response.get_json()["detail"]


def test_remote_events_can_only_be_removed_by_staff(app, client, world):
    from node.events.models import Event
    from node.events.services import expand_occurrences
    from node.extensions import db
    from node.fedi.models import RemoteActor

    with app.app_context():
        actor = RemoteActor(ap_id="https://lyon.example/actor", domain="lyon.example", name="Halles de Lyon",
                            city="Lyon")
        db.session.add(actor)
        db.session.flush()
        from tests.events.conftest import paris, utc_naive

        event = Event(uuid="11111111-1111-4111-8111-111111111111", ap_id="https://lyon.example/events/1",
                      title="Atelier à Lyon", starts_at=utc_naive(paris(5, "18:00")),
                      ends_at=utc_naive(paris(5, "20:00")), origin_actor_id=actor.id, city="Lyon",
                      registration_url="https://lyon.example/events/1/register")
        db.session.add(event)
        db.session.flush()
        expand_occurrences(event)
        db.session.commit()
    url = "/api/v1/events/11111111-1111-4111-8111-111111111111"
    headers = world["headers"]
    assert client.patch(url, json={"title": "x"}, headers=headers["admin"]).status_code == 409
    assert client.post(f"{url}/cancel", headers=headers["admin"]).status_code == 409
    assert client.delete(url, headers=headers["manager_a"]).status_code == 403
    assert client.delete(url, headers=headers["office_manager"]).status_code == 204
