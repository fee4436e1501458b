"""A throwaway Debian PostgreSQL 15 server, the oldest version the tests compare against.

Debian's ``postgresql-15`` package puts its binaries in
``/usr/lib/postgresql/15/bin``. ``DebianServer`` runs ``initdb`` into a fresh
``/tmp/lpm-pg15-*`` folder and starts the server there, listening on a Unix
socket in that folder only (no TCP port, so nothing clashes with another
server), with ``trust`` authentication for the superuser ``postgres``.

The server refuses to run as root. As root it runs as the ``postgres`` OS user
the package creates (``nobody`` if there is none); root, as the client, can
still reach the socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PG15_BIN", "DebianServer", "find_pg15"]

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
_START_TIMEOUT = 30  # seconds, for pg_ctl -w


def find_pg15() -> Path | None:
    """The folder of PostgreSQL 15's binaries, or None if the package is not installed."""
    return PG15_BIN if os.access(PG15_BIN / "postgres", os.X_OK) else None


def _service_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when root; None when not root."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root, and neither a postgres nor a nobody OS user exists")


class DebianServer:
    """PostgreSQL 15 in a temp folder; ``url`` reaches it as ``postgres``. Use as a context."""

    def __init__(self, bin_dir: Path = PG15_BIN) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="lpm-pg15-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root
        self.port = 5432  # only names the socket file: there is no TCP listener
        self._user = _service_user()
        self._started = False

    @property
    def url(self) -> str:
        """A libpq URL for the superuser over the Unix socket."""
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def start(self) -> DebianServer:
        """initdb, then start and wait until the server accepts connections."""
        if self._user is not None:
            os.chown(self.root, *self._user)
        self.root.chmod(0o755)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses='' -k {self.socket_dir} -p {self.port} -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-o", options, "-w",
            "-t", str(_START_TIMEOUT), "-l", str(self.root / "server.log"), "start",
        )  # fmt: skip
        self._started = True
        return self

    def close(self) -> None:
        """Stop the server (fast shutdown) and delete its folder. Idempotent."""
        if self._started:
            self._started = False
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def log(self) -> str:
        """What the server has logged so far."""
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user[0], "group": self._user[1], "extra_groups": []}
        done = subprocess.run(
            [str(self.bin_dir / program), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.root,
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{self.log}"
            )

    def __enter__(self) -> DebianServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
