"""Stopping a statement left running: the one mechanism the pool and the magic share."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import pq

from lunepool_magic.postgres.libpq import cancel_statement, finish_statement


@pytest.fixture
def conn(pg_url: str):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def test_finish_statement_stops_a_query_sent_a_moment_ago_and_keeps_the_session(conn) -> None:
    # The cancel may arrive before the backend starts the statement, when the
    # server ignores it: the request must be repeated until it takes effect.
    conn.execute("CREATE TEMP TABLE kept (x int)")
    conn.pgconn.send_query(b"SELECT pg_sleep(30)")
    assert finish_statement(conn, timeout=10)
    assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)


def test_finish_statement_drains_a_copy_out_instead_of_looping(conn) -> None:
    """Regression: libpq repeats the COPY_OUT result until its data is read."""
    conn.pgconn.send_query(b"COPY (SELECT g FROM generate_series(1, 5000000) g) TO STDOUT")
    assert finish_statement(conn, timeout=10)
    assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_finish_statement_on_an_idle_connection_does_nothing(conn) -> None:
    assert finish_statement(conn)
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_cancel_statement_reports_that_the_server_answered(conn) -> None:
    conn.pgconn.send_query(b"SELECT pg_sleep(30)")
    assert cancel_statement(conn, timeout=10)
    assert finish_statement(conn)
