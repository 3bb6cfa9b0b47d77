"""Safe fetch: address filtering after DNS, manual redirects, size, type and JSON checks."""

from __future__ import annotations

import io
import ipaddress
import socket

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from federation.errors import FetchError
from federation.fetch import address_refusal, check_url_allowed, fetch_document, fetch_json
from federation.vocab import ACTIVITY_ACCEPT

from .local_server import Reply, local_server

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

DNS = {
    "public.example": [PUBLIC_V4],
    "public6.example": [PUBLIC_V6],
    "other.example": ["198.51.100.7"],  # documentation range: not global
    "mixed.example": [PUBLIC_V4, "10.1.2.3"],
    "internal.example": ["10.0.0.5"],
    "rebind.example": ["127.0.0.1"],
    "empty.example": [],
}


def fake_resolver(host, port):
    if host not in DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    # Same shape as socket.getaddrinfo: (family, type, proto, canonname, sockaddr).
    return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in DNS[host]]


REFUSED = [
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"),  # cloud metadata endpoint
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "non-global"),  # carrier-grade NAT
    ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fd12:3456::1", "unique local"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:93.184.216.34", "IPv4-mapped"),  # refused even when the embedded address is public
    ("64:ff9b::7f00:1", "embedding an IPv4"),
    ("2002:7f00:1::1", "embedding an IPv4"),
]


@pytest.mark.parametrize("address,category", REFUSED, ids=[a for a, _ in REFUSED])
def test_address_categories(address, category):
    assert category in address_refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [PUBLIC_V4, PUBLIC_V6, "1.1.1.1", "2a01:4f8::1"])
def test_public_addresses_pass(address):
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "address,category", REFUSED[:6] + REFUSED[10:12], ids=[a for a, _ in REFUSED[:6] + REFUSED[10:12]]
)
def test_literal_urls_are_checked(address, category):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchError, match="address not allowed"):
        check_url_allowed(f"https://{host}/actor", resolver=fake_resolver)
    if category in ("link-local", "multicast", "unspecified"):
        # Never a server, even for a node that allows private addresses (cloud metadata is link-local).
        with pytest.raises(FetchError, match=category):
            check_url_allowed(f"https://{host}/actor", allow_private=True, resolver=fake_resolver)
    else:
        check_url_allowed(f"https://{host}/actor", allow_private=True, resolver=fake_resolver)


def test_names_are_checked_after_resolution():
    assert check_url_allowed("https://public.example/actor", resolver=fake_resolver) == [
        ipaddress.ip_address(PUBLIC_V4)
    ]
    assert check_url_allowed("https://public6.example/actor", resolver=fake_resolver)
    for host in ("internal.example", "rebind.example", "other.example"):
        with pytest.raises(FetchError, match="address not allowed"):
            check_url_allowed(f"https://{host}/actor", resolver=fake_resolver)
    # One bad answer among good ones is enough to refuse: the connection could use either.
    with pytest.raises(FetchError, match="10.1.2.3 is a private address"):
        check_url_allowed("https://mixed.example/actor", resolver=fake_resolver)
    with pytest.raises(FetchError, match="cannot resolve nowhere.example"):
        check_url_allowed("https://nowhere.example/", resolver=fake_resolver)
    with pytest.raises(FetchError, match="no address"):
        check_url_allowed("https://empty.example/", resolver=fake_resolver)
    # With allow_private, loopback and private answers pass; link-local ones (metadata) never do.
    assert check_url_allowed("https://rebind.example/", allow_private=True, resolver=fake_resolver) == [
        ipaddress.ip_address("127.0.0.1")
    ]
    metadata = {"metadata.example": ["169.254.169.254"]}
    with pytest.raises(FetchError, match="link-local"):
        check_url_allowed("https://metadata.example/", allow_private=True,
                          resolver=lambda host, port: metadata[host])


def test_resolver_may_return_plain_strings():
    assert check_url_allowed("http://x.example/", resolver=lambda host, port: ["1.1.1.1"])


@pytest.mark.parametrize(
    "url,reason",
    [
        ("ftp://public.example/file", "scheme not allowed: ftp"),
        ("file:///etc/passwd", "scheme not allowed: file"),
        ("javascript:alert(1)", "scheme not allowed: javascript"),
        ("/relative/path", "scheme not allowed: none"),
        ("https://user:pw@public.example/", "credentials in URL"),
        ("https:///nohost", "URL has no host"),
        ("https://public.example:99999/", "invalid URL"),
    ],
)
def test_bad_urls(url, reason):
    with pytest.raises(FetchError, match=reason):
        check_url_allowed(url, allow_private=True, resolver=fake_resolver)


# --- fetching through a scripted transport (no network) -----------------------------------------


class ScriptedAdapter(BaseAdapter):
    """A requests transport answering from a dict of URL -> Reply, recording what was asked."""

    def __init__(self, script):
        super().__init__()
        self.script = script
        self.requests = []

    def send(self, request, **kwargs):
        self.requests.append(request)
        reply = self.script.get(request.url)
        if isinstance(reply, Exception):
            raise reply
        if reply is None:
            reply = Reply(404, {"Content-Type": "text/plain"}, b"missing")
        response = requests.Response()
        response.status_code = reply.status
        response.headers = CaseInsensitiveDict({k: v for k, v in reply.headers.items() if v is not None})
        response.raw = io.BytesIO(reply.body)
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


@pytest.fixture
def scripted():
    def make(script):
        session = requests.Session()
        adapter = ScriptedAdapter(script)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session, adapter

    return make


ACTOR_JSON = b'{"id": "https://public.example/actor", "type": "Service"}'
AP = {"Content-Type": "application/activity+json"}


def test_fetch_json_ok_and_accept_header(scripted):
    session, adapter = scripted({"https://public.example/actor": Reply(200, AP, ACTOR_JSON)})
    assert fetch_json(session, "https://public.example/actor", resolver=fake_resolver)["type"] == "Service"
    assert adapter.requests[0].headers["Accept"] == ACTIVITY_ACCEPT


def test_private_target_is_refused_before_any_request(scripted):
    session, adapter = scripted({})
    with pytest.raises(FetchError, match="address not allowed"):
        fetch_json(session, "https://internal.example/actor", resolver=fake_resolver)
    assert adapter.requests == []


@pytest.mark.parametrize(
    "location,reason",
    [
        ("https://internal.example/latest/meta-data", "address not allowed: 10.0.0.5"),
        ("http://169.254.169.254/latest/meta-data", "address not allowed: 169.254.169.254"),
        ("http://[::1]:8080/admin", "address not allowed: ::1"),
        ("file:///etc/passwd", "scheme not allowed: file"),
    ],
)
def test_redirects_to_refused_targets(scripted, location, reason):
    session, adapter = scripted({"https://public.example/actor": Reply(302, {"Location": location})})
    with pytest.raises(FetchError, match=reason):
        fetch_json(session, "https://public.example/actor", resolver=fake_resolver)
    assert [r.url for r in adapter.requests] == ["https://public.example/actor"]


def test_redirects_are_followed_and_reported(scripted):
    session, adapter = scripted(
        {
            "https://public.example/users/a": Reply(301, {"Location": "/actor"}),
            "https://public.example/actor": Reply(308, {"Location": "https://public6.example/actor"}),
            "https://public6.example/actor": Reply(200, AP, ACTOR_JSON),
        }
    )
    fetched = fetch_document(session, "https://public.example/users/a", resolver=fake_resolver)
    assert fetched.url == "https://public6.example/actor"  # callers check the final origin
    assert fetched.content_type == "application/activity+json"
    assert len(adapter.requests) == 3


def test_too_many_redirects(scripted):
    script = {f"https://public.example/{i}": Reply(302, {"Location": f"/{i + 1}"}) for i in range(10)}
    session, adapter = scripted(script)
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_json(session, "https://public.example/0", resolver=fake_resolver)
    assert len(adapter.requests) == 6  # the first request and five redirects
    session, _ = scripted({"https://public.example/r": Reply(302, {})})
    with pytest.raises(FetchError, match="redirect without Location"):
        fetch_json(session, "https://public.example/r", resolver=fake_resolver)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/activity+json",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/json; charset=utf-8",
        "application/jrd+json",
        "APPLICATION/ACTIVITY+JSON",
    ],
)
def test_accepted_content_types(scripted, content_type):
    session, _ = scripted({"https://public.example/a": Reply(200, {"Content-Type": content_type}, ACTOR_JSON)})
    assert fetch_json(session, "https://public.example/a", resolver=fake_resolver)


@pytest.mark.parametrize("content_type", ["text/html", "application/xml", None, "application/activity+json-x"])
def test_wrong_content_types(scripted, content_type):
    session, _ = scripted({"https://public.example/a": Reply(200, {"Content-Type": content_type}, ACTOR_JSON)})
    with pytest.raises(FetchError, match="unexpected content type"):
        fetch_json(session, "https://public.example/a", resolver=fake_resolver)


def test_allowed_types_can_be_narrowed(scripted):
    session, _ = scripted({"https://public.example/a": Reply(200, {"Content-Type": "application/json"}, ACTOR_JSON)})
    with pytest.raises(FetchError, match="unexpected content type: application/json"):
        fetch_json(session, "https://public.example/a", resolver=fake_resolver, allowed_types=["application/jrd+json"])


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"[1, 2]", "not a JSON object"),
        (b"{not json", "invalid JSON"),
        (b'{"x": NaN}', "invalid JSON"),
        (b"\xff\xfe{}", "invalid JSON"),
    ],
)
def test_bad_json(scripted, body, reason):
    session, _ = scripted({"https://public.example/a": Reply(200, AP, body)})
    with pytest.raises(FetchError, match=reason):
        fetch_json(session, "https://public.example/a", resolver=fake_resolver)


def test_http_errors_carry_the_status(scripted):
    session, _ = scripted({"https://public.example/gone": Reply(410, AP, b"{}")})
    with pytest.raises(FetchError) as caught:
        fetch_json(session, "https://public.example/gone", resolver=fake_resolver)
    assert caught.value.status == 410 and caught.value.reason == "HTTP 410"
    assert caught.value.url == "https://public.example/gone"


def test_transport_errors(scripted):
    session, _ = scripted(
        {
            "https://public.example/slow": requests.ReadTimeout("read timed out"),
            "https://public.example/down": requests.ConnectionError("refused"),
        }
    )
    with pytest.raises(FetchError, match="timed out"):
        fetch_json(session, "https://public.example/slow", resolver=fake_resolver)
    with pytest.raises(FetchError, match="connection failed: ConnectionError"):
        fetch_json(session, "https://public.example/down", resolver=fake_resolver)


def test_declared_oversized_body(scripted):
    big = b'{"x": "' + b"a" * 2000 + b'"}'
    session, _ = scripted({"https://public.example/big": Reply(200, {**AP, "Content-Length": str(len(big))}, big)})
    with pytest.raises(FetchError, match="response too large"):
        fetch_json(session, "https://public.example/big", resolver=fake_resolver, max_bytes=1000)


# --- over real HTTP on 127.0.0.1 ----------------------------------------------------------------


def test_local_server_needs_allow_private():
    with local_server() as server, requests.Session() as session:
        server.routes["/actor"] = lambda request: Reply(200, AP, ACTOR_JSON)
        with pytest.raises(FetchError, match="127.0.0.1 is a loopback address"):
            fetch_json(session, server.base_url + "/actor")
        assert server.seen == []
        assert fetch_json(session, server.base_url + "/actor", allow_private=True)["type"] == "Service"
        assert server.seen[0].headers["Accept"] == ACTIVITY_ACCEPT


def test_local_server_streamed_body_is_cut_at_max_bytes():
    big = b'{"x": "' + b"a" * 300_000 + b'"}'
    with local_server() as server, requests.Session() as session:
        # No Content-Length: the body is delimited by closing the connection, so only counting the
        # streamed bytes can stop it.
        server.routes["/big"] = lambda request: Reply(200, {**AP, "Content-Length": None, "Connection": "close"}, big)
        with pytest.raises(FetchError, match="response too large"):
            fetch_json(session, server.base_url + "/big", allow_private=True, max_bytes=100_000)
        assert fetch_json(session, server.base_url + "/big", allow_private=True, max_bytes=400_000)["x"]


def test_local_server_redirect_and_content_type():
    with local_server() as server, requests.Session() as session:
        server.routes["/old"] = lambda request: Reply(302, {"Location": "/actor"})
        server.routes["/actor"] = lambda request: Reply(200, AP, ACTOR_JSON)
        server.routes["/html"] = lambda request: Reply(200, {"Content-Type": "text/html"}, b"<html></html>")
        fetched = fetch_document(session, server.base_url + "/old", allow_private=True)
        assert fetched.url == server.base_url + "/actor"
        with pytest.raises(FetchError, match="unexpected content type: text/html"):
            fetch_json(session, server.base_url + "/html", allow_private=True)
