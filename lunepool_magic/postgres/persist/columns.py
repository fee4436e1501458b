"""DataFrame columns -> PostgreSQL column types, by dtype (the table is in docs/persist.md).

What a column becomes when nothing else is known about it: the dtype
decides, and for object columns the Python values do (:mod:`.objects`). The
named index levels are columns too, as ``reset_index()`` would make them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from lunepool_magic.postgres.persist.encoding import Column, arrow_column
from lunepool_magic.postgres.persist.errors import PersistError, unsupported
from lunepool_magic.postgres.persist.names import MAX_IDENTIFIER_BYTES
from lunepool_magic.postgres.persist.objects import convert_objects

__all__ = ["convert", "frame_columns"]


def frame_columns(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
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


_INT_TYPES = {1: "smallint", 2: "smallint", 4: "integer", 8: "bigint"}
_UINT_TYPES = {1: "smallint", 2: "integer", 4: "bigint"}


def convert(name: str, series: pd.Series) -> Column:
    """The PostgreSQL type of one column, from its dtype (or values), and how to send them."""
    dtype = series.dtype
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            return convert_objects(name, np.asarray(series, dtype=object))
        if isinstance(dtype, pd.ArrowDtype):
            return _convert_arrow(name, pa.array(series.array))
        if isinstance(dtype, pd.DatetimeTZDtype):
            return arrow_column(name, "timestamp with time zone", pa.array(series.array))
        if isinstance(dtype, pd.StringDtype):
            return arrow_column(name, "text", pa.array(series.array, type=pa.large_string()))
        if isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype, pd.SparseDtype)):
            raise unsupported(name, str(dtype))
        kind = dtype.kind  # masked dtypes (Int64, Float64, boolean) have numpy's kinds
        if kind == "b":
            return arrow_column(name, "boolean", pa.array(series.array, type=pa.bool_()))
        if kind == "i":
            return arrow_column(name, _INT_TYPES[dtype.itemsize], pa.array(series.array))
        if kind == "u":
            if dtype.itemsize == 8:
                return arrow_column(name, "numeric", pa.array(series.array))
            return arrow_column(name, _UINT_TYPES[dtype.itemsize], pa.array(series.array))
        if kind == "f":
            return _float_column(name, series)
        if kind == "M":
            return arrow_column(name, "timestamp without time zone", pa.array(series.array))
        if kind == "m":
            return arrow_column(name, "interval", pa.array(series.array))
        if kind == "O":
            return convert_objects(name, np.asarray(series, dtype=object))
    except PersistError:
        raise
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise PersistError(
            f"column {name!r} ({dtype}) could not be converted: {exc}",
            "convert it to a simpler type first (df[...].astype(...))",
        ) from exc
    raise unsupported(name, str(dtype))


def _float_column(name: str, series: pd.Series) -> Column:
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
    return arrow_column(name, pg_type, values)


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


def _convert_arrow(name: str, values: pa.Array) -> Column:
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
            return arrow_column(name, pg_type, values)
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.tz is None:
            return arrow_column(name, "timestamp without time zone", values)
        return arrow_column(name, "timestamp with time zone", values)
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return convert_objects(name, np.asarray(values.to_pylist(), dtype=object))
    raise unsupported(name, f"pyarrow {arrow_type}")
