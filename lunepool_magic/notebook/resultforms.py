"""JupySQL's ResultSet habits on our results: noticed in a cell's code, explained in one line.

JupySQL's ``%sql`` gave a ResultSet; ours gives a pandas DataFrame (or a
polars DataFrame, or an Arrow table). Three ResultSet forms are valid code on
a DataFrame that silently does something else: ``for row in result`` (column
names, not rows; also ``list(result)``, ``tuple``, ``enumerate`` and
``zip(*result)``), ``result.plot()`` (pandas' plot, not JupySQL's line chart)
and ``result.keys`` without a call (a method, not the column names). Neither
the user's code nor pandas is changed: before a cell runs, :class:`FormCheck`
looks for these forms on a name that holds a result of ``%sql`` and prints,
once per form, what it does here, what JupySQL did and what to write instead;
then the cell runs as written.

* :class:`ResultRegistry`: the results the magic handed out, by identity and
  weakly (it never keeps one alive).
* :class:`FormCheck`: the check, as an IPython input transformer (a look at
  the text, so a cell that names no live result is never walked) and an AST
  transformer (one walk), installed by :mod:`lunepool_magic.magic_jupysql`.
  It never raises: IPython drops a transformer that does.
"""

from __future__ import annotations

import ast
import contextlib
import re
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lunepool_magic.notebook.options import OptionError, parse_line

__all__ = ["FORMS", "FormCheck", "ResultRegistry", "Use", "kind_of", "note_for"]

#: The forms, by the key that makes each note once per kernel.
FORMS = ("iterate", "plot", "keys")

# Where a form could be, read from the text: `in NAME` ending the iterable (loops,
# comprehensions), `NAME.plot(`, `NAME.keys` without a call. A cell where none is on a
# live result, for a note still due, is not walked. Each pattern starts with a literal,
# so the scan stays fast on a big cell.
_IN_NAME = re.compile(r"in\s+([^\W\d]\w*)\s*(?=[:)\]},]|if\b|for\b|async\b|$)", re.MULTILINE)
_ATTRIBUTE = re.compile(r"\.\s*(?:(plot)\s*\(|(keys)\b(?!\s*\())")
# The builtins that iterate their arguments as JupySQL's rows: `list(result)`, `zip(*result)`.
_ROW_CALLS = frozenset({"list", "tuple", "enumerate", "zip"})
_ROW_CALL = re.compile(r"(?:list|tuple|enumerate|zip)\s*\(([^()]{0,200})\)")
_ARGUMENT_NAME = re.compile(r"(?:^|,)\s*\*?\s*([^\W\d]\w*)\s*(?=,|$)")
_NAME_BEFORE = re.compile(r"([^\W\d]\w*)\s*$")
# pandas' DataFrame.plot arguments that say the pandas meaning is intended.
_PANDAS_PLOT_KEYWORDS = frozenset({"x", "y", "kind"})


def kind_of(value: Any) -> str | None:
    """``"pandas"``, ``"polars"`` or ``"arrow"`` for a result table, else None."""
    cls = type(value)
    root = cls.__module__.split(".", 1)[0]
    if cls.__name__ == "DataFrame" and root in ("pandas", "polars"):
        return root
    if cls.__name__ == "Table" and root == "pyarrow":
        return "arrow"
    return None


class ResultRegistry:
    """The results handed to the user, remembered by identity through weak references.

    An object that is not a result table, or cannot be weakly referenced, is
    not remembered. Entries go when their object is collected.
    """

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref[Any]] = {}

    def remember(self, value: Any) -> None:
        """Remember ``value`` if it is a result table (a DataFrame or Arrow table)."""
        if kind_of(value) is None or self.holds(value):
            return
        key, refs = id(value), self._refs

        def forget(ref: weakref.ref[Any]) -> None:
            if refs.get(key) is ref:
                del refs[key]

        try:
            refs[key] = weakref.ref(value, forget)
        except TypeError:
            return

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is a result handed out (and still alive)."""
        ref = self._refs.get(id(value))
        return ref is not None and ref() is value

    def __len__(self) -> int:
        return len(self._refs)


@dataclass(frozen=True)
class Use:
    """One JupySQL form on a name: ``form`` is one of :data:`FORMS`; ``target`` a loop's target."""

    form: str
    name: str
    target: str = ""
    line: int = 0
    column: int = 0
    #: For a call that iterates the result (``list(result)``, ``zip(*result)``): the
    #: call as written, with ``_HERE`` where the result's name stands.
    call: str = ""


#: Where the result's name stands in :attr:`Use.call`.
_HERE = "__result__"


def _pandas_quantities(frame: Any) -> tuple[list[str], list[str]]:
    """The columns JupySQL's plot took as quantities, and those pandas' plot leaves out.

    JupySQL's test for a quantity is a value with ``__sub__`` (numbers, dates,
    bools, Decimal); pandas plots numeric dtypes only, so a ``numeric``
    column (Decimal objects) is dropped from its lines without a word.
    """
    from decimal import Decimal

    found: list[str] = []
    decimals: list[str] = []
    for name in frame.columns:
        column = frame[name]
        if getattr(column, "ndim", 1) != 1:
            continue  # duplicated column names: JupySQL renamed them; not guessed here
        if column.dtype.kind in "biufcmM":
            found.append(str(name))
        elif column.dtype == object:
            first = column.first_valid_index()
            sample = None if first is None else column.loc[first]
            if hasattr(sample, "__sub__") and not isinstance(sample, str):
                found.append(str(name))
                if isinstance(sample, Decimal):
                    decimals.append(str(name))
    return found, decimals


def _quantity_columns(value: Any, kind: str, enough: int = 2) -> list[str]:
    """The first ``enough`` columns JupySQL's plot took as quantities, for polars and Arrow."""
    found: list[str] = []
    if kind == "polars":
        for name, dtype in value.schema.items():
            if dtype.is_numeric() or dtype.is_temporal() or str(dtype) == "Boolean":
                found.append(str(name))
            if len(found) >= enough:
                break
    elif kind == "arrow":
        import pyarrow as pa

        for field in value.schema:
            t = field.type
            kinds = ("is_integer", "is_floating", "is_decimal", "is_temporal", "is_boolean")
            if any(getattr(pa.types, check)(t) for check in kinds):
                found.append(field.name)
            if len(found) >= enough:
                break
    return found


def note_for(use: Use, kind: str, value: Any = None) -> str | None:
    """The one line for ``use`` on a result of ``kind`` (``value`` if known), or None if not due.

    ``result.plot()`` on a known result with fewer than two quantity columns
    draws what JupySQL drew (the one column against the row number): no note.
    """
    n, t = use.name, use.target
    if use.form == "iterate":
        what, rows, shape = {
            "pandas": ("the DataFrame's column names", f"{n}.itertuples(index=False)", ""),
            "polars": ("the polars DataFrame's columns (Series)", f"{n}.iter_rows()", ""),
            "arrow": ("the Arrow table's columns", f"{n}.to_pylist()", " (a dict per row)"),
        }[kind]
        if not use.call:
            written, instead = f"for {t} in {n}", f"for {t} in {rows}{shape}"
        else:
            written = use.call.replace(_HERE, n)
            instead = use.call.replace(_HERE, rows) + shape
            if f"*{_HERE}" in use.call and kind == "arrow":  # zip(*dicts) zips their keys
                instead = f"{n}.to_pydict().values() (a list per column)"
        return f"note: {written} iterates {what}; JupySQL iterated rows: write {instead}"
    if use.form == "keys":
        here, names = {
            "pandas": (f"{n}.keys is pandas' DataFrame.keys method", f"list({n}.columns)"),
            "polars": ("a polars DataFrame has no keys", f"{n}.columns"),
            "arrow": ("an Arrow table has no keys", f"{n}.column_names"),
        }[kind]
        return f"note: {here}; JupySQL's {n}.keys was the list of column names: write {names}"
    # plot
    pandas = n if kind == "pandas" else f"{n}.to_pandas()"
    call = f"{pandas}.plot(x='<its first numeric column>')"
    if value is not None and kind == "pandas":
        quantities, decimals = _pandas_quantities(value)
        if len(quantities) < 2 and not decimals:
            return None  # the same line as JupySQL's
        if decimals:
            pandas += ".astype({" + ", ".join(f"{c!r}: float" for c in decimals) + "})"
        x = f"x={quantities[0]!r}" if len(quantities) >= 2 else ""
        call = f"{pandas}.plot({x})"
    elif value is not None:
        quantities = _quantity_columns(value, kind)
        x = f"x={quantities[0]!r}" if len(quantities) >= 2 else ""
        call = f"{pandas}.plot({x})"
    jupysql = "JupySQL's drew its first numeric column as x and the other numeric ones as lines"
    if kind == "pandas":
        return (
            f"note: {n}.plot() is pandas' DataFrame.plot, a line per numeric column against "
            f"the row number; {jupysql}: write {call}"
        )
    here = "polars' plot (Altair)" if kind == "polars" else "not available on an Arrow table"
    return f"note: {n}.plot() is {here}; {jupysql}, with matplotlib: write {call}"


def _to_stderr(line: str) -> None:
    # Flushed: in a kernel the note then arrives before anything the cell prints.
    print(line, file=sys.stderr, flush=True)


class FormCheck(ast.NodeTransformer):
    """The per-cell check: notes JupySQL forms on result names; the tree is returned unchanged.

    ``namespace`` gives the user's namespace; ``magic_names`` are the line
    magics that are ours (``sql``, ``lunesql``); ``default_output`` is the
    output a ``%sql`` line without ``--output`` gives; ``transformers`` is
    the shell's list of AST transformers.

    :meth:`scan_text` (an input transformer, run on every cell) reads the
    text and puts this check into ``transformers`` only for a cell that
    names a live result where a form could be, or has a ``%sql`` line, and
    takes it out otherwise: IPython walks every cell's tree again
    (fix_missing_locations) while any AST transformer is registered, which
    would cost more than the check itself.
    """

    def __init__(
        self,
        registry: ResultRegistry,
        namespace: Callable[[], Mapping[str, Any]],
        magic_names: Iterable[str],
        default_output: Callable[[], str],
        transformers: Callable[[], list[Any]],
        write: Callable[[str], None] = _to_stderr,
    ) -> None:
        self.registry = registry
        self.namespace = namespace
        self.magic_names = frozenset(magic_names)
        # How IPython writes `%sql ...` in the transformed text.
        self._magic_calls = tuple(f"run_line_magic({name!r}" for name in sorted(self.magic_names))
        self.default_output = default_output
        self.transformers = transformers
        self.write = write
        self.shown: set[str] = set()

    def scan_text(self, lines: list[str]) -> list[str]:
        """IPython input transformer: whether this cell's tree is to be checked; lines unchanged."""
        # An input transformer that raises fails the user's cell: fail open instead.
        try:
            due = self.due("".join(lines))
        except Exception:
            due = False
        with contextlib.suppress(Exception):
            self._place(due)
        return lines

    def due(self, text: str) -> bool:
        """Whether the cell ``text`` (IPython's transformed text) may hold a form to note."""
        if len(self.shown) == len(FORMS):
            return False
        names = {name for form, name in _candidates(text) if form not in self.shown}
        if not names:
            return False
        if any(call in text for call in self._magic_calls):
            return True  # `result = %sql ...` in this very cell
        if not len(self.registry):
            return False
        namespace = self.namespace()
        return any(self.registry.holds(namespace.get(name)) for name in names)

    def _place(self, due: bool) -> None:
        transformers = self.transformers()
        if due and self not in transformers:
            transformers.append(self)
        elif not due and self in transformers:
            transformers.remove(self)

    def remove(self) -> None:
        """Take the check out of the shell's AST transformers (on unload)."""
        self._place(False)

    def visit(self, node: Any) -> Any:
        """IPython AST transformer: print the notes due for this cell; return ``node`` as it is."""
        try:
            for form, line in self.notes(node):
                self.write(line)
                self.shown.add(form)
        except Exception:
            pass  # fail open: a note is never worth stopping the user's cell
        return node

    def notes(self, tree: ast.AST) -> list[tuple[str, str]]:
        """The (form, line) pairs due for ``tree`` (a parsed cell): one per form not yet shown."""
        uses, results = self._scan(tree)
        if not uses:
            return []
        namespace = self.namespace()
        lines: list[tuple[str, str]] = []
        due = set(FORMS) - self.shown
        for use in sorted(uses, key=lambda u: (u.line, u.column)):
            if use.form not in due:
                continue
            value = None
            if use.name in results:
                kind: str | None = results[use.name]
            else:
                value = namespace.get(use.name)
                kind = kind_of(value) if self.registry.holds(value) else None
            if kind is None:
                continue
            line = note_for(use, kind, value)
            if line is not None:
                lines.append((use.form, line))
                due.discard(use.form)
        return lines

    def _scan(self, tree: ast.AST) -> tuple[list[Use], dict[str, str]]:
        """One walk: the forms on plain names, and the names this cell binds to %sql results."""
        uses: list[Use] = []
        results: dict[str, str] = {}
        called: set[int] = set()
        # ast.walk goes breadth first: a Call is seen before its func, an Assign before its value.
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in _ROW_CALLS:
                    uses += _row_call_uses(func.id, node)
                if not isinstance(func, ast.Attribute):
                    continue
                called.add(id(func))
                if func.attr == "plot" and isinstance(func.value, ast.Name):
                    if not _PANDAS_PLOT_KEYWORDS & {k.arg for k in node.keywords}:
                        uses.append(_use("plot", func.value, node))
                elif func.attr == "run_line_magic":
                    self._magic_out(node, results)
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                if isinstance(node.iter, ast.Name):
                    uses.append(_use("iterate", node.iter, node, _target(node.target)))
            elif isinstance(node, ast.comprehension):
                if isinstance(node.iter, ast.Name):
                    uses.append(_use("iterate", node.iter, node.iter, _target(node.target)))
            elif isinstance(node, ast.Attribute):
                if (
                    node.attr == "keys"
                    and isinstance(node.ctx, ast.Load)
                    and isinstance(node.value, ast.Name)
                    and id(node) not in called
                ):
                    uses.append(_use("keys", node.value, node))
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                output = self._magic_result(node.value)
                if output is not None:
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            results[target.id] = output
        return uses, results

    def _magic_line(self, call: ast.Call) -> str | None:
        """The line of ``get_ipython().run_line_magic('sql', LINE)``, if ``call`` is one of ours."""
        func = call.func
        if not (isinstance(func, ast.Attribute) and func.attr == "run_line_magic"):
            return None
        if len(call.args) < 2:
            return None
        name, line = call.args[0], call.args[1]
        if not (isinstance(name, ast.Constant) and name.value in self.magic_names):
            return None
        if not (isinstance(line, ast.Constant) and isinstance(line.value, str)):
            return None
        return line.value

    def _output(self, opts: Any) -> str:
        output = opts.output or self.default_output()
        return output if output in ("pandas", "polars", "arrow") else "pandas"

    def _magic_result(self, call: ast.Call) -> str | None:
        """The output kind ``name = %sql LINE`` gives ``name``, or None if it gives no result."""
        line = self._magic_line(call)
        if line is None:
            return None
        try:
            opts = parse_line(line)
        except OptionError:
            return None
        if opts.out is not None and not opts.out_display:
            return None  # `name = %sql df << ...` stores in df; name gets None
        return self._output(opts)

    def _magic_out(self, call: ast.Call, results: dict[str, str]) -> None:
        """``%sql VAR << ...`` (or ``VAR= <<``, ``--out VAR``): VAR holds a result."""
        line = self._magic_line(call)
        if line is None or ("<<" not in line and "-o" not in line):
            return
        try:
            opts = parse_line(line)
        except OptionError:
            return
        if opts.out is not None:
            results[opts.out] = self._output(opts)


def _candidates(text: str) -> set[tuple[str, str]]:
    """(form, name) for each place in ``text`` that looks like a form (the AST decides)."""
    found = {
        ("iterate", m.group(1)) for m in _IN_NAME.finditer(text) if _starts_a_word(text, m.start())
    }
    for m in _ROW_CALL.finditer(text):
        if _starts_a_word(text, m.start(), "."):  # not `obj.list(...)`
            found.update(("iterate", a.group(1)) for a in _ARGUMENT_NAME.finditer(m.group(1)))
    if ".plot" in text or ".keys" in text or re.search(r"\.\s", text):
        for m in _ATTRIBUTE.finditer(text):
            before = _NAME_BEFORE.search(text, max(0, m.start() - 200), m.start())
            if before:
                found.add(("plot" if m.group(1) else "keys", before.group(1)))
    return found


def _starts_a_word(text: str, at: int, also: str = "") -> bool:
    """Whether ``text[at:]`` starts a word: no name character (nor one of ``also``) before it."""
    if at == 0:
        return True
    before = text[at - 1]
    return not (before.isalnum() or before == "_" or before in also)


def _target(node: ast.expr) -> str:
    """A loop target as written: ``a, b`` rather than ast.unparse's ``(a, b)``."""
    if isinstance(node, ast.Tuple) and node.elts:
        return ", ".join(ast.unparse(element) for element in node.elts)
    return ast.unparse(node)


def _row_call_uses(function: str, call: ast.Call) -> list[Use]:
    """``list(result)``, ``enumerate(result)``, ``zip(*result)``: each plain name iterated."""
    uses = []
    # zip iterates every argument; list, tuple and enumerate their first.
    for i, arg in enumerate(call.args if function == "zip" else call.args[:1]):
        value = arg.value if isinstance(arg, ast.Starred) else arg
        if not isinstance(value, ast.Name):
            continue
        args = list(call.args)
        here = ast.Name(_HERE, ast.Load())
        args[i] = ast.Starred(here, ast.Load()) if isinstance(arg, ast.Starred) else here
        written = ast.unparse(ast.Call(call.func, args, call.keywords))
        use = _use("iterate", value, call)
        uses.append(Use(use.form, use.name, "", use.line, use.column, written))
    return uses


def _use(form: str, name: ast.Name, where: Any, target: str = "") -> Use:
    return Use(form, name.id, target, getattr(where, "lineno", 0), getattr(where, "col_offset", 0))
