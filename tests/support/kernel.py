"""A real Jupyter kernel driven by jupyter_client, for tests and benchmark scripts.

``start_kernel(database_url, work_dir)`` starts an ipykernel that runs this
very Python (``sys.executable``) with this checkout on ``PYTHONPATH``,
``DATABASE_URL`` set, and an empty IPython profile in ``work_dir``; it yields
a :class:`Kernel` whose ``run(code)`` executes a cell and returns a
:class:`Reply` with everything the cell sent back, in order, as a notebook
would receive it. Used by ``tests/test_kernel.py``, ``tests/test_kernel_faults.py``,
``tests/test_magic_fuzz.py`` and ``benchmarks/kernel_chaos.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

__all__ = ["TIMEOUT", "Kernel", "Reply", "start_kernel"]

REPO = Path(__file__).resolve().parent.parent.parent
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

    def stream(self, name: str) -> str:
        """What the cell printed to ``stdout`` or ``stderr``."""
        return "".join(
            o["content"]["text"]
            for o in self.outputs
            if o["msg_type"] == "stream" and o["content"]["name"] == name
        )

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
        """Outputs of ``msg_id`` until the kernel is idle again, then its reply.

        Raises ``queue.Empty`` when the kernel stays busy past ``timeout``.
        """
        outputs = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
            if kind in ("stream", "error", "execute_result", "display_data", "update_display_data"):
                outputs.append({"msg_type": kind, "content": msg["content"]})
        while True:
            reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return Reply(reply["content"]["status"], outputs)

    def run(self, code: str, timeout: float = TIMEOUT) -> Reply:
        return self.collect(self.submit(code), timeout)

    def ok(self, code: str) -> Reply:
        reply = self.run(code)
        assert reply.status == "ok", f"{code!r} failed:\n{reply.text}"
        return reply

    def value(self, expression: str) -> Any:
        """The value of a Python expression in the kernel, passed back as JSON."""
        marker = "__kernel_value__"
        reply = self.ok(f"import json as _json\nprint({marker!r}, _json.dumps({expression}))")
        for line in reply.stream("stdout").splitlines():
            if line.startswith(marker):
                return json.loads(line[len(marker) + 1 :])
        raise AssertionError(f"no value printed for {expression!r}:\n{reply.text}")

    def complete(self, code: str, cursor_pos: int | None = None) -> dict[str, Any]:
        """A ``complete_request``, as JupyterLab sends it: the reply's content.

        ``metadata._jupyter_types_experimental`` holds each completion's
        ``text``, ``type``, ``start`` and ``end``.
        """
        msg_id = self.client.complete(code, len(code) if cursor_pos is None else cursor_pos)
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def pool_stats(self, alias: str = "default") -> dict[str, Any] | None:
        """The pool statistics of ``alias`` in the kernel, and its pinned transaction state."""
        return self.value(
            "(lambda s: None if s is None else {**__import__('dataclasses').asdict("
            "s.pool.stats()), 'transaction': s.transaction})("
            f"get_ipython().magics_manager.registry['LunepoolMagic'].sessions.get({alias!r}))"
        )

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


def _kernel_spec_dir(work_dir: Path) -> Path:
    """A kernelspec that runs this very Python, whatever kernels are installed."""
    spec = work_dir / "kernels" / "lpm-test"
    spec.mkdir(parents=True, exist_ok=True)
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
    return work_dir / "kernels"


@contextlib.contextmanager
def start_kernel(database_url: str, work_dir: Path) -> Iterator[Kernel]:
    """A kernel with ``%load_ext lunepool_magic`` done and ``DATABASE_URL`` set; shut down after."""
    manager = KernelManager(
        kernel_name="lpm-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(_kernel_spec_dir(work_dir))]),
    )
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        IPYTHONDIR=str(work_dir / "ipython"),  # no user profile, no startup files
    )
    manager.start_kernel(env=env)
    kernel = None
    try:
        kernel = Kernel(manager)
        kernel.ok("%load_ext lunepool_magic")
        yield kernel
    finally:
        if kernel is not None:
            kernel.close()
        elif manager.is_alive():
            manager.shutdown_kernel(now=True)
