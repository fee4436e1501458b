"""The server's catalog for completion: one query, cached per connection, read in the background.

:func:`read_catalog` reads everything completion needs in one round trip:
the search path, schemas, tables and views with their columns, function
names and the server's own keyword list (``pg_get_keywords()``, with the
categories that decide which names must be quoted). :class:`CatalogCache`
keeps one :class:`Catalog` per notebook connection and never makes its
caller wait: a Tab press must be answered within JupyterLab's one-second
completer timeout even while a cell runs or the server is slow, so
:meth:`CatalogCache.peek` returns what is cached (or None) and leaves the
reading to a thread of its own, on a connection of its own
(:func:`open_connection`), so that neither the cells' connections (nor the
notebook's pinned transaction) nor the background jobs' are ever taken.

Temporary tables live in the session that created them; the catalog is read
on another connection, so they are not in it.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CATALOG_SQL", "Catalog", "CatalogCache", "Names", "Relation", "read_catalog"]

# Schemas no one types: TOAST storage, and other sessions' temporary schemas.
_HIDDEN_SCHEMAS = r"^pg_(toast|temp_\d+|toast_temp_\d+)$"

#: The one query. Each row: kind, schema, name, list (see read_catalog).
CATALOG_SQL = f"""
SELECT 'path'::text, NULL::text, NULL::text, current_schemas(true)::text[]
UNION ALL
SELECT 'schema', n.nspname::text, NULL, NULL
  FROM pg_catalog.pg_namespace n
 WHERE n.nspname !~ '{_HIDDEN_SCHEMAS}'
UNION ALL
SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END,
       n.nspname::text, c.relname::text,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname !~ '{_HIDDEN_SCHEMAS}'
UNION ALL
SELECT DISTINCT 'function', n.nspname::text, p.proname::text, NULL::text[]
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prokind IN ('f', 'a', 'w')
   AND p.prorettype NOT IN ('internal'::regtype, 'cstring'::regtype, 'trigger'::regtype,
                            'event_trigger'::regtype, 'language_handler'::regtype,
                            'fdw_handler'::regtype, 'index_am_handler'::regtype,
                            'table_am_handler'::regtype, 'tsm_handler'::regtype)
   AND NOT 'internal'::regtype = ANY (p.proargtypes)
   AND NOT 'cstring'::regtype = ANY (p.proargtypes)
   -- what implements operators, index support and aggregates' steps: not typed by hand
   AND p.oid NOT IN (SELECT oprcode FROM pg_catalog.pg_operator)
   AND p.oid NOT IN (SELECT amproc FROM pg_catalog.pg_amproc)
   AND p.oid NOT IN (SELECT aggtransfn FROM pg_catalog.pg_aggregate
                     UNION ALL SELECT aggfinalfn FROM pg_catalog.pg_aggregate
                     UNION ALL SELECT aggcombinefn FROM pg_catalog.pg_aggregate)
   AND n.nspname !~ '{_HIDDEN_SCHEMAS}'
UNION ALL
SELECT 'keyword', catcode::text, word, NULL FROM pg_catalog.pg_get_keywords()
"""


class Names:
    """Names kept sorted by their case-folded form, for prefix look-ups in O(log n).

    ``items`` are ``(name, value)`` pairs; :meth:`starting` returns the values
    whose name starts with a prefix, ignoring case, in folded-name order.
    """

    __slots__ = ("_keys", "_values")

    def __init__(self, items: Iterable[tuple[str, Any]]) -> None:
        pairs = sorted((((name.casefold(), name), value) for name, value in items), key=_first)
        self._keys = [key for key, _ in pairs]
        self._values = [value for _, value in pairs]

    def starting(self, prefix: str, limit: int | None = None) -> list[Any]:
        """Values whose name starts with ``prefix`` (case-insensitive), at most ``limit``."""
        folded = prefix.casefold()
        i = bisect.bisect_left(self._keys, (folded, ""))
        found = []
        keys, values = self._keys, self._values
        while i < len(keys) and keys[i][0].startswith(folded):
            found.append(values[i])
            if limit is not None and len(found) >= limit:
                break
            i += 1
        return found


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


@dataclass(frozen=True)
class Relation:
    """A table or view: ``kind`` is "table" (also partitioned and foreign) or "view"."""

    schema: str
    name: str
    kind: str
    columns: tuple[str, ...]


@dataclass
class Catalog:
    """What completion knows of one database, as one query read it.

    ``search_path`` is the effective one (``current_schemas(true)``, with
    pg_catalog), which decides what an unqualified name means.
    ``keywords`` maps each keyword to its category: ``U`` unreserved, ``C``
    column name, ``T`` type or function name, ``R`` reserved.
    """

    search_path: tuple[str, ...]
    schemas: tuple[str, ...]
    relations: dict[str, dict[str, Relation]]
    functions: dict[str, tuple[str, ...]]
    keywords: dict[str, str]
    _indexes: dict[str, Names] = field(default_factory=dict, repr=False)

    def relation(self, schema: str | None, name: str) -> Relation | None:
        """The relation ``schema.name``, or ``name`` as the search path finds it."""
        if schema is not None:
            return self.relations.get(schema, {}).get(name)
        for path_schema in self.search_path:
            found = self.relations.get(path_schema, {}).get(name)
            if found is not None:
                return found
        return None

    def visible_relations(self) -> Names:
        """Relations reachable without a schema (the first on the search path wins).

        pg_catalog's own tables are left out (there are well over a hundred,
        and nobody means them when typing a table's first letters); they stay
        in :meth:`schema_relations` and :meth:`relation`.
        """
        user = {s: r for s, r in self.relations.items() if s != "pg_catalog"}
        return self._index("relations", lambda: self._visible(user))

    def visible_functions(self) -> Names:
        """Function names reachable without a schema."""
        by_schema = {schema: dict.fromkeys(names) for schema, names in self.functions.items()}
        return self._index("functions", lambda: self._visible(by_schema))

    def schema_relations(self, schema: str) -> Names:
        """The relations of one schema."""
        return self._index(
            f"relations:{schema}",
            lambda: ((r.name, r) for r in self.relations.get(schema, {}).values()),
        )

    def schema_functions(self, schema: str) -> Names:
        """The function names of one schema."""
        return self._index(
            f"functions:{schema}", lambda: ((f, f) for f in self.functions.get(schema, ()))
        )

    def schema_names(self) -> Names:
        """Every schema (pg_catalog and information_schema too)."""
        return self._index("schemas", lambda: ((s, s) for s in self.schemas))

    def keyword_names(self) -> Names:
        """The server's keywords (lower case, as pg_get_keywords() gives them)."""
        return self._index("keywords", lambda: ((k, k) for k in self.keywords))

    def _visible(self, by_schema: dict[str, dict[str, Any]]) -> Iterable[tuple[str, Any]]:
        seen: dict[str, Any] = {}
        for schema in self.search_path:
            for name, value in by_schema.get(schema, {}).items():
                seen.setdefault(name, value if value is not None else name)
        return seen.items()

    def _index(self, key: str, items: Callable[[], Iterable[tuple[str, Any]]]) -> Names:
        # Built on first use and kept: the catalog never changes once read, and
        # a race between two builders only builds the same index twice.
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = Names(items())
        return index


def read_catalog(conn: Any) -> Catalog:
    """Read the catalog on ``conn`` (a psycopg connection) with :data:`CATALOG_SQL`."""
    search_path: tuple[str, ...] = ()
    schemas: list[str] = []
    relations: dict[str, dict[str, Relation]] = {}
    functions: dict[str, list[str]] = {}
    keywords: dict[str, str] = {}
    with conn.cursor() as cur:
        cur.execute(CATALOG_SQL, prepare=False)
        for kind, schema, name, values in cur:
            if kind == "table" or kind == "view":
                relations.setdefault(schema, {})[name] = Relation(
                    schema, name, kind, tuple(values or ())
                )
            elif kind == "function":
                functions.setdefault(schema, []).append(name)
            elif kind == "keyword":
                keywords[name] = schema
            elif kind == "schema":
                schemas.append(schema)
            else:
                search_path = tuple(values or ())
    if not conn.autocommit:
        conn.rollback()  # leave no transaction open on a connection that goes back to a pool
    return Catalog(
        search_path=search_path,
        schemas=tuple(schemas),
        relations=relations,
        functions={schema: tuple(names) for schema, names in functions.items()},
        keywords=keywords,
    )


def open_connection(conninfo: str, password: str | None = None, *, timeout: int = 5) -> Any:
    """A connection of its own for one catalog read (use it in ``with``: closed after).

    Never one of a session's pools: their connections belong to the
    notebook's cells (and pinned transaction) and to background jobs. Errors
    never repeat the password.
    """
    import psycopg

    from lunepool_magic.postgres.conninfo import mask_password
    from lunepool_magic.postgres.errors import ConnectionFailed

    message = None
    try:
        # A None password is left out by psycopg: libpq's own sources (PGPASSWORD, ~/.pgpass) apply.
        return psycopg.connect(
            conninfo,
            password=password,
            autocommit=True,
            connect_timeout=timeout,
            application_name="lunepool_magic (completion)",
        )
    except psycopg.Error as exc:
        message = mask_password(str(exc).strip(), password)
    raise ConnectionFailed(message)


class _Entry:
    """The cache's state for one connection. All fields are guarded by the cache's lock."""

    __slots__ = ("catalog", "connect", "done", "error", "failed_at", "reading", "stale")

    def __init__(self, connect: Callable[[], Any]) -> None:
        self.catalog: Catalog | None = None
        self.connect = connect  # () -> a context manager that gives a connection
        self.stale = True  # the catalog (if any) may be out of date: read again
        self.reading = False  # a thread is reading it now
        self.done = threading.Event()  # set whenever no read is in flight
        self.done.set()
        self.error: str | None = None  # why the last read failed
        self.failed_at = 0.0


class CatalogCache:
    """One catalog per connection, read in the background, never waited for by :meth:`peek`.

    Each notebook connection is a ``key`` (any hashable object, e.g. its
    pool); ``connect()`` returns a context manager giving a psycopg
    connection to read on (:func:`open_connection`, or a pool's
    ``connection(timeout)``). ``retry_after`` is how long after a failed
    read the next one may start, so a server that is down is not asked
    again at every Tab. ``reader`` reads a catalog on a connection (tests
    may wrap it).
    """

    def __init__(
        self,
        *,
        retry_after: float = 5.0,
        reader: Callable[[Any], Catalog] = read_catalog,
    ) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Any, _Entry] = {}
        self._retry_after = retry_after
        self._reader = reader

    def peek(self, key: Any, connect: Callable[[], Any]) -> Catalog | None:
        """The cached catalog of ``key`` (None before the first read); never blocks.

        Starts a read in the background when there is none yet or it is stale.
        """
        with self._lock:
            entry = self._entry(key, connect)
            start = self._should_read(entry)
            catalog = entry.catalog
        if start:
            self._start(entry)
        return catalog

    def invalidate(self, key: Any, connect: Callable[[], Any]) -> None:
        """Mark ``key``'s catalog out of date and read it again in the background."""
        with self._lock:
            entry = self._entry(key, connect)
            entry.stale = True
            entry.failed_at = 0.0  # asked for explicitly: no back-off
            start = self._should_read(entry)
        if start:
            self._start(entry)

    def wait(self, key: Any, timeout: float | None) -> Catalog | None:
        """Wait until no read of ``key``'s catalog is in flight; return the catalog.

        For a cell that asks for a refresh (it may wait; Tab never does) and
        for tests. Raises ``LookupError`` with the reason when the last read failed.
        """
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        entry.done.wait(timeout)
        with self._lock:
            if entry.error is not None and (entry.catalog is None or entry.stale):
                raise LookupError(entry.error)
            return entry.catalog

    def forget(self, key: Any) -> None:
        """Drop what is kept for ``key`` (its connection was closed)."""
        with self._lock:
            self._entries.pop(key, None)

    def connections(self) -> list[Any]:
        """The connections something is kept for."""
        with self._lock:
            return list(self._entries)

    def _entry(self, key: Any, connect: Callable[[], Any]) -> _Entry:
        # Under the lock.
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(connect)
        entry.connect = connect
        return entry

    def _should_read(self, entry: _Entry) -> bool:
        # Under the lock: one read in flight per connection, and a pause after a failure.
        if entry.reading or not entry.stale:
            return False
        if entry.failed_at and time.monotonic() - entry.failed_at < self._retry_after:
            return False
        entry.reading = True
        entry.done.clear()
        return True

    def _start(self, entry: _Entry) -> None:
        thread = threading.Thread(
            target=self._read, args=(entry,), name="lunepool-catalog", daemon=True
        )
        thread.start()

    def _read(self, entry: _Entry) -> None:
        while True:
            catalog: Catalog | None = None
            error: str | None = None
            with self._lock:
                entry.stale = False  # an invalidation from now on asks for another read
                connect = entry.connect
            try:
                with connect() as conn:
                    catalog = self._reader(conn)
            except Exception as exc:  # a busy pool, a server that is down: try again later
                error = f"could not read the catalog: {exc}"
            with self._lock:
                entry.reading = False
                if catalog is not None:
                    entry.catalog, entry.error, entry.failed_at = catalog, None, 0.0
                else:
                    entry.stale, entry.error, entry.failed_at = True, error, time.monotonic()
                # Invalidated while reading: the DDL may have come after our snapshot.
                again = catalog is not None and self._should_read(entry)
                if not again:
                    entry.done.set()
                    return
