"""The IPython magics ``%sql`` / ``%%sql`` (alias ``%lunesql`` / ``%%lunesql``).

This is the only module that imports IPython. It parses the magic line
(:mod:`lunepool_magic.options`), keeps the kernel's named connections, and
hands each cell to a :class:`~lunepool_magic.session.Session`, which owns the
pool and the transaction pinned across cells.

Start-up cost matters (``%load_ext`` runs in every notebook), so psycopg and
pandas are imported on the first cell that needs them, not at load time;
and the per-cell path avoids IPython's variable expansion (``@no_var_expand``:
``{}`` in SQL stays as typed and the user namespace is not copied per call)
and argparse (the options are read by hand).
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import sys
from collections import ChainMap
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    needs_local_scope,
    no_var_expand,
)
from traitlets import Bool, Float, Int, observe

from lunepool_magic import display
from lunepool_magic.options import MagicLine, OptionError, is_plain_sql, parse_line
from lunepool_magic.sqltext import split_statements

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from lunepool_magic.session import Session

__all__ = ["LunepoolMagic", "load", "unload"]

#: Names the magic answers to. "lunesql" is for notebooks that also load
#: JupySQL or ipython-sql, which claim "sql" too.
MAGIC_NAMES = ("sql", "lunesql")
DEFAULT_ALIAS = "default"

_LIST_COLUMNS = [
    "alias",
    "current",
    "target",
    "source",
    "transaction",
    "size",
    "idle",
    "in_use",
    "waiting",
    "max_size",
    "requests",
    "waits",
    "timeouts",
    "broken",
]

_PLAN_CACHE_SIZE = 256
_PLAN_TEXT_MAX = 4096

_engine: Any = None  # lunepool_magic.session, imported by the first cell that needs it


def _session_module() -> Any:
    global _engine
    if _engine is None:
        from lunepool_magic import session

        _engine = session
    return _engine


@magics_class
class LunepoolMagic(Magics):
    """PostgreSQL cells on the kernel's connection pools. Settings: ``%config LunepoolMagic``."""

    max_connections = Int(
        5,
        help="Largest number of connections each named connection's pool opens. "
        "Applies to connections made after the change.",
    ).tag(config=True)
    acquire_timeout = Float(
        30.0,
        allow_none=True,
        help="Seconds a cell waits for a free connection before failing (None: forever).",
    ).tag(config=True)
    show_traceback = Bool(
        False,
        help="Show the full Python traceback of SQL errors, not just the server's message.",
    ).tag(config=True)
    autoconnect = Bool(
        True,
        help="When nothing is connected, connect to DATABASE_URL, or start the embedded "
        "server if it is not set. If False, a cell without a connection is an error.",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._sessions: dict[str, Session] = {}
        self._current: str | None = None
        # Cell text -> its statements, for cells without parameters (see _remember_plan).
        self._plans: dict[str, list[Any]] = {}
        # Kernel shutdown: close the pools, so the server sees clean goodbyes
        # and any pinned transaction is rolled back.
        atexit.register(self.close_all)

    @observe("max_connections")
    def _max_connections_changed(self, change: dict[str, Any]) -> None:
        if self._sessions:
            print(
                "max_connections applies to connections made from now on; "
                "%sql --close NAME and connect again to resize an existing one."
            )

    # ------------------------------------------------------------------ magic

    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def sql(self, line: str = "", cell: str | None = None, local_ns: Any = None) -> Any:
        """Run SQL on PostgreSQL through the kernel's connection pool.

        Line and cell forms (statements of a cell run in order, on one
        connection)::

            %sql SELECT * FROM orders WHERE id = :order_id

            %%sql
            CREATE TEMP TABLE t AS SELECT ...;
            SELECT * FROM t;

        A statement that returns rows gives a DataFrame (the last one of the
        cell); others show their status (``INSERT 0 3``). ``:name`` binds the
        Python variable ``name`` as a server-side parameter, never pasted
        into the SQL; ``::`` casts, strings, comments, dollar quotes and
        slices ``a[1:2]`` are left alone. A list is sent as an array
        (``WHERE id = ANY(:ids)``), a dict as jsonb, a Series as a list.

        Connecting (one pool per connection, per kernel)::

            %sql postgresql://user@host/db            connect as 'default'
            %sql "host=h dbname=db" --alias wh        libpq conninfo, named 'wh'
            %sql postgresql://user@host/db --password ask for the password
            %sql --alias wh                           make 'wh' the current one
            %sql --alias wh SELECT ...                run on 'wh', this once
            %sql        (or %sql --list)              connections and pool stats
            %sql --close [NAME]                       close NAME (default: current)

        With nothing connected, the first statement connects to
        ``DATABASE_URL``, or else starts the embedded server, and says which.
        ``postgresql://`` alone uses libpq's environment (PGHOST, PGUSER, ...,
        ~/.pgpass). A password typed into a cell works but is saved in the
        notebook: prefer ~/.pgpass, PGPASSWORD or ``--password``.

        Keeping the result in a variable instead of displaying it::

            %sql df << SELECT ...
            %%sql df <<          (or  %%sql --out df,  %%sql -o df)

        Transactions: ``BEGIN`` in one cell stays open across cells (its
        connection is reserved for the notebook) until ``COMMIT`` or
        ``ROLLBACK``; each cell says so. Ctrl-C (the stop button) cancels the
        running statement on the server.

        Settings: ``%config LunepoolMagic`` (max_connections, acquire_timeout,
        show_traceback, autoconnect). Also available as ``%lunesql``.
        """
        try:
            if cell is None and is_plain_sql(line):
                # The hot path, `%sql SELECT ...`: no options to read.
                return self._run(self._current_session(), line, 0, local_ns, None)
            try:
                opts = parse_line(line)
            except OptionError as exc:
                raise UsageError(str(exc)) from None
            if cell is None:
                text, line_offset = opts.sql, 0
            elif opts.close and cell.strip():
                raise UsageError("%%sql --close takes no SQL; use %sql --close [NAME]")
            elif opts.sql.strip():
                # SQL on the %%sql line itself: it is line 1 of the cell.
                text, line_offset = opts.sql + "\n" + cell, 0
            else:
                text, line_offset = cell, 1
            return self._dispatch(opts, text, line_offset, local_ns, cell is not None)
        except display.SqlCellError as err:
            if err.warnings:
                print("\n".join(err.warnings), file=sys.stderr)
            if self.show_traceback and err.__cause__ is not None:
                print("\n".join(err.lines), file=sys.stderr)
                raise err.__cause__ from None
            raise

    def _dispatch(
        self, opts: MagicLine, text: str, line_offset: int, local_ns: Any, cell: bool
    ) -> Any:
        """Everything but the hot path: connect, switch, list, close, then run."""
        if opts.close:
            return self._close(opts.close_name)
        session = None
        if opts.target is not None:
            session = self._connect(opts.target, opts.alias, opts.password_prompt)
        elif opts.password_prompt:
            raise UsageError("--password goes with a connection string: %sql URL --password")
        elif opts.alias is not None:
            session = self._named(opts.alias)

        if not text or text.isspace():
            if opts.out is not None:
                raise UsageError(f"nothing to store in {opts.out}: the cell has no statement")
            if opts.list_connections or (session is None and not cell):
                return self.connections()
            if opts.target is None and session is not None:
                self._current = session.alias
                print(f"Using {session.alias!r} ({session.target}).")
            return None
        if session is None:
            session = self._current_session()
        return self._run(session, text, line_offset, local_ns, opts.out)

    def _run(
        self, session: Session, text: str, line_offset: int, local_ns: Any, out: str | None
    ) -> Any:
        """Run the SQL ``text`` on ``session``; return the DataFrame to display, if any."""
        engine = _engine or _session_module()
        user_ns = self.shell.user_ns
        bound = self._plans.get(text)
        if bound is None:
            statements = split_statements(text)
            if not statements:  # only blanks and comments
                if out is not None:
                    raise UsageError(f"nothing to store in {out}: the cell has no statement")
                return None
            namespace = user_ns
            if local_ns is not None and local_ns is not user_ns:
                namespace = ChainMap(local_ns, user_ns)  # %sql inside a function sees its locals
            try:
                bound = engine.bind_cell(statements, namespace)
            except engine.UnknownParameter as exc:
                raise display.SqlCellError([f"ERROR:  {exc}", "(nothing ran)"]) from exc
            self._remember_plan(text, bound)

        result = session.run(bound, timeout=self.acquire_timeout, line_offset=line_offset)
        if result.warnings:
            print("\n".join(result.warnings), file=sys.stderr)
        if out is not None:
            user_ns[out] = result.frame
            if result.frame is None and result.status:
                print(f"{result.status} ({out} = None: no result set)")
        elif result.frame is None and result.status:
            print(result.status)
        if result.info:
            print("\n".join(result.info))
        return result.frame if out is None else None

    def _remember_plan(self, text: str, bound: list[Any]) -> None:
        """Keep the split statements of a cell without parameters, for when it runs again.

        Without ``:name`` parameters, splitting and binding depend on the text
        alone, so a re-run (a loop, "Run All", a benchmark) can skip both.
        Cells with parameters are bound afresh each time: the values change.
        Small and bounded: long cells are not kept, and the table is emptied
        when full.
        """
        if len(text) > _PLAN_TEXT_MAX or any(b.params is not None for b in bound):
            return
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()
        self._plans[text] = bound

    # ------------------------------------------------------------ connections

    def _connect(self, target: str, alias: str | None, prompt: bool) -> Session:
        """Connect ``target`` as ``alias`` (default 'default') and make it current."""
        engine = _session_module()
        alias = alias or DEFAULT_ALIAS
        params = _parse_conninfo(target)
        if params.get("password"):
            print(
                "Note: the password typed in this cell is saved in the notebook (and in "
                "IPython's history); prefer ~/.pgpass, PGPASSWORD, or --password to be prompted.",
                file=sys.stderr,
            )
        password = None
        if prompt:
            where = engine.describe_target(params)
            password = getpass.getpass(f"Password for {where}: ")
        existing = self._sessions.get(alias)
        if existing is not None and existing.conninfo == target and password is None:
            self._current = alias  # re-running a connect cell keeps the session and its state
            return existing
        session = self._open(alias, target, "url", password)
        note = ""
        if existing is not None:
            note = f"; replaced the previous {alias!r}"
            if existing.close():
                note += " (its open transaction was rolled back)"
        self._sessions[alias] = session
        self._current = alias
        print(f"Connected to {session.target} as {alias!r}{note}.")
        return session

    def _open(self, alias: str, conninfo: str, source: str, password: str | None) -> Session:
        """A new session with one connection opened, so a bad target fails right here."""
        session = _session_module().Session(
            alias,
            conninfo,
            max_connections=self.max_connections,
            acquire_timeout=self.acquire_timeout,
            source=source,
            password=password,
        )
        try:
            session.connect(self.acquire_timeout)
        except BaseException:
            session.close()
            raise
        return session

    def _named(self, alias: str) -> Session:
        session = self._sessions.get(alias)
        if session is None:
            known = ", ".join(repr(a) for a in self._sessions) or "none yet"
            raise UsageError(
                f"no connection named {alias!r} (connections: {known}); connect one with "
                f"%sql postgresql://user@host/db --alias {alias}"
            )
        return session

    def _current_session(self) -> Session:
        """The current connection; with none, connect to DATABASE_URL or the embedded server."""
        if self._current is not None:
            return self._sessions[self._current]
        if not self.autoconnect:
            raise UsageError(
                "not connected: %sql postgresql://user@host/db connects "
                "(LunepoolMagic.autoconnect is off)"
            )
        url = os.environ.get("DATABASE_URL")
        if url:
            source, origin = "DATABASE_URL", "from DATABASE_URL"
        else:
            from lunepool_magic import embedded

            try:
                url = embedded.start()
            except Exception as exc:
                raise display.SqlCellError(
                    [
                        f"ERROR:  could not start the embedded PostgreSQL server: {exc}",
                        "HINT:  set DATABASE_URL, or connect with %sql postgresql://user@host/db",
                    ]
                ) from exc
            source, origin = "embedded", "the embedded server, as DATABASE_URL is not set"
        session = self._open(DEFAULT_ALIAS, url, source, None)
        self._sessions[DEFAULT_ALIAS] = session
        self._current = DEFAULT_ALIAS
        print(f"Connected to {session.target} ({origin}) as {DEFAULT_ALIAS!r}.")
        return session

    def connections(self) -> Any:
        """The connections as a DataFrame (one row per alias, with pool statistics)."""
        if not self._sessions:
            fallback = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "the embedded server"
            print(
                "No connections yet. %sql postgresql://user@host/db connects; "
                f"a statement without one connects to {fallback}."
            )
            return None
        import pandas as pd

        rows = []
        for alias, session in self._sessions.items():
            s = session.pool.stats()
            rows.append(
                [
                    alias,
                    "*" if alias == self._current else "",
                    session.target,
                    session.source,
                    session.transaction,
                    s.size,
                    s.idle,
                    s.in_use,
                    s.waiting,
                    s.max_size,
                    s.requests,
                    s.waits,
                    s.timeouts,
                    s.broken,
                ]
            )
        return pd.DataFrame(rows, columns=_LIST_COLUMNS).set_index("alias")

    def _close(self, name: str | None) -> None:
        alias = name or self._current
        if alias is None:
            raise UsageError("nothing to close: no connection is open")
        session = self._named(alias)
        del self._sessions[alias]
        rolled_back = session.close()
        message = f"Closed {alias!r}"
        if rolled_back:
            message += " (its open transaction was rolled back)"
        if self._current == alias:
            # The most recently connected of the others, if any, becomes current.
            self._current = next(reversed(self._sessions), None)
            if self._current is not None:
                message += f"; current connection: {self._current!r}"
        print(message + ".")

    def close_all(self) -> None:
        """Close every connection (pinned transactions are rolled back); used at exit."""
        sessions, self._sessions, self._current = list(self._sessions.values()), {}, None
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()


def _parse_conninfo(target: str) -> dict[str, Any]:
    """libpq's parse of a URL or conninfo; the error never repeats the string (password)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(target)
    except psycopg.Error:
        raise UsageError(
            "could not parse the connection string (check its syntax and quoting; it is "
            "not repeated here because it may hold a password)"
        ) from None


# ---------------------------------------------------------------- extension


def load(shell: InteractiveShell) -> LunepoolMagic:
    """Register the magics on ``shell`` (``%load_ext lunepool_magic``)."""
    existing = shell.magics_manager.registry.get(LunepoolMagic.__name__)
    if isinstance(existing, LunepoolMagic):
        return existing
    magics = LunepoolMagic(shell=shell)
    method = magics.magics["line"].pop("sql")
    magics.magics["cell"].pop("sql")
    taken = []
    for name in MAGIC_NAMES:
        other = shell.magics_manager.magics["line"].get(name)
        if other is not None and not isinstance(getattr(other, "__self__", None), LunepoolMagic):
            taken.append(name)  # another extension's %sql: keep it, ours stays reachable
            continue
        magics.magics["line"][name] = method
        magics.magics["cell"][name] = method
    shell.register_magics(magics)
    if taken:
        print(
            f"%{taken[0]} belongs to another extension; use %lunesql / %%lunesql "
            "for lunepool_magic."
        )
    return magics


def unload(shell: InteractiveShell) -> None:
    """Close the pools and remove the magics (``%unload_ext``, ``%reload_ext``)."""
    manager = shell.magics_manager
    magics = manager.registry.pop(LunepoolMagic.__name__, None)
    if not isinstance(magics, LunepoolMagic):
        return
    magics.close_all()
    atexit.unregister(magics.close_all)
    for kind in ("line", "cell"):
        table = manager.magics[kind]
        for name in MAGIC_NAMES:
            if getattr(table.get(name), "__self__", None) is magics:
                del table[name]
    with contextlib.suppress(ValueError):
        shell.configurables.remove(magics)
