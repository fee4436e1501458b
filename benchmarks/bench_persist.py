"""``%sql --persist df`` (COPY) against ``DataFrame.to_sql`` and other ways of loading a DataFrame.

One DataFrame of N rows (default 1,000,000) with the column types notebooks
usually hold: int64, nullable Int32 with NAs, float64 with NaN, nullable
Float64, string with NAs, datetime64, datetime64 with a time zone, bool.
Each variant loads it into a fresh table (replacing the previous one) and
the rows are counted afterwards. Variants, interleaved round by round:

- *ours*: :func:`lunepool_magic.persist.persist` (what ``%sql --persist df
  --replace`` runs) on a connection of our pool: CREATE TABLE and COPY in one
  transaction;
- *to_sql*: ``DataFrame.to_sql(if_exists="replace", index=False)`` on a
  SQLAlchemy engine with the psycopg 3 driver (``postgresql+psycopg://``), as
  pandas' documentation and JupySQL's ``--persist`` do;
- *write_row*: psycopg's ``cursor.copy()`` fed row by row with ``write_row``
  (the obvious hand-written COPY), for reference;
- *adbc*: ADBC's PostgreSQL driver, ``cursor.adbc_ingest`` of the pyarrow
  table (binary COPY in C++), if ``adbc_driver_postgresql`` is installed.

Slow baselines take long at 1M rows (to_sql: about 40 s here); ``--slow-rows``
runs to_sql and write_row on fewer rows and scales their time linearly to N
(reported as such), when a full run would take too long. By default every
variant loads all N rows.

Ratios are medians of per-round ratios (so drift of a shared machine between
rounds cancels out); times are medians. A ratio > 1 means ours is faster.
``--objects`` uses a DataFrame of Python-object columns instead (Decimal,
date, UUID, dict), where ours converts per value, to show that case too.

    python benchmarks/bench_persist.py [--rows 1000000] [--rounds 3] [--url URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import importlib.util
import statistics
import time
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd
from bench_common import postgres_uri, server_url, sqlalchemy_url


def make_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    """The typical-columns DataFrame (vectorised dtypes, some missing values)."""
    rng = np.random.default_rng(seed)
    missing = rng.random(rows) < 0.05
    qty = pd.array(rng.integers(0, 1000, rows), dtype="Int32")
    qty[missing] = pd.NA
    amount = rng.random(rows) * 1000
    amount[rng.random(rows) < 0.02] = np.nan
    price = pd.arrays.FloatingArray(rng.random(rows) * 100, rng.random(rows) < 0.03)
    names = np.array([f"customer {i}" for i in range(5000)], dtype=object)[
        rng.integers(0, 5000, rows)
    ]
    names[rng.random(rows) < 0.01] = None
    start = np.datetime64("2024-01-01T00:00:00", "us")
    stamps = start + rng.integers(0, 365 * 86_400 * 10**6, rows).astype("timedelta64[us]")
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "qty": qty,
            "amount": amount,
            "price": price,
            "name": pd.array(names, dtype="string"),
            "at": stamps,
            "at_utc": pd.DatetimeIndex(stamps).tz_localize("UTC"),
            "flag": rng.random(rows) < 0.5,
        }
    )


def make_object_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    """Python-object columns: Decimal, date, UUID, dict (per-value conversion)."""
    rng = np.random.default_rng(seed)
    ints = rng.integers(0, 10**6, rows)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "amount": [decimal.Decimal(int(i)) / 100 for i in ints],
            "day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(i % 365)) for i in ints],
            "key": [uuid.UUID(int=int(i)) for i in ints],
            "meta": [{"n": int(i), "tag": "x"} for i in ints],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="server URL (default: DATABASE_URL, else embedded)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--slow-rows",
        type=int,
        default=0,
        help="load only this many rows with to_sql/write_row and scale to --rows (0: all)",
    )
    parser.add_argument("--objects", action="store_true", help="Python-object columns instead")
    args = parser.parse_args()

    import psycopg
    import pyarrow as pa
    import sqlalchemy as sa
    from psycopg.types.json import JsonbDumper

    from lunepool_magic.persist import persist
    from lunepool_magic.postgres import create_pool

    url = server_url(args.url)
    frame = (make_object_frame if args.objects else make_frame)(args.rows)
    slow_rows = args.slow_rows or args.rows
    slow_frame = frame.iloc[:slow_rows].copy() if slow_rows < args.rows else frame
    print(f"{args.rows:,} rows × {frame.shape[1]} columns:")
    print("  " + ", ".join(f"{c} {t}" for c, t in frame.dtypes.astype(str).items()))

    pool = create_pool(url, max_connections=1)
    engine = sa.create_engine(sqlalchemy_url(url))
    raw = psycopg.connect(url, autocommit=True)

    def count(table: str) -> int:
        return int(raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def ours() -> int:
        with pool.connection() as conn:
            persist(conn, frame, "bench_persist_ours", mode="replace")
        return count("bench_persist_ours")

    # to_sql cannot store dicts by itself: it needs to be told the column is JSON.
    to_sql_types = {"meta": sa.types.JSON()} if args.objects else None

    def to_sql() -> int:
        slow_frame.to_sql(
            "bench_persist_to_sql", engine, if_exists="replace", index=False, dtype=to_sql_types
        )
        return count("bench_persist_to_sql")

    def write_row() -> int:
        # Same column types as ours; rows as Python tuples, NA as None.
        with pool.connection() as conn:
            conn.adapters.register_dumper(dict, JsonbDumper)
            persist(conn, slow_frame.iloc[:0], "bench_persist_rows", mode="replace")
            records = slow_frame.astype(object).where(slow_frame.notna(), None)
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy("COPY bench_persist_rows FROM STDIN") as copy,
            ):
                for row in records.itertuples(index=False, name=None):
                    copy.write_row(row)
        return count("bench_persist_rows")

    variants: dict[str, tuple[Callable[[], int], int]] = {
        "ours": (ours, args.rows),
        "to_sql": (to_sql, slow_rows),
        "write_row": (write_row, slow_rows),
    }
    if importlib.util.find_spec("adbc_driver_postgresql") is not None and not args.objects:
        import adbc_driver_postgresql.dbapi as adbc

        adbc_conn = adbc.connect(postgres_uri(url))
        arrow_table = pa.Table.from_pandas(frame, preserve_index=False)

        def adbc_ingest() -> int:
            with adbc_conn.cursor() as cur:
                cur.adbc_ingest("bench_persist_adbc", arrow_table, mode="replace")
            adbc_conn.commit()
            return count("bench_persist_adbc")

        variants["adbc"] = (adbc_ingest, args.rows)

    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_no in range(args.rounds):
        for name, (fn, rows) in variants.items():
            t0 = time.perf_counter()
            loaded = fn()
            took = time.perf_counter() - t0
            if loaded != rows:
                raise SystemExit(f"{name}: loaded {loaded} rows, expected {rows}")
            scaled = took * args.rows / rows
            seconds[name].append(scaled)
            note = f" (scaled from {rows:,} rows)" if rows != args.rows else ""
            print(f"  round {round_no + 1}: {name:<9} {scaled:8.2f} s{note}", flush=True)

    def ratio(other: str) -> float:
        pairs = zip(seconds[other], seconds["ours"], strict=True)
        return statistics.median(a / b for a, b in pairs)

    print()
    print(f"{args.rows:,} rows, {args.rounds} interleaved rounds, medians")
    print(f"{'variant':<10} {'seconds':>9} {'rows/s':>12} {'x ours':>8}")
    for name in variants:
        med = statistics.median(seconds[name])
        scaled = " (scaled)" if variants[name][1] != args.rows else ""
        print(f"{name:<10} {med:9.2f} {args.rows / med:12,.0f} {ratio(name):8.2f}{scaled}")
    print(f"\ngoal: to_sql >= 10x ours: {ratio('to_sql'):.1f}x")
    for table in ("ours", "to_sql", "rows", "adbc"):
        raw.execute(f"DROP TABLE IF EXISTS bench_persist_{table}")
    raw.close()
    pool.close()
    engine.dispose()


if __name__ == "__main__":
    main()
