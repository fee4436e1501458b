"""Binding a cell's ``:name`` parameters to Python values, server-side.

The statements come from :func:`lunepool_magic.sqltext.split_statements`; each
``:name`` becomes a psycopg placeholder and its value is adapted here (pandas
NA and numpy scalars, dicts as jsonb), so a value never becomes SQL text on
the row path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import JsonbDumper

from lunepool_magic.notebook import messages as display
from lunepool_magic.sqltext import Statement, UnknownParameter, bind_parameters

__all__ = [
    "MAX_PARAMETERS",
    "BoundStatement",
    "DictDumper",
    "bind_cell",
    "unencodable",
]


class BoundStatement(NamedTuple):
    """A statement ready to send: psycopg query text and its parameters (or None)."""

    statement: Statement
    sql: str
    params: dict[str, Any] | None
    #: How a parameter not written as ``:name`` was written (a template's ``{{ low }}``),
    #: by its name, for messages.
    labels: Mapping[str, str] | None = None


# The server's blanks (not Python's str.strip() set: U+00A0 is an identifier
# character to PostgreSQL).
_BLANKS = " \t\n\r\f\v"


# The protocol counts a statement's parameters in 16 bits; libpq refuses more
# (an OperationalError without SQLSTATE, which would cost the connection).
MAX_PARAMETERS = 65535


def bind_cell(
    statements: list[Statement],
    namespace: Mapping[str, Any],
    *,
    line_offset: int = 0,
    labels: Mapping[str, str] | None = None,
) -> list[BoundStatement]:
    """Bind ``:name`` parameters of every statement before any of them runs.

    Binding all first means a typo in the last statement's parameter stops
    the cell before the first statement has changed anything. Every missing
    name of the cell is reported at once. A statement holding a NUL or a lone
    surrogate stops the cell here too (``SqlCellError``): libpq would cut
    the statement short at a NUL, and a surrogate cannot be encoded.
    ``line_offset`` is added to statement line numbers in that message;
    ``labels`` go with every statement that has parameters (see BoundStatement).
    """
    bound: list[BoundStatement] = []
    missing: list[str] = []
    for number, statement in enumerate(statements, 1):
        what = "the statement" if len(statements) == 1 else f"statement {number}"
        line = statement.line + line_offset
        unsendable = display.unsendable_lines(statement.text, line, what)
        if unsendable is not None:
            raise display.SqlCellError(unsendable)
        try:
            sql, params = bind_parameters(statement.text, namespace)
        except UnknownParameter as exc:
            missing += [name for name in exc.names if name not in missing]
            continue
        if params is not None:
            if len(params) > MAX_PARAMETERS:
                raise display.SqlCellError(
                    [
                        f"ERROR:  the statement on line {line} has {len(params)} "
                        f"parameters; PostgreSQL takes at most {MAX_PARAMETERS} per statement",
                        "HINT:  pass many values as one list: WHERE id = ANY(:ids)",
                        "(nothing ran)",
                    ]
                )
            params = {name: _adapt(value) for name, value in params.items()}
        bound.append(BoundStatement(statement, sql, params, labels if params else None))
    if missing:
        raise UnknownParameter(missing)
    return bound


def _adapt(value: Any) -> Any:
    """Values psycopg cannot adapt but a notebook commonly holds: arrays, Series, pd.NA."""
    module = type(value).__module__
    if module.startswith(("numpy", "pandas")):
        if hasattr(value, "ndim") and getattr(value, "ndim", 0) >= 1 and hasattr(value, "tolist"):
            # In a text column (pandas 3's "str"), NaN is the missing value, not a float.
            text = type(getattr(value, "dtype", None)).__name__ == "StringDtype"
            return [None if _is_na(v) or (text and v != v) else v for v in value.tolist()]
        if _is_na(value):
            return None
    return value


class DictDumper(JsonbDumper):
    """dict parameters as jsonb; one that json cannot encode is a clear DataError."""

    def dump(self, obj: Any) -> Any:
        try:
            return super().dump(obj)
        except (TypeError, ValueError) as exc:  # bytes, sets, circular references, ...
            raise psycopg.DataError(f"a dict parameter cannot be sent as jsonb: {exc}") from None
        except RecursionError:
            raise psycopg.DataError(
                "a dict parameter is nested too deeply for Python's json module to encode; "
                "send it as text (json.dumps it yourself) and cast it: :param::jsonb"
            ) from None


def _holds(value: Any, target: str, depth: int = 0) -> bool:
    """Whether ``target`` is ``value`` or inside it (lists, tuples, dicts), by identity."""
    if value is target:
        return True
    if depth > 20:
        return False
    if isinstance(value, (list, tuple)):
        return any(_holds(v, target, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_holds(v, target, depth + 1) for v in (*value.keys(), *value.values()))
    return False


def unencodable(error: UnicodeEncodeError, bound: BoundStatement) -> str:
    """What could not be encoded: a parameter's value or the statement itself."""
    bad = error.object[error.start : error.end]
    kind = "a lone surrogate " if all("\ud800" <= c <= "\udfff" for c in bad) else ""
    which = "the statement"
    for name, value in (bound.params or {}).items():
        if _holds(value, error.object):
            which = f"parameter {(bound.labels or {}).get(name, ':' + name)}"
            break
    return (
        f"{which} holds {kind}{bad!r}, which cannot be encoded as {error.encoding} "
        "(the connection's client_encoding); nothing of this statement was sent"
    )


def _is_na(value: Any) -> bool:
    # pd.NA and pd.NaT, without importing pandas for every value.
    return type(value).__name__ in ("NAType", "NaTType")
