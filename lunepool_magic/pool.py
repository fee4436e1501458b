"""A generic, thread-safe, fair resource pool (standard library only).

The pool lends resources made by ``create`` and destroys them with ``destroy``.
It knows nothing of databases; :mod:`lunepool_magic.postgres` builds on it.

Design (after Haskell's resource-pool and psycopg_pool):

* Every change of the pool's state is one short step under one lock. Each step
  decides what I/O must follow (create, check, reset, destroy) and that I/O
  runs *after* the lock is released, on what the step reserved. A failed I/O
  step gives back what it reserved. Nothing blocks on I/O while holding the
  lock, and the pool starts no threads.
* A slot is a right to hold one resource. ``_size`` counts taken slots:
  resources that exist plus those being created or destroyed. A slot is freed
  only after ``destroy`` has returned, so at most ``max_size`` resources ever
  exist, counting the ones on their way in or out.
* Waiters queue in arrival order. Whatever frees up (a returned resource or a
  freed slot) is handed to the oldest waiter inside the same step, so a
  newcomer can never barge ahead of it. Hence the invariant: while anyone
  waits, no resource is idle and every slot is taken.
* Idle resources form a stack: the most recently returned is lent first, so a
  sequential caller keeps getting the same resource (and its session state).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from types import EllipsisType, TracebackType
from typing import Any, Generic, TypeVar, cast

__all__ = [
    "Borrow",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
]

R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger("lunepool_magic.pool")


class PoolError(Exception):
    """Base class of the errors the pool itself raises."""


class PoolTimeout(PoolError):
    """No resource could be had within the acquire timeout."""


class PoolClosed(PoolError):
    """The pool is closed (or was closed while the caller waited)."""


@dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of a pool's state and its counters since creation.

    ``size`` counts taken slots: idle resources, lent ones, and those being
    created, checked or destroyed. ``in_use`` is ``size - idle``.
    """

    name: str
    max_size: int
    min_size: int
    size: int
    idle: int
    in_use: int
    waiting: int
    requests: int
    """Calls to borrow (or with_resource), whatever their outcome."""
    waits: int
    """Borrows that had to queue for a resource."""
    wait_time: float
    """Total seconds spent queueing, over all borrowers (timed-out ones too)."""
    timeouts: int
    created: int
    create_errors: int
    destroyed: int
    broken: int
    """Resources discarded as unusable: marked broken, failed check or reset."""
    retired: int
    """Resources destroyed for age (max_lifetime), idleness (max_idle) or retire()."""


class _Entry(Generic[R]):
    """One resource and the facts the pool keeps about it."""

    __slots__ = ("expires_at", "generation", "resource", "returned_at")

    def __init__(self, resource: R, expires_at: float, generation: int) -> None:
        self.resource = resource
        self.expires_at = expires_at
        self.returned_at = monotonic()
        self.generation = generation


# What a waiter can be handed. An _Entry is handed over directly; _SLOT means
# "a slot is yours, create the resource"; _CLOSED means the pool closed.
# _TAKEN marks a waiter that has taken its grant or left the queue.
_SLOT = object()
_CLOSED = object()
_TAKEN = object()


class _Waiter:
    """A borrower queued for a resource.

    ``grant`` is written only under the pool's lock, once: by whoever hands
    the waiter something, or by the waiter itself when it gives up. Whichever
    comes first wins, so a hand-off is never lost and never doubled.
    """

    __slots__ = ("gate", "grant", "queued_at")

    def __init__(self) -> None:
        self.grant: object = None
        # A plain lock used as a one-shot gate: cheaper than an Event, and its
        # acquire() is interruptible by signals (KeyboardInterrupt) in the
        # main thread.
        self.gate = threading.Lock()
        self.gate.acquire()
        self.queued_at = monotonic()


_live_pools: weakref.WeakSet[Pool[Any]] = weakref.WeakSet()


def _forget_all_after_fork() -> None:
    for pool in list(_live_pools):
        pool._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_after_fork)


def _no_destroy(resource: object) -> None:
    """Default destroy: drop the resource and let garbage collection close it."""


class Pool(Generic[R]):
    """A bounded pool of resources, lent first come, first served.

    Args:
        create: makes a new resource. Its exceptions reach the borrower that
            needed the resource; the slot it held is freed.
        destroy: disposes of a resource. Its exceptions are logged and ignored.
        max_size: most resources that may exist at once.
        min_size: resources opened at construction (errors propagate), and the
            number that ``max_idle`` never shrinks the pool below.
        acquire_timeout: seconds a borrower waits for a resource before
            :class:`PoolTimeout`; ``None`` waits forever. Per call:
            ``borrow(timeout=...)``.
        max_lifetime: seconds after creation when a resource is retired (on
            return or when next lent). Each resource gets up to 5% less, at
            random, so resources made together do not all expire together.
        max_idle: seconds a resource may sit idle before it is retired.
        check: called on a resource that sat idle at least ``check_after``
            seconds, before lending it. If it raises, the resource is
            destroyed and the borrower gets another one.
        check_after: see ``check``; a resource used a moment ago is lent
            without the check's cost.
        reset: called on every returned resource. If it raises, the resource
            is destroyed instead of being lent again.
        discard_on: called with the exception that ended a borrow; if it
            returns true, the resource is destroyed, not reused. Lets a caller
            keep "does this error mean the resource is broken?" in one place.
        name: names the pool in messages and logs.
        noun: what the resources are called in messages ("connection").
    """

    _instances = 0

    def __init__(
        self,
        create: Callable[[], R],
        destroy: Callable[[R], object] = _no_destroy,
        *,
        max_size: int = 5,
        min_size: int = 0,
        acquire_timeout: float | None = 30.0,
        max_lifetime: float | None = None,
        max_idle: float | None = None,
        check: Callable[[R], object] | None = None,
        check_after: float = 1.0,
        reset: Callable[[R], object] | None = None,
        discard_on: Callable[[BaseException], bool] | None = None,
        name: str | None = None,
        noun: str = "resource",
    ) -> None:
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
        if not isinstance(min_size, int) or not 0 <= min_size <= max_size:
            raise ValueError(f"min_size must be an integer from 0 to max_size, got {min_size!r}")
        for label, value in (
            ("acquire_timeout", acquire_timeout),
            ("max_lifetime", max_lifetime),
            ("max_idle", max_idle),
        ):
            if value is not None and not value >= 0:
                raise ValueError(f"{label} must be a number of seconds >= 0 or None, got {value!r}")
        if not check_after >= 0:
            raise ValueError(f"check_after must be a number of seconds >= 0, got {check_after!r}")
        Pool._instances += 1
        self.name = name if name is not None else f"pool-{Pool._instances}"
        self.noun = noun
        self.max_size = max_size
        self.min_size = min_size
        self.acquire_timeout = acquire_timeout
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.check_after = check_after
        self._create = create
        self._destroy = destroy
        self._check = check
        self._reset = reset
        self._discard_on = discard_on

        self._lock = threading.Lock()
        # All fields below are guarded by _lock.
        self._idle: deque[_Entry[R]] = deque()  # stack: right end = most recently returned
        self._waiters: deque[_Waiter] = deque()  # queue: left end = oldest
        self._size = 0  # taken slots; invariant: len(_idle) <= _size <= max_size
        self._closed = False
        self._generation = 0  # bumped in a forked child: older entries are the parent's
        self._requests = 0
        self._waits = 0
        self._wait_time = 0.0
        self._timeouts = 0
        self._created = 0
        self._create_errors = 0
        self._destroyed = 0
        self._broken = 0
        self._retired = 0

        _live_pools.add(self)
        if min_size:
            self._open_min_size()

    # ------------------------------------------------------------------ public

    def borrow(self, timeout: float | EllipsisType | None = ...) -> Borrow[R]:
        """Borrow a resource for a ``with`` block; it comes back on exit, always.

        ``timeout`` overrides ``acquire_timeout`` for this call (``None``:
        wait forever). To mark the resource broken, keep the returned object::

            with (b := pool.borrow()) as resource:
                ...
                b.discard()
        """
        return Borrow(self, self.acquire_timeout if timeout is ... else timeout)

    def with_resource(self, fn: Callable[[R], T], timeout: float | EllipsisType | None = ...) -> T:
        """Call ``fn(resource)`` with a borrowed resource and return its result."""
        with Borrow(self, self.acquire_timeout if timeout is ... else timeout) as resource:
            return fn(resource)

    def stats(self) -> PoolStats:
        """Return a consistent snapshot of sizes and counters."""
        with self._lock:
            idle = len(self._idle)
            return PoolStats(
                name=self.name,
                max_size=self.max_size,
                min_size=self.min_size,
                size=self._size,
                idle=idle,
                in_use=self._size - idle,
                waiting=len(self._waiters),
                requests=self._requests,
                waits=self._waits,
                wait_time=self._wait_time,
                timeouts=self._timeouts,
                created=self._created,
                create_errors=self._create_errors,
                destroyed=self._destroyed,
                broken=self._broken,
                retired=self._retired,
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the pool; calling it again does nothing.

        Waiters fail at once with :class:`PoolClosed`; idle resources are
        destroyed now, in this thread; borrowed ones when they come back.
        Later borrows raise :class:`PoolClosed`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            waiters = list(self._waiters)
            self._waiters.clear()
            for waiter in waiters:
                waiter.grant = _CLOSED
        for waiter in waiters:
            waiter.gate.release()
        for entry in idle:
            self._destroy_and_free(entry)
        _live_pools.discard(self)

    def __enter__(self) -> Pool[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Only counts and the name: never the resources, whose reprs may hold
        # connection details.
        state = "closed" if self._closed else "open"
        return (
            f"<Pool {self.name!r} {state} size={self._size}/{self.max_size} "
            f"idle={len(self._idle)} waiting={len(self._waiters)}>"
        )

    # ------------------------------------------------------------- acquiring

    def _acquire(self, timeout: float | None) -> _Entry[R]:
        """Reserve, then ready, one resource for a borrower.

        An idle resource that turns out unusable (expired, idle too long,
        failed its check) is destroyed, and the borrower keeps its slot to
        create a fresh one: it never loses its turn to a later arrival.
        """
        entry: _Entry[R] | None
        waiter: _Waiter | None
        with self._lock:
            # Critical section: decide lend / create / wait.
            if self._closed:
                raise PoolClosed(f"pool {self.name!r} is closed; create a new pool")
            self._requests += 1
            if self._idle:
                entry = self._idle.pop()
                waiter = None
            elif self._size < self.max_size:
                self._size += 1
                entry = waiter = None
            else:
                entry = None
                waiter = _Waiter()
                self._waiters.append(waiter)
                self._waits += 1

        if waiter is not None:
            grant = self._wait(waiter, timeout)
            if grant is not _SLOT:
                # A hand-off is validated like an idle resource: it may have
                # broken while its previous borrower held it.
                entry = cast(_Entry[R], grant)
        if entry is not None:
            now = monotonic()
            if entry.expires_at <= now or (
                self.max_idle is not None and now - entry.returned_at > self.max_idle
            ):
                self._destroy_keeping_slot(entry, broken=False)
            elif (
                self._check is None
                or now - entry.returned_at < self.check_after
                or self._run_check(entry)
            ):
                return entry
        # This thread holds a slot with no resource in it: fill it.
        return self._create_in_slot()

    def _wait(self, waiter: _Waiter, timeout: float | None) -> object:
        """Wait for a hand-off; return an _Entry or _SLOT, or raise.

        If this thread stops waiting for any reason (timeout, or an exception
        thrown into it, KeyboardInterrupt included), it leaves the queue; a
        grant that raced in is passed on, so no entry or slot is lost.
        """
        grant: object = None
        try:
            if timeout is None:
                waiter.gate.acquire()
            elif timeout > 0:
                waiter.gate.acquire(timeout=timeout)
            with self._lock:
                self._wait_time += monotonic() - waiter.queued_at
                grant = waiter.grant
                waiter.grant = _TAKEN
                if grant is None:
                    # Timed out, and nobody handed us anything meanwhile.
                    self._waiters.remove(waiter)
                    self._timeouts += 1
                    message = self._timeout_message(timeout)
        except BaseException:
            self._abandon(waiter, grant)
            raise
        if grant is None:
            raise PoolTimeout(message)
        if grant is _CLOSED:
            raise PoolClosed(f"pool {self.name!r} was closed while waiting for a resource")
        return grant

    def _abandon(self, waiter: _Waiter, taken: object) -> None:
        """Undo a wait that ended by exception; ``taken`` is what it had taken."""
        destroy = None
        with self._lock:
            grant = waiter.grant
            if grant is _TAKEN:
                grant = taken
            else:
                self._wait_time += monotonic() - waiter.queued_at
                waiter.grant = _TAKEN
                if grant is None:
                    self._waiters.remove(waiter)
            if grant is _SLOT:
                self._pass_slot_locked()
            elif isinstance(grant, _Entry):
                destroy = self._return_locked(grant)
        if destroy is not None:
            self._destroy_and_free(destroy)

    def _timeout_message(self, timeout: float | None) -> str:
        idle = len(self._idle)
        return (
            f"pool {self.name!r}: no {self.noun} became free within {timeout:g} s "
            f"(max_size={self.max_size}, in use={self._size - idle}, idle={idle}, "
            f"others waiting={len(self._waiters)}). "
            f"Give {self.noun}s back sooner (end the `with` blocks that hold them), "
            "or raise max_size or acquire_timeout."
        )

    def _create_in_slot(self) -> _Entry[R]:
        """Create a resource in a slot this thread already holds.

        If creation fails the slot goes to the next waiter (or is freed) and
        the error reaches this borrower, the one that caused it.
        """
        try:
            resource = self._create()
        except BaseException:
            with self._lock:
                self._create_errors += 1
                self._pass_slot_locked()
            raise
        now = monotonic()
        expires_at = (
            now + self.max_lifetime * (1.0 - 0.05 * random.random())
            if self.max_lifetime is not None
            else float("inf")
        )
        entry = _Entry(resource, expires_at, self._generation)
        with self._lock:
            self._created += 1
        return entry

    def _run_check(self, entry: _Entry[R]) -> bool:
        """Run the health check; on failure destroy the resource, keep its slot."""
        try:
            self._check(entry.resource)  # type: ignore[misc]
        except Exception:
            logger.info("pool %r: an idle resource failed its check; replacing it", self.name)
            self._destroy_keeping_slot(entry, broken=True)
            return False
        except BaseException:
            # Interrupted mid-check: the resource's state is unknown.
            self._destroy_and_free(entry, broken=True)
            raise
        return True

    def _open_min_size(self) -> None:
        try:
            for _ in range(self.min_size):
                with self._lock:
                    self._size += 1
                entry = self._create_in_slot()
                with self._lock:
                    self._idle.append(entry)
        except BaseException:
            self.close()  # destroys what was opened before the failure
            raise

    # -------------------------------------------------------------- returning

    def _release(
        self, entry: _Entry[R], error: BaseException | None, discard: bool, retire: bool = False
    ) -> None:
        """Take a lent resource back: reset it, keep it or destroy it."""
        if entry.generation != self._generation:
            return  # lent before a fork, in the parent: not ours to keep or destroy
        interrupted: BaseException | None = None
        if not discard and error is not None and self._discard_on is not None:
            try:
                discard = bool(self._discard_on(error))
            except Exception:
                logger.warning("pool %r: discard_on raised; destroying", self.name, exc_info=True)
                discard = True
        if not discard and retire:
            self._destroy_and_free(entry, retired=True)  # closed on purpose: no reset first
            return
        if not discard and self._reset is not None and not self._closed:
            try:
                self._reset(entry.resource)
            except Exception:
                logger.warning(
                    "pool %r: resetting a returned resource failed; destroying it",
                    self.name,
                    exc_info=True,
                )
                discard = True
            except BaseException as exc:
                # Interrupted mid-reset: destroy, then let the interrupt go on.
                discard = True
                interrupted = exc
        if discard:
            self._destroy_and_free(entry, broken=True)
        else:
            with self._lock:
                destroy = self._return_locked(entry)
            if destroy is not None:
                self._destroy_and_free(destroy)
        if interrupted is not None:
            raise interrupted

    def _return_locked(self, entry: _Entry[R]) -> _Entry[R] | None:
        """Put a healthy entry back (lock held); return an entry to destroy, if any.

        The returned entry still holds its slot: the caller destroys it after
        releasing the lock, then frees the slot.
        """
        now = monotonic()
        if self._closed or entry.expires_at <= now:
            if not self._closed:
                self._retired += 1
            return entry
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.grant = entry
            entry.returned_at = now
            waiter.gate.release()
            return None
        entry.returned_at = now
        self._idle.append(entry)
        # Retire the longest-idle resource if it overstayed; it sits at the
        # bottom of the stack, where LIFO lending would never reach it.
        if (
            self.max_idle is not None
            and self._size > self.min_size
            and now - self._idle[0].returned_at > self.max_idle
        ):
            self._retired += 1
            return self._idle.popleft()
        return None

    # ------------------------------------------------------------- destroying

    def _call_destroy(self, entry: _Entry[R]) -> None:
        try:
            self._destroy(entry.resource)
        except Exception:
            logger.warning("pool %r: destroying a resource failed", self.name, exc_info=True)

    def _destroy_and_free(
        self, entry: _Entry[R], *, broken: bool = False, retired: bool = False
    ) -> None:
        """Destroy an entry (no lock held), then free its slot."""
        try:
            self._call_destroy(entry)
        finally:
            with self._lock:
                self._destroyed += 1
                if broken:
                    self._broken += 1
                elif retired:
                    self._retired += 1
                self._pass_slot_locked()

    def _destroy_keeping_slot(self, entry: _Entry[R], *, broken: bool) -> None:
        """Destroy an entry whose slot the calling borrower will fill again."""
        try:
            self._call_destroy(entry)
        except BaseException:
            with self._lock:
                self._pass_slot_locked()
            raise
        with self._lock:
            self._destroyed += 1
            if broken:
                self._broken += 1
            else:
                self._retired += 1

    def _pass_slot_locked(self) -> None:
        """Give a freed slot to the oldest waiter, or free it (lock held)."""
        if self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            waiter.grant = _SLOT
            waiter.gate.release()
        else:
            self._size -= 1

    # ------------------------------------------------------------------- fork

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's resources without destroying them.

        They share sockets/handles with the parent; destroying them here would
        break the parent. The lock may have been held by a parent thread that
        does not exist in the child, so it is replaced.
        """
        self._lock = threading.Lock()
        self._idle.clear()
        self._waiters.clear()
        self._size = 0
        self._generation += 1


class Borrow(Generic[R]):
    """Context manager for one borrow; ``__enter__`` returns the resource.

    The resource is acquired in ``__enter__`` (not when this object is made),
    so nothing can be lost between acquiring and entering the ``with`` block.
    """

    __slots__ = ("_discard", "_entry", "_pool", "_retire", "_timeout")

    def __init__(self, pool: Pool[R], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: _Entry[R] | None = None
        self._discard = False
        self._retire = False

    def __enter__(self) -> R:
        if self._entry is not None:
            raise RuntimeError("this Borrow is already in use; call pool.borrow() again")
        self._entry = self._pool._acquire(self._timeout)
        return self._entry.resource

    def discard(self) -> None:
        """Mark the resource broken: it is destroyed on return, never lent again."""
        self._discard = True

    def retire(self) -> None:
        """Destroy the resource on return, counted as retired, not broken: the
        holder is done with a healthy one (e.g. closing idle connections early)."""
        self._retire = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._pool._release(entry, exc, self._discard, self._retire)
