"""The IPython magics ``%sql`` / ``%%sql`` (also ``%lunesql`` and ``%jupysql``).

This is the only module that imports IPython. It parses the magic line
(:mod:`lunepool_magic.notebook.options`), keeps the kernel's named connections, and
hands each cell to a :class:`~lunepool_magic.notebook.session.Session`, which owns the
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
import importlib.util
import inspect
import re
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
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, Union, observe, validate

from lunepool_magic.notebook import compat, memory
from lunepool_magic.notebook import messages as display
from lunepool_magic.notebook.connections import Connections
from lunepool_magic.notebook.idle import DEFAULT_RELEASE_MINUTES
from lunepool_magic.notebook.options import (
    OPTIONS,
    MagicLine,
    OptionError,
    is_plain_sql,
    leading_capture,
    options_help,
    parse_line,
)
from lunepool_magic.notebook.snippets import SnippetError, Snippets
from lunepool_magic.notebook.templates import Rendered, TemplateError, inline, is_template, render
from lunepool_magic.sqltext import UnknownParameter, split_statements

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from lunepool_magic.notebook.jobs import Job, JobTable
    from lunepool_magic.notebook.progress import QueryProgress
    from lunepool_magic.notebook.resultforms import ResultRegistry
    from lunepool_magic.notebook.session import Session

__all__ = ["LunepoolMagic", "load", "unload"]

#: Names the magic answers to. "lunesql" is for notebooks that also load
#: JupySQL or ipython-sql, which claim "sql" too; "jupysql" is JupySQL's own
#: second name for its %sql, which its notebooks may use.
MAGIC_NAMES = ("sql", "lunesql", "jupysql")
_PLAN_CACHE_SIZE = 256
_PLAN_TEXT_MAX = 4096

# A cell whose text starts with a backslash is a psql command (\dt, \d orders).
_META_RE = re.compile(r"\s*\\")

# Options that need a statement after them.
_NEEDS_SQL = frozenset({"explain", "analyze", "background", "to"})

_binding_module: Any = None  # lunepool_magic.notebook.binding, imported by the first cell


def _binding() -> Any:
    # psycopg is imported by the first cell, not by %load_ext.
    global _binding_module
    if _binding_module is None:
        from lunepool_magic.notebook import binding

        _binding_module = binding
    return _binding_module


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
    row_limit = Int(
        None,
        allow_none=True,
        help="Most rows a query fetches; the server stops there and the cell says the "
        "result was cut (None: all rows). Per cell: --limit N.",
    ).tag(config=True)
    output = Enum(
        ["pandas", "arrow", "polars"],
        "pandas",
        help="What a query returns: a pandas DataFrame, a pyarrow Table or a polars "
        "DataFrame (polars needs: pip install polars). Per cell: --output KIND.",
    ).tag(config=True)
    max_result_memory = Union(
        [Int(), Float(), Unicode()],
        default_value="auto",
        allow_none=True,
        help="Most memory one result may take (bytes, or '2 GB'); a query that passes it "
        "is cancelled on the server and nothing is kept. 'auto': half of the memory the "
        "kernel can still take (cgroup and address-space limits included); None: no limit.",
    ).tag(config=True)
    progress_after = Float(
        1.0,
        allow_none=True,
        help="Seconds a query streams before its cell shows progress (time, rows, MB/s), "
        "updated in place and left as a one-line summary (None: never). In a terminal it "
        "is a line on stderr; elsewhere nothing is shown.",
    ).tag(config=True)
    autoconnect = Bool(
        True,
        help="When nothing is connected, connect to DATABASE_URL, or start the embedded "
        "server if it is not set. If False, a cell without a connection is an error.",
    ).tag(config=True)
    pgbouncer = Bool(
        False,
        help="Connections made from now on go through a transaction-mode pooler (PgBouncer, "
        "a provider's pooled URL): no automatic prepared statements, and a note when a cell's "
        "session state would not carry to the next. Per connection: %sql URL --pgbouncer.",
    ).tag(config=True)
    idle_release = Float(
        DEFAULT_RELEASE_MINUTES,
        allow_none=True,
        help="Minutes a connection may sit idle before it is closed, if the server says it "
        "holds no session state (temporary tables, SET, PREPARE, LISTEN, advisory locks); "
        "the next cell reconnects. A transaction open longer gets a warning. None: never.",
    ).tag(config=True)
    templates = Bool(
        True,
        help="Render cells holding {{ }} or {% %} as Jinja2 templates, every {{ value }} "
        "bound as a server-side parameter (JupySQL's templates, made safe). False: the text "
        "goes to the server as typed.",
    ).tag(config=True)
    connections_file = Unicode(
        compat.DEFAULT_CONNECTIONS_FILE,
        help="The connections file of --section NAME (JupySQL's format; also set by "
        "%config SqlMagic.dsn_filename).",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._connections = Connections(self)
        # Cell text -> its statements, for cells without parameters (see _remember_plan).
        self._plans: dict[str, list[Any]] = {}
        self._jobs: JobTable | None = None  # background jobs, made by the first one
        self.snippets = Snippets()  # JupySQL's --save: queries later cells name like tables
        # The results handed out, for the notes on JupySQL's forms (set by magic_jupysql).
        self.results: ResultRegistry | None = None
        # Kernel shutdown: cancel background jobs on the server and close the
        # pools, so the server sees clean goodbyes and any pinned transaction
        # is rolled back.
        atexit.register(self.close_all)

    # Bad settings are refused when they are set, with what is allowed, rather
    # than accepted and failing every later cell.
    @validate("max_connections")
    def _check_max_connections(self, proposal: dict[str, Any]) -> int:
        return _at_least(proposal, 1, "1 or more: a pool needs a connection")

    @validate("acquire_timeout", "progress_after")
    def _check_seconds(self, proposal: dict[str, Any]) -> float | None:
        return _at_least(proposal, 0, "0 or more seconds, or None for no limit")

    @validate("row_limit")
    def _check_row_limit(self, proposal: dict[str, Any]) -> int | None:
        return _at_least(proposal, 0, "0 or more rows, or None for all rows")

    @property
    def sessions(self) -> dict[str, Session]:
        """The kernel's connections by alias (read them; connect with ``%sql URL``)."""
        return self._connections.sessions

    @property
    def current_alias(self) -> str | None:
        """The alias a cell without ``--alias`` runs on, None before the first connection."""
        return self._connections.current_alias

    @observe("max_connections")
    def _max_connections_changed(self, change: dict[str, Any]) -> None:
        if self._connections.sessions:
            print(
                "max_connections applies to connections made from now on; "
                "%sql --close NAME and connect again to resize an existing one."
            )

    @observe("pgbouncer")
    def _pgbouncer_changed(self, change: dict[str, Any]) -> None:
        if self._connections.sessions:
            print(
                "pgbouncer applies to connections made from now on; connect again with "
                "%sql URL --pgbouncer to change an existing one."
            )

    @observe("idle_release")
    def _idle_release_changed(self, change: dict[str, Any]) -> None:
        self._connections.idle_release_changed()

    # ------------------------------------------------------------------ magic

    @no_var_expand
    @needs_local_scope
    @line_cell_magic
    def sql(self, line: str = "", cell: str | None = None, local_ns: Any = None) -> Any:
        r"""Run SQL on PostgreSQL through the kernel's connection pool.

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
        notebook: prefer ~/.pgpass, PGPASSWORD or ``--password``. An option's
        value written ``{{ name }}`` is variable ``name``'s (``--alias {{ name }}``).

        Keeping the result in a variable instead of displaying it::

            %sql df << SELECT ...
            %%sql df <<          (or  %%sql --out df,  %%sql -o df)

        Transactions: ``BEGIN`` in one cell stays open across cells (its
        connection is reserved for the notebook) until ``COMMIT`` or
        ``ROLLBACK``; each cell says so. Ctrl-C (the stop button) cancels the
        running statement on the server.

        A DataFrame as a table (one transaction, loaded through COPY)::

            %sql --persist df                       create table df; error if it exists
            %sql --persist df --append              add the rows (also: --append df)
            %sql --persist df --replace             drop and create it (also: --replace df)
            %sql --persist df --table sales.orders  another name ("Quoted" keeps case)

        psql's backslash commands, as DataFrames (``\?`` lists them)::

            %sql \dt [PATTERN]     tables (\dv views, \di indexes, \ds sequences,
            %sql \d orders         \dm materialized views); \d NAME: its columns
            %sql \dn  \df  \l     schemas, functions, databases (\du roles, \dx
                                   extensions); S: system objects too, +: more columns

        Plans::

            %sql --explain SELECT ...     the planner's estimates, as a tree
            %sql --analyze SELECT ...     run it, with times and actual rows (in a
                                          transaction that is rolled back)

        Background queries, on other connections of the same server::

            %%sql --background df <<      returns at once; df is set when it is done
            %sql --jobs                   the jobs: state, rows, time, errors
            %sql --wait [N]               wait for job N (or all not yet reported here),
                                          say how they ended; N's rows if no VAR
            %sql --cancel [N | all]       cancel on the server (default: all running)

        A query that streams for over a second shows its progress (time,
        rows, MB/s) in the cell, settling into a one-line summary.

        Settings: ``%config LunepoolMagic`` (max_connections, acquire_timeout,
        show_traceback, row_limit, output, max_result_memory, progress_after, autoconnect,
        pgbouncer, idle_release). Also available as ``%lunesql``.

        Options (``%sql --help`` shows this help too)::

        """
        try:
            if cell is None and is_plain_sql(line):
                # `%sql one` (an alias), `%sql engine` (a SQLAlchemy Engine variable)
                if _is_one_word(line) and self._switch(line.strip(), local_ns):
                    return None
                # `%sql engine --alias name`: an Engine variable, connected under another name.
                named = _VARIABLE_AS_ALIAS_RE.match(line)
                if named and self._connect_variable(named.group(1), named.group(2), local_ns):
                    return None
                # The hot path, `%sql SELECT ...`: no options to read.
                return self._run(self._current_session(), line, 0, local_ns, None)
            if cell is not None and line.strip() in self._connections.sessions:
                # `%%sql one`: JupySQL's way of running a cell on connection 'one'.
                print(self._connections.use(self._connections.named(line.strip())))
                line = ""
            if cell is not None and not line.strip() and (captured := leading_capture(cell)):
                # `%%sql` then `result <<` on the cell's first line: store, as on the magic line.
                line, cell = cell[:captured].strip(), cell[captured:]
            try:
                opts = parse_line(line, self._namespace(local_ns) if "{{" in line else None)
            except OptionError as exc:
                raise UsageError(str(exc)) from None
            if opts.file is not None:
                if (cell is not None and cell.strip()) or opts.sql.strip():
                    raise UsageError(f"-f {opts.file} runs the file's SQL: leave the cell empty")
                cell = _read_sql_file(opts.file)
            if cell is None:
                text, line_offset = opts.sql, 0
            elif opts.command is not None and cell.strip():
                raise UsageError(
                    f"%%sql {opts.command} takes no SQL; use the one-line form: %sql {opts.command}"
                )
            elif opts.sql.strip():
                # SQL on the %%sql line itself: it is line 1 of the cell.
                text, line_offset = opts.sql + "\n" + cell, 0
            else:
                text, line_offset = cell, 0 if opts.file is not None else 1
            return self._dispatch(opts, text, line_offset, local_ns, cell is not None)
        except (display.CellUsageError, SnippetError, TemplateError, compat.SectionError) as exc:
            raise UsageError(str(exc)) from None
        except display.SqlCellError as err:
            if err.warnings:
                print("\n".join(err.warnings), file=sys.stderr)
            if self.show_traceback and err.__cause__ is not None:
                print("\n".join(err.lines), file=sys.stderr)
                cause = err.__cause__
                self._mask_traceback(cause)
                raise cause from None
            raise
        except (UsageError, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._mask_traceback(exc)
            raise

    def _mask_traceback(self, exc: BaseException) -> None:
        """Make IPython show ``exc`` without the cell's line, locals or any password.

        IPython renders an exception that has ``_render_traceback_`` with its
        lines; set on the instance, the exception keeps its type for code that
        catches it.
        """
        lines = display.masked_traceback(exc, self._connections.mask)
        # An exception type with __slots__ takes no attribute: IPython shows it as usual.
        with contextlib.suppress(AttributeError):
            exc._render_traceback_ = lambda: lines  # type: ignore[attr-defined]

    def _dispatch(
        self, opts: MagicLine, text: str, line_offset: int, local_ns: Any, cell: bool
    ) -> Any:
        """Everything but the hot path: connect, switch, list, close, the commands, then run."""
        if opts.help:
            print(SQL_HELP)
            return None
        if opts.refresh:
            from lunepool_magic import completer

            session = self._connections.named(opts.alias) if opts.alias else self._current_session()
            try:
                catalog = completer.refresh(self.shell, session)
            except LookupError as exc:
                raise UsageError(f"--refresh: {exc}") from None
            if catalog is None:
                print("Tab completion is not active in this shell; nothing to refresh.")
            else:
                print(f"Read the catalog of {session.alias!r} again for Tab completion.")
            return None
        if opts.close:
            print(self._connections.close(opts.close_name, self._jobs))
            return None
        if opts.jobs:
            return self.jobs_frame()
        if opts.wait:
            return self._wait(opts.job)
        if opts.cancel:
            return self._cancel(opts.job)
        if opts.interact is not None:
            raise UsageError(compat.INTERACT_REFUSED.format(name=opts.interact))
        if opts.save is not None:
            kept = text
            if self.templates and is_template(text):
                # JupySQL fills a snippet's {{ }} in when it is saved: later changes of
                # the variables do not change it.
                kept = inline(render(text, self._namespace(local_ns)))
            saved = self.snippets.save(opts.save, kept)
            if opts.no_execute:
                print(saved[:-1] + " (not run: --no-execute).")
                return None
        if opts.with_snippet is not None:
            text = self.snippets.expand_cell(text, [opts.with_snippet])
        session = None
        if opts.section is not None:
            target, origin = compat.section_target(opts.section, self.connections_file)
            print(f"--section {opts.section}: {origin}.")
            session = self._connect(
                target, opts.alias or opts.section, opts.password_prompt, opts.pgbouncer
            )
        elif opts.target is not None:
            session = self._connect(opts.target, opts.alias, opts.password_prompt, opts.pgbouncer)
        elif opts.password_prompt:
            raise UsageError("--password goes with a connection string: %sql URL --password")
        elif opts.pgbouncer:
            raise UsageError(
                "--pgbouncer goes with a connection string: %sql URL --pgbouncer "
                "(or %config LunepoolMagic.pgbouncer = True for every new connection)"
            )
        elif opts.alias is not None:
            session = self._connections.named(opts.alias)
        if opts.persist is not None:
            return self._persist(session or self._current_session(), opts, local_ns)

        if not text or text.isspace():
            for option in OPTIONS:
                if option.key in _NEEDS_SQL and getattr(opts, option.key):
                    raise UsageError(f"{option.flags[0]} needs a statement: {option.usage}")
            if opts.out is not None:
                raise UsageError(f"nothing to store in {opts.out}: the cell has no statement")
            if opts.list_connections or (session is None and not cell):
                return self.connections()
            if opts.target is None and session is not None:
                print(self._connections.use(session))
            return None
        if session is None:
            session = self._current_session()
        if _META_RE.match(text):
            if opts.explain or opts.analyze or opts.background:
                raise UsageError("backslash commands run as they are: no --explain/--background")
            return self._meta(session, text, opts.out)
        if opts.to is not None:
            return self._to_file(session, text, line_offset, local_ns, opts)
        if opts.explain or opts.analyze:
            return self._explain(session, text, line_offset, local_ns, opts)
        if opts.background:
            return self._background(session, text, line_offset, local_ns, opts)
        shown = self._run(
            session,
            text,
            line_offset,
            local_ns,
            opts.out,
            _row_limit(opts.limit),
            opts.output,
        )
        if opts.out_display and opts.out is not None:
            return self.shell.user_ns.get(opts.out)  # `VAR= <<`: stored, and shown too
        return shown

    def _run(
        self,
        session: Session,
        text: str,
        line_offset: int,
        local_ns: Any,
        out: str | None,
        limit: int | None = None,
        output: str | None = None,
    ) -> Any:
        """Run the SQL ``text`` on ``session``; return the DataFrame to display, if any."""
        output = self._output(output)
        max_memory = self._max_memory()
        rendered = None
        if self.snippets or (self.templates and is_template(text)):
            text, rendered = self._rewrite(text, local_ns)
        bound = self._plans.get(text)
        if bound is None:
            statements = split_statements(text)
            if not statements:  # only blanks and comments
                if out is not None:
                    raise UsageError(f"nothing to store in {out}: the cell has no statement")
                return None
            bound = self._bind_statements(statements, local_ns, rendered, line_offset)
            self._remember_plan(text, bound)

        if limit is None:
            limit = self.row_limit
        progress = self._progress()
        try:
            result = session.run(
                bound,
                timeout=self.acquire_timeout,
                line_offset=line_offset,
                limit=limit,
                on_progress=progress,
                output=output,
                max_memory=max_memory,
            )
        except BaseException:
            if progress is not None:
                progress.finish(failed=True)
            raise
        if progress is not None:
            progress.finish()
        if result.frame is not None and result.truncated:
            print(
                f"Showing the first {limit:,} rows; the result has more "
                "(--limit N or %config LunepoolMagic.row_limit changes this)."
            )
        if result.warnings:
            print("\n".join(result.warnings), file=sys.stderr)
        if out is not None:
            self._hand_out(result.frame, out)
            if result.frame is None and result.status:
                print(f"{result.status} ({out} = None: no result set)")
        elif result.frame is None and result.status:
            print(result.status)
        if result.info:
            print("\n".join(result.info))
        if result.frame is not None:
            compat.register_resultset_methods()  # JupySQL's result.DataFrame(), .dict(), ...
        return self._hand_out(result.frame) if out is None else None

    def _hand_out(self, value: Any, name: str | None = None) -> Any:
        """Give a result to the user (stored as ``name``, or returned), remembered by identity.

        Every query result passes here, so the notes on JupySQL's ResultSet
        forms (notebook/resultforms.py) know which names hold one.
        """
        if name is not None:
            self.shell.user_ns[name] = value
        if self.results is not None:
            self.results.remember(value)
        return value

    def _rewrite(self, text: str, local_ns: Any) -> tuple[str, Rendered | None]:
        """JupySQL's cell forms: snippets named in the SQL become CTEs, then the template.

        Returns the SQL to split and bind, and the rendered template (its
        values are bound as ``:__tpl_N`` parameters) or None.
        """
        text = self.snippets.expand_cell(text)
        if not (self.templates and is_template(text)):
            return text, None
        rendered = render(text, self._namespace(local_ns))
        return rendered.sql, rendered

    def _output(self, typed: str | None) -> str:
        """``--output KIND`` (or the ``output`` setting), checked before anything runs."""
        output = self.output if typed is None else typed
        if output not in _OUTPUTS:
            raise UsageError(
                f"--output takes pandas, arrow or polars, not {output!r}: "
                "%sql --output polars SELECT ..."
            )
        if output == "polars" and importlib.util.find_spec("polars") is None:  # before it runs
            raise UsageError("--output polars needs the polars package: pip install polars")
        return output

    def _max_memory(self) -> Any:
        """The cell's result memory budget: bytes, None, or the "auto" function."""
        try:
            return memory.budget(self.max_result_memory)
        except ValueError as exc:
            raise UsageError(f"%config LunepoolMagic.max_result_memory: {exc}") from None

    def _progress(self) -> QueryProgress | None:
        """The cell's progress line: in the notebook, or on a terminal's stderr, or none."""
        if self.progress_after is None:
            return None
        from lunepool_magic.notebook.progress import QueryProgress, TerminalLine

        if getattr(self.shell, "kernel", None) is not None:  # ipykernel's shell
            return QueryProgress(_NotebookLine(), self.progress_after)
        if sys.stderr.isatty():
            return QueryProgress(TerminalLine(sys.stderr), self.progress_after)
        return None

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

    def _bind(self, text: str, local_ns: Any, line_offset: int) -> list[Any]:
        """Split and bind a cell's text (not the hot path: no plan cache)."""
        text, rendered = self._rewrite(text, local_ns)
        statements = split_statements(text)
        if not statements:
            raise UsageError("the cell has no statement")
        return self._bind_statements(statements, local_ns, rendered, line_offset)

    def _bind_statements(
        self, statements: list[Any], local_ns: Any, rendered: Rendered | None, line_offset: int
    ) -> list[Any]:
        """Bind ``:name`` from the cell's variables (a function's locals first) and the
        template's values; a missing name stops the cell before anything runs."""
        namespace = self._namespace(local_ns)
        labels = None
        if rendered is not None and rendered.values:
            namespace = ChainMap(rendered.values, namespace)
            labels = rendered.labels
        try:
            return _binding().bind_cell(
                statements, namespace, line_offset=line_offset, labels=labels
            )
        except UnknownParameter as exc:
            raise display.SqlCellError([f"ERROR:  {exc}", "(nothing ran)"]) from exc

    def _show(self, cell: Any) -> None:
        """Print a CellResult's notices (stderr) and transaction lines (stdout)."""
        if cell.warnings:
            print("\n".join(cell.warnings), file=sys.stderr)
        if cell.info:
            print("\n".join(cell.info))

    # ---------------------------------------------------------------- persist

    def _persist(self, session: Session, opts: MagicLine, local_ns: Any) -> None:
        """``%sql --persist df [--append | --replace] [--table NAME]``."""
        from lunepool_magic.postgres import persist

        name = opts.persist
        assert name is not None
        namespace = self._namespace(local_ns)
        if name not in namespace:
            raise UsageError(f"--persist {name}: there is no variable named {name!r}")
        frame = namespace[name]
        if opts.no_index and hasattr(frame, "reset_index"):
            frame = frame.reset_index(drop=True)  # JupySQL's --no-index: no index level at all
        try:
            table = persist.parse_table_name(opts.table or name)
        except persist.PersistError as exc:
            raise UsageError(str(exc)) from None

        def work(conn: Any) -> Any:
            try:
                from lunepool_magic.postgres.outputs import as_frame

                try:
                    shaped = as_frame(frame, conn)  # an Arrow table or polars DataFrame
                except ValueError as exc:
                    raise display.SqlCellError([f"ERROR:  {exc}"]) from exc
                return persist.persist(conn, shaped, table, mode=opts.persist_mode)
            except persist.PersistError as exc:
                lines = [f"ERROR:  {exc}"]
                if exc.hint:
                    lines.append(f"HINT:  {exc.hint}")
                raise display.SqlCellError(lines) from exc

        try:
            result, cell = session.call(
                work, timeout=self.acquire_timeout, what=f"--persist {name}"
            )
        except display.SqlCellError as err:
            if not isinstance(err, display.QueryCancelled):
                err.lines.append("Nothing was written.")
            else:
                err.lines[-1:-1] = ["Nothing was written."]
            err.args = ("\n".join(err.lines),)
            raise
        self._show(cell)
        took = display.duration(result.seconds)
        rows = display.count_of(result.rows, "row")
        columns = display.count_of(len(result.columns), "column")
        if result.mode == "append":
            print(f"Appended {rows} to {result.table} in {took}.")
        elif result.mode == "replace":
            print(f"Replaced table {result.table}: {rows}, {columns}, in {took}.")
        else:
            print(f"Created table {result.table} ({columns}) and loaded {rows} in {took}.")

    # ---------------------------------------------------------------- inspect

    def _meta(self, session: Session, text: str, out: str | None) -> Any:
        """A psql backslash command (``\\dt``, ``\\d orders``): its DataFrame."""
        from lunepool_magic.postgres import meta

        try:
            command = meta.parse_meta(text)
        except meta.MetaError as exc:
            raise display.SqlCellError([f"ERROR:  {exc}"]) from exc

        def work(conn: Any) -> Any:
            try:
                return meta.run_meta(conn, command)
            except meta.MetaError as exc:
                raise display.SqlCellError([f"ERROR:  {exc}"]) from exc

        result, cell = session.call(work, timeout=self.acquire_timeout, what=command.text)
        self._show(cell)
        frame = result.frame
        frame.attrs["title"] = result.title
        frame.attrs["footer"] = list(result.footer or [])
        if result.title:
            print(result.title)
        if result.footer:
            print("\n".join(result.footer))
        if out is not None:
            self._hand_out(frame, out)
            return None
        return self._hand_out(frame)

    # ---------------------------------------------------------------- explain

    def _to_file(
        self, session: Session, text: str, line_offset: int, local_ns: Any, opts: MagicLine
    ) -> None:
        """``%sql --to FILE QUERY``: stream the rows into FILE; say rows, bytes and time."""
        from pathlib import Path

        from lunepool_magic.notebook.tofile import write_cell

        for flag, given in (
            ("--out / VAR <<", opts.out),
            ("--background", opts.background),
            ("--explain", opts.explain or opts.analyze),
            ("--output", opts.output),
        ):
            if given:
                raise UsageError(f"--to writes a file: it does not go with {flag}")
        bound = self._bind(text, local_ns, line_offset)
        if len(bound) != 1:
            raise UsageError(
                f"--to takes one query; this cell has {len(bound)} statements "
                "(run the others in a cell of their own first)"
            )
        limit = _row_limit(opts.limit)
        progress = self._progress()
        try:
            lines, cell = write_cell(
                session,
                bound[0],
                Path(opts.to).expanduser(),
                timeout=self.acquire_timeout,
                limit=limit,
                on_progress=progress,
                line_offset=line_offset,
            )
        except ValueError as exc:
            if progress is not None:
                progress.finish(failed=True)
            raise UsageError(str(exc)) from None
        except BaseException:
            if progress is not None:
                progress.finish(failed=True)
            raise
        if progress is not None:
            progress.finish()
        self._show(cell)
        print("\n".join(lines))

    def _explain(
        self, session: Session, text: str, line_offset: int, local_ns: Any, opts: MagicLine
    ) -> Any:
        """``%sql --explain|--analyze STATEMENT``: the plan, as a tree (a Plan object)."""
        from lunepool_magic.postgres import explain

        bound = self._bind(text, local_ns, line_offset)
        if len(bound) != 1:
            raise UsageError(
                f"--explain takes one statement; this cell has {len(bound)} "
                "(run the others in a cell of their own first)"
            )
        item = bound[0]
        analyze = opts.analyze

        def work(conn: Any) -> Any:
            return explain.explain(conn, item.sql, item.params, analyze=analyze)

        plan, cell = session.call(
            work,
            timeout=self.acquire_timeout,
            what="EXPLAIN ANALYZE" if analyze else "EXPLAIN",
            statement=item,
            shift=len(explain.explain_prefix(analyze)),
            line_offset=line_offset,
        )
        self._show(cell)
        if opts.out is not None:
            self.shell.user_ns[opts.out] = plan
            return None
        return plan

    # ------------------------------------------------------------- background

    def _job_table(self) -> JobTable:
        if self._jobs is None:
            from lunepool_magic.notebook.jobs import JobTable

            self._jobs = JobTable(self._notify)
        return self._jobs

    def _assign(self, name: str, value: Any) -> None:
        self._hand_out(value, name)  # a background job's result, from the job's thread

    @staticmethod
    def _notify(job: Job) -> None:
        """Print how a job ended; runs in the job's thread (see the README on where it shows)."""
        out, err = job.report()
        if err:
            print("\n".join(err), file=sys.stderr, flush=True)
        if out:
            print("\n".join(out), flush=True)

    def _background(
        self,
        session: Session,
        text: str,
        line_offset: int,
        local_ns: Any,
        opts: Any,
    ) -> None:
        """``%%sql --background [VAR <<]``: start the cell on another connection, return."""
        out = opts.out
        output = self._output(opts.output)
        limit = _row_limit(opts.limit)
        max_memory = self._max_memory()
        bound = self._bind(text, local_ns, line_offset)
        job = self._job_table().start(
            session,
            bound,
            text=text,
            out=out,
            assign=self._assign,
            line_offset=line_offset,
            output=output,
            limit=self.row_limit if limit is None else limit,
            max_memory=max_memory,
        )
        n = job.number
        result = f"; {out} is set when it finishes" if out else ""
        print(
            f"[{n}] running in the background (server pid {job.pid}){result}. "
            f"%sql --jobs lists jobs, --wait {n} waits, --cancel {n} cancels."
        )
        if session.transaction:
            print(
                f"Note: job [{n}] runs on another connection: it does not see this "
                "notebook's open transaction (nor its temporary tables and SET).",
                file=sys.stderr,
            )

    def jobs_frame(self) -> Any:
        """The background jobs as a DataFrame (one row per job, newest last)."""
        from lunepool_magic.notebook.jobs import jobs_frame

        frame = jobs_frame(self._jobs)
        if frame is None:
            print("No background jobs yet; %%sql --background df << starts one.")
        return frame

    def _wait(self, which: str | None) -> Any:
        """``%sql --wait [N]``: block until job N (or every unreported job) has finished."""
        from lunepool_magic.notebook.jobs import select_jobs, still_running_lines

        jobs = select_jobs(self._jobs, which, "wait")
        if not jobs:
            print("No background job to wait for: none is running or unreported.")
            return None
        table = self._job_table()
        try:
            table.wait(jobs)
        except KeyboardInterrupt as exc:
            running = [j for j in jobs if not j.finished]
            still = table.cancel(running, report_here=True)
            numbers = ", ".join(f"[{j.number}]" for j in running)
            lines = [f"Interrupted: cancelled background job(s) {numbers} on the server."]
            lines += [j.summary() for j in jobs if j.finished]
            lines += still_running_lines(still)
            raise display.QueryCancelled(lines) from exc
        failed = []
        for job in jobs:
            if job.state == "failed":
                failed.append(job)
                continue
            out, err = job.report()
            if err:
                print("\n".join(err), file=sys.stderr)
            if out:
                print("\n".join(out))
        if failed:
            lines: list[str] = []
            for job in failed:
                lines += job.report()[1]
            raise display.SqlCellError(lines)
        if len(jobs) == 1 and jobs[0].out is None:
            return self._hand_out(jobs[0].frame)
        return None

    def _cancel(self, which: str | None) -> None:
        """``%sql --cancel [N | all]``: cancel on the server, wait for them to stop."""
        from lunepool_magic.notebook.jobs import select_jobs, still_running_lines

        jobs = select_jobs(self._jobs, which, "cancel")
        if not jobs:
            print("No background job is running.")
            return
        finished = [j for j in jobs if j.finished]
        for job in finished:
            print(f"[{job.number}] had already finished ({job.state}); nothing to cancel.")
        running = [j for j in jobs if not j.finished]
        if not running:
            return
        still = self._job_table().cancel(running, report_here=True)
        for job in running:
            if job.finished:
                out, err = job.report()
                print("\n".join(out + err))
        if still:
            print("\n".join(still_running_lines(still)), file=sys.stderr)

    # ------------------------------------------------------------ connections

    def _connect(
        self, target: str, alias: str | None, prompt: bool, pgbouncer: bool = False
    ) -> Session:
        """Connect ``target`` as ``alias`` (default 'default') and make it current."""
        ask = (lambda where: getpass.getpass(f"Password for {where}: ")) if prompt else None
        history = getattr(getattr(self.shell, "history_manager", None), "hist_file", None)
        session, out, err = self._connections.connect(
            target, alias, ask, pgbouncer or None, history_file=history
        )
        _print_lines(out, err)
        return session

    def _switch(self, word: str, local_ns: Any) -> bool:
        """``%sql one`` switches to alias 'one'; ``%sql engine`` connects to an Engine's URL.

        Returns False when ``word`` is neither, so the line runs as SQL.
        """
        if word in self._connections.sessions:
            print(self._connections.use(self._connections.named(word)))
            return True
        return self._connect_variable(word, word, local_ns)

    def _connect_variable(self, word: str, alias: str, local_ns: Any) -> bool:
        """Connect to the URL of the SQLAlchemy Engine in variable ``word``, as ``alias``.

        False when ``word`` names no Engine (the line then runs as SQL); a
        DB-API connection is refused with the line to write instead.
        """
        value = self._namespace(local_ns).get(word)
        url = compat.sqlalchemy_url(value)
        if url is None:
            if compat.is_dbapi_connection(value):
                raise UsageError(compat.DBAPI_REFUSED.format(name=word))
            return False
        self._connect(url, alias, False)
        return True

    def _namespace(self, local_ns: Any) -> Any:
        """The variables a cell sees: the function's locals first, then the user's."""
        namespace: Any = self.shell.user_ns
        if local_ns is not None and local_ns is not namespace:
            namespace = ChainMap(local_ns, namespace)
        return namespace

    def _current_session(self) -> Session:
        """The current connection; with none, connect to DATABASE_URL or the embedded server."""
        session, out, err = self._connections.current()
        _print_lines(out, err)
        return session

    def connections(self) -> Any:
        """The connections as a DataFrame (one row per alias, with pool statistics)."""
        if not self._connections.sessions:
            print(self._connections.empty_listing_line())
            return None
        return self._connections.listing(self._jobs)

    def close_all(self) -> None:
        """Cancel background jobs, close every connection (pinned transactions roll back).

        Used at exit (atexit) and by ``%unload_ext``.
        """
        if self._jobs is not None:
            with contextlib.suppress(Exception):
                self._jobs.close()
        self._connections.close_all()


# The help of %sql? and %sql --help: the docstring, its options section
# generated from the one option table.
LunepoolMagic.sql.__doc__ = (
    (LunepoolMagic.sql.__doc__ or "")
    + "\n".join("            " + line for line in options_help().splitlines())
    + "\n"
)
SQL_HELP = inspect.cleandoc(LunepoolMagic.sql.__doc__)


def _at_least(proposal: dict[str, Any], floor: int, allowed: str) -> Any:
    """The proposed value of a setting, if it is None or at least ``floor``."""
    value = proposal["value"]
    if value is not None and value < floor:
        name = proposal["trait"].name
        raise TraitError(
            f"LunepoolMagic.{name} = {value!r} is not allowed: {allowed} (the setting is unchanged)"
        )
    return value


# `%sql engine --alias name`, `%sql conn -A name`: JupySQL's docs name the variable first.
_VARIABLE_AS_ALIAS_RE = re.compile(
    r"\s*([A-Za-z_]\w*)\s+(?:--alias|-A|-a)\s+([A-Za-z_][\w-]*)\s*\Z"
)


def _is_one_word(line: str) -> bool:
    word = line.strip()
    return bool(word) and (word.isidentifier() or word.replace("-", "_").isidentifier())


def _read_sql_file(path: str) -> str:
    """The SQL of ``-f FILE``; a clear line if it cannot be read."""
    import os

    full = os.path.expanduser(path)
    try:
        with open(full, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"-f {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"-f {path}: not UTF-8 text") from None


def _print_lines(out: list[str], err: list[str] | None = None) -> None:
    """Print a step's lines: notes to stderr first, then the rest to stdout."""
    if err:
        print("\n".join(err), file=sys.stderr)
    if out:
        print("\n".join(out))


class _NotebookLine:
    """A progress line in the cell's output area: one display, updated in place."""

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, text: str) -> None:
        from IPython.display import display as show_output

        self._handle = show_output({"text/plain": text}, raw=True, display_id=True)

    def update(self, text: str) -> None:
        self._handle.update({"text/plain": text}, raw=True)

    close = update


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
    # Tab completion in SQL cells (lunepool_magic.completer); it reads the registry at each Tab.
    from lunepool_magic import completer

    names = tuple(name for name in MAGIC_NAMES if name not in taken)
    completer.install(shell, lambda: magics.sessions, lambda: magics.current_alias, names)
    if taken:
        owner = _owner(shell.magics_manager.magics["line"][taken[0]])
        print(
            f"%{taken[0]} belongs to {owner}, loaded first; lunepool_magic answers as "
            "%lunesql / %%lunesql."
        )
    from lunepool_magic import magic_jupysql

    magic_jupysql.load(shell, magics)
    if getattr(shell, "kernel", None) is None:  # a terminal: plain text is what it shows
        printers = _plain_text_printers(shell)
        for module in _DATAFRAME_MODULES:
            printers.for_type_by_name(module, "DataFrame", _terminal_listing)
    return magics


# The connections listing has many columns: at 80 columns pandas would wrap it
# into several blocks, so a terminal shows one block per connection (fields
# down) when it does not fit. Registered by type name, so pandas is not imported
# for it: pandas 3 calls the class pandas.DataFrame, pandas 2 pandas.core.frame.
_DATAFRAME_MODULES = ("pandas", "pandas.core.frame")


def _plain_text_printers(shell: InteractiveShell) -> Any:
    return shell.display_formatter.formatters["text/plain"]


def _terminal_listing(frame: Any, printer: Any, cycle: bool) -> None:
    """IPython's plain-text printer for DataFrames, in terminals, while we are loaded."""
    import shutil

    from lunepool_magic.notebook.connections import LISTING_ATTR

    if not frame.attrs.get(LISTING_ATTR):
        printer.text(repr(frame))
        return
    text = frame.to_string()
    if max(map(len, text.splitlines()), default=0) > shutil.get_terminal_size().columns:
        # One block per connection: its fields down, their values beside them.
        text = "\n\n".join(f"{alias}\n{frame.loc[alias].to_string()}" for alias in frame.index)
    printer.text(text)


def _owner(method: Any) -> str:
    """Who a magic belongs to, by its package: JupySQL's (and ipython-sql's) is ``sql``."""
    owner = getattr(method, "__self__", None)
    module = type(owner).__module__ if owner is not None else getattr(method, "__module__", "")
    package = (module or "").split(".")[0]
    return "JupySQL (or ipython-sql)" if package == "sql" else f"another extension ({package})"


def unload(shell: InteractiveShell) -> None:
    """Close the pools and remove the magics (``%unload_ext``, ``%reload_ext``)."""
    manager = shell.magics_manager
    magics = manager.registry.pop(LunepoolMagic.__name__, None)
    if not isinstance(magics, LunepoolMagic):
        return
    from lunepool_magic import completer, magic_jupysql

    magic_jupysql.unload(shell, magics)
    completer.uninstall(shell)
    printers = _plain_text_printers(shell)
    for module in _DATAFRAME_MODULES:
        if printers.deferred_printers.get((module, "DataFrame")) is _terminal_listing:
            del printers.deferred_printers[(module, "DataFrame")]
    for cls, printer in list(printers.type_printers.items()):
        if printer is _terminal_listing:  # already resolved from the name to the class
            del printers.type_printers[cls]
    magics.close_all()
    atexit.unregister(magics.close_all)
    for kind in ("line", "cell"):
        table = manager.magics[kind]
        for name in MAGIC_NAMES:
            if getattr(table.get(name), "__self__", None) is magics:
                del table[name]
    with contextlib.suppress(ValueError):
        shell.configurables.remove(magics)


_OUTPUTS = ("pandas", "arrow", "polars")


def _row_limit(typed: str | None) -> int | None:
    """``--limit N`` as a number of rows (options.py checked the digits), or None."""
    return None if typed is None else int(typed)
