"""``import sql`` while JupySQL is not installed: one line naming what to write here instead.

JupySQL's package is ``sql``; its docs have users import ``sql.plot``
(``plot.histogram(...)``), ``sql.ggplot`` (``ggplot``, ``aes``,
``geom_histogram``, ``geom_boxplot``, ``facet_wrap``), ``sql.connection``,
``sql.run``, ``sql.store`` and ``sql.magic``. :class:`MissingJupySQL` is a
finder that :mod:`lunepool_magic.magic_jupysql` appends at the end of
``sys.meta_path`` while the extension is loaded, so it is asked only when no
real ``sql`` package was found. It raises ModuleNotFoundError (``name`` is
``"sql"``, so ``except ImportError`` works as before) whose message says what
to write for the module the import statement names, and which IPython shows
as that one line. A probe, ``importlib.util.find_spec("sql")``, still gets
None.
"""

from __future__ import annotations

import linecache
import re
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["MissingJupySQL", "message_for"]

_PREFIX = "No module named 'sql': JupySQL is not installed; "

#: What to write instead, by the submodule of ``sql`` an import names.
INSTEAD = {
    "plot": "for sql.plot's histogram and boxplot write %sqlplot histogram --table T "
    "--column C (or boxplot), computed in the database",
    "ggplot": "for ggplot's geom_histogram and geom_boxplot write %sqlplot histogram (or "
    "boxplot) --table T --column C; for other charts plot a result with matplotlib: "
    "df = %sql SELECT ... then df.plot(...)",
    "run": "run statements with %sql or %%sql; df = %sql SELECT ... keeps the result",
    "connection": "connect with %sql postgresql://user@host/db --alias NAME; "
    "%sql --list shows the connections",
    "store": "keep a query with %%sql --save NAME; %sqlcmd snippets lists them",
    "magic": "%sql, %sqlcmd and %sqlplot are lunepool_magic's (loaded); its settings "
    "are %config LunepoolMagic, and %config SqlMagic.* is answered too",
}
_ANY = (
    "%sql, %%sql, %sqlcmd and %sqlplot are lunepool_magic's here (loaded), and a "
    "result is a pandas DataFrame"
)

_DOTTED = re.compile(r"\bsql\.(\w+)")
_FROM_SQL = re.compile(r"^\s*from\s+sql\s+import\s+\(?\s*(\w+)")
_IMPORT_LINE = re.compile(r"^\s*(?:from|import)\s")


def message_for(statement: str | None) -> str:
    """The message for the import in ``statement`` (the line that imports ``sql``)."""
    sub = None
    if statement and _IMPORT_LINE.match(statement):
        dotted = _DOTTED.search(statement)
        found = dotted or _FROM_SQL.match(statement)
        sub = found.group(1) if found else None
    return _PREFIX + INSTEAD.get(sub or "", _ANY)


def _importer() -> tuple[bool, str | None]:
    """Whether importlib.util.find_spec asks (a probe), and the line that imports.

    The line is the importing frame's (IPython keeps cells in linecache).
    """
    frame: Any = sys._getframe(2)
    probe = False
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith(("importlib", "_frozen_importlib")):
            break
        probe = probe or (module == "importlib.util" and frame.f_code.co_name == "find_spec")
        frame = frame.f_back
    if frame is None:
        return probe, None
    return probe, linecache.getline(frame.f_code.co_filename, frame.f_lineno) or None


class MissingJupySQL:
    """A ``sys.meta_path`` finder for the name ``sql`` only: raises the one-line error."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: Any = None
    ) -> Any:
        if fullname != "sql":
            return None  # sql.x after a real sql package was found is that package's business
        try:
            probe, statement = _importer()
            line = message_for(statement)
        except Exception:
            probe, line = False, _PREFIX + _ANY
        if probe:
            return None  # `importlib.util.find_spec("sql") is None` still says it is missing
        error = ModuleNotFoundError(line, name="sql")
        # IPython renders an exception that has _render_traceback_ with its lines.
        error._render_traceback_ = lambda: [f"ModuleNotFoundError: {line}"]  # type: ignore[attr-defined]
        raise error

    def invalidate_caches(self) -> None:
        """Nothing cached (importlib.invalidate_caches calls this on every finder)."""
