"""What the fast path sends: the probe, the COPY format and each column's decoder.

The probe (``LIMIT 0`` in a transaction or savepoint of our own) reports the
result's column types without running the query; from them and the session's
settings the plan picks binary COPY when every column can be decoded exactly
from it, CSV otherwise, and writes the COPY statement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
import psycopg.sql
import pyarrow as pa
from psycopg import pq
from psycopg.adapt import Dumper, PyFormat, Transformer
from psycopg.pq import ExecStatus, Format
from psycopg.rows import tuple_row

from lunepool_magic.postgres import libpq
from lunepool_magic.postgres.fetch.columns import Column
from lunepool_magic.postgres.frames import PG_TYPES, Kind, column_type, type_oid
from lunepool_magic.sqltext import leading_keyword

#: What a statement may be, as psycopg's cursors take it.
Query = str | bytes | psycopg.sql.SQL | psycopg.sql.Composed
#: Its parameters, for psycopg's placeholders (%s or %(name)s).
Params = Sequence[Any] | Mapping[str, Any]

#: Parameter values travel to the setting as text.
TEXT_OID = type_oid("text")

ALIAS = "_lunepool_q"
SAVEPOINT = "_lunepool_fastpath"


class Declined(Exception):
    """The fast path cannot run this statement; nothing has been executed."""


# --- Statement text ---------------------------------------------------------------------

#: The statements the fast path can wrap in ``COPY (SELECT * FROM (...))``.
_QUERY_KEYWORDS = frozenset(("select", "with", "values", "table"))


def looks_like_a_query(text: str) -> bool:
    """True if the statement starts with SELECT, WITH, VALUES or TABLE."""
    return leading_keyword(text) in _QUERY_KEYWORDS


def statement_text(conn: psycopg.Connection[Any], sql: Query) -> str:
    if isinstance(sql, psycopg.sql.Composable):
        text = sql.as_string(conn)
    elif isinstance(sql, bytes | bytearray | memoryview):
        text = bytes(sql).decode("utf-8")
    else:
        text = sql
    # A trailing ';' would end the statement inside our parentheses.
    return text.rstrip().rstrip(";").rstrip()


# --- Column plans -----------------------------------------------------------------------

# psycopg's own text loaders, by class name (C and Python implementations
# share the names): a column is decoded by us only if psycopg would load it with
# one of these, so a loader an application registered is always honoured.
_PSYCOPG_MODULES = ("psycopg.", "psycopg_binary.", "psycopg_c.")


_OWN_LOADERS = {
    **dict.fromkeys(map(type_oid, ("int2", "int4", "int8", "oid")), "IntLoader"),
    **dict.fromkeys(map(type_oid, ("float4", "float8")), "FloatLoader"),
    type_oid("bool"): "BoolLoader",
    **dict.fromkeys(map(type_oid, ("text", "varchar", "bpchar", "name", '"char"')), "TextLoader"),
    type_oid("timestamp"): "TimestampLoader",
    type_oid("timestamptz"): "TimestamptzLoader",
    type_oid("date"): "DateLoader",
}


# Binary wire decoders: (decoder, numpy big-endian dtype or None, width).
BINARY_WIRE: dict[int, tuple[str, str | None, int]] = {
    type_oid("int2"): ("int", ">i2", 2),
    type_oid("int4"): ("int", ">i4", 4),
    type_oid("int8"): ("int", ">i8", 8),
    type_oid("oid"): ("int", ">u4", 4),
    type_oid("float8"): ("float", ">f8", 8),
    type_oid("bool"): ("bool", None, 1),
    type_oid("text"): ("text", None, -1),
    type_oid("varchar"): ("text", None, -1),
    type_oid("bpchar"): ("text", None, -1),
    type_oid("name"): ("text", None, -1),
    type_oid("timestamp"): ("timestamp", ">i8", 8),
    type_oid("timestamptz"): ("timestamptz", ">i8", 8),
    type_oid("date"): ("date", ">i4", 4),
}


_FLOAT_OIDS = frozenset((type_oid("float4"), type_oid("float8")))


_DATETIME_OIDS = frozenset(map(type_oid, ("timestamp", "timestamptz", "date")))


# Values inside these bounds can be held by Python in any session time zone
# (offsets are under a day); values outside go through the row path's loaders.
SAFE_WINDOW = {
    type_oid("timestamp"): ("'0002-01-01 00:00:00'::timestamp", "'9998-12-31 00:00:00'::timestamp"),
    type_oid("timestamptz"): (
        "'0002-01-02 00:00:00+00'::timestamptz",
        "'9998-12-30 00:00:00+00'::timestamptz",
    ),
    type_oid("date"): ("'0002-01-01'::date", "'9998-12-31'::date"),
}


# CSV: pyarrow types of the columns pyarrow converts itself.
CSV_ARROW_TYPES = {
    type_oid("int2"): pa.int16(),
    type_oid("int4"): pa.int32(),
    type_oid("int8"): pa.int64(),
    type_oid("oid"): pa.uint32(),
    type_oid("float4"): pa.float64(),  # then float32, like the row path (str -> float -> float32)
    type_oid("float8"): pa.float64(),
    type_oid("bool"): pa.bool_(),
}


def _psycopg_loads_it(conn: psycopg.Connection[Any], oid: int) -> bool:
    loader = conn.adapters.get_loader(oid, Format.TEXT)
    return (
        loader is not None
        and loader.__qualname__ == _OWN_LOADERS.get(oid)
        and loader.__module__.startswith(_PSYCOPG_MODULES)
    )


def _exact_float_text(server_version: int, extra_float_digits: int) -> bool:
    """Does float8's text form (what the row path parses) give back the exact double?"""
    if server_version >= 120000:
        return extra_float_digits >= 1  # shortest exact form
    return extra_float_digits >= 3


def make_plan(
    conn: psycopg.Connection[Any],
    fields: list[tuple[str, int, int]],
    extra_float_digits: int,
    csv: bool = False,
) -> tuple[str, list[Column]]:
    """Choose the COPY format and each column's decoder; ``fields``: (name, OID, typmod).

    ``csv`` asks for CSV whatever the types (a CSV file takes the server's text as is).
    """
    iso = (conn.info.parameter_status("DateStyle") or "").upper().startswith("ISO")
    floats_exact = _exact_float_text(conn.info.server_version, extra_float_digits)
    typmods = [typmod for _, _, typmod in fields]
    types = [(name, oid, column_type(oid, conn.adapters)) for name, oid, _ in fields]

    def binary_ok(oid: int) -> bool:
        if oid not in BINARY_WIRE or not _psycopg_loads_it(conn, oid):
            return False
        if oid in _FLOAT_OIDS:
            return floats_exact
        return iso or oid not in _DATETIME_OIDS

    if not csv and all(binary_ok(oid) for _, oid, _ in types):
        return "binary", [
            Column(name, oid, ct, BINARY_WIRE[oid][0], typmod)
            for (name, oid, ct), typmod in zip(types, typmods, strict=True)
        ]

    columns = []
    for (name, oid, ct), typmod in zip(types, typmods, strict=True):
        if oid in CSV_ARROW_TYPES and _psycopg_loads_it(conn, oid):
            decoder = {Kind.INTEGER: "int", Kind.FLOAT: "float", Kind.BOOLEAN: "bool"}[ct.kind]
        elif ct.kind is Kind.STRING and (oid not in PG_TYPES or _psycopg_loads_it(conn, oid)):
            # Listed text types with psycopg's TextLoader, or types psycopg has no
            # loader for (column_type() decided that): both give the decoded text.
            decoder = "text"
        else:
            decoder = "loader"
        columns.append(Column(name, oid, ct, decoder, typmod))
    return "csv", columns


def copy_statement(text: str, fmt: str, columns: list[Column], limit: int | None) -> str:
    aliases = [f'"c{j}"' for j in range(len(columns))]
    select = f"{ALIAS}.*"
    if fmt == "binary":
        # One extra text column per date/time column: the server's text for the
        # values outside the safe window (NULL for all others).
        for j, col in enumerate(columns):
            if col.oid in SAFE_WINDOW:
                lo, hi = SAFE_WINDOW[col.oid]
                c = aliases[j]
                select += f", CASE WHEN {c} < {lo} OR {c} >= {hi} THEN {c}::text END"
    query = f"SELECT {select} FROM (\n{text}\n) AS {ALIAS}({', '.join(aliases)})"
    if limit is not None:
        query += f" LIMIT {limit + 1}"
    return f"COPY ({query}) TO STDOUT (FORMAT {fmt})"


# --- The probe --------------------------------------------------------------------------

_SETTING_QUERY = "SELECT current_setting('extra_float_digits')::int"


def _probe_query(text: str) -> str:
    return f"SELECT * FROM (\n{text}\n) AS {ALIAS} LIMIT 0"


def probe(
    conn: psycopg.Connection[Any], text: str, params: Params | None, own: bool
) -> tuple[list[tuple[str, int, int]], int, BoundParameters | None]:
    """Start the transaction or savepoint; return the result's fields and the setting.

    Fields are (name, OID, typmod). One round trip, in pipeline mode. Each
    statement goes through the extended protocol, which takes one statement
    only: a text that would be more than one statement once wrapped is
    rejected, as the row path rejects it. With parameters, the third value
    says how the COPY reads them (see ``BoundParameters``).
    """
    start = "BEGIN" if own else f"SAVEPOINT {SAVEPOINT}"
    in_transaction = own or conn.pgconn.transaction_status == libpq.INTRANS
    if params is not None:
        # Outside autocommit psycopg would open the transaction: so do we.
        queries = [start] if in_transaction else ["BEGIN", start]
        with conn.lock:
            return _probe_with_parameters(conn, queries, text, params, own)
    if in_transaction:
        with conn.lock:
            fields, setting = _probe_libpq(conn, [start, _SETTING_QUERY, _probe_query(text)])
            return fields, setting, None
    # A connection outside autocommit gets psycopg's own BEGIN first.
    with conn.pipeline():
        # prepare=False: nothing of ours lingers in psycopg's prepared statements.
        conn.execute(start, prepare=False)
        setting_cursor = conn.execute(_SETTING_QUERY, prepare=False)
        cursor = conn.cursor(row_factory=tuple_row)
        cursor.execute(_probe_query(text), prepare=False)
    row = setting_cursor.fetchone()
    result = cursor.pgresult
    fields = [
        (c.name, c.type_code, result.fmod(j) if result else -1)
        for j, c in enumerate(cursor.description or ())
    ]
    return fields, int(row[0]) if row else 0, None


# --- Parameters -------------------------------------------------------------------------
#
# COPY takes no bind parameters. Pasting a value into the COPY text as a literal
# would put it in pg_stat_activity and the server's logs, make its quoting depend
# on standard_conforming_strings, and give it the type of a literal (1 is int4,
# 1.5 numeric) where the row path's bound parameter has psycopg's type (int2,
# float8): the decoder would then read one type's bytes as another's. So the
# probe binds every value server-side, as the row path does, into a
# transaction-local setting, and the COPY reads it back with current_setting(),
# cast to the type the server gave that parameter.

#: Parameter k reaches the COPY as the setting ``lunepool_magic.p<k>``.
SETTING_PREFIX = "lunepool_magic.p"


class _Sql:
    """A piece of SQL text that ``mogrify`` puts where a placeholder was, as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class _SqlDumper(Dumper):
    oid = 0  # no cast added: the text carries its own

    def dump(self, obj: Any) -> bytes:
        return bytes(obj.text, "utf-8")

    def quote(self, obj: Any) -> bytes:
        return bytes(obj.text, "utf-8")


def _with_placeholders(
    conn: psycopg.Connection[Any], query: str, params: Params, pieces: list[str]
) -> str:
    """``query`` with psycopg's placeholders replaced by ``pieces`` (in ``params``' order).

    psycopg itself finds the placeholders (and turns ``%%`` into ``%``), so
    they are exactly those it binds on the row path.
    """
    keys = list(params) if isinstance(params, Mapping) else range(len(params))
    shaped: Any = [_Sql(p) for p in pieces]
    if isinstance(params, Mapping):
        shaped = dict(zip(keys, shaped, strict=True))
    cursor = psycopg.ClientCursor(conn)
    cursor.adapters.register_dumper(_Sql, _SqlDumper)
    return cursor.mogrify(query, shaped)


class BoundParameters:
    """How the COPY reads the parameters the probe stored: one SQL expression each."""

    def __init__(self, params: Params, expressions: list[str], own: bool):
        self._params = params
        self._expressions = expressions
        self._own = own

    def copy_text(self, conn: psycopg.Connection[Any], copy: str) -> str:
        """The COPY statement with each placeholder replaced by its expression."""
        return _with_placeholders(conn, copy, self._params, self._expressions)

    def cleanup(self) -> str:
        """What to run after the COPY inside the caller's transaction: forget the values.

        A transaction of our own forgets them when it ends.
        """
        if self._own:
            return ""
        resets = ", ".join(
            f"set_config('{SETTING_PREFIX}{k}', '', true)"
            for k in range(1, len(self._expressions) + 1)
        )
        return f"; SELECT {resets}"


def _type_name(conn: psycopg.Connection[Any], oid: int) -> str | None:
    """The SQL name of type ``oid`` for a cast, or None if psycopg does not know it."""
    info = conn.adapters.types.get(oid)
    if info is None:
        return None
    return info.regtype if oid == info.oid else f"{info.regtype}[]"


def _probe_with_parameters(
    conn: psycopg.Connection[Any], queries: list[str], text: str, params: Params, own: bool
) -> tuple[list[tuple[str, int, int]], int, BoundParameters]:
    """The probe with the values bound server-side, then kept in settings for the COPY."""
    if conn.info.parameter_status("standard_conforming_strings") != "on":
        # Where a string ends then depends on backslashes in ways the magic's
        # lexer and psycopg's placeholder scan do not follow: the row path's.
        raise Declined("standard_conforming_strings is off")
    values = list(params.values()) if isinstance(params, Mapping) else list(params)
    n = len(values)
    probe_sql = _with_placeholders(
        conn, _probe_query(text), params, [f"${k}" for k in range(1, n + 1)]
    )
    transformer = Transformer(conn)
    dumped = transformer.dump_sequence(values, [PyFormat.TEXT] * n)
    types = list(transformer.types or ())  # the OIDs psycopg sends on the row path too
    stored = [k for k in range(n) if dumped[k] is not None]
    store = ", ".join(
        f"set_config('{SETTING_PREFIX}{k + 1}', ${j}, true)" for j, k in enumerate(stored, 1)
    )
    encoding = conn.info.encoding

    def send(pgconn: Any) -> None:
        for query in [*queries, _SETTING_QUERY]:
            pgconn.send_query_params(query.encode(encoding), None)
        # The unnamed statement: replaced by the next one, nothing lingers.
        pgconn.send_prepare(b"", probe_sql.encode(encoding), param_types=types)
        pgconn.send_describe_prepared(b"")
        pgconn.send_query_prepared(b"", dumped)
        if stored:
            pgconn.send_query_params(
                f"SELECT {store}".encode(encoding),
                [dumped[k] for k in stored],
                param_types=[TEXT_OID] * len(stored),
            )

    results = _run_pipeline(conn, send)
    first = len(queries)
    setting, described, probe_result = results[first], results[first + 2], results[first + 3]
    expressions = []
    for k in range(n):
        name = _type_name(conn, described.param_type(k))
        if name is None:
            raise Declined("a parameter of a type psycopg does not know")
        value = "NULL" if dumped[k] is None else f"current_setting('{SETTING_PREFIX}{k + 1}')"
        expressions.append(f"{value}::{name}")
    fields = _fields(probe_result, encoding)
    return fields, int(setting.get_value(0, 0)), BoundParameters(params, expressions, own)


def _probe_libpq(
    conn: psycopg.Connection[Any], queries: list[str]
) -> tuple[list[tuple[str, int, int]], int]:
    """``probe`` without psycopg's cursors (a third of the time): libpq's pipeline mode."""
    encoding = conn.info.encoding

    def send(pgconn: Any) -> None:
        for query in queries:
            pgconn.send_query_params(query.encode(encoding), None)

    results = _run_pipeline(conn, send)
    setting, probe = results[1], results[2]
    return _fields(probe, encoding), int(setting.get_value(0, 0))


def _run_pipeline(conn: psycopg.Connection[Any], send: Callable[[Any], None]) -> list[Any]:
    """Send ``send``'s commands as one pipeline; their results, or the first server error.

    An interrupt (or any exception) on the way leaves the pipeline cleanly
    (``abandon_pipeline``) before it propagates.
    """
    pgconn = conn.pgconn
    pgconn.enter_pipeline_mode()
    try:
        send(pgconn)
        pgconn.pipeline_sync()
        libpq.flush(pgconn)
        results = pipeline_results(pgconn)
    except BaseException:
        abandon_pipeline(conn)
        raise
    pgconn.exit_pipeline_mode()
    for result in results:
        if result.status == ExecStatus.FATAL_ERROR:
            raise libpq.error_from(conn, result)
    return results


def _fields(result: Any, encoding: str) -> list[tuple[str, int, int]]:
    """A result's columns as (name, type OID, typmod)."""
    return [
        (result.fname(i).decode(encoding), result.ftype(i), result.fmod(i))
        for i in range(result.nfields)
    ]


def pipeline_results(pgconn: Any, deadline: float | None = None) -> list[Any]:
    """Every result of a pipeline, up to its sync point."""
    results: list[Any] = []
    while True:
        result = libpq.next_result(pgconn, deadline)
        if result is None:  # between two queries' results
            if pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("the connection was lost")
            continue
        if result.status == ExecStatus.PIPELINE_SYNC:
            return results
        results.append(result)


def abandon_pipeline(conn: psycopg.Connection[Any]) -> None:
    """After an interrupt in the probe: cancel, read to the sync point, leave pipeline mode."""
    pgconn = conn.pgconn
    try:
        if pgconn.transaction_status == libpq.ACTIVE:
            conn.cancel_safe(timeout=libpq.CANCEL_TIMEOUT)
        pipeline_results(pgconn, time.monotonic() + libpq.CANCEL_TIMEOUT)
        pgconn.exit_pipeline_mode()
    except BaseException:  # a second Ctrl-C, a dead socket, a server that does not stop
        libpq.close_quietly(conn)
