"""``%sql --persist df``: DataFrames as tables through COPY, against a real server.

Blocks, all-or-nothing (a failure halfway, Ctrl-C during the COPY, a pinned
transaction), table names as identifiers, and the magic's messages and
options. What maps to what and the round trips are in test_persist_types.py.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
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


def test_the_table_name_parser_loads_none_of_the_dataframe_code() -> None:
    """Option parsing checks ``--table`` with parse_table_name: importing it from
    the package must not load the modules that need pandas, pyarrow and psycopg."""
    code = (
        "import sys\n"
        "from lunepool_magic.postgres.persist import parse_table_name\n"
        "assert parse_table_name('S.\"T\"') == ('s', 'T')\n"
        "print(' '.join(sorted(m for m in sys.modules if '.persist' in m)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [
        "lunepool_magic.postgres.persist",
        "lunepool_magic.postgres.persist.errors",
        "lunepool_magic.postgres.persist.names",
    ]


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
