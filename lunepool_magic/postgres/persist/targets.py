"""Column types known before the values are looked at: recorded by ``%sql``, or the table's.

A DataFrame from ``%sql`` / ``query()`` records each column's type OID and
typmod in ``df.attrs["lunepool_magic.columns"]``, and an existing table
(``mode="append"``) has its own column types. With them, a column that holds
no value still gets its type (an empty object column's dtype says nothing),
json stays json and oid stays oid; and COPY's binary form is used only
where it is that type's own. Type names are resolved on the server
(``format_type``) inside persist's transaction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.adapt import AdaptersMap

from lunepool_magic.postgres.frames import COLUMNS_ATTR, Kind, column_type
from lunepool_magic.postgres.persist.columns import convert
from lunepool_magic.postgres.persist.encoding import Column, null_column, text_only
from lunepool_magic.postgres.persist.errors import PersistError
from lunepool_magic.postgres.persist.literals import server_text
from lunepool_magic.postgres.persist.names import regclass_text
from lunepool_magic.postgres.persist.objects import array_column, json_column, text_array

__all__ = [
    "COLUMNS_ATTR",
    "ServerType",
    "column_for",
    "recorded_types",
    "resolve_types",
    "table_types",
]


# FirstNormalObjectId: OIDs below it are built into PostgreSQL and mean the
# same type in every database. A user type's OID (an enum, a domain, an
# extension's type) names a type in one database only, and the frame may
# come from another, so those are not trusted.
_FIRST_USER_OID = 16384

_JSON_TYPES = frozenset({"json", "jsonb"})
# Types whose binary form is text's (their receive functions read text).
_TEXT_LIKE = frozenset({"text", "character varying", "character", "name"})
# Kinds whose object-dtype columns are the query path's own (the others fall
# back to object dtype only for values their dtype cannot hold).
_OBJECT_KINDS = frozenset({Kind.OBJECT, Kind.JSON, Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.INTERVAL})


@dataclass(frozen=True)
class ServerType:
    """A column type as the server names it."""

    oid: int
    name: str  # format_type(oid, typmod): 'numeric(10,2)', 'character varying(5)', 'integer[]'
    base: str  # format_type(oid, NULL): the same without the modifier
    is_array: bool


def recorded_types(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """The ``(type OID, typmod)`` that ``%sql`` recorded per column, if still true of ``frame``.

    Empty when there is no record, or when its names are not the frame's
    columns in order (a column was added, dropped or renamed since). Only
    built-in types are kept (see ``_FIRST_USER_OID``).
    """
    record = frame.attrs.get(COLUMNS_ATTR)
    if not isinstance(record, (tuple, list)):
        return {}
    try:
        entries = [(str(name), int(oid), int(typmod)) for name, oid, typmod in record]
    except (TypeError, ValueError):
        return {}
    if [name for name, _, _ in entries] != [str(c) for c in frame.columns]:
        return {}
    return {name: (oid, mod) for name, oid, mod in entries if 0 < oid < _FIRST_USER_OID}


_RESOLVE = """
SELECT s.n, t.oid, pg_catalog.format_type(t.oid, s.typmod), pg_catalog.format_type(t.oid, NULL),
       t.typcategory = 'A'
FROM unnest(%s::pg_catalog.oid[], %s::pg_catalog.int4[]) WITH ORDINALITY AS s(oid, typmod, n)
JOIN pg_catalog.pg_type AS t ON t.oid = s.oid
"""

_TABLE = """
SELECT a.attname, a.atttypid, pg_catalog.format_type(a.atttypid, a.atttypmod),
       pg_catalog.format_type(a.atttypid, NULL), t.typcategory = 'A'
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
WHERE a.attrelid = pg_catalog.to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


def resolve_types(
    cursor: psycopg.Cursor[Any], wanted: dict[str, tuple[int, int]]
) -> dict[str, ServerType]:
    """The server's names for the recorded ``(OID, typmod)`` pairs (unknown OIDs left out)."""
    if not wanted:
        return {}
    names = list(wanted)
    oids = [oid for oid, _ in wanted.values()]
    mods = [mod for _, mod in wanted.values()]
    cursor.execute(_RESOLVE, [oids, mods])
    return {
        names[n - 1]: ServerType(oid, name, base, bool(is_array))
        for n, oid, name, base, is_array in cursor.fetchall()
    }


def table_types(cursor: psycopg.Cursor[Any], parts: tuple[str, ...]) -> dict[str, ServerType]:
    """The column types of the table ``parts`` by column name (empty if it does not exist)."""
    cursor.execute(_TABLE, [regclass_text(parts)])
    return {
        column: ServerType(oid, name, base, bool(is_array))
        for column, oid, name, base, is_array in cursor.fetchall()
    }


def column_for(
    name: str,
    series: pd.Series,
    target: ServerType | None,
    *,
    existing: bool,
    adapters: AdaptersMap,
) -> Column:
    """One column to store, of the type ``target`` where the values allow it.

    ``target`` is the recorded type (``existing=False``: persist creates the
    column, and the values may still overrule it) or the existing table's
    (``existing=True``: it decides; only the COPY form is chosen here).
    Without a target the dtype decides (:func:`.columns.convert`).
    """
    if target is None:
        return convert(name, series)
    if _as_sql_makes(series, target.oid, adapters):
        typed = _typed(name, series, target)
        if typed is not None:
            return typed
    column = convert(name, series)
    if not existing:
        return column  # the values are no longer what %sql made of the type: they decide
    if not series.notna().any():
        return null_column(name, target.name, len(series))
    # The table's type decides what the server reads; binary only where it is that type's.
    binary = column.binary if _binary_matches(column.pg_type, target) else None
    return Column(name, target.name, column.text, binary)


def _typed(name: str, series: pd.Series, target: ServerType) -> Column | None:
    """The column as ``target``, for a column holding what %sql makes of it; None if not."""
    values = np.asarray(series, dtype=object) if _is_object(series) else None
    if target.base in _JSON_TYPES and values is not None:
        return json_column(name, target.name, values)
    if not series.notna().any():
        return null_column(name, target.name, len(series))
    if target.is_array and values is not None and _all_lists(series):
        items_are_json = target.base in ("json[]", "jsonb[]")
        return array_column(name, target.name, values, json_items=items_are_json)
    try:
        column = convert(name, series)
    except PersistError:
        if values is None:
            raise
        # Values only psycopg knows (ranges, ...): its text dumper writes them back.
        return text_only(name, target.name, lambda: text_array(values, server_text))
    if _binary_matches(column.pg_type, target):
        return dataclasses.replace(column, pg_type=target.name)
    if values is None:
        # The dtype is the one %sql gives this type (UInt32 for oid, string for
        # money, bit, "char", ...), so the values are its own: their text is its input.
        return Column(name, target.name, column.text, None)
    return None


def _binary_matches(inferred: str, target: ServerType) -> bool:
    """Whether the binary form made for ``inferred`` is the one ``target`` receives."""
    return inferred == target.base or (inferred == "text" and target.base in _TEXT_LIKE)


def _is_object(series: pd.Series) -> bool:
    return isinstance(series.dtype, np.dtype) and series.dtype.kind == "O"


def _all_lists(series: pd.Series) -> bool:
    return all(type(v) is list for v in series[series.notna()])


def _as_sql_makes(series: pd.Series, oid: int, adapters: AdaptersMap) -> bool:
    """Whether the column has the dtype ``%sql`` gives a column of type ``oid``."""
    expected = column_type(oid, adapters)
    dtype = series.dtype
    if _is_object(series):
        return expected.kind in _OBJECT_KINDS
    if expected.kind is Kind.STRING:
        return isinstance(dtype, pd.StringDtype)
    if expected.kind is Kind.TIMESTAMPTZ:
        return isinstance(dtype, pd.DatetimeTZDtype)
    if expected.kind is Kind.TIMESTAMP:
        return isinstance(dtype, np.dtype) and dtype.kind == "M"
    if expected.kind is Kind.INTERVAL:
        return isinstance(dtype, np.dtype) and dtype.kind == "m"
    if expected.kind in _OBJECT_KINDS:
        return False
    return bool(dtype == pd.api.types.pandas_dtype(expected.dtype))
