"""Issue 3, behaviour 3: one table decides which errors discard a connection.

Each case makes a real server produce a real error inside a borrow, then
checks two things: what :func:`must_discard` says about it, and that the pool
acted on it (a discarded connection is replaced by a new backend; a kept one
is lent again, with its session). No error is constructed by hand except
where noted.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from support.backends import WAIT, wait_gone, wait_until, when_active

from lunepool_magic.postgres import PostgresPool, create_pool, destroy_pool, must_discard
from lunepool_magic.postgres import errors as errors_module

LONG_SLEEP = 30  # seconds a "long" statement would run if nothing stopped it


@pytest.fixture
def make_pool(pg_url: str) -> Iterator[Callable[..., PostgresPool]]:
    """``make_pool(url=pg_url, **options)``: a pool of one, destroyed after the test."""
    pools: list[PostgresPool] = []

    def make(url: str | None = None, **options: Any) -> PostgresPool:
        options.setdefault("application_name", f"lpm-test-{uuid.uuid4().hex[:12]}")
        options.setdefault("acquire_timeout", WAIT)
        options.setdefault("max_connections", 1)
        pool = create_pool(url or pg_url, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        destroy_pool(pool)


# ------------------------------------------------------- the real errors


def terminate_while_busy(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    pid = conn.info.backend_pid
    with when_active(admin, pid, lambda: admin.execute("SELECT pg_terminate_backend(%s)", (pid,))):
        conn.execute(f"SELECT pg_sleep({LONG_SLEEP})")


def terminate_while_idle(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    pid = conn.info.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_gone(admin, pid)
    conn.execute("SELECT 1")


def idle_session_timeout(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    conn.execute("SET idle_session_timeout = '50ms'")
    wait_gone(admin, conn.info.backend_pid)
    conn.execute("SELECT 1")


def idle_in_transaction_timeout(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    conn.execute("SET idle_in_transaction_session_timeout = '50ms'")
    conn.execute("BEGIN")
    wait_gone(admin, conn.info.backend_pid)
    conn.execute("SELECT 1")


def statement_timeout(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    # SET LOCAL: the setting ends with the (rolled back) transaction, so the
    # session the pool keeps is unchanged.
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = '50ms'")
        conn.execute(f"SELECT pg_sleep({LONG_SLEEP})")


def cancelled_by_admin(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    pid = conn.info.backend_pid
    with when_active(admin, pid, lambda: admin.execute("SELECT pg_cancel_backend(%s)", (pid,))):
        conn.execute(f"SELECT pg_sleep({LONG_SLEEP})")


def syntax_error(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    conn.execute("SELEC 1")


def division_by_zero(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    conn.execute("SELECT 1 / 0")


def unique_violation(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS once (x int PRIMARY KEY)")
    conn.execute("INSERT INTO once VALUES (1), (1)")


def unknown_prepared_statement(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    conn.execute("EXECUTE no_such_statement")


def duplicate_prepared_statement(conn: psycopg.Connection, admin: psycopg.Connection) -> None:
    conn.execute("PREPARE twice AS SELECT 1")
    conn.execute("PREPARE twice AS SELECT 1")


@dataclass(frozen=True)
class Case:
    produce: Callable[[psycopg.Connection, psycopg.Connection], None]
    error: type[psycopg.Error]
    sqlstate: str
    discard: bool


CASES = [
    Case(terminate_while_busy, psycopg.errors.AdminShutdown, "57P01", True),
    Case(terminate_while_idle, psycopg.errors.AdminShutdown, "57P01", True),
    Case(idle_session_timeout, psycopg.errors.IdleSessionTimeout, "57P05", True),
    Case(
        idle_in_transaction_timeout,
        psycopg.errors.IdleInTransactionSessionTimeout,
        "25P03",
        True,
    ),
    Case(statement_timeout, psycopg.errors.QueryCanceled, "57014", False),
    Case(cancelled_by_admin, psycopg.errors.QueryCanceled, "57014", False),
    Case(syntax_error, psycopg.errors.SyntaxError, "42601", False),
    Case(division_by_zero, psycopg.errors.DivisionByZero, "22012", False),
    Case(unique_violation, psycopg.errors.UniqueViolation, "23505", False),
    Case(unknown_prepared_statement, psycopg.errors.InvalidSqlStatementName, "26000", False),
    Case(duplicate_prepared_statement, psycopg.errors.DuplicatePreparedStatement, "42P05", False),
]


@pytest.mark.parametrize("case", CASES, ids=[case.produce.__name__ for case in CASES])
def test_real_server_errors_decide_discard(case: Case, make_pool, pg_admin) -> None:
    pool = make_pool()
    with pool.connection() as conn:
        conn.execute("SET lpm.session_mark TO 'still here'")  # session state to look for
        pid = conn.info.backend_pid
    with pytest.raises(case.error) as info, pool.connection() as conn:
        case.produce(conn, pg_admin)
    error = info.value
    assert error.sqlstate == case.sqlstate
    assert must_discard(error) is case.discard
    assert pool.stats().broken == int(case.discard)
    with pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        if case.discard:
            assert conn.info.backend_pid != pid
        else:  # same session, its state intact: a typo does not cost the user their session
            assert conn.info.backend_pid == pid
            assert conn.execute("SHOW lpm.session_mark").fetchone() == ("still here",)


def test_connection_cut_while_busy_is_discarded(tcp_proxy, make_pool, pg_admin) -> None:
    """A network cut mid-statement: OperationalError without a SQLSTATE, discarded."""
    pool = make_pool(tcp_proxy.url)
    with pytest.raises(psycopg.OperationalError) as info, pool.connection() as conn:
        pid = conn.info.backend_pid
        try:
            with when_active(pg_admin, pid, tcp_proxy.drop_all):
                conn.execute(f"SELECT pg_sleep({LONG_SLEEP})")
        finally:
            # The server cannot know its client is gone while it sleeps.
            pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert info.value.sqlstate is None
    assert must_discard(info.value)
    assert pool.stats().broken == 1
    assert pool.with_connection(lambda c: c.execute("SELECT 1").fetchone()) == (1,)


def test_backend_lost_to_a_crash_elsewhere_is_discarded(private_server) -> None:
    """Another backend crashes: the server ends every session, then recovers.

    The 57P02 only comes as a WARNING notice; the error itself is an
    OperationalError without SQLSTATE. After recovery the next request works.
    """
    pool = create_pool(private_server.url, max_connections=1, acquire_timeout=WAIT)
    admin = psycopg.connect(private_server.url, autocommit=True)
    victim = psycopg.connect(private_server.url, autocommit=True)
    notices: list[str | None] = []
    try:
        with pytest.raises(psycopg.OperationalError) as info, pool.connection() as conn:
            conn.add_notice_handler(lambda diag: notices.append(diag.sqlstate))
            kill = lambda: os.kill(victim.info.backend_pid, signal.SIGKILL)  # noqa: E731
            with when_active(admin, conn.info.backend_pid, kill):
                conn.execute(f"SELECT pg_sleep({LONG_SLEEP})")
        assert info.value.sqlstate is None
        assert "57P02" in notices
        assert must_discard(info.value)
        assert pool.stats().broken == 1
        wait_until(_accepts_connections(private_server.url), "the server has recovered")
        assert pool.with_connection(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
    finally:
        admin.close()
        victim.close()
        destroy_pool(pool)


def _accepts_connections(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            psycopg.connect(url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    return probe


# ------------------------------------------------------ the rules themselves


def test_fatal_severity_alone_discards(make_pool, pg_admin, monkeypatch) -> None:
    """A FATAL error means the session is over, even with a SQLSTATE not in the table."""
    pool = make_pool()
    with pytest.raises(psycopg.errors.IdleSessionTimeout) as info, pool.connection() as conn:
        idle_session_timeout(conn, pg_admin)
    monkeypatch.setattr(errors_module, "DISCARD_SQLSTATES", frozenset())
    assert info.value.diag.severity_nonlocalized == "FATAL"
    assert must_discard(info.value)


def test_closed_connection_is_discarded_whatever_the_error(make_pool) -> None:
    pool = make_pool()
    with pool.connection() as conn:
        conn.close()
        assert must_discard(ValueError("not a database error"), conn)
    assert pool.stats().broken == 1


def test_errors_that_are_not_psycopgs_keep_the_connection(make_pool) -> None:
    pool = make_pool()
    with pytest.raises(ValueError), pool.connection() as conn:
        pid = conn.info.backend_pid
        raise ValueError("the borrower's own bug")
    assert not must_discard(ValueError())
    assert not must_discard(KeyboardInterrupt())
    assert pool.with_connection(lambda c: c.info.backend_pid) == pid


def test_pipeline_aborted_is_not_a_lost_connection() -> None:
    """psycopg's PipelineAborted (OperationalError, no SQLSTATE) only reports an earlier error.

    Constructed by hand: psycopg raises it only for statements queued after a
    failed one in pipeline mode, which its own error reporting makes awkward
    to catch separately.
    """
    assert not must_discard(psycopg.errors.PipelineAborted("pipeline aborted"))
    assert must_discard(psycopg.OperationalError("server closed the connection unexpectedly"))
