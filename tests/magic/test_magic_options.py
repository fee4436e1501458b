"""The %sql line's options: parse_line and its fast path (no IPython, no server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lunepool_magic.notebook.options import MagicLine, OptionError, is_plain_sql, parse_line

PARSED = [
    # line, expected fields (sql is compared exactly: the SQL is never touched)
    ("SELECT 1", {"sql": "SELECT 1"}),
    ("  select * from t where a = :a", {"sql": "  select * from t where a = :a"}),
    ("(SELECT 1) UNION (SELECT 2)", {"sql": "(SELECT 1) UNION (SELECT 2)"}),
    ("/* hint */ SELECT 1", {"sql": "/* hint */ SELECT 1"}),
    ("", {"sql": ""}),
    ("df << SELECT 1", {"out": "df", "sql": "SELECT 1"}),
    ("df<<SELECT 1", {"out": "df", "sql": "SELECT 1"}),
    ("--out df SELECT 1", {"out": "df", "sql": "SELECT 1"}),
    ("-o df SELECT 1", {"out": "df", "sql": "SELECT 1"}),
    ("--out=df SELECT 1", {"out": "df", "sql": "SELECT 1"}),
    ("--alias wh SELECT 1", {"alias": "wh", "sql": "SELECT 1"}),
    ("-a wh", {"alias": "wh", "sql": ""}),
    (
        "postgresql://me@db.example/shop --alias shop",
        {"target": "postgresql://me@db.example/shop", "alias": "shop", "sql": ""},
    ),
    (
        "--alias shop postgres://me:pw@h:5433/shop?sslmode=require SELECT 2",
        {
            "target": "postgres://me:pw@h:5433/shop?sslmode=require",
            "alias": "shop",
            "sql": "SELECT 2",
        },
    ),
    ("postgresql://", {"target": "postgresql://", "sql": ""}),
    (
        "host=localhost port=5432 dbname=app SELECT 1",
        {"target": "host=localhost port=5432 dbname=app", "sql": "SELECT 1"},
    ),
    (
        "host=/tmp password='a b\\'c' dbname=x",
        {"target": "host=/tmp password='a b\\'c' dbname=x", "sql": ""},
    ),
    ('"host=h dbname=d" --alias x', {"target": "host=h dbname=d", "alias": "x", "sql": ""}),
    (
        "postgresql://me@h/db --password",
        {"target": "postgresql://me@h/db", "password_prompt": True},
    ),
    ("postgresql://me@h/db -W", {"target": "postgresql://me@h/db", "password_prompt": True}),
    ("--list", {"list_connections": True, "sql": ""}),
    ("-l", {"list_connections": True, "sql": ""}),
    ("--close", {"close": True, "close_name": None}),
    ("--close wh", {"close": True, "close_name": "wh"}),
    ("-x wh", {"close": True, "close_name": "wh"}),
    ("--alias wh df << SELECT 1 -- trailing comment", {"alias": "wh", "out": "df"}),
    ("SELECT 'a' || :b -- x", {"sql": "SELECT 'a' || :b -- x"}),
    ("SELECT x<<2", {"sql": "SELECT x<<2"}),
]


@pytest.mark.parametrize(("line", "expected"), PARSED, ids=[p[0] or "<empty>" for p in PARSED])
def test_parse_line(line: str, expected: dict[str, object]) -> None:
    parsed = parse_line(line)
    for key, value in expected.items():
        assert getattr(parsed, key) == value, key
    assert line[parsed.sql_offset :] == parsed.sql


BAD = [
    ("--bogus SELECT 1", "unknown option --bogus"),
    ("-- a comment", "unknown option --"),
    ("--alias", "needs a name"),
    ("--alias 9x SELECT 1", "Python-style name"),
    ("--out df --out dg SELECT 1", "given twice"),
    ("df << dg << SELECT 1", "given twice"),
    ("--close wh SELECT 1", "--close takes only"),
    ("postgresql://a/b postgresql://c/d", "two connection strings"),
    ("--list=yes", "takes no value"),
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[0] for b in BAD])
def test_parse_line_errors(line: str, message: str) -> None:
    with pytest.raises(OptionError, match=message.replace("(", r"\(")):
        parse_line(line)


def test_option_errors_never_repeat_the_connection_string() -> None:
    with pytest.raises(OptionError) as info:
        parse_line("postgresql://me:s3cret@h/db --bogus")
    assert "s3cret" not in str(info.value)


KEYWORDS = ["SELECT", "select", "WITH", "INSERT", "update", "DELETE", "CREATE", "BEGIN", "VALUES"]


@given(
    keyword=st.sampled_from(KEYWORDS),
    rest=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
    space=st.sampled_from([" ", "\t", "\n", "  "]),
)
def test_plain_sql_fast_path_agrees_with_the_parser(keyword: str, rest: str, space: str) -> None:
    """A line the fast path takes as plain SQL is one parse_line leaves whole."""
    line = keyword + space + rest
    assert is_plain_sql(line)
    assert parse_line(line) == MagicLine(sql=line)


@given(st.text(max_size=60))
def test_parse_line_never_crashes_and_keeps_the_sql_verbatim(line: str) -> None:
    try:
        parsed = parse_line(line)
    except OptionError:
        return
    assert line[parsed.sql_offset :] == parsed.sql


def test_the_option_table_drives_the_one_line_help_and_every_usage() -> None:
    from lunepool_magic.notebook.options import _OPTIONS_HELP, OPTIONS, options_help

    for option in OPTIONS:
        assert option.synopsis in options_help()
        if option.key != "help":
            assert option.synopsis in _OPTIONS_HELP
        if option.command and option.key not in ("help", "close"):
            line = f"{option.flags[0]} {'df ' if option.takes == 'var' else ''}SELECT 1"
            with pytest.raises(OptionError, match=re.escape(option.usage)):
                parse_line(line)


def test_every_option_is_in_the_readme() -> None:
    # The README is the one hand-written copy of the option list: it must not drift.
    from lunepool_magic.notebook.options import OPTIONS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [o.flags[0] for o in OPTIONS if o.flags[0] not in readme]
    assert not missing, f"README.md does not mention {missing}"


@pytest.mark.parametrize(
    "line",
    ["postgresql+psycopg2://me:PW@db/shop", "postgres+asyncpg://me:PW@db/shop --alias a"],
)
def test_sqlalchemy_driver_urls_are_targets_never_sql(line: str) -> None:
    assert not is_plain_sql(line)
    parsed = parse_line(line)
    assert parsed.target is not None and parsed.target.endswith("@db/shop")
    assert parsed.sql == ""
