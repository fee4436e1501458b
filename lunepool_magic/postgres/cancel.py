"""Stopping a statement that is still running on a connection.

Two callers need this: the pool, which cancels a statement left running in a
returned connection before closing it, and the magic, which finishes a
statement interrupted by Ctrl-C so that the session survives. The mechanism
lives here once.
"""

from __future__ import annotations

import logging
import select
from time import monotonic
from typing import Any

import psycopg
from psycopg import pq

__all__ = ["cancel_statement", "finish_statement"]

logger = logging.getLogger("lunepool_magic.postgres")

_ACTIVE = pq.TransactionStatus.ACTIVE


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
    pause = 0.01
    while True:
        try:
            conn.cancel_safe(timeout=max(0.1, deadline - monotonic()))
        except Exception as exc:
            logger.info("cancelling a running statement failed: %s", exc)
            return False
        remaining = deadline - monotonic()
        if remaining <= 0:
            return False
        if select.select([fd], [], [], min(pause, remaining))[0]:
            return True
        pause = min(pause * 2, 0.25)


def finish_statement(conn: psycopg.Connection[Any], timeout: float = 5.0) -> bool:
    """Cancel the running statement and read its results to the end.

    Returns True when the connection is no longer busy (idle, or in a
    transaction that the cancelled statement aborted), False if it could not
    be finished within ``timeout`` seconds; the pool then replaces it.
    """
    pgconn = conn.pgconn
    if pgconn.transaction_status != _ACTIVE:
        return True
    deadline = monotonic() + timeout
    try:
        if not cancel_statement(conn, timeout):
            return False
        while pgconn.transaction_status == _ACTIVE:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return False
            if pgconn.is_busy():
                select.select([pgconn.socket], [], [], remaining)
                pgconn.consume_input()
                continue
            result = pgconn.get_result()  # each result is dropped; None at the end
            if result is not None and result.status == pq.ExecStatus.COPY_OUT:
                # libpq repeats the COPY_OUT result until its data is read.
                _drain_copy_out(pgconn, deadline)
            elif result is not None and result.status == pq.ExecStatus.COPY_IN:
                pgconn.put_copy_end(b"cancelled")
    except Exception as exc:
        logger.info("finishing a cancelled statement failed: %s", exc)
        return False
    return True


def _drain_copy_out(pgconn: pq.abc.PGconn, deadline: float) -> None:
    """Read and drop COPY TO data until it ends (or ``deadline`` passes)."""
    while monotonic() < deadline:
        nbytes, _ = pgconn.get_copy_data(1)
        if nbytes == -1:
            return
        if nbytes == 0:
            select.select([pgconn.socket], [], [], max(0.0, deadline - monotonic()))
            pgconn.consume_input()
