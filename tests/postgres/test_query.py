"""query() / execute() / run(): PostgreSQL results as DataFrames with faithful dtypes.

Everything runs against the real server of ``pg_url``. One connection serves
the module; every test runs inside a transaction that is rolled back afterwards,
which drops its temp tables and types and undoes its SETs (TimeZone, DateStyle).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.enum import EnumInfo, register_enum

from lunepool_magic.postgres.frames import PG_TYPES, STRING_DTYPE, Kind, column_type
from lunepool_magic.postgres.statement import NoResultSetError, Result, execute, query, run


@pytest.fixture(scope="module")
def shared_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url) as conn:
        yield conn


@pytest.fixture
def conn(shared_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """The module's connection, in a transaction rolled back after the test."""
    shared_conn.rollback()
    try:
        yield shared_conn
    finally:
        shared_conn.rollback()
        shared_conn.row_factory = psycopg.rows.tuple_row


def dtypes(frame: pd.DataFrame) -> list[str]:
    return [str(t) for t in frame.dtypes]


def cells(series: pd.Series) -> list[object]:
    return series.tolist()


# A row of every mapped type, then the same columns all NULL.
ALL_TYPES = """
SELECT * FROM (VALUES
  (1::int2, 2::int4, 3::int8, 4::oid, 1.5::float4, 2.5::float8, true,
   'text'::text, 'vc'::varchar(5), 'bp'::char(3), 'nm'::name, 'c'::"char",
   '2021-06-01 12:34:56.789012+00'::timestamptz, '2021-06-01 12:34:56.789012'::timestamp,
   '2021-06-01'::date, '12:34:56.5'::time, '12:34:56+02'::timetz, '1 day 02:00:00'::interval,
   1.25::numeric, 'a81bc81b-dead-4e5d-abff-90865d1e13b1'::uuid, '{"k": [1, 2]}'::json,
   '{"k": null}'::jsonb, '\\x00ff'::bytea, ARRAY[1, NULL, 3]::int4[]),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
) AS t(i2, i4, i8, o, f4, f8, b, t, vc, bp, nm, ch, tstz, ts, d, tm, tmtz, iv, num, u,
       js, jsb, by, arr)
"""

ALL_DTYPES = [
    "Int16", "Int32", "Int64", "UInt32", "Float32", "Float64", "boolean",
    "string", "string", "string", "string", "string",
    "datetime64[us, UTC]", "datetime64[us]",
    "object", "object", "object", "timedelta64[us]",
    "object", "object", "object", "object", "object", "object",
]  # fmt: skip


def test_every_type_with_a_null_row(conn: psycopg.Connection) -> None:
    conn.execute("SET TimeZone = 'UTC'")
    df = query(conn, ALL_TYPES)
    assert list(df.columns) == [
        "i2", "i4", "i8", "o", "f4", "f8", "b", "t", "vc", "bp", "nm", "ch", "tstz", "ts",
        "d", "tm", "tmtz", "iv", "num", "u", "js", "jsb", "by", "arr",
    ]  # fmt: skip
    assert dtypes(df) == ALL_DTYPES
    first = df.iloc[0]
    assert first["i2"] == 1 and first["i4"] == 2 and first["i8"] == 3 and first["o"] == 4
    assert first["f4"] == np.float32(1.5) and first["f8"] == 2.5
    assert cells(df["b"]) == [True, pd.NA]
    assert [first[c] for c in ("t", "vc", "bp", "nm", "ch")] == ["text", "vc", "bp ", "nm", "c"]
    assert first["tstz"] == pd.Timestamp("2021-06-01 12:34:56.789012", tz="UTC")
    assert first["ts"] == pd.Timestamp("2021-06-01 12:34:56.789012")
    assert first["d"] == dt.date(2021, 6, 1)
    assert first["tm"] == dt.time(12, 34, 56, 500000)
    assert first["tmtz"] == dt.time(12, 34, 56, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert first["iv"] == pd.Timedelta(days=1, hours=2)
    assert first["num"] == Decimal("1.25") and type(first["num"]) is Decimal
    assert first["u"] == uuid.UUID("a81bc81b-dead-4e5d-abff-90865d1e13b1")
    assert first["js"] == {"k": [1, 2]} and first["jsb"] == {"k": None}
    assert first["by"] == b"\x00\xff"
    assert first["arr"] == [1, None, 3]
    # SQL NULL is missing in every column: <NA>, or NaT for datetime columns; never None.
    assert df.iloc[1].isna().all()
    for name in df.columns:
        value = df[name].iloc[1]
        assert value is pd.NA or value is pd.NaT, (name, value)


def test_zero_rows_keep_columns_and_dtypes(conn: psycopg.Connection) -> None:
    conn.execute("SET TimeZone = 'UTC'")
    df = query(conn, ALL_TYPES + " WHERE false")
    assert df.shape == (0, 24)
    assert dtypes(df) == ALL_DTYPES


def test_one_row(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT 1")
    assert df.shape == (1, 1)
    assert list(df.columns) == ["?column?"]
    assert df.dtypes.iloc[0] == "Int32"
    assert df.iloc[0, 0] == 1


def test_zero_columns(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT FROM generate_series(1, 3)")
    assert df.shape == (3, 0)


def test_duplicate_column_names_are_kept(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT 1 AS a, 'x' AS a, 2, 3")
    assert list(df.columns) == ["a", "a", "?column?", "?column?"]
    assert dtypes(df) == ["Int32", "string", "Int32", "Int32"]
    assert df["a"].shape == (1, 2)  # pandas returns both columns
    assert df.iloc[0].tolist() == [1, "x", 2, 3]


def test_duplicate_names_with_zero_rows(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT 1 AS a, 'x' AS a WHERE false")
    assert list(df.columns) == ["a", "a"]
    assert dtypes(df) == ["Int32", "string"]


def test_integers_stay_integers_with_nulls(conn: psycopg.Connection) -> None:
    df = query(
        conn,
        """SELECT * FROM (VALUES
             ('-32768'::int2, '-2147483648'::int4, '-9223372036854775808'::int8, 0::oid),
             (NULL, NULL, NULL, NULL),
             (32767::int2, 2147483647::int4, 9223372036854775807::int8, 4294967295::oid)
           ) t(a, b, c, o)""",
    )
    assert dtypes(df) == ["Int16", "Int32", "Int64", "UInt32"]
    assert cells(df["c"]) == [-(2**63), pd.NA, 2**63 - 1]
    assert cells(df["o"]) == [0, pd.NA, 2**32 - 1]
    assert cells(df["a"].isna()) == [False, True, False]


def test_float_nan_and_infinity_are_values_null_is_na(conn: psycopg.Connection) -> None:
    df = query(
        conn,
        """SELECT f8, f8::float4 AS f4 FROM (VALUES
             ('NaN'::float8), ('Infinity'), ('-Infinity'), (NULL), (1.1), ('-0')
           ) t(f8)""",
    )
    assert dtypes(df) == ["Float64", "Float32"]
    for name in ("f8", "f4"):
        col = df[name]
        assert cells(col.isna()) == [False, False, False, True, False, False]
        values = col.to_numpy(dtype="float64", na_value=-999.0)
        assert np.isnan(values[0])
        assert values[1] == np.inf and values[2] == -np.inf and values[3] == -999.0
    assert df["f8"].iloc[4] == 1.1
    assert df["f4"].iloc[4] == np.float32(1.1)  # float4's value, not a rounded double
    assert np.signbit(df["f8"].iloc[5])


def test_boolean(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT * FROM (VALUES (true), (NULL), (false)) t(b)")
    assert dtypes(df) == ["boolean"]
    assert cells(df["b"]) == [True, pd.NA, False]


AWKWARD_TEXT = [
    'it\'s "quoted"',
    "a,b;c\td",
    "line 1\nline 2\r\n",
    "back\\slash \\N \\x00",
    "ünïcödé – 日本語 – 🐘",
    "",
    "   ",
    "NULL",
]


def test_text_with_awkward_characters(conn: psycopg.Connection) -> None:
    execute(conn, "CREATE TEMP TABLE awkward (n int, t text, v varchar, c char(3))")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO awkward VALUES (%s, %s, %s, %s)",
            [(i, s, s, s[:3]) for i, s in enumerate(AWKWARD_TEXT)] + [(99, None, None, None)],
        )
    df = query(conn, "SELECT t, v, c FROM awkward ORDER BY n")
    assert dtypes(df) == ["string", "string", "string"]
    assert df["t"].dtype == STRING_DTYPE
    assert cells(df["t"]) == [*AWKWARD_TEXT, pd.NA]
    assert cells(df["v"]) == [*AWKWARD_TEXT, pd.NA]
    assert cells(df["c"]) == [s[:3].ljust(3) for s in AWKWARD_TEXT] + [pd.NA]
    # NULL is not the string 'NULL', nor the empty string.
    assert cells(df["t"].isna()) == [False] * len(AWKWARD_TEXT) + [True]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(
            st.none(),
            # PostgreSQL text holds any Unicode scalar value but NUL; lone
            # surrogates are not valid UTF-8 and never reach the server.
            st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")),
        ),
        max_size=5,
    )
)
def test_text_round_trips(shared_conn: psycopg.Connection, texts: list[str | None]) -> None:
    try:
        df = query(shared_conn, "SELECT unnest(%s::text[]) AS t", [texts])
    finally:
        shared_conn.rollback()
    assert cells(df["t"]) == [pd.NA if t is None else t for t in texts]
    assert df["t"].dtype == STRING_DTYPE


def test_numeric_keeps_every_digit(conn: psycopg.Connection) -> None:
    forty = "1234567890123456789012345678901234567890"
    df = query(
        conn,
        "SELECT * FROM (VALUES (%s::numeric), ('-0.000000000000000000000000000000000000001'), "
        "('NaN'), (NULL)) t(n)",
        [forty + ".0123456789"],
    )
    assert dtypes(df) == ["object"]
    values = cells(df["n"])
    assert values[0] == Decimal(forty + ".0123456789")
    assert str(values[0]) == forty + ".0123456789"
    assert values[1] == Decimal("-1E-39")
    assert values[2].is_nan() and values[3] is pd.NA
    if conn.info.server_version >= 140000:  # numeric infinity is new in PostgreSQL 14
        inf = query(conn, "SELECT 'Infinity'::numeric AS a, '-Infinity'::numeric AS b")
        assert inf.iloc[0].tolist() == [Decimal("Infinity"), Decimal("-Infinity")]


INSTANTS_SQL = """
SELECT * FROM (VALUES
  ('2021-03-28 00:30:00+00'::timestamptz),  -- before the EU spring change
  ('2021-03-28 01:30:00+00'),               -- after it
  ('2021-10-31 00:30:00+00'),               -- the ambiguous autumn hour, first pass
  ('2021-10-31 01:30:00+00'),               -- second pass
  ('1900-01-01 00:00:00+00'),               -- local mean time era offsets
  (NULL)
) t(at)
"""
INSTANTS_UTC = pd.to_datetime(
    [
        "2021-03-28 00:30:00",
        "2021-03-28 01:30:00",
        "2021-10-31 00:30:00",
        "2021-10-31 01:30:00",
        "1900-01-01 00:00:00",
        None,
    ],
    utc=True,
).as_unit("us")


@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
)
def test_timestamptz_in_the_session_time_zone(conn: psycopg.Connection, zone: str) -> None:
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    df = query(conn, INSTANTS_SQL)
    assert df["at"].dtype == pd.DatetimeTZDtype("us", ZoneInfo(zone))
    # The same instants, shown in the session's zone.
    assert df["at"].dt.tz_convert("UTC").tolist() == list(INSTANTS_UTC)
    assert str(df["at"].iloc[2].tz) == zone


def test_timestamptz_with_a_zone_psycopg_cannot_name(conn: psycopg.Connection) -> None:
    # POSIX-style zones are not IANA names: psycopg warns and uses UTC; the
    # instants must still be right.
    conn.execute("SET TimeZone = 'UTC+3'")
    df = query(conn, INSTANTS_SQL)
    assert str(df["at"].dtype) == "datetime64[us, UTC]"
    assert df["at"].tolist() == list(INSTANTS_UTC)


def test_timestamptz_infinity_falls_back_to_object(conn: psycopg.Connection) -> None:
    conn.execute("SET TimeZone = 'Europe/Berlin'")
    df = query(
        conn,
        """SELECT * FROM (VALUES ('infinity'::timestamptz), ('-infinity'),
             ('2021-06-01 12:00:00+00'), (NULL)) t(at)""",
    )
    assert dtypes(df) == ["object"]
    assert cells(df["at"])[:2] == ["infinity", "-infinity"]
    assert df["at"].iloc[2] == dt.datetime(2021, 6, 1, 14, tzinfo=ZoneInfo("Europe/Berlin"))
    assert df["at"].iloc[3] is pd.NA


def test_datetimes_python_cannot_hold_come_back_as_server_text(conn: psycopg.Connection) -> None:
    conn.execute("SET TimeZone = 'UTC'")
    df = query(
        conn,
        """SELECT '10000-01-01 00:00'::timestamp AS big, '0044-03-15 BC'::timestamp AS bc,
                  'infinity'::date AS d_inf, '0044-03-15 BC'::date AS d_bc,
                  '24:00:00'::time AS t24, '24:00:00+01'::timetz AS tz24,
                  '2021-06-01'::date AS d_ok""",
    )
    assert dtypes(df) == ["object"] * 7
    assert df.iloc[0].tolist() == [
        "10000-01-01 00:00:00",
        "0044-03-15 00:00:00 BC",
        "infinity",
        "0044-03-15 BC",
        "24:00:00",
        "24:00:00+01",
        dt.date(2021, 6, 1),
    ]


def test_timestamptz_overflowing_the_local_year_9999(conn: psycopg.Connection) -> None:
    conn.execute("SET TimeZone = 'Asia/Tokyo'")
    df = query(
        conn,
        "SELECT * FROM (VALUES ('9999-12-31 23:00:00+00'::timestamptz), "
        "('2021-01-01 00:00+00')) t(a)",
    )
    assert dtypes(df) == ["object"]
    assert df["a"].iloc[0] == "10000-01-01 08:00:00+09"
    assert df["a"].iloc[1] == dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)


def test_arrays_of_timestamps_with_infinity(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT '{infinity,2021-06-01 00:00:00}'::timestamp[] AS a")
    assert df["a"].iloc[0] == ["infinity", dt.datetime(2021, 6, 1)]


def test_the_connection_keeps_psycopgs_own_loaders(conn: psycopg.Connection) -> None:
    # Our fallback loaders live on query()'s cursor only.
    query(conn, "SELECT 'infinity'::timestamptz")
    with pytest.raises(psycopg.DataError):
        conn.execute("SELECT 'infinity'::timestamptz").fetchone()


def test_non_iso_datestyle(conn: psycopg.Connection) -> None:
    # psycopg cannot parse timestamptz in other DateStyles (it raises); the
    # column then holds the server's text. timestamp and date still load.
    conn.execute("SET DateStyle = 'German, DMY'; SET TimeZone = 'UTC'")
    df = query(
        conn,
        "SELECT '2021-06-01 12:00+00'::timestamptz AS tz, '2021-06-01 12:00'::timestamp AS ts, "
        "'2021-06-01'::date AS d",
    )
    assert dtypes(df) == ["object", "datetime64[us]", "object"]
    assert df["tz"].iloc[0].startswith("01.06.2021 12:00:00")
    assert df["ts"].iloc[0] == pd.Timestamp("2021-06-01 12:00")
    assert df["d"].iloc[0] == dt.date(2021, 6, 1)


def test_timestamp_without_time_zone(conn: psycopg.Connection) -> None:
    df = query(
        conn,
        """SELECT * FROM (VALUES ('0001-01-01 00:00:00'::timestamp), ('9999-12-31 23:59:59.999999'),
             ('2021-06-01 12:34:56.000001'), (NULL)) t(ts)""",
    )
    assert dtypes(df) == ["datetime64[us]"]
    assert cells(df["ts"]) == [
        pd.Timestamp("0001-01-01"),
        pd.Timestamp("9999-12-31 23:59:59.999999"),
        pd.Timestamp("2021-06-01 12:34:56.000001"),
        pd.NaT,
    ]


def test_interval_without_months_is_timedelta64(conn: psycopg.Connection) -> None:
    df = query(
        conn,
        """SELECT * FROM (VALUES ('1 day 02:03:04.000005'::interval), ('-00:00:00.000001'),
             ('-1 days +02:00:00'), ('100000000 days'), (NULL)) t(iv)""",
    )
    assert dtypes(df) == ["timedelta64[us]"]
    assert cells(df["iv"]) == [
        pd.Timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5),
        pd.Timedelta(microseconds=-1),
        pd.Timedelta(hours=-22),
        pd.Timedelta(dt.timedelta(days=100_000_000)),  # pandas 2.2: Timedelta(days=) is ns-only
        pd.NaT,
    ]


def test_interval_with_months_keeps_them(conn: psycopg.Connection) -> None:
    df = query(
        conn,
        """SELECT * FROM (VALUES ('1 year 2 mons -3 days +04:05:06.5'::interval),
             ('-1 mons -00:00:00.000001'), ('1 day'), (NULL)) t(iv)""",
    )
    assert dtypes(df) == ["object"]
    assert cells(df["iv"]) == [
        relativedelta(
            years=1, months=2, days=-3, hours=4, minutes=5, seconds=6, microseconds=500000
        ),
        relativedelta(months=-1, microseconds=-1),
        dt.timedelta(days=1),
        pd.NA,
    ]
    # Calendar arithmetic agrees with the server's: March 31 minus a month is Feb 28.
    server = query(conn, "SELECT '2021-03-31'::timestamp + '-1 mons -00:00:00.000001' AS t")
    assert dt.datetime(2021, 3, 31) + df["iv"].iloc[1] == server["t"].iloc[0]


def test_interval_beyond_timedelta64_falls_back_to_object(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT * FROM (VALUES ('200000000 days'::interval), ('1 day')) t(iv)")
    assert dtypes(df) == ["object"]
    assert cells(df["iv"]) == [dt.timedelta(days=200_000_000), dt.timedelta(days=1)]
    # Exactly the int64 that timedelta64 uses for NaT: must not turn into NaT.
    nat = query(conn, "SELECT '-106751991 days -04:00:54.775808'::interval AS iv")
    assert dtypes(nat) == ["object"]
    assert nat["iv"].iloc[0] == dt.timedelta(microseconds=-(2**63))


def test_interval_psycopg_cannot_parse_comes_back_as_text(conn: psycopg.Connection) -> None:
    # psycopg parses only IntervalStyle=postgres, and turns interval 'infinity'
    # (new in PostgreSQL 17) into timedelta(0): the server's text instead.
    conn.execute("SET IntervalStyle = 'iso_8601'")
    df = query(conn, "SELECT '1 day 02:00'::interval AS a, '-1 mons'::interval AS b")
    assert dtypes(df) == ["object", "object"]
    assert df.iloc[0].tolist() == ["P1DT2H", "P-1M"]
    conn.execute("RESET IntervalStyle")
    if conn.info.server_version >= 170000:
        df = query(
            conn, "SELECT * FROM (VALUES ('infinity'::interval), ('-infinity'), ('1 day')) t(iv)"
        )
        assert cells(df["iv"]) == ["infinity", "-infinity", dt.timedelta(days=1)]


def test_uuid_json_bytea_arrays(conn: psycopg.Connection) -> None:
    u = uuid.uuid4()
    df = query(
        conn,
        """SELECT %s::uuid AS u, NULL::uuid AS u_null,
                  '"just a string"'::jsonb AS js_str, 'null'::jsonb AS js_null,
                  NULL::jsonb AS sql_null,
                  '[1, 2.5, "x", true, null, {"a": {}}]'::json AS js_list,
                  '\\x00015c27ff'::bytea AS by, ''::bytea AS by_empty,
                  '{{1,2},{3,NULL}}'::int[] AS arr2d, '{}'::int[] AS arr_empty,
                  ARRAY['a,b', 'it''s', NULL, '"q"'] AS arr_text, NULL::int[] AS arr_null""",
        [u],
    )
    assert dtypes(df) == ["object"] * 12
    row = df.iloc[0]
    assert row["u"] == u and row["u_null"] is pd.NA
    # A JSON string stays a Python str in an object column (no str dtype inference) ...
    assert row["js_str"] == "just a string"
    # ... and JSON null (None) is not SQL NULL (<NA>).
    assert row["js_null"] is None and row["sql_null"] is pd.NA
    assert row["js_list"] == [1, 2.5, "x", True, None, {"a": {}}]
    assert row["by"] == b"\x00\x01\\'\xff" and row["by_empty"] == b""
    assert row["arr2d"] == [[1, 2], [3, None]] and row["arr_empty"] == []
    assert row["arr_text"] == ["a,b", "it's", None, '"q"'] and row["arr_null"] is pd.NA


def test_a_column_of_json_strings_stays_object(conn: psycopg.Connection) -> None:
    df = query(conn, """SELECT * FROM (VALUES ('"a"'::jsonb), ('"b"'), ('null'), (NULL)) t(j)""")
    assert dtypes(df) == ["object"]
    assert cells(df["j"]) == ["a", "b", None, pd.NA]


def test_enum_unknown_to_psycopg_is_string(conn: psycopg.Connection) -> None:
    name = f"mood_{uuid.uuid4().hex[:12]}"  # created in the test's transaction, rolled back
    execute(
        conn, sql.SQL("CREATE TYPE {} AS ENUM ('sad', 'ok', 'happy')").format(sql.Identifier(name))
    )
    query_sql = sql.SQL(
        "SELECT m, ARRAY[m] AS ms FROM (VALUES ('ok'::{t}), (NULL), ('happy')) v(m)"
    ).format(t=sql.Identifier(name))
    df = query(conn, query_sql)
    assert dtypes(df) == ["string", "string"]  # psycopg returns the server's text for both
    assert cells(df["m"]) == ["ok", pd.NA, "happy"]
    assert df["ms"].iloc[0] == "{ok}"
    empty = query(conn, query_sql + sql.SQL(" LIMIT 0"))
    assert dtypes(empty) == ["string", "string"]


def test_enum_registered_with_psycopg_is_object(conn: psycopg.Connection) -> None:
    name = f"mood_{uuid.uuid4().hex[:12]}"
    execute(conn, sql.SQL("CREATE TYPE {} AS ENUM ('sad', 'ok')").format(sql.Identifier(name)))
    info = EnumInfo.fetch(conn, name)
    assert info is not None
    with conn.cursor() as cur:
        register_enum(info, cur)  # on this cursor only
        df = run(cur, sql.SQL("SELECT 'ok'::{} AS m").format(sql.Identifier(name))).frame
    assert df is not None and dtypes(df) == ["object"]
    assert df["m"].iloc[0].name == "ok"


def test_types_psycopg_has_no_loader_for_are_strings(conn: psycopg.Connection) -> None:
    conn.execute("SET lc_monetary = 'C'")
    df = query(
        conn, "SELECT '1.50'::money AS m, B'101' AS b, 'a b'::tsvector AS v, point(1, 2) AS p"
    )
    assert dtypes(df) == ["string"] * 4
    assert df.iloc[0].tolist() == ["$1.50", "101", "'a' 'b'", "(1,2)"]


def test_other_loaded_types_are_objects(conn: psycopg.Connection) -> None:
    import ipaddress

    df = query(conn, "SELECT '10.0.0.1'::inet AS ip, '[1,5)'::int4range AS r")
    assert dtypes(df) == ["object", "object"]
    assert df["ip"].iloc[0] == ipaddress.ip_address("10.0.0.1")
    assert (df["r"].iloc[0].lower, df["r"].iloc[0].upper) == (1, 5)


def test_column_type_table() -> None:
    # One table keyed by OID answers for every column; unknown OIDs by psycopg's loaders.
    int4 = psycopg.postgres.types["int4"]
    assert PG_TYPES[int4.oid].dtype == "Int32"
    assert column_type(int4.oid).kind is Kind.INTEGER
    assert column_type(int4.array_oid).kind is Kind.OBJECT  # psycopg loads arrays
    assert column_type(987_654_321).kind is Kind.STRING  # unknown: the server's text
    tz = ZoneInfo("Europe/Berlin")
    tstz = PG_TYPES[psycopg.postgres.types["timestamptz"].oid]
    assert tstz.pandas_dtype(tz) == pd.DatetimeTZDtype("us", tz)


# --- execute(), run(), query() on statements without rows --------------------------------


def test_execute_returns_the_command_status(conn: psycopg.Connection) -> None:
    assert execute(conn, "CREATE TEMP TABLE st (x int)") == "CREATE TABLE"
    assert execute(conn, "INSERT INTO st VALUES (1), (2), (3)") == "INSERT 0 3"
    assert execute(conn, "UPDATE st SET x = x + 10 WHERE x > 1") == "UPDATE 2"
    assert execute(conn, "DELETE FROM st WHERE x = 1") == "DELETE 1"
    assert execute(conn, "SELECT * FROM st") == "SELECT 2"  # rows are not fetched
    assert execute(conn, "SET TimeZone = 'UTC'") == "SET"
    assert cells(query(conn, "SELECT x FROM st ORDER BY x")["x"]) == [12, 13]


def test_query_on_a_statement_without_rows(conn: psycopg.Connection) -> None:
    execute(conn, "CREATE TEMP TABLE nr (x int)")
    with pytest.raises(NoResultSetError, match=r"INSERT 0 2.*execute\(\)") as caught:
        query(conn, "INSERT INTO nr VALUES (1), (2)")
    assert isinstance(caught.value, psycopg.ProgrammingError)
    # The statement did run, in the current transaction.
    assert cells(query(conn, "SELECT count(*) AS n FROM nr")["n"]) == [2]


def test_query_with_returning(conn: psycopg.Connection) -> None:
    execute(conn, "CREATE TEMP TABLE rt (id serial, x text)")
    df = query(conn, "INSERT INTO rt (x) VALUES ('a'), ('b') RETURNING id, x")
    assert cells(df["x"]) == ["a", "b"]


def test_run_gives_a_frame_or_the_status(conn: psycopg.Connection) -> None:
    created = run(conn, "CREATE TEMP TABLE rr (x int)")
    assert isinstance(created, Result)
    assert (created.frame, created.status, created.rowcount) == (None, "CREATE TABLE", -1)
    inserted = run(conn, "INSERT INTO rr VALUES (1), (2), (3)")
    assert (inserted.frame, inserted.status, inserted.rowcount) == (None, "INSERT 0 3", 3)
    selected = run(conn, "SELECT x FROM rr WHERE x > 1")
    assert selected.status == "SELECT 2" and selected.rowcount == 2
    assert selected.frame is not None and cells(selected.frame["x"]) == [2, 3]
    nothing = run(conn, "SELECT x FROM rr WHERE false")
    assert nothing.frame is not None and nothing.frame.shape == (0, 1) and nothing.rowcount == 0
    empty = run(conn, "")
    assert (empty.frame, empty.status) == (None, "")


def test_run_on_a_cursor_with_another_row_factory(conn: psycopg.Connection) -> None:
    with conn.cursor(row_factory=dict_row) as cur:
        result = run(cur, "SELECT 1 AS a, 'x' AS b")
        assert result.frame is not None and result.frame.iloc[0].tolist() == [1, "x"]
        assert cur.row_factory is dict_row  # restored
        assert cur.execute("SELECT 2 AS a").fetchone() == {"a": 2}
        loader = cur.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, 0)
        again = run(cur, "SELECT 'infinity'::timestamptz AS t")  # reused cursor
        assert again.frame is not None and again.frame["t"].iloc[0] == "infinity"
        # The fallback loaders were private to run(): the cursor keeps psycopg's.
        assert cur.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, 0) is loader


def test_query_ignores_the_connections_row_factory(conn: psycopg.Connection) -> None:
    conn.row_factory = dict_row
    df = query(conn, "SELECT 1 AS a, 2 AS b")
    assert df.iloc[0].tolist() == [1, 2]


def test_run_refuses_server_cursors(conn: psycopg.Connection) -> None:
    with conn.cursor(name="sc") as cur, pytest.raises(TypeError, match="client-side"):
        run(cur, "SELECT 1")


# --- parameters ---------------------------------------------------------------------------


def test_positional_and_named_params(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT %s::int AS a, %s AS b, %s::text AS c", [1, "it's", None])
    assert df.iloc[0].tolist() == [1, "it's", pd.NA]
    named = query(conn, "SELECT %(x)s::int8 AS x, %(x)s::int8 + %(y)s AS y", {"x": 5, "y": 2})
    assert named.iloc[0].tolist() == [5, 7]
    assert execute(conn, "SELECT %s", ["%s"]) == "SELECT 1"


def test_composed_sql(conn: psycopg.Connection) -> None:
    stmt = sql.SQL("SELECT {} AS {}").format(sql.Literal(42), sql.Identifier("the answer"))
    df = query(conn, stmt)
    assert list(df.columns) == ["the answer"] and df.iloc[0, 0] == 42


def test_percent_without_params_is_literal(conn: psycopg.Connection) -> None:
    df = query(conn, "SELECT '100%' AS p")
    assert df.iloc[0, 0] == "100%"


# --- transactions and errors --------------------------------------------------------------


def test_query_never_commits(conn: psycopg.Connection) -> None:
    execute(conn, "CREATE TEMP TABLE nc (x int)")
    query(conn, "INSERT INTO nc VALUES (1) RETURNING x")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    conn.rollback()
    assert cells(query(conn, "SELECT to_regclass('pg_temp.nc')::text AS t")["t"]) == [pd.NA]


def test_autocommit_connections_stay_idle(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert cells(query(conn, "SELECT 1 AS one")["one"]) == [1]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_server_errors_pass_through_without_the_password(
    conn: psycopg.Connection, pg_url: str
) -> None:
    password = conninfo_to_dict(pg_url).get("password")
    with pytest.raises(psycopg.errors.DivisionByZero) as caught:
        query(conn, "SELECT 1 / 0")
    if password:
        assert password not in str(caught.value)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR  # untouched


def test_run_tries_the_copy_fast_path_for_statements_that_read_from_something() -> None:
    from lunepool_magic.postgres.statement import _wants_fast_path

    assert _wants_fast_path("SELECT * FROM big", None)
    assert _wants_fast_path("select x\nfrom t", None)
    assert not _wants_fast_path("SELECT 1", None)
    assert not _wants_fast_path("SELECT now() AS fromage", None)
    assert _wants_fast_path("SELECT 1", True)
    assert not _wants_fast_path("SELECT * FROM big", False)


@pytest.mark.parametrize("fast", [True, False])
def test_run_limit_truncates_on_both_paths(conn: psycopg.Connection, fast: bool) -> None:
    from lunepool_magic.postgres.statement import run

    sql = "SELECT g FROM generate_series(1, 10) g"
    result = run(conn, sql, fast=fast, limit=3)
    assert result.frame is not None
    assert result.frame["g"].tolist() == [1, 2, 3]
    assert result.frame.attrs["truncated"] is True
    whole = run(conn, sql, fast=fast, limit=10)
    assert whole.frame is not None and whole.frame.attrs["truncated"] is False
    assert len(whole.frame) == 10


@pytest.mark.parametrize("call", ["query", "execute", "run"])
def test_sql_with_a_nul_is_refused_before_anything_is_sent(conn: psycopg.Connection, call) -> None:
    """Regression (found by the magic fuzz): libpq cut SQL at NUL, so a DELETE lost its WHERE."""
    from lunepool_magic.postgres.statement import execute, run

    conn.execute("CREATE TEMP TABLE nul_guard (id int)")
    conn.execute("INSERT INTO nul_guard VALUES (1), (2), (3)")
    fn = {"query": query, "execute": execute, "run": run}[call]
    with pytest.raises(psycopg.ProgrammingError, match=r"NUL character .* at offset 21"):
        fn(conn, "DELETE FROM nul_guard\x00 WHERE id = 2")
    assert conn.execute("SELECT count(*) FROM nul_guard").fetchone() == (3,)


@pytest.mark.parametrize("fast", [False, True], ids=["row path", "fast path"])
def test_jsonb_nested_deeper_than_python_can_parse_comes_back_as_its_text(
    conn: psycopg.Connection, fast: bool
) -> None:
    # Issue 14: the server accepts it, Python's json raised a raw RecursionError.
    # Deeper than Python 3.10-3.13 parse, within what the server accepts (stack depth).
    deep = "[" * 10_000 + "]" * 10_000
    statement = "SELECT v::jsonb AS j FROM (VALUES (%s), ('{\"a\": 1}'), (NULL)) AS t(v)"
    frame = run(conn, statement, [deep], fast=fast).frame
    assert frame is not None
    assert frame["j"].iloc[0] == deep  # the server's text, whole
    assert frame["j"].iloc[1] == {"a": 1}
    assert frame["j"].iloc[2] is pd.NA
