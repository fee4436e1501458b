"""fetch_frame(): the COPY fast path gives exactly the row path's DataFrame.

The differential tests run each query through ``fetch_frame()`` and through
``query()`` (the careful row path) and require the same frame: same columns,
dtypes, index, values, NULL masks, and down to the bits of floats (NaN, -0.0),
the microseconds of datetimes, and the Python type of every object value.
Each matrix runs twice: with the format the fast path picks (binary for the
common types) and with CSV forced, so both decoders see every value they can
get. ``BLOCK_BYTES`` is made tiny in some tests so that results span many
blocks.

Then: what it declines (and that nothing ran), transactions, limits,
progress, interrupts (SIGINT delivered to the main thread mid-transfer).
Everything runs against the real server of ``pg_url``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.types.enum import EnumInfo, register_enum
from support.frames import assert_same, identical  # noqa: F401

from lunepool_magic.postgres import create_pool, destroy_pool, fetch, libpq, with_connection
from lunepool_magic.postgres.fetch import fetch_frame
from lunepool_magic.postgres.fetch import plan as fetch_plan
from lunepool_magic.postgres.fetch import transfer as fetch_transfer
from lunepool_magic.postgres.frames import COLUMNS_ATTR
from lunepool_magic.postgres.statement import query, run

IDLE = TransactionStatus.IDLE
INTRANS = TransactionStatus.INTRANS
INERROR = TransactionStatus.INERROR


# --- Fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection, like the pool's."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def conn(shared_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """The module's autocommit connection; settings and temp objects reset after the test."""
    try:
        yield shared_conn
    finally:
        if shared_conn.info.transaction_status != IDLE:
            shared_conn.rollback()
        shared_conn.execute("RESET ALL")
        shared_conn.execute("DISCARD TEMP")


@pytest.fixture
def tx_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """A fresh connection in psycopg's default (non-autocommit) mode."""
    with psycopg.connect(pg_url) as conn:
        yield conn


@pytest.fixture(params=["auto", "csv"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The format the fast path picks ('auto': binary for the common types), or CSV forced."""
    if request.param == "csv":
        monkeypatch.setattr(fetch_plan, "BINARY_WIRE", {})
    return request.param


@pytest.fixture
def formats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The COPY formats fetch_frame chose during the test, in order."""
    seen: list[str] = []
    real = fetch_plan.make_plan

    def spy(*args: Any, **kwargs: Any) -> Any:
        fmt, columns = real(*args, **kwargs)
        seen.append(fmt)
        return fmt, columns

    monkeypatch.setattr(fetch_plan, "make_plan", spy)
    return seen


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_transfer, "BLOCK_BYTES", 2000)


# --- The comparison -----------------------------------------------------------------------


def check(conn: psycopg.Connection, statement: Any, params: Any = None) -> pd.DataFrame:
    """The fast path's frame for ``statement``, after checking it equals the row path's."""
    fast = fetch_frame(conn, statement, params)
    assert fast is not None, "the fast path declined"
    assert conn.info.transaction_status == (IDLE if conn.autocommit else INTRANS)
    # The row path itself: query() would take the fast path again for a FROM.
    row = run(conn, statement, params, fast=False).frame
    assert row is not None
    assert_same(fast, row)
    return fast


def literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def columns_sql(columns: list[tuple[str, str, list[str | None]]]) -> str:
    """One column per (name, type, values), side by side (unnest pads with NULL)."""
    parts = [
        f"unnest(ARRAY[{', '.join(map(literal, values))}]::text[])::{type_} AS {name}"
        for name, type_, values in columns
    ]
    return "SELECT " + ",\n       ".join(parts)


# --- The type matrix ----------------------------------------------------------------------

AWKWARD_TEXT = [
    'it\'s "quoted"',
    "a,b;c\td",
    "line 1\nline 2\r\nline 3\r",
    "back\\slash \\N \\x00 \\\\",
    "ünïcödé – 日本語 – 🐘",
    "",
    "   ",
    "NULL",
    '"',
    ",",
    "\n",
    None,
]

# Types the binary route carries, with edge values.
BINARY_COLUMNS: list[tuple[str, str, list[str | None]]] = [
    ("i2", "int2", ["-32768", "32767", "0", None]),
    ("i4", "int4", ["-2147483648", "2147483647", "7", None]),
    ("i8", "int8", ["-9223372036854775808", "9223372036854775807", "1", None]),
    ("o", "oid", ["0", "4294967295", "12", None]),
    (
        "f8",
        "float8",
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "-0",
            "1e308",
            "4.9e-324",
            "0.1",
            "0.30000000000000004",
            "-1.7976931348623157e308",
            "2.2250738585072014e-308",
            None,
        ],
    ),
    ("b", "bool", ["t", "f", None]),
    ("t", "text", AWKWARD_TEXT),
    ("vc", "varchar", AWKWARD_TEXT[::-1]),
    ("bp", "char(5)", ["ab", "", "ümlau", None]),
    ("nm", "name", ["x", "n" * 63, None]),
    (
        "ts",
        "timestamp",
        [
            "2021-06-01 12:34:56.789012",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
            "1970-01-01 00:00:00",
            "2000-01-01 00:00:00",
            "1969-12-31 23:59:59.999999",
            "0002-01-01 00:00:00",
            "9998-12-31 00:00:00",
            None,
        ],
    ),
    (
        "tstz",
        "timestamptz",
        [
            "2021-03-28 00:30:00+00",  # around the EU spring change
            "2021-03-28 01:30:00+00",
            "2021-10-31 00:30:00+00",  # the ambiguous autumn hour, both passes
            "2021-10-31 01:30:00+00",
            "1900-01-01 00:00:00+00",  # local mean time offsets in seconds
            "1850-06-01 00:00:00+00",
            "2000-01-01 00:00:00+00",
            "1969-12-31 23:59:59.999999+00",
            "2038-01-19 03:14:08+00",
            None,
        ],
    ),
    (
        "d",
        "date",
        ["2021-06-01", "0001-01-01", "9999-12-31", "1970-01-01", "2000-01-01", "1999-12-31", None],
    ),
]
BINARY_MATRIX = columns_sql(BINARY_COLUMNS)
# With extra_float_digits < 1 the largest doubles print rounded up past the
# largest double; psycopg then raises OverflowError and the row path fails.
ROUNDING_SAFE_MATRIX = columns_sql(
    [
        (name, type_, [v for v in values if v != "-1.7976931348623157e308"])
        for name, type_, values in BINARY_COLUMNS
    ]
)

# Values Python cannot hold: the row path returns the server's text for them (object columns).
OUT_OF_RANGE_MATRIX = columns_sql(
    [
        (
            "ts",
            "timestamp",
            [
                "infinity",
                "-infinity",
                "10000-01-01 00:00:00",
                "0044-03-15 00:00:00 BC",
                "2021-06-01 00:00:00",
                "0001-01-01 00:00:00",
                None,
            ],
        ),
        (
            "tstz",
            "timestamptz",
            [
                "infinity",
                "-infinity",
                "9999-12-31 23:00:00+00",  # year 10000 in zones east of UTC
                "0001-01-01 00:30:00+00",  # year 0 (1 BC) in zones west of UTC
                "0044-03-15 00:00:00+00 BC",
                "2021-06-01 12:00:00+00",
                None,
            ],
        ),
        ("d", "date", ["infinity", "-infinity", "0044-03-15 BC", "2021-06-01", None]),
        ("ok", "timestamptz", ["2021-06-01 12:00:00+00", None]),
    ]
)

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Pacific/Chatham",
    "Europe/Amsterdam",
    "UTC+3",  # POSIX: psycopg cannot name it (uses UTC), the instants must still be right
]


@pytest.mark.parametrize("zone", ZONES)
def test_binary_types(conn: psycopg.Connection, route: str, formats: list[str], zone: str) -> None:
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    check(conn, BINARY_MATRIX)
    assert formats == ["binary" if route == "auto" else "csv"]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York", "UTC+3"])
def test_values_python_cannot_hold(conn: psycopg.Connection, route: str, zone: str) -> None:
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    df = check(conn, OUT_OF_RANGE_MATRIX)
    assert df["ts"].iloc[0] == "infinity" and df["d"].iloc[2] == "0044-03-15 BC"
    assert str(df["ok"].dtype).startswith("datetime64[us, ")


def test_zero_rows_and_one_row(conn: psycopg.Connection, route: str) -> None:
    empty = check(conn, BINARY_MATRIX + " LIMIT 0")
    assert empty.shape == (0, len(BINARY_COLUMNS))
    one = check(conn, "SELECT 1")
    assert one.shape == (1, 1) and one.iloc[0, 0] == 1
    check(conn, EXOTIC_MATRIX + " LIMIT 0")
    check(conn, EXOTIC_MATRIX + " LIMIT 1")


def test_duplicate_column_names(conn: psycopg.Connection, route: str) -> None:
    df = check(conn, "SELECT 1 AS a, 'x' AS a, 2, 3, '2021-01-01'::date AS a")
    assert list(df.columns) == ["a", "a", "?column?", "?column?", "a"]
    check(conn, "SELECT 1 AS a, 'x' AS a WHERE false")


def test_many_blocks(conn: psycopg.Connection, route: str, small_blocks: None) -> None:
    df = check(
        conn,
        """SELECT g, g::float8 / 7 AS f, CASE WHEN g % 5 = 0 THEN NULL
                  ELSE repeat(chr(65 + g % 26), g % 13) || E'\\n,"' END AS t,
                  g % 3 = 0 AS b, timestamptz '2021-01-01' + g * interval '1 minute' AS at,
                  date '2021-01-01' + g AS d, repeat('é', g % 300) AS long_text
           FROM generate_series(1, 3000) g""",
    )
    assert len(df) == 3000


def test_the_issue_table_in_default_blocks(conn: psycopg.Connection, route: str) -> None:
    # The benchmark's columns, 50k rows: several blocks of the default size.
    df = check(
        conn,
        """SELECT g::bigint AS id,
                  CASE WHEN g % 100 = 7 THEN NULL ELSE g * 1.1::float8 / 3 END AS x,
                  (g % 100000)::int AS n,
                  CASE WHEN g % 100 = 13 THEN NULL ELSE substr(md5(g::text), 1, 12) END AS s,
                  timestamptz '2024-01-01 00:00:00+00' + g * interval '1234567 microseconds' AS t,
                  g % 3 = 0 AS b
           FROM generate_series(1, 50000) g""",
    )
    assert len(df) == 50000


def test_long_rows_names_and_odd_types(conn: psycopg.Connection, route: str) -> None:
    conn.execute("CREATE DOMAIN pg_temp.posint AS int CHECK (VALUE > 0)")
    check(
        conn,
        """SELECT g, repeat(chr(1000 + g), g * 37) AS long_text, NULL AS unknown_null,
                  NULL::int AS int_null, 'x' AS "wéird ""name"" !", g::pg_temp.posint AS dom,
                  ROW(g, 'a,b') AS rec, 'pg_class'::regclass AS rc, '$.a'::jsonpath AS jp
           FROM generate_series(1, 40) g""",
    )


# Types that go through CSV and psycopg's loaders (mixed with some that do not).
EXOTIC_COLUMNS: list[tuple[str, str, list[str | None]]] = [
    ("i4", "int4", ["1", None, "-5"]),
    ("f4", "float4", ["NaN", "Infinity", "-Infinity", "-0", "1.1", "3.4028235e38", "1e-45", None]),
    (
        "num",
        "numeric",
        [
            "1234567890123456789012345678901234567890.0123456789",
            "-0.000000000000000000000000000000000000001",
            "NaN",
            "Infinity",
            "-Infinity",
            "0",
            None,
        ],
    ),
    ("iv", "interval", ["1 day 02:03:04.000005", "-00:00:00.000001", "-1 days +02:00:00", None]),
    ("ivm", "interval", ["1 year 2 mons -3 days +04:05:06.5", "-1 mons", "1 day", None]),
    ("ivbig", "interval", ["200000000 days", "1 day"]),
    ("u", "uuid", ["a81bc81b-dead-4e5d-abff-90865d1e13b1", None]),
    ("js", "json", ['{"k": [1, 2]}', "null", '"s"', '[1, 2.5, "x", true, null, {"a": {}}]', None]),
    ("jsb", "jsonb", ['{"k": null}', "null", '"just a string"', "3", None]),
    ("by", "bytea", ["\\x00015c27ff", "\\x", "\\x2c0a22", None]),
    ("ai", "int4[]", ["{1,NULL,3}", "{{1,2},{3,4}}", "{}", None]),
    ("at", "text[]", ['{"a,b","it\'s",NULL,"\\"q\\"","line\nbreak"}', None]),
    ("ats", "timestamp[]", ["{infinity,2021-06-01 00:00:00}", None]),
    ("tm", "time", ["12:34:56.5", "24:00:00", "00:00:00", None]),
    ("tmtz", "timetz", ["12:34:56+02", "24:00:00+01", None]),
    ("ch", '"char"', ["c", "", None]),
    ("bits", "bit varying", ["101", None]),
    ("tsv", "tsvector", ["a b", None]),
    ("pt", "point", ["(1,2)", None]),
    ("ip", "inet", ["10.0.0.1", "::1/128", None]),
    ("net", "cidr", ["10.0.0.0/8", None]),
    ("r", "int4range", ["[1,5)", "empty", None]),
    ("t", "text", AWKWARD_TEXT),
    ("ts", "timestamp", ["2021-06-01 12:00:00", "infinity", None]),
    ("tstz", "timestamptz", ["2021-06-01 12:00:00+00", None]),
    ("d", "date", ["2021-06-01", None]),
    ("b", "bool", ["t", None]),
    ("f8", "float8", ["0.1", "NaN", None]),
]
EXOTIC_MATRIX = columns_sql(EXOTIC_COLUMNS)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Kolkata"])
def test_types_loaded_by_psycopg(conn: psycopg.Connection, formats: list[str], zone: str) -> None:
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    df = check(conn, EXOTIC_MATRIX)
    assert formats == ["csv"]
    assert df["num"].iloc[0] == Decimal("1234567890123456789012345678901234567890.0123456789")
    assert df["jsb"].iloc[1] is None and df["jsb"].iloc[4] is pd.NA


def test_char_with_a_high_byte_and_money(conn: psycopg.Connection) -> None:
    conn.execute("SET lc_monetary = 'C'")
    check(conn, "SELECT chr(200)::\"char\" AS c, '1.50'::money AS m, 'x'::\"char\" AS x")


def test_many_blocks_through_loaders(conn: psycopg.Connection, small_blocks: None) -> None:
    check(
        conn,
        """SELECT g, (g / 3.0)::numeric(20, 10) AS n, ARRAY[g, NULL] AS a,
                  CASE WHEN g % 7 = 0 THEN NULL ELSE ('{"g": ' || g || '}')::jsonb END AS j,
                  CASE WHEN g % 11 = 0 THEN 'infinity'::timestamp
                       ELSE timestamp '2021-01-01' + g * interval '1 hour' END AS ts
           FROM generate_series(1, 2000) g""",
    )


def test_enum_unknown_to_psycopg_is_text(conn: psycopg.Connection, route: str) -> None:
    name = f"mood_{uuid.uuid4().hex[:12]}"
    conn.execute(
        sql.SQL("CREATE TYPE pg_temp.{} AS ENUM ('sad', 'ok', 'happy')").format(
            sql.Identifier(name)
        )
    )
    df = check(
        conn,
        sql.SQL("SELECT m, ARRAY[m] AS ms FROM (VALUES ('ok'::pg_temp.{t}), (NULL)) v(m)").format(
            t=sql.Identifier(name)
        ),
    )
    assert [str(t) for t in df.dtypes] == ["string", "string"]


def test_enum_registered_with_psycopg(pg_url: str) -> None:
    name = f"mood_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TYPE pg_temp.{} AS ENUM ('sad', 'ok')").format(sql.Identifier(name))
        )
        info = EnumInfo.fetch(conn, f"pg_temp.{name}")
        assert info is not None
        register_enum(info, conn)
        df = check(
            conn,
            sql.SQL("SELECT m FROM (VALUES ('ok'::pg_temp.{}), (NULL)) v(m)").format(
                sql.Identifier(name)
            ),
        )
        assert df["m"].iloc[0].name == "ok"


def test_a_loader_registered_by_the_application_is_honoured(pg_url: str) -> None:
    class Doubled(psycopg.adapt.Loader):
        def load(self, data: Any) -> int:
            return int(bytes(data)) * 2

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.adapters.register_loader("int4", Doubled)
        df = check(conn, "SELECT g FROM generate_series(1, 3) g")
        assert df["g"].tolist() == [2, 4, 6]


# --- Session settings: never changed, always honoured -------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        "SET DateStyle = 'German, DMY'",
        "SET DateStyle = 'SQL, MDY'",
        "SET DateStyle = 'Postgres, DMY'",
        "SET IntervalStyle = 'iso_8601'",
        "SET IntervalStyle = 'sql_standard'",
        "SET extra_float_digits = 0",
        "SET extra_float_digits = -15",
        "SET bytea_output = 'escape'",
    ],
)
def test_session_settings(conn: psycopg.Connection, setting: str) -> None:
    conn.execute(setting)
    conn.execute("SET TimeZone = 'Europe/Berlin'")
    before = conn.execute("SHOW ALL").fetchall()
    check(conn, ROUNDING_SAFE_MATRIX)
    check(conn, EXOTIC_MATRIX)
    assert conn.execute("SHOW ALL").fetchall() == before


def test_floats_with_fewer_digits_take_the_text_route(
    conn: psycopg.Connection, formats: list[str]
) -> None:
    conn.execute("SET extra_float_digits = 0")
    df = check(conn, "SELECT 0.1::float8 + 0.2::float8 AS f")
    assert formats == ["csv"]
    assert df["f"].iloc[0] == 0.3  # rounded by the server, as the row path sees it


def test_other_client_encodings_decline(conn: psycopg.Connection) -> None:
    conn.execute("SET client_encoding = 'LATIN1'")
    assert fetch_frame(conn, "SELECT 'x' AS t") is None


# --- Parameters ---------------------------------------------------------------------------


def test_parameters(conn: psycopg.Connection, route: str) -> None:
    check(
        conn,
        "SELECT g, g::text AS t FROM generate_series(1, 50) g WHERE g > %s AND g::text LIKE %s",
        [10, "1%"],
    )
    check(
        conn,
        "SELECT %s AS a, %s AS b, %s AS c, %s AS d, %s AS e, %s AS f, %s AS g, %s::int8 AS h",
        [5, 'it\'s; \\ "x"', None, Decimal("1.50"), dt.date(2021, 1, 1), b"\x00\x01", 0.1, -3],
    )
    check(conn, "SELECT %(x)s::int8 AS x, %(x)s::int8 + %(y)s AS y", {"x": 5, "y": 2})
    check(conn, "SELECT %s AS v, '100%%' AS p", [[1, 2, None]])
    check(
        conn,
        "SELECT %s AS at, %s AS naive",
        [dt.datetime(2021, 6, 1, 12, tzinfo=dt.timezone.utc), dt.datetime(2021, 6, 1, 12)],
    )


def test_composed_and_bytes_statements(conn: psycopg.Connection) -> None:
    stmt = sql.SQL("SELECT {} AS {}").format(sql.Literal(42), sql.Identifier("the answer"))
    check(conn, stmt)
    check(conn, b"SELECT 'bytes' AS b")
    check(conn, "SELECT '100%' AS p  ;  ")
    check(conn, "/* comment */ (SELECT 1 AS a) UNION ALL (SELECT 2) -- trailing comment")
    check(conn, "-- leading\nWITH x AS (SELECT 1 AS a) SELECT * FROM x")
    check(conn, "VALUES (1, 'a'), (2, 'b')")
    check(conn, "TABLE pg_catalog.pg_am")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\x00"))),
        max_size=8,
    )
)
def test_text_round_trips(shared_conn: psycopg.Connection, texts: list[str | None]) -> None:
    statement = "SELECT unnest(%s::text[]) AS t, unnest(%s::text[]) AS a"
    check(shared_conn, statement, [texts, texts[::-1]])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fetch_plan, "BINARY_WIRE", {})
        check(shared_conn, statement, [texts, texts[::-1]])


def test_decoding_in_the_background(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, small_blocks: None
) -> None:
    monkeypatch.setattr(fetch, "BACKGROUND", True)
    check(conn, BINARY_MATRIX)
    check(conn, EXOTIC_MATRIX)
    check(conn, "SELECT g, g::text AS t FROM generate_series(1, 3000) g")
    with pytest.raises(psycopg.errors.DivisionByZero):
        fetch_frame(conn, "SELECT 1 / (g - 2000) AS x FROM generate_series(1, 3000) g")
    assert conn.info.transaction_status == IDLE
    with pytest.raises(KeyboardInterrupt), sigint_after(0.3):
        fetch_frame(conn, "SELECT g FROM generate_series(1, 20000000) g")
    assert conn.info.transaction_status == IDLE
    assert threading.active_count() == 1 or not any(
        t.name == "lunepool-fastpath-decoder" for t in threading.enumerate()
    )


# --- Declines: nothing runs, the connection is as it was ----------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "SHOW TimeZone",
        "EXPLAIN SELECT 1",
        "INSERT INTO fp_t VALUES (1) RETURNING x",
        "WITH d AS (DELETE FROM fp_t RETURNING x) SELECT * FROM d",
        "SELECT x INTO fp_t2 FROM fp_t",
        "SELECT no_such_column",
        "SELEKT 1",
        "SELECT 1; SELECT 2",
        "SELECT FROM generate_series(1, 3)",  # rows without columns
        "",
    ],
)
def test_declines_and_nothing_ran(conn: psycopg.Connection, statement: str) -> None:
    conn.execute("CREATE TEMP TABLE fp_t (x int); INSERT INTO fp_t VALUES (7)")
    assert fetch_frame(conn, statement) is None
    assert conn.info.transaction_status == IDLE
    assert conn.execute("SELECT array_agg(x) FROM fp_t").fetchone() == ([7],)
    assert conn.execute("SELECT to_regclass('pg_temp.fp_t2')").fetchone() == (None,)


def test_a_decline_inside_a_transaction_keeps_it(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE fp_keep (x int); INSERT INTO fp_keep VALUES (1)")
        assert fetch_frame(conn, "SELECT no_such_column FROM fp_keep") is None
        assert conn.info.transaction_status == INTRANS  # not aborted
        df = fetch_frame(conn, "SELECT x FROM fp_keep")
        assert df is not None and df["x"].tolist() == [1]
    assert conn.info.transaction_status == IDLE


def test_failed_transactions_and_pipelines_decline(conn: psycopg.Connection) -> None:
    conn.execute("BEGIN")
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1 / 0")
    assert fetch_frame(conn, "SELECT 1") is None
    assert conn.info.transaction_status == INERROR
    conn.execute("ROLLBACK")
    with conn.pipeline():
        assert fetch_frame(conn, "SELECT 1") is None


def test_the_query_runs_exactly_once(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TEMP SEQUENCE fp_seq")
    df = fetch_frame(conn, "SELECT nextval('fp_seq') AS n FROM generate_series(1, 5)")
    assert df is not None and df["n"].tolist() == [1, 2, 3, 4, 5]
    assert conn.execute("SELECT last_value FROM fp_seq").fetchone() == (5,)


# --- Transactions and errors --------------------------------------------------------------


def test_a_transaction_of_the_caller_stays_open(tx_conn: psycopg.Connection) -> None:
    # psycopg (and the row path) open a transaction on a non-autocommit connection.
    df = fetch_frame(tx_conn, "SELECT 1 AS one")
    assert df is not None and df["one"].tolist() == [1]
    assert tx_conn.info.transaction_status == INTRANS
    with pytest.raises(psycopg.errors.InvalidSavepointSpecification):
        tx_conn.execute("ROLLBACK TO SAVEPOINT _lunepool_fastpath")  # released
    tx_conn.rollback()


def test_server_error_during_the_copy(
    conn: psycopg.Connection, tx_conn: psycopg.Connection
) -> None:
    statement = "SELECT 1 / (g - 3000) AS x FROM generate_series(1, 5000) g"
    with pytest.raises(psycopg.errors.DivisionByZero):
        fetch_frame(conn, statement)
    assert conn.info.transaction_status == IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)
    # Inside a transaction the error fails it, as the row path's would.
    with pytest.raises(psycopg.errors.DivisionByZero):
        fetch_frame(tx_conn, statement)
    assert tx_conn.info.transaction_status == INERROR
    tx_conn.rollback()


def test_through_the_pool(pg_url: str) -> None:
    pool = create_pool(pg_url, max_connections=1)
    try:
        df = with_connection(
            pool, lambda c: fetch_frame(c, "SELECT g FROM generate_series(1, 9) g")
        )
        assert df is not None and df["g"].tolist() == list(range(1, 10))
        again = with_connection(pool, lambda c: query(c, "SELECT 1 AS one"))
        assert again["one"].tolist() == [1]
        assert pool.stats().size == 1
    finally:
        destroy_pool(pool)


# --- Limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 10, 999, 1000, 5000])
def test_limit(conn: psycopg.Connection, route: str, limit: int) -> None:
    statement = "SELECT g, g::text AS t, date '2021-01-01' + g AS d FROM generate_series(1, 1000) g"
    df = fetch_frame(conn, statement, limit=limit)
    assert df is not None
    assert df.attrs["truncated"] is (limit < 1000)
    assert_same(df, run(conn, statement + f" LIMIT {limit}", fast=False).frame)


def test_limit_stops_the_server(conn: psycopg.Connection) -> None:
    # Row 21 would fail: with limit=10 the server never computes it.
    statement = (
        "SELECT CASE WHEN g > 21 THEN 1 / (g - g) ELSE g END AS g FROM generate_series(1, 100) g"
    )
    df = fetch_frame(conn, statement, limit=10)
    assert df is not None and df["g"].tolist() == list(range(1, 11))
    # The only attributes: the cut, and the column types every result carries.
    assert df.attrs == {"truncated": True, COLUMNS_ATTR: (("g", 23, -1),)}
    unlimited = fetch_frame(conn, "SELECT 1")
    assert unlimited is not None and "truncated" not in unlimited.attrs


def test_limit_keeps_the_order_of_the_query(conn: psycopg.Connection) -> None:
    statement = "SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g ORDER BY h DESC"
    df = fetch_frame(conn, statement, limit=100)
    assert df is not None and df.attrs["truncated"]
    assert_same(df, run(conn, statement + " LIMIT 100", fast=False).frame)
    check(conn, statement)


def test_limit_with_parameters(conn: psycopg.Connection) -> None:
    df = fetch_frame(conn, "SELECT g FROM generate_series(1, %s) g", [50], limit=20)
    assert df is not None and len(df) == 20 and df.attrs["truncated"]


# --- Progress -----------------------------------------------------------------------------

SLOW = "SELECT g FROM generate_series(1, {n}) g, LATERAL pg_sleep({pause} + 0 * g) AS s"


def test_progress_reports(conn: psycopg.Connection) -> None:
    calls: list[tuple[int, int, float]] = []
    started = time.monotonic()
    df = fetch_frame(conn, SLOW.format(n=60, pause=0.02), on_progress=lambda *a: calls.append(a))
    took = time.monotonic() - started
    assert df is not None and len(df) == 60
    assert len(calls) >= 3  # about one per 0.25 s, while waiting for rows too
    assert calls[-1][0] == 60 and calls[-1][1] > 0
    assert calls[-1][2] <= took
    rows = [c[0] for c in calls]
    elapsed = [c[2] for c in calls]
    assert rows == sorted(rows) and elapsed == sorted(elapsed)
    gaps = np.diff(elapsed[:-1])  # the last call is the summary, whenever it comes
    assert (gaps >= fetch_transfer.PROGRESS_INTERVAL * 0.9).all(), gaps


def test_no_progress_callback_for_fast_queries_except_the_summary(conn: psycopg.Connection) -> None:
    calls: list[tuple[int, int, float]] = []
    fetch_frame(conn, "SELECT 1 AS a", on_progress=lambda *a: calls.append(a))
    assert len(calls) == 1 and calls[0][0] == 1


def test_progress_summary_counts_the_rows_kept_under_a_limit(conn: psycopg.Connection) -> None:
    calls: list[tuple[int, int, float]] = []
    df = fetch_frame(
        conn,
        "SELECT g FROM generate_series(1, 100) g",
        limit=5,
        on_progress=lambda *a: calls.append(a),
    )
    assert df is not None and len(df) == 5 and df.attrs["truncated"]
    assert calls[-1][0] == 5  # the sixth row, fetched to tell the result was cut, is not counted


def test_an_error_in_the_progress_callback_cancels(conn: psycopg.Connection) -> None:
    def boom(rows: int, nbytes: int, elapsed: float) -> None:
        raise RuntimeError("display failed")

    with pytest.raises(RuntimeError, match="display failed"):
        fetch_frame(conn, SLOW.format(n=200, pause=0.01), on_progress=boom)
    assert conn.info.transaction_status == IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)


# --- Interrupts ---------------------------------------------------------------------------


@contextlib.contextmanager
def sigint_after(delay: float) -> Iterator[None]:
    """Deliver SIGINT to the main thread after ``delay`` seconds (Ctrl-C in a kernel)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(delay, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)


def assert_backend_idle(admin: psycopg.Connection, pid: int) -> None:
    """The backend is not running anything (the cancelled query is over)."""
    deadline = time.monotonic() + 5
    while True:
        row = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
        state = row[0] if row else None
        if (state or "").startswith("idle") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (state or "").startswith("idle"), state


@pytest.mark.parametrize(
    "statement",
    [
        SLOW.format(n=100_000, pause=0.001),  # the server is slow
        "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000000) g",  # a flood
        "SELECT g::text FROM generate_series(1, 30000000) g ORDER BY 1 DESC",  # no rows yet
    ],
    ids=["slow", "flood", "sorting"],
)
def test_interrupt_cancels_on_the_server(
    conn: psycopg.Connection, pg_admin: psycopg.Connection, statement: str
) -> None:
    pid = conn.info.backend_pid
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), sigint_after(0.5):
        fetch_frame(conn, statement)
    assert time.monotonic() - started < 5
    assert conn.info.transaction_status == IDLE
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert_backend_idle(pg_admin, pid)


@pytest.mark.parametrize("in_transaction", [False, True])
def test_interrupt_during_the_probe(
    conn: psycopg.Connection, pg_admin: psycopg.Connection, in_transaction: bool
) -> None:
    # An immutable function is folded by the planner: the probe itself is slow.
    conn.execute(
        "CREATE FUNCTION pg_temp.slow_constant() RETURNS int IMMUTABLE LANGUAGE plpgsql "
        "AS $$ BEGIN PERFORM pg_sleep(3); RETURN 1; END $$"
    )
    if in_transaction:
        conn.execute("BEGIN")
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), sigint_after(0.3):
        fetch_frame(conn, "SELECT pg_temp.slow_constant() AS x")
    assert time.monotonic() - started < 2.5
    assert not conn.closed
    assert conn.info.transaction_status == (INTRANS if in_transaction else IDLE)
    assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert_backend_idle(pg_admin, conn.info.backend_pid)


def test_interrupt_inside_a_transaction_fails_it(
    tx_conn: psycopg.Connection, pg_admin: psycopg.Connection
) -> None:
    tx_conn.execute("CREATE TEMP TABLE fp_int (x int)")
    with pytest.raises(KeyboardInterrupt), sigint_after(0.4):
        fetch_frame(tx_conn, SLOW.format(n=100_000, pause=0.001))
    assert tx_conn.info.transaction_status == INERROR  # as after the row path
    tx_conn.rollback()
    assert tx_conn.execute("SELECT 1").fetchone() == (1,)
    assert_backend_idle(pg_admin, tx_conn.info.backend_pid)


def test_a_connection_that_cannot_be_cleaned_is_closed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stuck(conn: psycopg.Connection, timeout: float = 0) -> None:
        raise TimeoutError("the server did not stop the COPY in time")

    monkeypatch.setattr(libpq, "drain", stuck)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(KeyboardInterrupt), sigint_after(0.3):
            fetch_frame(conn, "SELECT g FROM generate_series(1, 20000000) g")
        assert conn.closed  # not left mid-COPY: the pool discards it


def test_repeated_interrupts_leave_a_usable_or_discardable_connection(pg_url: str) -> None:
    # Wherever the interrupt lands (probe, first rows, mid-stream), the
    # connection is clean, or left ACTIVE for the pool to discard.
    conn = psycopg.connect(pg_url, autocommit=True)
    try:
        for delay in (0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.35):
            if conn.closed or conn.info.transaction_status != IDLE:
                conn.close()
                conn = psycopg.connect(pg_url, autocommit=True)
            with contextlib.suppress(KeyboardInterrupt), sigint_after(delay):
                fetch_frame(conn, "SELECT g FROM generate_series(1, 20000000) g")
            if conn.closed:
                continue
            status = conn.info.transaction_status
            assert status == IDLE, status
            if status == IDLE:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        conn.close()
