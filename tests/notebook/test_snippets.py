"""Snippets without a server: what counts as a reference, where the CTEs go, cycles, deleting.

The expanded SQL is run by the server in tests/magic/test_jupysql_cells.py;
here the text itself is checked, for the cases a wrong guess would break.
"""

from __future__ import annotations

import pytest

from lunepool_magic.notebook.snippets import SnippetError, Snippets, mask_sql


@pytest.fixture
def snippets() -> Snippets:
    s = Snippets()
    s.save("a", "SELECT 1 AS x")
    s.save("b", "SELECT x FROM a WHERE x > 0")
    return s


def test_references_skip_strings_comments_qualified_names_and_calls(snippets: Snippets) -> None:
    assert snippets.references("SELECT 'a', \"a\" FROM t -- a\n/* a */") == []
    assert snippets.references("SELECT * FROM public.a, a.x, a(1)") == []
    assert snippets.references("SELECT * FROM b JOIN a USING (x)") == ["b", "a"]


def test_a_cte_of_the_same_name_shadows_the_snippet(snippets: Snippets) -> None:
    text = "WITH a AS (SELECT 2 AS x) SELECT * FROM a"
    assert snippets.expand(text) == text


def test_dependencies_come_first(snippets: Snippets) -> None:
    assert snippets.expand("SELECT * FROM b") == (
        "WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a WHERE x > 0) SELECT * FROM b"
    )


def test_an_own_with_clause_is_joined(snippets: Snippets) -> None:
    assert snippets.expand("WITH RECURSIVE c AS (SELECT 1) SELECT * FROM a, c") == (
        "WITH RECURSIVE a AS (SELECT 1 AS x), c AS (SELECT 1) SELECT * FROM a, c"
    )


def test_ctes_go_before_the_query_of_create_table_as_and_insert(snippets: Snippets) -> None:
    assert snippets.expand("CREATE TABLE t AS SELECT * FROM a") == (
        "CREATE TABLE t AS WITH a AS (SELECT 1 AS x) SELECT * FROM a"
    )
    assert snippets.expand("INSERT INTO t (x) SELECT x FROM a") == (
        "WITH a AS (SELECT 1 AS x) INSERT INTO t (x) SELECT x FROM a"
    )
    assert snippets.expand("DELETE FROM t WHERE x IN (SELECT x FROM a)") == (
        "WITH a AS (SELECT 1 AS x) DELETE FROM t WHERE x IN (SELECT x FROM a)"
    )


def test_a_statement_without_a_query_goes_as_typed(snippets: Snippets) -> None:
    assert snippets.expand("SET search_path = a") == "SET search_path = a"


def test_a_trailing_comment_in_a_snippet_does_not_eat_the_parenthesis() -> None:
    s = Snippets()
    s.save("c", "SELECT 1 -- one")
    assert s.expand("SELECT * FROM c") == "WITH c AS (SELECT 1 -- one\n) SELECT * FROM c"


def test_each_statement_of_a_cell_is_expanded_in_place(snippets: Snippets) -> None:
    cell = "SELECT 1;\nSELECT * FROM a;"
    assert snippets.expand_cell(cell) == "SELECT 1;\nWITH a AS (SELECT 1 AS x) SELECT * FROM a;"


def test_save_refuses_several_statements_and_itself() -> None:
    s = Snippets()
    with pytest.raises(SnippetError, match="keeps one query; this cell has several statements"):
        s.save("x", "SELECT 1; SELECT 2")
    with pytest.raises(SnippetError, match="the query names x itself"):
        s.save("x", "SELECT * FROM x")
    assert not s


def test_a_cycle_is_refused_when_saved(snippets: Snippets) -> None:
    with pytest.raises(SnippetError, match="snippets name each other in a cycle: a -> b -> a"):
        snippets.save("a", "SELECT * FROM b")
    assert snippets.queries["a"] == "SELECT 1 AS x"  # the refused save changed nothing


def test_delete_respects_dependents(snippets: Snippets) -> None:
    with pytest.raises(SnippetError, match="snippet 'a' is used by b"):
        snippets.delete("a")
    assert snippets.delete("a", force=True) == "Deleted snippet a."
    assert list(snippets.queries) == ["b"]


def test_with_an_unknown_name_lists_the_known_ones(snippets: Snippets) -> None:
    with pytest.raises(
        SnippetError, match=r"--with zz: no snippet of that name \(snippets: a, b\)"
    ):
        snippets.expand("SELECT 1", ["zz"])


def test_mask_keeps_length_and_lines() -> None:
    text = "SELECT 'a;b', $q$ x $q$ -- c\n/* d */ 1"
    masked = mask_sql(text)
    assert len(masked) == len(text)
    assert masked.count("\n") == 1
    assert ";" not in masked
