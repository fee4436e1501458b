"""The COPY fast path with parameters returns exactly what the row path returns.

Regression tests for issue 14, section 2. A numeric parameter decided an output
column's type in the probe (bound server-side: int2, float8) but not in the COPY
text (pasted as a literal: int4, numeric), so the binary decoder read one type's
bytes as another's (``SELECT :v AS x FROM t`` with ``v = 0.0`` gave 5e-324). A
value pasted into the COPY text could run as SQL with
``standard_conforming_strings`` off, and showed in ``pg_stat_activity`` and the
server's logs. Values now stay bind parameters on both paths.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg.types.json import Jsonb
from support.frames import assert_same

from lunepool_magic.notebook.binding import DictDumper, bind_cell
from lunepool_magic.postgres.fetch import fetch_frame
from lunepool_magic.postgres.fetch import plan as fetch_plan
from lunepool_magic.postgres.statement import run
from lunepool_magic.sqltext import split_statements

VALUES: list[tuple[str, Any]] = [
    *((f"int {v}", v) for v in (0, 1, -1, 32767, -32768, 32768, 2**31 - 1, 2**31, -(2**63))),
    ("int 2**63-1", 2**63 - 1),
    ("int 10**20", 10**20),
    *((f"float {v!r}", v) for v in (0.0, -0.0, 1.5, -2.25, 1e308, 5e-324)),
    ("float nan", float("nan")),
    ("float inf", float("inf")),
    ("float -inf", float("-inf")),
    *((f"decimal {v}", Decimal(v)) for v in ("1.5", "-0.000001", "NaN", "1" * 30 + ".123")),
    ("bool true", True),
    ("bool false", False),
    *((f"str {v!r}", v) for v in ("abc", "it's", "back\\slash", "naïve ✓", "")),
    ("str injection", "x'); DROP TABLE victims; --"),
    ("bytes", b"\x00\xff'\\"),
    ("bytes empty", b""),
    ("date", dt.date(2024, 2, 29)),
    ("date year 1", dt.date(1, 1, 1)),
    ("time", dt.time(12, 30, 1, 5)),
    ("timetz", dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("timestamp", dt.datetime(2024, 3, 1, 10, 0, 0, 123456)),
    ("timestamptz", dt.datetime(2024, 3, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=5.5)))),
    ("interval", dt.timedelta(days=1, microseconds=5)),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("list of ints", [1, 2, 3]),
    ("list of str with None", ["a", None]),
    ("nested list", [[1, 2], [3, 4]]),
    ("dict", {"a": 1, "b": [None, "x"]}),
    ("Jsonb dict", Jsonb({"a": [1, None]})),
    ("Jsonb str", Jsonb("x'); DROP TABLE victims; --")),
    ("None", None),
    ("numpy int64", np.int64(7)),
    ("numpy int16", np.int16(3)),
    ("numpy float64", np.float64(0.5)),
    ("numpy float32", np.float32(1.25)),
    ("numpy bool", np.bool_(True)),
    ("pandas NA", pd.NA),
    ("pandas NaT", pd.NaT),
    ("numpy nan", np.nan),
    ("Series", pd.Series([1, 2, None], dtype="Int64")),
    ("Timestamp", pd.Timestamp("2024-01-01 10:00", tz="UTC")),
]

# Where a parameter can stand: the select list, WHERE (twice: one parameter),
# function arguments, an expression.
STATEMENTS = [
    "SELECT :v AS x, g FROM generate_series(1, 3) g",
    "SELECT g FROM generate_series(1, 3) g WHERE :v IS NOT DISTINCT FROM :v",
    "SELECT pg_typeof(:v)::text AS t, coalesce(:v, :v) AS c FROM generate_series(1, 2) g",
    "SELECT ARRAY[:v] AS a, (:v) IS NULL AS n FROM generate_series(1, 2) g",
]


@pytest.fixture(scope="module")
def param_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection set up as the magic's are (dicts as jsonb)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.adapters.register_dumper(dict, DictDumper)
        conn.execute("CREATE TABLE IF NOT EXISTS victims (x int)")
        yield conn
        conn.execute("DROP TABLE IF EXISTS victims")


@pytest.fixture(params=["auto", "csv"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The format the fast path picks (binary where it can), or CSV forced."""
    if request.param == "csv":
        monkeypatch.setattr(fetch_plan, "BINARY_WIRE", {})
    return request.param


def params_are_untyped(value: Any) -> bool:
    """psycopg sends these with no type (the server infers one from the context)."""
    return value is None or value is pd.NA or value is pd.NaT or isinstance(value, str | list)


def bound(text: str, value: Any) -> tuple[str, Any]:
    (statement,) = bind_cell(split_statements(text), {"v": value})
    return statement.sql, statement.params


def compare(conn: psycopg.Connection, text: str, value: Any) -> str:
    """'same', or 'both failed' when the row path refuses the statement too."""
    sql, params = bound(text, value)
    try:
        row = run(conn, sql, params, fast=False).frame
    except psycopg.Error as row_error:
        # The fast path declines a statement the server rejects (nothing ran), so
        # that the row path reports the error; or it raises the same error.
        try:
            declined = fetch_frame(conn, sql, params)
        except psycopg.Error as fast_error:
            assert type(fast_error) is type(row_error)
        else:
            assert declined is None
        return "both failed"
    fast = fetch_frame(conn, sql, params)
    assert fast is not None, "the fast path declined a built-in type"
    assert row is not None
    assert_same(fast, row)
    return "same"


@pytest.mark.parametrize("text", STATEMENTS)
@pytest.mark.parametrize(("label", "value"), VALUES, ids=[label for label, _ in VALUES])
def test_every_parameter_type_gives_the_row_paths_frame(
    param_conn: psycopg.Connection, route: str, text: str, label: str, value: Any
) -> None:
    # Unknown-typed values (str, None) cannot be pg_typeof's argument: the server
    # refuses that statement on both paths, and compare() checks it does.
    outcome = compare(param_conn, text, value)
    assert outcome == "same" or (text == STATEMENTS[2] and params_are_untyped(value)), outcome
    assert param_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_the_issues_cases_read_the_right_bytes(param_conn: psycopg.Connection) -> None:
    param_conn.execute("CREATE TEMP TABLE prices AS SELECT 1.5::float8 AS price")
    for value in (0.0, -0.0, 1, 1.5):
        for text in ("SELECT :v AS x FROM prices", "SELECT price * :v AS p FROM prices"):
            sql, params = bound(text, value)
            fast = fetch_frame(param_conn, sql, params)
            assert fast is not None
            assert_same(fast, run(param_conn, sql, params, fast=False).frame)
    sql, params = bound("SELECT :v AS x FROM prices", -0.0)
    frame = fetch_frame(param_conn, sql, params)
    assert frame is not None and np.signbit(frame["x"].to_numpy(dtype=float)[0])


def test_inside_a_transaction_the_values_are_forgotten_after_the_copy(
    param_conn: psycopg.Connection,
) -> None:
    with param_conn.transaction():
        sql, params = bound("SELECT :v AS x FROM generate_series(1, 2) g", "Sekr3t-42")
        frame = fetch_frame(param_conn, sql, params)
        assert frame is not None and frame["x"].tolist() == ["Sekr3t-42", "Sekr3t-42"]
        setting = param_conn.execute("SELECT current_setting('lunepool_magic.p1', true)")
        assert setting.fetchone() == ("",)


def test_with_standard_conforming_strings_off_nothing_runs_that_the_user_did_not_write(
    param_conn: psycopg.Connection,
) -> None:
    param_conn.execute("SET standard_conforming_strings = off")
    try:
        for value in (Jsonb("x'); DROP TABLE victims; --"), "'; DROP TABLE victims; --"):
            sql, params = bound("SELECT 'a\\' AS s, :v AS v FROM generate_series(1, 2) g", value)
            # The fast path leaves such cells to the row path, which binds the value.
            assert fetch_frame(param_conn, sql, params) is None
            with pytest.raises(psycopg.Error):
                run(param_conn, sql, params, fast=False)  # the server's string runs to the end
    finally:
        param_conn.execute("RESET standard_conforming_strings")
    assert param_conn.execute("SELECT count(*) FROM victims").fetchone() == (0,)


def test_a_value_is_never_sql_text(param_conn: psycopg.Connection) -> None:
    # libpq's protocol trace shows each message: the value may travel in Bind
    # messages only, never in a Query or Parse (what pg_stat_activity and
    # log_statement show).
    secret = "Sekr3t-VALUE-987654321"
    sql, params = bound("SELECT :v AS x, g FROM generate_series(1, 3) g WHERE :v <> ''", secret)
    with tempfile.TemporaryFile("w+") as trace:
        param_conn.pgconn.trace(trace.fileno())
        try:
            frame = fetch_frame(param_conn, sql, params)
        finally:
            param_conn.pgconn.untrace()
        os.fsync(trace.fileno())
        trace.seek(0)
        lines = trace.read().splitlines()
    assert frame is not None and frame["x"].tolist() == [secret] * 3
    # A trace line: [timestamp] direction (F: to the server, B: back), length,
    # message type, ... The rows coming back hold the value, of course.
    sent = [re.search(r"(?:^|\t)F\t\d+\t(\w+)", line) for line in lines if secret in line]
    carrying = [kind.group(1) for kind in sent if kind is not None]
    assert carrying and set(carrying) == {"Bind"}, carrying
