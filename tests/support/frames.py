"""Comparing DataFrames exactly: what the fast path and the row path must agree on."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.arrays.masked import BaseMaskedArray


def assert_same(fast: pd.DataFrame, row: pd.DataFrame) -> None:
    """``fast`` is exactly ``row``: dtypes, NULL masks, bits of floats, types of objects."""
    assert list(fast.columns) == list(row.columns)
    assert [str(t) for t in fast.dtypes] == [str(t) for t in row.dtypes]
    assert type(fast.index) is type(row.index) and fast.index.equals(row.index)
    # Object columns are compared below by identical(), more strictly than pandas
    # does (types, bits of floats) and also where pandas cannot (a list holding NaN).
    plain = [j for j in range(row.shape[1]) if not pd.api.types.is_object_dtype(row.dtypes.iloc[j])]
    pd.testing.assert_frame_equal(fast.iloc[:, plain], row.iloc[:, plain], check_exact=True)
    for j in range(row.shape[1]):
        a, b = fast.iloc[:, j].array, row.iloc[:, j].array
        where = f"column {j} ({row.columns[j]!r}, {row.dtypes.iloc[j]})"
        assert a.dtype == b.dtype, where
        if isinstance(b, BaseMaskedArray):
            assert isinstance(a, BaseMaskedArray), where
            assert np.array_equal(a._mask, b._mask), where
            keep = ~b._mask
            data_a, data_b = a._data[keep], b._data[keep]
            if data_b.dtype.kind == "f":  # NaN, -0.0: compare the bits
                width = f"u{data_b.dtype.itemsize}"
                data_a, data_b = data_a.view(width), data_b.view(width)
            assert np.array_equal(data_a, data_b), where
        elif b.dtype.kind in "mM":
            assert np.array_equal(a.asi8, b.asi8), where  # NaT included
        elif pd.api.types.is_object_dtype(b.dtype):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                assert identical(x, y), (where, i, x, y)
        else:  # strings
            assert a.tolist() == b.tolist(), where
            assert np.array_equal(a.isna(), b.isna()), where


def identical(x: Any, y: Any) -> bool:
    """Same type and same value, to the last digit, bit and time zone (recursively)."""
    if type(x) is not type(y):
        return False
    if y is None or y is pd.NA:
        return x is y
    if isinstance(y, float):
        return np.float64(x).view(np.uint64) == np.float64(y).view(np.uint64)
    if isinstance(y, Decimal):
        return x.compare_total(y) == 0  # NaN, -0, trailing zeros
    if isinstance(y, list | tuple):
        return len(x) == len(y) and all(map(identical, x, y))
    if isinstance(y, dict):
        return x.keys() == y.keys() and all(identical(x[k], y[k]) for k in y)
    if isinstance(y, dt.datetime | dt.time):
        return x == y and x.tzinfo == y.tzinfo and x.fold == y.fold
    return bool(x == y)
