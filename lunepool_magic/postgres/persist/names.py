"""Table names as SQL reads them: ``'Sales."Q1"'`` is ``('sales', 'Q1')``.

One place for what a table name is (the ``--table`` option uses it too), how
it is shown back in messages, and how it is spelled for ``to_regclass``. The
name is always sent as quoted identifiers, never pasted into SQL.
"""

from __future__ import annotations

from lunepool_magic.postgres.persist.errors import PersistError

__all__ = ["MAX_IDENTIFIER_BYTES", "display_name", "parse_table_name", "regclass_text"]

#: What PostgreSQL allows in an identifier (NAMEDATALEN - 1), in bytes.
MAX_IDENTIFIER_BYTES = 63


def parse_table_name(text: str) -> tuple[str, ...]:
    """``'Sales."Q1"'`` -> ``('sales', 'Q1')``: SQL's rules for a possibly qualified name.

    Unquoted parts are folded to lower case, as the server folds them;
    double-quoted parts are kept exactly (``""`` is a quote). At most two
    parts (schema and table).
    """
    parts: list[str] = []
    current: list[str] = []
    quoted_part = False
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = i + 1
            chunk = []
            while True:
                close = text.find('"', end)
                if close < 0:
                    raise PersistError(f"unclosed quote in the table name {text!r}")
                chunk.append(text[end:close])
                if text.startswith('"', close + 1):  # "" is a literal quote
                    chunk.append('"')
                    end = close + 2
                    continue
                break
            current.append("".join(chunk))
            quoted_part = True
            i = close + 1
        elif char == ".":
            parts.append(_finish_part(current, quoted_part, text))
            current, quoted_part = [], False
            i += 1
        elif char.isspace():
            raise PersistError(
                f"the table name {text!r} has a space; quote it: '\"My Table\"'",
            )
        else:
            current.append(char.lower())
            i += 1
    parts.append(_finish_part(current, quoted_part, text))
    if len(parts) > 2:
        raise PersistError(f"the table name {text!r} has more than two parts (schema.table)")
    return tuple(parts)


def _finish_part(current: list[str], quoted: bool, text: str) -> str:
    part = "".join(current)
    if not part:
        raise PersistError(f"the table name {text!r} has an empty part")
    if not quoted and not (part[0].isalpha() or part[0] == "_"):
        raise PersistError(
            f"the table name {text!r} does not start with a letter; quote it: '\"{part}\"'"
        )
    return part


def display_name(parts: tuple[str, ...]) -> str:
    """The name as one would type it in SQL (quoted only where needed)."""
    return ".".join(_display_part(p) for p in parts)


def _display_part(part: str) -> str:
    if part.isidentifier() and part == part.lower() and part.isascii():
        return part
    return '"' + part.replace('"', '""') + '"'


def regclass_text(parts: tuple[str, ...]) -> str:
    """Every part quoted, as ``to_regclass`` and ``::regclass`` read a name."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)
