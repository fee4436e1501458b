"""Error rendering: mapping the server's position back to the user's text, carets (no server)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lunepool_magic.notebook.messages import caret_lines, original_position, statement_place
from lunepool_magic.sqltext import bind_parameters

psycopg_queries = pytest.importorskip("psycopg._queries")
from psycopg.adapt import Transformer  # noqa: E402


def sent_text(bound_sql: str, params: dict[str, object] | None) -> str:
    """The text psycopg sends for ``bound_sql`` (its own converter, not a copy of it)."""
    if params is None:
        return bound_sql
    query = psycopg_queries.PostgresQuery(Transformer())
    query.convert(bound_sql, params)
    return query.query.decode()


def test_position_without_parameters_is_the_statement_index() -> None:
    assert original_position(8, "SELECT x", has_params=False) == 7


def test_position_after_parameters_maps_back() -> None:
    statement = "SELECT :a, :long_name, :a, '100%', nope"
    bound, params = bind_parameters(statement, {"a": 1, "long_name": 2})
    sent = sent_text(bound, params)
    assert sent == "SELECT $1, $2, $1, '100%', nope"
    position = sent.index("nope") + 1
    assert original_position(position, bound, has_params=True) == statement.index("nope")


def test_position_inside_a_parameter_points_at_its_colon() -> None:
    statement = "SELECT 1 + :value"
    bound, _ = bind_parameters(statement, {"value": "x"})
    # The server points at $1 (position of "$"), or inside it.
    assert original_position(12, bound, has_params=True) == statement.index(":value")
    assert original_position(13, bound, has_params=True) == statement.index(":value")


names = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=6)
plain_chunks = st.text(alphabet=string.ascii_letters + " %,+()\n'é中", max_size=8).filter(
    lambda s: "'" not in s  # keep every chunk code, so :name stays a parameter
)


@given(st.lists(st.tuples(plain_chunks, names), min_size=1, max_size=5), plain_chunks)
def test_every_code_character_maps_to_itself(pieces: list[tuple[str, str]], tail: str) -> None:
    """For each character the server could point at outside a parameter, the mapped
    index in the user's statement holds the same character."""
    statement = "".join(f"{chunk} :{name} " for chunk, name in pieces) + tail
    namespace = {name: 1 for _, name in pieces}
    bound, params = bind_parameters(statement, namespace)
    sent = sent_text(bound, params)
    in_parameter = set()
    for i, char in enumerate(sent):
        if char == "$":
            j = i + 1
            while j < len(sent) and sent[j].isdigit():
                j += 1
            in_parameter.update(range(i, j))
    for i, char in enumerate(sent):
        if i in in_parameter:
            assert statement[original_position(i + 1, bound, True)] == ":"
        else:
            assert statement[original_position(i + 1, bound, True)] == char


def test_caret_under_the_position_with_the_cell_line() -> None:
    text = "SELECT a,\n       nope\n  FROM t"
    lines = caret_lines(text, text.index("nope"), first_line=3)
    assert lines == ["LINE 4:        nope", "               ^"]


def test_caret_keeps_tabs_and_counts_wide_characters_double() -> None:
    text = "\tSELECT '中文', nope"
    prefix, caret = caret_lines(text, text.index("nope"), first_line=1)
    assert prefix == "LINE 1: \tSELECT '中文', nope"
    assert caret == "        \t" + " " * len("SELECT '") + "    " + " " * len("', ") + "^"


def test_long_lines_are_cut_around_the_caret() -> None:
    text = "SELECT " + "x, " * 100 + "nope" + ", y" * 100
    prefix, caret = caret_lines(text, text.index("nope"), first_line=1)
    assert len(prefix) < 120
    assert prefix.startswith("LINE 1: ...") and prefix.endswith("...")
    assert prefix[caret.index("^") : caret.index("^") + 4] == "nope"


def test_statement_place() -> None:
    assert statement_place(0, 1, 5) == ""
    assert statement_place(1, 3, 4) == (
        " in statement 2 of 3 (line 4); statement 1 ran, statement 3 did not run"
    )
    assert statement_place(0, 3, 2) == " in statement 1 of 3 (line 2); statements 2-3 did not run"
    assert statement_place(3, 4, 9) == " in statement 4 of 4 (line 9); statements 1-3 ran"
