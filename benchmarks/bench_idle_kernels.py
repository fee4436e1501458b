"""Many kernels, one small server: idle kernels give their connections back (issue 20).

    python benchmarks/bench_idle_kernels.py [--kernels 24] [--max-connections 20]

The script owns its server: a private embedded PostgreSQL with a small
``max_connections`` (``ALTER SYSTEM``, then a restart). It starts N real
ipykernels (``tests/support/kernel.py``) with ``%load_ext lunepool_magic``
and ``LunepoolMagic.idle_release`` of a few seconds (so the run stays short),
and a sampler thread counts the server's client backends every 0.2 s.

1. What a kernel costs: its resident memory after the first cell.
2. Direct to the server, N > max_connections: the first half of the kernels
   run a cell (two of them create a temporary table: session state that must
   be kept), go idle and are released; their next cell is timed against a
   warm cell (the reconnect cost); then the second half runs its first
   cells, which would not fit next to the first half's idle connections.
   Then every kernel idles: the server keeps only the two kernels' backends
   that hold state. A control with ``idle_release = None`` runs a cell in
   every kernel at once-idle and counts the cells the server refuses.
3. Through PgBouncer (transaction mode, a server pool of 5): every kernel
   connects with ``--pgbouncer``, opens its pool's 5 connections at once,
   then the kernels take turns running a parametrized cell past psycopg's
   prepare threshold. No cell may fail; the server never sees more than 5
   of PgBouncer's backends; the kernels' connections to PgBouncer are
   released when idle.

Prints the timeline and the figures; exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
for _path in (str(_ROOT), str(_HERE), str(_ROOT / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg  # noqa: E402
from chaos_faults import OwnServer  # noqa: E402

from lunepool_magic.notebook.session import APPLICATION_NAME  # noqa: E402
from tests.support.kernel import Kernel, start_kernel  # noqa: E402
from tests.support.pgbouncer import PgBouncer, find_pgbouncer  # noqa: E402

RELEASE_MINUTES = 0.05  # 3 s: the run stays short; the default is 10 min
WAIT = 60.0  # the longest any phase may take before the run fails


class Sampler(threading.Thread):
    """Counts the server's client backends (all but its own) every ``interval`` seconds."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, int, int]] = []  # (t, ours, pgbouncer's)
        self.start_time = time.monotonic()
        self._done = threading.Event()
        self.latest = (0, 0)

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._done.is_set():
                ours, other = conn.execute(
                    "SELECT count(*) FILTER (WHERE application_name = %s),"
                    "       count(*) FILTER (WHERE application_name IS DISTINCT FROM %s)"
                    "  FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    (APPLICATION_NAME, APPLICATION_NAME),
                ).fetchone()
                self.latest = (int(ours), int(other))
                self.samples.append((time.monotonic() - self.start_time, *self.latest))
                self._done.wait(self.interval)

    def mark(self) -> float:
        return time.monotonic() - self.start_time

    def wait_for(self, predicate: Any, what: str) -> float:
        """Wait until ``predicate(ours, other)`` holds on a fresh sample; the time it took."""
        start = time.monotonic()
        seen = len(self.samples)
        while True:
            if len(self.samples) > seen and predicate(*self.samples[-1][1:]):
                return time.monotonic() - start
            if time.monotonic() - start > WAIT:
                raise SystemExit(f"timed out waiting until {what}; last sample {self.latest}")
            time.sleep(self.interval / 2)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def kernel_backends(self) -> set[int]:
        """The pids of the kernels' direct backends now."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APPLICATION_NAME,)
            ).fetchall()
        return {int(pid) for (pid,) in rows}


def small_server(max_connections: int) -> OwnServer:
    server = OwnServer()
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET max_connections = {int(max_connections)}")
    server.stop()
    server.start()
    return server


def rss_mb(kernel: Kernel) -> float:
    pid = kernel.value("__import__('os').getpid()")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


TIMED_CELLS = (
    "import time as _t, json as _j\n"
    "_a = _t.perf_counter(); get_ipython().run_line_magic('sql', '{alias}SELECT 1')\n"
    "_b = _t.perf_counter(); get_ipython().run_line_magic('sql', '{alias}SELECT 1')\n"
    "_c = _t.perf_counter()\n"
    "print('__timed__', _j.dumps([_b - _a, _c - _b]))"
)


def timed_pair(kernel: Kernel, alias: str = "") -> tuple[float, float]:
    """(first cell, warm cell) in seconds, measured inside the kernel."""
    reply = kernel.run(TIMED_CELLS.format(alias=f"--alias {alias} " if alias else ""))
    if reply.status != "ok":
        raise SystemExit(f"a timed cell failed:\n{reply.text}")
    for line in reply.stream("stdout").splitlines():
        if line.startswith("__timed__"):
            first, warm = json.loads(line.split(" ", 1)[1])
            return first, warm
    raise SystemExit(f"no timing printed:\n{reply.text}")


def timeline(
    sampler: Sampler, marks: list[tuple[float, str]], column: int, since: float = 0.0
) -> list[str]:
    """The samples (from ``since``) where the count changed, with the phase marks between them."""
    events: list[tuple[float, str | int]] = [(t, label) for t, label in marks if t >= since]
    events += [(sample[0], sample[column]) for sample in sampler.samples if sample[0] >= since]
    lines, last = [], None
    for t, value in sorted(events, key=lambda event: event[0]):
        if isinstance(value, str):
            lines.append(f"{t:7.1f} s   -- {value}")
        elif value != last:
            lines.append(f"{t:7.1f} s {value:4d} backends")
            last = value
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, default=24)
    parser.add_argument("--max-connections", type=int, default=20)
    args = parser.parse_args()
    n, half = args.kernels, args.kernels // 2
    failures: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = small_server(args.max_connections)
    work = Path(server.root) / "kernels"
    with contextlib.ExitStack() as stack:
        stack.callback(server.close)
        sampler = Sampler(server.url)
        sampler.start()
        stack.callback(sampler.stop)
        marks: list[tuple[float, str]] = []

        t0 = time.monotonic()
        kernels = []
        for i in range(n):
            kernel = stack.enter_context(start_kernel(server.url, work / f"k{i}"))
            kernel.ok(f"%config LunepoolMagic.idle_release = {RELEASE_MINUTES}")
            kernels.append(kernel)
        started = time.monotonic() - t0
        print(f"{n} kernels started in {started:.1f} s ({started / n:.2f} s each)")
        marks.append((sampler.mark(), f"{n} kernels started"))

        # ---- direct: the first half connects; two keep a temporary table
        first, second = kernels[:half], kernels[half:]
        for i, kernel in enumerate(first):
            cell = "CREATE TEMP TABLE mine AS SELECT 1 AS a" if i < 2 else "SELECT 1"
            kernel.ok(f"%sql {cell}")
        stateful = set().union(*(k.backend_pids(["default"]) for k in first[:2]))
        memory = [rss_mb(k) for k in first]
        median_mb = statistics.median(memory)
        print(f"kernel memory after the first cell: {median_mb:.0f} MB RSS (median)")
        marks.append((sampler.mark(), f"{half} kernels ran a cell"))
        took = sampler.wait_for(lambda ours, _: ours == 2, "only the two with state hold one")
        marks.append((sampler.mark(), "released (2 kept)"))
        left = sampler.kernel_backends()
        print(
            f"released {half - 2} idle connections {took:.1f} s after the last cell; held by "
            f"the {half - 2} kernels without session state: {len(left - stateful)}"
        )
        if left != stateful:
            failures.append(f"backends left {sorted(left)}, expected {sorted(stateful)}")
        pairs = [timed_pair(k) for k in first[2:]]
        cold = statistics.median(p[0] for p in pairs) * 1000
        warm = statistics.median(p[1] for p in pairs) * 1000
        print(
            f"first cell after a release {cold:.1f} ms, warm cell {warm:.1f} ms (median of "
            f"{len(pairs)}): +{cold - warm:.1f} ms"
        )
        if cold - warm > 50:
            failures.append(f"reconnect cost {cold - warm:.1f} ms > 50 ms")
        marks.append((sampler.mark(), "timed cells"))
        sampler.wait_for(lambda ours, _: ours == 2, "released again")
        failed = [i for i, k in enumerate(second) if k.run("%sql SELECT 1").status != "ok"]
        marks.append((sampler.mark(), f"the other {len(second)} kernels ran their first cell"))
        if failed:
            failures.append(f"{len(failed)} first cells failed with idle release on")
        print(f"first cells of the second {len(second)} kernels: {len(second) - len(failed)} ok")
        sampler.wait_for(lambda ours, _: ours == 2, "every kernel idle")
        marks.append((sampler.mark(), "all idle: 2 kept"))
        kept = first[0].ok("%sql --list").text
        if "temporary table mine" not in kept:
            failures.append("the listing does not say why the connection is kept")

        # ---- control: without the release, idle kernels keep their connections
        for kernel in kernels:
            kernel.ok("%config LunepoolMagic.idle_release = None")
        refused = sum(k.run("%sql SELECT 1").status != "ok" for k in kernels)
        marks.append((sampler.mark(), "control: idle_release = None, a cell in every kernel"))
        print(
            f"control without release: {refused} of {n} cells refused by the server "
            f"(max_connections {args.max_connections})"
        )
        if refused == 0:
            failures.append("the control did not exhaust the server")
        for kernel in kernels:
            kernel.ok(f"%config LunepoolMagic.idle_release = {RELEASE_MINUTES}")
        sampler.wait_for(lambda ours, _: ours == 2, "released after the control")
        direct_lines = timeline(sampler, marks, 1)

        # ---- through PgBouncer: N kernels x 5 connections, a server pool of 5
        if find_pgbouncer() is None:
            print("pgbouncer is not installed: the PgBouncer part is skipped")
            failures.append("pgbouncer missing")
        else:
            failures += through_pgbouncer(server.url, kernels, sampler, marks)

    print("\ndirect, kernels' backends on the server over time:")
    print("\n".join(direct_lines))
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        return 1
    print("\nall checks passed")
    return 0


BORROW_FIVE = (
    "import threading as _th\n"
    "_s = get_ipython().magics_manager.registry['LunepoolMagic'].sessions['pb']\n"
    "_go = _th.Barrier(5)\n"
    "def _hold():\n"
    "    with _s.pool.connection() as _c:\n"
    "        _go.wait(10)\n"
    "        _c.execute('SELECT 1')\n"
    "_ts = [_th.Thread(target=_hold) for _ in range(5)]\n"
    "[t.start() for t in _ts]; [t.join() for t in _ts]\n"
    "assert _s.pool.stats().size == 5, _s.pool.stats()"
)


def through_pgbouncer(
    url: str, kernels: list[Kernel], sampler: Sampler, marks: list[tuple[float, str]]
) -> list[str]:
    failures: list[str] = []
    with PgBouncer(url, pool_mode="transaction", pool_size=5) as bouncer:
        start = sampler.mark()
        marks.append((start, "PgBouncer: every kernel connects --pgbouncer"))
        for kernel in kernels:
            # Its own application_name, so that the sampler tells PgBouncer's
            # server connections (which take it from their clients) from the direct ones.
            kernel.ok(f"%sql {bouncer.url}?application_name=via-pgbouncer --alias pb --pgbouncer")
            kernel.ok(BORROW_FIVE)
        marks.append((sampler.mark(), f"{len(kernels)} kernels x 5 connections opened"))
        failed = 0
        rounds = 8  # past psycopg's prepare threshold (5)
        for i in range(rounds):
            for kernel in kernels:
                reply = kernel.run(f"i = {i}\n%sql --alias pb SELECT :i::int + 1 AS next")
                failed += reply.status != "ok"
        cells = rounds * len(kernels)
        marks.append((sampler.mark(), f"{cells} cells taking turns"))
        sizes_before = sum(k.pool_stats("pb")["size"] for k in kernels)
        # Each kernel's release thread closes its idle connections to PgBouncer.
        deadline = time.monotonic() + WAIT
        while sum(k.pool_stats("pb")["size"] for k in kernels) and time.monotonic() < deadline:
            time.sleep(0.5)
        sizes_after = sum(k.pool_stats("pb")["size"] for k in kernels)
        marks.append((sampler.mark(), "kernels idle: their PgBouncer connections released"))
        pairs = [timed_pair(k, "pb") for k in kernels[2:12]]
        peak = max(other for t, _, other in sampler.samples if t >= start)
        print(
            f"\nthrough PgBouncer (pool_size 5): {cells} cells, {failed} failed; "
            f"client connections held by the kernels {sizes_before} -> {sizes_after} after "
            f"the release; server backends of PgBouncer at most {peak}"
        )
        cold = statistics.median(p[0] for p in pairs) * 1000
        warm = statistics.median(p[1] for p in pairs) * 1000
        print(
            f"through PgBouncer: first cell after a release {cold:.1f} ms, warm cell "
            f"{warm:.1f} ms (median of {len(pairs)}): +{cold - warm:.1f} ms"
        )
        if cold - warm > 50:
            failures.append(f"reconnect cost through PgBouncer {cold - warm:.1f} ms > 50 ms")
        print("\nthrough PgBouncer, PgBouncer's backends on the server over time:")
        print("\n".join(timeline(sampler, marks, 2, since=start)))
        if failed:
            failures.append(f"{failed} cells failed through PgBouncer")
        if peak > 5:
            failures.append(f"PgBouncer used {peak} server connections (pool_size 5)")
        if sizes_after:
            failures.append(f"{sizes_after} client connections to PgBouncer not released")
    return failures


if __name__ == "__main__":
    sys.exit(main())
