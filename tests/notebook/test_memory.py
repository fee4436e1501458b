"""The result memory budget (issue 16): sizes, the memory available, stopping a fetch.

The budget is enforced against a real server on both paths: the COPY path
counts its columns (and the process's growth) block by block, the row path is
watched from a thread that cancels the query. Either way the query must be
gone from the server, nothing kept, and the connection usable. The kernel
under a real memory cap is tests/system/test_memory_kernel.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from IPython.core.error import UsageError
from support.shell import Shell, active_queries, ip_fixture, wait_for  # noqa: F401

from lunepool_magic.notebook import memory
from lunepool_magic.postgres.budget import ResultTooLarge
from lunepool_magic.postgres.statement import run
from lunepool_magic.units import size

BIG_COPY = "SELECT g, repeat('x', 500) AS t FROM generate_series(1, 2000000) AS g"
BIG_ROWS = "SELECT generate_series(1, 2000000) AS g, repeat('y', 500) AS t"
BUDGET = 30_000_000
# 16 bigints x 3M rows: about 400 MB of numpy buffers.
WIDE_NUMBERS = (
    "SELECT "
    + ", ".join(f"g + {j} AS c{j}" for j in range(16))
    + " FROM generate_series(1, 3000000::int8) AS g"
)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (2_000_000_000, 2_000_000_000),
        ("2 GB", 2_000_000_000),
        ("512MiB", 512 * 2**20),
        ("1.5g", 1_500_000_000),
        ("100 kB", 100_000),
        ("4096", 4096),
        (None, None),
    ],
)
def test_sizes(typed: object, expected: int | None) -> None:
    assert memory.parse_size(typed) == expected


@pytest.mark.parametrize("typed", ["lots", "2 GX", "-1", 0, -5, True, "0 MB", [1]])
def test_bad_sizes_say_what_is_accepted(typed: object) -> None:
    with pytest.raises(ValueError, match=r"max_result_memory .*(size|positive)"):
        memory.parse_size(typed)


def test_available_memory_counts_an_address_space_cap() -> None:
    """In a process under RLIMIT_AS, the room is the cap less its virtual size."""
    code = (
        "import resource, re\n"
        "from lunepool_magic.notebook import memory\n"
        "size = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read())[1]) * 1024\n"
        "cap = size + 300 * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
        "print(memory.available_bytes(), memory.auto_budget())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    available, auto = map(int, done.stdout.split())
    assert 250 * 2**20 < available <= 300 * 2**20
    assert auto == int(available * memory.AUTO_SHARE)


def test_auto_is_a_share_of_what_is_available_now() -> None:
    available = memory.available_bytes()
    assert available is not None and available > 0
    assert memory.budget("auto") is memory.auto_budget
    assert memory.budget(None) is None
    assert memory.budget("1 GB") == 10**9


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize(("path", "statement"), [("copy", BIG_COPY), ("rows", BIG_ROWS)])
def test_a_fetch_past_the_budget_is_cancelled_and_keeps_nothing(
    conn: psycopg.Connection, pg_admin: psycopg.Connection, path: str, statement: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ResultTooLarge) as caught:
        run(conn, statement, fast=path == "copy", max_memory=BUDGET)
    error = caught.value
    assert error.limit == BUDGET and error.held > BUDGET
    assert error.held < BUDGET + 40_000_000  # stopped soon after the budget, not at the end
    if path == "copy":
        assert error.rows is not None and 0 < error.rows < 2_000_000
    assert f"memory budget of {size(BUDGET)}" in str(error)
    assert time.monotonic() - started < 30
    wait_for(lambda: not active_queries(pg_admin, "%repeat(%"), timeout=5, what="the cancel")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert run(conn, "SELECT 42 AS a FROM pg_class LIMIT 1").frame.iat[0, 0] == 42


def test_the_budget_is_looked_up_only_when_a_result_grows(conn: psycopg.Connection) -> None:
    calls = []

    def budget() -> int:
        calls.append(1)
        return BUDGET

    assert len(run(conn, "SELECT g FROM generate_series(1, 10) g", max_memory=budget).frame) == 10
    assert calls == []  # one block, never full: no look at /proc
    with pytest.raises(ResultTooLarge):
        run(conn, BIG_COPY, max_memory=budget)
    assert calls == [1]


def test_a_fetch_within_the_budget_is_whole(conn: psycopg.Connection) -> None:
    statement = "SELECT g, repeat('x', 50) AS t FROM generate_series(1, 100000) AS g"
    for fast in (True, False):
        assert len(run(conn, statement, fast=fast, max_memory=200_000_000).frame) == 100000


def test_inside_a_transaction_the_stop_fails_it_like_an_interrupt(
    conn: psycopg.Connection,
) -> None:
    conn.execute("BEGIN")
    with pytest.raises(ResultTooLarge):
        run(conn, BIG_COPY, max_memory=BUDGET)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    conn.execute("ROLLBACK")


def test_the_magic_says_it_in_one_line(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.max_result_memory = '30 MB'")
    failed = ip.fail(f"%sql big << {BIG_COPY}")
    lines = str(failed.error).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ERROR:  the result passed max_result_memory (30.0 MB) at ")
    assert "--limit N" in lines[0] and "--to results.parquet" in lines[0]
    assert "big" not in ip.user_ns
    assert ip.value("%sql SELECT 1 AS one")["one"].tolist() == [1]
    ip.ok("%config LunepoolMagic.max_result_memory = None")
    assert len(ip.value("%sql SELECT g FROM generate_series(1, 300000) g")) == 300000
    ip.ok("%config LunepoolMagic.max_result_memory = 'lots'")
    bad = ip.fail("%sql SELECT 1")
    assert isinstance(bad.error, UsageError)
    assert "max_result_memory takes a size such as" in str(bad.error)
    ip.ok("%config LunepoolMagic.max_result_memory = 'auto'")


def test_running_out_of_memory_without_a_budget_is_the_same_clean_stop(pg_url: str) -> None:
    """No budget, a cap (RLIMIT_AS) the result passes: numpy's MemoryError becomes the
    one-line ResultTooLarge, the query is cancelled, and the connection works on.

    Numbers, whose buffers numpy allocates: pyarrow's allocator reserves address
    space ahead, so text can fill memory the cap already counted.
    """
    code = f"""
import re, resource, psycopg
from lunepool_magic.postgres.budget import ResultTooLarge
from lunepool_magic.postgres.statement import run
conn = psycopg.connect({pg_url!r}, autocommit=True)
run(conn, "SELECT g, repeat('x', 500) AS t FROM generate_series(1, 20000) AS g")  # warm up
size = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read())[1]) * 1024
cap = size + 150 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
try:
    run(conn, {WIDE_NUMBERS!r}, max_memory=None)
except ResultTooLarge as exc:
    assert exc.limit is None and exc.rows > 0, exc
    print("STOPPED", exc)
print("STATUS", conn.info.transaction_status.name)
print("NEXT", run(conn, "SELECT 42 AS a FROM pg_class LIMIT 1").frame.iat[0, 0])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("STOPPED memory ran out for the result at "), lines
    assert "the query was cancelled on the server and nothing was kept" in lines[0]
    assert lines[1:] == ["STATUS IDLE", "NEXT 42"]
