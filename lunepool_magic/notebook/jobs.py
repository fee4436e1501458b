"""Background queries: ``%%sql --background df <<`` runs on another connection, in a thread.

One job: run a cell's statements on a connection of the session's background
pool in a thread of its own, keep track of it (running, done, failed,
cancelled), cancel it on the server when asked, and report how it ended.
Nothing here imports IPython: the magic passes in how to assign the result
(``assign``) and how to print a notice (``notify``).

How a job runs
--------------
* The launching cell borrows the connection itself, without waiting
  (:meth:`JobTable.start`): a job either starts at once or the cell fails
  with a message saying why (every connection of the background pool is
  busy, or the server is unreachable). At most ``max_connections`` jobs run at
  once per connection name; the cells keep their own pool (see
  :class:`~lunepool_magic.notebook.session.Session`), so jobs never take the
  connection of a pinned transaction or of the notebook's session state.
* The thread runs the statements in order, as a cell would (autocommit: each
  statement commits when it succeeds; a ``BEGIN`` without ``COMMIT`` in the
  job is rolled back when it gives its connection back, and the notice says
  so). Server notices are kept with the job.
* When it ends, the thread first gives the connection back, then assigns the
  DataFrame (``None`` for a statement without rows) to the variable, then
  marks the job finished, then notifies. So whoever sees the job finished
  (``--jobs``, ``--wait``) also sees the variable set.

Cancelling
----------
:meth:`JobTable.cancel` sets the job's flag (a statement not yet started
never starts) and sends cancel requests to the server until the thread has
let go of its connection. A request is sent only while holding the job's
lock and only while the job still holds that connection, and the thread
drops the connection under the same lock before giving it back: so a late
request can never hit a statement of whoever borrows the connection next.
The server ignores a request that arrives before the statement started, so
requests are repeated with growing pauses until the job lets go.

Kernel shutdown (``atexit``) and ``%unload_ext`` cancel every running job and
wait (a few seconds at most) for them to let go of their connections, before
the pools close. Job threads are daemon threads: Python's exit does not wait
for a query to finish on its own.

Notices
-------
A job that finishes prints its one-line notice (and its error, if it failed)
through ``notify``, from its own thread, unless a ``--wait`` cell is waiting
for it: then the waiting cell prints it, where the user is looking. Every
outcome also stays in the job table (``--jobs``: state, rows, elapsed time,
error), so nothing is lost when a notice lands where nobody looks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import logging
import threading
import traceback
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

import psycopg

from lunepool_magic.notebook import messages as display
from lunepool_magic.notebook.binding import unencodable
from lunepool_magic.notebook.session import error_lines, give_back, too_large_line
from lunepool_magic.pool import PoolClosed, PoolTimeout
from lunepool_magic.postgres import ConnectionFailed, libpq, run
from lunepool_magic.postgres.budget import ResultTooLarge
from lunepool_magic.postgres.libpq import IN_TRANSACTION, cancel_pauses

if TYPE_CHECKING:
    import pandas as pd

    from lunepool_magic.notebook.binding import BoundStatement
    from lunepool_magic.notebook.session import Session

__all__ = ["Job", "JobState", "JobTable"]

logger = logging.getLogger("lunepool_magic.notebook.jobs")

#: How long cancelling waits for a job to let go of its connection: the wrapper's
#: own bound for stopping an interrupted statement.
CANCEL_TIMEOUT = libpq.CANCEL_TIMEOUT
_STATEMENT_SHOWN = 60


class JobState(str, enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class _CancelledBeforeStart(Exception):
    """The job was cancelled between two statements (the next one never started)."""


class Job:
    """One background query: what it runs, where, and how it is doing.

    Written by its thread, read by the notebook: every field is a single
    reference that is replaced whole (atomic under the GIL), and ``done`` is
    set only after all of them are final.
    """

    def __init__(
        self, number: int, alias: str, out: str | None, text: str, statements: int
    ) -> None:
        self.number = number
        self.alias = alias
        self.out = out
        self.text = text  # the cell's SQL, for --jobs
        self.statements = statements
        self.started_at = dt.datetime.now()
        self._started = monotonic()
        self._finished: float | None = None
        self.state = JobState.RUNNING
        self.pid: int | None = None  # the server process, for pg_stat_activity
        self.status = ""  # command status of the last statement
        self.rows: int | None = None
        self.columns: int | None = None
        self.truncated = False  # the result had more rows than its row limit
        self.frame: pd.DataFrame | None = None  # kept only when no variable was named
        self.error_lines: list[str] = []
        self.warnings: list[str] = []  # server notices, the rolled-back transaction
        self.traceback = ""  # for an unexpected (non-server) failure
        self.cancel_late = False  # finished before the cancel request could stop it
        self.notified = False  # its thread has printed the notice (no cell reported it)
        # Cancelling (see the module docstring): _conn is set while the thread
        # holds the connection; requests are sent under _lock.
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._cancel_requested = False
        self._released = threading.Event()
        self._done = threading.Event()
        self._claimed = False  # a cell (--wait, --cancel) reports this job's end itself
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------- reading

    @property
    def elapsed(self) -> float:
        """Seconds it ran (so far, while running)."""
        end = self._finished if self._finished is not None else monotonic()
        return end - self._started

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (or ``timeout``); True if it has."""
        return self._done.wait(timeout)

    def summary(self) -> str:
        """The one-line notice: ``[1] done in 2.31 s: df = 1,000 rows × 3 columns``."""
        tag = f"[{self.number}]"
        took = display.duration(self.elapsed)
        if self.state is JobState.RUNNING:
            return f"{tag} running for {took}"
        if self.state is JobState.CANCELLED:
            lost = f" ({self.out} not set)" if self.out else ""
            return f"{tag} cancelled after {took}{lost}."
        if self.state is JobState.FAILED:
            lost = f" ({self.out} not set)" if self.out else ""
            return f"{tag} failed after {took}{lost}:"
        late = " (it finished before the cancel request could stop it)" if self.cancel_late else ""
        if self.rows is None:
            what = self.status or "no result"
            if self.out:
                what += f"; {self.out} = None (no result set)"
        else:
            rows = display.count_of(self.rows, "row")
            shape = f"{rows} × {display.count_of(self.columns or 0, 'column')}"
            if self.truncated:
                shape += (
                    " (the first rows only: the result has more; --limit N or "
                    "%config LunepoolMagic.row_limit changes this)"
                )
            if self.out:
                what = f"{self.out} = {shape}"
            else:
                what = f"{shape}, in no variable: %sql --wait {self.number} returns them"
        return f"{tag} done in {took}: {what}{late}"

    def report(self) -> tuple[list[str], list[str]]:
        """(stdout lines, stderr lines) that tell how the job ended."""
        if self.state is JobState.FAILED:
            return [], [*self.warnings, self.summary(), *self.error_lines]
        if self.state is JobState.CANCELLED:
            return [], [*self.warnings, self.summary()]
        return [self.summary()], list(self.warnings)

    def _on_notice(self, diag: Any) -> None:
        self.warnings = [*self.warnings, display.notice_line(diag)]

    def __repr__(self) -> str:
        return f"<Job {self.number} {self.state} on {self.alias!r}: {self.summary()}>"


class JobTable:
    """The kernel's background jobs, numbered from 1.

    ``notify(job)`` is called (from the job's thread) when a job ends and no
    ``--wait`` cell is waiting for it.
    """

    def __init__(self, notify: Callable[[Job], None]) -> None:
        self._notify = notify
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._next = 1
        self._closing = False

    # ------------------------------------------------------------- starting

    def start(
        self,
        session: Session,
        bound: list[BoundStatement],
        *,
        text: str,
        out: str | None,
        assign: Callable[[str, Any], None],
        line_offset: int = 0,
        output: str = "pandas",
        limit: int | None = None,
        max_memory: Any = None,
    ) -> Job:
        """Borrow a connection now and run ``bound`` on it in a new thread.

        ``output``, ``limit`` (the row limit) and ``max_memory`` (the result's
        memory budget) mean what they mean for a cell: a job's result is no
        safer to hold than a cell's.
        """
        pool = session.background_pool
        borrow = pool.connection(0)  # no waiting: start now, or say why not
        try:
            conn = borrow.__enter__()
        except PoolTimeout as exc:
            running = [j.number for j in self.jobs() if j.alias == session.alias and not j.finished]
            raise display.SqlCellError(
                [
                    f"ERROR:  no connection free for another background job on "
                    f"{session.alias!r}: {len(running)} jobs are running "
                    f"(LunepoolMagic.max_connections = {pool.max_connections}).",
                    "HINT:  wait for one to finish (%sql --jobs, %sql --wait N), cancel one "
                    "(%sql --cancel N), or raise %config LunepoolMagic.max_connections "
                    "(for connections made from then on).",
                ]
            ) from exc
        except (ConnectionFailed, PoolClosed) as exc:
            raise display.SqlCellError([f"ERROR:  {exc}"]) from exc
        except KeyboardInterrupt as exc:
            raise display.QueryCancelled(
                ["Interrupted while connecting; the background job did not start."]
            ) from exc
        with self._lock:
            number = self._next
            self._next += 1
            job = Job(number, session.alias, out, text, len(bound))
            self._jobs[number] = job
        job._conn = conn
        job.pid = conn.info.backend_pid
        conn.add_notice_handler(job._on_notice)
        thread = threading.Thread(
            target=self._run,
            args=(job, borrow, conn, bound, assign, line_offset, output, limit, max_memory),
            name=f"lunepool_magic job {number}",
            daemon=True,  # exit must not wait for a query; atexit cancels them first
        )
        job._thread = thread
        thread.start()
        return job

    def _run(
        self,
        job: Job,
        borrow: Any,
        conn: psycopg.Connection[Any],
        bound: list[BoundStatement],
        assign: Callable[[str, Any], None],
        line_offset: int,
        output: str,
        limit: int | None,
        max_memory: Any,
    ) -> None:
        error: BaseException | None = None
        index = 0
        frame = None
        truncated = False
        status = ""
        try:
            for index, item in enumerate(bound):  # noqa: B007 (index is used after the loop)
                if job._cancel_requested:
                    raise _CancelledBeforeStart
                result = run(
                    conn, item.sql, item.params, limit=limit, output=output, max_memory=max_memory
                )
                status = result.status
                if result.frame is not None:
                    frame = result.frame
                    truncated = result.truncated
        except BaseException as exc:
            error = exc
        left_open = self._give_back(job, borrow, conn, error)

        # The outcome, all fields first; then the variable; then "finished".
        job.status = status
        if frame is not None:
            job.rows, job.columns = frame.shape
            job.truncated = truncated
        if left_open:
            job.warnings = [
                *job.warnings,
                f"[{job.number}] note: the job left a transaction open; it was rolled back "
                "(end it with COMMIT inside the cell to keep its changes).",
            ]
        if error is None:
            job.cancel_late = job._cancel_requested
            state = JobState.DONE
            try:
                if job.out is not None:
                    assign(job.out, frame)
                else:
                    job.frame = frame
            except Exception as exc:  # a namespace that refuses: say so, don't lose it
                job.error_lines = [f"ERROR:  could not set {job.out}: {exc}"]
                state = JobState.FAILED
        elif job._cancel_requested and (
            isinstance(error, (_CancelledBeforeStart, psycopg.errors.QueryCanceled))
        ):
            state = JobState.CANCELLED
        else:
            state = JobState.FAILED
            if isinstance(error, psycopg.Error):
                job.error_lines = error_lines(error, bound, index, line_offset)
            elif isinstance(error, ResultTooLarge):
                job.error_lines = [too_large_line(error)]
            elif isinstance(error, UnicodeEncodeError):  # a parameter psycopg cannot encode
                job.error_lines = [f"ERROR:  {unencodable(error, bound[index])}"]
            else:
                job.error_lines = [f"ERROR:  {type(error).__name__}: {error}"]
                job.traceback = "".join(traceback.format_exception(error))
        job._finished = monotonic()
        with self._lock:
            job.state = state
            report = not job._claimed and not self._closing
        job._done.set()
        if report:
            try:
                self._notify(job)
            except Exception:  # printing must never take the job's outcome with it
                logger.exception("could not print the notice of background job %d", job.number)
            job.notified = True

    def _give_back(
        self,
        job: Job,
        borrow: Any,
        conn: psycopg.Connection[Any],
        error: BaseException | None,
    ) -> bool:
        """Return the connection to the pool; True if a transaction was left open."""
        with job._lock:
            job._conn = None  # from here on no cancel request may reach this connection
        job._released.set()
        left_open = False
        with contextlib.suppress(ValueError):  # the handler was added by start()
            conn.remove_notice_handler(job._on_notice)
        try:
            in_transaction = not conn.closed and conn.pgconn.transaction_status in IN_TRANSACTION
            # Left open only if the connection is kept: the pool's reset rolls it back.
            left_open = not give_back(borrow, conn, error) and in_transaction
        except Exception:
            logger.exception("background job %d: returning its connection failed", job.number)
        return left_open

    # ------------------------------------------------------------- control

    def jobs(self) -> list[Job]:
        """Every job of this kernel, in starting order."""
        with self._lock:
            return list(self._jobs.values())

    def get(self, number: int) -> Job | None:
        with self._lock:
            return self._jobs.get(number)

    def unreported(self) -> list[Job]:
        """Jobs running, or finished without a cell (--wait, --cancel) having reported them."""
        with self._lock:
            return [j for j in self._jobs.values() if not j.finished or not j._claimed]

    def running(self, alias: str | None = None) -> list[Job]:
        return [j for j in self.jobs() if not j.finished and (alias is None or j.alias == alias)]

    def cancel(
        self, jobs: list[Job], timeout: float = CANCEL_TIMEOUT, *, report_here: bool = False
    ) -> list[Job]:
        """Cancel ``jobs`` on the server; return those still running after ``timeout``.

        Each job's statement is cancelled (and a statement not yet started
        never starts); a job that already finished is left as it is. With
        ``report_here`` the caller reports how they ended (no notice).
        """
        if report_here:
            with self._lock:
                for job in jobs:
                    job._claimed = True
        pending = [j for j in jobs if not j._released.is_set()]
        for job in pending:
            job._cancel_requested = True
        deadline = monotonic() + timeout
        for pause in cancel_pauses(timeout):
            if not pending:
                break
            for job in pending:
                _send_cancel(job, max(0.1, deadline - monotonic()))
            step_end = monotonic() + pause
            for job in pending:
                job._released.wait(max(0.0, step_end - monotonic()))
            pending = [j for j in pending if not j._released.is_set()]
        for job in jobs:
            job._done.wait(max(0.0, deadline - monotonic()))
        return [j for j in jobs if not j.finished]

    def wait(self, jobs: list[Job], poll: float = 0.1) -> None:
        """Block until every job in ``jobs`` has finished; their notices are the caller's.

        Interruptible: Ctrl-C raises KeyboardInterrupt here (the jobs keep
        running; the magic then cancels them).
        """
        with self._lock:
            for job in jobs:
                job._claimed = True
        for job in jobs:
            while not job._done.wait(poll):
                pass

    def close(self, timeout: float = CANCEL_TIMEOUT) -> list[Job]:
        """Cancel every running job (kernel shutdown); no notices from here on.

        Returns the jobs that did not stop within ``timeout``.
        """
        with self._lock:
            self._closing = True
        return self.cancel(self.running(), timeout)


def _send_cancel(job: Job, timeout: float) -> None:
    """One cancel request for ``job``'s statement, if it still holds its connection."""
    with job._lock:
        conn = job._conn
        if conn is None:
            return
        try:
            conn.cancel_safe(timeout=timeout)
        except Exception as exc:
            logger.info("cancelling background job %d failed: %s", job.number, exc)


def jobs_frame(table: JobTable | None) -> Any:
    """The background jobs as a DataFrame (one row per job, newest last); None if none."""
    jobs = table.jobs() if table is not None else []
    if not jobs:
        return None
    import pandas as pd

    rows = []
    for job in jobs:
        first = job.text.strip().splitlines()[0] if job.text.strip() else ""
        if len(first) > 60 or job.statements > 1 or "\n" in job.text.strip():
            first = first[:57].rstrip() + " ..."
        rows.append(
            {
                "job": job.number,
                "state": str(job.state),
                "alias": job.alias,
                "variable": job.out or "",
                "rows": job.rows,
                "seconds": round(job.elapsed, 3),
                "started": job.started_at.replace(microsecond=0),
                "pid": job.pid,
                "statement": first,
                "error": job.error_lines[0] if job.error_lines else "",
            }
        )
    frame = pd.DataFrame(rows).set_index("job")
    frame["rows"] = frame["rows"].astype("Int64")
    frame["pid"] = frame["pid"].astype("Int64")
    return frame


def select_jobs(table: JobTable | None, which: str | None, verb: str) -> list[Job]:
    """Job ``which``; or, for --cancel, every running job; for --wait, every job
    that is running or that no --wait/--cancel cell has reported yet (so that
    ``--wait`` after a quick job still says how it ended, wherever its notice went).
    """
    if which is None or which == "all":
        if table is None:
            return []
        if verb == "wait":
            return table.unreported()
        return table.running()
    job = table.get(int(which)) if table is not None else None
    if job is None:
        known = ", ".join(str(j.number) for j in table.jobs()) if table else ""
        raise display.CellUsageError(
            f"--{verb} {which}: there is no background job {which} "
            f"({'jobs: ' + known if known else 'no jobs yet'})"
        )
    return [job]


def still_running_lines(jobs: list[Job]) -> list[str]:
    """What to say of jobs that did not stop when cancelled: how to stop them by hand."""
    return [
        f"[{j.number}] did not stop within a few seconds; on the server: "
        f"SELECT pg_cancel_backend({j.pid})"
        for j in jobs
    ]
