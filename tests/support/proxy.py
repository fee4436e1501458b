"""A small breakable TCP proxy for tests of connection loss.

``BreakableProxy`` listens on 127.0.0.1 and forwards every connection to a
target server (a Unix socket path or a TCP address). Tests use it to break
connections on demand, without touching the server other tests share:

* ``drop_all()`` cuts every live connection (FIN, or RST with ``reset=True``);
* ``refuse()`` closes the listening socket, so new connections are refused,
  until ``accept()``;
* ``stall()`` accepts new connections but forwards nothing (a server that
  hangs), until ``accept()``.

Determinism: all sockets belong to one event-loop thread. Every control call
runs *inside* that loop and returns only when it has taken effect, e.g. when
``drop_all()`` returns, every connection it cut is closed on the proxy's side
(the backend notices its client is gone a moment later, on its own schedule).
``close()`` joins the thread, so nothing leaks.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

__all__ = ["BreakableProxy", "parse_target"]

_T = TypeVar("_T")
_CHUNK = 256 * 1024
_HIGH_WATER = 4 * 1024 * 1024  # stop reading a side while this much waits to be sent
_CONNECT_TIMEOUT = 5.0
_CALL_TIMEOUT = 10.0

Target = str | tuple[str, int]


def parse_target(url: str) -> tuple[Target, dict[str, str]]:
    """Split a libpq URL/conninfo into the proxy target and the remaining parameters.

    The target is the Unix socket file when ``host`` is a directory, else
    ``(host, port)``. Only the first host of a multi-host string is used.
    """
    from psycopg.conninfo import conninfo_to_dict

    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    host = params.pop("host", "").split(",")[0]
    params.pop("hostaddr", None)
    port = int(params.pop("port", "5432").split(",")[0] or 5432)
    if not host:
        raise ValueError("the URL must name a host (or a socket directory) to proxy to")
    target: Target = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    return target, params


class _Direction:
    """Bytes flowing from ``src`` to ``dst`` for one connection."""

    __slots__ = ("buffer", "dst", "eof", "shut", "src")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.buffer = bytearray()
        self.eof = False  # src sent FIN
        self.shut = False  # FIN passed on to dst


class _Link:
    """One proxied connection: a client socket and its target socket."""

    __slots__ = ("client", "closed", "down", "server", "up")

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.up = _Direction(client, server)
        self.down = _Direction(server, client)
        self.closed = False


class BreakableProxy:
    """Forward 127.0.0.1:<port> to ``target``; break connections on demand.

    ``target`` is a Unix socket path or ``(host, port)``. ``params`` (user,
    password, dbname, ...) only feed ``url``. Use as a context manager, or call
    ``close()``.
    """

    def __init__(self, target: Target, params: dict[str, str] | None = None) -> None:
        self._target = target
        self._params = dict(params or {})
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._listener: socket.socket | None = None
        self._port = 0
        self._listen()
        self._links: set[_Link] = set()
        self._stalled: set[socket.socket] = set()
        self._stalling = False
        self._masks: dict[socket.socket, int] = {}
        self._accepted_total = 0
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"BreakableProxy-{self._port}", daemon=True
        )
        self._thread.start()

    @classmethod
    def for_url(cls, url: str) -> BreakableProxy:
        """A proxy in front of the server named by ``url`` (same user, password, db)."""
        target, params = parse_target(url)
        return cls(target, params)

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        """The loopback TCP port the proxy listens on (stable across refuse/accept)."""
        return self._port

    @property
    def url(self) -> str:
        """TCP URL through the proxy, with the target URL's user, password, db and options."""
        params = dict(self._params)
        auth = ""
        if "user" in params:
            auth = quote(params.pop("user"), safe="")
            if "password" in params:
                auth += ":" + quote(params.pop("password"), safe="")
            auth += "@"
        dbname = quote(params.pop("dbname", ""), safe="")
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://{auth}127.0.0.1:{self._port}/{dbname}{query}"

    def drop_all(self, *, reset: bool = False) -> int:
        """Cut every live connection (and stalled one); return how many were cut.

        ``reset=True`` sends RST instead of FIN ("connection reset by peer").
        """

        def drop() -> int:
            count = len(self._links) + len(self._stalled)
            for link in list(self._links):
                self._close_link(link, reset=reset)
            self._close_stalled(reset=reset)
            return count

        return self._call(drop)

    def refuse(self) -> None:
        """Close the listening socket: new connections get ECONNREFUSED. Live ones go on."""

        def do() -> None:
            if self._listener is not None:
                self._unregister(self._listener)
                self._listener.close()
                self._listener = None

        self._call(do)

    def stall(self) -> None:
        """Accept new connections but forward nothing: clients wait for a server that hangs."""

        def do() -> None:
            self._stalling = True
            if self._listener is None:
                self._listen()

        self._call(do)

    def accept(self) -> None:
        """Back to normal: listen again (same port) and forward; stalled connections are cut."""

        def do() -> None:
            self._stalling = False
            self._close_stalled(reset=False)
            if self._listener is None:
                self._listen()

        self._call(do)

    def connection_count(self) -> int:
        """Connections currently forwarded (stalled ones not included)."""
        return self._call(lambda: len(self._links))

    def accepted_total(self) -> int:
        """Connections accepted since the proxy started (stalled ones included)."""
        return self._call(lambda: self._accepted_total)

    def close(self) -> None:
        """Cut everything, stop listening and join the loop thread. Idempotent."""
        if self._closed:
            return
        self._closed = True

        def do() -> None:
            self._stopping = True

        if self._thread.is_alive():
            self._call(do, allow_closed=True)
        self._thread.join(_CALL_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("BreakableProxy loop thread did not stop")
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> BreakableProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BreakableProxy 127.0.0.1:{self._port} -> {self._target!r}>"

    # ------------------------------------------------------------------ control plumbing

    def _call(self, fn: Callable[[], _T], *, allow_closed: bool = False) -> _T:
        """Run ``fn`` in the loop thread and return its result once it has run."""
        if self._closed and not allow_closed:
            raise RuntimeError("the proxy is closed")
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as err:  # handed back to the caller
                box["error"] = err
            finally:
                done.set()

        self._commands.append(run)
        self._wake()
        waited = 0.0
        while not done.wait(0.05):
            waited += 0.05
            if not self._thread.is_alive() or waited > _CALL_TIMEOUT:
                raise RuntimeError("the proxy loop is not running")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _wake(self) -> None:
        # A full pipe means the loop is already due to wake up.
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    # ------------------------------------------------------------------ the loop (one thread)

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._selector.select():
                    self._dispatch(key, mask)
        finally:
            for link in list(self._links):
                self._close_link(link, reset=False)
            self._close_stalled(reset=False)
            if self._listener is not None:
                self._unregister(self._listener)
                self._listener.close()
                self._listener = None
            # Callers waiting on a command that will never run must not hang.
            while self._commands:
                self._commands.popleft()()

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        sock = key.fileobj
        if sock is self._wake_r:
            with contextlib.suppress(BlockingIOError):
                while self._wake_r.recv(4096):
                    pass
            while self._commands:
                self._commands.popleft()()
        elif sock is self._listener:
            self._on_accept()
        elif isinstance(key.data, _Link):
            link = key.data
            if not link.closed:  # an earlier event of this batch may have closed it
                self._on_io(link, sock, mask)
        elif sock in self._stalled:
            self._on_stalled(sock)

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Rebinding the same port after refuse() must not fail on TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self._port))
        except OSError as err:
            listener.close()
            raise RuntimeError(f"cannot listen on 127.0.0.1:{self._port} again: {err}") from err
        listener.listen(128)
        listener.setblocking(False)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, None)

    def _on_accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._accepted_total += 1
            client.setblocking(False)
            if self._stalling:
                self._stalled.add(client)
                self._selector.register(client, selectors.EVENT_READ, None)
                continue
            try:
                server = self._connect_target()
            except OSError:
                client.close()  # target down: the client sees the connection closed
                continue
            link = _Link(client, server)
            self._links.add(link)
            self._update(link)

    def _connect_target(self) -> socket.socket:
        if isinstance(self._target, str):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Blocking, but local: refused or accepted at once.
            server.settimeout(_CONNECT_TIMEOUT)
            server.connect(self._target)
        except OSError:
            server.close()
            raise
        server.setblocking(False)
        return server

    def _on_stalled(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(_CHUNK)  # swallowed: a hung server reads nothing back
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._stalled.discard(sock)
            self._unregister(sock)
            sock.close()

    def _on_io(self, link: _Link, sock: socket.socket, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            direction = link.up if sock is link.client else link.down
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close_link(link, reset=False)
                return
            if data == b"":
                direction.eof = True
            elif data:
                direction.buffer += data
        self._update(link)

    def _update(self, link: _Link) -> None:
        """Send what can be sent, pass FINs on, and re-register interest."""
        for direction in (link.up, link.down):
            if direction.buffer:
                try:
                    sent = direction.dst.send(direction.buffer)
                    del direction.buffer[:sent]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    self._close_link(link, reset=False)
                    return
            if direction.eof and not direction.buffer and not direction.shut:
                direction.shut = True
                try:
                    direction.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    self._close_link(link, reset=False)
                    return
        if link.up.shut and link.down.shut:
            self._close_link(link, reset=False)
            return
        for sock, reading, writing in (
            (link.client, link.up, link.down),
            (link.server, link.down, link.up),
        ):
            mask = 0
            if not reading.eof and len(reading.buffer) < _HIGH_WATER:
                mask |= selectors.EVENT_READ
            if writing.buffer:
                mask |= selectors.EVENT_WRITE
            self._set_mask(sock, mask, link)

    def _set_mask(self, sock: socket.socket, mask: int, link: _Link) -> None:
        current = self._masks.get(sock, 0)
        if mask == current:
            return
        if not mask:
            self._unregister(sock)
        elif not current:
            self._selector.register(sock, mask, link)
            self._masks[sock] = mask
        else:
            self._selector.modify(sock, mask, link)
            self._masks[sock] = mask

    def _unregister(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self._masks.pop(sock, None)

    def _close_link(self, link: _Link, *, reset: bool) -> None:
        if link.closed:
            return
        link.closed = True
        self._links.discard(link)
        for sock in (link.client, link.server):
            self._unregister(sock)
        # RST matters to the client only; the server side just sees its client leave.
        _close(link.client, reset=reset)
        _close(link.server, reset=False)

    def _close_stalled(self, *, reset: bool) -> None:
        for sock in list(self._stalled):
            self._unregister(sock)
            _close(sock, reset=reset)
        self._stalled.clear()


def _close(sock: socket.socket, *, reset: bool) -> None:
    if reset:
        # Linger on, timeout 0: close() sends RST instead of FIN.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
