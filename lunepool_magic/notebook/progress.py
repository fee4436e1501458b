"""The progress line of a query that takes a while, shown in its cell.

One job: decide when a query has run long enough to deserve a progress line,
what the line says while rows arrive, and what it settles into at the end.
Nothing is shown for a query that finishes within ``after`` seconds, so quick
cells keep exactly their result. Drawing is the caller's: the magic passes a
:class:`Line` that writes into the notebook's output area (a display updated
in place) or, in a terminal, :class:`TerminalLine`. Nothing here imports
IPython.

The numbers come from the streaming fetch
(:func:`~lunepool_magic.postgres.fetch.fetch_frame`'s ``on_progress``),
which reports every quarter second, also while the server is still working
on its first row. Statements that do not stream (DDL, DML, ``SELECT 1``)
report nothing and so show nothing.
"""

from __future__ import annotations

import time
from typing import Protocol, TextIO

from lunepool_magic.notebook.messages import count_of, duration, size

__all__ = ["Line", "QueryProgress", "TerminalLine", "progress_text"]

#: What every progress line starts with (the notebooks' nbval rules match it).
PREFIX = "Query"


class Line(Protocol):
    """Where a progress line is drawn: shown once, redrawn in place, then left as is."""

    def show(self, text: str) -> None: ...

    def update(self, text: str) -> None: ...

    def close(self, text: str) -> None: ...


def progress_text(rows: int, nbytes: int, seconds: float, state: str = "running") -> str:
    """One line: elapsed time, rows received, their size and the rate.

    ``state`` is ``running``, ``done`` or ``stopped`` (an error or interrupt
    ended the query; the rows received so far are not kept).
    """
    took = duration(seconds)
    if state == "stopped":
        return f"{PREFIX} stopped after {took}, {count_of(rows, 'row')} received"
    if rows == 0 and state == "running":
        return f"{PREFIX} running: {took}, no rows yet"
    rate = f", {size(nbytes / seconds)}/s" if seconds > 0 else ""
    return f"{PREFIX} {state}: {took}, {count_of(rows, 'row')} ({size(nbytes)}{rate})"


class QueryProgress:
    """The ``on_progress`` callback of one cell; :meth:`finish` when the cell ends.

    The line appears at the first report at or past ``after`` seconds and is
    redrawn at every later one; :meth:`finish` settles it into a summary. A
    cell of several statements reuses the line: it shows the statement that
    is streaming, as each statement reports its own rows and time.
    """

    def __init__(self, line: Line, after: float) -> None:
        self._line = line
        self._after = after
        self._shown = False
        self._finished = False
        self._last = (0, 0, 0.0)
        self._since = 0.0  # when the reporting statement started (time.monotonic)

    @property
    def shown(self) -> bool:
        return self._shown

    def __call__(self, rows: int, nbytes: int, seconds: float) -> None:
        self._last = (rows, nbytes, seconds)
        self._since = time.monotonic() - seconds
        if self._shown:
            self._line.update(progress_text(rows, nbytes, seconds))
        elif seconds >= self._after:
            self._shown = True
            self._line.show(progress_text(rows, nbytes, seconds))

    def finish(self, failed: bool = False) -> None:
        """Settle the line (if it was shown) into how the query ended; once."""
        if self._finished:
            return
        self._finished = True
        if not self._shown:
            return
        if failed:  # the last report may be a quarter second old: count to now
            rows, _, _ = self._last
            self._line.close(progress_text(rows, 0, time.monotonic() - self._since, "stopped"))
        else:
            self._line.close(progress_text(*self._last, "done"))


class TerminalLine:
    """A line redrawn in place with a carriage return, as terminal progress bars are."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = 0

    def _draw(self, text: str, end: str = "") -> None:
        # Pad with blanks so a shorter line fully covers the previous one.
        self._stream.write("\r" + text.ljust(self._width) + end)
        self._stream.flush()
        self._width = len(text)

    def show(self, text: str) -> None:
        self._draw(text)

    def update(self, text: str) -> None:
        self._draw(text)

    def close(self, text: str) -> None:
        self._draw(text, "\n")
