"""Naming the parameter a server error is about, in the cell's own terms.

Pure text functions of notebook/messages.py; the lines they make on a real
server are checked in tests/magic/test_jupysql_cells.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lunepool_magic.notebook import messages

LABELS = {"__tpl_0": "{{ low }}", "__tpl_1": "{{ high }}"}
TEXT = "SELECT :__tpl_0 + x + :__tpl_1 + :y"


@pytest.mark.parametrize(
    ("index", "moved", "under"),
    [
        (0, 0, "S"),  # before any label
        (7, 7, "{"),  # inside :__tpl_0: the start of its label
        (12, 7, "{"),
        (16, 17, "+"),  # after the first label: moved by its length difference
        (23, 23, "{"),  # inside the second one
        (33, 36, ":"),  # :y, not a label, after both
    ],
)
def test_relabel_moves_the_caret_with_the_text(index: int, moved: int, under: str) -> None:
    text, at = messages.relabel(TEXT, index, LABELS)
    assert text == "SELECT {{ low }} + x + {{ high }} + :y"
    assert at == moved
    assert text[at] == under


def test_relabel_without_a_position_and_with_a_longer_name_beside() -> None:
    text, at = messages.relabel("SELECT :__tpl_1, :__tpl_10", None, {"__tpl_1": "{{ a }}"})
    assert (text, at) == ("SELECT {{ a }}, :__tpl_10", None)


def _error(context: str) -> SimpleNamespace:
    return SimpleNamespace(diag=SimpleNamespace(context=context))


def test_the_failed_parameter_is_numbered_by_first_appearance() -> None:
    sql = "SELECT %(b)s, %(a)s, %(b)s, 100%%"
    assert messages.failed_parameter(_error("unnamed portal parameter $2 = '...'"), sql) == (
        2,
        "a",
    )
    assert messages.failed_parameter(_error("unnamed portal parameter $3 = '...'"), sql) is None


def test_only_the_outermost_context_line_is_the_cells_parameter() -> None:
    sql = "SELECT f(%(a)s)"
    inner = "unnamed portal parameter $1 = '...'\nPL/pgSQL function f(integer) line 3 at EXECUTE"
    assert messages.failed_parameter(_error(inner), sql) is None
    assert messages.failed_parameter(_error(""), sql) is None


def test_the_identifier_hint_is_for_a_known_template_text_only() -> None:
    line = messages.parameter_line
    hint = (
        "($1 is {{ low }}, bound as a text value: write {{ low | identifier }} if it names "
        "a column)"
    )
    assert line(1, "__tpl_0", LABELS, "price", "22P02") == hint
    assert line(1, "__tpl_0", LABELS, 5, "22P02") == "($1 is {{ low }})"
    assert line(1, "__tpl_0", LABELS, "price", "22003") == "($1 is {{ low }})"
    assert line(1, "__tpl_9", {"__tpl_9": "{{ value }}"}, "p", "22P02") == "($1 is {{ value }})"
    assert line(2, "y", LABELS, "price", "22P02") == "($2 is :y)"
