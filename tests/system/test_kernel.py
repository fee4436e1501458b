"""The magic in a real Jupyter kernel, driven by jupyter_client: Ctrl-C and shutdown.

In-process tests cannot show what a notebook user sees: the stop button
sends SIGINT to a separate kernel process, and the kernel's outputs travel
as messages. Here a real ipykernel (this Python, ``sys.executable``, with
this checkout on ``PYTHONPATH`` and ``DATABASE_URL`` pointing at the test
server) runs the cells, and ``pg_admin`` watches the server. The kernel
driver is ``support/kernel.py`` and the ``kernel`` fixture is in conftest.py;
a minute of cells under faults is test_kernel_faults.py, bad input is
test_magic_fuzz.py.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from support.shell import APPLICATION_NAME, active_queries, wait_for

pytest.importorskip("jupyter_client")
from support.kernel import TIMEOUT, Kernel

pytestmark = pytest.mark.kernel


def _alive(admin: psycopg.Connection, pids: set[int]) -> set[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) AND application_name = %s",
        (list(pids), APPLICATION_NAME),
    ).fetchall()
    return {int(pid) for (pid,) in rows}


def test_interrupt_cancels_the_query_and_the_next_cell_runs(
    kernel: Kernel, pg_admin: psycopg.Connection
) -> None:
    kernel.ok("%sql SELECT 1")
    msg_id = kernel.submit("%sql SELECT pg_sleep(30)")
    wait_for(
        lambda: active_queries(pg_admin, "%pg_sleep(30)%"),
        timeout=TIMEOUT,
        what="pg_sleep(30) to run on the server",
    )
    interrupted_at = time.monotonic()
    kernel.manager.interrupt_kernel()
    reply = kernel.collect(msg_id)
    wait_for(
        lambda: not active_queries(pg_admin, "%pg_sleep(30)%"),
        timeout=5,
        what="the query to stop",
    )
    assert time.monotonic() - interrupted_at < 5  # cancelled, not run to the end

    assert reply.status == "error"
    assert reply.error is not None and reply.error["ename"] == "QueryCancelled"
    assert reply.error["traceback"] == ["Interrupted: query cancelled on the server."]
    assert "Traceback" not in reply.text and "KeyboardInterrupt" not in reply.text

    after = kernel.ok("%sql SELECT 42 AS answer")
    assert "42" in after.text
    stats = kernel.ok(
        "s = get_ipython().magics_manager.registry['LunepoolMagic'].sessions['default']"
        ".pool.stats(); print(s.in_use, s.broken)"
    )
    assert stats.text.split() == ["0", "0"]


def test_kernel_shutdown_leaves_no_backend(
    kernel: Kernel, pg_url: str, pg_admin: psycopg.Connection
) -> None:
    kernel.ok("%sql SELECT 1")
    kernel.ok(f'%sql "{pg_url}" --alias second')
    kernel.ok("%sql --alias second BEGIN")  # a pinned transaction, too
    pids = kernel.backend_pids(["default", "second"])
    assert len(pids) == 2
    assert _alive(pg_admin, pids) == pids

    kernel.client.stop_channels()
    kernel.manager.shutdown_kernel(now=False)  # a shutdown request, as Jupyter sends
    assert not kernel.manager.is_alive()
    wait_for(lambda: not _alive(pg_admin, pids), timeout=10, what="backends to exit")
