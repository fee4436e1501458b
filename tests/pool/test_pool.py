"""The generic pool's guarantees, one test (or a few) per guarantee.

Fake resources only: the pool knows nothing of databases. Threads are
coordinated with events, barriers and by waiting for the pool to report a
state (``wait_until``), never by sleeping for a guessed time.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import lunepool_magic.pool as pool_module
from lunepool_magic.pool import Pool, PoolClosed, PoolError, PoolTimeout

WAIT = 10.0  # upper bound for any wait in these tests; reached only on failure


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Block until ``predicate()`` holds; fail (not hang) if it never does."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.0005)


class Resource:
    def __init__(self, number: int) -> None:
        self.number = number
        self.destroyed = 0

    def __repr__(self) -> str:
        return f"Resource({self.number})"


class Factory:
    """Makes and destroys fake resources and keeps count of everything."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)
        self.lock = threading.Lock()
        self.created: list[Resource] = []
        self.destroyed: list[Resource] = []
        self.live = 0
        self.max_live = 0
        self.fail_next: list[BaseException] = []

    def create(self) -> Resource:
        with self.lock:
            if self.fail_next:
                raise self.fail_next.pop(0)
            resource = Resource(next(self.counter))
            self.created.append(resource)
            self.live += 1
            self.max_live = max(self.max_live, self.live)
            return resource

    def destroy(self, resource: Resource) -> None:
        with self.lock:
            resource.destroyed += 1
            self.destroyed.append(resource)
            self.live -= 1


class Thread(threading.Thread):
    """A thread that keeps its target's result or exception."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._fn = target
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> Thread:
        self.join(WAIT)
        assert not self.is_alive(), "thread did not finish"
        return self


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def make_pool(factory: Factory) -> Iterator[Callable[..., Pool[Resource]]]:
    pools: list[Pool[Resource]] = []

    def make(**kwargs: object) -> Pool[Resource]:
        kwargs.setdefault("name", "test")
        pool = Pool(factory.create, factory.destroy, **kwargs)  # type: ignore[arg-type]
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def hold(pool: Pool[Resource], release: threading.Event) -> Callable[[], Resource]:
    """A thread body that borrows, waits for ``release``, then returns."""

    def body() -> Resource:
        with pool.borrow() as resource:
            assert release.wait(WAIT)
            return resource

    return body


# --- construction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_size": 0}, "max_size must be a positive integer"),
        ({"max_size": 2, "min_size": 3}, "min_size must be an integer from 0 to max_size"),
        ({"acquire_timeout": -1}, "acquire_timeout must be a number of seconds"),
        ({"max_idle": float("nan")}, "max_idle must be a number of seconds"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pool(object, **kwargs)


def test_min_size_opens_resources_up_front(make_pool, factory) -> None:
    pool = make_pool(max_size=4, min_size=2)
    assert len(factory.created) == 2
    assert pool.stats().idle == 2


def test_min_size_failure_destroys_what_was_opened(factory) -> None:
    real_create = factory.create
    calls = itertools.count()

    def create() -> Resource:
        # First creation succeeds, the second fails.
        if next(calls) == 1:
            raise ConnectionError("server down")
        return real_create()

    with pytest.raises(ConnectionError, match="server down"):
        Pool(create, factory.destroy, max_size=3, min_size=2)
    assert [r.destroyed for r in factory.created] == [1]


# --- 1. at most max_size resources exist ---------------------------------------


def test_never_more_than_max_size_even_while_destroying(make_pool, factory) -> None:
    """A slot is freed only after destroy returns: no overlap with a new create."""
    destroying = threading.Event()
    finish_destroy = threading.Event()

    def slow_destroy(resource: Resource) -> None:
        destroying.set()
        assert finish_destroy.wait(WAIT)
        factory.destroy(resource)

    pool = Pool(factory.create, slow_destroy, max_size=1, name="t")
    try:
        discarder = Thread(lambda: _borrow_and_discard(pool))
        discarder.start()
        assert destroying.wait(WAIT)
        # The old resource is being destroyed: a new borrower must wait.
        with pytest.raises(PoolTimeout), pool.borrow(timeout=0):
            pass
        finish_destroy.set()
        discarder.finish()
        with pool.borrow(timeout=WAIT):
            pass
        assert factory.max_live == 1
    finally:
        finish_destroy.set()
        pool.close()


def _borrow_and_discard(pool: Pool[Resource]) -> None:
    with (b := pool.borrow()) as _:
        b.discard()


# --- 2. I/O outside the lock; failed creation -----------------------------------


def test_creations_run_concurrently_outside_the_lock(make_pool) -> None:
    both_creating = threading.Barrier(3, timeout=WAIT)

    def create() -> Resource:
        both_creating.wait()  # passes only if two creations run at once
        return Resource(0)

    pool = Pool(create, max_size=2, name="t")
    try:
        threads = [Thread(lambda: pool.with_resource(lambda r: r)) for _ in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: both_creating.n_waiting == 2, "both threads are creating")
        assert pool.stats().size == 2  # the lock is free while they create
        both_creating.wait()
        for t in threads:
            assert t.finish().error is None
    finally:
        pool.close()


@pytest.mark.parametrize("hook", ["check", "reset", "destroy"])
def test_check_reset_and_destroy_run_outside_the_lock(factory, hook: str) -> None:
    armed = threading.Event()
    inside = threading.Event()
    proceed = threading.Event()

    def blocking(resource: Resource) -> None:
        if armed.is_set() and not inside.is_set():  # block the first armed call only
            inside.set()
            assert proceed.wait(WAIT)
        if hook == "destroy":
            factory.destroy(resource)

    kwargs: dict = {"max_size": 2, "name": "t", "check_after": 0.0, hook: blocking}
    destroy = kwargs.pop("destroy", factory.destroy)
    pool = Pool(factory.create, destroy, **kwargs)
    try:
        with pool.borrow():
            pass
        armed.set()
        if hook == "destroy":
            worker = Thread(lambda: _borrow_and_discard(pool))
        else:
            worker = Thread(lambda: pool.with_resource(lambda r: r))
        worker.start()
        assert inside.wait(WAIT)
        # While the hook runs, the pool still answers and lends the free slot.
        assert pool.stats().in_use == 1
        with pool.borrow(timeout=0) as other:
            assert isinstance(other, Resource)
        proceed.set()
        assert worker.finish().error is None
    finally:
        proceed.set()
        pool.close()


def test_creation_failure_goes_to_the_waiter_that_created(make_pool, factory) -> None:
    pool = make_pool(max_size=1)
    holder_done = threading.Event()

    def holder() -> None:
        with (b := pool.borrow()) as _:
            assert holder_done.wait(WAIT)
            b.discard()  # slot will be handed to the first waiter, to create

    h = Thread(holder)
    h.start()
    wait_until(lambda: pool.stats().in_use == 1, "the holder has the resource")
    first = Thread(lambda: pool.with_resource(lambda r: r))
    first.start()
    wait_until(lambda: pool.stats().waiting == 1, "first waiter queued")
    second = Thread(lambda: pool.with_resource(lambda r: r))
    second.start()
    wait_until(lambda: pool.stats().waiting == 2, "second waiter queued")

    factory.fail_next = [ConnectionRefusedError("no server")]
    holder_done.set()
    h.finish()
    assert isinstance(first.finish().error, ConnectionRefusedError)
    assert second.finish().error is None  # the freed slot woke the next waiter
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.waiting, stats.create_errors) == (1, 1, 0, 1)


# --- 3. strict FIFO --------------------------------------------------------------


def test_waiters_are_served_first_come_first_served(make_pool) -> None:
    pool = make_pool(max_size=1)
    release = threading.Event()
    holder = Thread(hold(pool, release))
    holder.start()
    wait_until(lambda: pool.stats().in_use == 1, "the holder has the resource")

    order: list[int] = []
    waiters = []
    for i in range(6):
        t = Thread(lambda i=i: pool.with_resource(lambda r: order.append(i)))
        t.start()
        wait_until(lambda i=i: pool.stats().waiting == i + 1, f"waiter {i} queues")
        waiters.append(t)

    release.set()
    holder.finish()
    for t in waiters:
        assert t.finish().error is None
    assert order == list(range(6))


def test_a_newcomer_cannot_barge_ahead_of_a_waiter(make_pool) -> None:
    pool = make_pool(max_size=1)
    holder_release = threading.Event()
    holder = Thread(hold(pool, holder_release))
    holder.start()
    wait_until(lambda: pool.stats().in_use == 1, "the holder has the resource")
    waiter_got_it = threading.Event()
    waiter_release = threading.Event()

    def waiter_body() -> None:
        with pool.borrow():
            waiter_got_it.set()
            assert waiter_release.wait(WAIT)

    waiter = Thread(waiter_body)
    waiter.start()
    wait_until(lambda: pool.stats().waiting == 1, "the waiter queues")

    holder_release.set()
    holder.finish()
    # The returned resource was handed to the waiter inside the return step,
    # whether or not the waiter thread has run since: a newcomer finds none.
    with pytest.raises(PoolTimeout), pool.borrow(timeout=0):
        pass
    assert waiter_got_it.wait(WAIT)
    waiter_release.set()
    waiter.finish()


# --- 4. a waiter that gives up leaves no trace --------------------------------------


def test_timed_out_waiter_leaves_no_trace(make_pool) -> None:
    pool = make_pool(max_size=2, acquire_timeout=0.01)
    with pool.borrow(), pool.borrow():
        with pytest.raises(PoolTimeout), pool.borrow():
            pass
        assert pool.stats().waiting == 0
    _assert_lends_all(pool)


def _assert_lends_all(pool: Pool[Resource]) -> None:
    """The pool can still lend max_size resources at once."""
    with_all = [pool.borrow(timeout=WAIT) for _ in range(pool.max_size)]
    resources = [b.__enter__() for b in with_all]
    assert len({id(r) for r in resources}) == pool.max_size
    for b in with_all:
        b.__exit__(None, None, None)
    stats = pool.stats()
    assert (stats.waiting, stats.in_use) == (0, 0)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_keyboard_interrupt_while_waiting_leaves_no_trace(make_pool) -> None:
    pool = make_pool(max_size=2)
    release = threading.Event()
    holders = [Thread(hold(pool, release)) for _ in range(2)]
    for h in holders:
        h.start()
    wait_until(lambda: pool.stats().in_use == 2, "both resources are held")

    main = threading.main_thread().ident
    assert main is not None

    def interrupt_main_once_it_waits() -> None:
        wait_until(lambda: pool.stats().waiting == 1, "the main thread waits")
        signal.pthread_kill(main, signal.SIGINT)

    interrupter = Thread(interrupt_main_once_it_waits)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt), pool.borrow(timeout=None):
        pass
    interrupter.finish()
    assert pool.stats().waiting == 0
    release.set()
    for h in holders:
        h.finish()
    _assert_lends_all(pool)


def test_interrupt_racing_a_hand_off_passes_the_resource_on(make_pool, monkeypatch) -> None:
    """The hand-off lands, then the waiter is interrupted before it takes it."""

    class InterruptedGate:
        def __init__(self) -> None:
            self.real = threading.Lock()
            self.real.acquire()

        def acquire(self, timeout: float = -1) -> bool:
            assert self.real.acquire(timeout=WAIT)  # the hand-off arrived...
            raise KeyboardInterrupt  # ...and the interrupt right after it

        def release(self) -> None:
            self.real.release()

    class Waiter(pool_module._Waiter):
        def __init__(self) -> None:
            super().__init__()
            self.gate = InterruptedGate()  # type: ignore[assignment]

    pool = make_pool(max_size=1)
    release = threading.Event()
    holder = Thread(hold(pool, release))
    holder.start()
    wait_until(lambda: pool.stats().in_use == 1, "the holder has the resource")
    monkeypatch.setattr(pool_module, "_Waiter", Waiter)
    interrupted = Thread(lambda: pool.with_resource(lambda r: r))
    interrupted.start()
    wait_until(lambda: pool.stats().waiting == 1, "the doomed waiter queues")
    monkeypatch.undo()
    patient = Thread(lambda: pool.with_resource(lambda r: r))
    patient.start()
    wait_until(lambda: pool.stats().waiting == 2, "the patient waiter queues")

    release.set()
    holder.finish()
    assert isinstance(interrupted.finish().error, KeyboardInterrupt)
    # The resource handed to the interrupted waiter went on to the next one.
    assert patient.finish().result is holder.result
    _assert_lends_all(pool)


def test_interrupt_inside_a_check_loses_no_slot(make_pool, factory) -> None:
    def check(resource: Resource) -> None:
        raise KeyboardInterrupt

    pool = make_pool(max_size=2, check=check, check_after=0.0)
    with pool.borrow():
        pass
    with pytest.raises(KeyboardInterrupt), pool.borrow():
        pass
    stats = pool.stats()
    assert (stats.size, stats.broken) == (0, 1)
    assert factory.created[0].destroyed == 1
    pool._check = None
    _assert_lends_all(pool)


# --- 5. the resource always comes back -----------------------------------------------


@pytest.mark.parametrize(
    "how", [None, ValueError("boom"), KeyboardInterrupt(), SystemExit(3), GeneratorExit()]
)
def test_resource_comes_back_however_the_block_ends(make_pool, how) -> None:
    pool = make_pool(max_size=1)

    def use(resource: Resource) -> Resource:
        if how is not None:
            raise how
        return resource

    if how is None:
        first = pool.with_resource(use)
    else:
        with pytest.raises(type(how)):
            pool.with_resource(use)
        first = None
    stats = pool.stats()
    assert (stats.size, stats.idle, stats.in_use) == (1, 1, 0)
    with pool.borrow() as again:
        assert first is None or again is first


def test_return_statement_inside_borrow_returns_the_resource(make_pool) -> None:
    pool = make_pool(max_size=1)

    def early(pool: Pool[Resource]) -> Resource:
        with pool.borrow() as resource:
            return resource

    assert early(pool) is early(pool)
    assert pool.stats().idle == 1


def test_discarded_resource_is_destroyed_never_lent_again(make_pool, factory) -> None:
    pool = make_pool(max_size=1)
    with (b := pool.borrow()) as first:
        b.discard()
    assert first.destroyed == 1
    with pool.borrow() as second:
        assert second is not first
    assert pool.stats().broken == 1


def test_retired_resource_is_destroyed_without_reset_and_not_counted_broken(make_pool) -> None:
    """retire(): closing a healthy resource on purpose (the notebook's idle release
    used discard(), and every connection it closed showed as broken)."""
    resets: list[Resource] = []
    pool = make_pool(max_size=1, reset=resets.append)
    with (b := pool.borrow()) as first:
        b.retire()
    assert first.destroyed == 1 and resets == []
    with pool.borrow() as second:  # the slot was freed
        assert second is not first
    stats = pool.stats()
    assert (stats.broken, stats.retired, stats.destroyed) == (0, 1, 1)


def test_a_retired_resource_that_failed_counts_as_broken(make_pool) -> None:
    pool = make_pool(max_size=1, discard_on=lambda exc: isinstance(exc, ConnectionError))
    with pytest.raises(ConnectionError), (b := pool.borrow()):
        b.retire()
        raise ConnectionError("broken while held")
    with (b := pool.borrow()):
        b.retire()
        b.discard()
    stats = pool.stats()
    assert (stats.broken, stats.retired) == (2, 0)


def test_discard_on_decides_from_the_exception(make_pool, factory) -> None:
    pool = make_pool(max_size=1, discard_on=lambda exc: isinstance(exc, ConnectionError))
    with pytest.raises(ValueError), pool.borrow():
        raise ValueError("user error: keep the resource")
    with pytest.raises(ConnectionError), pool.borrow():
        raise ConnectionError("broken: discard it")
    assert [r.destroyed for r in factory.created] == [1]


def test_failed_reset_destroys_the_resource(make_pool, factory) -> None:
    def reset(resource: Resource) -> None:
        raise OSError("cannot clean")

    pool = make_pool(max_size=1, reset=reset)
    with pool.borrow() as first:
        pass
    assert first.destroyed == 1
    stats = pool.stats()
    assert (stats.size, stats.broken) == (0, 1)


def test_reset_runs_on_every_return(make_pool) -> None:
    resets: list[Resource] = []
    pool = make_pool(max_size=1, reset=resets.append)
    for _ in range(3):
        with pool.borrow():
            pass
    assert len(resets) == 3


def test_interrupt_during_reset_destroys_and_propagates(make_pool, factory) -> None:
    def reset(resource: Resource) -> None:
        raise KeyboardInterrupt

    pool = make_pool(max_size=1, reset=reset)
    with pytest.raises(KeyboardInterrupt), pool.borrow():
        pass
    assert factory.created[0].destroyed == 1
    assert pool.stats().size == 0


# --- 6. timeout message ------------------------------------------------------------------


def test_timeout_names_the_pool_its_numbers_and_what_to_do(make_pool) -> None:
    pool = make_pool(max_size=2, acquire_timeout=0.05, name="reports-db", noun="widget")
    with pool.borrow(), pool.borrow(), pytest.raises(PoolTimeout) as info, pool.borrow():
        pass
    message = str(info.value)
    assert "reports-db" in message
    assert "0.05 s" in message
    assert "no widget became free" in message
    assert "max_size=2" in message and "in use=2" in message and "others waiting=0" in message
    assert "raise max_size or acquire_timeout" in message
    assert isinstance(info.value, PoolError)
    assert pool.stats().timeouts == 1


def test_per_call_timeout_overrides_the_default(make_pool) -> None:
    pool = make_pool(max_size=1, acquire_timeout=None)
    with pool.borrow(), pytest.raises(PoolTimeout, match="within 0 s"), pool.borrow(timeout=0):
        pass


# --- 7. LIFO reuse -----------------------------------------------------------------------


def test_sequential_borrows_get_the_same_resource(make_pool) -> None:
    pool = make_pool(max_size=5)
    seen = {id(pool.with_resource(lambda r: r)) for _ in range(20)}
    assert len(seen) == 1


def test_most_recently_returned_is_lent_first(make_pool) -> None:
    pool = make_pool(max_size=3)
    borrows = [pool.borrow() for _ in range(3)]
    a, _b, c = (x.__enter__() for x in borrows)
    for x in (borrows[1], borrows[2], borrows[0]):  # return b, c, then a
        x.__exit__(None, None, None)
    assert pool.with_resource(lambda r: r) is a
    with pool.borrow() as first, pool.borrow() as second:
        assert (first, second) == (a, c)


# --- 8. close ----------------------------------------------------------------------------


def test_close_fails_waiters_destroys_idle_and_later_the_borrowed(make_pool, factory) -> None:
    threads_before = threading.active_count()
    pool = make_pool(max_size=2)
    with pool.borrow():
        pass  # one idle resource
    release = threading.Event()
    holder = Thread(hold(pool, release))
    holder.start()
    wait_until(lambda: pool.stats().in_use == 1, "one is borrowed")
    with pool.borrow():
        waiter = Thread(lambda: pool.with_resource(lambda r: r, timeout=None))
        waiter.start()
        wait_until(lambda: pool.stats().waiting == 1, "a waiter queues")
        pool.close()
        assert isinstance(waiter.finish().error, PoolClosed)
        destroyed = [r.destroyed for r in factory.created]
        assert sorted(destroyed) == [0, 0]  # both resources are borrowed now
    # Returned after close: destroyed at once.
    assert sum(r.destroyed for r in factory.created) == 1
    release.set()
    holder.finish()
    assert [r.destroyed for r in factory.created] == [1, 1]
    with pytest.raises(PoolClosed, match="closed"), pool.borrow():
        pass
    pool.close()  # twice is harmless
    assert pool.stats().size == 0
    assert threading.active_count() == threads_before


def test_close_destroys_idle_resources_now(make_pool, factory) -> None:
    pool = make_pool(max_size=3, min_size=3)
    pool.close()
    assert [r.destroyed for r in factory.created] == [1, 1, 1]
    assert "closed" in repr(pool)


# --- 9. max_lifetime and max_idle ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(pool_module, "monotonic", fake)
    return fake


def test_max_lifetime_retires_on_return_and_on_lend_with_jitter(make_pool, factory, clock) -> None:
    pool = make_pool(max_size=20, max_lifetime=100.0)
    borrows = [pool.borrow() for _ in range(20)]
    for b in borrows:
        b.__enter__()
    expiries = {b._entry.expires_at - 1000.0 for b in borrows}  # type: ignore[union-attr]
    assert all(95.0 <= e <= 100.0 for e in expiries)
    assert len(expiries) > 1  # jittered, not all the same
    clock.now += 94.9
    for b in borrows:
        b.__exit__(None, None, None)
    assert pool.stats().retired == 0
    clock.now += 5.2  # every resource is now past its lifetime
    with pool.borrow() as fresh:
        assert fresh not in factory.created[:20]
    # The borrower that met an expired idle resource kept its turn and slot.
    stats = pool.stats()
    assert stats.retired == 1 and stats.size == 20
    # On return an expired resource is retired instead of kept.
    with pool.borrow() as old:
        pass
    assert old.destroyed == 1 or old is fresh


def test_expired_resource_is_retired_when_returned(make_pool, factory, clock) -> None:
    pool = make_pool(max_size=1, max_lifetime=10.0)
    with pool.borrow() as first:
        clock.now += 11
    assert first.destroyed == 1
    assert pool.stats().size == 0


def test_max_idle_retires_idle_resources(make_pool, factory, clock) -> None:
    pool = make_pool(max_size=3, max_idle=60.0)
    b1, b2 = pool.borrow(), pool.borrow()
    r1, r2 = b1.__enter__(), b2.__enter__()
    b1.__exit__(None, None, None)  # r1 idle from t=1000
    clock.now += 30
    b2.__exit__(None, None, None)  # r2 idle from t=1030 (top of the stack)
    clock.now += 31
    with pool.borrow():
        pass  # lends r2 (idle 31 s); on return, r1 (idle 61 s) is retired
    assert r1.destroyed == 1 and r2.destroyed == 0
    clock.now += 61
    with pool.borrow() as r3:
        assert r3 is not r2  # r2 idled too long: replaced when lent
    assert r2.destroyed == 1
    assert pool.stats().retired == 2


def test_check_runs_only_after_idling(make_pool, clock) -> None:
    checked: list[Resource] = []
    pool = make_pool(max_size=1, check=checked.append, check_after=5.0)
    with pool.borrow():
        pass
    with pool.borrow():
        pass
    assert checked == []  # used a moment ago: no check cost
    clock.now += 5
    with pool.borrow() as r:
        pass
    assert checked == [r]


def test_a_hand_off_to_a_waiter_is_checked_too(make_pool, factory) -> None:
    """A resource that broke while borrowed must not reach the next waiter."""
    broken: set[int] = set()

    def check(resource: Resource) -> None:
        if resource.number in broken:
            raise ConnectionResetError("gone")

    pool = make_pool(max_size=1, check=check, check_after=0.0)
    release = threading.Event()
    holder = Thread(hold(pool, release))
    holder.start()
    wait_until(lambda: pool.stats().in_use == 1, "the holder has the resource")
    waiter = Thread(lambda: pool.with_resource(lambda r: r))
    waiter.start()
    wait_until(lambda: pool.stats().waiting == 1, "a waiter queues")
    broken.add(1)  # breaks while the holder has it
    release.set()
    holder.finish()
    assert waiter.finish().result is not holder.result
    assert factory.created[0].destroyed == 1
    assert pool.stats().broken == 1


def test_failed_check_replaces_the_resource(make_pool, factory, clock) -> None:
    def check(resource: Resource) -> None:
        raise ConnectionResetError("gone")

    pool = make_pool(max_size=1, check=check, check_after=1.0)
    with pool.borrow() as first:
        pass
    clock.now += 2
    with pool.borrow() as second:
        assert second is not first
    assert first.destroyed == 1
    assert pool.stats().broken == 1


# --- 10. fork --------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_empty_and_never_destroys_parent_resources(make_pool, factory) -> None:
    pool = make_pool(max_size=3)
    with pool.borrow(), pool.borrow():
        pass  # two idle resources in the parent
    borrowed, idle_at_fork = factory.created  # the last returned is lent first
    with pool.borrow() as borrowed_at_fork:
        assert borrowed_at_fork is borrowed
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                stats = pool.stats()
                if (stats.size, stats.idle) != (0, 0):
                    code = 2
                with pool.borrow() as mine:
                    if mine in (idle_at_fork, borrowed):
                        code = 3
                pool.close()
            except BaseException:
                code = 4
            if idle_at_fork.destroyed or borrowed.destroyed:
                code = 5
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (idle_at_fork.destroyed, borrowed.destroyed) == (0, 0)
    assert pool.stats().idle == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_drops_a_resource_borrowed_before_the_fork(make_pool, factory) -> None:
    pool = make_pool(max_size=1)
    read_end, write_end = os.pipe()
    with pool.borrow() as resource:
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
    if pid == 0:  # child, after leaving the block
        stats = pool.stats()
        ok = resource.destroyed == 0 and (stats.size, stats.idle) == (0, 0)
        os.write(write_end, b"ok" if ok else b"bad")
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 10) == b"ok"
    os.close(read_end)
    assert pool.stats().idle == 1


# --- 11. statistics --------------------------------------------------------------------------


def test_statistics_count_what_happened(make_pool, factory) -> None:
    pool = make_pool(max_size=1, acquire_timeout=0.01)
    with pool.borrow(), pytest.raises(PoolTimeout), pool.borrow():
        pass
    with (b := pool.borrow()) as _:
        b.discard()
    factory.fail_next = [ConnectionError("x")]
    with pytest.raises(ConnectionError), pool.borrow():
        pass
    s = pool.stats()
    assert (s.requests, s.waits, s.timeouts) == (4, 1, 1)
    assert s.wait_time > 0
    assert (s.created, s.create_errors, s.destroyed, s.broken) == (1, 1, 1, 1)
    assert (s.size, s.idle, s.in_use, s.waiting) == (0, 0, 0, 0)


def test_repr_shows_numbers_not_resources(make_pool) -> None:
    pool = make_pool(max_size=3, name="analytics")
    with pool.borrow():
        text = repr(pool)
    assert text == "<Pool 'analytics' open size=1/3 idle=0 waiting=0>"


def test_with_resource_returns_the_function_result(make_pool) -> None:
    pool = make_pool(max_size=1)
    assert pool.with_resource(lambda r: r.number * 2) == 2


def test_a_borrow_object_cannot_be_entered_twice(make_pool) -> None:
    pool = make_pool(max_size=2)
    b = pool.borrow()
    with b, pytest.raises(RuntimeError, match="already in use"):
        b.__enter__()
