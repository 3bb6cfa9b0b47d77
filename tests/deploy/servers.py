"""Small real servers on 127.0.0.1 for the deployment tests: a JSON server (optionally over TLS,
optionally with a wrong clock in its Date header) and a port where nothing listens."""

from __future__ import annotations

import json
import ssl
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.smtp import free_port


class JsonServer:
    """Answers every GET with ``document`` as application/activity+json."""

    def __init__(self, document: dict[str, Any] | None = None, *, clock_offset: float = 0.0,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.document = document or {}
        self.clock_offset = clock_offset
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's hook name
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/activity+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def date_time_string(self, timestamp=None):  # the server's clock, possibly wrong
                return formatdate(time.time() + outer.clock_offset, usegmt=True)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> JsonServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()
