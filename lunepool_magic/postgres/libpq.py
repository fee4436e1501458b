"""Driving libpq directly: transaction statuses, socket waits, results, cancelling.

The pool, the COPY fetch path and the notebook engine all stop running
statements, wait on sockets and read results to the end; each of those
mechanisms is written here once. Waits go through poll(2), which returns to
Python on a signal, so Ctrl-C interrupts them.
"""

from __future__ import annotations

import contextlib
import logging
import select
from collections.abc import Iterator
from time import monotonic
from typing import Any

import psycopg
from psycopg import pq
from psycopg.pq import ExecStatus

__all__ = [
    "ACTIVE",
    "CANCEL_TIMEOUT",
    "IDLE",
    "INERROR",
    "INTRANS",
    "IN_TRANSACTION",
    "cancel_pauses",
    "cancel_statement",
    "close_quietly",
    "drain",
    "error_from",
    "finish_results",
    "finish_statement",
    "flush",
    "next_result",
    "send",
    "socket_poller",
    "wait_socket",
]

logger = logging.getLogger("lunepool_magic.postgres")

# Plain ints: pgconn.transaction_status is an int in psycopg's C implementation,
# and comparing two ints is faster than going through the IntEnum.
IDLE = int(pq.TransactionStatus.IDLE)
INTRANS = int(pq.TransactionStatus.INTRANS)
INERROR = int(pq.TransactionStatus.INERROR)
ACTIVE = int(pq.TransactionStatus.ACTIVE)
#: An open transaction, healthy or failed: what a pinned ``BEGIN`` looks like.
IN_TRANSACTION = (INTRANS, INERROR)

#: How long stopping an interrupted statement may take before its connection is
#: given up (closed; the pool then replaces it).
CANCEL_TIMEOUT = 5.0


def wait_socket(fd: int, write: bool = False, timeout: float | None = None) -> bool:
    """Wait until the socket is readable (or writable); False on timeout.

    poll(2) rather than select(2): no limit on the descriptor's number.
    """
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def socket_poller(conn: psycopg.Connection[Any]) -> Any:
    """A function answering "does this connection's socket have data to read?".

    One poll(2) per call (select(2) where poll is missing) and no read: a true
    answer only says the server sent something.
    """
    fd = conn.pgconn.socket
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poll = poller.poll
        return lambda: poll(0)
    return lambda: select.select([fd], [], [], 0)[0]


def send(pgconn: Any, command: bytes) -> None:
    """Send a simple-protocol command on a non-blocking connection."""
    pgconn.send_query(command)
    flush(pgconn)


def flush(pgconn: Any) -> None:
    """Push everything libpq has buffered to the server."""
    while pgconn.flush():  # non-blocking connection: 1 while data is left to send
        wait_socket(pgconn.socket, write=True)
        pgconn.consume_input()


def next_result(pgconn: Any, deadline: float | None = None) -> Any:
    """The next PGresult (None after the last), waiting in poll(2)."""
    while pgconn.is_busy():
        timeout = None if deadline is None else max(0.0, deadline - monotonic())
        ready = wait_socket(pgconn.socket, timeout=timeout)
        if not ready and deadline is not None and monotonic() >= deadline:
            raise TimeoutError("the server did not finish in time")
        pgconn.consume_input()
    return pgconn.get_result()


def error_from(conn: psycopg.Connection[Any], result: Any) -> psycopg.Error:
    """psycopg's exception for a failed PGresult."""
    return psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


def finish_results(conn: psycopg.Connection[Any]) -> None:
    """Read every result left of the statements sent; raise the first server error.

    All are read before raising, so the connection is idle again either way.
    """
    pgconn = conn.pgconn
    error = None
    while (result := next_result(pgconn)) is not None:
        if result.status == ExecStatus.FATAL_ERROR and error is None:
            error = error_from(conn, result)
    if error is not None:
        raise error


def cancel_pauses(timeout: float) -> Iterator[float]:
    """The pauses between repeated cancel requests: growing, until ``timeout`` has passed.

    The server ignores a cancel request that arrives before the backend has
    started the statement, so requests are repeated: quickly at first (the
    common race is a few milliseconds), then at most every 0.25 s.
    """
    deadline = monotonic() + timeout
    pause = 0.01
    while (remaining := deadline - monotonic()) > 0:
        yield min(pause, remaining)
        pause = min(pause * 2, 0.25)


def cancel_statement(conn: psycopg.Connection[Any], timeout: float = 2.0) -> bool:
    """Ask the server to cancel the running statement; True once it has answered.

    The server ignores a cancel request that arrives before the backend has
    started the statement (it is still reading it), so one request is not
    enough when the statement was sent a moment ago: the request is repeated,
    with growing pauses, until the server sends something (its error, or
    data it had ready) or ``timeout`` seconds have passed.
    """
    fd = conn.pgconn.socket
    deadline = monotonic() + timeout
    for pause in cancel_pauses(timeout):
        try:
            conn.cancel_safe(timeout=max(0.1, deadline - monotonic()))
        except Exception as exc:
            logger.info("cancelling a running statement failed: %s", exc)
            return False
        if wait_socket(fd, timeout=pause):
            return True
    return False


def drain(conn: psycopg.Connection[Any], timeout: float = CANCEL_TIMEOUT) -> None:
    """Read and drop everything until the connection is no longer busy.

    For a cancelled statement: its rows, a COPY's data (libpq repeats the
    COPY_OUT result until that is read), its error. A COPY FROM is ended.
    Raises TimeoutError if the server is still busy after ``timeout`` seconds.
    """
    pgconn = conn.pgconn
    deadline = monotonic() + timeout
    while pgconn.transaction_status == ACTIVE:
        result = next_result(pgconn, deadline)
        if result is None:
            break
        if result.status == ExecStatus.COPY_OUT:
            while True:
                nbytes, _ = pgconn.get_copy_data(1)
                if nbytes > 0:
                    continue
                if nbytes < 0:
                    break
                if monotonic() >= deadline:
                    raise TimeoutError("the server did not stop the COPY in time")
                wait_socket(pgconn.socket, timeout=max(0.0, deadline - monotonic()))
                pgconn.consume_input()
        elif result.status == ExecStatus.COPY_IN:
            pgconn.put_copy_end(b"cancelled")


def finish_statement(conn: psycopg.Connection[Any], timeout: float = CANCEL_TIMEOUT) -> bool:
    """Cancel the running statement and read its results to the end.

    Returns True when the connection is no longer busy (idle, or in a
    transaction that the cancelled statement aborted), False if it could not
    be finished within ``timeout`` seconds; the pool then replaces it.
    """
    if conn.pgconn.transaction_status != ACTIVE:
        return True
    deadline = monotonic() + timeout
    try:
        if not cancel_statement(conn, timeout):
            return False
        drain(conn, max(0.0, deadline - monotonic()))
    except Exception as exc:
        logger.info("finishing a cancelled statement failed: %s", exc)
        return False
    return True


def close_quietly(conn: psycopg.Connection[Any]) -> None:
    """Close a connection that cannot be made clean (left mid-COPY or mid-pipeline).

    Left open, it would be ACTIVE in a COPY: code that drains results with
    ``PQgetResult`` alone never finishes one (it returns the COPY_OUT result
    again and again). Closed, the pool discards it; the server stops writing
    once the socket is gone.
    """
    with contextlib.suppress(Exception):
        conn.close()
