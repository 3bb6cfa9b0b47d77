"""Fake remote servers on 127.0.0.1 that misbehave on purpose, written on raw sockets so every byte
and its timing is ours: a healthy inbox, one that answers 500, one that never answers, one that
drops the connection, ones that trickle their status line or their body one byte per second, and
ones that answer 410 Gone, 400 Bad Request or 429 with a Retry-After."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import Counter

MODES = ("ok", "error", "timeout", "drop", "slow-headers", "slow-body", "slow-error", "gone", "bad-request",
         "throttle")


def _read_request(sock: socket.socket) -> bytes:
    """Read one HTTP request (headers + Content-Length body); b'' when the client went away."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return body


class FakePeer:
    """``mode`` decides how each request is answered; ``received`` counts activity ids (ok mode),
    ``hung_up_after`` records how long the client stayed before we saw it leave (slow modes)."""

    def __init__(self, mode: str = "ok") -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.received: Counter[str] = Counter()
        self.requests = 0
        self.hung_up_after: list[float] = []
        #: What the throttle mode sends as Retry-After, in seconds.
        self.retry_after = 600
        self._stop = threading.Event()
        self._lock = threading.Lock()
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                peer._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/inbox"

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _trickle(self, sock: socket.socket, data: bytes, started: float) -> None:
        for byte in data:
            if self._stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                with self._lock:
                    self.hung_up_after.append(time.monotonic() - started)
                return
            # Sleep in small steps so close() ends the test quickly.
            for _ in range(10):
                if self._stop.wait(0.1):
                    return

    def _handle(self, sock: socket.socket) -> None:
        started = time.monotonic()
        try:
            body = _read_request(sock)
        except OSError:
            return
        with self._lock:
            self.requests += 1
        if self.mode == "drop":
            sock.shutdown(socket.SHUT_RDWR)
            return
        if self.mode == "timeout":
            # Never answer; notice when the client gives up.
            sock.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    if sock.recv(1) == b"":
                        with self._lock:
                            self.hung_up_after.append(time.monotonic() - started)
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return
            return
        if self.mode == "error":
            sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops!")
            return
        if self.mode == "slow-headers":
            self._trickle(sock, b"HTTP/1.1 202 Accepted\r\n" + b"X-Padding: " + b"." * 10_000, started)
            return
        if self.mode == "slow-body":
            sock.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 100000\r\n\r\n")
            self._trickle(sock, b"." * 100_000, started)
            return
        if self.mode == "slow-error":
            sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100000\r\n\r\n")
            self._trickle(sock, b"." * 100_000, started)
            return
        if self.mode == "gone":
            sock.sendall(b"HTTP/1.1 410 Gone\r\nContent-Length: 4\r\nConnection: close\r\n\r\ngone")
            return
        if self.mode == "bad-request":
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad")
            return
        if self.mode == "throttle":
            sock.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %d\r\nContent-Length: 4\r\n"
                         b"Connection: close\r\n\r\nslow" % self.retry_after)
            return
        try:
            activity_id = json.loads(body)["id"]
        except (ValueError, KeyError, TypeError):
            activity_id = "?"
        with self._lock:
            self.received[activity_id] += 1
        sock.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
