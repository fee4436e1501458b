"""initdb, start and stop of one cluster, with the wheel's binaries, as the server's OS user.

The server listens on a Unix socket only, in a directory only its owner can
enter: the data directory when the socket's path fits, else a short private
directory (private.py). The command line, which ALTER SYSTEM cannot
override, repeats it: no TCP listener, socket mode 0700.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lunepool_magic.embedded import private
from lunepool_magic.embedded.registry import DB_USER, DEFAULT_PORT

_INITDB_TIMEOUT = 300.0
_START_TIMEOUT = 60  # pg_ctl -t: seconds to wait for the server to accept connections
_STOP_TIMEOUT = 30
_OUTPUT_TAIL = 400  # characters of a failed command's output kept in the error


@dataclass(frozen=True)
class Runner:
    """How to run the wheel's programs: from which ``bin`` dir, as which OS user."""

    bin: Path
    uid: int | None = None  # None: as ourselves
    gid: int | None = None

    @property
    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) of the server's files when that is not us, else None."""
        return None if self.uid is None or self.gid is None else (self.uid, self.gid)

    def as_user(self) -> dict[str, Any]:
        """subprocess keywords that run a program as the server's OS user."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def run(self, program: str, args: list[str], timeout: float) -> None:
        """Run ``program`` to completion; raise a one-line RuntimeError with its output."""
        with tempfile.TemporaryFile("w+") as output:
            # Output to a file, not a pipe: the postmaster that pg_ctl starts would inherit it.
            try:
                done = self._run(program, args, output, timeout)
            except subprocess.TimeoutExpired as err:
                raise RuntimeError(f"{program} did not finish within {timeout:.0f} s") from err
            if done.returncode != 0:
                output.seek(0)
                text = " ".join(output.read().split())
                raise RuntimeError(f"{program} failed: {text[-_OUTPUT_TAIL:] or 'no output'}")

    def _run(
        self, program: str, args: list[str], output: IO[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / program), *args],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_server_env(),
            cwd="/",  # the service user may not be able to enter ours
            timeout=timeout,
            text=True,
            check=False,
            **self.as_user(),
        )


def _server_env() -> dict[str, str]:
    # PGPORT, PGDATA, PGOPTIONS... in the user's environment must not reach the server.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def initdb(runner: Runner, pgdata: Path) -> None:
    """Create a cluster at ``pgdata`` (which must not exist) atomically.

    initdb runs in a private staging directory next to it, renamed into place
    when complete, so a killed initdb never leaves a half-made cluster behind.
    Stale staging directories are removed first (the caller holds the lock).
    """
    for stale in pgdata.parent.glob(f".{pgdata.name}.initdb-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{pgdata.name}.initdb-", dir=pgdata.parent))
    try:
        if runner.owner is not None:
            os.chown(staging, *runner.owner)
        args = ["-D", str(staging), "--auth=trust", "--encoding=utf8", "-U", DB_USER]
        # --no-sync: the fsync of every new file is a third of initdb's time; the
        # first start pays it later, off the critical path (sync_in_background).
        args += ["--no-instructions", "--no-sync"]
        runner.run("initdb", args, timeout=_INITDB_TIMEOUT)
        os.rename(staging, pgdata)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def sync_in_background(runner: Runner, pgdata: Path) -> subprocess.Popen[bytes]:
    """Flush a cluster made with ``initdb --no-sync`` to disk (``initdb --sync-only``).

    Runs while the server already serves, in a process of its own that
    outlives ours if need be; until it ends, an OS crash could lose the
    new cluster (a fresh one: nothing a user wrote before it started).
    """
    return subprocess.Popen(
        [str(runner.bin / "initdb"), "--sync-only", "-D", str(pgdata)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_server_env(),
        cwd="/",
        start_new_session=True,  # not ended by a Ctrl-C in the kernel's terminal
        **runner.as_user(),
    )


def socket_dir_for(runner: Runner, pgdata: Path) -> Path:
    """The data directory if the socket fits there, else a short private directory."""
    if private.socket_fits(pgdata, DEFAULT_PORT):
        return pgdata
    return private.short_socket_dir(pgdata, runner.owner)


def start(runner: Runner, pgdata: Path, socket_dir: Path | None) -> None:
    """Start the server and wait until it accepts connections.

    ``socket_dir`` None means loopback TCP on a free port (Windows, which has
    no Unix sockets for PostgreSQL).
    """
    if socket_dir is not None:
        options = ["-h", "", "-k", str(socket_dir), "-p", str(DEFAULT_PORT)]
        options += ["-c", "unix_socket_permissions=0700"]
    else:
        options = ["-h", "127.0.0.1", "-p", str(_free_port())]
    args = ["-D", str(pgdata), "-w", "-t", str(_START_TIMEOUT), "-l", str(pgdata / "log")]
    # pg_ctl hands -o to a shell: quote every word.
    args += ["-o", " ".join(shlex.quote(word) for word in options), "start"]
    runner.run("pg_ctl", args, timeout=_START_TIMEOUT + 30)


def stop(runner: Runner, pgdata: Path) -> None:
    """Fast shutdown: open sessions are ended, the data is flushed."""
    args = ["-D", str(pgdata), "-w", "-t", str(_STOP_TIMEOUT), "-m", "fast", "stop"]
    runner.run("pg_ctl", args, timeout=_STOP_TIMEOUT + 30)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
