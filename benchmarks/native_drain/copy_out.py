"""transfer.copy_out with its per-row loop replaced by one drain() call per block or socket read.

Everything around the loop (sending, waiting in poll(2), progress, the error
before the COPY, reading the results after it) is copy_out's own code
(``start_copy``, ``socket_pause``), so that the two differ only in how rows
reach the block. The decoder still
takes a list of row lengths; the int32 array drain() fills is turned into one
(``tolist``), timed apart as the adapter a shipped version would not need.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg

from lunepool_magic.postgres import libpq
from lunepool_magic.postgres.fetch.transfer import (
    BLOCK_BYTES,
    Progress,
    socket_pause,
    start_copy,
)
from native_drain.build import DONE, ERROR, FULL, WOULD_BLOCK, Block
from native_drain.loaded_libpq import LoadedLibpq

#: Room past the rows: the binary decoder appends 16 bytes to each block.
SLACK = 64


def native_copy_out(
    drain: Any,
    lib: LoadedLibpq,
    block_bytes: int = BLOCK_BYTES,
    timings: dict[str, float] | None = None,
) -> Callable[..., int]:
    """A function with transfer.copy_out's signature and behaviour, draining rows in C.

    ``timings["adapter"]`` accumulates the seconds spent turning lengths into lists,
    ``timings["waits"]`` the times libpq's buffer ran dry (a wait in poll(2), a read).
    """
    timings = timings if timings is not None else {}
    timings.setdefault("adapter", 0.0)
    timings.setdefault("waits", 0)

    def copy_out(
        conn: psycopg.Connection[Any],
        command: bytes,
        consume: Callable[[bytearray, list[int]], None],
        on_progress: Progress | None,
        started: float,
    ) -> int:
        pgconn = conn.pgconn
        pause = socket_pause(conn, on_progress, started)
        start_copy(conn, command, pause)

        # Rows of 2 bytes (no columns) are the shortest: the lengths never fill first.
        lens = np.empty(block_bytes // 2 + 1, dtype=np.int32)
        state = Block(lens=lens.ctypes.data, lens_cap=len(lens))
        ref = ctypes.byref(state)
        args = (pgconn.pgconn_ptr, lib.get_copy_data, lib.freemem, ref)
        buf = bytearray()

        def new_block(size: int) -> None:
            nonlocal buf
            buf = bytearray(size + SLACK)
            # The ctypes view exports buf only for this line: buf can shrink later.
            state.buf = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
            state.cap, state.used, state.rows = size, 0, 0

        def flush() -> None:
            del buf[state.used :]
            t = time.perf_counter()
            lengths = lens[: state.rows].tolist()
            timings["adapter"] += time.perf_counter() - t
            consume(buf, lengths)

        rows = nbytes = 0
        new_block(block_bytes)
        try:
            while True:
                status = drain(*args)
                if status == WOULD_BLOCK:
                    timings["waits"] += 1
                    pause(rows + state.rows, nbytes + state.used)
                elif status == FULL:
                    if state.rows:
                        rows += state.rows
                        nbytes += state.used
                        flush()
                    new_block(max(block_bytes, state.pending_len))
                elif status == ERROR:
                    message = pgconn.get_error_message()
                    raise psycopg.OperationalError(f"receiving copy data failed: {message}")
                else:
                    assert status == DONE, status
                    break
            rows += state.rows
            nbytes += state.used
            flush()
        finally:
            if state.pending:  # interrupted with a row taken from libpq
                lib.free(state.pending)
                state.pending = None

        libpq.finish_results(conn)
        return nbytes

    return copy_out
