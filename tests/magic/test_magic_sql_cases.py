"""Tricky SQL cells, executed for real: strings, dollar quotes, comments, casts, slices.

The table is what the SQL-magic trackers complain about (jupysql#901:
``'hello'[:2]`` read as a parameter; ``::`` casts; ``;`` inside bodies;
``{}`` templating). Every cell runs through ``%sql``/``%%sql`` on a real
server and its result is checked. The property tests then fuzz the same
ground: random text inside strings and comments reaches the server
untouched, and the magic's one-statement shortcut splits exactly like the
splitter.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.shell import Shell, ip_fixture  # noqa: F401 (provides the `ip` fixture)

from lunepool_magic.sqltext import _split_lexed, split_statements

# (id, cell, namespace, expected: the one value of the last result set, or
# ("column", name) to check a column name, or ("status", text))
CASES = [
    ("semicolon in string", "%sql SELECT 'a;b' AS v", {}, "a;b"),
    ("colon name in string", "%sql SELECT 'it''s :x' AS v", {}, "it's :x"),
    ("escape string", r"%sql SELECT E'\'; :x \\' AS v", {}, "'; :x \\"),
    ("unicode escape string", r"%sql SELECT U&'d\0061t\+000061' AS v", {}, "data"),
    ("bit string", "%sql SELECT B'101'::int AS v", {}, 5),
    ("cast", "%sql SELECT '41'::int + 1 AS v", {}, 42),
    ("cast after parameter", "%sql SELECT :v::text || '!' AS v", {"v": 5}, "5!"),
    ("colons in strings", "%sql SELECT 'a:b' || 'x::y' AS v", {}, "a:bx::y"),
    ("slice of literals", "%sql SELECT (ARRAY[1,2,3,4])[2:3] AS v", {}, [2, 3]),
    (
        "slice by columns",
        "%sql SELECT (ARRAY[1,2,3,4])[lo:hi] AS v FROM (SELECT 2 AS lo, 3 AS hi) s",
        {"lo": 99, "hi": 99},
        [2, 3],
    ),
    (
        "open slice",
        "%sql SELECT (ARRAY[1,2,3])[:hi] AS v FROM (SELECT 2 AS hi) s",
        {"hi": 99},
        [1, 2],
    ),
    ("parameter as subscript", "%sql SELECT (ARRAY[10,20,30])[(:i)] AS v", {"i": 2}, 20),
    ("parameters in ARRAY[]", "%sql SELECT ARRAY[:a, :b] AS v", {"a": 1, "b": 2}, [1, 2]),
    ("list parameter", "%sql SELECT sum(x) AS v FROM unnest(:xs::int[]) x", {"xs": [1, 2]}, 3),
    (
        "ANY parameter",
        "%sql SELECT x AS v FROM (VALUES (1), (2)) t(x) WHERE x = ANY(:xs)",
        {"xs": [2]},
        2,
    ),
    ("dollar quote", "%sql SELECT $$a;b:x -- not a comment$$ AS v", {}, "a;b:x -- not a comment"),
    ("tagged dollar quote", "%sql SELECT $t$ $$ ; :x $t$ AS v", {}, " $$ ; :x "),
    ("trailing comment", "%sql SELECT 1 AS v -- a comment; :x", {}, 1),
    ("nested block comment", "%sql SELECT /* a /* b ; :x */ c ; */ 3 AS v", {}, 3),
    (
        "comments around statements",
        "%%sql\n/* ; :x */ SELECT 2 AS v; -- ; :y\n-- only a comment ; :z",
        {},
        2,
    ),
    ("quoted identifier", '%sql SELECT 1 AS "semi;colon:x"', {}, ("column", "semi;colon:x")),
    ("doubled quote identifier", '%sql SELECT 1 AS "a""b"', {}, ("column", 'a"b')),
    ("json operators", """%sql SELECT '{"a": {"b": 1}}'::jsonb -> 'a' ->> 'b' AS v""", {}, "1"),
    ("modulo without parameters", "%sql SELECT 10 % 3 AS v", {}, 1),
    ("modulo with parameters", "%sql SELECT 10 % :d AS v", {"d": 4}, 2),
    ("LIKE with parameters", "%sql SELECT 'hello' LIKE 'he%' AND :p = 1 AS v", {"p": 1}, True),
    # {x} stays as typed; {{y}} is a JupySQL template (issue 18), its value bound as text.
    ("braces", "%sql SELECT '{x}' || '{{y}}' AS v", {"x": 1, "y": "Y"}, "{x}Y"),
    (
        "last result of several",
        "%%sql\nSELECT 'a' AS v;\nSELECT 'b' AS w;;;\n",
        {},
        "b",
    ),
    ("time literal", "%sql SELECT '12:34:56'::time AS v", {}, dt.time(12, 34, 56)),
    (
        "plpgsql with := and ;",
        "%%sql\nDO $$\nDECLARE n int;\nBEGIN\n  n := 1;\nEND\n$$",
        {},
        ("status", "DO"),
    ),
    (
        "function body then call",
        "%%sql\nCREATE FUNCTION pg_temp.lpm_inc(x int) RETURNS int LANGUAGE plpgsql AS $$\n"
        "BEGIN\n  RETURN x + 1;  -- ; :x\nEND;\n$$;\nSELECT pg_temp.lpm_inc(:n) AS v",
        {"n": 41},
        42,
    ),
    (
        "BEGIN ATOMIC body",
        "%%sql\nCREATE FUNCTION pg_temp.lpm_atomic() RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;\nSELECT pg_temp.lpm_atomic() AS v",
        {},
        2,
    ),
    ("psql-style variable is a parameter", "%sql SELECT :n + 1 AS v", {"n": 1}, 2),
]


@pytest.mark.parametrize(
    ("cell", "namespace", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_tricky_cell(ip: Shell, cell: str, namespace: dict, expected: object) -> None:
    ip.ok("%sql SELECT 1")  # connected
    ip.user_ns.update(namespace)
    run = ip.ok(cell)
    if isinstance(expected, tuple) and expected[0] == "status":
        assert run.value is None and run.out.strip() == expected[1]
        return
    frame = run.value
    assert frame.shape[0] == 1, frame
    if isinstance(expected, tuple) and expected[0] == "column":
        assert list(frame.columns) == [expected[1]]
        return
    value = frame.iat[0, 0]
    if isinstance(expected, list):
        value = list(value)
    assert value == expected


# --------------------------------------------------------------- fuzzing

# Characters that mean something to a lexer, plus some that do not.
tricky_text = st.lists(
    st.sampled_from([*"';:$-/*%{}\n\\\"[]()a_Zé中 \t", "$1", "::", "$$", "--", "/*", "*/", ":x"]),
    max_size=20,
).map("".join)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(content=tricky_text)
def test_text_inside_strings_and_comments_reaches_the_server_untouched(
    ip: Shell, content: str
) -> None:
    ip.user_ns.pop("x", None)  # a :x inside must not need a variable
    # {{ and {% in a string or a dollar quote are a JupySQL template (issue 18);
    # in a comment they stay as typed.
    template = "{{" in content or "{%" in content or "{#" in content
    quoted = content.replace("'", "''")
    if not template:
        frame = ip.value(f"%%sql\nSELECT '{quoted}' AS v")
        assert frame.iat[0, 0] == content
    tag = "$lpm$"
    if tag not in content and not content.endswith("$lpm") and not template:
        assert ip.scalar(f"%%sql\nSELECT {tag}{content}{tag} AS v") == content
    line_comment = content.replace("\n", " ")
    assert ip.scalar(f"%%sql\nSELECT 7 AS v -- {line_comment}") == 7
    if "/*" not in content and "*/" not in content and not content.endswith(("/", "*")):
        assert ip.scalar(f"%%sql\nSELECT /* {content} */ 8 AS v") == 8


@given(st.text(alphabet=st.sampled_from(list(" \t\n\r\f\v;'\"-/*$ab:\u00a0")), max_size=20))
def test_the_one_statement_shortcut_splits_like_the_splitter(text: str) -> None:
    assert split_statements(text) == _split_lexed(text)
