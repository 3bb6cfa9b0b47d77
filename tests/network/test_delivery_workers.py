"""Several workers share the delivery queue without ever sending a delivery twice, and a slow or
broken inbox does not hold back the healthy ones."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from tests.support.smtp import free_port


class Inbox:
    """A fake follower inbox on 127.0.0.1 that records activity ids; ``mode`` breaks it on purpose."""

    def __init__(self, mode: str = "ok") -> None:
        self.received: Counter[str] = Counter()
        self.mode = mode
        self.port = free_port()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if inbox.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                if inbox.mode == "slow":
                    self.send_response(202)
                    self.send_header("Content-Length", "30")
                    self.end_headers()
                    for _ in range(30):  # one byte per second
                        try:
                            self.wfile.write(b".")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(1)
                    return
                inbox.received[json.loads(body)["id"]] += 1
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # 16 delivery threads at once must not overflow the backlog

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/inbox"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def inboxes():
    made: list[Inbox] = []

    def make(mode: str = "ok") -> Inbox:
        inbox = Inbox(mode)
        made.append(inbox)
        return inbox

    yield make
    for inbox in made:
        inbox.close()


def queue_deliveries(node, inbox_urls: list[str], count: int) -> None:
    from node.extensions import db
    from node.fedi import outbox

    def write():
        targets = {url: f"127.0.0.1:{url.split(':')[2].split('/')[0]}" for url in inbox_urls}
        for number in range(count):
            obj = {"id": f"{node.url}/notes/{number}", "type": "Note", "content": str(number)}
            outbox.publish("Create", obj, audience="public", object_id=obj["id"], only_inboxes=targets)
        db.session.commit()

    node.query(write)


def delivery_states(node):
    from node.extensions import db
    from node.fedi.models import Delivery

    return node.query(lambda: dict(db.session.execute(
        select(Delivery.state, func.count(Delivery.id)).group_by(Delivery.state)).all()))


def test_concurrent_workers_never_send_twice(make_node, inboxes):
    from node.fedi.delivery import send_due

    node = make_node("Les Halles Civiques", "Paris")
    inbox = inboxes()
    queue_deliveries(node, [inbox.url], 150)

    def worker():
        with node.app.app_context():
            for _ in range(100):
                if not send_due(limit=10):
                    if not delivery_states(node).get("pending"):
                        return
                    time.sleep(0.01)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(inbox.received) == 150
    assert set(inbox.received.values()) == {1}, "a delivery was sent twice"
    assert delivery_states(node) == {"sent": 150}
    from node.extensions import db
    from node.fedi.models import Delivery

    attempts = node.query(lambda: set(db.session.scalars(select(Delivery.attempts))))
    assert attempts == {1}


def test_broken_and_slow_inboxes_do_not_hold_back_healthy_ones(make_node, inboxes):
    node = make_node("Les Halles Civiques", "Paris", HALLES_DELIVERY_MAX_ATTEMPTS=2)
    healthy, failing, slow = inboxes(), inboxes("error"), inboxes("slow")
    closed = f"http://127.0.0.1:{free_port()}/inbox"  # nothing listens: connection refused
    queue_deliveries(node, [healthy.url, failing.url, slow.url, closed], 5)
    from node.fedi.transport import TOTAL_DEADLINE

    started = time.monotonic()
    # A round gives each server at most PER_SERVER_LIMIT deliveries: the healthy inbox gets the rest in
    # the next rounds, right away, while the slow one is still trickling.
    while len(healthy.received) < 5 and time.monotonic() - started < TOTAL_DEADLINE:
        node.work_once()
    assert len(healthy.received) == 5
    elapsed = time.monotonic() - started
    assert elapsed < 5  # the slow and broken peers are not waited for
    deadline = time.monotonic() + 60
    while delivery_states(node).get("pending") and time.monotonic() < deadline:
        node.work_once()
        time.sleep(0.1)
    states = delivery_states(node)
    assert states["sent"] >= 5 and states.get("dead", 0) >= 10, states
