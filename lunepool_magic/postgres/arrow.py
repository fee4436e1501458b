"""PostgreSQL values -> Arrow columns: the Arrow type table and its builders.

The table beside :data:`~lunepool_magic.postgres.frames.PG_TYPES` (docs/types.md
lists both): ``ARROW_TYPES`` maps a type OID to its Arrow type, with the rules
for the few types whose Arrow type depends on the type modifier or on the
values (numeric, interval). Columns are built without pandas, either from the
COPY path's buffers (fixed-width values, NULL flags, text chunks) or from the
server's text of each value (the row path's result, the COPY CSV path's
fields), so both paths give the same Arrow table.

SQL NULL is an Arrow null; NaN is a float value; a JSON ``null`` is the text
``null``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lunepool_magic.postgres.copyformat import PG_EPOCH_DAYS, PG_EPOCH_US
from lunepool_magic.postgres.frames import Kind, type_oid

__all__ = [
    "ARROW_TYPES",
    "AS_TEXT",
    "arrow_tz",
    "element",
    "epoch_for",
    "fixed_width_array",
    "from_text",
    "numeric_type",
    "timestamp_array",
]

# pyarrow 18+ has a UUID extension type (values come back as uuid.UUID); before
# it, the 16 bytes.
UUID_TYPE = pa.uuid() if hasattr(pa, "uuid") else pa.binary(16)

#: Decimal precision Arrow's decimal128 holds (and polars reads).
MAX_PRECISION = 38

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_INT32_MAX = np.iinfo(np.int32).max
_INT32_MIN = np.iinfo(np.int32).min


def _entries() -> dict[int, pa.DataType | None]:
    rows: list[tuple[str, pa.DataType | None]] = [
        ("int2", pa.int16()),
        ("int4", pa.int32()),
        ("int8", pa.int64()),
        ("oid", pa.uint32()),
        ("float4", pa.float32()),
        ("float8", pa.float64()),
        ("bool", pa.bool_()),
        ("text", pa.large_string()),
        ("varchar", pa.large_string()),
        ("bpchar", pa.large_string()),
        ("name", pa.large_string()),
        ('"char"', pa.large_string()),
        ("timestamp", pa.timestamp("us")),
        ("timestamptz", pa.timestamp("us", "UTC")),  # the session TimeZone at build time
        ("date", pa.date32()),
        ("time", pa.time64("us")),
        ("timetz", pa.large_string()),  # Arrow has no time with an offset: the server's text
        ("interval", pa.duration("us")),  # the server's text when a value has months
        ("numeric", None),  # numeric_type(): decimal128, or the server's text
        ("uuid", UUID_TYPE),
        ("json", pa.large_string()),  # the JSON text as the server sends it
        ("jsonb", pa.large_string()),
        ("bytea", pa.large_binary()),
    ]
    return {type_oid(name): arrow for name, arrow in rows}


#: PostgreSQL type OID -> Arrow type. OIDs not listed: arrays of listed types
#: become ``large_list`` of the element's type; everything else is the
#: server's text (``large_string``).
ARROW_TYPES: Mapping[int, pa.DataType | None] = MappingProxyType(_entries())

_NUMERIC = type_oid("numeric")
_INTERVAL = type_oid("interval")
_UUID = type_oid("uuid")
_BYTEA = type_oid("bytea")
_TIME = type_oid("time")
_DATE = type_oid("date")
_TIMESTAMPS = frozenset((type_oid("timestamp"), type_oid("timestamptz")))
_JSON = frozenset((type_oid("json"), type_oid("jsonb")))
_TEMPORAL = _TIMESTAMPS | {_DATE, _TIME}


def arrow_tz(tz: tzinfo | None) -> str:
    """The Arrow spelling of the session time zone (an IANA name or ``+HH:MM``)."""
    if tz is None:
        return "UTC"
    key = getattr(tz, "key", None)
    if key:
        return str(key)
    offset = tz.utcoffset(None) if isinstance(tz, timezone) else None
    if offset is None:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def numeric_type(typmod: int, texts: Sequence[str | None]) -> pa.DataType | None:
    """decimal128 for a numeric column, or None when it must stay text.

    ``numeric(p, s)`` with p <= 38 is ``decimal128(p, s)``. Otherwise (no
    precision declared, or more than 38 digits) the scale is the largest the
    values have, when every value then fits 38 digits. NaN and ±Infinity,
    which no decimal holds, keep the column as the server's text.
    """
    if typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if precision <= MAX_PRECISION and scale <= precision:
            if any(t is not None and not t[-1:].isdigit() for t in texts):
                return None  # NaN (numeric(p, s) may hold it)
            return pa.decimal128(precision, scale)
    whole = scale = 0
    for text in texts:
        if text is None:
            continue
        if not text[-1:].isdigit():  # NaN, Infinity, -Infinity
            return None
        digits = text.lstrip("-")
        point = digits.find(".")
        if point < 0:
            whole = max(whole, len(digits))
        else:
            whole = max(whole, point)
            scale = max(scale, len(digits) - point - 1)
    if whole + scale > MAX_PRECISION:
        return None
    return pa.decimal128(MAX_PRECISION, scale)


# --- From the COPY path's buffers -------------------------------------------------------


def _validity(nulls: np.ndarray) -> tuple[pa.Buffer | None, int]:
    count = int(nulls.sum())
    if count == 0:
        return None, 0
    return pa.py_buffer(np.packbits(~nulls, bitorder="little")), count


def fixed_width_array(values: np.ndarray, nulls: np.ndarray, arrow: pa.DataType) -> pa.Array:
    """An Arrow array over ``values`` (native order; no copy) with NULL flags ``nulls``."""
    if pa.types.is_boolean(arrow):
        return pa.array(values.astype(np.bool_, copy=False), mask=nulls, type=arrow)
    validity, count = _validity(nulls)
    return pa.Array.from_buffers(
        arrow, len(values), [validity, pa.py_buffer(np.ascontiguousarray(values))], count
    )


def timestamp_array(
    raw: np.ndarray, nulls: np.ndarray, arrow: pa.DataType, epoch: int, infinite: int
) -> pa.Array:
    """Binary COPY date/time values (since 2000-01-01) as Arrow's (since 1970-01-01).

    PostgreSQL sends ±infinity as the type's largest/smallest integer; they
    stay the largest/smallest Arrow value instead of wrapping around.
    """
    wide = raw.astype(np.int64)
    top = wide == infinite
    bottom = wide == -infinite - 1
    shifted = wide + epoch
    shifted[top] = infinite
    shifted[bottom] = -infinite - 1
    if arrow == pa.date32():
        shifted = shifted.astype(np.int32)
    return fixed_width_array(shifted, nulls, arrow)


def epoch_for(oid: int) -> tuple[int, int]:
    """(offset to Arrow's epoch, the wire's infinity) for a binary date/time column."""
    if oid == _DATE:
        return PG_EPOCH_DAYS, _INT32_MAX
    return PG_EPOCH_US, _INT64_MAX


# --- From the server's text -------------------------------------------------------------

Load = Callable[[bytes], Any]


def from_text(
    raw: pa.Array,
    oid: int,
    typmod: int,
    kind: Kind,
    load: Load,
    tz: tzinfo | None,
    element: Callable[[int], pa.DataType | None],
) -> pa.Array:
    """The Arrow column for the server's text of each value (``raw``: large_binary).

    ``load`` is the row path's loader for the type (psycopg's, with the
    fallbacks for values Python cannot hold); ``element(oid)`` gives the
    element type of an array type, or None.
    """
    strings = raw.cast(pa.large_string())
    if kind is Kind.INTEGER:
        return pc.cast(strings, ARROW_TYPES[oid])
    if kind is Kind.FLOAT:
        # float4 as the row path does it: the text to a double, then rounded.
        return pc.cast(pc.cast(strings, pa.float64()), ARROW_TYPES[oid], safe=False)
    if kind is Kind.BOOLEAN:
        return pc.equal(strings, "t")
    if oid == _NUMERIC:
        numeric = numeric_type(typmod, strings.to_pylist())
        return strings if numeric is None else pc.cast(strings, numeric)
    arrow = ARROW_TYPES.get(oid)
    if kind is Kind.STRING or kind is Kind.JSON or pa.types.is_large_string(arrow or pa.null()):
        return strings
    if oid == _BYTEA:
        return pa.array([None if v is None else load(v) for v in raw.to_pylist()], arrow)
    values = [None if v is None else load(v) for v in raw.to_pylist()]
    if oid == _TIME and any(isinstance(v, str) for v in values):
        return strings  # 24:00:00, which time64 cannot hold: the server's text
    if oid in _TEMPORAL:
        arrow = pa.timestamp("us", arrow_tz(tz)) if kind is Kind.TIMESTAMPTZ else arrow
        return _temporal(values, arrow)
    if oid == _INTERVAL:
        if all(v is None or type(v) is timedelta for v in values):
            try:
                return pa.array(values, pa.duration("us"))
            except (pa.ArrowInvalid, OverflowError):  # beyond ±292,000 years
                pass
        return strings  # months (no fixed length), infinity, huge: the server's text
    if oid == _UUID:
        if not hasattr(pa, "uuid"):  # pyarrow before 18: the 16 bytes
            values = [None if v is None else v.bytes for v in values]
        return pa.array(values, UUID_TYPE)
    if all(v is None or isinstance(v, list) for v in values):
        return _list_array(values, element(oid), strings)
    return strings


def _list_array(values: list[Any], item: pa.DataType | None, strings: pa.Array) -> pa.Array:
    """Arrays: a list column of the element's type (Arrow's guess for numeric), else text."""
    if item == AS_TEXT:
        return strings
    try:
        return pa.array(values, None if item is None else pa.large_list(item))
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return strings  # several dimensions, or values the element type cannot hold


#: ``element()`` answer for arrays kept as the server's text (json[], interval[], ...).
AS_TEXT = pa.null()

_ITEM_TYPES = {
    **{oid: arrow for oid, arrow in ARROW_TYPES.items() if arrow is not None},
    type_oid("timestamptz"): pa.timestamp("us", "UTC"),
    _NUMERIC: None,  # Arrow picks a decimal that holds the values
    **dict.fromkeys(_JSON, AS_TEXT),
    _INTERVAL: AS_TEXT,
    type_oid("timetz"): AS_TEXT,
}


def element(oid: int, types: Any) -> pa.DataType | None:
    """The Arrow type of the elements of array type ``oid`` (``types``: psycopg's TypesRegistry).

    None lets Arrow choose; ``AS_TEXT`` keeps the column as text.
    """
    for info in types:
        if info.array_oid == oid:
            return _ITEM_TYPES.get(info.oid, AS_TEXT)
    return AS_TEXT


def _temporal(values: list[Any], arrow: pa.DataType) -> pa.Array:
    """Dates and times; the values Python cannot hold (text) are parsed here."""
    if all(v is None or not isinstance(v, str) for v in values):
        if pa.types.is_timestamp(arrow) and arrow.tz is not None:
            return pa.array(values, pa.timestamp("us", "UTC")).cast(arrow)
        return pa.array(values, arrow)
    ints = [None if v is None else _integer(v, arrow) for v in values]
    storage = pa.int32() if arrow == pa.date32() else pa.int64()
    return pa.array(ints, storage).view(arrow)


_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

# PostgreSQL's ISO output: '12345-06-07 08:09:10.5+02:30 BC'.
_ISO_RE = re.compile(
    r"(?:(\d+)-(\d\d)-(\d\d))? ?(?:(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
    r"(?:([-+])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?"
)


def _integer(value: Any, arrow: pa.DataType) -> int:
    """A date/time value as Arrow stores it: days or microseconds since 1970."""
    if isinstance(value, datetime):
        epoch = _EPOCH_NAIVE if value.tzinfo is None else _EPOCH_AWARE
        return (value - epoch) // _US
    if isinstance(value, date):
        return (value - _EPOCH_NAIVE.date()).days
    daily = arrow == pa.date32()
    if value in ("infinity", "-infinity"):
        top = _INT32_MAX if daily else _INT64_MAX
        return top if value == "infinity" else -top - 1
    m = _ISO_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"unexpected date/time text from the server: {value!r}")
    year, month, day, hh, mi, ss, frac, sign, oh, om, os_, bc = m.groups()
    days = 0
    if year is not None:
        y = int(year)
        days = _days_from_civil(1 - y if bc else y, int(month), int(day))
    if daily:
        return days
    micros = ((int(hh or 0) * 60 + int(mi or 0)) * 60 + int(ss or 0)) * 1_000_000
    micros += int((frac or "").ljust(6, "0"))
    if sign is not None:
        offset = (int(oh) * 60 + int(om or 0)) * 60 + int(os_ or 0)
        micros -= (offset if sign == "+" else -offset) * 1_000_000
    return days * 86_400_000_000 + micros


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (year 0 is 1 BC)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
