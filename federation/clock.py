"""Time windows and timestamp formats shared by HTTP signatures and proofs.

The library never reads the clock: every check takes ``now`` from the caller, so tests and the
worker decide what "now" is. ``now`` must be timezone-aware; a naive datetime is a bug in the
caller (is it UTC or Paris?) and raises ``ValueError``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

#: How far in the future a signature or proof may claim to be made: covers peers whose clock runs
#: fast. Fedify uses the same one hour window.
MAX_CLOCK_SKEW = timedelta(hours=1)
#: How old an HTTP signature may be. Long enough for a delivery queue that stalls for a while,
#: short enough to limit replay of a captured request (idempotency by activity id does the rest).
MAX_SIGNATURE_AGE = timedelta(hours=12)

_XSD_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def require_aware(now: datetime, name: str = "now") -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return now.astimezone(UTC)


def format_xsd_datetime(moment: datetime) -> str:
    """Whole seconds in UTC with ``Z`` (``2024-05-01T10:00:00Z``), the form FEP-8b32 asks for."""
    return require_aware(moment, "created").replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_xsd_datetime(text: str) -> datetime:
    """Parse an ``xsd:dateTimeStamp`` (offset required); fractional seconds are truncated to µs."""
    if not isinstance(text, str):
        raise ValueError(f"not an XML Schema dateTimeStamp: {text!r}")
    return _parse_xsd_datetime(text)


#: Pure, and a burst's proofs share a few ``created`` seconds.
@lru_cache(maxsize=1024)
def _parse_xsd_datetime(text: str) -> datetime:
    match = _XSD_DATETIME.match(text)
    if not match:
        raise ValueError(f"not an XML Schema dateTimeStamp: {text!r}")
    fraction = (match.group(7) or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if match.group(8) == "Z" else match.group(8)
    base = "{}-{}-{}T{}:{}:{}".format(*match.groups()[:6])
    return datetime.fromisoformat(f"{base}.{fraction}{zone}").astimezone(UTC)


def check_window(moment: datetime, now: datetime, *, max_age: timedelta | None) -> str | None:
    """Return ``"signature from the future"`` / ``"signature expired"`` or ``None`` when in window."""
    if moment > now + MAX_CLOCK_SKEW:
        return "signature from the future"
    if max_age is not None and moment < now - max_age:
        return "signature expired"
    return None
