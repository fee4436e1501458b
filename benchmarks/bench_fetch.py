"""A large ``SELECT *`` into a DataFrame or Arrow table: our COPY fast path against the usual tools.

``--shape`` picks the table (built here if it is missing or has another row
count): ``issue`` (the default, issue 5's) is 1,000,000 rows of (id bigint, x
float8 with 1% NULL, n int4, s text of 12 characters with 1% NULL, t
timestamptz, b bool); ``wide`` is 100 columns (int4, float8, text, bool in
turn) x 100,000 rows; ``narrow`` is one bigint column x 10,000,000 rows;
``text`` is 500,000 rows of (id int4, a text of 100 characters, b text of 20,
c text of 10 with 10% NULL). ``--rows`` overrides the row count.

Methods, each run in a **fresh subprocess** (imports, connect, a warm-up on
``LIMIT 1000``, then one timed full fetch), **interleaved** round by round
(the order rotates every round), ``--runs`` rounds:

- ``lunepool_fastpath``: ours, :func:`lunepool_magic.postgres.fetch.fetch_frame`
  on a connection borrowed from our pool (``with_connection``);
- ``lunepool_magic``: ours, ``%sql SELECT ...`` in an IPython shell (what a
  notebook cell does, display aside: parsing, the session, the fast path);
- ``lunepool_rowpath``: ours, the careful row path (``run(..., fast=False)``),
  for reference;
- ``lunepool_arrow`` / ``lunepool_polars``: ours, ``fetch(..., output="arrow"
  | "polars")``;
- ``lunepool_tofile``: ours, ``copy_to_file`` into a Parquet file (peak RSS
  stays bounded: batches);
- ``adbc``: ADBC's PostgreSQL driver, ``fetch_arrow_table().to_pandas()``;
- ``adbc_arrow``: ADBC's ``fetch_arrow_table()`` alone;
- ``polars_connectorx`` / ``polars_adbc``: ``polars.read_database_uri`` with
  that engine;
- ``connectorx``: ``connectorx.read_sql`` (given the Unix socket directory as
  a percent-encoded host: its URL parser refuses an empty host);
- ``read_sql``: ``pandas.read_sql`` with a SQLAlchemy engine (psycopg 3);
- ``fetchall``: psycopg ``fetchall()`` + ``DataFrame.from_records``;
- ``jupysql``: JupySQL's ``%sql`` with ``autopandas``;
- ``psql_copy``: ``psql \\copy ... (FORMAT binary)`` to /dev/null: the wire
  floor of a C client (process start included), no DataFrame.

A peer that is not installed is reported as skipped (``pip install '.[bench]'``).
Reported per method: median seconds, the median of the per-round ratios to
ADBC (so both numbers of a ratio come from the same round), and peak RSS
growth during the timed fetch (``ru_maxrss`` after minus before), with its
ratio to ADBC's. On a shared machine compare the ratios, not the seconds.

The server: ``--url``, else ``DATABASE_URL``, else the embedded server::

    python benchmarks/bench_fetch.py [--runs 5] [--rows 1000000] [--only fast,adbc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench_common import postgres_uri, server_url, sqlalchemy_url

TABLE = "lunepool_bench_fetch"
QUERY = f"SELECT * FROM {TABLE}"
SHAPE = "issue"  # --shape; set in main()

METHODS = [
    "lunepool_fastpath",
    "lunepool_magic",
    "lunepool_rowpath",
    "lunepool_arrow",
    "lunepool_polars",
    "lunepool_tofile",
    "adbc",
    "adbc_arrow",
    "polars_connectorx",
    "polars_adbc",
    "connectorx",
    "read_sql",
    "fetchall",
    "jupysql",
    "psql_copy",
]
REFERENCE = "adbc"
SKIPPED = 3  # child exit code: a peer is not installed

# JupySQL: no telemetry, no version check (they would also add network time).
os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")
os.environ.setdefault("PLOOMBER_VERSION_CHECK_DISABLED", "true")


def masked(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo("", **params)


# --------------------------------------------------------------------- table


BUILD = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id bigint PRIMARY KEY,
    x double precision,
    n integer,
    s text,
    t timestamptz,
    b boolean
);
INSERT INTO {TABLE}
SELECT g::bigint,
       CASE WHEN g % 100 = 7 THEN NULL ELSE ((g::bigint * 7919) % 1000003) / 1000.0 END,
       (g % 100000)::int,
       CASE WHEN g % 100 = 13 THEN NULL ELSE substr(md5(g::text), 1, 12) END,
       timestamptz '2024-01-01 00:00:00+00' + (g::bigint * 1234567) * interval '1 microsecond',
       (g % 3 = 0)
FROM generate_series(1, %(rows)s) AS g;
"""


def _wide_build() -> str:
    kinds = [
        "(g + {j})::int4",
        "(g * {j}) / 7.0::float8",
        "substr(md5((g + {j})::text), 1, 8)",
        "(g + {j}) % 2 = 0",
    ]
    columns = ", ".join(f"c{j} {('int4', 'float8', 'text', 'bool')[j % 4]}" for j in range(100))
    values = ", ".join(kinds[j % 4].format(j=j) for j in range(100))
    return (
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (" + columns + ");"
        " INSERT INTO {table} SELECT " + values + " FROM generate_series(1, %(rows)s) AS g;"
    )


#: shape -> (table, default rows, build SQL with {table} and %(rows)s)
SHAPES = {
    "issue": (TABLE, 1_000_000, BUILD.replace(TABLE, "{table}")),
    "wide": ("lunepool_bench_wide", 100_000, _wide_build()),
    "narrow": (
        "lunepool_bench_narrow",
        10_000_000,
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id bigint);"
        " INSERT INTO {table} SELECT g FROM generate_series(1, %(rows)s) AS g;",
    ),
    "text": (
        "lunepool_bench_text",
        500_000,
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int4, a text, b text, c text);"
        " INSERT INTO {table} SELECT g, repeat(md5(g::text), 4) || substr(md5(g::text), 1, 4),"
        " substr(md5((g + 1)::text), 1, 20),"
        " CASE WHEN g % 10 = 3 THEN NULL ELSE substr(md5((g + 2)::text), 1, 10) END"
        " FROM generate_series(1, %(rows)s) AS g;",
    ),
}


def build_table(url: str, rows: int, shape: str = "issue") -> None:
    import psycopg

    table, _, build = SHAPES[shape]
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone() if found[0] else (0,)
        if count[0] != rows:
            print(f"building {table} ({rows:,} rows) ...", flush=True)
            conn.execute(build.replace("{table}", table).replace("%(rows)s", str(int(rows))))
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute(f"SELECT count(*) FROM {table}")  # warm the cache


# --------------------------------------------------------------------- child


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Skip(Exception):
    pass


def method_runner(method: str, url: str) -> Callable[[str], Any]:
    """Import and connect for ``method``; return run(query) -> DataFrame (or None)."""
    try:
        return _method_runner(method, url)
    except ImportError as exc:
        raise Skip(f"{exc.name or exc} is not installed") from exc


def connectorx_uri(url: str) -> str:
    """connectorx's URI: a Unix socket directory as a percent-encoded host (it refuses
    ``postgresql://user@/db?host=/dir``: "empty host")."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(url)
    host = p.get("host", "")
    if not host.startswith("/"):
        return postgres_uri(url)
    auth = p.get("user", "")
    if p.get("password"):
        auth += ":" + quote(p["password"], safe="")
    return f"postgresql://{auth}@{quote(host, safe='')}:{p.get('port', 5432)}/{p.get('dbname', '')}"


def _method_runner(method: str, url: str) -> Callable[[str], Any]:
    if method in (
        "lunepool_fastpath",
        "lunepool_rowpath",
        "lunepool_arrow",
        "lunepool_polars",
        "lunepool_tofile",
    ):
        from lunepool_magic.postgres import create_pool, with_connection
        from lunepool_magic.postgres import run as run_sql
        from lunepool_magic.postgres.fetch import fetch_frame

        pool = create_pool(url, max_connections=1)
        if method == "lunepool_polars":
            import polars  # noqa: F401 (a peer that is not installed is skipped)
        target = os.path.join(tempfile.mkdtemp(prefix="bench_tofile_"), "out.parquet")

        def fetch(conn: Any, q: str) -> Any:
            if method == "lunepool_fastpath":
                return fetch_frame(conn, q)
            if method == "lunepool_rowpath":
                return run_sql(conn, q, fast=False).frame
            if method == "lunepool_tofile":
                from lunepool_magic.postgres.tofile import copy_to_file

                written = copy_to_file(conn, q, target)
                return _Shape(written.rows)
            return fetch_frame(conn, q, output=method.removeprefix("lunepool_"))

        def run(q: str) -> Any:
            frame = with_connection(pool, lambda conn: fetch(conn, q))
            if frame is None:
                raise RuntimeError("the fast path declined")
            return frame

        return run

    if method == "lunepool_magic":
        return magic_runner(["%load_ext lunepool_magic", f"%sql {url}"])

    if method == "adbc":
        import adbc_driver_postgresql.dbapi as adbc

        aconn = adbc.connect(postgres_uri(url))

        def run(q: str) -> Any:
            with aconn.cursor() as cur:
                cur.execute(q)
                return cur.fetch_arrow_table().to_pandas()

        return run

    if method == "adbc_arrow":
        import adbc_driver_postgresql.dbapi as adbc

        aconn = adbc.connect(postgres_uri(url))

        def run(q: str) -> Any:
            with aconn.cursor() as cur:
                cur.execute(q)
                return cur.fetch_arrow_table()

        return run

    if method in ("polars_connectorx", "polars_adbc"):
        import polars as pl

        engine = method.removeprefix("polars_")
        __import__("connectorx" if engine == "connectorx" else "adbc_driver_postgresql")
        uri = connectorx_uri(url) if engine == "connectorx" else postgres_uri(url)
        return lambda q: pl.read_database_uri(q, uri, engine=engine)

    if method == "connectorx":
        import connectorx as cx

        uri = connectorx_uri(url)
        return lambda q: cx.read_sql(uri, q)

    if method == "read_sql":
        import pandas as pd
        import sqlalchemy as sa

        engine = sa.create_engine(sqlalchemy_url(url))
        return lambda q: pd.read_sql(q, engine)

    if method == "fetchall":
        import pandas as pd
        import psycopg

        pconn = psycopg.connect(url, autocommit=True)

        def run(q: str) -> Any:
            with pconn.cursor() as cur:
                cur.execute(q)
                rows = cur.fetchall()
                return pd.DataFrame.from_records(rows, columns=[d.name for d in cur.description])

        return run

    if method == "jupysql":
        import importlib.util

        if importlib.util.find_spec("sql.magic") is None:
            raise ImportError(name="jupysql")
        return magic_runner(
            [
                "%load_ext sql",
                "%config SqlMagic.autopandas = True",
                "%config SqlMagic.displaycon = False",
                f"%sql {sqlalchemy_url(url)}",
            ]
        )

    if method == "psql_copy":
        psql = shutil.which("psql")
        if psql is None:
            raise ImportError(name="psql")

        def run(q: str) -> Any:
            command = f"\\copy ({q}) TO '/dev/null' WITH (FORMAT binary)"
            subprocess.run([psql, "-X", "-q", "-d", url, "-c", command], check=True)

        return run

    raise SystemExit(f"unknown method {method!r}")


def magic_runner(setup: list[str]) -> Callable[[str], Any]:
    """An IPython shell (no history file, no output cache) set up by the ``setup``
    lines; returns run(query) = ``%sql query``'s value, with its prints discarded."""
    import contextlib

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    cfg.InteractiveShell.cache_size = 0
    shell = InteractiveShell.instance(config=cfg)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    with contextlib.redirect_stdout(devnull):
        for line in setup:
            magic, _, rest = line[1:].partition(" ")
            shell.run_line_magic(magic, rest)

    def run(q: str) -> Any:
        with contextlib.redirect_stdout(devnull):
            return shell.run_line_magic("sql", q)

    return run


class _Shape:
    """What copy_to_file returns, shaped for the report (rows x ? columns, no dtypes)."""

    def __init__(self, rows: int) -> None:
        self.shape = (rows, 0)
        self.dtypes: list[str] = []


def _dtypes(frame: Any) -> list[str]:
    schema = getattr(frame, "schema", None)
    if schema is not None and hasattr(schema, "types"):  # Arrow
        return [str(t) for t in schema.types]
    if isinstance(schema, dict) or hasattr(schema, "dtypes"):  # polars
        return [str(t) for t in frame.dtypes]
    return [str(t) for t in frame.dtypes]


def child(method: str, url: str) -> None:
    try:
        run = method_runner(method, url)
    except Skip as exc:
        print("SKIPPED " + str(exc))
        sys.exit(SKIPPED)
    run(QUERY + " LIMIT 1000")  # warm-up: lazy imports, type caches, plans
    before = maxrss_mb()
    started = time.perf_counter()
    cpu = time.process_time()
    frame = run(QUERY)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    after = maxrss_mb()
    info: dict[str, Any] = {
        "method": method,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_before_mb": before,
        "rss_growth_mb": after - before,
    }
    if frame is not None:
        info["shape"] = list(frame.shape)
        info["dtypes"] = _dtypes(frame)
    else:  # psql: the work is in the child process
        info["rss_growth_mb"] = None
        info["note"] = "no DataFrame: wire floor"
    print("RESULT " + json.dumps(info))


# --------------------------------------------------------------------- profile


def profile(url: str, output: str, rounds: int) -> None:
    """Where one fetch's time goes: probe, the receiving loop, decoding, assembly.

    The COPY path's own functions are wrapped with timers (a sampling profiler
    would slow the receiving loop, one C call per row). For reference, the
    server alone: ``COPY (...) TO '/dev/null'`` run by the server itself.
    """
    import psycopg

    from lunepool_magic.postgres import fetch as fetch_pkg
    from lunepool_magic.postgres.fetch import plan, transfer

    times: dict[str, float] = {}
    real_copy_out, real_probe = transfer.copy_out, plan.probe

    def copy_out(conn: Any, command: bytes, consume: Any, *args: Any) -> int:
        def timed(block: bytearray, lens: list[int]) -> None:
            t = time.perf_counter()
            consume(block, lens)
            times["decode"] += time.perf_counter() - t

        t = time.perf_counter()
        try:
            return real_copy_out(conn, command, timed, *args)
        finally:
            times["copy"] = time.perf_counter() - t

    def probe(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_probe(*args)
        finally:
            times["probe"] = time.perf_counter() - t

    transfer.copy_out, plan.probe = copy_out, probe
    print(f"profile of fetch(output={output!r}) on {QUERY}; load average {os.getloadavg()}")
    print("| total s | probe | receiving loop | decoding | assembly | server alone (binary) |")
    print("|---:|---:|---:|---:|---:|---:|")
    with psycopg.connect(url, autocommit=True) as conn:
        times["decode"] = 0.0
        fetch_pkg.fetch(conn, QUERY + " LIMIT 1000", output=output)
        for _ in range(rounds):
            times.clear()
            times["decode"] = 0.0
            started = time.perf_counter()
            fetched = fetch_pkg.fetch(conn, QUERY, output=output)
            total = time.perf_counter() - started
            del fetched
            t = time.perf_counter()
            conn.execute(f"COPY ({QUERY}) TO '/dev/null' (FORMAT binary)")
            server = time.perf_counter() - t
            loop = times["copy"] - times["decode"]
            assembly = total - times["probe"] - times["copy"]
            print(
                f"| {total:.3f} | {times['probe']:.4f} | {loop:.3f} | {times['decode']:.3f} "
                f"| {assembly:.3f} | {server:.3f} |"
            )


# --------------------------------------------------------------------- driver


def run_child(method: str, url: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, "--url", url, "--shape", SHAPE],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if proc.returncode == SKIPPED:
        return {"skipped": proc.stdout.strip().removeprefix("SKIPPED ")}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1][len("RESULT ") :])


def round_order(methods: list[str], r: int) -> list[str]:
    """Round ``r``'s order: the others rotate; ours and ADBC run back to back.

    Other jobs on a shared machine come and go; run next to each other, the
    two numbers of our ratio see the same load. Which of the two goes first
    alternates, and the pair moves through the round.
    """
    pair = [m for m in ("lunepool_fastpath", REFERENCE) if m in methods]
    others = [m for m in methods if m not in pair]
    if others:
        shift = r % len(others)
        others = others[shift:] + others[:shift]
    if r % 2:
        pair.reverse()
    at = r % (len(others) + 1)
    return others[:at] + pair + others[at:]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="server (default: DATABASE_URL, else the embedded server)")
    parser.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--rows", type=int, help="table rows (default: the shape's)")
    parser.add_argument("--shape", choices=["issue", "wide", "narrow", "text"], default="issue")
    parser.add_argument("--only", help="comma-separated method name prefixes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        metavar="OUTPUT",
        help="time the stages of our fetch (pandas, arrow, polars) instead, --runs times",
    )
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    global QUERY, SHAPE
    SHAPE = args.shape
    table, default_rows, _ = SHAPES[SHAPE]
    QUERY = f"SELECT * FROM {table}"
    url = server_url(args.url)
    if args.child:
        child(args.child, url)
        return
    if args.profile:
        build_table(url, args.rows or default_rows, SHAPE)
        profile(url, args.profile, args.runs)
        return

    methods = [
        m for m in METHODS if not args.only or any(m.startswith(p) for p in args.only.split(","))
    ]
    build_table(url, args.rows or default_rows, SHAPE)
    home = tempfile.mkdtemp(prefix="bench_fetch_")
    env = dict(os.environ, IPYTHONDIR=os.path.join(home, "ipython"), MPLBACKEND="Agg")
    print(
        f"server {masked(url)}; shape {SHAPE} ({QUERY}); {args.runs} rounds of "
        f"{len(methods)} methods, fresh processes; load average {os.getloadavg()}"
    )

    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    skipped: dict[str, str] = {}
    for r in range(args.runs):
        for method in round_order(methods, r):
            if method in skipped:
                continue
            info = run_child(method, url, env)
            if "skipped" in info:
                skipped[method] = info["skipped"]
                print(f"  {method:18s} skipped: {info['skipped']}", flush=True)
                continue
            info["round"] = r
            results[method].append(info)
            if "error" in info:
                print(f"  round {r} {method:18s} FAILED\n{info['error']}", flush=True)
            else:
                growth = info["rss_growth_mb"]
                line = f"  round {r} {method:18s} {info['seconds']:7.3f} s"
                line += f"  cpu {info['cpu_seconds']:6.3f} s"
                if growth is not None:
                    line += f"  +{growth:5.0f} MB"
                print(line, flush=True)
    shutil.rmtree(home, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    report(methods, results, skipped)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "skipped": skipped}, f, indent=1)


def report(
    methods: list[str], results: dict[str, list[dict[str, Any]]], skipped: dict[str, str]
) -> None:
    ok = {m: [x for x in results[m] if "seconds" in x] for m in methods}
    ref = {x["round"]: x for x in ok.get(REFERENCE, [])}

    def ratio_to_ref(method: str, key: str) -> float:
        ratios = [
            x[key] / ref[x["round"]][key]
            for x in ok[method]
            if x["round"] in ref and x.get(key) and ref[x["round"]].get(key)
        ]
        return median(ratios)

    print()
    print(
        "| method | median s | × ADBC (time) | × ADBC (client CPU) "
        "| peak RSS growth MB | × ADBC (memory) | rounds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m in methods:
        if m in skipped:
            print(f"| {m} | skipped: {skipped[m]} | | | | | |")
            continue
        runs = ok[m]
        if not runs:
            print(f"| {m} | failed | | | | | {len(results[m])} |")
            continue
        seconds = median([x["seconds"] for x in runs])
        growth = [x["rss_growth_mb"] for x in runs if x["rss_growth_mb"] is not None]
        mem = f"{median(growth):.0f}" if growth else "–"
        mem_ratio = f"{ratio_to_ref(m, 'rss_growth_mb'):.2f}" if growth else "–"
        cpu = f"{ratio_to_ref(m, 'cpu_seconds'):.2f}" if m != "psql_copy" else "–"
        print(
            f"| {m} | {seconds:.3f} | {ratio_to_ref(m, 'seconds'):.2f} | {cpu} "
            f"| {mem} | {mem_ratio} | {len(runs)} |"
        )

    for ours in ("lunepool_fastpath", "lunepool_magic"):
        if ok.get(ours) and ref:
            print_goals(ours, ok, ratio_to_ref)
    print_issue16_goals(ok)


def print_issue16_goals(ok: dict[str, list[dict[str, Any]]]) -> None:
    """Issue 16's goals: each of ours against its peer, ratios of the same rounds."""

    def per_round(ours: str, peers: list[str], key: str = "seconds") -> list[float]:
        by_round: dict[int, list[float]] = {}
        for peer in peers:
            for x in ok.get(peer, []):
                if x.get(key):
                    by_round.setdefault(x["round"], []).append(x[key])
        return [
            x[key] / min(by_round[x["round"]])
            for x in ok.get(ours, [])
            if x["round"] in by_round and x.get(key)
        ]

    goals = [
        ("pandas ≤ 1.0 × ADBC pandas", "lunepool_fastpath", ["adbc"], 1.0, "seconds"),
        ("Arrow ≤ 1.0 × ADBC fetch_arrow_table", "lunepool_arrow", ["adbc_arrow"], 1.0, "seconds"),
        (
            "polars ≤ 1.0 × read_database_uri (faster engine)",
            "lunepool_polars",
            ["polars_connectorx", "polars_adbc"],
            1.0,
            "seconds",
        ),
        ("pandas ≤ 1.25 × psql \\copy floor", "lunepool_fastpath", ["psql_copy"], 1.25, "seconds"),
        ("memory ≤ 1.0 × ADBC pandas", "lunepool_fastpath", ["adbc"], 1.0, "rss_growth_mb"),
    ]
    print()
    print("goals (issue 16), per round (each ratio from one round):")
    for text, ours, peers, bound, key in goals:
        ratios = per_round(ours, peers, key)
        if not ratios:
            continue
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        every = all(r <= bound for r in ratios)
        print(f"  {text}: {shown}  {'met in every round' if every else 'NOT met in every round'}")


def print_goals(ours: str, ok: dict[str, list[dict[str, Any]]], ratio_to_ref: Any) -> None:
    """Issue 5's goals for one of our methods, as ratios from the same rounds."""
    print()
    by_round = {x["round"]: x for x in ok[ours]}

    def speedup(other: str) -> float:
        return median(
            [
                x["seconds"] / by_round[x["round"]]["seconds"]
                for x in ok.get(other, [])
                if x["round"] in by_round
            ]
        )

    time_ratio = ratio_to_ref(ours, "seconds")
    mem_ratio = ratio_to_ref(ours, "rss_growth_mb")
    print(f"goals (issue 5) for {ours}, ratios from the same rounds:")
    print(f"  time ≤ 1.25 × ADBC:    {time_ratio:.2f} ×  {verdict(time_ratio <= 1.25)}")
    print(f"  memory ≤ 1.5 × ADBC:   {mem_ratio:.2f} ×  {verdict(mem_ratio <= 1.5)}")
    for other in ("read_sql", "jupysql"):
        if ok.get(other):
            s = speedup(other)
            print(f"  ≥ 5 × faster than {other + ':':10s} {s:.1f} ×  " + verdict(s >= 5))
    dtypes = ok[ours][0].get("dtypes")
    print(f"  our dtypes: {dtypes}")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
