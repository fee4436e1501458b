"""Waiting on server backends in tests: poll pg_stat_activity, never sleep a guess."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

WAIT = 10.0  # upper bound of every wait; reached only when a test fails


def wait_until(
    predicate: Callable[[], Any], what: str, timeout: float = WAIT, interval: float = 0.005
) -> Any:
    """Poll ``predicate`` until it returns something true; fail (not hang) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(interval)


def state_of(admin: psycopg.Connection, pid: int) -> str | None:
    """pg_stat_activity.state of backend ``pid``; None once it has exited."""
    row = admin.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row[0] if row else None


def wait_gone(admin: psycopg.Connection, pid: int) -> None:
    wait_until(lambda: state_of(admin, pid) is None, f"backend {pid} has exited")


@contextmanager
def when_active(
    admin: psycopg.Connection, pid: int, action: Callable[[], object]
) -> Iterator[None]:
    """Run ``action()`` in a thread as soon as backend ``pid`` is running a statement.

    Used around a long statement in the ``with`` body. Should anything go
    wrong in the thread, the statement is cancelled, so the test fails
    instead of hanging.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            wait_until(lambda: state_of(admin, pid) == "active", f"backend {pid} is busy")
            action()
        except BaseException as exc:
            errors.append(exc)
            admin.execute("SELECT pg_cancel_backend(%s)", (pid,))

    thread = threading.Thread(target=run, name=f"when-active-{pid}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(WAIT)
        if errors:
            raise errors[0]
