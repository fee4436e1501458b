"""Tests of lunepool_magic.sqltext: statement splitting and :name parameters.

Three layers: tables of tricky cases (exact expectations), the real server
(split + bind statements run and give the right values; the server's own
statement splitting is the oracle for ours), and Hypothesis properties
(no crash on any text; nothing inside quotes or comments is ever touched).
"""

from __future__ import annotations

import datetime as dt
import pickle
import re

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from lunepool_magic.sqltext import (
    Statement,
    UnknownParameter,
    _split_lexed,
    bind_parameters,
    find_parameters,
    leading_keyword,
    split_statements,
)

# Deterministic and bounded, so CI is reproducible and the file stays fast
# (the grammar-built inputs cost more to generate, so they get fewer runs).
FUZZ = settings(
    derandomize=True,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FUZZ_GRAMMAR = settings(FUZZ, max_examples=70)


def texts(cell: str) -> list[str]:
    return [s.text for s in split_statements(cell)]


# --------------------------------------------------------------------------
# Splitting: table of tricky cases
# --------------------------------------------------------------------------

SPLIT_CASES = [
    ("simple", "SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("no-semicolon", "SELECT 1", ["SELECT 1"]),
    ("trailing-semicolon-and-blanks", "SELECT 1;\n\n  ", ["SELECT 1"]),
    ("empty-statements-dropped", ";;SELECT 1;; \n ;", ["SELECT 1"]),
    ("string", "SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
    ("doubled-quote", "SELECT 'it''s; ok'; SELECT 2", ["SELECT 'it''s; ok'", "SELECT 2"]),
    # standard_conforming_strings: a backslash is an ordinary character.
    ("standard-string-backslash", r"SELECT 'C:\'; SELECT 2", [r"SELECT 'C:\'", "SELECT 2"]),
    (
        "e-string-escaped-quote",
        r"SELECT E'it\'s; ok'; SELECT 2",
        [r"SELECT E'it\'s; ok'", "SELECT 2"],
    ),
    ("e-string-escaped-backslash", r"SELECT e'\\'; SELECT 2", [r"SELECT e'\\'", "SELECT 2"]),
    ("e-string-doubled-quote", "SELECT E'a'';b'; SELECT 2", ["SELECT E'a'';b'", "SELECT 2"]),
    (
        "e-string-continues-on-next-line",
        "SELECT E'a'\n  'b\\'; c'; SELECT 2",
        ["SELECT E'a'\n  'b\\'; c'", "SELECT 2"],
    ),
    # `somee` is a word; the quote after it opens a plain string, not E'...'.
    ("word-ending-in-e", r"SELECT somee'x\'; SELECT 2", [r"SELECT somee'x\'", "SELECT 2"]),
    (
        "u-amp-string",
        r"SELECT U&'d\0061t;'' '; SELECT 2",
        [r"SELECT U&'d\0061t;'' '", "SELECT 2"],
    ),
    ("quoted-identifier", 'SELECT 1 AS "a;b"; SELECT 2', ['SELECT 1 AS "a;b"', "SELECT 2"]),
    (
        "quoted-identifier-doubled-quote",
        'SELECT 1 AS "say ""hi;"""; SELECT 2',
        ['SELECT 1 AS "say ""hi;"""', "SELECT 2"],
    ),
    ("u-amp-identifier", 'SELECT 1 AS U&"a;b"; SELECT 2', ['SELECT 1 AS U&"a;b"', "SELECT 2"]),
    ("dollar-quote", "SELECT $$a;b$$; SELECT 2", ["SELECT $$a;b$$", "SELECT 2"]),
    (
        "dollar-tag-with-inner-double-dollar",
        "DO $fn$ BEGIN PERFORM $$;$$; RAISE NOTICE '$$;'; END $fn$; SELECT 2",
        ["DO $fn$ BEGIN PERFORM $$;$$; RAISE NOTICE '$$;'; END $fn$", "SELECT 2"],
    ),
    (
        "dollar-tag-other-tag-inside",
        "SELECT $a$ $ab$; $a$; SELECT 2",
        ["SELECT $a$ $ab$; $a$", "SELECT 2"],
    ),
    (
        "dollar-tag-case-matters",
        "SELECT $a$ $A$; $a$; SELECT 2",
        ["SELECT $a$ $A$; $a$", "SELECT 2"],
    ),
    ("positional-parameter", "SELECT $1; SELECT $2::int", ["SELECT $1", "SELECT $2::int"]),
    # As the server lexes them: `$1` then a dollar quote; a number then a dollar quote.
    ("dollar-quote-after-positional", "SELECT $1$$;$$; SELECT 2", ["SELECT $1$$;$$", "SELECT 2"]),
    ("dollar-quote-after-number", "SELECT 1$$;$$; SELECT 2", ["SELECT 1$$;$$", "SELECT 2"]),
    ("dollars-inside-identifier", "SELECT a$$b, c1$$; SELECT 2", ["SELECT a$$b, c1$$", "SELECT 2"]),
    (
        "dollar-tag-lookalike-in-identifier",
        "SELECT x$$y$$z; SELECT $$;$$",
        ["SELECT x$$y$$z", "SELECT $$;$$"],
    ),
    (
        "nested-block-comment",
        "SELECT 1 /* a /* b; */ still; */; SELECT 2",
        ["SELECT 1 /* a /* b; */ still; */", "SELECT 2"],
    ),
    (
        "block-comment-after-operator",
        "SELECT 2 */* c; */ 3; SELECT 2",
        ["SELECT 2 */* c; */ 3", "SELECT 2"],
    ),
    (
        "line-comment-with-semicolon-and-quotes",
        "SELECT 1 -- not here; 'nor\" here $$\n; SELECT 2",
        ["SELECT 1 -- not here; 'nor\" here $$", "SELECT 2"],
    ),
    (
        "comment-only-statements-dropped",
        "-- just a comment;\n/* and; this */;\nSELECT 1;\n-- done;",
        ["SELECT 1"],
    ),
    # Leading comments stay with their statement (hints live there) ...
    ("leading-comment-kept", "SELECT 1;\n-- second\nSELECT 2", ["SELECT 1", "-- second\nSELECT 2"]),
    ("leading-hint-kept", "/*+ SeqScan(t) */ SELECT 1", ["/*+ SeqScan(t) */ SELECT 1"]),
    # ... but a comment after `;` on the same line closes the statement before.
    (
        "same-line-comments-go-with-previous",
        "SELECT 1; -- one\nSELECT 2; /* two */ -- 2\nSELECT 3; /* 3 */ SELECT 4",
        ["SELECT 1", "SELECT 2", "SELECT 3", "/* 3 */ SELECT 4"],
    ),
    (
        "casts-and-json-operators",
        "SELECT x::text, j->'a;', j->>'b', j#>>'{a,b}', j ?| array['a'], j ? 'k'; SELECT 2",
        ["SELECT x::text, j->'a;', j->>'b', j#>>'{a,b}', j ?| array['a'], j ? 'k'", "SELECT 2"],
    ),
    ("crlf-line-ends", "SELECT 1;\r\nSELECT 2\r\n", ["SELECT 1", "SELECT 2"]),
    # Non-ASCII blanks are identifier characters for PostgreSQL, not whitespace.
    ("nbsp-is-not-blank", "SELECT 1;\u00a0;", ["SELECT 1", "\u00a0"]),
    (
        "begin-atomic",
        "CREATE FUNCTION f() RETURNS int\nBEGIN ATOMIC\n SELECT 1;\n SELECT 2;\nEND;\nSELECT f()",
        [
            "CREATE FUNCTION f() RETURNS int\nBEGIN ATOMIC\n SELECT 1;\n SELECT 2;\nEND",
            "SELECT f()",
        ],
    ),
    (
        "begin-atomic-with-case",
        "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC "
        "SELECT CASE WHEN x > 0 THEN 1 ELSE CASE x WHEN 0 THEN 0 END END; END; SELECT 2",
        [
            "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC "
            "SELECT CASE WHEN x > 0 THEN 1 ELSE CASE x WHEN 0 THEN 0 END END; END",
            "SELECT 2",
        ],
    ),
    (
        "begin-atomic-case-in-parentheses",
        "create function f() returns int language sql begin atomic "
        "select (case when true then 1 end); end; select 2",
        [
            "create function f() returns int language sql begin atomic "
            "select (case when true then 1 end); end",
            "select 2",
        ],
    ),
    (
        "begin-atomic-or-replace-procedure-comments",
        "CREATE /* c */ OR REPLACE\nPROCEDURE p() LANGUAGE sql BEGIN -- x\n ATOMIC "
        "INSERT INTO t VALUES (1); DELETE FROM t; END; CALL p()",
        [
            "CREATE /* c */ OR REPLACE\nPROCEDURE p() LANGUAGE sql BEGIN -- x\n ATOMIC "
            "INSERT INTO t VALUES (1); DELETE FROM t; END",
            "CALL p()",
        ],
    ),
    (
        "begin-atomic-end-and-case-as-names",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
        "SELECT 1 AS end, t.end, t . case FROM t; END; SELECT 2",
        [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
            "SELECT 1 AS end, t.end, t . case FROM t; END",
            "SELECT 2",
        ],
    ),
    (
        "begin-atomic-strings-mention-end",
        "CREATE FUNCTION f() RETURNS text BEGIN ATOMIC SELECT 'END;', \"end\"; END; SELECT 2",
        [
            "CREATE FUNCTION f() RETURNS text BEGIN ATOMIC SELECT 'END;', \"end\"; END",
            "SELECT 2",
        ],
    ),
    ("transaction-begin-end", "BEGIN; SELECT 1; END;", ["BEGIN", "SELECT 1", "END"]),
    (
        "begin-atomic-outside-routine",
        "SELECT begin atomic; SELECT 2",
        ["SELECT begin atomic", "SELECT 2"],
    ),
    (
        "create-function-dollar-body",
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; SELECT f()",
        ["CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql", "SELECT f()"],
    ),
    (
        "create-function-return",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1; SELECT f()",
        ["CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1", "SELECT f()"],
    ),
    (
        "create-table-named-like-keywords",
        "CREATE TABLE begin_atomic (x int); SELECT 1",
        ["CREATE TABLE begin_atomic (x int)", "SELECT 1"],
    ),
    # Issue 15: psql ends no statement while a parenthesis is open, and
    # pg_get_ruledef (so pg_dump) prints multi-action rules in this form.
    (
        "bug-15-semicolon-inside-parentheses-of-a-rule",
        "CREATE RULE r AS ON INSERT TO t DO INSTEAD (NOTIFY foo; NOTIFY bar); SELECT 2",
        ["CREATE RULE r AS ON INSERT TO t DO INSTEAD (NOTIFY foo; NOTIFY bar)", "SELECT 2"],
    ),
    (
        "bug-15-nested-parentheses-and-a-closer-in-a-string",
        "CREATE RULE r AS ON UPDATE TO t DO ALSO (INSERT INTO l VALUES (')'); "
        "DELETE FROM q WHERE (a);); SELECT 2",
        [
            "CREATE RULE r AS ON UPDATE TO t DO ALSO (INSERT INTO l VALUES (')'); "
            "DELETE FROM q WHERE (a);)",
            "SELECT 2",
        ],
    ),
    # A stray `)` does not make the depth negative (psql's rule too).
    ("stray-closing-parenthesis", "SELECT 1); SELECT (2)", ["SELECT 1)", "SELECT (2)"]),
    (
        "stray-closer-then-balanced-parentheses",
        "SELECT (1)) + ((2)); SELECT (3; 4)",
        ["SELECT (1)) + ((2))", "SELECT (3; 4)"],
    ),
    # Issue 15: `END` as a bare column label (PostgreSQL 14+) ends no body;
    # only an END right after a body statement's `;` (or after ATOMIC) does.
    (
        "bug-15-end-as-bare-column-label-in-begin-atomic",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 end; END; SELECT 2",
        [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 end; END",
            "SELECT 2",
        ],
    ),
    (
        "bare-label-end-after-a-case",
        "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC "
        "SELECT CASE WHEN true THEN 1 END END; SELECT 2 end; END; SELECT 3",
        [
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC "
            "SELECT CASE WHEN true THEN 1 END END; SELECT 2 end; END",
            "SELECT 3",
        ],
    ),
    (
        "empty-begin-atomic",
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC END; SELECT 2",
        ["CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC END", "SELECT 2"],
    ),
]


@pytest.mark.parametrize(
    ("cell", "expected"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES]
)
def test_split(cell: str, expected: list[str]) -> None:
    statements = split_statements(cell)
    assert [s.text for s in statements] == expected
    for s in statements:
        assert cell[s.start : s.end] == s.text
        assert s.unterminated is None


def test_split_positions_and_lines() -> None:
    cell = "\n  SELECT 1;\n\n-- about two\nSELECT\n  2; SELECT 3 -- three\n;\n\nSELECT 'a\nb';"
    statements = split_statements(cell)
    assert statements == [
        Statement("SELECT 1", 3, 2),
        Statement("-- about two\nSELECT\n  2", 14, 4),
        Statement("SELECT 3 -- three", 39, 6),
        Statement("SELECT 'a\nb'", 60, 9),
    ]
    assert all(cell[s.start : s.end] == s.text for s in statements)


def test_statement_is_frozen() -> None:
    (s,) = split_statements("SELECT 1")
    with pytest.raises(AttributeError):
        s.text = "DROP TABLE t"  # type: ignore[misc]


UNTERMINATED_CASES = [
    ("string", "SELECT 1; SELECT 'abc; SELECT 2", "SELECT 'abc; SELECT 2", "string"),
    ("e-string-trailing-backslash", "SELECT 1; SELECT E'abc\\", "SELECT E'abc\\", "string"),
    (
        "quoted-identifier",
        'SELECT 1; SELECT "abc; SELECT 2',
        'SELECT "abc; SELECT 2',
        "quoted identifier",
    ),
    (
        "dollar-quote",
        "SELECT 1; SELECT $f$ abc; $$; SELECT 2",
        "SELECT $f$ abc; $$; SELECT 2",
        "dollar quote",
    ),
    (
        "block-comment",
        "SELECT 1; SELECT 2 /* abc; */ /* x",
        "SELECT 2 /* abc; */ /* x",
        "block comment",
    ),
    # Only a comment, but unclosed: kept, because it may have swallowed SQL.
    (
        "comment-only",
        "SELECT 1; /* SELECT 2;\nSELECT 3;",
        "/* SELECT 2;\nSELECT 3;",
        "block comment",
    ),
    (
        "nested-comment",
        "SELECT 1; /* a /* b */ SELECT 2;",
        "/* a /* b */ SELECT 2;",
        "block comment",
    ),
    (
        "parenthesis",
        "SELECT 1; SELECT (2; SELECT 3",
        "SELECT (2; SELECT 3",
        "parenthesis",
    ),
    (
        "begin-atomic-without-end",
        "SELECT 1; CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2;",
        "BEGIN ATOMIC block",
    ),
]


@pytest.mark.parametrize(
    ("cell", "last", "what"),
    [c[1:] for c in UNTERMINATED_CASES],
    ids=[c[0] for c in UNTERMINATED_CASES],
)
def test_split_unterminated_goes_to_the_server_as_last_statement(
    cell: str, last: str, what: str
) -> None:
    statements = split_statements(cell)
    assert [s.text for s in statements] == ["SELECT 1", last]
    assert statements[0].unterminated is None
    assert statements[-1].unterminated == what


# --------------------------------------------------------------------------
# Parameters: table of tricky cases
# --------------------------------------------------------------------------

NS = {"x": 41, "y": "why", "n": 7, "ids": [1, 2], "lo": 1, "hi": 2, "k": "key", "é": 1}

BIND_CASES = [
    # (id, statement, expected SQL, expected params); params None = no parameters.
    ("simple", "SELECT :x", "SELECT %(x)s", {"x": 41}),
    ("cast-after-param", "SELECT :x::int + 1", "SELECT %(x)s::int + 1", {"x": 41}),
    ("casts-are-not-params", "SELECT x::text, n::int", "SELECT x::text, n::int", None),
    ("colon-in-string", "SELECT 'a:b', ':x', :y", "SELECT 'a:b', ':x', %(y)s", {"y": "why"}),
    (
        "colon-in-every-opaque-region",
        "SELECT E'\\':x', \"a:x\", U&':x', $$:x$$, $f$:x$f$ -- :x\n/* :x /* :x */ */ :y",
        "SELECT E'\\':x', \"a:x\", U&':x', $$:x$$, $f$:x$f$ -- :x\n/* :x /* :x */ */ %(y)s",
        {"y": "why"},
    ),
    ("assignment", "SELECT f(a := :x)", "SELECT f(a := %(x)s)", {"x": 41}),
    (
        "plpgsql-assignment-in-dollar-body",
        "DO $$ BEGIN x := :y; END $$",
        "DO $$ BEGIN x := :y; END $$",
        None,
    ),
    (
        "json-operators",
        "SELECT j->:k, j->>:k, j#>>'{a}', j ?| :ids, j ? 'a', j @> '{}'",
        "SELECT j->%(k)s, j->>%(k)s, j#>>'{a}', j ?| %(ids)s, j ? 'a', j @> '{}'",
        {"k": "key", "ids": [1, 2]},
    ),
    ("positional-untouched", "SELECT $1, :x", "SELECT $1, %(x)s", {"x": 41}),
    ("digit-is-not-a-name", "SELECT :1, a[:2]", "SELECT :1, a[:2]", None),
    (
        "slices-are-not-params",
        "SELECT arr[1:2], arr[lo:hi], arr[:n], arr[n:], (arr)[lo:hi][1], m[1][lo : hi]",
        "SELECT arr[1:2], arr[lo:hi], arr[:n], arr[n:], (arr)[lo:hi][1], m[1][lo : hi]",
        None,
    ),
    (
        "param-in-parentheses-inside-subscript",
        "SELECT arr[(:lo):(:hi)], arr[(:n)]",
        "SELECT arr[(%(lo)s):(%(hi)s)], arr[(%(n)s)]",
        {"lo": 1, "hi": 2, "n": 7},
    ),
    (
        "array-constructor",
        "SELECT ARRAY[:x, :n], array [[:x], [:n]], Array/* c */[:x]",
        "SELECT ARRAY[%(x)s, %(n)s], array [[%(x)s], [%(n)s]], Array/* c */[%(x)s]",
        {"x": 41, "n": 7},
    ),
    (
        "subscript-inside-constructor",
        "SELECT ARRAY[m[lo:hi], :ids], myarray[:n]",
        "SELECT ARRAY[m[lo:hi], %(ids)s], myarray[:n]",
        {"ids": [1, 2]},
    ),
    (
        "list-with-any",
        "SELECT 1 WHERE 1 = ANY(:ids)",
        "SELECT 1 WHERE 1 = ANY(%(ids)s)",
        {"ids": [1, 2]},
    ),
    (
        "percent-without-params-unchanged",
        "SELECT 5 % 2, 'a%' LIKE 'a%', '%(x)s', '%s' -- 100%",
        "SELECT 5 % 2, 'a%' LIKE 'a%', '%(x)s', '%s' -- 100%",
        None,
    ),
    (
        "percent-doubled-with-params",
        "SELECT 5 % 2, 'a%' LIKE :y, '%(x)s' /* 100% */, $$%$$ -- 1%\n",
        "SELECT 5 %% 2, 'a%%' LIKE %(y)s, '%%(x)s' /* 100%% */, $$%%$$ -- 1%%\n",
        {"y": "why"},
    ),
    ("repeated-name", "SELECT :x, :x + 1", "SELECT %(x)s, %(x)s + 1", {"x": 41}),
    (
        "several-in-order-of-appearance",
        "SELECT :y, :x, :y",
        "SELECT %(y)s, %(x)s, %(y)s",
        {"y": "why", "x": 41},
    ),
    (
        "no-space-around",
        "WHERE a=:x AND b<>:y",
        "WHERE a=%(x)s AND b<>%(y)s",
        {"x": 41, "y": "why"},
    ),
    ("non-ascii-name", "SELECT :é", "SELECT %(é)s", {"é": 1}),
    ("param-then-subscript", "SELECT :ids[1]", "SELECT %(ids)s[1]", {"ids": [1, 2]}),
    # Issue 15: after a dot, `array` is a column named array, not ARRAY[.
    (
        "bug-15-column-named-array-is-subscripted",
        'SELECT t.array[1:n], (t).array[lo:hi], t . array[:n], t."array"[1:n] FROM arr_t t',
        'SELECT t.array[1:n], (t).array[lo:hi], t . array[:n], t."array"[1:n] FROM arr_t t',
        None,
    ),
    (
        "array-constructor-after-an-operator-still-takes-params",
        "SELECT 1.5*ARRAY[:x], t.a||array[:n]",
        "SELECT 1.5*ARRAY[%(x)s], t.a||array[%(n)s]",
        {"x": 41, "n": 7},
    ),
]


@pytest.mark.parametrize(
    ("sql", "expected_sql", "expected_params"),
    [c[1:] for c in BIND_CASES],
    ids=[c[0] for c in BIND_CASES],
)
def test_bind(sql: str, expected_sql: str, expected_params: dict | None) -> None:
    bound, params = bind_parameters(sql, NS)
    assert bound == expected_sql
    assert params == expected_params
    if params is not None:
        assert list(params) == list(expected_params)  # order of first appearance
    assert find_parameters(sql) == list(expected_params or {})


def test_bind_without_params_returns_the_same_object() -> None:
    sql = "SELECT 5 % 2"
    assert bind_parameters(sql, {}) == (sql, None)
    assert bind_parameters(sql, {})[0] is sql


def test_unknown_parameters_are_all_named_at_once() -> None:
    with pytest.raises(UnknownParameter) as info:
        bind_parameters("SELECT :a, :x, :b, :a, 'c:c'", {"x": 1})
    err = info.value
    assert isinstance(err, KeyError)
    assert err.names == ["a", "b"]
    message = str(err)
    assert message.startswith("SQL parameters :a, :b are not defined.")
    assert "Define a, b in the notebook" in message
    assert "::" in message  # the cast hint
    assert pickle.loads(pickle.dumps(err)).names == ["a", "b"]


def test_unknown_parameter_single_name_message() -> None:
    with pytest.raises(
        UnknownParameter, match=r"^SQL parameter :total is not defined\. Define total"
    ):
        bind_parameters("SELECT :total", {})


def test_find_parameters_on_a_whole_cell() -> None:
    cell = "SELECT :b; -- :c\nSELECT ':d', :a, :b; SELECT arr[lo:hi], ARRAY[:e]"
    assert find_parameters(cell) == ["b", "a", "e"]


def test_values_are_not_copied_or_converted() -> None:
    value = object()
    _, params = bind_parameters("SELECT :v", {"v": value})
    assert params is not None and params["v"] is value


# --------------------------------------------------------------------------
# Against the real server
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conn(pg_url: str):
    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


def run_cell(conn: psycopg.Connection, cell: str, **namespace) -> list[list[tuple]]:
    """Run a cell the way the magic will: split, bind, one execute per statement."""
    results = []
    for statement in split_statements(cell):
        sql, params = bind_parameters(statement.text, namespace)
        cur = conn.execute(sql, params)
        if cur.description is not None:
            results.append(cur.fetchall())
    return results


def run_whole_cell(conn: psycopg.Connection, cell: str) -> list[list[tuple]]:
    """Let the server split: with no parameters psycopg sends the cell as one simple query."""
    cur = conn.execute(cell)
    results = []
    while True:
        if cur.description is not None:
            results.append(cur.fetchall())
        if not cur.nextset():
            return results


def test_server_param_with_cast(conn: psycopg.Connection) -> None:
    assert run_cell(conn, "SELECT :x::int + 1", x=41) == [[(42,)]]


def test_server_literal_colon_kept(conn: psycopg.Connection) -> None:
    assert run_cell(conn, "SELECT 'a:b', :y", y="z") == [[("a:b", "z")]]


def test_server_percent_with_and_without_params(conn: psycopg.Connection) -> None:
    cell = "SELECT 5 % 2, 'abc' LIKE 'a%' -- 100%"
    assert run_cell(conn, cell) == [[(1, True)]]
    assert run_cell(conn, cell.replace("2,", "2, :n,"), n=7) == [[(1, 7, True)]]


def test_server_injection_attempt_is_just_a_value(conn: psycopg.Connection) -> None:
    evil = "'; DROP TABLE victim; --"
    cell = """
        CREATE TEMP TABLE victim (v text);
        INSERT INTO victim VALUES (:evil);
        SELECT v, :evil FROM victim
    """
    assert run_cell(conn, cell, evil=evil) == [[(evil, evil)]]
    assert run_cell(conn, "SELECT count(*) FROM victim; DROP TABLE victim") == [[(1,)]]


def test_server_list_with_any(conn: psycopg.Connection) -> None:
    cell = "SELECT count(*) FROM generate_series(1, 10) AS g WHERE g = ANY(:ids)"
    assert run_cell(conn, cell, ids=[2, 3, 5]) == [[(3,)]]


def test_server_date_parameter(conn: psycopg.Connection) -> None:
    day = dt.date(2024, 2, 28)
    assert run_cell(conn, "SELECT :d + 1, :d::text", d=day) == [
        [(dt.date(2024, 2, 29), "2024-02-28")]
    ]


def test_server_json_needs_jsonb_wrapper(conn: psycopg.Connection) -> None:
    doc = {"a": "x;y", "b": [1]}
    cell = "SELECT :doc->>'a', :doc->'b'->>0"
    assert run_cell(conn, cell, doc=Jsonb(doc)) == [[("x;y", "1")]]
    # The caveat: psycopg does not adapt a plain dict; the user wraps it.
    with pytest.raises(psycopg.ProgrammingError, match="cannot adapt type 'dict'"):
        run_cell(conn, cell, doc=doc)


def test_server_slices_constructors_and_params(conn: psycopg.Connection) -> None:
    cell = (
        "SELECT (ARRAY[10, 20, 30, 40])[2:3], (ARRAY[10, 20, 30, 40])[lo:hi], "
        "(ARRAY[10, 20, 30, 40])[(:i)], ARRAY[:a, :b], :k::int "
        "FROM (VALUES (1, 2)) AS v(lo, hi)"
    )
    assert run_cell(conn, cell, i=4, a=1, b=2, k=5, lo=99, hi=99) == [
        [([20, 30], [10, 20], 40, [1, 2], 5)]
    ]


def test_server_repeated_and_non_ascii_names(conn: psycopg.Connection) -> None:
    assert run_cell(conn, "SELECT :é, :é + 1, :x", **{"é": 1, "x": "s"}) == [[(1, 2, "s")]]


def test_server_multi_statement_cell_with_params(conn: psycopg.Connection) -> None:
    cell = """
        CREATE TEMP TABLE notes (id int, body text);  -- scratch table
        INSERT INTO notes VALUES (1, :body), (2, 'it''s; 50%');
        SELECT id, body FROM notes WHERE body LIKE '%;%' ORDER BY id;
        DROP TABLE notes;
    """
    assert run_cell(conn, cell, body="a;b") == [[(1, "a;b"), (2, "it's; 50%")]]


def test_server_begin_atomic_function(conn: psycopg.Connection) -> None:
    cell = """
        CREATE OR REPLACE FUNCTION pg_temp.sign_word(x int) RETURNS text LANGUAGE sql
        BEGIN ATOMIC
            SELECT 'ignored; value';
            SELECT CASE WHEN x > 0 THEN 'positive;' WHEN x < 0 THEN 'negative' ELSE 'zero' END;
        END;
        SELECT pg_temp.sign_word(:x), pg_temp.sign_word(0);
    """
    assert len(split_statements(cell)) == 2
    assert run_cell(conn, cell, x=3) == [[("positive;", "zero")]]


ORACLE_CELLS = [
    pytest.param(
        "SELECT 'a;b' AS s; SELECT E'it\\'s;'; SELECT \"x;y\" FROM (SELECT 1 AS \"x;y\") AS t;"
        "SELECT $$a;$$ || $t$b;$$c$t$; /* x; /* y; */ z; */ SELECT 1 -- ;\n; SELECT E'a'\n'b\\';'",
        id="quotes-and-comments",
    ),
    pytest.param(
        "SELECT U&'d\\0061t;'; SELECT 5 % 2, 'a%' LIKE 'a%'; SELECT (ARRAY[1,2,3])[2:3]; "
        'SELECT \'{"a": {"b": "c;"}}\'::jsonb #>> \'{a,b}\'',
        id="operators-slices-json",
    ),
    pytest.param(
        "CREATE OR REPLACE FUNCTION pg_temp.two() RETURNS int LANGUAGE sql BEGIN ATOMIC "
        "SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT pg_temp.two();"
        "CREATE OR REPLACE FUNCTION pg_temp.three() RETURNS int LANGUAGE sql RETURN 3; "
        "SELECT pg_temp.three()",
        id="routines",
    ),
    pytest.param(
        "CREATE TEMP TABLE rt (x int); CREATE TEMP TABLE rt_log (x int);"
        "CREATE RULE rt_two AS ON INSERT TO rt DO INSTEAD "
        "(INSERT INTO rt_log VALUES (new.x); INSERT INTO rt_log VALUES (new.x + 1));"
        "INSERT INTO rt VALUES (1); SELECT x FROM rt_log ORDER BY x; DROP TABLE rt, rt_log",
        id="bug-15-rule-with-two-actions",
    ),
    pytest.param(
        "CREATE OR REPLACE FUNCTION pg_temp.labelled() RETURNS int LANGUAGE sql BEGIN ATOMIC "
        "SELECT 7 end; END; SELECT pg_temp.labelled()",
        id="bug-15-end-as-bare-label",
    ),
]


@pytest.mark.parametrize("cell", ORACLE_CELLS)
def test_server_splits_like_us(conn: psycopg.Connection, cell: str) -> None:
    assert run_cell(conn, cell) == run_whole_cell(conn, cell)


def test_bug_15_server_slices_a_column_named_array(conn: psycopg.Connection) -> None:
    cell = (
        "SELECT t.array[1:n], (t).array[2:n] "
        "FROM (SELECT ARRAY[1, 2, 3] AS array, 2 AS n) AS t WHERE :one = 1"
    )
    assert run_cell(conn, cell, one=1) == [[([1, 2], [2])]]


def test_server_lexes_dollar_quote_after_number_like_us(conn: psycopg.Connection) -> None:
    cell = "SELECT 1$$;$$"
    assert texts(cell) == [cell]
    # Sent whole, the server also read `$$;$$` as one token (a string).
    with pytest.raises(psycopg.errors.SyntaxError, match=r'at or near "\$\$;\$\$"'):
        conn.execute(cell)


def test_server_reports_unterminated_string_where_it_starts(conn: psycopg.Connection) -> None:
    cell = "SELECT 1;\nSELECT 'abc"
    _, second = split_statements(cell)
    assert second.unterminated == "string"
    with pytest.raises(psycopg.errors.SyntaxError, match="unterminated quoted string") as info:
        conn.execute(second.text)
    # The server's 1-based position maps back to the cell through `start`.
    offset = second.start + int(info.value.diag.statement_position) - 1
    assert cell[offset] == "'"


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------

_WS = " \t\n\r\f\v"

# Characters and pieces that matter to the lexer, mixed with any character at all.
_SQLISH = st.lists(
    st.one_of(
        st.sampled_from(list("'\"$;:-/*[](),.eEuU&_a1 \n\t\r\\%\x00\u00a0")),
        st.sampled_from(
            [
                *("$$", "$a$", "$1", "--", "/*", "*/", "::", ":x", ":=", "ARRAY[", "E'", "U&'"),
                *("'';", "CREATE FUNCTION f() ", "BEGIN ATOMIC ", " END", " CASE ", "; -- c\n"),
            ]
        ),
        st.characters(),
    ),
    max_size=80,
).map("".join)
ANY_TEXT = st.one_of(st.text(), _SQLISH)

_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s")


def _unbind(sql: str) -> str:
    """Undo bind_parameters: %% -> %, %(name)s -> :name."""
    return _PLACEHOLDER.sub(lambda m: ":" + m.group(1) if m.group(1) else "%", sql)


@FUZZ
@given(ANY_TEXT)
def test_fuzz_split_keeps_text_in_place(cell: str) -> None:
    statements = split_statements(cell)
    bounds = [0]
    for s in statements:
        assert s.text and s.text == s.text.strip(_WS)
        assert cell[s.start : s.end] == s.text
        assert s.line == cell.count("\n", 0, s.start) + 1
        assert s.start >= bounds[-1]
        bounds += [s.start, s.end]
    bounds.append(len(cell))
    # Split, then rejoin: every character outside the statements is a blank,
    # a `;` or part of a comment, so the gaps hold no statement of their own ...
    for gap_start, gap_end in zip(bounds[::2], bounds[1::2], strict=True):
        assert split_statements(cell[gap_start:gap_end]) == []
    # ... and the statements, rejoined, split back into themselves.
    rejoined = "\n;\n".join(s.text for s in statements)
    assert [s.text for s in split_statements(rejoined)] == [s.text for s in statements]


@FUZZ
@given(st.text(alphabet=st.sampled_from(list(" \n;'\"-/*$a()")), max_size=20))
def test_fuzz_the_one_statement_shortcut_agrees_on_parentheses(cell: str) -> None:
    assert split_statements(cell) == _split_lexed(cell)


def test_the_shortcut_marks_an_unclosed_parenthesis() -> None:
    assert split_statements("SELECT (1") == [Statement("SELECT (1", 0, 1, "parenthesis")]
    assert split_statements("SELECT (1)) + (2)")[0].unterminated is None


@FUZZ
@given(ANY_TEXT)
def test_fuzz_bind_changes_nothing_but_markers_and_percent(text: str) -> None:
    names = find_parameters(text)
    namespace = {name: i for i, name in enumerate(names)}
    sql, params = bind_parameters(text, namespace)
    if params is None:
        assert sql is text and names == []
    else:
        assert _unbind(sql) == text
        assert list(params) == names
        placeholders = [m.group(1) for m in _PLACEHOLDER.finditer(sql) if m.group(1)]
        assert list(dict.fromkeys(placeholders)) == names
    if names:
        with pytest.raises(UnknownParameter) as info:
            bind_parameters(text, {})
        assert info.value.names == names


# A grammar of fragments, each with the text bind_parameters must turn it into.
_NAMES = st.sampled_from(["x", "y", "_z9", "é"])
_UNITS = [":x", ":y", ";", "%", "%(x)s", "::", ":", "a", " ", "\n", "$", "$$", "--", "[", "]"]
_UNITS += ["ARRAY[", "é", "\x00", "END", "CASE", "BEGIN ATOMIC"]


def _content(extra: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(_UNITS + extra), max_size=8).map("".join)


def _same(text: str) -> tuple[str, str, list[str]]:
    return text, text.replace("%", "%%"), []


_CODE_NO_PARENS = [
    "SELECT", "a", "t.col", "42", "1.5", "+", "%", "5 % 2", "=", ",", "x::text", ":=", "->", "->>",
    "#>>", "?|", "$1", "arr[1:2]", "arr[lo:hi]", "arr[:n]", "arr[x:]", "(arr)[lo:hi][1]",
    "ARRAY[1, 2]", "e", "U&", "a$b", "b$$c", "d$$e$$f", "f(x)",
]  # fmt: skip
_CODE = st.sampled_from([*_CODE_NO_PARENS, "(", ")"]).map(_same)


@st.composite
def _param(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    a, b = draw(_NAMES), draw(_NAMES)
    shape = draw(st.sampled_from(["bare", "cast", "array", "subscript", "any"]))
    if shape == "bare":
        return f":{a}", f"%({a})s", [a]
    if shape == "cast":
        return f":{a}::int", f"%({a})s::int", [a]
    if shape == "array":
        return f"ARRAY[:{a}, [:{b}]]", f"ARRAY[%({a})s, [%({b})s]]", [a, b]
    if shape == "subscript":
        return f"arr[(:{a}):(:{b})]", f"arr[(%({a})s):(%({b})s)]", [a, b]
    return f"= ANY(:{a})", f"= ANY(%({a})s)", [a]


def _dollar_quoted(tag_and_body: tuple[str, str]) -> str:
    tag, body = tag_and_body
    return f"${tag}${body}${tag}$"


def _closes_once(tag_and_body: tuple[str, str]) -> bool:
    tag, body = tag_and_body
    delimiter = f"${tag}$"
    return (body + delimiter).find(delimiter) == len(body)


# Block comment bodies avoid `/` and `*` except as " / ", " * " and nested comments.
_BLOCK_COMMENT = st.deferred(
    lambda: st.lists(st.one_of(_content(["'", '"', " * ", " / "]), _BLOCK_COMMENT), max_size=3).map(
        lambda parts: "/*" + "".join(parts) + "*/"
    )
)

# Standard strings hold no backslash here: after a `--` line comment, a
# string continues an escape string before it (tested in the tables).
_OPAQUE = st.one_of(
    _content(["'", '"']).map(lambda c: "'" + c.replace("'", "''") + "'"),
    _content(["'"]).map(lambda c: "U&'" + c.replace("'", "''") + "'"),
    st.lists(st.sampled_from([*_UNITS, "\\'", "\\\\", "''", "\\n", '"']), max_size=8).map(
        lambda units: "E'" + "".join(units) + "'"
    ),
    _content(['"', "'"]).map(lambda c: '"' + c.replace('"', '""') + '"'),
    _content(['"']).map(lambda c: 'U&"' + c.replace('"', '""') + '"'),
    st.tuples(st.sampled_from(["", "fn", "a_1", "é"]), _content(["'", '"', "$fn", "$a"]))
    .filter(_closes_once)
    .map(_dollar_quoted),
    _content(["'", '"', "/*", "*/"]).map(lambda c: "--" + c.replace("\n", " ") + "\n"),
    _BLOCK_COMMENT,
).map(_same)


@FUZZ_GRAMMAR
@given(st.lists(st.one_of(_CODE, _param(), _OPAQUE), max_size=10))
def test_fuzz_bind_touches_only_markers_in_code(
    fragments: list[tuple[str, str, list[str]]],
) -> None:
    text = " ".join(f[0] for f in fragments)
    names = list(dict.fromkeys(name for f in fragments for name in f[2]))
    namespace = {name: f"value of {name}" for name in ["x", "y", "_z9", "é", "lo", "hi", "n"]}
    sql, params = bind_parameters(text, namespace)
    if names:
        assert sql == " ".join(f[1] for f in fragments)
        assert params == {name: namespace[name] for name in names}
    else:
        assert (sql, params) == (text, None)
    assert find_parameters(text) == names


def _statement(fragments: list[tuple[str, str, list[str]]]) -> str:
    return " ".join(f[0] for f in fragments)


_SPLIT_CODE = st.sampled_from(_CODE_NO_PARENS).map(_same)
_SPLIT_FRAGMENTS = st.lists(st.one_of(_SPLIT_CODE, _param(), _OPAQUE), max_size=4)
_PLAIN_STATEMENT = st.tuples(_SPLIT_CODE, _SPLIT_FRAGMENTS, _SPLIT_CODE).map(
    lambda t: _statement([t[0], *t[1], t[2]])
)
_ROUTINE = st.lists(_PLAIN_STATEMENT, min_size=1, max_size=2).map(
    lambda body: (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
        + " ".join(s + ";" for s in body)
        + " END"
    )
)
_SEPARATOR = st.sampled_from([";", "; ", ";\n", "; -- c;\n", "; /* x; */\n", " ;\n\n ; ", "\n;"])


@FUZZ_GRAMMAR
@given(st.lists(st.tuples(st.one_of(_PLAIN_STATEMENT, _ROUTINE), _SEPARATOR), max_size=4))
def test_fuzz_split_finds_the_statements_it_was_given(parts: list[tuple[str, str]]) -> None:
    cell = ""
    expected = []
    for statement, separator in parts:
        expected.append(Statement(statement, len(cell), cell.count("\n") + 1))
        cell += statement + separator
    assert split_statements(cell) == expected


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("SELECT 1", "select"),
        ("  (( values (1)))", "values"),
        ("-- a comment\nWITH x AS (SELECT 1) SELECT * FROM x", "with"),
        ("/* outer /* nested */ still comment */ table t", "table"),
        ("/* unclosed", None),
        ("'select'", None),
        ("\\dt", None),
        ("", None),
        ("--only a comment", None),
        ("Insert INTO t VALUES (1)", "insert"),
    ],
)
def test_leading_keyword_skips_blanks_comments_and_parentheses(
    text: str, keyword: str | None
) -> None:
    # The fast path's "is this a query?" uses it: one set of comment rules.
    assert leading_keyword(text) == keyword


def test_identifier_classes_are_the_servers_sets() -> None:
    """The classes are spelled by the ASCII they exclude (fast to compile): they must
    still be scan.l's sets: ASCII letters and _, every non-ASCII character; then digits
    and $ after the first character (a dollar-quote tag takes digits, not $)."""
    import re
    import string

    from lunepool_magic import sqltext

    start = set(string.ascii_letters + "_")
    expected = {
        sqltext._IDENT_START: start,
        sqltext._IDENT_CONT: start | set(string.digits + "$"),
        sqltext._DOLLAR_TAG_CONT: start | set(string.digits),
        sqltext._IDENT_START_OR_DOLLAR: start | {"$"},
    }
    beyond = ["\x80", "\xa0", "\xff", "\u2028", "\ud800", "\uffff", "\U00010000", "\U0010ffff"]
    for pattern, ascii_members in expected.items():
        compiled = re.compile(pattern)
        for char in [chr(c) for c in range(128)] + beyond:
            assert bool(compiled.fullmatch(char)) == (char in ascii_members or char >= "\x80"), (
                pattern,
                char,
            )
