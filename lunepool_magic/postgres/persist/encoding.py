"""One column's values in COPY's two forms: CSV text and binary fields.

Each DataFrame column becomes a :class:`Column`: its PostgreSQL type and two
ways to send its values, made only when needed. ``text()`` gives a pyarrow
array whose CSV form PostgreSQL's input functions read; ``binary()`` (None
when there is no binary form here) gives the fields of COPY's binary format.
Binary is used when every column has one: the server then parses nothing,
and the fields are built by numpy and pyarrow kernels, a block of rows at a
time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lunepool_magic.postgres.copyformat import PG_EPOCH_DAYS, PG_EPOCH_US

__all__ = [
    "NOTHING",
    "Column",
    "Fields",
    "FixedFields",
    "VarFields",
    "arrow_column",
    "null_column",
    "text_only",
]

_NULL_FIELD = pa.scalar(b"\xff\xff\xff\xff", pa.large_binary())  # length -1: NULL
#: The empty binary string, the separator of pyarrow's element-wise joins.
NOTHING = pa.scalar(b"", pa.large_binary())


class Fields:
    """A column's fields in COPY BINARY: a 4-byte big-endian length, then the value."""

    def encode(self, start: int, stop: int) -> pa.Array:  # pragma: no cover (abstract)
        raise NotImplementedError


class FixedFields(Fields):
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


class VarFields(Fields):
    """Variable-length values: a pyarrow large_binary array (NULL where missing)."""

    def __init__(self, payload: pa.Array) -> None:
        self._payload = payload

    def encode(self, start: int, stop: int) -> pa.Array:
        chunk = self._payload.slice(start, stop - start)
        lengths = pc.fill_null(pc.binary_length(chunk), 0).to_numpy(zero_copy_only=False)
        prefix = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(4), len(chunk), [None, pa.py_buffer(lengths.astype(">i4"))]
        ).cast(pa.large_binary())
        fields = pc.binary_join_element_wise(prefix, chunk, NOTHING)  # NULL stays NULL
        return pc.fill_null(fields, _NULL_FIELD)


@dataclass(frozen=True)
class Column:
    """One column to store: its name, PostgreSQL type and its values for COPY."""

    name: str
    pg_type: str
    text: Callable[[], pa.Array]
    binary: Callable[[], Fields] | None


def text_only(name: str, pg_type: str, make: Callable[[], pa.Array]) -> Column:
    """A column sent as text only (no binary form here: numeric, time, arrays, inet...)."""
    return Column(name, pg_type, make, None)


def null_column(name: str, pg_type: str, rows: int) -> Column:
    """A column of ``rows`` NULLs: the same bytes for every type, in both forms."""
    return Column(
        name,
        pg_type,
        lambda: pa.nulls(rows, pa.large_string()),
        lambda: VarFields(pa.nulls(rows, pa.large_binary())),
    )


# --- Columns held as pyarrow arrays of their natural type ------------------------------

_FIXED_DTYPES = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "boolean": "u1",
}


def arrow_column(name: str, pg_type: str, values: pa.Array) -> Column:
    """A column whose values are a pyarrow array; both COPY forms are derived from it."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return Column(
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


def _arrow_fields(pg_type: str, values: pa.Array) -> Fields:
    valid = _valid(values)
    if pg_type in _FIXED_DTYPES:
        zero: Any = False if pg_type == "boolean" else 0
        return FixedFields(_numbers(values, zero).astype(_FIXED_DTYPES[pg_type]), valid)
    if pg_type == "text":
        return VarFields(values.cast(pa.large_binary()))
    if pg_type.startswith("timestamp"):  # timezone-aware values are UTC inside
        return FixedFields((_micros(values) - PG_EPOCH_US).astype(">i8"), valid)
    if pg_type == "date":
        days = _numbers(values.cast(pa.int32())).astype(np.int64) - PG_EPOCH_DAYS
        return FixedFields(days.astype(">i4"), valid)
    if pg_type == "interval":
        fields = np.zeros(len(values), _INTERVAL_DTYPE)
        fields["time"] = _micros(values)
        return FixedFields(fields, valid)
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
