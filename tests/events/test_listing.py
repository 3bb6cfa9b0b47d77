"""GET /api/v1/events: keyset pages over occurrences, filters, visibility, scope and caching."""

from __future__ import annotations

import pytest

from tests.events.conftest import event_body, paris, utc_naive


def _walk(client, limit: int, headers=None, **params) -> tuple[list[tuple[str, str]], int]:
    """Every (event id, starts_at) of the listing, page by page; returns (items, pages)."""
    seen, pages, cursor = [], 0, None
    while True:
        query = {"limit": limit, **params} | ({"cursor": cursor} if cursor else {})
        response = client.get("/api/v1/events", query_string=query, headers=headers or {})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        pages += 1
        assert len(body["items"]) <= limit
        seen += [(item["id"], item["starts_at"]) for item in body["items"]]
        cursor = body["next"]
        if cursor is None:
            return seen, pages


@pytest.fixture
def series(client, world):
    """Three weekly series starting at the same minute (ties broken by occurrence id) and two others."""
    headers = world["headers"]["manager_a"]
    for n in range(3):
        assert client.post("/api/v1/events", json=event_body(days_ahead=5, title=f"Série {n}",
                                                             rrule="FREQ=WEEKLY;COUNT=4"),
                           headers=headers).status_code == 201
    for n, day in enumerate((6, 13)):
        assert client.post("/api/v1/events", json=event_body(days_ahead=day, start="10:00", end="12:00",
                                                             title=f"Matinée {n}", rrule="FREQ=DAILY;COUNT=3"),
                           headers=headers).status_code == 201


def test_walking_every_page_gives_each_occurrence_once_in_order(client, series):
    everything = client.get("/api/v1/events", query_string={"limit": 100}).get_json()
    assert everything["next"] is None
    expected = [(item["id"], item["starts_at"]) for item in everything["items"]]
    assert len(expected) == 3 * 4 + 2 * 3
    assert [start for _, start in expected] == sorted(start for _, start in expected)
    for limit in (1, 4, 5, 17, 18):
        seen, pages = _walk(client, limit)
        assert seen == expected
        # limit + 1 rows are read, so a full last page is known to be the last: no empty extra page.
        assert pages == -(-len(expected) // limit)


def test_pages_stay_stable_when_events_are_added_meanwhile(client, world, series):
    headers = world["headers"]["manager_a"]
    expected = [(i["id"], i["starts_at"]) for i in client.get("/api/v1/events?limit=100").get_json()["items"]]
    first = client.get("/api/v1/events", query_string={"limit": 5}).get_json()
    seen = [(item["id"], item["starts_at"]) for item in first["items"]]
    # One event before the cursor (already walked past) and one after it appear between two pages.
    early = client.post("/api/v1/events", json=event_body(days_ahead=1, title="Tôt"), headers=headers).get_json()
    late = client.post("/api/v1/events", json=event_body(days_ahead=60, title="Tard"), headers=headers).get_json()
    cursor = first["next"]
    while cursor:
        page = client.get("/api/v1/events", query_string={"limit": 5, "cursor": cursor}).get_json()
        seen += [(item["id"], item["starts_at"]) for item in page["items"]]
        cursor = page["next"]
    assert len(seen) == len(set(seen))
    assert early["id"] not in {event_id for event_id, _ in seen}
    assert seen == expected + [(late["id"], late["starts_at"])]


def test_a_bad_cursor_is_a_400(client, series):
    for cursor in ("garbage", "W10", "WyJ4IiwxXQ"):  # not base64 JSON, [], ["x", 1]
        response = client.get("/api/v1/events", query_string={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert "cursor" in response.get_json()["detail"]


@pytest.fixture
def catalogue(client, world):
    headers = world["headers"]["manager_a"]

    def make(**fields) -> str:
        response = client.post("/api/v1/events", json=event_body(**fields), headers=headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]

    return {
        "ecole": make(days_ahead=4, title="Atelier à l'École du quartier", tags=["Jeunesse"], category="workshop",
                      accessibility={"step_free": True, "sign_language": True, "hearing_loop": False}),
        "film": make(days_ahead=8, title="Projection", description="Un film sur l'écologie urbaine",
                     tags=["cinéma"], category="screening", city="Saint-Étienne", price_cents=500, language="en"),
        "debat": make(days_ahead=12, title="Débat", city="Montreuil", accessibility={"step_free": True}),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "ecole"}, {"ecole"}),
        ({"q": "ÉCOLOGIE"}, {"film"}),
        ({"q": "cinema"}, {"film"}),
        ({"q": "atelier QUARTIER"}, {"ecole"}),
        ({"q": "atelier cinéma"}, set()),
        ({"city": "saint-etienne"}, {"film"}),
        ({"city": "PARIS"}, {"ecole"}),
        ({"tag": "jeunesse"}, {"ecole"}),
        ({"tag": "#Cinema"}, {"film"}),
        ({"free": "true"}, {"ecole", "debat"}),
        ({"free": "false"}, {"film"}),
        ({"accessible": "step_free"}, {"ecole", "debat"}),
        ({"accessible": "step_free,sign_language"}, {"ecole"}),
        ({"accessible": "step_free,hearing_loop"}, set()),
        ({"category": "screening"}, {"film"}),
        ({"language": "en"}, {"film"}),
        ({"q": "debat", "city": "montreuil", "free": "true"}, {"debat"}),
    ],
)
def test_filters(client, catalogue, params, expected):
    response = client.get("/api/v1/events", query_string=params)
    assert response.status_code == 200
    listed = {item["id"] for item in response.get_json()["items"]}
    found = {name for name, event_id in catalogue.items() if event_id in listed}
    assert found == expected


def test_date_range_and_the_default_start_at_now(client, world, catalogue):
    past = client.post("/api/v1/events", json=event_body(days_ahead=-3, title="Avant-hier",
                                                         organiser_ids=[world["org_a"].id]),
                       headers=world["headers"]["admin"])
    assert past.status_code == 201
    past_id = past.get_json()["id"]
    default_ids = {i["id"] for i in client.get("/api/v1/events").get_json()["items"]}
    assert past_id not in default_ids and catalogue["ecole"] in default_ids
    since = paris(-5, "00:00").date().isoformat()
    window = client.get("/api/v1/events", query_string={"from": since, "to": paris(6, "00:00").isoformat()})
    assert {i["id"] for i in window.get_json()["items"]} == {past_id, catalogue["ecole"]}
    plus_as_space = paris(7, "00:00").isoformat().replace("+", " ")  # an unencoded '+' in a query string
    later = client.get(f"/api/v1/events?from={plus_as_space}")
    assert later.status_code == 200
    assert {i["id"] for i in later.get_json()["items"]} == {catalogue["film"], catalogue["debat"]}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from": "tomorrow"}, 422),
        ({"from": "2027-01-01T10:00:00"}, 422),  # no offset
        ({"from": "2027-01-02", "to": "2027-01-01"}, 422),
        ({"limit": "0"}, 422),
        ({"limit": "101"}, 422),
        ({"limit": "ten"}, 422),
        ({"category": "party"}, 422),
        ({"accessible": "wings"}, 422),
        ({"scope": "world"}, 422),
        ({"free": "maybe"}, 422),
        ({"language": "french"}, 422),
        ({"q": "x" * 201}, 422),
    ],
)
def test_bad_filters_are_refused(client, catalogue, params, status):
    response = client.get("/api/v1/events", query_string=params)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_visibility(client, world):
    headers = world["headers"]
    ids = {}
    for visibility in ("public", "network", "members"):
        response = client.post("/api/v1/events", json=event_body(title=visibility, visibility=visibility),
                               headers=headers["manager_a"])
        ids[visibility] = response.get_json()["id"]
    anonymous = {i["id"] for i in client.get("/api/v1/events").get_json()["items"]}
    assert anonymous == {ids["public"]}
    for role in ("member", "manager_b", "office_manager"):
        seen = {i["id"] for i in client.get("/api/v1/events", headers=headers[role]).get_json()["items"]}
        assert seen == set(ids.values()), role
    assert client.get(f"/api/v1/events/{ids['members']}").status_code == 404
    assert client.get(f"/api/v1/events/{ids['network']}").status_code == 404
    assert client.get(f"/api/v1/events/{ids['members']}", headers=headers["member"]).status_code == 200
    # Nobody can register anonymously for what they cannot see.
    hidden = client.post(f"/api/v1/events/{ids['members']}/registrations",
                         json={"name": "Léa", "email": "lea@example.org"})
    assert hidden.status_code == 404


def _remote_event(app, *, visibility: str = "public", days_ahead: int = 9) -> str:
    from node.events.models import Event
    from node.events.services import expand_occurrences
    from node.extensions import db
    from node.fedi.models import RemoteActor

    with app.app_context():
        actor = db.session.query(RemoteActor).filter_by(ap_id="https://lyon.example/actor").first()
        if actor is None:
            actor = RemoteActor(ap_id="https://lyon.example/actor", domain="lyon.example", name="Halles de Lyon",
                                city="Lyon", document={"url": "https://lyon.example"})
            db.session.add(actor)
            db.session.flush()
        import uuid

        event_uuid = str(uuid.uuid4())
        event = Event(uuid=event_uuid, ap_id=f"https://lyon.example/events/{event_uuid}", title="Atelier lyonnais",
                      starts_at=utc_naive(paris(days_ahead, "18:00")), ends_at=utc_naive(paris(days_ahead, "20:00")),
                      origin_actor_id=actor.id, city="Lyon", visibility=visibility, capacity=20,
                      registration_url=f"https://lyon.example/events/{event_uuid}/register",
                      remote_object={"remainingAttendeeCapacity": 7})
        db.session.add(event)
        db.session.flush()
        expand_occurrences(event)
        db.session.commit()
        return event_uuid


def test_scope_network_includes_remote_events_with_their_origin(app, client, world, create_event):
    local = create_event()["id"]
    remote = _remote_event(app)
    hidden = _remote_event(app, visibility="network")
    local_scope = {i["id"] for i in client.get("/api/v1/events").get_json()["items"]}
    assert local_scope == {local}
    items = {i["id"]: i for i in client.get("/api/v1/events?scope=network").get_json()["items"]}
    assert set(items) == {local, remote}
    assert items[local]["origin"] is None
    assert items[remote]["origin"] == {
        "actor": "https://lyon.example/actor", "url": "https://lyon.example", "name": "Halles de Lyon",
        "city": "Lyon", "domain": "lyon.example", "registration_url": f"https://lyon.example/events/{remote}/register",
    }
    assert items[remote]["remaining"] == 7
    member_view = client.get("/api/v1/events?scope=network", headers=world["headers"]["member"]).get_json()
    assert hidden in {i["id"] for i in member_view["items"]}


def test_etag_answers_304_until_something_changes(client, world, create_event):
    event = create_event()
    first = client.get("/api/v1/events")
    etag = first.headers["ETag"]
    assert "Authorization" in first.headers["Vary"]
    assert client.get("/api/v1/events", headers={"If-None-Match": etag}).status_code == 304
    client.patch(f"/api/v1/events/{event['id']}", json={"title": "Autre"}, headers=world["headers"]["manager_a"])
    assert client.get("/api/v1/events", headers={"If-None-Match": etag}).status_code == 200
    detail = client.get(f"/api/v1/events/{event['id']}")
    assert client.get(f"/api/v1/events/{event['id']}",
                      headers={"If-None-Match": detail.headers["ETag"]}).status_code == 304


def test_remaining_places_per_occurrence(client, world, create_event):
    event = create_event(capacity=2, rrule="FREQ=WEEKLY;COUNT=2")
    second = event["occurrences"][1]["starts_at"]
    assert client.post(f"/api/v1/events/{event['id']}/registrations",
                       json={"name": "Ali", "email": "ali@example.org", "occurrence": second}).status_code == 201
    items = client.get("/api/v1/events").get_json()["items"]
    assert [i["remaining"] for i in items] == [2, 1]
