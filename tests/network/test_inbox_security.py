"""The inbox refuses what it cannot verify, with a 4xx and a reason, and stores none of it."""

import json
import time
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


def test_a_known_activity_id_is_only_confirmed_to_a_sender_that_proves_who_it_is(pair, make_node):
    """The duplicate answer comes after the signature and the proofs: an unsigned request, or one
    signed by another server, cannot learn that an activity id is known."""
    paris, lyon = pair
    marseille = make_node("Le Comptoir", "Marseille")
    activity = create(lyon, signed(lyon, event_object(lyon)))
    assert post(paris, lyon, activity).status_code == 202
    unsigned = requests.post(f"{paris.url}/inbox", json=activity,
                             headers={"Content-Type": "application/activity+json"}, timeout=10)
    assert unsigned.status_code == 401 and "missing signature" in unsigned.json()["detail"]
    assert "X-Halles-Duplicate" not in unsigned.headers
    stranger = post(paris, marseille, activity)
    assert stranger.status_code == 401 and "disagree" in stranger.json()["detail"]
    tampered = post(paris, lyon, {**activity, "object": {**activity["object"], "name": "Changé"}})
    assert tampered.status_code == 401 and "object proof" in tampered.json()["detail"]
    again = post(paris, lyon, activity)
    assert again.status_code == 202 and again.headers.get("X-Halles-Duplicate") == "1"
    assert inbox_count(paris) == 1


def _post_with_key(target, sender, activity, key_id):
    identity = signer_of(sender)
    body = json.dumps(activity).encode()
    url = f"{target.url}/inbox"
    headers = {"Content-Type": "application/activity+json"}
    headers.update(sign_request("POST", url, headers, body, identity.rsa_key, key_id, flavour="rfc9421", now=now()))
    started = time.monotonic()
    response = requests.post(url, data=body, headers=headers, timeout=60)
    return response, time.monotonic() - started


def test_a_key_on_a_server_that_does_not_answer_is_not_fetched_again_for_a_while(pair, monkeypatch):
    """A key id on a server that never answers costs the fetch deadlines once; the next requests naming
    it get their 401 at once, with the reason, and the server is not asked again."""
    from node.fedi import http, keystore
    from tests.resilience.peers import FakePeer

    monkeypatch.setattr(http, "FETCH_DEADLINE", 1.0)
    paris, lyon = pair
    silent = FakePeer("timeout")
    try:
        key_id = f"http://{silent.domain}/actor#main-key"
        first, first_took = _post_with_key(paris, lyon, create(lyon, signed(lyon, event_object(lyon))), key_id)
        assert first.status_code == 401
        assert "unknown key" in first.json()["detail"] and "cut off" in first.json()["detail"]
        asked = silent.requests
        assert asked >= 1 and first_took >= 1.0
        for _ in range(3):
            again, took = _post_with_key(paris, lyon, create(lyon, signed(lyon, event_object(lyon))), key_id)
            assert again.status_code == 401, again.text
            detail = again.json()["detail"]
            assert "unknown key" in detail and "cut off" in detail and "not fetched again for" in detail
            assert took < 0.9, took
        assert silent.requests == asked
    finally:
        silent.close()
    assert inbox_count(paris) == 0
    assert keystore.FAILED_LOOKUP_SECONDS == 300


def test_a_server_that_refuses_connections_is_remembered_for_all_its_keys(pair):
    from tests.support.smtp import free_port

    paris, lyon = pair
    closed = f"127.0.0.1:{free_port()}"
    first, _ = _post_with_key(paris, lyon, create(lyon, signed(lyon, event_object(lyon))), f"http://{closed}/a#k")
    assert first.status_code == 401 and "connection failed" in first.json()["detail"]
    other, _ = _post_with_key(paris, lyon, create(lyon, signed(lyon, event_object(lyon))), f"http://{closed}/b#k")
    assert other.status_code == 401
    assert f"{closed} is unreachable" in other.json()["detail"]
    assert "not fetched again" in other.json()["detail"]


def test_a_failed_lookup_is_tried_again_after_the_delay():
    from node.fedi.keystore import FailedLookups

    clock = [1000.0]
    failed = FailedLookups(clock=lambda: clock[0])
    failed.remember("https://lyon.example/actor#main-key", "cannot fetch key: timed out")
    failed.remember_host("https://down.example/actor", "down.example is unreachable: connection failed")
    assert failed.reason("https://lyon.example/actor#main-key") == (
        "cannot fetch key: timed out; not fetched again for 300 s")
    assert failed.reason("https://lyon.example/actor#other-key") is None
    assert "down.example is unreachable" in failed.reason("https://down.example/users/7#key")
    clock[0] += 299.5
    assert "for 1 s" in failed.reason("https://lyon.example/actor#main-key")
    clock[0] += 1
    assert failed.reason("https://lyon.example/actor#main-key") is None
    assert failed.host_down("https://down.example/actor") is None


def test_a_block_is_seen_by_the_inbox_at_once_here_and_soon_from_another_process(pair, monkeypatch):
    from sqlalchemy import update

    from node.extensions import db
    from node.fedi import inbox
    from node.fedi.models import InboxItem, RemoteServer
    from tests.support.nodes import settle

    paris, lyon = pair
    assert post(paris, lyon, create(lyon, signed(lyon, event_object(lyon)))).status_code == 202
    # Blocked and unblocked by this process (the admin page or the CLI in the web app): at once.
    assert paris.cli("peer", "block", lyon.url).exit_code == 0
    refused = post(paris, lyon, create(lyon, signed(lyon, event_object(lyon))))
    assert refused.status_code == 403 and "blocked" in refused.json()["detail"]
    assert paris.cli("peer", "unblock", f"127.0.0.1:{lyon.port}").exit_code == 0
    assert post(paris, lyon, create(lyon, signed(lyon, event_object(lyon)))).status_code == 202
    # Blocked by another process (a plain UPDATE here): the inbox sees it within BLOCKS_CACHE_SECONDS,
    # and the worker ignores what was accepted meanwhile.
    monkeypatch.setattr(inbox, "BLOCKS_CACHE_SECONDS", 0.5)
    paris.query(lambda: inbox.blocked_domains().forget())  # read again with the short delay
    paris.query(lambda: (db.session.execute(update(RemoteServer).values(blocked=True)
                                            .where(RemoteServer.domain == f"127.0.0.1:{lyon.port}")),
                         db.session.commit()))
    meanwhile = post(paris, lyon, create(lyon, signed(lyon, event_object(lyon))))
    assert meanwhile.status_code in (202, 403)
    time.sleep(0.6)
    assert post(paris, lyon, create(lyon, signed(lyon, event_object(lyon)))).status_code == 403
    settle([paris])
    states = paris.query(lambda: list(db.session.execute(
        select(InboxItem.state, InboxItem.error).order_by(InboxItem.id))))
    # Everything stored (the 202s: one before the block, one after the unblock, maybe one meanwhile) is
    # applied after the last block is committed: nothing of it is applied.
    assert len(states) in (2, 3)
    assert states == [("ignored", "domain blocked")] * len(states), states
