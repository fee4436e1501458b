"""Python values in the server's input syntax: what the CSV form of a column holds.

Intervals (months kept), bytea, array literals (any element type, any
number of dimensions) and JSON text, plus :func:`server_text` for one value
of any type ``%sql`` reads, psycopg's text dumpers covering the rest.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import math
import uuid
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.adapt import PyFormat

from lunepool_magic.postgres.persist.errors import PersistError

__all__ = [
    "array_literal",
    "bytea_literal",
    "interval_literal",
    "is_relativedelta",
    "iso_datetime",
    "json_text",
    "server_text",
    "timedelta_micros",
]

_RELATIVEDELTA = "dateutil.relativedelta.relativedelta"


def is_relativedelta(kind: type) -> bool:
    """Whether ``kind`` is dateutil's relativedelta (what ``%sql`` makes of months)."""
    return f"{kind.__module__}.{kind.__qualname__}" == _RELATIVEDELTA


def iso_datetime(value: dt.datetime) -> str:
    return value.isoformat(sep=" ")


_ONE_MICROSECOND = dt.timedelta(microseconds=1)


def timedelta_micros(value: Any) -> int:
    """A timedelta (Python, numpy or pandas) in whole microseconds; nanoseconds are dropped."""
    if isinstance(value, pd.Timedelta):
        return value.value // 1000
    if isinstance(value, np.timedelta64):
        return timedelta_micros(pd.Timedelta(value))
    return value // _ONE_MICROSECOND


def interval_literal(value: Any) -> str:
    """A timedelta or relativedelta as interval input; months stay months."""
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        return f"{timedelta_micros(value)} us"
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


def bytea_literal(value: bytes | bytearray | memoryview) -> str:
    return "\\x" + bytes(value).hex()


# One encoder for every value (json.dumps would build one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def json_text(value: Any) -> str:
    """``value`` as compact JSON; raises TypeError/ValueError for what JSON cannot hold."""
    return _JSON.encode(value)


def array_literal(value: list[Any], json_items: bool = False) -> str:
    """A list as an array literal, ``{1,NULL,"a b"}``; nested lists are more dimensions.

    ``json_items``: the elements are json/jsonb, so each is written as JSON.
    """
    return "{" + ",".join(_array_item(item, json_items) for item in value) + "}"


def _array_item(item: Any, json_items: bool) -> str:
    if item is None:
        return "NULL"
    if isinstance(item, list) and not json_items:
        return array_literal(item, json_items)  # one more dimension
    if json_items:
        return _quoted(json_text(item))
    if isinstance(item, (bool, np.bool_)):
        return "t" if item else "f"
    if isinstance(item, (int, np.integer)):
        return str(item)
    if isinstance(item, (float, np.floating)):
        return _float_literal(float(item))
    return _quoted(server_text(item))


def _float_literal(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _quoted(text: str) -> str:
    """An array element in double quotes: any type's input text fits there."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_AS_STR = (
    decimal.Decimal,
    int,
    uuid.UUID,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)


def server_text(value: Any) -> str:
    """One value in the server's input syntax, for a column whose type is known.

    Types read by ``%sql`` have their own rendering here; anything else
    (ranges, psycopg's other values) is rendered by psycopg's text dumper,
    which knows how it loaded them.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return iso_datetime(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytea_literal(value)
    if isinstance(value, (dt.timedelta, np.timedelta64)) or is_relativedelta(type(value)):
        return interval_literal(value)
    if isinstance(value, (float, np.floating)):
        return _float_literal(float(value))
    if isinstance(value, _AS_STR):
        return str(value)
    return _dumped(value)


def _dumped(value: Any) -> str:
    kind = type(value)
    try:
        dumper = psycopg.adapters.get_dumper(kind, PyFormat.TEXT)(kind, None)
        return bytes(dumper.dump(value)).decode()
    except (psycopg.ProgrammingError, TypeError, ValueError) as exc:
        raise PersistError(
            f"a value of type {kind.__name__} has no text form here: {exc}",
            "convert the column first, e.g. df[col].astype(str)",
        ) from exc
