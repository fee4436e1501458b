"""psql's backslash commands in a cell (``%sql \\dt``, ``%%sql`` + ``\\d orders``), as DataFrames.

One job: read a backslash command, run the catalog queries that answer it on
the caller's connection, and return a DataFrame (through the same
:func:`~lunepool_magic.postgres.statement.run` as every other cell, so the dtypes
are the usual ones). A few queries against ``pg_catalog`` serve better here
than pgspecial: no extra dependency (pgspecial brings click and sqlparse),
and the results are DataFrames with psql's column names rather than text
tables with footers in a status string.

Supported servers: PostgreSQL 13 to 18 (``catalog.OLDEST_SERVER``); the
answers follow psql 18's, and tests compare them with psql on 15 and 18.

Commands (``S`` adds system objects, ``+`` adds columns such as size and
description; a pattern is psql's: ``*`` and ``?`` are wildcards, ``.``
separates schema and name, ``"..."`` keeps case and special characters)::

    \\d [PATTERN]         relations; with a pattern matching one relation: its columns
    \\dt \\dv \\dm \\di \\ds \\dE [S+] [PATTERN]
                         tables, views, materialized views, indexes, sequences,
                         foreign tables
    \\dn[S+]  schemas     \\df[S+]  functions    \\sf NAME  a function's definition
    \\dT[S+]  data types  \\dD[S+]  domains      \\dp (\\z)  access privileges
    \\du[S] (\\dg) roles   \\dx[+]   extensions   \\dy[+]    event triggers
    \\db[+]   tablespaces \\des[+]  foreign servers        \\dew[+]  foreign-data wrappers
    \\l[+]    databases   \\dconfig[+] settings      \\?  this list

``\\d name`` returns the columns (Column, Type, Collation, Nullable,
Default); what psql prints under them (partition key and bound, indexes,
constraints, foreign keys, references, policies, rules, triggers, partition
counts) is in ``frame.attrs["footer"]`` and the title in
``frame.attrs["title"]``; the magic prints both. Display settings (``\\x``,
``\\pset``) and client commands (``\\c``, ``\\i``, ``\\copy``) are not
supported: the message says what to use instead.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg

from lunepool_magic.postgres.meta.catalog import (
    OLDEST_SERVER,
    MetaCommand,
    MetaError,
    MetaResult,
    check_server_version,
    pattern_regexes,
    server_version,
)
from lunepool_magic.postgres.meta.command import HELP, parse_meta
from lunepool_magic.postgres.meta.describe import describe
from lunepool_magic.postgres.meta.lists import LISTS, RELATION_KINDS, list_relations

__all__ = [
    "OLDEST_SERVER",
    "MetaCommand",
    "MetaError",
    "MetaResult",
    "check_server_version",
    "parse_meta",
    "pattern_regexes",
    "run_meta",
]


def run_meta(conn: psycopg.Connection[Any], command: MetaCommand) -> MetaResult:
    """Run ``command`` on ``conn`` (read-only catalog queries) and return its result."""
    name = command.name
    if name == "?":
        return MetaResult(pd.DataFrame(HELP, columns=["Command", "Lists"]))
    server_version(conn)  # an unsupported server fails here, with a clear message
    if name == "d" and command.pattern is not None:
        return describe(conn, command)
    if name in RELATION_KINDS:
        return list_relations(conn, command, RELATION_KINDS[name])
    return LISTS[name](conn, command)
