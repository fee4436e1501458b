"""Run one statement; get its rows as a pandas DataFrame with faithful dtypes.

Three entry points share one DataFrame builder:

- ``query(conn, sql, params=None) -> DataFrame`` for statements that return rows;
- ``execute(conn, sql, params=None) -> str`` for statements that do not; it
  returns the server's command status (``"INSERT 0 3"``, ``"CREATE TABLE"``);
- ``run(conn_or_cursor, sql, params=None) -> Result`` for callers that cannot
  know in advance (the ``%sql`` magic): ``Result.frame`` is a DataFrame when the
  statement produced a result set and ``None`` otherwise.

None of them commits, rolls back or otherwise touches the transaction: the
statement runs in whatever transaction state the connection is in (psycopg opens
a transaction implicitly unless the connection is in autocommit mode), and
leaving the connection clean is the pool's job. Errors are psycopg's, raised
with the server's message; nothing here adds connection details to a message,
so no password can leak through this module.

Type mapping
------------

One table, ``PG_TYPES``, keyed by PostgreSQL type OID (``cursor.description[i]
.type_code``) decides every column's dtype; ``column_type()`` extends it to OIDs
it does not list. SQL NULL is ``<NA>`` in every column (``NaT`` in datetime
columns), never ``None`` and never a float NaN, so NULL stays distinguishable
from NaN and from a JSON ``null``.

================================  ===============================  ==============================
PostgreSQL type                   pandas dtype                     values
================================  ===============================  ==============================
int2, int4, int8                  Int16, Int32, Int64              int
oid                               UInt32                           int
float4, float8                    Float32, Float64                 float; NaN, ±inf are values,
                                                                   not missing (see note 1)
bool                              boolean                          bool
text, varchar, bpchar, name,      string (``pd.StringDtype(        str
"char"                            "pyarrow")``, NULL is <NA>)
timestamp                         datetime64[us]                   see note 2
timestamptz                       datetime64[us, <TimeZone>]       the session TimeZone; note 2
date                              object                           datetime.date
time, timetz                      object                           datetime.time (timetz: aware)
interval                          timedelta64[us]                  see note 3
numeric                           object                           decimal.Decimal (all digits;
                                                                   NaN, ±Infinity)
uuid                              object                           uuid.UUID
json, jsonb                       object                           dict, list, str, int, float,
                                                                   bool; JSON null is None
bytea                             object                           bytes
arrays psycopg loads              object                           list (nested; NULL items None)
other types psycopg loads         object                           psycopg's value (inet: ipaddress,
(inet, ranges, registered                                          ranges: Range, ...)
enums/composites, ...)
types psycopg has no loader for   string                           the server's text
(enums not registered with
psycopg, citext, money, bit,
tsvector, point, xml, arrays
of these, ...)
================================  ===============================  ==============================

Notes:

1. The float column is a masked array built from (values, mask), so NaN and
   ±inf are ordinary values and only NULL is ``<NA>``: ``isna()`` is True for
   NULL only. pandas 3 by default turns a NaN that *arithmetic* produces into
   ``<NA>``; ``pd.set_option("future.distinguish_nan_and_na", True)`` keeps the
   distinction through later computations too.
2. Dates and times that Python cannot hold (``infinity``, ``-infinity``, years
   before 1 or after 9999, ``24:00:00``) make psycopg raise DataError, which
   would lose the whole result. When that happens the result (already in
   memory) is read again with our loaders, which return such values as the
   server's text instead, e.g. ``'infinity'``; a timestamp/timestamptz column
   that holds one is then object dtype, with datetime objects for its other
   values. Neither the connection nor the cursor is changed for this. Every other
   timestamp fits datetime64[us], whose range covers years 1..9999. psycopg
   parses timestamptz only in DateStyle ISO (the default); in other DateStyles
   those columns hold the server's text too.
3. An interval without a year/month part is a timedelta64[us] value (its days
   count as 24 hours, as in psycopg). A month has no fixed length (psycopg
   would count it as 30 days), so when any value has a year/month part the
   column is object dtype: those values are ``dateutil.relativedelta`` (calendar
   arithmetic, like PostgreSQL's), the others ``datetime.timedelta``. Intervals
   beyond timedelta64's ±292,000 years also make the column object. Only the
   default ``IntervalStyle = postgres`` is parsed; other styles, and ``infinity``
   (PostgreSQL 17+), give the server's text. (psycopg alone would load months
   as 30 days and ``infinity`` as 0 without an error, so the raw text of
   interval columns is checked, and the result read with our loaders when
   needed.)
4. date stays ``datetime.date`` because pandas has no date dtype: datetime64
   would turn dates into midnight timestamps that compare unequal to
   ``datetime.date`` values; ``pd.to_datetime(frame.col)`` converts when wanted.
   uuid stays ``uuid.UUID`` (faithful and hashable; ``.astype(str)`` gives text).

If the values of a column do not fit its dtype (for instance a loader that the
application registered returns something else), the column falls back to object
dtype with psycopg's values instead of failing. Column names come from the
result as they are; duplicate names are kept (pandas allows them;
``frame["a"]`` then returns a DataFrame). A result with no rows keeps its
columns and their dtypes.

Results are always fetched in text format: it is what psycopg can load for
every type, including types it does not know (as str). Large results are meant
to get a dedicated COPY-binary/pyarrow path later; it should take its target
dtypes from ``column_type()`` so both paths agree.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from itertools import repeat
from operator import is_
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import psycopg
import psycopg.sql
import pyarrow as pa
from dateutil.relativedelta import relativedelta
from psycopg import Column
from psycopg.adapt import AdaptersMap, Buffer, Loader, Transformer
from psycopg.pq import Format, PGresult
from psycopg.rows import tuple_row

__all__ = [
    "PG_TYPES",
    "STRING_DTYPE",
    "ColumnType",
    "Kind",
    "NoResultSetError",
    "Result",
    "column_type",
    "execute",
    "query",
    "run",
]

Query = str | bytes | psycopg.sql.Composable
Params = Sequence[Any] | Mapping[str, Any]

#: The dtype of text columns: pyarrow-backed, NULL is ``<NA>``. (pandas 3's
#: default ``str`` dtype would turn NULL into a float NaN.)
STRING_DTYPE = pd.StringDtype("pyarrow")


class Kind(enum.Enum):
    """How a column is built from the Python values psycopg returns."""

    INTEGER = "integer"  # masked integer array (Int16/Int32/Int64/UInt32)
    FLOAT = "float"  # masked float array; NaN and inf are values
    BOOLEAN = "boolean"  # masked boolean array
    STRING = "string"  # STRING_DTYPE
    TIMESTAMP = "timestamp"  # datetime64[us], object on fallback
    TIMESTAMPTZ = "timestamptz"  # datetime64[us, session tz], object on fallback
    INTERVAL = "interval"  # timedelta64[us], object on fallback
    JSON = "json"  # object; JSON null is None, SQL NULL is <NA>
    OBJECT = "object"  # object holding psycopg's values


@dataclass(frozen=True, slots=True)
class ColumnType:
    """How values of one PostgreSQL type become a pandas column.

    ``dtype`` is the column's dtype when every value fits it; for
    ``Kind.TIMESTAMPTZ`` it is the UTC variant and ``pandas_dtype(tz)`` gives the
    one for the session time zone.
    """

    name: str  # PostgreSQL type name, for documentation and repr
    kind: Kind
    dtype: Any  # a pandas/numpy dtype, or its name

    def pandas_dtype(self, tz: tzinfo | None = None) -> Any:
        """The column dtype; timestamptz columns carry the session time zone ``tz``."""
        if self.kind is Kind.TIMESTAMPTZ and tz is not None:
            return pd.DatetimeTZDtype("us", tz)
        return self.dtype


def _oid(name: str) -> int:
    info = psycopg.postgres.types.get(name)
    if info is None:  # every name below is built in; a typo must not pass silently
        raise LookupError(f"psycopg does not know the PostgreSQL type {name!r}")
    return info.oid


def _entries() -> dict[int, ColumnType]:
    rows: list[tuple[str, Kind, Any]] = [
        ("int2", Kind.INTEGER, "Int16"),
        ("int4", Kind.INTEGER, "Int32"),
        ("int8", Kind.INTEGER, "Int64"),
        ("oid", Kind.INTEGER, "UInt32"),  # unsigned 32-bit on the server
        ("float4", Kind.FLOAT, "Float32"),
        ("float8", Kind.FLOAT, "Float64"),
        ("bool", Kind.BOOLEAN, "boolean"),
        ("text", Kind.STRING, STRING_DTYPE),
        ("varchar", Kind.STRING, STRING_DTYPE),
        ("bpchar", Kind.STRING, STRING_DTYPE),
        ("name", Kind.STRING, STRING_DTYPE),
        ('"char"', Kind.STRING, STRING_DTYPE),
        ("timestamp", Kind.TIMESTAMP, "datetime64[us]"),
        ("timestamptz", Kind.TIMESTAMPTZ, pd.DatetimeTZDtype("us", "UTC")),
        ("interval", Kind.INTERVAL, "timedelta64[us]"),
        ("date", Kind.OBJECT, object),
        ("time", Kind.OBJECT, object),
        ("timetz", Kind.OBJECT, object),
        ("numeric", Kind.OBJECT, object),
        ("uuid", Kind.OBJECT, object),
        ("json", Kind.JSON, object),
        ("jsonb", Kind.JSON, object),
        ("bytea", Kind.OBJECT, object),
    ]
    return {_oid(name): ColumnType(name, kind, dtype) for name, kind, dtype in rows}


#: PostgreSQL type OID -> how its columns are built. The single source of truth
#: for dtypes; ``column_type()`` covers the OIDs that are not listed.
PG_TYPES: Mapping[int, ColumnType] = MappingProxyType(_entries())

# psycopg loads a type it has no loader for with the loader registered for OID 0
# (the "unknown" loader, which returns str).
_UNKNOWN_OID = 0


def column_type(oid: int, adapters: AdaptersMap | None = None) -> ColumnType:
    """How a column of type ``oid`` is built.

    Listed OIDs come from ``PG_TYPES``. For the others it depends on what
    psycopg will return, which ``adapters`` (the cursor's or connection's,
    default psycopg's global map) tells without looking at any value, so that a
    result with no rows still gets the right dtypes: types psycopg has no
    specific loader for come back as the server's text and make string columns;
    types it loads into Python objects (arrays, inet, ranges, registered enums
    and composites, ...) make object columns.
    """
    listed = PG_TYPES.get(oid)
    if listed is not None:
        return listed
    if adapters is None:
        adapters = psycopg.adapters
    loader = adapters.get_loader(oid, Format.TEXT)
    if loader is None or loader is adapters.get_loader(_UNKNOWN_OID, Format.TEXT):
        return ColumnType(f"oid {oid}", Kind.STRING, STRING_DTYPE)
    return ColumnType(f"oid {oid}", Kind.OBJECT, object)


# --- Loaders that do not raise on values Python cannot hold ----------------------------
#
# psycopg raises DataError for 'infinity'::timestamptz, BC dates, years > 9999 and
# '24:00:00'::time, and that error loses the whole result. These loaders wrap
# whatever text loader the cursor has for the type and return the server's text
# instead. Being Python code called per value, they cost a few µs each, several
# times psycopg's C loaders: so they are only used to read a result again when
# psycopg's loaders refused it or would change an interval (_load_rows). They go
# into a private AdaptersMap: the connection and the cursor keep psycopg's
# behaviour for code that uses them directly.

_LOAD_ERRORS = (psycopg.DataError, NotImplementedError, ValueError, OverflowError)


class _TextFallbackLoader(Loader):
    """Loads with ``_inner``; returns the server's text for values it cannot load."""

    _inner: type[Loader]  # set on the subclasses made by _fallback_loader()

    def __init__(self, oid: int, context: Any = None):
        super().__init__(oid, context)
        # Same context: the inner loader reads DateStyle/TimeZone from it.
        self._inner_load = self._inner(oid, context).load

    def load(self, data: Buffer) -> Any:
        try:
            return self._inner_load(data)
        except _LOAD_ERRORS:
            # Date/time output is ASCII in every DateStyle.
            return bytes(data).decode("ascii", "replace")


# IntervalStyle=postgres output: '1 year 2 mons -3 days +04:05:06.5', '-00:00:01'.
_INTERVAL_RE = re.compile(
    rb"(?:([-+]?\d+) years? ?)?(?:([-+]?\d+) mons? ?)?(?:([-+]?\d+) days? ?)?"
    rb"(?:([-+])?(\d+):(\d+):(\d+)(?:\.(\d{1,6}))?)?"
)


_INTERVAL_INFINITIES = frozenset((b"infinity", b"-infinity"))


class _IntervalLoader(_TextFallbackLoader):
    """Intervals with a year/month part become relativedelta, not 30-day months."""

    def load(self, data: Buffer) -> Any:
        raw = bytes(data)
        if raw in _INTERVAL_INFINITIES:
            # psycopg's loader matches no field in 'infinity' (PostgreSQL 17+)
            # and silently returns timedelta(0).
            return raw.decode("ascii")
        if b"mon" not in raw and b"year" not in raw:
            return super().load(data)
        m = _INTERVAL_RE.fullmatch(raw)
        if m is None:  # not IntervalStyle=postgres
            return raw.decode("ascii", "replace")
        years, months, days, sign, hours, minutes, seconds, fraction = m.groups()
        neg = -1 if sign == b"-" else 1
        return relativedelta(
            years=int(years or 0),
            months=int(months or 0),
            days=int(days or 0),
            hours=neg * int(hours or 0),
            minutes=neg * int(minutes or 0),
            seconds=neg * int(seconds or 0),
            microseconds=neg * int((fraction or b"").ljust(6, b"0")),
        )


@functools.cache
def _fallback_loader(inner: type[Loader], interval: bool) -> type[Loader]:
    base = _IntervalLoader if interval else _TextFallbackLoader
    return type(f"{base.__name__}[{inner.__name__}]", (base,), {"_inner": inner})


_INTERVAL_OID = _oid("interval")
_INTERVAL_OIDS = frozenset((_INTERVAL_OID, psycopg.postgres.types["interval"].array_oid))
_TEMPORAL_OIDS = tuple(
    _oid(name) for name in ("date", "time", "timetz", "timestamp", "timestamptz", "interval")
)


def _psycopg_would_change_an_interval(description: list[Column], result: PGresult) -> bool:
    """True if an interval in the result has months/years or is infinite.

    psycopg loads those without an error, but wrongly for us: a month as 30
    days, 'infinity' as 0. Looking at the raw text of interval columns costs
    about 1 µs a value, about half of what loading them all with our Python
    loader would.
    """
    columns = [j for j, c in enumerate(description) if c.type_code in _INTERVAL_OIDS]
    get = result.get_value
    for j in columns:
        for i in range(result.ntuples):
            raw = get(i, j)
            if raw is not None and (b"mon" in raw or b"year" in raw or b"inf" in raw):
                return True
    return False


class _Context(NamedTuple):
    """The AdaptContext of our own Transformer: our adapters, the cursor's connection."""

    adapters: AdaptersMap
    connection: psycopg.Connection[Any]


def _load_rows(cursor: psycopg.Cursor[Any], description: list[Column]) -> list[tuple[Any, ...]]:
    """All rows of the cursor's current result, as tuples.

    psycopg's own (C) loaders on the common path. When psycopg's loaders
    refuse a value, or would change an interval, the rows are read from the
    result in memory (``cursor.pgresult``; nothing is fetched from the server
    again) by a Transformer of our own whose adapters add the fallback loaders
    above to the cursor's.
    """
    result = cursor.pgresult
    if result is None:  # not reached for a client-side cursor with a result set
        return cursor.fetchall()
    if not _psycopg_would_change_an_interval(description, result):
        try:
            return cursor.fetchall()
        except (psycopg.DataError, NotImplementedError):
            pass  # a date/time Python cannot hold, or a Date/IntervalStyle psycopg cannot parse
    adapters = AdaptersMap(cursor.adapters)
    for oid in _TEMPORAL_OIDS:
        current = adapters.get_loader(oid, Format.TEXT)
        if current is not None:
            adapters.register_loader(oid, _fallback_loader(current, oid == _INTERVAL_OID))
    transformer = Transformer(_Context(adapters, cursor.connection))
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


# --- Column builders --------------------------------------------------------------------
#
# Each takes one column's values (a tuple, straight from zip(*rows)), its type,
# the _Source and its position, and returns an array or Series of the column's
# dtype. They keep per-value Python work off the common path: NULL scans run in
# C (map/is_), conversions are numpy's or pyarrow's, and pandas only wraps the
# result (its own per-call overhead, 50-100 µs, dominates small results).


class _Source(NamedTuple):
    """What builders may need beyond the values."""

    pgresult: PGresult | None  # for telling JSON null from SQL NULL
    tz: tzinfo | None  # session time zone, for timestamptz


def _has_null(values: Sequence[Any]) -> bool:
    # Identity, not ==: values may define __eq__ oddly (or return arrays).
    return any(map(is_, values, repeat(None)))


def _null_mask(values: Sequence[Any]) -> np.ndarray:
    return np.fromiter(map(is_, values, repeat(None)), dtype=bool, count=len(values))


def _only(values: Sequence[Any], cls: type) -> bool:
    kinds = set(map(type, values))
    kinds.discard(type(None))
    return kinds <= {cls}


def _masked(values: Sequence[Any], storage: str, array_cls: Any, fill: Any) -> Any:
    """A pandas masked array (IntegerArray, ...): numpy storage plus a NULL mask."""
    n = len(values)
    if _has_null(values):
        mask = _null_mask(values)
        data = np.fromiter((fill if v is None else v for v in values), dtype=storage, count=n)
    else:
        mask = np.zeros(n, dtype=bool)
        data = np.fromiter(values, dtype=storage, count=n)
    return array_cls(data, mask)


_NUMPY_STORAGE = {
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "UInt32": "uint32",
    "Float32": "float32",
    "Float64": "float64",
}


def _integer_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    return _masked(values, _NUMPY_STORAGE[ct.dtype], pd.arrays.IntegerArray, 0)


def _float_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    # Built from (values, mask) directly: pd.array() would turn NaN into <NA>.
    return _masked(values, _NUMPY_STORAGE[ct.dtype], pd.arrays.FloatingArray, 0.0)


def _boolean_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    return _masked(values, "bool", pd.arrays.BooleanArray, False)


def _string_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    # pyarrow converts the tuple (None -> null) in C; large_string is what
    # pandas' pyarrow string arrays hold anyway.
    return pd.arrays.ArrowStringArray(pa.array(values, type=pa.large_string()), dtype=STRING_DTYPE)


# Datetimes and timedeltas become exact integer microseconds (since the epoch,
# or as a duration) in Python, about 0.4 µs a value, and numpy views those as
# datetime64[us]/timedelta64[us]. pandas' own conversion costs 50-130 µs even
# for one value, and ~5 µs a value for aware datetimes (it asks each for its
# zone's offset).
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_NAT = np.iinfo(np.int64).min  # how datetime64/timedelta64 store NaT


def _micros(values: Sequence[Any], since: Any) -> np.ndarray:
    """int64 microseconds of ``v - since`` (``v`` itself if ``since`` is None); None -> NaT."""
    n = len(values)
    nulls = _null_mask(values) if _has_null(values) else None
    if since is None:
        ints = (0 if v is None else v // _MICROSECOND for v in values)
    else:
        ints = (0 if v is None else (v - since) // _MICROSECOND for v in values)
    micros = np.fromiter(ints, dtype=np.int64, count=n)  # OverflowError beyond int64
    if (micros == _NAT).any():  # a real value that would read as NaT
        raise OverflowError("value out of the datetime64/timedelta64 range")
    if nulls is not None:
        micros[nulls] = _NAT
    return micros


def _timestamp_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    if not _only(values, datetime):  # a fallback loader returned text
        return _object_column(values, ct, src, column)
    return _micros(values, _EPOCH).view("datetime64[us]")


def _timestamptz_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    if not _only(values, datetime):
        return _object_column(values, ct, src, column)
    utc = pd.DatetimeIndex(_micros(values, _EPOCH_UTC).view("datetime64[us]"), tz="UTC")
    # Same instants, shown in the session's time zone: no per-value work.
    return (utc.tz_convert(src.tz) if src.tz is not None else utc).array


def _interval_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    if not _only(values, timedelta):  # relativedelta (months) or text
        return _object_column(values, ct, src, column)
    # Beyond ±292,000 years _micros raises OverflowError: object column, see _build.
    return _micros(values, None).view("timedelta64[us]")


def _object_series(values: Sequence[Any]) -> pd.Series:
    array = np.fromiter(values, dtype=object, count=len(values))
    # A Series with an explicit object dtype: pandas 3 would infer "str" for an
    # object ndarray of strings (a jsonb column of strings, say).
    return pd.Series(array, dtype=object, copy=False)


def _object_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    if _has_null(values):
        values = [pd.NA if v is None else v for v in values]
    return _object_series(values)


def _json_column(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    if not _has_null(values) or src.pgresult is None:
        return _object_column(values, ct, src, column)
    # psycopg loads JSON null and SQL NULL alike as None; the raw result tells them apart.
    get = src.pgresult.get_value
    return _object_series(
        [pd.NA if v is None and get(i, column) is None else v for i, v in enumerate(values)]
    )


_BUILDERS = {
    Kind.INTEGER: _integer_column,
    Kind.FLOAT: _float_column,
    Kind.BOOLEAN: _boolean_column,
    Kind.STRING: _string_column,
    Kind.TIMESTAMP: _timestamp_column,
    Kind.TIMESTAMPTZ: _timestamptz_column,
    Kind.INTERVAL: _interval_column,
    Kind.JSON: _json_column,
    Kind.OBJECT: _object_column,
}

# What a value that does not fit the dtype makes numpy/pyarrow/pandas raise
# (pyarrow's errors and pandas' OutOfBounds* derive from these).
_CONVERT_ERRORS = (TypeError, ValueError, OverflowError)


def _build(values: Sequence[Any], ct: ColumnType, src: _Source, column: int) -> Any:
    try:
        return _BUILDERS[ct.kind](values, ct, src, column)
    except _CONVERT_ERRORS:
        return _object_column(values, ct, src, column)


def _frame(
    cursor: psycopg.Cursor[Any], description: list[Column], rows: list[tuple[Any, ...]]
) -> pd.DataFrame:
    """The DataFrame for ``rows`` just fetched from ``cursor`` (its whole result)."""
    names = [c.name for c in description]
    types = [column_type(c.type_code, cursor.adapters) for c in description]
    tz = None
    if any(ct.kind is Kind.TIMESTAMPTZ for ct in types):
        tz = cursor.connection.info.timezone
    src = _Source(cursor.pgresult, tz)
    # Transposing in C and converting whole columns is much cheaper than
    # pandas inferring types row by row.
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(description)
    arrays = [
        _build(values, ct, src, j)
        for j, (values, ct) in enumerate(zip(columns, types, strict=True))
    ]
    index = pd.RangeIndex(len(rows))
    if len(set(names)) == len(names):
        return pd.DataFrame(dict(zip(names, arrays, strict=True)), index=index, copy=False)
    # Duplicate names are kept as the server sent them; a dict cannot hold
    # them, so build by position and name the columns afterwards.
    frame = pd.DataFrame(dict(enumerate(arrays)), index=index, copy=False)
    frame.columns = pd.Index(names)
    return frame


# --- Public entry points ----------------------------------------------------------------


class NoResultSetError(psycopg.ProgrammingError):
    """query() ran a statement that returned no result set (an INSERT, a CREATE ...).

    A ProgrammingError like psycopg's own "the last operation didn't produce a
    result"; the statement did run, and its effects are part of the current
    transaction.
    """


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


# Which statements try the COPY fast path (postgres/fastpath.py) when the
# caller leaves it to us. COPY costs about 0.4 ms more than a plain query (a
# describe round trip and a second plan) and is 4 to 6 times faster from a few
# hundred rows on. A statement without FROM (``SELECT 1``, ``SELECT now()``)
# almost always returns one row, so it takes the row path; anything reading
# from a table, view or function may be large and tries COPY. A false guess
# costs speed only: both paths give the same DataFrame (a differential test
# checks it), and the fast path declines what it cannot carry exactly.
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
            from lunepool_magic.postgres.fetch import fetch_frame  # imports this module

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
    rows = _load_rows(cursor, description)
    return Result(_frame(cursor, description, rows), status, cursor.rowcount)


def query(conn: psycopg.Connection[Any], sql: Query, params: Params | None = None) -> pd.DataFrame:
    """Run a statement that returns rows; return them as a DataFrame.

    Dtypes follow the table in the module docstring. Raises NoResultSetError
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
