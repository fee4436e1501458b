"""Forms from JupySQL's documentation pages that failed here, through a real shell.

Found by running every form of JupySQL's user guide, how-to, API pages,
quick start, templating guide and PostgreSQL page here and in JupySQL
0.11.1 side by side; each test names the form and what it did before.
"""

from __future__ import annotations

from decimal import Decimal

from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)


def test_regression_close_takes_a_hyphenated_alias(ip: Shell, pg_url: str) -> None:
    # api/magic-sql: `%sql --close db-two` failed with "--close takes only a connection name".
    ip.ok(f"%sql {pg_url} --alias db-two")
    assert "db-two" in ip.ok("%sql --close db-two").out
    assert "db-two" not in ip.magics.sessions


def test_regression_sqlcmd_arguments_expand_templates(ip: Shell) -> None:
    # api/magic-tables-columns: `%sqlcmd tables -s {{schema}}` listed no tables (IPython's
    # own {var} expansion turned it into -s {schema}), and -t {{table}} found no table.
    ip.ok("%sql CREATE TEMP TABLE writer (name text, year_of_death int)")
    ip.ok("%sql INSERT INTO writer VALUES ('William', 1616), ('Bertold', 1956)")
    ip.user_ns["schema"] = ip.scalar(
        "%sql SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()"
    )
    ip.user_ns["table"] = "writer"
    assert list(ip.value("%sqlcmd tables -s {{schema}}")["Name"]) == ["writer"]
    columns = ip.value("%sqlcmd columns -s {{ schema }} -t {{table}}")
    assert list(columns["name"]) == ["name", "year_of_death"]
    ip.user_ns["limit"] = "2000"
    assert ip.value("%sqlcmd test --table {{table}} --column year_of_death --less-than {{limit}}")


def test_regression_sqlplot_arguments_expand_templates(ip: Shell) -> None:
    # api/magic-plot: `%sqlplot boxplot --table {{table}} ... --orient {{orient}}` failed
    # with "invalid choice: '{orient}'".
    import matplotlib

    matplotlib.use("Agg")
    ip.ok("%sql CREATE TEMP TABLE sizes AS SELECT g::float8 AS size FROM generate_series(1, 9) g")
    ip.user_ns.update(table="sizes", column="size", orient="h")
    ax = ip.value("%sqlplot boxplot --table {{table}} --column {{column}} --orient {{orient}}")
    assert ax.get_title() == "'size' from 'sizes'"


def test_regression_sql_options_expand_templates(ip: Shell, pg_url: str) -> None:
    # api/magic-sql and api/magic-snippets: `--alias {{alias}}`, `--close {{alias}}` and
    # `%%sql --save {{name}}` failed with "needs a Python-style name, not '{{alias}}'".
    ip.user_ns["alias"] = "db-four"
    ip.ok(f"%sql {pg_url} --alias {{{{ alias }}}}")
    assert ip.magics.current_alias == "db-four"
    ip.user_ns["snippet_name"] = "gentoo"
    ip.ok("%%sql --save {{snippet_name}} --no-execute\nSELECT 'Gentoo' AS species")
    assert "gentoo" in ip.magics.snippets.queries
    ip.ok("%sqlcmd snippets -d {{snippet_name}}")
    assert "gentoo" not in ip.magics.snippets.queries
    ip.ok("%sql --close {{alias}}")
    assert "db-four" not in ip.magics.sessions


def test_an_option_template_that_is_not_one_word_says_so(ip: Shell) -> None:
    ip.user_ns["two_words"] = "my db"
    run = ip.fail("%sql --alias {{two_words}} SELECT 1")
    assert "UsageError: {{ two_words }} in an option must hold one word, not 'my db'" in run.text
    run = ip.fail("%sqlcmd columns --table {{nowhere}}")
    assert "UsageError: {{ nowhere }} in an option: there is no variable nowhere" in run.text


def test_templates_in_the_sql_after_options_stay_bound(ip: Shell) -> None:
    # Only the options' values are expanded: the SQL's {{ }} are still bound parameters.
    ip.user_ns["who"] = "x' OR '1'='1"
    ip.ok("%sql SELECT 1")  # connects as 'default'
    frame = ip.value("%sql --alias default SELECT '{{who}}' AS v")
    assert frame.iat[0, 0] == "x' OR '1'='1"


def test_regression_sqlcmd_snippets_name_returns_the_query_with_its_ctes(ip: Shell) -> None:
    # PostgreSQL page and compose: `query = %sqlcmd snippets trip_stats; print(query)` printed
    # the snippet's own text and then None (it returned nothing); JupySQL returns the query
    # that runs, the snippets it uses in front as CTEs.
    ip.ok("%%sql --save many --no-execute\nSELECT g AS n FROM generate_series(1, 9) g WHERE g > 3")
    ip.ok("%%sql --save stats --no-execute\nSELECT min(n) AS low, max(n) AS high FROM many")
    run = ip.ok("query = %sqlcmd snippets stats")
    assert run.out == ""
    query = ip.user_ns["query"]
    assert query == (
        "WITH many AS (SELECT g AS n FROM generate_series(1, 9) g WHERE g > 3) "
        "SELECT min(n) AS low, max(n) AS high FROM many"
    )
    # The text runs as it is, on a connection that knows no snippets too.
    ip.ok("%sqlcmd snippets -A many")
    ip.user_ns["final"] = query
    assert ip.value("%sql {{ final | unsafe_sql }}").values.tolist() == [[4, 9]]


def test_regression_capture_on_the_cells_first_line(ip: Shell, pg_url: str) -> None:
    # howto: `%%sql two` then `result <<` on the next line was sent to the server
    # ("syntax error at or near result").
    ip.ok(f"%sql {pg_url} --alias two")
    run = ip.ok("%%sql two\nresult <<\nSELECT 2 AS x")
    assert run.value is None
    assert ip.user_ns["result"].iat[0, 0] == 2
    shown = ip.ok("%%sql\nagain= << SELECT 3 AS x")
    assert shown.value is ip.user_ns["again"]
    assert ip.user_ns["again"].iat[0, 0] == 3
    # An error still points at the cell's own line, counted as without the capture.
    plain = ip.fail("%%sql\n\nSELECT 1\nFROM nowhere_at_all")
    run = ip.fail("%%sql\nbad <<\nSELECT 1\nFROM nowhere_at_all")
    assert "LINE 4: FROM nowhere_at_all" in run.text
    assert run.text == plain.text


def test_regression_engine_variable_with_an_alias(ip: Shell, pg_url: str) -> None:
    # Redshift/Snowflake pages: `%sql engine --alias connection` was sent to the server
    # ("syntax error at or near engine").
    import psycopg
    import sqlalchemy
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(pg_url)
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        database=params.get("dbname"),
        query={k: params[k] for k in ("host", "port") if params.get(k)},
    )
    ip.user_ns["engine"] = sqlalchemy.create_engine(url)
    run = ip.ok("%sql engine --alias connection")
    assert "as 'connection'" in run.out
    assert ip.magics.current_alias == "connection"
    assert ip.scalar("%sql SELECT 1") == 1
    # duckdb-native page: a DB-API connection with an alias gets the line to write instead.
    ip.user_ns["conn"] = psycopg.connect(pg_url)
    try:
        run = ip.fail("%sql conn --alias duckdb")
        assert "UsageError: conn is a DB-API connection, which the pool cannot share" in run.text
    finally:
        ip.user_ns["conn"].close()
    # A word that names no connection variable still runs as SQL.
    assert 'syntax error at or near "nothing_here"' in ip.fail("%sql nothing_here -A x").text


def test_regression_a_saved_snippet_keeps_the_values_it_was_saved_with(ip: Shell) -> None:
    # Templating guide: a snippet's {{ }} are filled in when it is saved; here the value
    # at the time of use was bound instead, so the same cell gave other rows (silently).
    ip.ok(
        "%sql CREATE TEMP TABLE penguins AS SELECT * FROM (VALUES ('Adelie', 1), "
        "('Adelie', 2), ('Gentoo', 3)) v(species, n)"
    )
    ip.user_ns["species"] = "Adelie"
    ip.ok(
        "%%sql --save one_species --no-execute\n"
        "SELECT * FROM penguins WHERE species = '{{species}}'"
    )
    ip.user_ns["species"] = "Gentoo"
    assert ip.scalar("%sql SELECT count(*) FROM one_species") == 2
    assert ip.value("%sqlcmd snippets one_species") == (
        "SELECT * FROM penguins WHERE species = 'Adelie'"
    )
    # A value that tries to end the string stays a value.
    ip.user_ns["species"] = "x' OR '1'='1"
    ip.ok("%%sql --save evil --no-execute\nSELECT * FROM penguins WHERE species = '{{species}}'")
    assert ip.scalar("%sql SELECT count(*) FROM evil") == 0


def test_regression_a_tuple_in_a_template_is_an_in_list(ip: Shell) -> None:
    # Templating guide: `where sex in {{sex}}` with a tuple failed with "looks like an
    # array literal such as '{{1,2}}'".
    ip.user_ns["sex"] = ("MALE", "FEMALE")
    frame = ip.value(
        "%sql SELECT s FROM (VALUES ('MALE'), ('FEMALE'), (NULL)) v(s) "
        "WHERE s IN {{sex}} ORDER BY s"
    )
    assert frame["s"].tolist() == ["FEMALE", "MALE"]


PENGUINS = (
    "%sql CREATE TEMP TABLE penguins AS SELECT * FROM (VALUES ('FEMALE', 'Torgersen', "
    "32.0, 13.0), ('MALE', 'Biscoe', 45.5, 14.25)) v(sex, island, bill_length_mm, bill_depth_mm)"
)


def test_regression_a_macros_output_is_sql_and_its_values_stay_bound(ip: Shell) -> None:
    # Templating guide: {% macro mm_to_cm(column_name, precision=2) %}. The macro's
    # output was bound whole as one text value ("is a select-list item: ... the text
    # '(\x000\x00 / 10)...'"). Inside it, as anywhere, a name needs | identifier and a
    # type modifier (the server takes no parameter there) | unsafe_sql.
    ip.ok(PENGUINS)
    ip.user_ns["island"] = "Biscoe'; DROP TABLE penguins; --"
    cell = (
        "%%sql\n"
        "{% macro mm_to_cm(column_name, precision=2) %}\n"
        "    ({{ column_name | identifier }} / 10)::numeric(16, {{ precision | unsafe_sql }})\n"
        "{% endmacro %}\n"
        "select sex,\n"
        "  {{ mm_to_cm('bill_length_mm') }} as bill_length_cm,\n"
        "  {{ mm_to_cm('bill_depth_mm', precision=3) }} as bill_depth_cm\n"
        "from penguins where island <> {{ island }} order by sex"
    )
    frame = ip.value(cell)
    assert frame.to_dict("list") == {
        "sex": ["FEMALE", "MALE"],
        "bill_length_cm": [Decimal("3.20"), Decimal("4.55")],
        "bill_depth_cm": [Decimal("1.300"), Decimal("1.425")],
    }
    # The value inside the macro's caller stayed a bound value: the table is there.
    assert ip.scalar("%sql SELECT count(*) FROM penguins") == 2


def test_the_guides_macro_as_written_stops_with_the_filter_to_use(ip: Shell) -> None:
    # As the guide writes it, {{ precision }} is a type's modifier, where the server
    # takes no parameter: one line before it runs (it was the server's syntax error).
    ip.ok(PENGUINS)
    run = ip.fail(
        "%%sql --save convert\n"
        "{% macro mm_to_cm(column_name, precision=2) %}\n"
        "    ({{ column_name }} / 10)::numeric(16, {{ precision }})\n"
        "{% endmacro %}\n"
        "select sex, {{ mm_to_cm('bill_length_mm') }} as bill_length_cm from penguins"
    )
    assert run.text.strip().splitlines() == [
        "UsageError: {{ value }} is a type's modifier, as in numeric(16, 2), where the server "
        "takes a number written out, not a parameter: write {{ value | int | unsafe_sql }} "
        "(int makes any value a number)"
    ]
    assert "convert" not in ip.magics.snippets.queries


def test_a_macros_value_in_the_select_list_is_still_refused(ip: Shell) -> None:
    # A macro's output is SQL, but a plain {{ }} inside it is still a bound value:
    # where that cannot be right (a select-list item), the cell stops before it runs.
    ip.ok(PENGUINS)
    run = ip.fail(
        "%%sql\n{% macro col(c) %}{{ c }}{% endmacro %}\nselect {{ col('sex') }} from penguins"
    )
    assert "is a select-list item: as a bound value it would be the text 'sex'" in run.text
