"""Creating, reading, changing, cancelling and deleting events through the API: rules, defaults,
recurrence across DST, organisers, charter gating, hooks, and bad input that changes nothing."""

from __future__ import annotations

import pytest

from tests.events.conftest import event_body, paris


def test_create_sets_uuid_ap_id_and_defaults(app, client, world, create_event):
    event = create_event(capacity=30, tags=["#démocratie", "quartier", "quartier"])
    assert len(event["id"]) == 36
    assert event["ap_id"] == f"http://127.0.0.1:5000/events/{event['id']}"
    assert event["url"] == event["ap_id"]
    assert event["timezone"] == "Europe/Paris"
    assert event["visibility"] == "public"
    assert event["status"] == "confirmed"
    assert event["free"] is True and event["price_cents"] == 0
    assert event["tags"] == ["démocratie", "quartier"]
    assert event["organisers"] == [{"id": world["org_a"].id, "name": "Association Alpha"}]
    assert event["origin"] is None
    assert event["local_start"].endswith(("T19:00:00+01:00", "T19:00:00+02:00"))
    assert event["starts_at"].endswith("Z")
    assert event["remaining"] == 30
    assert len(event["occurrences"]) == 1

    again = client.get(f"/api/v1/events/{event['id']}")
    assert again.status_code == 200
    assert again.get_json()["title"] == "Débat : la démocratie locale"


def test_org_manager_without_organiser_ids_organises_for_their_organisation(client, world):
    body = event_body()
    response = client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"])
    assert response.status_code == 201
    assert [o["id"] for o in response.get_json()["organisers"]] == [world["org_a"].id]
    staff = client.post("/api/v1/events", json=body, headers=world["headers"]["office_manager"])
    assert staff.status_code == 422
    assert "organiser_ids is required" in staff.get_json()["detail"]


def test_co_organisers_and_the_own_organisation_rule(client, world, create_event):
    a, b = world["org_a"].id, world["org_b"].id
    refused = client.post("/api/v1/events", json=event_body(organiser_ids=[b]), headers=world["headers"]["manager_a"])
    assert refused.status_code == 403
    assert "Association Alpha" in refused.get_json()["detail"]
    event = create_event(organiser_ids=[a, b])
    assert {o["id"] for o in event["organisers"]} == {a, b}
    # A co-organiser's manager may change it, but not drop their own organisation from it.
    ok = client.patch(f"/api/v1/events/{event['id']}", json={"title": "Débat commun"},
                      headers=world["headers"]["manager_b"])
    assert ok.status_code == 200
    drop = client.patch(f"/api/v1/events/{event['id']}", json={"organiser_ids": [a]},
                        headers=world["headers"]["manager_b"])
    assert drop.status_code == 403
    # Staff organise for anyone.
    staff = client.post("/api/v1/events", json=event_body(organiser_ids=[b]), headers=world["headers"]["admin"])
    assert staff.status_code == 201


def test_charter_gating_names_the_organisation_and_the_version(client, world, publish_charter, counts):
    a, b = world["org_a"].id, world["org_b"].id
    version = publish_charter(signed_by=(a,))
    before = counts()
    response = client.post("/api/v1/events", json=event_body(organiser_ids=[a, b]),
                           headers=world["headers"]["manager_a"])
    assert response.status_code == 403
    expected = f"Collectif Béta must sign charter version {version} before publishing events"
    assert response.get_json()["detail"] == expected
    staff = client.post("/api/v1/events", json=event_body(organiser_ids=[b]), headers=world["headers"]["admin"])
    assert staff.status_code == 403
    assert counts() == before
    assert client.post("/api/v1/events", json=event_body(organiser_ids=[a]),
                       headers=world["headers"]["manager_a"]).status_code == 201
    # A new charter version: even A must sign it again before publishing or changing events.
    new_version = publish_charter(signed_by=(b,))
    again = client.post("/api/v1/events", json=event_body(organiser_ids=[a]), headers=world["headers"]["manager_a"])
    assert again.status_code == 403
    assert f"charter version {new_version}" in again.get_json()["detail"]


def test_naive_times_are_read_in_the_given_timezone_and_refused_without_one(client, world, counts):
    headers = world["headers"]["manager_a"]
    body = event_body(starts_at="2027-07-01T19:00:00", ends_at="2027-07-01T21:00:00", timezone="America/Montreal")
    response = client.post("/api/v1/events", json=body, headers=headers)
    assert response.status_code == 201
    event = response.get_json()
    assert event["starts_at"] == "2027-07-01T23:00:00Z"
    assert event["local_start"] == "2027-07-01T19:00:00-04:00"
    before = counts()
    naive = client.post("/api/v1/events", json=event_body(starts_at="2027-07-01T19:00:00",
                                                          ends_at="2027-07-01T21:00:00"), headers=headers)
    assert naive.status_code == 422
    assert "no UTC offset" in naive.get_json()["detail"]
    unknown = client.post("/api/v1/events", json=event_body(timezone="Mars/Olympus"), headers=headers)
    assert unknown.status_code == 422
    assert "Mars/Olympus" in unknown.get_json()["detail"]
    assert counts() == before


@pytest.mark.parametrize(
    ("first_day", "expected_utc_hours"),
    [
        ("2027-03-18", [18, 18, 17, 17]),  # summer time begins Sunday 28 March 2027
        ("2027-10-21", [17, 17, 18, 18]),  # winter time begins Sunday 31 October 2027
    ],
)
def test_weekly_event_stays_at_19h_paris_across_dst_with_exdates(client, world, first_day, expected_utc_hours):
    from datetime import date, timedelta

    day = date.fromisoformat(first_day)
    removed = (day + timedelta(days=35)).isoformat() + "T19:00:00"
    body = event_body(starts_at=f"{first_day}T19:00:00", ends_at=f"{first_day}T21:00:00", timezone="Europe/Paris",
                      rrule="FREQ=WEEKLY;COUNT=6", exdates=[removed])
    response = client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"])
    assert response.status_code == 201, response.get_json()
    occurrences = response.get_json()["occurrences"]
    assert len(occurrences) == 5
    assert [o["local_start"][11:19] for o in occurrences] == ["19:00:00"] * 5
    assert [o["local_end"][11:19] for o in occurrences] == ["21:00:00"] * 5
    assert [int(o["starts_at"][11:13]) for o in occurrences[:4]] == expected_utc_hours
    assert removed[:10] not in [o["local_start"][:10] for o in occurrences]
    assert response.get_json()["exdates"] == [removed]


def test_open_ended_rule_gets_an_until_one_year_on(client, world):
    body = event_body(starts_at="2027-01-10T19:00:00+01:00", ends_at="2027-01-10T21:00:00+01:00", rrule="FREQ=MONTHLY")
    response = client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"])
    assert response.status_code == 201
    event = response.get_json()
    assert "UNTIL=" in event["rrule"]
    assert len(event["occurrences"]) == 13


def test_update_bumps_updated_at_and_rebuilds_occurrences_keeping_ids(app, client, world, create_event):
    from sqlalchemy import select

    from node.events.models import Event, EventOccurrence
    from node.extensions import db

    event = create_event(rrule="FREQ=WEEKLY;COUNT=3")
    with app.app_context():
        ids_before = dict(db.session.execute(
            select(EventOccurrence.starts_at, EventOccurrence.id).join(Event).where(Event.uuid == event["id"])
        ).all())
    response = client.patch(f"/api/v1/events/{event['id']}", json={"rrule": "FREQ=WEEKLY;COUNT=4"},
                            headers=world["headers"]["manager_a"])
    assert response.status_code == 200
    changed = response.get_json()
    assert changed["updated_at"] > event["updated_at"]
    assert len(changed["occurrences"]) == 4
    with app.app_context():
        ids_after = dict(db.session.execute(
            select(EventOccurrence.starts_at, EventOccurrence.id).join(Event).where(Event.uuid == event["id"])
        ).all())
    assert all(ids_after[start] == occurrence_id for start, occurrence_id in ids_before.items())
    # A second change in the same second still moves updated_at forward.
    again = client.patch(f"/api/v1/events/{event['id']}", json={"title": "Encore"},
                         headers=world["headers"]["manager_a"]).get_json()
    assert again["updated_at"] > changed["updated_at"]


def test_patch_status_cancelled_is_a_cancellation_and_delete_removes_everything(client, world, create_event, counts):
    event = create_event(rrule="FREQ=WEEKLY;COUNT=2")
    response = client.patch(f"/api/v1/events/{event['id']}", json={"status": "cancelled", "title": "Annulé"},
                            headers=world["headers"]["manager_a"])
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    assert response.get_json()["title"] == "Annulé"
    # Still listed, as cancelled, so people who planned to come see it.
    listed = client.get("/api/v1/events").get_json()["items"]
    assert {item["status"] for item in listed} == {"cancelled"}
    before = counts()
    deleted = client.delete(f"/api/v1/events/{event['id']}", headers=world["headers"]["manager_a"])
    assert deleted.status_code == 204
    after = counts()
    assert after["events"] == before["events"] - 1
    assert after["occurrences"] == before["occurrences"] - 2
    assert client.get(f"/api/v1/events/{event['id']}").status_code == 404


def test_cancel_twice_is_harmless(client, world, create_event):
    event = create_event()
    first = client.post(f"/api/v1/events/{event['id']}/cancel", headers=world["headers"]["manager_a"])
    second = client.post(f"/api/v1/events/{event['id']}/cancel", headers=world["headers"]["manager_a"])
    assert first.status_code == second.status_code == 200
    assert first.get_json()["updated_at"] == second.get_json()["updated_at"]


def test_hooks_run_inside_the_transaction(app, client, world, create_event, monkeypatch, counts):
    from node.common.errors import Conflict
    from node.events import services
    from node.events.models import Event
    from node.extensions import db

    seen = []

    def recorder(action, event):
        # The row is flushed (it has an id and is queryable) but not committed yet.
        assert db.session.get(Event, event.id) is event
        seen.append((action, event.uuid, event.status))

    monkeypatch.setattr(services, "EVENT_CHANGE_HOOKS", [*services.EVENT_CHANGE_HOOKS, recorder])
    event = create_event()
    headers = world["headers"]["manager_a"]
    client.patch(f"/api/v1/events/{event['id']}", json={"title": "Nouveau titre"}, headers=headers)
    client.post(f"/api/v1/events/{event['id']}/cancel", headers=headers)
    client.delete(f"/api/v1/events/{event['id']}", headers=headers)
    assert seen == [
        ("create", event["id"], "confirmed"),
        ("update", event["id"], "confirmed"),
        ("cancel", event["id"], "cancelled"),
        ("delete", event["id"], "cancelled"),
    ]

    def refuse(action, event):
        raise Conflict("the outbox refused it")

    monkeypatch.setattr(services, "EVENT_CHANGE_HOOKS", [refuse])
    before = counts()
    response = client.post("/api/v1/events", json=event_body(), headers=headers)
    assert response.status_code == 409
    assert counts() == before


def test_location_kinds(client, world):
    headers = world["headers"]["manager_a"]
    online = client.post("/api/v1/events", json=event_body(location_kind="online", address="", city="",
                                                           online_url="https://visio.example.org/debat"),
                         headers=headers)
    assert online.status_code == 201
    assert online.get_json()["location"]["online_url"] == "https://visio.example.org/debat"
    place = client.post("/api/v1/events", json=event_body(place_name="Café associatif", postal_code="75020",
                                                          latitude=48.87, longitude=2.38), headers=headers)
    assert place.get_json()["location"] == {
        "kind": "place", "room_id": None, "place_name": "Café associatif", "address": "12 rue de Belleville",
        "postal_code": "75020", "city": "Paris", "latitude": 48.87, "longitude": 2.38, "online_url": None,
    }


BAD_CREATE_BODIES = [
    ("missing title", {"title": None}, "title"),
    ("blank title", {"title": "   "}, "title"),
    ("long title", {"title": "x" * 301}, "title"),
    ("not a date", {"starts_at": "demain soir"}, "starts_at"),
    ("number as date", {"starts_at": 1767225600}, "starts_at"),
    ("end before start", {"ends_at": paris(10, "18:00").isoformat()}, "ends_at must be after starts_at"),
    ("end equals start", {"ends_at": paris(10, "19:00").isoformat()}, "ends_at must be after starts_at"),
    ("bad rule", {"rrule": "FREQ=SOMETIMES"}, "FREQ=SOMETIMES"),
    ("too many", {"rrule": "FREQ=DAILY;COUNT=900"}, "more than 500"),
    ("exdates alone", {"exdates": ["2027-01-01T19:00:00"]}, "exdates only apply"),
    ("exdate off rule", {"rrule": "FREQ=WEEKLY;COUNT=2", "exdates": ["2020-01-01T19:00:00"]}, "not an occurrence"),
    ("overlapping", {"rrule": "FREQ=DAILY;COUNT=3", "ends_at": paris(12, "21:00").isoformat()}, "overlap"),
    ("category", {"category": "party"}, "category"),
    ("tags type", {"tags": "a,b"}, "tags"),
    ("tag too long", {"tags": ["x" * 41]}, "tags"),
    ("language", {"language": "fra"}, "language"),
    ("negative price", {"price_cents": -1}, "price_cents"),
    ("string price", {"price_cents": "5"}, "price_cents"),
    ("accessibility key", {"accessibility": {"wheelchair": True}}, "accessibility"),
    ("accessibility value", {"accessibility": {"step_free": "yes"}}, "accessibility"),
    ("capacity zero", {"capacity": 0}, "capacity"),
    ("capacity bool", {"capacity": True}, "capacity"),
    ("visibility", {"visibility": "secret"}, "visibility"),
    ("status", {"status": "postponed"}, "status"),
    ("place without address", {"address": ""}, "address is required"),
    ("place without city", {"city": None}, "city"),
    ("room without room", {"location_kind": "room"}, "room_id is required"),
    ("unknown room", {"location_kind": "room", "room_id": 9999}, "room 9999 does not exist"),
    ("online without url", {"location_kind": "online"}, "online_url is required"),
    ("bad url", {"location_kind": "online", "online_url": "javascript:alert(1)"}, "online_url"),
    ("latitude", {"latitude": 100.0}, "latitude"),
    ("unknown organiser", {"organiser_ids": [9999]}, "organisation 9999 does not exist"),
    ("empty organisers", {"organiser_ids": []}, "organiser_ids"),
    ("unknown field", {"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("case", "changes", "message"), BAD_CREATE_BODIES, ids=[c[0] for c in BAD_CREATE_BODIES])
def test_bad_create_bodies_are_refused_and_store_nothing(client, world, counts, case, changes, message):
    body = event_body(organiser_ids=[world["org_a"].id])
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    before = counts()
    response = client.post("/api/v1/events", json=body, headers=world["headers"]["manager_a"])
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert message in response.get_json()["detail"]
    assert counts() == before


def test_malformed_requests_store_nothing(app, client, world, counts):
    headers = world["headers"]["manager_a"]
    before = counts()
    assert client.post("/api/v1/events", data="title=x", headers=headers,
                       content_type="application/x-www-form-urlencoded").status_code == 415
    assert client.post("/api/v1/events", data="{not json", headers=headers,
                       content_type="application/json").status_code == 400
    assert client.post("/api/v1/events", json=[event_body()], headers=headers).status_code == 400
    huge = event_body(description="x" * (app.config["MAX_CONTENT_LENGTH"] + 10))
    assert client.post("/api/v1/events", json=huge, headers=headers).status_code == 413
    assert client.post("/api/v1/events", json=event_body(), headers={"Authorization": "Bearer nope"}).status_code == 401
    assert counts() == before


def test_bad_patch_changes_nothing(client, world, create_event, counts):
    event = create_event(rrule="FREQ=WEEKLY;COUNT=3")
    url = f"/api/v1/events/{event['id']}"
    headers = world["headers"]["manager_a"]
    before, snapshot = counts(), client.get(url).get_json()
    for body in (
        {"ends_at": "2000-01-01T00:00:00Z"},
        {"timezone": "Nowhere/Town"},
        {"rrule": "FREQ=WEEKLY;BYDAY=XX"},
        {"exdates": ["2001-01-01"]},
        {"capacity": -3},
        {"location_kind": "online"},
        {"organiser_ids": [12345]},
        {"title": ""},
        {"id": "another"},
    ):
        response = client.patch(url, json=body, headers=headers)
        assert response.status_code == 422, (body, response.get_json())
    assert client.patch(url, data="x", headers=headers, content_type="text/plain").status_code == 415
    assert client.get(url).get_json() == snapshot
    assert counts() == before


def test_unknown_ids_are_404_everywhere(client, world):
    headers = world["headers"]["admin"]
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/api/v1/events/{missing}").status_code == 404
    assert client.patch(f"/api/v1/events/{missing}", json={"title": "x"}, headers=headers).status_code == 404
    assert client.delete(f"/api/v1/events/{missing}", headers=headers).status_code == 404
    assert client.post(f"/api/v1/events/{missing}/cancel", headers=headers).status_code == 404
    assert client.get(f"/api/v1/events/{missing}/registrations", headers=headers).status_code == 404
    assert client.get(f"/api/v1/events/{missing}/registrations.csv", headers=headers).status_code == 404
    assert client.post(f"/api/v1/events/{missing}/registrations",
                       json={"name": "A", "email": "a@example.org"}).status_code == 404
    assert client.get(f"/events/{missing}.ics").status_code == 404


def test_openapi_documents_every_events_endpoint(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    for path, methods in {
        "/api/v1/events": {"get", "post"},
        "/api/v1/events/{event_uuid}": {"get", "patch", "delete"},
        "/api/v1/events/{event_uuid}/cancel": {"post"},
        "/api/v1/events/{event_uuid}/registrations": {"get", "post"},
        "/api/v1/events/{event_uuid}/registrations.csv": {"get"},
        "/api/v1/registrations/{token}": {"get"},
        "/api/v1/registrations/{token}/confirm": {"post"},
        "/api/v1/registrations/{token}/cancel": {"post"},
        "/api/v1/registrations/{token}/erase": {"post"},
    }.items():
        assert methods <= set(paths[path]), path
    assert "title" in spec["components"]["schemas"]["EventInput"]["properties"]
    assert "remaining" in spec["components"]["schemas"]["Event"]["properties"]


def test_titles_are_one_line_and_dropping_the_rule_drops_its_exdates(client, world, create_event):
    event = create_event(title="Débat\r\nBcc: victim@example.org", rrule="FREQ=WEEKLY;COUNT=3",
                         exdates=[paris(17, "19:00").strftime("%Y-%m-%dT%H:%M:%S")])
    assert event["title"] == "Débat Bcc: victim@example.org"
    assert len(event["occurrences"]) == 2
    single = client.patch(f"/api/v1/events/{event['id']}", json={"rrule": None},
                          headers=world["headers"]["manager_a"])
    assert single.status_code == 200, single.get_json()
    assert (single.get_json()["rrule"], single.get_json()["exdates"]) == (None, [])
    assert len(single.get_json()["occurrences"]) == 1
