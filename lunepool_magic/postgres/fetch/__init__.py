"""Large results into a DataFrame through ``COPY ... TO STDOUT``, decoded by column.

``fetch_frame(conn, sql, params=None, *, limit=None, on_progress=None)`` returns
exactly the DataFrame the row path (:func:`lunepool_magic.postgres.statement`) would
return, dtypes and values included, or ``None`` when it declines before anything
has run (the caller then runs the row path). Two round trips: a probe that
plans the query without running it, then one COPY in the probe's transaction or
savepoint. This module holds that transaction and its clean-up; the parts are
``plan`` (probe, format, COPY text), ``transfer`` (the receiving loop),
``binary`` and ``csv`` (the decoders) and ``columns`` (buffers and arrays).
Design notes: docs/fetch.md.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from psycopg import pq

from lunepool_magic.postgres import libpq, outputs
from lunepool_magic.postgres.budget import Budget, Limit, ResultTooLarge, give_back_memory
from lunepool_magic.postgres.fetch import plan, transfer
from lunepool_magic.postgres.fetch.binary import BinaryDecoder
from lunepool_magic.postgres.fetch.columns import Loaders, build, build_arrow
from lunepool_magic.postgres.fetch.csv import CsvDecoder
from lunepool_magic.postgres.fetch.plan import Params, Query
from lunepool_magic.postgres.fetch.transfer import ErrorBeforeCopy, InBackground, Progress

if TYPE_CHECKING:
    from lunepool_magic.postgres.tofile import Sink
from lunepool_magic.postgres.frames import Kind, ValueSource, make_frame

__all__ = ["Fetched", "fetch", "fetch_frame"]

#: Decode blocks in a helper thread while the next ones arrive (off: on two
#: cores it measured slower, see benchmarks/README.md).
BACKGROUND = False


def fetch_frame(
    conn: psycopg.Connection[Any],
    sql: Query,
    params: Params | None = None,
    *,
    limit: int | None = None,
    on_progress: Progress | None = None,
    output: str = "pandas",
    max_memory: Limit = None,
) -> Any:
    """Run a query through COPY and return its rows as the row path's DataFrame.

    ``output`` ("pandas", "arrow", "polars") picks the result's shape, as in
    ``query()``; ``max_memory`` is the memory budget; see :func:`fetch`.
    """
    fetched = fetch(
        conn,
        sql,
        params,
        limit=limit,
        on_progress=on_progress,
        output=output,
        max_memory=max_memory,
    )
    return None if fetched is None else fetched.result


class Fetched(NamedTuple):
    """A COPY fetch's result (in the asked shape), its row count, and whether a limit cut it."""

    result: Any
    rows: int
    truncated: bool | None  # None: no limit was given


def fetch(
    conn: psycopg.Connection[Any],
    sql: Query,
    params: Params | None = None,
    *,
    limit: int | None = None,
    on_progress: Progress | None = None,
    output: str = "pandas",
    max_memory: Limit = None,
    sink: Sink | None = None,
) -> Fetched | None:
    """Run a query through COPY; return its rows as the row path would.

    Returns None, having run nothing, when the fast path declines (see the
    design notes in docs/fetch.md); the caller then runs ``query()``. ``limit`` stops the
    server after ``limit`` rows and sets ``frame.attrs["truncated"]``;
    ``on_progress(rows, bytes, elapsed_seconds)`` is called at most every
    0.25 s during the transfer and once at the end. Parameters use psycopg's
    placeholders, as in ``query()``. Server errors during the transfer are
    raised as psycopg's exceptions; KeyboardInterrupt cancels the query on the
    server first. Once the columns hold more than ``max_memory`` bytes the
    query is cancelled the same way, everything fetched is dropped, and
    :class:`~lunepool_magic.postgres.budget.ResultTooLarge` is raised.
    ``sink`` (:mod:`lunepool_magic.postgres.tofile`) takes the blocks instead
    of the columns keeping them; the result is then what its ``finish`` returns.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    outputs.check_output(output)
    pgconn = conn.pgconn
    if conn.closed or pgconn.pipeline_status != pq.PipelineStatus.OFF:
        return None
    status = pgconn.transaction_status
    if status not in (libpq.IDLE, libpq.INTRANS) or conn.info.encoding != "utf-8":
        return None
    text = plan.statement_text(conn, sql)
    if not plan.looks_like_a_query(text):
        return None
    started = time.monotonic()
    own = status == libpq.IDLE and conn.autocommit  # else: under a savepoint

    # 1. Probe: the column types, the float setting; nothing runs (LIMIT 0).
    try:
        fields, extra_float_digits, bound = plan.probe(conn, text, params, own)
        if not fields:
            raise plan.Declined("no result columns")
    except BaseException as exc:
        if not conn.closed:
            with contextlib.suppress(Exception):  # else the pool rolls back or discards it
                _undo(conn, own)
        # A statement the server rejects is the row path's to run and report;
        # a lost connection, a lock timeout, an interrupt are not.
        if isinstance(exc, plan.Declined) or (
            isinstance(exc, psycopg.DatabaseError)
            and not isinstance(exc, psycopg.OperationalError)
            and not conn.closed
        ):
            return None
        raise

    try:
        fmt, columns = plan.make_plan(
            conn, fields, extra_float_digits, csv=sink is not None and sink.wants_csv
        )
        copy = plan.copy_statement(text, fmt, columns, limit)
        cleanup = ""
        if bound is not None:  # the values stay on the server: see plan.BoundParameters
            copy = bound.copy_text(conn, copy)
            cleanup = bound.cleanup()
        end = "COMMIT" if own else f"RELEASE SAVEPOINT {plan.SAVEPOINT}"
        command = f"{copy}{cleanup}; {end}".encode()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            _undo(conn, own)
        if isinstance(exc, psycopg.Error):  # parameters psycopg cannot quote: the row path's
            return None
        raise

    # 2. COPY, decoding block by block.
    loaders = Loaders(conn)
    tabular = output != "pandas" or sink is not None
    tz = conn.info.timezone if any(c.ct.kind is Kind.TIMESTAMPTZ for c in columns) else None
    decoder: Any = (
        BinaryDecoder(columns)
        if fmt == "binary"
        else CsvDecoder(columns, loaders, keep_text=tabular)
    )
    if sink is not None:

        def batch(nrows: int) -> Any:
            """The columns so far as one Arrow table (then emptied)."""
            arrays = [build_arrow(c, nrows, tz, loaders, conn.adapters.types) for c in columns]
            for col in columns:
                col.release()
            return outputs.arrow_table(
                [c.name for c in columns], arrays, [(c.oid, c.typmod) for c in columns]
            )

        try:  # a CSV sink writes its header now: the file may fail before the COPY
            decoder = sink.start(decoder, columns, batch, limit)
        except BaseException:
            sink.abandon()
            with contextlib.suppress(Exception):  # else the pool rolls back or discards it
                _undo(conn, own)
            raise
    consume: Any = decoder if max_memory is None else Budget(decoder, max_memory)
    background = InBackground(consume) if BACKGROUND else None
    with conn.lock:
        try:
            nbytes = transfer.copy_out(conn, command, background or consume, on_progress, started)
            if background is not None:
                background.close()
        except ErrorBeforeCopy:
            if background is not None:
                background.abandon()
            if sink is not None:
                sink.abandon()
            _undo(conn, own, locked=True)
            return None
        except BaseException as exc:
            if background is not None:
                background.abandon()
            if sink is not None:
                sink.abandon()
            _abandon(conn, own)
            held = sum(col.held() for col in columns)
            for col in columns:  # the traceback keeps this frame: it must not keep the rows
                col.release()
            if isinstance(exc, ResultTooLarge | MemoryError):
                give_back_memory()
            if isinstance(exc, MemoryError):  # past the memory there is (no budget, or too high)
                exc.__traceback__ = None  # its frames hold the decoder's temporaries
                raise ResultTooLarge(decoder.rows, held, None) from None
            raise

    # 3. The frame (or table).
    rows = decoder.rows
    nrows = rows if limit is None else min(rows, limit)
    truncated = None if limit is None else rows > limit
    if on_progress is not None:
        # The rows the caller gets: the one fetched past a limit only tells it was cut.
        on_progress(nrows, nbytes, time.monotonic() - started)
    if sink is not None:
        return Fetched(sink.finish(nrows), nrows, truncated)
    names = [c.name for c in columns]
    types = [(c.oid, c.typmod) for c in columns]
    arrays = []
    if tabular:
        for col in columns:
            arrays.append(build_arrow(col, nrows, tz, loaders, conn.adapters.types))
            col.release()
        table = outputs.arrow_table(names, arrays, types)
        return Fetched(outputs.convert(table, output, truncated), nrows, truncated)
    src = ValueSource(None, tz)
    for j, col in enumerate(columns):
        arrays.append(build(col, nrows, src, j, loaders))
        col.release()
    frame = make_frame(names, arrays, nrows, types)
    if truncated is not None:
        frame.attrs["truncated"] = truncated
    return Fetched(frame, nrows, truncated)


def _undo(conn: psycopg.Connection[Any], own: bool, locked: bool = False) -> None:
    """Undo the probe's transaction or savepoint (after a declined statement)."""
    pgconn = conn.pgconn
    if pgconn.transaction_status not in libpq.IN_TRANSACTION:
        return  # nothing was started (or the connection is busy or broken: the pool's job)
    command = (
        "ROLLBACK" if own else f"ROLLBACK TO SAVEPOINT {plan.SAVEPOINT}; RELEASE {plan.SAVEPOINT}"
    )
    with contextlib.nullcontext() if locked else conn.lock:
        libpq.send(pgconn, command.encode())
        libpq.finish_results(conn)


def _abandon(conn: psycopg.Connection[Any], own: bool) -> None:
    """After an interrupt or error mid-transfer: stop the server, drain, clean up.

    Inside the caller's transaction the transaction is left failed, as the row
    path leaves it. If the connection cannot be made clean in time it is
    closed (the pool then discards it).
    """
    pgconn = conn.pgconn
    try:
        if pgconn.transaction_status == libpq.ACTIVE:
            libpq.cancel_statement(conn, libpq.CANCEL_TIMEOUT)
            libpq.drain(conn)
        if own and pgconn.transaction_status != libpq.IDLE:
            libpq.send(pgconn, b"ROLLBACK")
            deadline = time.monotonic() + libpq.CANCEL_TIMEOUT
            while libpq.next_result(pgconn, deadline) is not None:
                pass
    except BaseException:  # a second Ctrl-C, a dead socket, a server that does not stop
        libpq.close_quietly(conn)
