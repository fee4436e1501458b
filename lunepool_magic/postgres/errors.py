"""Which errors mean a connection must be discarded: the one place that decides.

After hasql-pool's ``SessionErrorDestructors``: a small table of SQLSTATEs,
plus psycopg's own view of the connection. Everything that needs the answer
(the pool's ``discard_on`` hook, the magic's "session lost" notice) asks
:func:`must_discard`.

How the server's errors actually reach psycopg (each checked by a test in
``tests/test_postgres_errors.py`` against a real server):

* ``pg_terminate_backend`` and a fast shutdown, on an idle or a busy session:
  ``AdminShutdown`` (57P01), severity FATAL.
* ``idle_session_timeout``: 57P05; ``idle_in_transaction_session_timeout``:
  25P03; both FATAL.
* A connection cut under psycopg, and a backend that died because another one
  crashed: ``OperationalError`` with *no* SQLSTATE ("server closed the
  connection unexpectedly"). The crash's 57P02 arrives only as a WARNING
  notice just before; 57P03 (starting up / shutting down / in recovery) only
  when connecting. Both stay in the table for servers and poolers that send
  them as errors.
* ``statement_timeout`` or a cancel (57014), syntax errors, constraint
  violations, a user's ``EXECUTE`` of an unknown prepared statement (26000) or
  a second ``PREPARE`` of one name (42P05): the session is fine and keeps its
  state. (26000 and 42P05 are also what psycopg's automatic prepared
  statements cause behind PgBouncer; discarding the connection does not cure
  that, ``pgbouncer=True`` does, and discarding would make a typo cost the
  user the session's temporary tables and settings.)
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
    }
)

# Severities after which the server ends the session, whatever the SQLSTATE.
DISCARD_SEVERITIES: frozenset[str] = frozenset({"FATAL", "PANIC"})

_BAD = pq.ConnStatus.BAD


def must_discard(exc: BaseException, conn: psycopg.Connection[Any] | None = None) -> bool:
    """Return True if ``exc`` (raised while using ``conn``) means: do not reuse it.

    A connection psycopg knows is closed or broken is always discarded; so is
    one whose error carries a SQLSTATE from the tables above, or the severity
    FATAL or PANIC (the server ends the session after those). An error without
    a SQLSTATE that psycopg raises as OperationalError (for example "server
    closed the connection unexpectedly") is a lost connection too, except
    ``PipelineAborted``, which only reports an earlier error in a pipeline.
    Ordinary SQL errors (syntax, constraint, cancelled query) and exceptions
    that are not psycopg's (KeyboardInterrupt included) leave the session
    usable; whether the connection itself is clean is the pool's reset's call.
    """
    if conn is not None and (conn.closed or conn.pgconn.status == _BAD):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = exc.sqlstate
    if sqlstate is None:
        return isinstance(exc, psycopg.OperationalError) and not isinstance(
            exc, psycopg.errors.PipelineAborted
        )
    if sqlstate in DISCARD_SQLSTATES or sqlstate[:2] in DISCARD_SQLSTATE_CLASSES:
        return True
    return exc.diag.severity_nonlocalized in DISCARD_SEVERITIES


class ShownWithoutFrames:
    """Mixin: IPython shows the error as its one-line message, without the traceback.

    For errors about a connection target: the frames would add nothing, and
    under ``%xmode Verbose`` their locals would show the connection string,
    password included.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ConnectionFailed(ShownWithoutFrames, psycopg.OperationalError):
    """A new connection could not be opened.

    A psycopg ``OperationalError``, so existing handlers still catch it; its
    message names the (masked) target and the server's reason.
    """

    __module__ = "lunepool_magic.postgres"


class UnusableConnection(Exception):
    """Raised by the pool's reset/check hooks: the connection must be replaced."""


class NoResultSetError(psycopg.ProgrammingError):
    """query() ran a statement that returned no result set (an INSERT, a CREATE ...).

    A ProgrammingError like psycopg's own "the last operation didn't produce a
    result"; the statement did run, and its effects are part of the current
    transaction.
    """

    __module__ = "lunepool_magic.postgres"


class CopyProtocolError(psycopg.InternalError):
    """COPY data from the server did not have the layout its format promises."""

    __module__ = "lunepool_magic.postgres"
