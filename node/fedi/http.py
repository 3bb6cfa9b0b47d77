"""The HTTP session the node uses to talk to other servers, and safe fetching of remote documents.

One pooled ``requests.Session`` per app (connection reuse matters for fan-out); every fetch goes
through ``federation.fetch.fetch_json`` so private addresses are refused unless the node allows them
(tests and the demo run on 127.0.0.1).

Deadlines. ``requests`` timeouts bound each read from the socket, not the exchange: a server that
sends one byte every few seconds (its status line, its headers or its body) would hold a thread for
hours. ``deadline(seconds)`` bounds the whole exchange: the connections this thread uses meanwhile
are watched, and when time is up their sockets are shut down, which ends the blocked read at once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
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


@contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Bound every exchange this thread makes through ``session()`` inside the block to ``seconds``
    in total; ``.expired`` tells afterwards whether the deadline cut something off."""
    state = Deadline(seconds)
    watched: set[Any] = set()
    previous = getattr(_watch, "sockets", None)
    _watch.sockets = watched

    def expire() -> None:
        state.expired.set()
        for sock in list(watched):
            try:
                # shutdown, not close: it wakes a thread blocked reading the socket.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield state
    finally:
        timer.cancel()
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
