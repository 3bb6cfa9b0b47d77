"""The HTTP session the node uses to talk to other servers, and safe fetching of remote documents.

One pooled ``requests.Session`` per app (connection reuse matters for fan-out); every fetch goes
through ``federation.fetch.fetch_json`` so private addresses are refused unless the node allows them
(tests and the demo run on 127.0.0.1).

Deadlines. ``requests`` timeouts bound each read from the socket, not the exchange: a server that
sends one byte every few seconds (its status line, its headers or its body) would hold a thread for
hours. ``deadline(seconds)`` bounds the whole exchange: the connections this thread uses meanwhile
are watched, and when time is up their sockets are shut down, which ends the blocked read at once."""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from flask import Flask, current_app
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from federation.errors import FetchError
from federation.fetch import FetchedDocument
from federation.fetch import fetch_document as _fetch_document

USER_AGENT = "Halles/0.1 (+https://halles.tiers-lieux.org)"
POOL_SIZE = 32
#: Longest a fetch of a remote document (actor, key, object) may take, all bytes included.
FETCH_DEADLINE = 15

_watch = threading.local()


class _Watched:
    """Mixin for urllib3 connections: inside ``deadline()``, the socket of every connection this
    thread opens or reuses is registered (the socket, not the connection: http.client hands it over
    to the response when the server closes after answering)."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _register(getattr(self, "sock", None))

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(getattr(self, "sock", None))
        super().request(*args, **kwargs)  # type: ignore[misc]


def _register(sock: Any) -> None:
    watched = getattr(_watch, "sockets", None)
    if watched is not None and sock is not None:
        watched.add(sock)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = threading.Event()


class _Entry:
    __slots__ = ("action", "cancelled")

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.cancelled = False


class _Watchdog:
    """One thread per process runs the expiry of every deadline. A ``threading.Timer`` per exchange
    cost about a millisecond to start and stop -- more than signing the request -- on every delivery."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, _Entry]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, delay: float, action: Callable[[], None]) -> _Entry:
        entry = _Entry(action)
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._sequence), entry))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="halles-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is entry:
                self._condition.notify()  # sooner than what the thread is waiting for
        return entry

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)  # a finished exchange: nothing to cut off
                    if not self._heap:
                        self._condition.wait()
                        continue
                    when, _sequence, entry = self._heap[0]
                    remaining = when - time.monotonic()
                    if remaining <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._condition.wait(remaining)
            if not entry.cancelled:
                try:
                    entry.action()
                except Exception:  # noqa: BLE001 - one failed expiry must not stop the others
                    pass


_watchdog = _Watchdog()


def _new_watchdog_after_fork() -> None:
    global _watchdog
    _watchdog = _Watchdog()  # gunicorn forks its workers: the parent's thread and lock stay behind


os.register_at_fork(after_in_child=_new_watchdog_after_fork)


@contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Bound every exchange this thread makes through ``session()`` inside the block to ``seconds``
    in total; ``.expired`` tells afterwards whether the deadline cut something off."""
    state = Deadline(seconds)
    watched: set[Any] = set()
    previous = getattr(_watch, "sockets", None)
    _watch.sockets = watched

    finished = threading.Event()

    def expire() -> None:
        if finished.is_set():  # the exchange ended meanwhile: its sockets may already serve another one
            return
        state.expired.set()
        for sock in list(watched):
            try:
                # shutdown, not close: it wakes a thread blocked reading the socket.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    entry = _watchdog.schedule(seconds, expire)
    try:
        yield state
    finally:
        finished.set()
        entry.cancelled = True
        _watch.sockets = previous


def session(app: Flask | None = None) -> requests.Session:
    app = app or current_app
    existing = app.extensions.get("halles_http")
    if existing is None:
        existing = requests.Session()
        adapter = _Adapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE, max_retries=0)
        existing.mount("http://", adapter)
        existing.mount("https://", adapter)
        existing.headers["User-Agent"] = f"{USER_AGENT} {app.config['HALLES_URL']}"
        app.extensions["halles_http"] = existing
    return existing


def allow_private(app: Flask | None = None) -> bool:
    return bool((app or current_app).config.get("HALLES_ALLOW_PRIVATE_ADDRESSES"))


def resolver(app: Flask | None = None) -> Any:
    """The DNS resolver safe fetches check names with: ``HALLES_RESOLVER`` (a callable like
    ``socket.getaddrinfo``, set by tests to map names to chosen addresses), else the system's."""
    return (app or current_app).config.get("HALLES_RESOLVER")


def fetch(url: str, **kwargs: Any) -> FetchedDocument:
    """GET a remote JSON document safely (timeouts, size limit, no private addresses), in at most
    ``FETCH_DEADLINE`` seconds."""
    with deadline(FETCH_DEADLINE) as state:
        try:
            return _fetch_document(session(), url, allow_private=allow_private(), resolver=resolver(), **kwargs)
        except FetchError as exc:
            if state.expired.is_set():
                raise FetchError(f"took longer than {FETCH_DEADLINE} s: cut off", url=url) from exc
            raise


def fetch_document(url: str, **kwargs: Any) -> dict[str, Any]:
    """Like ``fetch``, returning only the JSON object."""
    return fetch(url, **kwargs).document
