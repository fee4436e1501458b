"""A pool of psycopg 3 connections on top of the generic :class:`~lunepool_magic.pool.Pool`.

What this layer adds to the generic pool, and why:

* **Connecting.** A URL or libpq conninfo string, keyword parameters, or
  nothing at all: libpq fills the gaps from ``PGHOST``/``PGUSER``/... and
  ``~/.pgpass``, as psql does. Connections are in autocommit mode by default,
  like psql: each statement commits when it succeeds, ``SELECT 1`` is one
  round trip, and a transaction is explicit (``with conn.transaction():``).
* **Clean return** (the pool's ``reset``): an open or failed transaction is
  rolled back; a connection with a query or COPY still in progress, or a
  broken one, is closed and replaced. Session state that users set on
  purpose is kept: ``SET`` parameters, temporary tables, prepared statements,
  ``LISTEN``. That is what lets sequential notebook cells behave like a psql
  session; code that needs a pristine session can run ``DISCARD ALL`` itself.
* **Liveness before lending** (the pool's ``check``): the socket of an idle
  connection is polled, which costs no round trip. A backend that was
  terminated, or a server that restarted, has sent its goodbye there; only
  then is a real (empty) query sent to confirm, and a dead connection is
  replaced before the borrower sees it.
* **Errors** that mean "this session is gone" are decided in
  :mod:`lunepool_magic.postgres.errors`; such a connection is discarded after
  the error has reached its caller. Statements are never retried silently.
* **Secrets.** The password is passed to libpq and to nothing else: the
  pool's name, ``repr``, logs and error messages show a masked target.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import EllipsisType
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lunepool_magic.pool import Pool, PoolStats
from lunepool_magic.postgres.errors import must_discard

__all__ = [
    "ConnectionFailed",
    "PostgresPool",
    "create_pool",
    "describe_target",
    "destroy_pool",
    "with_connection",
]

T = TypeVar("T")
Connection = psycopg.Connection[Any]

logger = logging.getLogger("lunepool_magic.postgres")

_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR


class ConnectionFailed(psycopg.OperationalError):
    """A new connection could not be opened.

    A psycopg ``OperationalError``, so existing handlers still catch it; its
    message names the (masked) target and the server's reason.
    """


class UnusableConnection(Exception):
    """Raised by the reset/check hooks: the connection must be replaced."""


def describe_target(params: dict[str, Any]) -> str:
    """A URL-like description of connection parameters, without the password."""
    env = os.environ
    user = params.get("user") or env.get("PGUSER") or ""
    host = params.get("host") or env.get("PGHOST") or ""
    port = params.get("port") or env.get("PGPORT") or ""
    dbname = params.get("dbname") or env.get("PGDATABASE") or ""
    # A Unix socket directory is shown in brackets, as it cannot be a host name.
    where = f"[{host}]" if host.startswith("/") else host or "localhost"
    if port:
        where += f":{port}"
    return f"postgresql://{user + '@' if user else ''}{where}/{dbname}"


class _Liveness:
    """Per-connection socket pollers: an idle connection should have nothing to read."""

    def __init__(self) -> None:
        self._pollers: dict[int, Any] = {}

    def add(self, conn: Connection) -> None:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(conn.pgconn.socket, select.POLLIN)
            self._pollers[id(conn)] = poller

    def remove(self, conn: Connection) -> None:
        self._pollers.pop(id(conn), None)

    def has_input(self, conn: Connection) -> bool:
        poller = self._pollers.get(id(conn))
        if poller is not None:
            return bool(poller.poll(0))
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
        return bool(readable)


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
        connect_timeout: float = 10.0,
        autocommit: bool = True,
        pgbouncer: bool = False,
        application_name: str = "lunepool_magic",
        name: str | None = None,
        configure: Callable[[Connection], object] | None = None,
        **connect_params: Any,
    ) -> None:
        if connect_params.get("password") is None:
            connect_params.pop("password", None)
        params = conninfo_to_dict(make_conninfo(conninfo, **connect_params))
        params.setdefault("application_name", application_name)
        params.setdefault("connect_timeout", str(max(2, int(connect_timeout))))
        self._conninfo = make_conninfo(**params)
        self._password = str(params.get("password") or "")
        self.target = describe_target(params)
        self.autocommit = autocommit
        self.pgbouncer = pgbouncer
        self._configure = configure
        self._liveness = _Liveness()
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
            name=name or self.target,
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
        when the block ends normally, rolled back if it raises.
        """
        if self.autocommit:
            return self._pool.borrow(timeout)
        return self._transaction_block(timeout)

    @contextmanager
    def _transaction_block(self, timeout: float | EllipsisType | None) -> Iterator[Connection]:
        with self._pool.borrow(timeout) as conn:
            yield conn
            if conn.pgconn.transaction_status == _INTRANS:
                conn.commit()

    def with_connection(self, fn: Callable[[Connection], T], timeout: Any = ...) -> T:
        """Call ``fn(conn)`` with a borrowed connection and return its result."""
        with self.connection(timeout) as conn:
            return fn(conn)

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
        try:
            conn = psycopg.connect(
                self._conninfo,
                autocommit=self.autocommit,
                prepare_threshold=None if self.pgbouncer else 5,
            )
        except psycopg.OperationalError as exc:
            raise ConnectionFailed(self._connect_failure_message(exc)) from None
        try:
            if self._configure is not None:
                self._configure(conn)
                if conn.pgconn.transaction_status != _IDLE:
                    conn.commit()
            self._liveness.add(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_failure_message(self, exc: psycopg.OperationalError) -> str:
        reason = str(exc).strip()
        if self._password:
            # libpq never echoes the password, but a message is cheap to scrub.
            reason = reason.replace(self._password, "***")
        pool = "" if self.name == self.target else f" (pool {self.name!r})"
        return (
            f"could not connect to {self.target}{pool}: {reason}\n"
            "Check that the server is running and accepts connections there, "
            "and that the user, database and password (PGPASSWORD, ~/.pgpass) are right."
        )

    def _close_connection(self, conn: Connection) -> None:
        self._liveness.remove(conn)
        conn.close()

    def _check(self, conn: Connection) -> None:
        if conn.pgconn.status != pq.ConnStatus.OK:
            raise UnusableConnection("connection is closed")
        if self._liveness.has_input(conn):
            # The server spoke while the connection sat idle: most often a
            # FATAL goodbye (backend terminated, server shutting down). An
            # empty query reads it and proves the session alive, or raises.
            if conn.autocommit:
                conn.execute("")
            else:
                conn.autocommit = True
                try:
                    conn.execute("")
                finally:
                    conn.autocommit = False

    def _reset(self, conn: Connection) -> None:
        status = conn.pgconn.transaction_status
        if status == _IDLE:
            return
        if status in (_INTRANS, _INERROR):
            logger.info("pool %r: rolling back a transaction left open", self.name)
            conn.rollback()
            return
        # ACTIVE (a query or COPY still running) or UNKNOWN (broken): cannot be
        # cleaned without waiting on the server, so it is closed and replaced.
        raise UnusableConnection(f"connection returned in state {status.name}")


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

    More options: ``min_connections``, ``max_lifetime``, ``max_idle``,
    ``connect_timeout``, ``autocommit``, ``pgbouncer`` (set True behind
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
