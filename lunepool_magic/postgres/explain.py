"""``%sql --explain`` / ``--analyze``: a query plan as a readable tree with its costly nodes marked.

One job: run ``EXPLAIN (FORMAT JSON[, ANALYZE, BUFFERS])`` on the caller's
connection and turn the JSON into a :class:`Plan`: an indented tree (text in
a terminal, highlighted HTML in a notebook) with the numbers that matter on
each node, and a DataFrame (``plan.frame``) of the same nodes for sorting and
plotting. Nothing here imports IPython.

What the tree shows, per node (numbers on the left, so the tree stays aligned):

* with ``--analyze``: the node's time including its children (``time ms``),
  its own share (``self ms``, ``self %`` of the execution time), rows
  estimated and actual (per loop, as PostgreSQL counts them) and loops. The
  node with the most self time is marked ``◀ slowest``; a node whose actual
  rows differ from the estimate by 10 times or more is marked (``rows ×40
  more than estimated``): the usual root of a bad plan. Nodes that never ran
  say so. Disk reads and temporary files appear as a ``Buffers:`` line where
  they happened, and for the whole query under the root.
* without: the planner's total cost, its own share, estimated rows and
  width; the node with the highest own cost is marked.

Under each node: its conditions (``Filter``, ``Index Cond``, ``Hash Cond``,
...), rows removed by filters, sort method and memory, hash batches.

Times of nodes that run in parallel workers are divided by the number of
processes (workers + leader), so that they compare with the rest of the plan;
a node's own time is its time minus its children's (never below zero).

``--analyze`` executes the statement. It always runs in a transaction that is
rolled back (a savepoint rolled back, inside the notebook's own open
transaction): an ``INSERT``/``UPDATE``/``DELETE`` is measured, and its
changes are undone; the plan says so when the statement modifies data.
(Sequences that ``nextval()`` advanced stay advanced: they are never rolled
back.)
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg

from lunepool_magic.postgres.statement import run

__all__ = ["MISESTIMATE_FACTOR", "Plan", "PlanNode", "explain", "explain_prefix"]

#: Rows this many times off the estimate (either way) are marked.
MISESTIMATE_FACTOR = 10.0

_DETAIL_MAX = 140


def explain_prefix(analyze: bool) -> str:
    """The text put before the statement (its length shifts error positions)."""
    options = "FORMAT JSON, ANALYZE, BUFFERS" if analyze else "FORMAT JSON"
    return f"EXPLAIN ({options}) "


def explain(
    conn: psycopg.Connection[Any],
    statement: str,
    params: Any = None,
    *,
    analyze: bool = False,
) -> Plan:
    """EXPLAIN ``statement`` (psycopg placeholders, ``params``) and return its :class:`Plan`.

    With ``analyze`` the statement runs, inside a transaction (or savepoint)
    that is always rolled back.
    """
    text = explain_prefix(analyze) + statement
    # The query path's run(): the same refusals (NUL in the SQL) and loaders.
    if analyze:
        with conn.transaction(force_rollback=True):
            frame = run(conn, text, params, fast=False).frame
    else:
        frame = run(conn, text, params, fast=False).frame
    if frame is None or frame.empty:  # pragma: no cover (EXPLAIN always returns its row)
        raise psycopg.ProgrammingError("EXPLAIN returned no plan")
    document = frame.iat[0, 0]
    if isinstance(document, str):  # a text loader registered for json
        import json

        document = json.loads(document)
    return Plan.from_json(document[0] if isinstance(document, list) else document, analyze)


# ------------------------------------------------------------------ the tree


@dataclass
class PlanNode:
    """One plan node, with what the tree and ``Plan.frame`` show."""

    id: int
    parent: int | None
    depth: int
    node_type: str  # PostgreSQL's "Node Type": "Seq Scan", "Hash Join", ...
    label: str
    details: list[str]
    startup_cost: float
    total_cost: float
    plan_rows: float
    plan_width: int
    loops: int | None = None  # None without ANALYZE
    actual_rows: float | None = None  # per loop, as PostgreSQL reports it
    actual_ms: float | None = None  # per loop
    total_ms: float | None = None  # the node and its children, all loops (parallel-adjusted)
    self_ms: float | None = None
    self_cost: float = 0.0
    shared_hit: int = 0
    shared_read: int = 0
    temp_read: int = 0
    temp_written: int = 0
    modifies: bool = False
    # Fewer rows than estimated says nothing under a Limit (it stops its input
    # early), nor more rows on a merge join's inner side (rescanned rows count).
    cut_short: bool = False
    rescanned: bool = False
    children: list[PlanNode] = field(default_factory=list)

    @property
    def rows_factor(self) -> float | None:
        """Actual over estimated rows (per loop); None if the node did not run or no ANALYZE."""
        if self.actual_rows is None or not self.loops:
            return None
        return max(self.actual_rows, 1.0) / max(self.plan_rows, 1.0)

    @property
    def misestimate(self) -> str:
        """'rows ×40 more than estimated' (or fewer), when that is far off and meaningful."""
        factor = self.rows_factor
        if factor is None:
            return ""
        if factor >= MISESTIMATE_FACTOR and not self.rescanned:
            return f"rows ×{factor:,.0f} more than estimated"
        if factor <= 1 / MISESTIMATE_FACTOR and not self.cut_short:
            return f"rows ×{1 / factor:,.0f} fewer than estimated"
        return ""

    @property
    def own_io(self) -> bool:
        """True if this node itself (not its children) read blocks or used temporary files."""
        own_read = self.shared_read - sum(c.shared_read for c in self.children)
        own_temp = (self.temp_read + self.temp_written) - sum(
            c.temp_read + c.temp_written for c in self.children
        )
        return own_read > 0 or own_temp > 0


@dataclass
class Plan:
    """A query plan: ``nodes`` (depth-first), timings, and its renderings.

    ``str(plan)``/``repr(plan)`` is the text tree, ``plan._repr_html_()`` the
    notebook's; ``plan.frame`` a DataFrame with one row per node;
    ``plan.json`` the server's document.
    """

    json: dict[str, Any]
    analyze: bool
    nodes: list[PlanNode]
    planning_ms: float | None = None
    execution_ms: float | None = None
    triggers: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, document: dict[str, Any], analyze: bool) -> Plan:
        nodes: list[PlanNode] = []
        _walk(document["Plan"], None, 0, 1, nodes)
        plan = cls(
            json=document,
            analyze=analyze,
            nodes=nodes,
            planning_ms=document.get("Planning Time"),
            execution_ms=document.get("Execution Time"),
        )
        for trigger in document.get("Triggers", []):
            name = trigger.get("Trigger Name", "?")
            where = f" on {trigger['Relation']}" if trigger.get("Relation") else ""
            plan.triggers.append(
                f"Trigger {name}{where}: {trigger.get('Time', 0):,.2f} ms, "
                f"{trigger.get('Calls', 0):,} calls"
            )
        return plan

    # ------------------------------------------------------------ summaries

    @property
    def root(self) -> PlanNode:
        return self.nodes[0]

    @property
    def modifies(self) -> bool:
        """True if the statement writes (a ModifyTable node: INSERT/UPDATE/DELETE/MERGE)."""
        return any(node.modifies for node in self.nodes)

    @property
    def hottest(self) -> PlanNode:
        """The node with the most self time (ANALYZE) or the highest own cost."""
        if self.analyze:
            return max(self.nodes, key=lambda n: n.self_ms or 0.0)
        return max(self.nodes, key=lambda n: n.self_cost)

    @property
    def misestimated(self) -> list[PlanNode]:
        """Nodes whose actual rows are MISESTIMATE_FACTOR times off the estimate, or more."""
        return [node for node in self.nodes if node.misestimate]

    @property
    def frame(self) -> pd.DataFrame:
        """One row per node, depth-first: the numbers of the tree, for sorting and plotting."""
        rows = []
        total = self._time_base()
        for n in self.nodes:
            rows.append(
                {
                    "node": n.id,
                    "parent": n.parent,
                    "depth": n.depth,
                    "label": n.label,
                    "startup_cost": n.startup_cost,
                    "total_cost": n.total_cost,
                    "self_cost": n.self_cost,
                    "plan_rows": n.plan_rows,
                    "plan_width": n.plan_width,
                    "actual_rows": n.actual_rows,
                    "loops": n.loops,
                    "total_ms": n.total_ms,
                    "self_ms": n.self_ms,
                    "self_pct": (
                        100.0 * n.self_ms / total if n.self_ms is not None and total else None
                    ),
                    "rows_factor": n.rows_factor,
                    "shared_hit": n.shared_hit,
                    "shared_read": n.shared_read,
                    "temp_read": n.temp_read,
                    "temp_written": n.temp_written,
                    "details": "\n".join(n.details),
                }
            )
        frame = pd.DataFrame(rows).set_index("node")
        if not self.analyze:
            frame = frame.drop(
                columns=["actual_rows", "loops", "total_ms", "self_ms", "self_pct", "rows_factor"]
            )
            frame = frame.drop(columns=["shared_hit", "shared_read", "temp_read", "temp_written"])
        return frame

    def _time_base(self) -> float:
        if self.execution_ms:
            return float(self.execution_ms)
        return float(self.root.total_ms or 0.0)

    # ------------------------------------------------------------ rendering

    def _lines(self) -> list[tuple[str, str]]:
        """(kind, text) lines; kind is 'head', 'hot', 'warn', 'node' or 'detail'."""
        out: list[tuple[str, str]] = []
        if self.analyze:
            head = "EXPLAIN ANALYZE"
            if self.planning_ms is not None:
                head += f" · planning {self.planning_ms:,.2f} ms"
            if self.execution_ms is not None:
                head += f" · execution {self.execution_ms:,.2f} ms"
        else:
            head = "EXPLAIN (estimates only; --analyze runs the statement and measures it)"
        out.append(("head", head))
        if self.analyze and self.modifies:
            out.append(
                (
                    "head",
                    "The statement ran in a transaction that was rolled back: "
                    "its changes were undone.",
                )
            )
        out.append(("head", ""))

        columns = self._columns()
        widths = [
            max(len(title), *(len(cells[i]) for cells in columns[1]))
            for i, title in enumerate(columns[0])
        ]
        gutter = " " * (sum(widths) + 2 * len(widths))
        out.append(
            (
                "head",
                "  ".join(t.rjust(w) for t, w in zip(columns[0], widths, strict=True)) + "  node",
            )
        )
        hot = self.hottest
        base = self._time_base()
        prefixes = _tree_prefixes(self.nodes)
        for node, cells in zip(self.nodes, columns[1], strict=True):
            numbers = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
            prefix, continuation = prefixes[node.id]
            marks = []
            kind = "node"
            if node is hot and (node.self_ms or node.self_cost):
                if self.analyze:
                    share = 100.0 * (node.self_ms or 0.0) / base if base else 0.0
                    marks.append(f"◀ slowest: {share:.0f}% of the time")
                else:
                    share = (
                        100.0 * node.self_cost / self.root.total_cost if self.root.total_cost else 0
                    )
                    marks.append(f"◀ highest cost: {share:.0f}% of the total")
                kind = "hot"
            if node.misestimate:
                marks.append(node.misestimate)
                kind = "hot" if kind == "hot" else "warn"
            if self.analyze and node.loops == 0:
                marks.append("(never executed)")
            label = node.label + ("  " + " · ".join(marks) if marks else "")
            out.append((kind, f"{numbers}  {prefix}{label}"))
            details = list(node.details)
            buffers = _buffers_line(node, root=node.parent is None)
            if buffers:
                details.append(buffers)
            for detail in details:
                if len(detail) > _DETAIL_MAX:
                    detail = detail[: _DETAIL_MAX - 1] + "…"
                out.append(("detail", f"{gutter}{continuation}{detail}"))
        for trigger in self.triggers:
            out.append(("head", trigger))
        return out

    def _columns(self) -> tuple[list[str], list[list[str]]]:
        if self.analyze:
            titles = ["time ms", "self ms", "self %", "rows est", "rows actual", "loops"]
            base = self._time_base()
            cells = []
            for n in self.nodes:
                if not n.loops:
                    cells.append(["", "", "", _count(n.plan_rows), "", "0"])
                    continue
                pct = 100.0 * (n.self_ms or 0.0) / base if base else 0.0
                cells.append(
                    [
                        f"{n.total_ms or 0.0:,.2f}",
                        f"{n.self_ms or 0.0:,.2f}",
                        f"{pct:.1f}%",
                        _count(n.plan_rows),
                        _count(n.actual_rows or 0.0),
                        f"{n.loops:,}",
                    ]
                )
            return titles, cells
        titles = ["cost", "self cost", "rows est", "width"]
        cells = [
            [f"{n.total_cost:,.2f}", f"{n.self_cost:,.2f}", _count(n.plan_rows), str(n.plan_width)]
            for n in self.nodes
        ]
        return titles, cells

    def text(self) -> str:
        """The plan as an indented text tree."""
        return "\n".join(line for _, line in self._lines())

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        styles = {
            "head": "color:#555",
            "hot": "color:#b00;font-weight:bold;background:#fee",
            "warn": "color:#a50",
            "node": "",
            "detail": "color:#777",
        }
        body = []
        for kind, line in self._lines():
            escaped = html.escape(line)
            style = styles[kind]
            body.append(f'<span style="{style}">{escaped}</span>' if style else escaped)
        return (
            '<pre style="font-family:monospace;font-size:12px;line-height:1.35;'
            'white-space:pre;overflow-x:auto">' + "\n".join(body) + "</pre>"
        )


def _count(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _buffers_line(node: PlanNode, *, root: bool) -> str:
    """'Buffers: shared hit=1 read=2, temp read=3 written=4' (including the children's).

    Only on the root (the whole query) and on nodes that read from disk or
    used temporary files themselves: everywhere else it would repeat.
    """
    if not (root or node.own_io):
        return ""
    parts = []
    shared = []
    if node.shared_hit:
        shared.append(f"hit={node.shared_hit:,}")
    if node.shared_read:
        shared.append(f"read={node.shared_read:,}")
    if shared:
        parts.append("shared " + " ".join(shared))
    temp = []
    if node.temp_read:
        temp.append(f"read={node.temp_read:,}")
    if node.temp_written:
        temp.append(f"written={node.temp_written:,}")
    if temp:
        parts.append("temp " + " ".join(temp))
    return "Buffers: " + ", ".join(parts) if parts else ""


def _tree_prefixes(nodes: list[PlanNode]) -> dict[int, tuple[str, str]]:
    """node id -> (prefix before its label, prefix of its detail lines)."""
    out: dict[int, tuple[str, str]] = {}

    def visit(node: PlanNode, ancestors: str, last: bool, is_root: bool) -> None:
        if is_root:
            prefix, below = "", ""
        else:
            prefix = ancestors + ("└─ " if last else "├─ ")
            below = ancestors + ("   " if last else "│  ")
        detail = below + ("│  " if node.children else "   ")
        out[node.id] = (prefix, detail)
        for i, child in enumerate(node.children):
            visit(child, below, i == len(node.children) - 1, False)

    visit(nodes[0], "", True, True)
    return out


_AGGREGATE_NAMES = {
    "Hashed": "HashAggregate",
    "Sorted": "GroupAggregate",
    "Mixed": "MixedAggregate",
}

_CONDITIONS = (
    "Hash Cond",
    "Merge Cond",
    "Index Cond",
    "Recheck Cond",
    "Join Filter",
    "Filter",
    "TID Cond",
    "One-Time Filter",
)
_COUNTS = (
    "Rows Removed by Index Recheck",
    "Rows Removed by Join Filter",
    "Rows Removed by Filter",
    "Heap Fetches",
)


def _label(node: dict[str, Any]) -> str:
    kind = node["Node Type"]
    if kind == "Aggregate":
        kind = _AGGREGATE_NAMES.get(node.get("Strategy", ""), "Aggregate")
        mode = node.get("Partial Mode")
        if mode in ("Partial", "Finalize"):
            kind = f"{mode} {kind}"
    elif kind == "SetOp" and node.get("Strategy") == "Hashed":
        kind = "HashSetOp"
    elif kind == "ModifyTable":
        kind = node.get("Operation", kind)
    join = node.get("Join Type")
    if join and join != "Inner":
        kind = kind.replace(" Join", f" {join} Join") if " Join" in kind else f"{kind} {join} Join"
    if node.get("Parallel Aware"):
        kind = "Parallel " + kind
    if node.get("Scan Direction") == "Backward":
        kind += " Backward"
    label = kind
    if node.get("Index Name"):
        label += f" using {node['Index Name']}"
    target = (
        node.get("Relation Name")
        or node.get("CTE Name")
        or node.get("Function Name")
        or node.get("Tuplestore Name")
    )
    alias = node.get("Alias")
    if target:
        schema = node.get("Schema")
        label += f" on {schema + '.' if schema else ''}{target}"
        if alias and alias != target:
            label += f" {alias}"
    elif alias and kind.endswith("Scan"):
        label += f" on {alias}"
    subplan = node.get("Subplan Name")
    if subplan:
        label = f"{subplan}: {label}"
    return str(label)


def _details(node: dict[str, Any]) -> list[str]:
    out = []
    for key in _CONDITIONS:
        if node.get(key):
            out.append(f"{key}: {node[key]}")
    for key in ("Sort Key", "Group Key", "Presorted Key"):
        if node.get(key):
            out.append(f"{key}: {', '.join(node[key])}")
    for key in _COUNTS:
        if node.get(key):
            out.append(f"{key}: {node[key]:,}")
    if node.get("Sort Method"):
        line = f"Sort Method: {node['Sort Method']}"
        if node.get("Sort Space Used") is not None:
            line += f"  {node.get('Sort Space Type', 'Memory')}: {node['Sort Space Used']:,}kB"
        out.append(line)
    if node.get("Hash Batches") is not None:
        line = f"Buckets: {node.get('Hash Buckets', 0):,}  Batches: {node['Hash Batches']:,}"
        if node.get("Peak Memory Usage") is not None:
            line += f"  Memory Usage: {node['Peak Memory Usage']:,}kB"
        out.append(line)
    if node.get("Workers Planned") is not None:
        line = f"Workers Planned: {node['Workers Planned']}"
        if node.get("Workers Launched") is not None:
            line += f"  Launched: {node['Workers Launched']}"
        out.append(line)
    return out


def _walk(
    raw: dict[str, Any], parent: PlanNode | None, depth: int, processes: int, out: list[PlanNode]
) -> PlanNode:
    """Build the node for ``raw`` and its subtree (depth-first into ``out``)."""
    node = PlanNode(
        id=len(out),
        parent=parent.id if parent is not None else None,
        depth=depth,
        node_type=raw.get("Node Type", ""),
        label=_label(raw),
        details=_details(raw),
        startup_cost=float(raw.get("Startup Cost", 0.0)),
        total_cost=float(raw.get("Total Cost", 0.0)),
        plan_rows=float(raw.get("Plan Rows", 0.0)),
        plan_width=int(raw.get("Plan Width", 0)),
        shared_hit=int(raw.get("Shared Hit Blocks", 0)),
        shared_read=int(raw.get("Shared Read Blocks", 0)),
        temp_read=int(raw.get("Temp Read Blocks", 0)),
        temp_written=int(raw.get("Temp Written Blocks", 0)),
        modifies=raw.get("Node Type") == "ModifyTable",
    )
    if "Actual Loops" in raw:
        node.loops = int(raw["Actual Loops"])
        node.actual_rows = float(raw.get("Actual Rows", 0.0))
        node.actual_ms = float(raw.get("Actual Total Time", 0.0))
        # Under Gather, loops count every process: divide to get comparable time.
        node.total_ms = node.actual_ms * node.loops / processes
    if parent is not None:
        node.cut_short = parent.cut_short or parent.label.endswith("Limit")
        node.rescanned = ("Merge" in parent.label and " Join" in parent.label) and raw.get(
            "Parent Relationship"
        ) == "Inner"
    out.append(node)
    if raw.get("Node Type") in ("Gather", "Gather Merge"):
        workers = raw.get("Workers Launched", raw.get("Workers Planned", 0)) or 0
        child_processes = int(workers) + 1
    else:
        child_processes = processes
    for child in raw.get("Plans", []):
        node.children.append(_walk(child, node, depth + 1, child_processes, out))
    node.self_cost = max(0.0, node.total_cost - sum(c.total_cost for c in node.children))
    if node.total_ms is not None:
        children_ms = sum(c.total_ms or 0.0 for c in node.children)
        node.self_ms = max(0.0, node.total_ms - children_ms)
    return node
