"""Jinja2 templates in cells, with every ``{{ value }}`` sent as a bound parameter.

JupySQL renders ``{{ var }}`` into the SQL text, so a value can change the
statement (injection). Here Jinja2 runs the template's control flow
(``{% for %}``, ``{% if %}``, macros, ``{% set %}`` blocks: their output is
template text, so SQL), but each ``{{ expression }}`` becomes a server-side
parameter, as jinjasql does:

* ``WHERE n > {{ low }}``: ``low`` is bound with its Python type;
* ``WHERE name = '{{ who }}'``: the quotes make it text, bound as a string
  (``'%{{ part }}%'`` is the string pieces joined around it);
* ``{{ col | identifier }}``: a table or column name, quoted by psycopg
  (``{{ ('sales', 'orders') | identifier }}`` for ``"sales"."orders"``);
* ``{{ fragment | unsafe_sql }}``: pasted as typed, JupySQL's behaviour, and
  as unsafe as it: never with text that a user of the notebook can choose;
* ``IN {{ items }}`` with a tuple: one bound value per item, in parentheses.

A snippet saved with ``--save`` keeps the values it was saved with, as
JupySQL's does: :func:`inline` writes them in as literals quoted by psycopg.

Where a bound value cannot work (the place of a table or column name), the
cell fails before anything runs with a line naming the filter to use, rather
than run a different query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["PARAMETER_PREFIX", "Rendered", "TemplateError", "inline", "is_template", "render"]

#: The ``:name`` of the n-th bound value is PARAMETER_PREFIX + n.
PARAMETER_PREFIX = "__tpl_"

# A marker for a bound value in the rendered text: NUL never reaches the server.
_MARK = "\0"
_MARK_RE = re.compile(r"\0(\d+)\0")

_LEXEME_RE = re.compile(
    r"(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))"
    r"|(?P<estring>[Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z))"
    r"|(?P<string>'(?:[^']|'')*(?:'|\Z))"
    r'|(?P<qident>"(?:[^"]|"")*(?:"|\Z))'
    r"|(?P<dollar>(\$(?:[A-Za-z_]\w*)?\$).*?(?:\6|\Z))",
    re.DOTALL,
)
# Words after which a name, not a value, goes.
_NAME_BEFORE_RE = re.compile(r"(?:\b(?:from|join|into|update|table|by|as)|\.)\s*\Z", re.IGNORECASE)
# A type's modifiers, numeric(16, {{ p }}) after :: or CAST's AS: the server's grammar
# takes constants there, never a parameter.
_TYPE_MODIFIER_RE = re.compile(
    r"(?:::|\bas\s)\s*[A-Za-z_][\w ]*\(\s*(?:\d+\s*,\s*)*\Z", re.IGNORECASE
)
_LIST_BEFORE_RE = re.compile(r"(?:\b(?:select|distinct)|,)\s*\Z", re.IGNORECASE)
_LIST_AFTER_RE = re.compile(r"\s*(?:,|\bfrom\b|\bas\b|\Z)", re.IGNORECASE)
_SELECT_RE = re.compile(r"\bselect\b", re.IGNORECASE)
_FROM_RE = re.compile(r"\b(?:from|where)\b", re.IGNORECASE)

_USE_A_FILTER = (
    "write {{ %s | identifier }} for a table or column name, or {{ %s | unsafe_sql }} to "
    "paste SQL text (unsafe: only for text you wrote yourself)"
)


_ARRAY_LITERAL = (
    "this {{ }} looks like an array literal such as '{{1,2}}', not a template value: write "
    "ARRAY[[1,2]], or turn templates off: %config LunepoolMagic.templates = False"
)


_CHANGED_TEMPLATE_TEXT = (
    "a {{ }} holds a macro's or {% set %} block's SQL turned into plain text (by a filter, "
    "or joined with ~), so the values inside it would be sent as one text: use the output "
    "as it is, {{ name }}, and filter the values inside the block instead"
)


class TemplateError(ValueError):
    """The template cannot be rendered, or not safely; the message says what to write."""


class Rendered(NamedTuple):
    """A rendered cell: SQL with ``:__tpl_N`` parameters, their values, and how each was
    written (``{{ low }}``, for messages; ``{{ value }}`` where a loop makes it uncertain)."""

    sql: str
    values: dict[str, Any]
    labels: dict[str, str]


class _Sql(str):
    """Text a filter made into SQL (a quoted identifier, or raw SQL): pasted, not bound."""


def is_template(text: str) -> bool:
    """Whether ``text`` uses Jinja2 syntax (``{{ }}``, ``{% %}``)."""
    return "{{" in text or "{%" in text


def render(text: str, namespace: Mapping[str, Any]) -> Rendered:
    """Render the template ``text`` with ``namespace``; values become bound parameters."""
    import jinja2

    text, comments = _hide_comments(text)
    if not is_template(text):  # the braces were all in comments
        return Rendered(_show_comments(text, comments), {}, {})
    values: list[Any] = []
    expressions = _expressions(text)
    if any(not re.search(r"[A-Za-z_]", e) for e in expressions):
        raise TemplateError(_ARRAY_LITERAL)

    def mark(value: Any) -> str:
        values.append(value)
        return f"{_MARK}{len(values) - 1}{_MARK}"

    def finalize(value: Any) -> str:
        if isinstance(value, _Sql):
            return str(value)
        if isinstance(value, str) and _MARK in value:
            raise TemplateError(_CHANGED_TEMPLATE_TEXT)
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined: raises UndefinedError, naming the variable
        if isinstance(value, tuple):
            # JupySQL's `sex IN {{ sexes }}` with a tuple: one bound value per item.
            if not value or any(isinstance(item, (tuple, list, dict)) for item in value):
                raise TemplateError(_ARRAY_LITERAL)
            return "(" + ", ".join(mark(item) for item in value) + ")"
        return mark(value)

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, finalize=finalize, keep_trailing_newline=True
    )
    # What the template's own text makes (a macro's output, a {% set %} block, the
    # cell) is SQL: literal text and markers, the values in it bound. Jinja joins
    # every such output with env.concat, and nothing else: a value reaches the
    # text only through finalize.
    env.concat = _template_text  # type: ignore[method-assign]
    env.filters["identifier"] = _identifier
    env.filters["unsafe_sql"] = lambda value: _Sql(str(value))
    try:
        rendered = env.from_string(text).render(dict(namespace))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error on line {exc.lineno}: {exc.message} (a cell with {{{{ or "
            "{% is a Jinja2 template; %config LunepoolMagic.templates = False turns that off)"
        ) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template: {exc.message} (no variable of that name)") from None
    return _bind(_show_comments(rendered, comments), values, expressions, "{%" in text)


def _template_text(pieces: Any) -> str:
    return _Sql("".join(pieces))


def inline(rendered: Rendered) -> str:
    """The rendered SQL with each bound value written in as a literal, quoted by psycopg.

    For ``--save``: JupySQL replaces a snippet's ``{{ }}`` when it is saved,
    so a later change of the variable does not change the snippet. psycopg's
    quoting keeps each value a value (no injection), as binding does.
    """
    from psycopg import sql

    def literal(match: re.Match[str]) -> str:
        value = rendered.values[match.group(1)]
        try:
            # Not stripped: psycopg writes -3 as " -3", so `n -{{ x }}` cannot become `n --3`.
            return sql.Literal(value).as_string(None)
        except Exception:  # psycopg raises several kinds for a type it cannot adapt
            raise TemplateError(
                f"--save keeps a snippet's values as SQL literals, and a {type(value).__name__} "
                "has none: bind it at use instead, with :name in the snippet"
            ) from None

    return _PARAMETER_RE.sub(literal, rendered.sql)


_PARAMETER_RE = re.compile(rf":({PARAMETER_PREFIX}\d+)\b")


# A comment while it is out of Jinja's sight: its number between two \x01.
_HIDDEN_RE = re.compile(r"\x01(\d+)\x01")


def _hide_comments(text: str) -> tuple[str, list[str]]:
    """``text`` with its SQL comments replaced by numbered stand-ins, and the comments.

    Braces in a comment are not a template (a commented-out ``{{ x }}`` must
    not need ``x``); what is in a comment never reaches a result anyway.
    """
    comments: list[str] = []

    def hide(match: re.Match[str]) -> str:
        if match.lastgroup != "comment":
            return match.group()
        comments.append(match.group())
        return f"\x01{len(comments) - 1}\x01"

    return _LEXEME_RE.sub(hide, text), comments


def _show_comments(text: str, comments: list[str]) -> str:
    if not comments:
        return text
    return _HIDDEN_RE.sub(lambda m: comments[int(m.group(1))], text)


def _expressions(text: str) -> list[str]:
    # The source of each {{ }} in order, for messages; a loop repeats the last ones.
    return [m.group(1).strip() for m in re.finditer(r"\{\{(.*?)\}\}", text, re.DOTALL)]


def _identifier(value: Any) -> _Sql:
    from psycopg import sql

    parts = value if isinstance(value, (tuple, list)) else (value,)
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise TemplateError(f"| identifier needs a name (or a tuple of names), not {value!r}")
    return _Sql(sql.Identifier(*parts).as_string(None))


def _bind(rendered: str, values: list[Any], expressions: list[str], control: bool) -> Rendered:
    """Turn the markers into ``:__tpl_N`` (in code) or text pieces (in a string literal).

    ``control``: the template has ``{% %}`` tags, which may skip or repeat an
    expression, so no value's label is certain.
    """
    bound: dict[str, Any] = {}

    def name_of(index: int) -> str:
        return f"{PARAMETER_PREFIX}{index}"

    # The source of each bound value, for messages; only certain when no loop
    # repeated an expression (then each {{ }} gave exactly one value).
    sources = [e for e in expressions if not re.search(r"\|\s*(?:identifier|unsafe_sql)\b", e)]

    def what(index: int) -> str:
        return sources[index] if len(sources) == len(values) else "value"

    out: list[str] = []
    code: list[str] = []  # the code so far, strings and comments blanked
    pos = 0
    for lexeme in _LEXEME_RE.finditer(rendered):
        stretch = rendered[pos : lexeme.start()]
        out.append(_code(stretch, "".join(code), values, bound, what, name_of))
        code += [stretch, " "]
        text = lexeme.group()
        kind = lexeme.lastgroup
        if _MARK not in text:
            out.append(text)
        elif kind == "string":
            out.append(_string(text, values, bound, name_of))
        else:
            index = int(_MARK_RE.search(text).group(1))  # type: ignore[union-attr]
            where = {"qident": "a quoted name", "estring": "an E'' string"}.get(kind or "", "")
            where = where or "a dollar-quoted body"
            expr = what(index)
            raise TemplateError(
                f"{{{{ {expr} }}}} inside {where} cannot be bound as a parameter; "
                + _USE_A_FILTER % (expr, expr)
            )
        pos = lexeme.end()
    out.append(_code(rendered[pos:], "".join(code), values, bound, what, name_of))

    def label(name: str) -> str:
        expr = "value" if control else what(int(name[len(PARAMETER_PREFIX) :]))
        return f"{{{{ {expr} }}}}"

    labels = {name: label(name) for name in bound}
    return Rendered("".join(out), bound, labels)


def _in_select_list(preceding: str) -> bool:
    """Whether the code ends inside a SELECT's list, outside any parentheses."""
    selects = list(_SELECT_RE.finditer(preceding))
    if not selects:
        return False
    tail = preceding[selects[-1].end() :]
    return tail.count("(") == tail.count(")") and not _FROM_RE.search(tail)


def _code(
    text: str, before: str, values: list[Any], bound: dict[str, Any], what: Any, name_of: Any
) -> str:
    """A stretch of code: each marker becomes a parameter, unless a name must go there."""
    pieces: list[str] = []
    pos = 0
    for mark in _MARK_RE.finditer(text):
        index = int(mark.group(1))
        preceding = _MARK_RE.sub("0", before + text[: mark.start()])
        following = _MARK_RE.sub("0", text[mark.end() :])
        value = values[index]
        expr = what(index)
        if not preceding.strip() or preceding.rstrip().endswith(";"):
            raise TemplateError(
                f"{{{{ {expr} }}}} starts the statement, and a bound value cannot be SQL: "
                f"write {{{{ {expr} | unsafe_sql }}}} to run the text it holds (unsafe: only "
                "for text you wrote yourself), or save the query: %%sql --save NAME"
            )
        if _NAME_BEFORE_RE.search(preceding[-40:]) or following.startswith("."):
            raise TemplateError(
                f"{{{{ {expr} }}}} stands where a name goes, and values are bound as "
                "parameters here; " + _USE_A_FILTER % (expr, expr)
            )
        if _TYPE_MODIFIER_RE.search(preceding[-80:]):
            raise TemplateError(
                f"{{{{ {expr} }}}} is a type's modifier, as in numeric(16, 2), where the "
                f"server takes a number written out, not a parameter: write "
                f"{{{{ {expr} | int | unsafe_sql }}}} (int makes any value a number)"
            )
        if (
            isinstance(value, str)
            and _LIST_BEFORE_RE.search(preceding[-40:])
            and _LIST_AFTER_RE.match(following)
            and _in_select_list(preceding)
        ):
            raise TemplateError(
                f"{{{{ {expr} }}}} is a select-list item: as a bound value it would be the "
                f"text {value!r}, not a column; write {{{{ {expr} | identifier }}}} for a "
                f"column, or '{{{{ {expr} }}}}' for the text"
            )
        pieces.append(text[pos : mark.start()])
        pieces.append(f":{name_of(index)}")
        bound[name_of(index)] = value
        pos = mark.end()
    pieces.append(text[pos:])
    return "".join(pieces)


def _string(text: str, values: list[Any], bound: dict[str, Any], name_of: Any) -> str:
    """``'..{{ v }}..'``: the value as text, joined to the literal's pieces."""
    inner = text[1:-1]
    parts = _MARK_RE.split(inner)  # literal, index, literal, index, ...
    if len(parts) == 3 and parts[0] == "" and parts[2] == "":
        index = int(parts[1])
        bound[name_of(index)] = _as_text(values[index])
        return f":{name_of(index)}"  # untyped, like the literal it replaces
    joined: list[str] = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if part:
                joined.append(f"'{part}'")
        else:
            index = int(part)
            bound[name_of(index)] = _as_text(values[index])
            joined.append(f"CAST(:{name_of(index)} AS text)")
    return "(" + " || ".join(joined) + ")"


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)
