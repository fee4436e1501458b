"""``persist()``: one transaction that creates (or drops and creates) the table and COPYs.

It types the columns (recorded server types, the existing table's, or the
dtypes), chooses the COPY format, and turns the server's "already exists" /
"does not exist" into :class:`TableExists` / :class:`PersistError` with a hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from lunepool_magic.postgres.persist.blocks import copy_columns
from lunepool_magic.postgres.persist.columns import convert, frame_columns
from lunepool_magic.postgres.persist.encoding import Column
from lunepool_magic.postgres.persist.errors import PersistError, TableExists
from lunepool_magic.postgres.persist.names import display_name, parse_table_name, regclass_text
from lunepool_magic.postgres.persist.targets import (
    column_for,
    recorded_types,
    resolve_types,
    table_types,
)

__all__ = ["PersistResult", "column_types", "persist"]

_MODES = ("create", "append", "replace")


@dataclass(frozen=True)
class PersistResult:
    """What :func:`persist` did: the table (as SQL spells it), rows, columns and time."""

    table: str
    mode: str
    rows: int
    columns: list[tuple[str, str]]  # (column name, PostgreSQL type)
    seconds: float


def column_types(
    frame: pd.DataFrame, conn: psycopg.Connection[Any] | None = None
) -> list[tuple[str, str]]:
    """The (name, PostgreSQL type) pairs :func:`persist` would create for ``frame``.

    Without ``conn`` the dtypes alone decide; with it, the types a ``%sql``
    result recorded are resolved on that server too, as persist does.
    """
    if conn is None:
        return [(c.name, c.pg_type) for c in _by_dtype(frame)]
    with conn.transaction(), conn.cursor() as cursor:
        columns = _with_targets(conn, cursor, frame, None)
    return [(c.name, c.pg_type) for c in columns]


def persist(
    conn: psycopg.Connection[Any],
    frame: pd.DataFrame,
    table: str | tuple[str, ...],
    *,
    mode: str = "create",
    copy_format: str = "auto",
) -> PersistResult:
    """Store ``frame`` as the table ``table``; all or nothing.

    ``table`` is a SQL name (``"orders"``, ``"sales.orders"``, ``'"My
    Table"'``; unquoted parts fold to lower case) or a tuple of exact parts
    (``("sales", "Orders")``). ``mode``: ``"create"`` (raise
    :class:`TableExists` if it exists), ``"append"`` (add the rows to an
    existing table, matching columns by name), ``"replace"`` (drop it if it
    exists, then create). Runs in a transaction of its own, or in a savepoint
    when the connection is inside a transaction; commits nothing else.
    ``copy_format``: ``"auto"`` (COPY's binary format when every column has
    one here and the connection's client encoding is UTF-8, else CSV),
    ``"binary"`` or ``"csv"``.
    Raises :class:`PersistError` for a DataFrame that cannot be stored (before
    anything is written) and psycopg's errors for what the server refuses.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if copy_format not in ("auto", "binary", "csv"):
        raise ValueError(f"copy_format must be 'auto', 'binary' or 'csv', not {copy_format!r}")
    if not isinstance(frame, pd.DataFrame):
        raise PersistError(
            f"only a DataFrame can be persisted, not a {type(frame).__name__}",
            "a Series: series.to_frame(); anything else: pd.DataFrame(value)",
        )
    parts = parse_table_name(table) if isinstance(table, str) else tuple(table)
    shown = display_name(parts)
    started = perf_counter()
    needs_server = mode == "append" or bool(recorded_types(frame))
    # Without server types, every conversion error comes before anything is sent.
    columns = None if needs_server else _by_dtype(frame)
    identifier = sql.Identifier(*parts)
    own_transaction = conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    try:
        with conn.transaction(), conn.cursor() as cursor:
            if columns is None:
                columns = _with_targets(conn, cursor, frame, parts if mode == "append" else None)
            binary = _binary(conn, columns, copy_format)
            created = mode != "append"
            if mode == "replace" and _exists(cursor, parts):
                cursor.execute(sql.SQL("DROP TABLE {}").format(identifier))
            if created:
                definition = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
                    for c in columns
                )
                cursor.execute(sql.SQL("CREATE TABLE {} ({})").format(identifier, definition))
            rows = copy_columns(
                cursor,
                identifier,
                columns,
                total=len(frame),
                binary=binary,
                freeze=created and own_transaction,
            )
    except psycopg.errors.DuplicateTable as exc:
        raise TableExists(
            f"table {shown} already exists; nothing was written",
            "--append adds the rows to it, --replace drops and recreates it "
            "(Python: persist(..., mode='append'|'replace'))",
        ) from exc
    except psycopg.errors.UndefinedTable as exc:
        if mode != "append":
            raise
        raise PersistError(
            f"table {shown} does not exist, so there is nothing to append to",
            "leave out --append to create it",
        ) from exc
    return PersistResult(
        shown, mode, rows, [(c.name, c.pg_type) for c in columns], perf_counter() - started
    )


def _by_dtype(frame: pd.DataFrame) -> list[Column]:
    return [convert(name, series) for name, series in frame_columns(frame)]


def _with_targets(
    conn: psycopg.Connection[Any],
    cursor: psycopg.Cursor[Any],
    frame: pd.DataFrame,
    existing: tuple[str, ...] | None,
) -> list[Column]:
    """The columns typed by the existing table ``existing``, else by the recorded types."""
    if existing is not None:
        targets = table_types(cursor, existing)
    else:
        targets = resolve_types(cursor, recorded_types(frame))
    return [
        column_for(
            name,
            series,
            targets.get(name),
            existing=existing is not None,
            adapters=conn.adapters,
        )
        for name, series in frame_columns(frame)
    ]


def _binary(conn: psycopg.Connection[Any], columns: list[Column], copy_format: str) -> bool:
    """Whether to COPY in binary: asked for, or (auto) possible for every column."""
    if copy_format == "csv":
        return False
    without = [c for c in columns if c.binary is None]
    if copy_format == "binary" and without:
        described = ", ".join(f"{c.name} ({c.pg_type})" for c in without)
        raise PersistError(f"no binary COPY form here for: {described}", "use copy_format='csv'")
    return copy_format == "binary" or (not without and conn.info.encoding == "utf-8")


def _exists(cursor: psycopg.Cursor[Any], parts: tuple[str, ...]) -> bool:
    cursor.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", [regclass_text(parts)])
    row = cursor.fetchone()
    return bool(row and row[0])
