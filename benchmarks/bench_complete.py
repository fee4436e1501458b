"""Tab completion in SQL cells: reply times of a real kernel's ``complete_request``.

What JupyterLab waits for (and drops after one second): jupyter_client sends
``complete_request`` for a ``%%sql`` cell to a real ipykernel with the
extension loaded, and the time until the reply arrives is recorded, on a
database of its own holding

* 10 tables x 20 columns, then
* 10,000 tables x 20 columns (the issue's large catalog; goal: p99 <= 50 ms).

The requests cycle through the contexts completion knows: a table prefix
after FROM (``FROM t_00``, hundreds of matches, cut at 500), an empty FROM
(everything), a column prefix, ``alias.``, a keyword. The baseline is the
same kernel answering a Python completion (``os.pa``, through Jedi): what
a Python cell's Tab costs there; and a ``kernel_info_request``, the round
trip any reply costs with no work in it (the floor). The
first request after the catalog was read builds its name indexes; it is
reported on its own ("first Tab").

Usage::

    python benchmarks/bench_complete.py [--url URL] [--requests 300]

The server: ``--url``, else ``DATABASE_URL``, else the embedded server. A
database ``lpm_bench_complete`` is created and dropped on it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
for _path in (str(_ROOT), str(_HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg  # noqa: E402
from bench_common import cpu_busy_seconds, server_url  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from tests.support.kernel import Kernel, start_kernel  # noqa: E402

DATABASE = "lpm_bench_complete"
COLUMNS = 20
REQUESTS = [
    "%%sql\nSELECT * FROM t_00|",
    "%%sql\nSELECT * FROM |",
    "%%sql\nSELECT c_1| FROM t_00005",
    "%%sql\nSELECT x.| FROM t_00005 x WHERE x.c_03 > 0",
    "%%sql\nSELECT * FROM t_00005 WHERE c_01 > 0 ORDER BY c_0|",
    "%%sql\nsel|",
]
BASELINE = "import os\nos.pa|"
WAIT_FOR_CATALOG = (
    "from lunepool_magic import completer as _c\n"
    "_s = get_ipython().magics_manager.registry['LunepoolMagic']._sessions['default']\n"
    "assert _c.refresh(get_ipython(), _s, 300) is not None"
)


def _create_tables(url: str, first: int, last: int) -> None:
    columns = ", ".join(f"c_{k:02d} int" for k in range(COLUMNS))
    with psycopg.connect(url, autocommit=True) as conn:
        for start in range(first, last, 500):
            stop = min(start + 500, last)
            conn.execute(
                "".join(f"CREATE TABLE t_{i:05d} ({columns});" for i in range(start, stop))
            )


def _request(kernel: Kernel, marked: str) -> tuple[float, int]:
    cursor = marked.index("|")
    code = marked.replace("|", "")
    started = time.perf_counter()
    reply = kernel.complete(code, cursor)
    elapsed = time.perf_counter() - started
    assert reply["status"] == "ok", reply
    return elapsed, len(reply["matches"])


def _round_trip(kernel: Kernel) -> float:
    """A kernel_info request: the round trip any reply costs, with no work in it."""
    started = time.perf_counter()
    kernel.client.kernel_info(reply=True, timeout=30)
    return time.perf_counter() - started


def _percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def _measure(kernel: Kernel, rounds: int, label: str) -> None:
    started = time.perf_counter()
    kernel.ok(WAIT_FOR_CATALOG)  # a cell that reads the catalog again and waits for it
    read = time.perf_counter() - started
    first, _ = _request(kernel, REQUESTS[0])
    sql: list[float] = []
    python: list[float] = []
    floor: list[float] = []
    matches = {}
    for k in range(rounds):
        marked = REQUESTS[k % len(REQUESTS)]
        elapsed, count = _request(kernel, marked)
        sql.append(elapsed)
        matches[marked] = count
        python.append(_request(kernel, BASELINE)[0])  # interleaved: same machine load
        floor.append(_round_trip(kernel))
    p50, p99 = _percentiles(sql)
    b50, b99 = _percentiles(python)
    f50, f99 = _percentiles(floor)
    print(f"\n{label}")
    print(f"  catalog read (its one query, in the background): {read * 1000:7.1f} ms")
    print(f"  first Tab after the catalog was read: {first * 1000:7.1f} ms")
    print(f"  SQL completion     p50 {p50 * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms")
    print(f"  Python (baseline)  p50 {b50 * 1000:6.1f} ms   p99 {b99 * 1000:6.1f} ms")
    print(f"  round trip (floor) p50 {f50 * 1000:6.1f} ms   p99 {f99 * 1000:6.1f} ms")
    print(f"  ratio SQL/Python   p50 {p50 / b50:5.2f}       p99 {p99 / b99:5.2f}")
    print(f"  ratio SQL/floor    p50 {p50 / f50:5.2f}       p99 {p99 / f99:5.2f}")
    for marked, count in matches.items():
        print(f"    {count:4d} matches  {marked.splitlines()[-1]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a PostgreSQL server (default: DATABASE_URL or embedded)")
    parser.add_argument("--requests", type=int, default=300, help="requests per catalog size")
    parser.add_argument("--tables", type=int, default=10_000, help="tables of the large catalog")
    args = parser.parse_args()

    url = server_url(args.url)
    params = conninfo_to_dict(url)
    db_url = make_conninfo(url, dbname=DATABASE)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    busy_before = cpu_busy_seconds()
    started = time.monotonic()
    try:
        _create_tables(db_url, 0, 10)
        work = Path(tempfile.mkdtemp(prefix="lpm-bench-complete-"))
        with start_kernel(db_url, work) as kernel:
            kernel.ok("%sql SELECT 1")
            host = params.get("host", "")
            print(f"server: {host} db {DATABASE}; {args.requests} requests each")
            _measure(kernel, args.requests, f"10 tables x {COLUMNS} columns")
            made = time.monotonic()
            _create_tables(db_url, 10, args.tables)
            took = time.monotonic() - made
            print(f"\n(created {args.tables - 10:,} more tables in {took:.0f} s)")
            _measure(kernel, args.requests, f"{args.tables:,} tables x {COLUMNS} columns")
        shutil.rmtree(work, ignore_errors=True)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    busy_after = cpu_busy_seconds()
    if busy_before is not None and busy_after is not None:
        wall = time.monotonic() - started
        print(f"\nmachine load during the run: {(busy_after - busy_before) / wall:.2f} CPUs busy")


if __name__ == "__main__":
    main()
