"""The magic in a real Jupyter kernel, driven by jupyter_client: Ctrl-C and shutdown.

In-process tests cannot show what a notebook user sees: the stop button
sends SIGINT to a separate kernel process, and the kernel's outputs travel
as messages. Here a real ipykernel (this Python, ``sys.executable``, with
this checkout on ``PYTHONPATH`` and ``DATABASE_URL`` pointing at the test
server) runs the cells, and ``pg_admin`` watches the server.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from magic_support import APPLICATION_NAME, active_queries, wait_for

jupyter_client = pytest.importorskip("jupyter_client")
from jupyter_client import KernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0


@dataclass
class Reply:
    """What one execute request produced."""

    status: str
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Streams, error tracebacks and text/plain results, in order."""
        parts = []
        for msg_type, content in ((o["msg_type"], o["content"]) for o in self.outputs):
            if msg_type == "stream":
                parts.append(content["text"])
            elif msg_type == "error":
                parts.append("\n".join(content["traceback"]) + "\n")
            elif msg_type in ("execute_result", "display_data"):
                parts.append(content["data"].get("text/plain", "") + "\n")
        return "".join(parts)

    @property
    def error(self) -> dict[str, Any] | None:
        errors = [o["content"] for o in self.outputs if o["msg_type"] == "error"]
        return errors[0] if errors else None


class Kernel:
    """A started kernel and its client."""

    def __init__(self, manager: KernelManager) -> None:
        self.manager = manager
        self.client = manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=TIMEOUT)

    def submit(self, code: str) -> str:
        return self.client.execute(code)

    def collect(self, msg_id: str, timeout: float = TIMEOUT) -> Reply:
        """Outputs of ``msg_id`` until the kernel is idle again, then its reply."""
        outputs = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            if kind in ("stream", "error", "execute_result", "display_data"):
                outputs.append({"msg_type": kind, "content": msg["content"]})
        while True:
            reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return Reply(reply["content"]["status"], outputs)

    def run(self, code: str) -> Reply:
        return self.collect(self.submit(code))

    def ok(self, code: str) -> Reply:
        reply = self.run(code)
        assert reply.status == "ok", f"{code!r} failed:\n{reply.text}"
        return reply

    def backend_pids(self, aliases: list[str]) -> set[int]:
        """The server PIDs of the connections the cells of each alias run on."""
        pids = set()
        for alias in aliases:
            self.ok(f"%sql --alias {alias} _pid << SELECT pg_backend_pid()")
            pids.add(int(self.ok("print(int(_pid.iat[0, 0]))").text.strip()))
        return pids

    def close(self) -> None:
        self.client.stop_channels()
        if self.manager.is_alive():
            self.manager.shutdown_kernel(now=True)


def _kernel_spec_dir(tmp: Path) -> Path:
    """A kernelspec that runs this very Python, whatever kernels are installed."""
    spec = tmp / "kernels" / "lpm-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "lunepool_magic tests",
                "language": "python",
                "interrupt_mode": "signal",
            }
        )
    )
    return tmp / "kernels"


@pytest.fixture
def kernel(pg_url: str, tmp_path: Path) -> Iterator[Kernel]:
    manager = KernelManager(
        kernel_name="lpm-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(_kernel_spec_dir(tmp_path))]),
    )
    env = dict(os.environ)
    env.update(
        DATABASE_URL=pg_url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        IPYTHONDIR=str(tmp_path / "ipython"),  # no user profile, no startup files
    )
    manager.start_kernel(env=env)
    kernel = Kernel(manager)
    try:
        kernel.ok("%load_ext lunepool_magic")
        yield kernel
    finally:
        kernel.close()


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
        "s = get_ipython().magics_manager.registry['LunepoolMagic']._sessions['default']"
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
