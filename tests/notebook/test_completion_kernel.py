"""Tab completion in SQL cells through a real kernel's ``complete_request``.

The path JupyterLab, Notebook 7 and VS Code use: jupyter_client sends the
cell and the cursor, ipykernel asks IPython's completer, our matcher answers
from the catalog of the connection the cell would use. One test per context
of issue 17; the catalog is a real server's (``pg_url``), read by the
kernel's own background refresh.

One kernel serves the module (starting one costs seconds); the tables have
a ``cmpl_`` prefix of their own and are dropped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

pytest.importorskip("jupyter_client")
from support.kernel import Kernel, start_kernel

pytestmark = pytest.mark.kernel

SCHEMA = """
DROP SCHEMA IF EXISTS cmpl_sales CASCADE;
DROP TABLE IF EXISTS cmpl_orders, cmpl_customers, "CmplMixed", cmpl_user CASCADE;
CREATE SCHEMA cmpl_sales;
CREATE TABLE cmpl_orders (id int PRIMARY KEY, customer_id int, total numeric,
                          "Shipped At" timestamptz, "Status" text, "select" int);
CREATE TABLE cmpl_customers (id int, name text, email text);
CREATE VIEW cmpl_order_totals AS SELECT customer_id, sum(total) AS spent FROM cmpl_orders
    GROUP BY customer_id;
CREATE TABLE cmpl_sales.q1 (amount numeric, region text);
CREATE TABLE "CmplMixed" (a int);
CREATE FUNCTION cmpl_sales.cmpl_tax(numeric) RETURNS numeric LANGUAGE sql AS 'SELECT $1 * 0.2';
"""
TEARDOWN = """
DROP SCHEMA IF EXISTS cmpl_sales CASCADE;
DROP TABLE IF EXISTS cmpl_orders, cmpl_customers, "CmplMixed", cmpl_new, cmpl_in_tx CASCADE;
"""

# Runs in the kernel: wait until no catalog read is in flight for a connection.
SETTLE = """
from lunepool_magic import completer as _completer
_c = _completer._installed[get_ipython()]
_s = get_ipython().magics_manager.registry['LunepoolMagic'].sessions[{alias!r}]
assert _c.cache.wait(_s.pool, 30) is not None, "no catalog was read"
"""
REFRESH = """
from lunepool_magic import completer as _completer
_s = get_ipython().magics_manager.registry['LunepoolMagic'].sessions[{alias!r}]
assert _completer.refresh(get_ipython(), _s, 30) is not None
"""


@pytest.fixture(scope="module")
def sql_kernel(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One kernel for the module, connected, with the test tables and a fresh catalog."""
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(SCHEMA)
    try:
        with start_kernel(pg_url, tmp_path_factory.mktemp("completion")) as kernel:
            kernel.ok("%sql SELECT 1")
            kernel.ok("order_id = 7\nids = [1, 2]\nOrderTotal = 3.5\ndef helper(): pass")
            kernel.ok(REFRESH.format(alias="default"))
            yield kernel
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(TEARDOWN)


def complete(kernel: Kernel, marked: str) -> list[dict[str, Any]]:
    """Completions at the ``|`` in ``marked``; each checked to replace text that ends there."""
    cursor = marked.index("|")
    code = marked.replace("|", "", 1)
    reply = kernel.complete(code, cursor)
    assert reply["status"] == "ok", reply
    items = reply["metadata"]["_jupyter_types_experimental"]
    for item in items:
        assert item["end"] == cursor
        typed = code[item["start"] : cursor].strip('"').casefold()
        assert item["text"].strip('"').casefold().startswith(typed), (typed, item)
    return items


def texts(items: list[dict[str, Any]], kind: str | None = None) -> list[str]:
    return [i["text"] for i in items if kind is None or i["type"] == kind]


def test_from_offers_tables_views_and_schemas_with_their_kinds(sql_kernel: Kernel) -> None:
    items = complete(sql_kernel, "%%sql\nSELECT * FROM cmpl_|")
    kinds = {i["text"]: i["type"] for i in items}
    assert kinds["cmpl_orders"] == "table"
    assert kinds["cmpl_order_totals"] == "view"
    assert kinds["cmpl_sales"] == "schema"
    assert "cmpl_tax" not in kinds  # a function is not a relation
    assert all(i["type"] in ("table", "view", "schema") for i in items)


@pytest.mark.parametrize(
    "marked",
    [
        "%%sql\nSELECT * FROM cmpl_orders o JOIN cmpl_cu|",
        "%%sql\nINSERT INTO cmpl_cu|",
        "%%sql\nUPDATE cmpl_cu|",
        "%%sql\nTABLE cmpl_cu|",
        "%%sql\nSELECT * FROM cmpl_orders, cmpl_cu|",
    ],
    ids=["join", "into", "update", "table", "from-list"],
)
def test_relation_keywords_offer_relations(sql_kernel: Kernel, marked: str) -> None:
    assert texts(complete(sql_kernel, marked)) == ["cmpl_customers"]


def test_select_offers_the_columns_of_the_tables_named_later(sql_kernel: Kernel) -> None:
    items = complete(sql_kernel, "%%sql\nSELECT cu| FROM cmpl_orders")
    assert texts(items, "column") == ["customer_id"]
    # Columns first, then functions (current_date, ...) and keywords.
    assert items[0]["text"] == "customer_id"
    assert {"function", "keyword"} <= {i["type"] for i in items[1:]}


@pytest.mark.parametrize(
    ("marked", "expected"),
    [
        ("%%sql\nSELECT * FROM cmpl_orders WHERE to|", ["total"]),
        ("%%sql\nSELECT * FROM cmpl_orders o JOIN cmpl_customers c ON c.id = o.cu|", None),
        ("%%sql\nSELECT customer_id FROM cmpl_orders GROUP BY cu|", ["customer_id"]),
        ("%%sql\nSELECT * FROM cmpl_orders ORDER BY to|", ["total"]),
        ("%%sql\nUPDATE cmpl_customers SET em|", ["email"]),
        ("%%sql\nSELECT * FROM cmpl_customers c JOIN cmpl_orders o ON o.customer_id = c.|", None),
    ],
    ids=["where", "on-alias", "group-by", "order-by", "set", "on-alias-dot"],
)
def test_clauses_offer_the_statements_columns(
    sql_kernel: Kernel, marked: str, expected: list[str] | None
) -> None:
    items = complete(sql_kernel, marked)
    if expected is None:  # after "alias.": exactly that relation's columns, in table order
        alias = marked.rsplit(".", 1)[0][-1]
        columns = {"o": ["customer_id"], "c": ["id", "name", "email"]}[alias]
        if marked.endswith("c.|"):
            assert texts(items) == columns
        else:
            assert texts(items) == ["customer_id"]
        return
    assert texts(items, "column") == expected


def test_alias_and_cte_names_resolve_to_their_columns(sql_kernel: Kernel) -> None:
    items = complete(
        sql_kernel,
        "%%sql\nWITH big AS (SELECT customer_id AS who, total FROM cmpl_orders WHERE total > 9)\n"
        "SELECT b.| FROM big b",
    )
    assert texts(items) == ["who", "total"]
    star = complete(sql_kernel, "%%sql\nWITH c AS (SELECT * FROM cmpl_customers) SELECT na| FROM c")
    assert texts(star, "column") == ["name"]
    derived = complete(
        sql_kernel, "%%sql\nSELECT s.| FROM (SELECT id AS order_no FROM cmpl_orders) AS s"
    )
    assert texts(derived) == ["order_no"]


def test_schema_dot_offers_its_relations_and_functions(sql_kernel: Kernel) -> None:
    assert texts(complete(sql_kernel, "%%sql\nSELECT * FROM cmpl_sales.|")) == ["q1"]
    items = complete(sql_kernel, "%%sql\nSELECT cmpl_sales.|")
    assert ("cmpl_tax", "function") in [(i["text"], i["type"]) for i in items]


def test_functions_are_offered_where_an_expression_goes(sql_kernel: Kernel) -> None:
    items = complete(sql_kernel, "%%sql\nSELECT date_tr| FROM cmpl_orders")
    assert [(i["text"], i["type"]) for i in items] == [("date_trunc", "function")]
    # A function whose name is a keyword is typed bare, as it is called.
    assert ("current_schema", "function") in [
        (i["text"], i["type"]) for i in complete(sql_kernel, "%%sql\nSELECT current_sch|")
    ]


def test_keywords_follow_the_case_being_typed(sql_kernel: Kernel) -> None:
    assert ("select", "keyword") in [
        (i["text"], i["type"]) for i in complete(sql_kernel, "%%sql\nsel|")
    ]
    assert "SELECT" in texts(complete(sql_kernel, "%%sql\nSEL|"), "keyword")
    after_table = texts(complete(sql_kernel, "%%sql\nSELECT * FROM cmpl_orders |"), "keyword")
    assert after_table[:3] == ["SELECT", "FROM", "WHERE"]  # common ones first


def test_colon_offers_the_notebooks_variables(sql_kernel: Kernel) -> None:
    items = complete(sql_kernel, "%sql SELECT * FROM cmpl_orders WHERE id = :ord|")
    assert [(i["text"], i["type"]) for i in items] == [("order_id", "variable")]
    names = texts(complete(sql_kernel, "%sql SELECT * FROM cmpl_orders WHERE id = ANY(:|)"))
    assert "ids" in names and "order_id" in names
    assert "helper" not in names and "get_ipython" not in names  # functions are not values
    # Python names come back as they are (never quoted like SQL names), case-sensitively.
    assert texts(complete(sql_kernel, "%sql SELECT :Order|")) == ["OrderTotal"]


def test_magic_line_offers_options_and_connection_names(sql_kernel: Kernel) -> None:
    assert texts(complete(sql_kernel, "%sql --al|")) == ["--alias"]
    options = texts(complete(sql_kernel, "%%sql --|"))
    assert {"--alias", "--out", "--explain", "--background"} <= set(options)
    sql_kernel.ok(
        "import os\nget_ipython().run_line_magic('sql', os.environ['DATABASE_URL'] + ' --alias wh')"
    )
    sql_kernel.ok("%sql --alias default")
    assert texts(complete(sql_kernel, "%sql --alias |")) == ["default", "wh"]
    assert texts(complete(sql_kernel, "%%sql --alias w|")) == ["wh"]


def test_backslash_d_offers_relations(sql_kernel: Kernel) -> None:
    items = complete(sql_kernel, "%sql \\d cmpl_ord|")
    assert [(i["text"], i["type"]) for i in items] == [
        ("cmpl_order_totals", "view"),
        ("cmpl_orders", "table"),
    ]


def test_quoted_and_mixed_case_names_come_back_quoted(sql_kernel: Kernel) -> None:
    assert texts(complete(sql_kernel, "%%sql\nSELECT * FROM cmplm|")) == ['"CmplMixed"']
    assert texts(complete(sql_kernel, '%%sql\nSELECT * FROM "Cmpl|')) == ['"CmplMixed"']
    columns = texts(complete(sql_kernel, "%%sql\nSELECT o.| FROM cmpl_orders o"))
    assert columns == ["id", "customer_id", "total", '"Shipped At"', '"Status"', '"select"']
    # Typed without the quote, the quote is added; typed with it, it is kept.
    items = complete(sql_kernel, '%%sql\nSELECT "Sh| FROM cmpl_orders')
    assert texts(items) == ['"Shipped At"']


def test_line_magic_in_a_python_cell_and_the_lunesql_name(sql_kernel: Kernel) -> None:
    items = complete(sql_kernel, "x = 1\nframe = %sql SELECT * FROM cmpl_custo|\nprint(x)")
    assert texts(items) == ["cmpl_customers"]
    assert texts(complete(sql_kernel, "%%lunesql\nSELECT em| FROM cmpl_customers"), "column") == [
        "email"
    ]


def test_python_completion_outside_sql_is_unchanged(sql_kernel: Kernel) -> None:
    sql_kernel.ok("cmpl_value = 3")
    assert "cmpl_value" in texts(complete(sql_kernel, "cmpl_val|"))
    assert "path" in texts(complete(sql_kernel, "import os\nos.pa|"))
    assert "%%sql" in texts(complete(sql_kernel, "%%sq|"))  # the magic's own name still completes
    # In a string or a comment of SQL, nothing of ours.
    assert "cmpl_orders" not in texts(complete(sql_kernel, "%%sql\nSELECT 'cmpl_ord|"))


def test_the_catalog_follows_ddl_and_completion_never_borrows_the_cells_pool(
    sql_kernel: Kernel,
) -> None:
    before = sql_kernel.pool_stats()
    assert before is not None
    sql_kernel.ok("%sql CREATE TABLE cmpl_new (fresh_column int)")
    sql_kernel.ok(SETTLE.format(alias="default"))  # the hook's refresh, started by the cell
    assert texts(complete(sql_kernel, "%%sql\nSELECT * FROM cmpl_ne|")) == ["cmpl_new"]
    assert texts(complete(sql_kernel, "%%sql\nSELECT fre| FROM cmpl_new"), "column") == [
        "fresh_column"
    ]
    after = sql_kernel.pool_stats()
    assert after is not None
    # One borrow per cell, none for completion or the catalog.
    assert after["requests"] - before["requests"] == 1


def test_ddl_in_a_transaction_shows_after_commit_and_the_pinned_connection_is_untouched(
    sql_kernel: Kernel,
) -> None:
    sql_kernel.ok("%%sql\nBEGIN;\nCREATE TABLE cmpl_in_tx (inside int);")
    pinned = sql_kernel.pool_stats()
    assert pinned is not None and pinned["transaction"] == "open"
    sql_kernel.ok(SETTLE.format(alias="default"))
    # Not committed: the catalog's own connection cannot see it yet.
    assert texts(complete(sql_kernel, "%%sql\nSELECT * FROM cmpl_in_|")) == []
    during = sql_kernel.pool_stats()
    assert during == pinned  # completion did not touch the cells' pool nor the transaction
    sql_kernel.ok("%sql COMMIT")
    sql_kernel.ok(SETTLE.format(alias="default"))
    assert texts(complete(sql_kernel, "%%sql\nSELECT * FROM cmpl_in_|")) == ["cmpl_in_tx"]


def test_unload_removes_completion_and_reload_brings_it_back(sql_kernel: Kernel) -> None:
    marked = "%%sql\nSELECT * FROM cmpl_custo|"
    sql_kernel.ok("%unload_ext lunepool_magic")
    matchers = sql_kernel.value(
        "[getattr(m, 'matcher_identifier', '') for m in get_ipython().Completer.custom_matchers]"
    )
    assert "lunepool_magic.sql" not in matchers
    assert "cmpl_customers" not in texts(complete(sql_kernel, marked))
    sql_kernel.ok("%load_ext lunepool_magic")
    sql_kernel.ok("%sql SELECT 1")
    sql_kernel.ok(REFRESH.format(alias="default"))
    assert texts(complete(sql_kernel, marked)) == ["cmpl_customers"]
    matchers = sql_kernel.value(
        "[getattr(m, 'matcher_identifier', '') for m in get_ipython().Completer.custom_matchers]"
    )
    assert matchers.count("lunepool_magic.sql") == 1


def test_cells_of_another_extensions_sql_magic_are_left_to_it(kernel: Kernel) -> None:
    # Regression guard: with JupySQL (or any other extension) owning %sql, its
    # %%sql cells run on its connection; completing them from ours would mislead.
    kernel.ok("%unload_ext lunepool_magic")
    kernel.ok(
        "from IPython.core.magic import register_line_cell_magic\n"
        "@register_line_cell_magic\n"
        "def sql(line, cell=None):\n"
        "    return 'theirs'"
    )
    kernel.ok("%load_ext lunepool_magic")
    kernel.ok("%lunesql SELECT 1")
    kernel.ok(REFRESH.format(alias="default"))
    assert "pg_class" in texts(complete(kernel, "%%lunesql\nSELECT * FROM pg_cla|"))
    assert "pg_class" not in texts(complete(kernel, "%%sql\nSELECT * FROM pg_cla|"))


def test_refresh_option_reads_a_table_made_elsewhere(sql_kernel: Kernel, pg_url: str) -> None:
    # Made on another connection: no cell of this kernel ran the DDL, so only
    # %sql --refresh (or the next DDL cell) brings it into the catalog.
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("CREATE TABLE cmpl_elsewhere (zz_refreshed int)")
    try:
        reply = sql_kernel.ok("%sql --refresh")
        assert reply.stream("stdout") == "Read the catalog of 'default' again for Tab completion.\n"
        items = complete(sql_kernel, "%%sql\nSELECT zz_ref| FROM cmpl_elsewhere")
        assert texts(items, "column") == ["zz_refreshed"]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("DROP TABLE cmpl_elsewhere")
