"""``%sql --explain`` / ``--analyze``: plans as trees with the costly nodes marked.

Against a real server for what EXPLAIN returns and what ``--analyze`` must
not change; on canned JSON plans for the arithmetic (self time, parallel
workers, loops, misestimates) so that it is checked exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)

from lunepool_magic.notebook.options import OptionError, parse_line
from lunepool_magic.postgres.explain import Plan, explain


@pytest.fixture
def table(pg_admin: psycopg.Connection) -> Iterator[str]:
    """A committed table of 1,000 rows, visible to pg_admin too."""
    name = f"lpm_explain_{uuid.uuid4().hex[:8]}"
    pg_admin.execute(
        f"CREATE TABLE {name} AS SELECT g AS id, g % 10 AS bucket FROM generate_series(1, 1000) g"
    )
    pg_admin.execute(f"ANALYZE {name}")
    try:
        yield name
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {name}")


def count(admin: psycopg.Connection, table: str) -> int:
    return int(admin.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# ---------------------------------------------------------------- through the magic


def test_explain_shows_estimates_as_a_tree(ip: Shell, table: str) -> None:
    plan = ip.value(f"%sql --explain SELECT bucket, count(*) FROM {table} GROUP BY bucket")
    assert isinstance(plan, Plan) and not plan.analyze
    text = str(plan)
    assert text.startswith("EXPLAIN (estimates only")
    assert "cost" in text and "rows est" in text and "rows actual" not in text
    assert "HashAggregate" in text and f"└─ Seq Scan on {table}" in text
    assert "◀ highest cost" in text
    assert "Group Key: bucket" in text
    html = plan._repr_html_()
    assert html.startswith("<pre") and "font-weight:bold" in html


def test_analyze_measures_and_marks_the_slowest_node_and_misestimates(ip: Shell) -> None:
    # A set-returning function whose arguments the planner cannot see is estimated
    # at 1,000 rows: 100,000 is a ×100 misestimate.
    plan = ip.value("%sql --analyze SELECT count(*) FROM generate_series(1, (SELECT 100000)) g")
    assert plan.analyze and plan.execution_ms is not None and plan.planning_ms is not None
    scan = next(n for n in plan.nodes if n.node_type == "Function Scan")
    assert scan.actual_rows == 100000 and scan.plan_rows == 1000 and scan.loops == 1
    assert scan.misestimate == "rows ×100 more than estimated"
    assert plan.misestimated == [scan]
    text = str(plan)
    for title in ("time ms", "self ms", "self %", "rows est", "rows actual", "loops"):
        assert title in text
    assert "rows ×100 more than estimated" in text
    assert "◀ slowest:" in text and "% of the time" in text
    assert "Buffers:" in text or "Buffers" not in plan.json["Plan"]  # root line when reported
    frame = plan.frame
    assert list(frame.index) == list(range(len(plan.nodes)))
    assert {"total_ms", "self_ms", "self_pct", "rows_factor", "loops"} <= set(frame.columns)
    assert frame["self_ms"].sum() == pytest.approx(plan.root.total_ms, rel=1e-6)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO {t} SELECT id + 1000, bucket FROM {t}",
        "UPDATE {t} SET bucket = -1",
        "DELETE FROM {t}",
        "WITH gone AS (DELETE FROM {t} RETURNING *) SELECT count(*) FROM gone",
    ],
)
def test_analyze_of_a_data_modifying_statement_changes_nothing(
    ip: Shell, table: str, pg_admin: psycopg.Connection, statement: str
) -> None:
    run = ip.ok("%sql --analyze " + statement.format(t=table))
    assert "ran in a transaction that was rolled back" in str(run.value)
    assert run.value.modifies
    assert count(pg_admin, table) == 1000
    assert pg_admin.execute(f"SELECT count(*) FROM {table} WHERE bucket = -1").fetchone() == (0,)
    assert ip.session().transaction == ""  # nothing left open


def test_analyze_in_a_pinned_transaction_undoes_only_itself(
    ip: Shell, table: str, pg_admin: psycopg.Connection
) -> None:
    ip.ok("%sql BEGIN")
    ip.ok(f"%sql INSERT INTO {table} VALUES (5000, 5)")
    analyzed = ip.ok(f"%sql --analyze DELETE FROM {table}")
    assert "Transaction open" in analyzed.out
    assert ip.scalar(f"%sql SELECT count(*) FROM {table}") == 1001  # the INSERT is still there
    ip.ok("%sql COMMIT")
    assert count(pg_admin, table) == 1001


def test_parameters_and_capture(ip: Shell, table: str) -> None:
    ip.ok("lpm_bucket = 3")
    ip.ok(f"%sql --analyze lpm_plan << SELECT * FROM {table} WHERE bucket = :lpm_bucket")
    plan = ip.user_ns["lpm_plan"]
    assert plan.root.actual_rows == 100
    assert "Filter: (bucket = " in str(plan)


def test_errors_point_into_the_users_statement(ip: Shell, table: str) -> None:
    run = ip.fail(f"%sql --explain SELECT nope FROM {table}")
    lines = run.text.splitlines()
    assert 'ERROR:  column "nope" does not exist' in lines
    line = next(i for i, text in enumerate(lines) if text.startswith("LINE 1: "))
    assert lines[line] == f"LINE 1: SELECT nope FROM {table}"
    assert lines[line + 1] == " " * len("LINE 1: SELECT ") + "^"
    assert "Traceback" not in run.text
    several = ip.fail("%%sql --explain\nSELECT 1;\nSELECT 2")
    assert "--explain takes one statement; this cell has 2" in several.text
    assert "--explain needs a statement" in ip.fail("%sql --explain").text


def test_explain_option_parsing() -> None:
    assert parse_line("--explain SELECT 1").explain
    parsed = parse_line("--analyze --alias wh p << SELECT 1")
    assert parsed.analyze and parsed.alias == "wh" and parsed.out == "p"
    with pytest.raises(OptionError, match="cannot be combined"):
        parse_line("--analyze --background SELECT 1")


def test_explain_function_without_ipython(pg_admin: psycopg.Connection, table: str) -> None:
    plan = explain(pg_admin, f"SELECT * FROM {table} WHERE id = %(id)s", {"id": 7}, analyze=True)
    assert plan.root.actual_rows == 1
    assert pg_admin.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# ---------------------------------------------------------------- canned plans


def node(kind: str, *, total: float, rows: float, est: float, loops: int = 1, **extra: Any) -> dict:
    return {
        "Node Type": kind,
        "Startup Cost": 0.0,
        "Total Cost": extra.pop("cost", 100.0),
        "Plan Rows": est,
        "Plan Width": 8,
        "Actual Startup Time": 0.0,
        "Actual Total Time": total,
        "Actual Rows": rows,
        "Actual Loops": loops,
        **extra,
    }


def test_self_time_counts_loops_and_parallel_workers() -> None:
    scan = node(
        "Seq Scan",
        total=30.0,  # per loop; 3 processes (2 workers + leader) ran it in parallel
        rows=1000,
        est=1000,
        loops=3,
        **{"Relation Name": "t", "Alias": "t", "Parallel Aware": True},
    )
    gather = node("Gather", total=40.0, rows=3000, est=3000, **{"Workers Launched": 2})
    gather["Plans"] = [scan]
    inner = node("Index Scan", total=0.01, rows=1, est=1, loops=500, **{"Index Name": "i"})
    outer = node("Seq Scan", total=4.0, rows=500, est=500, **{"Relation Name": "u"})
    loop = node("Nested Loop", total=20.0, rows=500, est=500)
    loop["Plans"] = [outer, inner]
    root = node("Append", total=70.0, rows=3500, est=3500)
    root["Plans"] = [gather, loop]
    plan = Plan.from_json({"Plan": root, "Execution Time": 70.0, "Planning Time": 1.0}, True)

    by_label = {n.label: n for n in plan.nodes}
    parallel = by_label["Parallel Seq Scan on t"]
    assert parallel.total_ms == pytest.approx(30.0)  # 30 ms × 3 loops / 3 processes
    assert by_label["Gather"].self_ms == pytest.approx(10.0)
    index = by_label["Index Scan using i"]
    assert index.total_ms == pytest.approx(5.0)  # 0.01 ms × 500 loops
    assert by_label["Nested Loop"].self_ms == pytest.approx(11.0)  # 20 - 4 - 5
    assert plan.root.self_ms == pytest.approx(10.0)  # 70 - 40 - 20
    assert plan.hottest is parallel
    text = str(plan)
    assert "Parallel Seq Scan on t  ◀ slowest: 43% of the time" in text
    assert "├─ Gather" in text and "│  └─ Parallel Seq Scan on t" in text
    assert "└─ Nested Loop" in text and "   ├─ Seq Scan on u" in text


def test_misestimates_ignore_limits_and_merge_join_rescans() -> None:
    cut = node("Seq Scan", total=1.0, rows=10, est=100000, **{"Relation Name": "big"})
    limit = node("Limit", total=1.0, rows=10, est=10)
    limit["Plans"] = [cut]
    rescanned = node("Sort", total=1.0, rows=5000, est=100, **{"Parent Relationship": "Inner"})
    outer = node("Sort", total=1.0, rows=100, est=100, **{"Parent Relationship": "Outer"})
    merge = node("Merge Join", total=3.0, rows=5, est=5000)
    merge["Plans"] = [outer, rescanned]
    never = node("Seq Scan", total=0.0, rows=0, est=50, loops=0, **{"Relation Name": "n"})
    root = node("Append", total=5.0, rows=15, est=15)
    root["Plans"] = [limit, merge, never]
    plan = Plan.from_json({"Plan": root, "Execution Time": 5.0}, True)
    by_label = {n.label: n for n in plan.nodes}
    assert by_label["Seq Scan on big"].misestimate == ""  # the Limit stopped it early
    assert [n.label for n in plan.misestimated] == ["Merge Join"]
    assert by_label["Merge Join"].misestimate == "rows ×1,000 fewer than estimated"
    assert "(never executed)" in str(plan)
    assert by_label["Seq Scan on n"].rows_factor is None


def test_labels_read_like_postgres_text_format() -> None:
    agg = node(
        "Aggregate", total=1, rows=1, est=1, **{"Strategy": "Hashed", "Partial Mode": "Partial"}
    )
    join = node("Hash Join", total=1, rows=1, est=1, **{"Join Type": "Left"})
    insert = node(
        "ModifyTable", total=1, rows=0, est=0, **{"Operation": "Insert", "Relation Name": "t"}
    )
    init = node("Result", total=1, rows=1, est=1, **{"Subplan Name": "InitPlan 1 (returns $0)"})
    scan = node("Index Only Scan", total=1, rows=1, est=1,
                **{"Index Name": "k", "Relation Name": "t", "Alias": "x",
                   "Scan Direction": "Backward", "Index Cond": "(a > 1)",
                   "Rows Removed by Filter": 5, "Heap Fetches": 0})  # fmt: skip
    root = node("Append", total=5, rows=1, est=1)
    root["Plans"] = [agg, join, insert, init, scan]
    plan = Plan.from_json({"Plan": root}, True)
    labels = [n.label for n in plan.nodes]
    assert labels[1:] == [
        "Partial HashAggregate",
        "Hash Left Join",
        "Insert on t",
        "InitPlan 1 (returns $0): Result",
        "Index Only Scan Backward using k on t x",
    ]
    assert plan.modifies
    assert plan.nodes[-1].details == ["Index Cond: (a > 1)", "Rows Removed by Filter: 5"]
