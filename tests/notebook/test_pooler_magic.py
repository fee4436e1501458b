"""Issue 20 in the magic: --pgbouncer, the pgbouncer and idle_release settings, the listing."""

from __future__ import annotations

import psycopg
import pytest
from support.backends import wait_gone
from support.shell import Shell, ip_fixture  # noqa: F401

from lunepool_magic.notebook.options import OptionError, parse_line
from lunepool_magic.notebook.pooler import POOLER_MODE_NOTE


def test_the_option_goes_with_a_connection_string() -> None:
    line = parse_line("postgresql://me@h/db --pgbouncer --alias team")
    assert (line.target, line.pgbouncer, line.alias) == ("postgresql://me@h/db", True, "team")
    assert parse_line("postgresql://me@h/db").pgbouncer is False
    with pytest.raises(OptionError, match="takes no value"):
        parse_line("postgresql://me@h/db --pgbouncer=yes")


def test_pgbouncer_without_a_url_is_a_one_line_usage_error(ip: Shell) -> None:
    run = ip.fail("%sql --pgbouncer")
    assert "--pgbouncer goes with a connection string" in run.text
    assert len(str(run.error).splitlines()) == 1


def test_pooler_mode_through_pgbouncer_says_once_and_notes_session_state(
    ip: Shell, pgbouncer_url: str, pg_url: str
) -> None:
    connect = ip.ok(f"%sql {pgbouncer_url} --alias pb --pgbouncer")
    assert POOLER_MODE_NOTE in connect.err
    again = ip.ok(f"%sql {pgbouncer_url} --alias pb --pgbouncer")  # the same session: said once
    assert POOLER_MODE_NOTE not in again.text
    session = ip.session("pb")
    assert session.pgbouncer and session.pool.pgbouncer
    for i in range(8):  # past psycopg's prepare threshold
        ip.user_ns["i"] = i
        assert ip.scalar("%sql --alias pb SELECT :i::int + 1") == i + 1
    noted = ip.ok("%%sql --alias pb\nCREATE TEMP TABLE t (a int);\nSELECT 1")
    assert "Note: pooler mode: CREATE TEMP outside a transaction" in noted.err
    frame = ip.value("%sql --list")
    assert list(frame.index) == ["pb"] and frame.loc["pb", "pooler"] == "pgbouncer"
    ip.ok(f"%sql {pg_url} --alias direct")
    assert ip.value("%sql --list").loc["direct", "pooler"] == ""


def test_the_setting_turns_pooler_mode_on_for_new_connections(
    ip: Shell, pgbouncer_url: str
) -> None:
    assert (
        "applies to connections made from now on"
        not in ip.ok("%config LunepoolMagic.pgbouncer = True").text
    )  # nothing connected yet: nothing to say
    connect = ip.ok(f"%sql {pgbouncer_url} --alias pb")
    assert POOLER_MODE_NOTE in connect.err and ip.session("pb").pgbouncer
    changed = ip.ok("%config LunepoolMagic.pgbouncer = False")
    assert "applies to connections made from now on" in changed.out
    assert ip.session("pb").pgbouncer  # the existing connection keeps its mode


def test_without_pooler_mode_a_connection_through_pgbouncer_gets_a_note(
    ip: Shell, pgbouncer_url: str
) -> None:
    connect = ip.ok(f"%sql {pgbouncer_url} --alias pb")
    assert "goes through a pooler" in connect.err and "--pgbouncer" in connect.err
    # Connecting again with --pgbouncer replaces the session, in pooler mode.
    ip.ok(f"%sql {pgbouncer_url} --alias pb --pgbouncer")
    assert ip.session("pb").pgbouncer


def test_a_direct_connection_gets_no_pooler_note(ip: Shell, pg_url: str) -> None:
    assert ip.ok(f"%sql {pg_url} --alias direct").err == ""


def test_idle_release_from_config_gives_back_the_connection(
    ip: Shell, pg_admin: psycopg.Connection, pg_url: str
) -> None:
    assert ip.magics.idle_release == 10.0
    pid = ip.backend_pid()
    ip.ok("%sql CREATE TEMP TABLE kept_here (a int)")
    ip.ok(f"%sql {pg_url} --alias other")
    other_pid = ip.backend_pid("%sql --alias other")
    ip.ok("%config LunepoolMagic.idle_release = 0.0")
    releaser = ip.magics._connections.releaser
    assert releaser.wait_pass(10.0)
    wait_gone(pg_admin, other_pid)
    frame = ip.value("%sql --list")
    assert frame.loc["other", "size"] == 0 and frame.loc["other", "kept"] == ""
    assert frame.loc["default", "kept"] == f"pid {pid}: temporary table kept_here"
    assert ip.backend_pid("%sql --alias default") == pid
    reconnected = ip.ok("%sql --alias other SELECT 1")
    assert reconnected.err == ""  # no "session lost": nothing was
