"""One named notebook connection: its pool, a transaction pinned across cells, running a cell.

This is the magic's engine, kept free of IPython so it can be read (and
tested) on its own; :mod:`lunepool_magic.magic` is only the IPython glue.

A :class:`Session` owns one :class:`~lunepool_magic.postgres.PostgresPool`.
Each cell borrows a connection, runs its statements in order on it, and
gives it back; the pool lends the most recently returned connection first,
so consecutive cells share a connection and its ``SET``\\ s and temporary
tables, as in psql. Two things need more than a plain borrow:

* **Transactions across cells.** The pool rolls back whatever a borrower
  leaves open, so a ``BEGIN`` in one cell and ``COMMIT`` in a later one
  cannot work with a borrow per cell. A cell that ends inside a transaction
  (the connection is INTRANS or INERROR) therefore keeps its borrow open,
  *pinned* to the session, and later cells run on that connection until a
  cell ends outside a transaction; then the borrow is returned. Closing the
  session returns it too, and the pool rolls the transaction back.
* **Lost sessions.** When the connection a cell used is gone by the next
  cell (a fatal error discarded it, or the pool found it dead and replaced
  it), the next cell says once that session state was lost: otherwise a
  vanished temp table or ``SET`` would be a mystery.

Interrupts: psycopg cancels the running query on the server when Ctrl-C
arrives while it waits for the result (``Connection.wait``), then re-raises
KeyboardInterrupt. We let it reach the code that settles the connection
(which returns or pins it like after any statement; when psycopg could not
finish the cancellation, :func:`~lunepool_magic.postgres.libpq.finish_statement` does) and turn
it into a short "query cancelled" error. An interrupt while waiting for a
free connection leaves no trace in the pool (the pool guarantees that).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from lunepool_magic.notebook import messages as display
from lunepool_magic.notebook import pooler
from lunepool_magic.notebook.binding import BoundStatement, DictDumper, unencodable
from lunepool_magic.notebook.idle import IdlePolicy, custom_settings_named
from lunepool_magic.pool import Borrow, PoolClosed, PoolTimeout
from lunepool_magic.postgres import ConnectionFailed, PostgresPool, create_pool, must_discard, run
from lunepool_magic.postgres.budget import ResultTooLarge
from lunepool_magic.postgres.libpq import IN_TRANSACTION, INERROR, finish_statement
from lunepool_magic.postgres.pool import APPLICATION_NAME

__all__ = ["APPLICATION_NAME", "CellResult", "Session", "error_lines", "give_back"]


T = TypeVar("T")


class CellResult:
    """What a cell produced: the last result set (or None) and lines to print.

    ``status`` is the command status of the last statement (``INSERT 0 3``).
    ``info`` lines go to stdout; ``warnings`` (server notices, "session
    lost") to stderr, as psql prints notices.
    """

    __slots__ = ("frame", "info", "status", "truncated", "warnings")

    def __init__(self) -> None:
        self.frame: Any = None
        self.truncated = False  # a limit cut the last result set
        self.status = ""
        self.info: list[str] = []
        self.warnings: list[str] = []


class Session:
    """A named connection of the notebook: a pool and the transaction pinned to it.

    ``source`` says where the connection string came from (``"url"``,
    ``"DATABASE_URL"``, ``"embedded"``), for the connection list. The pool
    keeps connections for the whole session (no max_lifetime/max_idle): a
    notebook must not lose its temp tables or SETs because a connection aged.
    Only the idle release (:mod:`lunepool_magic.notebook.idle`, ``idle``)
    closes idle ones, after the server said they hold no such state.
    ``pgbouncer`` is pooler mode (:mod:`lunepool_magic.notebook.pooler`).

    Background jobs (``%%sql --background``) borrow from a second pool of the
    same size and target, :attr:`background_pool`, opened on first use: the
    pool lends the most recently returned connection first, so a job's
    connection coming back to the cells' pool would take the place of the
    one holding the notebook's session state (temporary tables, SET), and a
    busy notebook could find every connection taken by jobs. Two pools keep
    the cells on their connection and never lend a job the pinned one.
    """

    def __init__(
        self,
        alias: str,
        conninfo: str,
        *,
        max_connections: int,
        acquire_timeout: float | None,
        source: str = "url",
        password: str | None = None,
        pgbouncer: bool = False,
        idle: IdlePolicy | None = None,
    ) -> None:
        self.alias = alias
        self.source = source
        self.conninfo = conninfo  # as given; may hold a password: never shown
        self._password = password  # for the pools (see _make_pool); never shown
        self._max_connections = max_connections
        self._acquire_timeout = acquire_timeout
        self._notices: list[str] = []  # server notices of the running cell
        # Pooler mode: no automatic prepared statements, notes on session state.
        self.pgbouncer = pgbouncer
        self.idle = idle or IdlePolicy()
        # Held while a cell uses the connection; the idle release takes it
        # without waiting, so it never touches a connection a cell is using.
        self.cell_lock = threading.Lock()
        self.idle_since = self.idle.clock()  # when the last cell ended (or the session began)
        self.released_for: float | None = None  # idle_since of the last release pass
        self.kept: list[str] = []  # why the last release pass kept connections open
        self.released_total = 0  # connections of `pool` the idle release closed
        self.custom_settings: set[str] = set()  # `SET app.x` names the cells used, for the check
        self.pinned_since: float | None = None  # when the pinned transaction began
        self._pinned_warned: float | None = None
        self.connect_notes: list[str] = []  # what connect() found out (a pooler, pooler mode)
        self.pool: PostgresPool = self._make_pool(alias, self._configure)
        self._background: PostgresPool | None = None
        self._pinned: Borrow[Any] | None = None
        self._pinned_conn: psycopg.Connection[Any] | None = None
        # The connection the previous cell ran on, to notice when it is gone.
        self._last_conn: psycopg.Connection[Any] | None = None

    # ------------------------------------------------------------------ state

    @property
    def target(self) -> str:
        """The masked connection target (no password), e.g. postgresql://me@host:5432/db."""
        return self.pool.target

    @property
    def transaction(self) -> str:
        """'' when no transaction is pinned, else 'open' or 'aborted'."""
        conn = self._pinned_conn
        if conn is None:
            return ""
        return "aborted" if conn.pgconn.transaction_status == INERROR else "open"

    @property
    def closed(self) -> bool:
        return self.pool.closed

    def connect(self, timeout: float | None) -> None:
        """Open (or check) one connection now, so a bad URL fails where it was typed.

        Also finds out whether a pooler answers (see
        :func:`~lunepool_magic.notebook.pooler.looks_pooled`); the notes to print
        are left in ``connect_notes``.
        """
        if self._pinned is not None:
            return
        try:
            with self.pool.connection(timeout) as conn:
                self._last_conn = conn
                notes = [pooler.POOLER_MODE_NOTE] if self.pgbouncer else []
                if not self.pgbouncer and pooler.looks_pooled(conn):
                    notes.append(pooler.pooled_server_note())
                self.connect_notes = notes
        except (ConnectionFailed, PoolTimeout) as exc:
            raise display.SqlCellError([f"ERROR:  {exc}"]) from exc
        except KeyboardInterrupt as exc:
            raise display.QueryCancelled(["Interrupted while connecting."]) from exc

    @property
    def background_pool(self) -> PostgresPool:
        """The pool background jobs borrow from (same target and size; opened on first use)."""
        if self._background is None:
            if self.pool.closed:
                raise PoolClosed(f"connection {self.alias!r} is closed")
            self._background = self._make_pool(f"{self.alias} (background)", _configure_background)
        return self._background

    def _make_pool(
        self, name: str, configure: Callable[[psycopg.Connection[Any]], None]
    ) -> PostgresPool:
        """A pool of this connection: the cells' or the background jobs' (same target and
        limits; connections live until closed: the idle release decides, not a timer)."""
        return create_pool(
            self.conninfo,
            password=self._password,
            max_connections=self._max_connections,
            acquire_timeout=self._acquire_timeout,
            max_lifetime=None,
            max_idle=None,
            pgbouncer=self.pgbouncer,
            application_name=APPLICATION_NAME,
            name=name,
            configure=configure,
        )

    def close(self) -> bool:
        """Return a pinned connection (its transaction is rolled back) and close the pools.

        Returns True if an open transaction was rolled back. Connections that
        background jobs hold are closed when the jobs give them back.
        """
        rolled_back = self._release_pinned()
        self.pool.close()
        if self._background is not None:
            self._background.close()
        return rolled_back

    def pools(self) -> list[PostgresPool]:
        """The pools open now: the cells' one, and the background jobs' one once used."""
        return [self.pool] if self._background is None else [self.pool, self._background]

    def released(self, closed: list[psycopg.Connection[Any]], kept: list[str]) -> None:
        """The idle release closed ``closed`` and kept others for ``kept`` reasons.

        Called with :attr:`cell_lock` held. The next cell then connects again
        without the "session lost" note: nothing the user made was lost.
        """
        if self._last_conn is not None and any(c is self._last_conn for c in closed):
            self._last_conn = None
        self.kept = kept
        self.released_for = self.idle_since

    def keeps(self) -> str:
        """What keeps connections open through the idle release, for the listing ('' if none)."""
        reasons = list(self.kept)
        if self._pinned is not None and self.pinned_since is not None:
            age = display.duration(self.idle.clock() - self.pinned_since)
            reasons.insert(0, f"open transaction ({age})")
        return "; ".join(reasons)

    def _release_pinned(self) -> bool:
        self.pinned_since = None
        borrow, self._pinned, self._pinned_conn = self._pinned, None, None
        if borrow is None:
            return False
        borrow.__exit__(None, None, None)  # the pool's reset rolls back
        return True

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # dicts as jsonb parameters (the issue asks for "dicts as json"; plain
        # psycopg refuses to guess), and server notices (RAISE NOTICE, "...
        # does not exist, skipping") collected for the cell to print, as psql does.
        conn.adapters.register_dumper(dict, DictDumper)
        conn.add_notice_handler(self._on_notice)

    def _on_notice(self, diag: Any) -> None:
        # Formatted now: psycopg's Diagnostic is only valid during the callback.
        self._notices.append(display.notice_line(diag))

    # ------------------------------------------------------------ other work

    def call(
        self,
        work: Callable[[psycopg.Connection[Any]], T],
        *,
        timeout: float | None,
        what: str,
        statement: BoundStatement | None = None,
        shift: int = 0,
        line_offset: int = 0,
    ) -> tuple[T, CellResult]:
        """Run ``work(conn)`` on the cell's connection, like :meth:`run` runs statements.

        For what is not a list of statements (persist, backslash commands,
        EXPLAIN): the same connection (the pinned one inside a transaction),
        the same settling afterwards, the same errors. ``what`` names the work
        in messages ("persist", ...); ``statement`` is the user's statement the
        work sent, if any, with ``shift`` characters put before it, so a
        server error points into the user's text. Returns the work's value
        and the cell's notices and transaction lines (``CellResult.info``).
        Errors that are already :class:`~lunepool_magic.notebook.messages.SqlCellError`
        (the work's own explanations) get the transaction lines added.
        """
        out = CellResult()
        value, error, lost, state = self._on_connection(timeout, work, out)
        if error is None:
            return value, out
        cause: BaseException = error
        if isinstance(error, display.SqlCellError):
            lines = list(error.lines)
            exc_class: type[display.SqlCellError] = type(error)
            cause = error.__cause__ or error
        elif isinstance(error, KeyboardInterrupt):
            lines = [display.interrupted(what, "", lost)]
            exc_class = display.QueryCancelled
        elif isinstance(error, psycopg.Error):
            if statement is not None:
                lines = error_lines(error, [statement], 0, line_offset, shift=shift)
            else:
                lines = display.server_error_lines(error, "", None, 1)
                sqlstate = f"SQLSTATE {error.sqlstate}" if error.sqlstate else "no SQLSTATE"
                lines.append(f"({sqlstate})")
            hint = pooler.error_hint(error, self.pgbouncer)
            if hint is not None:
                lines.insert(len(lines) - 1, hint)  # before our "(SQLSTATE ...)" line
            exc_class = display.SqlCellError
        else:
            raise error
        raise _with_state(exc_class(lines), cause, lost, state, out.warnings)

    # ---------------------------------------------------------------- running

    def run(
        self,
        bound: list[BoundStatement],
        *,
        timeout: float | None,
        line_offset: int = 0,
        limit: int | None = None,
        on_progress: Any = None,
        output: str = "pandas",
        max_memory: Any = None,
    ) -> CellResult:
        """Run a cell's statements in order on one connection; return the last result set.

        ``line_offset`` is added to statement line numbers so that messages
        count lines as the user sees the cell (1 for a ``%%sql`` body).
        ``limit``, ``on_progress``, ``output`` (the result's shape: pandas,
        arrow, polars) and ``max_memory`` (the result's memory budget: bytes, or a
        function giving them)
        go to :func:`~lunepool_magic.postgres.run` for each statement. Raises
        :class:`~lunepool_magic.notebook.messages.SqlCellError` (server error, pool
        timeout, connection failure) or
        :class:`~lunepool_magic.notebook.messages.QueryCancelled` (interrupt).
        """
        out = CellResult()
        index = 0  # the statement running, for the error message
        texts = [item.statement.text for item in bound]
        custom = custom_settings_named(texts)
        if not custom <= self.custom_settings:
            # A new set, not an update: the release thread may be reading the old one.
            self.custom_settings = self.custom_settings | custom
        if self.pgbouncer:
            uses = pooler.session_state_uses(texts, bool(self.transaction))
            note = pooler.session_state_note(uses)
            if note is not None:
                out.warnings.append(note)

        def statements(conn: psycopg.Connection[Any]) -> None:
            nonlocal index
            for index, item in enumerate(bound):  # noqa: B007 (index is read after an error)
                result = run(
                    conn,
                    item.sql,
                    item.params,
                    limit=limit,
                    on_progress=on_progress,
                    output=output,
                    max_memory=max_memory,
                )
                out.status = result.status
                if result.frame is not None:
                    out.frame = result.frame
                    out.truncated = result.truncated

        _, error, lost, state = self._on_connection(timeout, statements, out)
        if error is None:
            return out
        raise self._failure(error, bound, index, line_offset, lost, state, out.warnings)

    def _on_connection(
        self,
        timeout: float | None,
        work: Callable[[psycopg.Connection[Any]], T],
        out: CellResult,
    ) -> tuple[T | None, BaseException | None, bool, str | None]:
        """Run ``work(conn)`` on the cell's connection and settle the connection.

        The part :meth:`run` and :meth:`call` share: the pinned connection or
        a borrowed one, the once-only "session lost" warning, settling (pin,
        return or discard), the server's notices, and the transaction line.
        The work's exception is returned, not raised, with whether the session
        was lost and the transaction state, for the caller to explain.
        """
        with self.cell_lock:
            try:
                return self._on_connection_locked(timeout, work, out)
            finally:
                self.idle_since = self.idle.clock()
                self.idle.on_cell_end()

    def _on_connection_locked(
        self,
        timeout: float | None,
        work: Callable[[psycopg.Connection[Any]], T],
        out: CellResult,
    ) -> tuple[T | None, BaseException | None, bool, str | None]:
        self.kept = []  # in use again: the last release pass's findings are stale
        self._warn_long_transaction(out)
        borrow, conn = self._borrow(timeout)
        last = self._last_conn
        if last is not None and conn is not last and last.closed:
            out.warnings.append(display.SESSION_LOST)
        self._last_conn = conn
        error: BaseException | None = None
        value: T | None = None
        try:
            value = work(conn)
        except BaseException as exc:  # interrupts too: the connection must be settled first
            error = exc
        lost = self._settle(borrow, conn, error)
        if self._notices:
            out.warnings += self._notices
            self._notices.clear()
        state = self.transaction
        if error is None and state:
            out.info.append(
                display.TRANSACTION_ABORTED if state == "aborted" else display.TRANSACTION_OPEN
            )
        return value, error, lost, state

    def _warn_long_transaction(self, out: CellResult) -> None:
        """One line when the pinned transaction is older than the idle release time.

        Said again once per further release time: the transaction holds its
        locks and keeps VACUUM from cleaning up after it, for everyone.
        """
        after = self.idle.release_after()
        if self._pinned is None or self.pinned_since is None or after is None:
            return
        now = self.idle.clock()
        since = self._pinned_warned if self._pinned_warned is not None else self.pinned_since
        if now - since < after:
            return
        self._pinned_warned = now
        out.warnings.append(
            f"Warning: this notebook's transaction has been open for "
            f"{display.duration(now - self.pinned_since)}; it holds its locks and keeps VACUUM "
            "from cleaning up after it for everyone on the server: COMMIT or ROLLBACK when done."
        )

    def _borrow(self, timeout: float | None) -> tuple[Borrow[Any], psycopg.Connection[Any]]:
        if self._pinned is not None and self._pinned_conn is not None:
            return self._pinned, self._pinned_conn
        borrow = self.pool.connection(timeout)
        try:
            conn = borrow.__enter__()
        except KeyboardInterrupt as exc:
            stats = self.pool.stats()
            raise display.QueryCancelled(
                [
                    "Interrupted before the query started (while waiting for a connection: "
                    f"pool {self.alias!r} has {stats.in_use} of {stats.max_size} in use); "
                    "nothing ran."
                ]
            ) from exc
        except PoolTimeout as exc:
            raise display.SqlCellError(
                [
                    f"ERROR:  {exc}",
                    "HINT:  every connection of this pool is in use (by other threads or "
                    "code borrowing from it); raise %config LunepoolMagic.max_connections, "
                    "or %config LunepoolMagic.acquire_timeout to wait longer.",
                ]
            ) from exc
        except (ConnectionFailed, PoolClosed) as exc:
            raise display.SqlCellError([f"ERROR:  {exc}"]) from exc
        return borrow, conn

    def _settle(
        self,
        borrow: Borrow[Any],
        conn: psycopg.Connection[Any],
        error: BaseException | None,
    ) -> bool:
        """Pin, keep pinned, return or discard the connection; True if it was lost."""
        if isinstance(error, KeyboardInterrupt) and not conn.closed:
            # psycopg leaves the statement running when Ctrl-C lands in the Python
            # part of its result loop; finish it, so the session survives.
            finish_statement(conn)
        gone = error is not None and must_discard(error, conn)
        if not gone and not conn.closed and conn.pgconn.transaction_status in IN_TRANSACTION:
            if self._pinned is None:
                self.pinned_since, self._pinned_warned = self.idle.clock(), None
            self._pinned, self._pinned_conn = borrow, conn
            return False
        self._pinned = self._pinned_conn = self.pinned_since = None
        give_back(borrow, conn, error)
        # An interrupt during cancellation can leave psycopg no choice but to
        # close the connection; the pool then replaced it.
        return gone or conn.closed

    def _failure(
        self,
        error: BaseException,
        bound: list[BoundStatement],
        index: int,
        line_offset: int,
        lost: bool,
        state: str,
        warnings: list[str],
    ) -> BaseException:
        """The exception that tells the user what happened to statement ``index``."""
        if isinstance(error, KeyboardInterrupt):
            item = bound[index]
            place = display.statement_place(index, len(bound), item.statement.line + line_offset)
            lines = [display.interrupted("query", place, lost)]
            exc_class: type[display.SqlCellError] = display.QueryCancelled
        elif isinstance(error, psycopg.Error):
            lines = error_lines(error, bound, index, line_offset)
            hint = pooler.error_hint(error, self.pgbouncer)
            if hint is not None:
                lines.insert(len(lines) - 1, hint)  # before our "(SQLSTATE ...)" line
            exc_class = display.SqlCellError
        elif isinstance(error, ResultTooLarge):
            lines = [too_large_line(error)]
            exc_class = display.SqlCellError
        elif isinstance(error, UnicodeEncodeError):
            # Raised by psycopg while encoding the statement or a parameter,
            # before anything is sent: the connection is untouched.
            item = bound[index]
            place = display.statement_place(index, len(bound), item.statement.line + line_offset)
            lines = [f"ERROR:  {unencodable(error, item)}", f"(no SQLSTATE{place})"]
            exc_class = display.SqlCellError
        else:
            return error  # a bug or an unexpected failure: let its traceback show
        return _with_state(exc_class(lines), error, lost, state, warnings)


def too_large_line(error: ResultTooLarge) -> str:
    """The one line a cell shows when its result passed max_result_memory."""
    reached = display.size(error.held)
    if error.rows is not None:
        reached = f"{error.rows:,} rows ({reached})"
    passed = (
        f"the result passed max_result_memory ({display.size(error.limit)})"
        if error.limit is not None
        else "memory ran out for the result"
    )
    return (
        f"ERROR:  {passed} at {reached}: "
        "the query was cancelled on the server and nothing was kept. Fetch fewer rows "
        "(--limit N, an aggregate), stream them to a file (%sql --to results.parquet ...), "
        "or raise %config LunepoolMagic.max_result_memory."
    )


def give_back(
    borrow: Borrow[Any], conn: psycopg.Connection[Any], error: BaseException | None
) -> bool:
    """End a borrow after work on ``conn``; True if the connection was discarded.

    The one decision for cells and background jobs alike: an error that means
    the session is gone (``must_discard``) discards the connection; otherwise
    the pool's reset cleans it (and rolls back a transaction left open).
    """
    discard = error is not None and must_discard(error, conn)
    if discard:
        borrow.discard()
    if error is None:
        borrow.__exit__(None, None, None)
    else:
        borrow.__exit__(type(error), error, error.__traceback__)
    return discard


def error_lines(
    error: psycopg.Error,
    bound: list[BoundStatement],
    index: int,
    line_offset: int,
    *,
    shift: int = 0,
) -> list[str]:
    """psql-style lines for a server error in statement ``index`` of a cell.

    ``shift`` is the number of characters sent before the statement (an
    ``EXPLAIN (...)`` prefix), taken off the server's error position.
    """
    count = len(bound)
    item = bound[index]
    place = display.statement_place(index, count, item.statement.line + line_offset)
    position = display.statement_position(error)
    index_in_text = None
    if position is not None and position > shift:
        index_in_text = display.original_position(
            position - shift, item.sql, item.params is not None
        )
    text, labels = item.statement.text, item.labels or {}
    if labels:  # a template's :__tpl_N shown as the {{ }} it came from
        text, index_in_text = display.relabel(text, index_in_text, labels)
    lines = display.server_error_lines(
        error, text, index_in_text, item.statement.line + line_offset
    )
    failed = display.failed_parameter(error, item.sql)
    if failed is not None:
        number, name = failed
        value = (item.params or {}).get(name)
        lines.append(display.parameter_line(number, name, labels, value, error.sqlstate))
    sqlstate = f"SQLSTATE {error.sqlstate}" if error.sqlstate else "no SQLSTATE"
    lines.append(f"({sqlstate}{place})")
    return lines


def _with_state(
    failure: display.SqlCellError,
    cause: BaseException,
    lost: bool,
    state: str,
    warnings: list[str],
) -> display.SqlCellError:
    """Add what became of the connection and transaction to ``failure``."""
    if lost:
        failure.lines.append(display.CONNECTION_LOST)
    elif state == "aborted":
        failure.lines.append(display.TRANSACTION_ABORTED)
    elif state == "open":
        failure.lines.append(display.TRANSACTION_OPEN)
    failure.args = ("\n".join(failure.lines),)
    failure.warnings = warnings  # printed before the error, as they came first
    if failure.__cause__ is None:
        failure.__cause__ = cause
    return failure


def _configure_background(conn: psycopg.Connection[Any]) -> None:
    # dicts as jsonb parameters, as on the cells' connections; notices are
    # collected by the job that runs on the connection (lunepool_magic.notebook.jobs).
    conn.adapters.register_dumper(dict, DictDumper)
