"""Helpers the benchmark scripts share: the server and its URLs, which peers exist, machine load.

The scripts run as ``python benchmarks/<script>.py``, so this folder is on
``sys.path`` and they import this module by its plain name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def server_url(arg: str | None) -> str:
    """``arg``, else ``DATABASE_URL``, else the embedded server (started if needed)."""
    if arg:
        return arg
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from lunepool_magic import embedded

    return embedded.start()


def postgres_uri(url: str) -> str:
    """The same server as a ``postgresql://`` URI (ADBC and connectorx take URIs only)."""
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(url)
    auth = p.get("user", "")
    if p.get("password"):
        auth += ":" + p["password"]
    host = p.get("host", "")
    query = ""
    if host.startswith("/"):  # Unix socket directory
        query, host = f"?host={host}", ""
    port = f":{p['port']}" if p.get("port") else ""
    return f"postgresql://{auth}@{host}{port}/{p.get('dbname', '')}{query}"


def sqlalchemy_url(url: str) -> str:
    """The same server as a SQLAlchemy URL (psycopg 3 dialect), for pandas and JupySQL."""
    return postgres_uri(url).replace("postgresql://", "postgresql+psycopg://", 1)


def available(package: str | None) -> bool:
    """Whether ``package`` (a peer a benchmark compares with) is importable; None: no peer."""
    if package is None:
        return True
    try:
        __import__(package)
    except ImportError:
        return False
    return True


def cpu_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (None where /proc/stat is missing)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:8]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serving(arg: str | None = None) -> Iterator[str]:
    """:func:`server_url`, stopping the embedded server afterwards if this started it."""
    if arg or os.environ.get("DATABASE_URL"):
        yield server_url(arg)
        return
    from lunepool_magic import embedded

    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()
