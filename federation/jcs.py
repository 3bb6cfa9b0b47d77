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


def _jcs_order(names: list[str]) -> list[str]:
    """``names`` in JCS order (UTF-16 code units, RFC 8785 3.2.3). For ASCII names, the order of
    Python's string comparison: the same, without encoding each name."""
    if all(map(str.isascii, names)):
        return sorted(names)
    return sorted(names, key=_utf16)


class SharedCanonicalizer:
    """JCS of signed documents that embed other signed documents, each written once.

    A Create carries its object, and both are signed (the activity by its sender, the object by its
    origin, for re-shares): the activity's canonical form contains the object's, proof included, and
    the object's own proof is over the object without it. Here a document is written in JCS order as
    a few pieces: each member that is a signed document (an object carrying a ``proof``, written the
    same way and reused), the ``proof`` member, and the runs of other members between them, each run
    written by ``rfc8785`` in one call. The document with or without its proof, and inside the one
    that embeds it, is then a join of pieces already written. The bytes are exactly ``canonicalize``'s
    (a property test compares them on random documents); only the work is shared.

    Documents are remembered by identity, so one instance is for documents that do not change while
    it is used (one received activity)."""

    def __init__(self) -> None:
        # id(document) -> (the document, kept so that its id is not reused; its pieces in JCS order:
        # (member name, or None for a run of plain members; the bytes between the braces, or None for
        # a proof not written yet))
        self._pieces: dict[int, tuple[dict[str, Any], list[tuple[str | None, bytes | None]]]] = {}

    def canonicalize(self, document: dict[str, Any], *, omit: str | None = None) -> bytes:
        """``canonicalize`` of ``document`` without its member ``omit`` (e.g. ``"proof"``)."""
        try:
            pieces = self._pieces_of(document)
            if omit is None or omit not in document or any(name == omit for name, _piece in pieces):
                return b"{" + b",".join(self._written(document, pieces, index) for index, (name, _piece)
                                        in enumerate(pieces) if name is None or name != omit) + b"}"
        except (rfc8785.CanonicalizationError, TypeError, ValueError, AttributeError):
            pass
        # Outside JCS's plain domain (a big integer to read as a double, a value to name), or a member
        # to leave out that is not a piece of its own: the reference path, with its conversions and its
        # error messages.
        return canonicalize({name: value for name, value in document.items() if name != omit})

    @staticmethod
    def _written(document: dict[str, Any], pieces: list[tuple[str | None, bytes | None]], index: int) -> bytes:
        name, piece = pieces[index]
        if piece is None:  # a proof, written the first time a form that contains it is asked
            assert name is not None
            piece = _member_name(name) + rfc8785.dumps(document[name])
            pieces[index] = (name, piece)
        return piece

    def _pieces_of(self, document: dict[str, Any]) -> list[tuple[str | None, bytes | None]]:
        known = self._pieces.get(id(document))
        if known is not None and known[0] is document:
            return known[1]
        pieces: list[tuple[str | None, bytes | None]] = []
        run: dict[str, Any] = {}
        for name in _jcs_order(list(document)):
            value = document[name]
            signed = isinstance(value, dict) and "proof" in value
            if not signed and name != "proof":
                run[name] = value
                continue
            if run:
                pieces.append((None, rfc8785.dumps(run)[1:-1]))
                run = {}
            # A signed member is written at once (the document that embeds it contains it with its
            # proof); a proof only when asked for (a verifier never needs its own document's).
            pieces.append((name, _member_name(name) + self.canonicalize(value) if signed else None))
        if run:
            pieces.append((None, rfc8785.dumps(run)[1:-1]))
        self._pieces[id(document)] = (document, pieces)
        return pieces
