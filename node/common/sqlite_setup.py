"""What every SQLite connection of the node does when it opens: the node's database and the rate-limit
counters' file beside it (node/common/ratelimit.py) both use write-ahead logging."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

#: How long a connection tries to switch a new file to WAL while another one is doing it: as long as a
#: request waits for the write lock (``PRAGMA busy_timeout``).
WAL_WAIT_SECONDS = 15.0
_SQLITE_BUSY = 5


def use_wal(cursor: Any, *, wait: float = WAL_WAIT_SECONDS) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while SQLite answers that the database is busy. When
    several processes open a new file at once (the gunicorn workers and ``halles worker`` making the
    rate-limit file on their first request), all but one may be told so at once: SQLite does not call
    the busy handler there. In three processes opening 60 new files, 3 of the 60 had one fail (session
    9); a registration then answered 503 in the load test."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if (exc.sqlite_errorcode & 0xFF) != _SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
