"""Compiling drain.c into a temporary directory and binding it with ctypes.

The library links against nothing (libpq's functions come as addresses), so a
plain ``gcc -shared`` does; the build output never lands in the repository.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drain.c")

#: drain()'s return codes (drain.c).
FULL, WOULD_BLOCK, DONE, ERROR = 1, 0, -1, -2


class Block(ctypes.Structure):
    """drain.c's ``drain_block``: the block being filled and the row that did not fit."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("cap", ctypes.c_int64),
        ("used", ctypes.c_int64),
        ("lens", ctypes.c_void_p),
        ("lens_cap", ctypes.c_int64),
        ("rows", ctypes.c_int64),
        ("pending", ctypes.c_void_p),
        ("pending_len", ctypes.c_int64),
    ]


def build(directory: str | None = None) -> str:
    """Compile drain.c (``-O2``) into ``directory`` (a new temporary one by default)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler: install gcc (or set CC)")
    directory = directory or tempfile.mkdtemp(prefix="native_drain_")
    target = os.path.join(directory, "libdrain.so")
    subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", SOURCE, "-o", target],
        check=True,
    )
    return target


def load(path: str) -> ctypes._CFuncPtr:
    """drain() from the library at ``path``, typed; ctypes releases the GIL during each call."""
    drain = ctypes.CDLL(path).drain
    drain.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(Block)]
    drain.restype = ctypes.c_int
    return drain
