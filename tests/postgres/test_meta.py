"""psql's backslash commands in a cell (``%sql \\dt``), as DataFrames, against a real server.

Each test works in a schema of its own (so other tests' tables do not show),
made by ``pg_admin`` and dropped afterwards. Patterns follow psql's rules;
those are also checked without a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from support.shell import Shell, ip_fixture  # noqa: F401 (ip_fixture provides `ip`)

from lunepool_magic.postgres.meta import (
    MetaError,
    check_server_version,
    parse_meta,
    pattern_regexes,
)


@pytest.fixture
def schema(pg_admin: psycopg.Connection) -> Iterator[str]:
    """A schema with a small, fully featured model in it; dropped afterwards."""
    name = f"lpm_meta_{uuid.uuid4().hex[:8]}"
    pg_admin.execute(
        f"""
        CREATE SCHEMA {name};
        CREATE TABLE {name}.customers (
            id int PRIMARY KEY,
            name text NOT NULL DEFAULT 'anon' CHECK (name <> ''),
            email text UNIQUE,
            score int GENERATED ALWAYS AS (id * 2) STORED,
            seq int GENERATED ALWAYS AS IDENTITY
        );
        COMMENT ON TABLE {name}.customers IS 'people who buy';
        CREATE TABLE {name}.orders (
            id serial PRIMARY KEY,
            customer_id int REFERENCES {name}.customers (id),
            amount numeric(10, 2)
        );
        CREATE INDEX orders_customer_idx ON {name}.orders (customer_id);
        CREATE VIEW {name}.big_orders AS SELECT * FROM {name}.orders WHERE amount > 100;
        CREATE MATERIALIZED VIEW {name}.totals AS SELECT customer_id, sum(amount) FROM {name}.orders
            GROUP BY 1;
        CREATE FUNCTION {name}.touch() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER orders_touch BEFORE UPDATE ON {name}.orders
            FOR EACH ROW EXECUTE FUNCTION {name}.touch();
        CREATE FUNCTION {name}.add_one(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x + 1';
        CREATE TABLE {name}."Mixed Case" (x int);
        """
    )
    try:
        yield name
    finally:
        pg_admin.execute(f"DROP SCHEMA {name} CASCADE")


def names(frame) -> list[str]:
    return frame["Name"].tolist()


def test_dt_lists_tables_with_psql_columns(ip: Shell, schema: str) -> None:
    frame = ip.value(rf"%sql \dt {schema}.*")
    assert list(frame.columns) == ["Schema", "Name", "Type", "Owner"]
    assert names(frame) == ["Mixed Case", "customers", "orders"]
    assert set(frame["Type"]) == {"table"}
    assert str(frame["Name"].dtype) == "string"


def test_dt_plus_adds_size_and_description(ip: Shell, schema: str) -> None:
    frame = ip.value(rf"%sql \dt+ {schema}.cust*")
    assert list(frame.columns) == [
        "Schema", "Name", "Type", "Owner", "Persistence", "Access method", "Size", "Description"
    ]  # fmt: skip
    assert frame.loc[0, "Description"] == "people who buy"
    assert frame.loc[0, "Persistence"] == "permanent"


def test_dt_without_pattern_hides_system_tables_and_dts_shows_them(ip: Shell) -> None:
    assert "pg_class" not in names(ip.value(r"%sql \dt"))
    system = ip.value(r"%sql \dtS pg_cl*")
    assert names(system) == ["pg_class"]
    assert system.loc[0, "Schema"] == "pg_catalog"


def test_patterns_quote_and_fold_like_psql(ip: Shell, schema: str) -> None:
    assert names(ip.value(rf'%sql \dt {schema}."Mixed Case"')) == ["Mixed Case"]
    assert names(ip.value(rf"%sql \dt {schema}.ORDERS")) == ["orders"]  # folded
    assert names(ip.value(rf"%sql \dt {schema}.ord?rs")) == ["orders"]
    none = ip.ok(rf"%sql \dt {schema}.nothing*")
    assert none.value.empty and "(no tables matching" in none.out


def test_dv_dm_di_ds_list_their_kinds(ip: Shell, schema: str) -> None:
    assert names(ip.value(rf"%sql \dv {schema}.*")) == ["big_orders"]
    assert names(ip.value(rf"%sql \dm {schema}.*")) == ["totals"]
    indexes = ip.value(rf"%sql \di {schema}.*")
    assert "orders_customer_idx" in names(indexes)
    assert indexes.set_index("Name").loc["orders_customer_idx", "Table"] == "orders"
    assert set(names(ip.value(rf"%sql \ds {schema}.*"))) == {"customers_seq_seq", "orders_id_seq"}


def test_d_table_describes_columns_and_prints_the_footer(ip: Shell, schema: str) -> None:
    run = ip.ok(rf"%sql \d {schema}.customers")
    frame = run.value
    assert list(frame.columns) == ["Column", "Type", "Collation", "Nullable", "Default"]
    table = frame.set_index("Column")
    assert table.loc["id", "Nullable"] == "not null"
    assert table.loc["name", "Default"] == "'anon'::text"
    assert table.loc["score", "Default"] == "generated always as (id * 2) stored"
    assert table.loc["seq", "Default"] == "generated always as identity"
    assert table.loc["email", "Type"] == "text"
    assert f'Table "{schema}.customers"' in run.out
    assert frame.attrs["title"] == f'Table "{schema}.customers"'
    footer = "\n".join(frame.attrs["footer"])
    printed = run.out.splitlines()
    title_at = printed.index(f'Table "{schema}.customers"')
    lines = frame.attrs["footer"]
    assert printed[title_at + 1 : title_at + 1 + len(lines)] == lines  # title, then footer
    assert '"customers_pkey" PRIMARY KEY, btree (id)' in footer
    assert '"customers_email_key" UNIQUE CONSTRAINT, btree (email)' in footer
    assert "Check constraints:" in footer and "CHECK (name <> ''::text)" in footer
    assert "Referenced by:" in footer and "orders_customer_id_fkey" in footer


def test_d_table_shows_foreign_keys_and_triggers(ip: Shell, schema: str) -> None:
    footer = "\n".join(ip.value(rf"%sql \d {schema}.orders").attrs["footer"])
    assert "Foreign-key constraints:" in footer
    assert f"FOREIGN KEY (customer_id) REFERENCES {schema}.customers(id)" in footer
    assert "Triggers:" in footer and "orders_touch BEFORE UPDATE" in footer
    assert '"orders_customer_idx" btree (customer_id)' in footer


def test_d_plus_view_shows_its_definition(ip: Shell, schema: str) -> None:
    frame = ip.value(rf"%sql \d+ {schema}.big_orders")
    assert "Storage" in frame.columns and "Description" in frame.columns
    footer = "\n".join(frame.attrs["footer"])
    assert "View definition:" in footer and "amount > 100" in footer


def test_d_index_and_sequence(ip: Shell, schema: str) -> None:
    index = ip.ok(rf"%sql \d {schema}.orders_customer_idx")
    assert list(index.value.columns) == ["Column", "Type", "Key?", "Definition"]
    assert f'Index "{schema}.orders_customer_idx"' in index.out
    assert f'btree, for table "{schema}.orders"' in index.out
    sequence = ip.value(rf"%sql \d {schema}.orders_id_seq")
    assert sequence.loc[0, "Type"] == "integer" and sequence.loc[0, "Increment"] == 1


def test_d_without_a_pattern_and_with_several_matches_lists(ip: Shell, schema: str) -> None:
    listing = ip.ok(rf"%sql \d {schema}.*o*")
    assert {"orders", "customers", "totals", "big_orders"} <= set(names(listing.value))
    assert "relations match" in listing.out
    assert "Type" in ip.value(r"%sql \d").columns


def test_dn_df_l_du_dx(ip: Shell, schema: str, pg_url: str) -> None:
    schemas = ip.value(r"%sql \dn")
    assert schema in names(schemas) and "pg_catalog" not in names(schemas)
    assert "pg_catalog" in names(ip.value(r"%sql \dnS"))
    functions = ip.value(rf"%sql \df {schema}.*")
    assert names(functions) == ["add_one", "touch"]
    assert functions.set_index("Name").loc["add_one", "Argument data types"] == "x integer"
    verbose = ip.value(rf"%sql \df+ {schema}.add_one").iloc[0]
    assert verbose["Volatility"] == "immutable" and verbose["Language"] == "sql"
    database = psycopg.conninfo.conninfo_to_dict(pg_url).get("dbname")
    databases = ip.value(r"%sql \l")
    assert {"Name", "Owner", "Encoding"} <= set(databases.columns)
    if database:
        assert database in names(databases)
    assert "Size" in ip.value(r"%sql \l+").columns
    current = ip.scalar("%sql SELECT current_user")
    assert current in ip.value(r"%sql \du")["Role name"].tolist()
    assert "plpgsql" in names(ip.value(r"%sql \dx"))


def test_help_and_the_cell_form_and_capture(ip: Shell, schema: str) -> None:
    assert r"\dt[S+] [PATTERN]" in ip.value(r"%sql \?")["Command"].tolist()
    assert names(ip.value(f"%%sql\n\\dt {schema}.orders\n")) == ["orders"]
    stored = ip.ok(rf"%sql tables << \dt {schema}.*")
    assert stored.value is None
    assert names(ip.user_ns["tables"]) == ["Mixed Case", "customers", "orders"]


def test_a_table_created_in_the_pinned_transaction_is_listed(ip: Shell, schema: str) -> None:
    ip.ok("%sql BEGIN")
    ip.ok(f"%sql CREATE TABLE {schema}.uncommitted (x int)")
    assert "uncommitted" in names(ip.value(rf"%sql \dt {schema}.*"))
    ip.ok("%sql ROLLBACK")
    assert "uncommitted" not in names(ip.value(rf"%sql \dt {schema}.*"))


def test_new_commands_through_the_magic(ip: Shell, schema: str) -> None:
    ip.ok(f"%sql CREATE TYPE {schema}.mood AS ENUM ('sad', 'happy')")
    ip.ok(f"%sql CREATE DOMAIN {schema}.pos AS int CHECK (VALUE > 0)")
    types = ip.value(rf"%sql \dT+ {schema}.*")
    assert list(types.columns) == [
        "Schema", "Name", "Internal name", "Size", "Elements", "Owner", "Access privileges",
        "Description",
    ]  # fmt: skip
    assert types.set_index("Internal name").loc["mood", "Elements"] == "sad\nhappy"
    domains = ip.value(rf"%sql \dD {schema}.*")
    assert domains.loc[0, "Check"] == "CHECK (VALUE > 0)"
    source = ip.value(rf"%sql \sf {schema}.add_one")
    assert (
        source["Source code"].iloc[0] == f"CREATE OR REPLACE FUNCTION {schema}.add_one(x integer)"
    )
    assert source["Source code"].iloc[-1] == "AS $function$SELECT x + 1$function$"
    assert "customers" in names(ip.value(rf"%sql \dp {schema}.*"))
    assert {"Location", "Owner"} <= set(ip.value(r"%sql \db").columns)
    objects = ip.ok(r"%sql \dx+ plpgsql")
    assert 'Objects in extension "plpgsql"' in objects.out
    assert "language plpgsql" in objects.value["Object description"].tolist()
    assert list(ip.value(r"%sql \dy").columns) == [
        "Name", "Event", "Owner", "Enabled", "Function", "Tags"
    ]  # fmt: skip
    assert list(ip.value(r"%sql \dew").columns) == ["Name", "Owner", "Handler", "Validator"]
    assert list(ip.value(r"%sql \des").columns) == ["Name", "Owner", "Foreign-data wrapper"]
    assert names(ip.value(rf"%sql \z {schema}.orders")) == ["orders"]  # \z is \dp


def test_sf_in_a_pinned_transaction_leaves_it_usable(ip: Shell, schema: str) -> None:
    """An unknown function is answered from the catalogs, not by a failed cast."""
    ip.ok("%sql BEGIN")
    run = ip.fail(rf"%sql \sf {schema}.no_such_function")
    assert 'function "' in run.text and "does not exist" in run.text
    assert ip.scalar("%sql SELECT 1") == 1  # the transaction was not aborted
    ip.ok("%sql ROLLBACK")


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (r"%sql \sf", r"\sf needs a function"),
        (r"%sql \sf+ f", r"\sf takes no S or +"),
        (r"%sql \dx+ lpm_nosuch", r"\dx+ lists the objects of one extension; no extension"),
        (r"%sql \sf max(integer)", "is an aggregate function"),
        (r"%sql \sf pg_catalog.max", "more than one function has that name"),
        (r"%sql \x", r"\x is not supported in %sql: expanded display"),
        (r"%sql \c otherdb", "connect with %sql postgresql://"),
        (r"%sql \zz", r"unsupported backslash command \zz"),
        (r"%sql \dt a b", "takes one pattern"),
        ("%%sql\n\\dt\n\\dn", "one backslash command per cell"),
        (r"%sql \d lpm_no_such_relation", 'Did not find any relation named "lpm_no_such_relation"'),
        (r"%sql \dt a.b.c", "too many dotted names"),
        (r"%sql --explain \dt", "backslash commands run as they are"),
    ],
)
def test_errors_are_short(ip: Shell, cell: str, message: str) -> None:
    run = ip.fail(cell)
    assert message in run.text
    assert "Traceback" not in run.text


# ---------------------------------------------------------------- no server


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("orders", (None, "^(orders)$")),
        ("Ord*", (None, "^(ord.*)$")),
        ("s?.t", ("^(s.)$", "^(t)$")),
        ('"My.Table"', (None, r"^(My\.Table)$")),
        ('"a""b"', (None, '^(a"b)$')),
        ("a$b", (None, r"^(a\$b)$")),
        ("x|y", (None, "^(x|y)$")),  # other regex characters keep their meaning
        ("public.", ("^(public)$", "^(.*)$")),
    ],
)
def test_pattern_regexes(pattern: str, expected: tuple[str | None, str]) -> None:
    assert pattern_regexes(pattern) == expected


def test_parse_meta_reads_modifiers() -> None:
    command = parse_meta(r"  \dtS+ public.*;  ")
    assert (command.name, command.system, command.verbose, command.pattern) == (
        "dt",
        True,
        True,
        "public.*",
    )
    assert parse_meta(r"\l").pattern is None
    with pytest.raises(MetaError):
        parse_meta(r"\dt one two")


def test_parse_meta_reads_commands_with_capitals_and_aliases() -> None:
    assert parse_meta(r"\dTS+ pg_catalog.int*").name == "dT"
    assert (parse_meta(r"\dD").name, parse_meta(r"\dE").name) == ("dD", "dE")
    assert parse_meta(r"\des+").name == "des" and parse_meta(r"\dew").name == "dew"
    assert parse_meta(r"\dS").name == "d" and parse_meta(r"\dS").system
    assert (parse_meta(r"\z").name, parse_meta(r"\dg").name) == ("dp", "du")
    assert parse_meta(r"\sf public.f(integer, text)").pattern == "public.f(integer, text)"


@pytest.mark.parametrize(
    ("version", "supported"),
    [(90624, False), (120022, False), (130000, True), (150018, True), (180006, True)],
)
def test_servers_older_than_13_get_a_clear_error(version: int, supported: bool) -> None:
    if supported:
        assert check_server_version(version) == version
    else:
        with pytest.raises(MetaError, match=r"need PostgreSQL 13 or later; this server is 1?[0-9]"):
            check_server_version(version)
