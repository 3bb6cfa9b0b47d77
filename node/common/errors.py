"""Domain errors raised by services; the API turns them into RFC 9457 problem documents and the CLI
into one line on stderr. Each carries a ``detail`` a person can act on."""

from __future__ import annotations

from typing import Any


class HallesError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(HallesError):
    """A body or parameter that cannot be read at all (not JSON, not an object, nested too deep)."""

    status = 400
    title = "Bad request"


class PayloadTooLarge(HallesError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(HallesError):
    status = 415
    title = "Unsupported media type"


class InvalidInput(HallesError):
    status = 422
    title = "Invalid input"


class Unauthorized(HallesError):
    status = 401
    title = "Authentication required"


class Forbidden(HallesError):
    status = 403
    title = "Not allowed"


class NotFound(HallesError):
    status = 404
    title = "Not found"


class Conflict(HallesError):
    status = 409
    title = "Conflict"


class Gone(HallesError):
    status = 410
    title = "Gone"
