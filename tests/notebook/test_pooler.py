"""Issue 20: recognising a transaction-mode pooler and saying what to set, in one line."""

from __future__ import annotations

import psycopg
import pytest

from lunepool_magic.notebook import pooler
from lunepool_magic.notebook.session import Session
from lunepool_magic.sqltext import split_statements


def uses(cell: str, in_transaction: bool = False) -> list[str]:
    return pooler.session_state_uses([s.text for s in split_statements(cell)], in_transaction)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("SET search_path = app", ["SET"]),
        ("set session work_mem = '64MB'", ["SET"]),
        ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", ["SET"]),
        ("/* first */ -- then\n  SET TimeZone = 'UTC'", ["SET"]),
        ("CREATE TEMP TABLE t (a int)", ["CREATE TEMP"]),
        ("create local temporary view v as select 1", ["CREATE TEMP"]),
        ("PREPARE q AS SELECT 1", ["PREPARE"]),
        ("LISTEN jobs", ["LISTEN"]),
        ("SELECT pg_advisory_lock(42)", ["pg_advisory_lock"]),
        ("SELECT pg_try_advisory_lock_shared(1, 2)", ["pg_advisory_lock"]),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", ["DECLARE ... WITH HOLD"]),
        ("SET search_path = a; CREATE TEMP TABLE t (a int); SET x.y = 1", ["SET", "CREATE TEMP"]),
    ],
)
def test_statements_that_leave_session_state_are_named(cell: str, expected: list[str]) -> None:
    assert uses(cell) == expected


@pytest.mark.parametrize(
    "cell",
    [
        "SET LOCAL work_mem = '1MB'",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET CONSTRAINTS ALL DEFERRED",
        "PREPARE TRANSACTION 'x'",
        "SELECT pg_advisory_xact_lock(42)",
        "SELECT 'SET search_path = x'",
        "CREATE TABLE temp (a int)",
        "DECLARE c CURSOR FOR SELECT 1",
        "BEGIN; SET search_path = a; CREATE TEMP TABLE t (a int); COMMIT",
        "START TRANSACTION; LISTEN x; END",
    ],
)
def test_statements_without_session_state_or_inside_a_transaction_are_not(cell: str) -> None:
    assert uses(cell) == []


def test_the_cell_is_followed_through_begin_and_commit() -> None:
    assert uses("BEGIN; SET a.b = 1; COMMIT; SET c.d = 2; LISTEN x") == ["SET", "LISTEN"]
    assert uses("SET a.b = 1; COMMIT AND CHAIN; LISTEN x", in_transaction=True) == []
    assert uses("ROLLBACK TO SAVEPOINT s; LISTEN x", in_transaction=True) == []
    # A cell that starts inside a pinned transaction, and ends it.
    assert uses("SET a.b = 1; ROLLBACK; LISTEN x", in_transaction=True) == ["LISTEN"]


def test_the_note_is_one_line_naming_what_was_used() -> None:
    assert pooler.session_state_note([]) is None
    note = pooler.session_state_note(["SET", "CREATE TEMP"])
    assert note is not None and "\n" not in note
    assert note.startswith("Note: pooler mode: SET, CREATE TEMP outside a transaction")
    assert "\n" not in pooler.POOLER_MODE_NOTE and "BEGIN" in pooler.POOLER_MODE_NOTE


def _server_error(conn: psycopg.Connection, sql: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql)
    return info.value


def test_a_users_prepared_statement_error_is_not_blamed_on_a_pooler(pg_url: str) -> None:
    """Real server errors with the SQLSTATEs a pooler causes, but the user's own names."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        unknown = _server_error(conn, "EXECUTE nowhere")
        conn.execute("PREPARE twice AS SELECT 1")
        duplicate = _server_error(conn, "PREPARE twice AS SELECT 2")
    assert (unknown.sqlstate, duplicate.sqlstate) == ("26000", "42P05")
    assert pooler.error_hint(unknown, pooler_mode=False) is None
    assert pooler.error_hint(duplicate, pooler_mode=False) is None
    # In pooler mode, EXECUTE of a PREPARE made outside a transaction is the pooler's doing.
    hint = pooler.error_hint(unknown, pooler_mode=True)
    assert hint is not None and hint.startswith("HINT:  in pooler mode a PREPARE")
    assert pooler.error_hint(duplicate, pooler_mode=True) is None
    assert pooler.error_hint(ValueError("x"), pooler_mode=True) is None


def test_a_direct_connection_does_not_look_pooled(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert not pooler.looks_pooled(conn)


def test_pgbouncer_looks_pooled(pgbouncer_url: str) -> None:
    with psycopg.connect(pgbouncer_url, autocommit=True) as conn:
        assert pooler.looks_pooled(conn)


def test_connecting_through_pgbouncer_without_pooler_mode_says_what_to_set(
    pgbouncer_url: str, pg_url: str
) -> None:
    through = Session("b", pgbouncer_url, max_connections=1, acquire_timeout=10.0)
    direct = Session("d", pg_url, max_connections=1, acquire_timeout=10.0)
    pooled = Session("p", pgbouncer_url, max_connections=1, acquire_timeout=10.0, pgbouncer=True)
    try:
        for session in (through, direct, pooled):
            session.connect(10.0)
        assert through.connect_notes == [pooler.pooled_server_note()]
        assert "--pgbouncer" in through.connect_notes[0]
        assert direct.connect_notes == []
        assert pooled.connect_notes == [pooler.POOLER_MODE_NOTE]
    finally:
        for session in (through, direct, pooled):
            session.close()
