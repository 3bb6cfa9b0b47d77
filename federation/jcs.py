"""RFC 8785 JSON Canonicalization Scheme (JCS).

The byte-level work is delegated to the ``rfc8785`` package (a small, audited implementation of
the RFC with the ECMAScript number serialisation); this module pins the error behaviour: anything
that has no JSON form (NaN, Infinity, numbers beyond the double range, lone surrogates, non-string
keys) raises :class:`~federation.errors.CanonicalizationError` with a message naming the problem,
instead of silently producing bytes another implementation would not produce.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import rfc8785

from .errors import CanonicalizationError

_SAFE_INT = 2**53 - 1


def _prepare(value: Any, path: str) -> Any:
    # rfc8785 already refuses NaN and Infinity, but its messages do not say where the value is; a
    # proof that fails to canonicalise should point at the offending member.
    if isinstance(value, float) and not math.isfinite(value):
        raise CanonicalizationError(f"{path}: {value} is not allowed in canonical JSON (RFC 8785 3.2.2.3)")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _SAFE_INT:
        # JSON numbers are IEEE doubles (RFC 8785 3.2.2.3). Every JavaScript implementation (Fedify
        # included) reads such an integer as the nearest double and prints that double, so doing the
        # same is what makes the bytes, and therefore the signatures, agree across implementations.
        try:
            return float(value)
        except OverflowError:
            raise CanonicalizationError(f"{path}: {value} is too large for a JSON number") from None
    if isinstance(value, dict):
        prepared = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalizationError(f"{path}: object key {key!r} is not a string")
            prepared[key] = _prepare(item, f"{path}.{key}")
        return prepared
    if isinstance(value, list | tuple):
        return [_prepare(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def canonicalize(obj: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON-compatible value."""
    try:
        # Almost every document is within JCS's domain as it is, and rfc8785 checks that while it
        # writes; only a refusal (a big integer to read as a double, a value to name) takes the walk
        # below. Inside the domain ``_prepare`` changes nothing, so the bytes are the same.
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        pass
    prepared = _prepare(obj, "$")
    try:
        return rfc8785.dumps(prepared)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalizationError(str(exc)) from exc
    except TypeError as exc:
        raise CanonicalizationError(f"not a JSON value: {exc}") from exc


@lru_cache(maxsize=4096)
def _member_name(key: str) -> bytes:
    """``"key":`` as JCS writes it (member names repeat from one document to the next)."""
    return rfc8785.dumps(key) + b":"


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


class SharedCanonicalizer:
    """JCS of signed documents that embed other signed documents, each written once.

    A Create carries its object, and both are signed (the activity by its sender, the object by its
    origin, for re-shares): the activity's canonical form contains the object's, proof included, and
    the object's own proof is over the object without it. Here an object that carries a ``proof`` is
    canonicalised member by member, and those members are reused for the object with or without its
    proof and inside the document that embeds it; any other value is written by ``rfc8785`` as
    ``canonicalize`` would. The bytes are exactly ``canonicalize``'s (a test compares them on random
    documents); only the work is shared.

    Objects are remembered by identity, so one instance is for documents that do not change while it
    is used (one received activity)."""

    def __init__(self) -> None:
        # id(object) -> (the object, kept so that its id is not reused; its members' canonical forms)
        self._members: dict[int, tuple[dict[str, Any], dict[str, bytes]]] = {}

    def canonicalize(self, document: dict[str, Any], *, omit: str | None = None) -> bytes:
        """``canonicalize`` of ``document`` without its member ``omit`` (e.g. ``"proof"``)."""
        try:
            members = self._members_of(document)
            names = sorted((name for name in members if name != omit), key=_utf16)
            return b"{" + b",".join(_member_name(name) + members[name] for name in names) + b"}"
        except (rfc8785.CanonicalizationError, TypeError, ValueError, AttributeError):
            # Outside JCS's plain domain (a big integer to read as a double, a value to name): the
            # reference path, with its conversions and its error messages.
            return canonicalize({name: value for name, value in document.items() if name != omit})

    def _members_of(self, document: dict[str, Any]) -> dict[str, bytes]:
        known = self._members.get(id(document))
        if known is not None and known[0] is document:
            return known[1]
        members = {}
        for name, value in document.items():
            if isinstance(value, dict) and "proof" in value:
                members[name] = self.canonicalize(value)
            else:
                members[name] = rfc8785.dumps(value)
        self._members[id(document)] = (document, members)
        return members
