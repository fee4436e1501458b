"""Bad input through the magic: every cell gets a result or a clear error, and the pool survives.

Fuzzed (hypothesis, deterministic: ``derandomize=True``, bounded examples,
no example database) through a real ``InteractiveShell`` against the test
server: random bytes decoded as UTF-8 with ``surrogateescape`` (lone
surrogates) or as Latin-1 (control characters, NUL), as a ``%sql`` line and
as a ``%%sql`` cell; SQL-like cells built from the pieces that make the
lexer work (quotes, dollar quotes, comments, ``;``, ``:name``, ``%``,
``BEGIN ATOMIC``), unbalanced on purpose; magic lines mixing options and
SQL; parameter values that cannot be sent as they are (lone surrogates,
NUL, bytes that are not UTF-8, dicts that JSON cannot encode, unadaptable
objects). Explicit cases add huge cells and the bugs the fuzz found.

"A clear error" means: the cell fails with the magic's ``SqlCellError``
(shown psql-style: the first line is ``ERROR:  <what is wrong>``) or with
IPython's ``UsageError``; no Python traceback is shown; the message is not a
flood (at most ``MAX_ERROR_CHARS``). "The pool stays healthy": after every
example nothing is in use or waiting, no transaction is pinned, and, over a
whole test, no connection was lost or replaced (bad input must not cost the
user the session's temporary tables and settings).

Cells run two ways. Text a notebook user can type goes through
``run_cell`` as ``%sql LINE`` / ``%%sql LINE\\nCELL``, so IPython's own
input transformers take part. Every input also goes through
``get_ipython().run_line_magic / run_cell_magic`` with the text in a
variable, exactly as given: IPython itself cannot compile a cell whose
source holds a lone surrogate, but code (and a kernel's JSON messages) can
hand the magic such a string.

Bugs the fuzz found (each has a ``test_bug_...`` named after it, which fails
until the magic is fixed; the random tests above them fail on the same
inputs):

* NUL in the SQL is not refused: libpq cuts the statement at the NUL, so
  ``DELETE FROM t<NUL> WHERE id = 2`` deletes every row;
* a lone surrogate in the SQL, or in a str / list / array parameter, shows
  a Python traceback (``UnicodeEncodeError``);
* a dict parameter that JSON cannot encode (bytes inside, a circular
  reference) shows a Python traceback (``TypeError`` / ``ValueError``);
* a connection string with a lone surrogate shows a Python traceback; one
  with a NUL is silently cut there (``postgresql://a<NUL>b@host/db``
  connects to host ``a``);
* the error for a huge unterminated string is as huge as the cell (the
  server echoes the rest of the cell "at or near", and the magic prints it);
* a statement with more than 65535 parameters: libpq refuses it before
  sending, the connection is fine, yet the magic reports it lost and drops
  it, and the session's temporary tables with it.

A few inputs also go through a real kernel (jupyter_client) to show that
it, and its pool, survive them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from support.shell import CellRun, Shell, ip_fixture  # noqa: F401

from lunepool_magic.notebook.messages import SqlCellError

MAX_ERROR_CHARS = 4000
_PSQL_FIRST_LINE = re.compile(r"(ERROR|FATAL):  \S")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+", re.M)
# Deterministic and bounded; the shell (and its pool) is shared by the
# examples of a test on purpose: bad input must not leave anything behind.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no slow "explain" on failure
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Names the fuzzed SQL may refer to as :name (see the `fuzz` fixture).
PARAMETERS: dict[str, Any] = {
    "p_int": 7,
    "p_text": "it's 100% : fine",
    "p_bytes": b"\xff\xfe\x00not utf-8",
    "p_nul": "a\x00b",
    "p_surrogate": "caf\udce9",
    "p_list": ["a", "b\udc80"],
    "p_dict": {"a": b"\xff"},
}


# ------------------------------------------------------------------ helpers


def typeable(text: str) -> bool:
    """Whether a notebook cell could hold ``text`` (IPython compiles cells as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def run_magic(ip: Shell, line: str, cell: str | None = None, **variables: Any) -> CellRun:
    """Run the magic on exactly ``line`` / ``cell``, passed in variables, through run_cell."""
    ns = ip.user_ns
    ns.update(variables)
    ns["_fuzz_line"] = line
    if cell is None:
        return ip.run("get_ipython().run_line_magic('sql', _fuzz_line)")
    ns["_fuzz_cell"] = cell
    return ip.run("get_ipython().run_cell_magic('sql', _fuzz_line, _fuzz_cell)")


def clear_error_problem(run: CellRun) -> str | None:
    """None if ``run`` succeeded or failed clearly; else what is wrong with how it failed."""
    if run.success:
        return None
    error = run.error
    shown = run.text
    if _TRACEBACK.search(shown):
        return f"a Python traceback ({type(error).__name__}: {error})"
    if isinstance(error, SqlCellError):
        if not _PSQL_FIRST_LINE.match(error.lines[0]):
            return f"first line is not 'ERROR:  message': {error.lines[0]!r}"
        text = str(error)
    elif isinstance(error, UsageError):
        text = str(error)
        if not text.strip():
            return "an empty UsageError"
    else:
        return f"{type(error).__name__} is not a documented error: {error!r}"
    if len(text) > MAX_ERROR_CHARS:
        return f"{len(text)} characters of error message (first line {text[:120]!r})"
    return None


def assert_clear(run: CellRun, what: str) -> None:
    problem = clear_error_problem(run)
    assert problem is None, f"{what}: {problem}\nshown:\n{run.text[-2000:]}"


def assert_healthy(ip: Shell) -> None:
    """Nothing in use, nobody waiting, no transaction pinned, within max_size."""
    session = ip.session()
    stats = session.pool.stats()
    assert (stats.in_use, stats.waiting, session.transaction) == (0, 0, ""), stats
    assert stats.size <= stats.max_size, stats


def assert_session_kept(ip: Shell, pid: int) -> None:
    """The cell after the bad input runs, on the very connection the session had."""
    assert ip.backend_pid() == pid
    stats = ip.session().pool.stats()
    assert (stats.created, stats.broken) == (1, 0), stats
    assert_healthy(ip)


def check(ip: Shell, line: str, cell: str | None = None, **variables: Any) -> list[CellRun]:
    """Run the input every way it can be run; each must succeed or fail clearly."""
    runs = [run_magic(ip, line, cell, **variables)]
    assert_clear(runs[-1], f"magic({line!r}, {cell!r})")
    # A line break of any kind (str.splitlines: \x0b, \x0c, \x1c, \u2028, ...) would end
    # a typed %sql line, and IPython would run the rest as Python.
    one_line = len((line + "|").splitlines()) == 1
    if typeable(line) and typeable(cell or "") and one_line:
        source = f"%sql {line}" if cell is None else f"%%sql {line}\n{cell}"
        runs.append(ip.run(source))
        assert_clear(runs[-1], f"cell {source!r}")
    assert_healthy(ip)
    return runs


@pytest.fixture
def fuzz(ip: Shell) -> tuple[Shell, int]:
    """The shell, connected, with PARAMETERS defined; and the connection's backend pid."""
    ip.user_ns.update(PARAMETERS)
    return ip, ip.backend_pid()


# ----------------------------------------------------------------- the fuzz

_DECODINGS = {
    "utf-8+surrogateescape": lambda b: b.decode("utf-8", "surrogateescape"),
    "latin-1": lambda b: b.decode("latin-1"),
}


@FUZZ
@given(
    data=st.binary(max_size=200),
    decoding=st.sampled_from(sorted(_DECODINGS)),
    as_cell=st.booleans(),
)
def test_fuzz_random_bytes(
    fuzz: tuple[Shell, int], data: bytes, decoding: str, as_cell: bool
) -> None:
    ip, pid = fuzz
    text = _DECODINGS[decoding](data)
    if as_cell:
        check(ip, "", text)
    else:
        check(ip, text)
    assert_session_kept(ip, pid)


# Pieces of SQL that exercise the lexer, the binder and the server's parser.
# Nothing here can change the database: no CREATE/DROP/INSERT, and BEGIN
# only as part of BEGIN ATOMIC (a syntax error outside CREATE FUNCTION ...
# RETURNS, which is not among the pieces).
_SQL_PIECES = [
    "SELECT ",
    "SELECT 1",
    "1",
    ", ",
    " AS x",
    " ",
    "\n",
    "\t",
    ";",
    "'",
    "''",
    "'a:b'",
    '"',
    '"q;"',
    "E'",
    "\\",
    "\\'",
    "U&'",
    "$$",
    "$a$",
    "$1",
    "$",
    "--",
    "-- c\n",
    "/*",
    "*/",
    ":",
    "::",
    "::int",
    ":p_int",
    ":p_int ",
    ":p_text ",
    ":p_bytes ",
    ":p_nul ",
    ":p_surrogate ",
    ":p_list ",
    ":p_dict ",
    ":missing_name ",
    "[",
    "]",
    "[1:2]",
    "ARRAY[",
    "(",
    ")",
    "%",
    "%s",
    "%(x)s",
    "%%",
    "{x}",
    "BEGIN ATOMIC ",
    "CREATE FUNCTION f() ",
    "END",
    "CASE ",
    "\x00",
    "\udc80",
    "\ud83d",
    "\u00a0",
    "é",
    "😀",
    "\r\n",
]
_SQL_TEXT = st.lists(
    st.one_of(
        st.sampled_from(_SQL_PIECES),
        st.text(st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs"]), max_size=4),
    ),
    max_size=25,
).map("".join)


@FUZZ
@given(text=_SQL_TEXT, as_cell=st.booleans())
def test_fuzz_sql_like_cells(fuzz: tuple[Shell, int], text: str, as_cell: bool) -> None:
    ip, pid = fuzz
    if as_cell:
        check(ip, "", text)
    else:
        check(ip, text)
    assert_session_kept(ip, pid)


# Options and captures on the magic line (no --close, --password or
# connection targets: those open connections or prompt; explicit cases below).
_LINE_PIECES = [
    "--alias",
    "-a",
    "default",
    "nosuch",
    "--out",
    "-o",
    "fz_out",
    "fz_out <<",
    "<<",
    "--list",
    "-l",
    "--alias=default",
    "--out=",
    "--",
    "-",
    "--bogus",
    "=",
    "'",
    '"',
    "1x",
    "\x00",
    "\udc80",
]


@FUZZ
@given(
    line=st.lists(st.sampled_from(_LINE_PIECES), max_size=6).map(" ".join),
    sql=_SQL_TEXT,
    as_cell=st.booleans(),
)
def test_fuzz_magic_lines(fuzz: tuple[Shell, int], line: str, sql: str, as_cell: bool) -> None:
    ip, pid = fuzz
    if as_cell:
        check(ip, line, sql)
    else:
        check(ip, f"{line} {sql}")
    assert_session_kept(ip, pid)


_SCALARS = st.one_of(
    st.text(st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs"]), max_size=20),
    st.binary(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.just(object()),
    st.just({1, 2}),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=8,
)


@FUZZ
@given(
    value=_VALUES,
    statement=st.sampled_from(
        [
            "SELECT :v AS v",
            "SELECT :v::text AS v",
            "SELECT :v::jsonb AS v",
            "SELECT pg_typeof(:v) AS t",
            "SELECT 1 WHERE :v IS NULL",
            "SELECT :v AS a, :v AS b, '100%' AS c",
        ]
    ),
)
def test_fuzz_parameter_values(fuzz: tuple[Shell, int], value: Any, statement: str) -> None:
    ip, pid = fuzz
    (run, *_) = check(ip, statement, v=value)
    if (
        run.success
        and statement == "SELECT :v AS v"
        and type(value) in (str, bytes, int, bool)
        and run.value is not None
    ):
        assert run.value.iat[0, 0] == value  # what was sent is what came back
    assert_session_kept(ip, pid)


def test_fuzz_leaves_the_session_on_its_connection(fuzz: tuple[Shell, int]) -> None:
    """After a run of the fuzz's worst inputs, the session is still the one it was."""
    ip, pid = fuzz
    ip.ok("%sql CREATE TEMP TABLE fz_kept AS SELECT 1 AS one")
    for line, cell in [
        ("SELECT '", None),
        ("", "SELECT $a$ unterminated $b$"),
        ("", "/* /* nested */"),
        ("SELECT :missing_name", None),
        ("SELECT :p_bytes::text", None),
        ("SELECT :p_nul", None),
        ("\x01\x02\x7f", None),
        ("", "SELECT 1; SELECT 'x"),
        ("--alias nosuch SELECT 1", None),
    ]:
        check(ip, line, cell)
    assert ip.scalar("%sql SELECT one FROM fz_kept") == 1  # temp table still there
    assert_session_kept(ip, pid)


# -------------------------------------------------------- explicit: huge cells


def test_huge_literal_round_trips(fuzz: tuple[Shell, int]) -> None:
    ip, pid = fuzz
    big = "x" * 2_000_000
    assert ip.scalar(f"%%sql\nSELECT length('{big}') AS n") == len(big)
    assert_session_kept(ip, pid)


def test_many_statements_in_one_cell(fuzz: tuple[Shell, int]) -> None:
    ip, pid = fuzz
    cell = "SELECT 1;\n" * 2000 + "SELECT 2 AS last"
    assert ip.scalar(f"%%sql\n{cell}") == 2
    assert_session_kept(ip, pid)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("SELECT " + "(" * 20_000 + "1" + ")" * 20_000, r"memory exhausted|stack depth"),
        ("SELECT $x$" + "y" * 1_000_000, r"unterminated dollar-quoted string"),
        ("/*" + " z" * 500_000, r"unterminated /\* comment"),
        ("SELECT 1; " * 3 + "SELECT '" + "q" * 1_000_000 + "'' ", r"unterminated quoted"),
    ],
    ids=["deep-nesting", "unterminated-dollar-quote", "unterminated-comment", "after-3-ok"],
)
def test_huge_bad_cells_fail_clearly(fuzz: tuple[Shell, int], cell: str, expected: str) -> None:
    ip, pid = fuzz
    for run in check(ip, "", cell):
        assert not run.success
        assert re.search(expected, str(run.error)), str(run.error)[:500]
    assert_session_kept(ip, pid)


# ---------------------------------------------- explicit: parameters and bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\x00b", r"NUL"),
        (["a", "b\x00"], r"NUL"),
        (object(), r"cannot adapt type 'object'"),
        ([1, "a"], r"mixed types"),
        ((i for i in range(3)), r"cannot adapt type 'generator'"),
        ({"a": "\ud800"}, r"surrogate"),  # json escapes it; the server refuses
    ],
    ids=["nul-str", "nul-in-list", "object", "mixed-list", "generator", "surrogate-in-dict"],
)
def test_unsendable_parameter_values_fail_clearly(
    fuzz: tuple[Shell, int], value: Any, expected: str
) -> None:
    ip, pid = fuzz
    for run in check(ip, "SELECT :v AS v", v=value):
        assert not run.success
        assert re.search(expected, str(run.error)), str(run.error)
    assert_session_kept(ip, pid)


def test_bytes_that_are_not_utf8_are_sent_as_bytea(fuzz: tuple[Shell, int]) -> None:
    ip, pid = fuzz
    value = b"\xff\xfe\x00\xc3\x28 not utf-8"
    (run, *_) = check(ip, "SELECT :v AS v, length(:v) AS n", v=value)
    assert run.success
    assert run.value.iat[0, 0] == value
    assert run.value.iat[0, 1] == len(value)
    assert_session_kept(ip, pid)


def test_valid_unicode_round_trips(fuzz: tuple[Shell, int]) -> None:
    ip, pid = fuzz
    value = "café 😀 \u00a0 e\u0301 ' %s %(x)s :p_int"
    (run, *_) = check(ip, "SELECT :v AS v", v=value)
    assert run.value.iat[0, 0] == value
    assert ip.scalar("%sql SELECT 'café 😀 :not_a_param' AS v") == "café 😀 :not_a_param"
    assert_session_kept(ip, pid)


# ------------------------------------------------- the bugs the fuzz found


def test_bug_nul_in_sql_is_refused_not_cut_short(fuzz: tuple[Shell, int]) -> None:
    """libpq ends the statement at a NUL: ``DELETE FROM t<NUL> WHERE id = 2`` deleted every row."""
    ip, pid = fuzz
    ip.ok("%sql CREATE TEMP TABLE fz_rows AS SELECT g AS id FROM generate_series(1, 3) g")
    for line, cell in [
        ("", "DELETE FROM fz_rows\x00 WHERE id = 2"),
        ("DELETE FROM fz_rows\x00 WHERE id = :p_int", None),
        ("", "SELECT 1;\nDELETE FROM fz_rows\x00 WHERE id = 2"),
    ]:
        for run in check(ip, line, cell):
            assert not run.success, f"{line!r} {cell!r} ran: {run.text}"
            assert "NUL" in str(run.error)
        assert ip.scalar("%sql SELECT count(*) FROM fz_rows") == 3
    assert_session_kept(ip, pid)


@pytest.mark.parametrize(
    ("line", "cell"),
    [("SELECT '\udc80' AS x", None), ("", "SELECT 1 AS ok;\nSELECT 'caf\udce9' AS x")],
    ids=["line", "second-line-of-cell"],
)
def test_bug_lone_surrogate_in_sql_shows_a_traceback(
    fuzz: tuple[Shell, int], line: str, cell: str | None
) -> None:
    ip, pid = fuzz
    for run in check(ip, line, cell):
        assert not run.success
        assert re.search(r"surrogate|cannot be encoded", str(run.error)), str(run.error)
    assert_session_kept(ip, pid)


@pytest.mark.parametrize(
    "value",
    [
        "caf\udce9",
        ["ok", "\ud800"],
        np.array(["ok", "b\udc80"], dtype=object),
        b"caf\xe9".decode("utf-8", "surrogateescape"),
    ],
    ids=["str", "list", "numpy-array", "surrogateescape-decoded"],
)
def test_bug_lone_surrogate_in_a_parameter_shows_a_traceback(
    fuzz: tuple[Shell, int], value: Any
) -> None:
    ip, pid = fuzz
    for run in check(ip, "SELECT :v AS v", v=value):
        assert not run.success
        message = str(run.error)
        assert ":v" in message and re.search(r"surrogate|cannot be encoded", message), message
    assert_session_kept(ip, pid)


def _circular() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


@pytest.mark.parametrize(
    "value", [{"a": b"\xff"}, {"s": {1, 2}}, _circular()], ids=["bytes", "set", "circular"]
)
def test_bug_dict_parameter_json_cannot_encode_shows_a_traceback(
    fuzz: tuple[Shell, int], value: dict[str, Any]
) -> None:
    ip, pid = fuzz
    for run in check(ip, "SELECT :d AS d", d=value):
        assert not run.success
        assert re.search(r"json", str(run.error), re.I), str(run.error)
    assert_session_kept(ip, pid)


@pytest.mark.parametrize(
    "target",
    [
        "postgresql://u\udc80@127.0.0.1:1/db",
        "host=127.0.0.1 port=1 dbname=caf\udce9",
        "postgresql://127.0.0.1\x00.example.invalid:1/db",
        "host=127.0.0.1 port=1 dbname=a\x00b",
    ],
    ids=["url-surrogate", "conninfo-surrogate", "url-nul", "conninfo-nul"],
)
def test_bug_connection_string_with_surrogate_or_nul(fuzz: tuple[Shell, int], target: str) -> None:
    """A surrogate showed a traceback; a NUL silently cut the string (another host, another db)."""
    ip, pid = fuzz
    for run in check(ip, f"{target} --alias fz_conn"):
        assert not run.success
        assert isinstance(run.error, UsageError), repr(run.error)
        assert re.search(r"NUL|surrogate", str(run.error)), str(run.error)
    assert "fz_conn" not in ip.magics.sessions
    assert_session_kept(ip, pid)


def test_bug_error_of_a_huge_unterminated_string_is_as_huge_as_the_cell(
    fuzz: tuple[Shell, int],
) -> None:
    """The server echoes the rest of the cell "at or near"; the magic printed all of it."""
    ip, pid = fuzz
    for cell in ("SELECT '" + "a" * 200_000, "SELECT 1, '" + "a\n" * 100_000):
        for run in check(ip, "", cell):
            assert not run.success
            assert "unterminated quoted string" in str(run.error)
    assert_session_kept(ip, pid)


def test_bug_too_many_parameters_cost_the_session(fuzz: tuple[Shell, int]) -> None:
    """libpq refuses more than 65535 parameters before sending anything; the connection is fine.

    The refusal is an OperationalError without SQLSTATE, which the discard
    table reads as a lost connection: the magic said "The connection to the
    server was lost" and dropped the session's temporary tables.
    """
    ip, pid = fuzz
    ip.ok("%sql CREATE TEMP TABLE fz_kept AS SELECT 1 AS one")
    names = {f"fz_p{i}": i for i in range(70_000)}
    cell = "SELECT " + ", ".join(f":{name}" for name in names)
    for run in check(ip, "", cell, **names):
        assert not run.success
        assert "65535" in str(run.error)
        assert "lost" not in str(run.error)
    assert ip.scalar("%sql SELECT one FROM fz_kept") == 1
    assert_session_kept(ip, pid)


# ------------------------------------------------------------ in a real kernel

# Cells as a notebook sends them (JSON text: NUL and every character travel).
_KERNEL_BAD_CELLS = [
    "%%sql\nSELECT 'a\x00b' AS x",
    "%sql SELECT 'unbalanced",
    "%%sql\nSELECT $tag$ no end",
    "%sql \x01\x02\x7f\x80\xff",
    "%sql SELECT :fz_nowhere",
    "fz_b = b'\\xff\\xfe'\n%sql SELECT :fz_b AS b",
    "fz_s = 'a\\x00b'\n%sql SELECT :fz_s AS s",
    "%%sql\n" + "SELECT 1;\n" * 500 + "SELECT '" + "x" * 500_000,
    "%sql --bogus",
]
# The same, for what only code can hand the magic (bugs above: tracebacks today).
_KERNEL_TRACEBACK_CELLS = [
    "fz_s = 'caf\\udce9'\n%sql SELECT :fz_s AS s",
    "get_ipython().run_line_magic('sql', \"SELECT '\\udc80'\")",
    "fz_d = {'a': b'\\xff'}\n%sql SELECT :fz_d AS d",
]


@pytest.fixture(scope="module")
def fuzz_kernel(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real kernel for this module's kernel tests (starting one costs seconds)."""
    pytest.importorskip("jupyter_client")
    from support.kernel import start_kernel

    with start_kernel(pg_url, tmp_path_factory.mktemp("fuzz-kernel")) as kernel:
        yield kernel


def _kernel_pid(kernel: Any) -> int:
    kernel.ok("%sql fz_pid << SELECT pg_backend_pid()")
    return int(kernel.value("int(fz_pid.iat[0, 0])"))


@pytest.mark.kernel
def test_bad_input_leaves_a_real_kernel_and_its_pool_healthy(fuzz_kernel: Any) -> None:
    kernel = fuzz_kernel
    pid = _kernel_pid(kernel)
    for code in _KERNEL_BAD_CELLS + _KERNEL_TRACEBACK_CELLS:
        reply = kernel.run(code)
        assert reply.status in ("ok", "error"), reply
        assert kernel.manager.is_alive()
    assert "42" in kernel.ok("%sql SELECT 42 AS answer").text
    assert _kernel_pid(kernel) == pid  # the same connection: the session survived
    stats = kernel.pool_stats()
    assert stats is not None
    assert (stats["in_use"], stats["waiting"], stats["transaction"]) == (0, 0, ""), stats
    assert (stats["created"], stats["broken"]) == (1, 0), stats


@pytest.mark.kernel
def test_bad_input_in_a_real_kernel_shows_clear_errors(fuzz_kernel: Any) -> None:
    kernel = fuzz_kernel
    failures = []
    for code in _KERNEL_BAD_CELLS + _KERNEL_TRACEBACK_CELLS:
        reply = kernel.run(code)
        if reply.status == "ok":
            continue
        if reply.error is None and reply.stream("stderr").startswith("UsageError: "):
            continue  # IPython prints a UsageError's message alone, to stderr
        error = reply.error or {}
        lines = error.get("traceback") or [""]
        text = "\n".join(lines)
        clear = (
            error.get("ename") in ("SqlCellError", "UsageError")
            and not _TRACEBACK.search(reply.text)
            and (error.get("ename") == "UsageError" or _PSQL_FIRST_LINE.match(lines[0]))
            and len(text) <= MAX_ERROR_CHARS
        )
        if not clear:
            failures.append(f"{code[:60]!r}: {error.get('ename')}: {text[:200]!r}")
    assert not failures, "\n".join(failures)


def test_a_dict_nested_too_deeply_for_json_is_a_clear_error(ip: Shell) -> None:
    # Issue 14: a raw RecursionError before; the session survives.
    ip.shell.user_ns["deep"] = nested = {}
    for _ in range(10_000):  # deeper than json.dumps takes on Python 3.10-3.13
        nested["a"] = nested = {}
    run = ip.fail("%sql SELECT :deep AS d")
    assert "nested too deeply for Python's json module" in run.out + run.err
    assert "Traceback" not in run.text
    assert ip.scalar("%sql SELECT 1") == 1


def test_a_pandas_text_series_with_missing_values_binds_them_as_null(ip: Shell) -> None:
    # Issue 14: pandas 3's "str" Series holds NaN for missing values, which
    # psycopg refused ("cannot dump lists of mixed types").
    try:
        dtype = pd.StringDtype("python", na_value=np.nan)  # what pandas 3 calls "str"
    except TypeError:  # pandas 2 has no NaN-valued string dtype; NA is its missing value
        dtype = pd.StringDtype("python")
    ip.shell.user_ns["names"] = pd.Series(["a", None, "b"], dtype=dtype)
    frame = ip.value("%sql SELECT unnest(:names::text[]) AS n")
    assert frame["n"].tolist() == ["a", pd.NA, "b"]
