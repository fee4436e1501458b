"""JupySQL's other magics, ``%sqlcmd`` and ``%sqlplot``, and its ``%config SqlMagic.*``.

IPython only: the work is in :mod:`lunepool_magic.notebook.sqlcmd`,
:mod:`~lunepool_magic.notebook.plots` and :mod:`~lunepool_magic.notebook.compat`;
it runs on the current connection of ``%sql`` (the same pool, the pinned
connection inside a transaction). Registered by :func:`lunepool_magic.magic.load`
unless JupySQL is loaded: then ``%sqlcmd``, ``%sqlplot`` and ``SqlMagic`` stay
JupySQL's, and none of the notes on its ResultSet forms or ``import sql`` is
installed.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class, no_var_expand
from traitlets import Any as AnyTrait
from traitlets import observe
from traitlets.config import Configurable

from lunepool_magic.notebook import compat
from lunepool_magic.notebook.jupysql_import import MissingJupySQL
from lunepool_magic.notebook.options import OptionError, expand_arguments
from lunepool_magic.notebook.resultforms import FormCheck, ResultRegistry
from lunepool_magic.notebook.snippets import SnippetError
from lunepool_magic.notebook.sqlcmd import Source, SqlcmdError, source_for

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from lunepool_magic.magic import LunepoolMagic

__all__ = ["JupySQLMagics", "SqlMagic", "load", "unload"]

_WIDGETS = {
    "explore": "%sqlcmd explore (a widget) is not available: %sql SELECT * FROM t LIMIT 100 "
    "shows rows, %sqlcmd profile --table t summarises them",
    "connect": "%sqlcmd connect (a widget) is not available: "
    "%sql postgresql://user@host/db connects",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one-line UsageErrors, not SystemExit."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}; {self.format_usage().strip()}")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        # With exit_on_error=False, Python 3.12+ raises ArgumentError for some
        # mistakes (a missing required option) instead of calling error().
        try:
            return super().parse_args(args, namespace)
        except argparse.ArgumentError as exc:
            self.error(str(exc))


def _parser(prog: str) -> _Parser:
    return _Parser(prog=prog, add_help=False, exit_on_error=False)


def _sqlcmd_parsers() -> dict[str, _Parser]:
    tables = _parser("%sqlcmd tables")
    tables.add_argument("-s", "--schema")
    columns = _parser("%sqlcmd columns")
    columns.add_argument("-t", "--table", required=True)
    columns.add_argument("-s", "--schema")
    profile = _parser("%sqlcmd profile")
    profile.add_argument("-t", "--table", required=True)
    profile.add_argument("-s", "--schema")
    profile.add_argument("-o", "--output")
    test = _parser("%sqlcmd test")
    test.add_argument("-t", "--table", required=True)
    test.add_argument("-c", "--column", required=True)
    test.add_argument("-s", "--schema")
    test.add_argument("-g", "--greater", type=float)
    test.add_argument("-goe", "--greater-or-equal", type=float)
    test.add_argument("-l", "--less-than", type=float)
    test.add_argument("-loe", "--less-than-or-equal", type=float)
    test.add_argument("-nn", "--no-nulls", action="store_true")
    test.add_argument("-u", "--unique", action="store_true")
    snippets = _parser("%sqlcmd snippets")
    snippets.add_argument("name", nargs="?")
    snippets.add_argument("-d", "--delete")
    snippets.add_argument("-D", "--delete-force")
    snippets.add_argument("-A", "--delete-force-all")
    return {
        "tables": tables,
        "columns": columns,
        "profile": profile,
        "test": test,
        "snippets": snippets,
    }


def _sqlplot_parser() -> _Parser:
    plot = _parser("%sqlplot")
    plot.add_argument("kind", choices=["histogram", "hist", "boxplot", "box", "bar", "pie"])
    plot.add_argument("-t", "--table", required=True)
    plot.add_argument("-c", "--column", nargs="+", required=True)
    plot.add_argument("-s", "--schema")
    plot.add_argument("-b", "--bins", type=int, default=None)
    plot.add_argument("-w", "--with", dest="with_", nargs="+")
    plot.add_argument("-o", "--orient", choices=["v", "h"], default="v")
    plot.add_argument("-S", "--show-numbers", action="store_true")
    plot.add_argument("-B", "--breaks", nargs="+")
    plot.add_argument("-W", "--binwidth", type=float)
    return plot


def _split(line: str, variables: Any) -> list[str]:
    """The line's words, each ``{{ name }}`` replaced by the variable's value (as JupySQL does)."""
    try:
        if "{{" in line:
            line = expand_arguments(line, variables)  # each value is one word
        return shlex.split(line)
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"could not read the line: {exc}") from None


@magics_class
class JupySQLMagics(Magics):
    """``%sqlcmd`` and ``%sqlplot`` on ``%sql``'s current connection."""

    def __init__(self, shell: InteractiveShell, sql: LunepoolMagic) -> None:
        super().__init__(shell=shell)
        self._sql = sql
        self._parsers = _sqlcmd_parsers()
        self._plot_parser = _sqlplot_parser()

    def _source(self, table: str, schema: str | None, extra: list[str] | None = None) -> Source:
        snippets = self._sql.snippets
        names = [table] if table in snippets.queries and schema is None else []
        for name in extra or []:
            if name not in snippets.queries:
                raise UsageError(f"--with {name}: no snippet of that name; %%sql --save {name}")
            names.append(name)
        prefix = snippets.prefix(names) if names else None
        return source_for(table, schema, prefix)

    def _call(self, work: Any, what: str) -> Any:
        """Run ``work(conn)`` on the current connection, as %sql runs a cell."""
        session = self._sql._current_session()
        value, cell = session.call(work, timeout=self._sql.acquire_timeout, what=what)
        self._sql._show(cell)
        return value

    # No IPython {var} expansion: {{ name }} is expanded here, as JupySQL does.
    @no_var_expand
    @line_magic
    def sqlcmd(self, line: str = "") -> Any:
        """JupySQL's commands: tables, columns, profile, test, snippets (computed in the database).

        ::

            %sqlcmd tables [--schema S]
            %sqlcmd columns --table T [--schema S]
            %sqlcmd profile --table T [--schema S] [--output FILE.html]
            %sqlcmd test --table T --column C [--greater N] [--greater-or-equal N]
                         [--less-than N] [--less-than-or-equal N] [--no-nulls] [--unique]
            %sqlcmd snippets [NAME] [-d NAME | -D NAME | -A NAME]   NAME: returns its query

        The table may be a snippet saved with ``%%sql --save NAME``; an argument
        written ``{{ name }}`` is the value of variable ``name``.
        """
        from lunepool_magic.notebook import sqlcmd

        words = _split(line, self.shell.user_ns)
        if not words:
            raise UsageError("%sqlcmd needs a command: tables, columns, profile, test or snippets")
        command, rest = words[0], words[1:]
        if command in _WIDGETS:
            raise UsageError(_WIDGETS[command])
        parser = self._parsers.get(command)
        if parser is None:
            raise UsageError(
                f"%sqlcmd {command}: unknown command; tables, columns, profile, test, snippets"
            )
        args = parser.parse_args(rest)
        try:
            if command == "snippets":
                return self._snippets(args)
            if command == "tables":
                return self._call(lambda conn: sqlcmd.tables(conn, args.schema), "%sqlcmd tables")
            source = self._source(args.table, args.schema)
            if command == "columns":
                return self._call(lambda conn: sqlcmd.columns(conn, source), "%sqlcmd columns")
            if command == "profile":
                frame = self._call(lambda conn: sqlcmd.profile(conn, source), "%sqlcmd profile")
                if args.output:
                    frame.to_html(args.output)
                    print(f"Wrote the profile of {source.label} to {args.output}.")
                return frame
            checks = {
                key: getattr(args, key)
                for key in ("greater", "greater_or_equal", "less_than", "less_than_or_equal")
                if getattr(args, key) is not None
            }
            checks.update({key: True for key in ("no_nulls", "unique") if getattr(args, key)})
            return self._call(
                lambda conn: sqlcmd.run_test(conn, source, args.column, checks), "%sqlcmd test"
            )
        except (SqlcmdError, SnippetError) as exc:
            raise UsageError(str(exc)) from None

    def _snippets(self, args: argparse.Namespace) -> Any:
        snippets = self._sql.snippets
        if args.delete or args.delete_force or args.delete_force_all:
            name = args.delete or args.delete_force or args.delete_force_all
            print(
                snippets.delete(
                    name,
                    force=bool(args.delete_force),
                    dependents=bool(args.delete_force_all),
                )
            )
            return None
        if args.name:
            if args.name not in snippets.queries:
                raise SnippetError(snippets.unknown(args.name, "%sqlcmd snippets"))
            # The query as it runs, with the snippets it uses as CTEs: JupySQL's users
            # keep it (`final = %sqlcmd snippets NAME`) and print or run it.
            return snippets.expand(snippets.queries[args.name])
        if not snippets:
            print("No snippets yet; %%sql --save NAME keeps a query as one.")
            return None
        print("Stored snippets: " + ", ".join(snippets.queries))
        return None

    @no_var_expand
    @line_magic
    def sqlplot(self, line: str = "") -> Any:
        """JupySQL's plots, aggregated in the database, drawn with matplotlib; returns the Axes.

        ::

            %sqlplot histogram --table T --column C [C ...] [--bins N] [--with SNIPPET]
            %sqlplot boxplot --table T --column C [C ...]
            %sqlplot bar --table T --column C [HEIGHTS] [--orient h] [--show-numbers]
            %sqlplot pie --table T --column C [SIZES] [--show-numbers]
        """
        from lunepool_magic.notebook import plots

        args = self._plot_parser.parse_args(_split(line, self.shell.user_ns))
        if args.breaks or args.binwidth:
            raise UsageError(
                "--breaks and --binwidth are not available: --bins N sets equal-width bins"
            )
        try:
            source = self._source(args.table, args.schema, args.with_)
            kind = {"hist": "histogram", "box": "boxplot"}.get(args.kind, args.kind)
            if kind == "histogram":
                bins = args.bins or plots.DEFAULT_BINS
                return self._call(
                    lambda conn: plots.histogram(conn, source, args.column, bins), "%sqlplot"
                )
            if kind == "boxplot":
                return self._call(lambda conn: plots.boxplot(conn, source, args.column), "%sqlplot")
            numbers = args.show_numbers
            if kind == "bar":
                return self._call(
                    lambda conn: plots.bar(conn, source, args.column, args.orient, numbers),
                    "%sqlplot",
                )
            return self._call(
                lambda conn: plots.pie(conn, source, args.column, numbers), "%sqlplot"
            )
        except (SqlcmdError, SnippetError) as exc:
            raise UsageError(str(exc)) from None


class _SqlMagicSettings(Configurable):
    """JupySQL's settings, answered here: ``%config SqlMagic.autolimit = 100``.

    Each setting with an equivalent sets it (autolimit -> LunepoolMagic.row_limit,
    displaylimit -> pandas' display.max_rows, short_errors -> show_traceback,
    dsn_filename -> connections_file); the others say once what to use instead.
    """

    def __init__(self, sql: LunepoolMagic, **kwargs: Any) -> None:
        # Set first: a SqlMagic section already in the shell's config is applied by __init__.
        self._sql = sql
        self._shown: set[str] = set()
        super().__init__(**kwargs)

    def __getattr__(self, name: str) -> Any:
        # `%config SqlMagic.unknown` reads an attribute: answer, do not raise a traceback.
        if name.startswith("_"):
            raise AttributeError(name)
        print(
            f"SqlMagic.{name} is not a JupySQL setting lunepool_magic knows; "
            "%config LunepoolMagic lists the settings here.",
            file=sys.stderr,
        )
        return None

    @observe(*compat.SETTINGS)
    def _changed(self, change: dict[str, Any]) -> None:
        result = compat.apply_setting(change["name"], change["new"], self._shown)
        for key, value in result.ours.items():
            setattr(self._sql, key, value)
        if result.pandas_rows is not False:
            import pandas as pd

            pd.set_option("display.max_rows", result.pandas_rows)
            pd.set_option("display.min_rows", result.pandas_rows)
        if result.line:
            print(result.line, file=sys.stderr)


#: The configurable ``%config SqlMagic.*`` reaches: one trait per JupySQL setting.
SqlMagic = type(
    "SqlMagic",
    (_SqlMagicSettings,),
    {
        name: AnyTrait(setting.default, help=f"JupySQL's {name} (see the README)").tag(config=True)
        for name, setting in compat.SETTINGS.items()
    },
)


@dataclass
class _Installed:
    """What :func:`load` put into the shell, for :func:`unload` to take out."""

    magics: JupySQLMagics
    settings: Any
    handles_key_errors: bool
    check: FormCheck
    finder: MissingJupySQL


def load(shell: InteractiveShell, sql: LunepoolMagic) -> str | None:
    """Register %sqlcmd, %sqlplot and SqlMagic unless JupySQL has; the line to print, if any.

    Also the notes on JupySQL's ResultSet forms (``for row in result``,
    ``result.plot()``, ``result.keys``: :mod:`~lunepool_magic.notebook.resultforms`)
    and the one-line answer to ``import sql``
    (:mod:`~lunepool_magic.notebook.jupysql_import`).
    """
    manager = shell.magics_manager
    if "SqlMagic" in manager.registry:  # JupySQL is loaded: everything stays its own
        return None
    magics = JupySQLMagics(shell, sql)
    shell.register_magics(magics)
    settings = SqlMagic(sql, parent=shell)
    shell.configurables.append(settings)
    handles_key_errors = not shell.custom_exceptions  # another extension's handler stays
    if handles_key_errors:
        shell.set_custom_exc((KeyError,), _key_error)
    ours = tuple(
        name
        for name, method in manager.magics["line"].items()
        if getattr(method, "__self__", None) is sql
    )
    sql.results = ResultRegistry()
    check = FormCheck(
        sql.results, lambda: shell.user_ns, ours, lambda: sql.output, lambda: shell.ast_transformers
    )
    shell.input_transformers_post.append(check.scan_text)  # adds the AST check when due
    finder = MissingJupySQL()
    sys.meta_path.append(finder)  # last: a real `sql` package is always found first
    sql._jupysql = _Installed(magics, settings, handles_key_errors, check, finder)  # type: ignore[attr-defined]
    return None


def _key_error(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> list[str]:
    """JupySQL's ``result[0][0]`` on a DataFrame: one line naming ``.iat``; else the traceback."""
    hint = compat.resultset_hint(value, tb)
    if hint is not None:
        # IPython's hook for an exception that renders itself: the line, not pandas' frames.
        value._render_traceback_ = lambda: [hint]
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    return [hint] if hint is not None else []


def unload(shell: InteractiveShell, sql: LunepoolMagic) -> None:
    """Remove what :func:`load` registered."""
    registered = getattr(sql, "_jupysql", None)
    if registered is None:
        return
    magics, settings = registered.magics, registered.settings
    manager = shell.magics_manager
    manager.registry.pop(type(magics).__name__, None)
    for kind in ("line", "cell"):
        table = manager.magics[kind]
        for name in ("sqlcmd", "sqlplot"):
            if getattr(table.get(name), "__self__", None) is magics:
                del table[name]
    if settings in shell.configurables:
        shell.configurables.remove(settings)
    if registered.handles_key_errors and shell.custom_exceptions == (KeyError,):
        shell.set_custom_exc((), None)
    check = registered.check
    check.remove()
    with contextlib.suppress(ValueError):
        shell.input_transformers_post.remove(check.scan_text)
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(registered.finder)
    sql.results = None
    del sql._jupysql  # type: ignore[attr-defined]
