"""PostgreSQL on the generic pool: ``create_pool``, ``with_connection``, ``query``.

Usable without IPython::

    from lunepool_magic.postgres import create_pool, destroy_pool, with_connection, query

    pool = create_pool("postgresql://me@localhost/shop", max_connections=5)
    df = with_connection(pool, lambda conn: query(conn, "SELECT * FROM orders"))
    destroy_pool(pool)
"""

from lunepool_magic.pool import PoolClosed, PoolError, PoolStats, PoolTimeout
from lunepool_magic.postgres.errors import must_discard
from lunepool_magic.postgres.pool import (
    ConnectionFailed,
    PostgresPool,
    create_pool,
    destroy_pool,
    with_connection,
)
from lunepool_magic.postgres.query import Result, execute, query, run

__all__ = [
    "ConnectionFailed",
    "PoolClosed",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "PostgresPool",
    "Result",
    "create_pool",
    "destroy_pool",
    "execute",
    "must_discard",
    "query",
    "run",
    "with_connection",
]
