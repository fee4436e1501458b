"""Saved queries ("snippets") that later queries name like tables: JupySQL's ``--save``.

``%%sql --save NAME`` keeps a cell's query under NAME (``--no-execute``: keep
it without running it). A later statement that names NAME where a table goes
gets it in front as a CTE, ``WITH NAME AS (...)``, and so do the snippets NAME
itself names, in dependency order. The text is expanded here and then bound
and sent like any cell, so ``:name`` parameters in a snippet bind at the time
of use. Stored per kernel (one :class:`Snippets` per magic), never on disk.

Finding the names needs only the SQL's shape: strings, quoted identifiers,
comments and dollar quotes are masked first, so a name inside them is never
taken for a reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["SnippetError", "Snippets", "mask_sql"]


class SnippetError(ValueError):
    """A snippet cannot be saved, expanded or deleted; the message says why and what to do."""


# What is not code: comments, strings (E'' too), quoted identifiers, dollar quotes.
_NOT_CODE_RE = re.compile(
    r"--[^\n]*"
    r"|/\*.*?(?:\*/|\Z)"
    r"|[Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z)"
    r"|'(?:[^']|'')*(?:'|\Z)"
    r'|"(?:[^"]|"")*(?:"|\Z)'
    r"|(\$(?:[A-Za-z_]\w*)?\$).*?(?:\1|\Z)",
    re.DOTALL,
)
_WORD_RE = re.compile(r"[A-Za-z_][\w$]*")
_QUERY_START_RE = re.compile(r"[()]|\b(?:select|with|values)\b", re.IGNORECASE)
_DML_RE = re.compile(r"(?:insert|update|delete|merge)\b", re.IGNORECASE)
_WITH_HEAD_RE = re.compile(r"with(\s+recursive)?\s+", re.IGNORECASE)
_NAME_RE = re.compile(r"[A-Za-z_]\w*\Z")


def mask_sql(text: str) -> str:
    """``text`` with comments, strings and quoted names blanked out; same length, same lines."""

    def blank(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match.group())

    return _NOT_CODE_RE.sub(blank, text)


@dataclass
class Snippets:
    """The kernel's saved queries by name, and their expansion into later statements."""

    queries: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.queries)

    def save(self, name: str, query: str) -> str:
        """Keep ``query`` (one statement, without its ``;``) as ``name``; the line to print."""
        if not _NAME_RE.match(name):
            raise SnippetError(f"--save needs a name of letters, digits and _, not {name!r}")
        query = query.strip().rstrip(";").rstrip()
        if not query:
            raise SnippetError(f"--save {name}: the cell has no query to save")
        masked = mask_sql(query)
        if ";" in masked:
            raise SnippetError(
                f"--save {name} keeps one query; this cell has several statements "
                "(run the others in a cell of their own)"
            )
        previous = self.queries.get(name)
        self.queries[name] = query
        try:
            if name in self.references(query):
                raise SnippetError(f"--save {name}: the query names {name} itself")
            self._order([name])  # a cycle through other snippets fails here, not at use
        except SnippetError:
            if previous is None:
                del self.queries[name]
            else:
                self.queries[name] = previous
            raise
        replaced = previous is not None
        return f"{'Replaced' if replaced else 'Saved'} snippet {name!r}."

    def references(self, text: str) -> list[str]:
        """Saved names that ``text`` uses where a table could go, in order of appearance."""
        if not self.queries:
            return []
        masked = mask_sql(text)
        found: list[str] = []
        for match in _WORD_RE.finditer(masked):
            word = match.group()
            if word not in self.queries or word in found:
                continue
            before = masked[: match.start()].rstrip()
            after = masked[match.end() :].lstrip()
            if before.endswith(".") or after.startswith((".", "(")):
                continue  # schema.name, name.column, a function call
            if _defines_cte(masked, word):
                continue  # the statement defines a CTE of that name itself
            found.append(word)
        return found

    def _order(self, names: list[str]) -> list[str]:
        """``names`` and what they use, dependencies first; a cycle is an error."""
        ordered: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in ordered:
                return
            if name in visiting:
                cycle = " -> ".join([*visiting[visiting.index(name) :], name])
                raise SnippetError(f"snippets name each other in a cycle: {cycle}")
            visiting.append(name)
            for used in self.references(self.queries[name]):
                visit(used)
            visiting.pop()
            ordered.append(name)

        for name in names:
            visit(name)
        return ordered

    def expand(self, statement: str, extra: list[str] | None = None) -> str:
        """``statement`` with the snippets it names (and ``extra``) in front as CTEs."""
        names = self.references(statement)
        for name in extra or []:
            if name not in self.queries:
                raise SnippetError(self.unknown(name, "--with"))
            if name not in names:
                names.append(name)
        if not names:
            return statement
        ctes = ", ".join(
            f"{name} AS ({_closed(self.queries[name])})" for name in self._order(names)
        )
        masked = mask_sql(statement)
        start = _top_level_query(masked)
        if start is None:
            # No query to put a WITH before (SET, COPY, ...): a name there is not a
            # snippet's, and the statement goes as typed.
            return statement
        head = _WITH_HEAD_RE.match(statement, start)
        if head is not None:  # WITH [RECURSIVE] of its own: ours join the list
            return f"{statement[: head.end()]}{ctes}, {statement[head.end() :]}"
        return f"{statement[:start]}WITH {ctes} {statement[start:]}"

    def _ctes(self, names: list[str]) -> str:
        return ", ".join(f"{n} AS ({_closed(self.queries[n])})" for n in self._order(names))

    def prefix(self, names: list[str]) -> str:
        """``WITH name AS (...), ... `` for ``names`` and what they use (for %sqlcmd, %sqlplot)."""
        return f"WITH {self._ctes(names)} "

    def expand_cell(self, text: str, extra: list[str] | None = None) -> str:
        """Every statement of the cell ``text`` expanded (see :meth:`expand`); same layout."""
        if not self.queries and not extra:
            return text
        from lunepool_magic.sqltext import split_statements

        pieces: list[str] = []
        pos = 0
        for statement in split_statements(text):
            pieces.append(text[pos : statement.start])
            pieces.append(self.expand(statement.text, extra))
            pos = statement.end
        pieces.append(text[pos:])
        return "".join(pieces)

    def delete(self, name: str, *, force: bool = False, dependents: bool = False) -> str:
        """Forget ``name``; refuse while others use it unless ``force`` or ``dependents``."""
        if name not in self.queries:
            raise SnippetError(self.unknown(name, "-d"))
        users = [n for n in self.queries if n != name and name in self._order([n])]
        if users and not (force or dependents):
            listed = ", ".join(users)
            raise SnippetError(
                f"snippet {name!r} is used by {listed}: %sqlcmd snippets -D {name} deletes it "
                f"anyway, -A {name} deletes it and {listed}"
            )
        gone = [name, *users] if dependents else [name]
        for n in gone:
            del self.queries[n]
        return "Deleted snippet" + ("s " if len(gone) > 1 else " ") + ", ".join(gone) + "."

    def unknown(self, name: str, flag: str) -> str:
        known = ", ".join(self.queries) or "none yet"
        return f"{flag} {name}: no snippet of that name (snippets: {known}); %%sql --save {name}"


def _closed(query: str) -> str:
    """The query as it goes inside ``( )``: a trailing ``--`` comment must not eat the ``)``."""
    return query + "\n" if "--" in query else query


def _defines_cte(masked: str, name: str) -> bool:
    """Whether the statement has a CTE ``name [(cols)] AS [NOT] [MATERIALIZED] (``."""
    pattern = rf"\b{re.escape(name)}\s*(?:\([^)]*\))?\s*as\s*(?:not\s+)?(?:materialized\s*)?\("
    return re.search(pattern, masked, re.IGNORECASE) is not None


def _top_level_query(masked: str) -> int | None:
    """Where the statement's query starts: its first SELECT, WITH or VALUES outside parentheses.

    ``CREATE TABLE t AS SELECT``: the CTEs go right before that SELECT, where
    PostgreSQL's grammar takes a WITH clause. INSERT, UPDATE, DELETE, MERGE
    and a statement that starts with a parenthesis get them in front.
    """
    stripped = masked.lstrip()
    if stripped.startswith("(") or _DML_RE.match(stripped):
        return len(masked) - len(stripped)  # WITH goes first: WITH ... UPDATE is SQL
    depth = 0
    for match in _QUERY_START_RE.finditer(masked):
        text = match.group()
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        elif depth == 0:
            return match.start()
    return None
