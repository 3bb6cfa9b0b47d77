"""federation/urls.py: origins as RFC 6454 defines them, the usual form read without urlsplit and agreeing
with urlsplit's reading (``origin_by_urlsplit``) on any URL."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from federation.urls import origin_by_urlsplit, origin_of, same_origin

PIECES = st.sampled_from(["http", "https", "HTTPS", "ftp", "://", ":", "/", "//", "?", "#", "@", ".", "..", "-",
                          "a", "Lyon", "lyon.example.org", "example", "127.0.0.1", "[::1]", ":443", ":8080",
                          ":99999", ":x", "\t", "\n", "\r", " ", "\\", "%2e", "é", "user:pw@", "events/1"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=12).map("".join))
@example("https://lyon.example.org/events/1")
@example("https://lyon.example.org./actor")
@example("https://./x")
@example("http://a.example\n.evil/x")
@example("\thttps://a.example/x")
@example("https://a.example\\@evil.example/")
@example("https://a.example#frag")
@example("https://a.example?q")
@example("https://a.example")
@example("https://a-b.example:443/x")
def test_origin_of_agrees_with_urlsplit(url):
    origin_of.cache_clear()
    assert origin_of(url) == origin_by_urlsplit(url)


@pytest.mark.parametrize("a, b, same", [
    ("https://lyon.example.org/events/1", "https://lyon.example.org/actor", True),
    ("https://lyon.example.org/events/1", "https://LYON.example.org:443/actor", True),
    ("https://lyon.example.org/events/1", "http://lyon.example.org/actor", False),
    ("https://lyon.example.org/events/1", "https://lyon.example.org:8443/actor", False),
    ("https://lyon.example.org.evil.example/x", "https://lyon.example.org/actor", False),
    ("https://evil.example\\@lyon.example.org/x", "https://lyon.example.org/actor", True),
    ("did:key:z6Mk", "did:key:z6Mk", True),
    ("did:key:z6Mk", "https://lyon.example.org/actor", False),
])
def test_same_origin(a, b, same):
    assert same_origin(a, b) is same
