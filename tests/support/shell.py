"""Helpers for the magic's tests: a real IPython shell, cells run with their output captured.

``ip`` (fixture): an ``InteractiveShell`` with ``%load_ext lunepool_magic``
done and ``DATABASE_URL`` pointing at the test server, wrapped in
:class:`Shell`. Each test gets the extension freshly loaded, and unloaded
afterwards (which closes its pools), with the names it defined removed and
``%config LunepoolMagic`` settings forgotten.

The shell follows what the SQL-magic projects learned (history off, so no
SQLite file and no "too many open files"; output cache off), and runs cells
with ``run_cell`` like a kernel does, so display hooks, error rendering and
``ExecutionResult.success`` are IPython's own.

Test modules import the fixture as ``from support.shell import ip_fixture``
(its name is ``ip``; the function name differs so it shadows nothing).
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from traitlets.config import Config

from lunepool_magic.magic import LunepoolMagic
from lunepool_magic.notebook.session import APPLICATION_NAME, Session
from support.backends import wait_until

__all__ = [
    "APPLICATION_NAME",
    "CellRun",
    "Shell",
    "active_queries",
    "interrupt_main_after",
    "ip_fixture",
    "make_shell",
    "url_with_password",
    "wait_for",
]


def make_shell() -> InteractiveShell:
    """The process's InteractiveShell, configured for tests (created once)."""
    if InteractiveShell.initialized():
        return InteractiveShell.instance()
    cfg = Config()
    cfg.HistoryAccessor.enabled = False
    cfg.InteractiveShell.cache_size = 0
    cfg.InteractiveShell.colors = "nocolor"
    return InteractiveShell.instance(config=cfg)


@dataclass
class CellRun:
    """One ``run_cell``: IPython's result and everything printed."""

    result: ExecutionResult
    out: str
    err: str

    @property
    def value(self) -> Any:
        return self.result.result

    @property
    def error(self) -> BaseException | None:
        return self.result.error_in_exec or self.result.error_before_exec

    @property
    def success(self) -> bool:
        return self.result.success

    @property
    def text(self) -> str:
        return self.out + self.err


class Shell:
    """A shell with the extension loaded; ``run`` executes a cell and captures output."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    @property
    def user_ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    @property
    def magics(self) -> LunepoolMagic:
        magics = self.shell.magics_manager.registry.get("LunepoolMagic")
        assert isinstance(magics, LunepoolMagic), "extension not loaded"
        return magics

    def session(self, alias: str = "default") -> Session:
        return self.magics.sessions[alias]

    def run(self, source: str) -> CellRun:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = self.shell.run_cell(source, store_history=False)
        return CellRun(result, out.getvalue(), err.getvalue())

    def ok(self, source: str) -> CellRun:
        """Run a cell that must succeed."""
        run = self.run(source)
        assert run.success, f"cell failed: {source!r}\n{run.text}\n{run.error!r}"
        return run

    def fail(self, source: str) -> CellRun:
        """Run a cell that must fail (the cell counts as an error)."""
        run = self.run(source)
        assert not run.success, f"cell succeeded: {source!r}\n{run.text}"
        return run

    def value(self, source: str) -> Any:
        """Run a cell that must succeed and return its value (the DataFrame)."""
        return self.ok(source).value

    def scalar(self, source: str) -> Any:
        """The single value of a one-row, one-column result."""
        frame = self.value(source)
        assert frame.shape == (1, 1), frame
        return frame.iat[0, 0]

    def backend_pid(self, magic: str = "%sql") -> int:
        return int(self.scalar(f"{magic} SELECT pg_backend_pid()"))


@pytest.fixture(name="ip")
def ip_fixture(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    """A shell with ``%load_ext lunepool_magic`` and DATABASE_URL set to the test server."""
    monkeypatch.setenv("DATABASE_URL", pg_url)
    shell = make_shell()
    names_before = set(shell.user_ns)
    wrapped = Shell(shell)
    wrapped.ok("%load_ext lunepool_magic")
    try:
        yield wrapped
    finally:
        wrapped.run("%unload_ext lunepool_magic")
        shell.config.pop("LunepoolMagic", None)
        shell.config.pop("SqlMagic", None)  # JupySQL's settings, answered by magic_jupysql
        for name in set(shell.user_ns) - names_before:
            del shell.user_ns[name]


def url_with_password(pg_url: str) -> tuple[str, str]:
    """A conninfo for the test server that carries a password, and that password.

    The server's own password if ``pg_url`` has one; otherwise (embedded
    server, trust authentication) a made-up one, which the server ignores.
    """
    params = conninfo_to_dict(pg_url)
    password = params.get("password") or "made-up-Pa55word"
    params["password"] = password
    return make_conninfo("", **params), str(password)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    The magic's tests poll the server (pg_stat_activity), so less often than
    ``wait_until``'s default.
    """
    return wait_until(predicate, what, timeout, interval=0.05)


@contextlib.contextmanager
def interrupt_main_after(
    ready: Callable[[], bool], timeout: float = 10.0
) -> Iterator[threading.Thread]:
    """Send SIGINT to this process (Ctrl-C) once ``ready()`` is true, from a helper thread.

    Python delivers it to the main thread as KeyboardInterrupt, exactly as a
    kernel receives the notebook's stop button. The helper gives up silently
    after ``timeout``; the caller's assertions then fail.
    """
    import os

    def fire() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(timeout + 1)
        signal.signal(signal.SIGINT, previous)


def active_queries(admin: psycopg.Connection[Any], like: str) -> list[tuple[int, str]]:
    """(pid, state) of our backends whose current query matches ``like`` and is active."""
    rows = admin.execute(
        "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s "
        "AND query LIKE %s AND state = 'active' AND pid <> pg_backend_pid()",
        (APPLICATION_NAME, like),
    ).fetchall()
    return [(int(pid), str(state)) for pid, state in rows]
