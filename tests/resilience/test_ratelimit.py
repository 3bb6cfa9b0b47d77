"""Rate limits: the token bucket itself (exact bound over any stretch of time, shared by concurrent
clients, Retry-After that is honest) and the limits in place — the inbox per remote server,
registrations and sign-in attempts per client address — answering 429 problems that change nothing."""

from __future__ import annotations

import math
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.common import ratelimit
from node.common.ratelimit import Rate, parse_rate
from node.config import ConfigError, load, validate
from tests.network.test_inbox_security import create, event_object, inbox_count, post, signed
from tests.resilience import tally
from tests.resilience.support import create_local_event

# --- parsing and configuration --------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("10/1m", Rate(10, 60)), ("300/1h", Rate(300, 3600)), ("5/30s", Rate(5, 30)), ("5/30", Rate(5, 30)),
    ("2/m", Rate(2, 60)), (" 7 / 2d ", Rate(7, 172800)), ("1/0.5s", Rate(1, 0.5)),
    ("off", None), ("0", None), ("", None), ("0/1m", None),
])
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["ten per minute", "10", "10/-1m", "10/1y", "1/0s", "-3/1m"])
def test_parse_rate_refuses_with_an_example(text):
    with pytest.raises(ValueError, match="COUNT/PERIOD"):
        parse_rate(text)


def test_rate_reads_as_words():
    assert str(Rate(10, 300)) == "10 per 5 minutes"
    assert str(Rate(300, 3600)) == "300 per hour"
    assert str(Rate(5, 30)) == "5 per 30 seconds"


def test_limits_come_from_the_environment_and_are_validated(tmp_path):
    environ = {"HALLES_INSTANCE": str(tmp_path), "HALLES_RATE_LIMIT_LOGIN": "5/1m", "HALLES_RATE_LIMIT_INBOX": "off",
               "HALLES_RATE_LIMIT_REGISTRATIONS": "lots", "HALLES_SECRET_KEY": "x"}
    config = load(environ=environ)
    assert config["HALLES_RATE_LIMIT_LOGIN"] == "5/1m"
    with pytest.raises(ConfigError) as refused:
        validate(config)
    message = str(refused.value)
    assert "HALLES_RATE_LIMIT_REGISTRATIONS" in message and "COUNT/PERIOD" in message
    assert "HALLES_RATE_LIMIT_LOGIN" not in message and "HALLES_RATE_LIMIT_INBOX" not in message
    defaults = load(environ={"HALLES_INSTANCE": str(tmp_path)})
    assert {name: defaults[key] for name, (key, _env, _default) in ratelimit.LIMITS.items()} == {
        "inbox": "300/1m", "inbox_partners": "6000/1m", "registrations": "30/10m", "login": "10/5m"}
    wrong = load(environ={"HALLES_INSTANCE": str(tmp_path), "HALLES_SECRET_KEY": "x",
                          "HALLES_RATE_LIMIT_INBOX_PARTNERS": "6000 a minute"})
    with pytest.raises(ConfigError, match="HALLES_RATE_LIMIT_INBOX_PARTNERS"):
        validate(wrong)


def waits_about(response, seconds: int) -> bool:
    """``Retry-After`` names the time until a token is back: ``seconds`` from the first take, less the
    time the test took since (a slow machine takes more than a second; a test never asserts a time)."""
    return seconds - 60 <= int(response.headers["Retry-After"]) <= seconds


# --- the bucket -----------------------------------------------------------------------------------


def fresh_key() -> str:
    return f"client-{uuid.uuid4().hex}"


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(1, 12),
    seconds=st.sampled_from([1.0, 10.0, 60.0]),
    gaps=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=60),
)
def test_no_stretch_of_time_lets_more_through_than_the_rate(app_ctx, count, seconds, gaps):
    rate = Rate(count, seconds)
    key = fresh_key()
    now = 1_000_000.0
    accepted: list[float] = []
    for gap in gaps:
        now += gap
        if ratelimit.take("test", key, rate, now=now).allowed:
            accepted.append(now)
    tally.inputs("rate-limit timeline requests", len(gaps))
    # Over any window [a, b] a client gets at most count + (b - a) * rate through.
    for i, start in enumerate(accepted):
        for j in range(i, len(accepted)):
            assert j - i + 1 <= count + (accepted[j] - start) * rate.per_second + 1e-6
    # And the bucket is not stingy: the first `count` requests always pass.
    assert len(accepted) >= min(count, len(gaps))


def test_retry_after_is_when_a_token_is_back(app_ctx):
    rate = Rate(3, 60)  # one token every 20 s
    key = fresh_key()
    for _ in range(3):
        assert ratelimit.take("test", key, rate, now=100.0).allowed
    refused = ratelimit.take("test", key, rate, now=100.0)
    assert not refused.allowed and refused.retry_after == 20
    assert not ratelimit.take("test", key, rate, now=100.0 + refused.retry_after - 1).allowed
    later = ratelimit.take("test", key, rate, now=100.0 + refused.retry_after)
    assert later.allowed and later.remaining == 0
    # Refused requests do not spend: waiting the announced time always works.
    again = ratelimit.take("test", key, rate, now=125.0)
    assert not again.allowed and again.retry_after == math.ceil(20 - 5)


def test_remaining_counts_down_and_clients_are_separate(app_ctx):
    rate = Rate(2, 60)
    assert [ratelimit.take("test", "a", rate, now=1.0).remaining for _ in range(2)] == [1, 0]
    assert not ratelimit.take("test", "a", rate, now=1.0).allowed
    assert ratelimit.take("test", "b", rate, now=1.0).allowed
    assert ratelimit.take("other", "a", rate, now=1.0).allowed  # another limit, another bucket


def test_a_clock_going_back_refills_nothing(app_ctx):
    rate = Rate(1, 60)
    assert ratelimit.take("test", "skewed", rate, now=1000.0).allowed
    assert not ratelimit.take("test", "skewed", rate, now=900.0).allowed
    assert not ratelimit.take("test", "skewed", rate, now=1059.0).allowed
    assert ratelimit.take("test", "skewed", rate, now=1060.0).allowed


def test_peek_reads_without_spending(app_ctx):
    rate = Rate(1, 60)
    assert ratelimit.peek("test", "p", rate, now=10.0).allowed
    assert ratelimit.peek("test", "p", rate, now=10.0).allowed
    assert ratelimit.take("test", "p", rate, now=10.0).allowed
    assert ratelimit.peek("test", "p", rate, now=11.0) == ratelimit.Decision(False, 0, 59)


def test_long_client_keys_are_hashed(app_ctx):
    rate = Rate(1, 60)
    client = "x" * 1000
    assert ratelimit.take("test", client, rate, now=1.0).allowed
    assert not ratelimit.take("test", client, rate, now=1.0).allowed


def test_prune_deletes_only_full_buckets_of_that_limit(app):
    from sqlalchemy import select

    from node.common.ratelimit import RateLimitBucket

    app.config["HALLES_RATE_LIMIT_LOGIN"] = "5/1m"
    with app.app_context():
        ratelimit.take("login", "old", Rate(5, 60), now=1000.0)
        ratelimit.take("login", "recent", Rate(5, 60), now=1100.0)
        ratelimit.take("inbox", "old", Rate(5, 60), now=1000.0)
        assert ratelimit.prune("login", now=1130.0) == 1
        with ratelimit.bucket_engine().connect() as connection:
            keys = set(connection.scalars(select(RateLimitBucket.key)))
    assert keys == {"login:recent", "inbox:old"}


def test_concurrent_clients_share_one_budget_exactly(app):
    """Threads with their own connections (as gunicorn workers have) take from one bucket: exactly
    the budget passes, never more (PostgreSQL row lock, SQLite single writer)."""
    rate = Rate(40, 3600)
    results: list[bool] = []
    lock = threading.Lock()

    def client():
        with app.app_context():
            for _ in range(15):
                allowed = ratelimit.take("test", "shared", rate).allowed
                with lock:
                    results.append(allowed)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    tally.inputs("rate-limit concurrent requests", len(results))
    assert len(results) == 120
    assert results.count(True) == 40


def _bucket_tokens(key: str) -> float:
    from sqlalchemy import select

    from node.common.ratelimit import RateLimitBucket

    with ratelimit.bucket_engine().connect() as connection:
        return connection.scalar(select(RateLimitBucket.tokens).where(RateLimitBucket.key == key))


def test_large_budgets_are_spent_from_a_lease_and_never_exceeded(make_app):
    """A budget of 6400 an hour: one database take serves a lease of 64 requests; and a budget of 64
    an hour (leases of 2) lets exactly 64 through, the lease's tokens being part of the budget."""
    app = make_app(HALLES_RATE_LIMIT_INBOX="6400/1h")
    with app.app_context():
        assert ratelimit.lease_size(Rate(6400, 3600)) == 64
        for _ in range(10):
            ratelimit.enforce("inbox", "leased.example")
        assert _bucket_tokens("inbox:leased.example") == 6400 - 64  # one take for ten requests
    app = make_app(HALLES_RATE_LIMIT_INBOX="64/1h")
    with app.app_context():
        assert ratelimit.lease_size(Rate(64, 3600)) == 2
        outcomes = []
        for _ in range(80):
            try:
                ratelimit.enforce("inbox", "small.example")
                outcomes.append(True)
            except ratelimit.TooManyRequests as refused:
                assert int(refused.headers["Retry-After"]) >= 1
                outcomes.append(False)
    assert outcomes == [True] * 64 + [False] * 16
    tally.inputs("rate-limit leased requests", 90)


def test_budgets_below_the_lease_size_are_taken_token_by_token(app_ctx):
    assert ratelimit.lease_size(Rate(63, 60)) == 1
    assert ratelimit.lease_size(Rate(300, 60)) == 9


def test_client_address_groups_ipv6_by_64(app):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "2001:db8:1:2:aaaa::1"}):
        assert ratelimit.client_address() == "2001:db8:1:2::/64"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "::ffff:198.51.100.7"}):
        assert ratelimit.client_address() == "198.51.100.7"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "198.51.100.7"}):
        assert ratelimit.client_address() == "198.51.100.7"


# --- the limits in place ----------------------------------------------------------------------------


def assert_429(response, *, words: str) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    body = response.get_json()
    assert body["status"] == 429 and body["retry_after"] == retry_after
    assert words in body["detail"] and f"try again in {retry_after} s" in body["detail"]


@pytest.fixture
def limited_app(make_app):
    return make_app(HALLES_RATE_LIMIT_REGISTRATIONS="3/1h", HALLES_RATE_LIMIT_LOGIN="2/1h")


def test_registrations_are_limited_per_address_and_the_429_changes_nothing(limited_app, count_rows):
    client = limited_app.test_client()
    event = create_local_event(limited_app, capacity=100)
    url = f"/api/v1/events/{event}/registrations"
    one = {"REMOTE_ADDR": "198.51.100.7"}
    statuses = [client.post(url, json={"name": f"P{n}", "email": f"p{n}@example.org"}, environ_base=one).status_code
                for n in range(2)]
    # A bad request spends a token too: each try costs the node a parse and a lookup.
    statuses.append(client.post(url, json={"name": "no email"}, environ_base=one).status_code)
    assert statuses == [201, 201, 422]
    before = count_rows(limited_app)
    refused = client.post(url, json={"name": "P9", "email": "p9@example.org"}, environ_base=one)
    assert_429(refused, words="too many registrations from 198.51.100.7")
    assert count_rows(limited_app) == before
    other = client.post(url, json={"name": "Q", "email": "q@example.org"}, environ_base={"REMOTE_ADDR": "198.51.100.8"})
    assert other.status_code == 201
    # Reading is never limited.
    assert client.get(f"/api/v1/events/{event}", environ_base=one).status_code == 200
    tally.inputs("rate-limited requests", 5)


def test_sign_in_limit_counts_failures_only(make_app):
    from flask import abort

    from node.common.ratelimit import rate_limited

    app = make_app(HALLES_RATE_LIMIT_LOGIN="2/1h")

    @app.post("/try-login")
    @rate_limited("login", failures_only=True)
    def try_login():
        from flask import request

        if request.form.get("password") != "right":
            abort(401)
        return "welcome"

    client = app.test_client()
    for _ in range(5):
        assert client.post("/try-login", data={"password": "right"}).status_code == 200
    assert client.post("/try-login", data={"password": "wrong"}).status_code == 401
    assert client.post("/try-login", data={"password": "wrong"}).status_code == 401
    # The bucket is empty: even the right password waits (a guesser cannot tell).
    refused = client.post("/try-login", data={"password": "right"}, headers={"Accept": "application/json"})
    assert_429(refused, words="too many sign-in attempts")
    # Another address is not affected.
    assert client.post("/try-login", data={"password": "right"},
                       environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code == 200


def test_password_reset_requests_spend_sign_in_tokens(limited_app, count_rows):
    client = limited_app.test_client()
    for _ in range(2):
        assert client.post("/api/v1/password-resets", json={"email": "nobody@example.org"}).status_code == 202
    before = count_rows(limited_app)
    assert_429(client.post("/api/v1/password-resets", json={"email": "nobody@example.org"}),
               words="too many sign-in attempts")
    assert count_rows(limited_app) == before


def test_html_pages_get_the_429_with_retry_after(make_app):
    from node.common.ratelimit import rate_limited

    app = make_app(HALLES_RATE_LIMIT_REGISTRATIONS="1/1h")

    @app.post("/form")
    @rate_limited("registrations")
    def form():
        return "ok"

    client = app.test_client()
    assert client.post("/form", headers={"Accept": "text/html"}).status_code == 200
    refused = client.post("/form", headers={"Accept": "text/html"})
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    assert waits_about(refused, 3600)
    assert "too many registrations" in refused.get_data(as_text=True)


def test_a_limit_set_to_off_lets_everything_through(make_app):
    from node.common.ratelimit import rate_limited

    app = make_app(HALLES_RATE_LIMIT_REGISTRATIONS="off")

    @app.post("/form")
    @rate_limited("registrations")
    def form():
        return "ok"

    client = app.test_client()
    assert {client.post("/form").status_code for _ in range(50)} == {200}


def test_inbox_is_limited_per_remote_server(make_node):
    paris = make_node("Les Halles Civiques", "Paris", HALLES_RATE_LIMIT_INBOX="2/1h")
    lyon = make_node("La Fabrique Commune", "Lyon")
    marseille = make_node("Le Comptoir des Quartiers", "Marseille")
    for _ in range(2):
        assert post(paris, lyon, create(lyon, signed(lyon, event_object(lyon)))).status_code == 202
    refused = post(paris, lyon, create(lyon, signed(lyon, event_object(lyon))))
    assert refused.status_code == 429, refused.text
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert waits_about(refused, 1800)
    assert f"too many activities from 127.0.0.1:{lyon.port}" in refused.json()["detail"]
    assert inbox_count(paris) == 2
    # Another server has its own budget, even from the same address.
    assert post(paris, marseille, create(marseille, signed(marseille, event_object(marseille)))).status_code == 202
    assert inbox_count(paris) == 3
    tally.inputs("rate-limited requests", 4)


def test_partners_have_a_larger_inbox_budget_of_their_own(make_node):
    """A server this node follows, or whose charter-attested peering it approved, spends from the
    partners' budget; one that merely follows this node (any fediverse account can) does not."""
    from tests.network.helpers import peer
    from tests.support.nodes import settle

    paris = make_node("Les Halles Civiques", "Paris", HALLES_RATE_LIMIT_INBOX="2/1h",
                      HALLES_RATE_LIMIT_INBOX_PARTNERS="4/1h")
    lyon = make_node("La Fabrique Commune", "Lyon")
    marseille = make_node("Le Comptoir des Quartiers", "Marseille")
    grenoble = make_node("La Base", "Grenoble")
    peer(paris, lyon, [paris, lyon])  # Paris follows Lyon, with Lyon's approval: Lyon is a partner
    result = grenoble.cli("follow", paris.actor)  # Grenoble follows Paris without a charter: not one
    assert result.exit_code == 0, result.output
    settle([paris, grenoble])

    def follows_of_paris():
        from sqlalchemy import select

        from node.extensions import db
        from node.fedi.models import Follow, RemoteActor

        return set(db.session.execute(select(RemoteActor.ap_id, Follow.direction, Follow.state)
                                      .join(Follow, Follow.actor_id == RemoteActor.id)).all())

    assert {(lyon.actor, "outgoing", "accepted"), (grenoble.actor, "incoming", "accepted")} <= paris.query(
        follows_of_paris)
    paris.app.extensions.pop("halles_partner_domains", None)  # as after PARTNER_DOMAINS_SECONDS
    before = inbox_count(paris)

    for _ in range(4):
        assert post(paris, lyon, create(lyon, signed(lyon, event_object(lyon)))).status_code == 202
    refused = post(paris, lyon, create(lyon, signed(lyon, event_object(lyon))))
    assert refused.status_code == 429, refused.text
    assert "limit inbox_partners" in refused.json()["detail"]
    accepted = 4
    for stranger in (marseille, grenoble):
        # Two at most from the general budget (Grenoble spent one on its Follow already), then a 429.
        answers = [post(paris, stranger, create(stranger, signed(stranger, event_object(stranger))))
                   for _ in range(3)]
        statuses = [answer.status_code for answer in answers]
        assert statuses[-1] == 429 and statuses.count(202) >= 1, statuses
        assert statuses == sorted(statuses), statuses  # every 202 before the first 429
        assert "limit inbox)" in answers[-1].json()["detail"], answers[-1].text
        accepted += statuses.count(202)
    assert inbox_count(paris) == before + accepted
    tally.inputs("rate-limited requests", 11)


def test_a_follow_change_committed_here_changes_the_partners_at_once(make_app):
    """The partner list a process keeps is read again after this process commits a change to a follow,
    object by object or in bulk (other processes see it within PARTNER_DOMAINS_SECONDS); a change rolled
    back changes nothing."""
    from sqlalchemy import delete, update

    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor
    from node.fedi.peering import is_partner_domain

    app = make_app()
    with app.app_context():
        assert not is_partner_domain("lyon.example")  # read, and kept for PARTNER_DOMAINS_SECONDS
        actor = RemoteActor(ap_id="https://lyon.example/actor", domain="lyon.example")
        db.session.add(actor)
        db.session.flush()
        follow = Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                        activity_id="https://paris.example/follows/1")
        db.session.add(follow)
        db.session.flush()
        db.session.rollback()
        assert not is_partner_domain("lyon.example")
        actor = RemoteActor(ap_id="https://lyon.example/actor", domain="lyon.example")
        db.session.add(actor)
        db.session.flush()
        follow = Follow(actor_id=actor.id, direction="outgoing", state="accepted",
                        activity_id="https://paris.example/follows/1")
        db.session.add(follow)
        db.session.commit()
        assert is_partner_domain("lyon.example")
        follow.state = "removed"  # Paris stops following Lyon
        db.session.commit()
        assert not is_partner_domain("lyon.example")
        # Bulk statements (a domain blocked, an actor gone, an inbox answering 410) change follows too.
        db.session.execute(update(Follow).where(Follow.actor_id == actor.id).values(state="accepted"))
        db.session.commit()
        assert is_partner_domain("lyon.example")
        db.session.execute(update(Follow).where(Follow.actor_id == actor.id).values(state="removed"))
        db.session.rollback()
        assert is_partner_domain("lyon.example")
        db.session.execute(delete(Follow).where(Follow.actor_id == actor.id))
        db.session.commit()
        assert not is_partner_domain("lyon.example")


def test_web_sign_in_is_limited_per_address_on_failures(make_app):
    from node.extensions import db
    from node.members import services as members

    app = make_app(HALLES_RATE_LIMIT_LOGIN="3/1h")
    with app.app_context():
        user = members.create_user(None, "camille@example.org", "admin", name="Camille")
        members.set_password(user, "correct horse battery staple")
        db.session.commit()
    right = {"email": "camille@example.org", "password": "correct horse battery staple"}
    wrong = {**right, "password": "guess"}
    for _ in range(4):  # colleagues signing in from the office's one address spend nothing
        client = app.test_client()
        assert client.post("/login", data=right).status_code == 302
    client = app.test_client()
    assert [client.post("/login", data=wrong).status_code for _ in range(3)] == [401, 401, 401]
    refused = client.post("/login", data=right)
    assert refused.status_code == 429
    assert waits_about(refused, 1200)
    assert "too many sign-in attempts" in refused.get_data(as_text=True)
    elsewhere = app.test_client().post("/login", data=right, environ_base={"REMOTE_ADDR": "198.51.100.20"})
    assert elsewhere.status_code == 302
    tally.inputs("rate-limited requests", 9)


def test_web_registration_form_shares_the_registrations_limit(make_app, count_rows):
    app = make_app(HALLES_RATE_LIMIT_REGISTRATIONS="2/1h")
    event = create_local_event(app, capacity=50)
    client = app.test_client()
    form = {"name": "Alex", "email": "alex@example.org"}
    assert client.post(f"/events/{event}/register", data=form).status_code == 302
    # The API and the page spend from one budget per address.
    assert client.post(f"/api/v1/events/{event}/registrations",
                       json={"name": "Sacha", "email": "sacha@example.org"}).status_code == 201
    before = count_rows(app)
    refused = client.post(f"/events/{event}/register", data={"name": "Lou", "email": "lou@example.org"})
    assert refused.status_code == 429 and waits_about(refused, 1800)
    assert count_rows(app) == before
    tally.inputs("rate-limited requests", 3)


def test_on_sqlite_the_buckets_have_a_database_file_of_their_own(app):
    """A take never waits for the main file's writer (a worker applying a run holds it): it writes
    beside it, and the main database is left as it was."""
    from pathlib import Path

    from sqlalchemy import func, select

    from node.common.ratelimit import RateLimitBucket
    from node.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            assert ratelimit.bucket_engine() is db.engine
            return
        main = Path(db.engine.url.database)
        # The main file's write lock held, as a worker's BEGIN IMMEDIATE holds it: a take still passes.
        holder = db.engine.raw_connection()
        try:
            holder.execute("BEGIN IMMEDIATE")
            assert ratelimit.take("login", "203.0.113.9", Rate(5, 60)).allowed
        finally:
            holder.rollback()
            holder.close()
        side = ratelimit.bucket_engine()
        assert Path(side.url.database) == main.with_name(f"{main.stem}.ratelimits{main.suffix}")
        with side.connect() as connection:
            assert connection.scalar(select(RateLimitBucket.tokens)) == 4
        assert db.session.scalar(select(func.count()).select_from(RateLimitBucket)) == 0


def test_on_postgresql_a_take_commits_without_waiting_for_the_disk(app):
    """A take is one statement that is its own transaction, committed without a WAL flush (a take lost in
    a crash only hands tokens back); the setting stays with that statement: the connection goes back to
    the pool committing durably, in transactions. Counted by the server (pg_stat_wal), against as many
    plain inserts on the same connection."""
    import time

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import StaticPool

    from node.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite: the buckets' file is set to synchronous=NORMAL (test above)")
        one = create_engine(db.engine.url, poolclass=StaticPool)  # the takes and the counts: one backend
    try:
        with one.connect() as connection:
            if connection.dialect.server_version_info < (15,):
                pytest.skip("pg_stat_force_next_flush needs PostgreSQL 15")

        def wal_syncs() -> int:
            with one.connect() as connection:
                connection.execute(text("SELECT pg_stat_force_next_flush()"))
                connection.commit()
                time.sleep(1.2)  # the WAL writer's own count too
                return connection.scalar(text("SELECT wal_sync FROM pg_stat_wal"))

        count = 200  # enough that other clients of the server (one count for all) do not decide the outcome

        def takes() -> None:
            for index in range(count):
                assert ratelimit._take_in_one_statement(one, {"key": f"test:{index}", "capacity": 5.0, "now": 1.0,
                                                              "per_second": 1.0, "spend": 1.0}) == 4.0

        def durable_inserts() -> None:
            with one.connect() as connection:
                for index in range(count):
                    connection.execute(text("INSERT INTO rate_limit_buckets (key, tokens, updated) "
                                            "VALUES (:key, 1, 1)"), {"key": f"durable:{index}"})
                    connection.commit()

        before = wal_syncs()
        durable_inserts()
        durable = wal_syncs() - before
        if durable < count:
            pytest.skip(f"this server does not flush its WAL on commit ({durable} flushes for {count} commits: "
                        "fsync off?)")
        before = wal_syncs()
        takes()
        assert wal_syncs() - before < durable / 2
        with one.connect() as connection:
            assert connection.scalar(text("SHOW synchronous_commit")) == "on"
            assert connection.connection.driver_connection.autocommit is False
            connection.execute(text("DELETE FROM rate_limit_buckets WHERE key LIKE 'test:%' OR key LIKE 'durable:%'"))
            connection.commit()
    finally:
        one.dispose()


def test_on_postgresql_a_take_that_fails_says_so_and_leaves_the_pool_as_it_was(app, monkeypatch):
    """A take's statement that the server refuses (a database full or read-only would be refused the
    same way) raises SQLAlchemy's error, as every other take does, and the connection it used does not
    go back to the pool in autocommit: the next user of the pool gets transactions as usual."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from node.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the take through a connection in autocommit is PostgreSQL's")
        engine = ratelimit.bucket_engine()
        refused = "SELECT 1 / 0 WHERE %(key)s::text IS NOT NULL"
        monkeypatch.setitem(ratelimit._TAKE_PYFORMAT, engine.dialect.name, refused)
        monkeypatch.setattr(ratelimit, "PRUNE_EVERY", 10**9)  # the one-statement take, every time
        for _ in range(3):
            with pytest.raises(DBAPIError, match="division by zero"):
                ratelimit.take("test", "x.example", Rate(5, 60))
        monkeypatch.undo()
        with engine.connect() as connection:
            assert connection.connection.driver_connection.autocommit is False
            connection.execute(text("DELETE FROM rate_limit_buckets WHERE key = 'test:x.example'"))
            connection.commit()
        assert ratelimit.take("test", "x.example", Rate(5, 60)).remaining == 4
