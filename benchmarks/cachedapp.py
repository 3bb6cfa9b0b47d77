"""A measurement, not a feature: the node behind a one-second response cache for anonymous
``GET /api/v1/events`` requests, to show what such a cache would give the listing benchmark. The node
itself has no such cache; docs/performance.md discusses it.

Only requests without ``Authorization`` or ``Cookie`` are cached (what a visitor may see does not depend
on who they are then), keyed by the full query string, for ``TTL`` seconds; a conditional request is
answered 304 from the cached ETag."""

from __future__ import annotations

import threading
import time

TTL = 1.0
PREFIX = "/api/v1/events"


class MicroCache:
    def __init__(self, app, ttl: float = TTL) -> None:
        self.app = app
        self.ttl = ttl
        self.entries: dict[str, tuple[float, str, list[tuple[str, str]], bytes]] = {}
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        cacheable = (environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") == PREFIX
                     and "HTTP_AUTHORIZATION" not in environ and "HTTP_COOKIE" not in environ)
        if not cacheable:
            return self.app(environ, start_response)
        key = environ.get("QUERY_STRING", "")
        now = time.monotonic()
        with self.lock:
            entry = self.entries.get(key)
        if entry is None or entry[0] < now:
            captured: dict[str, object] = {}

            def capture(status, headers, exc_info=None):
                captured["status"], captured["headers"] = status, headers
                return lambda data: None

            body = b"".join(self.app(environ, capture))
            entry = (now + self.ttl, str(captured["status"]), list(captured["headers"]), body)
            if entry[1].startswith("200"):
                with self.lock:
                    self.entries[key] = entry
        _expires, status, headers, body = entry
        etag = next((value for name, value in headers if name.lower() == "etag"), None)
        if etag and environ.get("HTTP_IF_NONE_MATCH") == etag:
            start_response("304 Not Modified", [(n, v) for n, v in headers if n.lower() in ("etag", "vary")])
            return [b""]
        start_response(status, headers)
        return [body]


def _build():
    from node.wsgi import app as node_app

    return MicroCache(node_app)


app = _build()
