"""Stream a query into a file: Parquet, Arrow IPC (Feather) or CSV, in bounded batches.

``copy_to_file(conn, sql, path)`` runs the query through the COPY path
(:mod:`lunepool_magic.postgres.fetch`) and, instead of keeping its columns,
writes them out every ``BATCH_BYTES``: memory stays bounded whatever the
result's size. Parquet and Arrow files hold the Arrow table ``query(...,
output="arrow")`` would give (docs/types.md), batch after batch. CSV files hold
the server's own CSV (``COPY ... (FORMAT csv)``) under a header line, byte for
byte. The file is written under a temporary name beside the target and
renamed at the end: an error or Ctrl-C (which cancels the query on the
server) leaves no file, and no half file, under the target name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from lunepool_magic.postgres.errors import NoResultSetError
from lunepool_magic.postgres.fetch import fetch
from lunepool_magic.postgres.fetch.plan import Params, Query
from lunepool_magic.postgres.fetch.transfer import Progress

__all__ = ["BATCH_BYTES", "FORMATS", "Sink", "Written", "copy_to_file", "file_format"]

#: Columns are written out once they hold about this much.
BATCH_BYTES = 64 << 20

#: File name endings and the format they mean.
FORMATS = {
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".csv": "csv",
}


def file_format(path: str | os.PathLike[str]) -> str:
    """The format a file name asks for, or a one-line ValueError."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"cannot tell the format of {str(path)!r}: the name must end in .parquet, "
            ".arrow, .feather or .csv"
        )
    return FORMATS[suffix]


@dataclass(frozen=True, slots=True)
class Written:
    """What ``copy_to_file`` wrote: rows, the file's size in bytes, seconds, and whether a
    limit cut the result (None: no limit)."""

    path: Path
    rows: int
    bytes: int
    seconds: float
    truncated: bool | None


class Sink:
    """Takes a COPY's blocks instead of the columns keeping them (see ``fetch(sink=)``)."""

    def __init__(self, path: Path, fmt: str, batch_bytes: int = BATCH_BYTES) -> None:
        self.path = path
        self.format = fmt
        self.wants_csv = fmt == "csv"
        self._batch_bytes = batch_bytes
        self._temp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
        self._file: Any = None  # what writes: the temporary file (CSV) or a pyarrow writer
        self._handle: Any = None  # the temporary file, open
        self._made = False  # whether we created the temporary file (only then is it ours)
        self._schema: Any = None
        self._consume: Any = None

    # --- what fetch() calls ---

    def start(
        self, decoder: Any, columns: list[Any], batch: Callable[[int], Any], limit: int | None
    ) -> Any:
        """The block consumer for this COPY: raw CSV to the file, or batches of columns."""
        if self.wants_csv:
            self._consume = _RawCsv(self, [c.name for c in columns], limit)
        else:
            self._consume = _Batches(self, decoder, columns, batch, limit, self._batch_bytes)
        return self._consume

    def finish(self, rows: int) -> int:
        """Write what is left, close, and put the file in place; return the rows written."""
        self._consume.flush(final=True)
        self.commit()
        return rows

    def commit(self) -> None:
        """Close the temporary file and rename it to the target (replacing an older one)."""
        if not self._made:  # nothing was written: an empty CSV / no rows
            self._create()
        self._close()
        os.replace(self._temp, self.path)

    def abandon(self) -> None:
        """After an error or interrupt: close and delete the temporary file (if made)."""
        if not self._made:
            return  # nothing was created; whatever has the name is not ours to delete
        with contextlib.suppress(Exception):
            self._close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()

    # --- writing ---

    def _create(self) -> Any:
        """Create the temporary file, and only a new one: never open a file or a link
        that someone else put under its name (a shared directory such as /tmp)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self._temp, flags, 0o666)
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST,
                "a file or link already has the temporary name beside it, not made here "
                "(the name is random: someone put it there); nothing was written",
                str(self._temp),
            ) from None
        self._handle = os.fdopen(fd, "wb")
        self._made = True
        return self._handle

    def write_bytes(self, data: bytes | bytearray | memoryview) -> None:
        if self._file is None:
            self._file = self._create()
        self._file.write(data)

    def write_table(self, table: Any) -> None:
        """One batch; later batches take the first one's types (a clear error if they can't)."""
        import pyarrow as pa

        if self._file is None:
            self._schema = table.schema
            if self.format == "parquet":
                import pyarrow.parquet as pq

                self._file = pq.ParquetWriter(self._create(), self._schema)
            else:
                self._file = pa.ipc.new_file(self._create(), self._schema)
        elif not table.schema.equals(self._schema, check_metadata=False):
            table = _conform(table, self._schema)
        self._file.write_table(table.replace_schema_metadata(self._schema.metadata))

    def _close(self) -> None:
        file, handle, self._file, self._handle = self._file, self._handle, None, None
        try:
            if file is not None and file is not handle:
                file.close()  # a pyarrow writer: its footer; it leaves our file open
        finally:
            if handle is not None:
                handle.close()


def _conform(table: Any, schema: Any) -> Any:
    """``table`` with ``schema``'s types (a numeric's scale, say, decided by the first batch)."""
    import pyarrow as pa

    columns = []
    for name, column, field in zip(table.column_names, table.columns, schema, strict=True):
        if column.type == field.type:
            columns.append(column)
            continue
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(
                f"column {name!r} changed type while streaming ({field.type} in the first "
                f"rows, {column.type} later: {exc}); cast it in the query, e.g. {name}::text"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


class _Batches:
    """Decodes into the columns; writes them out as one table every ``batch_bytes``."""

    def __init__(
        self,
        sink: Sink,
        decoder: Any,
        columns: list[Any],
        batch: Callable[[int], Any],
        limit: int | None,
        batch_bytes: int,
    ) -> None:
        self._sink = sink
        self._decoder = decoder
        self.columns = columns
        self._batch = batch
        self._limit = limit
        self._batch_bytes = batch_bytes
        self._written = 0

    @property
    def rows(self) -> int:
        return int(self._decoder.rows)

    def __call__(self, block: bytearray, lens: list[int]) -> None:
        self._decoder(block, lens)
        if sum(c.held() for c in self.columns) >= self._batch_bytes:
            self.flush()

    def flush(self, final: bool = False) -> None:
        n = self._decoder.rows - self._written
        if self._limit is not None:
            n = min(n, self._limit - self._written)
        if n > 0 or (final and self._written == 0):
            self._sink.write_table(self._batch(max(n, 0)))
            self._written += max(n, 0)
        else:
            for col in self.columns:  # only the row past a limit
                col.release()


class _RawCsv:
    """Writes the server's CSV as it arrives, under a header line of the column names."""

    def __init__(self, sink: Sink, names: list[str], limit: int | None) -> None:
        self._sink = sink
        self._limit = limit
        self.columns: list[Any] = []  # nothing is held
        self.rows = 0  # received, the one past a limit included (it tells the result was cut)
        sink.write_bytes(csv_header(names))

    def __call__(self, block: bytearray, lens: list[int]) -> None:
        received = len(lens)
        if self._limit is not None and self.rows + received > self._limit:
            keep = max(self._limit - self.rows, 0)
            block = block[: sum(lens[:keep])]
        self._sink.write_bytes(block)
        self.rows += received

    def flush(self, final: bool = False) -> None:
        pass


def csv_header(names: list[str]) -> bytes:
    """The header line, quoted as the server quotes CSV values (only when needed)."""
    return (",".join(map(_csv_name, names)) + "\n").encode()


def _csv_name(name: str) -> str:
    if name and not any(c in name for c in ',"\n\r') and name.strip() == name:
        return name
    return '"' + name.replace('"', '""') + '"'


def copy_to_file(
    conn: psycopg.Connection[Any],
    sql: Query,
    path: str | os.PathLike[str],
    params: Params | None = None,
    *,
    limit: int | None = None,
    on_progress: Progress | None = None,
    batch_bytes: int = BATCH_BYTES,
) -> Written:
    """Run a query and stream its rows into ``path`` (.parquet, .arrow/.feather, .csv).

    Through COPY in batches of about ``batch_bytes``; a statement the COPY path
    does not take (SHOW, ``INSERT ... RETURNING``) is run by the row path and
    its result written in one go. ``limit`` keeps at most that many rows
    (stopping the server there). Raises ValueError for a name of unknown
    format, NoResultSetError for a statement without rows (the file is then
    not written), psycopg's errors for the server's.
    """
    target = Path(path)
    fmt = file_format(target)
    started = time.monotonic()
    sink = Sink(target, fmt, batch_bytes)
    try:
        fetched = fetch(conn, sql, params, limit=limit, on_progress=on_progress, sink=sink)
    except BaseException:
        sink.abandon()  # if the rename at the end failed, the whole file is still there
        raise
    if fetched is not None:
        rows, truncated = fetched.rows, fetched.truncated
    else:
        from lunepool_magic.postgres.statement import run

        result = run(conn, sql, params, fast=False, limit=limit, output="arrow")
        if result.frame is None:
            raise NoResultSetError(
                f"the statement returned no rows to write to {str(target)!r} (server "
                f"status: {result.status!r}); it has run, in the current transaction"
            )
        rows, truncated = result.frame.num_rows, result.truncated if limit is not None else None
        try:
            if fmt == "csv":
                _write_csv(sink, result.frame)
            else:
                sink.write_table(result.frame)
            sink.commit()
        except BaseException:
            sink.abandon()
            raise
    return Written(target, rows, target.stat().st_size, time.monotonic() - started, truncated)


def _write_csv(sink: Sink, table: Any) -> None:
    """A row-path result as CSV (the row path has no server CSV to pass through).

    pyarrow writes it: booleans as true/false, timestamps in ISO 8601 with a
    'T'; types it does not write (lists, decimals, ...) as their Python text.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Types pyarrow's CSV writer does not take become their text.
    columns = [
        c
        if pa.types.is_primitive(c.type) or pa.types.is_large_string(c.type)
        else pa.array([None if v is None else str(v) for v in c.to_pylist()], pa.large_string())
        for c in table.columns
    ]
    plain = pa.Table.from_arrays(columns, names=table.column_names)
    buffer = pa.BufferOutputStream()
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    pacsv.write_csv(plain, buffer, options)
    sink.write_bytes(csv_header(table.column_names))
    sink.write_bytes(buffer.getvalue().to_pybytes())
