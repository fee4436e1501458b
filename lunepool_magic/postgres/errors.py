"""Which errors mean a connection must be discarded: the one place that decides.

After hasql-pool's ``SessionErrorDestructors``: a small table of SQLSTATEs,
plus psycopg's own view of the connection. Everything that needs the answer
(the pool's ``discard_on`` hook, the magic's "session lost" notice) asks
:func:`must_discard`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq

# SQLSTATE classes and codes after which the session cannot be trusted.
DISCARD_SQLSTATE_CLASSES: frozenset[str] = frozenset(
    {
        "08",  # connection exception: the link to the server is gone or was refused
    }
)
DISCARD_SQLSTATES: frozenset[str] = frozenset(
    {
        "57P01",  # admin_shutdown: pg_terminate_backend or a fast shutdown
        "57P02",  # crash_shutdown: another backend crashed, the server restarts
        "57P03",  # cannot_connect_now: the server is starting or stopping
        "57P04",  # database_dropped
        "57P05",  # idle_session_timeout: the server closed the session
        "25P03",  # idle_in_transaction_session_timeout: the server closed the session
        "26000",  # invalid_sql_statement_name: a prepared statement vanished (PgBouncer)
        "42P05",  # duplicate_prepared_statement: prepared-statement state is out of sync
    }
)


def must_discard(exc: BaseException, conn: psycopg.Connection[Any] | None = None) -> bool:
    """Return True if ``exc`` (raised while using ``conn``) means: do not reuse it.

    A connection psycopg knows is closed or broken is always discarded; so is
    one whose error carries a SQLSTATE from the tables above. An error without
    a SQLSTATE that psycopg raises as OperationalError (for example "server
    closed the connection unexpectedly") is a lost connection too. Ordinary
    SQL errors (syntax, constraint, cancelled query) leave the session usable.
    """
    if conn is not None and (conn.closed or conn.pgconn.status != pq.ConnStatus.OK):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = exc.sqlstate
    if sqlstate is None:
        return isinstance(exc, psycopg.OperationalError)
    return sqlstate in DISCARD_SQLSTATES or sqlstate[:2] in DISCARD_SQLSTATE_CLASSES
