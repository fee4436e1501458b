"""Running as root: a service OS user, a root-owned home for the server, no widened homes.

PostgreSQL refuses to run as root, so the server runs as the OS user
``embedded_postgres`` (created with ``useradd`` if missing). That user must
reach the data directory and the binaries, and we never loosen a directory
for it: the default data directory and a copy of the binaries live in
``<tmp>/lunepool_magic-root``, a root-owned 0755 folder we create or verify,
and a data directory the user cannot reach is refused with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from lunepool_magic.embedded._package import Install
from lunepool_magic.embedded.private import file_lock

SERVICE_USER = "embedded_postgres"  # the name the embedded-postgres package also uses
_APP_NAME = "lunepool_magic"


class RootModeWarning(UserWarning):
    """Issued once per process when the embedded server is started as root."""


RootModeWarning.__module__ = "lunepool_magic.embedded"  # where users import it from


@dataclass(frozen=True)
class ServiceUser:
    """The OS user the server runs as."""

    name: str
    uid: int
    gid: int


_root_warned = False


def is_root() -> bool:
    """True when running with effective uid 0 (never on Windows)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def root_base() -> Path:
    """The root-owned folder for the default data directory and the binaries' copy."""
    tmp = Path(tempfile.gettempdir()).resolve()
    if any(tmp == home or home in tmp.parents for home in _home_dirs()):  # TMPDIR in a home
        tmp = Path("/tmp")
    return tmp / f"{_APP_NAME}-root"


def ensure_root_base(base: Path) -> None:
    """Create the root-owned 0755 base folder, or check that an existing one is ours.

    0755: the service user must traverse it. A folder at that predictable path
    made by someone else could be swapped under us, so it is refused.
    """
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o755)
        base.chmod(0o755)  # mkdir's mode is filtered by the umask
    info = os.lstat(base)
    if (
        stat.S_ISLNK(info.st_mode)
        or not stat.S_ISDIR(info.st_mode)
        or info.st_uid != 0
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise PermissionError(
            f"{base} exists but is not a root-owned directory writable only by root; "
            "refusing to keep the embedded server there (remove it, or pass data_dir=...)"
        )


def service_user() -> ServiceUser:
    """The server's OS user, created as a system user without a home if missing."""
    import pwd

    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        options = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        options += ["--shell", "/usr/sbin/nologin"]
        try:
            subprocess.run([useradd, *options, SERVICE_USER], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise RuntimeError(
                f"as root, the embedded server runs as OS user {SERVICE_USER}, which does not "
                f"exist and could not be created with useradd ({err}); create it, or run as a "
                "regular user"
            ) from err
        entry = pwd.getpwnam(SERVICE_USER)
    return ServiceUser(SERVICE_USER, entry.pw_uid, entry.pw_gid)


def refuse_unreachable(target: Path, user: ServiceUser, what: str) -> None:
    """Raise if ``user`` cannot traverse every parent of ``target``; nothing is widened."""
    for parent in reversed(target.parents):
        try:
            info = parent.stat()
        except FileNotFoundError:
            return  # created later by us, with modes the user can traverse
        if not _can_enter(info, user):
            raise PermissionError(
                f"as root, the embedded server runs as OS user {user.name}, which cannot enter "
                f"{parent} (mode {stat.S_IMODE(info.st_mode):04o}), so it cannot use {what} "
                f"at {target}; permissions are never widened for it, which would open home "
                f"directories to every user; use a directory outside home directories, e.g. "
                f"the default {root_base()}"
            )


def _can_enter(info: os.stat_result, user: ServiceUser) -> bool:
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == user.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def relocated_bin(install: Install) -> Path:
    """The ``bin`` dir of a root-owned copy of the install that the service user can run.

    The package usually lives where only root can go (a pyenv or venv in
    /root). The copy mirrors the site-packages layout (``embedded_postgres/
    pginstall`` next to ``embedded_postgres.libs``) because the binaries find
    their bundled libraries through ``$ORIGIN/../../../embedded_postgres.libs``.
    Made once per version, under a lock.
    """
    base = root_base()
    ensure_root_base(base)
    with file_lock(base / ".pginstall.lock"):
        return _relocated_install(install, base)


def _relocated_install(install: Install, base: Path) -> Path:
    dest = base / f"pginstall-{install.version}"
    relative_bin = install.bin.relative_to(install.site)
    if (dest / ".complete").exists() and (dest / relative_bin / "postgres").exists():
        return dest / relative_bin
    staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=base))
    try:
        # include/ is for building extensions; the server needs bin, lib and share.
        parts = [install.pginstall / name for name in ("bin", "lib", "share")]
        parts += [libs for libs in [install.bundled_libs] if libs.is_dir()]
        for source in parts:
            shutil.copytree(
                source,
                staging / source.relative_to(install.site),
                symlinks=True,
                copy_function=_link_or_copy,
            )
        for directory in [staging, *staging.rglob("*")]:
            if directory.is_dir() and not directory.is_symlink():
                directory.chmod(0o755)  # mkdtemp/makedirs modes depend on the umask
        (staging / ".complete").write_text("ok\n")
        if dest.exists():  # an incomplete or outdated earlier attempt
            shutil.rmtree(dest)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest / relative_bin


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file others can already read (and run, if it is a program), else copy it.

    A hard link shares the inode with the pip-installed file, so it is never
    chmodded; a copy gets the read (and execute) bits for group and others.
    """
    mode = os.stat(src).st_mode
    wanted = stat.S_IRGRP | stat.S_IROTH
    if mode & stat.S_IXUSR:
        wanted |= stat.S_IXGRP | stat.S_IXOTH
    if mode & wanted == wanted:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system: copy
    shutil.copy2(src, dst)
    os.chmod(dst, stat.S_IMODE(mode) | wanted)


def _home_dirs() -> set[Path]:
    """Home directories of root, the caller and regular (login) users."""
    homes: set[Path] = set()
    if os.environ.get("HOME"):
        homes.add(Path(os.environ["HOME"]))
    import pwd

    for entry in pwd.getpwall():
        if entry.pw_uid in (0, os.geteuid()) or entry.pw_uid >= 1000:
            homes.add(Path(entry.pw_dir))
    # A home of "/" (some daemons) would forbid everything while protecting nothing.
    return {h.resolve() for h in homes if h.is_absolute() and h.is_dir()} - {Path("/")}


def warn_root_once(pgdata: Path, stacklevel: int) -> None:
    """Say once per process, in one line, where the root-mode server lives and as whom."""
    global _root_warned
    if not _root_warned:
        _root_warned = True
        warnings.warn(
            f"lunepool_magic: running as root, the embedded PostgreSQL keeps its data in {pgdata} "
            f"(outside home directories) and runs as OS user '{SERVICE_USER}', created with "
            "useradd if missing",
            RootModeWarning,
            stacklevel=stacklevel + 1,
        )
