"""What a psql user expects across cells: session state, transactions, lost sessions, Ctrl-C.

Through a real InteractiveShell against a real server; pg_admin (another
connection) checks what the server really holds. Interrupts here are real
SIGINTs delivered to this process; test_kernel.py repeats the essential one
through a real kernel.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from support.shell import (  # noqa: F401 (ip_fixture provides the `ip` fixture)
    Shell,
    active_queries,
    interrupt_main_after,
    ip_fixture,
    wait_for,
)

from lunepool_magic.notebook.messages import (
    CONNECTION_LOST,
    SESSION_LOST,
    TRANSACTION_ABORTED,
    TRANSACTION_OPEN,
    QueryCancelled,
    SqlCellError,
)


@pytest.fixture
def table(ip: Shell, pg_admin: psycopg.Connection) -> Iterator[str]:
    """A real (not temporary) table of this test's own, visible to pg_admin."""
    name = f"lpm_tx_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f"CREATE TABLE {name} (x int)")
    try:
        yield name
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {name}")


def committed_rows(admin: psycopg.Connection, table: str) -> int:
    return int(admin.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def backend_alive(admin: psycopg.Connection, pid: int) -> bool:
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return bool(row[0])


# ---------------------------------------------------------- session state


def test_set_and_temp_tables_carry_over_between_cells(ip: Shell) -> None:
    ip.ok("%sql SET statement_timeout = '1234ms'")
    ip.ok("%sql CREATE TEMP TABLE carried (x int)")
    ip.ok("%sql INSERT INTO carried VALUES (1)")
    assert ip.scalar("%sql SHOW statement_timeout") == "1234ms"
    assert ip.scalar("%%sql\nSELECT count(*) FROM carried") == 1


# ---------------------------------------------------------- transactions


def test_transaction_spans_cells_until_commit(
    ip: Shell, table: str, pg_admin: psycopg.Connection
) -> None:
    pid = ip.backend_pid()
    begin = ip.ok("%sql BEGIN")
    assert begin.out.splitlines() == ["BEGIN", TRANSACTION_OPEN]
    insert = ip.ok(f"%sql INSERT INTO {table} VALUES (1)")
    assert TRANSACTION_OPEN in insert.out
    assert ip.session().transaction == "open"
    assert ip.session().pool.stats().in_use == 1  # pinned, not in the pool
    assert committed_rows(pg_admin, table) == 0  # not visible outside yet
    assert ip.scalar(f"%sql SELECT count(*) FROM {table}") == 1  # visible inside
    assert ip.backend_pid() == pid
    assert ip.value("%sql").loc["default", "transaction"] == "open"

    commit = ip.ok("%sql COMMIT")
    assert commit.out.strip() == "COMMIT"
    assert ip.session().transaction == ""
    assert ip.session().pool.stats().in_use == 0
    assert committed_rows(pg_admin, table) == 1


def test_failed_statement_aborts_the_transaction_until_rollback(
    ip: Shell, table: str, pg_admin: psycopg.Connection
) -> None:
    ip.ok(f"%%sql\nBEGIN;\nINSERT INTO {table} VALUES (1)")
    failed = ip.fail("%sql SELECT 1/0")
    assert failed.out.rstrip().splitlines()[-1] == TRANSACTION_ABORTED
    assert ip.session().transaction == "aborted"
    again = ip.fail("%sql SELECT 1")
    assert "current transaction is aborted" in again.out and "(SQLSTATE 25P02)" in again.out
    assert TRANSACTION_ABORTED in again.out
    rollback = ip.ok("%sql ROLLBACK")
    assert rollback.out.strip() == "ROLLBACK"
    assert ip.session().pool.stats().in_use == 0
    assert committed_rows(pg_admin, table) == 0
    assert ip.scalar("%sql SELECT 5") == 5


def test_transaction_within_one_cell_does_not_pin(ip: Shell, table: str) -> None:
    run = ip.ok(f"%%sql\nBEGIN;\nINSERT INTO {table} VALUES (1);\nCOMMIT")
    assert TRANSACTION_OPEN not in run.out
    assert ip.session().pool.stats().in_use == 0


def test_close_rolls_back_a_pinned_transaction(
    ip: Shell, table: str, pg_admin: psycopg.Connection
) -> None:
    ip.ok(f"%%sql\nBEGIN;\nINSERT INTO {table} VALUES (1)")
    pid = ip.backend_pid()
    closed = ip.ok("%sql --close")
    assert "Closed 'default' (its open transaction was rolled back)." in closed.out
    assert committed_rows(pg_admin, table) == 0
    wait_for(lambda: not backend_alive(pg_admin, pid), what="backend to exit")


def test_unload_rolls_back_a_pinned_transaction(
    ip: Shell, table: str, pg_admin: psycopg.Connection
) -> None:
    ip.ok(f"%%sql\nBEGIN;\nINSERT INTO {table} VALUES (1)")
    pid = ip.backend_pid()
    ip.ok("%unload_ext lunepool_magic")
    assert committed_rows(pg_admin, table) == 0
    wait_for(lambda: not backend_alive(pg_admin, pid), what="backend to exit")


def test_pinned_transactions_are_per_connection_alias(
    ip: Shell, pg_url: str, table: str, pg_admin: psycopg.Connection
) -> None:
    ip.ok(f'%sql "{pg_url}" --alias one')
    ip.ok(f'%sql "{pg_url}" --alias two')
    ip.ok(f"%%sql --alias one\nBEGIN;\nINSERT INTO {table} VALUES (1)")
    assert ip.session("one").transaction == "open"
    # `two` neither sees nor ends `one`'s transaction
    assert ip.scalar(f"%sql --alias two SELECT count(*) FROM {table}") == 0
    stray = ip.ok("%sql --alias two COMMIT")
    assert "WARNING:  there is no transaction in progress" in stray.err
    assert ip.session("one").transaction == "open"
    ip.ok("%sql --alias one COMMIT")
    assert committed_rows(pg_admin, table) == 1


# ---------------------------------------------------------- lost sessions


def test_replaced_connection_is_reported_once(ip: Shell, pg_admin: psycopg.Connection) -> None:
    ip.ok("%sql CREATE TEMP TABLE doomed (x int)")
    pid = ip.backend_pid()
    pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: not backend_alive(pg_admin, pid), what="backend to exit")
    run = ip.ok("%sql SELECT 1 AS after")
    assert run.err.strip() == SESSION_LOST
    assert ip.backend_pid() != pid
    assert SESSION_LOST not in ip.ok("%sql SELECT 2").err  # once
    gone = ip.fail("%sql SELECT * FROM doomed")
    assert '"doomed" does not exist' in gone.out


def test_connection_lost_inside_a_transaction(ip: Shell, pg_admin: psycopg.Connection) -> None:
    ip.ok("%sql BEGIN")
    pid = ip.backend_pid()
    pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_for(lambda: not backend_alive(pg_admin, pid), what="backend to exit")
    failed = ip.fail("%sql SELECT 1")
    assert isinstance(failed.error, SqlCellError)
    assert failed.out.rstrip().splitlines()[-1] == CONNECTION_LOST
    assert "Traceback" not in failed.text
    assert ip.session().transaction == ""
    assert ip.session().pool.stats().in_use == 0
    after = ip.ok("%sql SELECT 1")
    assert after.err.strip() == SESSION_LOST
    assert ip.backend_pid() != pid


def test_dropped_network_connection_is_replaced(ip: Shell, tcp_proxy) -> None:
    ip.ok(f'%sql "{tcp_proxy.url}" --alias proxied')
    first = ip.backend_pid()
    tcp_proxy.drop_all()
    run = ip.ok("%sql SELECT 1")
    assert SESSION_LOST in run.err
    assert ip.backend_pid() != first


# ---------------------------------------------------------- interrupts


def test_interrupt_cancels_the_query_and_the_next_cell_works(
    ip: Shell, pg_admin: psycopg.Connection
) -> None:
    pid = ip.backend_pid()
    started = time.monotonic()
    with interrupt_main_after(lambda: active_queries(pg_admin, "%pg_sleep(30)%")):
        run = ip.fail("%sql SELECT pg_sleep(30)")
    assert time.monotonic() - started < 15
    assert isinstance(run.error, QueryCancelled)
    assert run.out.strip() == "Interrupted: query cancelled on the server."
    assert "Traceback" not in run.text
    assert active_queries(pg_admin, "%pg_sleep(30)%") == []
    stats = ip.session().pool.stats()
    assert stats.in_use == 0 and stats.broken == 0
    assert ip.backend_pid() == pid  # the same, clean connection
    assert ip.scalar("%sql SELECT 3") == 3


def test_interrupt_when_the_cancel_request_gets_no_answer_closes_the_connection(
    ip: Shell, pg_admin: psycopg.Connection, tcp_proxy: Any
) -> None:
    """A dead path to the server (the proxy accepts the cancel request's connection
    and forwards nothing): after libpq.CANCEL_TIMEOUT the cell gives up, closes the
    connection and says the query may still run; the kernel is free and the next
    cell connects anew."""
    ip.ok(f"%sql {tcp_proxy.url}")
    ip.ok("%sql SELECT 1")

    def stalled_and_running() -> bool:
        if not active_queries(pg_admin, "%pg_sleep(35)%"):
            return False
        tcp_proxy.stall()  # new connections, such as the cancel request's, hang
        return True

    try:
        with interrupt_main_after(stalled_and_running):
            run = ip.fail("%sql SELECT pg_sleep(35)")
    finally:
        tcp_proxy.accept()
    assert isinstance(run.error, QueryCancelled)
    lines = run.out.strip().splitlines()
    assert lines[0] == (
        "Interrupted: the server did not answer the cancel request, so the connection "
        "was closed; the query may still be running there until the server notices "
        "(SELECT pg_cancel_backend(pid) from another session stops it)."
    )
    assert "Traceback" not in run.text
    stats = ip.session().pool.stats()
    assert (stats.size, stats.in_use, stats.broken) == (0, 0, 1)
    for pid, _ in active_queries(pg_admin, "%pg_sleep(35)%"):
        pg_admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
    assert ip.scalar("%sql SELECT 5") == 5


def test_interrupt_in_a_multi_statement_cell_says_where(
    ip: Shell, table: str, pg_admin: psycopg.Connection
) -> None:
    ip.ok("%sql SELECT 1")
    with interrupt_main_after(lambda: active_queries(pg_admin, "%pg_sleep(31)%")):
        run = ip.fail(
            f"%%sql\nINSERT INTO {table} VALUES (1);\nSELECT pg_sleep(31);\n"
            f"INSERT INTO {table} VALUES (2)"
        )
    assert run.out.strip() == (
        "Interrupted: query cancelled on the server in statement 2 of 3 (line 3); "
        "statement 1 ran, statement 3 did not run."
    )
    assert committed_rows(pg_admin, table) == 1


def test_interrupt_inside_a_transaction_leaves_it_aborted(
    ip: Shell, pg_admin: psycopg.Connection
) -> None:
    ip.ok("%sql BEGIN")
    with interrupt_main_after(lambda: active_queries(pg_admin, "%pg_sleep(32)%")):
        run = ip.fail("%sql SELECT pg_sleep(32)")
    assert isinstance(run.error, QueryCancelled)
    assert run.out.rstrip().splitlines()[-1] == TRANSACTION_ABORTED
    ip.ok("%sql ROLLBACK")
    assert ip.scalar("%sql SELECT 4") == 4


def test_interrupt_while_waiting_for_a_connection_loses_nothing(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.max_connections = 1")
    ip.ok("%sql SELECT 1")
    pool = ip.session().pool
    with pool.connection():  # the only connection is taken
        with interrupt_main_after(lambda: pool.stats().waiting == 1):
            run = ip.fail("%sql SELECT 1")
        assert isinstance(run.error, QueryCancelled)
        assert "Interrupted before the query started" in run.out
        assert "nothing ran" in run.out
        stats = pool.stats()
        assert stats.waiting == 0 and stats.size == 1
    assert ip.scalar("%sql SELECT 6") == 6
    assert pool.stats().size == 1


def test_waiting_too_long_for_a_connection_is_a_clear_error(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.max_connections = 1")
    ip.ok("%config LunepoolMagic.acquire_timeout = 0.2")
    ip.ok("%sql SELECT 1")
    with ip.session().pool.connection():
        run = ip.fail("%sql SELECT 1")
    assert isinstance(run.error, SqlCellError)
    assert "HINT:  every connection of this pool is in use" in run.out
    assert "Traceback" not in run.text
    assert ip.scalar("%sql SELECT 7") == 7


def test_regression_interrupt_inside_psycopgs_generator_keeps_the_session(pg_url: str) -> None:
    """psycopg leaves the connection ACTIVE when Ctrl-C lands in the Python part of its
    result generator (1 interrupt in 10 to 40 here); the pool would then close it and
    the session would be lost. The magic cancels and drains it instead."""
    from psycopg import pq

    from lunepool_magic.postgres.libpq import finish_statement

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE kept (x int)")
        conn.pgconn.send_query(b"SELECT pg_sleep(30)")  # what psycopg leaves behind
        assert conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE
        started = time.monotonic()
        assert finish_statement(conn)
        assert time.monotonic() - started < 5
        assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
