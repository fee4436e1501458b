"""The COPY itself: rows rendered in blocks of a few MB, one ``Copy.write`` each.

Row-by-row loading (``INSERT``, psycopg's ``Copy.write_row``) costs Python
work per value; here a block of rows is assembled by pyarrow and numpy
kernels (CSV by pyarrow's C++ writer, binary fields joined element-wise)
while psycopg's writer thread sends the previous block. The binary layout
comes from :mod:`lunepool_magic.postgres.copyformat`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from lunepool_magic.postgres.copyformat import HEADER, TRAILER
from lunepool_magic.postgres.persist.encoding import NOTHING, Column, Fields

__all__ = ["copy_columns"]

# Rows are rendered and sent in blocks of about this many bytes.
_BLOCK_BYTES = 8 << 20
_FIRST_BLOCK_ROWS = 8192

_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


def copy_columns(
    cursor: psycopg.Cursor[Any],
    identifier: sql.Identifier,
    columns: list[Column],
    *,
    total: int,
    binary: bool,
    freeze: bool,
) -> int:
    """COPY the columns into the table ``identifier``; return the rows copied.

    ``freeze``: the table was created in this transaction, so its rows can be
    written frozen (no later vacuum pass to set their hint bits).
    """
    options = "FORMAT binary" if binary else "FORMAT csv, ENCODING 'UTF8'"
    if freeze:
        options += ", FREEZE"
    column_list = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        identifier, column_list, sql.SQL(options)
    )
    if binary:
        sources: list[Any] = [c.binary() for c in columns]  # type: ignore[misc]
        render = _binary_block
    else:
        sources = [c.text() for c in columns]
        render = _csv_block
    with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
        if binary:
            copy.write(HEADER)
        offset, rows = 0, _FIRST_BLOCK_ROWS
        while offset < total:
            stop = min(total, offset + rows)
            block = render(sources, offset, stop)
            copy.write(block)
            # Aim the next block at _BLOCK_BYTES, from this one's bytes per row.
            per_row = max(1, len(block) // max(1, stop - offset))
            offset, rows = stop, max(1024, _BLOCK_BYTES // per_row)
        if binary:
            copy.write(TRAILER)
    return cursor.rowcount if cursor.rowcount >= 0 else total


def _csv_block(sources: list[pa.Array], start: int, stop: int) -> memoryview:
    table = pa.table(
        [values.slice(start, stop - start) for values in sources],
        names=[f"c{i}" for i in range(len(sources))],
    )
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, write_options=_WRITE_OPTIONS)
    return memoryview(sink.getvalue())


def _binary_block(sources: list[Fields], start: int, stop: int) -> memoryview:
    """Rows start..stop in COPY BINARY: a 2-byte field count, then each field."""
    n = stop - start
    count = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(2), n, [None, pa.py_buffer(np.full(n, len(sources), ">i2"))]
    ).cast(pa.large_binary())
    rows = pc.binary_join_element_wise(
        count, *(fields.encode(start, stop) for fields in sources), NOTHING
    )
    offsets = np.frombuffer(rows.buffers()[1], np.int64, count=n + 1, offset=rows.offset * 8)
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]]
