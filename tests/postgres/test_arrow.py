"""Arrow and polars output: the same values as the pandas result, value for value.

The differential tests run each query of test_fetch.py's type matrices three
ways (COPY binary where it applies, COPY CSV forced, the row path) and compare
the Arrow table and the polars DataFrame with the pandas DataFrame of the same
query, value by value, NULLs included. Where docs/types.md says a column is the
server's text in Arrow (numeric NaN, months in intervals, timetz, inet, ...), the
text is loaded with the row path's loader and must give the pandas value. The
values Python cannot hold (infinity, years beyond 1..9999) are compared with the
server's own arithmetic (epoch microseconds and days), not with our code.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql
from psycopg.adapt import Transformer
from psycopg.pq import Format
from support.interrupts import ctrl_c_once_rows_flow
from support.shell import ip_fixture  # noqa: F401
from test_fetch import (
    BINARY_MATRIX,
    EXOTIC_MATRIX,
    OUT_OF_RANGE_MATRIX,
    ZONES,
    identical,
)

from lunepool_magic.postgres import outputs
from lunepool_magic.postgres.fetch import fetch
from lunepool_magic.postgres.fetch import plan as fetch_plan
from lunepool_magic.postgres.fetch import transfer as fetch_transfer
from lunepool_magic.postgres.frames import LoaderContext, fallback_adapters
from lunepool_magic.postgres.statement import query, run


@pytest.fixture(scope="module")
def shared_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def conn(shared_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    yield shared_conn
    shared_conn.execute("RESET ALL")


@pytest.fixture(params=["auto", "csv", "rows"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """COPY in the format the fast path picks, COPY CSV forced, or the row path."""
    if request.param == "csv":
        monkeypatch.setattr(fetch_plan, "BINARY_WIRE", {})
    return request.param


def fetched(conn: psycopg.Connection, statement: str, path: str, output: str) -> Any:
    if path == "rows":
        return run(conn, statement, fast=False, output=output).frame
    result = fetch(conn, statement, output=output)
    assert result is not None, "the fast path declined"
    return result.result


def loader(conn: psycopg.Connection, oid: int) -> Any:
    """The row path's loader for ``oid`` (psycopg's, with the fallbacks)."""
    transformer = Transformer(LoaderContext(fallback_adapters(conn.adapters), conn))
    return transformer.get_loader(oid, Format.TEXT).load


def pandas_value(value: Any) -> Any:
    if value is pd.NA or value is pd.NaT:
        return pd.NA
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, pd.Timedelta):
        return value.to_pytimedelta()
    if isinstance(value, np.generic):
        return value.item()
    return value


JSON_OIDS = (114, 3802)


class Beyond:
    """A date/time value Python cannot hold (compared with the server's arithmetic elsewhere)."""


def py(scalar: pa.Scalar) -> Any:
    try:
        return scalar.as_py()
    except (OverflowError, ValueError):
        return Beyond


def _zone_name(tz: Any) -> str:
    """A time zone's name, whether zoneinfo (``key``), pytz (``zone``) or fixed."""
    return str(getattr(tz, "key", None) or getattr(tz, "zone", None) or tz)


def same(expected: Any, got: Any, oid: int, load: Any) -> bool:
    """``got`` (an Arrow or polars value) is the pandas value ``expected``."""
    if expected is pd.NA:
        return got is None
    if got is Beyond:  # the row path's text for it: test_values_python_cannot_hold_are_exact
        return isinstance(expected, str)
    if oid in JSON_OIDS:  # the JSON text; JSON null is the text 'null'
        return isinstance(got, str) and identical(json.loads(got), expected)
    if isinstance(got, str) and not isinstance(expected, str):
        # A column that Arrow keeps as the server's text (docs/types.md).
        return identical(load(got.encode()), expected)
    if isinstance(got, bytes) and isinstance(expected, uuid.UUID):  # polars: 16 bytes
        return uuid.UUID(bytes=got) == expected
    if isinstance(expected, float):
        return np.float64(got).view(np.uint64) == np.float64(expected).view(np.uint64)
    if isinstance(expected, dt.datetime):
        if expected.tzinfo is None:
            return got == expected and got.tzinfo is None
        # The same instant in the same named zone. pandas 2 gives pytz zones
        # (whose offsets before 1901 are "LMT" guesses) where Arrow gives
        # zoneinfo; comparing across zone types in a DST fold is never equal in
        # Python (PEP 495), so compare instants.
        utc = dt.timezone.utc
        same_zone = _zone_name(got.tzinfo) == _zone_name(expected.tzinfo)
        same_offset = type(got.tzinfo) is not type(expected.tzinfo) or (
            got.utcoffset() == expected.utcoffset()
        )
        return got.astimezone(utc) == expected.astimezone(utc) and same_zone and same_offset
    if isinstance(expected, Decimal):
        return isinstance(got, Decimal) and got == expected
    if isinstance(expected, list):
        return isinstance(got, list) and identical(got, expected)
    return type(got) is type(expected) and got == expected


def assert_same_values(conn: psycopg.Connection, frame: pd.DataFrame, other: Any) -> None:
    """Every value of ``other`` (Arrow table or polars DataFrame) is ``frame``'s."""
    assert list(other.columns if isinstance(other, pl.DataFrame) else other.column_names) == list(
        frame.columns
    )
    assert len(other) == len(frame)
    oids = [oid for _, oid, _ in frame.attrs["lunepool_magic.columns"]]
    for j, oid in enumerate(oids):
        if isinstance(other, pl.DataFrame):
            values = [py(v) for v in other.to_series(j).to_arrow()]
        else:
            values = [py(v) for v in other.column(j)]
        load = loader(conn, oid)
        column = frame.iloc[:, j]
        for i, (x, y) in enumerate(zip(map(pandas_value, column.array), values, strict=True)):
            assert same(x, y, oid, load), (frame.columns[j], i, x, y)


def check_all(conn: psycopg.Connection, statement: str, path: str) -> pa.Table:
    frame = query(conn, statement)
    table = fetched(conn, statement, path, "arrow")
    assert isinstance(table, pa.Table)
    assert_same_values(conn, frame, table)
    polars_frame = fetched(conn, statement, path, "polars")
    assert isinstance(polars_frame, pl.DataFrame)
    assert_same_values(conn, frame, polars_frame)
    return table


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Asia/Kolkata", "UTC+3"])
def test_common_types_equal_pandas(conn: psycopg.Connection, path: str, zone: str) -> None:
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    table = check_all(conn, BINARY_MATRIX, path)
    assert [str(t) for t in table.schema.types][:10] == [
        "int16",
        "int32",
        "int64",
        "uint32",
        "double",
        "bool",
        "large_string",
        "large_string",
        "large_string",
        "large_string",
    ]
    assert table.schema.field("ts").type == pa.timestamp("us")
    assert table.schema.field("d").type == pa.date32()
    tz = table.schema.field("tstz").type.tz
    assert tz is not None and pa.array([0], pa.timestamp("us", tz)).type.tz == tz


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize("path", ["csv", "rows"])  # these types always take the CSV route
def test_types_loaded_by_psycopg_equal_pandas(
    conn: psycopg.Connection, path: str, zone: str
) -> None:
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    table = check_all(conn, EXOTIC_MATRIX, path)
    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["iv"] == pa.duration("us")
    assert types["tm"] == pa.large_string()  # 24:00:00, which time64 cannot hold
    assert types["by"] == pa.large_binary()
    assert types["at"] == pa.large_list(pa.large_string())
    assert types["num"] == pa.large_string()  # NaN and Infinity: no decimal holds them
    assert types["ivm"] == pa.large_string()  # months have no fixed length
    assert table.column("js").to_pylist()[1] == "null"  # JSON null is text, SQL NULL is null
    assert table.column("js").to_pylist()[4] is None


def test_empty_results_keep_their_types(conn: psycopg.Connection, path: str) -> None:
    empty = BINARY_MATRIX + " LIMIT 0"
    frame = query(conn, empty)
    table = fetched(conn, empty, path, "arrow")
    assert table.num_rows == 0 and len(frame) == 0
    assert table.schema.field("i2").type == pa.int16()
    assert table.schema.field("ts").type == pa.timestamp("us")
    assert fetched(conn, empty, path, "polars").schema["d"] == pl.Date


# Server-side truth for values Python cannot hold: epoch microseconds / days,
# ±infinity as the largest/smallest value Arrow stores (docs/types.md).
def _server_integers(conn: psycopg.Connection, column: str, kind: str) -> list[int | None]:
    if kind == "date":
        value = "(v - '1970-01-01'::date)::int8"
        top = 2**31 - 1
    else:
        value = "(extract(epoch from v) * 1000000)::int8"
        top = 2**63 - 1
    rows = conn.execute(
        f"""SELECT CASE WHEN v = 'infinity' THEN {top} WHEN v = '-infinity' THEN {-top - 1}
                   ELSE {value} END
            FROM (SELECT {column} AS v FROM ({OUT_OF_RANGE_MATRIX}) AS m) AS s"""
    ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_values_python_cannot_hold_are_exact(
    conn: psycopg.Connection, path: str, zone: str
) -> None:
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    table = fetched(conn, OUT_OF_RANGE_MATRIX, path, "arrow")
    for column, kind in (("ts", "ts"), ("tstz", "ts"), ("d", "date"), ("ok", "ts")):
        storage = pa.int32() if kind == "date" else pa.int64()
        got = table.column(column).combine_chunks().view(storage).to_pylist()
        assert got == _server_integers(conn, column, kind), column


def test_numeric_types(conn: psycopg.Connection, path: str) -> None:
    statement = """SELECT x::numeric(10, 2) AS fixed, x::numeric AS free, y::numeric AS big,
                          CASE WHEN x > 1 THEN 'NaN' ELSE x END::numeric(10, 2) AS with_nan
                   FROM (VALUES (1.5, 1e40), (-2.25, NULL), (NULL, 1)) AS v(x, y)
                   CROSS JOIN generate_series(1, 1) AS g"""
    table = check_all(conn, statement, path)
    assert table.schema.field("fixed").type == pa.decimal128(10, 2)
    assert table.schema.field("free").type == pa.decimal128(38, 2)  # the values' largest scale
    assert table.schema.field("big").type == pa.large_string()  # 41 digits: more than 38
    assert table.schema.field("with_nan").type == pa.large_string()
    assert table.column("fixed").to_pylist() == [Decimal("1.50"), Decimal("-2.25"), None]


def test_time_and_uuid(conn: psycopg.Connection, path: str) -> None:
    statement = """SELECT t::time AS t, u::uuid AS u FROM (VALUES ('12:34:56.5',
                   'a81bc81b-dead-4e5d-abff-90865d1e13b1'), (NULL, NULL)) AS v(t, u)
                   CROSS JOIN generate_series(1, 1) AS g"""
    table = check_all(conn, statement, path)
    assert table.schema.field("t").type == pa.time64("us")
    assert table.column("t").to_pylist() == [dt.time(12, 34, 56, 500000), None]
    first = table.column("u").to_pylist()[0]
    expected = uuid.UUID("a81bc81b-dead-4e5d-abff-90865d1e13b1")
    assert first == (expected if hasattr(pa, "uuid") else expected.bytes)


@pytest.mark.parametrize("output", ["arrow", "polars"])
def test_limit_marks_truncated(conn: psycopg.Connection, path: str, output: str) -> None:
    statement = "SELECT g FROM generate_series(1, 10) AS g"
    result = run(conn, statement, fast=path != "rows", limit=3, output=output)
    assert len(result.frame) == 3 and result.truncated
    column = result.frame["g"] if output == "polars" else result.frame.column("g")
    assert (column.to_list() if output == "polars" else column.to_pylist()) == [1, 2, 3]
    whole = run(conn, statement, fast=path != "rows", limit=10, output=output)
    assert len(whole.frame) == 10 and not whole.truncated
    if output == "arrow":
        assert result.frame.schema.metadata[outputs.TRUNCATED_KEY] == b"true"
        assert whole.frame.schema.metadata[outputs.TRUNCATED_KEY] == b"false"


def test_many_blocks(conn: psycopg.Connection, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_transfer, "BLOCK_BYTES", 2000)
    check_all(
        conn,
        "SELECT g, g::float8 / 3 AS f, repeat('é', g % 17) AS t,"
        " '2021-06-01 12:00:00+00'::timestamptz + g * interval '1 s' AS ts"
        " FROM generate_series(1, 3000) AS g",
        path,
    )


def test_numbers_reach_polars_without_a_copy(conn: psycopg.Connection) -> None:
    table = fetched(conn, "SELECT g::int8 AS g FROM generate_series(1, 1000) AS g", "auto", "arrow")
    frame = pl.from_arrow(table, rechunk=False)
    arrow_address = table.column(0).chunk(0).buffers()[1].address
    assert frame.to_series(0).to_arrow().buffers()[1].address == arrow_address


def test_duplicate_names(conn: psycopg.Connection, path: str) -> None:
    statement = "SELECT 1 AS a, 2 AS a FROM generate_series(1, 2)"
    assert fetched(conn, statement, path, "arrow").column_names == ["a", "a"]
    with pytest.raises(ValueError, match=r"polars needs distinct column names; .*'a'.* AS"):
        fetched(conn, statement, path, "polars")


def test_unknown_output_and_missing_polars(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="output must be one of pandas, arrow, polars; not 'csv'"):
        query(conn, "SELECT 1", output="csv")
    monkeypatch.setitem(sys.modules, "polars", None)  # import polars now fails
    message = r"^polars output needs the polars package: pip install polars$"
    with pytest.raises(ImportError, match=message):
        query(conn, "SELECT 1 FROM pg_class", output="polars")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("zone", ZONES[:2])
def test_query_arrow_equals_fetch(conn: psycopg.Connection, zone: str) -> None:
    """query(output=...) (which picks the path) gives what the fetch gives."""
    conn.execute(sql.SQL("SET TimeZone = {}").format(zone))
    statement = "SELECT g, g::text AS t FROM generate_series(1, 500) AS g"
    assert query(conn, statement, output="arrow").equals(fetched(conn, statement, "auto", "arrow"))
    assert query(conn, "SELECT 1 AS one", output="polars").to_dict(as_series=False) == {"one": [1]}


@pytest.mark.parametrize("output", ["arrow", "polars"])
def test_progress_and_ctrl_c_with_every_output(
    conn: psycopg.Connection, pg_admin: psycopg.Connection, output: str
) -> None:
    reports: list[tuple[int, int]] = []
    statement = "SELECT g, repeat('x', 50) AS t FROM generate_series(1, 20000) AS g"
    result = fetch(
        conn, statement, output=output, on_progress=lambda r, b, s: reports.append((r, b))
    )
    assert result is not None and result.rows == 20000
    assert reports[-1][0] == 20000 and reports[-1][1] > 20000 * 50  # the summary

    with ctrl_c_once_rows_flow() as on_progress, pytest.raises(KeyboardInterrupt):
        fetch(
            conn,
            "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000000) AS g",
            output=output,
            on_progress=on_progress,
        )
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    again = query(conn, "SELECT 1 AS one FROM pg_class LIMIT 1", output=output)
    assert len(again) == 1


@pytest.mark.parametrize("view_after", [0, 10**9])
def test_text_through_views_and_gathers(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, view_after: int
) -> None:
    """Both ways of building a binary COPY text column give the row path's strings:
    inline (up to 12 bytes) and out-of-line views, NULLs, empties, multibyte text."""
    from lunepool_magic.postgres.fetch import binary

    monkeypatch.setattr(binary, "VIEW_AFTER", view_after)
    statement = (
        "SELECT g, CASE WHEN g % 7 = 0 THEN NULL WHEN g % 7 = 1 THEN ''"
        " ELSE repeat(CASE WHEN g % 2 = 0 THEN 'é' ELSE 'x' END, g % 29) END AS t,"
        " repeat('日本', g % 5) AS u FROM generate_series(1, 3000) AS g"
    )
    fast = fetch(conn, statement)
    assert fast is not None
    slow = run(conn, statement, fast=False).frame
    assert fast.result["t"].tolist() == slow["t"].tolist()
    assert fast.result["u"].tolist() == slow["u"].tolist()
    assert fast.result["t"].isna().tolist() == slow["t"].isna().tolist()


PERSISTABLE = (
    "SELECT g AS i, g * 0.5::float8 AS f, CASE WHEN g = 2 THEN 'NaN'::float8 END AS nan,"
    " 'x' || g AS t, g % 2 = 0 AS b, '2021-06-01 12:00:00+00'::timestamptz + g * interval '1 h'"
    " AS tstz, '2021-06-01'::date + g AS d, (g || '.25')::numeric(10, 2) AS n,"
    " CASE WHEN g = 3 THEN 'NaN' ELSE g::text END::numeric AS n_nan,"
    " json_build_object('g', g) AS js, CASE WHEN g = 1 THEN 'null'::jsonb END AS jsn,"
    " '\\x0102'::bytea AS by, g * interval '1 day 2 mons' AS ivm,"
    " 'a81bc81b-dead-4e5d-abff-90865d1e13b1'::uuid AS u, ARRAY[g, NULL] AS a"
    " FROM generate_series(1, 4) AS g"
)


@pytest.mark.parametrize("output", ["arrow", "polars"])
def test_as_frame_gives_the_pandas_result(conn: psycopg.Connection, output: str) -> None:
    from lunepool_magic.postgres.outputs import as_frame

    frame = as_frame(query(conn, PERSISTABLE, output=output), conn)
    want = query(conn, PERSISTABLE)
    if output == "arrow":  # the PostgreSQL types travel with the table: the same frame
        from test_fetch import assert_same

        assert_same(frame, want)  # JSON null (the text 'null') stays apart from SQL NULL
    else:  # polars keeps no metadata: types come from the Arrow types
        assert frame["i"].tolist() == want["i"].tolist()
        assert frame["t"].tolist() == want["t"].tolist()
        assert frame["tstz"].tolist() == want["tstz"].tolist()


@pytest.mark.parametrize("output", ["arrow", "polars"])
def test_persist_an_arrow_table_or_polars_frame(ip: Any, output: str) -> None:
    statement = (
        "SELECT g AS id, 'x' || g AS name, g * 1.5::float8 AS f FROM generate_series(1, 5) g"
    )
    ip.ok(f"%sql --output {output} lpm_out_{output} << {statement}")
    ip.ok(f"%sql --persist lpm_out_{output} --replace --table pg_temp.lpm_persisted_{output}")
    back = ip.value(f"%sql SELECT * FROM pg_temp.lpm_persisted_{output} ORDER BY id")
    assert back["id"].tolist() == [1, 2, 3, 4, 5]
    assert back["name"].tolist() == [f"x{g}" for g in range(1, 6)]
    assert back["f"].tolist() == [g * 1.5 for g in range(1, 6)]
