"""Tab completion in ``%%sql`` cells and ``%sql`` lines: what fits where the cursor is.

Pure Python on plain values: :func:`locate` finds whether the cursor is in a
SQL magic at all (on its option line, or in its SQL), and :func:`suggest`
ranks what fits there, from a :class:`~lunepool_magic.postgres.catalog.Catalog`
read earlier. Nothing here waits for the server; :mod:`lunepool_magic.completer`
is the IPython glue.

The rules follow the statement around the cursor, read with a small
tokenizer that tolerates the half-typed text completion sees:

* after FROM, JOIN, INTO, UPDATE, TABLE (and after a comma of a FROM list):
  relations, CTE names, schemas;
* after SELECT, WHERE, ON, GROUP/ORDER BY, SET, HAVING, an operator, a comma
  or ``(``: the columns of the statement's relations (aliases, CTEs and
  subqueries in FROM resolved), then functions and keywords;
* ``alias.`` / ``table.`` → its columns; ``schema.`` → its relations and
  functions; ``:`` → the notebook's variables (``:name`` parameters);
* on the magic line: ``--`` → options, ``--alias `` → connection names;
  ``\\d `` → relations; elsewhere, keywords.

Names that must be quoted to be typed (mixed case, spaces, keywords that are
not unreserved, by the server's own ``pg_get_keywords()`` categories, as
``quote_ident`` decides) come back quoted. Keywords follow the case being
typed (``sel`` → ``select``, ``SEL`` or nothing → ``SELECT``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lunepool_magic.notebook.options import OPTIONS
from lunepool_magic.sqltext import split_statements

__all__ = [
    "MAGIC_OPTIONS",
    "Completion",
    "Place",
    "Suggestions",
    "changes_catalog",
    "locate",
    "magic_uses",
    "parameter_names",
    "quote_name",
    "suggest",
]

#: At most this many completions are returned (IPython's own limit).
MAX_COMPLETIONS = 500

# What each kind of option value completes to.
_VALUE_KINDS = {
    "flag": None,
    "name": "variable",
    "name?": "connection?",
    "rows": "value",
    "var": "variable",
    "var?": "variable?",
    "table": "value",
    "job?": "job?",
    "label": "value",  # --section NAME (and --alias, which completes connections)
    "path": "value",  # -f FILE, --to FILE
}

#: The magic's options, long and short, and what their value is: "connection",
#: "variable", "value" (free text), "job", or None for a flag. A trailing "?"
#: marks an optional value. Made from the one option table (options.OPTIONS).
MAGIC_OPTIONS: dict[str, str | None] = {
    flag: "connection" if option.key == "alias" else _VALUE_KINDS[option.takes]
    for option in OPTIONS
    for flag in option.flags
}


@dataclass(frozen=True)
class Completion:
    """One completion: the text to insert and its kind (table, view, column, ...)."""

    text: str
    kind: str


@dataclass(frozen=True)
class Suggestions:
    """Completions that replace ``fragment``, the text just before the cursor."""

    completions: list[Completion]
    fragment: str


@dataclass(frozen=True)
class Place:
    """Where the cursor is in a SQL magic.

    ``area`` is "option" (typing an option name), "connection" or "variable"
    (an option's value), "sql", or "none" (a value completion cannot help
    with). ``text`` and ``cursor``: for "sql" the SQL of the cell or line and
    the cursor's offset in it; otherwise the word typed so far. ``alias`` is
    the connection the magic line names with ``--alias``, or None (the current one).
    """

    area: str
    text: str
    cursor: int
    alias: str | None = None


# ------------------------------------------------------------------ the magic


def locate(full_text: str, offset: int, names: Iterable[str] = ("sql",)) -> Place | None:
    """Where ``offset`` falls in a ``%%sql`` cell or after ``%sql`` on its line, or None."""
    names = tuple(names)
    cell = _cell_magic(full_text, names)
    if cell is not None:
        first_start, first_end = cell
        if offset <= first_end:  # on the %%sql line itself
            if offset <= first_start:
                return None  # still typing the magic's name: IPython completes that
            return _on_magic_line(full_text[first_start:first_end], offset - first_start)
        # The SQL is the rest of the first line (after the options) and the body.
        head = _on_magic_line(full_text[first_start:first_end], first_end - first_start + 1)
        head_sql = head.text if head.area == "sql" else ""
        alias = head.alias
        body = full_text[first_end + 1 :]
        return Place("sql", head_sql + "\n" + body, len(head_sql) + offset - first_end, alias)
    line_start = full_text.rfind("\n", 0, offset) + 1
    line_end = full_text.find("\n", offset)
    line_end = len(full_text) if line_end < 0 else line_end
    before = full_text[line_start:offset]
    found = None
    for match in _line_magic_re(names).finditer(before):
        found = match
    if found is None or _in_python_comment_or_string(before[: found.start()]):
        return None
    start = line_start + found.end()
    return _on_magic_line(full_text[start:line_end], offset - start)


def _cell_magic(full_text: str, names: tuple[str, ...]) -> tuple[int, int] | None:
    """``(start, end)`` of what follows ``%%sql`` on the cell's first line, or None."""
    match = _cell_magic_re(names).match(full_text)
    if match is None:
        return None
    end = full_text.find("\n", match.end())
    return match.end(), len(full_text) if end < 0 else end


_MAGIC_RE_CACHE: dict[tuple[str, tuple[str, ...]], re.Pattern[str]] = {}


def _cell_magic_re(names: tuple[str, ...]) -> re.Pattern[str]:
    key = ("cell", names)
    if key not in _MAGIC_RE_CACHE:
        alternatives = "|".join(map(re.escape, names))
        # IPython drops leading blank lines before it looks for a cell magic.
        _MAGIC_RE_CACHE[key] = re.compile(rf"(?:[ \t]*\n)*%%(?:{alternatives})(?=\s|\Z)")
    return _MAGIC_RE_CACHE[key]


def _line_magic_re(names: tuple[str, ...]) -> re.Pattern[str]:
    key = ("line", names)
    if key not in _MAGIC_RE_CACHE:
        alternatives = "|".join(map(re.escape, names))
        # At the start of the line or after a space, "=" or "(" (x = %sql ...); not %%sql.
        _MAGIC_RE_CACHE[key] = re.compile(rf"(?:^|(?<=[\s=(]))%(?:{alternatives})(?=\s)")
    return _MAGIC_RE_CACHE[key]


def _in_python_comment_or_string(line: str) -> bool:
    """Whether the end of ``line`` (Python) is in a comment or a string; a quick guess."""
    quote = None
    for char in line:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            return True
    return quote is not None


_SPACE_RE = re.compile(r"\s*")
_WORD_RE = re.compile(r"\S*")
_CAPTURE_RE = re.compile(r"[A-Za-z_]\w*\s*<<")
_TARGET_RE = re.compile(
    r"""(?:postgres(?:ql)?://\S*|"[^"]*"|'[^']*'|(?:[A-Za-z_]+=(?:'(?:[^'\\]|\\.)*'|\S+)\s*)+)""",
    re.IGNORECASE,
)


def _on_magic_line(line: str, cursor: int) -> Place:
    """Read the options before ``cursor`` on a magic line, tolerating a half-typed one."""
    alias: str | None = None
    pos = 0
    flag: str | None = None  # the option whose value comes next
    while True:
        pos = _SPACE_RE.match(line, pos).end()
        word_end = _WORD_RE.match(line, pos).end()
        if cursor <= word_end and (pos < word_end or flag is not None or pos >= len(line)):
            typed = line[pos:cursor]
            if flag is not None:
                takes = MAGIC_OPTIONS[flag] or ""
                if takes.endswith("?") and typed.startswith("-"):
                    return Place("option", typed, len(typed), alias)
                area = takes.rstrip("?")
                if area not in ("connection", "variable"):
                    area = "none"
                return Place(area, typed, len(typed), alias)
            if typed.startswith("-"):
                return Place("option", typed, len(typed), alias)
            break  # the SQL starts here
        word = line[pos:word_end]
        if flag is not None:
            if flag in ("--alias", "-a"):
                alias = word
            flag = None
            pos = word_end
            continue
        if word.startswith("-"):
            name, has_value, value = word.partition("=")
            if has_value:
                if name == "--alias":
                    alias = value
            elif MAGIC_OPTIONS.get(name) is not None:
                flag = name
            pos = word_end
            continue
        capture = _CAPTURE_RE.match(line, pos)
        if capture is not None:
            pos = capture.end()
            continue
        target = _TARGET_RE.match(line, pos)
        if target is not None and ("=" in target.group() or "://" in target.group()):
            pos = target.end()
            continue
        break
    return Place("sql", line[pos:], max(0, cursor - pos), alias)


# ------------------------------------------------------------------ tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # word, qident, string, comment, number, op
    text: str
    start: int
    end: int
    closed: bool = True  # False: an unterminated string, quoted name or comment

    @property
    def folded(self) -> str:
        """The name as PostgreSQL reads it: unquoted words fold to lower case."""
        if self.kind == "qident":
            inner = self.text[1:-1] if self.closed else self.text[1:]
            return inner.replace('""', '"')
        return self.text.lower()

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


_TOKEN_RE = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*)
    | (?P<string>(?:[EeBbXxNn]|[Uu]&)?')
    | (?P<dollar>\$(?:[^\W\d]\w*)?\$)
    | (?P<qident>(?:[Uu]&)?")
    | (?P<word>[^\W\d][\w$]*)
    | (?P<number>\d[\w.]*)
    | (?P<op>::|[<>!=]=|<>|\|\||\S)
    """,
    re.VERBOSE,
)


def _tokens(text: str) -> list[_Token]:
    """The tokens of ``text`` without blanks; the last may be unterminated."""
    found: list[_Token] = []
    pos, n = 0, len(text)
    while pos < n:
        match = _TOKEN_RE.match(text, pos)
        assert match is not None  # `\S` or `\s+` matches any character
        kind = match.lastgroup
        start, end = match.start(), match.end()
        closed = True
        if kind == "comment" and match.group() == "/*":
            end, closed = _block_comment_end(text, end)
        elif kind == "comment":
            closed = end < n  # a line comment open at the cursor swallows it
        elif kind == "string":
            escapes = match.group()[:1] in "Ee"
            end, closed = _closing_quote(text, end, "'", escapes)
        elif kind == "qident":
            end, closed = _closing_quote(text, end, '"', False)
        elif kind == "dollar":
            close = text.find(match.group(), end)
            end, closed = (n, False) if close < 0 else (close + len(match.group()), True)
            kind = "string"
        if kind != "space":
            found.append(_Token(kind, text[start:end], start, end, closed))
        pos = end
    return found


def _block_comment_end(text: str, pos: int) -> tuple[int, bool]:
    """Past the ``*/`` that closes a block comment opened before ``pos`` (they nest)."""
    depth = 1
    for match in _BLOCK_DELIMS_RE.finditer(text, pos):
        depth += 1 if match.group() == "/*" else -1
        if depth == 0:
            return match.end(), True
    return len(text), False


_BLOCK_DELIMS_RE = re.compile(r"/\*|\*/")


def _closing_quote(text: str, pos: int, quote: str, escapes: bool) -> tuple[int, bool]:
    """Past the quote that closes a string or name opened before ``pos``; doubled quotes stay."""
    n = len(text)
    while pos < n:
        char = text[pos]
        if escapes and char == "\\":
            pos += 2
            continue
        if char == quote:
            if pos + 1 < n and text[pos + 1] == quote:
                pos += 2
                continue
            return pos + 1, True
        pos += 1
    return n, False


# ------------------------------------------------------------------ statement

# Keywords after which a relation is typed.
_RELATION_AFTER = frozenset({"from", "join", "into", "update", "table", "truncate", "only"})
# Keywords after which a column (or an expression) is typed.
_COLUMN_AFTER = frozenset(
    {
        "select", "where", "on", "by", "set", "having", "and", "or", "not", "distinct",
        "returning", "when", "then", "else", "case", "between", "like", "ilike", "in",
        "using", "all", "any", "some", "is",
    }
)  # fmt: skip
# Clause keywords: a comma belongs to the nearest one before it.
_CLAUSES = frozenset(
    {"select", "from", "where", "group", "order", "having", "set", "returning", "values",
     "into", "on", "using", "window", "limit", "offset", "join", "with"}
)  # fmt: skip
# Words that end a FROM item; anything else after a relation's name is its alias.
_NOT_ALIAS = frozenset(
    {
        "where", "join", "inner", "left", "right", "full", "cross", "natural", "outer",
        "on", "using", "group", "order", "having", "limit", "offset", "window", "union",
        "except", "intersect", "set", "returning", "for", "fetch", "tablesample", "values",
        "default", "select", "lateral", "as", "with", "do", "when", "then", "from",
    }
)  # fmt: skip
# Keywords offered first when nothing is typed yet (the rest follow alphabetically).
_COMMON_KEYWORDS = (
    "select", "from", "where", "join", "left", "on", "group", "by", "order", "having",
    "limit", "as", "and", "or", "not", "in", "is", "null", "insert", "into", "values",
    "update", "set", "delete", "create", "table", "with", "distinct", "case", "when",
    "then", "else", "end", "union", "returning", "begin", "commit", "rollback",
)  # fmt: skip

# First words of statements that change what the catalog holds (DDL, and the
# end of a transaction that may have held DDL).
_CATALOG_CHANGING = frozenset(
    {"create", "alter", "drop", "comment", "grant", "revoke", "commit", "rollback", "end",
     "abort", "do", "call", "import", "security", "reindex"}
)  # fmt: skip


@dataclass
class _Ref:
    """A relation the statement reads: its name, alias, and what its text says of its columns.

    ``columns`` is set for CTEs and subqueries (their select list or column
    list; "*" stands for all the columns of ``inner``, the relations they read).
    """

    parts: tuple[str, ...]  # (name,) or (schema, name), folded
    alias: str | None
    columns: list[str] | None = None
    inner: list[_Ref] | None = None
    at: int = -1  # where its name starts in the statement


def _statement_at(text: str, cursor: int) -> tuple[str, int]:
    """The statement around ``cursor`` and where it starts in ``text``."""
    start, end = 0, len(text)
    for statement in split_statements(text):
        if statement.start > cursor:
            # The next statement: ours ends at the `;` before it.
            semicolon = text.rfind(";", start, statement.start)
            if semicolon >= cursor:
                end = semicolon
            break
        start = statement.start
        if statement.end <= cursor:
            # A `;` between this statement and the cursor starts a new one.
            semicolon = text.rfind(";", statement.end, cursor)
            if semicolon >= 0:
                start = semicolon + 1
    return text[start:end], start


def _matching(tokens: list[_Token], i: int) -> int:
    """Index of the ``)`` that closes the ``(`` at ``i`` (or len(tokens))."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].text == "(":
            depth += 1
        elif tokens[j].text == ")":
            depth -= 1
            if depth == 0:
                return j
    return len(tokens)


def _name_at(tokens: list[_Token], i: int) -> tuple[tuple[str, ...], int]:
    """A dotted name starting at token ``i``: its folded parts and the index after it."""
    parts: list[str] = []
    while i < len(tokens) and tokens[i].kind in ("word", "qident"):
        parts.append(tokens[i].folded)
        if (
            i + 2 < len(tokens)
            and tokens[i + 1].text == "."
            and tokens[i + 2].kind
            in (
                "word",
                "qident",
            )
        ):
            i += 2
            continue
        i += 1
        break
    return tuple(parts), i


def _alias_at(tokens: list[_Token], i: int) -> tuple[str | None, list[str] | None, int]:
    """An alias after a FROM item (``AS x``, ``x``, ``x (a, b)``) and the index after it."""
    if i < len(tokens) and tokens[i].is_word("as"):
        i += 1
    if i < len(tokens) and (
        tokens[i].kind == "qident"
        or (tokens[i].kind == "word" and tokens[i].folded not in _NOT_ALIAS)
    ):
        alias = tokens[i].folded
        i += 1
        columns = None
        if i < len(tokens) and tokens[i].text == "(":
            close = _matching(tokens, i)
            columns = [t.folded for t in tokens[i + 1 : close] if t.kind in ("word", "qident")]
            i = close + 1
        return alias, columns, i
    return None, None, i


def _output_names(tokens: list[_Token]) -> list[str] | None:
    """The column names a SELECT (the tokens of a CTE or subquery body) produces.

    An item's name is its alias or, for a plain column, the column's name;
    ``*`` and ``t.*`` come back as "*". None when there is no SELECT.
    """
    start = next((k for k, t in enumerate(tokens) if t.is_word("select")), None)
    if start is None:
        return None
    names: list[str] = []
    item: list[_Token] = []
    depth = 0
    for token in [*tokens[start + 1 :], _Token("op", ",", 0, 0)]:
        if depth == 0 and (token.text == "," or token.is_word("from", "into", "where")):
            if item and item[-1].text == "*":
                names.append("*")
            elif item and item[-1].kind in ("word", "qident"):
                names.append(item[-1].folded)
            item = []
            if token.text != ",":
                break
            continue
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        if item or not token.is_word("distinct", "all"):
            item.append(token)
    return names


def _references(tokens: list[_Token]) -> tuple[list[_Ref], dict[str, _Ref]]:
    """The relations a statement names (FROM, JOIN, UPDATE, INTO, ...) and its CTEs."""
    refs: list[_Ref] = []
    ctes: dict[str, _Ref] = {}
    i, n = 0, len(tokens)
    in_from = False
    while i < n:
        token = tokens[i]
        if token.is_word("with"):
            i = _read_ctes(tokens, i + 1, ctes)
            continue
        if token.is_word("from", "join"):
            in_from = True
        elif token.kind == "word" and token.folded in _CLAUSES:
            in_from = False
        if not (token.is_word(*_RELATION_AFTER) or (in_from and token.text == ",")):
            i += 1
            continue
        i += 1
        while i < n and tokens[i].is_word("only", "lateral"):
            i += 1
        if i < n and tokens[i].text == "(":  # a subquery: named by its alias
            close = _matching(tokens, i)
            body = tokens[i + 1 : close]
            alias, listed, i = _alias_at(tokens, close + 1)
            if alias is not None:
                inner, _ = _references(body)
                refs.append(_Ref((alias,), alias, listed or _output_names(body), inner))
            continue
        parts, after = _name_at(tokens, i)
        if parts:
            at = tokens[i].start
            alias, listed, i = _alias_at(tokens, after)
            refs.append(_Ref(parts, alias, listed, at=at))
    return refs, ctes


def _read_ctes(tokens: list[_Token], i: int, ctes: dict[str, _Ref]) -> int:
    """Read ``[RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] (body), ...`` from ``i``."""
    n = len(tokens)
    if i < n and tokens[i].is_word("recursive"):
        i += 1
    while i < n and tokens[i].kind in ("word", "qident"):
        name = tokens[i].folded
        i += 1
        listed = None
        if i < n and tokens[i].text == "(":
            close = _matching(tokens, i)
            listed = [t.folded for t in tokens[i + 1 : close] if t.kind in ("word", "qident")]
            i = close + 1
        if i < n and tokens[i].is_word("as"):
            i += 1
        while i < n and tokens[i].is_word("not", "materialized"):
            i += 1
        if i >= n or tokens[i].text != "(":
            break
        close = _matching(tokens, i)
        body = tokens[i + 1 : close]
        inner, _ = _references(body)
        ctes[name] = _Ref((name,), None, listed or _output_names(body), inner)
        i = close + 1
        if i < n and tokens[i].text == ",":
            i += 1
            continue
        break
    return i


def magic_uses(cell: str, names: Iterable[str] = ("sql",)) -> list[tuple[str, str]]:
    """Each use of the magic in a cell: ``(magic line after the name, cell body)``.

    A ``%%sql`` cell gives one, with its body; each ``%sql`` line of a Python
    cell gives one, with an empty body.
    """
    names = tuple(names)
    head = _cell_magic(cell, names)
    if head is not None:
        return [(cell[head[0] : head[1]], cell[head[1] + 1 :])]
    pattern = _line_magic_re(names)
    return [
        (line[match.end() :], "")
        for line in cell.split("\n")
        for match in [pattern.search(line)]
        if match is not None
    ]


def changes_catalog(sql: str) -> bool:
    """Whether any statement of ``sql`` may change the catalog (DDL, COMMIT, ROLLBACK, ...)."""
    for statement in split_statements(sql):
        first = next((t for t in _tokens(statement.text) if t.kind != "comment"), None)
        if first is not None and first.is_word(*_CATALOG_CHANGING):
            return True
    return False


# ------------------------------------------------------------------ ranking


def quote_name(name: str, keywords: Mapping[str, str]) -> str:
    """``name`` as it must be typed: bare if PostgreSQL would read it back unchanged.

    The rule of the server's ``quote_ident``: ASCII lower-case letters, digits
    and ``_`` only (no ``$``), not starting with a digit, and not a keyword
    other than an unreserved one (categories from ``pg_get_keywords()``).
    """
    if _BARE_RE.fullmatch(name) and keywords.get(name, "U") == "U":
        return name
    return '"' + name.replace('"', '""') + '"'


_BARE_RE = re.compile(r"[a-z_][a-z0-9_]*")


def parameter_names(namespace: Mapping[str, Any]) -> list[str]:
    """The notebook variables a ``:name`` parameter can bind: data, not modules or functions."""
    names = []
    for name, value in namespace.items():
        if name.startswith("_") or not name.isidentifier() or name in ("In", "Out"):
            continue
        if callable(value) or type(value).__name__ == "module":
            continue
        names.append(name)
    return sorted(names, key=str.casefold)


class _Collector:
    """Completions in the order they are added, without duplicates, up to a limit."""

    def __init__(self, typed: str, limit: int) -> None:
        self.items: list[Completion] = []
        self._seen: set[str] = set()
        self.limit = limit
        self.quoted = typed.startswith('"')
        self.prefix = typed[1:].replace('""', '"') if self.quoted else typed

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def add(self, text: str, kind: str) -> None:
        if text not in self._seen and not self.full:
            self._seen.add(text)
            self.items.append(Completion(text, kind))

    def names(self, names: Iterable[str], kind: str, keywords: Mapping[str, str]) -> None:
        """SQL names that start with what was typed, quoted as they must be typed."""
        folded = self.prefix.casefold()
        for name in names:
            if self.full:
                return
            # Inside quotes the case is the name's own; without, it folds.
            if name.startswith(self.prefix) if self.quoted else name.casefold().startswith(folded):
                if kind == "function" and not self.quoted and _BARE_RE.fullmatch(name):
                    self.add(name, kind)  # keywords that name functions are called bare
                elif self.quoted:
                    self.add('"' + name.replace('"', '""') + '"', kind)
                else:
                    self.add(quote_name(name, keywords), kind)

    def indexed(self, index: Any, kind: str, keywords: Mapping[str, str], of: Any = None) -> None:
        """The same from a catalog index (prefix look-up, no scan of every name)."""
        for value in index.starting(self.prefix, self.limit - len(self.items)):
            name = value if of is None else of(value)
            kind_here = kind if isinstance(kind, str) else kind(value)
            self.names([name], kind_here, keywords)


def suggest(
    place: Place,
    catalog: Any,
    *,
    variables: Iterable[str] = (),
    connections: Iterable[str] = (),
    limit: int | None = None,
) -> Suggestions | None:
    """What fits at ``place``, best first; None when the cursor is where nothing does
    (inside a string or a comment). ``catalog`` may be None (not read yet)."""
    limit = MAX_COMPLETIONS if limit is None else min(limit, MAX_COMPLETIONS)
    if place.area == "option":
        found = [
            Completion(option, "option")
            for option in MAGIC_OPTIONS
            if option.startswith(place.text) and (option.startswith("--") or place.text == "-")
        ]
        if place.text.startswith("--") or place.text in ("", "-"):
            found = [c for c in found if c.text.startswith("--")]
        return Suggestions(found[:limit], place.text)
    if place.area == "connection":
        found = [Completion(a, "connection") for a in connections if a.startswith(place.text)]
        return Suggestions(found[:limit], place.text)
    if place.area == "variable":
        found = [Completion(v, "variable") for v in variables if v.startswith(place.text)]
        return Suggestions(found[:limit], place.text)
    if place.area != "sql":
        return None
    return _suggest_sql(place.text, place.cursor, catalog, variables, limit)


def _suggest_sql(
    text: str, cursor: int, catalog: Any, variables: Iterable[str], limit: int
) -> Suggestions | None:
    statement, start = _statement_at(text, cursor)
    cursor -= start
    before = statement[:cursor]
    tokens = _tokens(before)
    last = tokens[-1] if tokens else None
    if last is not None and not last.closed and last.kind != "qident":
        return None  # in a string or a comment
    # The word being typed (maybe empty) and the dotted qualifier before it.
    typed_index = len(tokens)
    if last is not None and last.end == len(before) and last.kind in ("word", "qident"):
        typed_index -= 1
    typed = tokens[typed_index].text if typed_index < len(tokens) else ""
    qualifier: list[str] = []
    k = typed_index
    while (
        k >= 2
        and tokens[k - 1].text == "."
        and tokens[k - 2].kind in ("word", "qident")
        and tokens[k - 1].end == (tokens[k].start if k < len(tokens) else len(before))
        and tokens[k - 2].end == tokens[k - 1].start
    ):
        qualifier.insert(0, tokens[k - 2].folded)
        k -= 2
    previous = tokens[k - 1] if k >= 1 else None
    keywords: Mapping[str, str] = catalog.keywords if catalog is not None else {}
    out = _Collector(typed, limit)

    if (
        previous is not None
        and previous.text == ":"
        and previous.end == (tokens[k].start if k < len(tokens) else len(before))
        and not qualifier
    ):
        for name in variables:  # Python names: as they are, case and all
            if name.startswith(typed):
                out.add(name, "variable")
        return Suggestions(out.items, typed)
    if statement.lstrip().startswith("\\"):
        if k == 0 or (previous is not None and previous.text == "\\"):
            return Suggestions([], typed)
        _relations(out, catalog, qualifier, {}, keywords)
        return Suggestions(out.items, typed)
    if catalog is None:
        return Suggestions([], typed)

    # The statement without the word being typed (an open quote there would
    # swallow the rest); a half-typed name is not yet one of its relations.
    typed_at = tokens[k].start if k < len(tokens) else len(before)
    refs, ctes = _references(_tokens(before[:typed_at] + " " + statement[cursor:]))
    context = _context(tokens[:k])
    if qualifier:
        _qualified(out, catalog, qualifier, refs, ctes, context, keywords)
    elif context == "relation":
        _relations(out, catalog, [], ctes, keywords)
    elif context == "column":
        for ref in refs:
            out.names(_columns(ref, catalog, ctes), "column", keywords)
        out.indexed(catalog.visible_functions(), "function", keywords)
        _keywords(out, catalog, typed)
    else:
        _keywords(out, catalog, typed)
    return Suggestions(out.items, typed)


def _context(tokens: list[_Token]) -> str:
    """What is typed after these tokens: "relation", "column" or "keyword"."""
    if not tokens:
        return "keyword"
    previous = tokens[-1]
    if previous.kind == "word":
        word = previous.folded
        if word in _RELATION_AFTER:
            return "relation"
        if word in _COLUMN_AFTER:
            return "column"
        return "keyword"
    if previous.kind == "op" and previous.text not in (")", ";"):
        if previous.text == ",":
            clause = _clause(tokens[:-1])
            if clause in ("from", "join", "update", "table", "truncate"):
                return "relation"  # FROM a, b: the next relation (INTO t (a, b: columns)
        return "column"
    return "keyword"


def _clause(tokens: list[_Token]) -> str | None:
    """The nearest clause keyword before the end, at the same parenthesis depth."""
    depth = 0
    for token in reversed(tokens):
        if token.text == ")":
            depth += 1
        elif token.text == "(":
            if depth == 0:
                return "("
            depth -= 1
        elif depth == 0 and token.kind == "word" and token.folded in _CLAUSES | _RELATION_AFTER:
            return token.folded
    return None


def _columns(ref: _Ref, catalog: Any, ctes: Mapping[str, _Ref], depth: int = 0) -> list[str]:
    """The column names of a relation of the statement (a table, a CTE, a subquery)."""
    if depth > 8:  # a CTE that names itself (WITH RECURSIVE) or a cycle
        return []
    if ref.columns is not None:
        names: list[str] = []
        for name in ref.columns:
            if name == "*":
                for inner in ref.inner or []:
                    names += _columns(inner, catalog, ctes, depth + 1)
            else:
                names.append(name)
        return names
    if len(ref.parts) == 1 and ref.parts[0] in ctes and ctes[ref.parts[0]] is not ref:
        return _columns(ctes[ref.parts[0]], catalog, ctes, depth + 1)
    schema = ref.parts[-2] if len(ref.parts) >= 2 else None
    relation = catalog.relation(schema, ref.parts[-1]) if ref.parts else None
    return list(relation.columns) if relation is not None else []


def _qualified(
    out: _Collector,
    catalog: Any,
    qualifier: list[str],
    refs: list[_Ref],
    ctes: Mapping[str, _Ref],
    context: str,
    keywords: Mapping[str, str],
) -> None:
    """After ``x.``: an alias's or table's columns, or a schema's relations and functions."""
    if len(qualifier) == 1:
        name = qualifier[0]
        for ref in refs:
            if ref.alias == name or (ref.alias is None and ref.parts and ref.parts[-1] == name):
                out.names(_columns(ref, catalog, ctes), "column", keywords)
                return
        if name in ctes:
            out.names(_columns(ctes[name], catalog, ctes), "column", keywords)
            return
        if name in catalog.relations or name in catalog.schemas:
            _relations(out, catalog, qualifier, {}, keywords)
            if context != "relation":
                out.indexed(catalog.schema_functions(name), "function", keywords)
            return
        relation = catalog.relation(None, name)
        if relation is not None:  # table.column without the table in FROM
            out.names(relation.columns, "column", keywords)
        return
    relation = catalog.relation(qualifier[-2], qualifier[-1])
    if relation is not None:
        out.names(relation.columns, "column", keywords)


def _relations(
    out: _Collector,
    catalog: Any,
    qualifier: list[str],
    ctes: Mapping[str, _Ref],
    keywords: Mapping[str, str],
) -> None:
    """Relations: of the qualifier's schema, or CTEs, visible ones and schemas."""
    if catalog is None:
        return
    if qualifier:
        out.indexed(
            catalog.schema_relations(qualifier[-1]), lambda r: r.kind, keywords, of=lambda r: r.name
        )
        return
    out.names(ctes, "table", keywords)
    out.indexed(catalog.visible_relations(), lambda r: r.kind, keywords, of=lambda r: r.name)
    if out.prefix.startswith("pg_") and "pg_catalog" in catalog.search_path:
        out.indexed(
            catalog.schema_relations("pg_catalog"), lambda r: r.kind, keywords, of=lambda r: r.name
        )
    out.indexed(catalog.schema_names(), "schema", keywords)


def _keywords(out: _Collector, catalog: Any, typed: str) -> None:
    """The server's keywords in the case being typed; common ones first when nothing is."""
    if out.quoted:
        return
    upper = not (typed and typed == typed.lower())
    prefix = typed.casefold()
    if not prefix:
        for word in _COMMON_KEYWORDS:
            if word in catalog.keywords:
                out.add(word.upper() if upper else word, "keyword")
    for word in catalog.keyword_names().starting(prefix, out.limit):
        out.add(word.upper() if upper else word, "keyword")
