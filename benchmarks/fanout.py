"""Fan-out: one event published to 200 followers whose inboxes are served on loopback (10 servers of 20
accounts, each account with its own inbox, as on Mastodon instances without a shared inbox), sent by
the real worker task (``delivery.send_due``: claim, sign with RFC 9421, POST through the pooled
session, record the outcome) until every delivery is recorded as sent.

Measured: deliveries per second and the time until the last one arrived; connections opened (how
many deliveries each connection carried). Ceiling: the signature alone (``sign_request`` with the
node's RSA-2048 key, the flavour a first contact gets) for the same 200 requests, one after the
other in this process. Several rounds (one event each) on the same worker: the first opens the
connections, the next ones reuse them."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.loopback import LoopbackInboxes

NAME = "fanout"
FOLLOWERS = 200
SERVERS = 10
TARGET = "report: deliveries/s against the signing ceiling, connections reused"


def _followers(app, inboxes: LoopbackInboxes, count: int) -> list[str]:
    from node.extensions import db
    from node.fedi.models import Follow, RemoteActor

    urls = []
    with app.app_context():
        for index in range(count):
            host = f"127.0.0.{2 + index % SERVERS}"
            base = inboxes.url(host)
            account = f"{base}/users/follower{index}"
            actor = RemoteActor(ap_id=account, domain=f"{host}:{inboxes.port}", name=f"Follower {index}",
                                actor_type="Person", inbox=f"{account}/inbox", document={})
            db.session.add(actor)
            db.session.flush()
            db.session.add(Follow(actor_id=actor.id, direction="incoming", state="accepted",
                                  activity_id=f"{base}/follows/{index}"))
            urls.append(actor.inbox)
        db.session.commit()
    return urls


def _publish(app, number: int) -> None:
    from benchmarks.origins import Origin, utc_now
    from node.extensions import db
    from node.fedi import outbox
    from node.fedi.identity import load_identity

    with app.app_context():
        origin = Origin(identity=load_identity())
        now = utc_now()
        obj = origin.event_object(number, updated=now, start=now + timedelta(days=20), compact=False)
        outbox.publish("Create", obj, audience="public", object_id=obj["id"])
        db.session.commit()


def _pending(app) -> int:
    from sqlalchemy import func, select

    from node.extensions import db
    from node.fedi.models import Delivery

    with app.app_context():
        count = db.session.scalar(select(func.count(Delivery.id)).where(Delivery.state != "sent"))
        db.session.remove()
        return count


def _deliver(app, inboxes: LoopbackInboxes, count: int) -> dict[str, float]:
    from node.fedi import delivery

    before = inboxes.stats()
    started = time.perf_counter()
    wall_start = time.time()
    deadline = started + 120
    with app.app_context():
        while time.perf_counter() < deadline:
            delivery.send_due()
            if _pending(app) == 0:
                break
    done = time.perf_counter()
    after = inboxes.stats()
    received = after["requests"] - before["requests"]
    if received != count:
        raise RuntimeError(f"{received} of {count} deliveries arrived")
    last = after["last"] - wall_start
    return {
        "deliveries": received,
        "seconds_until_last_arrived": round(last, 3),
        "seconds_until_all_recorded": round(done - started, 3),
        "deliveries_per_second": round(received / last, 1),
        "new_connections": after["connections"] - before["connections"],
    }


def ceiling_rate(app, urls: list[str], *, repeat: int = 3) -> float:
    """Requests signed per second (RFC 9421, RSA-2048), the cost every delivery pays once."""
    from federation.httpsig import sign_request
    from node.fedi.identity import load_identity
    from node.fedi.models import OutboxEntry
    from node.fedi.outbox import now_aware

    with app.app_context():
        from node.extensions import db

        activity = db.session.query(OutboxEntry.activity).order_by(OutboxEntry.id.desc()).first()[0]
        identity = load_identity()
    body = json.dumps(activity, ensure_ascii=False, separators=(",", ":")).encode()

    def work() -> int:
        for url in urls:
            sign_request("POST", url, {"Content-Type": "application/activity+json"}, body, identity.rsa_key,
                         identity.rsa_key_id, flavour="rfc9421", now=now_aware())
        return len(urls)

    return common.best_rate(work, repeat=repeat)


def run(*, quick: bool = False, results_dir: Path | None = None, followers: int = FOLLOWERS,
        rounds: int | None = None) -> dict[str, Any]:
    rounds = rounds or (2 if quick else 4)
    with common.workdir("fanout") as folder, LoopbackInboxes() as inboxes, common.database("sqlite", folder) as url:
        config = common.node_config(folder, url, name="Les Halles Civiques", city="Paris", url="http://halles.bench")
        app = common.make_node(config)
        try:
            urls = _followers(app, inboxes, followers)
            results = []
            for number in range(rounds):
                _publish(app, number)
                results.append(_deliver(app, inboxes, followers))
                common.say(f"  round {number + 1}: {results[-1]['deliveries_per_second']:.0f} deliveries/s, last "
                           f"after {results[-1]['seconds_until_last_arrived']} s, "
                           f"{results[-1]['new_connections']} new connections")
            ceiling = ceiling_rate(app, urls)
        finally:
            common.dispose(app)
    # The first round pays for the connections; the steady state is what a busy node sees.
    steady = sorted(results[1:] or results, key=lambda r: r["deliveries_per_second"])
    median = steady[len(steady) // 2]
    reused = [r for r in results[1:]]
    result = common.write_result(
        NAME,
        value=median["deliveries_per_second"],
        unit="deliveries/s",
        ceiling=ceiling,
        target=TARGET,
        met=bool(reused) and all(r["new_connections"] < r["deliveries"] for r in reused),
        results_dir=results_dir,
        followers=followers,
        servers=SERVERS,
        seconds_until_last=median["seconds_until_last_arrived"],
        rounds=results,
    )
    common.say(f"fanout: {result['value']:.0f} deliveries/s (last after {result['seconds_until_last']} s), "
               f"signing ceiling {ceiling:.0f}/s, ratio {result['ratio']:.2f}")
    return result


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
