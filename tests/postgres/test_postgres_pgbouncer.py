"""Issue 3, behaviour 8: the wrapper behind a real PgBouncer in transaction mode.

PgBouncer before 1.21 (Debian 12 ships 1.18) cannot route protocol-level
prepared statements: in transaction mode each transaction may run on another
server connection, and several clients share one. psycopg prepares a query
after it ran 5 times (``prepare_threshold=5``), so repeated queries break;
``pgbouncer=True`` turns that off.

What was observed here with PgBouncer 1.18 and psycopg 3.3: one client alone
does *not* break (PgBouncer keeps giving it the same idle server connection),
so the failing case uses two clients that take turns. The second one to
prepare ``_pg3_0`` on the shared server connection gets
``DuplicatePreparedStatement`` (42P05); with more server connections in play
``InvalidSqlStatementName`` (26000, "does not exist") shows up as well.

More wrapper tests run through PgBouncer via the ``wrapper_target`` fixture
of test_postgres_pool.py. All are skipped where pgbouncer is not installed,
and fail instead under ``LUNEPOOL_CI_STRICT=1``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from lunepool_magic.postgres import PostgresPool, create_pool, destroy_pool, query

pytestmark = pytest.mark.pgbouncer

WAIT = 10.0
REPEATS = 12  # more than psycopg's prepare threshold (5), twice over
PARAMETRIZED = "SELECT %s::int + 1 AS next"


@pytest.fixture
def make_pool(pgbouncer_url: str) -> Iterator[Callable[..., PostgresPool]]:
    """``make_pool(**options)``: a pool through PgBouncer, destroyed after the test."""
    pools: list[PostgresPool] = []

    def make(**options: Any) -> PostgresPool:
        options.setdefault("application_name", f"lpm-test-{uuid.uuid4().hex[:12]}")
        options.setdefault("acquire_timeout", WAIT)
        pool = create_pool(pgbouncer_url, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        destroy_pool(pool)


def take_turns(pool: PostgresPool) -> list[int]:
    """Two connections held at once run the same parametrized query, in turn, REPEATS times."""
    answers = []
    with pool.connection() as first, pool.connection() as second:
        for i in range(REPEATS):
            for conn in (first, second):
                answers.append(conn.execute(PARAMETRIZED, (i,)).fetchone()[0])
    return answers


def test_repeated_queries_work_with_pgbouncer_option(make_pool) -> None:
    pool = make_pool(max_connections=2, pgbouncer=True)
    assert take_turns(pool) == [i + 1 for i in range(REPEATS) for _ in range(2)]
    with pool.connection() as conn:
        assert conn.prepare_threshold is None  # psycopg never prepares
        # The query() entry point too, many times over.
        for i in range(REPEATS):
            assert query(conn, PARAMETRIZED, (i,))["next"].tolist() == [i + 1]


def test_repeated_queries_break_without_pgbouncer_option(make_pool) -> None:
    """Why the option exists: psycopg's automatic prepared statements collide."""
    pool = make_pool(max_connections=2)
    with pytest.raises(
        (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName)
    ) as info:
        take_turns(pool)
    assert "_pg3_" in str(info.value)  # psycopg's own statement names


def test_many_threads_repeat_queries_through_pgbouncer(make_pool) -> None:
    threads, per_thread = 8, 30
    pool = make_pool(max_connections=4, pgbouncer=True)
    start = threading.Barrier(threads)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            start.wait(WAIT)
            out = []
            for i in range(per_thread):
                with pool.connection() as conn:
                    out.append(conn.execute(PARAMETRIZED, (number * 100 + i,)).fetchone()[0])
            results[number] = out
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
    assert not errors, errors
    assert results == {n: [n * 100 + i + 1 for i in range(per_thread)] for n in range(threads)}
    stats = pool.stats()
    assert (stats.in_use, stats.broken, stats.requests) == (0, 0, threads * per_thread)


def test_server_connection_killed_mid_transaction_behind_pgbouncer(make_pool, pg_admin) -> None:
    """The error reaches the caller (PgBouncer passes the FATAL on and hangs up); the
    connection is discarded and the next request works.

    Mid-transaction because only then is a server connection tied to our
    client; one killed while idle in PgBouncer's own pool is PgBouncer's
    business (it may still hand it to the next query if it has not noticed
    yet, and that query then fails the same way).
    """
    pool = make_pool(max_connections=1, pgbouncer=True)
    with pytest.raises(psycopg.errors.AdminShutdown), pool.connection() as conn:
        conn.execute("BEGIN")
        server_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        pg_admin.execute("SELECT pg_terminate_backend(%s)", (server_pid,))
        _wait_gone(pg_admin, server_pid)
        conn.execute("SELECT 1")
    assert pool.stats().broken == 1
    assert pool.with_connection(lambda c: c.execute("SELECT 1").fetchone()) == (1,)


def _wait_gone(admin: psycopg.Connection, pid: int) -> None:
    deadline = time.monotonic() + WAIT
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        if time.monotonic() > deadline:
            pytest.fail(f"backend {pid} did not exit")
        time.sleep(0.005)
