"""JupySQL's cell forms through a real shell: snippets, templates, -f, VAR= <<, --interact.

Each test runs the form as JupySQL's documentation writes it and checks the
result the server gave, or the exact one-line message naming what to write.
"""

from __future__ import annotations

import pandas as pd
import pytest
from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)


@pytest.fixture
def tracks(ip: Shell) -> Shell:
    ip.ok(
        "%sql CREATE TEMP TABLE tracks AS SELECT g AS id, g % 3 AS genre, "
        "'t' || g AS name FROM generate_series(1, 10) g"
    )
    return ip


def test_save_then_name_the_snippet_in_from(tracks: Shell) -> None:
    frame = tracks.value("%%sql --save fav\nSELECT * FROM tracks WHERE genre = 1")
    assert list(frame["id"]) == [1, 4, 7, 10]
    again = tracks.value("%sql SELECT count(*) AS n FROM fav")
    assert again.iat[0, 0] == 4


def test_no_execute_saves_without_running(tracks: Shell) -> None:
    run = tracks.ok("%%sql --save broken --no-execute\nSELECT 1/0 AS x")
    assert run.value is None
    assert "Saved snippet 'broken' (not run: --no-execute)." in run.out
    assert "broken" in tracks.magics.snippets.queries


def test_snippets_that_use_snippets_expand_in_dependency_order(tracks: Shell) -> None:
    tracks.ok("%%sql --save g1 --no-execute\nSELECT * FROM tracks WHERE genre = 1")
    tracks.ok("%%sql --save g1_big --no-execute\nSELECT * FROM g1 WHERE id > 4")
    frame = tracks.value("%sql SELECT id FROM g1_big ORDER BY id")
    assert list(frame["id"]) == [7, 10]


def test_with_names_a_snippet_explicitly(tracks: Shell) -> None:
    tracks.ok("%%sql --save small --no-execute\nSELECT id FROM tracks WHERE id < 3")
    frame = tracks.value("%%sql --with small\nSELECT count(*) AS n FROM small")
    assert frame.iat[0, 0] == 2


def test_a_snippet_name_in_a_string_is_not_expanded(tracks: Shell) -> None:
    tracks.ok("%%sql --save fav --no-execute\nSELECT 1")
    assert tracks.scalar("%sql SELECT 'fav' AS word") == "fav"


def test_deleting_a_snippet_others_use_says_how(tracks: Shell) -> None:
    tracks.ok("%%sql --save a --no-execute\nSELECT 1 AS x")
    tracks.ok("%%sql --save b --no-execute\nSELECT x FROM a")
    run = tracks.fail("%sqlcmd snippets -d a")
    assert (
        "snippet 'a' is used by b: %sqlcmd snippets -D a deletes it anyway, "
        "-A a deletes it and b" in run.text
    )
    assert "Deleted snippets a, b." in tracks.ok("%sqlcmd snippets -A a").out
    assert "No snippets yet" in tracks.ok("%sqlcmd snippets").out


def test_sqlcmd_snippets_lists_them(tracks: Shell) -> None:
    tracks.ok("%%sql --save one --no-execute\nSELECT 1")
    tracks.ok("%%sql --save two --no-execute\nSELECT 2")
    assert "Stored snippets: one, two" in tracks.ok("%sqlcmd snippets").out


def test_template_values_are_bound_not_pasted(tracks: Shell) -> None:
    tracks.user_ns["low"] = 8
    tracks.user_ns["evil"] = "x' OR '1'='1"
    frame = tracks.value("%sql SELECT id FROM tracks WHERE id > {{low}} ORDER BY id")
    assert list(frame["id"]) == [9, 10]
    # Rendered into the text (JupySQL), this quote would make the WHERE always true.
    assert tracks.value("%sql SELECT id FROM tracks WHERE name = '{{evil}}'").empty


def test_regression_quoted_template_binds_as_text_not_zero_rows(tracks: Shell) -> None:
    # Issue 18: '{{var}}' inside quotes silently returned 0 rows.
    tracks.user_ns["who"] = "t3"
    frame = tracks.value("%sql SELECT id FROM tracks WHERE name = '{{who}}'")
    assert list(frame["id"]) == [3]
    tracks.user_ns["part"] = "1"
    frame = tracks.value("%sql SELECT id FROM tracks WHERE name LIKE '%{{part}}%' ORDER BY id")
    assert list(frame["id"]) == [1, 10]


def test_template_control_flow_and_the_identifier_filter(tracks: Shell) -> None:
    tracks.user_ns["cols"] = ["id", "genre"]
    tracks.user_ns["table"] = "tracks"
    frame = tracks.value(
        "%%sql\nSELECT {% for c in cols %}{{ c | identifier }}"
        "{% if not loop.last %}, {% endif %}{% endfor %}\n"
        "FROM {{ table | identifier }} {% if cols|length > 1 %}WHERE id < 3{% endif %}"
    )
    assert list(frame.columns) == ["id", "genre"]
    assert len(frame) == 2


def test_a_template_value_where_a_name_goes_fails_with_the_filter_to_use(tracks: Shell) -> None:
    tracks.user_ns["table"] = "tracks"
    run = tracks.fail("%sql SELECT * FROM {{table}}")
    assert (
        "{{ table }} stands where a name goes, and values are bound as parameters here; "
        "write {{ table | identifier }} for a table or column name, or "
        "{{ table | unsafe_sql }} to paste SQL text (unsafe: only for text you wrote yourself)"
    ) in run.text


def test_a_string_template_alone_in_the_select_list_is_refused(tracks: Shell) -> None:
    tracks.user_ns["col"] = "name"
    run = tracks.fail("%sql SELECT {{col}} FROM tracks")
    assert "write {{ col | identifier }} for a column, or '{{ col }}' for the text" in run.text


def test_unsafe_sql_pastes_as_typed(tracks: Shell) -> None:
    tracks.user_ns["cond"] = "id = 2"
    assert tracks.scalar("%sql SELECT name FROM tracks WHERE {{ cond | unsafe_sql }}") == "t2"


def test_whole_query_in_a_variable(tracks: Shell) -> None:
    tracks.user_ns["QUERY"] = "SELECT 41 + 1 AS answer"
    assert tracks.scalar("%sql {{ QUERY | unsafe_sql }}") == 42


def test_templates_off_sends_the_text_as_typed(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.templates = False")
    frame = ip.value("%sql SELECT '{{1,2}}'::int[] AS a")
    assert frame.iat[0, 0] == [[1, 2]]


def test_an_array_literal_with_templates_on_names_both_ways_out(ip: Shell) -> None:
    run = ip.fail("%sql SELECT '{{1,2}}'::int[] AS a")
    assert "write ARRAY[[1,2]], or turn templates off: %config LunepoolMagic.templates = False" in (
        run.text
    )


def test_undefined_template_variable(ip: Shell) -> None:
    run = ip.fail("%sql SELECT {{ nowhere }}")
    assert "template: 'nowhere' is undefined (no variable of that name)" in run.text


def test_file_runs_its_sql_with_parameters(ip: Shell, tmp_path: object) -> None:
    path = tmp_path / "q.sql"  # type: ignore[operator]
    path.write_text("SELECT :n * 2 AS twice;\n")
    ip.user_ns["n"] = 21
    assert ip.scalar(f"%sql -f {path}") == 42
    assert ip.scalar(f"%sql --file {path}") == 42
    run = ip.fail(f"%sql -f {path}.missing")
    assert "No such file or directory" in run.text


def test_assign_and_display(ip: Shell) -> None:
    run = ip.ok("%sql result= << SELECT 7 AS x")
    assert isinstance(ip.user_ns["result"], pd.DataFrame)
    assert run.value is ip.user_ns["result"]
    assert ip.user_ns["result"].iat[0, 0] == 7


def test_interact_names_the_alternative(ip: Shell) -> None:
    run = ip.fail("%sql --interact limit SELECT * FROM t LIMIT {{limit}}")
    assert "--interact (JupySQL's widgets) is not available" in run.text
    assert ":limit" in run.text


def test_interact_given_for_two_variables_names_the_alternative(ip: Shell) -> None:
    """JupySQL's docs pass one --interact per variable; the refusal is the same,
    not '--interact is given twice'."""
    run = ip.fail("%sql --interact low --interact high SELECT {{low}}, {{high}}")
    assert run.text.splitlines()[-1].startswith(
        "UsageError: --interact (JupySQL's widgets) is not available"
    )
    assert ":low" in run.text


def test_update_and_insert_name_a_snippet(tracks: Shell) -> None:
    tracks.ok("%%sql --save g1 --no-execute\nSELECT id FROM tracks WHERE genre = 1")
    run = tracks.ok("%sql UPDATE tracks SET name = 'g1' WHERE id IN (SELECT id FROM g1)")
    assert "UPDATE 4" in run.out
    tracks.ok("%sql CREATE TEMP TABLE copied (id int)")
    assert "INSERT 0 4" in tracks.ok("%sql INSERT INTO copied SELECT id FROM g1").out
    # A SET whose value is spelled like the snippet is left as typed.
    tracks.ok("%sql SET application_name = g1")
    assert tracks.scalar("%sql SHOW application_name") == "g1"


# ------------------------------------------------------------------ errors name the {{ }}


def test_regression_an_error_caret_line_shows_the_template_not_its_parameter_names(
    ip: Shell,
) -> None:
    # The caret line showed the rendered text, `SELECT :__tpl_0 + :y`: a name the
    # user never wrote. It shows the {{ }}, and the caret stays under the operator.
    ip.user_ns.update(x="1", y="2")
    run = ip.fail("%%sql\nSELECT {{ x }} + :y")
    assert str(run.error).splitlines()[:3] == [
        "ERROR:  operator is not unique: unknown + unknown",
        "LINE 2: SELECT {{ x }} + :y",
        "                       ^",
    ]


def test_regression_a_template_text_in_arithmetic_names_the_identifier_filter(
    tracks: Shell,
) -> None:
    # JupySQL pasted {{ col }}, so `{{ col }} * 2` doubled the column; here it is a
    # bound text value, and the server's "invalid input syntax ... parameter $1"
    # named no {{ }}. The line after it names the one and the filter to use.
    tracks.user_ns["col"] = "genre"
    run = tracks.fail("%sql SELECT {{ col }} * 2 AS twice FROM tracks WHERE id = 4")
    assert str(run.error).splitlines() == [
        'ERROR:  invalid input syntax for type integer: "genre"',
        "CONTEXT:  unnamed portal parameter $1 = '...'",
        "($1 is {{ col }}, bound as a text value: write {{ col | identifier }} if it names "
        "a column)",
        "(SQLSTATE 22P02)",
    ]
    fixed = "%sql SELECT {{ col | identifier }} * 2 AS twice FROM tracks WHERE id = 4"
    assert tracks.scalar(fixed) == 2  # 4 % 3 = 1, doubled


def test_a_failed_colon_parameter_is_named_by_its_number(ip: Shell) -> None:
    ip.user_ns.update(x="pg_class", y="not an oid")
    run = ip.fail("%%sql\nSELECT 1;\nSELECT relname FROM pg_class WHERE relname = :x AND oid = :y")
    assert str(run.error).splitlines() == [
        'ERROR:  invalid input syntax for type oid: "not an oid"',
        "CONTEXT:  unnamed portal parameter $2 = '...'",
        "($2 is :y)",
        "(SQLSTATE 22P02 in statement 2 of 2 (line 3); statement 1 ran)",
    ]
    assert "not an oid" not in str(run.error).splitlines()[1:]  # the value is not shown


def test_a_template_value_that_cannot_be_encoded_is_named_by_its_braces(ip: Shell) -> None:
    ip.user_ns["s"] = "a\ud800b"
    run = ip.fail("%sql SELECT length({{ s }}) AS v")
    assert "parameter {{ s }} holds a lone surrogate '\\ud800'" in str(run.error)
    assert "__tpl" not in str(run.error)


def test_regression_a_set_block_is_sql_with_its_values_bound(tracks: Shell) -> None:
    # A {% set %} block used as {{ cond }} failed with "PostgreSQL text fields cannot
    # contain NUL (0x00) bytes": its text was sent as one value, markers and all.
    cell = (
        "%%sql\n{% set cond %}genre = {{ g }} AND id < {{ top }}{% endset %}\n"
        "SELECT id FROM tracks WHERE {{ cond }} ORDER BY id"
    )
    tracks.user_ns.update(g=1, top=8)
    assert tracks.value(cell)["id"].tolist() == [1, 4, 7]
    tracks.user_ns.update(top="8 OR true")  # still a value: never SQL
    failed = tracks.fail(cell)
    assert str(failed.error).splitlines()[0] == (
        'ERROR:  invalid input syntax for type integer: "8 OR true"'
    )
