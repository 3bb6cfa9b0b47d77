"""The HTTP session the node uses to talk to other servers, and safe fetching of remote documents.

One pooled ``requests.Session`` per app (connection reuse matters for fan-out); every fetch goes
through ``federation.fetch.fetch_json`` so private addresses are refused unless the node allows them
(tests and the demo run on 127.0.0.1)."""

from __future__ import annotations

from typing import Any

import requests
from flask import Flask, current_app
from requests.adapters import HTTPAdapter

from federation.fetch import fetch_json

USER_AGENT = "Halles/0.1 (+https://halles.tiers-lieux.org)"
POOL_SIZE = 32


def session(app: Flask | None = None) -> requests.Session:
    app = app or current_app
    existing = app.extensions.get("halles_http")
    if existing is None:
        existing = requests.Session()
        adapter = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE, max_retries=0)
        existing.mount("http://", adapter)
        existing.mount("https://", adapter)
        existing.headers["User-Agent"] = f"{USER_AGENT} {app.config['HALLES_URL']}"
        app.extensions["halles_http"] = existing
    return existing


def allow_private(app: Flask | None = None) -> bool:
    return bool((app or current_app).config.get("HALLES_ALLOW_PRIVATE_ADDRESSES"))


def fetch_document(url: str, **kwargs: Any) -> dict[str, Any]:
    """GET a remote JSON document safely (timeouts, size limit, no private addresses)."""
    return fetch_json(session(), url, allow_private=allow_private(), **kwargs)
