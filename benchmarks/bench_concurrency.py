"""16 threads share a pool of 5: throughput, fairness and waits, ours against the usual pools.

Each thread runs ``--per-thread`` times: request a connection, ``SELECT 1``
(fetched), return it. Autocommit everywhere, so each query is one round trip:

* ours: ``with pool.connection() as c: c.execute("SELECT 1").fetchall()``;
* psycopg_pool: ``ConnectionPool(min_size=5, max_size=5,
  kwargs={"autocommit": True})``, opened and filled before timing;
* SQLAlchemy QueuePool: ``pool_size=5, max_overflow=0,
  isolation_level="AUTOCOMMIT"``, five connections opened before timing,
  ``with engine.connect() as c: c.execute(text("SELECT 1")).fetchall()``.

Per round and contender: queries per second; wait (from the request until
the connection is in hand) p50/p99/p99.9/max; the spread of per-thread mean
waits; the spread of thread finish times (a starved thread finishes last).
Contenders run interleaved, round by round (the starting one rotates); the
tables show each contender's median round by throughput, and the ratios to
psycopg_pool are medians of per-round ratios, all from one run. ``server
cores`` is the CPU the contender's five backends used (when the server runs
on this box), ``other cores`` what every other process used meanwhile (from
/proc/stat, minus this process and those backends): rounds with much of it
are noisy. Before each round the process's heap is collected and frozen
(``gc.freeze()``): a full collection of it (pandas and all) takes tens of ms
and would otherwise decide the max wait of whichever round it falls in; the
garbage made during the round is still collected as usual.

The server: ``DATABASE_URL`` if set, else the embedded server. Peers missing
from the environment (``pip install -e '.[bench]'``) are reported as skipped.

    python benchmarks/bench_concurrency.py [--threads 16] [--per-thread 2000] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench_common import available, cpu_busy_seconds, serving

from lunepool_magic.postgres import create_pool, destroy_pool

BASELINE = "psycopg_pool"
OURS = "ours"
SIZE = 5

# A worker: (pool, how many, its wait list) -> None; it appends one wait per query.
Worker = Callable[[int, list[float]], None]


def percentile(values: list[float], p: float) -> float:
    """Linear-interpolated percentile of ``values`` (0 <= p <= 100)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def _backend_pids(url: str, app: str) -> list[int]:
    """PIDs of the server backends serving the pool named ``app`` (its application_name)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchall()
    return [pid for (pid,) in rows]


def _process_cpu_seconds(pids: list[int]) -> float | None:
    """CPU seconds used so far by processes ``pids`` (None if one is not on this box)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # Fields after the ")" closing the command name: state is the
                # first, utime and stime the 12th and 13th.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------- contenders
#
# Each factory opens a pool, fills it, and returns (worker, close).


def ours(url: str, app: str) -> tuple[Worker, Callable[[], None]]:
    pool = create_pool(
        url, max_connections=SIZE, min_connections=SIZE, acquire_timeout=120, application_name=app
    )

    def work(n: int, waits: list[float]) -> None:
        connection, clock, record = pool.connection, time.perf_counter, waits.append
        for _ in range(n):
            requested = clock()
            with connection() as conn:
                record(clock() - requested)
                conn.execute("SELECT 1").fetchall()

    return work, lambda: destroy_pool(pool)


def psycopg_pool(url: str, app: str) -> tuple[Worker, Callable[[], None]]:
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        url,
        min_size=SIZE,
        max_size=SIZE,
        kwargs={"autocommit": True, "application_name": app},
        timeout=120,
        open=True,
    )
    pool.wait()

    def work(n: int, waits: list[float]) -> None:
        connection, clock, record = pool.connection, time.perf_counter, waits.append
        for _ in range(n):
            requested = clock()
            with connection() as conn:
                record(clock() - requested)
                conn.execute("SELECT 1").fetchall()

    return work, pool.close


def sqlalchemy_queuepool(url: str, app: str) -> tuple[Worker, Callable[[], None]]:
    import sqlalchemy

    sa_url = sqlalchemy.make_url(url).set(drivername="postgresql+psycopg")
    engine = sqlalchemy.create_engine(
        sa_url,
        pool_size=SIZE,
        max_overflow=0,
        pool_timeout=120,
        isolation_level="AUTOCOMMIT",
        connect_args={"application_name": app},
    )
    select_1 = sqlalchemy.text("SELECT 1")
    connections = [engine.connect() for _ in range(SIZE)]  # pre-open all five
    for conn in connections:
        conn.execute(select_1).fetchall()
        conn.close()

    def work(n: int, waits: list[float]) -> None:
        connect, clock, record = engine.connect, time.perf_counter, waits.append
        for _ in range(n):
            requested = clock()
            with connect() as conn:
                record(clock() - requested)
                conn.execute(select_1).fetchall()

    return work, engine.dispose


Factory = Callable[[str, str], tuple[Worker, Callable[[], None]]]

CONTENDERS: dict[str, tuple[Factory, str | None]] = {
    OURS: (ours, None),
    BASELINE: (psycopg_pool, "psycopg_pool"),
    "SQLAlchemy QueuePool": (sqlalchemy_queuepool, "sqlalchemy"),
}


@dataclass
class Round:
    """One contender's numbers in one round (times in seconds)."""

    qps: float
    wall: float
    wait_p50: float
    wait_p99: float
    wait_p999: float
    wait_max: float
    thread_mean_wait_min: float
    thread_mean_wait_max: float
    finish_min: float
    finish_max: float
    other_cores: float | None
    server_cores: float | None


def one_round(factory: Factory, url: str, app: str, threads: int, per_thread: int) -> Round:
    work, close = factory(url, app)
    try:
        backends = _backend_pids(url, app)
        waits: list[list[float]] = [[] for _ in range(threads)]
        finished = [0.0] * threads
        start = threading.Barrier(threads + 1)

        def run(index: int) -> None:
            start.wait()
            work(per_thread, waits[index])
            finished[index] = time.perf_counter()

        workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        # A full collection of this process's heap (pandas, SQLAlchemy...)
        # takes tens of ms here and stalls every thread: whether one lands in
        # a round would decide its max wait. Collect now and freeze what
        # survives, so only the garbage made during the round is collected.
        gc.collect()
        gc.freeze()
        busy0, own0, server0 = cpu_busy_seconds(), os.times(), _process_cpu_seconds(backends)
        start.wait()  # all threads are ready: go
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - began
        busy1, own1, server1 = cpu_busy_seconds(), os.times(), _process_cpu_seconds(backends)
    finally:
        gc.unfreeze()
        close()
    other = server = None
    if server0 is not None and server1 is not None:
        server = (server1 - server0) / wall
    if busy0 is not None and busy1 is not None:
        ours_cpu = (own1.user + own1.system) - (own0.user + own0.system)
        other = max(0.0, (busy1 - busy0) - ours_cpu - (server or 0.0) * wall) / wall
    every = [w for per in waits for w in per]
    means = [statistics.mean(per) for per in waits]
    finish = [f - began for f in finished]
    return Round(
        qps=threads * per_thread / wall,
        wall=wall,
        wait_p50=percentile(every, 50),
        wait_p99=percentile(every, 99),
        wait_p999=percentile(every, 99.9),
        wait_max=max(every),
        thread_mean_wait_min=min(means),
        thread_mean_wait_max=max(means),
        finish_min=min(finish),
        finish_max=max(finish),
        other_cores=other,
        server_cores=server,
    )


def describe(name: str, r: Round) -> str:
    ms = 1e3
    load = ""
    if r.server_cores is not None:
        load += f" server cores {r.server_cores:.2f}"
    if r.other_cores is not None:
        load += f" other cores {r.other_cores:.2f}"
    return (
        f"{name:<22} {r.qps:>8,.0f} q/s  wait p50 {r.wait_p50 * ms:6.3f} "
        f"p99 {r.wait_p99 * ms:6.3f} p99.9 {r.wait_p999 * ms:7.3f} "
        f"max {r.wait_max * ms:9.3f} ms  thread mean wait "
        f"{r.thread_mean_wait_min * ms:.3f}-{r.thread_mean_wait_max * ms:.3f} ms  finish "
        f"{r.finish_min:.2f}-{r.finish_max:.2f} s{load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16, help="threads (16)")
    parser.add_argument("--per-thread", type=int, default=2000, help="queries per thread (2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--quick", action="store_true", help="2 rounds x 200 queries per thread")
    args = parser.parse_args(argv)
    if args.quick:
        args.per_thread, args.rounds = 200, 2

    contenders = {}
    for name, (factory, package) in CONTENDERS.items():
        if available(package):
            contenders[name] = factory
        else:
            print(f"skipped: {name} ({package} is not installed; pip install -e '.[bench]')")

    with serving() as url:
        where = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded server"
        print(
            f"Python {sys.version.split()[0]}, server: {where}; {args.threads} threads x "
            f"{args.per_thread} SELECT 1, pool of {SIZE} pre-opened, autocommit, "
            f"{args.rounds} interleaved rounds"
        )
        rounds: dict[str, list[Round]] = {name: [] for name in contenders}
        names = list(contenders)
        for number in range(args.rounds):
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                app = f"bench-concurrency-{name.split()[0].lower()}-{os.getpid()}-{number}"
                result = one_round(contenders[name], url, app, args.threads, args.per_thread)
                rounds[name].append(result)
                print(f"round {number}: {describe(name, result)}", flush=True)

    print("\nmedian round by throughput:")
    for name, results in rounds.items():
        median_round = sorted(results, key=lambda r: r.qps)[len(results) // 2]
        print(describe(name, median_round))
    if BASELINE in rounds:
        print(f"\nper-round ratios to {BASELINE} (median over rounds, range):")
        base = rounds[BASELINE]
        for name, results in rounds.items():
            if name == BASELINE:
                continue
            qps = [r.qps / b.qps for r, b in zip(results, base, strict=True)]
            worst = [r.wait_max / b.wait_max for r, b in zip(results, base, strict=True)]
            print(
                f"{name:<22} throughput x{statistics.median(qps):.2f} "
                f"({min(qps):.2f}-{max(qps):.2f})  max wait x{statistics.median(worst):.2f} "
                f"({min(worst):.2f}-{max(worst):.2f})"
            )
        if OURS in rounds:
            qps = statistics.median(r.qps / b.qps for r, b in zip(rounds[OURS], base, strict=True))
            worst = statistics.median(
                r.wait_max / b.wait_max for r, b in zip(rounds[OURS], base, strict=True)
            )
            print(
                f"goals: throughput >= {BASELINE}: {'met' if qps >= 1 else 'MISSED'} "
                f"(x{qps:.2f}); max wait <= {BASELINE}'s: {'met' if worst <= 1 else 'MISSED'} "
                f"(x{worst:.2f})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
