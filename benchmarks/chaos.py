"""Reliability under load and faults: a chaos run of the PostgreSQL pool, with figures.

    python benchmarks/chaos.py [--seconds 60] [--workers 16] [--seed N]

``--seconds 15`` is the short mode that the test suite runs. The script owns
its server: a private embedded PostgreSQL in a temporary data directory
(``DATABASE_URL`` is not used, since a chaos run stops and starts its server),
behind a breakable TCP proxy on loopback. 16 worker threads share one pool of
5 connections and do, through ``with_connection`` (chaos_load.py): short
reads, autocommit ledger inserts, ``pg_sleep`` of 10-200 ms, transactions of
several statements, and user code that raises halfway through a transaction.

Meanwhile a fault thread (chaos_faults.py) terminates idle and busy backends,
cancels queries, arms statement timeouts, refuses new connections for a
moment, cuts connections, and restarts the server at least twice.

At the end it prints what was attempted and what failed, by kind and by
exception class, and checks (exit status 1 if any check fails):

* every failure is of a documented class, with a clear message, no password;
* the ledger: nothing lost, nothing invented (chaos_ledger.py says how "in
  doubt" is decided);
* the pool never held more than 5 connections (sampled throughout), and after
  ``destroy_pool`` none of its backends remains in ``pg_stat_activity``;
* connections were lent clean; no worker hung; the pool serves after the run;
* the pool's counters add up.

Every check holds under any interleaving of faults and work; figures (counts,
waits) vary from run to run, the seed fixes the choices each thread makes.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
for _path in (str(_ROOT), str(_HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg  # noqa: E402
from chaos_faults import FaultThread, OwnServer, TimeoutTokens  # noqa: E402
from chaos_ledger import LedgerReport, Write, create_schema, verify  # noqa: E402
from chaos_load import (  # noqa: E402
    OP_KINDS,
    PASSWORD,
    POOL_NAME,
    ConnectionRegistry,
    Worker,
    WorkerStats,
    class_name,
)

from lunepool_magic.postgres import create_pool, destroy_pool, with_connection  # noqa: E402
from tests.support.proxy import BreakableProxy  # noqa: E402

MAX_CONNECTIONS = 5
ACQUIRE_TIMEOUT = 5.0
BACKENDS_GONE_DEADLINE = 15.0
JOIN_GRACE = ACQUIRE_TIMEOUT + 10.0  # a worker must finish this long after the run ends


# ----------------------------------------------------------------------- run


class Run:
    """Everything one chaos run owns; ``close()`` stops it all, always."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.seconds: float = args.seconds
        self.workers_n: int = args.workers
        self.seed: int = args.seed
        self.stop = threading.Event()
        self.tokens = TimeoutTokens()
        self.registry = ConnectionRegistry()
        self.app_name = f"lpm-chaos-{os.getpid()}"
        self.server: OwnServer | None = None
        self.proxy: BreakableProxy | None = None
        self.pool: Any = None
        self.faults: FaultThread | None = None
        self.workers: list[Worker] = []
        self.sampler: threading.Thread | None = None
        self.samples = 0
        self.max_size = 0
        self.max_open = 0
        self.size_violations: list[str] = []
        self.start_at = self.end_at = 0.0
        self.logs: Counter[str] = Counter()
        self.log_leaks: list[str] = []

    # ------------------------------------------------------------- set-up

    def setup(self) -> None:
        t0 = time.monotonic()
        self.server = OwnServer()
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            create_schema(conn, self.workers_n)
            version = conn.execute("SHOW server_version").fetchone()
        self.proxy = BreakableProxy.for_url(self.server.url)
        self.pool = create_pool(
            self.proxy.url,
            password=PASSWORD,
            max_connections=MAX_CONNECTIONS,
            acquire_timeout=ACQUIRE_TIMEOUT,
            application_name=self.app_name,
            name=POOL_NAME,
            connect_timeout=2,
            configure=self.registry.add,
        )
        print(
            f"server: embedded PostgreSQL {version[0] if version else '?'} in "
            f"{self.server.data_dir} (own server; ready in {time.monotonic() - t0:.1f} s), "
            f"pool {POOL_NAME!r} of {MAX_CONNECTIONS} through a TCP proxy on {self.proxy.url}",
            flush=True,
        )
        if os.environ.get("DATABASE_URL"):
            print("(DATABASE_URL is not used: a chaos run restarts its server, so it owns one)")

    def capture_logs(self) -> None:
        """Count the library's log records instead of printing their tracebacks.

        Each record, its arguments and its traceback are searched for the password.
        """
        run = self

        class Tally(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                run.logs[f"{record.name} {record.levelname}: {record.msg}"] += 1
                text = record.getMessage()
                if record.exc_info:
                    text += logging.Formatter().formatException(record.exc_info)
                if PASSWORD in text:
                    run.log_leaks.append(f"{record.name}: {record.msg}")

        for name, level in (("lunepool_magic", logging.INFO), ("psycopg", logging.WARNING)):
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.addHandler(Tally())
            logger.propagate = False

    # ---------------------------------------------------------------- run

    def run(self) -> None:
        assert self.server is not None and self.proxy is not None
        self.start_at = time.monotonic()
        self.end_at = self.start_at + self.seconds
        quiet = min(2.0, self.seconds * 0.1)  # the last moments are calm: recovery shows
        n_restarts = max(2, round(self.seconds / 20))
        restarts_at = [
            self.start_at + self.seconds * k / (n_restarts + 1) for k in range(1, n_restarts + 1)
        ]
        self.faults = FaultThread(
            server=self.server,
            proxy=self.proxy,
            app_name=self.app_name,
            tokens=self.tokens,
            rng=random.Random(self.seed * 1009 + 1000),
            start_at=self.start_at + 0.5,
            stop_at=self.end_at - quiet,
            restarts_at=restarts_at,
            stop_event=self.stop,
        )
        self.workers = [Worker(self, i) for i in range(self.workers_n)]
        self.sampler = threading.Thread(target=self.sample, name="chaos-sampler", daemon=True)
        self.sampler.start()
        for worker in self.workers:
            worker.start()
        self.faults.start()
        # Join in the main thread with timeouts, so Ctrl-C stays responsive.
        while time.monotonic() < self.end_at and any(w.is_alive() for w in self.workers):
            time.sleep(min(0.2, max(0.0, self.end_at - time.monotonic())))

    def sample(self) -> None:
        while not self.stop.wait(0.005):
            stats = self.pool.stats()
            open_now = self.registry.open_count()
            self.samples += 1
            self.max_size = max(self.max_size, stats.size)
            self.max_open = max(self.max_open, open_now)
            if stats.size > MAX_CONNECTIONS or stats.in_use > stats.size or stats.idle < 0:
                self.size_violations.append(f"{stats}")
            if open_now > MAX_CONNECTIONS:
                self.size_violations.append(f"{open_now} open connections")

    def join_all(self) -> list[str]:
        """Wait for every thread of the run within its deadline; return the hung ones."""
        hung = []
        deadline = self.end_at + JOIN_GRACE
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            finished = worker.stats.finished_at
            if worker.is_alive() or finished is None or finished > deadline:
                hung.append(worker.name)
        if self.faults is not None and self.faults.is_alive():
            self.stop.set()
            self.faults.join(max(1.0, deadline - time.monotonic()))
            if self.faults.is_alive():
                hung.append(self.faults.name)
        return hung

    def health_probe(self) -> tuple[bool, int, str]:
        """After the faults: the pool must serve again (a stale connection may fail once)."""
        last = ""
        for attempt in range(1, 6):
            try:
                value = with_connection(self.pool, lambda c: c.execute("SELECT 42").fetchone())
                if value == (42,):
                    return True, attempt, ""
                last = f"wrong result {value!r}"
            except Exception as exc:
                last = f"{class_name(exc)}: {exc}".splitlines()[0]
            time.sleep(0.2)
        return False, 5, last

    def backends_left(self) -> tuple[int, float]:
        """Poll until none of the pool's backends remains; return (count, seconds waited)."""
        assert self.server is not None
        t0 = time.monotonic()
        count = -1
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (self.app_name,),
                ).fetchone()
                count = row[0] if row else -1
                if count == 0 or time.monotonic() - t0 > BACKENDS_GONE_DEADLINE:
                    return count, time.monotonic() - t0
                time.sleep(0.05)

    def verify_ledger(self, writes: list[Write]) -> LedgerReport:
        assert self.server is not None
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            return verify(conn, writes)

    # -------------------------------------------------------------- teardown

    def close(self) -> None:
        """Stop threads, pool, proxy and server; safe to call at any point, twice too."""
        self.stop.set()
        # Five seconds for all threads together: one still stuck in a query is
        # freed below, when the proxy and the server go away.
        deadline = time.monotonic() + 5.0
        for thread in [*self.workers, self.faults, self.sampler]:
            if thread is not None and thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        if self.pool is not None:
            try:
                destroy_pool(self.pool)
            except Exception as exc:
                print(f"warning: destroy_pool failed: {exc}", file=sys.stderr)
        if self.proxy is not None:
            try:
                self.proxy.close()
            except Exception as exc:
                print(f"warning: closing the proxy failed: {exc}", file=sys.stderr)
        if self.server is not None:
            self.server.close()


# -------------------------------------------------------------------- report


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def report(run: Run, hung: list[str], probe: tuple[bool, int, str]) -> int:
    """Destroy the pool, verify, print figures and checks; return the exit status."""
    stats_list = [w.stats for w in run.workers]
    total = WorkerStats()
    writes: list[Write] = []
    for s in stats_list:
        total.attempted.update(s.attempted)
        total.succeeded.update(s.succeeded)
        total.failures.update(s.failures)
        for key, value in s.samples.items():
            total.samples.setdefault(key, value)
        total.unclassified += s.unclassified
        total.unclear += s.unclear
        total.leaks += s.leaks
        total.wrong_results += s.wrong_results
        total.dirty_lends += s.dirty_lends
        total.waits += s.waits
        total.failed_acquire_waits += s.failed_acquire_waits
        total.success_times += s.success_times
        total.timeouts_applied.update(s.timeouts_applied)
        total.longest_op = max(total.longest_op, s.longest_op)
        total.stale_lends += s.stale_lends
        writes += s.writes
    total.leaks += run.log_leaks
    for shown in (repr(run.pool), str(run.pool)):
        if PASSWORD in shown:
            total.leaks.append(f"the pool's repr/str: {shown}")
    crashed = [f"{w.name}: {w.stats.crashed}" for w in run.workers if w.stats.crashed]

    before_destroy = run.pool.stats()
    destroy_pool(run.pool)
    after = run.pool.stats()
    left, waited = run.backends_left()
    ledger = run.verify_ledger(writes)
    faults = run.faults
    assert faults is not None

    elapsed = max((w.stats.finished_at or run.end_at) for w in run.workers) - run.start_at
    attempted = sum(total.attempted.values())
    print(f"\nran {elapsed:.1f} s, {run.workers_n} workers, pool of {MAX_CONNECTIONS}")
    print(f"\n{'operation':<10}{'attempted':>11}{'succeeded':>11}{'failed':>9}")
    for kind in OP_KINDS:
        a, s = total.attempted[kind], total.succeeded[kind]
        print(f"{kind:<10}{a:>11}{s:>11}{a - s:>9}")
    succeeded = sum(total.succeeded.values())
    print(f"{'all':<10}{attempted:>11}{succeeded:>11}{attempted - succeeded:>9}")
    print(f"  ({attempted / max(elapsed, 1e-9):.0f} operations/s; 'raise' succeeds when the")
    print("   user's own exception reaches the caller unchanged)")

    print("\nfailures by class (kind: count), with a sample message")
    by_class: dict[str, Counter[str]] = defaultdict(Counter)
    for (kind, name), n in total.failures.items():
        by_class[name][kind] += n
    for name in sorted(by_class, key=lambda k: -sum(by_class[k].values())):
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(by_class[name].items()))
        print(f"  {name:<34} {sum(by_class[name].values()):>6}  ({kinds})")
        print(f"      {total.samples.get(name, '')[:240]}")
    if not by_class:
        print("  (none)")

    print("\nfaults injected (missed: no target found at that moment)")
    others = (set(faults.injected) | set(faults.missed)) - {"restart"}
    for kind in ("restart", *sorted(others)):
        missed = f"  (missed {faults.missed[kind]})" if faults.missed[kind] else ""
        print(f"  {kind:<20}{faults.injected[kind]:>6}{missed}")
    if total.timeouts_applied:
        outcome = ", ".join(f"{k}: {n}" for k, n in sorted(total.timeouts_applied.items()))
        print(f"  statement timeouts taken by long queries -> {outcome}")
    for stopped, up in faults.restart_times:
        after_up = [t for t in total.success_times if t > up]
        first = f"first success {ms(min(after_up) - up)}" if after_up else "no success"
        at = stopped - run.start_at
        print(f"  restart at {at:5.1f} s: down {ms(up - stopped)}, {first} after it was up")
    for error in faults.errors:
        print(f"  fault not injected: {error}")

    waits = total.waits
    print(
        f"\nacquire wait over {len(waits)} acquires: p50 {ms(percentile(waits, 0.5))}, "
        f"p99 {ms(percentile(waits, 0.99))}, max {ms(max(waits, default=float('nan')))}"
    )
    if total.failed_acquire_waits:
        fw = total.failed_acquire_waits
        print(
            f"  failed acquires {len(fw)}: p50 {ms(percentile(fw, 0.5))}, max {ms(max(fw))} "
            f"(acquire_timeout {ACQUIRE_TIMEOUT:g} s)"
        )
    print(f"longest operation {ms(total.longest_op)}")
    print(
        f"stale lends {total.stale_lends} (the lent connection's socket already held data:"
        " the server's goodbye)"
    )
    s = before_destroy
    print(
        f"pool: requests {s.requests}, waits {s.waits}, timeouts {s.timeouts}, created {s.created},"
        f" create errors {s.create_errors}, destroyed {s.destroyed}, broken {s.broken},"
        f" retired {s.retired}"
    )
    print(
        f"size sampled {run.samples} times: max {run.max_size} (pool's count), "
        f"max {run.max_open} open connections (counted by the run)"
    )
    for line in sorted(run.logs):
        print(f"log: {line} x{run.logs[line]}")

    print("\nledger (in doubt: the failure came after COMMIT - or an autocommit INSERT - was")
    print("  sent; resolved by id after the run, and by pg_xact_status(xid read before COMMIT)")
    print("  for transactions; failures before that are 'absent': their ids must not be there)")
    for line in ledger.lines:
        print(f"  {line}")

    acquires = len(total.waits) + len(total.failed_acquire_waits) + probe[1]
    pool_timeouts = sum(n for (_, name), n in total.failures.items() if name == "PoolTimeout")
    checks: list[tuple[str, bool, str]] = [
        (
            "every failure of a documented class",
            not total.unclassified,
            f"unclassified {len(total.unclassified)}",
        ),
        ("every failure message clear", not total.unclear, f"unclear {len(total.unclear)}"),
        ("no password in errors, logs, repr", not total.leaks, f"leaks {len(total.leaks)}"),
        ("results right", not total.wrong_results, f"wrong {len(total.wrong_results)}"),
        ("connections lent clean", not total.dirty_lends, f"dirty {len(total.dirty_lends)}"),
        (
            "ledger: nothing lost, nothing invented",
            not ledger.problems,
            f"problems {len(ledger.problems)}",
        ),
        (
            f"pool never above {MAX_CONNECTIONS} connections",
            not run.size_violations
            and run.max_size <= MAX_CONNECTIONS
            and run.max_open <= MAX_CONNECTIONS,
            f"max {max(run.max_size, run.max_open)} over {run.samples} samples",
        ),
        (
            "no backend left after destroy_pool",
            left == 0,
            f"{left} left after {waited:.2f} s",
        ),
        ("no worker hung", not hung and not crashed, f"hung {hung}, crashed {len(crashed)}"),
        (
            "pool serves after the faults",
            probe[0],
            f"attempt {probe[1]}" + (f": {probe[2]}" if probe[2] else ""),
        ),
        (
            "pool's numbers add up",
            after.size == 0
            and after.created == after.destroyed
            and after.requests == acquires
            and after.timeouts == pool_timeouts,
            f"size {after.size}, created {after.created}, destroyed {after.destroyed}, "
            f"requests {after.requests} (made {acquires}), timeouts {after.timeouts} "
            f"(seen {pool_timeouts})",
        ),
        (
            "server restarted at least twice, faults injected",
            faults.injected["restart"] >= 2 and faults.injected["refuse"] >= 1,
            f"restarts {faults.injected['restart']}",
        ),
        (
            "work got done (every kind succeeded)",
            all(total.succeeded[k] for k in OP_KINDS),
            ", ".join(f"{k} {total.succeeded[k]}" for k in OP_KINDS),
        ),
    ]
    print("\nchecks")
    for label, passed, detail in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {label}  ({detail})")
    details = [
        ("unclassified errors", total.unclassified),
        ("unclear messages", total.unclear),
        ("password leaks", total.leaks),
        ("wrong results", total.wrong_results),
        ("dirty lends", total.dirty_lends),
        ("ledger problems", ledger.problems),
        ("size violations", run.size_violations),
        ("worker crashes", crashed),
    ]
    for label, items in details:
        for item in items[:5]:
            print(f"\n{label}: {item}")
    failed = [label for label, passed, _ in checks if not passed]
    print(
        f"\n{'FAILED: ' + '; '.join(failed) if failed else 'all checks passed'} (seed {run.seed})"
    )
    return 1 if failed else 0


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run")
    parser.add_argument("--workers", type=int, default=16, help="worker threads (16+)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    args = parser.parse_args(argv)
    if args.seconds < 6:
        parser.error("--seconds must be at least 6 (two restarts need room)")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    print(
        f"chaos run: {args.seconds:g} s, {args.workers} workers, seed {args.seed} "
        f"(rerun with --seed {args.seed})",
        flush=True,
    )

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    run = Run(args)
    run.capture_logs()
    try:
        try:
            run.setup()
        except Exception as exc:
            print(f"set-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        run.run()
        hung = run.join_all()
        probe = run.health_probe()
        run.stop.set()
        if run.sampler is not None:
            run.sampler.join(5.0)
        return report(run, hung, probe)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping workers, pool, proxy and server", file=sys.stderr)
        return 130
    except Exception:
        # The harness itself failed (e.g. the server did not come back): not a pass.
        traceback.print_exc()
        print(f"\nFAILED: the run could not complete (seed {run.seed})")
        return 1
    finally:
        # Cleanup is bounded (every join has a timeout); a second Ctrl-C must
        # not cut it short and leave the server running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.close()


if __name__ == "__main__":
    sys.exit(main())
