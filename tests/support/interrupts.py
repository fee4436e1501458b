"""Ctrl-C at a chosen moment of a fetch, as a kernel's stop button delivers it."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

Progress = Callable[[int, int, float], None]


@contextlib.contextmanager
def ctrl_c_once_rows_flow() -> Iterator[Progress]:
    """An ``on_progress`` callback that sends SIGINT to the main thread once rows arrive.

    The interrupt lands mid-transfer, not before the query started; Python's
    default SIGINT handler is in place meanwhile and restored afterwards.
    """
    main = threading.main_thread().ident
    assert main is not None

    def on_progress(rows: int, nbytes: int, elapsed: float) -> None:
        if rows > 0:
            signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield on_progress
    finally:
        signal.signal(signal.SIGINT, previous)
