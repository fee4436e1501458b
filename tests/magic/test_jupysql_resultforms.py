"""JupySQL's ResultSet forms that pandas answers differently: one note each, and import sql.

Issue 18: ``for row in result``, ``result.plot()`` and ``result.keys`` are
valid code on a DataFrame that silently does something else than on
JupySQL's ResultSet, and ``from sql import plot`` failed with a bare "No
module named 'sql'". Each form now gets one line naming the replacement
(once per kernel per form) and the cell still runs as pandas runs it. Run
through a real shell (``ip``) and, for what a notebook shows, a real kernel.
"""

from __future__ import annotations

import ast
import gc
import sys
from typing import Any

import pandas as pd
import pytest
from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)

from lunepool_magic.notebook.jupysql_import import MissingJupySQL
from lunepool_magic.notebook.resultforms import FormCheck, ResultRegistry

ITERATE_NOTE = (
    "note: for row in result iterates the DataFrame's column names; JupySQL iterated rows: "
    "write for row in result.itertuples(index=False)"
)
KEYS_NOTE = (
    "note: result.keys is pandas' DataFrame.keys method; JupySQL's result.keys was the list "
    "of column names: write list(result.columns)"
)


def _plot_note(name: str, x: str) -> str:
    return (
        f"note: {name}.plot() is pandas' DataFrame.plot, a line per numeric column against the "
        "row number; JupySQL's drew its first numeric column as x and the other numeric ones "
        f"as lines: write {name}.plot(x={x})"
    )


def _notes(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("note: ")]


def _check(ip: Shell) -> FormCheck:
    return ip.magics._jupysql.check  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def agg() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


# ------------------------------------------------------------------ for row in result


def test_regression_for_row_in_result_names_itertuples_once(ip: Shell) -> None:
    # Issue 18: JupySQL iterated rows; a DataFrame iterates its column names.
    ip.ok("result = %sql SELECT 1 AS a, 'x' AS b")
    run = ip.ok("seen = []\nfor row in result:\n    seen.append(row)")
    assert run.err == ITERATE_NOTE + "\n"
    assert ip.user_ns["seen"] == ["a", "b"]  # pandas' answer, unchanged
    again = ip.ok("for row in result:\n    pass")
    assert _notes(again.text) == []


def test_the_same_cell_result_and_a_comprehension_get_the_note(ip: Shell) -> None:
    run = ip.ok("result = %sql SELECT 1 AS a, 2 AS b\nrows = [row for row in result]")
    assert _notes(run.err) == [ITERATE_NOTE]
    assert ip.user_ns["rows"] == ["a", "b"]


@pytest.mark.parametrize(
    ("code", "written", "instead", "pandas_gives", "jupysql_gave"),
    [
        (
            "list(result)",
            "list(result)",
            "list(result.itertuples(index=False))",
            ["a", "b"],
            [(1, "x"), (2, "y")],
        ),
        (
            "tuple(result)",
            "tuple(result)",
            "tuple(result.itertuples(index=False))",
            ("a", "b"),
            ((1, "x"), (2, "y")),
        ),
        (
            "[i for i, row in enumerate(result, start=1)]",
            "enumerate(result, start=1)",
            "enumerate(result.itertuples(index=False), start=1)",
            [1, 2],
            [1, 2],
        ),
        (
            "list(zip(*result))",
            "zip(*result)",
            "zip(*result.itertuples(index=False))",
            [("a", "b")],
            [(1, 2), ("x", "y")],
        ),
    ],
)
def test_regression_calls_that_iterate_a_result_name_the_row_form(
    ip: Shell, code: str, written: str, instead: str, pandas_gives: Any, jupysql_gave: Any
) -> None:
    # Issue 18: list(result) gave JupySQL's rows; on a DataFrame it gives the column
    # names (zip(*result) zips their letters), without a word.
    ip.ok("result = %sql SELECT * FROM (VALUES (1, 'x'), (2, 'y')) AS v(a, b)")
    run = ip.ok(f"got = {code}")
    assert _notes(run.err) == [
        f"note: {written} iterates the DataFrame's column names; JupySQL iterated rows: "
        f"write {instead}"
    ]
    assert ip.user_ns["got"] == pandas_gives  # the cell ran as pandas runs it
    replaced = code.replace(written, instead)
    assert ip.ok(f"fixed = {replaced}").err == ""
    assert ip.user_ns["fixed"] == jupysql_gave  # the written replacement gives JupySQL's rows


def test_calls_on_other_values_or_on_a_results_attribute_get_no_note(ip: Shell) -> None:
    ip.ok("result = %sql SELECT 1 AS a")
    ip.user_ns["other"] = pd.DataFrame({"a": [1]})
    run = ip.ok("x = list(result.columns), list(other), sorted(result), list(result.a)")
    assert _notes(run.text) == []
    assert _check(ip).shown == set()


def test_a_var_out_target_in_the_same_cell_gets_the_note(ip: Shell) -> None:
    run = ip.ok("%sql df << SELECT 1 AS n\nnames = list(r for r in df)")
    assert _notes(run.err) == [
        "note: for r in df iterates the DataFrame's column names; JupySQL iterated rows: "
        "write for r in df.itertuples(index=False)"
    ]
    assert ip.user_ns["names"] == ["n"]


def test_the_loop_target_is_written_back_as_typed(ip: Shell) -> None:
    ip.ok("%sql result= << SELECT 1 AS a, 2 AS b")  # VAR= <<: stored and shown
    run = ip.fail("for a, b in result:\n    pass")  # 'a' is one value: pandas' own error
    assert isinstance(run.error, ValueError)
    assert _notes(run.text) == [
        "note: for a, b in result iterates the DataFrame's column names; JupySQL iterated "
        "rows: write for a, b in result.itertuples(index=False)"
    ]


def test_a_plain_dataframe_gets_no_note(ip: Shell, agg: Any) -> None:
    ip.ok("import pandas as pd\nplain = pd.DataFrame({'x': [1, 2], 'y': [3, 4]})")
    ip.ok("r = %sql SELECT 1 AS a")  # a result exists, under another name
    run = ip.ok("cols = [c for c in plain]\nfor c in plain: pass\nk = plain.keys\nplain.plot()")
    assert _notes(run.text) == []
    assert ip.user_ns["cols"] == ["x", "y"]


def test_an_assignment_that_stores_elsewhere_is_not_a_result(ip: Shell) -> None:
    # `name = %sql df << ...` gives name None; only df holds the result.
    run = ip.ok("name = %sql df << SELECT 1 AS n\nfor x in name or []: pass")
    assert _notes(run.err) == []


def test_a_background_jobs_result_gets_the_note(ip: Shell) -> None:
    ip.ok("%%sql --background bg <<\nSELECT 1 AS a, 2 AS b")
    ip.ok("%sql --wait")
    run = ip.ok("for row in bg: pass")
    assert _notes(run.err) == [ITERATE_NOTE.replace("result", "bg")]


def test_a_psql_command_result_gets_the_note(ip: Shell) -> None:
    ip.ok(r"tables = %sql \dn")
    run = ip.ok("for row in tables: pass")
    assert _notes(run.err) == [ITERATE_NOTE.replace("result", "tables")]


# ------------------------------------------------------------------ result.plot()


def test_regression_result_plot_names_the_x_column_jupysql_took(ip: Shell, agg: Any) -> None:
    # Issue 18: JupySQL's plot() drew the first numeric column as x, pandas' the index.
    ip.ok(
        "result = %sql SELECT 'a' AS label, 2020 + g AS year, g * g AS n "
        "FROM generate_series(1, 3) g"
    )
    run = ip.ok("ax = result.plot()")
    assert run.err == _plot_note("result", "'year'") + "\n"
    ax = ip.user_ns["ax"]
    assert [line.get_label() for line in ax.get_lines()] == ["year", "n"]  # pandas' own plot
    assert _notes(ip.ok("result.plot()").text) == []


def test_plot_with_one_numeric_column_draws_what_jupysql_drew_so_no_note(
    ip: Shell, agg: Any
) -> None:
    ip.ok("result = %sql SELECT 'a' AS label, 5 AS n")
    assert _notes(ip.ok("result.plot()").text) == []
    # The note is still due for a result where the figures differ.
    ip.ok("two = %sql SELECT now()::timestamp AS at, 1 AS n")
    assert _notes(ip.ok("two.plot()").err) == [_plot_note("two", "'at'")]


def test_plot_of_numeric_columns_names_the_cast_pandas_needs(ip: Shell, agg: Any) -> None:
    # numeric arrives as Decimal objects: JupySQL plotted them, pandas' plot leaves them out.
    ip.ok("r = %sql SELECT g AS a, g * 1.5 AS n FROM generate_series(1, 3) g")
    run = ip.ok("ax = r.plot()")
    fix = "r.astype({'n': float}).plot(x='a')"
    assert _notes(run.err) == [_plot_note("r", "'a'").replace("r.plot(x='a')", fix)]
    # pandas' own: a against the row number, n left out.
    assert [line.get_label() for line in ip.user_ns["ax"].get_lines()] == ["a"]
    ax = ip.value(fix)
    assert [line.get_label() for line in ax.get_lines()] == ["n"]


def test_pandas_plot_forms_get_no_note(ip: Shell, agg: Any) -> None:
    ip.ok("result = %sql SELECT 1 AS a, 2 AS b")
    run = ip.ok("result.plot.bar()\nresult.plot(x='a')\nresult.plot(kind='bar')\np = result.plot")
    assert _notes(run.text) == []


def test_plot_on_a_same_cell_result_names_the_column_to_choose(ip: Shell, agg: Any) -> None:
    run = ip.ok("result = %sql SELECT 1 AS a, 2 AS b\nresult.plot()")
    assert _notes(run.err) == [_plot_note("result", "'<its first numeric column>'")]


# ------------------------------------------------------------------ result.keys


def test_regression_result_keys_without_a_call_names_the_columns(ip: Shell) -> None:
    # Issue 18: JupySQL's keys was the list of column names; pandas' is a method.
    ip.ok("result = %sql SELECT 1 AS a, 2 AS b")
    run = ip.ok("k = result.keys")
    assert run.err == KEYS_NOTE + "\n"
    assert callable(ip.user_ns["k"])  # pandas' bound method, unchanged
    assert _notes(ip.ok("k = result.keys").text) == []
    assert ip.value("list(result.columns)") == ["a", "b"]


def test_calling_keys_is_pandas_and_gets_no_note(ip: Shell) -> None:
    ip.ok("result = %sql SELECT 1 AS a")
    run = ip.ok("names = list(result.keys())")
    assert _notes(run.text) == []
    assert ip.user_ns["names"] == ["a"]


def test_each_form_is_noted_once_in_code_order(ip: Shell, agg: Any) -> None:
    ip.ok("result = %sql SELECT 1 AS a, 2 AS b")
    run = ip.ok("k = result.keys\nfor row in result: pass\nresult.plot()\nfor r in result: pass")
    assert _notes(run.err) == [
        KEYS_NOTE,
        ITERATE_NOTE,
        _plot_note("result", "'a'"),
    ]
    assert _check(ip).shown == {"iterate", "plot", "keys"}


# ------------------------------------------------------------------ other outputs


def test_polars_and_arrow_results_get_their_own_replacement(ip: Shell) -> None:
    pytest.importorskip("polars")
    run = ip.ok("p = %sql --output polars SELECT 1 AS a\nfor row in p: pass")
    assert _notes(run.err) == [
        "note: for row in p iterates the polars DataFrame's columns (Series); JupySQL "
        "iterated rows: write for row in p.iter_rows()"
    ]
    ip.ok("t = %sql --output arrow SELECT 1 AS a")
    run = ip.ok("names = t.keys if hasattr(t, 'keys') else t.column_names")
    assert _notes(run.err) == [
        "note: an Arrow table has no keys; JupySQL's t.keys was the list of column names: "
        "write t.column_names"
    ]
    assert ip.user_ns["names"] == ["a"]


def test_polars_and_arrow_calls_that_iterate_get_their_row_form(ip: Shell) -> None:
    pytest.importorskip("polars")
    ip.ok("p = %sql --output polars SELECT * FROM (VALUES (1, 'x'), (2, 'y')) AS v(a, b)")
    run = ip.ok("got = list(p)")
    assert _notes(run.err) == [
        "note: list(p) iterates the polars DataFrame's columns (Series); JupySQL iterated "
        "rows: write list(p.iter_rows())"
    ]
    assert ip.ok("rows = list(p.iter_rows())").err == ""
    assert ip.user_ns["rows"] == [(1, "x"), (2, "y")]
    _check(ip).shown.clear()
    ip.ok("t = %sql --output arrow SELECT * FROM (VALUES (1, 'x'), (2, 'y')) AS v(a, b)")
    run = ip.ok("got = list(zip(*t))")
    assert _notes(run.err) == [
        "note: zip(*t) iterates the Arrow table's columns; JupySQL iterated rows: "
        "write t.to_pydict().values() (a list per column)"
    ]
    assert ip.ok("columns = list(t.to_pydict().values())").err == ""
    assert ip.user_ns["columns"] == [[1, 2], ["x", "y"]]


# ------------------------------------------------------------------ the registry


def test_the_registry_never_keeps_a_result_alive() -> None:
    registry = ResultRegistry()
    frame = pd.DataFrame({"a": [1]})
    registry.remember(frame)
    registry.remember(frame)
    assert registry.holds(frame) and len(registry) == 1
    assert not registry.holds(pd.DataFrame({"a": [1]}))  # equal, but another object
    del frame
    gc.collect()
    assert len(registry) == 0


def test_the_registry_remembers_only_result_tables() -> None:
    registry = ResultRegistry()
    for value in ([1, 2], {"a": 1}, None, 42, pd.Series([1])):
        registry.remember(value)
    assert len(registry) == 0


def test_results_handed_out_by_the_magic_are_remembered_and_released(ip: Shell) -> None:
    registry = ip.magics.results
    assert registry is not None
    ip.ok("result = %sql SELECT 1 AS a")
    assert registry.holds(ip.user_ns["result"])
    ip.ok("del result")
    gc.collect()
    assert len(registry) == 0


# ------------------------------------------------------------------ cost and failing open


def test_a_cell_is_walked_only_when_it_names_a_live_result_or_has_a_sql_line(ip: Shell) -> None:
    check = _check(ip)
    walked = []
    scan = check._scan
    check._scan = lambda tree: walked.append(tree) or scan(tree)  # type: ignore[method-assign]
    ip.ok("total = 0\nfor i in range(3):\n    total += i")
    ip.ok("values = [1]\n%config LunepoolMagic.row_limit\nfor i in values: pass")  # not %sql
    assert walked == []
    assert check not in ip.shell.ast_transformers  # IPython re-walks trees while any is there
    ip.ok("result = %sql SELECT 1 AS a\nfor row in result: pass")
    assert len(walked) == 1
    ip.ok("for i in range(3): pass\nother = {}.keys")  # a result is alive, but not named
    assert len(walked) == 1
    assert check not in ip.shell.ast_transformers
    ip.ok("k = result.keys")
    assert len(walked) == 2
    ip.ok("rows = [r for r in result]\nk = result.keys\np = result.plot")
    assert len(walked) == 2  # those two notes are shown; an uncalled .plot is pandas'
    ip.ok("# result.plot() in a comment\nx = 1")  # plot's note is due: the AST decides
    assert len(walked) == 3
    assert check.shown == {"iterate", "keys"}


def test_a_failing_check_never_breaks_the_cell_and_stays_installed(ip: Shell) -> None:
    check = _check(ip)

    def broken(line: str) -> None:
        raise RuntimeError("stderr is gone")

    write, check.write = check.write, broken  # type: ignore[method-assign]
    ip.ok("result = %sql SELECT 1 AS a")
    run = ip.ok("seen = [row for row in result]")
    assert ip.user_ns["seen"] == ["a"]
    assert "threw an error" not in run.text  # IPython's line when it drops a transformer
    assert check in ip.shell.ast_transformers
    assert check.shown == set()  # nothing was shown, so the note is still due
    check.write = write  # type: ignore[method-assign]
    assert _notes(ip.ok("seen = [row for row in result]").err) == [ITERATE_NOTE]


def test_a_failing_text_scan_never_breaks_the_cell(ip: Shell) -> None:
    check = _check(ip)

    def broken() -> Any:
        raise RuntimeError("no namespace")

    check.namespace = broken  # type: ignore[method-assign]
    ip.ok("result = %sql SELECT 1 AS a")
    ip.ok("for row in result: pass")  # an input transformer that raised would fail this cell
    assert check.scan_text in ip.shell.input_transformers_post


def test_a_tree_the_check_cannot_handle_comes_back_unchanged() -> None:
    registry = ResultRegistry()
    frame = pd.DataFrame({"a": [1]})
    registry.remember(frame)

    def namespace() -> dict[str, Any]:
        raise RuntimeError("no namespace")

    check = FormCheck(registry, namespace, ("sql",), lambda: "pandas", list, lambda line: None)
    odd = ast.Module(body=[object()], type_ignores=[])  # type: ignore[list-item]
    assert check.visit(odd) is odd
    tree = ast.parse("for row in result: pass")
    assert check.visit(tree) is tree
    assert check.visit(None) is None


# ------------------------------------------------------------------ import sql


@pytest.mark.parametrize(
    ("statement", "line"),
    [
        (
            "from sql import plot",
            "No module named 'sql': JupySQL is not installed; for sql.plot's histogram and "
            "boxplot write %sqlplot histogram --table T --column C (or boxplot), computed in "
            "the database",
        ),
        (
            "from sql.ggplot import ggplot, aes, geom_histogram",
            "No module named 'sql': JupySQL is not installed; for ggplot's geom_histogram and "
            "geom_boxplot write %sqlplot histogram (or boxplot) --table T --column C; for other "
            "charts plot a result with matplotlib: df = %sql SELECT ... then df.plot(...)",
        ),
        (
            "import sql.run",
            "No module named 'sql': JupySQL is not installed; run statements with %sql or "
            "%%sql; df = %sql SELECT ... keeps the result",
        ),
        (
            "from sql.connection import SQLAlchemyConnection",
            "No module named 'sql': JupySQL is not installed; connect with %sql "
            "postgresql://user@host/db --alias NAME; %sql --list shows the connections",
        ),
        (
            "%load_ext sql",
            "No module named 'sql': JupySQL is not installed; %sql, %%sql, %sqlcmd and "
            "%sqlplot are lunepool_magic's here (loaded), and a result is a pandas DataFrame",
        ),
    ],
)
def test_regression_import_sql_names_what_to_write(ip: Shell, statement: str, line: str) -> None:
    # Issue 18: JupySQL's Python API failed with a bare "No module named 'sql'".
    run = ip.fail(statement)
    assert isinstance(run.error, ModuleNotFoundError)
    assert run.error.name == "sql"
    assert run.text.strip() == f"ModuleNotFoundError: {line}"
    assert "sql" not in sys.modules


def test_except_import_error_still_catches_it(ip: Shell) -> None:
    run = ip.ok("try:\n    import sql\nexcept ImportError as exc:\n    caught = exc.name")
    assert ip.user_ns["caught"] == "sql"
    assert run.text == ""


def test_a_probe_for_the_sql_package_still_finds_nothing(ip: Shell) -> None:
    assert ip.value("import importlib.util\nimportlib.util.find_spec('sql') is None") is True
    run = ip.fail("import importlib\nimportlib.import_module('sql')")
    assert "JupySQL is not installed" in run.text


def test_other_modules_named_like_sql_are_untouched(ip: Shell) -> None:
    run = ip.fail("import sqlx_not_a_module")
    assert "No module named 'sqlx_not_a_module'" in run.text
    assert "JupySQL" not in run.text
    assert MissingJupySQL().find_spec("sql.plot") is None  # only the top-level name


# ------------------------------------------------------------------ unload


def test_unload_removes_the_check_and_the_finder(ip: Shell) -> None:
    check = _check(ip)
    finder = ip.magics._jupysql.finder  # type: ignore[attr-defined]
    assert sys.meta_path[-1] is finder or finder in sys.meta_path
    ip.ok("%unload_ext lunepool_magic")
    try:
        assert check not in ip.shell.ast_transformers
        assert check.scan_text not in ip.shell.input_transformers_post
        assert not any(isinstance(f, MissingJupySQL) for f in sys.meta_path)
        run = ip.fail("import sql")
        assert "No module named 'sql'" in run.text
        assert "JupySQL" not in run.text
        ip.user_ns["gone"] = pd.DataFrame({"a": [1]})
        assert _notes(ip.ok("for row in gone: pass").text) == []
    finally:
        ip.ok("%load_ext lunepool_magic")


def test_unload_puts_the_transformer_lists_back_as_they_were(ip: Shell) -> None:
    ip.ok("%unload_ext lunepool_magic")
    before = (list(ip.shell.ast_transformers), list(ip.shell.input_transformers_post))
    meta_path = list(sys.meta_path)
    ip.ok("%load_ext lunepool_magic")
    assert list(ip.shell.ast_transformers) == before[0]  # added only for a cell to check
    ip.ok("result = %sql SELECT 1 AS a\nfor row in result: pass")
    assert len(ip.shell.ast_transformers) == len(before[0]) + 1
    ip.ok("%unload_ext lunepool_magic")
    assert (list(ip.shell.ast_transformers), list(ip.shell.input_transformers_post)) == before
    assert sys.meta_path == meta_path
    ip.ok("%load_ext lunepool_magic")


# ------------------------------------------------------------------ in a kernel


@pytest.mark.kernel
def test_the_notes_and_the_import_line_in_a_kernel(kernel: Any) -> None:
    kernel.ok("result = %sql SELECT 1 AS a, 2 AS b")
    reply = kernel.ok("for row in result:\n    print(row)")
    assert reply.stream("stderr") == ITERATE_NOTE + "\n"
    assert reply.stream("stdout") == "a\nb\n"
    streams = [o["content"]["name"] for o in reply.outputs if o["msg_type"] == "stream"]
    assert streams[0] == "stderr"  # the note comes before what the cell prints
    reply = kernel.ok("k = result.keys")
    assert reply.stream("stderr") == KEYS_NOTE + "\n"
    reply = kernel.run("from sql import plot")
    assert reply.status == "error"
    assert reply.error is not None and reply.error["ename"] == "ModuleNotFoundError"
    assert reply.error["traceback"] == [
        "ModuleNotFoundError: No module named 'sql': JupySQL is not installed; for sql.plot's "
        "histogram and boxplot write %sqlplot histogram --table T --column C (or boxplot), "
        "computed in the database"
    ]
