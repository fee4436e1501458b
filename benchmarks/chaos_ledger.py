"""The chaos run's ledger: what the workers claim, and the check against the server.

Workers write rows with ids they make up (unique per run) and remember, for
each write, what they were told: success, a failure that proves nothing was
committed, or a failure that leaves the outcome unknown ("in doubt"). After
the run, with every backend of the pool gone, :func:`verify` compares those
claims with the ledger table and with ``pg_xact_status``.

How a failed write is classified (the decision lives in :func:`failed_outcome`):

* **absent** (definitely not committed): the exception came before anything
  that could commit reached the server: before the write was sent (no
  connection, or the statement never started), or inside an explicit
  transaction before its COMMIT was sent. PostgreSQL commits an explicit
  transaction only on COMMIT, so this holds whatever else happened.
  Its ids must not be in the ledger, and its transaction id (when it had one)
  must be reported ``aborted`` by ``pg_xact_status``.
* **in doubt**: the exception came after the COMMIT (or, for an autocommit
  INSERT, the statement itself, which commits on its own) was sent. The server
  may have committed before the connection died or the error was raised, so
  the caller cannot know. Checked by id afterwards: each id at most once, the
  rows of one transaction all present or all absent, and for transactional
  writes the verdict of ``pg_xact_status(xid)`` (the xid is read inside the
  transaction, before COMMIT) must agree with the rows: present iff committed.

A write reported successful must be in the ledger exactly once (and its
transaction ``committed``). A row whose id no worker ever wrote is invented.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

SCHEMA = """
DROP TABLE IF EXISTS ledger;
DROP TABLE IF EXISTS counters;
CREATE TABLE ledger (
    seq bigserial PRIMARY KEY,
    id bigint NOT NULL,          -- the worker's id; deliberately not unique, to detect duplicates
    worker int NOT NULL,
    kind text NOT NULL,
    xid xid8,                    -- transactional writes: the id of their transaction
    written_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ledger_id ON ledger (id);
CREATE TABLE counters (worker int PRIMARY KEY, n bigint NOT NULL);
"""

OK = "ok"
ABSENT = "absent"
DOUBT = "doubt"

# Phases of a write, set by the worker as it goes; see failed_outcome().
BEFORE = "before"  # nothing that writes has been sent
BODY = "body"  # inside an explicit transaction, COMMIT not yet sent
SENT = "sent"  # an autocommit statement was sent: it commits on its own
COMMIT = "commit"  # the COMMIT was (about to be) sent
RETURNED = "returned"  # the write completed; a later exception cannot undo it


def failed_outcome(phase: str) -> str:
    """Outcome of a write that raised while in ``phase``: ABSENT or DOUBT."""
    return ABSENT if phase in (BEFORE, BODY) else DOUBT


@dataclass(slots=True)
class Write:
    """One write a worker attempted and what it was told."""

    kind: str  # "insert" (autocommit), "tx" (transaction), "raise" (user aborts it)
    worker: int
    ids: tuple[int, ...]
    outcome: str  # OK, ABSENT or DOUBT
    xid: str | None = None  # transaction id, when read before the outcome was decided
    counts_update: bool = False  # the write also bumped counters[worker] (tx kind)
    error: str | None = None  # the exception class, for failures


@dataclass
class LedgerReport:
    """What :func:`verify` found; ``problems`` empty means the ledger check passed."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def create_schema(conn: psycopg.Connection[Any], workers: int) -> None:
    conn.execute(SCHEMA)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO counters (worker, n) VALUES (%s, 0)", [(w,) for w in range(workers)]
        )


def verify(conn: psycopg.Connection[Any], writes: list[Write]) -> LedgerReport:
    """Check every claim against the ledger; ``conn`` is an admin connection.

    Call it only when no backend of the pool remains: then no transaction of
    the run is still in progress, and ``pg_xact_status`` is final.
    """
    report = LedgerReport()
    rows: dict[int, tuple[int, str | None]] = {
        row[0]: (row[1], row[2])
        for row in conn.execute(
            "SELECT id, count(*)::int, min(xid::text) FROM ledger GROUP BY id"
        ).fetchall()
    }
    counters = dict(conn.execute("SELECT worker, n FROM counters").fetchall())
    xids = sorted({w.xid for w in writes if w.xid is not None})
    status: dict[str, str | None] = dict(
        conn.execute(
            "SELECT x, pg_xact_status(x::xid8) FROM unnest(%s::text[]) AS x", (xids,)
        ).fetchall()
    )

    tally: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    examples: dict[str, str] = {}
    expected_counters: Counter[int] = Counter()
    written_ids: set[int] = set()

    def problem(label: str, write: Write, detail: str) -> None:
        problems[label] += 1
        examples.setdefault(label, f"{write.kind} ids={list(write.ids)} {detail}")

    for write in writes:
        written_ids.update(write.ids)
        counts = [rows.get(i, (0, None))[0] for i in write.ids]
        verdict = status.get(write.xid) if write.xid is not None else None
        tally[f"{write.kind} {write.outcome}"] += 1
        if write.outcome == OK:
            if any(c != 1 for c in counts):
                problem("successful write not in the ledger exactly once", write, f"{counts=}")
            if write.xid is not None:
                if verdict != "committed":
                    problem("successful transaction not committed", write, f"{verdict=}")
                if any(rows.get(i, (0, None))[1] != write.xid for i in write.ids):
                    problem("successful write's rows carry another xid", write, f"{write.xid=}")
            if write.counts_update:
                expected_counters[write.worker] += 1
        elif write.outcome == ABSENT:
            if any(counts):
                problem("write that failed before COMMIT is in the ledger", write, f"{counts=}")
            if write.xid is not None and verdict != "aborted":
                problem("transaction that failed before COMMIT not aborted", write, f"{verdict=}")
        else:  # DOUBT
            if any(c > 1 for c in counts):
                problem("in-doubt write in the ledger more than once", write, f"{counts=}")
            if len(set(counts)) > 1:
                problem("in-doubt transaction partly in the ledger", write, f"{counts=}")
            present = all(c == 1 for c in counts)
            if write.xid is not None:
                if verdict not in ("committed", "aborted"):
                    problem("in-doubt transaction has no final status", write, f"{verdict=}")
                elif (verdict == "committed") != present:
                    problem("ledger rows disagree with pg_xact_status", write, f"{verdict=}")
            tally[f"{write.kind} doubt -> {'committed' if present else 'not committed'}"] += 1
            if present and write.counts_update:
                expected_counters[write.worker] += 1

    invented = sorted(i for i in rows if i not in written_ids)
    if invented:
        problems["rows whose id no worker wrote (invented)"] += len(invented)
        examples.setdefault("rows whose id no worker wrote (invented)", f"ids={invented[:5]}")
    bad_counters = {
        w: (n, expected_counters[w]) for w, n in counters.items() if n != expected_counters[w]
    }
    if bad_counters:
        problems["counters disagree with committed transactions"] += len(bad_counters)
        examples.setdefault(
            "counters disagree with committed transactions",
            ", ".join(f"worker {w}: {n} != {e}" for w, (n, e) in sorted(bad_counters.items())),
        )

    total_rows = sum(c for c, _ in rows.values())
    report.lines.append(
        f"ledger rows {total_rows}, distinct ids {len(rows)}, writes claimed {len(writes)}, "
        f"transactions checked with pg_xact_status {len(xids)}"
    )
    for key in sorted(tally):
        report.lines.append(f"  {key:<36} {tally[key]:>7}")
    for label, n in sorted(problems.items()):
        report.problems.append(f"{label}: {n} (e.g. {examples[label]})")
    return report
