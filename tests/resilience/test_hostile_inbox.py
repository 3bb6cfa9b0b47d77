"""The inbox of a node that does not allow private addresses, fed by strangers: malformed and huge
bodies, wrong content types, replays, actors and keys that disagree, objects claiming another origin,
and SSRF attempts in every URL a remote can make the node fetch (key ids, actor ids, redirects, DNS
names, announced objects, inboxes). Each is answered 4xx with a reason, nothing is stored, there is
never a 5xx, and no connection ever goes to a private, loopback or link-local address."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.resilience import tally
from tests.resilience.fediworld import ConnectionLog, Remote, RemoteServers, fake_resolver, old

FETCH_DEADLINE = 1.5


@pytest.fixture
def world(make_node, monkeypatch):
    from node.fedi import http

    servers = RemoteServers()
    log = ConnectionLog(servers).install(monkeypatch)
    monkeypatch.setattr(http, "FETCH_DEADLINE", FETCH_DEADLINE)
    # remote.test is a real, public-looking server; its actor document points its inbox at a private
    # address (a delivery there must never leave).
    remote = servers.add(Remote("remote.test", inbox="http://10.0.0.7/inbox"))
    other = servers.add(Remote("other.test"))
    node = make_node("Les Halles Civiques", "Paris", HALLES_ALLOW_PRIVATE_ADDRESSES=False,
                     HALLES_RESOLVER=fake_resolver, HALLES_RATE_LIMIT_INBOX="off")
    yield SimpleNamespace(node=node, remote=remote, other=other, servers=servers, log=log)
    servers.close()


def stored(node) -> dict[str, int]:
    from node.events.models import Event
    from node.extensions import db
    from node.fedi.models import InboxItem, RemoteActor

    return node.query(lambda: {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
                               for model in (InboxItem, RemoteActor, Event)})


def assert_refused(response, status: int | tuple[int, ...], *words: str, case: str = "") -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (case, response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/problem+json"), (case, response.headers)
    detail = response.json()["detail"]
    for word in words:
        assert word.lower() in detail.lower(), (case, detail)


def no_forbidden_connections(world) -> None:
    leaked = world.log.hosts(besides={("127.0.0.1", world.node.port)})
    assert not leaked, f"the node connected to {leaked}"


# --- bodies ------------------------------------------------------------------------------------------

MALFORMED = [
    ("not JSON", b"{not json", 400, "not valid JSON"),
    ("empty", b"", 400, "not valid JSON"),
    ("binary", b"\xff\xfe\x00garbage\x00", 400, "not valid JSON"),
    ("null", b"null", 400, "JSON object"),
    ("array", b"[1, 2]", 400, "JSON object"),
    ("string", b'"Create"', 400, "JSON object"),
    ("overflowing number", b"1e999999", 400, "JSON object"),
    ("nested objects", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, 400, "JSON"),
    ("nested arrays", b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
    ("nested but small", json.dumps({"id": "https://remote.test/a", "type": "Create", "actor": "https://remote.test/actor",
                                     "object": json.loads('{"x":' * 40 + "1" + "}" * 40)}).encode(), 400, "nested"),
    ("no id", json.dumps({"type": "Create", "actor": "http://remote.test/actor"}).encode(), 400, "no id"),
    ("id not a URL", json.dumps({"id": "javascript:alert(1)", "type": "Create",
                                 "actor": "http://remote.test/actor"}).encode(), 400, "http(s) URL"),
    ("id a number", json.dumps({"id": 42, "type": "Create", "actor": "http://remote.test/actor"}).encode(), 400, "id"),
    ("type a list", json.dumps({"id": "http://remote.test/a/1", "type": ["Create"],
                                "actor": "http://remote.test/actor"}).encode(), 400, "type"),
    ("actor a number", json.dumps({"id": "http://remote.test/a/1", "type": "Create", "actor": 7}).encode(), 400,
     "actor"),
    ("NaN", b'{"id": "http://remote.test/a/1", "type": "Create", "actor": "http://remote.test/actor", "n": NaN}',
     400, "not valid JSON"),
    ("huge", json.dumps({"id": "http://remote.test/a/1", "type": "Create", "actor": "http://remote.test/actor",
                         "padding": "x" * 300_000}).encode(), 413, "larger"),
    ("beyond the server's limit", b'{"padding": "' + b"x" * 2_000_000 + b'"}', 413, "larger"),
]


def test_malformed_bodies(world):
    before = stored(world.node)
    for case, body, status, words in MALFORMED:
        response = world.remote.post(world.node.url, None, body=body)
        assert_refused(response, status, words, case=case)
        assert stored(world.node) == before, case
        tally.inputs("inbox: malformed or oversized bodies")


def test_a_huge_chunked_body_without_length_is_refused(world):
    before = stored(world.node)

    def chunks():
        for _ in range(300):
            yield b"x" * 10_000

    response = requests.post(f"{world.node.url}/inbox", data=chunks(), timeout=30,
                             headers={"Content-Type": "application/activity+json"})
    assert response.status_code in (400, 413), response.text[:300]
    assert stored(world.node) == before
    tally.inputs("inbox: malformed or oversized bodies")


CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/xml", "", "text/html; charset=utf-8", "application/jsonx"]


def test_wrong_content_types_and_methods(world):
    activity = world.remote.activity("Create", world.remote.prove(world.remote.event()))
    for content_type in CONTENT_TYPES:
        response = world.remote.post(world.node.url, activity, content_type=content_type)
        assert_refused(response, 415, "application/activity+json", case=content_type)
        tally.inputs("inbox: wrong content types")
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = requests.request(method, f"{world.node.url}/inbox", timeout=10, data=b"{}",
                                    headers={"Content-Type": "application/activity+json"})
        assert response.status_code == 405, method
        assert response.headers["Content-Type"].startswith("application/problem+json")
        tally.inputs("inbox: wrong methods")
    assert stored(world.node)["inbox_items"] == 0


# --- replays and forgeries ------------------------------------------------------------------------------


def test_replays(world):
    node, remote = world.node, world.remote
    activity = remote.activity("Create", remote.prove(remote.event()))
    body = json.dumps(activity).encode()
    url = f"{node.url}/inbox"
    headers = remote.signed_headers(url, body)
    first = requests.post(url, data=body, headers=headers, timeout=30)
    assert first.status_code == 202, first.text
    # The very same request again and again: acknowledged as a duplicate, stored once.
    for _ in range(5):
        again = requests.post(url, data=body, headers=headers, timeout=30)
        assert again.status_code == 202 and again.headers.get("X-Halles-Duplicate") == "1"
    assert stored(node)["inbox_items"] == 1
    # The captured signature on another body (a new activity id): the digest does not match.
    other = json.dumps(remote.activity("Create", remote.prove(remote.event()))).encode()
    assert_refused(requests.post(url, data=other, headers=headers, timeout=30), 401, "digest")
    # The captured signature sent to the other inbox URL: it signed the target URI.
    assert_refused(requests.post(f"{node.url}/actor/inbox", data=body.replace(b"Create", b"Create "),
                                 headers=headers, timeout=30), 401)
    # A request signed 13 hours ago (the window is 12, as Mastodon's), for an activity never seen, and
    # one dated two hours ahead (beyond the hour of clock skew allowed).
    late = remote.activity("Create", remote.prove(remote.event()))
    assert_refused(remote.post(node.url, late, when=old(13)), 401, "signature expired")
    assert_refused(remote.post(node.url, late, when=old(-2)), 401, "signature from the future")
    assert stored(node)["inbox_items"] == 1
    tally.inputs("inbox: replays", 10)


def test_forgeries(world):
    node, remote, other = world.node, world.remote, world.other
    cases = [
        # signed by remote.test, claiming to be other.test
        ("actor and key disagree", remote.post(node.url, other.activity("Create", other.prove(other.event()))),
         "disagree"),
        # an activity named on another origin: it would take that origin's id in the inbox
        ("activity id of another origin",
         remote.post(node.url, remote.activity("Create", remote.prove(remote.event()),
                                               id=f"{other.base}/activities/{uuid.uuid4()}")),
         "another origin"),
        # the object lives on another origin than the actor
        ("object of another origin", remote.post(node.url, remote.activity("Create", other.prove(other.event()))),
         "another origin"),
        ("attributed to another origin",
         remote.post(node.url, remote.activity("Create", remote.prove(remote.event(attributedTo=other.actor)))),
         "attributed"),
        ("update of another origin's object",
         remote.post(node.url, remote.activity("Update", other.prove(other.event()))), "another origin"),
        ("delete of another origin's object",
         remote.post(node.url, remote.activity("Delete", f"{other.base}/events/1")), "another origin"),
        # a "forwarded" activity of other.test whose proof was made with remote.test's key
        ("forwarded with a foreign proof",
         remote.post(node.url, remote.prove(other.activity("Create", other.prove(other.event())))), "forwarded"),
        ("tampered object proof",
         remote.post(node.url, remote.activity("Create", {**remote.prove(remote.event()), "name": "Changé"})),
         "object proof"),
        ("re-share without the origin's proof",
         remote.post(node.url, remote.activity("Announce", other.event())), "proof"),
        ("signed with a key the actor does not list",
         remote.post(node.url, remote.activity("Create", remote.prove(remote.event())),
                     key_id=f"{remote.actor}#another-key"), "unknown key"),
        ("key whose owner is another actor",
         remote.post(node.url, remote.activity("Create", remote.prove(remote.event())),
                     key_id=f"{remote.base}/key-claims-other#main-key"), "HTTP signature"),
    ]
    world.servers.documents[("remote.test", "/key-claims-other")] = {
        **remote.document(), "id": f"{remote.base}/key-claims-other",
        "publicKey": {**remote.document()["publicKey"], "id": f"{remote.base}/key-claims-other#main-key",
                      "owner": other.actor},
    }
    for name, response, words in cases:
        assert response.status_code == 401, (name, response.status_code, response.text[:300])
        assert words.lower() in response.json()["detail"].lower(), (name, response.json()["detail"])
    assert stored(node)["inbox_items"] == 0
    tally.inputs("inbox: forged actors, keys, origins and proofs", len(cases))


# --- SSRF -------------------------------------------------------------------------------------------------

KEY_SSRF = [
    ("literal private", "http://10.0.0.7/actor#main-key", "private address"),
    ("cloud metadata", "http://169.254.169.254/latest/meta-data/iam#k", "link-local"),
    ("loopback", "http://127.0.0.1:9/actor#k", "loopback"),
    ("IPv6 loopback", "http://[::1]/actor#k", "loopback"),
    ("IPv6 link-local", "http://[fe80::1]/actor#k", "link-local"),
    ("localhost", "http://localhost:9/actor#k", "loopback"),
    ("decimal IPv4", "http://2130706433/actor#k", "loopback"),
    ("short IPv4", "http://127.1/actor#k", "loopback"),
    ("unspecified", "http://0.0.0.0/actor#k", "address not allowed"),
    ("name to private", "http://private.test/actor#k", "private address"),
    ("name to metadata", "http://metadata.test/latest#k", "link-local"),
    ("one answer of two private", "http://mixed.test/actor#k", "private address"),
    ("name to unique local", "http://ula.test/actor#k", "unique local"),
    ("name to IPv4-mapped loopback", "http://mapped.test/actor#k", "IPv4-mapped"),
    ("name to shared (CGNAT)", "http://cgnat.test/actor#k", "address not allowed"),
    ("name to NAT64", "http://nat64.test/actor#k", "embedding"),
    ("redirect to private", "http://remote.test/redirect?to=http://10.0.0.7/actor#k", "private address"),
    ("redirect to loopback", "http://remote.test/redirect?to=http://127.0.0.1:9/actor#k", "loopback"),
    ("redirect to metadata by name", "http://remote.test/redirect?to=http://metadata.test/latest#k", "link-local"),
    ("redirect to another scheme", "http://remote.test/redirect?to=file:///etc/passwd#k", "scheme"),
    ("file scheme", "file:///etc/passwd#k", "scheme"),
    ("gopher scheme", "gopher://remote.test/actor#k", "scheme"),
    ("credentials in URL", "http://user:secret@remote.test/actor#k", "credentials"),
    ("trickling key document", "http://remote.test/slow#k", "cut off"),
    ("huge key document", "http://remote.test/huge#k", "too large"),
    ("HTML instead of JSON", "http://remote.test/html#k", "content type"),
]


def test_key_ids_the_node_must_not_fetch(world):
    for case, key_id, reason in KEY_SSRF:
        activity = world.remote.activity("Create", world.remote.prove(world.remote.event()))
        started = time.monotonic()
        response = world.remote.post(world.node.url, activity, key_id=key_id)
        elapsed = time.monotonic() - started
        assert_refused(response, 401, "unknown key", reason, case=case)
        assert stored(world.node) == {"inbox_items": 0, "remote_actors": 0, "events": 0}, case
        no_forbidden_connections(world)
        # A lookup that cannot succeed is cut short: a handful of fetches, each within the deadline.
        assert elapsed < 4 * FETCH_DEADLINE + 4, (case, elapsed)
        tally.inputs("inbox: SSRF key ids")


ANNOUNCE_SSRF = [
    ("literal private", "http://10.0.0.7/events/1", "private address"),
    ("metadata", "http://169.254.169.254/latest/meta-data/", "link-local"),
    ("name to private", "http://private.test/events/1", "private address"),
    ("name to loopback", "http://localhost/events/1", "loopback"),
    ("scheme", "ftp://remote.test/events/1", "scheme"),
]


def test_announced_urls_the_node_must_not_fetch(world):
    for case, url, reason in ANNOUNCE_SSRF:
        response = world.remote.post(world.node.url, world.remote.activity("Announce", url))
        assert_refused(response, 400, "announced object URL is refused", reason, case=case)
        assert stored(world.node)["inbox_items"] == 0, case
        no_forbidden_connections(world)
        tally.inputs("inbox: SSRF announced URLs")


def test_urls_met_later_are_refused_when_they_are_used(world):
    """What passes the inbox (a followed server announcing its own URL that redirects to a private
    address; an actor whose inbox is private) is refused when the worker gets to it, without a
    connection, and the reason is recorded."""
    from node.extensions import db
    from node.fedi.keystore import get_actor
    from node.fedi.models import Delivery, Follow, InboxItem, RemoteActor

    node, remote = world.node, world.remote

    def follow_remote():
        actor = get_actor(remote.actor)
        db.session.add(Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                              activity_id=f"{node.url}/activities/follow-remote"))
        db.session.commit()

    node.query(follow_remote)
    redirect = f"{remote.base}/redirect?to=http://10.0.0.7/events/1"
    announce = remote.post(node.url, remote.activity("Announce", redirect))
    assert announce.status_code == 202, announce.text
    # Any fediverse account may follow the public agenda: accepted, and the Accept goes to its inbox.
    follow = remote.post(node.url, remote.activity("Follow", node.actor))
    assert follow.status_code == 202, follow.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        node.work_once()
        rows = node.query(lambda: db.session.execute(select(Delivery.state, Delivery.last_error)).all())
        if rows and all(state == "dead" for state, _error in rows):
            break
        time.sleep(0.1)
    items = node.query(lambda: dict(db.session.execute(select(InboxItem.activity_type, InboxItem.error)).all()))
    assert "private address" in (items["Announce"] or ""), items
    assert node.query(lambda: db.session.scalar(select(func.count(RemoteActor.id)))) == 1
    assert rows and all(state == "dead" and "private address" in error for state, error in rows), rows
    no_forbidden_connections(world)
    tally.inputs("inbox: SSRF URLs used later", 2)


# --- random activities from a server with a valid key -------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30) | st.sampled_from(["http://remote.test/actor", "http://other.test/x", "http://10.0.0.7/",
                                               "Event", "Create", "2031-01-01T00:00:00Z", ""]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "type", "actor", "object", "name", "startTime", "endTime", "attributedTo", "location",
                         "proof", "tag", "to", "cc", "url", "updated", "content", "x"]) | st.text(max_size=8),
        children, max_size=6),
    max_leaves=25,
)
activity_types = st.sampled_from(["Create", "Update", "Delete", "Announce", "Follow", "Undo", "Accept", "Reject",
                                  "Like", "Dance", "Add", "Remove", "Flag", "Block", "Move"])


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(kind=activity_types, obj=json_values, extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_random_signed_activities_never_cause_a_server_error(world, kind, obj, extra):
    """Whatever a server with a valid key sends: never a 5xx, a 4xx stores nothing, and the worker
    applies or ignores what was stored without a handler crashing."""
    from node.extensions import db
    from node.fedi.models import InboxItem

    node, remote = world.node, world.remote
    activity = {**extra, **remote.activity(kind, obj)}
    before = stored(node)["inbox_items"]
    response = remote.post(node.url, activity)
    tally.inputs("inbox: random signed activities")
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.json()["detail"]
        assert stored(node)["inbox_items"] == before
        return
    assert response.status_code == 202
    node.work_once()
    states = node.query(lambda: db.session.execute(
        select(InboxItem.state, InboxItem.error).where(InboxItem.state.in_(("pending", "failed")))).all())
    assert not states, states
    no_forbidden_connections(world)


def test_signed_requests_with_timestamps_everywhere(world):
    """Signature dates a stranger controls: a year off either way is refused, a quarter hour is fine."""
    for hours, status in ((24 * 365, 401), (-24 * 365, 401), (0.25, 202), (-0.25, 202)):
        activity = world.remote.activity("Create", world.remote.prove(world.remote.event()))
        response = world.remote.post(world.node.url, activity, when=old(hours))
        assert response.status_code == status, response.text
        if status == 401:
            assert "HTTP signature" in response.json()["detail"]
    tally.inputs("inbox: signature windows", 4)
