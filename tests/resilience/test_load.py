"""Load: one node served by gunicorn with two worker processes (plus ``halles worker``), and a crowd of
clients for ``HALLES_LOAD_SECONDS`` (default 60, at least 20): listings, event pages, room
availability, registrations and room bookings, all at once. Afterwards: not one 5xx, not one dropped
connection, every registration and booking a client was told about (201) is in the database -- no
more, no less -- and no room is booked twice for the same time. The rate limiter runs on every
registration meanwhile, and a separate burst shows its budget is shared by the two workers."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from tests.resilience import tally
from tests.resilience.processes import ProcessNode, signed_organisation
from tests.resilience.support import event_body, paris
from tests.support.databases import backend

pytestmark = pytest.mark.slow

USERS = 16
EVENTS = 12
ROOMS = 3
#: Shared sign-in budget for the burst that checks the limiter across processes.
LOGIN_BUDGET = 20


def load_seconds() -> float:
    return max(20.0, float(os.environ.get("HALLES_LOAD_SECONDS", "60")))


@pytest.fixture
def node(tmp_path, database_factory):
    url = database_factory.new() if backend() == "postgres" else None
    made = ProcessNode(tmp_path, "Les Halles Civiques", "Paris", database_url=url,
                       HALLES_RATE_LIMIT_REGISTRATIONS="1000000/1m", HALLES_RATE_LIMIT_LOGIN=f"{LOGIN_BUDGET}/1h")
    made.init().start()
    yield made
    made.stop()


class Crowd:
    def __init__(self, node: ProcessNode, events: list[str], rooms: list[int], org_id: int) -> None:
        self.node = node
        self.events = events
        self.rooms = rooms
        self.org_id = org_id
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop_at = 0.0
        self.sequence = iter(range(10**9))
        # Slots that collide on purpose: a few rooms, a few days, hourly slots of 1 or 2 hours.
        self.slots = [(room, day, hour, length) for room in rooms for day in range(20, 26)
                      for hour in range(9, 18) for length in (1, 2)]

    def _note(self, kind: str, response: requests.Response | None, error: str | None = None) -> None:
        with self.lock:
            if response is None:
                self.errors.append(f"{kind}: {error}")
                self.statuses[(kind, 0)] += 1
            else:
                self.statuses[(kind, response.status_code)] += 1
                if response.status_code >= 500:
                    self.errors.append(f"{kind}: {response.status_code} {response.text[:300]}")

    def user(self, number: int) -> None:
        rng = random.Random(number)
        session = requests.Session()
        base = self.node.url
        while time.monotonic() < self.stop_at:
            roll = rng.random()
            kind, method, url, body, headers = "listing", "GET", f"{base}/api/v1/events", None, {}
            params = None
            if roll < 0.35:
                params = {"scope": rng.choice(["local", "network"]), "limit": rng.choice([10, 50, 100]),
                          "q": rng.choice([None, "Atelier", "débat"]), "from": "2000-01-01T00:00:00Z"}
            elif roll < 0.45:
                kind, url = "event", f"{base}/api/v1/events/{rng.choice(self.events)}"
            elif roll < 0.55:
                kind, url = "availability", f"{base}/api/v1/rooms/{rng.choice(self.rooms)}/availability"
            elif roll < 0.80:
                with self.lock:
                    n = next(self.sequence)
                kind, method = "registration", "POST"
                url = f"{base}/api/v1/events/{rng.choice(self.events)}/registrations"
                body = {"name": f"Personne {n}", "email": f"personne{n}@example.org"}
            else:
                room, day, hour, length = rng.choice(self.slots)
                start = paris(day, f"{hour:02d}:00")
                kind, method, url, headers = "booking", "POST", f"{base}/api/v1/bookings", self.node.headers
                body = {"room_id": room, "starts_at": start.isoformat(),
                        "ends_at": (start + timedelta(hours=length)).isoformat(), "category": "ngo",
                        "organisation_id": self.org_id}
            try:
                response = session.request(method, url, json=body, params=params, headers=headers, timeout=60)
            except requests.RequestException as exc:
                self._note(kind, None, f"{type(exc).__name__}: {exc}")
                continue
            self._note(kind, response)
        session.close()


def test_mixed_load_on_two_gunicorn_workers(node):
    org_id = signed_organisation(node, "Démocratie Ouverte")
    site = node.api("POST", "/api/v1/sites", {"name": "Les Halles Civiques — Belleville",
                                              "address": "12 rue de Belleville", "city": "Paris"})
    rooms = [node.api("POST", "/api/v1/rooms", {"site_id": site["id"], "name": f"Salle {n}", "capacity": 30,
                                                "tariffs": {"ngo": 1500, "member": 500}})["id"]
             for n in range(ROOMS)]
    events = [node.api("POST", "/api/v1/events", event_body(title=f"Atelier {n}", days_ahead=5 + n, capacity=40,
                                                            organiser_ids=[org_id]))["id"]
              for n in range(EVENTS)]
    before = {table: node.sql(f"SELECT COUNT(*) FROM {table}")[0][0] for table in ("registrations", "bookings")}
    crowd = Crowd(node, events, rooms, org_id)
    seconds = load_seconds()
    crowd.stop_at = time.monotonic() + seconds
    with ThreadPoolExecutor(USERS) as pool:
        list(pool.map(crowd.user, range(USERS)))
    total = sum(crowd.statuses.values())
    tally.load(f"mixed, {USERS} clients for {seconds:.0f} s on 2 gunicorn workers", total)
    assert not crowd.errors, f"{len(crowd.errors)} errors, first: {crowd.errors[:5]}"
    created = {kind: crowd.statuses[(kind, 201)] for kind in ("registration", "booking")}
    after = {table: node.sql(f"SELECT COUNT(*) FROM {table}")[0][0] for table in ("registrations", "bookings")}
    stored = {"registration": after["registrations"] - before["registrations"],
              "booking": after["bookings"] - before["bookings"]}
    tally.checked("registrations counted after load", stored["registration"])
    tally.checked("bookings counted after load", stored["booking"])
    tally.lost(sum(max(0, created[kind] - stored[kind]) for kind in created))
    tally.duplicated(sum(max(0, stored[kind] - created[kind]) for kind in created))
    assert stored == created, (stored, created, dict(crowd.statuses))
    # Enough happened for the numbers to mean something: a few requests per second, both kinds of write.
    assert total >= 5 * seconds, dict(crowd.statuses)
    assert created["registration"] > 20 and created["booking"] > 5, dict(crowd.statuses)
    assert crowd.statuses[("booking", 409)] > 0, "the slots were meant to collide"
    # No room is held twice at the same time (pending requests and approved bookings both hold it).
    overlaps = node.sql(
        "SELECT a.id, b.id FROM bookings a JOIN bookings b ON a.room_id = b.room_id AND a.id < b.id "
        "WHERE a.status IN ('pending', 'approved') AND b.status IN ('pending', 'approved') "
        "AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at")
    assert not overlaps, overlaps
    # Every registration an answer confirmed has its row, and none is there twice.
    doubled = node.sql("SELECT email, COUNT(*) FROM registrations GROUP BY event_id, email HAVING COUNT(*) > 1")
    assert not doubled, doubled


def test_the_rate_limit_budget_is_shared_by_the_gunicorn_workers(node):
    """60 password-reset requests at once from one address, spread over both gunicorn workers: exactly
    the budget gets through (an in-process limiter would let each worker spend its own)."""
    workers = node.web_worker_pids()
    assert len(workers) == 2

    def ask(number: int) -> int:
        return requests.post(f"{node.url}/api/v1/password-resets", json={"email": f"x{number}@example.org"},
                             timeout=60).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = Counter(pool.map(ask, range(60)))
    tally.inputs("rate-limited requests", 60)
    assert statuses == {202: LOGIN_BUDGET, 429: 60 - LOGIN_BUDGET}, statuses
