"""psql's backslash commands in a cell (``%sql \\dt``, ``%%sql`` + ``\\d orders``), as DataFrames.

One job: read a backslash command, run the catalog queries that answer it on
the caller's connection, and return a DataFrame (through the same
:func:`~lunepool_magic.postgres.statement.run` as every other cell, so the dtypes
are the usual ones). A few queries against ``pg_catalog`` serve better here
than pgspecial: no extra dependency (pgspecial brings click and sqlparse),
and the results are DataFrames with psql's column names rather than text
tables with footers in a status string.

Commands (``S`` adds system objects, ``+`` adds columns such as size and
description; a pattern is psql's: ``*`` and ``?`` are wildcards, ``.``
separates schema and name, ``"..."`` keeps case and special characters)::

    \\d [PATTERN]        relations; with a pattern matching one relation: its columns
    \\dt[S+] [PATTERN]   tables          \\dv[S+] [PATTERN]   views
    \\dm[S+] [PATTERN]   materialized views
    \\di[S+] [PATTERN]   indexes         \\ds[S+] [PATTERN]   sequences
    \\dn[S+] [PATTERN]   schemas         \\df[S+] [PATTERN]   functions
    \\du[S] [PATTERN]    roles           \\dx[+] [PATTERN]    extensions
    \\l[+] [PATTERN]     databases       \\?                  this list

``\\d name`` returns the columns (Column, Type, Collation, Nullable,
Default); what psql prints under them (indexes, constraints, foreign keys,
references, triggers) is in ``frame.attrs["footer"]`` and the title in
``frame.attrs["title"]``; the magic prints both. Display settings (``\\x``,
``\\pset``) and client commands (``\\c``, ``\\i``, ``\\copy``) are not
supported: the message says what to use instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg

from lunepool_magic.postgres.statement import run

__all__ = ["MetaCommand", "MetaError", "is_meta", "parse_meta", "run_meta"]


class MetaError(ValueError):
    """A backslash command that is malformed or not supported; the message says why."""


_META_START = re.compile(r"\s*\\")


def is_meta(text: str) -> bool:
    """True if the cell's text is a backslash command (starts with ``\\`` after blanks)."""
    return _META_START.match(text) is not None


@dataclass(frozen=True)
class MetaCommand:
    """A parsed command: ``name`` ('dt', 'd', 'l', ...), the S and + modifiers, the pattern."""

    name: str
    system: bool
    verbose: bool
    pattern: str | None
    text: str  # as typed, for messages


_COMMAND_RE = re.compile(r"\\(\?|[a-z]+)(S?)(\+?)(?:\s+(.*?))?\s*;?\s*\Z", re.DOTALL)

_NOT_SUPPORTED = {
    "x": "expanded display is a psql setting; DataFrames have no such mode",
    "c": "connect with %sql postgresql://user@host/db [--alias NAME]",
    "connect": "connect with %sql postgresql://user@host/db [--alias NAME]",
    "copy": "load a DataFrame with %sql --persist df; read a table with %sql SELECT",
    "i": "paste the file into a %%sql cell",
    "timing": "IPython's %%time measures a cell",
    "pset": "display settings are pandas': pd.set_option(...)",
    "q": "there is nothing to quit",
}

_HELP = [
    ("\\d [PATTERN]", "list relations, or describe the one PATTERN names"),
    ("\\dt[S+] [PATTERN]", "tables"),
    ("\\dv[S+] [PATTERN]", "views"),
    ("\\dm[S+] [PATTERN]", "materialized views"),
    ("\\di[S+] [PATTERN]", "indexes"),
    ("\\ds[S+] [PATTERN]", "sequences"),
    ("\\dn[S+] [PATTERN]", "schemas"),
    ("\\df[S+] [PATTERN]", "functions"),
    ("\\du[S] [PATTERN]", "roles"),
    ("\\dx[+] [PATTERN]", "extensions"),
    ("\\l[+] [PATTERN]", "databases"),
    ("\\?", "this list"),
]

# relkinds listed by each command; \d without a pattern lists these together.
_RELKINDS = {
    "dt": ["r", "p"],
    "dv": ["v"],
    "dm": ["m"],
    "di": ["i", "I"],
    "ds": ["S"],
    "d": ["r", "p", "v", "m", "S", "f"],
}


def parse_meta(text: str) -> MetaCommand:
    """Parse one backslash command (the whole cell, one line)."""
    stripped = text.strip()
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) > 1:
        raise MetaError(
            "one backslash command per cell (SQL and backslash commands do not mix); "
            "put each in its own cell"
        )
    match = _COMMAND_RE.match(stripped)
    if match is None:
        raise MetaError(f"could not read the backslash command {stripped!r}; \\? lists them")
    name, system, verbose, pattern = match.groups()
    if name in _NOT_SUPPORTED:
        raise MetaError(f"\\{name} is not supported in %sql: {_NOT_SUPPORTED[name]}")
    if name not in _RELKINDS and name not in ("dn", "df", "du", "dx", "l", "?"):
        raise MetaError(f"unsupported backslash command \\{name}; \\? lists the supported ones")
    if pattern is not None and _has_unquoted_space(pattern):
        raise MetaError(
            f'\\{name} takes one pattern, not {pattern!r}; quote a name with spaces: \\d "my table"'
        )
    return MetaCommand(name, bool(system), bool(verbose), pattern or None, stripped)


def _has_unquoted_space(pattern: str) -> bool:
    quoted = False
    for char in pattern:
        if char == '"':
            quoted = not quoted
        elif char.isspace() and not quoted:
            return True
    return False


# ------------------------------------------------------------------ patterns


def pattern_regexes(pattern: str) -> tuple[str | None, str]:
    """psql's pattern rules: ``'S*.Ord?rs'`` -> ``('^(s.*)$', '^(ord.rs)$')``.

    Outside double quotes letters fold to lower case, ``*`` is ``.*``, ``?``
    is ``.``, ``.`` separates schema and name, ``$`` is literal and other
    regular-expression characters keep their meaning; inside double quotes
    everything is literal (``""`` is a quote). Returns (schema regex or
    None, name regex).
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == '"':
            if quoted and pattern.startswith('"', i + 1):
                current.append('"')
                i += 2
                continue
            quoted = not quoted
        elif quoted:
            current.append(re.escape(char))
        elif char == ".":
            parts.append("".join(current))
            current = []
        elif char == "*":
            current.append(".*")
        elif char == "?":
            current.append(".")
        elif char == "$":
            current.append("\\$")
        else:
            current.append(char.lower())
        i += 1
    parts.append("".join(current))
    if len(parts) > 2:
        raise MetaError(f"improper qualified name (too many dotted names): {pattern}")
    regexes = [f"^({p})$" if p else "^(.*)$" for p in parts]
    if len(regexes) == 1:
        return None, regexes[0]
    return regexes[0], regexes[1]


def _name_filter(
    pattern: str | None,
    name_column: str,
    schema_column: str | None,
    visible: str | None,
    params: dict[str, Any],
) -> str:
    """The WHERE conditions for a pattern, as psql builds them (values as parameters)."""
    if pattern is None:
        return f"AND {visible}" if visible else ""
    schema_regex, name_regex = pattern_regexes(pattern)
    params["name_re"] = name_regex
    conditions = [f"{name_column} OPERATOR(pg_catalog.~) %(name_re)s COLLATE pg_catalog.default"]
    if schema_regex is not None:
        if schema_column is None:
            raise MetaError(f"{pattern!r}: this command takes no schema-qualified pattern")
        params["schema_re"] = schema_regex
        conditions.append(
            f"{schema_column} OPERATOR(pg_catalog.~) %(schema_re)s COLLATE pg_catalog.default"
        )
    elif visible:
        conditions.append(visible)
    return "AND " + " AND ".join(conditions)


def _hide_system(command: MetaCommand, schema_column: str) -> str:
    if command.system or command.pattern is not None:
        return ""
    return (
        f"AND {schema_column} <> 'pg_catalog' AND {schema_column} !~ '^pg_toast' "
        f"AND {schema_column} <> 'information_schema'"
    )


# ------------------------------------------------------------------ running


@dataclass
class MetaResult:
    """A command's DataFrame; ``title`` and ``footer`` lines are printed around it."""

    frame: pd.DataFrame
    title: str = ""
    footer: list[str] | None = None


def run_meta(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    """Run ``command`` on ``conn`` (read-only catalog queries) and return its result."""
    name = command.name
    if name == "?":
        return MetaResult(pd.DataFrame(_HELP, columns=["Command", "Lists"]))
    if name == "d" and command.pattern is not None:
        return _describe(conn, command)
    if name in _RELKINDS:
        return _list_relations(conn, command, _RELKINDS[name])
    return {"dn": _schemas, "df": _functions, "du": _roles, "dx": _extensions, "l": _databases}[
        name
    ](conn, command)


def _query(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> pd.DataFrame:
    # Catalog answers are small: the row path (no COPY round trips).
    frame = run(conn, sql, params or None, fast=False).frame
    assert frame is not None  # every query here is a SELECT
    return frame


_KIND_NAMES = """CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view'
    WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence'
    WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table'
    WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END"""


def _list_relations(
    conn: psycopg.Connection[Any], command: MetaCommand, kinds: list[str]
) -> MetaResult:
    params: dict[str, Any] = {"kinds": kinds}
    columns = [
        'n.nspname AS "Schema"',
        'c.relname AS "Name"',
        f'{_KIND_NAMES} AS "Type"',
        'pg_catalog.pg_get_userbyid(c.relowner) AS "Owner"',
    ]
    joins = ""
    if command.name == "di":
        columns.append('c2.relname AS "Table"')
        joins = (
            "LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
            "LEFT JOIN pg_catalog.pg_class c2 ON i.indrelid = c2.oid"
        )
    if command.verbose:
        columns += [
            "CASE c.relpersistence WHEN 'p' THEN 'permanent' WHEN 't' THEN 'temporary' "
            "WHEN 'u' THEN 'unlogged' END AS \"Persistence\"",
            'pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(c.oid)) AS "Size"',
            "COALESCE(pg_catalog.obj_description(c.oid, 'pg_class'), '') AS \"Description\"",
        ]
    where = (
        _hide_system(command, "n.nspname")
        + " "
        + _name_filter(
            command.pattern,
            "c.relname",
            "n.nspname",
            "pg_catalog.pg_table_is_visible(c.oid)",
            params,
        )
    )
    sql = (
        f"SELECT {', '.join(columns)} FROM pg_catalog.pg_class c "
        f"LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace {joins} "
        f'WHERE c.relkind = ANY(%(kinds)s::"char"[]) {where} ORDER BY 1, 2'
    )
    frame = _query(conn, sql, params)
    if frame.empty:
        what = {"dt": "tables", "dv": "views", "dm": "materialized views", "di": "indexes"}
        noun = what.get(command.name, {"ds": "sequences"}.get(command.name, "relations"))
        matching = f" matching {command.pattern!r}" if command.pattern else ""
        return MetaResult(frame, footer=[f"(no {noun}{matching})"])
    return MetaResult(frame)


def _schemas(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = ['n.nspname AS "Name"', 'pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"']
    if command.verbose:
        columns += [
            "COALESCE(pg_catalog.array_to_string(n.nspacl, E'\\n'), '') AS \"Access privileges\"",
            "COALESCE(pg_catalog.obj_description(n.oid, 'pg_namespace'), '') AS \"Description\"",
        ]
    hide = ""
    if not command.system and command.pattern is None:
        hide = "AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
    where = hide + " " + _name_filter(command.pattern, "n.nspname", None, None, params)
    sql = (
        f"SELECT {', '.join(columns)} FROM pg_catalog.pg_namespace n WHERE true {where} ORDER BY 1"
    )
    return MetaResult(_query(conn, sql, params))


def _functions(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        'n.nspname AS "Schema"',
        'p.proname AS "Name"',
        'pg_catalog.pg_get_function_result(p.oid) AS "Result data type"',
        'pg_catalog.pg_get_function_arguments(p.oid) AS "Argument data types"',
        "CASE p.prokind WHEN 'a' THEN 'agg' WHEN 'w' THEN 'window' WHEN 'p' THEN 'proc' "
        "ELSE 'func' END AS \"Type\"",
    ]
    if command.verbose:
        columns += [
            "CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' "
            "WHEN 'v' THEN 'volatile' END AS \"Volatility\"",
            'pg_catalog.pg_get_userbyid(p.proowner) AS "Owner"',
            'l.lanname AS "Language"',
            "COALESCE(pg_catalog.obj_description(p.oid, 'pg_proc'), '') AS \"Description\"",
        ]
    where = (
        _hide_system(command, "n.nspname")
        + " "
        + _name_filter(
            command.pattern,
            "p.proname",
            "n.nspname",
            "pg_catalog.pg_function_is_visible(p.oid)",
            params,
        )
    )
    sql = (
        f"SELECT {', '.join(columns)} FROM pg_catalog.pg_proc p "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "LEFT JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
        f"WHERE true {where} ORDER BY 1, 2, 4"
    )
    return MetaResult(_query(conn, sql, params))


def _roles(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    attributes = " || ".join(
        f"CASE WHEN {cond} THEN '{label}, ' ELSE '' END"
        for cond, label in (
            ("r.rolsuper", "Superuser"),
            ("NOT r.rolinherit", "No inheritance"),
            ("r.rolcreaterole", "Create role"),
            ("r.rolcreatedb", "Create DB"),
            ("NOT r.rolcanlogin", "Cannot login"),
            ("r.rolreplication", "Replication"),
            ("r.rolbypassrls", "Bypass RLS"),
        )
    )
    hide = "" if command.system or command.pattern else "AND r.rolname !~ '^pg_'"
    where = hide + " " + _name_filter(command.pattern, "r.rolname", None, None, params)
    sql = (
        'SELECT r.rolname AS "Role name", '
        f"pg_catalog.rtrim({attributes}, ', ') AS \"Attributes\" "
        f"FROM pg_catalog.pg_roles r WHERE true {where} ORDER BY 1"
    )
    return MetaResult(_query(conn, sql, params))


def _extensions(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    where = _name_filter(command.pattern, "e.extname", None, None, params)
    sql = (
        'SELECT e.extname AS "Name", e.extversion AS "Version", n.nspname AS "Schema", '
        "COALESCE(c.description, '') AS \"Description\" "
        "FROM pg_catalog.pg_extension e "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "LEFT JOIN pg_catalog.pg_description c ON c.objoid = e.oid "
        "AND c.classoid = 'pg_catalog.pg_extension'::pg_catalog.regclass "
        f"WHERE true {where} ORDER BY 1"
    )
    return MetaResult(_query(conn, sql, params))


def _databases(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        'd.datname AS "Name"',
        'pg_catalog.pg_get_userbyid(d.datdba) AS "Owner"',
        'pg_catalog.pg_encoding_to_char(d.encoding) AS "Encoding"',
        'd.datcollate AS "Collate"',
        'd.datctype AS "Ctype"',
        "COALESCE(pg_catalog.array_to_string(d.datacl, E'\\n'), '') AS \"Access privileges\"",
    ]
    if command.verbose:
        columns += [
            "CASE WHEN pg_catalog.has_database_privilege(d.datname, 'CONNECT') "
            "THEN pg_catalog.pg_size_pretty(pg_catalog.pg_database_size(d.datname)) "
            "ELSE 'No Access' END AS \"Size\"",
            't.spcname AS "Tablespace"',
            "COALESCE(pg_catalog.shobj_description(d.oid, 'pg_database'), '') AS \"Description\"",
        ]
    where = _name_filter(command.pattern, "d.datname", None, None, params)
    sql = (
        f"SELECT {', '.join(columns)} FROM pg_catalog.pg_database d "
        "JOIN pg_catalog.pg_tablespace t ON d.dattablespace = t.oid "
        f"WHERE true {where} ORDER BY 1"
    )
    return MetaResult(_query(conn, sql, params))


# ------------------------------------------------------------------ \d NAME

_TITLES = {
    "r": "Table",
    "p": "Partitioned table",
    "v": "View",
    "m": "Materialized view",
    "i": "Index",
    "I": "Partitioned index",
    "S": "Sequence",
    "f": "Foreign table",
    "t": "TOAST table",
    "c": "Composite type",
}


def _describe(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    where = _name_filter(
        command.pattern,
        "c.relname",
        "n.nspname",
        "pg_catalog.pg_table_is_visible(c.oid)",
        params,
    )
    found = _query(
        conn,
        "SELECT c.oid::int8 AS oid, n.nspname, c.relname, c.relkind::text AS relkind "
        "FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE true {where} ORDER BY 2, 3",
        params,
    )
    if found.empty:
        raise MetaError(f'Did not find any relation named "{command.pattern}".')
    if len(found) > 1:
        kinds = sorted(set(found["relkind"]))
        listing = _list_relations(
            conn, MetaCommand("d", True, False, command.pattern, command.text), kinds
        )
        listing.footer = [
            f"({len(found)} relations match {command.pattern!r}; \\d NAME describes one)"
        ]
        return listing
    row = found.iloc[0]
    oid, schema, name, kind = int(row["oid"]), row["nspname"], row["relname"], row["relkind"]
    title = f'{_TITLES.get(kind, "Relation")} "{schema}.{name}"'
    if kind == "S":
        return MetaResult(_sequence(conn, oid), title=title)
    frame = _columns(conn, oid, kind, command.verbose)
    footer = _footer(conn, oid, kind, command.verbose)
    return MetaResult(frame, title=title, footer=footer)


def _columns(conn: psycopg.Connection[Any], oid: int, kind: str, verbose: bool) -> pd.DataFrame:
    columns = [
        'a.attname AS "Column"',
        'pg_catalog.format_type(a.atttypid, a.atttypmod) AS "Type"',
        "COALESCE((SELECT co.collname FROM pg_catalog.pg_collation co, pg_catalog.pg_type t "
        "WHERE co.oid = a.attcollation AND t.oid = a.atttypid "
        "AND a.attcollation <> t.typcollation), '') AS \"Collation\"",
        "CASE WHEN a.attnotnull THEN 'not null' ELSE '' END AS \"Nullable\"",
        "COALESCE(CASE WHEN a.attidentity = 'a' THEN 'generated always as identity' "
        "WHEN a.attidentity = 'd' THEN 'generated by default as identity' "
        "WHEN a.attgenerated = 's' THEN 'generated always as (' "
        "|| pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) || ') stored' "
        "ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) END, '') AS \"Default\"",
    ]
    if kind in ("i", "I"):
        definition = 'pg_catalog.pg_get_indexdef(a.attrelid, a.attnum, true) AS "Definition"'
        columns = [*columns[:2], definition]
    if verbose:
        columns += [
            "CASE a.attstorage WHEN 'p' THEN 'plain' WHEN 'm' THEN 'main' "
            "WHEN 'x' THEN 'extended' WHEN 'e' THEN 'external' END AS \"Storage\"",
            "COALESCE(pg_catalog.col_description(a.attrelid, a.attnum), '') AS \"Description\"",
        ]
    return _query(
        conn,
        f"SELECT {', '.join(columns)} FROM pg_catalog.pg_attribute a "
        "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = %(oid)s::oid AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        {"oid": oid},
    )


def _sequence(conn: psycopg.Connection[Any], oid: int) -> pd.DataFrame:
    return _query(
        conn,
        'SELECT pg_catalog.format_type(s.seqtypid, NULL) AS "Type", s.seqstart AS "Start", '
        's.seqmin AS "Minimum", s.seqmax AS "Maximum", s.seqincrement AS "Increment", '
        "CASE WHEN s.seqcycle THEN 'yes' ELSE 'no' END AS \"Cycles?\", "
        's.seqcache AS "Cache" FROM pg_catalog.pg_sequence s WHERE s.seqrelid = %(oid)s::oid',
        {"oid": oid},
    )


def _footer(conn: psycopg.Connection[Any], oid: int, kind: str, verbose: bool) -> list[str]:
    """What psql prints under a relation's columns: indexes, constraints, references, ..."""
    params = {"oid": oid}
    lines: list[str] = []

    def section(title: str, sql: str) -> None:
        frame = _query(conn, sql, params)
        if not frame.empty:
            lines.append(f"{title}:")
            lines.extend(f"    {value}" for value in frame.iloc[:, 0])

    if kind in ("i", "I"):
        section(
            "Index of",
            "SELECT pg_catalog.regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid), "
            "'^.* USING ', '') || ', for table \"' || n.nspname || '.' || c.relname || '\"' "
            "|| CASE WHEN i.indisprimary THEN ', primary key' "
            "WHEN i.indisunique THEN ', unique' ELSE '' END "
            "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE i.indexrelid = %(oid)s::oid",
        )
        return lines
    section(
        "Indexes",
        "SELECT '\"' || c2.relname || '\" ' "
        "|| CASE WHEN i.indisprimary THEN 'PRIMARY KEY, ' "
        "WHEN con.contype = 'u' THEN 'UNIQUE CONSTRAINT, ' "
        "WHEN i.indisunique THEN 'UNIQUE, ' ELSE '' END "
        "|| pg_catalog.regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid, 0, true), "
        "'^.* USING ', '') "
        "|| CASE WHEN NOT i.indisvalid THEN ' INVALID' ELSE '' END "
        "FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c2 ON c2.oid = i.indexrelid "
        "LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid "
        "AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') "
        "WHERE i.indrelid = %(oid)s::oid "
        "ORDER BY i.indisprimary DESC, c2.relname",
    )
    section(
        "Check constraints",
        "SELECT '\"' || conname || '\" ' || pg_catalog.pg_get_constraintdef(oid, true) "
        "FROM pg_catalog.pg_constraint WHERE conrelid = %(oid)s::oid AND contype = 'c' "
        "ORDER BY conname",
    )
    section(
        "Foreign-key constraints",
        "SELECT '\"' || conname || '\" ' || pg_catalog.pg_get_constraintdef(oid, true) "
        "FROM pg_catalog.pg_constraint WHERE conrelid = %(oid)s::oid AND contype = 'f' "
        "ORDER BY conname",
    )
    section(
        "Referenced by",
        "SELECT 'TABLE \"' || conrelid::pg_catalog.regclass::text || '\" CONSTRAINT \"' "
        "|| conname || '\" ' || pg_catalog.pg_get_constraintdef(oid, true) "
        "FROM pg_catalog.pg_constraint WHERE confrelid = %(oid)s::oid AND contype = 'f' "
        "ORDER BY conname",
    )
    section(
        "Triggers",
        "SELECT pg_catalog.regexp_replace(pg_catalog.pg_get_triggerdef(oid, true), "
        "'^CREATE (CONSTRAINT )?TRIGGER ', '') "
        "FROM pg_catalog.pg_trigger WHERE tgrelid = %(oid)s::oid AND NOT tgisinternal "
        "ORDER BY tgname",
    )
    if kind in ("v", "m") and verbose:
        frame = _query(conn, "SELECT pg_catalog.pg_get_viewdef(%(oid)s::oid, true)", params)
        lines.append("View definition:")
        lines.extend(" " + line for line in str(frame.iat[0, 0]).splitlines())
    return lines
