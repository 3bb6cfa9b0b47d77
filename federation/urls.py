"""URL helpers: origins (scheme, host, port) and the HTTP authority of a URL."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

#: The usual form of an id: lowercase scheme and host name, no port, no user, nothing ``urlsplit``
#: would strip or rewrite. Read without ``urlsplit`` (a tenth of its cost); anything else goes through it.
_PLAIN_ORIGIN = re.compile(r"(https?)://([a-z0-9.\-]+)(?:[/?#]|\Z)")


#: Pure and asked about the same few actor and key URLs for every activity of a burst (each event's
#: id, though, once or twice: hence the plain form read without ``urlsplit``).
@lru_cache(maxsize=4096)
def origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL with the default port filled in, else ``None``."""
    plain = _PLAIN_ORIGIN.match(url)
    if plain is not None:
        scheme, host = plain.groups()
        host = host.rstrip(".")
        if host:
            return scheme, host, DEFAULT_PORTS[scheme]
    return origin_by_urlsplit(url)


def origin_by_urlsplit(url: str) -> tuple[str, str, int] | None:
    """``origin_of`` as ``urlsplit`` reads the URL: the definition, which the plain form must agree with."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or DEFAULT_PORTS[scheme]


def same_origin(a: str, b: str) -> bool:
    """True when two http(s) URLs share scheme, host and port (RFC 6454 origins).

    Non-http identifiers (``did:key:...``) have no origin; they only match themselves.
    """
    origin_a, origin_b = origin_of(a), origin_of(b)
    if origin_a is None or origin_b is None:
        return a == b
    return origin_a == origin_b


def authority_of(url: str) -> str:
    """``host[:port]`` as RFC 9421 ``@authority`` wants it: lowercase, default port omitted."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets in an authority
        host = f"[{host}]"
    port = parts.port
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return host
    return f"{host}:{port}"


def request_target_of(url: str) -> str:
    """Origin-form request target: path (``/`` when empty) plus ``?query`` when there is one."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path
