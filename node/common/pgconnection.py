"""The psycopg connection of a PostgreSQL engine: a rollback of a transaction that went well keeps the
statements psycopg prepared on the connection.

psycopg prepares a statement on the server once it has run it a few times on a connection (and
``executemany`` at once), so that the server no longer parses and plans it. But every rollback makes
it forget them all and deallocate them on the server, and rollbacks are everywhere: the pool rolls
back each connection handed back inside a transaction, the session rolls back at the end of every
request that only read. In the ingest benchmark the worker planned its event inserts six times per
run of a hundred activities, and the server spent 190 us per applied activity instead of 155.

psycopg forgets them because a transaction that failed may have lost statements it was preparing
(the server skips what follows an error until the transaction ends), and its cache would then name
statements the server does not hold. A transaction without error lost nothing: every statement it
prepared exists and stays valid (PostgreSQL re-plans one whose tables changed, or fails as the same
query would). So such a rollback keeps them; any other (a failed transaction, a pipeline, psycopg's
own ``transaction()`` blocks, a two-phase transaction) is psycopg's own.

``pooled_connection`` lends a pooled driver connection for a block, in autocommit when asked, and
makes sure it goes back to the pool in transactions (or not at all, when the server dropped it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors
from psycopg.pq import ExecStatus, TransactionStatus

#: psycopg's own (private) state that says whether a rollback must be its own: a pipeline, a
#: ``transaction()`` block, a two-phase transaction. Read with a default that means "unknown": should a
#: release rename any of them, every rollback is psycopg's own again (slower, never wrong), and
#: tests/test_pgconnection.py fails to say so.
PSYCOPG_STATE = ("_pipeline", "_num_transactions", "_tpc")
_UNKNOWN = object()


class KeepPreparedConnection(psycopg.Connection):
    """``psycopg.Connection`` whose ``rollback`` of a transaction without error keeps prepared statements."""

    def keeps_prepared_statements_on_rollback(self) -> bool:
        """Whether a rollback now can be a plain ``ROLLBACK`` that keeps prepared statements: a
        transaction without error, outside any pipeline, ``transaction()`` block or two-phase
        transaction, as far as psycopg's state can be read."""
        if self.pgconn.transaction_status != TransactionStatus.INTRANS:
            return False
        pipeline, blocks, two_phase = (getattr(self, name, _UNKNOWN) for name in PSYCOPG_STATE)
        return pipeline is None and blocks == 0 and two_phase is None

    def rollback(self) -> None:
        if not self.keeps_prepared_statements_on_rollback():
            super().rollback()
            return
        with self.lock:
            result = self.pgconn.exec_(b"ROLLBACK")
        if result.status != ExecStatus.COMMAND_OK:
            raise errors.error_from_result(result)


def connect_keeping_prepared(dialect, _connection_record, cargs, cparams):
    """SQLAlchemy ``do_connect`` hook of a psycopg engine: its connections are ``KeepPreparedConnection``."""
    if dialect.driver != "psycopg":
        return None  # another driver: SQLAlchemy connects as usual
    return KeepPreparedConnection.connect(*cargs, **cparams)


@contextmanager
def pooled_connection(engine: Any, *, autocommit: bool = False) -> Iterator[Any]:
    """A pooled driver connection of ``engine`` for the block, in autocommit when asked (PostgreSQL:
    each statement its own transaction, one round trip). It goes back to the pool as the pool's other
    users expect it, in transactions; one that cannot be set back (the server dropped it, or a statement
    was interrupted) is invalidated instead, and the pool opens another when needed."""
    pooled = engine.raw_connection()
    try:
        if autocommit:
            pooled.driver_connection.autocommit = True
        yield pooled
    finally:
        try:
            if autocommit:
                pooled.driver_connection.autocommit = False
        except engine.dialect.loaded_dbapi.Error:
            pooled.invalidate()
        pooled.close()
