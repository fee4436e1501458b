"""JupySQL's %config SqlMagic.*, its ResultSet methods and its --persist family, through a shell."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest
from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)

# ------------------------------------------------------------------ settings


def test_autolimit_becomes_row_limit(ip: Shell) -> None:
    ip.ok("%config SqlMagic.autolimit = 3")
    assert ip.magics.row_limit == 3
    run = ip.ok("%sql SELECT * FROM generate_series(1, 10)")
    assert len(run.value) == 3
    assert "Showing the first 3 rows" in run.out
    ip.ok("%config SqlMagic.autolimit = 0")
    assert ip.magics.row_limit is None


def test_reading_a_setting_gives_its_value_not_a_traceback(ip: Shell) -> None:
    ip.ok("%config SqlMagic.autolimit = 7")
    assert ip.value("%config SqlMagic.autolimit") == 7
    run = ip.ok("%config SqlMagic.no_such_setting")
    assert "SqlMagic.no_such_setting is not a JupySQL setting lunepool_magic knows" in run.err
    assert "Traceback" not in run.text


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ("feedback = 0", "feedback has no effect: a cell always shows its status and notices."),
        (
            "named_parameters = 'enabled'",
            "named_parameters has no effect: :name is always bound server-side.",
        ),
        (
            "autopandas = True",
            "autopandas is not needed: results are always pandas DataFrames.",
        ),
        (
            "autocommit = False",
            "autocommit=False has no effect here: each cell commits unless it opens a "
            "transaction; write BEGIN in a cell and COMMIT or ROLLBACK later.",
        ),
    ],
)
def test_settings_without_an_equivalent_say_so(ip: Shell, setting: str, line: str) -> None:
    assert line in ip.ok(f"%config SqlMagic.{setting}").err


def test_a_no_op_note_is_shown_once(ip: Shell) -> None:
    assert "feedback has no effect" in ip.ok("%config SqlMagic.feedback = 0").err
    assert ip.ok("%config SqlMagic.feedback = 2").err == ""


def test_autopolars_maps_to_the_polars_output(ip: Shell) -> None:
    import polars as pl

    ip.ok("%config SqlMagic.autopolars = True")
    assert ip.magics.output == "polars"
    frame = ip.value("%sql SELECT 1 AS a, 'x' AS b")
    assert isinstance(frame, pl.DataFrame) and frame.to_dicts() == [{"a": 1, "b": "x"}]
    ip.ok("%config SqlMagic.autopolars = False")
    assert ip.magics.output == "pandas"


def test_short_errors_maps_to_show_traceback(ip: Shell) -> None:
    ip.ok("%config SqlMagic.short_errors = False")
    assert ip.magics.show_traceback is True


def test_displaylimit_sets_pandas_display_rows(ip: Shell) -> None:
    try:
        run = ip.ok("%config SqlMagic.displaylimit = 4")
        assert "displaylimit sets pandas' display.max_rows" in run.err
        assert pd.get_option("display.max_rows") == 4
    finally:
        pd.reset_option("display.max_rows")
        pd.reset_option("display.min_rows")


# ------------------------------------------------------------------ ResultSet


def test_resultset_methods_on_the_dataframe(ip: Shell, tmp_path: object) -> None:
    ip.ok("result = %sql SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(n, s)")
    result = ip.user_ns["result"]
    assert isinstance(result, pd.DataFrame)
    assert type(result) is pd.DataFrame  # not a subclass: pandas behaves as pandas
    assert ip.value("result.DataFrame()") is result
    assert ip.value("result.dict()") == {"n": (1, 2), "s": ("a", "b")}
    assert ip.value("list(result.dicts())") == [{"n": 1, "s": "a"}, {"n": 2, "s": "b"}]
    assert ip.value("result.csv()") == "n,s\n1,a\n2,b\n"
    path = tmp_path / "out.csv"  # type: ignore[operator]
    ip.ok(f"result.csv(filename={str(path)!r})")
    assert path.read_text() == "n,s\n1,a\n2,b\n"


def test_polars_dataframe_without_polars_names_the_install(ip: Shell) -> None:
    ip.ok("result = %sql SELECT 1 AS n")
    try:
        import polars  # noqa: F401
    except ImportError:
        run = ip.fail("result.PolarsDataFrame()")
        assert "PolarsDataFrame() needs polars (pip install polars)" in run.text
    else:
        assert ip.value("result.PolarsDataFrame()").shape == (1, 1)


# ------------------------------------------------------------------ persist


@pytest.fixture
def table_name(pg_admin: psycopg.Connection) -> Iterator[str]:
    name = f"lpm_pj_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {name}")
        pg_admin.execute(f"DROP TABLE IF EXISTS public.{name}")
        pg_admin.commit()


def test_persist_replace_and_no_index(ip: Shell, table_name: str) -> None:
    frame = pd.DataFrame({"x": [1, 2]}, index=pd.Index(["a", "b"], name="key"))
    ip.user_ns[table_name] = frame
    ip.ok(f"%sql --persist {table_name}")
    cols = ip.value(f"%sqlcmd columns --table {table_name}")
    assert list(cols["name"]) == ["key", "x"]  # a named index level is written
    ip.user_ns[table_name] = pd.DataFrame({"x": [5, 6, 7]}, index=frame.index.repeat([1, 2]))
    run = ip.ok(f"%sql --persist-replace {table_name} --no-index")
    assert "Replaced table" in run.out
    cols = ip.value(f"%sqlcmd columns --table {table_name}")
    assert list(cols["name"]) == ["x"]
    assert ip.scalar(f"%sql SELECT sum(x) FROM {table_name}") == 18


def test_persist_into_a_schema(ip: Shell, table_name: str) -> None:
    ip.user_ns[table_name] = pd.DataFrame({"x": [1]})
    ip.ok(f"%sql --persist public.{table_name}")
    assert ip.scalar(f"%sql SELECT x FROM public.{table_name}") == 1


def test_no_index_without_persist_is_an_error(ip: Shell) -> None:
    run = ip.fail("%sql --no-index SELECT 1")
    assert "--no-index goes with --persist VAR: %sql --persist df --no-index" in run.text


def test_regression_result_zero_zero_names_iat_not_a_bare_key_error(ip: Shell) -> None:
    # Issue 18: JupySQL's result[0][0] is the first value; on a DataFrame it is column 0.
    ip.ok("result = %sql SELECT 42 AS answer")
    run = ip.fail("result[0][0]")
    assert (
        "KeyError: 0: the result is a pandas DataFrame, where [0] is the column named 0; "
        "JupySQL's result[0][0] is result.iat[0, 0] here (result.iloc[0] is row 0)"
    ) in run.text
    assert ip.value("result.iat[0, 0]") == 42
    # Any other KeyError keeps its traceback.
    run = ip.fail("{}['missing']")
    assert "KeyError" in run.text and "result.iat" not in run.text


def test_unload_removes_the_key_error_handler(ip: Shell) -> None:
    assert ip.shell.custom_exceptions == (KeyError,)
    ip.ok("%unload_ext lunepool_magic")
    assert ip.shell.custom_exceptions == ()
    ip.ok("%load_ext lunepool_magic")


def test_resultset_pie_and_bar_draw_the_last_column(ip: Shell) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ip.ok("result = %sql SELECT * FROM (VALUES ('a', 'x', 2), ('b', 'y', 3)) v(k1, k2, n)")
    plt.figure()
    ax = ip.value("result.bar()")
    assert [p.get_height() for p in ax.patches] == [2, 3]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a x", "b y"]
    assert ax.get_title() == "n"
    plt.close("all")
    plt.figure()
    ax = ip.value("result.pie(key_word_sep='/')")
    assert [t.get_text() for t in ax.texts] == ["a/x", "b/y"]
    plt.close("all")
