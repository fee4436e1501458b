"""Run one statement; get its rows as a pandas DataFrame with faithful dtypes.

- ``query(conn, sql, params=None) -> DataFrame`` for statements that return rows;
- ``execute(conn, sql, params=None) -> str`` for statements that do not (it
  returns the server's command status, ``"INSERT 0 3"``);
- ``run(conn_or_cursor, sql, params=None) -> Result`` for callers that cannot
  know in advance (the ``%sql`` magic).

None of them commits or rolls back: the statement runs in the connection's
current transaction, and leaving the connection clean is the pool's job. Errors
are psycopg's, with the server's message and no connection details. Dtypes come
from :mod:`lunepool_magic.postgres.frames` (table: docs/types.md); a statement
that reads FROM something may be fetched through COPY instead
(:mod:`lunepool_magic.postgres.fetch`), which returns the same DataFrame.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.sql
from psycopg import Column
from psycopg.rows import tuple_row

from lunepool_magic.postgres.errors import NoResultSetError
from lunepool_magic.postgres.fetch import fetch_frame
from lunepool_magic.postgres.frames import (
    Kind,
    ValueSource,
    build_column,
    column_type,
    load_rows,
    make_frame,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NoResultSetError", "Result", "execute", "query", "run"]

Query = str | bytes | psycopg.sql.Composable
Params = Sequence[Any] | Mapping[str, Any]


# --- Public entry points ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)  # eq would compare DataFrames: ambiguous
class Result:
    """What one statement produced.

    ``frame`` is the DataFrame of the result set, or None when the statement
    returned none (an UPDATE without RETURNING, a CREATE TABLE, SET ...); a
    SELECT that matches no rows has a frame with zero rows. ``status`` is the
    server's command status (``"SELECT 3"``, ``"INSERT 0 3"``; empty for an
    empty statement). ``rowcount`` is the number of rows returned or affected,
    -1 when the server does not say.
    """

    frame: pd.DataFrame | None
    status: str
    rowcount: int


# Which statements try the COPY fast path (postgres/fetch/) when the caller
# leaves it to us. COPY costs one more round trip and a second plan, and is
# several times faster from a few hundred rows on (benchmarks/README.md). A
# statement without FROM (``SELECT 1``, ``SELECT now()``) almost always returns
# one row, so it takes the row path; anything reading from a table, view or
# function may be large and tries COPY. A false guess costs speed only: both
# paths give the same DataFrame (a differential test checks it), and the fast
# path declines what it cannot carry exactly.
_MAY_BE_LARGE = re.compile(r"\bfrom\b", re.IGNORECASE)


def run(
    target: psycopg.Connection[Any] | psycopg.Cursor[Any],
    sql: Query,
    params: Params | None = None,
    *,
    fast: bool | None = None,
    limit: int | None = None,
    on_progress: Callable[[int, int, float], object] | None = None,
) -> Result:
    """Run one statement and return its rows as a DataFrame, or its status.

    ``target`` is a connection (a cursor is opened and closed for the
    statement) or a client-side cursor of the caller's, which may be reused:
    rows are fetched as tuples in text format whatever its row factory (which
    is restored afterwards), and its adapters are not changed. Parameters use
    psycopg's placeholders, ``%s`` or ``%(name)s``. No commit, no rollback.

    On a connection, a query may be fetched through COPY instead
    (:mod:`lunepool_magic.postgres.fetch`): ``fast=True`` always tries it,
    ``False`` never, ``None`` when the statement reads FROM something.
    ``limit`` stops after that many rows (on the server, on the fast path) and
    sets ``frame.attrs["truncated"]``; ``on_progress(rows, bytes, seconds)``
    is called about every 0.25 s of a fast-path fetch.
    """
    _refuse_nul(sql)
    if isinstance(target, psycopg.Connection):
        if _wants_fast_path(sql, fast):
            frame = fetch_frame(target, sql, params, limit=limit, on_progress=on_progress)
            if frame is not None:
                return Result(frame, f"SELECT {len(frame)}", len(frame))
        with target.cursor(row_factory=tuple_row) as cursor:
            return _limited(_run(cursor, sql, params), limit)
    if isinstance(target, psycopg.ServerCursor) or not isinstance(target, psycopg.Cursor):
        raise TypeError(
            f"run() needs a psycopg.Connection or a client-side psycopg.Cursor, "
            f"not {type(target).__name__}"
        )
    saved = target.row_factory
    target.row_factory = tuple_row
    try:
        return _limited(_run(target, sql, params), limit)
    finally:
        target.row_factory = saved


def _refuse_nul(sql: Query) -> None:
    """Refuse SQL text holding NUL, which libpq would silently cut short.

    libpq sends SQL as a C string: everything after a NUL is dropped, so
    ``DELETE FROM t\\0 WHERE id = 2`` would run as ``DELETE FROM t``.
    """
    text = sql if isinstance(sql, (str, bytes)) else None
    if text is not None:
        at = text.find("\x00" if isinstance(text, str) else b"\x00")
        if at >= 0:
            raise psycopg.ProgrammingError(
                f"the SQL text holds a NUL character (\\x00) at offset {at}; PostgreSQL "
                "cannot receive it (libpq would cut the statement there), so nothing was "
                "sent. Remove it; send binary data as a bytes parameter instead."
            )


def _wants_fast_path(sql: Query, fast: bool | None) -> bool:
    if fast is not None:
        return fast
    return isinstance(sql, str) and _MAY_BE_LARGE.search(sql) is not None


def _limited(result: Result, limit: int | None) -> Result:
    """Cut a row-path result to ``limit`` rows, marking it as the fast path does."""
    frame = result.frame
    if limit is None or frame is None:
        return result
    truncated = len(frame) > limit
    if truncated:
        frame = frame.iloc[:limit]
    frame.attrs["truncated"] = truncated
    return Result(frame, result.status, len(frame))


def _run(cursor: psycopg.Cursor[Any], sql: Query, params: Params | None) -> Result:
    # Text results: psycopg can load every type from text, unknown ones as str.
    cursor.execute(sql, params, binary=False)
    status = cursor.statusmessage or ""
    description = cursor.description  # builds Column objects: once
    if description is None:
        return Result(None, status, cursor.rowcount)
    rows = load_rows(cursor, description)
    return Result(_frame(cursor, description, rows), status, cursor.rowcount)


def _frame(
    cursor: psycopg.Cursor[Any], description: list[Column], rows: list[tuple[Any, ...]]
) -> pd.DataFrame:
    """The DataFrame for ``rows`` just fetched from ``cursor`` (its whole result)."""
    types = [column_type(c.type_code, cursor.adapters) for c in description]
    tz = None
    if any(ct.kind is Kind.TIMESTAMPTZ for ct in types):
        tz = cursor.connection.info.timezone
    result = cursor.pgresult
    src = ValueSource(result, tz)
    # Transposing in C and converting whole columns is much cheaper than
    # pandas inferring types row by row.
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(description)
    arrays = [
        build_column(values, ct, src, j)
        for j, (values, ct) in enumerate(zip(columns, types, strict=True))
    ]
    wire = [(c.type_code, result.fmod(j) if result else -1) for j, c in enumerate(description)]
    return make_frame([c.name for c in description], arrays, len(rows), wire)


def query(conn: psycopg.Connection[Any], sql: Query, params: Params | None = None) -> pd.DataFrame:
    """Run a statement that returns rows; return them as a DataFrame.

    Dtypes follow docs/types.md. Raises NoResultSetError
    when the statement returns no result set (use execute() for those; note
    that the statement has run by then). Runs in the connection's current
    transaction and never commits.
    """
    result = run(conn, sql, params)
    if result.frame is None:
        raise NoResultSetError(
            f"the statement returned no rows to make a DataFrame of (server status: "
            f"{result.status!r}); it has run, in the current transaction. Use execute() "
            f"for statements without a result set."
        )
    return result.frame


def execute(conn: psycopg.Connection[Any], sql: Query, params: Params | None = None) -> str:
    """Run a statement and return the server's command status.

    For example ``"CREATE TABLE"``, ``"INSERT 0 3"``, ``"UPDATE 2"``. Rows a
    statement returns are not fetched (use query() or run() for those).
    Runs in the connection's current transaction and never commits.
    """
    _refuse_nul(sql)
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.statusmessage or ""
