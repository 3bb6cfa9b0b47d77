"""Exceptions raised by the protocol library.

Verification functions never raise for a bad signature or proof: they return a result with a
reason, because the reason is what goes back to the peer in the 401. Exceptions are for inputs a
caller should not have produced (a naive datetime, an unsupported key type) and for I/O that could
not complete (a refused or failed fetch).
"""

from __future__ import annotations


class FederationError(Exception):
    """Base class of every error raised by :mod:`federation`."""


class KeyFormatError(FederationError, ValueError):
    """A key could not be decoded, or is of a type the federation does not use."""


class UnsupportedKeyError(FederationError, ValueError):
    """A key of a valid format but of a type or size this operation refuses."""


class CanonicalizationError(FederationError, ValueError):
    """A value cannot be written as RFC 8785 canonical JSON (NaN, Infinity, huge integer, ...)."""


class SignatureFormatError(FederationError, ValueError):
    """A signature header could not be parsed (only raised by the low-level parsers)."""


class FetchError(FederationError):
    """A remote document could not be fetched, or was refused before or after fetching.

    ``reason`` is a short sentence meant for logs and for the admin interface; ``url`` is the URL
    that failed (after redirects, when known) and ``status`` the HTTP status when there was one.
    """

    def __init__(self, reason: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(reason if url is None else f"{reason} ({url})")
        self.reason = reason
        self.url = url
        self.status = status
