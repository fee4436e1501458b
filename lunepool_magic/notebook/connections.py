"""The notebook's named connections: which exist, which is current, autoconnect.

Each alias names one :class:`~lunepool_magic.notebook.session.Session` (one
pool). With nothing connected, the first statement connects to
``DATABASE_URL``, or else to the embedded server, and says which. Methods
return the lines the cell prints, so the magic only prints them and this module
can be driven without a shell.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lunepool_magic.notebook import messages
from lunepool_magic.notebook.idle import IdlePolicy, IdleReleaser

if TYPE_CHECKING:
    from lunepool_magic.notebook.jobs import JobTable
    from lunepool_magic.notebook.session import Session

__all__ = [
    "DEFAULT_ALIAS",
    "LISTING_ATTR",
    "LIST_COLUMNS",
    "Connections",
    "Settings",
    "parse_conninfo",
    "without_driver",
]

DEFAULT_ALIAS = "default"

#: Marks the connections listing, so that a terminal can show it in its width.
LISTING_ATTR = "lunepool_magic.listing"

#: The columns of the connections listing (``%sql`` alone).
LIST_COLUMNS = [
    "alias",
    "current",
    "target",
    "source",
    "transaction",
    "jobs",
    "size",
    "idle",
    "in_use",
    "waiting",
    "max_size",
    "requests",
    "waits",
    "timeouts",
    "broken",
    "released",
    "pooler",
    "kept",
]

PASSWORD_IN_CELL_NOTE = (
    "Note: the password typed in this cell is saved in the notebook (and in "
    "IPython's history); prefer --password (asks for it), ~/.pgpass, PGPASSWORD "
    "or a service file (PGSERVICE, ~/.pg_service.conf)."
)


def password_in_cell_notes(history_file: Path | str | None) -> list[str]:
    """What to say when a cell holds a password; more if others can read the history."""
    notes = [PASSWORD_IN_CELL_NOTE]
    if history_file is None or str(history_file) == ":memory:":
        return notes
    try:
        mode = os.stat(history_file).st_mode
    except OSError:
        return notes
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        notes.append(
            f"Note: IPython's history file {history_file} can be read by other users "
            f"(mode {stat.S_IMODE(mode):o}): chmod 600 it."
        )
    return notes


class Settings(Protocol):
    """What connecting needs from the user's settings (the magic's traitlets)."""

    max_connections: int
    acquire_timeout: float | None
    autoconnect: bool
    # Optional (read with getattr): pgbouncer (bool, pooler mode for new
    # connections) and idle_release (minutes, None: never; absent: never).


# SQLAlchemy's URL spelling, postgresql+psycopg2://...: the driver part names a
# Python driver, which libpq does not know.
_DRIVER_URL = re.compile(r"(postgres(?:ql)?)\+[\w.]*(://)", re.IGNORECASE)


def without_driver(target: str) -> tuple[str, str | None]:
    """``target`` with a SQLAlchemy ``+driver`` part removed, and the note saying so."""
    match = _DRIVER_URL.match(target)
    if match is None:
        return target, None
    driver = target[len(match.group(1)) + 1 : match.end() - 3]
    note = f"Note: the URL's +{driver} driver part is ignored (lunepool_magic uses psycopg 3)."
    return match.group(1) + match.group(2) + target[match.end() :], note


def parse_conninfo(target: str) -> dict[str, Any]:
    """libpq's parse of a URL or conninfo; the error never repeats the string (password)."""
    from lunepool_magic.postgres.conninfo import ConnectionStringError
    from lunepool_magic.postgres.conninfo import parse_conninfo as parse

    bad = messages.unsendable_char(target)
    if bad is not None:
        raise messages.CellUsageError(
            f"the connection string holds {bad}, which libpq cannot take; retype it (it is "
            "not repeated here because it may hold a password)"
        )
    try:
        return parse(target)
    except ConnectionStringError as exc:
        reason = str(exc).removeprefix("invalid connection parameters: ")
    raise messages.CellUsageError(
        f"could not parse the connection string: {reason} (it is not repeated here "
        "because it may hold a password)"
    )


def _quietly(start: Callable[[], str]) -> tuple[str, list[str]]:
    """``start()``, with the warnings it shows as clean one-line notes, not tracebacks.

    The filters stay in force: a warning the user's code ignores (for example
    ``warnings.simplefilter("ignore", embedded.RootModeWarning)``) is not
    shown; only the way a shown one is printed changes (no file, line, source).
    """
    notes: list[str] = []

    def note(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        notes.append(f"{category.__name__}: {message}")

    with warnings.catch_warnings():
        warnings.showwarning = note
        url = start()
    return url, notes


def _session_module() -> Any:
    # Imported by the first cell that connects: psycopg stays out of %load_ext.
    from lunepool_magic.notebook import session

    return session


class Connections:
    """The named sessions of one kernel, and the current alias."""

    def __init__(self, settings: Settings, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.sessions: dict[str, Session] = {}
        self.current_alias: str | None = None
        policy = IdlePolicy(lambda: getattr(settings, "idle_release", None))
        if clock is not None:
            policy.clock = clock
        self.releaser = IdleReleaser(lambda: list(self.sessions.values()), policy)
        policy.on_cell_end = self.releaser.cell_ended

    def connect(
        self,
        target: str,
        alias: str | None,
        ask_password: Callable[[str], str] | None = None,
        pgbouncer: bool | None = None,
        history_file: Path | str | None = None,
    ) -> tuple[Session, list[str], list[str]]:
        """Connect ``target`` as ``alias`` (default 'default') and make it current.

        Returns the session and the lines to print (stdout, stderr).
        ``ask_password(where)`` is called to prompt for a password;
        ``pgbouncer`` turns pooler mode on (default: the ``pgbouncer`` setting);
        ``history_file`` is IPython's, checked when the cell holds a password.
        """
        pgbouncer = self._pooler_mode(pgbouncer)
        alias = alias or DEFAULT_ALIAS
        target, driver_note = without_driver(target)
        params = parse_conninfo(target)
        warnings = [driver_note] if driver_note else []
        if params.get("password"):
            warnings += password_in_cell_notes(history_file)
        password = None
        if ask_password is not None:
            from lunepool_magic.postgres.conninfo import describe_target

            password = ask_password(describe_target(params))
        existing = self.sessions.get(alias)
        if (
            existing is not None
            and existing.conninfo == target
            and existing.pgbouncer == pgbouncer
            and password is None
        ):
            self.current_alias = alias  # re-running a connect cell keeps the session and its state
            return existing, [], warnings
        session = self._open(alias, target, "url", password, pgbouncer)
        warnings += session.connect_notes
        note = ""
        if existing is not None:
            note = f"; replaced the previous {alias!r}"
            if existing.close():
                note += " (its open transaction was rolled back)"
        self.sessions[alias] = session
        self.current_alias = alias
        return session, [f"Connected to {session.target} as {alias!r}{note}."], warnings

    def _open(
        self,
        alias: str,
        conninfo: str,
        source: str,
        password: str | None,
        pgbouncer: bool | None = None,
    ) -> Session:
        """A new session with one connection opened, so a bad target fails right here."""
        from lunepool_magic.postgres.conninfo import ConnectionStringError

        settings = self.settings
        try:
            session = _session_module().Session(
                alias,
                conninfo,
                max_connections=settings.max_connections,
                acquire_timeout=settings.acquire_timeout,
                source=source,
                password=password,
                pgbouncer=self._pooler_mode(pgbouncer),
                idle=self.releaser.policy,
            )
        except ConnectionStringError as exc:
            reason = str(exc).removeprefix("invalid connection parameters: ")
            where = "DATABASE_URL" if source == "DATABASE_URL" else "the connection string"
            message = f"could not parse {where}: {reason}"
        else:
            message = None
        if message is not None:  # raised outside the except block: nothing chained
            raise messages.CellUsageError(message)
        try:
            session.connect(settings.acquire_timeout)
        except BaseException:
            session.close()
            raise
        if self.releaser.policy.release_after() is not None:
            self.releaser.start()
            self.releaser.cell_ended()  # a new session to watch
        return session

    def _pooler_mode(self, asked: bool | None) -> bool:
        """Pooler mode for a new connection: as asked (--pgbouncer), else the setting."""
        if asked is not None:
            return asked
        return bool(getattr(self.settings, "pgbouncer", False))

    def named(self, alias: str) -> Session:
        """The session called ``alias``; a clear error naming the others if there is none."""
        session = self.sessions.get(alias)
        if session is None:
            known = ", ".join(repr(a) for a in self.sessions) or "none yet"
            raise messages.CellUsageError(
                f"no connection named {alias!r} (connections: {known}); connect one with "
                f"%sql postgresql://user@host/db --alias {alias}"
            )
        return session

    def current(self) -> tuple[Session, list[str], list[str]]:
        """The current session; with none, connect to DATABASE_URL or the embedded server.

        Returns the session and the lines to print (stdout: the "Connected to"
        line of an autoconnect; stderr: the embedded server's notes).
        """
        if self.current_alias is not None:
            return self.sessions[self.current_alias], [], []
        if not self.settings.autoconnect:
            raise messages.CellUsageError(
                "not connected: %sql postgresql://user@host/db connects "
                "(LunepoolMagic.autoconnect is off)"
            )
        url = os.environ.get("DATABASE_URL")
        notes: list[str] = []
        if url:
            source, origin = "DATABASE_URL", "from DATABASE_URL"
        else:
            from lunepool_magic import embedded

            try:
                url, notes = _quietly(embedded.start)
            except Exception as exc:
                raise messages.SqlCellError(
                    [
                        f"ERROR:  could not start the embedded PostgreSQL server: {exc}",
                        "HINT:  set DATABASE_URL, or connect with %sql postgresql://user@host/db",
                    ]
                ) from exc
            source, origin = "embedded", "the embedded server, as DATABASE_URL is not set"
        session = self._open(DEFAULT_ALIAS, url, source, None)
        self.sessions[DEFAULT_ALIAS] = session
        self.current_alias = DEFAULT_ALIAS
        connected = f"Connected to {session.target} ({origin}) as {DEFAULT_ALIAS!r}."
        return session, [connected, *session.connect_notes], notes

    def idle_release_changed(self) -> None:
        """The idle release setting changed: start the release thread, or make it look again."""
        if self.sessions and self.releaser.policy.release_after() is not None:
            self.releaser.start()
        self.releaser.poke()

    def use(self, session: Session) -> str:
        """Make ``session`` current; the line that says so."""
        self.current_alias = session.alias
        return f"Using {session.alias!r} ({session.target})."

    def listing(self, jobs: JobTable | None) -> Any:
        """The connections as a DataFrame (one row per alias, with pool statistics)."""
        import pandas as pd

        rows = []
        for alias, session in self.sessions.items():
            s = session.pool.stats()
            running = len(jobs.running(alias)) if jobs is not None else 0
            rows.append(
                [
                    alias,
                    "*" if alias == self.current_alias else "",
                    session.target,
                    session.source,
                    session.transaction,
                    running,
                    s.size,
                    s.idle,
                    s.in_use,
                    s.waiting,
                    s.max_size,
                    s.requests,
                    s.waits,
                    s.timeouts,
                    s.broken,
                    session.released_total,
                    "pgbouncer" if session.pgbouncer else "",
                    session.keeps(),
                ]
            )
        frame = pd.DataFrame(rows, columns=LIST_COLUMNS).set_index("alias")
        frame.attrs[LISTING_ATTR] = True  # a terminal shows it turned, if too wide
        return frame

    def empty_listing_line(self) -> str:
        """What ``%sql`` says before anything is connected."""
        fallback = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "the embedded server"
        return (
            "No connections yet. %sql postgresql://user@host/db connects; "
            f"a statement without one connects to {fallback}."
        )

    def close(self, name: str | None, jobs: JobTable | None) -> str:
        """Close ``name`` (default: the current one), cancelling its jobs; the line to print."""
        alias = name or self.current_alias
        if alias is None:
            raise messages.CellUsageError("nothing to close: no connection is open")
        session = self.named(alias)
        cancelled = []
        if jobs is not None:
            cancelled = jobs.running(alias)
            jobs.cancel(cancelled, report_here=True)
        del self.sessions[alias]
        rolled_back = session.close()
        message = f"Closed {alias!r}"
        if rolled_back:
            message += " (its open transaction was rolled back)"
        if cancelled:
            numbers = ", ".join(f"[{j.number}]" for j in cancelled)
            message += f" (its background jobs {numbers} were cancelled)"
        if self.current_alias == alias:
            # The most recently connected of the others, if any, becomes current.
            self.current_alias = next(reversed(self.sessions), None)
            if self.current_alias is not None:
                message += f"; current connection: {self.current_alias!r}"
        return message + "."

    def mask(self, text: str) -> str:
        """``text`` without the password of any connection (or anything shaped like one)."""
        from lunepool_magic.postgres.conninfo import mask_password

        for session in self.sessions.values():
            text = session.pool.mask(text)
        return mask_password(text)

    def close_all(self) -> None:
        """Close every session (pinned transactions roll back); errors are ignored."""
        self.releaser.stop()
        sessions = list(self.sessions.values())
        self.sessions, self.current_alias = {}, None
        for session in sessions:
            try:
                session.close()
            except Exception:  # closing at exit: nothing left to tell
                continue
