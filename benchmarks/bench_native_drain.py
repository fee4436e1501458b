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
TIMES = ("copy", "decode", "copy_cpu", "decode_cpu", "adapter")


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
    print("RESULT " + json.dumps(info))


def check(url: str, shape: str, lib_path: str) -> None:
    """Both loops give the same frame: the whole table, then 48-byte blocks on 20,000 rows."""
    import psycopg
    from native_drain.build import load
    from native_drain.copy_out import native_copy_out
    from native_drain.loaded_libpq import LoadedLibpq

    from lunepool_magic.postgres.fetch import fetch_frame, transfer

    table = SHAPES[shape][0]
    lib, drain = LoadedLibpq(), load(lib_path)
    python_loop = transfer.copy_out
    for query, block in (
        (f"SELECT * FROM {table}", None),
        (f"SELECT * FROM {table} LIMIT 20000", 48),
    ):
        with psycopg.connect(url, autocommit=True) as conn:
            # Scans of a large table may start where another one is: same order wanted.
            conn.execute("SET synchronize_seqscans = off")
            transfer.copy_out = python_loop
            expected = fetch_frame(conn, query)
            transfer.copy_out = native_copy_out(drain, lib, block or transfer.BLOCK_BYTES)
            got = fetch_frame(conn, query)
            transfer.copy_out = python_loop
            conn.execute("SELECT 1")  # the connection is still usable
        same = expected.equals(got) and list(expected.dtypes) == list(got.dtypes)
        print(
            f"  {shape}: {query} (block {block or 'default'}): {expected.shape} "
            f"{'same frame' if same else 'DIFFERENT'}",
            flush=True,
        )
        if not same:
            raise SystemExit(1)
    print(f"  libpq used: {lib.path}")


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


def measure_shape(url: str, shape: str, runs: int, lib_path: str, output: str) -> dict[str, Any]:
    table, rows, _ = SHAPES[shape]
    build_table(url, rows, shape)
    query = f"SELECT * FROM {table}"
    methods = [m if m != REFERENCE or output == "pandas" else "adbc_arrow" for m in METHODS]
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
    nrows = results["python_loop"][0]["shape"][0]

    def span(values: list[float]) -> str:
        return f"{min(values):.3f}-{max(values):.3f}" if values else "–"

    print()
    print(f"{shape}, {nrows:,} rows (load {load_before[0]:.1f} → {load_after[0]:.1f}):")
    print(
        "| method | receiving loop s | loop CPU s | loop CPU ns/row | adapter s | total s (median)"
        " | × ADBC (per round) | × ADBC (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for m in methods:
        runs = results[m]
        ratios = [x["seconds"] / reference[x["round"]] for x in runs]
        loop = [x["loop_seconds"] for x in runs if "loop_seconds" in x]
        cpu = [x["loop_cpu_seconds"] for x in runs if "loop_cpu_seconds" in x]
        adapter = [x["adapter_seconds"] for x in runs if x.get("adapter_seconds")]
        per_row = f"{statistics.median(cpu) / nrows * 1e9:.0f}" if cpu else "–"
        print(
            f"| {m} | {span(loop)} | {span(cpu)} | {per_row} | {span(adapter)} "
            f"| {statistics.median(x['seconds'] for x in runs):.3f} "
            f"| {', '.join(f'{r:.2f}' for r in ratios)} | {statistics.median(ratios):.2f} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="server (default: DATABASE_URL, else the embedded server)")
    parser.add_argument("--shapes", default="issue,narrow,text", help="comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="rounds per shape (default 5)")
    parser.add_argument("--output", choices=["pandas", "arrow"], default="pandas")
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

    shapes = args.shapes.split(",")
    lib_path = build()
    try:
        with serving(args.url) as url:
            print(f"server {masked(url)}; {sys.executable}; library {lib_path}")
            if args.check:
                for shape in shapes:
                    build_table(url, SHAPES[shape][1], shape)
                    check(url, shape, lib_path)
                return
            measured = {s: measure_shape(url, s, args.runs, lib_path, args.output) for s in shapes}
    finally:
        shutil.rmtree(os.path.dirname(lib_path), ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(measured, f, indent=1)


if __name__ == "__main__":
    main()
