"""``embedded.prepare()``: a cold start begun in the background, joined by the next ``start()``.

It exists so that ``%load_ext`` can overlap initdb and the server's start
with the imports of the first cell; it must never block, never print, and
leave the reporting of errors to ``start()``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support.servers import make_data_dir_root

from lunepool_magic import embedded
from lunepool_magic.embedded import server

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    """A data directory path where no cluster exists yet (cold)."""
    root = make_data_dir_root("lpm-prep-")
    path = root / "data"
    try:
        yield path
    finally:
        _join_prepare()
        embedded.stop(path)
        shutil.rmtree(root, ignore_errors=True)


def _join_prepare() -> None:
    thread = server._prepare_thread
    if thread is not None:
        thread.join(60)
        assert not thread.is_alive()


def test_start_after_prepare_returns_the_prepared_server(fresh_dir: Path) -> None:
    assert not embedded.status(fresh_dir).initialized
    embedded.prepare(fresh_dir)
    url = embedded.start(fresh_dir)  # waits for the background start, or does it itself
    now = embedded.status(fresh_dir)
    assert now.running and now.attached and now.users == (os.getpid(),)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    _join_prepare()
    assert embedded.status(fresh_dir).server_pid == now.server_pid  # one server, started once


def test_prepare_never_waits_for_a_start_in_progress(fresh_dir: Path) -> None:
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:  # stands for a start() busy in initdb
        with server._lock:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(10)
        caller = threading.Thread(target=embedded.prepare, args=(fresh_dir,))
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "prepare() waited for the lock"
        embedded.prepare(fresh_dir)  # again, while the first is still waiting: a no-op
    finally:
        release.set()
        holder.join(10)
    url = embedded.start(fresh_dir)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_failing_prepare_is_silent_and_start_reports_the_error() -> None:
    bad = Path(make_data_dir_root("lpm-prep-")) / "a space" / "data"
    code = (
        "import sys\n"
        "from lunepool_magic import embedded\n"
        "from lunepool_magic.embedded import server\n"
        "embedded.prepare(sys.argv[1])\n"
        "server._prepare_thread.join(60)\n"
        "try:\n"
        "    embedded.start(sys.argv[1])\n"
        "except ValueError as err:\n"
        "    print(err)\n"
    )
    try:
        done = _run(code, str(bad))
    finally:
        shutil.rmtree(bad.parent.parent)
    assert done.returncode == 0 and done.stderr == ""
    assert "must not contain spaces or shell characters" in done.stdout


def test_prepare_prints_nothing_and_start_gives_the_one_root_notice(fresh_dir: Path) -> None:
    code = (
        "import sys\n"
        "from lunepool_magic import embedded\n"
        "embedded.prepare(sys.argv[1])\n"
        "embedded.start(sys.argv[1])\n"  # line 4: the notice names the caller's line
        "embedded.stop(sys.argv[1])\n"
    )
    done = _run(code, str(fresh_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    notices = [line for line in done.stderr.splitlines() if "RootModeWarning" in line]
    if IS_ROOT:
        assert len(notices) == 1 and notices[0].startswith("<string>:4: RootModeWarning: ")
        # No traceback. Python 3.13's own formatter may echo the caller's source line.
        others = [line for line in done.stderr.splitlines() if line not in notices]
        assert all(line.strip() == "embedded.start(sys.argv[1])" for line in others), others
    else:
        assert done.stderr == ""
