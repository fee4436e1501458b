"""Uncontended checkout + return with no I/O: our Pool against its floor.

The floor is a bare ``queue.LifoQueue`` get/put pair: what any thread-safe
pool must at least do. Contenders run interleaved, round by round, and each
ratio is the median of per-round ratios, so machine drift cancels out.

    python benchmarks/bench_pool.py [--rounds 30] [--ops 20000]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import time
from collections.abc import Callable

from lunepool_magic.pool import Pool


def lifoqueue_pair() -> Callable[[int], None]:
    q: queue.LifoQueue[object] = queue.LifoQueue()
    q.put(object())

    def run(n: int) -> None:
        get, put = q.get, q.put
        for _ in range(n):
            put(get())

    return run


def pool_borrow() -> Callable[[int], None]:
    pool: Pool[object] = Pool(object, max_size=5)

    def run(n: int) -> None:
        borrow = pool.borrow
        for _ in range(n):
            with borrow():
                pass

    return run


def pool_with_resource() -> Callable[[int], None]:
    pool: Pool[object] = Pool(object, max_size=5)

    def run(n: int) -> None:
        with_resource = pool.with_resource
        noop = _noop
        for _ in range(n):
            with_resource(noop)

    return run


def _noop(resource: object) -> None:
    return None


CONTENDERS: dict[str, Callable[[], Callable[[int], None]]] = {
    "LifoQueue get+put (floor)": lifoqueue_pair,
    "Pool: with pool.borrow(): pass": pool_borrow,
    "Pool: pool.with_resource(fn)": pool_with_resource,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ops", type=int, default=20_000)
    args = parser.parse_args(argv)

    runners = {name: make() for name, make in CONTENDERS.items()}
    for run in runners.values():
        run(args.ops)  # warm-up
    per_op: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(args.ops)
            per_op[name].append((time.perf_counter() - start) / args.ops)

    floor = "LifoQueue get+put (floor)"
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.ops} ops, interleaved")
    print(f"{'contender':<34} {'median us':>10} {'min us':>8} {'x floor':>8}")
    for name, samples in per_op.items():
        ratios = [s / f for s, f in zip(samples, per_op[floor], strict=True)]
        print(
            f"{name:<34} {statistics.median(samples) * 1e6:>10.3f} "
            f"{min(samples) * 1e6:>8.3f} {statistics.median(ratios):>8.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
