"""Randomized stress: many threads, random holds, errors and failures.

After each run the invariants are checked: never more than ``max_size``
resources alive, nothing lent twice at once, every created resource destroyed
exactly once after ``close()``, and the pool's numbers add up.
"""

from __future__ import annotations

import random
import threading

import pytest

from lunepool_magic.pool import Pool, PoolClosed, PoolTimeout


class Broken(Exception):
    """User code found the resource broken."""


class UserError(Exception):
    """User code failed; the resource is fine."""


class Tracker:
    def __init__(self, seed: int, max_size: int) -> None:
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.lock = threading.Lock()
        self.max_size = max_size
        self.next_id = 0
        self.live: set[int] = set()
        self.max_live = 0
        self.destroy_counts: dict[int, int] = {}
        self.lent: set[int] = set()
        self.violations: list[str] = []

    def chance(self, p: float) -> bool:
        with self.rng_lock:
            return self.rng.random() < p

    def create(self) -> int:
        if self.chance(0.05):
            raise ConnectionError("random creation failure")
        with self.lock:
            self.next_id += 1
            rid = self.next_id
            self.live.add(rid)
            self.max_live = max(self.max_live, len(self.live))
            if len(self.live) > self.max_size:
                self.violations.append(f"{len(self.live)} alive > max_size")
            self.destroy_counts[rid] = 0
            return rid

    def destroy(self, rid: int) -> None:
        with self.lock:
            self.destroy_counts[rid] += 1
            self.live.discard(rid)

    def check(self, rid: int) -> None:
        if self.chance(0.05):
            raise ConnectionError("random check failure")

    def reset(self, rid: int) -> None:
        if self.chance(0.03):
            raise OSError("random reset failure")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_workload_keeps_every_invariant(seed: int) -> None:
    max_size = 4
    tracker = Tracker(seed, max_size)
    pool: Pool[int] = Pool(
        tracker.create,
        tracker.destroy,
        max_size=max_size,
        acquire_timeout=0.05,
        check=tracker.check,
        check_after=0.0,
        reset=tracker.reset,
        discard_on=lambda exc: isinstance(exc, Broken),
        max_lifetime=0.05,
        name=f"stress-{seed}",
    )
    outcomes: dict[str, int] = {}
    outcomes_lock = threading.Lock()
    start = threading.Barrier(16)

    def count(kind: str) -> None:
        with outcomes_lock:
            outcomes[kind] = outcomes.get(kind, 0) + 1

    def worker(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        start.wait()
        for _ in range(150):
            try:
                with (b := pool.borrow()) as rid:
                    with tracker.lock:
                        if rid in tracker.lent:
                            tracker.violations.append(f"resource {rid} lent twice at once")
                        tracker.lent.add(rid)
                    try:
                        roll = rng.random()
                        if roll < 0.3:
                            threading.Event().wait(rng.random() * 0.002)  # hold a while
                        if roll > 0.95:
                            b.discard()
                        elif roll > 0.9:
                            raise Broken
                        elif roll > 0.85:
                            raise UserError
                    finally:
                        with tracker.lock:
                            tracker.lent.discard(rid)
                count("ok")
            except (Broken, UserError, ConnectionError, PoolTimeout) as exc:
                count(type(exc).__name__)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()

    stats = pool.stats()
    assert stats.waiting == 0 and stats.in_use == 0
    assert stats.size == stats.idle == len(tracker.live)
    pool.close()
    with pytest.raises(PoolClosed):
        pool.with_resource(lambda r: r)

    assert tracker.violations == []
    assert tracker.max_live <= max_size
    assert tracker.live == set()
    assert set(tracker.destroy_counts.values()) <= {1}, "a resource destroyed twice or never"
    final = pool.stats()
    assert final.size == 0
    assert final.created == len(tracker.destroy_counts) == final.destroyed
    assert final.requests == 16 * 150
    assert outcomes.get("ok", 0) > 1000
    assert sum(outcomes.values()) == 16 * 150
