"""JupySQL's ways of connecting, through a real shell on the test server.

-A, --connections, switching by a bare alias (%sql one, %%sql one), %sql
engine with a SQLAlchemy Engine, --section with JupySQL's connections file
and with libpq's service file, hyphenated aliases, and the -a clash.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
from psycopg.conninfo import conninfo_to_dict
from support.shell import Shell, ip_fixture, url_with_password  # noqa: F401 (`ip`)


def test_capital_a_is_alias_and_connections_lists(ip: Shell, pg_url: str) -> None:
    ip.ok(f"%sql {pg_url} -A first")
    ip.ok(f"%sql {pg_url} -A my-second")
    listing = ip.value("%sql --connections")
    assert list(listing.index) == ["first", "my-second"]
    assert listing.loc["my-second", "current"] == "*"
    assert ip.ok("%sql first").out.startswith("Using 'first'")
    assert ip.ok("%sql my-second").out.startswith("Using 'my-second'")
    assert ip.magics.current_alias == "my-second"


def test_a_bare_alias_switches_the_current_connection(ip: Shell, pg_url: str) -> None:
    ip.ok(f"%sql {pg_url} --alias one")
    ip.ok("%sql SET application_name = 'on-one'")
    ip.ok(f"%sql {pg_url} --alias two")
    run = ip.ok("%sql one")
    assert run.out.startswith("Using 'one'")
    assert run.value is None
    assert ip.magics.current_alias == "one"
    assert ip.scalar("%sql SHOW application_name") == "on-one"


def test_a_cell_on_a_bare_alias_runs_there(ip: Shell, pg_url: str) -> None:
    ip.ok(f"%sql {pg_url} --alias one")
    ip.ok("%sql SET application_name = 'cell-one'")
    ip.ok(f"%sql {pg_url} --alias two")
    assert ip.value("%%sql one\nSHOW application_name").iat[0, 0] == "cell-one"
    assert ip.magics.current_alias == "one"


def test_a_word_that_is_no_alias_runs_as_sql(ip: Shell) -> None:
    run = ip.fail("%sql nothing_named_so")
    assert 'syntax error at or near "nothing_named_so"' in run.text


def test_sqlalchemy_engine_variable_connects_and_hides_the_password(ip: Shell, pg_url: str) -> None:
    conninfo, password = url_with_password(pg_url)
    params = conninfo_to_dict(conninfo)
    # A socket directory goes in the query string, as SQLAlchemy's users write it.
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=password,
        database=params.get("dbname"),
        query={k: params[k] for k in ("host", "port") if params.get(k)},
    )
    ip.user_ns["engine"] = sqlalchemy.create_engine(url)
    run = ip.ok("%sql engine")
    assert "as 'engine'" in run.out
    assert password not in run.text
    assert ip.scalar("%sql SELECT 1") == 1
    assert password not in repr(ip.value("%sql --list"))


def test_section_reads_jupysqls_connections_file(ip: Shell, pg_url: str, tmp_path: Path) -> None:
    params = conninfo_to_dict(pg_url)
    ini = tmp_path / "connections.ini"
    lines = ["[team-db]", "drivername = postgresql"]
    for ours, theirs in (("host", "host"), ("port", "port"), ("dbname", "database")):
        if params.get(ours):
            lines.append(f"{theirs} = {params[ours]}")
    if params.get("user"):
        lines.append(f"username = {params['user']}")
    lines.append("query = {'application_name': 'from-ini'}")
    ini.write_text("\n".join(lines) + "\n")
    ip.ok(f"%config SqlMagic.dsn_filename = '{ini}'")
    run = ip.ok("%sql --section team-db")
    assert f"--section team-db: [team-db] of {ini}." in run.out
    assert "as 'team-db'" in run.out
    assert ip.scalar("%sql SHOW application_name") == "from-ini"


def test_section_falls_back_to_libpq_service_file(
    ip: Shell, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = conninfo_to_dict(pg_url)
    service = tmp_path / "pg_service.conf"
    body = [f"{k}={v}" for k, v in params.items() if k in ("host", "port", "dbname", "user")]
    # A setting only the service file gives, to see that libpq read it.
    service.write_text("[warehouse]\n" + "\n".join(body) + "\noptions=-csearch_path=from_svc\n")
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    ip.ok(f"%config SqlMagic.dsn_filename = '{tmp_path / 'none.ini'}'")
    run = ip.ok("%sql --section warehouse")
    assert "--section warehouse: libpq service." in run.out
    assert ip.scalar("%sql SHOW search_path") == "from_svc"
    # libpq's own spelling works as a connection string too.
    ip.ok("%sql service=warehouse --alias svc")
    assert ip.scalar("%sql SHOW search_path") == "from_svc"


def test_section_of_another_database_says_so(ip: Shell, tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[lite]\ndrivername = sqlite\ndatabase = x.db\n")
    ip.ok(f"%config SqlMagic.dsn_filename = '{ini}'")
    run = ip.fail("%sql --section lite")
    assert f"section [lite] of {ini} is a sqlite connection; lunepool_magic connects to " in (
        run.text
    )


def test_jupysqls_connection_arguments_are_not_taken_for_an_alias(ip: Shell, pg_url: str) -> None:
    run = ip.fail(f"%sql {pg_url} -a '{{\"connect_timeout\": 5}}'")
    assert (
        "-a means --alias here; JupySQL's connection arguments (-a/--connection_arguments) "
        "go into the URL instead: %sql postgresql://host/db?connect_timeout=10&sslmode=require"
    ) in run.text
    assert not ip.magics.sessions
    run = ip.fail(f"%sql {pg_url} --creator make_conn")
    assert "--creator (a function that makes DBAPI connections) is not taken" in run.text


def test_a_dbapi_connection_variable_names_the_url_form(ip: Shell, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        ip.user_ns["conn"] = conn
        run = ip.fail("%sql conn")
    assert (
        "conn is a DB-API connection, which the pool cannot share: connect with its URL "
        "instead, %sql postgresql://user@host/db --alias conn"
    ) in run.text


def test_another_databases_url_says_postgresql_only(ip: Shell) -> None:
    run = ip.fail("%sql duckdb:///:memory:")
    assert "lunepool_magic connects to PostgreSQL only: %sql postgresql://user@host/db" in run.text
    assert "duckdb" not in run.text.replace("%sql duckdb", "")
    run = ip.fail("%sql mysql+pymysql://me:secret@h/db")
    assert "secret" not in run.text
