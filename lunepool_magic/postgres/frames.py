"""PostgreSQL values -> pandas columns: the one table of dtypes, and the builders.

The row path (:mod:`~lunepool_magic.postgres.statement`) and the COPY path
(:mod:`~lunepool_magic.postgres.fetch`) both take every column's dtype from
``PG_TYPES`` / ``column_type()`` and assemble frames with ``make_frame()``, so
both give the same DataFrame for the same result. The mapping is documented in
docs/types.md.

SQL NULL is ``<NA>`` in every column (``NaT`` in datetime columns), never
``None`` nor a float NaN, so it stays distinct from NaN and from a JSON null.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from itertools import repeat
from operator import is_
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from dateutil.relativedelta import relativedelta
from psycopg import Column
from psycopg.adapt import AdaptersMap, Buffer, Loader, Transformer
from psycopg.pq import Format

if TYPE_CHECKING:
    from psycopg.pq.abc import PGresult

__all__ = [
    "COLUMNS_ATTR",
    "INTERVAL_OID",
    "NAT",
    "NUMPY_STORAGE",
    "PG_TYPES",
    "STRING_DTYPE",
    "TEMPORAL_OIDS",
    "ColumnType",
    "Kind",
    "LoaderContext",
    "ValueSource",
    "build_column",
    "column_type",
    "fallback_adapters",
    "load_rows",
    "make_frame",
    "object_series",
    "text_array",
    "type_oid",
]

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


def type_oid(name: str) -> int:
    """The OID of a built-in PostgreSQL type, by name."""
    info = psycopg.postgres.types.get(name)
    if info is None:  # every name used is built in; a typo must not pass silently
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
    return {type_oid(name): ColumnType(name, kind, dtype) for name, kind, dtype in rows}


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
# instead. Being Python code called per value, they cost several times psycopg's C
# loaders: so they are only used to read a result again when psycopg's loaders
# refused it or would change an interval (load_rows). They go into a private
# AdaptersMap: the connection and the cursor keep psycopg's behaviour for code
# that uses them directly.

# RecursionError: JSON nested deeper than Python's json module can parse (the
# server accepts thousands of levels).
_LOAD_ERRORS = (psycopg.DataError, NotImplementedError, ValueError, OverflowError, RecursionError)


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
            # The connection's encoding is UTF-8 wherever these loaders run.
            return bytes(data).decode("utf-8", "replace")


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


INTERVAL_OID = type_oid("interval")


_INTERVAL_OIDS = frozenset((INTERVAL_OID, psycopg.postgres.types["interval"].array_oid))


TEMPORAL_OIDS = tuple(
    type_oid(name) for name in ("date", "time", "timetz", "timestamp", "timestamptz", "interval")
)
# The types whose values psycopg may refuse to load: these get the fallback loaders.
_FALLBACK_OIDS = (*TEMPORAL_OIDS, type_oid("json"), type_oid("jsonb"))


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


def fallback_adapters(adapters: AdaptersMap) -> AdaptersMap:
    """A copy of ``adapters`` whose date/time and JSON loaders return the server's
    text for values Python cannot hold (and calendar intervals as relativedelta)."""
    fallback = AdaptersMap(adapters)
    for oid in _FALLBACK_OIDS:
        current = fallback.get_loader(oid, Format.TEXT)
        if current is not None:
            fallback.register_loader(oid, _fallback_loader(current, oid == INTERVAL_OID))
    return fallback


class LoaderContext(NamedTuple):
    """The AdaptContext of our own Transformer: our adapters, the cursor's connection."""

    adapters: AdaptersMap
    connection: psycopg.Connection[Any]


def load_rows(cursor: psycopg.Cursor[Any], description: list[Column]) -> list[tuple[Any, ...]]:
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
        except (psycopg.DataError, NotImplementedError, RecursionError):
            pass  # a date/time Python cannot hold, or a Date/IntervalStyle psycopg cannot parse
    transformer = Transformer(LoaderContext(fallback_adapters(cursor.adapters), cursor.connection))
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


# --- Column builders --------------------------------------------------------------------
#
# Each takes one column's values (a tuple, straight from zip(*rows)), its type,
# the ValueSource and its position, and returns an array or Series of the column's
# dtype. They keep per-value Python work off the common path: NULL scans run in
# C (map/is_), conversions are numpy's or pyarrow's, and pandas only wraps the
# result (its own per-call overhead dominates small results).


class ValueSource(NamedTuple):
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


NUMPY_STORAGE = {
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "UInt32": "uint32",
    "Float32": "float32",
    "Float64": "float64",
}


def _integer_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    return _masked(values, NUMPY_STORAGE[ct.dtype], pd.arrays.IntegerArray, 0)


def _float_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    # Built from (values, mask) directly: pd.array() would turn NaN into <NA>.
    return _masked(values, NUMPY_STORAGE[ct.dtype], pd.arrays.FloatingArray, 0.0)


def _boolean_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    return _masked(values, "bool", pd.arrays.BooleanArray, False)


def _string_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    # pyarrow converts the tuple (None -> null) in C; large_string is what
    # pandas' pyarrow string arrays hold anyway.
    return text_array(pa.array(values, type=pa.large_string()))


def text_array(values: pa.Array | pa.ChunkedArray) -> Any:
    """pyarrow ``large_string`` values as a text column of ``STRING_DTYPE``.

    No ``dtype=``: pandas 2.2's ArrowStringArray takes none, and without one
    pandas 2 and 3 both make ``STRING_DTYPE`` (pyarrow storage, NULL as <NA>).
    """
    return pd.arrays.ArrowStringArray(values)


# Datetimes and timedeltas become exact integer microseconds (since the epoch,
# or as a duration) in Python, about 0.4 µs a value, and numpy views those as
# datetime64[us]/timedelta64[us]; pandas' own conversion has a large fixed cost
# per call and asks every aware datetime for its zone's offset.
_EPOCH = datetime(1970, 1, 1)


_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)


_MICROSECOND = timedelta(microseconds=1)


NAT = np.iinfo(np.int64).min  # how datetime64/timedelta64 store NaT


def _micros(values: Sequence[Any], since: Any) -> np.ndarray:
    """int64 microseconds of ``v - since`` (``v`` itself if ``since`` is None); None -> NaT."""
    n = len(values)
    nulls = _null_mask(values) if _has_null(values) else None
    if since is None:
        ints = (0 if v is None else v // _MICROSECOND for v in values)
    else:
        ints = (0 if v is None else (v - since) // _MICROSECOND for v in values)
    micros = np.fromiter(ints, dtype=np.int64, count=n)  # OverflowError beyond int64
    if (micros == NAT).any():  # a real value that would read as NaT
        raise OverflowError("value out of the datetime64/timedelta64 range")
    if nulls is not None:
        micros[nulls] = NAT
    return micros


def _timestamp_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    if not _only(values, datetime):  # a fallback loader returned text
        return _object_column(values, ct, src, column)
    return _micros(values, _EPOCH).view("datetime64[us]")


def _timestamptz_column(
    values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int
) -> Any:
    if not _only(values, datetime):
        return _object_column(values, ct, src, column)
    utc = pd.DatetimeIndex(_micros(values, _EPOCH_UTC).view("datetime64[us]"), tz="UTC")
    # Same instants, shown in the session's time zone: no per-value work.
    return (utc.tz_convert(src.tz) if src.tz is not None else utc).array


def _interval_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    if not _only(values, timedelta):  # relativedelta (months) or text
        return _object_column(values, ct, src, column)
    # Beyond ±292,000 years _micros raises OverflowError: object column, see build_column.
    return _micros(values, None).view("timedelta64[us]")


def object_series(values: Sequence[Any]) -> pd.Series:
    array = np.fromiter(values, dtype=object, count=len(values))
    # A Series with an explicit object dtype: pandas 3 would infer "str" for an
    # object ndarray of strings (a jsonb column of strings, say).
    return pd.Series(array, dtype=object, copy=False)


def _object_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    if _has_null(values):
        values = [pd.NA if v is None else v for v in values]
    return object_series(values)


def _json_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    if not _has_null(values) or src.pgresult is None:
        return _object_column(values, ct, src, column)
    # psycopg loads JSON null and SQL NULL alike as None; the raw result tells them apart.
    get = src.pgresult.get_value
    return object_series(
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


def build_column(values: Sequence[Any], ct: ColumnType, src: ValueSource, column: int) -> Any:
    """The column of ``ct``'s dtype for ``values``; object dtype if they do not fit it."""
    try:
        return _BUILDERS[ct.kind](values, ct, src, column)
    except _CONVERT_ERRORS:
        return _object_column(values, ct, src, column)


#: ``frame.attrs`` key under which a result carries its PostgreSQL column types:
#: a tuple of ``(name, type_oid, typmod)`` per column, in order. ``persist``
#: reads it to create columns of the source's types (even a column without values).
COLUMNS_ATTR = "lunepool_magic.columns"


def make_frame(
    names: list[str], arrays: list[Any], nrows: int, types: Sequence[tuple[int, int]]
) -> pd.DataFrame:
    """The DataFrame of a result: columns in order, duplicate names kept as sent.

    ``types`` holds each column's ``(type_oid, typmod)``, recorded in
    ``frame.attrs[COLUMNS_ATTR]``.
    """
    index = pd.RangeIndex(nrows)
    if len(set(names)) == len(names):
        frame = pd.DataFrame(dict(zip(names, arrays, strict=True)), index=index, copy=False)
    else:
        # A dict cannot hold duplicate names: build by position, then name the columns.
        frame = pd.DataFrame(dict(enumerate(arrays)), index=index, copy=False)
        frame.columns = pd.Index(names)
    frame.attrs[COLUMNS_ATTR] = tuple(
        (name, oid, typmod) for name, (oid, typmod) in zip(names, types, strict=True)
    )
    return frame
