"""Steps shared by the network tests: peer two nodes, create organisations and events by the API."""

from __future__ import annotations

from sqlalchemy import select

from tests.support.nodes import Node, settle


def peer(requester: Node, target: Node, nodes: list[Node]) -> None:
    """``requester`` follows ``target`` with a charter attestation and ``target`` approves."""
    result = requester.cli("peer", "request", target.url)
    assert result.exit_code == 0, result.output
    settle(nodes)
    result = target.cli("peer", "approve", requester.actor)
    assert result.exit_code == 0, result.output
    settle(nodes)


def mutual(a: Node, b: Node, nodes: list[Node]) -> None:
    peer(a, b, nodes)
    peer(b, a, nodes)


def signed_organisation(node: Node, name: str = "Démocratie Ouverte") -> int:
    response = node.client.post("/api/v1/organisations", json={"name": name, "description": "Association membre"},
                                headers=node.admin_headers)
    assert response.status_code == 201, response.get_json()
    org_id = response.get_json()["id"]
    sign_charter(node, org_id)
    return org_id


def sign_charter(node: Node, org_id: int) -> None:
    charter = node.client.get("/api/v1/charter").get_json()
    response = node.client.post("/api/v1/charter/signatures",
                                json={"organisation_id": org_id, "sha256": charter["sha256"]},
                                headers=node.admin_headers)
    assert response.status_code in (200, 201), response.get_json()


def create_event(node: Node, org_id: int, title: str, **fields) -> dict:
    body = {
        "title": title,
        "description": "Entrée libre.",
        "starts_at": "2031-05-12T19:00:00+02:00",
        "ends_at": "2031-05-12T21:00:00+02:00",
        "timezone": "Europe/Paris",
        "location_kind": "place",
        "place_name": node.name,
        "address": "1 rue de la République",
        "city": node.city,
        "organiser_ids": [org_id],
        "visibility": "public",
        "category": "debate",
    }
    body.update(fields)
    response = node.client.post("/api/v1/events", json=body, headers=node.admin_headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def network_titles(node: Node, **params) -> dict[str, dict]:
    """title -> item of the node's network listing (anonymous visitor unless headers given)."""
    headers = params.pop("headers", None)
    query = {"scope": "network", "limit": 100, "from": "2030-01-01T00:00:00Z", **params}
    items: dict[str, dict] = {}
    url = "/api/v1/events"
    while True:
        response = node.client.get(url, query_string=query, headers=headers or {})
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        for item in page["items"]:
            items[item["title"]] = item
        if not page.get("next"):
            return items
        query["cursor"] = page["next"]


def remote_event_count(node: Node) -> int:
    from sqlalchemy import func

    from node.events.models import Event
    from node.extensions import db

    return node.query(lambda: db.session.scalar(
        select(func.count(Event.id)).where(Event.origin_actor_id.is_not(None))))
