"""Opaque, stable cursors for keyset pagination (no OFFSET scans)."""

from __future__ import annotations

import base64
import json
from typing import Any

from node.common.errors import HallesError


class BadCursor(HallesError):
    status = 400
    title = "Bad cursor"


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise BadCursor("the cursor is not one this server issued; start again without it") from None
    if not isinstance(values, list) or len(values) != arity:
        raise BadCursor("the cursor is not one this server issued; start again without it")
    return values
