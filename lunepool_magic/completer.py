"""IPython glue for SQL completion: a matcher (API v2) and a hook that follows DDL.

:func:`install` adds one context matcher to ``shell.Completer.custom_matchers``
(never replacing another matcher, so Python completion outside SQL is
untouched) and registers a ``post_run_cell`` hook; :func:`uninstall` removes
both. The matcher answers only in ``%%sql`` cells and after ``%sql`` on a
line, from the catalog cached for the connection the cell would use, and
never waits for the server: the catalog is read in the background on a
short-lived connection of its own, never on the cells' pool (nor the
notebook's pinned connection) nor the background jobs' pool. The hook
marks a connection's catalog stale after a cell ran DDL (or COMMIT,
ROLLBACK, ``--persist``) on it; :func:`invalidate` and :func:`refresh` do
the same on request (``%sql --refresh``).

The analysis itself is :mod:`lunepool_magic.notebook.completion` (no IPython).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from IPython.core.completer import SimpleCompletion, context_matcher

from lunepool_magic.notebook import completion
from lunepool_magic.notebook.options import OptionError, parse_line

if TYPE_CHECKING:
    from IPython.core.completer import CompletionContext
    from IPython.core.interactiveshell import InteractiveShell

    from lunepool_magic.notebook.session import Session
    from lunepool_magic.postgres.catalog import Catalog, CatalogCache

__all__ = ["MATCHER_ID", "SqlCompleter", "install", "invalidate", "refresh", "uninstall"]

#: The matcher's identifier: ``%config IPCompleter.disable_matchers = ["lunepool_magic.sql"]``
#: turns it off.
MATCHER_ID = "lunepool_magic.sql"

_installed: weakref.WeakKeyDictionary[Any, SqlCompleter] = weakref.WeakKeyDictionary()


class SqlCompleter:
    """Completion for one shell: the matcher, the catalog cache, the DDL hook.

    ``sessions()`` returns the notebook's connections by alias and
    ``current()`` the current alias (or None): the magic's registry, read at
    each Tab so that connecting, switching and closing are seen at once.
    ``names`` are the magic's names (``sql``, ``lunesql``).
    """

    def __init__(
        self,
        shell: InteractiveShell,
        sessions: Callable[[], Mapping[str, Session]],
        current: Callable[[], str | None],
        names: tuple[str, ...],
    ) -> None:
        self.shell = shell
        self._cache: CatalogCache | None = None
        self._sessions = sessions
        self._current = current
        self._names = names

        def matcher(context: CompletionContext) -> dict[str, Any]:
            return self._match(context)

        self.matcher = context_matcher(identifier=MATCHER_ID)(matcher)

    @property
    def cache(self) -> CatalogCache:
        """The catalogs, made on first use: a session exists by then, and with it psycopg
        (``%load_ext`` itself must not import the postgres layer)."""
        if self._cache is None:
            from lunepool_magic.postgres.catalog import CatalogCache

            self._cache = CatalogCache()
        return self._cache

    # ---------------------------------------------------------------- matcher

    def _match(self, context: CompletionContext) -> dict[str, Any]:
        nothing: dict[str, Any] = {"completions": [], "suppress": False}
        lines = context.full_text.split("\n")
        offset = sum(len(line) + 1 for line in lines[: context.cursor_line])
        offset += context.cursor_position
        place = completion.locate(context.full_text, offset, self._names)
        if place is None:
            return nothing
        catalog = None
        if place.area == "sql":
            session = self._session(place.alias)
            if session is not None and not session.pool.closed:
                catalog = self.cache.peek(session.pool, _connector(session))
        found = completion.suggest(
            place,
            catalog,
            variables=_Variables(self.shell.user_ns),
            connections=list(self._sessions()),
            limit=context.limit,
        )
        if found is None:
            return nothing
        return {
            "completions": [SimpleCompletion(c.text, type=c.kind) for c in found.completions],
            "matched_fragment": found.fragment,
            # Python's completions of SQL text are noise; ours come ranked.
            "suppress": True,
            "ordered": True,
        }

    def _session(self, alias: str | None) -> Session | None:
        sessions = self._sessions()
        if alias is None:
            alias = self._current()
        return sessions.get(alias) if alias is not None else None

    # ----------------------------------------------------------------- events

    def after_cell(self, result: Any) -> None:
        """``post_run_cell``: mark stale the catalog of each connection the cell changed.

        A connection's first cell also starts its first read, so that the
        first Tab finds a catalog.
        """
        info = getattr(result, "info", None)
        cell = getattr(info, "raw_cell", None) or ""
        if not any("%" + name in cell for name in self._names):
            return
        for line, sql in completion.magic_uses(cell, self._names):
            try:
                opts = parse_line(line)
            except OptionError:
                continue
            session = self._session(opts.alias)
            if session is None or session.pool.closed:
                continue
            if opts.persist is not None or completion.changes_catalog(opts.sql + "\n" + sql):
                self.invalidate(session)
            else:  # read it now if it never was: the first Tab then finds it
                self.cache.peek(session.pool, _connector(session))
        if self._cache is None:
            return
        live = {id(s.pool) for s in self._sessions().values() if not s.pool.closed}
        for key in self._cache.connections():
            if id(key) not in live:  # closed or replaced: its catalog goes too
                self.cache.forget(key)

    def invalidate(self, session: Session) -> None:
        """Read ``session``'s catalog again, in the background."""
        if not session.pool.closed:
            self.cache.invalidate(session.pool, _connector(session))

    def refresh(self, session: Session, timeout: float | None) -> Catalog | None:
        """Read ``session``'s catalog again and wait for it (at most ``timeout`` seconds)."""
        self.invalidate(session)
        return self.cache.wait(session.pool, timeout)


def _connector(session: Session) -> Callable[[], Any]:
    """How to open a connection of its own to ``session``'s database, for one catalog read."""
    # The password typed at a --password prompt lives only in the session;
    # other sessions' passwords are in their conninfo or libpq's own sources.
    from lunepool_magic.postgres.catalog import open_connection

    password = getattr(session, "_password", None)
    return lambda: open_connection(session.conninfo, password)


class _Variables:
    """The notebook's variable names, listed only if a ``:`` asks for them."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._namespace = namespace

    def __iter__(self) -> Iterator[str]:
        return iter(completion.parameter_names(self._namespace))


# ---------------------------------------------------------------- extension


def install(
    shell: InteractiveShell,
    sessions: Callable[[], Mapping[str, Session]],
    current: Callable[[], str | None],
    names: tuple[str, ...] = ("sql", "lunesql", "jupysql"),
) -> SqlCompleter | None:
    """Add SQL completion to ``shell`` (once); None if the shell has no completer."""
    if shell in _installed:
        return _installed[shell]
    matchers = getattr(getattr(shell, "Completer", None), "custom_matchers", None)
    if matchers is None:
        return None
    completer = SqlCompleter(shell, sessions, current, names)
    matchers.append(completer.matcher)
    shell.events.register("post_run_cell", completer.after_cell)
    _installed[shell] = completer
    return completer


def uninstall(shell: InteractiveShell) -> None:
    """Remove what :func:`install` added to ``shell``."""
    completer = _installed.pop(shell, None)
    if completer is None:
        return
    matchers = shell.Completer.custom_matchers
    if completer.matcher in matchers:
        matchers.remove(completer.matcher)
    with contextlib.suppress(ValueError):
        shell.events.unregister("post_run_cell", completer.after_cell)


def invalidate(shell: InteractiveShell, session: Session) -> None:
    """Mark ``session``'s catalog stale and read it again in the background (non-blocking)."""
    completer = _installed.get(shell)
    if completer is not None:
        completer.invalidate(session)


def refresh(shell: InteractiveShell, session: Session, timeout: float | None = 10.0) -> Any:
    """Read ``session``'s catalog again and wait for it: for ``%sql --refresh``.

    Returns the new catalog (None when completion is not installed); raises
    ``LookupError`` saying why when it could not be read.
    """
    completer = _installed.get(shell)
    if completer is None:
        return None
    return completer.refresh(session, timeout)
