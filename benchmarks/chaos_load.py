"""The chaos run's load: worker threads and what they record.

Each worker loops until the run's end, picking an operation at random (its own
RNG, seeded from the run's seed) and running it through ``with_connection``
on the shared pool:

* ``read``: a short query, its echoed value checked;
* ``insert``: an autocommit INSERT into the ledger with a unique id;
* ``long``: ``pg_sleep`` of 10-200 ms, under a statement timeout when the
  fault thread armed one;
* ``tx``: a transaction of several statements (two ledger rows, a counter);
* ``raise``: user code that raises halfway through a transaction, either in
  ``conn.transaction()`` (psycopg rolls back) or after a bare BEGIN (only the
  pool's reset rolls back).

Per operation it records success or the failure's class (and whether that
class is documented, its message clear and free of the password), the
acquire wait (from calling ``with_connection`` to entering the function),
whether the lent connection was clean, and for writes what the caller may
conclude about the ledger (chaos_ledger.py).
"""

from __future__ import annotations

import random
import select
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from chaos_faults import TimeoutTokens
from chaos_ledger import ABSENT, BEFORE, BODY, COMMIT, OK, RETURNED, SENT, Write, failed_outcome
from psycopg import pq

from lunepool_magic.pool import PoolClosed, PoolError, PoolTimeout
from lunepool_magic.postgres import ConnectionFailed, execute, query, with_connection

POOL_NAME = "chaos"
# Not needed by the server (trust authentication never asks for it): it is
# there so the run can check that no error message ever shows it.
PASSWORD = "chaos-Secret-7f3a"
OP_KINDS = ("read", "insert", "long", "tx", "raise")
OP_WEIGHTS = (40, 22, 16, 14, 8)

# The classes a caller may see, as documented: the pool's own, a connection
# that cannot be opened, psycopg's OperationalError family (lost connection,
# AdminShutdown, QueryCanceled, ...), and the user's own exception (checked
# separately: it must be the very instance the user raised).
DOCUMENTED = (PoolTimeout, PoolClosed, ConnectionFailed, psycopg.OperationalError)


class UserAbort(Exception):
    """The exception that the ``raise`` kind's user code raises on purpose."""


# ---------------------------------------------------------------- bookkeeping


@dataclass
class WorkerStats:
    """What one worker saw; merged after the run (no locks needed meanwhile)."""

    attempted: Counter[str] = field(default_factory=Counter)
    succeeded: Counter[str] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, class)
    samples: dict[str, str] = field(default_factory=dict)  # class -> a message
    unclassified: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    wrong_results: list[str] = field(default_factory=list)
    dirty_lends: list[str] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)  # successful acquires, seconds
    failed_acquire_waits: list[float] = field(default_factory=list)
    success_times: list[float] = field(default_factory=list)
    timeouts_applied: Counter[str] = field(default_factory=Counter)  # outcome -> count
    writes: list[Write] = field(default_factory=list)
    stale_lends: int = 0  # lent with the server's goodbye already in the socket
    longest_op: float = 0.0
    finished_at: float | None = None
    crashed: str | None = None


class Op:
    """One call's progress, written by the function that runs inside the pool."""

    __slots__ = ("acquired_at", "phase", "raised", "xid")

    def __init__(self) -> None:
        self.acquired_at: float | None = None
        self.phase = BEFORE
        self.xid: str | None = None
        self.raised: UserAbort | None = None


def class_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    if module.startswith("lunepool_magic") or module in ("__main__", __name__):
        return cls.__name__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


class ConnectionRegistry:
    """Every connection the pool opened (via ``configure``); counts the open ones.

    An independent witness of the size bound: a connection counts from its
    creation until the pool closes it (or libpq finds it broken).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: list[psycopg.Connection[Any]] = []

    def add(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._conns.append(conn)

    def open_count(self) -> int:
        with self._lock:
            self._conns = [c for c in self._conns if not c.closed]
            return len(self._conns)


# ------------------------------------------------------------------- workers


class RunState(Protocol):
    """What workers share with the run."""

    pool: Any
    tokens: TimeoutTokens
    stop: threading.Event
    end_at: float
    seed: int


class Worker(threading.Thread):
    def __init__(self, run: RunState, index: int) -> None:
        super().__init__(name=f"chaos-worker-{index}", daemon=True)
        self.run_ = run
        self.index = index
        self.rng = random.Random(run.seed * 1009 + index)
        self.stats = WorkerStats()
        self._next_id = (index + 1) * 1_000_000_000

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def run(self) -> None:
        run = self.run_
        try:
            while not run.stop.is_set() and time.monotonic() < run.end_at:
                kind = self.rng.choices(OP_KINDS, OP_WEIGHTS)[0]
                if not self.attempt(kind):
                    # Back off a little after a failure, as a caller would.
                    run.stop.wait(self.rng.uniform(0.02, 0.1))
        except BaseException:
            self.stats.crashed = traceback.format_exc()
        finally:
            self.stats.finished_at = time.monotonic()

    # One operation: returns True on success.
    def attempt(self, kind: str) -> bool:
        stats = self.stats
        stats.attempted[kind] += 1
        op = Op()
        body = getattr(self, f"op_{kind}")
        write = self.plan_write(kind)

        def fn(conn: psycopg.Connection[Any]) -> None:
            op.acquired_at = time.monotonic()
            self.check_clean(conn)
            body(conn, op, write)

        started = time.monotonic()
        error: Exception | None = None
        try:
            with_connection(self.run_.pool, fn)
        except Exception as exc:
            error = exc
        ended = time.monotonic()
        stats.longest_op = max(stats.longest_op, ended - started)
        if op.acquired_at is not None:
            stats.waits.append(op.acquired_at - started)
        else:
            stats.failed_acquire_waits.append(ended - started)

        if write is not None:
            write.xid = op.xid
            if kind == "raise":
                write.outcome = ABSENT  # no COMMIT is ever sent
            elif error is None:
                write.outcome = OK
            else:
                write.outcome = failed_outcome(op.phase)
            if error is not None:
                write.error = class_name(error)
            stats.writes.append(write)

        if kind == "raise" and error is not None and error is op.raised:
            stats.succeeded[kind] += 1  # the user's own exception came back unchanged
            stats.success_times.append(ended)
            return True
        if error is None:
            if kind == "raise":
                stats.wrong_results.append("raise: user code raised but the call returned")
                return False
            stats.succeeded[kind] += 1
            stats.success_times.append(ended)
            return True
        self.record_failure(kind, error)
        return False

    def plan_write(self, kind: str) -> Write | None:
        if kind == "insert":
            return Write("insert", self.index, (self.new_id(),), ABSENT)
        if kind == "tx":
            ids = (self.new_id(), self.new_id())
            return Write("tx", self.index, ids, ABSENT, counts_update=True)
        if kind == "raise":
            return Write("raise", self.index, (self.new_id(),), ABSENT)
        return None

    def record_failure(self, kind: str, error: Exception) -> None:
        stats = self.stats
        name = class_name(error)
        stats.failures[kind, name] += 1
        message = str(error).strip()
        stats.samples.setdefault(name, message.splitlines()[0] if message else "")
        if isinstance(error, UserAbort) or not isinstance(error, DOCUMENTED):
            # A UserAbort that is not the one raised, or a class nobody documents.
            detail = "".join(traceback.format_exception(error)).rstrip()
            stats.unclassified.append(f"{kind}: {name}: {message}\n{detail}")
        if not message:
            stats.unclear.append(f"{kind}: {name} with an empty message")
        elif isinstance(error, PoolError | ConnectionFailed) and POOL_NAME not in message:
            stats.unclear.append(f"{kind}: {name} does not name the pool: {message}")
        text = f"{message} {error!r} {error.__cause__!r} {error.__context__!r}"
        if PASSWORD in text:
            stats.leaks.append(f"{kind}: {name}")

    def check_clean(self, conn: psycopg.Connection[Any]) -> None:
        """A lent connection must be usable as far as the client knows, and clean."""
        pgconn = conn.pgconn
        if pgconn.status == pq.ConnStatus.OK and select.select([pgconn.socket], [], [], 0)[0]:
            # The server already spoke on an idle connection: most often its
            # goodbye (backend terminated, server shut down) before the lend.
            self.stats.stale_lends += 1
        if (
            pgconn.status != pq.ConnStatus.OK
            or pgconn.transaction_status != pq.TransactionStatus.IDLE
            or not conn.autocommit
        ):
            self.stats.dirty_lends.append(
                f"status={pq.ConnStatus(pgconn.status).name} "
                f"transaction={pq.TransactionStatus(pgconn.transaction_status).name} "
                f"autocommit={conn.autocommit}"
            )

    # --------------------------------------------------------------- kinds

    def op_read(self, conn: psycopg.Connection[Any], op: Op, write: None) -> None:
        token = self.rng.getrandbits(48)
        df = query(conn, "SELECT %s::bigint AS echo, pg_backend_pid() AS pid", (token,))
        if len(df) != 1 or list(df.columns) != ["echo", "pid"] or int(df["echo"][0]) != token:
            self.stats.wrong_results.append(f"read: expected {token}, got {df.to_dict()}")

    def op_insert(self, conn: psycopg.Connection[Any], op: Op, write: Write) -> None:
        op.phase = SENT
        status = execute(
            conn,
            "INSERT INTO ledger (id, worker, kind) VALUES (%s, %s, 'insert')",
            (write.ids[0], self.index),
        )
        op.phase = RETURNED
        if status != "INSERT 0 1":
            self.stats.wrong_results.append(f"insert: status {status!r}")

    def op_long(self, conn: psycopg.Connection[Any], op: Op, write: None) -> None:
        seconds = self.rng.uniform(0.01, 0.2)
        if not self.run_.tokens.take():
            conn.execute("SELECT pg_sleep(%s)", (seconds,))
            return
        # An injected statement timeout: the sleep must be cut short by the server.
        seconds = max(seconds, 0.1)
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {int(seconds * 250)}")
                conn.execute("SELECT pg_sleep(%s)", (seconds,))
        except Exception as exc:
            self.stats.timeouts_applied[class_name(exc)] += 1
            raise
        self.stats.timeouts_applied["completed (not expected)"] += 1

    def _xid(self, conn: psycopg.Connection[Any], op: Op) -> None:
        row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
        assert row is not None
        op.xid = row[0]

    def _ledger_row(self, conn: psycopg.Connection[Any], op: Op, id_: int, kind: str) -> None:
        status = execute(
            conn,
            "INSERT INTO ledger (id, worker, kind, xid) VALUES (%s, %s, %s, %s::xid8)",
            (id_, self.index, kind, op.xid),
        )
        if status != "INSERT 0 1":
            self.stats.wrong_results.append(f"{kind}: insert status {status!r}")

    def _bump_counter(self, conn: psycopg.Connection[Any], kind: str) -> None:
        status = execute(conn, "UPDATE counters SET n = n + 1 WHERE worker = %s", (self.index,))
        if status != "UPDATE 1":
            self.stats.wrong_results.append(f"{kind}: counter update status {status!r}")

    def op_tx(self, conn: psycopg.Connection[Any], op: Op, write: Write) -> None:
        with conn.transaction():
            op.phase = BODY
            self._xid(conn, op)
            self._ledger_row(conn, op, write.ids[0], "tx")
            self._bump_counter(conn, "tx")
            self._ledger_row(conn, op, write.ids[1], "tx")
            op.phase = COMMIT  # leaving the block sends COMMIT
        op.phase = RETURNED

    def op_raise(self, conn: psycopg.Connection[Any], op: Op, write: Write) -> None:
        def halfway() -> None:
            op.phase = BODY
            self._xid(conn, op)
            self._ledger_row(conn, op, write.ids[0], "raise")
            self._bump_counter(conn, "raise")
            op.raised = UserAbort(f"user code gave up halfway (id {write.ids[0]})")
            raise op.raised

        if self.rng.random() < 0.5:
            with conn.transaction():  # psycopg rolls back
                halfway()
        else:
            conn.execute("BEGIN")  # nobody rolls back but the pool's reset
            halfway()
