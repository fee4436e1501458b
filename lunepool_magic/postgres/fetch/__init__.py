"""Large result sets into a DataFrame through ``COPY ... TO STDOUT``, decoded by column.

``fetch_frame(conn, sql, params=None, *, limit=None, on_progress=None)`` runs a
query on the caller's psycopg connection (the pool's, through
``with_connection``; no other driver) and returns exactly the DataFrame that
:func:`lunepool_magic.postgres.query.query` (the row path) would return,
dtypes and values included; or ``None`` when it declines *before anything has
run*, and the caller runs the row path instead.

Why
---

The row path makes a Python object of every value and then packs the objects
into arrays: about 4 µs a row for six columns, and hundreds of bytes of
objects a row on the way. ``COPY`` sends the result as one message per row,
and the values can be decoded a column at a time by numpy and pyarrow.

How: two round trips
--------------------

1. **Probe**, in pipeline mode: ``BEGIN`` (autocommit connection) or
   ``SAVEPOINT`` (inside a transaction), ``current_setting
   ('extra_float_digits')``, and ``SELECT * FROM (<sql>) AS _lunepool_q LIMIT
   0``. ``LIMIT 0`` plans the query but runs none of it (the Limit node never
   pulls a row; volatile functions do not run). Every statement goes through
   the extended protocol, which takes one statement only, as the row path
   does. Without parameters this is three libpq calls (0.1 ms of client time);
   with parameters psycopg binds them, server-side as in the row path, so the
   column types are the row path's. The description gives the column types;
   their dtypes come from the row path's table
   (:func:`~lunepool_magic.postgres.query.column_type`). A statement that
   cannot be wrapped (``SHOW``, ``EXPLAIN``, DML with ``RETURNING``, a
   data-modifying ``WITH``, ``SELECT INTO``, several statements) or that has
   an error fails here: the transaction or savepoint is rolled back and
   ``fetch_frame`` returns None, so that the row path runs it and reports its
   error with the right position. Statements that do not start with
   SELECT/WITH/VALUES/TABLE (after comments and parentheses) are declined
   without a round trip.
2. **COPY**, one simple-protocol message: ``COPY (SELECT ... FROM (<sql>) AS
   _lunepool_q(...) [LIMIT n+1]) TO STDOUT (FORMAT binary|csv); COMMIT`` (or
   ``RELEASE SAVEPOINT``). It runs in the probe's transaction, which holds the
   probe's locks: the types cannot change in between. ``COPY`` takes no bind
   parameters (``COPY (SELECT ... WHERE x = $1)`` is refused by the server),
   so with parameters the COPY text is made by ``psycopg.ClientCursor.mogrify``
   (libpq's quoting, psycopg's adapters); the columns are still parsed as the
   types the probe reported with server-side binding, and the text of a value
   does not depend on whether e.g. a select-list ``%s`` became int2 or int4.
   The probe also guards the simple protocol: a text that would be several
   statements once wrapped has been refused by then.

The rows arrive as one ``CopyData`` message each. The loop over libpq's
``PQgetCopyData`` (async mode) appends them to a ``bytearray``: per row one
C call, one append and one length, which is the floor of going through libpq
(about 0.4 s of client CPU for the 1M-row benchmark table; the server needs
0.55-0.65 s to produce it). Every ~1 MiB the block is decoded and freed;
values grow per column in bytearrays that become the final arrays without a
copy, so memory stays bounded by the DataFrame being built. Between socket
reads the loop waits in poll(2) (Ctrl-C works) and calls ``on_progress(rows,
bytes, elapsed)`` at most every 0.25 s (also while the server has not sent
anything yet), and once at the end with the totals.

Overlap: transfer and decoding overlap with the *server's* work anyway (the
server produces while the client decodes). Decoding in a helper thread
(``BACKGROUND = True``) did not help on the 2-core box this was measured on
(median 1.04 × ADBC against 0.95 × inline over 18 interleaved rounds): the
receiving loop holds the GIL for each row, the server needs the other core,
and the hand-offs cost CPU. It is off by default.

Formats
-------

Server CPU for the 1M-row table: binary 0.55-0.65 s, CSV 1.05-1.15 s (text
output of timestamptz alone costs 0.26 s more: a time zone conversion and
formatting per value). So:

- **binary** when every column is int2/int4/int8/oid, float8, bool,
  text/varchar/bpchar/name, timestamp, timestamptz or date, loaded by one of
  psycopg's own loaders (a loader the application registered is honoured:
  such a column goes the CSV way), and the session makes the row path's text
  exact: ``extra_float_digits >= 1`` (PostgreSQL 12+: shortest exact floats)
  if there are float8 columns, ``DateStyle`` ISO if there are date/time
  columns. Row starts come from the message lengths; then one column at a
  time numpy gathers the field lengths and values at their offsets, any
  alignment. Date/time values Python cannot hold (infinity, years outside
  1..9999 in the session time zone) are exactly those the row path returns
  as the server's text; for each date/time column the COPY adds a text
  column that is non-NULL only outside a safe window (years 2..9998 in UTC),
  and those values go through the row path's own loaders and builder.
- **CSV** otherwise: the same text the row path gets (the same output
  functions), so everything is exact by construction. pyarrow's CSV reader
  (multi-threaded, GIL released) parses a block. int/float/bool/text columns
  are typed by it (float4 via float64, rounded like the row path does);
  every other column (numeric, uuid, json, bytea, arrays, intervals,
  date/time here, enums, records, ...) is read as bytes and loaded value by
  value by psycopg's loader, with the row path's fallbacks for date/time
  values Python cannot hold, then built by the row path's column builder.

No session setting is changed; the choice uses ``DateStyle``, ``TimeZone``
and ``client_encoding`` as the server reported them and
``extra_float_digits`` from the probe.

When it is worth it
-------------------

Measured against ``query()`` on the benchmark table (median ratios of
interleaved calls on one connection, two runs): 1 row 1.8-2.3x slower (0.8
against 0.4 ms: one more round trip, the query planned twice), 100 rows
1.3-1.6x, 1,000 rows 0.6-0.7x, 10,000 rows 0.3x, 100,000 rows 0.2x, 1M rows
about 0.15x. The fixed cost is about 0.4 ms; the fast path wins from a few
hundred rows on.

Declines, transactions, errors, interrupts, limits
--------------------------------------------------

Declines (None; nothing ran): not a query, rejected by the probe, a client
encoding other than UTF-8, a failed transaction, pipeline mode, no columns.

On an autocommit connection probe and COPY run in a transaction of their own,
committed at the end (rolled back on error or interrupt): the connection ends
IDLE as after the row path. Inside a transaction (or on a non-autocommit
connection, where psycopg opens one, as the row path would) they run under a
savepoint released at the end; an error or interrupt during the COPY leaves
the transaction failed, as the row path does.

A server error during the COPY is raised as psycopg's exception once the
connection is clean; its position, if any, counts in the wrapped statement.

A KeyboardInterrupt (or any exception, e.g. from ``on_progress``) during the
probe or the transfer sends a cancel request, drains what the server still
sends (at most ``CANCEL_TIMEOUT`` s), rolls back a transaction of our own and
re-raises. If that fails (a second Ctrl-C, a server that does not stop) the
connection is closed, and the pool discards it: left in a COPY, a connection
would trap code that drains with ``PQgetResult`` alone (it returns the
COPY_OUT result forever).

``limit=N`` wraps the query in ``LIMIT N+1``: the server stops after N+1 rows;
the frame keeps N and ``frame.attrs["truncated"]`` says whether there were
more (the attribute is set only when a limit is given).
"""

from __future__ import annotations

import contextlib
import queue
import re
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import psycopg.sql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import pq
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.pq import ExecStatus, Format
from psycopg.rows import tuple_row

# The row path's type table and column builders: one source of truth for dtypes.
from lunepool_magic.postgres.copyformat import (
    HEADER,
    PG_EPOCH_DAYS,
    PG_EPOCH_US,
    SIGNATURE,
    TRAILER,
)
from lunepool_magic.postgres.query import (
    _INTERVAL_OID,
    _TEMPORAL_OIDS,
    PG_TYPES,
    STRING_DTYPE,
    ColumnType,
    Kind,
    _build,
    _Context,
    _fallback_loader,
    _object_series,
    _Source,
    column_type,
)

__all__ = ["fetch_frame"]

Query = str | bytes | psycopg.sql.Composable
Params = Sequence[Any] | Mapping[str, Any]
Progress = Callable[[int, int, float], object]

#: Rows are decoded in blocks of about this many bytes (1 MiB: a block's
#: field offsets and values stay in the CPU caches while numpy gathers them).
BLOCK_BYTES = 1 << 20
#: ``on_progress`` is called at most this often during the transfer (seconds).
PROGRESS_INTERVAL = 0.25
#: Decode blocks in a helper thread while the next ones arrive.
BACKGROUND = False
#: How long an interrupted COPY may take to wind down before the connection is given up.
CANCEL_TIMEOUT = 5.0

_ALIAS = "_lunepool_q"
_SAVEPOINT = "_lunepool_fastpath"

_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_ACTIVE = pq.TransactionStatus.ACTIVE


class _Declined(Exception):
    """The fast path cannot run this statement; nothing has been executed."""


# --- Statement text ---------------------------------------------------------------------

# Leading blanks, comments (block comments nest in PostgreSQL) and parentheses.
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|\()*")
_QUERY_KEYWORD = re.compile(r"(?i)(?:select|with|values|table)\b")


def _skip_block_comment(text: str, i: int) -> int:
    depth = 0
    n = len(text)
    while i < n:
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _looks_like_a_query(text: str) -> bool:
    """True if the statement starts with SELECT, WITH, VALUES or TABLE."""
    i = 0
    while True:
        i = _LEADING.match(text, i).end()
        if text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        return _QUERY_KEYWORD.match(text, i) is not None


def _statement_text(conn: psycopg.Connection[Any], sql: Query) -> str:
    if isinstance(sql, psycopg.sql.Composable):
        text = sql.as_string(conn)
    elif isinstance(sql, bytes | bytearray | memoryview):
        text = bytes(sql).decode("utf-8")
    else:
        text = sql
    # A trailing ';' would end the statement inside our parentheses.
    return text.rstrip().rstrip(";").rstrip()


# --- Column plans -----------------------------------------------------------------------


def _oid(name: str) -> int:
    return psycopg.postgres.types[name].oid


# psycopg's own text loaders, by class name (C and Python implementations
# share the names): a column is decoded by us only if psycopg would load it with
# one of these, so a loader an application registered is always honoured.
_PSYCOPG_MODULES = ("psycopg.", "psycopg_binary.", "psycopg_c.")
_OWN_LOADERS = {
    **dict.fromkeys(map(_oid, ("int2", "int4", "int8", "oid")), "IntLoader"),
    **dict.fromkeys(map(_oid, ("float4", "float8")), "FloatLoader"),
    _oid("bool"): "BoolLoader",
    **dict.fromkeys(map(_oid, ("text", "varchar", "bpchar", "name", '"char"')), "TextLoader"),
    _oid("timestamp"): "TimestampLoader",
    _oid("timestamptz"): "TimestamptzLoader",
    _oid("date"): "DateLoader",
}

# Binary wire decoders: (decoder, numpy big-endian dtype or None, width).
_BINARY: dict[int, tuple[str, str | None, int]] = {
    _oid("int2"): ("int", ">i2", 2),
    _oid("int4"): ("int", ">i4", 4),
    _oid("int8"): ("int", ">i8", 8),
    _oid("oid"): ("int", ">u4", 4),
    _oid("float8"): ("float", ">f8", 8),
    _oid("bool"): ("bool", None, 1),
    _oid("text"): ("text", None, -1),
    _oid("varchar"): ("text", None, -1),
    _oid("bpchar"): ("text", None, -1),
    _oid("name"): ("text", None, -1),
    _oid("timestamp"): ("timestamp", ">i8", 8),
    _oid("timestamptz"): ("timestamptz", ">i8", 8),
    _oid("date"): ("date", ">i4", 4),
}
_FLOAT_OIDS = frozenset((_oid("float4"), _oid("float8")))
_DATETIME_OIDS = frozenset(map(_oid, ("timestamp", "timestamptz", "date")))

# Values inside these bounds can be held by Python in any session time zone
# (offsets are under a day); values outside go through the row path's loaders.
_SAFE_WINDOW = {
    _oid("timestamp"): ("'0002-01-01 00:00:00'::timestamp", "'9998-12-31 00:00:00'::timestamp"),
    _oid("timestamptz"): (
        "'0002-01-02 00:00:00+00'::timestamptz",
        "'9998-12-30 00:00:00+00'::timestamptz",
    ),
    _oid("date"): ("'0002-01-01'::date", "'9998-12-31'::date"),
}

# CSV: pyarrow types of the columns pyarrow converts itself.
_CSV_ARROW_TYPES = {
    _oid("int2"): pa.int16(),
    _oid("int4"): pa.int32(),
    _oid("int8"): pa.int64(),
    _oid("oid"): pa.uint32(),
    _oid("float4"): pa.float64(),  # then float32, like the row path (str -> float -> float32)
    _oid("float8"): pa.float64(),
    _oid("bool"): pa.bool_(),
}

_NUMPY_STORAGE = {
    "Int16": np.int16,
    "Int32": np.int32,
    "Int64": np.int64,
    "UInt32": np.uint32,
    "Float32": np.float32,
    "Float64": np.float64,
}

# PostgreSQL counts timestamps from 2000-01-01; numpy from 1970-01-01.
_NAT = np.iinfo(np.int64).min


@dataclass(slots=True)
class _Column:
    """One result column: its name, type, how it is decoded, and its values so far.

    Fixed-width values and NULL flags are appended block by block to
    bytearrays, which grow in place (realloc; the kernel remaps large ones
    without copying) and become the final numpy arrays without a copy:
    concatenating per-block arrays at the end would hold every value twice.
    """

    name: str
    oid: int
    ct: ColumnType
    decoder: str  # binary: _BINARY[...][0]; csv: "int", "float", "bool", "text" or "loader"
    values: bytearray = field(default_factory=bytearray)  # fixed-width values, native order
    dtype: Any = None  # their numpy dtype
    nulls: bytearray = field(default_factory=bytearray)  # one bool per row
    pieces: list[Any] = field(default_factory=list)  # text: arrow arrays; loader: value lists
    exceptions: dict[int, bytes] = field(default_factory=dict)  # row -> server text

    def append(self, values: np.ndarray, nulls: np.ndarray) -> None:
        self.dtype = values.dtype
        self.values += memoryview(np.ascontiguousarray(values))
        self.nulls += memoryview(np.ascontiguousarray(nulls, dtype=np.bool_))

    def release(self) -> None:
        self.values = bytearray()
        self.nulls = bytearray()
        self.pieces = []


def _psycopg_loads_it(conn: psycopg.Connection[Any], oid: int) -> bool:
    loader = conn.adapters.get_loader(oid, Format.TEXT)
    return (
        loader is not None
        and loader.__qualname__ == _OWN_LOADERS.get(oid)
        and loader.__module__.startswith(_PSYCOPG_MODULES)
    )


def _exact_float_text(server_version: int, extra_float_digits: int) -> bool:
    """Does float8's text form (what the row path parses) give back the exact double?"""
    if server_version >= 120000:
        return extra_float_digits >= 1  # shortest exact form
    return extra_float_digits >= 3


def _plan(
    conn: psycopg.Connection[Any], fields: list[tuple[str, int]], extra_float_digits: int
) -> tuple[str, list[_Column]]:
    """Choose the COPY format and each column's decoder; ``fields``: (name, type OID)."""
    iso = (conn.info.parameter_status("DateStyle") or "").upper().startswith("ISO")
    floats_exact = _exact_float_text(conn.info.server_version, extra_float_digits)
    types = [(name, oid, column_type(oid, conn.adapters)) for name, oid in fields]

    def binary_ok(oid: int) -> bool:
        if oid not in _BINARY or not _psycopg_loads_it(conn, oid):
            return False
        if oid in _FLOAT_OIDS:
            return floats_exact
        return iso or oid not in _DATETIME_OIDS

    if all(binary_ok(oid) for _, oid, _ in types):
        return "binary", [_Column(name, oid, ct, _BINARY[oid][0]) for name, oid, ct in types]

    columns = []
    for name, oid, ct in types:
        if oid in _CSV_ARROW_TYPES and _psycopg_loads_it(conn, oid):
            decoder = {Kind.INTEGER: "int", Kind.FLOAT: "float", Kind.BOOLEAN: "bool"}[ct.kind]
        elif ct.kind is Kind.STRING and (oid not in PG_TYPES or _psycopg_loads_it(conn, oid)):
            # Listed text types with psycopg's TextLoader, or types psycopg has no
            # loader for (column_type() decided that): both give the decoded text.
            decoder = "text"
        else:
            decoder = "loader"
        columns.append(_Column(name, oid, ct, decoder))
    return "csv", columns


def _copy_statement(text: str, fmt: str, columns: list[_Column], limit: int | None) -> str:
    aliases = [f'"c{j}"' for j in range(len(columns))]
    select = f"{_ALIAS}.*"
    if fmt == "binary":
        # One extra text column per date/time column: the server's text for the
        # values outside the safe window (NULL for all others).
        for j, col in enumerate(columns):
            if col.oid in _SAFE_WINDOW:
                lo, hi = _SAFE_WINDOW[col.oid]
                c = aliases[j]
                select += f", CASE WHEN {c} < {lo} OR {c} >= {hi} THEN {c}::text END"
    query = f"SELECT {select} FROM (\n{text}\n) AS {_ALIAS}({', '.join(aliases)})"
    if limit is not None:
        query += f" LIMIT {limit + 1}"
    return f"COPY ({query}) TO STDOUT (FORMAT {fmt})"


# --- Transfer ---------------------------------------------------------------------------


class _ErrorBeforeCopy(Exception):
    """The COPY statement failed before sending data (nothing executed)."""

    def __init__(self, error: psycopg.Error):
        super().__init__(str(error))
        self.error = error


def _wait(fd: int, write: bool = False, timeout: float | None = None) -> bool:
    """Wait until the socket is readable (or writable); False on timeout.

    poll(2) rather than select(2): no limit on the descriptor's number. Both
    return to Python on a signal, so Ctrl-C raises KeyboardInterrupt here.
    """
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def _send(pgconn: Any, command: bytes) -> None:
    pgconn.send_query(command)
    _flush(pgconn)


def _flush(pgconn: Any) -> None:
    while pgconn.flush():  # non-blocking connection: 1 while data is left to send
        _wait(pgconn.socket, write=True)
        pgconn.consume_input()


def _next_result(pgconn: Any, deadline: float | None = None) -> Any:
    """The next PGresult (None after the last), waiting in poll(2) (interruptible)."""
    while pgconn.is_busy():
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = _wait(pgconn.socket, timeout=timeout)
        if not ready and deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("the server did not finish in time")
        pgconn.consume_input()
    return pgconn.get_result()


def _error(conn: psycopg.Connection[Any], result: Any) -> psycopg.Error:
    return psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


def _finish(conn: psycopg.Connection[Any]) -> None:
    """Read every result left of the statements sent; raise the first server error among them.

    All are read before raising, so the connection is idle again either way.
    """
    pgconn = conn.pgconn
    error = None
    while (result := _next_result(pgconn)) is not None:
        if result.status == ExecStatus.FATAL_ERROR and error is None:
            error = _error(conn, result)
    if error is not None:
        raise error


def _drain(conn: psycopg.Connection[Any]) -> None:
    """After a cancel request: read (and drop) everything until the server is done."""
    pgconn = conn.pgconn
    deadline = time.monotonic() + CANCEL_TIMEOUT
    while pgconn.transaction_status == _ACTIVE:
        result = _next_result(pgconn, deadline)
        if result is None:
            break
        if result.status == ExecStatus.COPY_OUT:
            while True:
                nbytes, _ = pgconn.get_copy_data(1)
                if nbytes > 0:
                    continue
                if nbytes < 0:
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError("the server did not stop the COPY in time")
                _wait(pgconn.socket, timeout=max(0.0, deadline - time.monotonic()))
                pgconn.consume_input()


def _copy_out(
    conn: psycopg.Connection[Any],
    command: bytes,
    consume: Callable[[bytearray, list[int]], None],
    on_progress: Progress | None,
    started: float,
) -> int:
    """Run ``command`` (a COPY TO STDOUT, then more statements); feed blocks to ``consume``.

    Returns the number of bytes received. Raises _ErrorBeforeCopy if
    the COPY failed before it started sending, psycopg's error if a statement
    failed later. The caller holds ``conn.lock`` and cleans up on exceptions.
    """
    pgconn = conn.pgconn
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    wait = poller.poll
    read = pgconn.consume_input
    next_report = started + PROGRESS_INTERVAL

    def pause(rows: int, nbytes: int) -> None:
        """Wait for the socket; report progress on time meanwhile (the server may
        think for long before its first row, and it sends its output in 8 kB
        pieces, even the start of the COPY)."""
        nonlocal next_report
        if on_progress is None:
            wait()
        else:
            now = time.monotonic()
            if now >= next_report:
                on_progress(rows, nbytes, now - started)
                next_report = now + PROGRESS_INTERVAL
            wait(max(1, int((next_report - now) * 1000)))
        read()

    _send(pgconn, command)
    while pgconn.is_busy():
        pause(0, 0)
    result = pgconn.get_result()
    if result is None or result.status != ExecStatus.COPY_OUT:
        error = (
            _error(conn, result)
            if result is not None and result.status == ExecStatus.FATAL_ERROR
            else psycopg.InternalError(f"COPY did not start (result: {result!r})")
        )
        while _next_result(pgconn) is not None:
            pass
        raise _ErrorBeforeCopy(error)

    get = pgconn.get_copy_data
    buf = bytearray()
    lens: list[int] = []
    add = lens.append
    rows = nbytes = 0
    # The hot loop: one iteration per row. Everything per block or per socket
    # read happens in the `size == 0` branch (libpq's buffer is empty).
    while True:
        size, data = get(1)
        if size > 0:
            buf += data
            add(size)
            continue
        if size < 0:
            break
        if len(buf) >= BLOCK_BYTES:
            rows += len(lens)
            nbytes += len(buf)
            consume(buf, lens)
            buf = bytearray()
            lens = []
            add = lens.append
        if on_progress is None:
            wait()
            read()
        else:
            pause(rows + len(lens), nbytes + len(buf))
    rows += len(lens)
    nbytes += len(buf)
    consume(buf, lens)

    _finish(conn)  # the COPY's command status, then the statements after it (COMMIT/RELEASE)
    return nbytes


# --- Binary decoding --------------------------------------------------------------------


class _ProtocolError(psycopg.InternalError):
    """The COPY data did not have the expected layout."""


def _gather(block: bytearray, dtype: str, positions: np.ndarray) -> np.ndarray:
    """Big-endian values of ``dtype`` at byte ``positions`` of ``block`` (any alignment)."""
    width = np.dtype(dtype).itemsize
    view = np.ndarray((len(block) - width + 1,), dtype, block, 0, (1,))
    return view[positions].astype(np.dtype(dtype).newbyteorder("="))


class _BinaryDecoder:
    """Decodes blocks of binary COPY rows, appending to the columns' values."""

    def __init__(self, columns: list[_Column]):
        self.columns = columns
        # Wire columns: the result's, then one text column per date/time column.
        self.extras = [j for j, c in enumerate(columns) if c.oid in _SAFE_WINDOW]
        self.nfields = len(columns) + len(self.extras)
        self.rows = 0
        self.first = True
        self.ended = False

    def __call__(self, block: bytearray, lens_list: list[int]) -> None:
        if not lens_list:
            return
        try:  # rows under 256 bytes (most): 6x faster than np.array
            lens = np.frombuffer(bytearray(lens_list), dtype=np.uint8).astype(np.int64)
        except ValueError:
            lens = np.array(lens_list, dtype=np.int64)
        starts = np.cumsum(lens)
        starts -= lens
        if self.first:
            self.first = False
            if bytes(block[: len(SIGNATURE)]) != SIGNATURE:
                raise _ProtocolError("binary COPY data without the PGCOPY signature")
            extension = int.from_bytes(block[len(HEADER) - 4 : len(HEADER)], "big")
            skip = len(HEADER) + extension
            starts[0] += skip
            lens[0] -= skip
            if lens[0] == 0:  # the header came alone
                starts, lens = starts[1:], lens[1:]
        if len(lens) and lens[-1] == 2 and block[starts[-1] : starts[-1] + 2] == TRAILER:
            starts, lens = starts[:-1], lens[:-1]
            self.ended = True
        nrows = len(starts)
        if nrows == 0:
            return
        block += b"\0" * 8  # gathers at NULL fields may read past the last field
        u8 = np.frombuffer(block, dtype=np.uint8)
        if (_gather(block, ">i2", starts) != self.nfields).any():
            raise _ProtocolError("binary COPY row with an unexpected number of fields")
        pos = starts + 2
        base = self.rows
        ncolumns = len(self.columns)
        for j in range(self.nfields):
            if j < ncolumns:
                col = self.columns[j]
                decoder, dtype, width = _BINARY[col.oid]
            else:  # an exceptions column: text, nearly always NULL
                col = self.columns[self.extras[j - ncolumns]]
                decoder, dtype, width = "exceptions", None, -1
            dpos = pos + 4
            if width > 0:
                # A field length is -1 (NULL, first byte 0xff) or the type's
                # width (first byte 0): one byte tells. Wrong lengths would
                # show in the row-length check below.
                null = u8[pos] == 0xFF
                pos = dpos + width
                pos -= null * width
            elif decoder == "exceptions":
                null = u8[pos] == 0xFF
                pos = dpos
                for i in np.flatnonzero(~null).tolist():
                    start = int(dpos[i])
                    size = int.from_bytes(block[start - 4 : start], "big")
                    col.exceptions[base + i] = bytes(block[start : start + size])
                    pos[i] += size
                continue
            else:
                flen = _gather(block, ">i4", pos)
                null = flen < 0
                lengths = np.where(null, 0, flen).astype(np.int64)
                pos = dpos + lengths
            if decoder == "text":
                col.pieces.append(_string_chunk(u8, dpos, lengths, null))
            elif decoder == "bool":
                col.append(u8[dpos] != 0, null)
            else:
                assert dtype is not None
                col.append(_gather(block, dtype, dpos), null)
        if (pos != starts + lens).any():
            raise _ProtocolError("binary COPY fields do not add up to their rows")
        self.rows += nrows


def _string_chunk(
    u8: np.ndarray, dpos: np.ndarray, lengths: np.ndarray, null: np.ndarray
) -> pa.Array:
    """A large_string array of the bytes at ``dpos`` (``lengths`` long); validates UTF-8."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    index = np.repeat(dpos - offsets[:-1], lengths)
    index += np.arange(total, dtype=np.int64)
    data = u8[index]
    nulls = int(null.sum())
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if nulls else None
    array = pa.LargeStringArray.from_buffers(
        len(lengths), pa.py_buffer(offsets), pa.py_buffer(data), validity, nulls
    )
    array.validate(full=True)  # UTF-8; PostgreSQL sends valid text, but check
    return array


# --- CSV decoding -----------------------------------------------------------------------


class _CsvDecoder:
    """Decodes blocks of CSV COPY rows with pyarrow; loads 'loader' columns with psycopg."""

    def __init__(self, columns: list[_Column], loaders: _Loaders):
        self.columns = columns
        self.rows = 0
        names = [f"c{j}" for j in range(len(columns))]
        types = {}
        self.loads: dict[int, Callable[[bytes], Any]] = {}
        for j, col in enumerate(columns):
            if col.decoder in ("int", "float", "bool"):
                types[names[j]] = _CSV_ARROW_TYPES[col.oid]
            elif col.decoder == "text":
                types[names[j]] = pa.large_string()
            else:
                types[names[j]] = pa.large_binary()
                self.loads[j] = loaders.load_function(col.oid)
        self.read_options = pacsv.ReadOptions(column_names=names, use_threads=True)
        # COPY CSV: NULL is an unquoted empty field, an empty string is "".
        # Quoted fields may hold newlines; an empty line is a one-column NULL row.
        self.parse_options = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
        self.convert_options = pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        )

    def __call__(self, block: bytearray, lens: list[int]) -> None:
        if not lens:
            return
        table = pacsv.read_csv(
            pa.py_buffer(block),
            read_options=self.read_options,
            parse_options=self.parse_options,
            convert_options=self.convert_options,
        )
        if table.num_rows != len(lens):
            raise _ProtocolError("CSV COPY data did not parse into one row per message")
        for j, col in enumerate(self.columns):
            column = table.column(j)
            load = self.loads.get(j)
            if col.decoder == "text":
                col.pieces.extend(column.chunks)
            elif load is None:  # int, float, bool
                fill = False if col.decoder == "bool" else 0
                nulls = column.is_null().to_numpy(zero_copy_only=False)
                col.append(pc.fill_null(column, fill).to_numpy(zero_copy_only=False), nulls)
            else:
                raw = column.to_pylist()
                col.pieces.append([None if v is None else load(v) for v in raw])
                if col.ct.kind is Kind.JSON:  # JSON null loads as None too: keep SQL NULLs
                    col.nulls += memoryview(column.is_null().to_numpy(zero_copy_only=False))
        self.rows += table.num_rows


# --- Decoding in the background ---------------------------------------------------------


class _InBackground:
    """Runs a block decoder in one helper thread, at most ``depth`` blocks behind.

    The receiving loop holds the GIL (it is one Python iteration per row);
    numpy's gathers and pyarrow's parsers release it, so decoding a block
    overlaps with receiving the next one. ``put`` blocks while ``depth``
    blocks wait, so memory stays bounded when decoding is the slower side.
    """

    def __init__(self, decode: Callable[[bytearray, list[int]], None], depth: int = 2):
        self._decode = decode
        self._queue: queue.Queue[tuple[bytearray, list[int]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._work, name="lunepool-fastpath-decoder", daemon=True
        )
        self._thread.start()

    def __call__(self, block: bytearray, lens: list[int]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((block, lens))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._decode(*item)
                except BaseException as exc:  # re-raised in the receiving thread
                    self._error = exc

    def close(self) -> None:
        """Wait until every block is decoded; raise the decoder's error if any."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop without decoding what is left (after an error or interrupt)."""
        self._error = self._error or _Abandoned()
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join(timeout=CANCEL_TIMEOUT)


class _Abandoned(Exception):
    pass


# --- Building the frame -----------------------------------------------------------------


def _arrays(col: _Column, nrows: int) -> tuple[np.ndarray, np.ndarray]:
    """The column's values and NULL flags so far, as numpy arrays (no copy)."""
    values = np.frombuffer(col.values, dtype=col.dtype)[:nrows]
    nulls = np.frombuffer(col.nulls, dtype=np.bool_)[:nrows]
    return values, nulls


def _masked_array(col: _Column, nrows: int) -> Any:
    ct = col.ct
    values, mask = _arrays(col, nrows)
    if col.decoder != "bool":
        values = values.astype(_NUMPY_STORAGE[str(ct.dtype)], copy=False)  # float4: float32
    values[mask] = 0
    if ct.kind is Kind.INTEGER:
        return pd.arrays.IntegerArray(values, mask)
    if ct.kind is Kind.FLOAT:
        return pd.arrays.FloatingArray(values, mask)
    return pd.arrays.BooleanArray(values, mask)


def _string_array(col: _Column, nrows: int) -> Any:
    array = pd.arrays.ArrowStringArray(
        pa.chunked_array(col.pieces, type=pa.large_string()), dtype=STRING_DTYPE
    )
    return array[:nrows] if len(array) > nrows else array


def _datetime_column(col: _Column, nrows: int, src: _Source, j: int, loaders: _Loaders) -> Any:
    raw, null = _arrays(col, nrows)
    exceptions = {i: t for i, t in col.exceptions.items() if i < nrows}
    if col.decoder == "date":
        days = raw.astype(np.int64) + PG_EPOCH_DAYS
        values = days.astype("datetime64[D]").astype(object)  # datetime.date
        values[null] = None
    else:
        micros = raw
        micros += PG_EPOCH_US  # in place; wraps around for infinity: replaced below
        micros[null] = _NAT
        if not exceptions:
            stamps = micros.view("datetime64[us]")
            if col.decoder == "timestamp":
                return stamps
            utc = pd.DatetimeIndex(stamps, tz="UTC")
            return (utc.tz_convert(src.tz) if src.tz is not None else utc).array
        micros[list(exceptions)] = _NAT
        if col.decoder == "timestamp":
            values = micros.view("datetime64[us]").astype(object)  # naive datetime, NaT -> None
        else:
            # psycopg's values: aware datetimes in the session time zone.
            stamps = pd.DatetimeIndex(micros.view("datetime64[us]"), tz="UTC")
            local = stamps.tz_convert(src.tz) if src.tz is not None else stamps
            values = np.array(local.to_pydatetime(), dtype=object)
            values[null] = None
    # Values Python cannot hold, as the row path loads them (mostly the server's text).
    load = loaders.load_function(col.oid)
    for i, text in exceptions.items():
        values[i] = load(text)
    return _build(values.tolist(), col.ct, src, j)


def _column(col: _Column, nrows: int, src: _Source, j: int, loaders: _Loaders) -> Any:
    if nrows == 0:
        return _build((), col.ct, src, j)
    decoder = col.decoder
    if decoder == "text":
        return _string_array(col, nrows)
    if decoder in ("int", "float", "bool"):
        return _masked_array(col, nrows)
    if decoder in ("timestamp", "timestamptz", "date"):
        return _datetime_column(col, nrows, src, j, loaders)
    # "loader": Python values from psycopg's loaders, built like the row path builds them.
    values = [v for piece in col.pieces for v in piece][:nrows]
    if col.ct.kind is Kind.JSON:
        # JSON null is None, SQL NULL is <NA>.
        nulls = np.frombuffer(col.nulls, dtype=np.bool_)[:nrows].tolist()
        return _object_series([pd.NA if n else v for v, n in zip(values, nulls, strict=True)])
    return _build(values, col.ct, src, j)


def _frame(names: list[str], arrays: list[Any], nrows: int) -> pd.DataFrame:
    # As the row path builds its frame (query._frame), duplicate names included.
    index = pd.RangeIndex(nrows)
    if len(set(names)) == len(names):
        return pd.DataFrame(dict(zip(names, arrays, strict=True)), index=index, copy=False)
    frame = pd.DataFrame(dict(enumerate(arrays)), index=index, copy=False)
    frame.columns = pd.Index(names)
    return frame


class _Loaders:
    """psycopg's text loaders plus the row path's fallbacks for date/time values Python
    cannot hold: the adapters the row path uses when psycopg refuses a value
    (query._load_rows). For every value psycopg can load they return what psycopg
    returns. Built on first use: most results never need them.
    """

    def __init__(self, conn: psycopg.Connection[Any]):
        self._conn = conn
        self._transformer: Transformer | None = None

    def load_function(self, oid: int) -> Callable[[bytes], Any]:
        if self._transformer is None:
            adapters = AdaptersMap(self._conn.adapters)
            for temporal in _TEMPORAL_OIDS:
                current = adapters.get_loader(temporal, Format.TEXT)
                if current is not None:
                    fallback = _fallback_loader(current, temporal == _INTERVAL_OID)
                    adapters.register_loader(temporal, fallback)
            self._transformer = Transformer(_Context(adapters, self._conn))
        return self._transformer.get_loader(oid, Format.TEXT).load


# --- The probe --------------------------------------------------------------------------

_SETTING_QUERY = "SELECT current_setting('extra_float_digits')::int"


def _probe_query(text: str) -> str:
    return f"SELECT * FROM (\n{text}\n) AS {_ALIAS} LIMIT 0"


def _probe(
    conn: psycopg.Connection[Any], text: str, params: Params | None, own: bool
) -> tuple[list[tuple[str, int]], int]:
    """Start the transaction or savepoint; return the result's (name, OID)s and the setting.

    One round trip, in pipeline mode. Each statement goes through the extended
    protocol, which takes one statement only: a text that would be more than
    one statement once wrapped is rejected, as the row path rejects it.
    """
    start = "BEGIN" if own else f"SAVEPOINT {_SAVEPOINT}"
    if params is None and (own or conn.pgconn.transaction_status == _INTRANS):
        with conn.lock:
            return _probe_libpq(conn, [start, _SETTING_QUERY, _probe_query(text)])
    # Parameters are bound by psycopg, server-side as in the row path; a
    # connection outside autocommit gets psycopg's own BEGIN first.
    with conn.pipeline():
        # prepare=False: nothing of ours lingers in psycopg's prepared statements.
        conn.execute(start, prepare=False)
        setting = conn.execute(_SETTING_QUERY, prepare=False)
        probe = conn.cursor(row_factory=tuple_row)
        probe.execute(_probe_query(text), params, prepare=False)
    row = setting.fetchone()
    fields = [(c.name, c.type_code) for c in probe.description or ()]
    return fields, int(row[0]) if row else 0


def _probe_libpq(
    conn: psycopg.Connection[Any], queries: list[str]
) -> tuple[list[tuple[str, int]], int]:
    """``_probe`` without psycopg's cursors (a third of the time): libpq's pipeline mode."""
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    pgconn.enter_pipeline_mode()
    try:
        for query in queries:
            pgconn.send_query_params(query.encode(encoding), None)
        pgconn.pipeline_sync()
        _flush(pgconn)
        results = _pipeline_results(pgconn)
    except BaseException:
        _abandon_pipeline(conn)
        raise
    pgconn.exit_pipeline_mode()
    for result in results:
        if result.status == ExecStatus.FATAL_ERROR:
            raise _error(conn, result)
    setting, probe = results[1], results[2]
    fields = [(probe.fname(i).decode(encoding), probe.ftype(i)) for i in range(probe.nfields)]
    return fields, int(setting.get_value(0, 0))


def _pipeline_results(pgconn: Any, deadline: float | None = None) -> list[Any]:
    """Every result of a pipeline, up to its sync point."""
    results = []
    while True:
        result = _next_result(pgconn, deadline)
        if result is None:  # between two queries' results
            if pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("the connection was lost")
            continue
        if result.status == ExecStatus.PIPELINE_SYNC:
            return results
        results.append(result)


def _abandon_pipeline(conn: psycopg.Connection[Any]) -> None:
    """After an interrupt in the probe: cancel, read to the sync point, leave pipeline mode."""
    pgconn = conn.pgconn
    try:
        if pgconn.transaction_status == _ACTIVE:
            conn.cancel_safe(timeout=CANCEL_TIMEOUT)
        _pipeline_results(pgconn, time.monotonic() + CANCEL_TIMEOUT)
        pgconn.exit_pipeline_mode()
    except BaseException:  # a second Ctrl-C, a dead socket, a server that does not stop
        _give_up(conn)


# --- The entry point --------------------------------------------------------------------


def fetch_frame(
    conn: psycopg.Connection[Any],
    sql: Query,
    params: Params | None = None,
    *,
    limit: int | None = None,
    on_progress: Progress | None = None,
) -> pd.DataFrame | None:
    """Run a query through COPY and return its rows as the row path's DataFrame.

    Returns None, having run nothing, when the fast path declines (see the
    module docstring); the caller then runs ``query()``. ``limit`` stops the
    server after ``limit`` rows and sets ``frame.attrs["truncated"]``;
    ``on_progress(rows, bytes, elapsed_seconds)`` is called at most every
    0.25 s during the transfer and once at the end. Parameters use psycopg's
    placeholders, as in ``query()``. Server errors during the transfer are
    raised as psycopg's exceptions; KeyboardInterrupt cancels the query on the
    server first.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    pgconn = conn.pgconn
    if conn.closed or pgconn.pipeline_status != pq.PipelineStatus.OFF:
        return None
    status = pgconn.transaction_status
    if status not in (_IDLE, _INTRANS) or conn.info.encoding != "utf-8":
        return None
    text = _statement_text(conn, sql)
    if not _looks_like_a_query(text):
        return None
    started = time.monotonic()
    own = status == _IDLE and conn.autocommit  # else: under a savepoint

    # 1. Probe: the column types, the float setting; nothing runs (LIMIT 0).
    try:
        fields, extra_float_digits = _probe(conn, text, params, own)
        if not fields:
            raise _Declined("no result columns")
    except BaseException as exc:
        if not conn.closed:
            with contextlib.suppress(Exception):  # else the pool rolls back or discards it
                _undo(conn, own)
        # A statement the server rejects is the row path's to run and report;
        # a lost connection, a lock timeout, an interrupt are not.
        if isinstance(exc, _Declined) or (
            isinstance(exc, psycopg.DatabaseError)
            and not isinstance(exc, psycopg.OperationalError)
            and not conn.closed
        ):
            return None
        raise

    try:
        fmt, columns = _plan(conn, fields, extra_float_digits)
        copy = _copy_statement(text, fmt, columns, limit)
        if params is not None:
            copy = psycopg.ClientCursor(conn).mogrify(copy, params)
        end = "COMMIT" if own else f"RELEASE SAVEPOINT {_SAVEPOINT}"
        command = f"{copy}; {end}".encode()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            _undo(conn, own)
        if isinstance(exc, psycopg.Error):  # parameters psycopg cannot quote: the row path's
            return None
        raise

    # 2. COPY, decoding block by block.
    loaders = _Loaders(conn)
    decoder = _BinaryDecoder(columns) if fmt == "binary" else _CsvDecoder(columns, loaders)
    background = _InBackground(decoder) if BACKGROUND else None
    with conn.lock:
        try:
            nbytes = _copy_out(conn, command, background or decoder, on_progress, started)
            if background is not None:
                background.close()
        except _ErrorBeforeCopy:
            if background is not None:
                background.abandon()
            _undo(conn, own, locked=True)
            return None
        except BaseException:
            if background is not None:
                background.abandon()
            _abandon(conn, own)
            raise

    # 3. The frame.
    rows = decoder.rows
    nrows = rows if limit is None else min(rows, limit)
    if on_progress is not None:
        # The rows the caller gets: the one fetched past a limit only tells it was cut.
        on_progress(nrows, nbytes, time.monotonic() - started)
    tz = conn.info.timezone if any(c.ct.kind is Kind.TIMESTAMPTZ for c in columns) else None
    src = _Source(None, tz)
    arrays = []
    for j, col in enumerate(columns):
        arrays.append(_column(col, nrows, src, j, loaders))
        col.release()
    frame = _frame([c.name for c in columns], arrays, nrows)
    if limit is not None:
        frame.attrs["truncated"] = rows > limit
    return frame


def _undo(conn: psycopg.Connection[Any], own: bool, locked: bool = False) -> None:
    """Undo the probe's transaction or savepoint (after a declined statement)."""
    pgconn = conn.pgconn
    if pgconn.transaction_status not in (_INTRANS, pq.TransactionStatus.INERROR):
        return  # nothing was started (or the connection is busy or broken: the pool's job)
    command = "ROLLBACK" if own else f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE {_SAVEPOINT}"
    with contextlib.nullcontext() if locked else conn.lock:
        _send(pgconn, command.encode())
        _finish(conn)


def _abandon(conn: psycopg.Connection[Any], own: bool) -> None:
    """After an interrupt or error mid-transfer: stop the server, drain, clean up.

    Inside the caller's transaction the transaction is left failed, as the row
    path leaves it. If the connection cannot be made clean in time it is
    closed (the pool then discards it).
    """
    pgconn = conn.pgconn
    try:
        if pgconn.transaction_status == _ACTIVE:
            conn.cancel_safe(timeout=CANCEL_TIMEOUT)
            _drain(conn)
        if own and pgconn.transaction_status != _IDLE:
            _send(pgconn, b"ROLLBACK")
            deadline = time.monotonic() + CANCEL_TIMEOUT
            while _next_result(pgconn, deadline) is not None:
                pass
    except BaseException:  # a second Ctrl-C, a dead socket, a server that does not stop
        _give_up(conn)


def _give_up(conn: psycopg.Connection[Any]) -> None:
    """Close a connection left mid-COPY or mid-pipeline.

    Left open, it would be ACTIVE in a COPY: code that drains results with
    ``PQgetResult`` alone never finishes one (it returns the COPY_OUT result
    again and again). Closed, the pool discards it; the server stops writing
    once the socket is gone.
    """
    with contextlib.suppress(Exception):
        conn.close()
