"""The libpq that psycopg has loaded, opened again by ctypes without loading a second copy.

A PGconn must only be handled by the library that made it: psycopg's binary
wheel bundles its own libpq (``psycopg_binary.libs/libpq-<hash>.so``), its C
implementation links the system's, its Python implementation opens one with
ctypes. On Linux all three show in ``/proc/self/maps``; ``RTLD_NOLOAD`` makes
dlopen fail rather than load a library that is not there yet.
"""

from __future__ import annotations

import ctypes
import os
import re

from psycopg import pq

_LIBPQ = re.compile(r"/libpq(-[^/]*)?\.so[.\d]*$")


def loaded_paths() -> list[str]:
    """Paths of the libpq files mapped into this process (Linux only)."""
    paths = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if _LIBPQ.search(path) and path not in paths:
                paths.append(path)
    return paths


def _mapped_ranges(path: str) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if fields[-1].strip() == path:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


class LoadedLibpq:
    """``PQgetCopyData`` and ``PQfreemem`` of psycopg's own libpq, as addresses and callables."""

    def __init__(self) -> None:
        pq.version()  # psycopg has loaded its libpq (the python implementation: now)
        paths = loaded_paths()
        if len(paths) != 1:
            raise RuntimeError(f"expected one loaded libpq, found {paths or 'none'}")
        self.path = paths[0]
        lib = ctypes.CDLL(self.path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        self.get_copy_data = ctypes.cast(lib.PQgetCopyData, ctypes.c_void_p).value
        self.freemem = ctypes.cast(lib.PQfreemem, ctypes.c_void_p).value
        self.free = lib.PQfreemem
        self.free.argtypes = [ctypes.c_void_p]
        self.free.restype = None
        ranges = _mapped_ranges(self.path)
        for address in (self.get_copy_data, self.freemem):
            if not any(start <= (address or 0) < end for start, end in ranges):
                raise RuntimeError(f"{address:#x} is not in {self.path}'s mapping")
