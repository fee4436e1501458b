"""``--output`` and ``%config LunepoolMagic.output`` (issue 16): pandas, Arrow, polars cells."""

from __future__ import annotations

import sys

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from support.shell import Shell, ip_fixture  # noqa: F401

QUERY = "SELECT g, g::text AS t FROM generate_series(1, 5) AS g"


@pytest.mark.parametrize(
    ("output", "cls"), [("pandas", pd.DataFrame), ("arrow", pa.Table), ("polars", pl.DataFrame)]
)
def test_output_per_cell(ip: Shell, output: str, cls: type) -> None:
    value = ip.value(f"%sql --output {output} {QUERY}")
    assert isinstance(value, cls)
    column = value["g"] if output != "arrow" else value.column("g")
    assert list(column.to_pylist() if output == "arrow" else column.to_list()) == [1, 2, 3, 4, 5]
    assert isinstance(ip.value(f"%sql {QUERY}"), pd.DataFrame)  # the setting is unchanged


def test_output_setting_and_everything_that_goes_with_it(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.output = 'polars'")
    assert isinstance(ip.value(f"%sql {QUERY}"), pl.DataFrame)
    ip.ok(f"%sql lpm_out << {QUERY}")  # VAR <<
    assert isinstance(ip.user_ns["lpm_out"], pl.DataFrame)
    cut = ip.ok(f"%sql --limit 2 {QUERY}")  # --limit
    assert cut.value.shape == (2, 2) and "Showing the first 2 rows" in cut.out
    ip.ok("%config LunepoolMagic.row_limit = 3")  # row_limit, row path too (no FROM)
    assert ip.value("%sql SELECT generate_series(1, 10) AS g").shape == (3, 1)
    ip.ok("%config LunepoolMagic.row_limit = None")
    assert isinstance(ip.value(f"%sql --output pandas {QUERY}"), pd.DataFrame)
    ip.ok("%config LunepoolMagic.output = 'pandas'")


def test_background_jobs_keep_the_output(ip: Shell) -> None:
    ip.ok(f"%sql --background --output arrow lpm_bg_arrow << {QUERY}")
    ip.ok("%sql --wait")
    assert isinstance(ip.user_ns["lpm_bg_arrow"], pa.Table)
    assert ip.user_ns["lpm_bg_arrow"].num_rows == 5


def test_bad_output_and_missing_polars(ip: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = ip.fail(f"%sql --output csv {QUERY}")
    assert "--output takes pandas, arrow or polars, not 'csv'" in bad.text + str(bad.error)
    monkeypatch.setitem(sys.modules, "polars", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    missing = ip.fail(f"%sql --output polars {QUERY}")
    assert "--output polars needs the polars package: pip install polars" in (
        missing.text + str(missing.error)
    )
