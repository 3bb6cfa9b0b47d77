"""The response cache of the public listings (node/common/microcache.py, HALLES_LISTING_CACHE_SECONDS)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text

from node.common.microcache import ResponseCache
from tests.events.conftest import event_body


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app(make_app):
    """This module's node caches its listings for 5 s (of a fake clock); ``world`` lives on it."""
    return make_app(HALLES_LISTING_CACHE_SECONDS=5)


@pytest.fixture
def cached(app, world):
    cache = app.wsgi_app
    assert isinstance(cache, ResponseCache)
    cache.clock = FakeClock()
    return app, cache


def _titles(client, **params) -> list[str]:
    response = client.get("/api/v1/events", query_string={"limit": 100, **params})
    assert response.status_code == 200
    return [item["title"] for item in response.get_json()["items"]]


def test_a_second_anonymous_request_is_served_from_memory(cached):
    app, cache = cached
    client = app.test_client(use_cookies=False)
    first = client.get("/api/v1/events")
    second = client.get("/api/v1/events")
    assert first.status_code == second.status_code == 200
    assert second.data == first.data
    assert "Age" not in first.headers and second.headers["Age"] == "0"
    assert (cache.misses, cache.hits) == (1, 1)
    # Another query string is another entry.
    client.get("/api/v1/events?scope=network")
    assert cache.misses == 2


def test_a_write_through_this_process_shows_on_the_next_request(cached, world):
    app, cache = cached
    client = app.test_client(use_cookies=False)
    assert _titles(client) == []
    response = client.post("/api/v1/events", json=event_body(title="Assemblée de quartier"),
                           headers=world["headers"]["manager_a"])
    assert response.status_code == 201
    assert _titles(client) == ["Assemblée de quartier"]
    # So does a direct ORM write (the worker's code path in this process, tests, CLI commands).
    from node.events.models import Event
    from node.extensions import db

    with app.app_context():
        event = db.session.scalars(db.select(Event)).one()
        event.title = "Assemblée renommée"
        db.session.commit()
    assert _titles(client) == ["Assemblée renommée"]


def test_what_another_process_wrote_shows_within_the_ttl(cached, world):
    app, cache = cached
    client = app.test_client(use_cookies=False)
    client.post("/api/v1/events", json=event_body(title="Avant"), headers=world["headers"]["manager_a"])
    assert _titles(client) == ["Avant"]
    # A write this process's sessions do not see: another connection, as another process would.
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.begin() as connection:
        connection.execute(text("UPDATE events SET title = 'Après'"))
    engine.dispose()
    assert _titles(client) == ["Avant"]
    cache.clock.now += 5
    assert _titles(client) == ["Après"]


def test_requests_with_credentials_are_never_served_from_the_cache(cached, world):
    app, cache = cached
    client = app.test_client(use_cookies=False)
    manager = world["headers"]["manager_a"]
    client.post("/api/v1/events", json=event_body(title="Réservé aux membres", visibility="members"),
                headers=manager)
    assert _titles(client) == []
    assert _titles(client) == []
    assert _titles(client, **{}) == [] and cache.hits >= 1
    response = client.get("/api/v1/events", query_string={"limit": 100}, headers=manager)
    assert [item["title"] for item in response.get_json()["items"]] == ["Réservé aux membres"]
    hits = cache.hits
    client.get("/api/v1/events", query_string={"limit": 100}, headers={"Cookie": "session=x"})
    client.get("/api/v1/events", query_string={"limit": 100}, headers={"Signature": "x"})
    assert cache.hits == hits


def test_if_none_match_is_answered_304_from_the_cache(cached):
    app, cache = cached
    client = app.test_client(use_cookies=False)
    first = client.get("/api/v1/events")
    etag = first.headers["ETag"]
    again = client.get("/api/v1/events", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert cache.hits == 1
    assert client.get("/api/v1/events", headers={"If-None-Match": 'W/"other"'}).status_code == 200


def test_errors_are_not_kept(cached):
    app, cache = cached
    client = app.test_client(use_cookies=False)
    assert client.get("/api/v1/events?from=soon").status_code == 422
    assert client.get("/api/v1/events?from=soon").status_code == 422
    assert cache.hits == 0 and not cache.entries


def test_feeds_and_widget_are_cached_too_and_other_paths_are_not(cached):
    app, cache = cached
    client = app.test_client(use_cookies=False)
    for path in ("/", "/events", "/events.ics", "/events.atom", "/embed"):
        assert client.get(path).status_code == 200
        assert client.get(path).headers.get("Age") == "0", path
    hits = cache.hits
    client.get("/healthz")
    client.get("/healthz")
    assert cache.hits == hits


def test_zero_turns_the_cache_off(make_app):
    app = make_app(HALLES_LISTING_CACHE_SECONDS=0)
    assert not isinstance(app.wsgi_app, ResponseCache)


# --- the middleware alone -------------------------------------------------------------------------


def _counting_app(calls: list, *, status="200 OK", headers=(), delay=0.0):
    def app(environ, start_response):
        calls.append(environ["QUERY_STRING"])
        time.sleep(delay)
        start_response(status, [("Content-Type", "text/plain"), *headers])
        return [f"answer {len(calls)}".encode()]

    return app


def _get(cache, query="", **environ):
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    body = b"".join(cache({"REQUEST_METHOD": "GET", "PATH_INFO": "/list", "QUERY_STRING": query,
                           "wsgi.url_scheme": "http", **environ}, start_response))
    return captured["status"], body


def test_concurrent_misses_compute_the_answer_once():
    calls: list = []
    cache = ResponseCache(_counting_app(calls, delay=0.2), paths=["/list"], ttl=10)
    results = []
    threads = [threading.Thread(target=lambda: results.append(_get(cache))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert {body for _status, body in results} == {b"answer 1"}


def test_answers_that_must_not_be_shared_are_not_kept():
    for headers in ([("Set-Cookie", "a=b")], [("Cache-Control", "private")], [("Cache-Control", "no-store")]):
        calls: list = []
        cache = ResponseCache(_counting_app(calls, headers=headers), paths=["/list"], ttl=10)
        _get(cache)
        _get(cache)
        assert len(calls) == 2, headers


def test_memory_is_bounded_least_recently_used_out():
    calls: list = []
    cache = ResponseCache(_counting_app(calls), paths=["/list"], ttl=10, max_entries=3)
    for n in range(3):
        _get(cache, f"n={n}")
    _get(cache, "n=0")  # used again: n=1 is now the oldest
    _get(cache, "n=3")
    assert len(cache.entries) == 3
    assert {key[1] for key in cache.entries} == {"n=0", "n=2", "n=3"}
    big = ResponseCache(_counting_app(calls), paths=["/list"], ttl=10, max_body_bytes=3)
    _get(big)
    assert not big.entries


def test_an_expired_answer_is_served_while_one_thread_rebuilds_it():
    calls: list = []
    clock = FakeClock()
    release = threading.Event()

    def slow_second(environ, start_response):
        calls.append(1)
        if len(calls) == 2:
            release.wait(5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"answer {len(calls)}".encode()]

    cache = ResponseCache(slow_second, paths=["/list"], ttl=1, clock=clock)
    assert _get(cache)[1] == b"answer 1"
    clock.now += 2
    rebuilding = threading.Thread(target=_get, args=(cache,))
    rebuilding.start()
    while len(calls) < 2:
        time.sleep(0.01)
    # Meanwhile: the previous answer, at once, not a wait.
    assert _get(cache)[1] == b"answer 1"
    release.set()
    rebuilding.join()
    assert _get(cache)[1] == b"answer 2" and len(calls) == 2


def test_a_page_asked_for_with_a_cookie_is_never_served_from_the_cache(cached, world):
    """A browser with a session (signed in, or holding a flashed message) sends its cookie: its pages
    are built for it alone, and the anonymous copy is left as it was."""
    app, cache = cached
    visitor = app.test_client()
    anonymous_page = visitor.get("/events").get_data(as_text=True)
    member = app.test_client()
    member.set_cookie("session", "anything")  # any cookie: the request is not served from the cache
    hits = cache.hits
    member.get("/events")
    assert cache.hits == hits
    assert visitor.get("/events").get_data(as_text=True) == anonymous_page


def test_waiters_do_not_hang_when_the_computation_fails():
    calls: list = []
    started = threading.Event()

    def failing_then_fine(environ, start_response):
        calls.append(1)
        if len(calls) == 1:
            started.set()
            time.sleep(0.2)
            raise RuntimeError("the database went away")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"fine"]

    cache = ResponseCache(failing_then_fine, paths=["/list"], ttl=10)
    errors = []

    def leader():
        try:
            _get(cache)
        except RuntimeError as exc:
            errors.append(exc)

    first = threading.Thread(target=leader)
    first.start()
    started.wait(5)
    began = time.monotonic()
    assert _get(cache)[1] == b"fine"  # waited for the leader, then computed its own answer
    assert time.monotonic() - began < 5
    first.join()
    assert len(errors) == 1 and not cache.flights
