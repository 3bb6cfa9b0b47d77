"""kill -9 in the middle of a burst of changes: three nodes as real processes (gunicorn with two
workers + ``halles worker`` each); Lyon and Marseille peer with Paris. While clients create, rename,
cancel and delete events on Paris, Paris's worker, Lyon's worker, one of Paris's gunicorn workers and
then all of Paris's web processes are killed with SIGKILL and restarted. Afterwards every node lists
exactly Paris's events (full listings, all pages): nothing a client was told is saved is lost,
nothing is duplicated, deletions reached everyone."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.resilience import tally
from tests.resilience.processes import ProcessNode, dump, peer, signed_organisation
from tests.resilience.support import event_body
from tests.support.databases import backend

pytestmark = pytest.mark.slow

CLIENTS = 3
SETTLE_TIMEOUT = 120


@pytest.fixture
def cluster(tmp_path, database_factory):
    made: list[ProcessNode] = []

    def make(specs: list[tuple[str, str]]) -> list[ProcessNode]:
        nodes = []
        for name, city in specs:
            folder = tmp_path / city.lower()
            folder.mkdir()
            url = database_factory.new() if backend() == "postgres" else None
            nodes.append(ProcessNode(folder, name, city, database_url=url))
        made.extend(nodes)
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda node: node.init().start(), nodes))
        return nodes

    yield make
    for node in made:
        node.stop()


class Burst:
    """Clients changing events on one node without pause; they note what the node confirmed and what
    they could not know (the connection died with the request in flight)."""

    def __init__(self, node: ProcessNode, org_id: int) -> None:
        self.node = node
        self.org_id = org_id
        self.lock = threading.Lock()
        #: uuid -> {"title", "status", "deleted"} as confirmed by the node
        self.confirmed: dict[str, dict] = {}
        #: uuids whose last change has an unknown outcome; titles of creations with unknown outcome
        self.uncertain: set[str] = set()
        self.uncertain_titles: set[str] = set()
        self.stopping = threading.Event()
        self.counts = {"create": 0, "update": 0, "cancel": 0, "delete": 0, "unknown": 0, "refused": 0}

    def _request(self, method: str, path: str, body=None):
        try:
            return requests.request(method, f"{self.node.url}{path}", json=body, headers=self.node.headers,
                                    timeout=20)
        except requests.RequestException:
            return None

    def client(self, number: int) -> None:
        rng = random.Random(number)
        n = 0
        while not self.stopping.is_set():
            n += 1
            with self.lock:
                mine = [uuid for uuid, state in self.confirmed.items()
                        if not state["deleted"] and uuid not in self.uncertain and state["client"] == number]
            action = "create"
            if mine and n % 3 == 0:
                action = rng.choice(["update", "update", "cancel", "delete"])
            if action == "create":
                title = f"Atelier {number}-{n}"
                response = self._request("POST", "/api/v1/events", event_body(title=title, organiser_ids=[self.org_id]))
                with self.lock:
                    if response is None or response.status_code >= 500:
                        self.uncertain_titles.add(title)
                        self.counts["unknown"] += 1
                    elif response.status_code == 201:
                        self.confirmed[response.json()["id"]] = {"title": title, "status": response.json()["status"],
                                                                 "deleted": False, "client": number}
                        self.counts["create"] += 1
                    else:
                        self.counts["refused"] += 1
            else:
                uuid = rng.choice(mine)
                if action == "update":
                    title = f"{self.confirmed[uuid]['title']} (modifié {n})"
                    response = self._request("PATCH", f"/api/v1/events/{uuid}", {"title": title})
                elif action == "cancel":
                    response = self._request("POST", f"/api/v1/events/{uuid}/cancel", {})
                else:
                    response = self._request("DELETE", f"/api/v1/events/{uuid}")
                with self.lock:
                    if response is None or response.status_code >= 500:
                        self.uncertain.add(uuid)
                        self.counts["unknown"] += 1
                    elif response.status_code in (200, 204):
                        state = self.confirmed[uuid]
                        if action == "update":
                            state["title"] = title
                        elif action == "cancel":
                            state["status"] = "cancelled"
                        else:
                            state["deleted"] = True
                        self.counts[action] += 1
                    else:
                        self.counts["refused"] += 1
            time.sleep(0.05)


def state_of(items: list[dict], origin: str) -> dict[str, tuple[str, str]]:
    """ap_id -> (title, status) of the events that come from ``origin`` (listings hold occurrences:
    one item per event here, as none recurs)."""
    found: dict[str, tuple[str, str]] = {}
    for item in items:
        if item["ap_id"].startswith(origin + "/"):
            assert item["ap_id"] not in found, f"{item['ap_id']} listed twice"
            found[item["ap_id"]] = (item["title"], item["status"])
    return found


def explain(origin: ProcessNode, receiver: ProcessNode, ap_ids: list[str]) -> str:
    """What each side knows of these objects, for the failure message."""
    lines = []
    for ap_id in ap_ids:
        entries = origin.sql("SELECT id, activity_type, audience FROM outbox_entries WHERE object_id = :o ORDER BY id",
                             o=ap_id)
        lines.append(f"{ap_id}\n  origin outbox: {entries}")
        for entry_id, _type, _audience in entries:
            lines.append(f"  deliveries of {entry_id}: " + str(origin.sql(
                "SELECT inbox_url, state, attempts, last_error FROM deliveries WHERE outbox_entry_id = :e",
                e=entry_id)))
        lines.append("  receiver inbox: " + str(receiver.sql(
            "SELECT id, activity_type, state, error FROM inbox_items WHERE activity_id IN "
            "(SELECT activity_id FROM inbox_items) AND CAST(activity AS TEXT) LIKE :pattern ORDER BY id",
            pattern=f"%{ap_id}%")))
        lines.append("  receiver tombstone: " + str(receiver.sql("SELECT * FROM tombstones WHERE ap_id = :a", a=ap_id)))
    lines.append("receiver sync: " + str(receiver.sql("SELECT domain, sync_cursor, synced_at FROM remote_servers")))
    return "\n".join(lines)


def duplicates(node: ProcessNode) -> list[tuple]:
    return (node.sql("SELECT ap_id, COUNT(*) FROM events GROUP BY ap_id HAVING COUNT(*) > 1")
            + node.sql("SELECT activity_id, COUNT(*) FROM inbox_items GROUP BY activity_id HAVING COUNT(*) > 1"))


def test_kill_9_during_a_burst_loses_and_duplicates_nothing(cluster):
    paris, lyon, marseille = cluster([("Les Halles Civiques", "Paris"), ("La Fabrique Commune", "Lyon"),
                                      ("Le Comptoir des Quartiers", "Marseille")])
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda follower: peer(follower, paris), [lyon, marseille]))
    org_id = signed_organisation(paris, "Démocratie Ouverte")
    burst = Burst(paris, org_id)
    clients = [threading.Thread(target=burst.client, args=(number,)) for number in range(CLIENTS)]
    for thread in clients:
        thread.start()
    faults = []
    try:
        time.sleep(1.5)
        paris.kill_worker()  # deliveries claimed and in flight, transactions open
        faults.append("SIGKILL Paris worker")
        time.sleep(1.0)
        paris.start_worker()
        lyon.kill_worker()  # inbox items being applied
        faults.append("SIGKILL Lyon worker")
        time.sleep(1.5)
        lyon.start_worker()
        killed = paris.kill_one_web_worker()  # gunicorn starts another
        faults.append(f"SIGKILL one Paris gunicorn worker ({killed})")
        time.sleep(1.5)
        paris.kill_web()  # master and workers: requests in flight die
        faults.append("SIGKILL Paris gunicorn (master and workers)")
        time.sleep(1.0)
        paris.start_web()
        paris.kill_worker()
        faults.append("SIGKILL Paris worker again")
        paris.start_worker()
        time.sleep(2.0)
    finally:
        burst.stopping.set()
        for thread in clients:
            thread.join(timeout=60)
    tally.fault("kill -9 (worker, gunicorn worker, gunicorn)", len(faults))
    assert burst.counts["create"] >= 30, burst.counts

    # Let the network settle: deliveries retried, leases of the killed worker expired or caught up by sync.
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        origin = state_of(paris.listing("local"), paris.url)
        views = {node.name: state_of(node.listing("network"), paris.url) for node in (lyon, marseille)}
        if all(view == origin for view in views.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)

    # Nothing the clients were told is saved is lost on Paris, in the state they were told.
    by_uuid = {ap_id.rsplit("/", 1)[1]: value for ap_id, value in origin.items()}
    lost = []
    for uuid, state in burst.confirmed.items():
        if uuid in burst.uncertain:
            continue
        if state["deleted"]:
            assert uuid not in by_uuid, f"deleted event {uuid} came back"
        elif by_uuid.get(uuid) != (state["title"], state["status"]):
            lost.append((uuid, state, by_uuid.get(uuid)))
    # Every node lists exactly what Paris lists.
    for name, view in views.items():
        missing = set(origin) - set(view)
        extra = set(view) - set(origin)
        different = {ap_id for ap_id in set(origin) & set(view) if origin[ap_id] != view[ap_id]}
        assert not (missing or extra or different), (
            f"{name} differs from Paris after faults {faults}: missing {len(missing)}, extra {len(extra)}, "
            f"different {len(different)}\n{dump(sorted(missing | extra | different)[:10])}\n"
            + explain(paris, {node.name: node for node in (lyon, marseille)}[name],
                      sorted(missing | extra | different)[:3]))
    doubled = {node.name: duplicates(node) for node in (paris, lyon, marseille)}
    tally.checked("events compared across three nodes after kill -9", len(origin) * 3)
    tally.lost(len(lost))
    tally.duplicated(sum(len(rows) for rows in doubled.values()))
    assert not lost, f"confirmed changes lost on Paris: {dump(lost[:10])}"
    assert not any(doubled.values()), doubled
    # Creations whose answer was lost either exist everywhere or nowhere (checked above); say how many.
    assert len(origin) >= burst.counts["create"] - burst.counts["delete"] - len(burst.uncertain)
