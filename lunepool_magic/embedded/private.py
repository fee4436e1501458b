"""Directories and lock files that only their owner can use, checked before every use.

A server's socket, and the lock that serialises starts and stops, must never
sit where another local user can reach them, swap them for a symlink, or hold
them: such a user would connect as superuser, or make our start hang. So each
is created exclusively or verified (ours, not a symlink, no access for group
or others) with the file system calls that do not follow symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# sun_path holds 108 bytes on Linux and 104 on macOS/BSD, NUL included.
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103
LOCK_TIMEOUT = 120.0  # longer than any initdb and start: a lock held longer is stuck
_LOCK_POLL = 0.05


def problem_with_dir(path: Path, owner_uid: int) -> str | None:
    """Why ``path`` is not a private directory of ``owner_uid`` (None if it is one)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "it does not exist"
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != owner_uid:
        return f"it is owned by uid {info.st_uid}, not {owner_uid}"
    if info.st_mode & 0o077:
        return f"its mode is {stat.S_IMODE(info.st_mode):04o}, not 0700"
    return None


def make_private_dir(path: Path, owner: tuple[int, int] | None = None) -> bool:
    """Create ``path`` as a 0700 directory of ``owner`` (uid, gid; default: us).

    Returns False, creating nothing, if the name is taken by anything that is
    not already such a directory: the caller then avoids it.
    """
    uid = os.geteuid() if owner is None else owner[0]
    try:
        os.mkdir(path, 0o700)  # never follows a symlink in the last component
    except FileExistsError:
        return problem_with_dir(path, uid) is None
    restrict_dir(path, owner)  # the umask may have removed bits we want
    return problem_with_dir(path, uid) is None


def restrict_dir(path: Path, owner: tuple[int, int] | None = None) -> None:
    """Make the directory ``path`` 0700 (and ``owner``'s), never through a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if owner is not None and owner[0] != os.geteuid():
            os.fchown(fd, owner[0], owner[1])
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def short_socket_dir(pgdata: Path, owner: tuple[int, int] | None = None) -> Path:
    """A private 0700 directory with a short path, for a socket that cannot sit in ``pgdata``.

    Named after the data directory (so a restart usually finds the same one);
    if that name is taken by anything but our own private directory, a fresh
    random one is made instead: pre-created, symlinked or foreign names are
    avoided, never used.
    """
    uid = os.geteuid() if owner is None else owner[0]
    stable = stable_socket_dir(pgdata, uid)
    if make_private_dir(stable, owner):
        return stable
    fresh = Path(tempfile.mkdtemp(prefix=f"lunepool_magic-{uid}-", dir=stable.parent))  # 0700
    restrict_dir(fresh, owner)
    return fresh


def stable_socket_dir(pgdata: Path, uid: int) -> Path:
    """The short socket directory's usual name: per user and data directory."""
    base = Path(tempfile.gettempdir())
    if len(os.fsencode(base)) > 40:  # a long TMPDIR would defeat the purpose
        base = Path("/tmp")
    digest = hashlib.sha256(f"{pgdata}\0{pgdata.stat().st_ino}".encode()).hexdigest()[:12]
    return base / f"lunepool_magic-{uid}-{digest}"


def socket_fits(directory: Path, port: int) -> bool:
    """True if ``<directory>/.s.PGSQL.<port>`` fits in a Unix socket address."""
    return len(os.fsencode(directory / f".s.PGSQL.{port}")) <= SOCKET_PATH_MAX


@contextlib.contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path``, a 0600 file of ours.

    The file is opened without following symlinks and refused unless it is
    ours and closed to others, so nobody else can hold it; a lock still held
    after ``timeout`` seconds raises instead of waiting forever.
    """
    limit = LOCK_TIMEOUT if timeout is None else timeout
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise PermissionError(
                f"{path}, the embedded server's lock file, is a symbolic link: refusing to "
                "follow it; remove it, or pass another data_dir"
            ) from err
        raise PermissionError(
            f"cannot open {path}, the embedded server's lock file: {err.strerror}"
        ) from err
    try:
        _check_lock_file(path, fd)
        _acquire(fd, path, limit)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_lock_file(path: Path, fd: int) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (os.name != "nt" and info.st_uid != os.geteuid()):
        raise PermissionError(
            f"{path} is not a file of ours (owner uid {info.st_uid}): another user could hold "
            "the embedded server's lock; remove it, or pass another data_dir"
        )
    if os.name != "nt" and info.st_mode & 0o077:
        os.fchmod(fd, 0o600)


def _acquire(fd: int, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"another process has held {path} for {timeout:.0f} s; if no other kernel is "
                "starting or stopping this embedded server, remove the file and try again"
            )
        time.sleep(_LOCK_POLL)


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
