"""Templates without a server: what each {{ }} becomes, and the refusals that prevent a wrong query.

tests/magic/test_jupysql_cells.py runs them on the server.
"""

from __future__ import annotations

import pytest

from lunepool_magic.notebook.templates import TemplateError, inline, is_template, render


def test_values_become_parameters() -> None:
    out = render("SELECT * FROM t WHERE n > {{ low }} AND m < {{ high }}", {"low": 1, "high": 9})
    assert out.sql == "SELECT * FROM t WHERE n > :__tpl_0 AND m < :__tpl_1"
    assert out.values == {"__tpl_0": 1, "__tpl_1": 9}


def test_quoted_values_are_bound_as_text() -> None:
    out = render("WHERE a = '{{ n }}' AND b LIKE '%{{ n }}_'", {"n": 5})
    assert out.sql == "WHERE a = :__tpl_0 AND b LIKE ('%' || CAST(:__tpl_1 AS text) || '_')"
    assert out.values == {"__tpl_0": "5", "__tpl_1": "5"}


def test_control_flow_and_identifiers() -> None:
    out = render(
        "SELECT {% for c in cols %}{{ c | identifier }}{% if not loop.last %}, {% endif %}"
        "{% endfor %} FROM {{ ('s', 'My T') | identifier }}",
        {"cols": ["a", 'we"ird']},
    )
    assert out.sql == 'SELECT "a", "we""ird" FROM "s"."My T"'
    assert out.values == {}


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM {{ t }}",
        "SELECT * FROM a JOIN {{ t }} USING (id)",
        "SELECT * FROM a ORDER BY {{ t }}",
        "INSERT INTO {{ t }} VALUES (1)",
        "SELECT {{ t }}.x FROM a",
    ],
)
def test_a_value_where_a_name_goes_is_refused(text: str) -> None:
    with pytest.raises(TemplateError, match=r"write \{\{ t \| identifier \}\}"):
        render(text, {"t": "orders"})


def test_a_string_value_alone_in_the_select_list_is_refused_a_number_is_not() -> None:
    with pytest.raises(TemplateError, match="is a select-list item"):
        render("SELECT a, {{ c }} FROM t", {"c": "b"})
    out = render("SELECT a, {{ c }} FROM t", {"c": 2})
    assert out.sql == "SELECT a, :__tpl_0 FROM t"


def test_strings_inside_values_and_function_calls_are_not_select_items() -> None:
    out = render("INSERT INTO t VALUES ({{ a }}, {{ b }}, 1)", {"a": "x", "b": "y"})
    assert out.values == {"__tpl_0": "x", "__tpl_1": "y"}
    out = render("SELECT coalesce(a, {{ b }}) FROM t", {"b": "z"})
    assert out.values == {"__tpl_0": "z"}


def test_inside_a_quoted_name_or_dollar_body_is_refused() -> None:
    with pytest.raises(TemplateError, match="inside a quoted name cannot be bound"):
        render('SELECT "{{ c }}" FROM t', {"c": "x"})
    with pytest.raises(TemplateError, match="inside a dollar-quoted body cannot be bound"):
        render("DO $$ BEGIN RAISE NOTICE '{{ c }}'; END $$", {"c": "x"})


def test_unsafe_sql_is_pasted() -> None:
    assert render("SELECT 1 {{ w | unsafe_sql }}", {"w": "WHERE true"}).sql == "SELECT 1 WHERE true"


def test_array_literals_and_undefined_names_are_clear_errors() -> None:
    with pytest.raises(TemplateError, match=r"looks like an array literal"):
        render("SELECT '{{1,2}}'::int[]", {})
    with pytest.raises(TemplateError, match="'nope' is undefined"):
        render("SELECT {{ nope }}", {})
    with pytest.raises(TemplateError, match="template syntax error on line 1"):
        render("SELECT {% if %}", {})


def test_is_template() -> None:
    assert is_template("SELECT {{ x }}") and is_template("{% if a %}1{% endif %}")
    assert not is_template("SELECT '{x}', '$x', '{\"a\": {\"b\": 1}}'")


def test_braces_in_comments_are_not_a_template() -> None:
    text = "SELECT 1 -- {{ gone }} {% if %}\n/* {{ also_gone }} */"
    assert render(text, {}) == (text, {}, {})
    out = render("SELECT {{ n }} -- {{ not_needed }}", {"n": 1})
    assert out.sql == "SELECT :__tpl_0 -- {{ not_needed }}"


def test_a_whole_query_in_a_value_needs_unsafe_sql() -> None:
    with pytest.raises(TemplateError, match=r"write \{\{ QUERY \| unsafe_sql \}\} to run the text"):
        render("{{ QUERY }}", {"QUERY": "SELECT 1"})
    with pytest.raises(TemplateError, match="starts the statement"):
        render("SELECT 1; {{ QUERY }}", {"QUERY": "SELECT 2"})


def test_a_tuple_binds_one_value_per_item_in_parentheses() -> None:
    # JupySQL's templating guide: `WHERE sex IN {{ sex }}` with sex = ("MALE", "FEMALE").
    out = render("SELECT 1 WHERE s IN {{ sex }}", {"sex": ("MALE", "FEMALE")})
    assert out.sql == "SELECT 1 WHERE s IN (:__tpl_0, :__tpl_1)"
    assert out.values == {"__tpl_0": "MALE", "__tpl_1": "FEMALE"}
    with pytest.raises(TemplateError, match=r"looks like an array literal"):
        render("SELECT 1 WHERE s IN {{ sex }}", {"sex": ()})


def test_inline_writes_values_as_quoted_literals() -> None:
    out = render(
        "SELECT * FROM t WHERE name = '{{ who }}' AND n > {{ low }}", {"who": "O'Hara", "low": 2}
    )
    assert inline(out) == "SELECT * FROM t WHERE name = 'O''Hara' AND n > 2"
    with pytest.raises(TemplateError, match="a object has none"):
        inline(render("SELECT {{ x }} AS v", {"x": object()}))


def test_inline_keeps_a_negative_number_apart_from_a_minus() -> None:
    # `n -{{ x }}` with x = -3 must not become `n --3`, a comment.
    assert inline(render("SELECT 5 -{{ x }} AS v", {"x": -3})) == "SELECT 5 - -3 AS v"


@pytest.mark.parametrize(
    "text",
    [
        "SELECT (x / 10)::numeric(16, {{ p }}) FROM t",
        "SELECT cast(x AS numeric({{ p }})) FROM t",
        "SELECT x::varchar( {{ p }} ) FROM t",
    ],
)
def test_a_value_as_a_types_modifier_names_the_filter(text: str) -> None:
    # The server's grammar takes no parameter there ("type modifiers must be simple
    # constants or identifiers"): the cell stops before it runs instead.
    with pytest.raises(TemplateError) as caught:
        render(text, {"p": "2"})
    assert str(caught.value) == (
        "{{ p }} is a type's modifier, as in numeric(16, 2), where the server takes a number "
        "written out, not a parameter: write {{ p | int | unsafe_sql }} (int makes any value "
        "a number)"
    )


def test_a_types_modifier_through_int_and_unsafe_sql_is_a_number_whatever_the_value() -> None:
    text = "SELECT x::numeric(16, {{ p | int | unsafe_sql }}), round(x, {{ p }}) FROM t"
    assert render(text, {"p": "3"}) == (
        "SELECT x::numeric(16, 3), round(x, :__tpl_0) FROM t",
        {"__tpl_0": "3"},
        {"__tpl_0": "{{ p }}"},
    )
    assert render(text, {"p": "1); DROP TABLE t; --"}).sql.startswith("SELECT x::numeric(16, 0)")


def test_each_bound_value_is_labelled_with_its_braces_when_certain() -> None:
    rendered = render(
        "SELECT {{ a }}, '{{ b }}', {{ t | identifier }} FROM x", {"a": 1, "b": 2, "t": "x"}
    )
    assert rendered.labels == {"__tpl_0": "{{ a }}", "__tpl_1": "{{ b }}"}
    # A tag could skip or repeat an expression: the label says no more than it knows.
    looped = render("{% for v in vs %}SELECT {{ v }};{% endfor %}", {"vs": [1, 2]})
    assert looped.labels == {"__tpl_0": "{{ value }}", "__tpl_1": "{{ value }}"}


def test_a_set_blocks_text_is_sql_and_its_values_stay_bound() -> None:
    # It was bound whole as one text value, holding the markers of its values, and
    # psycopg refused it: "PostgreSQL text fields cannot contain NUL (0x00) bytes".
    text = "{% set cond %}n > {{ low }}{% endset %}SELECT * FROM t WHERE {{ cond }}"
    assert render(text, {"low": "1 OR true"}) == (
        "SELECT * FROM t WHERE n > :__tpl_0",
        {"__tpl_0": "1 OR true"},
        {"__tpl_0": "{{ value }}"},
    )


@pytest.mark.parametrize(
    "text",
    [
        "{% set cond %}n > {{ low }}{% endset %}SELECT * FROM t WHERE {{ cond | trim }}",
        "{% macro c() %}n > {{ low }}{% endmacro %}SELECT * FROM t WHERE {{ c() ~ '' }}",
    ],
)
def test_template_sql_made_plain_text_is_refused_not_sent_as_one_value(text: str) -> None:
    with pytest.raises(TemplateError, match=r"turned into plain text \(by a filter, or joined"):
        render(text, {"low": 1})


def test_a_value_cannot_pass_for_template_text() -> None:
    # Only Jinja's own joins make SQL: a value holding marker-like text stays a value
    # (and, holding NUL, could never be sent anyway).
    with pytest.raises(TemplateError):
        render("SELECT * FROM t WHERE n = {{ evil }}", {"evil": "\x000\x00 OR true"})
    rendered = render("SELECT * FROM t WHERE n = {{ 'a' ~ evil }}", {"evil": " OR true"})
    assert rendered.sql == "SELECT * FROM t WHERE n = :__tpl_0"
    assert rendered.values == {"__tpl_0": "a OR true"}
