"""What the resilience suite tried, for the summary printed at the end of the run: hostile inputs sent,
load requests, faults injected, rows checked, and the data each check found lost or duplicated
(which must stay 0)."""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
#: "inputs:<kind>", "faults:<kind>", "lost", "duplicated", "checked:<kind>" -> count
COUNTS: Counter[str] = Counter()


def add(name: str, amount: int = 1) -> None:
    with _lock:
        COUNTS[name] += amount


def inputs(kind: str, amount: int = 1) -> None:
    add(f"inputs:{kind}", amount)


def fault(kind: str, amount: int = 1) -> None:
    add(f"faults:{kind}", amount)


def load(kind: str, amount: int = 1) -> None:
    """Ordinary requests sent by the load test."""
    add(f"load:{kind}", amount)


def checked(kind: str, amount: int = 1) -> None:
    """Rows (events, registrations, bookings, messages) whose survival a test verified."""
    add(f"checked:{kind}", amount)


def lost(amount: int) -> None:
    add("lost", amount)


def duplicated(amount: int) -> None:
    add("duplicated", amount)


def total(prefix: str) -> int:
    with _lock:
        return sum(value for key, value in COUNTS.items() if key.startswith(prefix + ":"))


def lines() -> list[str]:
    with _lock:
        counts = dict(COUNTS)
    if not counts:
        return []

    def group(prefix: str) -> str:
        parts = sorted((key.split(":", 1)[1], value) for key, value in counts.items() if key.startswith(prefix + ":"))
        return ", ".join(f"{name} {value}" for name, value in parts) or "none"

    return [
        f"hostile inputs tried: {total('inputs')} ({group('inputs')})",
        f"load requests served: {total('load')} ({group('load')})",
        f"faults injected: {total('faults')} ({group('faults')})",
        f"rows checked after faults and load: {total('checked')} ({group('checked')})",
        f"data lost: {counts.get('lost', 0)}, duplicated: {counts.get('duplicated', 0)}",
    ]
