"""A memory budget for one result: stop the query on the server when the result passes it.

The COPY path counts what its column buffers hold after each block
(:class:`Budget`); the row path, whose rows pile up inside libpq where nothing
can count them, is watched by :class:`RssWatch`, a thread that samples the
process's resident memory and cancels the query when it has grown past the
budget. Either way the caller gets :class:`ResultTooLarge`, the query is
cancelled, what was fetched is dropped and handed back to the system.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from lunepool_magic.postgres import libpq
from lunepool_magic.units import count_of, size

try:
    import resource
except ImportError:  # not on Windows: no address-space cap to count
    resource = None  # type: ignore[assignment]

__all__ = ["Budget", "ResultTooLarge", "RssWatch", "give_back_memory", "resident_bytes"]


#: A budget in bytes, or a function giving it (looked at only when a result grows:
#: finding the memory available takes a few /proc reads).
Limit: TypeAlias = "int | Callable[[], int | None] | None"


def resolve(limit: Limit) -> int | None:
    """The budget in bytes (None: none)."""
    return limit() if callable(limit) else limit


class ResultTooLarge(Exception):
    """A result passed its memory budget; the query was cancelled and nothing kept.

    ``rows`` is how many rows had arrived (None on the row path, where libpq
    holds them uncounted), ``held`` the bytes they took, ``limit`` the budget,
    or None when there was none and memory ran out (a MemoryError mid-fetch).
    """

    def __init__(self, rows: int | None, held: int, limit: int | None) -> None:
        self.rows = rows
        self.held = held
        self.limit = limit
        reached = f"{count_of(rows, 'row')} ({size(held)})" if rows is not None else size(held)
        passed = (
            f"the result passed its memory budget of {size(limit)}"
            if limit is not None
            else "memory ran out for the result"
        )
        super().__init__(
            f"{passed} at {reached}; "
            "the query was cancelled on the server and nothing was kept: fetch fewer rows "
            "(LIMIT, an aggregate), stream them to a file, or raise the budget"
        )


#: A budget given as a function is looked up once a COPY result holds this much.
LOOKUP_AFTER = 8 << 20


class Budget:
    """Wraps a COPY block decoder; raises ResultTooLarge once the fetch takes over ``limit``.

    What the fetch takes is the larger of what its columns hold and how much
    the process has grown since it started (resident and virtual size: the
    allocators' slack and the decoders' temporaries count against a cgroup or
    an address-space cap too). Checked after every block (about 1 MiB of
    rows), so a fetch passes its budget by about a block before it is stopped.
    """

    def __init__(self, decoder: Any, limit: Limit) -> None:
        self._decoder = decoder
        self._limit = limit
        self._bytes: int | None = None  # the limit, resolved at the first block
        self._growth = Growth()
        self.rows = 0

    @property
    def columns(self) -> Any:
        return self._decoder.columns

    def __call__(self, block: bytearray, lens: list[int]) -> None:
        self._decoder(block, lens)
        self.rows += len(lens)
        if self._bytes is not None and self._bytes < 0:
            return  # no budget
        held = max(sum(column.held() for column in self._decoder.columns), self._growth())
        if self._bytes is None:
            if callable(self._limit) and held < LOOKUP_AFTER:
                return  # small results never look the budget up
            self._bytes = resolve(self._limit)
            if self._bytes is None:
                self._bytes = -1
                return
        if held > self._bytes:
            raise ResultTooLarge(self.rows, held, self._bytes)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _statm() -> tuple[int, int] | None:
    """(virtual size, resident size) of this process in bytes (Linux), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            size, resident = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(size) * _PAGE, int(resident) * _PAGE


def resident_bytes() -> int | None:
    """This process's resident memory (Linux: /proc/self/statm), or None elsewhere."""
    sizes = _statm()
    return None if sizes is None else sizes[1]


class Growth:
    """How much this process has grown since this was made (0 where /proc is missing).

    Resident size; under an address-space cap (RLIMIT_AS) the virtual size
    too, since that is what the cap counts. Without such a cap, virtual
    growth is mostly allocators reserving address space, not memory.
    """

    def __init__(self) -> None:
        self._start = _statm()
        self._virtual = (
            resource is not None
            and resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
        )

    def __call__(self) -> int:
        now = _statm()
        if now is None or self._start is None:
            return 0
        grown = now[1] - self._start[1]
        if self._virtual:
            grown = max(grown, now[0] - self._start[0])
        return max(grown, 0)


class RssWatch:
    """While a row-path query runs: cancel it once the process has grown by its limit
    (resident or virtual size, see :class:`Growth`).

    Use as a context manager around the statement; ``tripped`` tells afterwards
    whether it cancelled (the statement then fails with QueryCanceled, or, if
    the result was complete first, the caller drops it). One watcher thread
    serves every statement: arming is an assignment, and a statement that
    ends within the first interval (most do) costs no sample nor budget
    look-up. Without /proc it does nothing.
    """

    INTERVAL = 0.01  # seconds between samples: about a MB at LAN speed

    def __init__(self, conn: Any, limit: Limit) -> None:
        self._conn = conn
        self._limit = limit
        self._growth: Growth | None = None
        self._resolved = False
        self._active = False
        self._lock = threading.Lock()  # the cancel never reaches a later statement
        self.tripped = False
        self.grown = 0
        self.limit = 0  # the limit in bytes, once the watcher has looked

    def __enter__(self) -> RssWatch:
        self._growth = Growth()
        self._active = True
        _watcher.arm(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._active = False
        _watcher.disarm(self)

    def sample(self) -> bool:
        """In the watcher thread: True when this statement needs no more watching."""
        if not self._resolved:
            self._resolved = True
            limit = resolve(self._limit)
            if limit is None:
                return True
            self.limit = limit
        assert self._growth is not None
        grown = self._growth()
        if grown <= self.limit:
            return False
        with self._lock:
            if not self._active:
                return True
            self.grown = grown
            self.tripped = True
            with contextlib.suppress(Exception):  # the query may just have ended
                self._conn.cancel_safe(timeout=libpq.CANCEL_TIMEOUT)
        return True


class _Watcher:
    """The one thread that samples the armed RssWatch every INTERVAL; idle when none is."""

    def __init__(self) -> None:
        self._current: RssWatch | None = None
        self._wake = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    def arm(self, watch: RssWatch) -> None:
        if _statm() is None:
            return
        if not self._started:
            with self._lock:
                if not self._started:
                    threading.Thread(
                        target=self._run, name="lunepool-memory-watch", daemon=True
                    ).start()
                    self._started = True
        self._current = watch
        if not self._wake.is_set():
            self._wake.set()

    def disarm(self, watch: RssWatch) -> None:
        if self._current is watch:
            self._current = None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            while True:
                time.sleep(RssWatch.INTERVAL)
                watch = self._current
                if watch is None:
                    self._wake.clear()
                    if self._current is None:  # else armed in between: keep sampling
                        break
                    continue
                if watch.sample() and self._current is watch:
                    self._current = None


_watcher = _Watcher()


_libc: Any = None


def give_back_memory() -> None:
    """Return freed memory to the system: pyarrow's pool, and glibc's heap (malloc_trim).

    After a stopped fetch the freed buffers would otherwise stay in the
    allocators' free lists and keep the kernel's resident size up.
    """
    global _libc
    with contextlib.suppress(Exception):
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name) if name else False
    trim = getattr(_libc, "malloc_trim", None) if _libc else None
    if trim is not None:
        trim(0)
