"""Idle kernels give their connections back: the idle release and its server-side check.

A kernel left open for days would otherwise keep its connections for its
whole life, and a team's idle kernels would fill the server's
``max_connections``. A session idle for longer than
``LunepoolMagic.idle_release`` minutes has its idle connections closed,
each only after the server said it carries no state the user could lose
(:data:`STATE_QUERY`): a connection that does is kept, with the reason,
for the connections listing. The next cell connects again, silently.

How it runs: one daemon thread per kernel (:class:`IdleReleaser`) sleeps
until the earliest session is due, then, for each due session, takes the
session's cell lock *without waiting* (a running cell means not idle) and
borrows the pool's idle connections through the generic pool's public
API, checks each on the server, discards the ones without state and
returns the others in the order it took them (so the most recently used
one stays first). A cell that starts meanwhile waits for the pass over its
session: one check query per idle connection. :func:`release_due` is the same pass with an explicit
clock, for tests.

Importing this module imports no psycopg: the magic builds the releaser at
``%load_ext``, and psycopg waits for the first cell.

Behind a transaction-mode pooler (pooler mode) nothing is checked: the
check would look at whichever server connection the pooler picked, and no
session state carries from one transaction to the next there anyway.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from lunepool_magic.notebook.session import Session
    from lunepool_magic.postgres import PostgresPool

__all__ = [
    "DEFAULT_RELEASE_MINUTES",
    "STATE_QUERY",
    "IdlePolicy",
    "IdleReleaser",
    "custom_settings_named",
    "release_due",
    "release_pool",
    "session_state",
]

logger = logging.getLogger("lunepool_magic.idle")

#: The default of ``LunepoolMagic.idle_release``: the idle time after which
#: psycopg_pool (``max_idle``) and PgBouncer (``server_idle_timeout``) close
#: connections too. Long enough that thinking between two cells keeps the
#: warm connection, short enough that lunch or a meeting gives it back.
DEFAULT_RELEASE_MINUTES = 10.0

#: Everything on a connection that closing it would lose, one row per item:
#: (kind, name). psycopg's own automatic prepared statements (``_pg3_*``) are
#: not the user's: psycopg prepares them again on a new connection.
#: Session-level advisory locks are the only ones an idle connection (outside
#: a transaction) can hold. Custom settings (``SET app.tenant = ...``) are
#: placeholders that pg_settings does not list: their names come from the
#: cells (:func:`custom_settings_named`), and one that is set shows a value.
STATE_QUERY = """\
SELECT CASE c.relkind WHEN 'v' THEN 'temporary view' WHEN 'S' THEN 'temporary sequence'
                      ELSE 'temporary table' END, c.relname::text
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind IN ('r','p','v','m','S','f')
UNION ALL
SELECT 'temporary function', p.proname::text
  FROM pg_catalog.pg_proc p WHERE p.pronamespace = pg_catalog.pg_my_temp_schema()
UNION ALL
SELECT 'SET', s.name FROM pg_catalog.pg_settings s WHERE s.source = 'session'
UNION ALL
SELECT 'SET', n FROM unnest(%(custom)s::text[]) AS n
 WHERE coalesce(pg_catalog.current_setting(n, true), '') <> ''
   AND n NOT IN (SELECT name FROM pg_catalog.pg_settings)
UNION ALL
SELECT 'prepared statement', ps.name::text
  FROM pg_catalog.pg_prepared_statements ps WHERE ps.name !~ '^_pg3_[0-9]+$'
UNION ALL
SELECT 'LISTEN', ch::text FROM pg_catalog.pg_listening_channels() AS ch
UNION ALL
SELECT 'advisory lock', CASE l.objsubid
         WHEN 1 THEN ((l.classid::int8 << 32) | l.objid::int8)::text
         ELSE l.classid::text || ',' || l.objid::text END
  FROM pg_catalog.pg_locks l
 WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid()
UNION ALL
SELECT 'cursor WITH HOLD', cu.name::text FROM pg_catalog.pg_cursors cu WHERE cu.is_holdable
"""


def session_state(
    conn: psycopg.Connection[Any], custom: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """What ``conn`` holds that closing it would lose, as (kind, name) pairs; [] if nothing.

    ``custom`` names custom settings (``app.tenant``) the cells may have set.
    """
    rows = conn.execute(STATE_QUERY, {"custom": sorted(custom)}).fetchall()
    return [(str(kind), str(name)) for kind, name in rows]


# `SET [SESSION] a.b` and `set_config('a.b', ...)`: the custom settings a cell names.
_CUSTOM_SET_RE = re.compile(
    r"\bset\s+(?:session\s+)?([A-Za-z_][\w$]*\.[A-Za-z_][\w$]*)"
    r"|\bset_config\s*\(\s*'([A-Za-z_][\w$]*\.[A-Za-z_][\w$]*)'",
    re.IGNORECASE,
)


def custom_settings_named(statements: Iterable[str]) -> set[str]:
    """Custom setting names (with a dot) that ``statements`` set, lower-cased as the server does."""
    names: set[str] = set()
    for text in statements:
        for match in _CUSTOM_SET_RE.finditer(text):
            names.add((match.group(1) or match.group(2)).lower())
    return names


def describe_state(state: Iterable[tuple[str, str]]) -> str:
    """``temporary table t, u; SET work_mem``: one phrase per kind, names in order."""
    by_kind: dict[str, list[str]] = {}
    for kind, name in state:
        by_kind.setdefault(kind, []).append(name)
    return "; ".join(f"{kind} {', '.join(names)}" for kind, names in by_kind.items())


@dataclass
class IdlePolicy:
    """When connections count as idle: ``release_after()`` seconds (None: never) by ``clock``.

    Shared by the sessions of one kernel and its releaser; ``minutes`` reads
    the user's setting afresh each time, so ``%config`` applies at once.
    """

    minutes: Callable[[], float | None] = lambda: None
    clock: Callable[[], float] = time.monotonic
    on_cell_end: Callable[[], object] = lambda: None  # the releaser's cell_ended

    def release_after(self) -> float | None:
        minutes = self.minutes()
        return None if minutes is None else max(0.0, minutes * 60.0)


@dataclass
class Released:
    """What one release pass did to a pool: connections closed, and why others were kept."""

    closed: list[psycopg.Connection[Any]]
    kept: list[str]


def release_pool(pool: PostgresPool, *, check: bool, custom: Iterable[str] = ()) -> Released:
    """Close ``pool``'s idle connections that hold no session state; keep and explain the rest.

    ``check=False`` (pooler mode) closes them all; ``custom`` goes to
    :func:`session_state`. Only connections idle in the pool are taken (the
    count is read first; a borrow is made only while one is idle), so this
    never waits; it opens a connection only where the pool finds an idle one
    dead and replaces it. A connection whose check fails for another reason
    than a lost connection is kept: the state is unknown, and unknown is not
    "none". One found lost is dropped but not counted as closed: its state
    is gone, and the next cell must say so.
    """
    taken: list[tuple[Any, psycopg.Connection[Any]]] = []
    result = Released([], [])
    try:
        for _ in range(pool.stats().idle):
            if pool.stats().idle == 0:
                break  # another thread borrowed one meanwhile
            borrow = pool.connection(0)
            taken.append((borrow, borrow.__enter__()))
    except Exception as exc:
        # Closed, the last idle one went to someone else, or a dead one could
        # not be replaced (server down): release what is held, try next time.
        logger.debug("idle release stopped borrowing: %s", exc)
    try:
        for borrow, conn in taken:
            reason = _keep_reason(conn, custom) if check else None
            if reason is None:
                borrow.retire()  # healthy, closed on purpose: not counted as broken
                result.closed.append(conn)
            elif reason is _LOST:
                borrow.discard()
            else:
                result.kept.append(reason)
    finally:
        # Given back in the order taken: the first taken was the most recently
        # used, and is returned last, so it is lent first again.
        for borrow, _ in reversed(taken):
            borrow.__exit__(None, None, None)
    return result


_LOST = "the connection was lost"


def _keep_reason(conn: psycopg.Connection[Any], custom: Iterable[str]) -> str | None:
    """Why ``conn`` must stay open (its state, described), None if it may close, or _LOST."""
    import psycopg

    try:
        state = session_state(conn, custom)
    except psycopg.OperationalError:
        return _LOST
    except psycopg.Error as exc:
        return f"session state unknown ({type(exc).__name__})"
    if not state:
        return None
    return f"pid {conn.info.backend_pid}: {describe_state(state)}"


def release_due(sessions: Iterable[Session], now: float, after: float | None) -> float | None:
    """Release the idle connections of every session idle since ``now - after``.

    Returns when the next session falls due (a clock value), None if none
    will without another cell. A session whose cell is running, or that was
    released since its last cell, is skipped.
    """
    if after is None:
        return None
    next_due: float | None = None
    for session in sessions:
        due = session.idle_since + after
        if session.released_for == session.idle_since or session.closed:
            continue
        if due > now:
            next_due = due if next_due is None else min(next_due, due)
            continue
        if not session.cell_lock.acquire(blocking=False):
            continue  # a cell is running: it is not idle, and it will set a new idle_since
        try:
            if session.idle_since + after <= now:  # no cell ended since it was read
                _release_session(session)
        finally:
            session.cell_lock.release()
    return next_due


def _release_session(session: Session) -> None:
    closed: list[psycopg.Connection[Any]] = []
    kept: list[str] = []
    for pool in session.pools():
        released = release_pool(pool, check=not session.pgbouncer, custom=session.custom_settings)
        closed += released.closed
        kept += released.kept
        if pool is session.pool:
            session.released_total += len(released.closed)
    session.released(closed, kept)
    if closed or kept:
        logger.info(
            "connection %r idle: closed %d connection(s), kept %d",
            session.alias,
            len(closed),
            len(kept),
        )


class IdleReleaser:
    """The kernel's release thread: wakes when a session falls due, runs :func:`release_due`.

    Started by the first connection (:meth:`start`), stopped by :meth:`stop`.
    :meth:`poke` makes it look again (a setting changed, a session was added).
    ``passes`` counts finished passes, and :meth:`wait_pass` waits for the
    next one: tests wait on that, never on a guessed sleep.
    """

    def __init__(self, sessions: Callable[[], list[Session]], policy: IdlePolicy) -> None:
        self._sessions = sessions
        self.policy = policy
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._in_pass = False
        self._pending = False  # poked since the last pass began: look again before sleeping
        # True while the thread sleeps with no deadline: the end of a cell must wake it.
        self.sleeping = False
        self._cells = 0  # cells ended; only the kernel's thread counts them
        self.passes = 0

    def start(self) -> None:
        """Start the thread if it is not running (idempotent)."""
        with self._wake:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(
                target=self._loop, name="lunepool_magic idle release", daemon=True
            )
            self._thread.start()

    def poke(self) -> None:
        """Make the thread run another pass soon (at once, if it is sleeping)."""
        with self._wake:
            self._pending = True
            self._wake.notify_all()

    def cell_ended(self) -> None:
        """A cell ended: its session falls due later; wake the thread only if it has no deadline.

        No lock on the cell's path: the cell counts itself, then reads
        ``sleeping``; the thread sets ``sleeping``, then compares the count with
        the one from the start of its pass. Either the thread sees the cell, or
        the cell sees the thread asleep and wakes it.
        """
        self._cells += 1
        if self.sleeping:
            self.poke()

    def stop(self) -> None:
        """Stop the thread and wait for it (a pass in progress finishes first)."""
        with self._wake:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._wake.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def wait_pass(self, timeout: float) -> bool:
        """Run one more pass and wait until it has finished; False on timeout."""
        with self._wake:
            # A pass already under way may have looked before the caller's change.
            target = self.passes + (2 if self._in_pass else 1)
            self.poke()
            return self._wake.wait_for(lambda: self.passes >= target, timeout)

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                self._in_pass, self._pending = True, False
                cells = self._cells
            try:
                next_due = release_due(
                    self._sessions(), self.policy.clock(), self.policy.release_after()
                )
            except Exception:  # a release must never kill the thread: the next pass retries
                logger.exception("idle release failed")
                next_due = None
            with self._wake:
                self.passes += 1
                self._in_pass = False
                self._wake.notify_all()
                if next_due is None:
                    self.sleeping = True
                    # Woken by poke(): a cell ended, a setting changed, a session came.
                    while not (self._pending or self._stopping or self._cells != cells):
                        self._wake.wait()
                    self.sleeping = False
                elif not (self._pending or self._stopping):
                    # A cell only moves a session's deadline later: waking at this
                    # one is soon enough.
                    self._wake.wait(max(0.0, next_due - self.policy.clock()))
