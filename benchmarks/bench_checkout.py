"""Checkout + return of a PostgreSQL connection, no query: ours against the usual pools.

Contenders, all on the same server, each with 5 connections opened before
timing (single thread, so each lends the same one again and again):

* ours: ``with pool.connection(): pass`` (PostgresPool: the generic pool plus
  a socket poll before lending and a state check on return);
* ours: ``pool.with_connection(fn)``;
* psycopg_pool: ``with pool.connection(): pass`` (the baseline of the ratios)
  and ``getconn()`` + ``putconn()``;
* SQLAlchemy QueuePool: ``with engine.connect(): pass`` and
  ``raw_connection()`` + ``close()``;
* the generic Pool over plain objects: what the pool costs without PostgreSQL.

Method: every contender is warmed up, then all run interleaved, round by
round (the starting contender rotates each round), ``--ops`` operations per
round each. Reported: median and minimum µs per operation over the rounds,
and the median of the per-round ratios to psycopg_pool, so that every ratio
comes from the same rounds of the same run. ``other cores`` is the CPU that
processes other than this one used meanwhile (from /proc/stat): numbers from
a busy box are noisy. The heap that exists before timing (pandas and all) is
frozen (``gc.freeze()``), so a full collection of it cannot land in one
contender's timing.

The server: ``DATABASE_URL`` if set, else the embedded server
(``lunepool_magic.embedded.start()``, stopped at the end if started here).
Peers missing from the environment (``pip install -e '.[bench]'``) are
reported as skipped.

    python benchmarks/bench_checkout.py [--rounds 30] [--ops 5000] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench_common import available, cpu_busy_seconds, serving

from lunepool_magic.pool import Pool
from lunepool_magic.postgres import create_pool, destroy_pool

BASELINE = "psycopg_pool: with pool.connection(): pass"
OURS = "ours: with pool.connection(): pass"
SIZE = 5

Runner = Callable[[int], None]


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# ------------------------------------------------------------- contenders
#
# Each factory opens its pool and returns (runner, close). Runners bind what
# they call to locals, so the loop measures the pool and not attribute lookups.


def ours_with_block(url: str) -> tuple[Runner, Callable[[], None]]:
    pool = create_pool(url, max_connections=SIZE, min_connections=SIZE)

    def run(n: int) -> None:
        connection = pool.connection
        for _ in range(n):
            with connection():
                pass

    return run, lambda: destroy_pool(pool)


def ours_with_connection(url: str) -> tuple[Runner, Callable[[], None]]:
    pool = create_pool(url, max_connections=SIZE, min_connections=SIZE)

    def noop(conn: Any) -> None:
        return None

    def run(n: int) -> None:
        with_connection = pool.with_connection
        for _ in range(n):
            with_connection(noop)

    return run, lambda: destroy_pool(pool)


def generic_pool(url: str) -> tuple[Runner, Callable[[], None]]:
    pool: Pool[object] = Pool(object, max_size=SIZE, min_size=SIZE)

    def run(n: int) -> None:
        borrow = pool.borrow
        for _ in range(n):
            with borrow():
                pass

    return run, pool.close


def _psycopg_pool(url: str) -> Any:
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(url, min_size=SIZE, max_size=SIZE, open=True)
    pool.wait()
    return pool


def psycopg_pool_with_block(url: str) -> tuple[Runner, Callable[[], None]]:
    pool = _psycopg_pool(url)

    def run(n: int) -> None:
        connection = pool.connection
        for _ in range(n):
            with connection():
                pass

    return run, pool.close


def psycopg_pool_getconn(url: str) -> tuple[Runner, Callable[[], None]]:
    pool = _psycopg_pool(url)

    def run(n: int) -> None:
        getconn, putconn = pool.getconn, pool.putconn
        for _ in range(n):
            putconn(getconn())

    return run, pool.close


def _engine(url: str) -> Any:
    import sqlalchemy

    sa_url = sqlalchemy.make_url(url).set(drivername="postgresql+psycopg")
    engine = sqlalchemy.create_engine(sa_url, pool_size=SIZE, max_overflow=0)
    assert type(engine.pool).__name__ == "QueuePool", type(engine.pool)
    connections = [engine.connect() for _ in range(SIZE)]  # pre-open all five
    for conn in connections:
        conn.close()
    return engine


def sqlalchemy_connect(url: str) -> tuple[Runner, Callable[[], None]]:
    engine = _engine(url)

    def run(n: int) -> None:
        connect = engine.connect
        for _ in range(n):
            with connect():
                pass

    return run, engine.dispose


def sqlalchemy_raw(url: str) -> tuple[Runner, Callable[[], None]]:
    engine = _engine(url)

    def run(n: int) -> None:
        raw_connection = engine.raw_connection
        for _ in range(n):
            raw_connection().close()

    return run, engine.dispose


CONTENDERS: dict[str, tuple[Callable[[str], tuple[Runner, Callable[[], None]]], str | None]] = {
    # name: (factory, the optional package it needs)
    OURS: (ours_with_block, None),
    "ours: pool.with_connection(fn)": (ours_with_connection, None),
    BASELINE: (psycopg_pool_with_block, "psycopg_pool"),
    "psycopg_pool: getconn()+putconn()": (psycopg_pool_getconn, "psycopg_pool"),
    "SQLAlchemy QueuePool: with engine.connect(): pass": (sqlalchemy_connect, "sqlalchemy"),
    "SQLAlchemy QueuePool: raw_connection()+close()": (sqlalchemy_raw, "sqlalchemy"),
    "generic Pool of objects (no PostgreSQL)": (generic_pool, None),
}


def profile(run: Runner, ops: int) -> str:
    """cProfile of ``ops`` operations: where our checkout's time goes."""
    profiler = cProfile.Profile()
    profiler.runcall(run, ops)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (30)")
    parser.add_argument("--ops", type=int, default=5000, help="operations per round (5000)")
    parser.add_argument("--quick", action="store_true", help="5 rounds x 1000 ops")
    parser.add_argument("--profile", action="store_true", help="cProfile ours afterwards")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.ops = 5, 1000

    with serving() as url:
        runners: dict[str, Runner] = {}
        closers: list[Callable[[], None]] = []
        for name, (factory, package) in CONTENDERS.items():
            if not available(package):
                print(f"skipped: {name} ({package} is not installed; pip install -e '.[bench]')")
                continue
            run, close = factory(url)
            runners[name] = run
            closers.append(close)
        try:
            for run in runners.values():
                run(max(100, args.ops // 5))  # warm-up
            per_op: dict[str, list[float]] = {name: [] for name in runners}
            other_cores: list[float] = []
            names = list(runners)
            # A full collection of this process's heap (pandas, SQLAlchemy...)
            # takes tens of ms: frozen, so that it cannot land in one
            # contender's timing; each round's own garbage is still collected.
            gc.collect()
            gc.freeze()
            for round_number in range(args.rounds):
                busy0, own0, wall0 = cpu_busy_seconds(), _own_cpu_seconds(), time.perf_counter()
                shift = round_number % len(names)  # rotate who goes first
                for name in names[shift:] + names[:shift]:
                    run = runners[name]
                    start = time.perf_counter()
                    run(args.ops)
                    per_op[name].append((time.perf_counter() - start) / args.ops)
                busy1, wall = cpu_busy_seconds(), time.perf_counter() - wall0
                if busy0 is not None and busy1 is not None:
                    other = (busy1 - busy0) - (_own_cpu_seconds() - own0)
                    other_cores.append(max(0.0, other) / wall)
            gc.unfreeze()
            report(per_op, other_cores, args, url)
            if args.profile and OURS in runners:
                print(f"\ncProfile of {OURS!r}, {args.ops * 10} operations:")
                print(profile(runners[OURS], args.ops * 10))
        finally:
            for close in closers:
                close()
    return 0


def report(
    per_op: dict[str, list[float]], other_cores: list[float], args: argparse.Namespace, url: str
) -> None:
    where = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded server"
    print(
        f"Python {sys.version.split()[0]}, server: {where}; {args.rounds} interleaved rounds x "
        f"{args.ops} ops, single thread, pools of {SIZE} pre-opened"
    )
    if other_cores:
        print(
            f"other processes used {statistics.median(other_cores):.2f} cores per round "
            f"(median; max {max(other_cores):.2f})"
        )
    baseline = per_op.get(BASELINE)
    header = f"{'contender':<52} {'median µs':>10} {'min µs':>8} {'× psycopg_pool':>15}"
    print(header)
    print("-" * len(header))
    for name, samples in per_op.items():
        ratio = ""
        if baseline is not None:
            ratios = [s / b for s, b in zip(samples, baseline, strict=True)]
            ratio = f"{statistics.median(ratios):.2f}"
        print(
            f"{name:<52} {statistics.median(samples) * 1e6:>10.2f} "
            f"{min(samples) * 1e6:>8.2f} {ratio:>15}"
        )
    generic = per_op.get("generic Pool of objects (no PostgreSQL)")
    if generic is not None and OURS in per_op:
        extra = [o - g for o, g in zip(per_op[OURS], generic, strict=True)]
        print(
            f"\nours minus the generic pool (the PostgreSQL hooks): "
            f"{statistics.median(extra) * 1e6:.2f} µs median per checkout"
        )
    if baseline is not None and OURS in per_op:
        ratios = [o / b for o, b in zip(per_op[OURS], baseline, strict=True)]
        goal = "met" if statistics.median(ratios) <= 0.5 else "MISSED"
        print(
            f"goal ours <= 0.5 x psycopg_pool: {goal} (median per-round ratio "
            f"{statistics.median(ratios):.2f}, rounds range {min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
