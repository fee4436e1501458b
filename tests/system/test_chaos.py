"""The chaos run (benchmarks/chaos.py): its short mode passes, and its ledger check bites.

The short mode runs as a subprocess: it owns its server (an embedded one it
restarts), its proxy and its threads, and must exit 0. Its printed report is
shown on failure; rerun the same choices with ``python benchmarks/chaos.py
--seed N``. The ledger check is also tested on its own, against a ledger with
known lies, so that a passing run means something.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
SECONDS = 15
# Set-up (initdb) and teardown come on top of the run; a hang is caught here.
TIMEOUT = SECONDS + 90


def test_chaos_short_mode_passes_all_checks() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--seconds", str(SECONDS)],
        cwd=SCRIPT.parent.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the run stop its server and threads; SIGKILL would leak them.
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        raise AssertionError(
            f"chaos run did not finish within {TIMEOUT} s:\n{stdout}\nstderr:\n{stderr}"
        ) from None
    report = stdout + (f"\nstderr:\n{stderr}" if stderr.strip() else "")
    assert proc.returncode == 0, f"chaos run exited {proc.returncode}:\n{report}"
    assert "all checks passed" in stdout, report


def _ledger_module() -> Any:
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
    import chaos_ledger

    return chaos_ledger


def _xid(conn: psycopg.Connection[Any], end: str, *statements: str) -> str:
    """Run a transaction of ``statements`` ended by ``end``; return its xid."""
    with conn.transaction(force_rollback=end == "ROLLBACK"):
        row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
        assert row is not None
        for statement in statements:
            conn.execute(statement.replace("{xid}", row[0]))
    return row[0]


def test_ledger_check_catches_lost_duplicated_invented_and_contradicted_writes(
    pg_url: str,
) -> None:
    """The chaos run's ledger check itself: silent on a true ledger, loud on each lie."""
    ledger = _ledger_module()
    Write, OK, ABSENT, DOUBT = ledger.Write, ledger.OK, ledger.ABSENT, ledger.DOUBT
    schema = f"chaos_ledger_check_{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"SET search_path = {schema}")
            ledger.create_schema(conn, 1)
            insert = "INSERT INTO ledger (id, worker, kind, xid) VALUES ({id}, 0, 'tx', '{{xid}}')"
            bump = "UPDATE counters SET n = n + 1 WHERE worker = 0"
            committed = _xid(conn, "COMMIT", insert.format(id=10), bump, insert.format(id=11))
            aborted = _xid(conn, "ROLLBACK", insert.format(id=20), bump)
            doubt_aborted = _xid(conn, "ROLLBACK", insert.format(id=30))
            for id_ in (1, 3, 5):
                conn.execute(
                    "INSERT INTO ledger (id, worker, kind) VALUES (%s, 0, 'insert')", (id_,)
                )
            writes = [
                Write("insert", 0, (1,), OK),
                Write("insert", 0, (3,), OK),
                Write("insert", 0, (4,), ABSENT),
                Write("insert", 0, (5,), DOUBT),  # committed after all: fine
                Write("insert", 0, (6,), DOUBT),  # not committed: fine
                Write("tx", 0, (10, 11), OK, xid=committed, counts_update=True),
                Write("tx", 0, (20,), ABSENT, xid=aborted, counts_update=True),
                Write("tx", 0, (30,), DOUBT, xid=doubt_aborted, counts_update=True),
            ]
            report = ledger.verify(conn, writes)
            assert report.problems == []
            assert any("insert doubt -> committed" in line for line in report.lines)

            conn.execute("DELETE FROM ledger WHERE id IN (1, 11)")  # lost
            conn.execute("INSERT INTO ledger (id, worker, kind) VALUES (3, 0, 'insert')")  # twice
            conn.execute("INSERT INTO ledger (id, worker, kind) VALUES (4, 0, 'insert')")  # failed
            conn.execute(
                "INSERT INTO ledger (id, worker, kind) VALUES (99, 0, 'insert')"
            )  # invented
            conn.execute(  # rows of a transaction that pg_xact_status says aborted
                "INSERT INTO ledger (id, worker, kind, xid) VALUES (30, 0, 'tx', %s::xid8)",
                (doubt_aborted,),
            )
            conn.execute("UPDATE counters SET n = n + 5")
            problems = " | ".join(ledger.verify(conn, writes).problems)
            for expected in (
                "successful write not in the ledger exactly once: 3",  # ids 1, 3, and 10+11
                "write that failed before COMMIT is in the ledger: 1",
                "rows whose id no worker wrote (invented): 1",
                "ledger rows disagree with pg_xact_status: 1",
                "counters disagree with committed transactions: 1",
            ):
                assert expected in problems
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
