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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.sql
from psycopg import Column
from psycopg.adapt import Transformer
from psycopg.pq import Format
from psycopg.rows import tuple_row

from lunepool_magic.postgres import outputs
from lunepool_magic.postgres.budget import Limit, ResultTooLarge, RssWatch, give_back_memory
from lunepool_magic.postgres.errors import NoResultSetError
from lunepool_magic.postgres.fetch import fetch
from lunepool_magic.postgres.fetch.plan import Params, Query
from lunepool_magic.postgres.frames import (
    Kind,
    LoaderContext,
    ValueSource,
    build_column,
    column_type,
    fallback_adapters,
    load_rows,
    make_frame,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NoResultSetError", "Result", "execute", "query", "run"]


# --- Public entry points ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)  # eq would compare DataFrames: ambiguous
class Result:
    """What one statement produced.

    ``frame`` is the result set in the asked shape (a pandas DataFrame by
    default; an Arrow table or a polars DataFrame with ``output=``), or None
    when the statement returned none (an UPDATE without RETURNING, a CREATE
    TABLE, SET ...); a SELECT that matches no rows has a frame with zero rows.
    ``status`` is the server's command status (``"SELECT 3"``, ``"INSERT 0
    3"``; empty for an empty statement). ``rowcount`` is the number of rows
    returned or affected, -1 when the server does not say. ``truncated`` is
    True when a ``limit`` cut the result (a DataFrame's ``attrs["truncated"]``
    says the same).
    """

    frame: Any
    status: str
    rowcount: int
    truncated: bool = False


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
    output: str = "pandas",
    max_memory: Limit = None,
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
    is called about every 0.25 s of a fast-path fetch. ``output`` is
    "pandas" (a DataFrame), "arrow" (a pyarrow Table) or "polars" (a polars
    DataFrame); every shape holds the same values (types: docs/types.md).
    ``max_memory`` (bytes, or a function giving them) is the result's memory budget: a result that
    passes it is cancelled on the server, dropped, and ResultTooLarge raised.
    """
    _refuse_nul(sql)
    outputs.check_output(output)
    if isinstance(target, psycopg.Connection):
        if _wants_fast_path(sql, fast):
            fetched = fetch(
                target,
                sql,
                params,
                limit=limit,
                on_progress=on_progress,
                output=output,
                max_memory=max_memory,
            )
            if fetched is not None:
                return Result(
                    fetched.result, f"SELECT {fetched.rows}", fetched.rows, bool(fetched.truncated)
                )
        with target.cursor(row_factory=tuple_row) as cursor:
            return _limited(_watched(cursor, sql, params, output, max_memory), limit, output)
    if isinstance(target, psycopg.ServerCursor) or not isinstance(target, psycopg.Cursor):
        raise TypeError(
            f"run() needs a psycopg.Connection or a client-side psycopg.Cursor, "
            f"not {type(target).__name__}"
        )
    saved = target.row_factory
    target.row_factory = tuple_row
    try:
        return _limited(_watched(target, sql, params, output, max_memory), limit, output)
    finally:
        target.row_factory = saved


def _refuse_nul(sql: Query) -> None:
    """Refuse SQL text holding NUL, which libpq would silently cut short.

    libpq sends SQL as a C string: everything after a NUL is dropped, so
    ``DELETE FROM t\\0 WHERE id = 2`` would run as ``DELETE FROM t``.
    """
    if isinstance(sql, str):
        at = sql.find("\x00")
    elif isinstance(sql, bytes):
        at = sql.find(b"\x00")
    else:
        return
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


def _limited(result: Result, limit: int | None, output: str) -> Result:
    """Cut a row-path result to ``limit`` rows, marking it as the fast path does;
    give it the ``output`` shape (``_run`` makes an Arrow table of other outputs)."""
    frame = result.frame
    if frame is None or (limit is None and output == "pandas"):
        return result
    truncated = limit is not None and len(frame) > limit
    if output != "pandas":
        if truncated:
            frame = frame.slice(0, limit)
        shaped = outputs.convert(frame, output, None if limit is None else truncated)
        return Result(shaped, result.status, len(frame), truncated)
    if truncated:
        frame = frame.iloc[:limit]
    frame.attrs["truncated"] = truncated
    return Result(frame, result.status, len(frame), truncated)


def _watched(
    cursor: psycopg.Cursor[Any],
    sql: Query,
    params: Params | None,
    output: str,
    max_memory: Limit,
) -> Result:
    """``_run`` under the memory budget: libpq gathers the rows where nothing can count
    them, so the process's growth is watched and the query cancelled past it."""
    if max_memory is None:
        return _run(cursor, sql, params, output)
    watch = RssWatch(cursor.connection, max_memory)
    try:
        with watch:
            result = _run(cursor, sql, params, output)
        if not watch.tripped:
            return result
        del result  # complete, but past the budget: dropped all the same
    except psycopg.errors.QueryCanceled:
        if not watch.tripped:
            raise
    give_back_memory()
    raise ResultTooLarge(None, watch.grown, watch.limit)


def _run(
    cursor: psycopg.Cursor[Any], sql: Query, params: Params | None, output: str = "pandas"
) -> Result:
    """Run the statement; its result as a DataFrame, or (other outputs) as an Arrow
    table, converted by ``_limited`` once a limit has cut it."""
    # Text results: psycopg can load every type from text, unknown ones as str.
    cursor.execute(sql, params, binary=False)
    status = cursor.statusmessage or ""
    description = cursor.description  # builds Column objects: once
    if description is None:
        return Result(None, status, cursor.rowcount)
    if output != "pandas":
        return Result(_table(cursor, description), status, cursor.rowcount)
    rows = load_rows(cursor, description)
    return Result(_frame(cursor, description, rows), status, cursor.rowcount)


def _table(cursor: psycopg.Cursor[Any], description: list[Column]) -> Any:
    """The Arrow table of the cursor's result, from the server's text of each value."""
    import pyarrow as pa

    from lunepool_magic.postgres import arrow

    result = cursor.pgresult
    assert result is not None
    nrows = result.ntuples
    tz = cursor.connection.info.timezone
    transformer = Transformer(LoaderContext(fallback_adapters(cursor.adapters), cursor.connection))
    get = result.get_value
    arrays = []
    for j, c in enumerate(description):
        raw = pa.array([get(i, j) for i in range(nrows)], pa.large_binary())
        oid = c.type_code
        arrays.append(
            arrow.from_text(
                raw,
                oid,
                result.fmod(j),
                column_type(oid, cursor.adapters).kind,
                transformer.get_loader(oid, Format.TEXT).load,
                tz,
                lambda item: arrow.element(item, cursor.adapters.types),
            )
        )
    types = [(c.type_code, result.fmod(j)) for j, c in enumerate(description)]
    return outputs.arrow_table([c.name for c in description], arrays, types)


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


def query(
    conn: psycopg.Connection[Any],
    sql: Query,
    params: Params | None = None,
    *,
    output: str = "pandas",
) -> Any:
    """Run a statement that returns rows; return them as a DataFrame.

    ``output="arrow"`` returns a pyarrow Table, ``output="polars"`` a polars
    DataFrame, with the same values. Types follow docs/types.md. Raises NoResultSetError
    when the statement returns no result set (use execute() for those; note
    that the statement has run by then). Runs in the connection's current
    transaction and never commits.
    """
    result = run(conn, sql, params, output=output)
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
