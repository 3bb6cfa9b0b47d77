"""Convergence: 10, 30 and 100 nodes in one process on a simulated network (latency, loss, a partition),
until every node holds the latest version of every event. Counts the messages it took.

What is real and what is modelled:

* real: the federation library -- every activity is signed by its sender with ``sign_document``
  (eddsa-jcs-2022, the object keeping its origin's proof), and every node verifies every message it
  receives with ``verify_document`` against the origin's key, exactly as the inbox does;
* modelled: the transport (a discrete-event network, simulated seconds, no sockets) and the node rules
  that decide what travels, taken from node/fedi: an origin delivers Create/Update to every peer
  (charter network: everyone follows everyone); a few nodes re-share each event (Announce of the
  origin's signed object to their own followers); a node that re-shared an event forwards the origin's
  next Update once (``_forward_if_reshared`` records the forwarded activity id and never forwards it
  twice); receivers are idempotent by activity id and keep the newest ``updated``; a failed delivery
  is retried with the worker's exponential backoff (``HALLES_DELIVERY_BACKOFF_SECONDS``); every node
  catches up from its peers' outboxes every ``HALLES_SYNC_INTERVAL_SECONDS`` (one request per peer
  returning what it missed, counted apart from deliveries).

Ceiling: one delivery per peer and per activity (N - 1 messages), the least any push protocol needs.
The ratio is messages sent per activity over that minimum: re-shares, forwards, retries and losses
raise it; it must stay flat as the network grows (linear growth of messages with peers)."""

from __future__ import annotations

import heapq
import itertools
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "convergence"
SIZES = (10, 30, 100)
#: Per-message loss (a timeout for the sender, which retries), median one-way latency, spread.
LOSS = 0.02
LATENCY_MEDIAN = 0.030
LATENCY_SIGMA = 0.5
#: A fifth of the nodes is cut off from the others during this window (simulated seconds).
PARTITION = (60.0, 660.0)
PARTITION_SHARE = 0.2
#: The worker's defaults (node/config.py).
BACKOFF_SECONDS = 30.0
MAX_ATTEMPTS = 12
SYNC_INTERVAL = 300.0
#: Nodes that re-share each event (chosen at random among those that received it).
RESHARERS = 2
#: Linear growth: messages per activity per peer may vary at most this much across sizes.
FLATNESS = 0.2


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    data: dict[str, Any] = field(compare=False)


@dataclass
class SimNode:
    index: int
    actor: str
    key: Any
    #: object id -> (updated, activity) of the newest version held.
    objects: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    #: Object ids this node re-shared, and activity ids it forwarded (forward once).
    reshared: set[str] = field(default_factory=set)
    forwarded: set[str] = field(default_factory=set)
    #: Its outbox (what it published or forwarded), for catch-up by its peers.
    outbox: list[dict[str, Any]] = field(default_factory=list)
    #: peer index -> position in that peer's outbox already read.
    cursors: dict[int, int] = field(default_factory=dict)


class Network:
    def __init__(self, size: int, *, activities: int, seed: int = 8) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from federation.keys import KeyRecord

        self.random = random.Random(seed + size)
        self.size = size
        self.nodes = []
        self.keys: dict[str, KeyRecord] = {}
        for index in range(size):
            key = ed25519.Ed25519PrivateKey.generate()
            actor = f"https://node-{index}.example/actor"
            self.nodes.append(SimNode(index, actor, key))
            self.keys[f"{actor}#ed25519-key"] = KeyRecord(f"{actor}#ed25519-key", key.public_key(), actor)
        self.queue: list[_Event] = []
        self.seq = itertools.count()
        self.now = 0.0
        cut = max(1, int(size * PARTITION_SHARE))
        self.isolated = set(self.random.sample(range(size), cut))
        self.counts = {"deliveries": 0, "lost": 0, "refused": 0, "retries": 0, "duplicates": 0, "verified": 0,
                       "sync_requests": 0, "sync_items": 0, "reshares": 0, "forwards": 0}
        self.expected: dict[str, str] = {}
        #: object id -> nodes holding its newest version (convergence is every set being full).
        self.current: dict[str, set[int]] = {}
        self.resharers: dict[str, set[int]] = {}
        self.activities = activities
        self.created = datetime(2031, 5, 1, tzinfo=UTC)

    # --- scheduling ------------------------------------------------------------------------------

    def at(self, when: float, kind: str, **data: Any) -> None:
        heapq.heappush(self.queue, _Event(when, next(self.seq), kind, data))

    def partitioned(self, a: int, b: int) -> bool:
        return PARTITION[0] <= self.now < PARTITION[1] and ((a in self.isolated) != (b in self.isolated))

    def latency(self) -> float:
        return LATENCY_MEDIAN * self.random.lognormvariate(0, LATENCY_SIGMA)

    # --- protocol --------------------------------------------------------------------------------

    def sign(self, node: SimNode, document: dict[str, Any]) -> dict[str, Any]:
        from federation.proofs import sign_document

        return sign_document(document, node.key, f"{node.actor}#ed25519-key", created=self.created)

    def publish(self, origin: SimNode, number: int, version: int) -> None:
        object_id = f"https://node-{origin.index}.example/events/{number}"
        updated = (self.created + timedelta(seconds=version)).strftime("%Y-%m-%dT%H:%M:%SZ")
        obj = self.sign(origin, {
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/data-integrity/v2"],
            "id": object_id, "type": "Event", "attributedTo": origin.actor, "name": f"Événement {number}",
            "startTime": "2031-06-01T19:00:00+02:00", "updated": updated,
        })
        activity = self.sign(origin, {
            "@context": obj["@context"], "id": f"{object_id}/activities/{version}",
            "type": "Create" if version == 0 else "Update", "actor": origin.actor, "object": obj,
        })
        self.expected[object_id] = updated
        self.current[object_id] = set()
        self.receive_locally(origin, activity)
        self.send_to_followers(origin, activity)

    def send_to_followers(self, sender: SimNode, activity: dict[str, Any]) -> None:
        sender.outbox.append(activity)
        for peer in self.nodes:
            if peer.index != sender.index:
                self.at(self.now, "send", sender=sender.index, target=peer.index, activity=activity, attempt=1)

    def deliver(self, sender: int, target: int, activity: dict[str, Any], attempt: int) -> None:
        self.counts["deliveries"] += 1
        if attempt > 1:
            self.counts["retries"] += 1
        if self.partitioned(sender, target):
            self.counts["refused"] += 1
            self.retry(sender, target, activity, attempt)
            return
        if self.random.random() < LOSS:
            self.counts["lost"] += 1
            self.retry(sender, target, activity, attempt)
            return
        self.at(self.now + self.latency(), "arrive", target=target, activity=activity)

    def retry(self, sender: int, target: int, activity: dict[str, Any], attempt: int) -> None:
        if attempt >= MAX_ATTEMPTS:
            return  # dead letter: catch-up brings it
        delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
        self.at(self.now + delay, "send", sender=sender, target=target, activity=activity, attempt=attempt + 1)

    def verify(self, activity: dict[str, Any]) -> bool:
        from federation.proofs import verify_document

        self.counts["verified"] += 1
        now = self.created + timedelta(days=1)
        obj = activity["object"]
        origin = obj["attributedTo"]
        if not verify_document(obj, self.keys.get, now=now, expected_origin=origin).ok:
            return False
        return verify_document(activity, self.keys.get, now=now, expected_origin=activity["actor"]).ok

    def arrive(self, target: int, activity: dict[str, Any]) -> None:
        node = self.nodes[target]
        if activity["id"] in node.seen:
            self.counts["duplicates"] += 1
            return
        if not self.verify(activity):
            raise AssertionError(f"node {target} refused a valid activity {activity['id']}")
        node.seen.add(activity["id"])
        self.receive_locally(node, activity)

    def receive_locally(self, node: SimNode, activity: dict[str, Any]) -> None:
        obj = activity["object"]
        held = node.objects.get(obj["id"])
        if held is None or held[0] < obj["updated"]:
            node.objects[obj["id"]] = (obj["updated"], activity)
            if obj["updated"] == self.expected[obj["id"]]:
                self.current[obj["id"]].add(node.index)
        origin_index = int(obj["attributedTo"].split("node-")[1].split(".")[0])
        if node.index == origin_index:
            return
        if activity["type"] == "Update" and obj["id"] in node.reshared and activity["id"] not in node.forwarded:
            node.forwarded.add(activity["id"])
            self.counts["forwards"] += 1
            self.send_to_followers(node, activity)  # the origin's signed Update, untouched
        elif activity["type"] == "Create" and node.index in self.resharers.get(obj["id"], ()):
            node.reshared.add(obj["id"])
            self.counts["reshares"] += 1
            announce = self.sign(node, {"@context": obj["@context"], "id": f"{node.actor}/announces/{obj['id']}",
                                        "type": "Announce", "actor": node.actor, "object": obj})
            node.seen.add(announce["id"])
            self.send_to_followers(node, announce)

    def sync(self, target: int) -> None:
        """Catch-up: one request to each peer's outbox for what came after our cursor there."""
        node = self.nodes[target]
        for peer in self.nodes:
            if peer.index == target or self.partitioned(target, peer.index):
                continue
            self.counts["sync_requests"] += 1
            start = node.cursors.get(peer.index, 0)
            for activity in peer.outbox[start:]:
                self.counts["sync_items"] += 1
                if activity["id"] not in node.seen:
                    self.arrive(target, activity)
            node.cursors[peer.index] = len(peer.outbox)
        self.at(self.now + SYNC_INTERVAL, "sync", target=target)

    def converged(self) -> bool:
        return all(len(holders) == self.size for holders in self.current.values())

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        creates = max(1, self.activities * 2 // 3)
        published = []
        for number in range(creates):
            origin = self.random.randrange(self.size)
            when = self.random.uniform(0, 120)
            object_id = f"https://node-{origin}.example/events/{number}"
            others = [index for index in range(self.size) if index != origin]
            self.resharers[object_id] = set(self.random.sample(others, min(RESHARERS, len(others))))
            self.at(when, "publish", origin=origin, number=number, version=0)
            published.append((origin, number, when))
        for update in range(self.activities - creates):
            origin, number, when = published[update % len(published)]
            self.at(when + self.random.uniform(30, 300), "publish", origin=origin, number=number, version=update + 1)
        for index in range(self.size):
            self.at(self.random.uniform(0, SYNC_INTERVAL), "sync", target=index)
        last_publication = max(event.at for event in self.queue if event.kind == "publish")
        converged_at = None
        while self.queue:
            event = heapq.heappop(self.queue)
            self.now = event.at
            data = event.data
            if event.kind == "publish":
                self.publish(self.nodes[data["origin"]], data["number"], data["version"])
            elif event.kind == "send":
                self.deliver(data["sender"], data["target"], data["activity"], data["attempt"])
            elif event.kind == "arrive":
                self.arrive(data["target"], data["activity"])
            elif event.kind == "sync":
                self.sync(data["target"])
            if self.now >= last_publication and self.converged():
                converged_at = self.now
                break
        if converged_at is None:
            raise AssertionError(f"{self.size} nodes never converged")
        activities = self.activities + self.counts["reshares"]
        return {
            "nodes": self.size,
            "peers": self.size - 1,
            "events": creates,
            "activities": self.activities,
            "converged_after_seconds": round(converged_at, 1),
            "partition": {"from": PARTITION[0], "to": PARTITION[1], "isolated_nodes": len(self.isolated)},
            **self.counts,
            "first_attempts_per_activity_per_peer": round(
                (self.counts["deliveries"] - self.counts["retries"]) / self.activities / (self.size - 1), 3),
            "deliveries_per_activity": round(self.counts["deliveries"] / self.activities, 2),
            "deliveries_per_activity_per_peer": round(self.counts["deliveries"] / self.activities / (self.size - 1), 3),
            "signed_activities_incl_reshares": activities,
        }


def run(*, quick: bool = False, results_dir: Path | None = None, sizes: tuple[int, ...] = SIZES,
        activities: int | None = None) -> dict[str, Any]:
    activities = activities or (9 if quick else 30)
    table = []
    started = time.perf_counter()
    for size in sizes:
        wall = time.perf_counter()
        outcome = Network(size, activities=activities).run()
        outcome["wall_seconds"] = round(time.perf_counter() - wall, 2)
        table.append(outcome)
    common.say("  nodes | peers | msgs/activity | per peer | first sends/peer | retries | duplicates | "
               "converged after (sim s)")
    for row in table:
        common.say(f"  {row['nodes']:5} | {row['peers']:5} | {row['deliveries_per_activity']:13} | "
                   f"{row['deliveries_per_activity_per_peer']:8} | {row['first_attempts_per_activity_per_peer']:16} | "
                   f"{row['retries']:7} | {row['duplicates']:10} | {row['converged_after_seconds']}")
    # Retries depend on when the partition falls; the messages the protocol itself sends (first
    # attempts: the origin's, the re-sharers' Announces and forwarded Updates) must not grow faster
    # than the number of peers.
    per_peer = [row["first_attempts_per_activity_per_peer"] for row in table]
    flat = max(per_peer) <= min(per_peer) * (1 + FLATNESS)
    largest = table[-1]
    result = common.write_result(
        NAME,
        value=largest["deliveries_per_activity"],
        unit="messages/activity",
        ceiling=largest["peers"],
        target=f"every node converges; first-attempt messages per activity per peer within {FLATNESS:.0%} across "
               f"{', '.join(str(s) for s in sizes)} nodes (linear in peers, no re-share storm)",
        met=flat,
        results_dir=results_dir,
        sizes=list(sizes),
        network={"loss": LOSS, "latency_median_s": LATENCY_MEDIAN, "partition": list(PARTITION),
                 "partition_share": PARTITION_SHARE, "backoff_seconds": BACKOFF_SECONDS,
                 "sync_interval_seconds": SYNC_INTERVAL, "resharers_per_event": RESHARERS},
        table=table,
        wall_seconds=round(time.perf_counter() - started, 2),
    )
    common.say(f"convergence: {result['value']} messages per activity at {largest['nodes']} nodes "
               f"(minimum {largest['peers']}, ratio {result['ratio']}); flat across sizes: {flat}")
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
