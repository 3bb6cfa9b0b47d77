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
own ``transaction()`` blocks, a two-phase transaction) is psycopg's own."""

from __future__ import annotations

import psycopg
from psycopg import errors
from psycopg.pq import ExecStatus, TransactionStatus


class KeepPreparedConnection(psycopg.Connection):
    """``psycopg.Connection`` whose ``rollback`` of a transaction without error keeps prepared statements."""

    def rollback(self) -> None:
        if (self.pgconn.transaction_status != TransactionStatus.INTRANS
                or getattr(self, "_pipeline", None) is not None or getattr(self, "_num_transactions", 0)
                or getattr(self, "_tpc", None) is not None):
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
