"""RFC 8785 JSON Canonicalization Scheme (JCS).

The byte-level work is delegated to the ``rfc8785`` package (a small, audited implementation of
the RFC with the ECMAScript number serialisation); this module pins the error behaviour: anything
that has no JSON form (NaN, Infinity, numbers beyond the double range, lone surrogates, non-string
keys) raises :class:`~federation.errors.CanonicalizationError` with a message naming the problem,
instead of silently producing bytes another implementation would not produce.
"""

from __future__ import annotations

import math
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
