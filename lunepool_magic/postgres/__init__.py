"""PostgreSQL on the generic pool: ``create_pool``, ``with_connection``, ``query``.

Usable without IPython::

    from lunepool_magic.postgres import create_pool, destroy_pool, with_connection, query

    pool = create_pool("postgresql://me@localhost/shop", max_connections=5)
    df = with_connection(pool, lambda conn: query(conn, "SELECT * FROM orders"))
    destroy_pool(pool)

The pool costs psycopg only: the names that build DataFrames (``query``,
``run``, ``execute``, ``Result``) load pandas and pyarrow on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lunepool_magic.pool import PoolClosed, PoolError, PoolStats, PoolTimeout
from lunepool_magic.postgres.errors import ConnectionFailed, NoResultSetError, must_discard
from lunepool_magic.postgres.pool import (
    PostgresPool,
    create_pool,
    destroy_pool,
    with_connection,
)

if TYPE_CHECKING:
    from lunepool_magic.postgres.statement import Result, execute, query, run

__all__ = [
    "ConnectionFailed",
    "NoResultSetError",
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

# Loaded on first access (PEP 562), so that importing the pool stays light.
_LAZY = {
    name: "lunepool_magic.postgres.statement" for name in ("Result", "execute", "query", "run")
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value
