"""Issue 20: idle sessions give their connections back, unless the server says they hold state.

Against a real server; the idle clock is a fake one the test moves, and the
release pass is called directly (``release_due``), so nothing waits for time
to pass. The release thread itself is tested at the end with a release time
of 0, waiting on its pass counter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from support.backends import wait_gone

from lunepool_magic.notebook import messages
from lunepool_magic.notebook.binding import bind_cell
from lunepool_magic.notebook.connections import Connections
from lunepool_magic.notebook.idle import (
    IdlePolicy,
    custom_settings_named,
    release_due,
    session_state,
)
from lunepool_magic.notebook.session import CellResult, Session
from lunepool_magic.sqltext import split_statements

AFTER = 600.0  # the release time of these tests, in (fake) seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_session(clock: FakeClock, pg_url: str) -> Iterator[Any]:
    sessions: list[Session] = []

    def make(url: str = pg_url, **options: Any) -> Session:
        policy = IdlePolicy(lambda: AFTER / 60, clock)
        options.setdefault("max_connections", 3)
        session = Session("s", url, acquire_timeout=10.0, idle=policy, **options)
        session.connect(10.0)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def cell(session: Session, sql: str) -> CellResult:
    return session.run(bind_cell(split_statements(sql), {}), timeout=10.0)


def backend_pid(session: Session) -> int:
    return int(cell(session, "SELECT pg_backend_pid()").frame.iat[0, 0])


# ------------------------------------------------------------ the server check


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("CREATE TEMP TABLE t (a int)", [("temporary table", "t")]),
        ("CREATE TEMP VIEW v AS SELECT 1", [("temporary view", "v")]),
        (
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            [("temporary function", "f")],
        ),
        ("SET work_mem = '8MB'", [("SET", "work_mem")]),
        ("SELECT set_config('lpm.x', '1', false)", [("SET", "lpm.x")]),
        ("SET app.Tenant = '42'", [("SET", "app.tenant")]),
        ("PREPARE q AS SELECT 1", [("prepared statement", "q")]),
        ("LISTEN jobs", [("LISTEN", "jobs")]),
        ("SELECT pg_advisory_lock(42)", [("advisory lock", "42")]),
        ("SELECT pg_advisory_lock(8589934593)", [("advisory lock", "8589934593")]),
        ("SELECT pg_advisory_lock_shared(1, 2)", [("advisory lock", "1,2")]),
        (
            "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT",
            [("cursor WITH HOLD", "c")],
        ),
    ],
)
def test_the_server_reports_each_kind_of_session_state(
    pg_url: str, setup: str, expected: list[tuple[str, str]]
) -> None:
    statements = setup.split("; ")
    custom = custom_settings_named(statements)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert session_state(conn, custom) == []
        for statement in statements:
            conn.execute(statement)
        assert session_state(conn, custom) == expected


@pytest.mark.parametrize(
    "setup",
    [
        "SET work_mem = '8MB'; RESET work_mem",
        "SET app.tenant = '42'; RESET app.tenant",
        "BEGIN; SET LOCAL app.tenant = '42'; COMMIT",
        "BEGIN; SET LOCAL work_mem = '8MB'; COMMIT",
        "CREATE TEMP TABLE t (a int); DROP TABLE t",
        "PREPARE q AS SELECT 1; DEALLOCATE q",
        "LISTEN jobs; UNLISTEN jobs",
        "SELECT pg_advisory_lock(7); SELECT pg_advisory_unlock(7)",
        "BEGIN; SELECT pg_advisory_xact_lock(7); COMMIT",
    ],
)
def test_state_that_was_undone_is_not_reported(pg_url: str, setup: str) -> None:
    statements = setup.split("; ")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
        assert session_state(conn, custom_settings_named(statements)) == []


def test_custom_setting_names_come_from_set_and_set_config() -> None:
    cells = [
        "SET app.tenant = 1",
        "set session My.Flag to on",
        "SELECT set_config('rls.user', '7', false)",
        "SET work_mem = '1MB'",
        "SELECT 'no set here'",
    ]
    assert custom_settings_named(cells) == {"app.tenant", "my.flag", "rls.user"}


def test_psycopgs_automatic_prepared_statements_are_not_the_users(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True, prepare_threshold=1) as conn:
        for _ in range(3):
            conn.execute("SELECT %s::int", (1,))
        names = [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements")]
        assert names and all(name.startswith("_pg3_") for name in names)
        assert session_state(conn) == []


# ------------------------------------------------------------- the release pass


def test_an_idle_session_without_state_closes_its_connection_and_reconnects_silently(
    make_session: Any, clock: FakeClock, pg_admin: psycopg.Connection
) -> None:
    session = make_session()
    pid = backend_pid(session)
    clock.now += AFTER - 1
    assert release_due([session], clock(), AFTER) == session.idle_since + AFTER  # not yet
    assert session.pool.stats().size == 1
    clock.now += 2
    assert release_due([session], clock(), AFTER) is None  # released; due again after a cell
    wait_gone(pg_admin, pid)
    assert session.pool.stats().size == 0 and session.keeps() == ""

    result = cell(session, "SELECT 1 AS one")
    assert result.frame["one"].tolist() == [1]
    assert messages.SESSION_LOST not in result.warnings
    assert result.warnings == []
    assert backend_pid(session) != pid


def test_a_connection_with_state_is_kept_and_the_listing_says_why(
    make_session: Any, clock: FakeClock
) -> None:
    session = make_session()
    cell(session, "CREATE TEMP TABLE scratch (a int); SET search_path = pg_temp, public")
    pid = backend_pid(session)
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    assert session.pool.stats().size == 1
    assert session.keeps() == f"pid {pid}: temporary table scratch; SET search_path"
    # The next cell finds its connection and its state.
    assert backend_pid(session) == pid
    assert cell(session, "SELECT count(*) AS n FROM scratch").frame["n"].tolist() == [0]
    assert session.keeps() == ""  # in use again: the reason is recomputed at the next release


def test_each_idle_connection_is_checked_and_the_most_recent_stays_first(
    make_session: Any, clock: FakeClock
) -> None:
    """Three connections idle: the ones with state are kept in their order, the other closed."""
    session = make_session()
    pool = session.pool
    with pool.connection() as a, pool.connection() as b, pool.connection() as c:
        a.execute("SET work_mem = '8MB'")
        c.execute("LISTEN x")
        pids = [conn.info.backend_pid for conn in (a, b, c)]
    # Returned c, b, a: a is the most recently used and is lent first.
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    assert session.pool.stats().size == 2
    assert session.kept == [f"pid {pids[0]}: SET work_mem", f"pid {pids[2]}: LISTEN x"]
    assert backend_pid(session) == pids[0]


def test_a_custom_setting_set_in_a_cell_keeps_the_connection(
    make_session: Any, clock: FakeClock
) -> None:
    """Regression: pg_settings does not list placeholders such as app.tenant (used by RLS)."""
    session = make_session()
    cell(session, "SET app.tenant = '42'")
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    assert session.pool.stats().size == 1 and session.kept[0].endswith("SET app.tenant")
    cell(session, "RESET app.tenant")
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    assert session.pool.stats().size == 0


def test_a_connection_the_server_ended_is_not_passed_off_as_released(
    make_session: Any, clock: FakeClock, pg_admin: psycopg.Connection
) -> None:
    """Its temp table is gone: the next cell must still say the session was lost."""
    session = make_session()
    cell(session, "CREATE TEMP TABLE gone_with_it (a int)")
    pid = backend_pid(session)
    pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_gone(pg_admin, pid)
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    stats = session.pool.stats()
    # The dead one was replaced (broken), and the replacement (no state) closed (retired).
    assert (stats.size, stats.in_use, stats.broken, stats.retired) == (0, 0, 1, 1)
    assert session.released_total == 1
    assert messages.SESSION_LOST in cell(session, "SELECT 1").warnings


def test_a_release_while_the_server_is_down_leaves_the_pool_whole(
    private_server: Any, clock: FakeClock
) -> None:
    policy = IdlePolicy(lambda: AFTER / 60, clock)
    session = Session("s", private_server.url, max_connections=2, acquire_timeout=5.0, idle=policy)
    try:
        session.connect(5.0)
        cell(session, "SELECT 1")
        private_server.stop()
        clock.now += AFTER + 1
        release_due([session], clock(), AFTER)  # the dead connection cannot be replaced
        stats = session.pool.stats()
        assert (stats.size, stats.idle, stats.in_use) == (0, 0, 0)
        private_server.start()
        assert cell(session, "SELECT 2 AS two").frame["two"].tolist() == [2]
    finally:
        session.close()


def test_a_running_cell_is_never_touched(make_session: Any, clock: FakeClock) -> None:
    session = make_session()
    clock.now += AFTER + 1
    with session.cell_lock:  # what a cell holds while it runs
        release_due([session], clock(), AFTER)
    assert session.pool.stats().size == 1
    release_due([session], clock(), AFTER)
    assert session.pool.stats().size == 0


def test_the_background_pool_is_released_too(make_session: Any, clock: FakeClock) -> None:
    session = make_session()
    with session.background_pool.connection() as conn:
        conn.execute("SELECT 1")
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    assert session.background_pool.stats().size == 0 and session.pool.stats().size == 0


def test_a_release_time_of_none_releases_nothing(make_session: Any, clock: FakeClock) -> None:
    session = make_session()
    clock.now += 10 * AFTER
    assert release_due([session], clock(), None) is None
    assert session.pool.stats().size == 1


# ---------------------------------------------------------- pinned transactions


def test_a_pinned_transaction_is_kept_and_warned_about_once_per_release_time(
    make_session: Any, clock: FakeClock
) -> None:
    session = make_session()
    cell(session, "BEGIN")
    pid = backend_pid(session)
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    assert session.transaction == "open" and backend_pid(session) == pid
    # backend_pid ran a cell after the release time: that cell carried the warning.
    clock.now += AFTER + 1
    warned = cell(session, "SELECT 1")
    (line,) = [w for w in warned.warnings if w.startswith("Warning:")]
    assert "transaction has been open for 20 min 2 s" in line and "VACUUM" in line
    assert [w for w in cell(session, "SELECT 1").warnings if w.startswith("Warning:")] == []
    assert session.keeps().startswith("open transaction (20 min 2 s)")
    cell(session, "COMMIT")
    assert session.keeps() == "" and session.transaction == ""
    clock.now += AFTER + 1
    assert cell(session, "SELECT 1").warnings == []


# ------------------------------------------------------------------ pooler mode


def test_in_pooler_mode_nothing_is_checked_and_every_idle_connection_closes(
    make_session: Any, clock: FakeClock, pgbouncer_url: str
) -> None:
    session = make_session(pgbouncer_url, pgbouncer=True)
    result = cell(session, "SET work_mem = '8MB'")
    assert result.warnings == [pooler_note(["SET"])]
    clock.now += AFTER + 1
    release_due([session], clock(), AFTER)
    assert session.pool.stats().size == 0 and session.kept == []
    assert cell(session, "SELECT 1 AS one").warnings == []


def pooler_note(uses: list[str]) -> str:
    from lunepool_magic.notebook.pooler import session_state_note

    note = session_state_note(uses)
    assert note is not None
    return note


# ----------------------------------------------------------- the release thread


@dataclass
class Settings:
    max_connections: int = 2
    acquire_timeout: float | None = 10.0
    autoconnect: bool = True
    idle_release: float | None = None


def test_the_release_thread_gives_back_connections_and_lists_the_kept_ones(
    pg_url: str, pg_admin: psycopg.Connection
) -> None:
    settings = Settings()
    registry = Connections(settings)
    try:
        plain, _, _ = registry.connect(pg_url, "plain")
        with_state, _, _ = registry.connect(pg_url, "temp")
        cell(with_state, "CREATE TEMP TABLE keep_me (a int)")
        pid = backend_pid(plain)
        settings.idle_release = 0.0  # minutes: due as soon as a cell ends
        registry.idle_release_changed()
        assert registry.releaser.wait_pass(10.0)
        wait_gone(pg_admin, pid)
        frame = registry.listing(None)
        assert frame.loc["plain", "size"] == 0 and frame.loc["plain", "kept"] == ""
        assert (frame.loc["plain", "released"], frame.loc["plain", "broken"]) == (1, 0)
        assert frame.loc["temp", "size"] == 1
        assert "temporary table keep_me" in frame.loc["temp", "kept"]
        # A cell ends: the thread wakes for it, releases it again.
        pid = backend_pid(plain)
        assert registry.releaser.wait_pass(10.0)
        wait_gone(pg_admin, pid)
    finally:
        registry.close_all()
    assert registry.releaser.passes >= 2


def test_cells_and_the_release_thread_interleave_without_a_lost_session(pg_url: str) -> None:
    """Release time 0: the thread releases after every cell, racing the next one.

    Whatever the interleaving, every cell works, none says the session was
    lost, a temp table made in a cell is never released, and the pool's
    numbers add up.
    """
    settings = Settings(idle_release=0.0)
    registry = Connections(settings)
    try:
        session, _, _ = registry.connect(pg_url, "race")
        for i in range(60):
            result = cell(session, f"SELECT {i} AS i")
            assert result.frame["i"].tolist() == [i] and result.warnings == []
        assert registry.releaser.wait_pass(10.0)
        assert session.released_total >= 1 and session.pool.stats().size == 0
        cell(session, "CREATE TEMP TABLE stays (a int)")
        for _ in range(20):
            assert cell(session, "SELECT count(*) AS n FROM stays").warnings == []
        assert registry.releaser.wait_pass(10.0)
        stats = session.pool.stats()
        assert (stats.size, stats.in_use, stats.waiting) == (1, 0, 0)
        # Every close was a release, and none counts as broken (it used to).
        assert (stats.broken, stats.retired) == (0, session.released_total)
        assert "temporary table stays" in session.keeps()
    finally:
        registry.close_all()
