"""What a ``%sql`` cell shows when something goes wrong, and the notices it prints.

One job: turn errors and connection events into short, psql-like text. The
errors are exceptions with ``_render_traceback_``, which is IPython's hook
for "show these lines instead of a Python traceback": the cell still fails
(a kernel reports ``status: error``, nbval and ``run_cell`` see the error),
but the user reads the server's message, not our call stack.

Nothing here imports IPython, psycopg or pandas; errors from psycopg are
read through their ``diag`` attributes only.
"""

from __future__ import annotations

import re
import traceback
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from lunepool_magic.units import count_of, duration, size

__all__ = [
    "QueryCancelled",
    "SqlCellError",
    "caret_lines",
    "count_of",
    "duration",
    "failed_parameter",
    "notice_line",
    "original_position",
    "parameter_line",
    "relabel",
    "server_error_lines",
    "size",
    "statement_place",
    "statement_position",
]

# Messages printed by the magic; one place so tests and docs agree.
SESSION_LOST = (
    "Note: this cell runs on a new connection; the previous one was lost, and with it "
    "its session state (SET, temporary tables, an open transaction)."
)
CONNECTION_LOST = "The connection to the server was lost; the next cell opens a new one."
TRANSACTION_OPEN = (
    "Transaction open: COMMIT or ROLLBACK to end it (its connection stays reserved "
    "for this notebook until then)."
)
TRANSACTION_ABORTED = (
    "Transaction aborted: ROLLBACK to continue (every statement fails until then)."
)

# Lines longer than this are cut around the error position, as psql does.
_MAX_LINE = 100
# A server message longer than this (the server echoes the rest of an
# unterminated string "at or near", however long) is cut.
_MAX_MESSAGE = 1000
_MAX_MESSAGE_LINES = 20

# What PostgreSQL cannot receive in text: NUL (libpq ends the string there,
# so the statement would be cut short) and lone surrogates (not characters;
# no encoding can send them).
_UNSENDABLE_RE = re.compile("[\x00\ud800-\udfff]")


class SqlCellError(Exception):
    """A ``%sql`` cell failed; IPython shows ``lines`` instead of a traceback.

    ``str()`` is the same text, so code that runs the magic itself (tests,
    ``run_line_magic``) gets the message too. The original exception, if
    any, is ``__cause__``; the magic re-raises it when
    ``%config LunepoolMagic.show_traceback = True``.
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.warnings: list[str] = []  # notices to print before the error

    def _render_traceback_(self) -> list[str]:
        return self.lines


def interrupted(what: str, place: str, lost: bool) -> str:
    """The line of an interrupted statement: cancelled, or cut off if the cancel failed."""
    if not lost:
        return f"Interrupted: {what} cancelled on the server{place}."
    # The cancel request got no answer (a frozen server, a dead network path), so
    # the connection was closed: the server may still be running the statement.
    return (
        f"Interrupted{place}: the server did not answer the cancel request, so the "
        f"connection was closed; the {what} may still be running there until the server "
        "notices (SELECT pg_cancel_backend(pid) from another session stops it)."
    )


def masked_traceback(exc: BaseException, mask: Callable[[str], str]) -> list[str]:
    """``exc``'s traceback as Python prints it, from where it was raised, ``mask``-ed.

    For errors that leave a cell with a traceback: the frames start inside the
    library (not at the cell, whose source line may hold a URL and password),
    locals are never shown (IPython's ``%xmode Verbose`` would show them), and
    every line passes through ``mask``.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return mask(text).rstrip("\n").splitlines()


class CellUsageError(ValueError):
    """The cell asks for something impossible (an unknown alias, a missing job).

    The magic shows it as IPython's one-line UsageError, without a traceback.
    """


class QueryCancelled(SqlCellError):
    """The cell was interrupted (Ctrl-C, the notebook's stop button)."""


def unsendable_lines(text: str, first_line: int, what: str = "the statement") -> list[str] | None:
    """Error lines if ``text`` holds a character PostgreSQL cannot receive, else None.

    A NUL would make libpq silently cut the statement short (``DELETE FROM t
    <NUL> WHERE ...`` would delete every row); a lone surrogate (text decoded
    with ``errors="surrogateescape"``) cannot be encoded at all. ``first_line``
    is the cell line ``text`` starts on.
    """
    found = _UNSENDABLE_RE.search(text)
    if found is None:
        return None
    line = first_line + text.count("\n", 0, found.start())
    if found.group() == "\x00":
        char = "a NUL character (\\x00)"
        why = "PostgreSQL cannot receive it in SQL text (libpq would cut the statement there)"
    else:
        char = f"a lone surrogate ({found.group()!r})"
        why = "it is not a character and cannot be encoded as UTF-8"
    return [
        f"ERROR:  {what} holds {char} on line {line}; {why}",
        "HINT:  remove it; to send arbitrary bytes, bind a bytes variable as :name (bytea)",
        "(nothing ran)",
    ]


def unsendable_char(text: str) -> str | None:
    """What ``text`` holds that libpq cannot take (for messages that must not repeat it)."""
    found = _UNSENDABLE_RE.search(text)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "a lone surrogate"


def _shorten(text: str) -> str:
    """``text`` cut to a readable size, saying how much was left out."""
    lines = text.split("\n")
    if len(text) <= _MAX_MESSAGE and len(lines) <= _MAX_MESSAGE_LINES:
        return text
    kept = "\n".join(lines[:_MAX_MESSAGE_LINES])[:_MAX_MESSAGE]
    return f"{kept}... ({len(text) - len(kept)} more characters)"


def statement_place(index: int, count: int, line: int) -> str:
    """Where a failure happened: ' in statement 2 of 3 (line 4); statement 1 ran, ...'.

    Empty for a one-statement cell: the caret (or the cell itself) says it all.
    """
    if count == 1:
        return ""
    parts = []
    if index == 1:
        parts.append("statement 1 ran")
    elif index > 1:
        parts.append(f"statements 1-{index} ran")
    after = count - index - 1
    if after == 1:
        parts.append(f"statement {count} did not run")
    elif after > 1:
        parts.append(f"statements {index + 2}-{count} did not run")
    return f" in statement {index + 1} of {count} (line {line}); " + ", ".join(parts)


_PLACEHOLDER_RE = re.compile(r"%\((\w+)\)s|%%")


def original_position(sent_position: int, bound_sql: str, has_params: bool) -> int:
    """Map the server's error position back to the statement as the user wrote it.

    ``sent_position`` is the server's 1-based character position in the text
    psycopg sent. Without parameters that is the statement itself. With
    parameters, the text we gave psycopg had ``:name`` turned into
    ``%(name)s`` and every other ``%`` doubled, and psycopg sent ``$1, $2,
    ...`` (numbered by first appearance) and single ``%``. Walking the
    placeholders gives, for each piece, its offset in the sent text and in
    the user's text (``:name`` is ``1 + len(name)`` characters there).
    Returns a 0-based index into the user's statement text.
    """
    target = sent_position - 1
    if not has_params:
        return target
    numbers: dict[str, int] = {}
    sent = orig = prev = 0  # offsets in the sent text, the user's text, bound_sql
    for m in _PLACEHOLDER_RE.finditer(bound_sql):
        gap = m.start() - prev
        if target < sent + gap:
            return orig + (target - sent)
        sent += gap
        orig += gap
        name = m.group(1)
        if name is None:  # %% -> % (one character in both texts)
            sent_len = orig_len = 1
        else:
            number = numbers.setdefault(name, len(numbers) + 1)
            sent_len, orig_len = 1 + len(str(number)), 1 + len(name)
        if target < sent + sent_len:
            return orig  # inside a parameter: point at its colon
        sent += sent_len
        orig += orig_len
        prev = m.end()
    return orig + (target - sent)


_COLON_NAME_RE = re.compile(r":(\w+)")


def relabel(text: str, index: int | None, labels: Mapping[str, str]) -> tuple[str, int | None]:
    """``text`` with each ``:name`` found in ``labels`` written as its label instead
    (a template's ``:__tpl_0`` as ``{{ low }}``), and ``index`` moved to match: an
    index inside a replaced name points at the start of its label."""
    pieces: list[str] = []
    pos = shift = 0  # shift: how much longer the new text is, up to pos
    moved = index
    for m in _COLON_NAME_RE.finditer(text):
        label = labels.get(m.group(1))
        if label is None:
            continue
        if index is not None and m.start() <= index < m.end():
            moved = m.start() + shift
        pieces += [text[pos : m.start()], label]
        pos = m.end()
        shift += len(label) - (m.end() - m.start())
        if index is not None and index >= m.end():
            moved = index + shift
    pieces.append(text[pos:])
    return "".join(pieces), moved


# The last CONTEXT line (the outermost) when the cell's own parameter failed; an inner
# line would be a function's query, whose $N are not the cell's.
_SENT_PARAMETER_RE = re.compile(r"unnamed portal parameter \$(\d+)\b")


def failed_parameter(exc: Any, bound_sql: str) -> tuple[int, str] | None:
    """The parameter the server's CONTEXT names (``unnamed portal parameter $2 =
    '...'``), as its number and the name it has in ``bound_sql``, if any."""
    context = getattr(getattr(exc, "diag", None), "context", None) or ""
    m = _SENT_PARAMETER_RE.match(context.rsplit("\n", 1)[-1])
    if m is None:
        return None
    number = int(m.group(1))
    names: list[str] = []  # psycopg numbers them by first appearance (original_position)
    for placeholder in _PLACEHOLDER_RE.finditer(bound_sql):
        name = placeholder.group(1)
        if name is not None and name not in names:
            names.append(name)
    return (number, names[number - 1]) if 0 < number <= len(names) else None


# The server could not read a value as the type it needed (invalid_text_representation).
_INVALID_TEXT = "22P02"


def parameter_line(
    number: int, name: str, labels: Mapping[str, str], value: Any, sqlstate: str | None
) -> str:
    """Which parameter of the cell the server's ``$N`` is: ``($2 is :low)``.

    A template's text value the server could not read as its column's type is
    most often a column name written as in JupySQL, where ``{{ }}`` pasted text:
    the line then names the filter that pastes it as a name. The value itself
    is never shown (it may be a secret).
    """
    written = labels.get(name, f":{name}")
    guessed = name in labels and written != "{{ value }}"
    if guessed and isinstance(value, str) and sqlstate == _INVALID_TEXT:
        expression = written[3:-3]
        return (
            f"(${number} is {written}, bound as a text value: write "
            f"{{{{ {expression} | identifier }}}} if it names a column)"
        )
    return f"(${number} is {written})"


def caret_lines(text: str, index: int, first_line: int, label: str = "LINE") -> list[str]:
    """psql's 'LINE n: <code>' and a caret under ``text[index]``.

    ``first_line`` is the cell line on which ``text`` starts. Long lines are
    cut around the caret; tabs are kept in the caret's indent and wide
    characters count double, so the caret lands under the character.
    """
    index = max(0, min(index, len(text)))
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    if end < 0:
        end = len(text)
    line = text[start:end].rstrip("\r")
    column = index - start
    number = first_line + text.count("\n", 0, start)
    if len(line) > _MAX_LINE:
        lo = max(0, min(column - _MAX_LINE // 2, len(line) - _MAX_LINE))
        hi = lo + _MAX_LINE
        line = ("..." if lo else "") + line[lo:hi] + ("..." if hi < len(line) else "")
        column = column - lo + (3 if lo else 0)
    prefix = f"{label} {number}: " if label == "LINE" else f"{label}:  "
    indent = "".join(_blank_for(c) for c in line[:column])
    return [prefix + line, " " * len(prefix) + indent + "^"]


def _blank_for(char: str) -> str:
    if char == "\t":
        return "\t"
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return "  "
    return " "


def server_error_lines(
    exc: Any, statement_text: str, index: int | None, first_line: int
) -> list[str]:
    """The server's side of an error, psql style.

    ``ERROR:  message``, then ``LINE n:`` with a caret when the server gave
    a position (``index``: 0-based in ``statement_text``, already mapped by
    :func:`original_position`), then DETAIL, HINT, the failing query inside
    a function (with its own caret) and CONTEXT. An error without a server
    message (a lost connection) shows psycopg's text.
    """
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if not primary:
        text = str(exc).strip() or type(exc).__name__
        return [f"ERROR:  {_shorten(text)}"]
    lines = [f"{diag.severity or 'ERROR'}:  {_shorten(primary)}"]
    if index is not None:
        lines += caret_lines(statement_text, index, first_line)
    if diag.message_detail:
        lines.append(f"DETAIL:  {_shorten(diag.message_detail)}")
    if diag.message_hint:
        lines.append(f"HINT:  {diag.message_hint}")
    if diag.internal_query:
        internal = _int_or_none(diag.internal_position)
        if internal is not None:
            lines += caret_lines(diag.internal_query, internal - 1, 1, label="QUERY")
        else:
            lines.append(f"QUERY:  {diag.internal_query}")
    if diag.context:
        lines.append(f"CONTEXT:  {diag.context}")
    return lines


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def statement_position(exc: Any) -> int | None:
    """The server's 1-based error position in the statement, if it gave one."""
    diag = getattr(exc, "diag", None)
    return _int_or_none(getattr(diag, "statement_position", None))


def notice_line(diag: Any) -> str:
    """A server notice (RAISE NOTICE, 'table does not exist, skipping') as psql shows it."""
    line = f"{diag.severity or 'NOTICE'}:  {diag.message_primary}"
    if diag.message_detail:
        line += f"\nDETAIL:  {diag.message_detail}"
    if diag.message_hint:
        line += f"\nHINT:  {diag.message_hint}"
    return line


# ------------------------------------------------------------------ numbers
