"""Tests of the test infrastructure itself: proxy, private servers, PgBouncer, strict mode."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator

import psycopg
import pytest
from support.proxy import BreakableProxy, parse_target
from support.servers import EmbeddedServer
from support.strict import STRICT_ENV


class _EchoServer:
    """Echoes bytes back until the client's FIN, then closes (TCP or Unix socket)."""

    def __init__(self, unix_path: str | None = None) -> None:
        family = socket.AF_UNIX if unix_path else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind(unix_path or ("127.0.0.1", 0))
        self.listener.listen(8)
        self.address = unix_path or self.listener.getsockname()
        self.threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop)
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._echo, args=(conn,))
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        # shutdown() wakes the blocked accept() on Linux; close() alone would not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accept_thread.join(5)
        for thread in self.threads:
            thread.join(5)


@pytest.fixture(params=["tcp", "unix"])
def echo_server(request: pytest.FixtureRequest) -> Iterator[_EchoServer]:
    if request.param == "unix":
        folder = tempfile.mkdtemp(prefix="lpm-echo-")
        server = _EchoServer(os.path.join(folder, "echo.sock"))
    else:
        folder = None
        server = _EchoServer()
    try:
        yield server
    finally:
        server.close()
        if folder:
            os.unlink(os.path.join(folder, "echo.sock"))
            os.rmdir(folder)


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- the proxy, alone


def test_proxy_carries_large_payload_and_half_close(echo_server: _EchoServer) -> None:
    payload = os.urandom(8 * 1024 * 1024)  # above the proxy's high-water mark: backpressure
    with BreakableProxy(echo_server.address) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(1)))
            sender.start()
            received = _recv_all(sock)
            sender.join()
        assert received == payload


def test_proxy_stall_forwards_nothing_until_accept(echo_server: _EchoServer) -> None:
    with BreakableProxy(echo_server.address) as proxy:
        proxy.stall()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"ping")
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(10)
            sock.settimeout(5)
            proxy.accept()  # cuts the stalled connection
            assert sock.recv(10) == b""
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(10) == b"ping"


def test_proxy_refuse_and_accept_keep_the_port(echo_server: _EchoServer) -> None:
    with BreakableProxy(echo_server.address) as proxy:
        port = proxy.port
        live = socket.create_connection(("127.0.0.1", port), timeout=5)
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        live.sendall(b"still")  # connections made before refuse() go on
        assert live.recv(10) == b"still"
        proxy.accept()
        assert proxy.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"back")
            assert sock.recv(10) == b"back"
        live.close()


def test_proxy_leaks_no_threads(echo_server: _EchoServer) -> None:
    before = set(threading.enumerate())
    proxy = BreakableProxy(echo_server.address)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        proxy.drop_all()
    proxy.close()
    proxy.close()  # idempotent
    assert {t for t in threading.enumerate() if t.name.startswith("BreakableProxy")} == {
        t for t in before if t.name.startswith("BreakableProxy")
    }
    with pytest.raises(RuntimeError, match="closed"):
        proxy.drop_all()


def test_parse_target_and_url_keep_credentials() -> None:
    target, params = parse_target("postgresql://app:s%40cret@db.local:6543/app?sslmode=disable")
    assert target == ("db.local", 6543)
    assert params == {"user": "app", "password": "s@cret", "dbname": "app", "sslmode": "disable"}
    target, params = parse_target("postgresql://postgres@/postgres?host=/tmp/lpm-x/data")
    assert target == "/tmp/lpm-x/data/.s.PGSQL.5432"
    proxy = BreakableProxy(target, {"user": "app", "password": "s@cret", "dbname": "app"})
    try:
        assert proxy.url == f"postgresql://app:s%40cret@127.0.0.1:{proxy.port}/app"
    finally:
        proxy.close()


# --------------------------------------------------------------------------- proxy and PostgreSQL


def test_query_through_proxy(tcp_proxy: BreakableProxy) -> None:
    with psycopg.connect(tcp_proxy.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert tcp_proxy.connection_count() == 1


@pytest.mark.parametrize("reset", [False, True])
def test_drop_all_breaks_live_connections(tcp_proxy: BreakableProxy, reset: bool) -> None:
    conn = psycopg.connect(tcp_proxy.url)
    try:
        assert tcp_proxy.drop_all(reset=reset) == 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        assert conn.broken
    finally:
        conn.close()
    with psycopg.connect(tcp_proxy.url) as again:  # new connections still pass
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_refused_connection_fails_fast(tcp_proxy: BreakableProxy) -> None:
    tcp_proxy.refuse()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(tcp_proxy.url, connect_timeout=5)
    tcp_proxy.accept()
    with psycopg.connect(tcp_proxy.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --------------------------------------------------------------------------- servers


def test_pg_admin_is_autocommit(pg_admin: psycopg.Connection) -> None:
    assert pg_admin.autocommit
    assert pg_admin.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0] >= 1


def test_private_server_restart_breaks_old_connections(
    private_server: EmbeddedServer, pg_url: str
) -> None:
    assert private_server.url != pg_url
    url, pid = private_server.url, private_server.server_pid
    conn = psycopg.connect(url)
    try:
        assert private_server.restart() == url  # the socket lives in the data dir
        assert private_server.server_pid not in (None, pid)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    with psycopg.connect(url) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
    private_server.stop()
    assert not private_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url)


@pytest.mark.pgbouncer
def test_query_through_pgbouncer(pgbouncer_url: str, pg_url: str) -> None:
    assert pgbouncer_url != pg_url
    # Transaction pooling: no server-side prepared statements across transactions.
    with psycopg.connect(pgbouncer_url, prepare_threshold=None, autocommit=True) as conn:
        for _ in range(3):
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with conn.transaction():
            assert conn.execute("SELECT current_user").fetchone()[0]


# --------------------------------------------------------------------------- strict CI mode

_STRICT_PROBE = """
import pytest

def test_skipped_in_body():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(True, reason="marker says no")
def test_skipped_by_marker():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


def _run_inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    # Only the plugin under test: installed plugins (nbval, hypothesis, ...) just cost time.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester.runpytest("-p", "support.strict")


def test_strict_mode_turns_skips_into_failures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_probe=_STRICT_PROBE)
    monkeypatch.setenv(STRICT_ENV, "1")
    result = _run_inner(pytester, monkeypatch)
    # Body skip -> failed; marker skip happens in setup -> error; xfail untouched.
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)
    result.stdout.fnmatch_lines(["*LUNEPOOL_CI_STRICT=1*no frobnicator here*"])
    result.stdout.fnmatch_lines(["*LUNEPOOL_CI_STRICT=1*marker says no*"])


def test_strict_mode_fails_module_level_skip(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_mod="import pytest\npytest.importorskip('no_such_module_lpm')\n")
    monkeypatch.setenv(STRICT_ENV, "1")
    result = _run_inner(pytester, monkeypatch)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no_such_module_lpm*"])


def test_without_strict_mode_skips_stay_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_probe=_STRICT_PROBE)
    monkeypatch.delenv(STRICT_ENV, raising=False)
    result = _run_inner(pytester, monkeypatch)
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
