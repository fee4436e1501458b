"""Parse the options at the start of a ``%sql`` line (or a ``%%sql`` cell's first line).

One job: split a magic line into what the magic should do (connect, switch,
close, list, store the result) and the SQL that follows, *without touching
the SQL*. IPython's ``magic_arguments`` (argparse over ``shlex``) would
re-tokenise the whole line, mangle quotes in SQL and cost tens of
microseconds per cell, so the options are read by hand, left to right, and
the rest of the line is kept as the exact original text.

The options are declared once, in ``OPTIONS``; the grammar, the usage lines
in error messages, ``%sql --help`` and ``%sql?`` are generated from it.

``--table NAME`` is a table name as SQL spells it: ``orders``,
``sales.orders``, ``"My Table"``, ``sales."Q1"`` (unquoted parts are
folded to lower case later, by :mod:`lunepool_magic.persist`).

A connection target is a URL with scheme ``postgresql`` or ``postgres`` or
a libpq conninfo (``host=... dbname=...``; a value may be single-quoted).
SQL never starts with ``-``, with ``word=`` or with ``word <<``, so the
options cannot be confused with the statement that follows them. A ``--``
that is not one of the options above is an error rather than a comment:
on a magic line, a SQL comment would swallow the whole statement.

Importing this module imports nothing outside the standard library; it runs
on every cell, so the common case (a line that starts with a SQL keyword)
costs one regular-expression match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "OPTIONS",
    "MagicLine",
    "Option",
    "OptionError",
    "expand_arguments",
    "is_plain_sql",
    "leading_capture",
    "options_help",
    "parse_line",
]


class OptionError(ValueError):
    """The magic line's options are malformed; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class MagicLine:
    """What a magic line asks for.

    ``sql`` is the text after the options, unchanged (may be empty);
    ``sql_offset`` is where it starts in the line. ``target`` is the
    connection string as typed (URL or conninfo) or None. ``close`` is True
    for ``--close``; ``close_name`` is the alias it names, if any.

    ``persist`` is the variable ``--persist`` names, ``persist_mode`` one of
    ``"create"``, ``"append"``, ``"replace"``, ``table`` the ``--table``
    name as typed. ``explain``/``analyze``, ``background`` and ``jobs`` are
    flags; ``wait``/``cancel`` are True for ``--wait``/``--cancel``, and
    ``job`` is the job they name (``"3"``, ``"all"``) or None. ``limit`` is
    ``--limit N`` as typed (the magic checks it is a number).

    JupySQL's forms: ``save`` names the snippet ``--save`` stores (with
    ``no_execute``, without running it), ``with_snippet`` the one ``--with``
    names; ``no_index`` is ``--no-index``; ``file`` the ``-f`` path as typed;
    ``section`` the connections-file section; ``interact`` the ``--interact``
    variable (always refused, with the alternative); ``out_display`` is True
    for ``VAR= <<`` (store and display).
    ``output`` is ``--output KIND`` as typed (the magic checks it names an
    output); ``to`` the file ``--to FILE`` names (quotes taken off).
    """

    sql: str
    sql_offset: int = 0
    alias: str | None = None
    out: str | None = None
    target: str | None = None
    password_prompt: bool = False
    list_connections: bool = False
    close: bool = False
    close_name: str | None = None
    persist: str | None = None
    persist_mode: str = "create"
    table: str | None = None
    explain: bool = False
    analyze: bool = False
    background: bool = False
    jobs: bool = False
    wait: bool = False
    cancel: bool = False
    job: str | None = None
    limit: str | None = None
    output: str | None = None
    to: str | None = None
    help: bool = False
    # JupySQL's spellings (see notebook/compat.py for what each maps to).
    save: str | None = None
    no_execute: bool = False
    with_snippet: str | None = None
    no_index: bool = False
    file: str | None = None
    section: str | None = None
    interact: str | None = None
    out_display: bool = False
    refresh: bool = False
    pgbouncer: bool = False

    @property
    def command(self) -> str | None:
        """The option that makes this line a command taking no SQL, or None."""
        for option in _COMMANDS:
            given = getattr(self, option.key)
            if given is not None and given is not False:
                return option.flags[0]
        return None


# The common case: the line starts with a word that is neither an option nor
# a target nor a `VAR <<` capture. `\w+` then anything but `=`, `:` (URL
# scheme), `+driver://` (SQLAlchemy's URL spelling) and `<<` right after the word.
_PLAIN_SQL_RE = re.compile(r"\s*[A-Za-z_(]\w*(?![\w=:])(?!\+[\w.]*://)(?!\s*=?\s*<<)")

_WORD_RE = re.compile(r"\S+")
_IDENT_RE = re.compile(r"[A-Za-z_]\w*\Z")
# postgresql:// and postgres://, also with SQLAlchemy's "+driver" (postgresql+psycopg2://):
# URL-shaped text must never reach the SQL path, where a password would be echoed.
_URL_RE = re.compile(r"postgres(?:ql)?(?:\+[\w.]*)?://\S*", re.IGNORECASE)
# Any other database URL (SQLAlchemy's dialect+driver://).
_OTHER_URL_RE = re.compile(r"[A-Za-z][\w.+-]*://")
# One conninfo pair: key=value, value single-quoted (with \' and \\) or bare.
_PAIR_RE = re.compile(r"[A-Za-z_]+\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']+)(?=\s|\Z)", re.DOTALL)
_KEY_RE = re.compile(r"[A-Za-z_]+\s*=")
_SPACE_RE = re.compile(r"\s*")
# `VAR <<` stores the result; JupySQL's `VAR= <<` stores it and displays it too.
_CAPTURE_RE = re.compile(r"([A-Za-z_]\w*)\s*(=)?\s*<<")
# Alias and section names may hold hyphens (JupySQL's connections files use them).
_LABEL_RE = re.compile(r"[A-Za-z_][\w-]*\Z")
# `--save {{ name }}`: JupySQL renders templates in a magic's arguments too.
_ARGUMENT_TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
# One option value: words and {{ name }} pieces (which may hold blanks), `{{ s }}.{{ t }}`.
_TEMPLATED_WORD_RE = re.compile(r"(?:\{\{\s*[A-Za-z_]\w*\s*\}\}|\S)+")
# A file path: a quoted string or a word.
_PATH_RE = re.compile(r"\"[^\"]+\"|'[^']+'|\S+")


@dataclass(frozen=True, slots=True)
class Option:
    """One option of the magic line: its spellings, what it takes, and its help.

    ``takes`` says what follows the flag: ``flag`` (nothing), ``name`` (a
    Python-style name), ``rows`` (a number), ``var`` (a DataFrame variable),
    ``var?`` / ``name?`` / ``job?`` (optional: one, if the next word is one),
    ``table`` (a table name as SQL spells it), ``path`` (a file name; quoted
    if it holds blanks). ``command`` options take no
    SQL; ``usage`` is the line an error message shows for them.
    """

    flags: tuple[str, ...]
    key: str
    takes: str
    help: str
    metavar: str = ""
    command: bool = False
    usage: str = ""
    value: object = True  # what a flag sets (--append and --replace set persist_mode)

    @property
    def synopsis(self) -> str:
        """``--alias NAME`` / ``--close [NAME]``, for the usage lines."""
        if not self.metavar:
            return self.flags[0]
        optional = self.takes.endswith("?")
        return (
            f"{self.flags[0]} [{self.metavar}]" if optional else f"{self.flags[0]} {self.metavar}"
        )


#: Every option of ``%sql``, in the order ``%sql --help`` lists them.
OPTIONS: tuple[Option, ...] = (
    Option(
        ("--alias", "-a", "-A"), "alias", "label", "run on (or connect as) this connection", "NAME"
    ),
    Option(("--out", "-o"), "out", "name", "store the result in VAR (also: VAR << SQL)", "VAR"),
    Option(("--limit",), "limit", "rows", "fetch at most N rows; the server stops there", "N"),
    Option(
        ("--output",),
        "output",
        "name",
        "the result as a pandas, arrow or polars table",
        "pandas|arrow|polars",
    ),
    Option(
        ("--to",),
        "to",
        "path",
        "stream the rows into FILE (.parquet, .arrow, .feather, .csv)",
        "FILE",
        usage="%sql --to results.parquet SELECT ...",
    ),
    Option(("--password", "-W"), "password_prompt", "flag", "ask for the password"),
    Option(
        ("--pgbouncer",),
        "pgbouncer",
        "flag",
        "with a URL: it is a transaction-mode pooler (no prepared statements)",
    ),
    Option(
        ("--list", "-l", "--connections"),
        "list_connections",
        "flag",
        "list connections and pool numbers",
    ),
    Option(
        ("--section", "-s"),
        "section",
        "label",
        "connect to a ~/.jupysql/connections.ini section, or a libpq service",
        "NAME",
    ),
    Option(
        ("--close", "-x"),
        "close",
        "name?",
        "close NAME (default: the current one)",
        "NAME",
        command=True,
        usage="%sql --close [NAME]",
    ),
    Option(
        ("--persist", "-p"),
        "persist",
        "var",
        "store DataFrame VAR as a table (through COPY)",
        "VAR",
        command=True,
        usage="%sql --persist VAR [--append | --replace] [--table NAME]",
    ),
    Option(
        ("--append",),
        "persist_mode",
        "var?",
        "with --persist: add the rows",
        "VAR",
        value="append",
    ),
    Option(
        ("--replace",),
        "persist_mode",
        "var?",
        "with --persist: drop and create it",
        "VAR",
        value="replace",
    ),
    Option(
        ("--persist-replace", "-P"),
        "persist",
        "var",
        "the same as --persist VAR --replace",
        "VAR",
        value="replace",
    ),
    Option(("--table",), "table", "table", "with --persist: the table's name", "NAME"),
    Option(
        ("--no-index", "-n"),
        "no_index",
        "flag",
        "with --persist: leave the DataFrame's index out, named levels too",
    ),
    Option(("--save", "-S"), "save", "name", "keep the cell's query as snippet NAME", "NAME"),
    Option(("--no-execute", "-N"), "no_execute", "flag", "with --save: store it, do not run it"),
    Option(("--with", "-w"), "with_snippet", "name", "put snippet NAME in front as a CTE", "NAME"),
    Option(("--file", "-f"), "file", "path", "run the SQL in FILE (parameters apply)", "FILE"),
    Option(
        ("--interact",),
        "interact",
        "name",
        "JupySQL's widgets: not available (the error names the alternative)",
        "VAR",
    ),
    Option(("--explain",), "explain", "flag", "show the planner's estimates as a tree"),
    Option(("--analyze",), "analyze", "flag", "run it and show times and actual rows"),
    Option(("--background",), "background", "flag", "run the cell on another connection; return"),
    Option(("--jobs",), "jobs", "flag", "list background jobs", command=True, usage="%sql --jobs"),
    Option(
        ("--wait",),
        "wait",
        "job?",
        "wait for job N (default: all not yet reported)",
        "N",
        command=True,
        usage="%sql --wait [N]",
    ),
    Option(
        ("--cancel",),
        "cancel",
        "job?",
        "cancel job N on the server (default: all)",
        "N | all",
        command=True,
        usage="%sql --cancel [N | all]",
    ),
    Option(
        ("--refresh",),
        "refresh",
        "flag",
        "read the catalog for Tab completion again",
        command=True,
        usage="%sql --refresh",
    ),
    Option(("--help", "-h"), "help", "flag", "show this help", command=True, usage="%sql --help"),
)

_BY_FLAG = {flag: option for option in OPTIONS for flag in option.flags}
_COMMANDS = [o for o in OPTIONS if o.command]


def options_help() -> str:
    """The options section of ``%sql --help`` and ``%sql?``, one line per option."""
    rows = [(", ".join((*o.flags[1:2], o.synopsis)), o.help) for o in OPTIONS]
    width = max(len(spelled) for spelled, _ in rows)
    return "\n".join(f"  {spelled.ljust(width)}  {text}" for spelled, text in rows)


_JOB_RE = re.compile(r"(\d+|all)(?=\s|\Z)")
_PATH_RE = re.compile(r"\"[^\"]+\"|'[^']+'|\S+")
# A table name: one or two identifiers, each plain (letters, digits, _, $) or "quoted".
_IDENT_PART = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_TABLE_RE = re.compile(rf"{_IDENT_PART}(?:\.{_IDENT_PART})?(?=\s|\Z)")

_OPTIONS_HELP = (
    "options: " + ", ".join(o.synopsis for o in OPTIONS if o.key != "help") + "; see %sql --help"
)


def is_plain_sql(line: str) -> bool:
    """True if ``line`` starts with SQL, not with an option, a target or ``VAR <<``.

    The magic's hot path: such a line is all SQL, and :func:`parse_line`
    would return it unchanged.
    """
    return _PLAIN_SQL_RE.match(line) is not None


def expand_arguments(text: str, variables: Mapping[str, object]) -> str:
    """``text`` with each ``{{ name }}`` replaced by the value of variable ``name``.

    JupySQL's argument expansion (``--save {{ name }}``, ``%sqlcmd columns
    --table {{ table }}``): an option's value is a name or a number, never SQL,
    so it is pasted as one word. A value that is not one word fails, rather
    than spill into the SQL that follows the options.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise OptionError(f"{{{{ {name} }}}} in an option: there is no variable {name}")
        held = variables[name]
        if isinstance(held, bool) or not isinstance(held, (str, int, float)):
            raise OptionError(
                f"{{{{ {name} }}}} in an option must hold a name or a number, "
                f"not a {type(held).__name__}"
            )
        word = str(held)
        if not word or any(char.isspace() for char in word):
            raise OptionError(f"{{{{ {name} }}}} in an option must hold one word, not {word!r}")
        return word

    return _ARGUMENT_TEMPLATE_RE.sub(value, text)


def leading_capture(text: str) -> int:
    """Where a ``VAR <<`` (or ``VAR= <<``) that starts ``text`` ends; 0 if none does.

    JupySQL's docs put it on the first line of a ``%%sql`` cell, under the
    magic line (``%%sql two`` then ``result <<``); no SQL statement starts so.
    """
    capture = _CAPTURE_RE.match(text, _SPACE_RE.match(text).end())
    return capture.end() if capture is not None else 0


def _expand_flag_value(line: str, pos: int, variables: Mapping[str, object]) -> str:
    """``line`` with the word after the flag at ``pos`` expanded, if it holds ``{{ name }}``."""
    flag_end = _WORD_RE.match(line, pos).end()  # type: ignore[union-attr]
    start = _SPACE_RE.match(line, flag_end).end()
    value = _TEMPLATED_WORD_RE.match(line, start)
    if value is None or "{{" not in value.group():
        return line
    return line[:start] + expand_arguments(value.group(), variables) + line[value.end() :]


def parse_line(line: str, variables: Mapping[str, object] | None = None) -> MagicLine:
    """Split a magic line into options and SQL; raise :class:`OptionError` if malformed.

    With ``variables``, an option's value written ``{{ name }}`` is that
    variable's value (see :func:`expand_arguments`); the SQL is left as typed.
    """
    if _PLAIN_SQL_RE.match(line):
        return MagicLine(sql=line)

    found: dict[str, object] = {}
    pos = 0
    n = len(line)
    while True:
        pos = _SPACE_RE.match(line, pos).end()
        if pos >= n:
            break
        char = line[pos]
        if char == "-":
            if variables is not None:
                line = _expand_flag_value(line, pos, variables)
                n = len(line)
            pos = _read_flag(line, pos, found)
            continue
        capture = _CAPTURE_RE.match(line, pos)
        if capture is not None:
            _set_once(found, "out", capture.group(1), f"{capture.group(1)} <<")
            if capture.group(2):
                found["out_display"] = True
            pos = capture.end()
            continue
        target_end = _target_end(line, pos)
        if target_end is not None:
            if "target" in found:
                raise OptionError("two connection strings on one line; give one per %sql")
            target = line[pos:target_end]
            if target[:1] in "\"'" and target[-1:] == target[:1]:
                target = target[1:-1]
            found["target"] = target
            pos = target_end
            continue
        if _OTHER_URL_RE.match(line, pos):
            # JupySQL's duckdb://, sqlite://, mysql://: not SQL, and not ours to connect.
            raise OptionError(
                "lunepool_magic connects to PostgreSQL only: %sql postgresql://user@host/db "
                "(the URL is not repeated here because it may hold a password)"
            )
        break  # the SQL starts here

    sql = line[pos:]
    result = MagicLine(sql=sql, sql_offset=pos, **found)  # type: ignore[arg-type]
    if result.close and (sql.strip() or result.target or result.out or result.password_prompt):
        raise OptionError("--close takes only a connection name: %sql --close [NAME]")
    if not _NEW_STYLE_KEYS.isdisjoint(found):
        _check_combination(result)
    return result


# Options that take no SQL or exclude one another; checked only when one is given.
_NEW_STYLE_KEYS = frozenset(
    {
        "persist",
        "persist_mode",
        "table",
        "explain",
        "analyze",
        "background",
        "jobs",
        "wait",
        "cancel",
        "help",
        "no_index",
        "save",
        "no_execute",
        "refresh",
    }
)


def _check_combination(opts: MagicLine) -> None:
    """Options that make no sense together, or one without the other it needs."""
    if opts.no_index and opts.persist is None:
        raise OptionError("--no-index goes with --persist VAR: %sql --persist df --no-index")
    if opts.no_execute and opts.save is None:
        raise OptionError("--no-execute goes with --save NAME: %%sql --save NAME --no-execute")
    if opts.persist is None and (opts.persist_mode != "create" or opts.table is not None):
        spelled = "--table" if opts.table is not None else f"--{opts.persist_mode}"
        raise OptionError(f"{spelled} goes with --persist VAR: %sql --persist df {spelled} ...")
    command = opts.command
    others = [
        spelled
        for spelled, given in (
            ("--persist", opts.persist is not None),
            ("--explain", opts.explain and not opts.analyze),
            ("--analyze", opts.analyze),
            ("--background", opts.background),
            ("--jobs", opts.jobs),
            ("--wait", opts.wait),
            ("--cancel", opts.cancel),
            ("--close", opts.close),
            ("--help", opts.help),
            ("--refresh", opts.refresh),
        )
        if given
    ]
    if len(others) > 1:
        raise OptionError(f"{others[0]} and {others[1]} cannot be combined on one line")
    if command is None:
        return
    if opts.sql.strip():
        raise OptionError(f"{command} takes no SQL: {_BY_FLAG[command].usage}")
    if opts.out is not None:
        raise OptionError(f"{command} stores nothing in a variable; leave out --out / VAR <<")


def _read_flag(line: str, pos: int, found: dict[str, object]) -> int:
    """Read one option at ``pos``; return the position after it."""
    word_match = _WORD_RE.match(line, pos)
    assert word_match is not None  # line[pos] is "-"
    word = word_match.group()
    end = word_match.end()
    value: str | None = None
    if word.startswith("--") and "=" in word:
        word, value = word.split("=", 1)
    option = _BY_FLAG.get(word)
    if option is None:
        refused = _REFUSED.get(word)
        if refused is not None:
            raise OptionError(refused)
    elif word == "-a" and line[_SPACE_RE.match(line, end).end() :][:1] in ("{", "'", '"'):
        raise OptionError(_REFUSED["--connection_arguments"])
    elif option.takes == "label":
        value_match = _WORD_RE.match(line, _SPACE_RE.match(line, end).end())
        if value is None and value_match is None:
            raise OptionError(f"{word} needs a name: {word} NAME")
        if value is None:
            value, end = value_match.group(), value_match.end()  # type: ignore[union-attr]
        if not _LABEL_RE.match(value):
            raise OptionError(
                f"{word} needs a Python-style name (letters, digits, _, -), not {value!r}"
            )
        _set_once(found, option.key, value, word)
        return end
    elif option.takes == "path":
        path_match = _PATH_RE.match(line, _SPACE_RE.match(line, end).end())
        if value is None and path_match is None:
            raise OptionError(f"{word} needs a file name: {word} query.sql")
        if value is None:
            value, end = path_match.group(), path_match.end()  # type: ignore[union-attr]
        if value[:1] in "\"'" and value[-1:] == value[:1]:
            value = value[1:-1]
        _set_once(found, option.key, value, word)
        return end
    elif option.takes in ("name", "rows"):
        if value is None:
            value_match = _WORD_RE.match(line, _SPACE_RE.match(line, end).end())
            if value_match is None:
                what = "a number of rows" if option.takes == "rows" else "a name"
                raise OptionError(f"{word} needs {what}: {word} {what.split()[-1].upper()}")
            value, end = value_match.group(), value_match.end()
        if option.takes == "rows":
            if not value.isdigit():
                raise OptionError(
                    f"--limit takes a number of rows, not {value!r}: %sql --limit 100 SELECT ..."
                )
        elif not _IDENT_RE.match(value):
            raise OptionError(
                f"{word} needs a Python-style name (letters, digits, _), not {value!r}"
            )
        if option.key == "interact" and option.key in found:
            # JupySQL takes one --interact per variable. The cell is refused anyway,
            # with the alternative for the first: a second is not "given twice".
            return end
        _set_once(found, option.key, value, word)
        return end
    elif option.takes == "path":
        if value is None:
            path = _PATH_RE.match(line, _SPACE_RE.match(line, end).end())
            if path is None:
                raise OptionError(
                    f"{word} needs a file name: %sql {word} results.parquet SELECT ..."
                )
            value, end = path.group(), path.end()
        if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
            value = value[1:-1]
        _set_once(found, option.key, value, word)
        return end
    elif value is not None:
        raise OptionError(f"{word} takes no value")
    elif option.takes == "flag":
        _set_once(found, option.key, True, word)
        return end
    elif option.takes == "name?":
        _set_once(found, option.key, True, word)
        name_match = _WORD_RE.match(line, _SPACE_RE.match(line, end).end())
        # A connection name, as --alias takes it: JupySQL's docs close `db-two`.
        if name_match is not None and _LABEL_RE.match(name_match.group()):
            found[f"{option.key}_name"] = name_match.group()
            return name_match.end()
        return end
    elif option.takes == "var":
        if isinstance(option.value, str):  # --persist-replace: --persist with its mode
            _set_once(found, "persist_mode", option.value, word)
        return _read_persist_var(line, end, found, word, required=True)
    elif option.takes == "var?":
        if option.key in found:
            raise OptionError("--append and --replace cannot be combined: pick one")
        found[option.key] = option.value
        return _read_persist_var(line, end, found, word, required=False)
    elif option.takes == "table":
        start = _SPACE_RE.match(line, end).end()
        table = _TABLE_RE.match(line, start)
        if table is None:
            raise OptionError(
                "--table needs a table name: --table orders, --table sales.orders, "
                '--table "My Table"'
            )
        _set_once(found, option.key, table.group(), word)
        return table.end()
    elif option.takes == "job?":
        _set_once(found, option.key, True, word)
        start = _SPACE_RE.match(line, end).end()
        job = _JOB_RE.match(line, start)
        if job is not None:
            if job.group() == "all" and word == "--wait":
                return job.end()  # --wait all: the same as --wait
            found["job"] = job.group()
            return job.end()
        return end
    hint = " (a SQL comment on the %sql line would hide the statement)" if word[:2] == "--" else ""
    raise OptionError(f"unknown option {word}{hint}; {_OPTIONS_HELP}")


#: JupySQL's options that have no counterpart here, with what to write instead.
_REFUSED = {
    "--connection_arguments": (
        "-a means --alias here; JupySQL's connection arguments (-a/--connection_arguments) "
        "go into the URL instead: %sql postgresql://host/db?connect_timeout=10&sslmode=require"
    ),
    "--creator": (
        "--creator (a function that makes DBAPI connections) is not taken: "
        "connect with a URL or conninfo, %sql postgresql://user@host/db"
    ),
    "-c": (
        "-c/--creator (a function that makes DBAPI connections) is not taken: "
        "connect with a URL or conninfo, %sql postgresql://user@host/db"
    ),
    "--lazy": "--lazy is not needed: results are fetched once into a DataFrame",
}


def _read_persist_var(
    line: str, end: int, found: dict[str, object], word: str, *, required: bool
) -> int:
    """The VAR after --persist (required) or --append/--replace (optional)."""
    value_match = _WORD_RE.match(line, _SPACE_RE.match(line, end).end())
    if value_match is None or value_match.group().startswith("-"):
        if required:
            raise OptionError(f"{word} needs the name of a DataFrame variable: {word} df")
        return end
    value = value_match.group()
    schema, dot, name = value.partition(".")
    if dot and _IDENT_RE.match(schema) and _IDENT_RE.match(name):
        # JupySQL's `--persist schema.df`: DataFrame df into table schema.df.
        _set_once(found, "table", value, "--table")
        value = name
    if not _IDENT_RE.match(value):
        raise OptionError(
            f"{word} needs a Python variable name (letters, digits, _), not {value!r}"
        )
    _set_once(found, "persist", value, "the DataFrame to persist")
    return value_match.end()


def _set_once(found: dict[str, object], key: str, value: object, spelled: str) -> None:
    if key in found:
        raise OptionError(f"{spelled} is given twice")
    found[key] = value


def _target_end(line: str, pos: int) -> int | None:
    """End of a connection target starting at ``pos``, or None if none starts there."""
    char = line[pos]
    if char in "\"'":
        close = line.find(char, pos + 1)
        if close < 0:
            return None
        inner = line[pos + 1 : close]
        if _URL_RE.match(inner) or _PAIR_RE.match(inner):
            return close + 1
        return None
    url = _URL_RE.match(line, pos)
    if url is not None:
        after = _WORD_RE.match(line, _SPACE_RE.match(line, url.end()).end())
        if after is not None and "@" in after.group() and "@" not in url.group():
            # `postgresql://me:pass word@host/db`: the URL was cut at a space, and
            # the rest, password included, would be sent (and echoed) as SQL.
            raise OptionError(
                "the connection URL seems to hold a space (an '@' follows it): write a "
                "space as %20, or quote the whole string; it is not repeated here because "
                "it may hold a password"
            )
        return url.end()
    end = pos
    # key=value pairs: `host=h port=5432 dbname=d`.
    while True:
        gap = _SPACE_RE.match(line, end).end() if end > pos else pos
        if not _KEY_RE.match(line, gap):
            return end if end > pos else None
        pair = _PAIR_RE.match(line, gap)
        if pair is None:
            # Half a pair would otherwise be sent as SQL, and the server would
            # echo it back, password and all.
            raise OptionError(
                "could not parse the connection string (an unclosed quote?); it is not "
                "repeated here because it may hold a password"
            )
        end = pair.end()
