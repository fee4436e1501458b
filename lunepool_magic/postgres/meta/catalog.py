"""What every backslash command shares: the parsed command, its result, patterns, catalog queries.

The supported server range is decided here, once: PostgreSQL 13 to 18. The
queries use catalogs that 13 has (``attgenerated``, ``prokind``,
``pg_sequence``, ``tgparentid``...) and branch, where a catalog differs
between versions, on :func:`server_version`; an older server gets a clear
error instead of a catalog error in the middle of a command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg

from lunepool_magic.postgres.statement import run

__all__ = [
    "OLDEST_SERVER",
    "MetaCommand",
    "MetaError",
    "MetaResult",
    "check_server_version",
    "hide_system",
    "name_filter",
    "pattern_regexes",
    "query",
    "server_version",
]

OLDEST_SERVER = 130000  # server_version_num of the oldest server the commands support


class MetaError(ValueError):
    """A backslash command that is malformed or not supported; the message says why."""


@dataclass(frozen=True)
class MetaCommand:
    """A parsed command: ``name`` ('dt', 'd', 'l', ...), the S and + modifiers, the pattern."""

    name: str
    system: bool
    verbose: bool
    pattern: str | None
    text: str  # as typed, for messages


@dataclass
class MetaResult:
    """A command's DataFrame; ``title`` and ``footer`` lines are printed around it."""

    frame: pd.DataFrame
    title: str = ""
    footer: list[str] | None = None


def server_version(conn: psycopg.Connection[Any]) -> int:
    """The server's ``server_version_num``; MetaError if it is older than we support."""
    return check_server_version(conn.info.server_version)


def check_server_version(version: int) -> int:
    """``version`` (a ``server_version_num``) if supported, else MetaError saying what to do."""
    if version < OLDEST_SERVER:
        major = (
            version // 10000 if version >= 100000 else f"{version // 10000}.{version // 100 % 100}"
        )
        raise MetaError(
            f"backslash commands need PostgreSQL {OLDEST_SERVER // 10000} or later; "
            f"this server is {major}. "
            "Query the catalogs with plain SQL instead (SELECT ... FROM pg_catalog.pg_class)"
        )
    return version


def query(
    conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Run one catalog SELECT on the caller's connection and return its frame."""
    # Catalog answers are small: the row path (no COPY round trips).
    frame = run(conn, sql, params or None, fast=False).frame
    assert frame is not None  # every query here is a SELECT
    return frame


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


def name_filter(
    pattern: str | None,
    name_column: str | tuple[str, ...],
    schema_column: str | None,
    visible: str | None,
    params: dict[str, Any],
) -> str:
    """The WHERE conditions for a pattern, as psql builds them (values as parameters).

    Without a pattern only what ``visible`` allows is listed (objects on the
    search path); with one, a schema part matches schemas, else ``visible``
    applies too. Several name columns: the name may match any of them.
    """
    if pattern is None:
        return f"AND {visible}" if visible else ""
    schema_regex, name_regex = pattern_regexes(pattern)
    params["name_re"] = name_regex
    columns = (name_column,) if isinstance(name_column, str) else name_column
    matches = " OR ".join(
        f"{column} OPERATOR(pg_catalog.~) %(name_re)s COLLATE pg_catalog.default"
        for column in columns
    )
    conditions = [f"({matches})"]
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


def hide_system(command: MetaCommand, schema_column: str, *, toast: bool = True) -> str:
    """Leave out system schemas, unless S was given or a pattern names what to show."""
    if command.system or command.pattern is not None:
        return ""
    hidden = f"AND {schema_column} <> 'pg_catalog' AND {schema_column} <> 'information_schema'"
    if toast:
        hidden += f" AND {schema_column} !~ '^pg_toast'"
    return hidden
