"""Numbers as every message writes them: counts with their noun, durations, sizes.

Cell messages, the progress line, job reports and the wrapper's own errors
(the memory budget) all format numbers here, so they read alike. Standard
library only.
"""

from __future__ import annotations

__all__ = ["count_of", "duration", "size"]


def count_of(n: int, noun: str) -> str:
    """``1 row``, ``1,000 rows``: a count with its noun, as every cell message writes it."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    """``0.42 s``, ``3 min 5 s``, ``2 h 10 min``: how long something took."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size(nbytes: float) -> str:
    """``240 B``, ``512 kB``, ``52.4 MB``, ``1.23 GB``: decimal units, as for network rates."""
    if nbytes < 1e3:
        return f"{nbytes:.0f} B"
    if nbytes < 1e6:
        return f"{nbytes / 1e3:.0f} kB"
    if nbytes < 1e9:
        return f"{nbytes / 1e6:.1f} MB"
    return f"{nbytes / 1e9:.2f} GB"
