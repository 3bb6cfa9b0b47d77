"""Batches (FEP-4248 shape: an ``Announce`` whose ``object`` is a list of activities) posted to the
inbox: one HTTP signature for the request, each activity checked as it would be alone and answered on
its own line of the 202 body; what is refused is not stored, what is valid is stored even next to a
refused neighbour; the rate limit counts activities, not requests."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from sqlalchemy import func, select

from tests.network.test_inbox_security import create, event_object, inbox_count, now, post, signed, signer_of


def batch_of(node, activities, *, actor=None):
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{node.url}/batches/{uuid.uuid4()}",
        "type": "Announce",
        "actor": actor or node.actor,
        "object": activities,
    }


def post_batch(target, sender, batch, *, body=None):
    from federation.httpsig import sign_request

    identity = signer_of(sender)
    body = json.dumps(batch).encode() if body is None else body
    url = f"{target.url}/inbox"
    headers = {"Content-Type": "application/activity+json"}
    headers.update(sign_request("POST", url, headers, body, identity.rsa_key, identity.rsa_key_id,
                                flavour="rfc9421", now=now()))
    return requests.post(url, data=body, headers=headers, timeout=30)


def db_scalars(statement):
    from node.extensions import db

    return db.session.scalars(statement)


def signed_create(node):
    return signed(node, create(node, signed(node, event_object(node))))


def applied_events(node) -> int:
    from node.events.models import Event
    from node.extensions import db

    while node.work_once():
        pass
    return node.query(lambda: db.session.scalar(select(func.count(Event.id)).where(Event.origin_actor_id.isnot(None))))


def follow_accepted(follower, followed) -> None:
    """``follower`` follows ``followed`` (accepted), so it imports its events."""
    from node.extensions import db
    from node.fedi.keystore import get_actor
    from node.fedi.models import Follow

    def setup():
        actor = get_actor(followed.actor)
        db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                              activity_id=f"{follower.url}/follows/{uuid.uuid4()}"))
        db.session.commit()

    follower.query(setup)


@pytest.fixture
def pair(make_node):
    paris = make_node("Les Halles Civiques", "Paris")
    lyon = make_node("La Fabrique Commune", "Lyon")
    follow_accepted(paris, lyon)
    return paris, lyon


def test_a_batch_is_stored_in_one_request_and_each_activity_answered(pair):
    paris, lyon = pair
    activities = [signed_create(lyon) for _ in range(5)]
    response = post_batch(paris, lyon, batch_of(lyon, activities))
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [{"id": activity["id"], "status": 202} for activity in activities]
    assert inbox_count(paris) == 5
    # Stored in the batch's order, the order the worker applies them in (one statement inserts them all).
    from node.fedi.models import InboxItem

    stored = paris.query(lambda: list(db_scalars(select(InboxItem.activity_id).order_by(InboxItem.id))))
    assert stored == [activity["id"] for activity in activities]
    assert applied_events(paris) == 5

    again = post_batch(paris, lyon, batch_of(lyon, activities[:2] + [signed_create(lyon)]))
    assert again.status_code == 202, again.text
    assert [line["status"] for line in again.json()["results"]] == [200, 200, 202]
    assert again.json()["results"][0]["detail"] == "duplicate"
    assert inbox_count(paris) == 6


def test_each_refused_activity_says_why_and_its_neighbours_are_kept(pair, make_node):
    paris, lyon = pair
    marseille = make_node("Le Comptoir des Quartiers", "Marseille")
    valid = signed_create(lyon)
    tampered = signed_create(lyon)
    tampered["object"]["name"] = "Changé en route"
    someone_else = signed_create(marseille)  # another server's activity, without a relay's right to send it
    someone_else.pop("proof")
    no_id = signed_create(lyon)
    no_id.pop("id")
    nested = batch_of(lyon, [signed_create(lyon)])
    foreign_object = signed(lyon, create(lyon, signed(marseille, event_object(marseille))))
    repeated = valid

    response = post_batch(paris, lyon, batch_of(lyon, [valid, tampered, someone_else, no_id, nested,
                                                       foreign_object, repeated]))
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [line["status"] for line in results] == [202, 401, 401, 400, 400, 401, 200]
    assert "proof" in results[1]["detail"]
    assert "disagree" in results[2]["detail"]
    assert "no id" in results[3]["detail"]
    assert "another batch" in results[4]["detail"]
    assert "another origin" in results[5]["detail"]
    assert results[6] == {"id": valid["id"], "status": 200, "detail": "duplicate"}
    assert inbox_count(paris) == 1
    assert applied_events(paris) == 1


def test_an_activity_named_on_another_origin_cannot_take_that_origins_id(pair, make_node):
    """Activity ids are unique in the inbox: were Lyon allowed to name an activity on Marseille's
    origin, Marseille's own activity of that id would later be dropped as a duplicate."""
    paris, lyon = pair
    marseille = make_node("Le Comptoir des Quartiers", "Marseille")
    genuine = signed_create(marseille)
    squatter = signed(lyon, {**create(lyon, signed(lyon, event_object(lyon))), "id": genuine["id"]})
    response = post_batch(paris, lyon, batch_of(lyon, [squatter]))
    assert response.status_code == 202, response.text
    [result] = response.json()["results"]
    assert result["status"] == 401 and "another origin" in result["detail"], result
    alone = post(paris, lyon, squatter)
    assert alone.status_code == 401 and "another origin" in alone.json()["detail"], alone.text
    assert inbox_count(paris) == 0

    answer = post_batch(paris, marseille, batch_of(marseille, [genuine]))
    assert [line["status"] for line in answer.json()["results"]] == [202]
    assert inbox_count(paris) == 1


def test_an_activity_too_large_to_be_posted_alone_is_refused_in_a_batch_too(pair):
    paris, lyon = pair
    huge = signed(lyon, create(lyon, signed(lyon, event_object(lyon, content="x" * 300_000))))
    small = signed_create(lyon)
    response = post_batch(paris, lyon, batch_of(lyon, [huge, small]))
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [line["status"] for line in results] == [413, 202]
    assert "larger than" in results[0]["detail"]
    assert inbox_count(paris) == 1


def test_an_activity_that_fits_a_single_post_fits_in_a_batch(pair):
    """The 256 KiB limit of one POST is measured on the activity as its sender wrote it in the batch:
    written in UTF-8 it fits, as it would posted alone; written with each accented letter as a six-byte
    escape it is as much too large in a batch as it would be alone. What is stored is that text."""
    from node.fedi.models import InboxItem

    paris, lyon = pair
    accented = signed(lyon, create(lyon, signed(lyon, event_object(lyon, content="é" * 100_000))))
    alone = json.dumps(accented, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(alone) < 256 * 1024 < len(json.dumps(accented).encode())
    batch = batch_of(lyon, [accented, signed_create(lyon)])
    response = post_batch(paris, lyon, batch, body=json.dumps(batch, ensure_ascii=False).encode())
    assert [line["status"] for line in response.json()["results"]] == [202, 202]
    assert applied_events(paris) == 2
    query = select(InboxItem.activity).where(InboxItem.activity_id == accented["id"])
    stored = paris.query(lambda: db_scalars(query).one())
    assert stored == accented

    escaped = signed(lyon, create(lyon, signed(lyon, event_object(lyon, content="é" * 100_000))))
    response = post_batch(paris, lyon, batch_of(lyon, [escaped]))  # json.dumps' default: \u00e9
    assert [line["status"] for line in response.json()["results"]] == [413]


def test_a_lone_surrogate_is_stored_escaped_alone_and_in_a_batch(pair):
    """JSON may carry "\\ud800", which no UTF-8 text can hold: an activity without proof (its signed
    request vouches for it) that carries one is stored with the escape, never a 5xx."""
    paris, lyon = pair
    odd = create(lyon, event_object(lyon, name="Atelier \ud800"))
    body = json.dumps(batch_of(lyon, [odd, signed_create(lyon)])).encode()
    assert b"\\ud800" in body
    response = post_batch(paris, lyon, None, body=body)
    assert [line["status"] for line in response.json()["results"]] == [202, 202]
    alone = create(lyon, event_object(lyon, name="Débat \udfff"))
    from tests.network.test_inbox_security import post

    assert post(paris, lyon, alone).status_code == 202
    assert inbox_count(paris) == 3


def test_a_relayed_activity_with_its_origins_proof_is_accepted_in_a_batch(pair, make_node):
    """A peer forwarding (re-sharing) another server's signed Update may batch it with its own."""
    paris, lyon = pair
    marseille = make_node("Le Comptoir des Quartiers", "Marseille")
    relayed = signed_create(marseille)
    response = post_batch(paris, lyon, batch_of(lyon, [relayed, signed_create(lyon)]))
    assert [line["status"] for line in response.json()["results"]] == [202, 202]


@pytest.mark.parametrize("case, status, reason", [
    ("batch actor is not the signer", 401, "disagree"),
    ("too many activities", 413, "send at most 100 at a time"),
    ("too large", 413, "larger"),
    ("tampered after signing", 401, "digest"),
])
def test_a_refused_batch_stores_nothing(pair, make_node, case, status, reason):
    paris, lyon = pair
    body = None
    if case == "batch actor is not the signer":
        marseille = make_node("Le Comptoir des Quartiers", "Marseille")
        batch = batch_of(marseille, [signed_create(marseille)])
    elif case == "too many activities":
        batch = batch_of(lyon, [signed_create(lyon) for _ in range(101)])
    elif case == "too large":
        batch = batch_of(lyon, [signed(lyon, create(lyon, signed(lyon, event_object(lyon, content="x" * 200_000))))
                                for _ in range(11)])
    else:
        batch = batch_of(lyon, [signed_create(lyon)])
    if case == "tampered after signing":
        from federation.httpsig import sign_request

        identity = signer_of(lyon)
        original = json.dumps(batch).encode()
        url = f"{paris.url}/inbox"
        headers = {"Content-Type": "application/activity+json"}
        headers.update(sign_request("POST", url, headers, original, identity.rsa_key, identity.rsa_key_id,
                                flavour="rfc9421", now=now()))
        batch["object"].append(signed_create(lyon))
        response = requests.post(url, data=json.dumps(batch).encode(), headers=headers, timeout=30)
    else:
        response = post_batch(paris, lyon, batch, body=body)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert inbox_count(paris) == 0


def test_the_inbox_budget_counts_the_activities_of_a_batch(make_node):
    paris = make_node("Les Halles Civiques", "Paris", HALLES_RATE_LIMIT_INBOX="6/1h")
    lyon = make_node("La Fabrique Commune", "Lyon")
    first = post_batch(paris, lyon, batch_of(lyon, [signed_create(lyon) for _ in range(4)]))
    assert first.status_code == 202, first.text
    over = post_batch(paris, lyon, batch_of(lyon, [signed_create(lyon) for _ in range(4)]))
    assert over.status_code == 429, over.text
    assert over.headers["Retry-After"]
    too_big = post_batch(paris, lyon, batch_of(lyon, [signed_create(lyon) for _ in range(8)]))
    assert too_big.status_code == 413
    assert "at most 6 at a time" in too_big.json()["detail"]
    assert inbox_count(paris) == 4


def _dialect(node) -> str:
    from node.extensions import db

    return node.query(lambda: db.engine.dialect.name)


def _hold_write_lock(node, seconds: float):
    """A thread holding the SQLite file's write lock for ``seconds``, as the worker does while it applies
    a run; returns it started, once the lock is held."""
    import sqlite3
    import threading

    from node.extensions import db

    path = node.query(lambda: db.engine.url.database)
    held = threading.Event()

    def hold():
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    return thread


def test_a_batch_waits_for_the_write_lock_and_is_stored_once_it_is_free(pair):
    """SQLite: the worker holds the single write lock while it applies a run; a batch arriving then is
    stored as soon as the lock is free (looked for every half millisecond, not after SQLite's 1, 2, 5,
    10 ... ms sleeps)."""
    paris, lyon = pair
    if _dialect(paris) != "sqlite":
        pytest.skip("PostgreSQL locks rows, not the database")
    holder = _hold_write_lock(paris, 0.3)
    started = time.monotonic()
    response = post_batch(paris, lyon, batch_of(lyon, [signed_create(lyon) for _ in range(3)]))
    waited = time.monotonic() - started
    holder.join()
    assert response.status_code == 202, response.text
    assert waited >= 0.25  # it did wait for the lock
    assert inbox_count(paris) == 3


def test_a_batch_that_cannot_get_the_write_lock_in_time_is_answered_503_and_nothing_is_lost(pair, monkeypatch):
    from node.fedi import inbox_store

    paris, lyon = pair
    if _dialect(paris) != "sqlite":
        pytest.skip("PostgreSQL locks rows, not the database")
    first = [signed_create(lyon) for _ in range(2)]
    assert post_batch(paris, lyon, batch_of(lyon, first)).status_code == 202
    monkeypatch.setattr(inbox_store, "_LOCK_WAIT_SECONDS", 0.2)
    activities = [signed_create(lyon) for _ in range(3)]
    holder = _hold_write_lock(paris, 1.0)
    response = post_batch(paris, lyon, batch_of(lyon, activities))
    holder.join()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert "busy" in response.json()["detail"]
    assert inbox_count(paris) == 2  # what was stored before is still there, nothing half-written
    # The sender tries again: everything is stored, and the connection waits as usual again.
    again = post_batch(paris, lyon, batch_of(lyon, activities))
    assert again.status_code == 202, again.text
    assert inbox_count(paris) == 5
    assert applied_events(paris) == 5


def test_a_batch_stored_while_it_is_verified_keeps_its_order_and_each_verdict(pair, monkeypatch):
    """On PostgreSQL the verified activities of a batch are sent to the server a few at a time while the
    next are verified (``BatchStore``); with parts of at least two here (four, then the last one),
    duplicates and refusals fall on both sides of what was already sent, and the outcome is the one of
    storing them all at the end."""
    from node.fedi import inbox_store
    from node.fedi.models import InboxItem

    monkeypatch.setattr(inbox_store, "STORE_CHUNK", 2)
    paris, lyon = pair
    known = signed_create(lyon)
    assert post_batch(paris, lyon, batch_of(lyon, [known])).status_code == 202
    first, second, third, last = (signed_create(lyon) for _ in range(4))
    tampered = signed_create(lyon)
    tampered["object"]["name"] = "Changé en route"
    response = post_batch(paris, lyon, batch_of(lyon, [first, second, third, first, known, tampered, last]))
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [line["status"] for line in results] == [202, 202, 202, 200, 200, 401, 202]
    assert results[3] == {"id": first["id"], "status": 200, "detail": "duplicate"}  # repeated in the batch
    assert results[4] == {"id": known["id"], "status": 200, "detail": "duplicate"}  # stored before
    stored = paris.query(lambda: list(db_scalars(select(InboxItem.activity_id).order_by(InboxItem.id))))
    assert stored == [activity["id"] for activity in (known, first, second, third, last)]
    assert applied_events(paris) == 5


def test_a_batch_that_fails_after_part_of_it_was_sent_stores_none_of_it(pair, monkeypatch):
    """The activities sent while the batch was still being verified are in one transaction with the
    rest: a failure later in the request (here an unexpected error verifying the fifth) stores none
    of them, and the sender's retry stores them all, once."""
    from node.fedi import inbox, inbox_store

    monkeypatch.setattr(inbox_store, "STORE_CHUNK", 2)
    paris, lyon = pair
    activities = [signed_create(lyon) for _ in range(6)]
    verify = inbox.authenticate
    calls = []

    def failing_on_the_fifth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("verification broke down")
        return verify(*args, **kwargs)

    monkeypatch.setattr(inbox, "authenticate", failing_on_the_fifth)
    response = post_batch(paris, lyon, batch_of(lyon, activities))
    assert response.status_code == 500
    assert inbox_count(paris) == 0
    monkeypatch.setattr(inbox, "authenticate", verify)
    again = post_batch(paris, lyon, batch_of(lyon, activities))
    assert again.status_code == 202, again.text
    assert [line["status"] for line in again.json()["results"]] == [202] * 6
    assert inbox_count(paris) == 6
    assert applied_events(paris) == 6
