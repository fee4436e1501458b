"""What each column becomes in PostgreSQL, and that it comes back: persist, then ``query()``.

Two ways a column gets its type. A DataFrame from ``%sql`` records the
server type of each column (``df.attrs["lunepool_magic.columns"]``), and
persist recreates exactly that type: checked for every type ``%sql``
returns, with values, with only NULLs and with no rows, through create,
append and replace, against the source table's own ``format_type``. A frame
without that record (built by hand, or transformed) is typed by its dtypes
and values: the documented table, in both COPY formats.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides the `ip` fixture)

from lunepool_magic.persist import COLUMNS_ATTR, PersistError, column_types, persist
from lunepool_magic.postgres import query

FORMATS = ["binary", "csv"]
RUN = uuid.uuid4().hex[:8]  # table names of this run: other runs may share the server


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


def assert_same(back: pd.DataFrame, frame: pd.DataFrame) -> None:
    """assert_frame_equal, except that object columns compare as (nested) lists.

    (pandas' testing iterates over iterable values: an ipaddress network
    would be walked address by address.)
    """
    assert list(back.columns) == list(frame.columns)
    assert list(back.dtypes) == list(frame.dtypes)
    objects = [c for c in frame.columns if frame[c].dtype == object]
    pd.testing.assert_frame_equal(back.drop(columns=objects), frame.drop(columns=objects))
    for name in objects:
        assert _plain(back[name].tolist()) == _plain(frame[name].tolist()), name


SQL_NULL = ("SQL NULL",)  # no value read from the server is a tuple


def _plain(value: Any) -> Any:
    """Values comparable with ==: SQL NULL (pd.NA) apart from None, NaN as a string."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if value is pd.NA:
        return SQL_NULL
    if isinstance(value, (float, decimal.Decimal)) and value != value:
        return "NaN"
    return value


# The query path's types, as the server makes them; NULL in every column.
ROUND_TRIP_SQL = r"""
SELECT * FROM (VALUES
 (1::int2, 2::int4, 3::int8, 1.5::float4, 'NaN'::float8, true, 'a"b,c
d'::text, ''::varchar, '2024-01-02 03:04:05.123456'::timestamp,
 '2024-01-02 03:04:05.123456+02'::timestamptz, '1 day 02:03:04.5'::interval, '2024-02-29'::date,
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '{"a": [1, null, "x"]}'::jsonb, '\x00ff'::bytea,
 'Infinity'::float8, 'null'::jsonb, 12.345678901234567890::numeric),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '-Infinity', NULL, NULL),
 (-32768, 2147483647, -9223372036854775808, 'Infinity', 1e-300, false, '\.', 'x', '1900-01-01',
  '9999-12-31 23:59:59.999999+00', '-1 days -00:00:01', '0001-01-01',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '[]', '\x', 0.1, '{}', 'NaN'),
 (7, 8, 9, '-0', '-0', true, 'ünï ☃ "quoted", back\slash', ' ', '1969-12-31 23:59:59.999999',
  '1970-01-01 00:00:00+00', '00:00:00', '1999-12-31', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13',
  '"s"', '\x01', 1e300, '1', '-Infinity')
) AS v(i2, i4, i8, f4, f8, b, t, vc, ts, tstz, iv, d, u, jb, by, f8b, jnull, num)
"""

# Types that only go as CSV (no binary form here): numeric, time, arrays, month intervals, ...
TEXT_ONLY_SQL = r"""
SELECT * FROM (VALUES
 (12.345678901234567890::numeric, '12:34:56.789'::time, '12:34:56+05:30'::timetz,
  ARRAY[1, NULL, 3]::int8[], ARRAY['a', 'b"c', NULL, '{}']::text[],
  '1 year 2 mons 3 days'::interval,
  '[1, 2]'::json, '192.168.0.1'::inet, '10.0.0.0/8'::cidr, ARRAY[1.5, '-Infinity']::float8[],
  'infinity'::timestamp, '24:00:00'::time),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 ('NaN', '00:00', '00:00+00', ARRAY[]::int8[], ARRAY[]::text[], '-1 mons', '"s"', '::1', '::/0',
  ARRAY[]::float8[], '2024-01-01', '23:59:59.999999')
) AS v(num, tm, ttz, ai, at, iv, js, ip, net, af, ts_inf, tm24)
"""


def assert_round_trip(conn: psycopg.Connection[Any], frame: pd.DataFrame, fmt: str) -> None:
    table = f"lpm_rt_{uuid.uuid4().hex[:10]}"
    try:
        result = persist(conn, frame, table, copy_format=fmt)
        assert result.rows == len(frame)
        back = query(conn, f"SELECT * FROM {table}")
        assert_same(back, frame)
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_query_results_round_trip(conn: psycopg.Connection[Any], fmt: str) -> None:
    frame = query(conn, ROUND_TRIP_SQL)
    assert_round_trip(conn, frame, fmt)


def test_text_only_types_round_trip_through_csv(conn: psycopg.Connection[Any]) -> None:
    frame = query(conn, TEXT_ONLY_SQL)
    assert_round_trip(conn, frame, "auto")
    with pytest.raises(PersistError, match=r"no binary COPY form here for: tm \(time"):
        persist(conn, frame, "lpm_never_created", copy_format="binary")


@pytest.mark.parametrize("fmt", FORMATS)
def test_float_nan_inf_and_null_stay_apart(conn: psycopg.Connection[Any], fmt: str) -> None:
    masked = pd.arrays.FloatingArray(
        np.array([1.5, np.nan, 0.0, np.inf, -np.inf]), np.array([False, False, True, False, False])
    )
    frame = pd.DataFrame({"masked": masked, "plain": [1.5, np.nan, np.nan, np.inf, -np.inf]})
    table = f"lpm_nan_{uuid.uuid4().hex[:8]}"
    try:
        persist(conn, frame, table, copy_format=fmt)
        rows = conn.execute(
            f"SELECT masked::text, plain::text FROM {table} ORDER BY masked NULLS LAST"
        ).fetchall()
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    # Masked float: NaN is a value, <NA> is NULL. numpy float: NaN is pandas' missing: NULL.
    assert sorted(rows, key=str) == sorted(
        [("1.5", "1.5"), ("NaN", None), (None, None), ("Infinity", "Infinity"),
         ("-Infinity", "-Infinity")],
        key=str,
    )  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_pandas_dtypes_map_to_the_documented_types_and_come_back(
    conn: psycopg.Connection[Any], fmt: str
) -> None:
    utc = dt.timezone.utc
    frame = pd.DataFrame(
        {
            "i8": np.array([1, -2, 3], dtype=np.int8),
            "i16": np.array([1, -2, 3], dtype=np.int16),
            "i32": np.array([1, -2, 3], dtype=np.int32),
            "i64": np.array([1, -(2**63), 2**63 - 1], dtype=np.int64),
            "u8": np.array([0, 1, 255], dtype=np.uint8),
            "u16": np.array([0, 1, 65535], dtype=np.uint16),
            "u32": np.array([0, 1, 2**32 - 1], dtype=np.uint32),
            "nullable": pd.array([1, None, 3], dtype="Int64"),
            "f32": np.array([0.1, 1e-45, 3.4e38], dtype=np.float32),
            "f64": [0.1, 1 / 3, 1e-300],
            "flag": [True, False, True],
            "maybe": pd.array([True, None, False], dtype="boolean"),
            "text": pd.array(["a", None, ""], dtype="string"),
            "pyarrow_text": pd.array(["a", None, "c"], dtype="string[pyarrow]"),
            "str_default": pd.Series(["x", "y", None]),
            "category": pd.Categorical(["lo", "hi", None]),
            "ts": pd.to_datetime(
                ["2024-01-01 00:00:00.000001", None, "1677-09-22"], format="ISO8601"
            ),
            "tz": pd.to_datetime(
                ["2024-06-01 12:00", None, "2000-01-01 00:00"], format="ISO8601"
            ).tz_localize("Europe/Paris"),
            "td": pd.to_timedelta(["1 day 00:00:00.5", None, "-3 s"]),
            "py_dates": [dt.date(2024, 1, 1), None, dt.date(1, 1, 1)],
            "py_datetimes": [
                dt.datetime(2024, 1, 1, 12, tzinfo=utc), None, dt.datetime(1, 1, 1, tzinfo=utc)
            ],
            "decimals": [decimal.Decimal("1.10"), None, decimal.Decimal("-0.000000000001")],
            "big_ints": [2**70, None, -5],
            "uuids": [uuid.UUID(int=1), None, uuid.UUID(int=2**128 - 1)],
            "blobs": [b"\x00\xff", None, b""],
            "json": [{"a": [1, None]}, pd.NA, {"b": "c"}],
            "ints_list": [[1, None, 3], pd.NA, []],
            "words": [["a", 'b"c'], ["{", "}"], pd.NA],
            "ip": [ipaddress.ip_address("10.0.0.1"), None, ipaddress.ip_address("::1")],
        }
    )  # fmt: skip
    types = dict(column_types(frame))
    assert types == {
        "i8": "smallint", "i16": "smallint", "i32": "integer", "i64": "bigint",
        "u8": "smallint", "u16": "integer", "u32": "bigint", "nullable": "bigint",
        "f32": "real", "f64": "double precision", "flag": "boolean", "maybe": "boolean",
        "text": "text", "pyarrow_text": "text", "str_default": "text", "category": "text",
        "ts": "timestamp without time zone", "tz": "timestamp with time zone",
        "td": "interval", "py_dates": "date", "py_datetimes": "timestamp with time zone",
        "decimals": "numeric", "big_ints": "numeric", "uuids": "uuid", "blobs": "bytea",
        "json": "jsonb",
        "ints_list": "bigint[]", "words": "text[]", "ip": "inet",
    }  # fmt: skip
    if fmt == "binary":
        frame = frame.drop(columns=["ints_list", "words", "ip"])
    table = f"lpm_dtypes_{uuid.uuid4().hex[:8]}"
    try:
        persist(conn, frame, table, copy_format=fmt)
        back = query(conn, f"SELECT * FROM {table}")
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    # Values come back equal, in the query path's dtypes.
    for name in frame.columns:
        original = _plain(frame[name].astype(object).where(frame[name].notna(), None).tolist())
        returned = _plain(back[name].astype(object).where(back[name].notna(), None).tolist())
        if name == "tz":
            returned = [None if v is None else v.tz_convert("Europe/Paris") for v in returned]
        assert returned == original, name
    assert str(back["nullable"].dtype) == "Int64"
    assert str(back["ts"].dtype) == "datetime64[us]"


def test_nanoseconds_are_dropped_in_both_formats(conn: psycopg.Connection[Any]) -> None:
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-01-01 00:00:00.000001999"]).astype("datetime64[ns]"),
            "td": pd.to_timedelta([1999], unit="ns"),
        }
    )
    for fmt in FORMATS:
        table = f"lpm_ns_{fmt}_{RUN}"
        try:
            persist(conn, frame, table, copy_format=fmt, mode="replace")
            row = conn.execute(f"SELECT ts, td FROM {table}").fetchone()
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        assert row == (dt.datetime(2024, 1, 1, 0, 0, 0, 1), dt.timedelta(microseconds=1)), fmt


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.none() | st.text(alphabet=st.characters(blacklist_categories=["Cs"],
                                                       blacklist_characters="\x00")),
            st.none() | st.floats(allow_nan=True, allow_infinity=True),
            st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
        ),
        max_size=30,
    )
)  # fmt: skip
def test_text_floats_and_ints_round_trip_property(
    conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]
) -> None:
    frame = pd.DataFrame(
        {
            "t": pd.array([r[0] for r in rows], dtype="string[pyarrow]"),
            "f": pd.arrays.FloatingArray(
                np.array([0.0 if r[1] is None else r[1] for r in rows], dtype=float),
                np.array([r[1] is None for r in rows], dtype=bool),
            ),
            "i": pd.array([r[2] for r in rows], dtype="Int64"),
        }
    )
    for fmt in FORMATS:
        table = f"lpm_prop_{fmt}_{RUN}"
        try:
            persist(conn, frame, table, copy_format=fmt, mode="replace")
            back = query(conn, f"SELECT * FROM {table}")
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        pd.testing.assert_frame_equal(back, frame)


# ---------------------------------------------------------------- types recorded by %sql
#
# One column per type that %sql returns: every entry of PG_TYPES (some with a
# type modifier, some with the values that make the query path fall back to
# object dtype), arrays, and the other types psycopg loads (inet, cidr, ranges)
# or leaves as the server's text (money, bit, tsvector, xml, ...). Row k takes
# the k-th value; after the last value the column is NULL (at least two rows).
SERVER_TYPES: list[tuple[str, str, list[str]]] = [
    ("int2", "int2", ["-32768", "0", "32767"]),
    ("int4", "int4", ["-2147483648", "7", "2147483647"]),
    ("int8", "int8", ["-9223372036854775808", "0", "9223372036854775807"]),
    ("oid", "oid", ["0", "1", "4294967295"]),
    ("float4", "float4", ["1.5", "'NaN'", "'-Infinity'", "'-0'"]),
    ("float8", "float8", ["1e-300", "'NaN'", "'Infinity'", "0.1"]),
    ("bool", "bool", ["true", "false"]),
    ("text", "text", ["'a\"b,c' || chr(10) || 'd'", "''", r"'\.'", r"'ünï ☃ back\slash'"]),
    ("varchar", "varchar", ["'x'", "' '"]),
    ("varchar5", "varchar(5)", ["'abc'", "''", "'ü☃'"]),
    ("bpchar3", "char(3)", ["'ab'", "'abc'", "''"]),
    ("name", "name", ["'pg_class'", "'x y'"]),
    ("char", '"char"', ["'a'", "'Z'"]),
    ("timestamp", "timestamp",
     ["'2024-01-02 03:04:05.123456'", "'1900-01-01'", "'0001-01-01'",
      "'9999-12-31 23:59:59.999999'"]),
    ("timestamp3", "timestamp(3)", ["'2024-01-02 03:04:05.123'"]),
    ("timestamp_inf", "timestamp", ["'2024-01-02'", "'infinity'", "'-infinity'"]),
    ("timestamptz", "timestamptz", ["'2024-01-02 03:04:05.123456+02'", "'1970-01-01 00:00+00'"]),
    ("timestamptz_inf", "timestamptz", ["'2024-01-02 03:04:05+00'", "'infinity'"]),
    ("interval", "interval", ["'1 day 02:03:04.5'", "'-00:00:01'", "'0'"]),
    ("interval_months", "interval", ["'1 year 2 mons 3 days'", "'-1 mons'", "'04:05:06'"]),
    ("interval_s0", "interval second(0)", ["'3 seconds'"]),
    ("date", "date", ["'2024-02-29'", "'0001-01-01'", "'9999-12-31'"]),
    ("date_inf", "date", ["'2024-01-01'", "'infinity'", "'4713-01-01 BC'"]),
    ("time", "time", ["'12:34:56.789'", "'00:00'", "'24:00:00'"]),
    ("time0", "time(0)", ["'12:34:56'"]),
    ("timetz", "timetz", ["'12:34:56+05:30'", "'00:00+00'", "'23:59:59.999999-12'"]),
    ("numeric", "numeric", ["12.345678901234567890", "'NaN'", "-0.000000000001", "'Infinity'"]),
    ("numeric10_2", "numeric(10,2)", ["1.10", "-99999999.99", "0"]),
    ("uuid", "uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'f' || repeat('0', 31)"]),
    ("json", "json", ["'{\"a\": [1, null, \"x\"]}'", "'\"s\"'", "'null'", "'[1, 2]'"]),
    ("jsonb", "jsonb", ["'{\"a\": [1, null, \"x\"]}'", "'\"s\"'", "'null'", "'1.5'"]),
    ("jsonb_strings", "jsonb", ["'\"a\"'", "'\"b\"'"]),
    ("jsonb_lists", "jsonb", ["'[1, 2]'", "'[]'"]),
    ("bytea", "bytea", [r"'\x00ff'", r"'\x'", r"'\x01'"]),
    ("int4_array", "int4[]", ["'{1,NULL,3}'", "'{}'", "'{{1,2},{3,4}}'"]),
    ("int8_array", "int8[]", ["'{9223372036854775807}'"]),
    ("text_array", "text[]", [r"""'{a,"b\"c",NULL,"{}"}'""", "'{}'", """'{"NULL",""}'"""]),
    ("varchar3_array", "varchar(3)[]", ["'{ab,c}'"]),
    ("float8_array", "float8[]", ["'{1.5,-Infinity,NaN}'"]),
    ("numeric_array", "numeric[]", ["'{1.10,NaN}'"]),
    ("bool_array", "bool[]", ["'{t,f,NULL}'"]),
    ("date_array", "date[]", ["'{2024-01-01,NULL}'"]),
    ("timestamptz_array", "timestamptz[]", ["""'{"2024-01-01 00:00:00+00"}'"""]),
    ("interval_array", "interval[]", ["""'{"1 mon","1 day"}'"""]),
    ("uuid_array", "uuid[]", ["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"]),
    ("jsonb_array", "jsonb[]", ["""ARRAY['{"a": 1}', '"s"', '[1]']::jsonb[]"""]),
    ("bytea_array", "bytea[]", [r"ARRAY['\x00'::bytea, '\x']"]),
    ("inet", "inet", ["'192.168.0.1'", "'::1'", "'10.1.2.3/8'"]),
    ("cidr", "cidr", ["'10.0.0.0/8'", "'::/0'"]),
    ("int4range", "int4range", ["'[1,5)'", "'empty'", "'(,3]'"]),
    ("tstzrange", "tstzrange", ["'[2024-01-01 00:00+00,2024-02-01 00:00+00)'"]),
    ("daterange", "daterange", ["'[2024-01-01,2024-02-01)'"]),
    ("money", "money", ["1.50", "-3"]),
    ("bit3", "bit(3)", ["B'101'"]),
    ("varbit", "varbit", ["B'1'"]),
    ("tsvector", "tsvector", ["'a fat cat'"]),
    ("point", "point", ["'(1,2)'"]),
    ("macaddr", "macaddr", ["'08:00:2b:01:02:03'"]),
]  # fmt: skip
SOURCE_ROWS = max(len(values) for _, _, values in SERVER_TYPES) + 2

# Each variant of a column's rows, selected from the source table.
VARIANTS = {
    "values": "SELECT k, {col} FROM {src} ORDER BY k",
    "all NULL": "SELECT k, {col} FROM {src} WHERE {col} IS NULL ORDER BY k",
    "no rows": "SELECT k, {col} FROM {src} WHERE false",
}
MODES = ["create", "append", "replace"]


@pytest.fixture(scope="module")
def source(pg_url: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A connection and a schema of the module's own, holding the table ``src``."""
    schema = f"lpm_types_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        try:
            columns = ", ".join(f"c_{name} {sql_type}" for name, sql_type, _ in SERVER_TYPES)
            connection.execute(f"CREATE TABLE {schema}.src (k int4, {columns})")
            for k in range(SOURCE_ROWS):
                values = ", ".join(
                    f"CAST({values[k]} AS {sql_type})" if k < len(values) else "NULL"
                    for _, sql_type, values in SERVER_TYPES
                )
                connection.execute(f"INSERT INTO {schema}.src VALUES ({k}, {values})")
            yield connection, schema
        finally:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def sql_frame(conn: psycopg.Connection[Any], statement: str) -> pd.DataFrame:
    """``query(statement)``, with the types of its columns as %sql records them.

    The record is ``(name, type OID, typmod)`` per column, from the result's
    own description; a frame builder that records it already must agree.
    """
    frame = query(conn, statement)
    with conn.cursor() as cursor:
        cursor.execute(statement)
        assert cursor.pgresult is not None and cursor.description is not None
        recorded = tuple(
            (column.name, column.type_code, cursor.pgresult.fmod(i))
            for i, column in enumerate(cursor.description)
        )
    if COLUMNS_ATTR in frame.attrs:
        assert frame.attrs[COLUMNS_ATTR] == recorded
    else:
        frame.attrs[COLUMNS_ATTR] = recorded
    return frame


def server_types(conn: psycopg.Connection[Any], table: str, columns: list[str]) -> list[tuple]:
    """(column, format_type) of ``columns`` of ``table``, in that order, as the server says."""
    rows = dict(
        conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table],
        ).fetchall()
    )
    return [(column, rows.get(column)) for column in columns]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", [name for name, _, _ in SERVER_TYPES])
def test_every_sql_type_round_trips_with_its_own_type(
    source: tuple[psycopg.Connection[Any], str], name: str, variant: str, mode: str
) -> None:
    """Regression (issue 15): a column with no value (all NULL, or no rows) of an
    object dtype was created as text; it now gets the source's type, and so does
    every other column %sql returns (oid, json, varchar(5), ...)."""
    conn, schema = source
    column = f"c_{name}"
    frame = sql_frame(conn, VARIANTS[variant].format(col=column, src=f"{schema}.src"))
    table = f"t_{uuid.uuid4().hex[:12]}"
    target = f"{schema}.{table}"
    if mode == "append":  # into the table that persisting a zero-row result created
        empty = sql_frame(conn, VARIANTS["no rows"].format(col=column, src=f"{schema}.src"))
        persist(conn, empty, (schema, table))
    elif mode == "replace":
        conn.execute(f"CREATE TABLE {target} (unrelated text)")
    try:
        result = persist(conn, frame, (schema, table), mode=mode)
        back = query(conn, f"SELECT * FROM {target} ORDER BY k")
        created = server_types(conn, target, ["k", column])
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {target}")
    expected = server_types(conn, f"{schema}.src", ["k", column])
    assert created == expected
    assert result.columns == expected
    assert result.rows == len(frame)
    assert_same(back, frame)


@pytest.mark.parametrize("fmt", ["auto", "csv"])
def test_every_sql_type_in_one_table(source: tuple[psycopg.Connection[Any], str], fmt: str) -> None:
    conn, schema = source
    frame = sql_frame(conn, f"SELECT * FROM {schema}.src ORDER BY k")
    try:
        persist(conn, frame, (schema, "whole"), copy_format=fmt)
        back = query(conn, f"SELECT * FROM {schema}.whole ORDER BY k")
        created = server_types(conn, f"{schema}.whole", list(frame.columns))
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {schema}.whole")
    assert created == server_types(conn, f"{schema}.src", list(frame.columns))
    assert_same(back, frame)


def test_binary_copy_is_kept_where_the_recorded_type_receives_it(
    source: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = source
    frame = sql_frame(
        conn, f"SELECT k, c_varchar5, c_bpchar3, c_name, c_jsonb, c_json FROM {schema}.src"
    )
    try:
        persist(conn, frame, (schema, "binary_ok"), copy_format="binary")
        back = query(conn, f"SELECT * FROM {schema}.binary_ok ORDER BY k")
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {schema}.binary_ok")
    assert_same(back, frame.sort_values("k", ignore_index=True))
    with_oid = sql_frame(conn, f"SELECT c_oid FROM {schema}.src")
    with pytest.raises(PersistError, match=r"no binary COPY form here for: c_oid \(oid\)"):
        persist(conn, with_oid, (schema, "never_created"), copy_format="binary")


def test_column_types_resolves_the_record_on_the_server(
    source: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = source
    frame = sql_frame(conn, f"SELECT c_numeric10_2, c_oid, c_uuid FROM {schema}.src WHERE false")
    assert column_types(frame, conn) == [
        ("c_numeric10_2", "numeric(10,2)"), ("c_oid", "oid"), ("c_uuid", "uuid")
    ]  # fmt: skip
    # Without a connection only the dtypes speak: empty object columns are text.
    assert column_types(frame) == [
        ("c_numeric10_2", "text"), ("c_oid", "bigint"), ("c_uuid", "text")
    ]  # fmt: skip
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_record_that_no_longer_fits_the_columns_is_ignored(
    source: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = source
    frame = sql_frame(conn, f"SELECT c_numeric, c_date FROM {schema}.src WHERE false")
    renamed = frame.rename(columns={"c_date": "day"})  # attrs travel with the copy
    assert renamed.attrs[COLUMNS_ATTR] == frame.attrs[COLUMNS_ATTR]
    assert column_types(renamed, conn) == [("c_numeric", "text"), ("day", "text")]
    widened = frame.assign(extra=pd.array([], dtype="Int64"))
    assert column_types(widened, conn) == [
        ("c_numeric", "text"), ("c_date", "text"), ("extra", "bigint")
    ]  # fmt: skip


def test_values_changed_after_the_query_decide_their_own_type(
    source: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = source
    frame = sql_frame(conn, f"SELECT k, c_numeric, c_int4 FROM {schema}.src ORDER BY k")
    frame["c_numeric"] = [dt.date(2024, 1, k + 1) for k in frame["k"]]  # still object dtype
    frame["c_int4"] = frame["c_int4"].astype("Float64")  # no longer what %sql makes of int4
    assert column_types(frame, conn) == [
        ("k", "integer"), ("c_numeric", "date"), ("c_int4", "double precision")
    ]  # fmt: skip


def test_user_defined_types_in_a_record_are_not_trusted(
    source: tuple[psycopg.Connection[Any], str],
) -> None:
    """An enum's OID names a type in one database only: the frame may come from another."""
    conn, schema = source
    conn.execute(f"CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok')")
    frame = sql_frame(conn, f"SELECT 'ok'::{schema}.mood AS m, NULL::{schema}.mood AS nothing")
    assert frame.attrs[COLUMNS_ATTR][0][1] >= 16384
    assert column_types(frame, conn) == [("m", "text"), ("nothing", "text")]
    # Appending into a table of that type is typed by the table itself.
    conn.execute(f"CREATE TABLE {schema}.moods (m {schema}.mood, nothing {schema}.mood)")
    persist(conn, frame, (schema, "moods"), mode="append")
    assert conn.execute(f"SELECT m::text, nothing FROM {schema}.moods").fetchall() == [("ok", None)]


def test_appending_to_a_table_of_other_types_sends_what_its_columns_receive(
    conn: psycopg.Connection[Any],
) -> None:
    """Regression: append sent the frame's own binary fields whatever the table's
    types were: Int64 into integer and float64 into real failed ("incorrect binary
    data format"), float64 into numeric too ("insufficient data left in message"),
    and dicts into a text column were stored with jsonb's version byte ('\\x01{...}').
    Binary is now kept only where the table's type receives it; CSV otherwise."""
    table = f"lpm_append_{uuid.uuid4().hex[:8]}"
    conn.execute(
        f"CREATE TABLE {table} (a integer, f real, n numeric(5,1), d text, j json, v varchar(3))"
    )
    frame = pd.DataFrame(
        {
            "a": pd.array([1, None], dtype="Int64"),
            "f": [1.5, np.nan],
            "n": [1.25, None],
            "d": [{"x": 1}, pd.NA],
            "j": pd.array(['{"x": 1}', None], dtype="string"),  # JSON text, parsed by the server
            "v": pd.array(["abc", "d"], dtype="string"),
        }
    )
    try:
        result = persist(conn, frame, table, mode="append")
        rows = conn.execute(
            f"SELECT a, f, n::text, d, j::text, v FROM {table} ORDER BY a"
        ).fetchall()
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert result.columns == [
        ("a", "integer"), ("f", "real"), ("n", "numeric(5,1)"), ("d", "text"), ("j", "json"),
        ("v", "character varying(3)"),
    ]  # fmt: skip
    assert rows == [
        (1, 1.5, "1.3", '{"x":1}', '{"x": 1}', "abc"), (None, None, None, None, None, "d")
    ]  # fmt: skip


def test_a_hand_built_column_without_values_is_text(conn: psycopg.Connection[Any]) -> None:
    """The documented choice: nothing says what the column is, so text, as
    PostgreSQL makes an untyped NULL column; a later append of values still loads."""
    frame = pd.DataFrame({"x": [None, None], "y": pd.Series([], dtype=object).reindex([0, 1])})
    assert column_types(frame, conn) == [("x", "text"), ("y", "text")]
    conn.execute("CREATE TEMP TABLE lpm_untyped AS SELECT NULL AS x")  # the server's choice
    untyped = conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'lpm_untyped'::regclass AND attname = 'x'"
    ).fetchone()
    assert untyped == ("text",)
    table = f"lpm_untyped_{uuid.uuid4().hex[:8]}"
    try:
        persist(conn, frame, table)
        persist(conn, pd.DataFrame({"x": [dt.date(2024, 1, 1)], "y": [7]}), table, mode="append")
        rows = conn.execute(f"SELECT x, y FROM {table} WHERE x IS NOT NULL").fetchall()
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert rows == [("2024-01-01", "7")]


def test_magic_persist_and_append_keep_the_types_of_an_empty_result(
    ip: Shell, pg_admin: psycopg.Connection[Any], source: tuple[psycopg.Connection[Any], str]
) -> None:
    """The issue's case through the magic: --persist of a result with no rows, then
    --append of real values, then --replace: the columns keep the source's types."""
    _, schema = source
    columns = "k, c_numeric10_2, c_date, c_uuid, c_bytea, c_int4_array, c_jsonb"
    ip.ok(f"%sql SET search_path = {schema}")
    for name, where in (("lpm_none", "WHERE false"), ("lpm_rows", "")):
        statement = f"SELECT {columns} FROM src {where} ORDER BY k"
        ip.user_ns[name] = ip.value(f"%sql {statement}")
        if COLUMNS_ATTR not in ip.user_ns[name].attrs:
            ip.user_ns[name].attrs[COLUMNS_ATTR] = sql_frame(
                pg_admin, statement.replace("FROM src", f"FROM {schema}.src")
            ).attrs[COLUMNS_ATTR]
    ip.ok("%sql --persist lpm_none --table kept")
    ip.ok("%sql --append lpm_rows --table kept")
    expected = server_types(pg_admin, f"{schema}.src", columns.split(", "))
    assert server_types(pg_admin, f"{schema}.kept", columns.split(", ")) == expected
    assert_same(ip.value("%sql SELECT * FROM kept ORDER BY k"), ip.user_ns["lpm_rows"])
    ip.ok("%sql --replace lpm_none --table kept")
    assert server_types(pg_admin, f"{schema}.kept", columns.split(", ")) == expected
