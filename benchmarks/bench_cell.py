"""Cell overhead of ``%sql SELECT 1``, and ``%load_ext`` time, against the baselines.

Two measurements, each reported as ratios from one run:

1. **Per cell**, in one in-process IPython ``InteractiveShell`` (history in
   memory, output cache off, stdout to /dev/null), interleaved round by round:

   - *plain*: a Python function that runs ``SELECT 1`` on a psycopg
     connection (autocommit) and builds a ``pandas.DataFrame``: the floor any
     magic returning a DataFrame must pay;
   - *ours*: ``%sql SELECT 1`` (lunepool_magic, through its pool);
   - *jupysql*: JupySQL's ``%sql SELECT 1`` with ``autopandas`` (so it also
     returns a DataFrame), if jupysql is importable; otherwise reported as
     skipped. With JupySQL loaded, ours is called as ``%lunesql``, the alias
     meant for exactly that situation.

   *exec* is ``shell.run_line_magic(...)`` (or the direct call for *plain*):
   the work alone. *cell* is ``shell.run_cell(src)``: input transforms,
   compilation and the display hook, which renders the DataFrame (text and
   HTML) as a kernel does. Each round times a batch of N calls per variant
   and mode; a ratio is the median of the per-round ratios, so drift of the
   machine between rounds cancels out.

2. **%load_ext**, each in a fresh process: ``InteractiveShell.instance()``
   first (not timed), then the time of ``%load_ext lunepool_magic`` against
   ``%load_ext sql`` (JupySQL), interleaved, median of R runs. The first
   ``%sql SELECT 1`` after loading (imports psycopg and pandas, connects) is
   reported too, as information.

The server: ``--url``, else ``DATABASE_URL``, else the embedded server.
JupySQL lives best in its own environment that still sees ours::

    python -m venv --system-site-packages /tmp/lpm-bench && /tmp/lpm-bench/bin/pip install jupysql
    /tmp/lpm-bench/bin/python benchmarks/bench_cell.py [--calls 200] [--rounds 15] [--loads 7]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from bench_common import server_url, sqlalchemy_url

# JupySQL: no telemetry, no version check (they would also add network time).
os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")
os.environ.setdefault("PLOOMBER_VERSION_CHECK_DISABLED", "true")

HAVE_JUPYSQL = importlib.util.find_spec("sql") is not None and (
    importlib.util.find_spec("sql.magic") is not None
)


# --------------------------------------------------------------- per cell


def bench_cells(url: str, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    import pandas as pd
    import psycopg
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    cfg.InteractiveShell.cache_size = 0  # don't keep every result alive in Out[]
    shell = InteractiveShell.instance(config=cfg)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the benchmark)

    os.environ["DATABASE_URL"] = url  # our magic connects there by itself
    ours_name = "sql"
    with contextlib.redirect_stdout(devnull):
        shell.run_line_magic("load_ext", "lunepool_magic")
        if HAVE_JUPYSQL:
            shell.run_line_magic("load_ext", "sql")  # takes %sql; ours stays %lunesql
            ours_name = "lunesql"
            shell.run_line_magic("config", "SqlMagic.autopandas = True")
            shell.run_line_magic("config", "SqlMagic.displaycon = False")
            shell.run_line_magic("sql", sqlalchemy_url(url))
        shell.run_line_magic(ours_name, "SELECT 1")  # connects

    raw = psycopg.connect(url, autocommit=True)

    def plain_df() -> pd.DataFrame:
        cur = raw.execute("SELECT 1")
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])

    shell.user_ns["plain_df"] = plain_df

    def magic(name: str) -> Callable[[], object]:
        run = shell.run_line_magic
        return lambda: run(name, "SELECT 1")

    variants: dict[str, tuple[Callable[[], object], str]] = {
        "plain": (plain_df, "plain_df()"),
        "ours": (magic(ours_name), f"%{ours_name} SELECT 1"),
    }
    if HAVE_JUPYSQL:
        variants["jupysql"] = (magic("sql"), "%sql SELECT 1")

    # Sanity: every variant returns a one-row DataFrame, and ours runs on its pool.
    with contextlib.redirect_stdout(devnull):
        for name, (fn, _) in variants.items():
            value = fn()
            assert isinstance(value, pd.DataFrame) and len(value) == 1, (name, type(value))

    in_key = re.compile(r"^_i\d+$")

    def purge_input_cache() -> None:
        # run_cell adds `_iN` to user_ns per cell; keep the namespace realistic.
        for key in [k for k in shell.user_ns if in_key.match(k)]:
            del shell.user_ns[key]

    def time_exec(fn: Callable[[], object]) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        return (
            (time.perf_counter() - t0) / calls * 1e3,
            (time.process_time() - c0) / calls * 1e3,
        )

    def time_cell(src: str) -> tuple[float, float]:
        purge_input_cache()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            result = shell.run_cell(src, store_history=True)
        elapsed = (
            (time.perf_counter() - t0) / calls * 1e3,
            (time.process_time() - c0) / calls * 1e3,
        )
        if not result.success:
            raise RuntimeError(f"cell failed: {src!r}: {result.error_in_exec}")
        return elapsed

    # samples[variant][mode] = per-round ms; modes: exec, cell (wall) and
    # exec_cpu, cell_cpu (this process's CPU time: less sensitive to other
    # processes on a shared machine, but blind to the server's work).
    modes = ("exec", "cell", "exec_cpu", "cell_cpu")
    samples: dict[str, dict[str, list[float]]] = {
        name: {mode: [] for mode in modes} for name in variants
    }
    with contextlib.redirect_stdout(devnull):
        for fn, src in variants.values():  # warm-up (prepared statements, caches)
            for _ in range(50):
                fn()
                shell.run_cell(src)
        for _ in range(rounds):
            for name, (fn, src) in variants.items():
                wall, cpu = time_exec(fn)
                samples[name]["exec"].append(wall)
                samples[name]["exec_cpu"].append(cpu)
                wall, cpu = time_cell(src)
                samples[name]["cell"].append(wall)
                samples[name]["cell_cpu"].append(cpu)
    raw.close()
    with contextlib.redirect_stdout(devnull):
        shell.run_line_magic("unload_ext", "lunepool_magic")

    def ratio(a: str, b: str, mode: str) -> float:
        """Median over rounds of a/b: drift between rounds cancels out."""
        pairs = zip(samples[a][mode], samples[b][mode], strict=True)
        return statistics.median(x / y for x, y in pairs)

    result: dict[str, dict[str, float]] = {}
    for name, s in samples.items():
        result[name] = {f"{mode}_ms": statistics.median(s[mode]) for mode in modes}
        result[name].update({f"{mode}_x_plain": ratio(name, "plain", mode) for mode in modes})
    if "jupysql" in samples:
        result["ours"].update(
            {f"jupysql_{mode}_x_ours": ratio("jupysql", "ours", mode) for mode in modes}
        )
    return result


# --------------------------------------------------------------- %load_ext

_LOAD_SCRIPT = r"""
import contextlib, io, os, sys, time
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
cfg = Config(); cfg.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=cfg)
ext, magic = sys.argv[1], sys.argv[2]
with contextlib.redirect_stdout(io.StringIO()):
    t0 = time.perf_counter()
    shell.run_line_magic("load_ext", ext)
    t1 = time.perf_counter()
    if ext == "sql":
        shell.run_line_magic("config", "SqlMagic.autopandas = True")
        shell.run_line_magic("sql", sys.argv[3])
    t2 = time.perf_counter()
    value = shell.run_line_magic(magic, "SELECT 1")
    t3 = time.perf_counter()
assert len(value) == 1, value
print(f"{(t1 - t0) * 1e3:.3f} {(t3 - t1) * 1e3:.3f}")
"""


def bench_load(url: str, runs: int) -> dict[str, dict[str, float]]:
    cases = {"ours": ["lunepool_magic", "sql", url]}
    if HAVE_JUPYSQL:
        cases["jupysql"] = ["sql", "sql", sqlalchemy_url(url)]
    env = dict(os.environ, DATABASE_URL=url)
    times: dict[str, dict[str, list[float]]] = {c: {"load": [], "first": []} for c in cases}
    for i in range(runs + 1):  # the first run warms the OS file cache; not counted
        for name, args in cases.items():
            out = subprocess.run(
                [sys.executable, "-c", _LOAD_SCRIPT, *args],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            if i:
                times[name]["load"].append(float(out[0]))
                times[name]["first"].append(float(out[1]))
    result = {
        name: {
            "load_ms": statistics.median(t["load"]),
            "first_cell_ms": statistics.median(t["first"]),
        }
        for name, t in times.items()
    }
    if "jupysql" in times:
        result["ours"]["load_x_jupysql"] = statistics.median(
            [a / b for a, b in zip(times["ours"]["load"], times["jupysql"]["load"], strict=True)]
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="server URL (default: DATABASE_URL, else embedded)")
    parser.add_argument("--calls", type=int, default=200, help="calls per batch")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--loads", type=int, default=7, help="fresh processes per %%load_ext case")
    args = parser.parse_args()
    url = server_url(args.url)

    print(f"load average before: {os.getloadavg()[0]:.2f}")
    cells = bench_cells(url, args.calls, args.rounds)
    print(f"\n%sql SELECT 1: {args.rounds} rounds x {args.calls} calls, medians")
    print(
        f"{'variant':10s} {'exec ms':>9s} {'cell ms':>9s} {'exec x plain':>13s} "
        f"{'cell x plain':>13s} {'exec CPU x':>11s} {'cell CPU x':>11s}"
    )
    for name, r in cells.items():
        print(
            f"{name:10s} {r['exec_ms']:9.3f} {r['cell_ms']:9.3f} {r['exec_x_plain']:13.3f} "
            f"{r['cell_x_plain']:13.3f} {r['exec_cpu_x_plain']:11.3f} {r['cell_cpu_x_plain']:11.3f}"
        )
    if not HAVE_JUPYSQL:
        print("jupysql    skipped (not installed; pip install jupysql, see the docstring)")
    ours = cells["ours"]
    print(
        f"\ngoal exec <= 1.15x plain: {ours['exec_x_plain']:.3f}x wall, "
        f"{ours['exec_cpu_x_plain']:.3f}x CPU"
    )
    if "jupysql_exec_x_ours" in ours:
        print(
            f"goal jupysql exec >= 3x ours: {ours['jupysql_exec_x_ours']:.2f}x wall, "
            f"{ours['jupysql_exec_cpu_x_ours']:.2f}x CPU (cell: {ours['jupysql_cell_x_ours']:.2f}x)"
        )

    loads = bench_load(url, args.loads)
    print(f"\n%load_ext in a fresh process ({args.loads} runs, medians)")
    for name, r in loads.items():
        print(
            f"{name:10s} load {r['load_ms']:8.1f} ms   "
            f"first %sql SELECT 1 {r['first_cell_ms']:8.1f} ms"
        )
    if "load_x_jupysql" in loads["ours"]:
        print(f"goal load <= 0.5x jupysql: {loads['ours']['load_x_jupysql']:.3f}x")
    else:
        print("jupysql    skipped (not installed)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
