"""Transaction-mode poolers (PgBouncer, a provider's "pooled" URL): recognising one, and saying so.

Behind a pooler in transaction mode each transaction may run on another
server connection, shared with other clients. Two things then break that
work on a direct connection, and a cell should say why in one line:

* psycopg prepares a query after five runs; the prepared statement lives on
  one server connection, so the next client to prepare the same name there
  gets ``DuplicatePreparedStatement`` (42P05), and a client moved to another
  server connection gets ``prepared statement "_pg3_0" does not exist``
  (26000). Pooler mode (``--pgbouncer``) turns automatic preparing off.
* Session state (``SET``, temporary tables, ``PREPARE``, ``LISTEN``, session
  advisory locks) stays on a server connection the next statement may not
  get: a cell's statements run in autocommit, each its own transaction, so
  even the next statement of the same cell may run elsewhere. A transaction
  opened with ``BEGIN`` is safe: the pooler keeps its server connection for
  the client until it ends, across cells too.

A pooler is recognised without asking it anything special: PgBouncer (like
other poolers) hands the client a cancel key of its own, so the backend pid
announced at connect differs from the one ``pg_backend_pid()`` returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "POOLER_MODE_NOTE",
    "error_hint",
    "looks_pooled",
    "pooled_server_note",
    "session_state_note",
    "session_state_uses",
]

SETTING_HINT = "connect with %sql URL --pgbouncer (or %config LunepoolMagic.pgbouncer = True)"

#: Said once per connection made in pooler mode.
POOLER_MODE_NOTE = (
    "Note: pooler mode (--pgbouncer): each statement outside a transaction may run on another "
    "server connection, so SET, temporary tables, PREPARE, LISTEN and session advisory locks "
    "do not carry to the next statement or cell; inside BEGIN ... COMMIT they do, across "
    "cells too."
)

# psycopg names its automatic prepared statements _pg3_0, _pg3_1, ...
_AUTOMATIC_NAME_RE = re.compile(r'prepared statement "_pg3_\d+"')
_DUPLICATE_PREPARED = "42P05"
_UNKNOWN_PREPARED = "26000"


def looks_pooled(conn: Any) -> bool:
    """True if ``conn`` reaches its server through a pooler: the announced pid is not the backend's.

    One round trip; run it once per connection target, not per cell.
    """
    announced = conn.info.backend_pid
    actual = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0]
    return bool(announced != actual)


def pooled_server_note() -> str:
    """The note for a connection made without pooler mode that :func:`looks_pooled`."""
    return (
        "Note: this connection goes through a pooler (its server pid differs from the one "
        f"announced); if it pools transactions (PgBouncer's pool_mode = transaction, a "
        f"provider's pooled URL), {SETTING_HINT}."
    )


def error_hint(error: BaseException, pooler_mode: bool) -> str | None:
    """One line explaining a prepared-statement error that a pooler causes, or None.

    Without pooler mode, psycopg's automatic statements colliding on a
    pooler's shared server connections; in pooler mode, a statement the user
    prepared outside a transaction, which stayed on another server connection.
    """
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate not in (_DUPLICATE_PREPARED, _UNKNOWN_PREPARED):
        return None
    message = str(error)
    if _AUTOMATIC_NAME_RE.search(message) and not pooler_mode:
        return (
            "HINT:  a transaction-mode pooler (PgBouncer) between here and the server shares "
            "its server connections, and psycopg's automatic prepared statements collided "
            f"there; {SETTING_HINT}."
        )
    if pooler_mode and sqlstate == _UNKNOWN_PREPARED:
        return (
            "HINT:  in pooler mode a PREPARE outside a transaction stays on another server "
            "connection; PREPARE and EXECUTE inside one BEGIN ... COMMIT."
        )
    return None


# Statements that leave state on the server connection, by how they start
# (after blanks and comments). Case-folded like the server folds keywords.
_LEADING_GAP_RE = re.compile(r"(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_SESSION_STATEMENTS = (
    ("SET", re.compile(r"set\s+(?!local\b|transaction\b|constraints\b)", re.IGNORECASE)),
    (
        "CREATE TEMP",
        re.compile(r"create\s+(?:(?:global|local)\s+)?temp(?:orary)?\b", re.IGNORECASE),
    ),
    ("PREPARE", re.compile(r"prepare\s+(?!transaction\b)", re.IGNORECASE)),
    ("LISTEN", re.compile(r"listen\b", re.IGNORECASE)),
    ("DECLARE ... WITH HOLD", re.compile(r"declare\b.*\bwith\s+hold\b", re.IGNORECASE | re.DOTALL)),
)
# Session advisory locks, wherever the call is (the _xact_ ones end with the transaction).
_ADVISORY_RE = re.compile(r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.IGNORECASE)
_BEGINS_RE = re.compile(r"(?:begin|start\s+transaction)\b", re.IGNORECASE)
_ENDS_RE = re.compile(
    r"(?:commit|end|abort|rollback)\b(?!\s+(?:to\b|(?:work\s+|transaction\s+)?and\s+chain\b))",
    re.IGNORECASE,
)


def _session_use(text: str) -> str | None:
    body = text[_LEADING_GAP_RE.match(text).end() :]  # type: ignore[union-attr]
    for name, pattern in _SESSION_STATEMENTS:
        if pattern.match(body):
            return name
    if _ADVISORY_RE.search(body):
        return "pg_advisory_lock"
    return None


def session_state_uses(statements: Iterable[str], in_transaction: bool) -> list[str]:
    """What in ``statements`` (a cell, in order) sets session state outside a transaction.

    ``in_transaction`` says whether the cell starts inside one (a pinned
    ``BEGIN``). ``BEGIN`` / ``COMMIT`` in the cell are followed; names come
    back once each, in the order first seen: ``["SET", "CREATE TEMP"]``.
    """
    found: list[str] = []
    for text in statements:
        body = text[_LEADING_GAP_RE.match(text).end() :]  # type: ignore[union-attr]
        if _BEGINS_RE.match(body):
            in_transaction = True
            continue
        if _ENDS_RE.match(body):
            in_transaction = False
            continue
        if in_transaction:
            continue
        use = _session_use(body)
        if use is not None and use not in found:
            found.append(use)
    return found


def session_state_note(uses: list[str]) -> str | None:
    """The one-line note for a pooler-mode cell that sets session state, or None."""
    if not uses:
        return None
    what = ", ".join(uses)
    return (
        f"Note: pooler mode: {what} outside a transaction does not carry to the next statement "
        "or cell (they may run on another server connection); put it and what needs it inside "
        "BEGIN ... COMMIT."
    )
