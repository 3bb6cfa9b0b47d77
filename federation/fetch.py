"""Safe fetching of remote JSON documents (actors, keys, objects, WebFinger).

Any URL that reaches a node comes from a stranger (an ``id``, a ``keyId``, a redirect), so every
fetch:

* accepts only ``http``/``https`` URLs without credentials;
* resolves the host with the resolver it is given and refuses private, loopback, link-local,
  multicast, reserved, unspecified, shared (CGNAT), IPv6 ULA and IPv4-mapped/-embedded addresses,
  unless ``allow_private`` (tests, demo on 127.0.0.1);
* follows at most ``MAX_REDIRECTS`` redirects itself, checking every hop the same way;
* sets connect/read timeouts, streams the body and stops past ``max_bytes``;
* checks the media type and that the body is a JSON object.

Limitation: ``requests`` resolves the host again when it connects, so a DNS answer that changes
between the check and the connection (DNS rebinding) is not caught here; the deployment's egress
firewall is the backstop for that.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .errors import FetchError
from .vocab import ACTIVITY_ACCEPT, ACTIVITY_CONTENT_TYPES

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = (3.05, 10)
DEFAULT_MAX_BYTES = 1_000_000
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024

#: ``resolver(host, port)`` -> getaddrinfo-style 5-tuples, or plain address strings.
#: ``socket.getaddrinfo`` fits; tests pass a fake that maps names to chosen addresses.
Resolver = Callable[[str, int], Iterable[Any]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: IPv6 prefixes that embed an IPv4 address and would let a request reach it through a gateway.
_EMBEDDING_V6 = (
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64 well-known prefix
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64
    ipaddress.ip_network("2002::/16"),  # 6to4
    ipaddress.ip_network("2001::/32"),  # Teredo
)


def address_refusal(address: IPAddress) -> str | None:
    """Why an address may not be fetched from, or ``None`` when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6 address"
        if any(address in net for net in _EMBEDDING_V6):
            return "IPv6 address embedding an IPv4 address"
        if address in ipaddress.ip_network("fc00::/7"):
            return "unique local address"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address"
    # is_global also excludes what the checks above miss: 100.64.0.0/10 (CGNAT), documentation and
    # benchmarking ranges, 192.0.0.0/24 ...
    if not address.is_global:
        return "non-global address"
    return None


def _addresses(resolver: Resolver, host: str, port: int) -> list[IPAddress]:
    try:
        answers = list(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from None
    addresses = []
    for answer in answers:
        text = answer[4][0] if isinstance(answer, tuple) else answer
        # getaddrinfo may append a scope to link-local IPv6 answers ("fe80::1%eth0").
        addresses.append(ipaddress.ip_address(str(text).split("%", 1)[0]))
    if not addresses:
        raise FetchError(f"cannot resolve {host}: no address")
    return addresses


def _system_resolver(host: str, port: int) -> Iterable[Any]:
    return socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)


def check_url_allowed(url: str, *, allow_private: bool = False, resolver: Resolver | None = None) -> list[IPAddress]:
    """Refuse (``FetchError``) a URL a node must not connect to; return the addresses it resolves to.

    ``resolver`` defaults to the system's ``getaddrinfo``; pass one to control DNS (tests).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("invalid URL", url=url) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError(f"scheme not allowed: {scheme or 'none'}", url=url)
    if parts.username is not None or parts.password is not None:
        raise FetchError("credentials in URL are not allowed", url=url)
    host = parts.hostname
    if not host:
        raise FetchError("URL has no host", url=url)
    port = port or (443 if scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [literal] if literal is not None else _addresses(resolver or _system_resolver, host, port)
    for address in addresses:
        refusal = always_refused(address) if allow_private else address_refusal(address)
        if refusal:
            raise FetchError(f"address not allowed: {address} is a {refusal}", url=url)
    return addresses


def always_refused(address: IPAddress) -> str | None:
    """What stays refused even when private addresses are allowed (tests, demo, an intranet):
    link-local covers cloud metadata services (169.254.169.254, fe80::/10); multicast and the
    unspecified address are never a server."""
    for name, hit in (
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
    ):
        if hit:
            return f"{name} address"
    return None


@dataclass(frozen=True)
class FetchedDocument:
    #: The URL the document was finally served from (after redirects): check its origin.
    url: str
    document: dict[str, Any]
    content_type: str


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def fetch_document(
    session: requests.Session,
    url: str,
    *,
    allow_private: bool = False,
    resolver: Resolver | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    accept: str = ACTIVITY_ACCEPT,
    allowed_types: Iterable[str] = ACTIVITY_CONTENT_TYPES,
    auth: requests.auth.AuthBase | None = None,
    headers: dict[str, str] | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> FetchedDocument:
    """GET a JSON object safely; see the module documentation for what is checked."""
    allowed = {media.lower() for media in allowed_types}
    current = url
    for _hop in range(max_redirects + 1):
        check_url_allowed(current, allow_private=allow_private, resolver=resolver)
        try:
            response = session.get(
                current,
                headers={"Accept": accept, **(headers or {})},
                timeout=timeout,
                stream=True,
                allow_redirects=False,
                auth=auth,
            )
        except requests.Timeout:
            raise FetchError("timed out", url=current) from None
        except requests.RequestException as exc:
            raise FetchError(f"connection failed: {type(exc).__name__}", url=current) from None
        try:
            if response.status_code in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise FetchError("redirect without Location", url=current, status=response.status_code)
                current = urljoin(current, location)
                continue
            return _read_document(response, current, allowed, max_bytes)
        finally:
            response.close()
    raise FetchError(f"too many redirects (more than {max_redirects})", url=url)


def _read_document(response: requests.Response, url: str, allowed: set[str], max_bytes: int) -> FetchedDocument:
    if response.status_code != 200:
        raise FetchError(f"HTTP {response.status_code}", url=url, status=response.status_code)
    media = _media_type(response.headers.get("Content-Type"))
    if media not in allowed:
        raise FetchError(f"unexpected content type: {media or 'none'}", url=url, status=200)
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"response too large (more than {max_bytes} bytes)", url=url, status=200)
    chunks = []
    size = 0
    try:
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"response too large (more than {max_bytes} bytes)", url=url, status=200)
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise FetchError(f"connection failed while reading: {type(exc).__name__}", url=url) from None
    try:
        document = json.loads(b"".join(chunks), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise FetchError("invalid JSON", url=url, status=200) from None
    if not isinstance(document, dict):
        raise FetchError("not a JSON object", url=url, status=200)
    return FetchedDocument(url, document, media)


def fetch_json(
    session: requests.Session,
    url: str,
    *,
    allow_private: bool = False,
    resolver: Resolver | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    accept: str = ACTIVITY_ACCEPT,
    allowed_types: Iterable[str] = ACTIVITY_CONTENT_TYPES,
    auth: requests.auth.AuthBase | None = None,
    headers: dict[str, str] | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> dict[str, Any]:
    """Like :func:`fetch_document`, returning only the JSON object."""
    return fetch_document(
        session,
        url,
        allow_private=allow_private,
        resolver=resolver,
        timeout=timeout,
        max_bytes=max_bytes,
        accept=accept,
        allowed_types=allowed_types,
        auth=auth,
        headers=headers,
        max_redirects=max_redirects,
    ).document
