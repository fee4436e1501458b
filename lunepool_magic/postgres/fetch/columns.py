"""Per-column buffers of a COPY result, and the final pandas or Arrow arrays built from them.

Values grow block by block in bytearrays that become the final numpy arrays
without a copy; text arrives as pyarrow chunks; types decoded value by value
use psycopg's loaders with the row path's fallbacks. Every dtype is the one
:mod:`lunepool_magic.postgres.frames` gives the row path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg.adapt import Transformer
from psycopg.pq import Format

if TYPE_CHECKING:
    from psycopg.abc import Transformer as TransformerType

from lunepool_magic.postgres import arrow
from lunepool_magic.postgres.copyformat import PG_EPOCH_DAYS, PG_EPOCH_US
from lunepool_magic.postgres.frames import (
    NAT,
    NUMPY_STORAGE,
    ColumnType,
    Kind,
    LoaderContext,
    ValueSource,
    build_column,
    fallback_adapters,
    object_series,
    text_array,
)


@dataclass(slots=True)
class Column:
    """One result column: its name, type, how it is decoded, and its values so far.

    Fixed-width values and NULL flags are appended block by block to
    bytearrays, which grow in place (realloc; the kernel remaps large ones
    without copying) and become the final numpy arrays without a copy:
    concatenating per-block arrays at the end would hold every value twice.
    """

    name: str
    oid: int
    ct: ColumnType
    decoder: str  # binary: plan.BINARY_WIRE[...][0]; csv: "int", "float", "bool", "text", "loader"
    typmod: int = -1  # the type modifier the server reported (varchar(n), numeric(p,s))
    values: bytearray = field(default_factory=bytearray)  # fixed-width values, native order
    dtype: Any = None  # their numpy dtype
    nulls: bytearray = field(default_factory=bytearray)  # one bool per row
    pieces: list[Any] = field(default_factory=list)  # text: arrow arrays; loader: value lists
    exceptions: dict[int, bytes] = field(default_factory=dict)  # row -> server text
    piece_bytes: int = 0  # what ``pieces`` hold (for the memory budget)

    def held(self) -> int:
        """Bytes the column's values take so far (Python values: an estimate)."""
        return len(self.values) + len(self.nulls) + self.piece_bytes

    def add_arrow(self, chunks: list[Any]) -> None:
        """Text (or raw text) chunks: Arrow arrays."""
        self.pieces.extend(chunks)
        self.piece_bytes += sum(chunk.nbytes for chunk in chunks)

    def add_values(self, values: list[Any]) -> None:
        """Python values from psycopg's loaders (their size estimated from a sample)."""
        self.pieces.append(values)
        sample = values[:16]
        if sample:
            each = sum(map(sys.getsizeof, sample)) / len(sample)
            self.piece_bytes += int((each + 8) * len(values))

    def append(self, values: np.ndarray, nulls: np.ndarray) -> None:
        self.dtype = values.dtype
        self.values += np.ascontiguousarray(values).data
        self.nulls += np.ascontiguousarray(nulls, dtype=np.bool_).data

    def release(self) -> None:
        self.values = bytearray()
        self.nulls = bytearray()
        self.pieces = []
        self.exceptions = {}
        self.piece_bytes = 0


def _arrays(col: Column, nrows: int) -> tuple[np.ndarray, np.ndarray]:
    """The column's values and NULL flags so far, as numpy arrays (no copy)."""
    values = np.frombuffer(col.values, dtype=col.dtype)[:nrows]
    nulls = np.frombuffer(col.nulls, dtype=np.bool_)[:nrows]
    return values, nulls


def _masked_array(col: Column, nrows: int) -> Any:
    ct = col.ct
    values, mask = _arrays(col, nrows)
    if col.decoder != "bool":
        values = values.astype(NUMPY_STORAGE[str(ct.dtype)], copy=False)  # float4: float32
    values[mask] = 0
    if ct.kind is Kind.INTEGER:
        return pd.arrays.IntegerArray(values, mask)
    if ct.kind is Kind.FLOAT:
        return pd.arrays.FloatingArray(values, mask)
    return pd.arrays.BooleanArray(values, mask)


def _string_array(col: Column, nrows: int) -> Any:
    array = text_array(pa.chunked_array(col.pieces, type=pa.large_string()))
    return array[:nrows] if len(array) > nrows else array


def _datetime_column(col: Column, nrows: int, src: ValueSource, j: int, loaders: Loaders) -> Any:
    raw, null = _arrays(col, nrows)
    exceptions = {i: t for i, t in col.exceptions.items() if i < nrows}
    if col.decoder == "date":
        days = raw.astype(np.int64) + PG_EPOCH_DAYS
        values = days.astype("datetime64[D]").astype(object)  # datetime.date
        values[null] = None
    else:
        micros = raw
        micros += PG_EPOCH_US  # in place; wraps around for infinity: replaced below
        micros[null] = NAT
        if not exceptions:
            stamps = micros.view("datetime64[us]")
            if col.decoder == "timestamp":
                return stamps
            utc = pd.DatetimeIndex(stamps, tz="UTC")
            return (utc.tz_convert(src.tz) if src.tz is not None else utc).array
        micros[list(exceptions)] = NAT
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
    return build_column(values.tolist(), col.ct, src, j)


def build(col: Column, nrows: int, src: ValueSource, j: int, loaders: Loaders) -> Any:
    if nrows == 0:
        return build_column((), col.ct, src, j)
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
        return object_series([pd.NA if n else v for v, n in zip(values, nulls, strict=True)])
    return build_column(values, col.ct, src, j)


def build_arrow(col: Column, nrows: int, tz: Any, loaders: Loaders, types: Any) -> Any:
    """The column as an Arrow array (or chunked array), from the same buffers, without pandas.

    Fixed-width values become Arrow buffers without a copy; text chunks are
    kept; ``loader`` columns (kept as the server's text in Arrow mode) are
    converted by :func:`lunepool_magic.postgres.arrow.from_text`.
    """
    decoder = col.decoder
    wanted = arrow.ARROW_TYPES.get(col.oid)
    if decoder == "text":
        chunks = pa.chunked_array(col.pieces, type=pa.large_string())
        return chunks.slice(0, nrows)
    if decoder in ("int", "float", "bool"):
        values, nulls = _arrays(col, nrows)
        if col.decoder == "float" and wanted == pa.float32():
            values = values.astype(np.float32)  # CSV gives float64: rounded as the row path does
        return arrow.fixed_width_array(values, nulls, wanted)
    if decoder in ("timestamp", "timestamptz", "date"):
        raw, nulls = _arrays(col, nrows)
        if decoder == "timestamptz":
            wanted = pa.timestamp("us", arrow.arrow_tz(tz))
        epoch, infinite = arrow.epoch_for(col.oid)
        return arrow.timestamp_array(raw, nulls, wanted, epoch, infinite)
    # "loader": the server's text of each value.
    raw = pa.chunked_array(col.pieces, type=pa.large_binary()).combine_chunks().slice(0, nrows)
    return arrow.from_text(
        raw,
        col.oid,
        col.typmod,
        col.ct.kind,
        loaders.load_function(col.oid),
        tz,
        lambda oid: arrow.element(oid, types),
    )


class Loaders:
    """psycopg's text loaders plus the row path's fallbacks for date/time values Python
    cannot hold: the adapters the row path uses when psycopg refuses a value
    (frames.load_rows). For every value psycopg can load they return what psycopg
    returns. Built on first use: most results never need them.
    """

    def __init__(self, conn: psycopg.Connection[Any]):
        self._conn = conn
        self._transformer: TransformerType | None = None

    def load_function(self, oid: int) -> Callable[[bytes], Any]:
        if self._transformer is None:
            adapters = fallback_adapters(self._conn.adapters)
            self._transformer = Transformer(LoaderContext(adapters, self._conn))
        return self._transformer.get_loader(oid, Format.TEXT).load
