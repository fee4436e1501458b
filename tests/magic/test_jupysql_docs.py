"""Forms from JupySQL's documentation pages that failed here, through a real shell.

Found by running every form of JupySQL's user guide, how-to, API pages,
quick start, templating guide and PostgreSQL page here and in JupySQL
0.11.1 side by side; each test names the form and what it did before.
"""

from __future__ import annotations

from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)


def test_regression_close_takes_a_hyphenated_alias(ip: Shell, pg_url: str) -> None:
    # api/magic-sql: `%sql --close db-two` failed with "--close takes only a connection name".
    ip.ok(f"%sql {pg_url} --alias db-two")
    assert "db-two" in ip.ok("%sql --close db-two").out
    assert "db-two" not in ip.magics.sessions
