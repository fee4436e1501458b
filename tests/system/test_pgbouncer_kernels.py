"""Issue 20: two real kernels of a team taking turns through a real PgBouncer in transaction mode.

What the wrapper's own PgBouncer test (tests/postgres/test_postgres_pgbouncer.py)
shows for two clients, shown here for the magic: a cell repeated past
psycopg's prepare threshold (5) fails once two kernels share the pooler's
server connections, and says to connect with ``--pgbouncer``; with pooler
mode on it keeps working. A ``BEGIN`` stays on one server connection across
cells while the other kernel runs cells in between, and the idle release
gives back the kernel's connection to PgBouncer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support.pgbouncer import PgBouncer, find_pgbouncer

pytest.importorskip("jupyter_client")
from support.kernel import Kernel, start_kernel

pytestmark = [pytest.mark.kernel, pytest.mark.pgbouncer]

REPEATS = 12  # twice psycopg's prepare threshold (5) and more
CELL = "%sql SELECT :i::int + 1 AS next"


@pytest.fixture(scope="module")
def bouncer(pg_url: str) -> Iterator[PgBouncer]:
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    with PgBouncer(pg_url, pool_mode="transaction") as started:
        yield started


@pytest.fixture(scope="module")
def kernels(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Kernel]]:
    """Two kernels of a team, started once for the module."""
    with (
        start_kernel(pg_url, Path(tmp_path_factory.mktemp("kernel-a"))) as first,
        start_kernel(pg_url, Path(tmp_path_factory.mktemp("kernel-b"))) as second,
    ):
        yield [first, second]


def connect(kernel: Kernel, url: str, alias: str, pooler_mode: bool) -> str:
    """Connect ``alias`` through PgBouncer; what the cell printed to stderr."""
    flag = " --pgbouncer" if pooler_mode else ""
    return kernel.ok(f"%sql {url} --alias {alias}{flag}").stream("stderr")


def take_turns(kernels: list[Kernel], alias: str) -> list[str]:
    """Each kernel runs the same parametrized cell REPEATS times, in turn; the replies' texts."""
    texts = []
    for i in range(REPEATS):
        for kernel in kernels:
            reply = kernel.run(f"i = {i}\n{CELL.replace('%sql', f'%sql --alias {alias}')}")
            texts.append(reply.text)
            if reply.status != "ok":
                return texts
    return texts


def test_repeated_cells_break_without_pooler_mode_and_the_cell_says_what_to_set(
    kernels: list[Kernel], bouncer: PgBouncer
) -> None:
    notes = [connect(kernel, bouncer.url, "plain", pooler_mode=False) for kernel in kernels]
    for note in notes:
        assert "goes through a pooler" in note and "--pgbouncer" in note
    texts = take_turns(kernels, "plain")
    assert len(texts) < 2 * REPEATS, "expected a prepared-statement clash through PgBouncer"
    failed = texts[-1]
    assert "_pg3_" in failed  # psycopg's automatic statement, named by the server
    lines = failed.splitlines()
    hint = next(i for i, line in enumerate(lines) if line.startswith("HINT:  a transaction-mode"))
    assert lines[hint + 1].startswith("(SQLSTATE 42P05") or lines[hint + 1].startswith(
        "(SQLSTATE 26000"
    )  # the hint comes before the SQLSTATE line, as psql puts HINT last of the server's lines
    assert "--pgbouncer" in failed
    for kernel in kernels:
        kernel.ok("%sql --close plain")


def test_with_pooler_mode_repeated_cells_keep_working(
    kernels: list[Kernel], bouncer: PgBouncer
) -> None:
    for kernel in kernels:
        note = connect(kernel, bouncer.url, "pooled", pooler_mode=True)
        assert "pooler mode (--pgbouncer)" in note and "goes through a pooler" not in note
    texts = take_turns(kernels, "pooled")
    answers = [re.search(r"next\s*\n0\s+(\d+)", text) for text in texts]
    assert [int(m.group(1)) if m else text for m, text in zip(answers, texts, strict=True)] == [
        i + 1 for i in range(REPEATS) for _ in kernels
    ]


def test_session_state_gets_a_note_and_begin_stays_pinned_across_cells(
    kernels: list[Kernel], bouncer: PgBouncer
) -> None:
    first, second = kernels
    for kernel in kernels:
        connect(kernel, bouncer.url, "pinned", pooler_mode=True)
    reply = first.ok("%sql --alias pinned SET work_mem = '8MB'")
    assert "Note: pooler mode: SET outside a transaction" in reply.stream("stderr")
    quiet = first.ok("%%sql --alias pinned\nBEGIN;\nSET LOCAL work_mem = '8MB'")
    assert "Note: pooler mode" not in quiet.stream("stderr")
    assert "Transaction open" in quiet.stream("stdout")

    first.ok(
        "%%sql --alias pinned before <<\n"
        "CREATE TEMP TABLE pinned_t AS SELECT 1 AS a;\n"
        "SELECT pg_backend_pid() AS pid, txid_current() AS xid"
    )
    for i in range(REPEATS):  # the other kernel uses PgBouncer's server connections meanwhile
        second.ok(f"i = {i}\n%sql --alias pinned SELECT pg_backend_pid(), :i::int")
    first.ok(
        "%%sql --alias pinned after <<\n"
        "SELECT pg_backend_pid() AS pid, txid_current() AS xid, (SELECT a FROM pinned_t) AS a"
    )
    same = first.value(
        "[int(before.pid[0]) == int(after.pid[0]), int(before.xid[0]) == int(after.xid[0]), "
        "int(after.a[0])]"
    )
    assert same == [True, True, 1]
    first.ok("%sql --alias pinned COMMIT")


def test_the_idle_release_closes_the_kernels_connection_to_pgbouncer(
    kernels: list[Kernel], bouncer: PgBouncer, pg_admin: psycopg.Connection
) -> None:
    kernel = kernels[0]
    connect(kernel, bouncer.url, "idle", pooler_mode=True)
    kernel.ok("%sql --alias idle SELECT 1")
    assert kernel.pool_stats("idle")["size"] == 1
    kernel.ok(
        "%config LunepoolMagic.idle_release = 0.0\n"
        "_releaser = get_ipython().magics_manager.registry['LunepoolMagic']"
        "._connections.releaser\n"
        "assert _releaser.wait_pass(10.0)"
    )
    assert kernel.pool_stats("idle")["size"] == 0
    reply = kernel.ok("%sql --alias idle SELECT 2 AS two")
    assert "2" in reply.text and reply.stream("stderr") == ""
    kernel.ok("%config LunepoolMagic.idle_release = 10.0")
