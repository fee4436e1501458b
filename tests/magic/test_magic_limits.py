"""Row limits in the magic (issue 5): --limit N and %config LunepoolMagic.row_limit."""

from __future__ import annotations

from IPython.core.error import UsageError
from support.shell import ip_fixture  # noqa: F401


def test_limit_stops_at_n_rows_and_says_the_result_was_cut(ip) -> None:
    run = ip.ok("%sql --limit 3 SELECT g FROM generate_series(1, 10) g")
    assert run.value["g"].tolist() == [1, 2, 3]
    assert "Showing the first 3 rows; the result has more" in run.out


def test_a_result_within_the_limit_is_not_reported_as_cut(ip) -> None:
    run = ip.ok("%sql --limit 10 SELECT g FROM generate_series(1, 10) g")
    assert len(run.value) == 10
    assert "Showing the first" not in run.out


def test_row_limit_config_applies_to_every_cell(ip) -> None:
    ip.ok("%config LunepoolMagic.row_limit = 2")
    run = ip.ok("%%sql\nSELECT g FROM generate_series(1, 5) g")
    assert run.value["g"].tolist() == [1, 2]
    assert "Showing the first 2 rows" in run.out
    ip.ok("%config LunepoolMagic.row_limit = None")
    assert len(ip.value("%sql SELECT g FROM generate_series(1, 5) g")) == 5


def test_limit_must_be_a_number(ip) -> None:
    run = ip.fail("%sql --limit many SELECT 1")
    assert isinstance(run.error, UsageError) or "--limit takes a number of rows" in run.text
    assert "--limit takes a number of rows" in run.text + str(run.error)
