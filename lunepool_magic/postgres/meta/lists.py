"""The listing commands (``\\dt``, ``\\dT``, ``\\l``, ...): one catalog query each, psql's columns.

Each function builds the SELECT that answers its command with psql 18's
column names and values, filtered by the pattern as psql filters it, and
returns the frame. Values psql prints as empty (NULL) are empty strings, so
a frame reads as psql's table does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from lunepool_magic.postgres.meta.catalog import (
    MetaCommand,
    MetaError,
    MetaResult,
    hide_system,
    name_filter,
    query,
    server_version,
)

__all__ = ["LISTS", "RELATION_KINDS", "list_relations"]

Connection = psycopg.Connection[Any]

# relkinds listed by each command; \d without a pattern lists these together.
RELATION_KINDS = {
    "dt": ["r", "p"],
    "dv": ["v"],
    "dm": ["m"],
    "di": ["i", "I"],
    "ds": ["S"],
    "dE": ["f"],
    "d": ["r", "p", "v", "m", "S", "f"],
}
_NOUNS = {
    "dt": "tables", "dv": "views", "dm": "materialized views", "di": "indexes",
    "ds": "sequences", "dE": "foreign tables", "d": "relations",
}  # fmt: skip

KIND_NAMES = """CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view'
    WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence'
    WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table'
    WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index'
    WHEN 'c' THEN 'composite type' END"""


def acl(column: str) -> str:
    """An ACL column as psql prints it: one grant a line, '(none)' for an emptied ACL."""
    return (
        f"CASE WHEN pg_catalog.array_length({column}, 1) = 0 THEN '(none)' "
        f"ELSE COALESCE(pg_catalog.array_to_string({column}, E'\\n'), '') END"
    )


def options(column: str) -> str:
    """Generic options (``{a=1,b=x}``) as psql prints them: ``(a '1', b 'x')``."""
    return (
        f"CASE WHEN {column} IS NULL THEN '' ELSE '(' || pg_catalog.array_to_string(ARRAY("
        "SELECT pg_catalog.quote_ident(option_name) || ' ' "
        "|| pg_catalog.quote_literal(option_value) "
        f"FROM pg_catalog.pg_options_to_table({column})), ', ') || ')' END"
    )


def text(expression: str) -> str:
    """NULL as the empty string, as psql prints it."""
    return f"COALESCE(({expression})::pg_catalog.text, '')"


def _select(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f'{expression} AS "{name}"' for name, expression in columns)


def list_relations(conn: Connection, command: MetaCommand, kinds: list[str]) -> MetaResult:
    """The relation lists (``\\dt``, ``\\di``, ...), and ``\\d`` unless one relation matches."""
    params: dict[str, Any] = {"kinds": kinds}
    name = command.name
    columns = [
        ("Schema", "n.nspname"),
        ("Name", "c.relname"),
        ("Type", KIND_NAMES),
        ("Owner", "pg_catalog.pg_get_userbyid(c.relowner)"),
    ]
    if name == "di":
        columns.append(("Table", "c2.relname"))
    if command.verbose:
        columns.append(
            (
                "Persistence",
                "CASE c.relpersistence WHEN 'p' THEN 'permanent' WHEN 't' THEN 'temporary' "
                "WHEN 'u' THEN 'unlogged' END",
            )
        )
        if name in ("dt", "dm", "di", "d"):
            columns.append(("Access method", text("am.amname")))
        columns += [
            ("Size", "pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(c.oid))"),
            ("Description", text("pg_catalog.obj_description(c.oid, 'pg_class')")),
        ]
    where = (
        hide_system(command, "n.nspname")
        + " "
        + name_filter(
            command.pattern,
            "c.relname",
            "n.nspname",
            "pg_catalog.pg_table_is_visible(c.oid)",
            params,
        )
    )
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam "
        "LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
        "LEFT JOIN pg_catalog.pg_class c2 ON i.indrelid = c2.oid "
        f'WHERE c.relkind = ANY(%(kinds)s::"char"[]) {where} ORDER BY 1, 2'
    )
    frame = query(conn, sql, params)
    if frame.empty:
        matching = f" matching {command.pattern!r}" if command.pattern else ""
        return MetaResult(frame, footer=[f"(no {_NOUNS[name]}{matching})"])
    return MetaResult(frame)


def _schemas(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [("Name", "n.nspname"), ("Owner", "pg_catalog.pg_get_userbyid(n.nspowner)")]
    if command.verbose:
        columns += [
            ("Access privileges", acl("n.nspacl")),
            ("Description", text("pg_catalog.obj_description(n.oid, 'pg_namespace')")),
        ]
    hide = ""
    if not command.system and command.pattern is None:
        hide = "AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
    where = hide + " " + name_filter(command.pattern, "n.nspname", None, None, params)
    sql = f"SELECT {_select(columns)} FROM pg_catalog.pg_namespace n WHERE true {where} ORDER BY 1"
    return MetaResult(query(conn, sql, params))


def _functions(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        ("Schema", "n.nspname"),
        ("Name", "p.proname"),
        ("Result data type", "pg_catalog.pg_get_function_result(p.oid)"),
        ("Argument data types", "pg_catalog.pg_get_function_arguments(p.oid)"),
        (
            "Type",
            "CASE p.prokind WHEN 'a' THEN 'agg' WHEN 'w' THEN 'window' WHEN 'p' THEN 'proc' "
            "ELSE 'func' END",
        ),
    ]
    if command.verbose:
        columns += [
            (
                "Volatility",
                "CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' "
                "WHEN 'v' THEN 'volatile' END",
            ),
            (
                "Parallel",
                "CASE p.proparallel WHEN 'r' THEN 'restricted' WHEN 's' THEN 'safe' "
                "WHEN 'u' THEN 'unsafe' END",
            ),
            ("Owner", "pg_catalog.pg_get_userbyid(p.proowner)"),
            ("Security", "CASE WHEN p.prosecdef THEN 'definer' ELSE 'invoker' END"),
            ("Leakproof?", "CASE WHEN p.proleakproof THEN 'yes' ELSE 'no' END"),
            ("Access privileges", acl("p.proacl")),
            ("Language", "l.lanname"),
            ("Internal name", text("CASE WHEN l.lanname IN ('internal', 'c') THEN p.prosrc END")),
            ("Description", text("pg_catalog.obj_description(p.oid, 'pg_proc')")),
        ]
    where = (
        hide_system(command, "n.nspname", toast=False)
        + " "
        + name_filter(
            command.pattern,
            "p.proname",
            "n.nspname",
            "pg_catalog.pg_function_is_visible(p.oid)",
            params,
        )
    )
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_proc p "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "LEFT JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
        f"WHERE true {where} ORDER BY 1, 2, 4"
    )
    return MetaResult(query(conn, sql, params))


def _types(conn: Connection, command: MetaCommand) -> MetaResult:
    """``\\dT``: base, enum, range, domain and stand-alone composite types; no array types."""
    params: dict[str, Any] = {}
    columns = [("Schema", "n.nspname"), ("Name", "pg_catalog.format_type(t.oid, NULL)")]
    if command.verbose:
        columns += [
            ("Internal name", "t.typname"),
            (
                "Size",
                "CASE WHEN t.typrelid <> 0 THEN 'tuple' WHEN t.typlen < 0 THEN 'var' "
                "ELSE t.typlen::pg_catalog.text END",
            ),
            (
                "Elements",
                "pg_catalog.array_to_string(ARRAY(SELECT e.enumlabel FROM pg_catalog.pg_enum e "
                "WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder), E'\\n')",
            ),
            ("Owner", "pg_catalog.pg_get_userbyid(t.typowner)"),
            ("Access privileges", acl("t.typacl")),
        ]
    columns.append(("Description", text("pg_catalog.obj_description(t.oid, 'pg_type')")))
    # Like psql, a type matches by its internal name or its SQL name (int4 or integer).
    names = ("t.typname", "pg_catalog.format_type(t.oid, NULL)")
    where = (
        hide_system(command, "n.nspname", toast=False)
        + " "
        + name_filter(
            command.pattern, names, "n.nspname", "pg_catalog.pg_type_is_visible(t.oid)", params
        )
    )
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_type t "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        "WHERE (t.typrelid = 0 OR (SELECT c.relkind = 'c' FROM pg_catalog.pg_class c "
        "WHERE c.oid = t.typrelid)) "
        "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type el "
        "WHERE el.oid = t.typelem AND el.typarray = t.oid) "
        f"{where} ORDER BY 1, 2"
    )
    return MetaResult(query(conn, sql, params))


def _domains(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        ("Schema", "n.nspname"),
        ("Name", "t.typname"),
        ("Type", "pg_catalog.format_type(t.typbasetype, t.typtypmod)"),
        (
            "Collation",
            text(
                "SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type bt "
                "WHERE c.oid = t.typcollation AND bt.oid = t.typbasetype "
                "AND t.typcollation <> bt.typcollation"
            ),
        ),
        ("Nullable", "CASE WHEN t.typnotnull THEN 'not null' ELSE '' END"),
        ("Default", text("t.typdefault")),
        (
            "Check",
            "pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.pg_get_constraintdef(r.oid, true) "
            "FROM pg_catalog.pg_constraint r WHERE r.contypid = t.oid AND r.contype = 'c' "
            "ORDER BY r.conname), ' ')",
        ),
    ]
    if command.verbose:
        columns += [
            ("Access privileges", acl("t.typacl")),
            ("Description", text("pg_catalog.obj_description(t.oid, 'pg_type')")),
        ]
    where = (
        hide_system(command, "n.nspname", toast=False)
        + " "
        + name_filter(
            command.pattern,
            "t.typname",
            "n.nspname",
            "pg_catalog.pg_type_is_visible(t.oid)",
            params,
        )
    )
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_type t "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        f"WHERE t.typtype = 'd' {where} ORDER BY 1, 2"
    )
    return MetaResult(query(conn, sql, params))


_POLICIES = """pg_catalog.array_to_string(ARRAY(
    SELECT pol.polname
        || CASE WHEN NOT pol.polpermissive THEN ' (RESTRICTIVE)' ELSE '' END
        || CASE WHEN pol.polcmd <> '*' THEN ' (' || pol.polcmd::pg_catalog.text || '):' ELSE ':' END
        || CASE WHEN pol.polqual IS NOT NULL
                THEN E'\\n  (u): ' || pg_catalog.pg_get_expr(pol.polqual, pol.polrelid) ELSE '' END
        || CASE WHEN pol.polwithcheck IS NOT NULL
                THEN E'\\n  (c): ' || pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid)
                ELSE '' END
        || CASE WHEN pol.polroles <> '{0}' THEN E'\\n  to: ' || pg_catalog.array_to_string(ARRAY(
                SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = ANY (pol.polroles)
                ORDER BY 1), ', ') ELSE '' END
    FROM pg_catalog.pg_policy pol WHERE pol.polrelid = c.oid), E'\\n')"""


def _privileges(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {"kinds": ["r", "v", "m", "S", "f", "p"]}
    columns = [
        ("Schema", "n.nspname"),
        ("Name", "c.relname"),
        ("Type", KIND_NAMES),
        ("Access privileges", acl("c.relacl")),
        (
            "Column privileges",
            "pg_catalog.array_to_string(ARRAY(SELECT a.attname || E':\\n  ' "
            "|| pg_catalog.array_to_string(a.attacl, E'\\n  ') FROM pg_catalog.pg_attribute a "
            "WHERE a.attrelid = c.oid AND NOT a.attisdropped AND a.attacl IS NOT NULL), E'\\n')",
        ),
        ("Policies", _POLICIES),
    ]
    where = (
        hide_system(command, "n.nspname", toast=False)
        + " "
        + name_filter(
            command.pattern,
            "c.relname",
            "n.nspname",
            "pg_catalog.pg_table_is_visible(c.oid)",
            params,
        )
    )
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f'WHERE c.relkind = ANY(%(kinds)s::"char"[]) {where} ORDER BY 1, 2'
    )
    return MetaResult(query(conn, sql, params))


def _roles(conn: Connection, command: MetaCommand) -> MetaResult:
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
    where = hide + " " + name_filter(command.pattern, "r.rolname", None, None, params)
    sql = (
        'SELECT r.rolname AS "Role name", '
        f"pg_catalog.rtrim({attributes}, ', ') AS \"Attributes\" "
        f"FROM pg_catalog.pg_roles r WHERE true {where} ORDER BY 1"
    )
    return MetaResult(query(conn, sql, params))


def _extensions(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    where = name_filter(command.pattern, "e.extname", None, None, params)
    if command.verbose:
        return _extension_objects(conn, command, where, params)
    columns = [
        ("Name", "e.extname"),
        ("Version", "e.extversion"),
        ("Default version", text("ae.default_version")),
        ("Schema", "n.nspname"),
        ("Description", text("d.description")),
    ]
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_extension e "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "LEFT JOIN pg_catalog.pg_description d ON d.objoid = e.oid "
        "AND d.classoid = 'pg_catalog.pg_extension'::pg_catalog.regclass "
        "LEFT JOIN pg_catalog.pg_available_extensions() AS ae(name, default_version, comment) "
        f"ON ae.name = e.extname WHERE true {where} ORDER BY 1"
    )
    return MetaResult(query(conn, sql, params))


def _extension_objects(
    conn: Connection, command: MetaCommand, where: str, params: dict[str, Any]
) -> MetaResult:
    """``\\dx+ NAME``: the objects that belong to one extension."""
    found = query(
        conn, f"SELECT e.extname FROM pg_catalog.pg_extension e WHERE true {where}", params
    )
    if len(found) != 1:
        what = "no extension matches" if found.empty else f"{len(found)} extensions match"
        raise MetaError(f"\\dx+ lists the objects of one extension; {what} {command.pattern!r}")
    name = str(found.iat[0, 0])
    frame = query(
        conn,
        'SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) AS "Object description" '
        "FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid "
        "WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass "
        "AND d.deptype = 'e' AND e.extname = %(extname)s ORDER BY 1",
        {"extname": name},
    )
    return MetaResult(frame, title=f'Objects in extension "{name}"')


def _databases(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    version = server_version(conn)
    # Locale providers came in 15, ICU rules in 16; 17 renamed daticulocale to datlocale.
    columns = [
        ("Name", "d.datname"),
        ("Owner", "pg_catalog.pg_get_userbyid(d.datdba)"),
        ("Encoding", "pg_catalog.pg_encoding_to_char(d.encoding)"),
        (
            "Locale Provider",
            "CASE d.datlocprovider WHEN 'b' THEN 'builtin' WHEN 'c' THEN 'libc' "
            "WHEN 'i' THEN 'icu' END"
            if version >= 150000
            else "'libc'",
        ),
        ("Collate", "d.datcollate"),
        ("Ctype", "d.datctype"),
        (
            "Locale",
            text("d.datlocale" if version >= 170000 else "d.daticulocale")
            if version >= 150000
            else "''",
        ),
        ("ICU Rules", text("d.daticurules") if version >= 160000 else "''"),
        ("Access privileges", acl("d.datacl")),
    ]
    if command.verbose:
        columns += [
            (
                "Size",
                "CASE WHEN pg_catalog.has_database_privilege(d.datname, 'CONNECT') "
                "OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE') "
                "THEN pg_catalog.pg_size_pretty(pg_catalog.pg_database_size(d.datname)) "
                "ELSE 'No Access' END",
            ),
            ("Tablespace", "t.spcname"),
            ("Description", text("pg_catalog.shobj_description(d.oid, 'pg_database')")),
        ]
    where = name_filter(command.pattern, "d.datname", None, None, params)
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_database d "
        "JOIN pg_catalog.pg_tablespace t ON d.dattablespace = t.oid "
        f"WHERE true {where} ORDER BY 1"
    )
    return MetaResult(query(conn, sql, params))


def _event_triggers(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        ("Name", "e.evtname"),
        ("Event", "e.evtevent"),
        ("Owner", "pg_catalog.pg_get_userbyid(e.evtowner)"),
        (
            "Enabled",
            "CASE e.evtenabled WHEN 'O' THEN 'enabled' WHEN 'R' THEN 'replica' "
            "WHEN 'A' THEN 'always' WHEN 'D' THEN 'disabled' END",
        ),
        ("Function", "e.evtfoid::pg_catalog.regproc::pg_catalog.text"),
        ("Tags", "COALESCE(pg_catalog.array_to_string(e.evttags, ', '), '')"),
    ]
    if command.verbose:
        columns.append(
            ("Description", text("pg_catalog.obj_description(e.oid, 'pg_event_trigger')"))
        )
    where = name_filter(command.pattern, "e.evtname", None, None, params)
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_event_trigger e "
        f"WHERE true {where} ORDER BY 1"
    )
    return MetaResult(query(conn, sql, params))


def _tablespaces(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        ("Name", "spcname"),
        ("Owner", "pg_catalog.pg_get_userbyid(spcowner)"),
        ("Location", "pg_catalog.pg_tablespace_location(oid)"),
    ]
    if command.verbose:
        columns += [
            ("Access privileges", acl("spcacl")),
            ("Options", text("spcoptions")),
            ("Size", "pg_catalog.pg_size_pretty(pg_catalog.pg_tablespace_size(oid))"),
            ("Description", text("pg_catalog.shobj_description(oid, 'pg_tablespace')")),
        ]
    where = name_filter(command.pattern, "spcname", None, None, params)
    sql = f"SELECT {_select(columns)} FROM pg_catalog.pg_tablespace WHERE true {where} ORDER BY 1"
    return MetaResult(query(conn, sql, params))


def _foreign_servers(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        ("Name", "s.srvname"),
        ("Owner", "pg_catalog.pg_get_userbyid(s.srvowner)"),
        ("Foreign-data wrapper", "f.fdwname"),
    ]
    if command.verbose:
        columns += [
            ("Access privileges", acl("s.srvacl")),
            ("Type", text("s.srvtype")),
            ("Version", text("s.srvversion")),
            ("FDW options", options("s.srvoptions")),
            ("Description", text("pg_catalog.obj_description(s.oid, 'pg_foreign_server')")),
        ]
    where = name_filter(command.pattern, "s.srvname", None, None, params)
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_foreign_server s "
        "JOIN pg_catalog.pg_foreign_data_wrapper f ON f.oid = s.srvfdw "
        f"WHERE true {where} ORDER BY 1"
    )
    return MetaResult(query(conn, sql, params))


def _foreign_data_wrappers(conn: Connection, command: MetaCommand) -> MetaResult:
    params: dict[str, Any] = {}
    columns = [
        ("Name", "w.fdwname"),
        ("Owner", "pg_catalog.pg_get_userbyid(w.fdwowner)"),
        ("Handler", "w.fdwhandler::pg_catalog.regproc::pg_catalog.text"),
        ("Validator", "w.fdwvalidator::pg_catalog.regproc::pg_catalog.text"),
    ]
    if command.verbose:
        columns += [
            ("Access privileges", acl("w.fdwacl")),
            ("FDW options", options("w.fdwoptions")),
            ("Description", text("pg_catalog.obj_description(w.oid, 'pg_foreign_data_wrapper')")),
        ]
    where = name_filter(command.pattern, "w.fdwname", None, None, params)
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_foreign_data_wrapper w "
        f"WHERE true {where} ORDER BY 1"
    )
    return MetaResult(query(conn, sql, params))


def _function_source(conn: Connection, command: MetaCommand) -> MetaResult:
    """``\\sf NAME`` or ``\\sf NAME(types)``: the CREATE statement, one line a row."""
    name = command.pattern or ""
    # to_regproc/to_regprocedure answer NULL, not an error, for a name that
    # does not exist or is ambiguous, so a pinned transaction is not aborted.
    lookup = "to_regprocedure" if "(" in name else "to_regproc"
    found = query(
        conn,
        f"SELECT p.oid::pg_catalog.int8 AS oid, p.prokind::pg_catalog.text AS kind "
        f"FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.{lookup}(%(name)s)",
        {"name": name},
    )
    if found.empty:
        raise MetaError(
            f'function "{name}" does not exist, or more than one function has that name '
            f"(then give the argument types: \\sf {name.split('(')[0]}(integer))"
        )
    if found.iat[0, 1] == "a":
        raise MetaError(f'"{name}" is an aggregate function; \\sf shows functions and procedures')
    frame = query(
        conn,
        "SELECT pg_catalog.regexp_split_to_table(pg_catalog.rtrim(pg_catalog.pg_get_functiondef"
        "(%(oid)s::pg_catalog.oid), E'\\n'), E'\\n') AS \"Source code\"",
        {"oid": int(found.iat[0, 0])},
    )
    return MetaResult(frame)


def _settings(conn: Connection, command: MetaCommand) -> MetaResult:
    """``\\dconfig [PATTERN]``: settings; without a pattern, those changed from their default."""
    params: dict[str, Any] = {}
    columns = [("Parameter", "s.name"), ("Value", "pg_catalog.current_setting(s.name)")]
    joins = ""
    if command.verbose:
        columns += [("Type", "s.vartype"), ("Context", "s.context")]
        if server_version(conn) >= 150000:  # GRANT ON PARAMETER came in 15
            columns.append(("Access privileges", acl("p.paracl")))
            joins = (
                "LEFT JOIN pg_catalog.pg_parameter_acl p ON pg_catalog.lower(s.name) = p.parname"
            )
        else:
            columns.append(("Access privileges", "''"))
    if command.pattern is None:
        where = "AND s.source <> 'default' AND s.setting IS DISTINCT FROM s.boot_val"
    else:
        where = name_filter(command.pattern, "pg_catalog.lower(s.name)", None, None, params)
    sql = (
        f"SELECT {_select(columns)} FROM pg_catalog.pg_settings s {joins} "
        f"WHERE true {where} ORDER BY 1"
    )
    return MetaResult(query(conn, sql, params))


LISTS: dict[str, Callable[[Connection, MetaCommand], MetaResult]] = {
    "dn": _schemas,
    "df": _functions,
    "sf": _function_source,
    "dT": _types,
    "dD": _domains,
    "dp": _privileges,
    "du": _roles,
    "dx": _extensions,
    "dy": _event_triggers,
    "db": _tablespaces,
    "des": _foreign_servers,
    "dew": _foreign_data_wrappers,
    "l": _databases,
    "dconfig": _settings,
}
