"""The PostgreSQL wrapper against a real server: issue 3, behaviours 1, 2, 4, 5, 6 and 9.

Every test talks to a real PostgreSQL (``pg_url``, a ``private_server`` it
may stop, or a breakable ``tcp_proxy``); nothing of psycopg or the server is
mocked. What the server did is read from ``pg_stat_activity`` through
``pg_admin``; each pool gets a unique ``application_name`` so that its
backends can be told apart from everyone else's on a shared server.

Synchronisation is by events: polling ``pg_stat_activity`` or a socket with a
deadline (``wait_until``), never by sleeping a guessed time. ``WAIT`` bounds
every wait and is reached only when a test fails.

Tests that take the ``wrapper_target`` fixture run twice: directly against
the server and through a real PgBouncer in transaction mode (behaviour 8;
more PgBouncer tests in test_postgres_pgbouncer.py). Errors: see
test_postgres_errors.py; passwords: test_postgres_secrets.py.
"""

from __future__ import annotations

import select
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from support.backends import WAIT, wait_gone, wait_until, when_active

from lunepool_magic.postgres import (
    ConnectionFailed,
    PoolClosed,
    PoolTimeout,
    PostgresPool,
    create_pool,
    destroy_pool,
    query,
    with_connection,
)

LONG_SLEEP = 30  # seconds a "long" statement would run if nothing stopped it


# --------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Backend:
    """One row of pg_stat_activity."""

    pid: int
    state: str | None
    query: str
    state_change: Any


def backend(admin: psycopg.Connection, pid: int) -> Backend | None:
    """The server's view of backend ``pid``, or None once it has exited."""
    row = admin.execute(
        "SELECT pid, state, query, state_change FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return Backend(*row) if row else None


def backend_pids(admin: psycopg.Connection, app_name: str) -> set[int]:
    """PIDs of the client backends whose application_name is ``app_name``."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,)
    ).fetchall()
    return {pid for (pid,) in rows}


def wait_readable(conn: psycopg.Connection) -> None:
    """Wait until the server has sent something on ``conn``'s socket (nothing is read)."""
    readable, _, _ = select.select([conn.pgconn.socket], [], [], WAIT)
    if not readable:
        pytest.fail(f"the server sent nothing on the connection within {WAIT:g} s")


def pid_of(conn: psycopg.Connection) -> int:
    """The server PID of the session, asked of the server (PgBouncer fakes the libpq one)."""
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


# --------------------------------------------------------------- fixtures


@pytest.fixture
def app_name() -> str:
    """A unique application_name: this test's backends, and no one else's."""
    return f"lpm-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_pool(pg_url: str, app_name: str) -> Iterator[Callable[..., PostgresPool]]:
    """``make_pool(url=pg_url, **options)``: a pool destroyed after the test.

    Defaults: this test's application_name and ``acquire_timeout=WAIT``.
    """
    pools: list[PostgresPool] = []

    def make(url: str | None = None, **options: Any) -> PostgresPool:
        options.setdefault("application_name", app_name)
        options.setdefault("acquire_timeout", WAIT)
        pool = create_pool(url or pg_url, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        destroy_pool(pool)


@dataclass(frozen=True)
class Target:
    """Where the wrapper connects: straight to the server or through PgBouncer."""

    url: str
    options: dict[str, Any]
    pgbouncer: bool


@pytest.fixture(params=["direct", pytest.param("pgbouncer", marks=pytest.mark.pgbouncer)])
def wrapper_target(request: pytest.FixtureRequest, pg_url: str) -> Target:
    """Runs a test directly against the server and again through PgBouncer (transaction mode)."""
    if request.param == "direct":
        return Target(pg_url, {}, pgbouncer=False)
    return Target(request.getfixturevalue("pgbouncer_url"), {"pgbouncer": True}, pgbouncer=True)


@pytest.fixture
def table(pg_admin: psycopg.Connection) -> Iterator[sql.Identifier]:
    """A fresh, empty real table ``(x int)``, dropped after the test."""
    name = sql.Identifier(f"lpm_test_{uuid.uuid4().hex[:12]}")
    pg_admin.execute(sql.SQL("CREATE TABLE {} (x int)").format(name))
    yield name
    pg_admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))


def count_rows(admin: psycopg.Connection, table: sql.Identifier) -> int:
    return admin.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]


# ------------------------------------------------------ the public contract


def test_create_pool_with_url_and_with_connection_returns_dataframe(make_pool) -> None:
    """The seed's API as in DESIGN.md: create_pool(url), with_connection(pool, fn), query."""
    pool = make_pool(max_connections=2)
    frame = with_connection(pool, lambda conn: query(conn, "SELECT 1 AS one, 'a' AS letter"))
    assert list(frame.columns) == ["one", "letter"]
    assert frame["one"].tolist() == [1]
    assert frame["letter"].tolist() == ["a"]


def test_create_pool_from_keywords(pg_url: str, make_pool, pg_admin) -> None:
    """host=, port=, database=, user=, password= work like the URL."""
    params = conninfo_to_dict(pg_url)
    pool = make_pool(
        "",
        host=params.get("host"),
        port=params.get("port"),
        database=params.get("dbname"),
        user=params.get("user"),
        password=params.get("password"),
    )
    who = "SELECT current_user, current_database()"
    expected = pg_admin.execute(who).fetchone()
    assert pool.with_connection(lambda c: c.execute(who).fetchone()) == expected


def test_create_pool_from_libpq_environment(
    pg_url: str, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no arguments, libpq's PG* variables say where to connect, as for psql."""
    env = {
        "host": "PGHOST",
        "port": "PGPORT",
        "dbname": "PGDATABASE",
        "user": "PGUSER",
        "password": "PGPASSWORD",
    }
    for key, value in conninfo_to_dict(pg_url).items():
        if key in env and value:
            monkeypatch.setenv(env[key], str(value))
    pool = create_pool(application_name=app_name, acquire_timeout=WAIT)
    try:
        assert pool.with_connection(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
    finally:
        destroy_pool(pool)


def test_configure_runs_once_on_each_new_connection(make_pool) -> None:
    """``configure`` sets up new connections; what it leaves open is committed."""
    configured: list[int] = []

    def configure(conn: psycopg.Connection) -> None:
        configured.append(conn.info.backend_pid)
        conn.execute("SET TimeZone TO 'UTC'")

    pool = make_pool(max_connections=2, autocommit=False, configure=configure)
    with pool.connection() as a, pool.connection() as b:
        assert configured == [a.info.backend_pid, b.info.backend_pid]
        assert a.execute("SHOW TimeZone").fetchone() == ("UTC",)
    with pool.connection():
        pass
    assert len(configured) == 2


def test_connections_are_autocommit_by_default(make_pool, table, pg_admin) -> None:
    """Each statement commits when it returns, as in psql: others see it at once."""
    pool = make_pool()
    with pool.connection() as conn:
        assert conn.autocommit
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
        assert count_rows(pg_admin, table) == 1  # before the block ends


# ------------------------------------------- 1. a connection comes back clean


def _open_transaction(conn: psycopg.Connection, table: sql.Identifier) -> None:
    conn.execute("BEGIN")
    conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))


def _failed_transaction(conn: psycopg.Connection, table: sql.Identifier) -> None:
    conn.execute("BEGIN")
    conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1 / 0")


def _autocommit_switched_off(conn: psycopg.Connection, table: sql.Identifier) -> None:
    conn.autocommit = False  # the borrower's choice must not outlive the borrow
    conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))


@pytest.mark.parametrize(
    "leave",
    [_open_transaction, _failed_transaction, _autocommit_switched_off],
    ids=["open-transaction", "failed-transaction", "autocommit-switched-off"],
)
def test_transaction_left_open_is_rolled_back(
    leave: Callable[[psycopg.Connection, sql.Identifier], None],
    wrapper_target: Target,
    make_pool,
    table,
    pg_admin,
) -> None:
    pool = make_pool(wrapper_target.url, max_connections=1, **wrapper_target.options)
    with pool.connection() as conn:
        leave(conn, table)
        assert conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE
    assert count_rows(pg_admin, table) == 0  # rolled back, not committed
    with pool.connection() as again:
        assert again is conn  # kept: a rollback is all it needed
        assert again.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert again.autocommit
        again.execute(sql.SQL("INSERT INTO {} VALUES (2)").format(table))
    assert count_rows(pg_admin, table) == 1
    assert pool.stats().broken == 0


def test_server_sees_no_transaction_after_return(make_pool, table, pg_admin) -> None:
    """The rollback happens at return time, not lazily at the next borrow."""
    pool = make_pool(max_connections=1)
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        _open_transaction(conn, table)
        assert backend(pg_admin, pid).state == "idle in transaction"
    assert backend(pg_admin, pid).state == "idle"


def test_exception_in_transaction_block_rolls_back(make_pool, table, pg_admin) -> None:
    """psycopg's own ``conn.transaction()`` rolls back on error; the connection stays."""
    pool = make_pool(max_connections=1)
    with pytest.raises(ZeroDivisionError), pool.connection() as conn, conn.transaction():
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
        1 / 0  # noqa: B018
    assert count_rows(pg_admin, table) == 0
    assert pool.stats().broken == 0


@pytest.mark.parametrize("fail", [False, True], ids=["block-ends-normally", "block-raises"])
def test_non_autocommit_pool_block_is_a_transaction(
    fail: bool, wrapper_target: Target, make_pool, table, pg_admin
) -> None:
    """autocommit=False: committed when the block ends normally, rolled back if it raises."""
    pool = make_pool(wrapper_target.url, autocommit=False, **wrapper_target.options)
    with pytest.raises(RuntimeError) if fail else _nothing(), pool.connection() as conn:
        assert not conn.autocommit
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
        assert count_rows(pg_admin, table) == 0  # not yet committed
        if fail:
            raise RuntimeError("the borrower failed")
    assert count_rows(pg_admin, table) == (0 if fail else 1)
    with pool.connection() as conn:
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# A connection given back with a statement or COPY still running (psycopg
# state ACTIVE). Each function leaves one that way and returns whatever must
# stay referenced until the connection is back (a suspended generator).


def _copy_to_left_early(conn: psycopg.Connection) -> object:
    # Breaking out of the loop is no exception: psycopg's Copy.__exit__ then
    # leaves the rest of the COPY data unread, and the connection ACTIVE.
    with (
        conn.cursor() as cursor,
        cursor.copy("COPY (SELECT generate_series(1, 1000000)) TO STDOUT") as copy,
    ):
        for _block in copy:
            break
    return None


def _stream_suspended(conn: psycopg.Connection) -> object:
    # The generator is kept alive at its first row while the statement
    # sleeps before the second. The server buffers rows until its output
    # buffer fills; a NOTICE is flushed at once, so the function raises one
    # before sleeping, and the first row reaches the client with it.
    conn.execute(
        "CREATE FUNCTION pg_temp.lpm_row(x int) RETURNS int LANGUAGE plpgsql AS $$"
        " BEGIN IF x > 1 THEN RAISE NOTICE 'first row sent';"
        f" PERFORM pg_sleep({LONG_SLEEP}); END IF; RETURN x; END $$"
    )
    rows = conn.cursor().stream("SELECT pg_temp.lpm_row(x) FROM generate_series(1, 2) AS x")
    assert next(rows) == (1,)
    return rows


def _statement_sent_never_read(conn: psycopg.Connection) -> object:
    # What an interrupt between psycopg's send and its wait would leave.
    conn.pgconn.send_query(f"SELECT pg_sleep({LONG_SLEEP})".encode())
    return None


@pytest.mark.parametrize(
    "leave",
    [_copy_to_left_early, _stream_suspended, _statement_sent_never_read],
    ids=["copy-to-left-early", "stream-suspended", "statement-sent-never-read"],
)
def test_connection_returned_mid_statement_is_cancelled_closed_and_replaced(
    leave: Callable[[psycopg.Connection], object], make_pool, pg_admin
) -> None:
    pool = make_pool(max_connections=1)
    keep: object = None
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        keep = leave(conn)
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE
    assert conn.closed
    stats = pool.stats()
    assert (stats.broken, stats.size) == (1, 0)
    # The backend goes away long before LONG_SLEEP: the statement was
    # cancelled, not merely abandoned (a closed socket alone does not stop a
    # server that is busy sleeping).
    wait_gone(pg_admin, pid)
    with pool.connection() as fresh:
        assert fresh.info.backend_pid != pid
        assert fresh.execute("SELECT 42").fetchone() == (42,)
    if hasattr(keep, "close"):
        keep.close()  # the generator's cleanup finds its connection closed: nothing to do


def test_connection_returned_mid_copy_through_pgbouncer_is_replaced(
    pgbouncer_url: str, make_pool
) -> None:
    pool = make_pool(pgbouncer_url, max_connections=1, pgbouncer=True)
    with pool.connection() as conn:
        _copy_to_left_early(conn)
    assert pool.stats().broken == 1
    assert pool.with_connection(lambda c: c.execute("SELECT 7").fetchone()) == (7,)


def test_exception_inside_copy_leaves_connection_clean_and_kept(make_pool, pg_admin) -> None:
    """psycopg itself cleans up a COPY ended by an exception: nothing to replace.

    COPY TO: psycopg cancels it and reads the rest; COPY FROM: it sends
    CopyFail, so no row lands.
    """
    pool = make_pool(max_connections=1)
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        conn.execute("CREATE TEMP TABLE copied (x int)")
    with (
        pytest.raises(LookupError),
        pool.connection() as conn,
        conn.cursor() as cursor,
        cursor.copy("COPY (SELECT generate_series(1, 1000000)) TO STDOUT") as copy,
    ):
        for _block in copy:
            raise LookupError("stop reading")
    with (
        pytest.raises(LookupError),
        pool.connection() as conn,
        conn.cursor() as cursor,
        cursor.copy("COPY copied FROM STDIN") as copy,
    ):
        copy.write_row((1,))
        raise LookupError("stop writing")
    assert backend(pg_admin, pid).state == "idle"
    with pool.connection() as conn:
        assert conn.info.backend_pid == pid
        assert conn.execute("SELECT count(*) FROM copied").fetchone() == (0,)
    assert pool.stats().broken == 0


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "transaction"])
def test_ctrl_c_during_long_query_leaves_no_statement_running(
    autocommit: bool, make_pool, pg_admin
) -> None:
    """KeyboardInterrupt (SIGINT to the main thread) while the server runs a statement.

    psycopg catches the interrupt, cancels the statement and reads the
    server's answer, so the connection usually comes back clean (in a
    transaction: failed, then rolled back by the pool) and is kept. Not
    always: with psycopg 3.3.9 about 1 interrupt in 100 leaves the connection
    ACTIVE (measured: 2 of 150), and then the pool's reset cancels the
    statement and replaces the connection. Either way the statement stops, no
    one is lent a busy connection, and the numbers add up.
    """
    assert threading.current_thread() is threading.main_thread()
    pool = make_pool(max_connections=1, autocommit=autocommit)
    main = threading.get_ident()
    with pytest.raises(KeyboardInterrupt), pool.connection() as conn:
        pid = conn.info.backend_pid
        with when_active(pg_admin, pid, lambda: signal.pthread_kill(main, signal.SIGINT)):
            conn.execute(f"SELECT pg_sleep({LONG_SLEEP})")
    kept = not conn.closed
    if kept:  # psycopg cleaned up: not running, not in a transaction
        assert backend(pg_admin, pid).state == "idle"
    else:  # the pool cleaned up: cancelled (or the backend would sleep on), closed
        wait_gone(pg_admin, pid)
    with pool.connection() as again:
        assert (again.info.backend_pid == pid) is kept
        assert again.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert again.execute("SELECT 1").fetchone() == (1,)
    stats = pool.stats()
    assert (stats.broken, stats.created) == ((0, 1) if kept else (1, 2))


def test_session_state_is_kept_across_sequential_borrows(make_pool) -> None:
    """What a notebook user sets stays set for the next cell (same connection, LIFO)."""
    pool = make_pool(max_connections=3)
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        conn.execute("SET TimeZone TO 'Asia/Tokyo'")
        conn.execute("SET lpm.note TO 'kept'")
        conn.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS x")
        conn.execute("PREPARE doubled(int) AS SELECT $1 * 2")
        conn.execute("LISTEN lpm_channel")
        conn.execute("DECLARE held CURSOR WITH HOLD FOR SELECT generate_series(1, 3)")
    with pool.connection() as conn:
        assert conn.info.backend_pid == pid
        assert conn.execute("SHOW TimeZone").fetchone() == ("Asia/Tokyo",)
        assert conn.execute("SHOW lpm.note").fetchone() == ("kept",)
        assert conn.execute("SELECT x FROM scratch").fetchall() == [(1,)]
        assert conn.execute("EXECUTE doubled(21)").fetchone() == (42,)
        assert conn.execute("SELECT pg_listening_channels()").fetchall() == [("lpm_channel",)]
        assert conn.execute("FETCH ALL FROM held").fetchall() == [(1,), (2,), (3,)]


def test_row_factory_is_restored(make_pool) -> None:
    """The next borrower gets tuples, whatever the previous one chose."""
    pool = make_pool(max_connections=1)
    with pool.connection() as conn:
        conn.row_factory = dict_row
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    with pool.connection() as again:
        assert again is conn
        assert again.execute("SELECT 1 AS one").fetchone() == (1,)


# ---------------------------------------- 2. broken connections are replaced


def test_check_costs_no_round_trip_for_a_healthy_connection(make_pool, pg_admin) -> None:
    """Borrowing an idle, healthy connection sends the server nothing.

    Proof from the server's side: the backend's last statement and the time
    its state last changed are the same before and after a borrow.
    """
    pool = make_pool(max_connections=1)
    marker = f"SELECT 'marker {uuid.uuid4().hex}'"
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        conn.execute(marker)
    before = backend(pg_admin, pid)
    assert (before.state, before.query) == ("idle", marker)
    for _ in range(3):
        with pool.connection() as again:
            assert again is conn
    assert backend(pg_admin, pid) == before
    assert pool.stats().created == 1


def test_check_confirms_a_connection_whose_socket_has_news(make_pool, pg_admin) -> None:
    """A notification that arrived while idle: one empty query reads it; the connection stays.

    The notification is not lost: it waits in ``conn.notifies()``.
    """
    pool = make_pool(max_connections=1)
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        conn.execute("LISTEN lpm_news")
    pg_admin.execute("NOTIFY lpm_news, 'hello'")
    wait_readable(conn)
    before = backend(pg_admin, pid)
    with pool.connection() as again:
        assert again is conn
        assert [(n.channel, n.payload) for n in again.notifies(timeout=0)] == [
            ("lpm_news", "hello")
        ]
    assert backend(pg_admin, pid).state_change > before.state_change  # the one round trip
    assert pool.stats().broken == 0


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "transaction"])
def test_terminated_idle_backend_is_replaced_without_error(
    autocommit: bool, make_pool, pg_admin
) -> None:
    pool = make_pool(max_connections=2, autocommit=autocommit)
    with pool.connection() as conn:
        pid = conn.info.backend_pid
    pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_gone(pg_admin, pid)
    wait_readable(conn)  # the FATAL goodbye is in the socket
    new_pid = with_connection(pool, lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0])
    assert new_pid != pid
    stats = pool.stats()
    assert (stats.broken, stats.created, stats.size, stats.in_use) == (1, 2, 1, 0)


def test_connections_cut_while_idle_are_replaced_without_error(
    tcp_proxy, make_pool, pg_admin, app_name
) -> None:
    """A network cut (the proxy drops every connection) while all connections sit idle."""
    pool = make_pool(tcp_proxy.url, max_connections=3)
    with pool.connection() as a, pool.connection() as b, pool.connection() as c:
        held = [a, b, c]
        old_pids = {conn.info.backend_pid for conn in held}
    assert tcp_proxy.drop_all() == 3
    for conn in held:
        wait_readable(conn)
    for _ in range(3):
        assert pool.with_connection(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
    assert pool.stats().broken == 1  # LIFO: three sequential borrows reuse one replacement
    with pool.connection() as a, pool.connection() as b, pool.connection() as c:
        assert not {conn.info.backend_pid for conn in (a, b, c)} & old_pids
    assert pool.stats().broken == 3
    # The server noticed the cut too: the old backends are gone.
    wait_until(lambda: not backend_pids(pg_admin, app_name) & old_pids, "old backends exited")


def test_connection_breaking_in_use_raises_to_caller_and_is_discarded(
    make_pool, table, pg_admin
) -> None:
    """No silent retry: the statement fails once, for its caller, and never runs elsewhere."""
    pool = make_pool(max_connections=2)
    insert = sql.SQL("INSERT INTO {} VALUES (1)").format(table)
    with pytest.raises(psycopg.errors.AdminShutdown), pool.connection() as conn:
        pid = conn.info.backend_pid
        pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_gone(pg_admin, pid)
        conn.execute(insert)
    assert count_rows(pg_admin, table) == 0
    stats = pool.stats()
    assert (stats.broken, stats.size, stats.requests) == (1, 0, 1)
    with pool.connection() as conn:
        assert conn.info.backend_pid != pid
        conn.execute(insert)
    assert count_rows(pg_admin, table) == 1


def test_broken_connection_is_discarded_even_if_caller_swallowed_the_error(
    make_pool, pg_admin
) -> None:
    """The reset sees psycopg's broken state when no exception leaves the block."""
    pool = make_pool(max_connections=1)
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_gone(pg_admin, pid)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert pool.stats().broken == 1
    assert pool.with_connection(lambda c: c.info.backend_pid) != pid


# --------------------------------------------------- 4. the server goes away


def test_server_restart_mid_session(private_server, make_pool) -> None:
    """During the outage every request fails fast and clearly; the first after it succeeds."""
    timeout = 5.0
    pool = make_pool(private_server.url, max_connections=3, acquire_timeout=timeout)
    with pool.connection() as a, pool.connection() as b:
        old_pids = {a.info.backend_pid, b.info.backend_pid}
    with pytest.raises(psycopg.OperationalError), pool.connection() as held:
        private_server.stop()
        held.execute("SELECT 1")  # a borrower caught by the shutdown gets the error
    # More requests than there were idle connections: each dead one is
    # detected, then opening a new one fails at once (nothing listens).
    for _ in range(4):
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as info, pool.connection():
            pass
        assert time.monotonic() - started < timeout
        assert "could not connect to" in str(info.value)
        assert "Check that the server is running" in str(info.value)
    stats = pool.stats()
    assert (stats.size, stats.in_use, stats.broken) == (0, 0, 2)
    private_server.start()
    with pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.backend_pid not in old_pids


def test_database_down_at_create_pool(private_server, make_pool) -> None:
    """create_pool succeeds while the server is down (lazy); the pool works once it is up."""
    private_server.stop()
    pool = make_pool(private_server.url, max_connections=2)
    with pytest.raises(ConnectionFailed, match="could not connect to"):
        pool.with_connection(lambda c: None)
    assert pool.stats().size == 0  # the failed attempt gave its slot back
    private_server.start()
    assert pool.with_connection(lambda c: c.execute("SELECT 1").fetchone()) == (1,)


def test_min_connections_with_database_down_fails_at_create(private_server, app_name) -> None:
    private_server.stop()
    with pytest.raises(ConnectionFailed, match="could not connect to"):
        create_pool(private_server.url, min_connections=1, application_name=app_name)


def test_min_connections_are_opened_at_create(make_pool, pg_admin, app_name) -> None:
    pool = make_pool(max_connections=3, min_connections=2)
    assert pool.stats().size == 2
    assert len(backend_pids(pg_admin, app_name)) == 2


def test_server_that_hangs_fails_the_borrow_within_its_timeout(tcp_proxy, make_pool) -> None:
    """A server that accepts and then says nothing: the borrow fails, it does not hang.

    The connect timeout follows acquire_timeout (libpq's minimum is 2 s).
    """
    timeout = 2.0
    pool = make_pool(tcp_proxy.url, max_connections=1, acquire_timeout=timeout)
    tcp_proxy.stall()
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="timeout"):
        pool.with_connection(lambda c: None)
    assert time.monotonic() - started < timeout + 2.0  # a generous margin: "no hang"
    tcp_proxy.accept()
    assert pool.with_connection(lambda c: c.execute("SELECT 1").fetchone()) == (1,)


# ------------------------------------------------------------ 5. exhaustion


def test_exhausted_pool_waits_then_raises_pool_timeout(wrapper_target: Target, make_pool) -> None:
    pool = make_pool(
        wrapper_target.url,
        max_connections=2,
        acquire_timeout=0.2,
        name="exhaustion-test",
        **wrapper_target.options,
    )
    with pool.connection(), pool.connection():
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as info, pool.connection():
            pass
        assert time.monotonic() - started >= 0.19  # it did wait (less a clock tick)
    message = str(info.value)
    assert "exhaustion-test" in message
    for numbers in ("max_size=2", "size=2", "in use=2", "idle=0"):
        assert numbers in message
    stats = pool.stats()
    assert (stats.timeouts, stats.in_use, stats.waiting, stats.size) == (1, 0, 0, 2)
    # Nothing was lost: both connections are usable again.
    with pool.connection(), pool.connection():
        pass


def test_waiter_gets_the_connection_as_soon_as_one_is_returned(make_pool) -> None:
    pool = make_pool(max_connections=1)
    got: list[int] = []
    with pool.connection() as conn:
        pid = conn.info.backend_pid
        waiter = threading.Thread(target=lambda: got.append(pool.with_connection(pid_of)))
        waiter.start()
        wait_until(lambda: pool.stats().waiting == 1, "the second borrower waits")
    waiter.join(WAIT)
    assert got == [pid]


# ------------------------------------------------- 6. destroy leaves nothing


def test_destroy_pool_leaves_no_backend(make_pool, pg_admin, app_name) -> None:
    pool = make_pool(max_connections=3)
    with pool.connection() as a, pool.connection() as b, pool.connection() as c:
        pids = {conn.info.backend_pid for conn in (a, b, c)}
    assert backend_pids(pg_admin, app_name) == pids
    destroy_pool(pool)
    assert pool.closed
    wait_until(lambda: not backend_pids(pg_admin, app_name), "every backend of the pool exited")
    with pytest.raises(PoolClosed), pool.connection():
        pass


def test_destroy_pool_closes_a_borrowed_connection_when_it_comes_back(
    make_pool, pg_admin, app_name
) -> None:
    pool = make_pool(max_connections=2)
    with pool.connection() as borrowed:
        borrowed_pid = borrowed.info.backend_pid
        with pool.connection() as other:
            assert other.info.backend_pid != borrowed_pid
        # Now one connection is idle and one borrowed.
        destroy_pool(pool)
        wait_until(
            lambda: backend_pids(pg_admin, app_name) == {borrowed_pid},
            "only the borrowed connection's backend is left",
        )
        assert borrowed.execute("SELECT 1").fetchone() == (1,)  # still usable until returned
    wait_until(lambda: not backend_pids(pg_admin, app_name), "every backend of the pool exited")
    assert pool.stats().size == 0


# -------------------------------------------------------- 9. thread safety


def test_sixteen_threads_share_a_pool_of_five(
    wrapper_target: Target, make_pool, table, pg_admin, app_name
) -> None:
    threads, per_thread, size = 16, 40, 5
    pool = make_pool(wrapper_target.url, max_connections=size, **wrapper_target.options)
    insert = sql.SQL("INSERT INTO {} VALUES (%s)").format(table)
    start = threading.Barrier(threads + 1)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            start.wait(WAIT)
            answers = []
            for i in range(per_thread):
                with pool.connection() as conn:
                    # Parameters unique to (thread, iteration): a mixed-up
                    # connection or result would show.
                    value = conn.execute("SELECT %s::int * 1000 + %s::int", (number, i)).fetchone()
                    answers.append(value[0])
                    if i % 10 == 0:
                        with conn.transaction():
                            conn.execute(insert, (number,))
            results[number] = answers
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    start.wait(WAIT)
    most_backends = 0
    while any(worker.is_alive() for worker in workers):
        stats = pool.stats()
        assert stats.size <= size
        if not wrapper_target.pgbouncer:
            most_backends = max(most_backends, len(backend_pids(pg_admin, app_name)))
        time.sleep(0.001)
    for worker in workers:
        worker.join(WAIT)
    assert not errors, errors
    assert results == {n: [n * 1000 + i for i in range(per_thread)] for n in range(threads)}
    assert count_rows(pg_admin, table) == threads * per_thread // 10
    assert most_backends <= size
    stats = pool.stats()
    assert stats.requests == threads * per_thread
    assert (stats.in_use, stats.waiting, stats.timeouts, stats.broken) == (0, 0, 0, 0)
    assert stats.size <= size
    assert stats.created - stats.destroyed == stats.size == stats.idle


def test_describe_target_hides_the_home_directory_of_a_socket_path(monkeypatch) -> None:
    from lunepool_magic.postgres.conninfo import describe_target

    monkeypatch.setenv("HOME", "/home/alice")
    params = {
        "user": "alice",
        "host": "/home/alice/.local/share/lunepool_magic/pg18",
        "dbname": "db",
    }
    assert describe_target(params) == "postgresql://alice@[~/.local/share/lunepool_magic/pg18]/db"
    params = {"host": "/tmp/sock", "port": "5433", "dbname": "db", "password": "s3cret"}
    assert describe_target(params) == "postgresql://[/tmp/sock]:5433/db"


def test_connections_get_tcp_keepalives_unless_the_caller_sets_them(tcp_proxy) -> None:
    # Issue 14: a frozen server or a cut network should fail a statement, not hang it.
    def options(pool) -> dict[str, str]:
        with pool.connection() as conn:
            return {o.keyword.decode(): (o.val or b"").decode() for o in conn.pgconn.info}

    pool = create_pool(tcp_proxy.url, max_connections=1)
    try:
        got = options(pool)
        assert (got["keepalives"], got["keepalives_idle"], got["keepalives_count"]) == (
            "1",
            "60",
            "6",
        )
    finally:
        destroy_pool(pool)
    pool = create_pool(tcp_proxy.url, max_connections=1, keepalives_idle="5")
    try:
        assert options(pool)["keepalives_idle"] == "5"
    finally:
        destroy_pool(pool)
