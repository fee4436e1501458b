"""Cell parsing: split a SQL cell into statements and bind ``:name`` parameters.

This module knows PostgreSQL's *lexical* structure well enough to answer two
questions, and nothing else:

* where does each statement of a cell begin and end (:func:`split_statements`);
* which ``:name`` markers are parameters, to be sent to the server as real
  bind parameters, never pasted into the SQL (:func:`bind_parameters`,
  :func:`find_parameters`).

Both rest on one lexer (:func:`_lex`), so the quoting rules exist once. It cuts
the text into *code* and opaque *regions* whose content nobody looks at:

* standard strings ``'it''s'`` (also with the prefixes ``U&``, ``N``, ``B``,
  ``X``, which do not change where the string ends);
* escape strings ``E'it\\'s'``, with backslash escapes and ``''``, including
  the SQL-standard continuation over a newline (``E'a'<newline>'b\\'c'`` is
  one escape string);
* quoted identifiers ``"a;b"`` with ``""`` escapes (also ``U&"..."``);
* dollar quotes ``$$...$$`` and ``$tag$...$tag$``; a tag follows identifier
  rules and cannot start with a digit, so ``$1`` is a positional parameter;
  ``$`` inside an identifier (``a$b``, ``a$$b``) starts nothing;
* ``--`` line comments and ``/* */`` block comments, which nest.

Assumptions: ``standard_conforming_strings = on`` (the server default since
PostgreSQL 9.1; were it off, backslashes would escape quotes in plain strings
too). psql meta-commands (``\\d``), psql variable interpolation (``:'x'``,
``:"x"``) and inline ``COPY ... FROM STDIN`` data are not SQL and are not
handled here.

Everything is linear in the size of the cell: each construct is found by one
regular-expression search or ``str.find`` from where the previous one ended.
The lexer's pattern is written so that every alternative starts with a literal
character; that lets ``re`` skip over uninteresting text in C instead of trying
the whole pattern at every position (about 25 times faster on typical SQL).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Statement",
    "UnknownParameter",
    "bind_parameters",
    "find_parameters",
    "leading_keyword",
    "split_statements",
]

# --------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------

# PostgreSQL treats every non-ASCII character as a letter in identifiers
# (scan.l: ident_start = [A-Za-z\200-\377_] over UTF-8 bytes); after the first
# character, digits and `$` are allowed too. The classes are written as the
# ASCII characters they exclude: the same sets, but a class spelled with the
# range up to U+10FFFF takes the re module milliseconds to compile, and these
# compile when %load_ext imports this module.
_ASCII_LETTERS_OUT = "\x5b-\x5e\x60\x7b-\x7f"  # [ \ ] ^ ` { | } ~ DEL
_IDENT_START = f"[^\x00-\x40{_ASCII_LETTERS_OUT}]"  # letters, _, non-ASCII
_IDENT_CONT = f"[^\x00-\x23\x25-\x2f\x3a-\x40{_ASCII_LETTERS_OUT}]"  # also digits, $
_DOLLAR_TAG_CONT = f"[^\x00-\x2f\x3a-\x40{_ASCII_LETTERS_OUT}]"  # start, digits
_IDENT_START_OR_DOLLAR = f"[^\x00-\x23\x25-\x40{_ASCII_LETTERS_OUT}]"
_ASCII_IDENT_CONT = frozenset(string.ascii_letters + string.digits + "_$")

# The server's whitespace. Not Python's \s: U+00A0 and friends are identifier
# characters for PostgreSQL, so they are code, not blanks.
_WS = " \t\n\r\f\v"
_NON_WS_RE = re.compile(f"[^{_WS}]")
# Anything that could start a region, end a statement or open a comment.
_NOT_SIMPLE_RE = re.compile(r"""[;'"$]|--|/\*""")

# The start of every region. An E-string or a dollar quote cannot start inside
# an identifier (`somee'x'` is the word `somee` and a plain string; `a$$b` is
# one identifier), hence the look-behinds; they sit after the first character
# so that each alternative still begins with a literal (see module docstring).
# Plain strings and quoted identifiers are matched whole here: `''` and `""`
# are just two adjacent quoted parts.
_REGION_RE = re.compile(
    "|".join(
        [
            r"'[^']*'(?:'[^']*')*",  # standard string
            r'"[^"]*"(?:"[^"]*")*',  # quoted identifier
            r"--[^\n\r]*",  # line comment
            r"/\*",  # block comment: nesting is counted below
            rf"e(?<!{_IDENT_CONT}e)'",  # escape string
            rf"E(?<!{_IDENT_CONT}E)'",
            # dollar-quote opener (after digits, _dollar_ends_identifier decides)
            rf"\$(?<!{_IDENT_START_OR_DOLLAR}\$)(?:{_IDENT_START}{_DOLLAR_TAG_CONT}*)?\$",
            "'",  # a quote the first two alternatives could not close
            '"',
        ]
    )
)
_BLOCK_DELIM_RE = re.compile(r"/\*|\*/")
_E_STRING_SPECIAL_RE = re.compile(r"['\\]")
# Quote continuation (scan.l `quotecontinue`): after a closing quote, blanks or
# a comment, a newline, more blanks or comment lines, then a quote. Only
# single-character alternatives, so a failed match backtracks linearly.
_E_CONTINUE_RE = re.compile(r"(?:[ \t\f]|--[^\n\r]*)*[\n\r](?:[ \t\n\r\f\v]|--[^\n\r]*[\n\r])*'")

# Kinds of the pieces _lex yields.
CODE = "code"
COMMENT = "comment"
STRING = "string"
QIDENT = "quoted identifier"
DOLLAR = "dollar quote"


def _lex(
    text: str, pos: int = 0, endpos: int | None = None
) -> Iterator[tuple[str, int, int, bool]]:
    """Cut ``text[pos:endpos]`` into ``(kind, start, end, terminated)`` pieces.

    ``kind`` is CODE for the text between regions (never empty), or the
    region's kind: COMMENT, STRING, QIDENT, DOLLAR. Pieces are contiguous and
    cover the whole range. An unterminated region has ``terminated=False``,
    runs to the end of the text, and is the last piece. ``endpos`` must not
    fall inside a region (callers pass a boundary an earlier pass found in
    code).
    """
    n = len(text)
    if endpos is None:
        endpos = n
    search = _REGION_RE.search
    scan_from = pos
    while True:
        m = search(text, scan_from, endpos)
        if m is None:
            if pos < endpos:
                yield CODE, pos, endpos, True
            return
        start, end = m.span()
        first = text[start]
        if first == "$" and _dollar_ends_identifier(text, start):
            scan_from = start + 1
            continue
        if start > pos:
            yield CODE, pos, start, True
        ok = True
        if first == "'" or first == '"':
            kind = STRING if first == "'" else QIDENT
            if end - start == 1:  # the lone-quote fallback: nothing closes it
                end, ok = n, False
        elif first == "-":
            kind = COMMENT
        elif first == "/":
            kind = COMMENT
            end, ok = _scan_block_comment(text, end)
        elif first == "$":
            kind = DOLLAR
            close = text.find(m.group(), end)
            end, ok = (close + end - start, True) if close >= 0 else (n, False)
        else:  # e' or E'
            kind = STRING
            end, ok = _scan_e_string(text, end)
        yield kind, start, end, ok
        if not ok:
            return
        pos = scan_from = end


def _dollar_ends_identifier(text: str, pos: int) -> bool:
    """Whether the ``$`` at ``pos``, if right after digits, continues an identifier.

    ``a1$$`` is one identifier, but in ``1$$x$$`` the number ends at ``$`` and
    a dollar quote starts, and so it does after a positional parameter
    (``$1$$x$$``), as the server lexes them. (A ``$`` right after a letter or
    ``$`` never reaches here: the pattern's look-behind rejects it.)
    """
    j = pos - 1
    while j >= 0 and "0" <= text[j] <= "9":
        j -= 1
    if j == pos - 1 or j < 0 or not _is_ident_char(text[j]):
        return False  # no digits before, or a number
    return text[j] != "$" or (j > 0 and _is_ident_char(text[j - 1]))  # else $n


def _scan_block_comment(text: str, pos: int) -> tuple[int, bool]:
    """End of a block comment whose opening ``/*`` ends at ``pos``; nesting counts."""
    depth = 1
    search = _BLOCK_DELIM_RE.search
    while True:
        m = search(text, pos)
        if m is None:
            return len(text), False
        pos = m.end()
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return pos, True


_KEYWORD_RE = re.compile(r"[A-Za-z_]\w*")


def leading_keyword(text: str) -> str | None:
    """A statement's first keyword, in lower case, after blanks, comments and ``(``.

    ``None`` when the text starts with anything else (a quote, a number, ``\\``).
    The comment rules are the lexer's: ``--`` to the end of the line, and
    nested ``/* */``.
    """
    pos, n = 0, len(text)
    while pos < n:
        if text[pos].isspace() or text[pos] == "(":
            pos += 1
        elif text.startswith("--", pos):
            end = text.find("\n", pos)
            pos = n if end < 0 else end + 1
        elif text.startswith("/*", pos):
            pos, _ = _scan_block_comment(text, pos + 2)
        else:
            word = _KEYWORD_RE.match(text, pos)
            return word.group().lower() if word else None
    return None


def _scan_e_string(text: str, pos: int) -> tuple[int, bool]:
    """End of an escape string whose body starts at ``pos`` (just after ``E'``)."""
    search = _E_STRING_SPECIAL_RE.search
    n = len(text)
    while True:
        m = search(text, pos)
        if m is None:
            return n, False
        pos = m.end()
        if m.group() == "\\":
            pos += 1  # a backslash escapes the next character, whatever it is
            if pos > n:
                return n, False
        elif pos < n and text[pos] == "'":
            pos += 1  # '' is a quote
        else:
            # The string ends here, unless it continues on a later line; the
            # continuation keeps the escape-string rules.
            cont = _E_CONTINUE_RE.match(text, pos)
            if cont is None:
                return pos, True
            pos = cont.end()


def _last_non_blank(text: str, pos: int) -> int:
    """Index of the last non-blank character before ``pos``, or -1."""
    pos -= 1
    while pos >= 0 and text[pos] in _WS:
        pos -= 1
    return pos


# --------------------------------------------------------------------------
# Statement splitting
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """One statement of a cell.

    ``text`` is the statement without its ``;``, stripped of surrounding
    whitespace; it equals ``cell[start:end]``. ``line`` is the 1-based line of
    ``start`` in the cell, for messages such as "statement 3 (line 7)".
    ``unterminated`` is None, or names what was left open at the end of the
    cell: "string", "quoted identifier", "dollar quote", "block comment",
    "parenthesis" or "BEGIN ATOMIC block". Such a statement still goes to the
    server, which reports the error with its position (see
    :func:`split_statements`).
    """

    text: str
    start: int
    line: int
    unterminated: str | None = None

    @property
    def end(self) -> int:
        """Offset just past the statement's text in the cell."""
        return self.start + len(self.text)


# Blanks and un-nested block comments, as a regex (for the two small matches
# below that never see strings; nested comments just make them not match).
_GAP = rf"(?:[{_WS}]|--[^\n\r]*[\n\r]|/\*(?:[^*/]|\*(?!/)|/(?!\*))*\*/)"

# A statement that begins CREATE [OR REPLACE] FUNCTION|PROCEDURE may have a
# BEGIN ATOMIC ... END body with semicolons inside. `(?ai:` folds ASCII case
# only, like the server does for keywords.
_ROUTINE_HEAD_RE = re.compile(
    rf"{_GAP}*(?ai:create){_GAP}+(?:(?ai:or){_GAP}+(?ai:replace){_GAP}+)?"
    rf"(?ai:function|procedure)(?!{_IDENT_CONT})"
)

# Blanks and comments that close the line a `;` ends: they belong with the
# statement before, so the next statement's line is the line its code starts
# on. Only block comments that end on the same line count.
_SAME_LINE_TAIL_RE = re.compile(
    r"(?:[ \t\f]|--[^\n\r]*|/\*(?:[^*/\n\r]|\*(?!/)|/(?!\*))*\*/)*(?=[\n\r]|\Z)"
)

# Tokens of a routine's code: words and numbers whole, any other character alone.
_ROUTINE_TOKEN_RE = re.compile(rf"{_IDENT_CONT}+|[^{_WS}]")


def split_statements(text: str) -> list[Statement]:
    """Split a cell into statements at top-level semicolons.

    A ``;`` separates statements only in code: not inside strings, quoted
    identifiers, dollar quotes or comments (see the module docstring), not
    while a parenthesis is open (psql's rule: a rule's ``DO INSTEAD (NOTIFY a;
    NOTIFY b)``), and not inside the body of a SQL-standard routine. In
    ``CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ...; ...; END``
    the semicolons up to the matching ``END`` belong to the one statement.
    Like psql, this is a heuristic, not a parser: in a statement that starts
    with those words, at parenthesis depth 0, ``BEGIN ATOMIC`` opens a block,
    and inside one ``CASE`` opens and ``END`` closes one (not after ``.`` or
    ``AS``, where they are names); the block itself ends only at an ``END``
    right after a ``;`` (elsewhere ``end`` is a bare column label).

    Statements that hold only whitespace and comments are dropped. Comments
    stay with the statement they precede (optimizer hints live there), except
    those that follow a ``;`` on the rest of its line: they close the statement
    before and are dropped with its ``;``.

    Unterminated input is not an error here: an unclosed quote, dollar quote,
    block comment, parenthesis or ``BEGIN ATOMIC`` block runs to the end of
    the cell and makes, with what precedes it, the last statement, marked by
    :attr:`Statement.unterminated`. Sending it lets the server report the
    syntax error with its exact position, which is more honest than guessing
    where the user meant it to end; the marker lets a caller warn first if it
    prefers. An unclosed comment is kept too, not dropped as "only a comment":
    it may have swallowed the rest of the cell, and silence would hide that.
    """
    if _NOT_SIMPLE_RE.search(text) is None:
        # Most cells are one short statement (`%sql SELECT ...`). Without `;`,
        # quotes, `$` or comment markers the lexer could only return the text,
        # stripped of blanks, as one statement: skip its pass.
        stripped = text.lstrip(_WS)
        if not stripped:
            return []
        start = len(text) - len(stripped)
        line = 1 + text.count("\n", 0, start)
        unclosed = "parenthesis" if _paren_depth(text, 0, len(text), 0) else None
        return [Statement(stripped.rstrip(_WS), start, line, unclosed)]
    return _split_lexed(text)


def _split_lexed(text: str) -> list[Statement]:
    """:func:`split_statements` without its shortcut (tests compare the two)."""
    chunks = _chunks(text)
    statements: list[Statement] = []
    line, line_pos = 1, 0  # `line` is the line number at offset `line_pos`
    i = 0
    while i < len(chunks):
        start, stop, content, unterminated = chunks[i]
        i += 1
        if not content:
            continue
        if start > 0:  # after a `;`: skip the comments that close its line
            tail = _SAME_LINE_TAIL_RE.match(text, start)
            if tail is not None:
                start = tail.end()
        if _ROUTINE_HEAD_RE.match(text, start):
            # Take more chunks while a BEGIN ATOMIC block is open at their `;`.
            body = _RoutineBody()
            body.feed(text, start, stop)
            while body.atomic and i < len(chunks):
                more_start, stop, _, unterminated = chunks[i]
                i += 1
                body.prev = ";"
                body.feed(text, more_start, stop)
            if body.atomic and unterminated is None:
                unterminated = "BEGIN ATOMIC block"
        raw = text[start:stop]
        stripped = raw.lstrip(_WS)
        start += len(raw) - len(stripped)
        line += text.count("\n", line_pos, start)
        line_pos = start
        statements.append(Statement(stripped.rstrip(_WS), start, line, unterminated))
    return statements


def _chunks(text: str) -> list[tuple[int, int, bool, str | None]]:
    """The pieces between top-level semicolons, as ``(start, stop, content, unterminated)``.

    A ``;`` is top-level when no parenthesis is open, as psql decides: rules
    with several actions (``DO INSTEAD (NOTIFY a; NOTIFY b)``) keep theirs. A
    ``)`` with nothing open is ignored, so the depth never goes negative.

    ``text[start:stop]`` is the piece without its ``;``. ``content`` is False
    when the piece holds only blanks and complete comments. ``unterminated``
    names the region (or "parenthesis") left open at the end, for the last
    piece only.
    """
    chunks: list[tuple[int, int, bool, str | None]] = []
    start, content = 0, False
    unterminated: str | None = None
    depth = 0
    non_ws = _NON_WS_RE.search
    for kind, s, e, ok in _lex(text):
        if kind is CODE:
            pos = s
            while True:
                semi = text.find(";", pos, e)
                end = e if semi < 0 else semi
                depth = _paren_depth(text, pos, end, depth)
                if semi < 0:
                    break
                pos = semi + 1
                if depth == 0:  # a top-level `;`
                    content = content or non_ws(text, s, semi) is not None
                    chunks.append((start, semi, content, None))
                    start = s = pos
                    content = False
            content = content or non_ws(text, s, e) is not None
        elif not ok:
            content = True
            unterminated = "block comment" if kind is COMMENT else kind
        elif kind is not COMMENT:
            content = True
    if unterminated is None and depth > 0:
        unterminated = "parenthesis"
    chunks.append((start, len(text), content, unterminated))
    return chunks


def _paren_depth(text: str, pos: int, end: int, depth: int) -> int:
    """The parenthesis depth after the code ``text[pos:end]``, entered at ``depth``."""
    closes = text.count(")", pos, end)
    if closes <= depth:  # no `)` can meet depth 0 here: counting is exact
        return depth + text.count("(", pos, end) - closes
    for m in _PAREN_RE.finditer(text, pos, end):
        depth = depth + 1 if m.group() == "(" else max(0, depth - 1)
    return depth


_PAREN_RE = re.compile(r"[()]")


class _RoutineBody:
    """Tracks the open BEGIN ATOMIC / CASE blocks of a routine, fed piece by piece.

    An ``end`` closes the innermost CASE; it closes a BEGIN ATOMIC block only
    right after a body statement's ``;`` (or after ``ATOMIC`` itself, for an
    empty body). Anywhere else in the body ``end`` is a bare column label
    (``SELECT 1 end;``, allowed since PostgreSQL 14), which psql's own
    heuristic takes for the block's end.
    """

    def __init__(self) -> None:
        self.blocks: list[str] = []  # open "atomic" and "case" blocks, innermost last
        self.paren = 0  # parenthesis depth; only depth 0 counts
        self.prev = ""  # previous token: lowercased word, character, or region kind

    @property
    def atomic(self) -> bool:
        """Whether a BEGIN ATOMIC block is still open."""
        return bool(self.blocks)

    def feed(self, text: str, start: int, stop: int) -> None:
        """Account for the statement text ``text[start:stop]`` (no top-level `;` in it)."""
        blocks = self.blocks
        for kind, s, e, _ in _lex(text, start, stop):
            if kind is COMMENT:
                continue  # comments are transparent: BEGIN /* x */ ATOMIC
            if kind is not CODE:
                self.prev = kind
                continue
            for m in _ROUTINE_TOKEN_RE.finditer(text, s, e):
                token = m.group()
                if len(token) <= 6 and token.isascii():  # the longest keyword is "atomic"
                    token = token.lower()
                if token == "(":
                    self.paren += 1
                elif token == ")":
                    self.paren = max(0, self.paren - 1)
                elif self.paren == 0:
                    if token == "atomic":
                        if self.prev == "begin":
                            blocks.append("atomic")
                    elif blocks and token in ("case", "end") and self.prev not in (".", "as"):
                        if token == "case":
                            blocks.append("case")
                        elif blocks[-1] == "case" or self.prev in (";", "atomic"):
                            blocks.pop()
                self.prev = token


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


class UnknownParameter(KeyError):
    """``:name`` markers name variables that the namespace does not have.

    ``names`` lists every missing name, in order of first appearance, so one
    error reports them all.
    """

    def __init__(self, names: list[str]) -> None:
        # One argument, the list, so that copy and pickle rebuild the error.
        super().__init__(list(names))
        self.names = list(names)

    def __str__(self) -> str:  # KeyError's own __str__ would quote the message
        markers = ", ".join(f":{name}" for name in self.names)
        if len(self.names) == 1:
            what = f"SQL parameter {markers} is not defined"
            fix = f"Define {self.names[0]} in the notebook (for example {self.names[0]} = 42)"
        else:
            what = f"SQL parameters {markers} are not defined"
            fix = f"Define {', '.join(self.names)} in the notebook"
        return (
            f"{what}. {fix} before running the cell. If a colon is not meant as a "
            "parameter: write x::type for a cast, keep a literal ':' inside quotes "
            "('a:b'); a colon directly inside subscript brackets is a slice "
            "(arr[lo:hi]), and a variable there goes in parentheses (arr[(:i)])."
        )


# What matters in code for parameters: casts (consumed whole, so `::x` is no
# parameter), `:name` (Python identifier rules), and brackets for the slice rule.
_PARAM_CODE_RE = re.compile(r"::|:[^\W\d]\w*|[()\[\]]")

# Kinds of open brackets.
_PAREN = 0
_SUBSCRIPT = 1  # arr[...]: a colon directly inside is a slice separator
_ARRAY = 2  # ARRAY[...] constructor: :name inside is a parameter


def _parameter_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each ``:name`` parameter marker in ``text``.

    The slice rule: a colon directly inside subscript brackets (``arr[1:2]``,
    ``arr[lo:hi]``, ``arr[:n]``) separates slice bounds and is never a
    parameter, because there ``hi`` is a column. Inside the brackets of an
    ``ARRAY[...]`` constructor, or inside parentheses within any brackets,
    ``:name`` is a parameter again: ``ARRAY[:a, :b]``, ``arr[(:i)]``. A ``[``
    opens a constructor when only blanks and comments separate it from a
    preceding keyword ARRAY, or when it follows ``[`` or ``,`` inside a
    constructor (``ARRAY[[:a], [:b]]``); any other ``[`` is a subscript.
    After a ``.``, ``array`` is a column of that name (``t.array[1:n]``,
    ``(t).array[1:n]``), so its ``[`` is a subscript too.
    """
    spans: list[tuple[int, int]] = []
    stack: list[int] = []  # open brackets; unbalanced closers are ignored
    before = -1  # index of the last character before this piece that is not blank or comment
    before_piece = 0  # start of the code piece that holds `before`
    for kind, s, e, _ in _lex(text):
        if kind is COMMENT:
            continue
        if kind is not CODE:
            before = e - 1  # a closing quote or `$`: neither ARRAY nor `[` nor `,`
            before_piece = e  # ... and nothing before it is code of that piece
            continue
        for m in _PARAM_CODE_RE.finditer(text, s, e):
            start = m.start()
            token = text[start]
            if token == ":":
                # The pattern matched `::` (a cast) or `:name`.
                if text[start + 1] != ":" and (not stack or stack[-1] != _SUBSCRIPT):
                    spans.append(m.span())
            elif token == "(":
                stack.append(_PAREN)
            elif token == "[":
                j = _last_non_blank(text, start)
                if j >= s:
                    opens_array = _opens_array(text, j, s, stack)
                else:
                    opens_array = _opens_array(text, before, before_piece, stack)
                stack.append(_ARRAY if opens_array else _SUBSCRIPT)
            elif token == ")":
                if stack and stack[-1] == _PAREN:
                    stack.pop()
            elif stack and stack[-1] != _PAREN:  # "]"
                stack.pop()
        j = _last_non_blank(text, e)
        if j >= s:
            before, before_piece = j, s
    return spans


def _opens_array(text: str, j: int, piece: int, stack: list[int]) -> bool:
    """Whether a ``[`` whose previous significant character is ``text[j]`` opens ARRAY[...].

    ``piece`` is where the code around ``text[j]`` starts: a ``.`` is looked
    for before the word ARRAY only there, not inside a comment or string.
    """
    if j < 0:
        return False
    if stack and stack[-1] == _ARRAY and text[j] in "[,":
        return True
    word = text[j - 4 : j + 1]
    if not (
        j - 4 >= piece
        and word.isascii()
        and word.lower() == "array"
        and (j == 4 or not _is_ident_char(text[j - 5]))
    ):
        return False
    dot = _last_non_blank(text, j - 4)
    return dot < piece or text[dot] != "."


def _is_ident_char(char: str) -> bool:
    return char >= "\x80" or char in _ASCII_IDENT_CONT


def find_parameters(text: str) -> list[str]:
    """Names of the ``:name`` parameters in ``text``, in order of first appearance.

    Same rules as :func:`bind_parameters`; works on a whole cell or on one
    statement. A repeated name is listed once.
    """
    return list(dict.fromkeys(text[start + 1 : end] for start, end in _parameter_spans(text)))


def bind_parameters(
    statement_text: str, namespace: Mapping[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """Turn ``:name`` markers into psycopg placeholders, with values from ``namespace``.

    Returns ``(query, params)`` for ``cursor.execute(query, params)``. Each
    ``:name`` becomes ``%(name)s``, so psycopg sends the value as a server-side
    bind parameter: the value is never pasted into the SQL, and a string such
    as ``"'; DROP TABLE t; --"`` is only ever a string. A name used twice is
    one parameter. Lists work with ``= ANY(:ids)`` (psycopg sends an array);
    ``IN :ids`` does not. Values are passed as they are: psycopg adapts them
    (a dict needs ``psycopg.types.json.Jsonb(d)``).

    With no parameters the text comes back unchanged, with ``None``: psycopg
    then does not interpret ``%`` at all. With parameters, every ``%`` in the
    text (in strings, comments, ``LIKE 'a%'``, the ``%`` operator) is doubled
    to ``%%``, because psycopg scans the whole query for placeholders.

    What is a parameter: ``:`` then a name (a letter or underscore, then
    letters, digits, underscores), in code. Left alone: ``::`` casts
    (``x::text``), ``:=``, any colon inside strings, quoted identifiers,
    comments and dollar quotes, and a colon directly inside subscript
    brackets, which is a slice (``arr[lo:hi]``; write ``arr[(:i)]`` for a
    variable there; details in ``_parameter_spans``). Outside those places
    ``:name`` is never valid SQL, so no escape syntax is needed.

    Raises :class:`UnknownParameter`, naming all missing names at once, when
    a name is not in ``namespace``.
    """
    if ":" not in statement_text:  # no marker can be there: skip the lexer
        return statement_text, None
    spans = _parameter_spans(statement_text)
    if not spans:
        return statement_text, None

    names = list(dict.fromkeys(statement_text[start + 1 : end] for start, end in spans))
    missing = [name for name in names if name not in namespace]
    if missing:
        raise UnknownParameter(missing)

    pieces: list[str] = []
    pos = 0
    for start, end in spans:
        pieces.append(statement_text[pos:start].replace("%", "%%"))
        pieces.append(f"%({statement_text[start + 1 : end]})s")
        pos = end
    pieces.append(statement_text[pos:].replace("%", "%%"))
    return "".join(pieces), {name: namespace[name] for name in names}
