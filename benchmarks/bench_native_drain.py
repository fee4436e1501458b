"""What would a C receiving loop buy? Today's COPY loop against a prototype C drain, and ADBC.

The prototype (``native_drain/``, not part of the package) is compiled into a
temporary directory; in its methods ``transfer.copy_out`` is replaced by one
that calls it once per block or socket read instead of ``PQgetCopyData`` once
per row from Python. The decoder, the frame and everything around the loop
stay the package's. Methods, each in a **fresh subprocess** (imports, connect,
a warm-up on ``LIMIT 1000``, one timed full fetch), **interleaved** (the
order rotates every round), ``--runs`` rounds per shape:

- ``python_loop``: today's ``fetch_frame`` (``transfer.copy_out``);
- ``python_loop_bg``: the same with the decoder in its helper thread
  (``fetch.BACKGROUND``, off in the package);
- ``c_drain``: today's ``fetch_frame`` with the C loop;
- ``c_drain_bg``: the C loop with the decoder in its helper thread (ctypes
  lets go of the GIL during each drain call; the Python loop holds it for
  every row);
- ``server_alone``: the server writes the same COPY to /dev/null (what
  producing the rows costs, no client): the floor of any receiving loop;
- ``adbc``: ADBC's pandas path (``adbc_arrow`` with ``--output arrow``).

Reported per shape and method: the receiving loop's seconds (timed in
place: ``copy_out`` less the time spent in the decoder's calls) and its CPU
seconds (the receiving thread's; the rest of its time it waits for the
server), total seconds, the median of the per-round ratios to ADBC, and the
load average.
The shapes are bench_fetch.py's tables (``issue``, ``narrow``, ``text``, ``wide``).

``--check`` instead fetches each shape with both loops in one process and
compares the frames (also with 48-byte blocks on 20,000 rows: every row then
overflows its block)::

    /tmp/benchenv/bin/python benchmarks/bench_native_drain.py [--shapes issue,narrow,text]
        [--runs 5] [--output pandas|arrow] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from bench_common import serving
from bench_fetch import SHAPES, SKIPPED, Skip, build_table, masked, method_runner

METHODS = ["python_loop", "python_loop_bg", "c_drain", "c_drain_bg", "server_alone", "adbc"]
REFERENCE = "adbc"
#: What the child times in place (seconds; ``*_cpu``: the receiving thread's CPU).
TIMES = ("copy", "decode", "copy_cpu", "decode_cpu", "adapter", "waits")


# --------------------------------------------------------------------- child


def timed_copy_out(real: Any, times: dict[str, float]) -> Any:
    """``real`` (a copy_out) timing itself and the decoder calls it makes, into ``times``:
    wall seconds, and the receiving thread's CPU seconds (``*_cpu``)."""

    def copy_out(conn: Any, command: bytes, consume: Any, *args: Any) -> int:
        def timed(block: bytearray, lens: list[int]) -> None:
            t, c = time.perf_counter(), time.thread_time()
            consume(block, lens)
            times["decode"] += time.perf_counter() - t
            times["decode_cpu"] += time.thread_time() - c

        t, c = time.perf_counter(), time.thread_time()
        try:
            return int(real(conn, command, timed, *args))
        finally:
            times["copy"] += time.perf_counter() - t
            times["copy_cpu"] += time.thread_time() - c

    return copy_out


def our_runner(method: str, url: str, lib_path: str | None, output: str, times: dict) -> Any:
    """Patch the fetch path for ``method``; return run(query) -> the fetched frame."""
    from lunepool_magic.postgres import create_pool, with_connection
    from lunepool_magic.postgres import fetch as fetch_pkg
    from lunepool_magic.postgres.fetch import fetch_frame, transfer

    real = transfer.copy_out
    if method.startswith("c_drain"):
        from native_drain.build import load
        from native_drain.copy_out import native_copy_out
        from native_drain.loaded_libpq import LoadedLibpq

        assert lib_path is not None
        real = native_copy_out(load(lib_path), LoadedLibpq(), timings=times)
    transfer.copy_out = timed_copy_out(real, times)
    fetch_pkg.BACKGROUND = method.endswith("_bg")
    pool = create_pool(url, max_connections=1)

    def run(q: str) -> Any:
        frame = with_connection(pool, lambda conn: fetch_frame(conn, q, output=output))
        if frame is None:
            raise RuntimeError("the fast path declined")
        return frame

    return run


def server_alone(url: str) -> Any:
    """run(query): the server writes the query's binary COPY to /dev/null, no client work."""
    import psycopg

    conn = psycopg.connect(url, autocommit=True)

    def run(q: str) -> None:
        conn.execute(f"COPY ({q}) TO '/dev/null' (FORMAT binary)")

    return run


def child(method: str, url: str, query: str, lib_path: str | None, output: str) -> None:
    times = dict.fromkeys(TIMES, 0.0)
    try:
        if method in ("adbc", "adbc_arrow"):
            run = method_runner(method, url)
        elif method == "server_alone":
            run = server_alone(url)
        else:
            run = our_runner(method, url, lib_path, output, times)
    except Skip as exc:
        print("SKIPPED " + str(exc))
        sys.exit(SKIPPED)
    run(query + " LIMIT 1000")
    times.update(dict.fromkeys(TIMES, 0.0))
    started = time.perf_counter()
    cpu = time.process_time()
    frame = run(query)
    info: dict[str, Any] = {
        "method": method,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "shape": list(frame.shape) if frame is not None else None,
    }
    if times["copy"]:
        info["loop_seconds"] = times["copy"] - times["decode"]
        info["loop_cpu_seconds"] = times["copy_cpu"] - times["decode_cpu"]
        info["decode_seconds"] = times["decode"]
        info["adapter_seconds"] = times["adapter"]
        info["waits"] = times["waits"]  # the C loop's only
    print("RESULT " + json.dumps(info))


class Loops:
    """Fetches with today's loop or the C loop (or the C loop with tiny blocks), all else equal."""

    def __init__(self, url: str, lib_path: str) -> None:
        from native_drain.build import load
        from native_drain.loaded_libpq import LoadedLibpq

        from lunepool_magic.postgres.fetch import transfer

        self.url = url
        self.lib, self.drain = LoadedLibpq(), load(lib_path)
        self.python_loop = transfer.copy_out

    def fetch(self, loop: str, query: str, block: int | None = None, progress: Any = None) -> Any:
        """``query``'s frame, or the exception it raised, and whether the connection still works.

        ``progress(conn)`` gives the on_progress callback for the fetch on ``conn``.
        """
        import psycopg
        from native_drain.copy_out import native_copy_out

        from lunepool_magic.postgres.fetch import fetch_frame, transfer

        if loop == "C":
            transfer.copy_out = native_copy_out(self.drain, self.lib, block or transfer.BLOCK_BYTES)
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                # Scans of a large table may start where another one is: same order wanted.
                conn.execute("SET synchronize_seqscans = off")
                on_progress = progress(conn) if progress else None
                try:
                    result = fetch_frame(conn, query, on_progress=on_progress)
                except Exception as exc:
                    result = exc
                try:
                    usable = conn.execute("SELECT 1").fetchone() == (1,)
                except psycopg.Error:
                    usable = False
        finally:
            transfer.copy_out = self.python_loop
        return result, usable


def check(loops: Loops, shape: str) -> None:
    """Both loops give the same frame: the whole table, then 48-byte blocks on 20,000 rows."""
    table = SHAPES[shape][0]
    for query, block in (
        (f"SELECT * FROM {table}", None),
        (f"SELECT * FROM {table} LIMIT 20000", 48),
    ):
        expected, _ = loops.fetch("python", query)
        got, usable = loops.fetch("C", query, block)
        same = expected.equals(got) and list(expected.dtypes) == list(got.dtypes)
        print(
            f"  {shape}: {query} (block {block or 'default'}): {expected.shape} "
            f"{'same frame' if same and usable else 'DIFFERENT'}",
            flush=True,
        )
        if not (same and usable):
            raise SystemExit(1)


def check_errors(loops: Loops) -> None:
    """Both loops raise the same error for a statement failing mid-COPY (the connection
    stays usable) and for a backend terminated mid-COPY (it does not)."""
    import psycopg

    def terminate(conn: Any) -> Any:
        pid = conn.info.backend_pid

        def on_progress(*_: Any) -> None:
            with psycopg.connect(loops.url, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])

        return on_progress

    cases = [
        ("fails mid-COPY", "SELECT g, 1 / (g - 500000) FROM generate_series(1, 1000000) g", None),
        ("backend terminated", "SELECT g FROM generate_series(1, 100000000) g", terminate),
    ]
    for name, query, progress in cases:
        outcomes = {loop: loops.fetch(loop, query, progress=progress) for loop in ("python", "C")}
        (expected, usable), (got, c_usable) = outcomes["python"], outcomes["C"]
        same = (
            isinstance(expected, Exception)
            and type(expected) is type(got)
            and str(expected) == str(got)
            and usable == c_usable
        )
        print(
            f"  {name}: {type(got).__name__}: {str(got).strip().splitlines()[0]}; connection "
            f"{'usable' if c_usable else 'closed'}; {'same' if same else 'DIFFERENT'} "
            f"(python loop: {type(expected).__name__}, {'usable' if usable else 'closed'})"
        )
        if not same:
            raise SystemExit(1)


# --------------------------------------------------------------------- driver


def run_child(method: str, url: str, query: str, lib_path: str, output: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", method, "--url", url, "--query", query]
    command += ["--lib", lib_path, "--output", output]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if proc.returncode == SKIPPED:
        return {"skipped": proc.stdout.strip().removeprefix("SKIPPED ")}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def measure_shape(
    url: str, shape: str, runs: int, lib_path: str, output: str, only: list[str]
) -> dict[str, Any]:
    table, rows, _ = SHAPES[shape]
    build_table(url, rows, shape)
    query = f"SELECT * FROM {table}"
    methods = [m for m in METHODS if m == REFERENCE or not only or m in only]
    methods = [m if m != REFERENCE or output == "pandas" else "adbc_arrow" for m in methods]
    load_before = os.getloadavg()
    print(f"shape {shape} ({query}), output {output}; load average {load_before}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for r in range(runs):
        shift = r % len(methods)
        for method in methods[shift:] + methods[:shift]:
            info = run_child(method, url, query, lib_path, output)
            if "seconds" not in info:
                raise SystemExit(f"{method} in round {r}: {info}")
            info["round"] = r
            results[method].append(info)
            loop = info.get("loop_seconds")
            print(
                f"  round {r} {method:12s} {info['seconds']:7.3f} s"
                + (f"  loop {loop:6.3f} s" if loop is not None else ""),
                flush=True,
            )
    load_after = os.getloadavg()
    print(f"load average after: {load_after}")
    report(shape, methods, results, load_before, load_after)
    return {"results": results, "load": [load_before, load_after]}


def report(
    shape: str,
    methods: list[str],
    results: dict[str, list[dict[str, Any]]],
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
) -> None:
    reference = {x["round"]: x["seconds"] for x in results[methods[-1]]}
    nrows = next(x["shape"][0] for m in methods for x in results[m] if x.get("shape"))

    def span(values: list[float]) -> str:
        return f"{min(values):.3f}-{max(values):.3f}" if values else "–"

    print()
    print(f"{shape}, {nrows:,} rows (load {load_before[0]:.1f} → {load_after[0]:.1f}):")
    print(
        "| method | receiving loop s | loop CPU s | loop CPU ns/row | adapter s | total s (median)"
        " | × ADBC (per round) | × ADBC (median) | socket waits |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for m in methods:
        runs = results[m]
        ratios = [x["seconds"] / reference[x["round"]] for x in runs]
        loop = [x["loop_seconds"] for x in runs if "loop_seconds" in x]
        cpu = [x["loop_cpu_seconds"] for x in runs if "loop_cpu_seconds" in x]
        adapter = [x["adapter_seconds"] for x in runs if x.get("adapter_seconds")]
        per_row = f"{statistics.median(cpu) / nrows * 1e9:.0f}" if cpu else "–"
        waits = [x["waits"] for x in runs if x.get("waits")]
        wait_text = f"{statistics.median(waits):,.0f}" if waits else "–"
        print(
            f"| {m} | {span(loop)} | {span(cpu)} | {per_row} | {span(adapter)} "
            f"| {statistics.median(x['seconds'] for x in runs):.3f} "
            f"| {', '.join(f'{r:.2f}' for r in ratios)} | {statistics.median(ratios):.2f} "
            f"| {wait_text} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="server (default: DATABASE_URL, else the embedded server)")
    parser.add_argument("--shapes", default="issue,narrow,text", help="comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="rounds per shape (default 5)")
    parser.add_argument("--output", choices=["pandas", "arrow"], default="pandas")
    parser.add_argument("--only", help="comma-separated methods (ADBC always runs)")
    parser.add_argument("--check", action="store_true", help="compare the loops' frames instead")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--query", help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.query, args.lib, args.output)
        return

    from native_drain.build import build
    from psycopg import pq

    shapes = args.shapes.split(",")
    only = args.only.split(",") if args.only else []
    lib_path = build()
    try:
        with serving(args.url) as url:
            print(f"server {masked(url)}; {sys.executable}; library {lib_path}")
            if args.check:
                loops = Loops(url, lib_path)
                print(f"  psycopg {pq.__impl__}, its libpq: {loops.lib.path}")
                for shape in shapes:
                    build_table(url, SHAPES[shape][1], shape)
                    check(loops, shape)
                check_errors(loops)
                return
            measured = {
                s: measure_shape(url, s, args.runs, lib_path, args.output, only) for s in shapes
            }
    finally:
        shutil.rmtree(os.path.dirname(lib_path), ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(measured, f, indent=1)


if __name__ == "__main__":
    main()
