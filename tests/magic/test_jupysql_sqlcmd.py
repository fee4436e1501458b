"""%sqlcmd and %sqlplot through a real shell, checked against JupySQL and numpy on the same data.

The statistics are computed by the server. The reference is JupySQL itself:
``JUPYSQL`` holds what JupySQL 0.11.1 (with psycopg2, PostgreSQL 18) gave
for the rows of the ``measured`` table, run once in a separate environment
(JupySQL is never installed next to the package). Where numpy computes the
same statistic (population std, ``inverted_cdf`` percentiles, which are
``percentile_disc``), the test also fetches the rows and asks numpy.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import matplotlib
import matplotlib.pyplot
import numpy as np
import psycopg
import pytest
from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)

from lunepool_magic.notebook.sqlcmd import PROFILE_ROWS

#: JupySQL 0.11.1 on the `measured` rows: %sqlplot histogram bar heights and
#: %sqlcmd profile / %sqlplot boxplot statistics.
JUPYSQL = {
    ("amount", 7): [44, 85, 79, 84, 84, 79, 45],
    ("amount", 10): [29, 55, 54, 55, 60, 54, 54, 55, 54, 30],
    ("id", 7): [41, 83, 83, 84, 83, 83, 43],
    "profile": {
        "id": {"mean": 250.5, "std": 144.3373, "min": 1, "25%": 125, "50%": 250, "75%": 375},
        "amount": {"mean": 50.028, "std": 29.1317, "25%": 25, "50%": 50, "75%": 75},
        "skew": {"unique": 49, "mean": 47.488, "std": 30.3434, "25%": 22, "50%": 48, "75%": 73},
    },
    "boxplot skew": {"q1": 22, "med": 48, "q3": 73, "whislo": 0, "whishi": 96},
}


@pytest.fixture
def measured(ip: Shell) -> str:
    """The rows JupySQL was run on (see JUPYSQL)."""
    ip.ok(
        "%sql CREATE TEMP TABLE measured AS SELECT g AS id, ((g * 37) % 101)::float8 AS amount, "
        "(g * g % 97)::int AS skew FROM generate_series(1, 500) g"
    )
    return "measured"


@pytest.fixture
def sales(ip: Shell, pg_admin: psycopg.Connection) -> Iterator[str]:
    """A real table with numbers, text and NULLs."""
    name = f"lpm_sales_{uuid.uuid4().hex[:8]}"
    pg_admin.execute(
        f"CREATE TABLE {name} (id int PRIMARY KEY GENERATED ALWAYS AS IDENTITY, "
        "amount numeric, region text, note text)"
    )
    pg_admin.execute(
        f"INSERT INTO {name} (amount, region, note) SELECT (g * 37 % 101)::numeric, "
        "(ARRAY['north','south','east'])[1 + g % 3 + (g % 7 = 0)::int % 3], "
        "CASE WHEN g % 4 = 0 THEN NULL ELSE 'n' || (g % 5) END FROM generate_series(1, 500) g"
    )
    pg_admin.commit()
    try:
        yield name
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {name}")
        pg_admin.commit()


def test_tables_lists_the_current_schema(ip: Shell, sales: str) -> None:
    frame = ip.value("%sqlcmd tables")
    assert list(frame.columns) == ["Name"]
    assert sales in set(frame["Name"])
    assert ip.value("%sqlcmd tables --schema pg_catalog")["Name"].str.startswith("pg_").all()


def test_columns_from_the_catalog(ip: Shell, sales: str) -> None:
    frame = ip.value(f"%sqlcmd columns --table {sales}")
    assert list(frame["name"]) == ["id", "amount", "region", "note"]
    assert list(frame["type"]) == ["integer", "numeric", "text", "text"]
    assert list(frame["nullable"]) == [False, True, True, True]
    assert list(frame["autoincrement"]) == [True, False, False, False]


def test_columns_of_a_missing_table(ip: Shell) -> None:
    run = ip.fail("%sqlcmd columns --table no_such_table_here")
    assert "there is no table no_such_table_here (%sqlcmd tables lists them)" in run.text


def test_profile_matches_jupysqls_numbers(ip: Shell, measured: str) -> None:
    profile = ip.value(f"%sqlcmd profile --table {measured}")
    assert list(profile.index) == PROFILE_ROWS
    for column, stats in JUPYSQL["profile"].items():  # type: ignore[union-attr]
        for stat, expected in stats.items():
            assert math.isclose(float(profile.loc[stat, column]), expected, abs_tol=1e-4), (
                column,
                stat,
            )
        assert math.isnan(profile.loc["top", column])


def test_profile_output_writes_html(ip: Shell, measured: str, tmp_path: object) -> None:
    path = tmp_path / "profile.html"  # type: ignore[operator]
    run = ip.ok(f"%sqlcmd profile --table {measured} --output {path}")
    assert f"Wrote the profile of {measured} to {path}." in run.out
    assert "<table" in path.read_text() and "skew" in path.read_text()


def test_profile_matches_numpy_on_the_same_rows(ip: Shell, sales: str) -> None:
    profile = ip.value(f"%sqlcmd profile --table {sales}")
    data = ip.value(f"%sql SELECT * FROM {sales}")
    amount = data["amount"].astype(float).to_numpy()
    expected = {
        "count": len(amount),
        "unique": len(set(amount)),
        "mean": amount.mean(),
        "std": amount.std(ddof=0),
        "min": amount.min(),
        "max": amount.max(),
    }
    for q, name in ((25, "25%"), (50, "50%"), (75, "75%")):
        expected[name] = np.percentile(amount, q, method="inverted_cdf")
    for stat, value in expected.items():
        assert math.isclose(float(profile.loc[stat, "amount"]), value, rel_tol=1e-9), stat
    note = data["note"].describe()  # count, unique, top, freq (non-null only)
    assert profile.loc["count", "note"] == note["count"]
    assert profile.loc["unique", "note"] == note["unique"]
    assert profile.loc["freq", "note"] == note["freq"]
    counts = data["note"].value_counts()
    assert profile.loc["top", "note"] == min(counts[counts == counts.max()].index)
    assert math.isnan(profile.loc["mean", "note"])


def test_profile_of_a_temporary_table_with_many_rows(ip: Shell) -> None:
    ip.ok(
        "%sql CREATE TEMP TABLE big AS "
        "SELECT g AS x, (g % 10)::text AS t FROM generate_series(1, 200000) g"
    )
    profile = ip.value("%sqlcmd profile --table big")
    assert profile.loc["count", "x"] == 200000
    assert profile.loc["max", "x"] == 200000.0
    assert profile.loc["unique", "t"] == 10


def test_test_passes_or_counts_the_failures(ip: Shell, sales: str) -> None:
    assert ip.value(f"%sqlcmd test --table {sales} --column amount --greater -1") is True
    assert ip.value(f"%sqlcmd test --table {sales} --column id --unique --no-nulls") is True
    run = ip.fail(f"%sqlcmd test --table {sales} --column note --no-nulls")
    assert f"test failed on {sales}: 125 rows have note NULL" in run.text
    run = ip.fail(f"%sqlcmd test --table {sales} --column amount --less-than 50")
    data = ip.value(f"%sql SELECT amount FROM {sales}")
    bad = int((data["amount"] >= 50).sum())
    assert f"{bad} rows have amount >= 50.0" in run.text


def test_sqlcmd_on_a_snippet(ip: Shell, sales: str) -> None:
    ip.ok(f"%%sql --save north --no-execute\nSELECT * FROM {sales} WHERE region = 'north'")
    frame = ip.value("%sqlcmd columns --table north")
    assert list(frame["name"]) == ["id", "amount", "region", "note"]
    profile = ip.value("%sqlcmd profile --table north")
    expected = ip.scalar(f"%sql SELECT count(*) FROM {sales} WHERE region = 'north'")
    assert profile.loc["count", "region"] == expected


def test_widgets_name_the_alternative(ip: Shell) -> None:
    assert "%sqlcmd profile --table t summarises them" in ip.fail("%sqlcmd explore").text
    assert "%sql postgresql://user@host/db connects" in ip.fail("%sqlcmd connect").text


def test_bad_arguments_are_one_line(ip: Shell) -> None:
    run = ip.fail("%sqlcmd columns")
    assert "%sqlcmd columns: the following arguments are required: -t/--table" in run.text
    assert "Traceback" not in run.text


# ------------------------------------------------------------------ sqlplot


@pytest.mark.parametrize(("column", "bins"), [("amount", 7), ("amount", 10), ("id", 7)])
def test_histogram_bars_match_jupysqls(ip: Shell, measured: str, column: str, bins: int) -> None:
    matplotlib.use("Agg")
    ax = ip.value(f"%sqlplot histogram --table {measured} --column {column} --bins {bins}")
    assert [patch.get_height() for patch in ax.patches] == JUPYSQL[(column, bins)]
    low, high = (0, 100) if column == "amount" else (1, 500)
    width = (high - low) / (bins - 1)
    centers = [patch.get_x() + patch.get_width() / 2 for patch in ax.patches]
    assert np.allclose(centers, [round(low / width + k) * width for k in range(bins)])
    matplotlib.pyplot.close("all")


def test_boxplot_matches_jupysql_and_numpy(ip: Shell, measured: str) -> None:
    matplotlib.use("Agg")
    from lunepool_magic.notebook.plots import box_stats
    from lunepool_magic.notebook.sqlcmd import source_for

    ax = ip.value(f"%sqlplot boxplot --table {measured} --column skew")
    assert ax.get_title() == f"'skew' from '{measured}'"
    stats = ip.session().call(
        lambda conn: box_stats(conn, source_for(measured, None, None), "skew"),
        timeout=5,
        what="test",
    )[0]
    for key, value in JUPYSQL["boxplot skew"].items():  # type: ignore[union-attr]
        assert stats[key] == value, key
    data = ip.value(f"%sql SELECT skew FROM {measured}")["skew"].to_numpy()
    q1, med, q3 = np.percentile(data, [25, 50, 75], method="inverted_cdf")
    assert (stats["q1"], stats["med"], stats["q3"]) == (q1, med, q3)
    assert math.isclose(stats["mean"], data.mean())
    matplotlib.pyplot.close("all")


def test_bar_and_pie_count_per_value(ip: Shell, sales: str) -> None:
    matplotlib.use("Agg")
    regions = ip.value(f"%sql SELECT region FROM {sales}")["region"]
    assert regions.isna().any()
    data = regions.value_counts().sort_index()  # NULLs left out, as JupySQL does
    ax = ip.value(f"%sqlplot bar --table {sales} --column region")
    assert [p.get_height() for p in ax.patches] == list(data)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(data.index)
    matplotlib.pyplot.close("all")
    ax = ip.value(f"%sqlplot pie --table {sales} --column region --show-numbers")
    shares = [f"{100 * n / data.sum():.2f}%" for n in data]
    texts = [t.get_text() for t in ax.texts]
    # matplotlib orders a pie's labels and percentages differently across releases.
    assert [t for t in texts if not t.endswith("%")] == list(data.index)
    assert [t for t in texts if t.endswith("%")] == shares
    matplotlib.pyplot.close("all")
    ax = ip.value(f"%sqlplot bar --table {sales} --column region --show-numbers --orient h")
    assert [t.get_text() for t in ax.texts] == [str(n) for n in data]
    matplotlib.pyplot.close("all")


def test_bar_with_a_column_of_heights(ip: Shell) -> None:
    matplotlib.use("Agg")
    ip.ok(
        "%sql CREATE TEMP TABLE sizes AS "
        "SELECT * FROM (VALUES ('x', 3), ('y', NULL), ('z', 5)) v(k, n)"
    )
    ax = ip.value("%sqlplot bar --table sizes --column k n")
    assert sorted(p.get_height() for p in ax.patches) == [3, 5]
    assert ax.get_ylabel() == "n"
    matplotlib.pyplot.close("all")


def test_histogram_with_a_snippet(ip: Shell, sales: str) -> None:
    matplotlib.use("Agg")
    ip.ok(f"%%sql --save south --no-execute\nSELECT * FROM {sales} WHERE region = 'south'")
    ax = ip.value("%sqlplot histogram --table south --column amount --bins 3 --with south")
    expected = ip.scalar(f"%sql SELECT count(*) FROM {sales} WHERE region = 'south'")
    assert sum(p.get_height() for p in ax.patches) == expected
    matplotlib.pyplot.close("all")


def test_breaks_names_the_alternative(ip: Shell) -> None:
    run = ip.fail("%sqlplot histogram --table t --column x --breaks 1 2 3")
    assert "--breaks and --binwidth are not available: --bins N sets equal-width bins" in run.text
