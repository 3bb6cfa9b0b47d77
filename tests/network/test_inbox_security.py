"""The inbox refuses what it cannot verify, with a 4xx and a reason, and stores none of it."""

import json
import uuid
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import func, select

from federation.httpsig import sign_request
from federation.proofs import sign_document
from node.fedi.identity import load_identity


def now():
    return datetime.now(UTC).replace(microsecond=0)


def inbox_count(node):
    from node.extensions import db
    from node.fedi.models import InboxItem

    return node.query(lambda: db.session.scalar(select(func.count(InboxItem.id))))


def signer_of(node):
    identity = node.query(lambda: load_identity())
    return identity


def post(target, sender, activity, *, flavour="rfc9421", tamper_body=None, headers_extra=None, content_type=None):
    identity = signer_of(sender)
    body = json.dumps(activity).encode()
    url = f"{target.url}/inbox"
    headers = {"Content-Type": content_type or "application/activity+json"}
    headers.update(sign_request("POST", url, headers, body, identity.rsa_key, identity.rsa_key_id,
                                flavour=flavour, now=now()))
    if headers_extra:
        headers.update(headers_extra)
    return requests.post(url, data=tamper_body if tamper_body is not None else body, headers=headers, timeout=10)


def event_object(origin, **fields):
    obj = {
        "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v2"],
        "id": f"{origin.url}/events/{uuid.uuid4()}",
        "type": "Event",
        "attributedTo": origin.actor,
        "name": "Atelier",
        "startTime": "2031-03-01T18:00:00+01:00",
        "endTime": "2031-03-01T20:00:00+01:00",
        "updated": "2031-01-01T00:00:00Z",
    }
    obj.update(fields)
    return obj


def create(actor_node, obj):
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{actor_node.url}/activities/{uuid.uuid4()}",
        "type": "Create",
        "actor": actor_node.actor,
        "object": obj,
    }


def signed(node, document):
    identity = signer_of(node)
    return sign_document(document, identity.ed25519_key, identity.ed25519_key_id, created=now())


@pytest.fixture
def pair(make_node):
    return make_node("Les Halles Civiques", "Paris"), make_node("La Fabrique Commune", "Lyon")


def test_valid_signed_create_is_accepted_once(pair):
    paris, lyon = pair
    activity = create(lyon, signed(lyon, event_object(lyon)))
    first = post(paris, lyon, activity)
    assert first.status_code == 202, first.text
    again = post(paris, lyon, activity)
    assert again.status_code == 202
    assert again.headers.get("X-Halles-Duplicate") == "1"
    assert inbox_count(paris) == 1


def test_cavage_signature_is_accepted(pair):
    paris, lyon = pair
    response = post(paris, lyon, create(lyon, signed(lyon, event_object(lyon))), flavour="cavage")
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "case, expected_status, reason",
    [
        ("unsigned", 401, "missing signature"),
        ("tampered body", 401, "digest"),
        ("actor is another node", 401, "disagree"),
        ("object of another origin", 401, "another origin"),
        ("tampered object proof", 401, "object proof"),
        ("wrong content type", 415, "activity+json"),
        ("not json", 400, "not valid JSON"),
        ("json array", 400, "JSON object"),
        ("no id", 400, "no id"),
        ("deeply nested", 400, "nested"),
        ("huge", 413, "larger"),
    ],
)
def test_inbox_refusals(pair, make_node, case, expected_status, reason):
    paris, lyon = pair
    obj = signed(lyon, event_object(lyon))
    activity = create(lyon, obj)
    if case == "unsigned":
        response = requests.post(f"{paris.url}/inbox", json=activity,
                                 headers={"Content-Type": "application/activity+json"}, timeout=10)
    elif case == "tampered body":
        tampered = json.dumps({**activity, "type": "Update"}).encode()
        response = post(paris, lyon, activity, tamper_body=tampered)
    elif case == "actor is another node":
        marseille = make_node("Le Comptoir", "Marseille")
        response = post(paris, lyon, create(marseille, signed(marseille, event_object(marseille))))
    elif case == "object of another origin":
        marseille = make_node("Le Comptoir", "Marseille")
        response = post(paris, lyon, create(lyon, signed(lyon, event_object(marseille))))
    elif case == "tampered object proof":
        response = post(paris, lyon, create(lyon, {**obj, "name": "Changed after signing"}))
    elif case == "wrong content type":
        response = post(paris, lyon, activity, content_type="text/plain")
    elif case == "not json":
        response = post(paris, lyon, activity, tamper_body=b"{not json")
    elif case == "json array":
        response = post(paris, lyon, activity, tamper_body=b"[1, 2]")
    elif case == "no id":
        response = post(paris, lyon, {k: v for k, v in activity.items() if k != "id"})
    elif case == "deeply nested":
        nested = {"x": 1}
        for _ in range(40):
            nested = {"x": nested}
        response = post(paris, lyon, {**activity, "object": nested})
    elif case == "huge":
        response = post(paris, lyon, {**activity, "padding": "x" * 300_000})
    assert response.status_code == expected_status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert reason.lower() in response.json()["detail"].lower()
    assert inbox_count(paris) == 0


def test_announce_of_url_pointing_to_private_address_is_refused(make_node):
    paris = make_node("Les Halles Civiques", "Paris", HALLES_ALLOW_PRIVATE_ADDRESSES=True)
    lyon = make_node("La Fabrique Commune", "Lyon")
    # Paris allows loopback (tests run on it) but never the cloud metadata service or link-local.
    activity = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{lyon.url}/activities/{uuid.uuid4()}",
        "type": "Announce",
        "actor": lyon.actor,
        "object": "http://169.254.169.254/latest/meta-data/",
    }
    response = post(paris, lyon, activity)
    assert response.status_code == 400, response.text
    assert inbox_count(paris) == 0


def test_unknown_activity_type_is_stored_then_ignored(pair):
    from tests.support.nodes import settle

    paris, lyon = pair
    activity = {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{lyon.url}/activities/{uuid.uuid4()}",
                "type": "Dance", "actor": lyon.actor, "object": paris.actor}
    assert post(paris, lyon, activity).status_code == 202
    settle([paris, lyon])
    from node.extensions import db
    from node.fedi.models import InboxItem

    state = paris.query(lambda: db.session.scalar(select(InboxItem.state)))
    assert state == "ignored"
