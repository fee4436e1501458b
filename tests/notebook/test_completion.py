"""Completion's parts on their own: the catalog query and cache, quoting, the magic line.

The kernel tests (test_completion_kernel.py) go through a real kernel for
each context; these check what a kernel cannot show deterministically (a
Tab while the catalog is being read never waits) and compare our rules
with the real thing: the server's ``quote_ident``, the magic's own option
parser and help.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lunepool_magic.magic import LunepoolMagic
from lunepool_magic.notebook import completion
from lunepool_magic.notebook.options import OptionError, parse_line
from lunepool_magic.postgres import create_pool
from lunepool_magic.postgres.catalog import Catalog, CatalogCache, open_connection, read_catalog


@pytest.fixture
def pool(pg_url: str) -> Iterator[Any]:
    made = create_pool(pg_url, max_connections=2, name="completion-test")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def catalog(pg_admin: psycopg.Connection) -> Iterator[Catalog]:
    pg_admin.execute(
        "DROP SCHEMA IF EXISTS cmplu CASCADE; CREATE SCHEMA cmplu;"
        'CREATE TABLE cmplu.t ("Zed" int, b text, a int);'
        "ALTER TABLE cmplu.t DROP COLUMN b;"
        "CREATE MATERIALIZED VIEW cmplu.mv AS SELECT 1 AS one;"
        "CREATE FUNCTION cmplu.f(int) RETURNS int LANGUAGE sql AS 'SELECT $1';"
    )
    try:
        yield read_catalog(pg_admin)
    finally:
        pg_admin.execute("DROP SCHEMA IF EXISTS cmplu CASCADE")


# ------------------------------------------------------------------ the catalog


def test_read_catalog_reads_relations_columns_functions_and_the_servers_keywords(
    catalog: Catalog, pg_admin: psycopg.Connection
) -> None:
    table = catalog.relation("cmplu", "t")
    assert table is not None and table.kind == "table"
    assert table.columns == ("Zed", "a")  # in column order, dropped ones left out
    view = catalog.relation("cmplu", "mv")
    assert view is not None and view.kind == "view"
    assert "f" in catalog.functions["cmplu"]
    # Functions only the server calls (taking or returning internal) are left out.
    for internal in ("int4in", "numeric_sub", "btint24cmp", "int8inc"):
        assert internal not in catalog.functions["pg_catalog"], internal
    assert "lower" in catalog.functions["pg_catalog"]
    expected = dict(pg_admin.execute("SELECT word, catcode::text FROM pg_get_keywords()"))
    assert catalog.keywords == expected
    (path,) = pg_admin.execute("SELECT current_schemas(true)::text[]").fetchone()
    assert catalog.search_path == tuple(path)
    assert not any(s.startswith("pg_toast") for s in catalog.schemas)


def test_names_are_quoted_as_the_servers_quote_ident_quotes_them(
    catalog: Catalog, pg_admin: psycopg.Connection
) -> None:
    names = [
        "orders", "Orders", "order", "user", "name", "left", "a b", 'say "hi"', "x$1",
        "_x", "1st", "ümlaut", "select", "between", "int", "CamelCase", "snake_case_9",
    ]  # fmt: skip
    rows = pg_admin.execute("SELECT quote_ident(n) FROM unnest(%s::text[]) n", [names])
    expected = [quoted for (quoted,) in rows]
    assert [completion.quote_name(n, catalog.keywords) for n in names] == expected


# -------------------------------------------------------------------- the cache


def _borrowing(pool: Any) -> Any:
    return lambda: pool.connection(5)


class _GatedReader:
    """read_catalog after ``gate`` is set; ``entered`` is set when a read starts."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.reads = 0

    def __call__(self, conn: Any) -> Catalog:
        self.reads += 1
        self.entered.set()
        assert self.gate.wait(30)
        return read_catalog(conn)


def test_peek_never_waits_for_a_read_in_flight(pool: Any) -> None:
    reader = _GatedReader()
    cache = CatalogCache(reader=reader)
    connect = _borrowing(pool)
    assert cache.peek(pool, connect) is None  # returns at once; the read is under way
    assert reader.entered.wait(30)
    assert cache.peek(pool, connect) is None  # still reading: no second read, no wait
    reader.gate.set()
    catalog = cache.wait(pool, 30)
    assert catalog is not None and reader.reads == 1
    assert cache.peek(pool, connect) is catalog  # fresh: no new read


def test_an_invalidation_during_a_read_reads_again(pool: Any) -> None:
    reader = _GatedReader()
    cache = CatalogCache(reader=reader)
    cache.peek(pool, _borrowing(pool))
    assert reader.entered.wait(30)
    cache.invalidate(pool, _borrowing(pool))  # DDL ran while the catalog was being read
    reader.gate.set()
    assert cache.wait(pool, 30) is not None
    assert reader.reads == 2


def test_a_failed_read_backs_off_keeps_the_reason_and_never_shows_the_password(
    pg_url: str,
) -> None:
    params = conninfo_to_dict(pg_url)
    params.update(password="s3cret-pw", port="1", connect_timeout="2")  # nothing listens on 1
    bad = make_conninfo(**params)
    cache = CatalogCache(retry_after=3600)
    key = object()
    attempts = []

    def connect_bad() -> Any:
        attempts.append(1)
        return open_connection(bad)

    assert cache.peek(key, connect_bad) is None
    with pytest.raises(LookupError, match="could not read the catalog") as failure:
        cache.wait(key, 30)
    assert "s3cret-pw" not in str(failure.value)
    assert cache.peek(key, connect_bad) is None
    assert len(attempts) == 1  # backing off: no new attempt at every Tab
    cache.invalidate(key, lambda: open_connection(pg_url))  # asked for: tried again at once
    assert cache.wait(key, 30) is not None
    cache.forget(key)
    assert cache.wait(key, 0) is None  # nothing kept for it any more


def test_open_connection_is_a_connection_of_its_own(pg_url: str, pool: Any) -> None:
    with open_connection(pg_url) as conn:
        assert conn.autocommit
        name = conn.execute("SHOW application_name").fetchone()[0]
        assert name == "lunepool_magic (completion)"
    assert conn.closed
    assert pool.stats().size == 0  # no pool was asked for anything


# ------------------------------------------------------------- the magic line


def test_every_option_offered_is_one_the_magic_accepts() -> None:
    values = {"connection": "wh", "variable": "df", "value": "10", "job": "1"}
    for option, takes in completion.MAGIC_OPTIONS.items():
        line = option if takes is None or takes.endswith("?") else f"{option} {values[takes]}"
        if option in ("--table",):
            line = "--persist df --table t"
        try:
            parse_line(line)
        except OptionError as exc:
            assert "unknown option" not in str(exc), option


def test_every_option_in_the_magics_help_is_offered() -> None:
    import re

    documented = set(re.findall(r"(?<![\w-])--[a-z]+", LunepoolMagic.sql.__doc__ or ""))
    assert documented, "no --options found in %sql?"
    assert documented <= set(completion.MAGIC_OPTIONS), documented - set(completion.MAGIC_OPTIONS)


@pytest.mark.parametrize(
    ("marked", "area", "text", "alias"),
    [
        ("%%sql --alias wh\nSELECT |", "sql", "\nSELECT ", "wh"),
        ("%%sql -a wh SELECT |", "sql", "SELECT ", "wh"),
        ("\n\n%%sql\nSELECT |", "sql", "\nSELECT ", None),  # IPython drops leading blank lines
        ("%%sql --out df --lim|", "option", "--lim", None),
        ("%%sql --close |", "connection", "", None),
        ("%sql --persist |", "variable", "", None),
        ("%sql postgresql://me@host/db --alias x SELECT 1 + |", "sql", "SELECT 1 + ", "x"),
        ("%sql df << SELECT |", "sql", "SELECT ", None),
        ("rows = %sql SELECT |", "sql", "SELECT ", None),
        ("print(%sql SELECT |", "sql", "SELECT ", None),
    ],
)
def test_locate_reads_the_magic_line(marked: str, area: str, text: str, alias: str | None) -> None:
    cursor = marked.index("|")
    place = completion.locate(marked.replace("|", ""), cursor, ("sql", "lunesql"))
    assert place is not None
    assert (place.area, place.text[: place.cursor] if area == "sql" else place.text) == (area, text)
    assert place.alias == alias


@pytest.mark.parametrize(
    "marked",
    [
        "%%sq|",  # the magic's name: IPython's own magic completion
        "%%sq|l\nSELECT 1",
        "x = 1  # %sql in a comment is|",
        "s = '%%sql|'",
        "print(1)\n%%sql\nSELECT |",  # a cell magic only counts on the first line
        "%%sqlite\nSELECT |",
    ],
)
def test_locate_ignores_what_is_not_our_magic(marked: str) -> None:
    cursor = marked.index("|")
    assert completion.locate(marked.replace("|", ""), cursor, ("sql", "lunesql")) is None


@pytest.mark.parametrize(
    "marked",
    [
        "SELECT 'it''s |",
        "SELECT E'a\\'b |",
        "SELECT $$ body |",
        "SELECT $tag$ $$ |",
        "SELECT 1 -- a comment |",
        "SELECT /* a /* nested */ comment |",
    ],
)
def test_nothing_is_offered_inside_strings_and_comments(catalog: Catalog, marked: str) -> None:
    cursor = marked.index("|")
    place = completion.Place("sql", marked.replace("|", ""), cursor)
    assert completion.suggest(place, catalog) is None


def test_after_a_closed_string_or_comment_completion_resumes(catalog: Catalog) -> None:
    text = "SELECT 'x;y' /* c */ FROM cmplu."
    place = completion.Place("sql", text, len(text))
    found = completion.suggest(place, catalog)
    assert found is not None and [c.text for c in found.completions] == ["mv", "t"]


def test_the_statement_around_the_cursor_is_the_one_completed(catalog: Catalog) -> None:
    text = "SELECT * FROM cmplu.t;\nSELECT  FROM cmplu.mv;\nSELECT 2"
    found = completion.suggest(completion.Place("sql", text, text.index(" FROM cmplu.mv")), catalog)
    assert found is not None
    assert [c.text for c in found.completions if c.kind == "column"] == ["one"]


def test_the_limit_is_respected(catalog: Catalog) -> None:
    found = completion.suggest(completion.Place("sql", "SELECT ", 7), catalog, limit=5)
    assert found is not None and len(found.completions) == 5


# ---------------------------------------------------------------- DDL follow-up


@pytest.mark.parametrize(
    ("sql", "changes"),
    [
        ("CREATE TABLE t (a int)", True),
        ("  -- comment\n  alter table t add b int", True),
        ("SELECT 1; DROP VIEW v", True),
        ("COMMIT", True),
        ("rollback", True),
        ("DO $$ BEGIN CREATE TABLE x (); END $$", True),
        ("SELECT 'CREATE TABLE t'", False),
        ("INSERT INTO t VALUES (1)", False),
        ("/* DROP */ SELECT 1", False),
    ],
)
def test_changes_catalog(sql: str, changes: bool) -> None:
    assert completion.changes_catalog(sql) is changes


def test_magic_uses_of_a_cell() -> None:
    names = ("sql", "lunesql")
    assert completion.magic_uses("%%sql --alias wh\nCREATE TABLE t ()", names) == [
        (" --alias wh", "CREATE TABLE t ()")
    ]
    assert completion.magic_uses("x = 1\n%sql DROP TABLE t\ny = %lunesql SELECT 1", names) == [
        (" DROP TABLE t", ""),
        (" SELECT 1", ""),
    ]
    assert completion.magic_uses("print('no magic')", names) == []
