"""Our socket directories and lock files: pre-created, symlinked or foreign ones are never used.

Regression tests for issue 14 section 1 (the lock directory could be taken
over): each case is refused or avoided, nothing is made through a symlink,
and a lock that someone else holds ends in an error, never in a hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.servers import EmbeddedServer, make_data_dir_root

from lunepool_magic import embedded
from lunepool_magic.embedded import private

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="giving a file to another user needs root")

_LOCK_HOLDER = """
import fcntl, sys
with open(sys.argv[1], "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()
"""


def _nobody() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def pgdata(tmp_path: Path) -> Iterator[Path]:
    """A data directory path (not a cluster), and its usual short socket dir cleaned up after."""
    path = tmp_path / "data"
    path.mkdir()
    stable = private.stable_socket_dir(path, os.geteuid())
    made = set(stable.parent.glob(f"lunepool_magic-{os.geteuid()}-*"))
    try:
        yield path
    finally:
        for extra in set(stable.parent.glob(f"lunepool_magic-{os.geteuid()}-*")) - made:
            if extra.is_symlink() or not extra.is_dir():
                extra.unlink()
            else:
                shutil.rmtree(extra)


def _assert_ours_and_private(path: Path) -> None:
    assert private.problem_with_dir(path, os.geteuid()) is None


# --------------------------------------------------------------------------- socket directories


def test_a_free_name_becomes_a_private_dir_reused_next_time(pgdata: Path) -> None:
    first = private.short_socket_dir(pgdata)
    assert first == private.stable_socket_dir(pgdata, os.geteuid())
    _assert_ours_and_private(first)
    assert private.socket_fits(first, 5432)
    assert private.short_socket_dir(pgdata) == first


def test_a_precreated_loose_dir_is_avoided(pgdata: Path) -> None:
    stable = private.stable_socket_dir(pgdata, os.geteuid())
    stable.mkdir(mode=0o755)
    stable.chmod(0o755)  # made before us, open to all: anyone may have put things in it
    chosen = private.short_socket_dir(pgdata)
    assert chosen != stable
    _assert_ours_and_private(chosen)
    assert stable.stat().st_mode & 0o777 == 0o755  # left as found


def test_a_symlinked_name_is_avoided_and_not_followed(pgdata: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    stable = private.stable_socket_dir(pgdata, os.geteuid())
    stable.symlink_to(victim)
    chosen = private.short_socket_dir(pgdata)
    assert chosen != stable and not chosen.is_symlink()
    _assert_ours_and_private(chosen)
    assert stable.is_symlink() and list(victim.iterdir()) == []


@root_only
def test_a_dir_of_another_user_is_avoided(pgdata: Path) -> None:
    stable = private.stable_socket_dir(pgdata, os.geteuid())
    stable.mkdir(mode=0o700)
    os.chown(stable, *_nobody())
    chosen = private.short_socket_dir(pgdata)
    assert chosen != stable
    _assert_ours_and_private(chosen)


# --------------------------------------------------------------------------- lock files


def test_a_new_lock_file_is_ours_and_closed(tmp_path: Path) -> None:
    lock = tmp_path / ".data.lock"
    with private.file_lock(lock):
        info = lock.stat()
        assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o600)


def test_a_loose_lock_file_of_ours_is_closed(tmp_path: Path) -> None:
    lock = tmp_path / ".data.lock"
    lock.write_text("")
    lock.chmod(0o666)
    with private.file_lock(lock):
        assert lock.stat().st_mode & 0o777 == 0o600


def test_a_symlinked_lock_file_is_refused_and_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    lock = tmp_path / ".data.lock"
    lock.symlink_to(target)
    with pytest.raises(PermissionError, match="symbolic link"), private.file_lock(lock):
        pass
    assert not target.exists()


@root_only
def test_a_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / ".data.lock"
    lock.write_text("")
    lock.chmod(0o666)
    os.chown(lock, *_nobody())
    with pytest.raises(PermissionError, match=f"owner uid {_nobody()[0]}"), private.file_lock(lock):
        pass


def test_a_lock_held_elsewhere_times_out_instead_of_hanging(tmp_path: Path) -> None:
    lock = tmp_path / ".data.lock"
    with private.file_lock(lock):
        pass  # made ours; another process of ours now holds it
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(TimeoutError) as caught, private.file_lock(lock, timeout=0.2):
            pass
        assert str(lock) in str(caught.value) and "\n" not in str(caught.value)
    finally:
        holder.communicate("\n", timeout=10)
    with private.file_lock(lock, timeout=5):  # released: ours again
        pass


# --------------------------------------------------------------------------- through start()


def test_start_refuses_a_symlinked_lock_file_beside_the_data_dir() -> None:
    root = make_data_dir_root("lpm-lock-")
    try:
        target = root / "elsewhere"
        (root / ".data.lock").symlink_to(target)
        with pytest.raises(PermissionError, match="symbolic link"):
            embedded.start(root / "data")
        assert not target.exists() and not (root / "data").exists()
    finally:
        shutil.rmtree(root)


@root_only
def test_start_refuses_a_data_dir_made_by_another_user() -> None:
    root = make_data_dir_root("lpm-foreign-")
    try:
        (root / "data").mkdir(mode=0o700)
        os.chown(root / "data", *_nobody())
        with pytest.raises(PermissionError, match=f"owned by uid {_nobody()[0]}"):
            embedded.start(root / "data")
        assert list((root / "data").iterdir()) == []
    finally:
        shutil.rmtree(root)


def test_start_closes_a_group_readable_data_dir(private_server: EmbeddedServer) -> None:
    private_server.stop()
    private_server.data_dir.chmod(0o750)  # PostgreSQL accepts it; the socket dir must not be
    private_server.start()
    assert private_server.data_dir.stat().st_mode & 0o777 == 0o700
