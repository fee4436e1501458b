"""Receiving a COPY TO STDOUT: the hot loop over libpq's CopyData messages.

Rows are appended to a block that is handed to a decoder every ``BLOCK_BYTES``;
between socket reads the loop waits in poll(2) (Ctrl-C works) and reports
progress at most every ``PROGRESS_INTERVAL`` seconds.
"""

from __future__ import annotations

import contextlib
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import ExecStatus

from lunepool_magic.postgres import libpq

Progress = Callable[[int, int, float], object]

#: Rows are decoded in blocks of about this many bytes (1 MiB: a block's
#: field offsets and values stay in the CPU caches while numpy gathers them).
BLOCK_BYTES = 1 << 20
#: ``on_progress`` is called at most this often during the transfer (seconds).
PROGRESS_INTERVAL = 0.25


class ErrorBeforeCopy(Exception):
    """The COPY statement failed before sending data (nothing executed)."""

    def __init__(self, error: psycopg.Error):
        super().__init__(str(error))
        self.error = error


def socket_pause(
    conn: psycopg.Connection[Any], on_progress: Progress | None, started: float
) -> Callable[[int, int], None]:
    """``pause(rows, nbytes)``: wait for the socket and read what came, reporting
    progress on time meanwhile (the server may think for long before its first
    row, and it sends its output in 8 kB pieces, even the start of the COPY)."""
    pgconn = conn.pgconn
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    wait = poller.poll
    read = pgconn.consume_input
    next_report = started + PROGRESS_INTERVAL

    def pause(rows: int, nbytes: int) -> None:
        nonlocal next_report
        if on_progress is None:
            wait()
        else:
            now = time.monotonic()
            if now >= next_report:
                on_progress(rows, nbytes, now - started)
                next_report = now + PROGRESS_INTERVAL
            wait(max(1, int((next_report - now) * 1000)))
        read()

    return pause


def start_copy(
    conn: psycopg.Connection[Any], command: bytes, pause: Callable[[int, int], None]
) -> None:
    """Send ``command`` and wait until its COPY sends data; ErrorBeforeCopy if it failed first."""
    pgconn = conn.pgconn
    libpq.send(pgconn, command)
    while pgconn.is_busy():
        pause(0, 0)
    result = pgconn.get_result()
    if result is None or result.status != ExecStatus.COPY_OUT:
        error = (
            libpq.error_from(conn, result)
            if result is not None and result.status == ExecStatus.FATAL_ERROR
            else psycopg.InternalError(f"COPY did not start (result: {result!r})")
        )
        while libpq.next_result(pgconn) is not None:
            pass
        raise ErrorBeforeCopy(error)


def copy_out(
    conn: psycopg.Connection[Any],
    command: bytes,
    consume: Callable[[bytearray, list[int]], None],
    on_progress: Progress | None,
    started: float,
) -> int:
    """Run ``command`` (a COPY TO STDOUT, then more statements); feed blocks to ``consume``.

    Returns the number of bytes received. Raises ErrorBeforeCopy if
    the COPY failed before it started sending, psycopg's error if a statement
    failed later. The caller holds ``conn.lock`` and cleans up on exceptions.
    """
    pgconn = conn.pgconn
    pause = socket_pause(conn, on_progress, started)
    start_copy(conn, command, pause)

    get = pgconn.get_copy_data
    buf = bytearray()
    lens: list[int] = []
    add = lens.append
    rows = nbytes = 0
    # The hot loop: one iteration per row. Everything per block or per socket
    # read happens in the `size == 0` branch (libpq's buffer is empty).
    while True:
        size, data = get(1)
        if size > 0:
            buf += data
            add(size)
            continue
        if size < 0:
            break
        if len(buf) >= BLOCK_BYTES:
            rows += len(lens)
            nbytes += len(buf)
            consume(buf, lens)
            buf = bytearray()
            lens = []
            add = lens.append
        pause(rows + len(lens), nbytes + len(buf))
    rows += len(lens)
    nbytes += len(buf)
    consume(buf, lens)

    libpq.finish_results(
        conn
    )  # the COPY's command status, then the statements after it (COMMIT/RELEASE)
    return nbytes


# --- Decoding in the background ---------------------------------------------------------


class InBackground:
    """Runs a block decoder in one helper thread, at most ``depth`` blocks behind.

    The receiving loop holds the GIL (it is one Python iteration per row);
    numpy's gathers and pyarrow's parsers release it, so decoding a block
    overlaps with receiving the next one. ``put`` blocks while ``depth``
    blocks wait, so memory stays bounded when decoding is the slower side.
    """

    def __init__(self, decode: Callable[[bytearray, list[int]], None], depth: int = 2):
        self._decode = decode
        self._queue: queue.Queue[tuple[bytearray, list[int]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._work, name="lunepool-fastpath-decoder", daemon=True
        )
        self._thread.start()

    def __call__(self, block: bytearray, lens: list[int]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((block, lens))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._decode(*item)
                except BaseException as exc:  # re-raised in the receiving thread
                    self._error = exc

    def close(self) -> None:
        """Wait until every block is decoded; raise the decoder's error if any."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop without decoding what is left (after an error or interrupt)."""
        self._error = self._error or _Abandoned()
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join(timeout=libpq.CANCEL_TIMEOUT)


class _Abandoned(Exception):
    pass
