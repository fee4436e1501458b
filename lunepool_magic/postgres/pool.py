"""A pool of psycopg 3 connections on top of the generic :class:`~lunepool_magic.pool.Pool`.

It adds connecting (URL, conninfo or keywords; libpq's environment fills the
gaps; autocommit by default, like psql), a clean return (an open or failed
transaction is rolled back, a running statement cancelled and its connection
closed; session state a notebook sets on purpose is kept), a liveness check
before lending (one poll(2) of an idle socket), discarding after errors that
end the session (:mod:`lunepool_magic.postgres.errors`), a PgBouncer mode
(no automatic prepared statements), and masked targets in every message.
Why each is so: docs/pool.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import EllipsisType
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from psycopg.rows import tuple_row

from lunepool_magic.pool import Borrow, Pool, PoolStats
from lunepool_magic.postgres.conninfo import describe_target, mask_password, parse_conninfo
from lunepool_magic.postgres.errors import ConnectionFailed, UnusableConnection, must_discard
from lunepool_magic.postgres.libpq import (
    ACTIVE,
    IDLE,
    IN_TRANSACTION,
    INTRANS,
    cancel_statement,
    socket_poller,
)

__all__ = [
    "ConnectionFailed",
    "PostgresPool",
    "create_pool",
    "destroy_pool",
    "with_connection",
]

#: What the pool's connections call themselves in pg_stat_activity, by default.
APPLICATION_NAME = "lunepool_magic"

T = TypeVar("T")
Connection = psycopg.Connection[Any]

logger = logging.getLogger("lunepool_magic.postgres")

# At most this many seconds go into cancelling a statement left running in a
# returned connection (see _cancel_running_statement). Best effort: the
# connection is closed right after, whatever happens.
_CANCEL_TIMEOUT = 2.0

# What libpq cannot go below (psycopg enforces the same minimum).
_MIN_CONNECT_TIMEOUT = 2


class PostgresPool:
    """A pool of psycopg connections to one PostgreSQL database.

    Build it with :func:`create_pool`. Borrow with ``with pool.connection() as
    conn:`` or ``pool.with_connection(fn)``. ``stats()`` and ``close()`` are
    the generic pool's.
    """

    def __init__(
        self,
        conninfo: str = "",
        *,
        max_connections: int = 5,
        min_connections: int = 0,
        acquire_timeout: float | None = 30.0,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 600.0,
        connect_timeout: float | None = None,
        autocommit: bool = True,
        pgbouncer: bool = False,
        application_name: str = APPLICATION_NAME,
        name: str | None = None,
        configure: Callable[[Connection], object] | None = None,
        **connect_params: Any,
    ) -> None:
        password = connect_params.get("password")
        if password is None:
            connect_params.pop("password", None)
        # Parse here, not at the first connect, so a typo fails now; the error
        # shows no part of the string (it may hold the password).
        params = parse_conninfo(conninfo, **connect_params)
        params.setdefault("application_name", application_name)
        if connect_timeout is None:
            # No borrow should hang much past its acquire timeout on a server
            # that accepts connections and then says nothing.
            connect_timeout = 10.0 if acquire_timeout is None else min(10.0, acquire_timeout)
        params.setdefault("connect_timeout", str(max(_MIN_CONNECT_TIMEOUT, int(connect_timeout))))
        self._conninfo = make_conninfo(**params)
        self._password = str(params.get("password") or "")
        self.target = describe_target(params)
        # Kept here too: the generic pool calls _connect from its constructor
        # (min_connections), before self._pool exists.
        self._name = name or self.target
        self.autocommit = autocommit
        self.pgbouncer = pgbouncer
        self._configure = configure
        # id(conn) -> its socket poller; filled by _connect, emptied by
        # _close_connection. Plain dict operations are atomic under the GIL.
        self._pollers: dict[int, Callable[[], object]] = {}
        self._pool: Pool[Connection] = Pool(
            self._connect,
            self._close_connection,
            max_size=max_connections,
            min_size=min_connections,
            acquire_timeout=acquire_timeout,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            check=self._check,
            check_after=0.0,  # the check itself is free unless the socket has news
            reset=self._reset,
            discard_on=must_discard,
            name=self._name,
            noun="connection",
        )

    # ----------------------------------------------------------------- public

    @property
    def name(self) -> str:
        return self._pool.name

    @property
    def max_connections(self) -> int:
        return self._pool.max_size

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def connection(self, timeout: float | EllipsisType | None = ...) -> Any:
        """Borrow a connection for a ``with`` block; it comes back clean.

        In autocommit mode (the default) every statement has committed when it
        returned. Without autocommit, the block is a transaction: committed
        when the block ends normally, rolled back if it raises. ``timeout``
        overrides ``acquire_timeout`` for this call (``None``: wait forever).
        """
        if self.autocommit:
            # The generic pool's Borrow, built directly: this is the hot path.
            pool = self._pool
            return Borrow(pool, pool.acquire_timeout if timeout is ... else timeout)
        return self._transaction_block(timeout)

    @contextmanager
    def _transaction_block(self, timeout: float | EllipsisType | None) -> Iterator[Connection]:
        with self._pool.borrow(timeout) as conn:
            yield conn
            if conn.pgconn.transaction_status == INTRANS:
                conn.commit()

    def with_connection(self, fn: Callable[[Connection], T], timeout: Any = ...) -> T:
        """Call ``fn(conn)`` with a borrowed connection and return its result."""
        with self.connection(timeout) as conn:
            return fn(conn)

    def mask(self, text: str) -> str:
        """``text`` with this pool's password (and anything shaped like one) masked."""
        return mask_password(text, self._password)

    def stats(self) -> PoolStats:
        return self._pool.stats()

    def close(self) -> None:
        """Close every idle connection now, borrowed ones when they come back."""
        self._pool.close()

    def __enter__(self) -> PostgresPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self._pool.stats()
        state = "closed" if self._pool.closed else "open"
        return (
            f"<PostgresPool {self.name!r} {state} size={s.size}/{s.max_size} "
            f"idle={s.idle} waiting={s.waiting}>"
        )

    __str__ = __repr__

    # ------------------------------------------------------- pool hooks (I/O)

    def _connect(self) -> Connection:
        message = None
        try:
            conn = psycopg.connect(
                self._conninfo,
                autocommit=self.autocommit,
                prepare_threshold=None if self.pgbouncer else 5,
            )
        except psycopg.OperationalError as exc:
            message = self._connect_failure_message(exc)
        if message is not None:
            # Raised here, outside the except block: nothing unmasked is chained.
            raise ConnectionFailed(message)
        try:
            if self._configure is not None:
                self._configure(conn)
                if conn.pgconn.transaction_status != IDLE:
                    conn.commit()
            self._pollers[id(conn)] = socket_poller(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_failure_message(self, exc: psycopg.OperationalError) -> str:
        # libpq never echoes the password, but a message is cheap to scrub.
        reason = mask_password(str(exc).strip(), self._password)
        pool = "" if self._name == self.target else f" (pool {self._name!r})"
        return (
            f"could not connect to {self.target}{pool}: {reason}\n"
            "Check that the server is running and accepts connections there, "
            "and that the user, database and password (PGPASSWORD, ~/.pgpass) are right."
        )

    def _close_connection(self, conn: Connection) -> None:
        self._pollers.pop(id(conn), None)
        conn.close()

    def _check(self, conn: Connection) -> None:
        # Hot path: runs on every borrow of an idle connection. One poll(2).
        # No status check is needed first: reset left the connection IDLE and
        # nobody does I/O on it while it sits in the pool.
        if self._pollers[id(conn)]():
            self._confirm_alive(conn)

    def _confirm_alive(self, conn: Connection) -> None:
        """The server spoke while the connection sat idle: find out what it said.

        Most often a FATAL goodbye (backend terminated, server shutting down),
        and the empty query raises; otherwise a notification or a notice, which
        psycopg files away, and the connection is fine.
        """
        if conn.autocommit:
            conn.execute("")
            return
        # Outside autocommit psycopg would open a transaction first.
        conn.autocommit = True
        try:
            conn.execute("")
        finally:
            if not conn.closed:
                conn.autocommit = False

    def _reset(self, conn: Connection) -> None:
        # Hot path: runs on every return. Usually three attribute reads.
        if conn.pgconn.transaction_status != IDLE:
            self._end_transaction(conn)
        if conn.row_factory is not tuple_row:
            conn.row_factory = tuple_row
        if conn.autocommit is not self.autocommit:
            conn.autocommit = self.autocommit

    def _end_transaction(self, conn: Connection) -> None:
        """Roll back what a borrower left open; raise if it cannot be done cheaply."""
        status = conn.pgconn.transaction_status
        if status in IN_TRANSACTION:
            logger.info("pool %r: rolling back a transaction left open", self._name)
            conn.rollback()
            return
        state = pq.TransactionStatus(status).name
        if status == ACTIVE:
            # A statement or COPY is still running. Ask the server to stop it
            # (else it runs on, holding locks, and may even commit), then let
            # the pool close the connection: draining could take forever.
            cancel_statement(conn, _CANCEL_TIMEOUT)
            raise UnusableConnection(
                f"connection returned with a statement or COPY still running ({state}); "
                "it was cancelled and the connection is closed"
            )
        # UNKNOWN: the connection is closed or broken.
        raise UnusableConnection(f"connection returned closed or broken ({state})")


def create_pool(
    conninfo: str = "",
    *,
    host: str | None = None,
    port: int | str | None = None,
    database: str | None = None,
    user: str | None = None,
    password: str | None = None,
    max_connections: int = 5,
    acquire_timeout: float | None = 30.0,
    **options: Any,
) -> PostgresPool:
    """Create a connection pool; no connection is opened until first needed.

    ``conninfo`` is a URL (``postgresql://user@host/db``) or a libpq string
    (``host=... dbname=...``); keyword arguments override it; whatever is left
    out comes from libpq's environment variables and ``~/.pgpass``. Because
    connections open lazily (unless ``min_connections`` is set), creating a
    pool succeeds while the server is down; the first borrow then fails with
    :class:`ConnectionFailed`, and a later one succeeds once the server is up.
    With ``min_connections`` > 0, ``create_pool`` opens that many at once and
    raises :class:`ConnectionFailed` if it cannot. A malformed ``conninfo``
    raises ``psycopg.ProgrammingError`` at once.

    More options: ``min_connections``, ``max_lifetime``, ``max_idle``,
    ``connect_timeout`` (seconds, at least 2; default ``min(10,
    acquire_timeout)``), ``autocommit``, ``pgbouncer`` (set True behind
    PgBouncer in transaction mode: disables prepared statements),
    ``application_name``, ``name``, ``configure`` (called on each new
    connection), and any libpq parameter (``sslmode=...``, ``options=...``).
    """
    params = {
        key: value
        for key, value in (
            ("host", host),
            ("port", port),
            ("dbname", database),
            ("user", user),
            ("password", password),
        )
        if value is not None
    }
    return PostgresPool(
        conninfo,
        max_connections=max_connections,
        acquire_timeout=acquire_timeout,
        **params,
        **options,
    )


def destroy_pool(pool: PostgresPool) -> None:
    """Close the pool: idle connections now, borrowed ones as they come back."""
    pool.close()


def with_connection(pool: PostgresPool, fn: Callable[[Connection], T]) -> T:
    """Run ``fn(conn)`` on a pooled connection; the connection always comes back."""
    return pool.with_connection(fn)
