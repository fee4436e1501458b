"""``%sql --persist df``: DataFrames as tables through COPY, against a real server.

Round trips (persist, then ``SELECT *`` through the query path, must give an
equal DataFrame) in both COPY formats, what maps to what, all-or-nothing
(a failure halfway, Ctrl-C during the COPY, a pinned transaction), table
names as identifiers, and the magic's messages and options.
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
from support.shell import (  # noqa: F401 (ip_fixture provides the `ip` fixture)
    Shell,
    active_queries,
    interrupt_main_after,
    ip_fixture,
)

from lunepool_magic.notebook.options import OptionError, parse_line
from lunepool_magic.persist import (
    PersistError,
    TableExists,
    column_types,
    parse_table_name,
    persist,
)
from lunepool_magic.postgres import query

FORMATS = ["binary", "csv"]
RUN = uuid.uuid4().hex[:8]  # table names of this run: other runs may share the server


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def schema(pg_admin: psycopg.Connection[Any]) -> Iterator[str]:
    """A schema of this test's own, dropped (with everything in it) afterwards."""
    name = f"lpm_persist_{uuid.uuid4().hex[:10]}"
    pg_admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        pg_admin.execute(f"DROP SCHEMA {name} CASCADE")


def exists(admin: psycopg.Connection[Any], table: str) -> bool:
    row = admin.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
    return bool(row and row[0])


def count(admin: psycopg.Connection[Any], table: str) -> int:
    return int(admin.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


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


def assert_same(back: pd.DataFrame, frame: pd.DataFrame) -> None:
    """assert_frame_equal, except that object columns compare as lists.

    (pandas' testing iterates over iterable values: an ipaddress network
    would be walked address by address.)
    """
    assert list(back.columns) == list(frame.columns)
    objects = [c for c in frame.columns if frame[c].dtype == object]
    pd.testing.assert_frame_equal(back.drop(columns=objects), frame.drop(columns=objects))
    for name in objects:
        assert back[name].dtype == object, name
        assert _plain(back[name]) == _plain(frame[name]), name


def _plain(column: pd.Series) -> list[Any]:
    """Values comparable with ==: NA as None, NaN as a string."""
    out = []
    for value in column.tolist():
        if value is pd.NA:
            out.append(None)
        elif isinstance(value, (float, decimal.Decimal)) and value != value:
            out.append("NaN")
        else:
            out.append(value)
    return out


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
        original = _plain(frame[name].astype(object).where(frame[name].notna(), None))
        returned = _plain(back[name].astype(object).where(back[name].notna(), None))
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


def test_many_blocks_arrive_whole(conn: psycopg.Connection[Any]) -> None:
    n = 120_000  # several blocks of either format
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "word": pd.array([f"w{i}" * (i % 7) for i in range(n)], dtype="string"),
            "x": rng.random(n),
        }
    )
    for fmt in FORMATS:
        table = f"lpm_blocks_{fmt}_{RUN}"
        try:
            persist(conn, frame, table, copy_format=fmt, mode="replace")
            total = conn.execute(
                f"SELECT count(*), sum(id), sum(length(word)), sum(x) FROM {table}"
            ).fetchone()
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        lengths = frame["word"].str.len().sum()
        assert tuple(int(v) for v in total[:3]) == (n, int(frame["id"].sum()), int(lengths))
        assert total[3] == pytest.approx(frame["x"].sum())


# ---------------------------------------------------------------- names and index


def test_table_names_follow_sql_rules() -> None:
    assert parse_table_name("Orders") == ("orders",)
    assert parse_table_name('Sales."Q1 Totals"') == ("sales", "Q1 Totals")
    assert parse_table_name('"a""b".c') == ('a"b', "c")
    for bad in ("a.b.c", "a b", '"open', "9lives", "a..b"):
        with pytest.raises(PersistError):
            parse_table_name(bad)


def test_quoted_names_are_identifiers_never_sql(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(f"CREATE TABLE {schema}.students (x int)")
    evil = "x); DROP TABLE students; --"
    frame = pd.DataFrame({'col"; DROP TABLE students; --': [1]})
    persist(conn, frame, (schema, evil))
    assert exists(conn, f"{schema}.students")
    back = query(conn, f'SELECT * FROM {schema}."x); DROP TABLE students; --"')
    assert list(back.columns) == ['col"; DROP TABLE students; --']


def test_named_index_levels_become_columns(conn: psycopg.Connection[Any], schema: str) -> None:
    frame = pd.DataFrame(
        {"v": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", None])
    )
    persist(conn, frame, (schema, "indexed"))
    back = query(conn, f"SELECT * FROM {schema}.indexed")
    assert list(back.columns) == ["k", "v"]  # the unnamed level is left out
    assert back["k"].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"p": pd.period_range("2024-01", periods=2, freq="M")}), "period"),
        (pd.DataFrame({"c": [1 + 2j, 3j]}), "complex"),
        (pd.DataFrame({"m": [dt.datetime(2024, 1, 1),
                             dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)]}),
         "mixes naive and time-zone-aware"),
        (pd.DataFrame({"o": [1, "a"]}), "int, str"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "two columns are named 'a'"),
        (pd.DataFrame({"x" * 64: [1]}), "longer than PostgreSQL's 63 bytes"),
        (pd.DataFrame(index=[1, 2]), "no columns"),
        (pd.DataFrame({"j": [{"a": float("nan")}]}), "not JSON"),
    ],
)  # fmt: skip
def test_frames_that_cannot_be_stored_fail_before_anything_is_sent(
    conn: psycopg.Connection[Any], frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(PersistError, match=message):
        persist(conn, frame, "lpm_never_created")
    assert not exists(conn, "lpm_never_created")


def test_a_series_is_refused_with_a_hint(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(PersistError) as info:
        persist(conn, pd.Series([1, 2]), "lpm_never_created")  # type: ignore[arg-type]
    assert "to_frame()" in info.value.hint


# ---------------------------------------------------------------- all or nothing


def frame_failing_at_the_end(rows: int = 50_000) -> pd.DataFrame:
    """Rows the server accepts, then (in a late block) one it rejects: a NUL in text."""
    words = ["fine"] * rows
    words[-1] = "bad\x00value"
    return pd.DataFrame({"id": np.arange(rows), "word": pd.array(words, dtype="string")})


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failure_halfway_leaves_no_table(
    conn: psycopg.Connection[Any], schema: str, fmt: str
) -> None:
    with pytest.raises(psycopg.Error):
        persist(conn, frame_failing_at_the_end(), (schema, "t"), copy_format=fmt)
    assert not exists(conn, f"{schema}.t")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failure_halfway_appends_nothing_and_replaces_nothing(
    conn: psycopg.Connection[Any], schema: str, fmt: str
) -> None:
    good = pd.DataFrame({"id": np.arange(3), "word": pd.array(["a", "b", "c"], dtype="string")})
    persist(conn, good, (schema, "t"))
    for mode in ("append", "replace"):
        with pytest.raises(psycopg.Error):
            persist(conn, frame_failing_at_the_end(), (schema, "t"), mode=mode, copy_format=fmt)
        assert query(conn, f"SELECT * FROM {schema}.t ORDER BY id").equals(
            query(conn, "SELECT * FROM (VALUES (0::int8, 'a'), (1, 'b'), (2, 'c')) v(id, word)")
        ), mode


def test_create_refuses_an_existing_table_and_append_needs_one(
    conn: psycopg.Connection[Any], schema: str
) -> None:
    frame = pd.DataFrame({"x": [1, 2]})
    persist(conn, frame, (schema, "t"))
    with pytest.raises(TableExists, match="already exists") as info:
        persist(conn, frame, (schema, "t"))
    assert "--append" in info.value.hint
    assert count(conn, f"{schema}.t") == 2
    persist(conn, frame, (schema, "t"), mode="append")
    assert count(conn, f"{schema}.t") == 4
    persist(conn, frame.iloc[:1], (schema, "t"), mode="replace")
    assert count(conn, f"{schema}.t") == 1
    with pytest.raises(PersistError, match="does not exist"):
        persist(conn, frame, (schema, "missing"), mode="append")


def test_replace_never_cascades(conn: psycopg.Connection[Any], schema: str) -> None:
    frame = pd.DataFrame({"x": [1]})
    persist(conn, frame, (schema, "t"))
    conn.execute(f"CREATE VIEW {schema}.v AS SELECT * FROM {schema}.t")
    with pytest.raises(psycopg.errors.DependentObjectsStillExist):
        persist(conn, pd.DataFrame({"x": [5, 6]}), (schema, "t"), mode="replace")
    assert count(conn, f"{schema}.v") == 1


# ---------------------------------------------------------------- through the magic


def test_magic_persist_create_append_replace(
    ip: Shell, pg_admin: psycopg.Connection, schema: str
) -> None:
    ip.ok(f"%sql SET search_path = {schema}")  # the test's own schema: no name clashes
    ip.ok("import pandas as pd; lpm_frame = pd.DataFrame({'a': [1, 2], 'b': ['x', None]})")
    created = ip.ok("%sql --persist lpm_frame")
    assert "Created table lpm_frame (2 columns) and loaded 2 rows" in created.out
    assert exists(pg_admin, f"{schema}.lpm_frame")
    again = ip.fail("%sql --persist lpm_frame")
    assert "ERROR:  table lpm_frame already exists" in again.text
    assert "HINT:  --append adds the rows" in again.text
    assert "Nothing was written." in again.text
    assert "Traceback" not in again.text
    assert "Appended 2 rows to lpm_frame" in ip.ok("%sql --append lpm_frame").out
    assert count(pg_admin, f"{schema}.lpm_frame") == 4
    replaced = ip.ok("%sql --persist lpm_frame --replace --table LPM_Other")
    assert "Replaced table lpm_other: 2 rows, 2 columns" in replaced.out
    back = ip.value("%sql SELECT * FROM lpm_other ORDER BY a")
    assert back["b"].tolist()[0] == "x" and back["b"].isna().tolist() == [False, True]
    qualified = ip.ok(f'%sql --persist lpm_frame --table {schema}."Quoted Name"')
    assert f'Created table {schema}."Quoted Name"' in qualified.out
    assert exists(pg_admin, f'{schema}."Quoted Name"')


def test_magic_persist_inside_a_pinned_transaction(
    ip: Shell, pg_admin: psycopg.Connection, schema: str
) -> None:
    ip.ok(f"%sql SET search_path = {schema}")
    ip.ok("import pandas as pd; lpm_tx = pd.DataFrame({'a': [1]})")
    ip.ok("%sql BEGIN")
    ip.ok("%sql --persist lpm_tx")
    assert not exists(pg_admin, f"{schema}.lpm_tx")  # not committed yet
    assert ip.scalar("%sql SELECT count(*) FROM lpm_tx") == 1
    # A failing persist rolls back its savepoint only: the transaction stays usable.
    failed = ip.fail("%sql --persist lpm_tx")
    assert "already exists" in failed.text and "Transaction open" in failed.text
    assert ip.session().transaction == "open"
    ip.ok("%sql ROLLBACK")
    assert not exists(pg_admin, f"{schema}.lpm_tx")


def test_magic_persist_errors_are_short(ip: Shell) -> None:
    assert "no variable named 'nothing_here'" in ip.fail("%sql --persist nothing_here").text
    ip.ok("lpm_not_a_frame = 42")
    refused = ip.fail("%sql --persist lpm_not_a_frame")
    assert "only a DataFrame can be persisted, not a int" in refused.text
    assert "Traceback" not in refused.text
    assert "takes no SQL" in ip.fail("%%sql --persist lpm_not_a_frame\nSELECT 1").text
    ip.ok("import pandas as pd; lpm_p = pd.DataFrame({'p': pd.period_range('2024-01', periods=1)})")
    assert "has no PostgreSQL type here" in ip.fail("%sql --persist lpm_p").text


def test_magic_persist_is_interrupted_cleanly(
    ip: Shell, pg_admin: psycopg.Connection, schema: str
) -> None:
    ip.ok(f"%sql SET search_path = {schema}")
    ip.ok(
        "import numpy as np, pandas as pd\n"
        "n = 3_000_000\n"
        "lpm_big = pd.DataFrame({'id': np.arange(n), 'x': np.random.default_rng(1).random(n)})"
    )
    with interrupt_main_after(lambda: bool(active_queries(pg_admin, "COPY%lpm_big%"))):
        run = ip.fail("%sql --persist lpm_big")
    assert "Interrupted: --persist lpm_big cancelled on the server." in run.text
    assert "Nothing was written." in run.text
    assert not exists(pg_admin, f"{schema}.lpm_big")
    assert ip.scalar("%sql SELECT 1") == 1  # the session goes on
    stats = ip.session().pool.stats()
    assert stats.in_use == 0


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("--persist df", {"persist": "df", "persist_mode": "create", "table": None}),
        ("--persist df --append", {"persist": "df", "persist_mode": "append"}),
        ("--append df", {"persist": "df", "persist_mode": "append"}),
        ("--replace df --table s.\"T 1\"", {"persist": "df", "persist_mode": "replace",
                                             "table": 's."T 1"'}),
        ("--alias wh --persist df", {"persist": "df", "alias": "wh"}),
    ],
)  # fmt: skip
def test_persist_options_parse(line: str, fields: dict[str, Any]) -> None:
    parsed = parse_line(line)
    for key, value in fields.items():
        assert getattr(parsed, key) == value


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--persist", "needs the name of a DataFrame variable"),
        ("--persist df SELECT 1", "--persist takes no SQL"),
        ("--append", "goes with --persist VAR"),
        ("--table t", "--table goes with --persist VAR"),
        ("--persist df --append --replace", "cannot be combined"),
        ("--persist df --out x", "stores nothing in a variable"),
        ("--persist df --table 'x'", "--table needs a table name"),
        ("--persist df --explain", "cannot be combined"),
    ],
)
def test_persist_option_errors(line: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        parse_line(line)
