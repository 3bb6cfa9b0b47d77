"""A tiny real HTTP server on 127.0.0.1 whose answers each test scripts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str | None] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Seen], Reply]


@dataclass
class LocalServer:
    base_url: str
    routes: dict[str, Handler]
    seen: list[Seen]


@contextmanager
def local_server() -> Iterator[LocalServer]:
    routes: dict[str, Handler] = {}
    seen: list[Seen] = []

    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Seen(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
            seen.append(request)
            handler = routes.get(self.path.split("?", 1)[0])
            reply = handler(request) if handler else Reply(404, {"Content-Type": "text/plain"}, b"not found")
            self.send_response(reply.status)
            headers = {"Content-Length": str(len(reply.body)), **reply.headers}
            for name, value in headers.items():
                if value is not None:  # None removes a default header (e.g. Content-Length)
                    self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_POST = do_HEAD = _handle

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://127.0.0.1:{server.server_address[1]}", routes, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
