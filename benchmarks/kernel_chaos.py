"""A real Jupyter kernel under faults: notebook cells in a loop while backends are killed.

    python benchmarks/kernel_chaos.py [--seconds 60] [--seed N] [--faults KIND,...]

The test suite runs the same loop for ``LUNEPOOL_KERNEL_LOOP_SECONDS`` (20 s
by default) in ``tests/test_kernel_faults.py``. The script owns its server:
a private embedded PostgreSQL (``OwnServer``, as the chaos run's), restarted
once in the middle of the run, behind a breakable TCP proxy. ``DATABASE_URL``
is not used.

A real ipykernel (jupyter_client; ``tests/support/kernel.py``) with
``%load_ext lunepool_magic`` and ``DATABASE_URL`` set to the proxy runs
cells one after the other, as a notebook user would, drawn at random:

* ``read``: ``n = ...`` then ``%sql SELECT :n AS echo``; the echo must show;
* ``sleep``: ``%sql SELECT pg_sleep(0.05..0.3), n``: a busy backend to hit;
* ``multi``: a ``%%sql`` cell of three statements on a temporary table;
* ``capture``: ``%sql kc_out << SELECT ...`` and Python reading ``kc_out``;
* ``tx``: three cells, ``BEGIN`` / an INSERT into a ledger table /
  ``COMMIT``: the transaction pinned across cells (the ledger is checked);
* ``error``: ``%sql SELECT 1/0``: a SQL error on purpose;
* ``python``: a Python-only cell; ``list``: ``%sql --list``. These two
  never touch the server and must always succeed.

Meanwhile the chaos run's fault thread (chaos_faults.py) terminates idle and
busy backends of the kernel's pool, cancels its queries, cuts its
connections at the proxy, and restarts the server once (``--faults`` picks
other kinds, e.g. ``refuse``: new connections refused for a moment).

Checks (exit status 1 if any fails):

* every cell either succeeded (with the right output) or showed a clear
  error: an error of the magic's documented classes, rendered without a
  Python traceback, whose first line is psql-like (``ERROR:  ...``) and whose
  message is one of the known kinds (the table ``ERROR_KINDS``; an unknown
  message counts as unclassified); no cell hung;
* the ledger: a transaction whose COMMIT cell printed ``COMMIT`` is in the
  table exactly once; one whose INSERT failed, or whose COMMIT cell printed
  ``ROLLBACK`` or "there is no transaction in progress", is not; a failed
  COMMIT cell is in doubt (either is right); nothing else is there;
* afterwards the kernel is alive and its pool healthy: a probe cell
  succeeds (a connection that died unseen just before may fail it once:
  two attempts), nothing in use, nobody waiting, no transaction pinned,
  size within ``max_size``, and the server has exactly as many backends of
  the kernel as the pool says it holds;
* after the kernel shuts down (as Jupyter asks it to), none of its backends
  remains.

Every check holds under any interleaving; the figures vary from run to run,
the seed fixes the choice of cells and faults.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
for _path in (str(_ROOT), str(_HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg  # noqa: E402
from chaos_faults import KINDS, FaultThread, OwnServer, TimeoutTokens  # noqa: E402

from lunepool_magic.notebook.session import APPLICATION_NAME  # noqa: E402
from tests.support.kernel import Kernel, Reply, start_kernel  # noqa: E402
from tests.support.proxy import BreakableProxy  # noqa: E402

#: The faults drawn between restarts: chaos_faults.KINDS less statement
#: timeouts (they need the chaos run's workers) and refused connections (a
#: window in which every cell fails at once would only swell the counts).
FAULT_KINDS = ("terminate_idle", "terminate_busy", "cancel", "network_drop")
_USABLE_KINDS = tuple(k for k in KINDS if k != "statement_timeout")
ACQUIRE_TIMEOUT = 5.0  # %config LunepoolMagic.acquire_timeout in the kernel
CELL_TIMEOUT = 60.0  # a cell still running after this long has hung
BACKENDS_DEADLINE = 15.0  # for backends of killed sessions to leave pg_stat_activity

# Cell kinds and their weights; "tx" is three cells (begin, insert, commit).
OPS = ("read", "sleep", "multi", "capture", "tx", "error", "python", "list")
OP_WEIGHTS = (28, 16, 10, 10, 10, 6, 12, 8)
CELL_KINDS = (
    "read",
    "sleep",
    "multi",
    "capture",
    "begin",
    "insert",
    "commit",
    "error",
    "python",
    "list",
)
NEVER_FAIL = ("python", "list")  # cells that do not touch the server

#: What a failed cell may say, by kind: (kind, pattern searched in the error's
#: text). First match wins; a message matching none is unclassified.
ERROR_KINDS: tuple[tuple[str, str], ...] = (
    ("division by zero (on purpose)", r"^ERROR:  division by zero"),
    ("backend terminated (57P01)", r"terminating connection due to administrator command"),
    ("query cancelled (57014)", r"canceling statement due to user request"),
    ("could not connect", r"^ERROR:  could not connect to "),
    (
        "server shutting down or starting",
        r"the database system is (shutting down|starting up|not yet accepting connections)"
        r"|terminating connection due to (unexpected postmaster exit|immediate shutdown)",
    ),
    (
        "connection lost",
        r"server closed the connection unexpectedly|consuming input failed"
        r"|connection (is|was) (lost|closed)|Connection reset by peer|Broken pipe"
        r"|could not (receive|send) data (from|to) server|the connection is closed"
        r"|no connection to the server|sending query.* failed|socket not open"
        r"|lost synchronization with server|unexpected (response|message type) from server",
    ),
    ("pool timeout", r"timed out after .* waiting for a connection|PoolTimeout"),
)
DOCUMENTED_ERRORS = ("SqlCellError", "QueryCancelled")
_PSQL_FIRST_LINE = re.compile(r"(ERROR|FATAL|PANIC):  \S|Interrupted")
_PY_TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+", re.M
)
MAX_ERROR_CHARS = 4000  # an error longer than this is not "clear"
SESSION_LOST = "this cell runs on a new connection"


def error_kind(text: str) -> str | None:
    """The kind of a failed cell's error text (``ERROR_KINDS``), or None."""
    for kind, pattern in ERROR_KINDS:
        if re.search(pattern, text, re.M):
            return kind
    return None


def judge_error(reply: Reply) -> tuple[str | None, str | None]:
    """``(kind, problem)`` of a failed cell: what it said, and what is unclear about it."""
    error = reply.error
    if error is None:
        return None, "the cell failed without an error output"
    lines = [str(line) for line in error.get("traceback", [])]
    text = "\n".join(lines)
    problems = []
    if error.get("ename") not in DOCUMENTED_ERRORS:
        problems.append(f"undocumented error class {error.get('ename')}")
    if _PY_TRACEBACK.search(text) or _PY_TRACEBACK.search(reply.text):
        problems.append("a Python traceback")
    if not lines or not _PSQL_FIRST_LINE.match(lines[0]):
        problems.append("no 'ERROR:  message' first line")
    if len(text) > MAX_ERROR_CHARS:
        problems.append(f"{len(text)} characters of error")
    kind = error_kind(text)
    summary = f"{error.get('ename')}: {text[:300]!r}"
    return kind, (f"{'; '.join(problems)} in {summary}" if problems else None)


# ------------------------------------------------------------------ the loop


@dataclass
class Tx:
    """One BEGIN / INSERT / COMMIT sequence and what its cells said."""

    n: int
    insert_ok: bool = False
    outcome: str = ""  # "committed", "absent", "doubt"


@dataclass
class Figures:
    """What the loop saw; ``checks`` and ``report()`` come from ``finish``."""

    seconds: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    cells: Counter[str] = field(default_factory=Counter)  # cell kind -> run
    succeeded: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # error kind -> count
    samples: dict[str, str] = field(default_factory=dict)  # error kind -> its first text
    unclear: list[str] = field(default_factory=list)
    unclassified: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # succeeded with the wrong output, etc.
    hung: list[str] = field(default_factory=list)
    session_lost_notes: int = 0
    latencies: list[float] = field(default_factory=list)
    success_times: list[float] = field(default_factory=list)
    txs: list[Tx] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)
    fault_errors: list[str] = field(default_factory=list)
    restarts: list[tuple[float, float, float | None]] = field(default_factory=list)
    probe_attempts: int = 0
    probe_error: str = ""
    stats: dict[str, Any] | None = None
    server_backends: int = -1
    backends_after_shutdown: int = -1
    ledger: list[str] = field(default_factory=list)  # problems
    ledger_counts: Counter[str] = field(default_factory=Counter)
    kernel_alive: bool = False
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[str]:
        return [label for label, passed, _ in self.checks if not passed]

    def report(self) -> str:
        return "\n".join(_report_lines(self))


class KernelLoop:
    """One run: a kernel on ``server`` (through ``proxy``), cells in a loop, faults, checks.

    ``server`` has ``.url``, ``.stop()``, ``.start()`` (an ``OwnServer`` or the
    tests' ``EmbeddedServer``); ``proxy`` is a ``BreakableProxy`` in front of
    it; ``work_dir`` holds the kernel's spec and profile.
    """

    def __init__(
        self,
        *,
        server: Any,
        proxy: BreakableProxy,
        seconds: float,
        seed: int,
        work_dir: Path,
        kinds: tuple[str, ...] = FAULT_KINDS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.server = server
        self.proxy = proxy
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed * 1009 + 17)
        self.work_dir = work_dir
        self.log = log or (lambda line: None)
        self.figures = Figures(seconds=seconds, seed=seed, kinds=tuple(kinds))
        self.stop = threading.Event()
        self.counter = 100_000  # echoed values: unique and not confusable with row numbers

    # ------------------------------------------------------------------ run

    def run(self) -> Figures:
        """The whole run; ``figures.checks`` says whether it passed."""
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS kc_ledger")
            conn.execute("CREATE TABLE kc_ledger (n int PRIMARY KEY)")
        faults = None
        try:
            with start_kernel(self.proxy.url, self.work_dir) as kernel:
                kernel.ok(f"%config LunepoolMagic.acquire_timeout = {ACQUIRE_TIMEOUT}")
                kernel.ok("%sql SELECT 1")  # connected before the faults start
                start = time.monotonic()
                end = start + self.seconds
                quiet = min(3.0, self.seconds * 0.1)  # calm at the end: recovery shows
                faults = FaultThread(
                    server=self.server,
                    proxy=self.proxy,
                    app_name=APPLICATION_NAME,
                    tokens=TimeoutTokens(),
                    rng=self.fault_rng,
                    start_at=start + 0.5,
                    stop_at=end - quiet,
                    restarts_at=[start + self.seconds / 2],
                    stop_event=self.stop,
                    kinds=self.figures.kinds,
                )
                faults.start()
                self.log(f"loop: {self.seconds:g} s of cells, faults until the last {quiet:g} s")
                while time.monotonic() < end and not self.figures.hung:
                    self.one_op(kernel)
                faults.join(CELL_TIMEOUT)  # it stops by itself at stop_at
                self.stop.set()
                self.collect_faults(faults)
                try:
                    self.health(kernel)
                except (queue.Empty, AssertionError) as exc:  # no answer, or a failed cell
                    self.figures.probe_error = f"the kernel did not answer: {exc!r}"[:300]
                    self.figures.kernel_alive = False
                self.shutdown(kernel)
        finally:
            self.stop.set()
            if faults is not None:
                faults.join(10.0)
        self.figures.backends_after_shutdown = self.wait_backends(0)
        self.verify_ledger()
        self.figures.checks = _checks(self.figures)
        return self.figures

    # ------------------------------------------------------------------ cells

    def next_n(self) -> int:
        self.counter += 1
        return self.counter

    def cell(self, kernel: Kernel, kind: str, code: str) -> Reply | None:
        """Run one cell; record its outcome. None when it hung (the loop then stops)."""
        f = self.figures
        f.cells[kind] += 1
        t0 = time.monotonic()
        try:
            reply = kernel.run(code, timeout=CELL_TIMEOUT)
        except queue.Empty:
            f.hung.append(f"{kind}: {code[:80]!r} still running after {CELL_TIMEOUT:g} s")
            return None
        t1 = time.monotonic()
        f.latencies.append(t1 - t0)
        if SESSION_LOST in reply.text:
            f.session_lost_notes += 1
        if reply.status == "ok":
            f.succeeded[kind] += 1
            f.success_times.append(t1)
            return reply
        error_kind_, problem = judge_error(reply)
        if problem is not None:
            f.unclear.append(f"{kind}: {problem}")
        if error_kind_ is None:
            f.unclassified.append(f"{kind}: {reply.text[:300]!r}")
            error_kind_ = "unclassified"
        if kind in NEVER_FAIL:
            f.wrong.append(f"{kind} cell failed: {reply.text[:300]!r}")
        if error_kind_.endswith("(on purpose)") and kind != "error":
            f.wrong.append(f"{kind} cell failed with {reply.text[:200]!r}")
        f.errors[error_kind_] += 1
        f.samples.setdefault(error_kind_, reply.text.strip())
        return reply

    def expect(self, reply: Reply | None, kind: str, pattern: str) -> None:
        """A successful cell must have printed ``pattern``."""
        if reply is not None and reply.status == "ok" and not re.search(pattern, reply.text):
            self.figures.wrong.append(f"{kind}: {pattern!r} not in {reply.text[:300]!r}")

    def one_op(self, kernel: Kernel) -> None:
        op = self.rng.choices(OPS, OP_WEIGHTS)[0]
        n = self.next_n()
        echo = rf"\b{n}\b"
        if op == "read":
            self.expect(self.cell(kernel, op, f"n = {n}\n%sql SELECT :n AS echo"), op, echo)
        elif op == "sleep":
            pause = round(self.rng.uniform(0.05, 0.3), 3)
            code = f"%sql SELECT pg_sleep({pause}) AS slept, {n} AS echo"
            self.expect(self.cell(kernel, op, code), op, echo)
        elif op == "multi":
            code = (
                "%%sql\nCREATE TEMP TABLE IF NOT EXISTS kc_notes (n int);\n"
                f"INSERT INTO kc_notes VALUES ({n});\n"
                f"SELECT {n} AS echo, count(*) AS notes FROM kc_notes"
            )
            self.expect(self.cell(kernel, op, code), op, echo)
        elif op == "capture":
            code = f"%sql kc_out << SELECT {n} AS echo\nprint('echo', int(kc_out.iat[0, 0]))"
            self.expect(self.cell(kernel, op, code), op, rf"echo {n}\b")
        elif op == "tx":
            self.tx(kernel, n)
        elif op == "error":
            reply = self.cell(kernel, op, "%sql SELECT 1/0 AS boom")
            if reply is not None and reply.status == "ok":
                self.figures.wrong.append(f"SELECT 1/0 succeeded: {reply.text[:200]!r}")
        elif op == "python":
            code = f"kc_x = {n} * 2\nprint('py', kc_x)"
            self.expect(self.cell(kernel, op, code), op, rf"py {2 * n}\b")
        else:
            self.expect(self.cell(kernel, "list", "%sql --list"), op, r"default")

    def tx(self, kernel: Kernel, n: int) -> None:
        """BEGIN, INSERT, COMMIT in three cells, as a notebook user runs them."""
        begin = self.cell(kernel, "begin", "%sql BEGIN")
        if begin is None or begin.status != "ok":
            return  # a user would not go on either
        tx = Tx(n)
        self.figures.txs.append(tx)
        code = f"%%sql\nINSERT INTO kc_ledger VALUES ({n});\nSELECT {n} AS echo"
        insert = self.cell(kernel, "insert", code)
        self.expect(insert, "insert", rf"\b{n}\b")
        tx.insert_ok = insert is not None and insert.status == "ok"
        if insert is None:
            tx.outcome = "doubt"
            return
        commit = self.cell(kernel, "commit", "%sql COMMIT")
        if commit is None or commit.status != "ok":
            tx.outcome = "doubt"  # the COMMIT may or may not have reached the server
            return
        out = commit.stream("stdout").split()
        if "no transaction in progress" in commit.stream("stderr") or "ROLLBACK" in out:
            tx.outcome = "absent"
        elif "COMMIT" in out:
            tx.outcome = "committed"
            if not tx.insert_ok:
                self.figures.wrong.append(f"tx {n}: INSERT failed, yet COMMIT committed")
        else:
            tx.outcome = "doubt"
            self.figures.wrong.append(f"tx {n}: COMMIT cell said neither: {commit.text!r}")

    # ------------------------------------------------------------ afterwards

    def collect_faults(self, faults: FaultThread) -> None:
        f = self.figures
        f.faults.update(faults.injected)
        f.missed.update(faults.missed)
        f.fault_errors += faults.errors
        for stopped, up in faults.restart_times:
            after = [t for t in f.success_times if t > up]
            f.restarts.append((up - stopped, up, (min(after) - up) if after else None))

    def health(self, kernel: Kernel) -> None:
        """After the faults: the probe cell, the pool's numbers, the server's backends."""
        f = self.figures
        for attempt in (1, 2):
            f.probe_attempts = attempt
            reply = kernel.run("%sql SELECT 42 AS answer", timeout=CELL_TIMEOUT)
            if reply.status == "ok" and re.search(r"\b42\b", reply.text):
                f.probe_error = ""
                break
            f.probe_error = reply.text.strip()[:300]
            kind, problem = judge_error(reply)
            if problem is not None or kind is None:
                f.unclear.append(f"probe: {problem or reply.text[:300]!r}")
        f.stats = kernel.pool_stats()
        size = (f.stats or {}).get("size", -1)
        f.server_backends = self.wait_backends(size)
        python = kernel.run("print('py', 1 + 1)")
        f.kernel_alive = kernel.manager.is_alive() and python.status == "ok"

    def shutdown(self, kernel: Kernel) -> None:
        """Shut the kernel down as Jupyter does (a shutdown request, not a kill)."""
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=False)

    def backend_count(self) -> int:
        with psycopg.connect(self.server.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchone()
        return int(row[0]) if row else -1

    def wait_backends(self, expected: int) -> int:
        """Poll until the kernel's backends number ``expected`` (or give up); the last count."""
        deadline = time.monotonic() + BACKENDS_DEADLINE
        while True:
            count = self.backend_count()
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.05)

    def verify_ledger(self) -> None:
        """Committed transactions are there once; failed ones are not; nothing else is."""
        f = self.figures
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            present = {n for (n,) in conn.execute("SELECT n FROM kc_ledger").fetchall()}
        known = {tx.n for tx in f.txs}
        for tx in f.txs:
            f.ledger_counts[tx.outcome] += 1
            if tx.outcome == "committed" and tx.n not in present:
                f.ledger.append(f"tx {tx.n}: COMMIT reported, row missing")
            elif tx.outcome == "absent" and tx.n in present:
                f.ledger.append(
                    f"tx {tx.n}: reported rolled back or not in a transaction, row there"
                )
            elif tx.outcome == "doubt":
                f.ledger_counts["doubt: committed" if tx.n in present else "doubt: absent"] += 1
        for n in sorted(present - known):
            f.ledger.append(f"row {n}: no transaction wrote it")


# ------------------------------------------------------------------ checks


def _checks(f: Figures) -> list[tuple[str, bool, str]]:
    stats = f.stats or {}
    healthy = (
        bool(stats)
        and stats.get("in_use") == 0
        and stats.get("waiting") == 0
        and stats.get("transaction") == ""
        and 0 <= stats.get("size", -1) <= stats.get("max_size", -1)
        and stats.get("idle") == stats.get("size")
    )
    succeeded = sum(f.succeeded.values())
    return [
        (
            "every failed cell showed a clear error",
            not f.unclear,
            f"unclear {len(f.unclear)}",
        ),
        (
            "every error of a known kind",
            not f.unclassified,
            f"unclassified {len(f.unclassified)}",
        ),
        ("successful cells showed the right output", not f.wrong, f"wrong {len(f.wrong)}"),
        ("no cell hung", not f.hung, f"hung {len(f.hung)}"),
        (
            "ledger: nothing lost, nothing invented",
            not f.ledger,
            f"problems {len(f.ledger)}",
        ),
        (
            "server restarted once, backends killed",
            f.faults["restart"] == 1
            and f.faults["terminate_idle"] + f.faults["terminate_busy"] >= 1,
            f"restarts {f.faults['restart']}, "
            f"kills {f.faults['terminate_idle'] + f.faults['terminate_busy']}",
        ),
        (
            "the kernel works after the faults",
            f.kernel_alive and not f.probe_error,
            f"probe attempts {f.probe_attempts}"
            + (f": {f.probe_error!r}" if f.probe_error else ""),
        ),
        (
            "the kernel's pool is healthy",
            healthy,
            ", ".join(
                f"{k} {stats.get(k)!r}"
                for k in ("size", "idle", "in_use", "waiting", "max_size", "transaction")
            ),
        ),
        (
            "the server has as many backends as the pool holds",
            f.server_backends == stats.get("size"),
            f"{f.server_backends} backends, pool size {stats.get('size')}",
        ),
        (
            "no backend left after the kernel shut down",
            f.backends_after_shutdown == 0,
            f"{f.backends_after_shutdown} left",
        ),
        (
            "work got done (every kind of cell succeeded)",
            all(f.succeeded[k] for k in CELL_KINDS if k != "error") and succeeded > 0,
            ", ".join(f"{k} {f.succeeded[k]}" for k in CELL_KINDS if k != "error"),
        ),
    ]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _report_lines(f: Figures) -> list[str]:
    ran = sum(f.cells.values())
    ok = sum(f.succeeded.values())
    on_purpose = sum(n for kind, n in f.errors.items() if kind.endswith("(on purpose)"))
    lines = [
        f"kernel loop: {f.seconds:g} s, seed {f.seed}: {ran} cells, {ok} succeeded, "
        f"{ran - ok} failed ({on_purpose} of them on purpose: SELECT 1/0); "
        f"{ran / max(f.seconds, 1e-9):.0f} cells/s",
        "",
        f"{'cell':<10}{'run':>7}{'ok':>7}{'failed':>8}",
    ]
    for kind in CELL_KINDS:
        run, good = f.cells[kind], f.succeeded[kind]
        lines.append(f"{kind:<10}{run:>7}{good:>7}{run - good:>8}")
    lines += ["", "failed cells by error kind, with a sample first line"]
    for kind, count in f.errors.most_common():
        sample = (f.samples.get(kind) or "\n").splitlines()[0]
        lines.append(f"  {kind:<34}{count:>6}   {sample[:110]}")
    if not f.errors:
        lines.append("  (none)")
    lines.append(f"'session lost' notes shown: {f.session_lost_notes}")
    lines += ["", "faults injected (missed: no target at that moment)"]
    for kind in ("restart", *f.kinds):
        missed = f"  (missed {f.missed[kind]})" if f.missed[kind] else ""
        lines.append(f"  {kind:<16}{f.faults[kind]:>5}{missed}")
    for down, _up, first in f.restarts:
        after = (
            f"first successful cell {first * 1000:.0f} ms after" if first is not None else "none"
        )
        lines.append(f"  restart: server down {down * 1000:.0f} ms; {after}")
    lines += [f"  fault not injected: {e}" for e in f.fault_errors]
    lines.append(
        f"cell latency: p50 {_percentile(f.latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {_percentile(f.latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(f.latencies, default=0) * 1000:.0f} ms"
    )
    c = f.ledger_counts
    counts = (
        f"COMMIT reported {c['committed']}, rolled back or never in a transaction "
        f"{c['absent']}, in doubt {c['doubt']} (found committed {c['doubt: committed']}, "
        f"absent {c['doubt: absent']})"
    )
    lines.append(f"transactions (BEGIN/INSERT/COMMIT cells): {len(f.txs)}: {counts}")
    s = f.stats or {}
    lines.append(
        "final pool stats: "
        + ", ".join(f"{k} {v}" for k, v in s.items() if k != "transaction")
        + f", transaction {s.get('transaction')!r}"
    )
    lines.append(
        f"server backends of the kernel: {f.server_backends}; "
        f"after shutdown: {f.backends_after_shutdown}"
    )
    lines += ["", "checks"]
    for label, passed, detail in f.checks:
        lines.append(f"  {'PASS' if passed else 'FAIL'}  {label}  ({detail})")
    for label, items in (
        ("unclear", f.unclear),
        ("unclassified", f.unclassified),
        ("wrong", f.wrong),
        ("hung", f.hung),
        ("ledger", f.ledger),
    ):
        lines += [f"{label}: {item}" for item in items[:5]]
    failed = f.failed_checks
    lines.append("")
    lines.append(f"FAILED: {'; '.join(failed)}" if failed else "all checks passed")
    return lines


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the loop")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"fault kinds between restarts, of {','.join(_USABLE_KINDS)} (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.seconds < 5:
        parser.error("--seconds must be at least 5 (a restart and recovery need room)")
    kinds = tuple(k for k in args.faults.split(",") if k)
    if not kinds or set(kinds) - set(_USABLE_KINDS):
        parser.error(f"--faults: some of {','.join(_USABLE_KINDS)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    print(f"kernel loop: {args.seconds:g} s, seed {args.seed} (rerun with --seed {args.seed})")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    server = proxy = None
    try:
        t0 = time.monotonic()
        server = OwnServer()
        proxy = BreakableProxy.for_url(server.url)
        print(f"server: own embedded PostgreSQL, ready in {time.monotonic() - t0:.1f} s")
        with tempfile.TemporaryDirectory(prefix="lpm-kernel-") as work:
            loop = KernelLoop(
                server=server,
                proxy=proxy,
                seconds=args.seconds,
                seed=args.seed,
                work_dir=Path(work),
                kinds=kinds,
                log=print,
            )
            figures = loop.run()
        print(figures.report())
        return 1 if figures.failed_checks else 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if proxy is not None:
            with contextlib.suppress(Exception):
                proxy.close()
        if server is not None:
            server.close()


if __name__ == "__main__":
    sys.exit(main())
