"""Object columns: the Python values, not the dtype, decide the PostgreSQL type.

``%sql`` gives object columns for date, time, numeric, uuid, json, bytea and
arrays, and hand-built frames hold Python objects of every kind; here each
such column is inspected once and sent in the server's input form. Only
these columns cost Python work per value, as they hold Python objects anyway.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg.adapt import PyFormat

from lunepool_magic.postgres.persist.encoding import (
    Column,
    Fields,
    FixedFields,
    VarFields,
    arrow_column,
    text_only,
)
from lunepool_magic.postgres.persist.errors import PersistError, unsupported
from lunepool_magic.postgres.persist.literals import (
    array_literal,
    bytea_literal,
    interval_literal,
    is_relativedelta,
    iso_datetime,
    json_text,
    timedelta_micros,
)

__all__ = [
    "array_column",
    "convert_objects",
    "is_missing",
    "json_column",
    "text_array",
]

_MISSING_TYPES = (type(None), type(pd.NA), type(pd.NaT))
_MISSING_TYPE_SET = frozenset(_MISSING_TYPES)
_FLOAT_TYPES = frozenset({float, np.float64, np.float32, np.float16})


def is_missing(value: Any) -> bool:
    """None, pd.NA, pd.NaT, or a float NaN (pandas' missing values in object columns)."""
    kind = type(value)
    return kind in _MISSING_TYPE_SET or (kind in _FLOAT_TYPES and value != value)


def _is_sql_null_in_json(value: Any) -> bool:
    # In a jsonb column Python None is JSON null; pandas' missing values are NULL.
    return value is not None and is_missing(value)


def _subclass(types: set[type], *bases: type) -> bool:
    return bool(types) and all(issubclass(t, bases) for t in types)


def convert_objects(name: str, values: np.ndarray) -> Column:
    """The PostgreSQL type that the values of an object column call for, and their forms."""
    types = set(map(type, values))
    present = {t for t in types if not issubclass(t, _MISSING_TYPES)}
    if float in present or np.float64 in present:
        # NaN in an object column is pandas' missing value (a category's, too).
        present = {type(v) for v in values if not is_missing(v)}
    if not present:
        # Nothing says what the column is: text, as PostgreSQL itself makes an
        # untyped NULL column (CREATE TABLE ... AS SELECT NULL).
        return arrow_column(name, "text", pa.nulls(len(values), pa.large_string()))
    if _subclass(present, str):
        return arrow_column(name, "text", text_array(values, str))
    if _subclass(present, bool, np.bool_):
        return arrow_column(name, "boolean", pa.array(_nullable(values, bool), pa.bool_()))
    if _subclass(present, int, np.integer) and not _subclass(present, bool, np.bool_):
        ints = _nullable(values, int)
        if all(v is None or -(2**63) <= v < 2**63 for v in ints):
            return arrow_column(name, "bigint", pa.array(ints, type=pa.int64()))
        return _numeric_objects(name, values)
    if _subclass(present, float, int, np.floating, np.integer):
        floats = pa.array(_nullable(values, float), pa.float64())
        return arrow_column(name, "double precision", floats)
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
            return text_only(name, "date", lambda: text_array(values, dt.date.isoformat))
        return arrow_column(name, "date", pa.array(_nullable(values, _same), pa.date32()))
    if _subclass(present, dt.time):
        aware = {v.tzinfo is not None for v in _present(values) if type(v) is not str}
        if len(aware) > 1:
            raise PersistError(f"column {name!r} mixes naive and time-zone-aware times")
        pg_type = "time with time zone" if aware == {True} else "time without time zone"
        return text_only(name, pg_type, lambda: text_array(values, dt.time.isoformat))
    if _subclass(present, dt.timedelta, np.timedelta64) or _is_relativedelta(present):
        if _subclass(present, dt.timedelta) and not fallback_text:
            micros = [None if is_missing(v) else timedelta_micros(v) for v in values]
            return arrow_column(name, "interval", pa.array(micros, pa.duration("us")))
        return text_only(name, "interval", lambda: text_array(values, interval_literal))
    if _subclass(present, uuid.UUID):
        return Column(name, "uuid", lambda: text_array(values, str), lambda: _uuid_fields(values))
    if _subclass(present, bytes, bytearray, memoryview):
        payload = pa.array(_nullable(values, bytes), pa.large_binary())
        return Column(
            name, "bytea", lambda: text_array(values, bytea_literal), lambda: VarFields(payload)
        )
    if _subclass(present, ipaddress.IPv4Address, ipaddress.IPv6Address):
        return text_only(name, "inet", lambda: text_array(values, str))
    if _subclass(present, ipaddress.IPv4Interface, ipaddress.IPv6Interface):
        return text_only(name, "inet", lambda: text_array(values, str))
    if _subclass(present, ipaddress.IPv4Network, ipaddress.IPv6Network):
        return text_only(name, "cidr", lambda: text_array(values, str))
    if any(issubclass(t, (list, dict)) for t in present) and _subclass(
        present, list, dict, str, int, float, bool
    ):
        # JSON: objects and arrays, maybe next to JSON's scalars (as %sql reads jsonb).
        element_type = None if type(None) in types else _array_element_type(values)
        if element_type is not None:
            return array_column(name, element_type + "[]", values)
        return json_column(name, "jsonb", values)
    described = ", ".join(sorted(t.__name__ for t in present))
    raise unsupported(name, f"Python objects of type {described}")


def _is_relativedelta(types: set[type]) -> bool:
    """relativedelta values, maybe next to timedeltas (an interval column with months)."""
    if not any(is_relativedelta(t) for t in types):
        return False
    others = {t for t in types if not is_relativedelta(t)} or {dt.timedelta}
    return _subclass(others, dt.timedelta, np.timedelta64)


def _same(value: Any) -> Any:
    return value


def _numeric_objects(name: str, values: np.ndarray) -> Column:
    """Decimal (and int) values: numeric, in binary through psycopg's own (C) dumper."""

    def fields() -> Fields:
        dump = psycopg.adapters.get_dumper(decimal.Decimal, PyFormat.BINARY)(decimal.Decimal).dump
        payloads = [
            None if is_missing(v) else bytes(dump(v if type(v) is decimal.Decimal else
                                                  decimal.Decimal(int(v))))
            for v in values
        ]  # fmt: skip
        return VarFields(pa.array(payloads, pa.large_binary()))

    return Column(name, "numeric", lambda: text_array(values, str), fields)


def _datetime_objects(name: str, values: np.ndarray, fallback_text: bool) -> Column:
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
        return text_only(name, pg_type, lambda: text_array(values, iso_datetime))
    # pyarrow converts aware datetimes to UTC, and keeps microseconds.
    arrow_type = pa.timestamp("us", "UTC" if aware == {True} else None)
    return arrow_column(name, pg_type, pa.array(_nullable(values, _same), arrow_type))


def _present(values: np.ndarray) -> Iterator[Any]:
    return (v for v in values if not is_missing(v))


def _nullable(values: np.ndarray, convert: Any) -> list[Any]:
    return [None if is_missing(v) else convert(v) for v in values]


def text_array(values: np.ndarray, render: Callable[[Any], str]) -> pa.Array:
    """Each value rendered as the server's input text; a str is taken as such text."""
    return pa.array(
        [None if is_missing(v) else v if type(v) is str else render(v) for v in values],
        type=pa.large_string(),
    )


_NO_UUID = bytes(16)


def _uuid_fields(values: np.ndarray) -> Fields:
    valid = np.fromiter((not is_missing(v) for v in values), bool, len(values))
    raw = b"".join(
        v.bytes if ok else _NO_UUID for v, ok in zip(values, valid.tolist(), strict=True)
    )
    return FixedFields(np.frombuffer(raw, dtype="V16"), valid)


# --- JSON and arrays --------------------------------------------------------------------


def json_column(name: str, pg_type: str, values: np.ndarray) -> Column:
    """Every value as JSON text, for a ``json`` or ``jsonb`` column.

    A Python ``None`` is JSON null (that is how ``%sql`` reads them); pandas'
    missing values (``pd.NA``, NaN, NaT) are SQL NULL.
    """
    rendered = []
    for value in values:
        if _is_sql_null_in_json(value):
            rendered.append(None)
            continue
        try:
            rendered.append(json_text(value))
        except (TypeError, ValueError) as exc:
            raise PersistError(
                f"column {name!r} holds a value that is not JSON: {exc}",
                "jsonb columns take dict, list, str, int, finite float, bool and None",
            ) from exc
    text = pa.array(rendered, type=pa.large_string())
    # jsonb's binary form is a version byte (1), then the JSON text; json's is the text.
    version = b"\x01" if pg_type == "jsonb" else b""

    def fields() -> Fields:
        encoded = [None if r is None else version + r.encode() for r in rendered]
        return VarFields(pa.array(encoded, pa.large_binary()))

    return Column(name, pg_type, lambda: text, fields)


def array_column(
    name: str, pg_type: str, values: np.ndarray, *, json_items: bool = False
) -> Column:
    """Lists as a PostgreSQL array literal (nested lists: more dimensions); text only.

    NULL in the column is ``pd.NA`` (or None); a None item is a NULL element.
    ``json_items``: the elements are json/jsonb, so each is written as JSON.
    """

    def literal(value: list[Any]) -> str:
        return array_literal(value, json_items)

    return text_only(name, pg_type, lambda: text_array(values, literal))


# Array element types, most specific first: (Python types, PostgreSQL element type).
_ARRAY_ELEMENTS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((bool, np.bool_), "boolean"),
    ((int, np.integer), "bigint"),
    ((float, int, np.floating, np.integer), "double precision"),
    ((decimal.Decimal, int, np.integer), "numeric"),
    ((str,), "text"),
)


def _array_element_type(values: np.ndarray) -> str | None:
    """The element type of flat lists of one scalar type; None: not an array (jsonb)."""
    element_types: set[type] = set()
    any_list = False
    for value in values:
        if is_missing(value):
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
