"""Store a pandas DataFrame as a PostgreSQL table through COPY: ``%sql --persist df``.

One job: turn a DataFrame into ``CREATE TABLE`` plus one ``COPY ... FROM
STDIN``, all in one transaction. Usable without IPython::

    from lunepool_magic.persist import persist

    with pool.connection() as conn:
        persist(conn, df, "sales.orders")                 # create; error if it exists
        persist(conn, more, "sales.orders", mode="append")
        persist(conn, df, "sales.orders", mode="replace")  # drop and create again

All or nothing
--------------
Everything runs inside ``conn.transaction()``: a transaction of its own on an
autocommit connection, a savepoint inside an open one (the notebook's pinned
``BEGIN``). If anything fails halfway (a value the server rejects, a lost
connection, Ctrl-C), nothing is left behind: no new table, no appended rows,
and with ``replace`` the old table is still there. With ``replace`` the old
table is dropped with a plain ``DROP TABLE``: if views depend on it, the
server refuses and nothing changes (no ``CASCADE``, ever).

Speed
-----
Row-by-row loading (``INSERT``, or psycopg's ``Copy.write_row``) costs
Python work per value. Here each column is converted once, as a whole, and
the rows go to the server in blocks of a few MB, each with one
``Copy.write`` call, while psycopg's writer thread sends the previous block.
When every column has a binary form here (numbers, booleans, text,
timestamps, dates, intervals without months, UUID, bytea, jsonb, numeric:
the usual case) the blocks are in COPY's binary format, assembled by numpy
and pyarrow kernels (a 4-byte length and the value in network byte order per
field; numeric values by psycopg's own C dumper), so the server parses
nothing. Otherwise (time, arrays, inet, intervals with months, the text
that stands for 'infinity' dates, ...) they are CSV rendered by pyarrow's
C++ writer, which PostgreSQL's input functions read. Only object columns
(Decimal, UUID, dict, ...) need Python work per value, as they hold Python
objects anyway.
``benchmarks/bench_persist.py`` compares with ``DataFrame.to_sql``.

Types (DataFrame dtype -> PostgreSQL column type)
-------------------------------------------------
======================================  ==========================  =========================
DataFrame column                        PostgreSQL type             notes
======================================  ==========================  =========================
Int8, Int16, int8, int16, uint8         smallint                    NA -> NULL
Int32, int32, UInt16, uint16            integer
Int64, int64, UInt32, uint32            bigint                      UInt32 comes back Int64
UInt64, uint64                          numeric                     beyond bigint's range
Float32, float32, float16               real
Float64, float64                        double precision            note 1
boolean, bool                           boolean
string, str, object of str              text
datetime64[*] (naive)                   timestamp                   note 2
datetime64[*, tz]                       timestamp with time zone    the same instants
timedelta64[*]                          interval                    note 2
category                                as its values
object of bool / int / float            boolean / bigint / float8   big ints: numeric
object of decimal.Decimal (and int)     numeric                     NaN, ±Infinity kept
object of datetime.datetime             timestamp / timestamptz     naive / aware, not mixed
object of datetime.date                 date
object of datetime.time                 time / timetz               naive / aware
object of timedelta, relativedelta      interval                    months stay months
object of uuid.UUID                     uuid
object of bytes, bytearray, memoryview  bytea
object of dict (lists, JSON scalars)    jsonb                       note 3
object of flat lists of int / float /   bigint[] / float8[] /       NULL items: None;
str / bool / Decimal                    text[] / boolean[] /        nested lists: jsonb
                                        numeric[]
object of ipaddress addresses/networks  inet / cidr
all values missing                      text
pyarrow-backed (ArrowDtype)             as the matching type above  lists, structs: refused
Period, Interval, Sparse, complex       refused, with a hint
======================================  ==========================  =========================

Notes:

1. In a masked float column (``Float64``, what ``%sql`` returns) NaN and
   ±inf are values and ``<NA>`` is NULL, so ``NaN`` stays ``'NaN'``. In a
   numpy ``float64`` column NaN is pandas' missing value and becomes NULL
   (as ``to_sql`` does); ±inf stay ±Infinity.
2. PostgreSQL keeps microseconds: nanoseconds are dropped (truncated
   towards the past). Columns come back from ``SELECT`` as
   ``datetime64[us]`` / ``datetime64[us, <session TimeZone>]``: the same
   instants, possibly a different unit or zone.
3. In a jsonb column SQL NULL is ``pd.NA`` (also NaN, NaT) and Python
   ``None`` is JSON ``null``, exactly as ``%sql`` reads them back (so a
   column of lists next to ``None`` is jsonb; in an array column NULL is
   ``pd.NA``). Values must be what ``json.dumps`` takes (dict, list, str,
   int, float without NaN, bool, None).

Round trip: for every column type that ``%sql`` returns (the table in
:mod:`lunepool_magic.postgres.statement`), persisting the DataFrame and reading
the table back with ``SELECT *`` gives an equal DataFrame; the exceptions
are ``oid`` (UInt32, stored as bigint: Int64 back) and a jsonb column whose
values are all strings or all numbers (stored as text or numbers). Other DataFrames
come back with the dtypes ``%sql`` uses: numpy ``int64`` as ``Int64``,
``float64`` as ``Float64``, ``datetime64[ns]`` as ``datetime64[us]``, ``date``
objects stay objects.

Names: column names are used exactly as they are (quoted: ``"Price"`` keeps
its capital); they must be unique, non-empty and at most 63 bytes. The index
is written only if it has a name (each named level becomes a column, as
``reset_index()`` would do); an unnamed index is left out. The table name is
SQL: unquoted parts are folded to lower case (``Sales.Q1`` is ``sales.q1``),
double-quoted parts are kept (``"Sales"."Q1"``), and it is always sent as a
quoted identifier (never pasted into SQL).
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.copy import QueuedLibpqWriter

from lunepool_magic.postgres.copyformat import HEADER, PG_EPOCH_DAYS, PG_EPOCH_US, TRAILER

__all__ = [
    "PersistError",
    "PersistResult",
    "TableExists",
    "column_types",
    "parse_table_name",
    "persist",
]

#: What PostgreSQL allows in an identifier (NAMEDATALEN - 1), in bytes.
MAX_IDENTIFIER_BYTES = 63

# Rows are rendered and sent in blocks of about this many bytes.
_BLOCK_BYTES = 8 << 20
_FIRST_BLOCK_ROWS = 8192

_MODES = ("create", "append", "replace")


class PersistError(ValueError):
    """The DataFrame cannot be stored as asked; the message says why and what to do.

    ``hint`` is a second line of advice (may be empty).
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class TableExists(PersistError):
    """``mode="create"`` and the table is already there."""


@dataclass(frozen=True)
class PersistResult:
    """What :func:`persist` did: the table (as SQL spells it), rows, columns and time."""

    table: str
    mode: str
    rows: int
    columns: list[tuple[str, str]]  # (column name, PostgreSQL type)
    seconds: float


# ------------------------------------------------------------------ table name


def parse_table_name(text: str) -> tuple[str, ...]:
    """``'Sales."Q1"'`` -> ``('sales', 'Q1')``: SQL's rules for a possibly qualified name.

    Unquoted parts are folded to lower case, as the server folds them;
    double-quoted parts are kept exactly (``""`` is a quote). At most two
    parts (schema and table).
    """
    parts: list[str] = []
    current: list[str] = []
    quoted_part = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = i + 1
            chunk = []
            while True:
                close = text.find('"', end)
                if close < 0:
                    raise PersistError(f"unclosed quote in the table name {text!r}")
                chunk.append(text[end:close])
                if text.startswith('"', close + 1):  # "" is a literal quote
                    chunk.append('"')
                    end = close + 2
                    continue
                break
            current.append("".join(chunk))
            quoted_part = True
            i = close + 1
        elif char == ".":
            parts.append(_finish_part(current, quoted_part, text))
            current, quoted_part = [], False
            i += 1
        elif char.isspace():
            raise PersistError(
                f"the table name {text!r} has a space; quote it: '\"My Table\"'",
            )
        else:
            current.append(char.lower())
            i += 1
    parts.append(_finish_part(current, quoted_part, text))
    if len(parts) > 2:
        raise PersistError(f"the table name {text!r} has more than two parts (schema.table)")
    return tuple(parts)


def _finish_part(current: list[str], quoted: bool, text: str) -> str:
    part = "".join(current)
    if not part:
        raise PersistError(f"the table name {text!r} has an empty part")
    if not quoted and not (part[0].isalpha() or part[0] == "_"):
        raise PersistError(
            f"the table name {text!r} does not start with a letter; quote it: '\"{part}\"'"
        )
    return part


def _display_name(parts: tuple[str, ...]) -> str:
    """The name as one would type it in SQL (quoted only where needed)."""
    return ".".join(_display_part(p) for p in parts)


def _display_part(part: str) -> str:
    if part.isidentifier() and part == part.lower() and part.isascii():
        return part
    return '"' + part.replace('"', '""') + '"'


# ------------------------------------------------------------------ columns
#
# Each DataFrame column becomes a _Column: its PostgreSQL type and two ways to
# send its values, made only when needed: ``text()`` gives a pyarrow array
# whose CSV form PostgreSQL's input functions read, ``binary()`` (None when
# there is no binary form here) gives the fields of COPY's binary format. The
# binary format is used when every column has one: the server then parses
# nothing (text timestamps and floats cost it several times more), and the
# fields are built by numpy and pyarrow kernels, a block of rows at a time.

_NULL_FIELD = pa.scalar(b"\xff\xff\xff\xff", pa.large_binary())  # length -1: NULL
_NOTHING = pa.scalar(b"", pa.large_binary())


class _Fields:
    """A column's fields in COPY BINARY: a 4-byte big-endian length, then the value."""

    def encode(self, start: int, stop: int) -> pa.Array:  # pragma: no cover (abstract)
        raise NotImplementedError


class _FixedFields(_Fields):
    """Fixed-width values: a 1-D numpy array in network byte order, and which are valid."""

    def __init__(self, values: np.ndarray, valid: np.ndarray | None) -> None:
        self._values = np.ascontiguousarray(values)
        self._width = self._values.dtype.itemsize
        self._valid = valid if valid is not None and not valid.all() else None
        self._length = np.frombuffer(np.array([self._width], ">i4").tobytes(), np.uint8)

    def encode(self, start: int, stop: int) -> pa.Array:
        n = stop - start
        width = self._width
        fields = np.empty((n, 4 + width), np.uint8)
        fields[:, :4] = self._length
        fields[:, 4:] = self._values[start:stop].view(np.uint8).reshape(n, width)
        array = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(4 + width), n, [None, pa.py_buffer(fields)]
        ).cast(pa.large_binary())
        if self._valid is not None:
            array = pc.if_else(pa.array(self._valid[start:stop]), array, _NULL_FIELD)
        return array


class _VarFields(_Fields):
    """Variable-length values: a pyarrow large_binary array (NULL where missing)."""

    def __init__(self, payload: pa.Array) -> None:
        self._payload = payload

    def encode(self, start: int, stop: int) -> pa.Array:
        chunk = self._payload.slice(start, stop - start)
        lengths = pc.fill_null(pc.binary_length(chunk), 0).to_numpy(zero_copy_only=False)
        prefix = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(4), len(chunk), [None, pa.py_buffer(lengths.astype(">i4"))]
        ).cast(pa.large_binary())
        fields = pc.binary_join_element_wise(prefix, chunk, _NOTHING)  # NULL stays NULL
        return pc.fill_null(fields, _NULL_FIELD)


@dataclass(frozen=True)
class _Column:
    """One column to store: its name, PostgreSQL type and its values for COPY."""

    name: str
    pg_type: str
    text: Callable[[], pa.Array]
    binary: Callable[[], _Fields] | None


def _frame_columns(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The columns to store: named index levels first, then the DataFrame's columns."""
    columns: list[tuple[str, pd.Series]] = []
    index = frame.index
    for level, name in enumerate(index.names):
        if name is not None:
            values = index.get_level_values(level)
            columns.append((str(name), pd.Series(values, index=frame.index, copy=False)))
    for position, name in enumerate(frame.columns):
        columns.append((str(name), frame.iloc[:, position]))
    seen: set[str] = set()
    for name, _ in columns:
        if not name:
            raise PersistError("a column has an empty name; rename it (df.rename(columns=...))")
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:
            raise PersistError(
                f"the column name {name!r} is longer than PostgreSQL's "
                f"{MAX_IDENTIFIER_BYTES} bytes; rename it"
            )
        if name in seen:
            raise PersistError(
                f"two columns are named {name!r} (an index level counts as a column); rename one"
            )
        seen.add(name)
    if not columns:
        raise PersistError("the DataFrame has no columns: a table needs at least one")
    return columns


def column_types(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (name, PostgreSQL type) pairs :func:`persist` would create for ``frame``."""
    return [(c.name, c.pg_type) for c in _columns(frame)]


def _columns(frame: pd.DataFrame) -> list[_Column]:
    return [_convert(name, series) for name, series in _frame_columns(frame)]


_INT_TYPES = {1: "smallint", 2: "smallint", 4: "integer", 8: "bigint"}
_UINT_TYPES = {1: "smallint", 2: "integer", 4: "bigint"}


def _convert(name: str, series: pd.Series) -> _Column:
    """The PostgreSQL type of one column and how to send its values."""
    dtype = series.dtype
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            return _convert_objects(name, np.asarray(series, dtype=object))
        if isinstance(dtype, pd.ArrowDtype):
            return _convert_arrow(name, pa.array(series.array))
        if isinstance(dtype, pd.DatetimeTZDtype):
            return _arrow_column(name, "timestamp with time zone", pa.array(series.array))
        if isinstance(dtype, pd.StringDtype):
            return _arrow_column(name, "text", pa.array(series.array, type=pa.large_string()))
        if isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype, pd.SparseDtype)):
            raise _unsupported(name, str(dtype))
        kind = dtype.kind  # masked dtypes (Int64, Float64, boolean) have numpy's kinds
        if kind == "b":
            return _arrow_column(name, "boolean", pa.array(series.array, type=pa.bool_()))
        if kind == "i":
            return _arrow_column(name, _INT_TYPES[dtype.itemsize], pa.array(series.array))
        if kind == "u":
            if dtype.itemsize == 8:
                return _arrow_column(name, "numeric", pa.array(series.array))
            return _arrow_column(name, _UINT_TYPES[dtype.itemsize], pa.array(series.array))
        if kind == "f":
            return _float_column(name, series)
        if kind == "M":
            return _arrow_column(name, "timestamp without time zone", pa.array(series.array))
        if kind == "m":
            return _arrow_column(name, "interval", pa.array(series.array))
        if kind == "O":
            return _convert_objects(name, np.asarray(series, dtype=object))
    except PersistError:
        raise
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise PersistError(
            f"column {name!r} ({dtype}) could not be converted: {exc}",
            "convert it to a simpler type first (df[...].astype(...))",
        ) from exc
    raise _unsupported(name, str(dtype))


def _unsupported(name: str, what: str) -> PersistError:
    return PersistError(
        f"column {name!r} holds {what}, which has no PostgreSQL type here",
        "convert it first, e.g. df[col].astype(str), or drop it",
    )


def _float_column(name: str, series: pd.Series) -> _Column:
    pg_type = "real" if series.dtype.itemsize <= 4 else "double precision"
    array = series.array
    if isinstance(array, pd.arrays.FloatingArray):
        # Masked: NaN is a value, only <NA> is NULL (pyarrow keeps the NaN).
        values = pa.array(array)
    else:
        # numpy float: NaN is pandas' missing value, stored as NULL (like to_sql).
        values = pa.array(np.asarray(array), from_pandas=True)
    if values.type == pa.float16():
        values = values.cast(pa.float32())
    return _arrow_column(name, pg_type, values)


# --- Columns held as pyarrow arrays of their natural type ------------------------------

_FIXED_DTYPES = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "boolean": "u1",
}


def _arrow_column(name: str, pg_type: str, values: pa.Array) -> _Column:
    """A column whose values are a pyarrow array; both COPY forms are derived from it."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return _Column(
        name,
        pg_type,
        lambda: _arrow_text(pg_type, values),
        None if pg_type == "numeric" else lambda: _arrow_fields(pg_type, values),
    )


def _valid(values: pa.Array) -> np.ndarray | None:
    if values.null_count == 0:
        return None
    return values.is_valid().to_numpy(zero_copy_only=False)


def _numbers(values: pa.Array, zero: Any = 0) -> np.ndarray:
    """The values as numpy, NULLs as ``zero`` (their fields are replaced anyway)."""
    if values.null_count:
        values = pc.fill_null(values, pa.scalar(zero, values.type))
    return values.to_numpy(zero_copy_only=False)


def _micros(values: pa.Array) -> np.ndarray:
    """int64 microseconds of timestamps/durations (any unit; nanoseconds are dropped)."""
    ints = _numbers(values.cast(pa.int64()))
    unit = values.type.unit
    if unit == "ns":
        return np.floor_divide(ints, 1000)
    return ints * _UNIT_MICROSECONDS[unit]


_UNIT_MICROSECONDS = {"s": 1_000_000, "ms": 1000, "us": 1}

_INTERVAL_DTYPE = np.dtype([("time", ">i8"), ("days", ">i4"), ("months", ">i4")])


def _arrow_fields(pg_type: str, values: pa.Array) -> _Fields:
    valid = _valid(values)
    if pg_type in _FIXED_DTYPES:
        zero: Any = False if pg_type == "boolean" else 0
        return _FixedFields(_numbers(values, zero).astype(_FIXED_DTYPES[pg_type]), valid)
    if pg_type == "text":
        return _VarFields(values.cast(pa.large_binary()))
    if pg_type.startswith("timestamp"):  # timezone-aware values are UTC inside
        return _FixedFields((_micros(values) - PG_EPOCH_US).astype(">i8"), valid)
    if pg_type == "date":
        days = _numbers(values.cast(pa.int32())).astype(np.int64) - PG_EPOCH_DAYS
        return _FixedFields(days.astype(">i4"), valid)
    if pg_type == "interval":
        fields = np.zeros(len(values), _INTERVAL_DTYPE)
        fields["time"] = _micros(values)
        return _FixedFields(fields, valid)
    raise AssertionError(f"no binary form for {pg_type}")  # pragma: no cover


def _arrow_text(pg_type: str, values: pa.Array) -> pa.Array:
    if pg_type == "timestamp with time zone":
        return _utc_text(values)
    if pg_type == "timestamp without time zone" and values.type.unit == "ns":
        return values.cast(pa.timestamp("us"), safe=False)  # microseconds, as in binary
    if pg_type == "interval":
        return _interval_text(values)
    if pg_type == "numeric":
        return pc.cast(values, pa.large_string())
    return values


def _utc_text(values: pa.Array) -> pa.Array:
    """Aware timestamps as UTC text with an explicit offset: ``2024-01-02 03:04:05.000006+00``.

    (pyarrow's CSV writer formats aware timestamps ten times slower than
    naive ones; dropping the zone keeps the UTC wall time, and the suffix
    makes the server read it as UTC whatever its TimeZone setting.)
    """
    naive = values.cast(pa.timestamp(values.type.unit)).cast(pa.timestamp("us"), safe=False)
    return _with_suffix(pc.cast(naive, pa.large_string()), "+00")


def _interval_text(values: pa.Array) -> pa.Array:
    """Durations as interval input, ``'<microseconds> us'`` (nanoseconds dropped)."""
    micros = pa.array(_micros(values), mask=~_valid(values) if values.null_count else None)
    return _with_suffix(pc.cast(micros, pa.large_string()), " us")


def _with_suffix(text: pa.Array, suffix: str) -> pa.Array:
    """``text`` with ``suffix`` after each value (NULL stays NULL)."""
    kind = pa.large_string()
    return pc.binary_join_element_wise(text, pa.scalar(suffix, kind), pa.scalar("", kind))


_ARROW_SIMPLE = (
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_int8, "smallint"),
    (pa.types.is_int16, "smallint"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_int64, "bigint"),
    (pa.types.is_uint8, "smallint"),
    (pa.types.is_uint16, "integer"),
    (pa.types.is_uint32, "bigint"),
    (pa.types.is_uint64, "numeric"),
    (pa.types.is_decimal, "numeric"),
    (pa.types.is_float16, "real"),
    (pa.types.is_float32, "real"),
    (pa.types.is_float64, "double precision"),
    (pa.types.is_string, "text"),
    (pa.types.is_large_string, "text"),
    (pa.types.is_date32, "date"),
    (pa.types.is_duration, "interval"),
)


def _convert_arrow(name: str, values: pa.Array) -> _Column:
    """A pyarrow-backed column (``int64[pyarrow]``, ``timestamp[us][pyarrow]``, ...)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    arrow_type = values.type
    if pa.types.is_float16(arrow_type):
        values = values.cast(pa.float32())
    if pa.types.is_date64(arrow_type):
        values = values.cast(pa.date32())
        arrow_type = values.type
    for test, pg_type in _ARROW_SIMPLE:
        if test(arrow_type):
            return _arrow_column(name, pg_type, values)
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.tz is None:
            return _arrow_column(name, "timestamp without time zone", values)
        return _arrow_column(name, "timestamp with time zone", values)
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return _convert_objects(name, np.asarray(values.to_pylist(), dtype=object))
    raise _unsupported(name, f"pyarrow {arrow_type}")


# --- Object columns: the Python values decide -----------------------------------------

_MISSING_TYPES = (type(None), type(pd.NA), type(pd.NaT))


_MISSING_TYPE_SET = frozenset(_MISSING_TYPES)
_FLOAT_TYPES = frozenset({float, np.float64, np.float32, np.float16})


def _is_missing(value: Any) -> bool:
    """None, pd.NA, pd.NaT, or a float NaN (pandas' missing values in object columns)."""
    kind = type(value)
    return kind in _MISSING_TYPE_SET or (kind in _FLOAT_TYPES and value != value)


def _is_sql_null_in_json(value: Any) -> bool:
    # In a jsonb column Python None is JSON null; pandas' missing values are NULL.
    return value is not None and _is_missing(value)


def _subclass(types: set[type], *bases: type) -> bool:
    return bool(types) and all(issubclass(t, bases) for t in types)


def _text_only(name: str, pg_type: str, make: Callable[[], pa.Array]) -> _Column:
    """A column sent as text only (no binary form here: numeric, time, arrays, inet...)."""
    return _Column(name, pg_type, make, None)


def _convert_objects(name: str, values: np.ndarray) -> _Column:
    types = set(map(type, values))
    present = {t for t in types if not issubclass(t, _MISSING_TYPES)}
    if float in present or np.float64 in present:
        # NaN in an object column is pandas' missing value (a category's, too).
        present = {type(v) for v in values if not _is_missing(v)}
    if not present:
        return _arrow_column(name, "text", pa.nulls(len(values), pa.large_string()))
    if _subclass(present, str):
        return _arrow_column(name, "text", _text_array(values, str))
    if _subclass(present, bool, np.bool_):
        return _arrow_column(name, "boolean", pa.array(_nullable(values, bool), pa.bool_()))
    if _subclass(present, int, np.integer) and not _subclass(present, bool, np.bool_):
        ints = _nullable(values, int)
        if all(v is None or -(2**63) <= v < 2**63 for v in ints):
            return _arrow_column(name, "bigint", pa.array(ints, type=pa.int64()))
        return _numeric_objects(name, values)
    if _subclass(present, float, int, np.floating, np.integer):
        floats = pa.array(_nullable(values, float), pa.float64())
        return _arrow_column(name, "double precision", floats)
    if _subclass(present, decimal.Decimal, int, np.integer):
        return _numeric_objects(name, values)
    temporal = present - {str}
    fallback_text = str in present
    if fallback_text and temporal and _subclass(temporal, dt.date, dt.time, dt.timedelta):
        # %sql reads dates and times Python cannot hold ('infinity', BC years,
        # '24:00:00') as the server's text: they go back as that text.
        present = temporal
    if _subclass(present, dt.datetime):
        return _datetime_objects(name, values, fallback_text)
    if _subclass(present, dt.date):
        if fallback_text:
            return _text_only(name, "date", lambda: _text_array(values, dt.date.isoformat))
        return _arrow_column(name, "date", pa.array(_nullable(values, _same), pa.date32()))
    if _subclass(present, dt.time):
        aware = {v.tzinfo is not None for v in _present(values) if type(v) is not str}
        if len(aware) > 1:
            raise PersistError(f"column {name!r} mixes naive and time-zone-aware times")
        pg_type = "time with time zone" if aware == {True} else "time without time zone"
        return _text_only(name, pg_type, lambda: _text_array(values, dt.time.isoformat))
    if _subclass(present, dt.timedelta, np.timedelta64) or _is_relativedelta(present):
        if _subclass(present, dt.timedelta) and not fallback_text:
            micros = [None if _is_missing(v) else _timedelta_micros(v) for v in values]
            return _arrow_column(name, "interval", pa.array(micros, pa.duration("us")))
        return _text_only(name, "interval", lambda: _text_array(values, _interval_literal))
    if _subclass(present, uuid.UUID):
        return _Column(name, "uuid", lambda: _text_array(values, str), lambda: _uuid_fields(values))
    if _subclass(present, bytes, bytearray, memoryview):
        payload = pa.array(_nullable(values, bytes), pa.large_binary())
        return _Column(
            name, "bytea", lambda: _text_array(values, _bytea_literal), lambda: _VarFields(payload)
        )
    if _subclass(present, ipaddress.IPv4Address, ipaddress.IPv6Address):
        return _text_only(name, "inet", lambda: _text_array(values, str))
    if _subclass(present, ipaddress.IPv4Interface, ipaddress.IPv6Interface):
        return _text_only(name, "inet", lambda: _text_array(values, str))
    if _subclass(present, ipaddress.IPv4Network, ipaddress.IPv6Network):
        return _text_only(name, "cidr", lambda: _text_array(values, str))
    if any(issubclass(t, (list, dict)) for t in present) and _subclass(
        present, list, dict, str, int, float, bool
    ):
        # JSON: objects and arrays, maybe next to JSON's scalars (as %sql reads jsonb).
        return _json_or_array(name, values, json_null=type(None) in types)
    described = ", ".join(sorted(t.__name__ for t in present))
    raise _unsupported(name, f"Python objects of type {described}")


def _same(value: Any) -> Any:
    return value


def _numeric_objects(name: str, values: np.ndarray) -> _Column:
    """Decimal (and int) values: numeric, in binary through psycopg's own (C) dumper."""

    def fields() -> _Fields:
        dump = psycopg.adapters.get_dumper(decimal.Decimal, PyFormat.BINARY)(decimal.Decimal).dump
        payloads = [
            None if _is_missing(v) else bytes(dump(v if type(v) is decimal.Decimal else
                                                   decimal.Decimal(int(v))))
            for v in values
        ]  # fmt: skip
        return _VarFields(pa.array(payloads, pa.large_binary()))

    return _Column(name, "numeric", lambda: _text_array(values, str), fields)


def _datetime_objects(name: str, values: np.ndarray, fallback_text: bool) -> _Column:
    aware = {
        v.tzinfo is not None and v.utcoffset() is not None
        for v in _present(values)
        if type(v) is not str
    }
    if len(aware) > 1:
        raise PersistError(
            f"column {name!r} mixes naive and time-zone-aware datetimes",
            "make them all aware (or all naive) first, e.g. pd.to_datetime(col, utc=True)",
        )
    pg_type = "timestamp with time zone" if aware == {True} else "timestamp without time zone"
    if fallback_text:
        return _text_only(name, pg_type, lambda: _text_array(values, _iso_datetime))
    # pyarrow converts aware datetimes to UTC, and keeps microseconds.
    arrow_type = pa.timestamp("us", "UTC" if aware == {True} else None)
    return _arrow_column(name, pg_type, pa.array(_nullable(values, _same), arrow_type))


def _present(values: np.ndarray) -> Iterator[Any]:
    return (v for v in values if not _is_missing(v))


def _nullable(values: np.ndarray, convert: Any) -> list[Any]:
    return [None if _is_missing(v) else convert(v) for v in values]


def _text_array(values: np.ndarray, render: Any) -> pa.Array:
    """Each value rendered as the server's input text; a str is taken as such text."""
    return pa.array(
        [None if _is_missing(v) else v if type(v) is str else render(v) for v in values],
        type=pa.large_string(),
    )


def _iso_datetime(value: dt.datetime) -> str:
    return value.isoformat(sep=" ")


def _is_relativedelta(types: set[type]) -> bool:
    names = {f"{t.__module__}.{t.__qualname__}" for t in types}
    if "dateutil.relativedelta.relativedelta" not in names:
        return False
    return _subclass(
        {t for t in types if t.__name__ != "relativedelta"} or {dt.timedelta},
        dt.timedelta,
        np.timedelta64,
    )


_ONE_MICROSECOND = dt.timedelta(microseconds=1)


def _timedelta_micros(value: Any) -> int:
    if isinstance(value, pd.Timedelta):  # nanoseconds: dropped, as everywhere here
        return value.value // 1000
    if isinstance(value, np.timedelta64):
        return _timedelta_micros(pd.Timedelta(value))
    return value // _ONE_MICROSECOND


def _interval_literal(value: Any) -> str:
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        return f"{_timedelta_micros(value)} us"
    # dateutil.relativedelta: months stay months (PostgreSQL intervals keep them too).
    absolute = ("year", "month", "day", "weekday", "hour", "minute", "second", "microsecond")
    if any(getattr(value, field, None) is not None for field in absolute):
        raise PersistError(
            f"the relativedelta {value!r} sets absolute fields (year=, day=, ...), "
            "which an interval cannot hold"
        )
    return (
        f"{value.years} years {value.months} mons {value.days} days {value.hours} hours "
        f"{value.minutes} mins {value.seconds} secs {value.microseconds} us"
    )


def _bytea_literal(value: bytes | bytearray | memoryview) -> str:
    return "\\x" + bytes(value).hex()


_NO_UUID = bytes(16)


def _uuid_hex(value: uuid.UUID) -> str:
    return value.hex  # 32 hex digits: the server takes them without hyphens


def _uuid_fields(values: np.ndarray) -> _Fields:
    valid = np.fromiter((not _is_missing(v) for v in values), bool, len(values))
    raw = b"".join(
        v.bytes if ok else _NO_UUID for v, ok in zip(values, valid.tolist(), strict=True)
    )
    return _FixedFields(np.frombuffer(raw, dtype="V16"), valid)


# Array element types, most specific first: (Python types, PostgreSQL element type).
_ARRAY_ELEMENTS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((bool, np.bool_), "boolean"),
    ((int, np.integer), "bigint"),
    ((float, int, np.floating, np.integer), "double precision"),
    ((decimal.Decimal, int, np.integer), "numeric"),
    ((str,), "text"),
)


# One encoder for every value (json.dumps would build one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json_or_array(name: str, values: np.ndarray, *, json_null: bool) -> _Column:
    """Flat lists of one scalar type become a PostgreSQL array; anything else jsonb.

    A Python ``None`` next to the lists is JSON null (that is how ``%sql``
    reads a jsonb column), so such a column stays jsonb; NULL in an array
    column is ``pd.NA``.
    """
    element_type = None if json_null else _array_element_type(values)
    if element_type is not None:
        pg_type = element_type + "[]"
        return _text_only(name, pg_type, lambda: _text_array(values, _array_literal))
    rendered = []
    for value in values:
        if _is_sql_null_in_json(value):
            rendered.append(None)
            continue
        try:
            rendered.append(_JSON.encode(value))
        except (TypeError, ValueError) as exc:
            raise PersistError(
                f"column {name!r} holds a value that is not JSON: {exc}",
                "jsonb columns take dict, list, str, int, finite float, bool and None",
            ) from exc
    text = pa.array(rendered, type=pa.large_string())

    def fields() -> _Fields:
        # jsonb's binary form: a version byte (1), then the JSON text.
        versioned = [None if r is None else b"\x01" + r.encode() for r in rendered]
        return _VarFields(pa.array(versioned, pa.large_binary()))

    return _Column(name, "jsonb", lambda: text, fields)


def _array_element_type(values: np.ndarray) -> str | None:
    element_types: set[type] = set()
    any_list = False
    for value in values:
        if _is_missing(value):
            continue
        if type(value) is not list:
            return None  # a dict (or None = JSON null in a JSON column): jsonb
        any_list = True
        for item in value:
            if item is None:
                continue
            if isinstance(item, (list, dict)):
                return None  # nested: jsonb keeps the shape without rules
            if isinstance(item, float) and not math.isfinite(item):
                element_types.add(float)
                continue
            element_types.add(type(item))
    if not any_list or not element_types:
        return None
    for accepted, pg_type in _ARRAY_ELEMENTS:
        if _subclass(element_types, *accepted):
            if pg_type == "bigint" and _subclass(element_types, bool, np.bool_):
                continue
            return pg_type
    return None


def _array_literal(value: list[Any]) -> str:
    return "{" + ",".join(_array_item(item) for item in value) + "}"


def _array_item(item: Any) -> str:
    if item is None:
        return "NULL"
    if isinstance(item, (bool, np.bool_)):
        return "t" if item else "f"
    if isinstance(item, str):
        return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(item, (float, np.floating)):
        if math.isnan(item):
            return "NaN"
        if math.isinf(item):
            return "Infinity" if item > 0 else "-Infinity"
        return repr(float(item))
    return str(item)


# ------------------------------------------------------------------ persist


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
    anything is sent) and psycopg's errors for what the server refuses.
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
    shown = _display_name(parts)
    started = perf_counter()
    columns = _columns(frame)  # every conversion error comes before anything is sent
    binary = copy_format == "binary" or (
        copy_format == "auto"
        and all(c.binary is not None for c in columns)
        and conn.info.encoding == "utf-8"
    )
    if binary and any(c.binary is None for c in columns):
        without = ", ".join(f"{c.name} ({c.pg_type})" for c in columns if c.binary is None)
        raise PersistError(f"no binary COPY form here for: {without}", "use copy_format='csv'")
    identifier = sql.Identifier(*parts)
    column_list = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    own_transaction = conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    try:
        with conn.transaction(), conn.cursor() as cursor:
            created = mode != "append"
            if mode == "replace" and _exists(cursor, parts):
                cursor.execute(sql.SQL("DROP TABLE {}").format(identifier))
            if created:
                definition = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
                    for c in columns
                )
                cursor.execute(sql.SQL("CREATE TABLE {} ({})").format(identifier, definition))
            rows = _copy(
                cursor,
                identifier,
                column_list,
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


def _exists(cursor: psycopg.Cursor[Any], parts: tuple[str, ...]) -> bool:
    cursor.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", [_qualified_text(parts)])
    row = cursor.fetchone()
    return bool(row and row[0])


def _qualified_text(parts: tuple[str, ...]) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


def _copy(
    cursor: psycopg.Cursor[Any],
    identifier: sql.Identifier,
    column_list: sql.Composable,
    columns: list[_Column],
    *,
    total: int,
    binary: bool,
    freeze: bool,
) -> int:
    """COPY the columns in blocks of about _BLOCK_BYTES; return the rows copied.

    Blocks are rendered here while psycopg's writer thread sends the
    previous one (QueuedLibpqWriter): pyarrow's kernels release the GIL.
    """
    options = "FORMAT binary" if binary else "FORMAT csv, ENCODING 'UTF8'"
    if freeze:
        options += ", FREEZE"
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


def _binary_block(sources: list[_Fields], start: int, stop: int) -> memoryview:
    """Rows start..stop in COPY BINARY: a 2-byte field count, then each field."""
    n = stop - start
    count = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(2), n, [None, pa.py_buffer(np.full(n, len(sources), ">i2"))]
    ).cast(pa.large_binary())
    rows = pc.binary_join_element_wise(
        count, *(fields.encode(start, stop) for fields in sources), _NOTHING
    )
    offsets = np.frombuffer(rows.buffers()[1], np.int64, count=n + 1, offset=rows.offset * 8)
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]]
