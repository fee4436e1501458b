"""A result several times larger than the kernel may hold (issue 16): the budget stops it.

A real kernel gets an address-space cap (RLIMIT_AS, as ``prlimit --as`` sets
it) a few hundred MB above what it uses, then asks for a result of about
1 GB, through COPY (a query FROM a function) and through the row path (no
FROM). With ``max_result_memory = "auto"`` (the default) the fetch must stop
with one line saying how far it got, the query must be gone from the server
at once, the kernel must keep its variables and hand its memory back, and the
next query must work.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from support.shell import active_queries, wait_for

pytest.importorskip("jupyter_client")
from support.kernel import Kernel

pytestmark = pytest.mark.kernel

#: The cap above the kernel's address space when the test starts.
HEADROOM = 400 * 2**20
ROWS = 1_000_000  # x 1,000 bytes of text: about 1 GB, several times the headroom

QUERIES = {
    "copy": f"SELECT g, repeat('x', 1000) AS t FROM generate_series(1, {ROWS}) AS g",
    "rows": f"SELECT generate_series(1, {ROWS}) AS g, repeat('y', 1000) AS t",
}


def _status(kernel: Kernel, field: str) -> int:
    """A VmSize/VmRSS line of the kernel's /proc status, in bytes."""
    return kernel.value(
        "int(next(l for l in open('/proc/self/status') if l.startswith("
        f"{field + ':'!r})).split()[1]) * 1024"
    )


@pytest.mark.parametrize("path", ["copy", "rows"])
def test_a_result_beyond_the_cap_is_stopped_and_the_kernel_lives_on(
    kernel: Kernel, pg_admin: psycopg.Connection, path: str
) -> None:
    # Warm up both paths and the allocators before the cap is set.
    kernel.ok("%sql _warm << SELECT g, repeat('x', 100) AS t FROM generate_series(1, 20000) g")
    kernel.ok("%sql _warm << SELECT generate_series(1, 20000) AS g, repeat('x', 100) AS t")
    kernel.ok("precious = list(range(1000))")
    cap = _status(kernel, "VmSize") + HEADROOM
    kernel.ok(f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))")
    rss_before = _status(kernel, "VmRSS")

    started = time.monotonic()
    reply = kernel.run(f"%sql big << {QUERIES[path]}", timeout=120)
    elapsed = time.monotonic() - started

    assert reply.status == "error", reply.text
    assert reply.error is not None and reply.error["ename"] == "SqlCellError", reply.text
    lines = reply.error["traceback"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("ERROR:  the result passed max_result_memory ("), line
    assert "the query was cancelled on the server and nothing was kept" in line
    assert "--limit N" in line and "--to" in line and "max_result_memory" in line
    if path == "copy":
        assert " rows (" in line  # the COPY path counts its rows
    assert "MemoryError" not in reply.text and "Traceback" not in reply.text

    # Stopped on the server at once, not read to the end.
    wait_for(
        lambda: not active_queries(pg_admin, "%repeat(%"),
        timeout=5,
        what="the query to stop on the server",
    )
    assert elapsed < 60, elapsed

    # The kernel keeps its work, holds nothing of the result, and the next query works.
    assert kernel.value("len(precious)") == 1000
    assert kernel.value("'big' in globals()") is False
    rss_after = _status(kernel, "VmRSS")
    assert rss_after < rss_before + 100 * 2**20, (rss_before, rss_after)
    kernel.ok("answer = %sql SELECT 41 + 1 AS a")
    assert kernel.value("int(answer.iat[0, 0])") == 42
    small = kernel.ok("%sql ok << SELECT g FROM generate_series(1, 100000) AS g")
    assert small.status == "ok"
    assert kernel.value("len(ok)") == 100000
