"""The kernel's result memory budget: ``%config LunepoolMagic.max_result_memory``.

A size (bytes, or text such as ``"2 GB"``), ``None`` for no budget, or
``"auto"`` (the default): ``AUTO_SHARE`` of the memory the kernel can still
take when the cell starts, the smallest of what the machine has available
(MemAvailable), what the kernel's cgroup allows (v2 ``memory.max``, v1
``memory.limit_in_bytes``) and what its address-space limit leaves
(RLIMIT_AS, as ``prlimit`` or ``ulimit -v`` set it). The share leaves room for
building the final table from the fetched columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

try:
    import resource
except ImportError:  # not on Windows: no address-space cap to count
    resource = None  # type: ignore[assignment]

__all__ = ["AUTO_SHARE", "auto_budget", "available_bytes", "budget", "parse_size"]

#: The share of the available memory one result may take by default.
AUTO_SHARE = 0.5

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: object) -> int | None:
    """``max_result_memory`` as bytes: an int, ``"2 GB"``, ``"512MiB"``; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"max_result_memory is a size, not {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"max_result_memory must be positive, not {value!r}")
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        unit = (m.group(2) or "").lower() if m else None
        if m is not None and unit in _UNITS and float(m.group(1)) > 0:
            return int(float(m.group(1)) * _UNITS[unit])
    raise ValueError(
        f"max_result_memory takes a size such as 2000000000, '2 GB' or '512 MiB', "
        f"'auto' or None; not {value!r}"
    )


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) is None


def _cgroup_room() -> int | None:
    """What the kernel's cgroup still allows (limit - usage), if it has a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit, usage = _read_int(base / "memory.max"), _read_int(base / "memory.current")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit = _read_int(base / "memory.limit_in_bytes")
            usage = _read_int(base / "memory.usage_in_bytes")
            if limit is not None and limit >= 1 << 60:  # v1 says "no limit" with a huge number
                limit = None
        else:
            continue
        if limit is not None:
            return max(0, limit - (usage or 0))
    return None


def _address_space_room() -> int | None:
    """What RLIMIT_AS leaves beside the kernel's current virtual size."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return soft
    m = re.search(r"^VmSize:\s+(\d+) kB", status, re.MULTILINE)
    return max(0, soft - int(m.group(1)) * 1024) if m else soft


def _mem_available() -> int | None:
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    m = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def available_bytes() -> int | None:
    """The memory this process can still take (the smallest of the limits), or None."""
    rooms = [r for r in (_mem_available(), _cgroup_room(), _address_space_room()) if r is not None]
    return min(rooms) if rooms else None


def auto_budget() -> int | None:
    """``AUTO_SHARE`` of the memory available now (None if it cannot be told)."""
    available = available_bytes()
    return None if available is None else int(available * AUTO_SHARE)


def budget(setting: object) -> int | Callable[[], int | None] | None:
    """The budget for one cell: bytes, None, or (for "auto") ``auto_budget``, which the
    fetch calls only once a result grows (it reads a few /proc files)."""
    if setting == "auto":
        return auto_budget
    return parse_size(setting)
