"""Backslash commands against psql itself, on the oldest and the newest server we support.

psql is the oracle: for every relation of the fixture schema
(tests/data/sql/fixture_schema*.sql: partitions, generated and identity
columns, domains, enums, arrays, rules, triggers, policies, publications, a
foreign table, several schemas...) and of pg_catalog and information_schema,
``\\d NAME`` and ``\\d+ NAME`` must give psql's title, column names, types,
collations, nullability, defaults and footer lines; the list commands must
give psql's columns and rows. psql runs as ``psql -X`` (no psqlrc), the
server's own major version and psql 18, with unaligned output and control
characters as separators, so every cell and footer line reads back exactly;
one psql session runs a whole batch of commands.

Servers: the session's embedded PostgreSQL 18 (``pg_url``) and Debian's
PostgreSQL 15 (``pg15_url``). We answer as psql 18 does on every server;
where psql 15 prints other columns for a command, ``NEWER_PSQL_ONLY`` says
why and only psql 18 is compared. The README lists these for users, with the
other deliberate differences.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from support.fixture_schema import (
    FIXTURE_SCHEMAS,
    client_program,
    fixture_database,
    major_version,
)

from lunepool_magic.postgres.meta import MetaResult, parse_meta, run_meta

FIELD_SEP = "\x1f"
RECORD_SEP = "\x1e"


# We answer as psql 18 does, whatever the server. Where an older psql prints
# other columns for the same catalogs, only psql 18 is compared.
NEWEST_PSQL = 180000
NEWER_PSQL_ONLY = {
    r"\dx": "psql 18 added the Default version column",
    r"\l": "psql 16 and 17 added ICU Rules and renamed ICU Locale to Locale, in another order",
    r"\du": "psql 16 dropped the Member of column",
    r"\df+": "psql 16 and 17 replaced Source code by Internal name and added Leakproof?",
}


@dataclass
class Target:
    """The fixture database on one server, a connection to it, and the psqls to compare with."""

    url: str
    conn: psycopg.Connection
    psqls: list[Path]  # the server's own version first, then psql 18 if that is another

    @property
    def version(self) -> int:
        return self.conn.info.server_version


@pytest.fixture(scope="module", params=["embedded-18", "debian-15"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    url = request.getfixturevalue("pg_url" if request.param == "embedded-18" else "pg15_url")
    with fixture_database(url) as db_url, psycopg.connect(db_url, autocommit=True) as conn:
        psqls = [client_program("psql", conn.info.server_version)]
        newest = client_program("psql", NEWEST_PSQL)
        if newest != psqls[0]:
            psqls.append(newest)
        yield Target(db_url, conn, psqls)


def oracles(target: Target, command: str) -> list[Path]:
    """The psqls whose output ``command`` must match on this server."""
    if re.sub(r"S(?=\+?$)", "", command.split()[0]) in NEWER_PSQL_ONLY:  # \dfS+ is \df+
        return [target.psqls[-1]] if target.version < NEWEST_PSQL else target.psqls
    return target.psqls


@dataclass
class Printed:
    """What psql printed: title, header, rows (cells as text) and footer entries."""

    title: str
    header: list[str]
    rows: list[list[str]]
    footer: list[str]


# Printed by psql between the outputs of the commands of one session.
_NEXT = "@@lpm-next-command@@"


def run_psql(target: Target, psql: Path, commands: list[str]) -> list[str]:
    """What psql prints for each of ``commands``, run in one psql session."""
    env = {**os.environ, "PGCLIENTENCODING": "UTF8", "LC_ALL": "C.UTF-8", "LANGUAGE": "C"}
    done = subprocess.run(
        [str(psql), "-X", "-A", "-F", FIELD_SEP, "-R", RECORD_SEP, "-d", target.url],
        input="".join(f"{command}\n\\echo {_NEXT}\n" for command in commands),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, f"{psql} {commands[:3]}: {done.stderr}"
    outputs = done.stdout.split(_NEXT + "\n")
    assert len(outputs) == len(commands) + 1 and outputs[-1] == "", done.stdout[-500:]
    return [output.removesuffix("\n") for output in outputs[:-1]]


def read_table(output: str) -> Printed:
    """psql's output of a command that prints one table, read back record by record."""
    title, header_line, *rest = output.split(RECORD_SEP)
    header = header_line.split(FIELD_SEP)
    if rest and rest[-1].startswith("(") and rest[-1].endswith(("row)", "rows)")):
        rest.pop()  # the row count of a list; our frames have len()
    if len(header) == 1:  # no separator tells rows from footers; one-column tables have none
        return Printed(title, header, [[record] for record in rest], [])
    rows = []
    while rest and rest[0].count(FIELD_SEP) == len(header) - 1:
        rows.append(rest.pop(0).split(FIELD_SEP))
    return Printed(title, header, rows, rest)


def ours(target: Target, command: str) -> MetaResult:
    return run_meta(target.conn, parse_meta(command))


def cells(frame: pd.DataFrame) -> list[list[str]]:
    """The frame's values as psql prints them: NULL as an empty cell."""
    return [
        ["" if pd.isna(value) else str(value) for value in row] for row in frame.itertuples(False)
    ]


def differences(target: Target, commands: list[str]) -> tuple[list[MetaResult], list[str]]:
    """Our results for ``commands``, and each way one differs from psql's, as a line."""
    results = [ours(target, command) for command in commands]
    found = []
    for psql in target.psqls:
        chosen = [i for i, command in enumerate(commands) if psql in oracles(target, command)]
        if not chosen:
            continue
        outputs = run_psql(target, psql, [commands[i] for i in chosen])
        for i, output in zip(chosen, outputs, strict=True):
            lines = _compare(commands[i], read_table(output), results[i])
            found += [f"psql {major_version(psql)}: {line}" for line in lines]
    return results, found


def _compare(command: str, printed: Printed, result: MetaResult) -> list[str]:
    found = []
    frame = result.frame
    if result.title and result.title != printed.title:
        found.append(f"{command}: title {result.title!r} != psql's {printed.title!r}")
    if list(frame.columns) != printed.header:
        found.append(f"{command}: columns {list(frame.columns)} != psql's {printed.header}")
    else:
        mine = cells(frame)
        if len(mine) != len(printed.rows):
            found.append(f"{command}: {len(mine)} rows != psql's {len(printed.rows)}")
        for ours_row, psql_row in zip(mine, printed.rows, strict=False):
            if ours_row != psql_row:
                found.append(f"{command}: row {ours_row} != psql's {psql_row}")
    if list(result.footer or []) != printed.footer:
        found.append(f"{command}: footer {result.footer} != psql's {printed.footer}")
    return found


def pattern_for(schema: str, name: str) -> str:
    """A psql pattern that names exactly one relation, whatever its characters."""

    def quoted(part: str) -> str:
        return '"' + part.replace('"', '""') + '"'

    return f"{quoted(schema)}.{quoted(name)}"


SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")


def relations_in(conn: psycopg.Connection, schemas: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) ORDER BY 1, 2",
        [list(schemas)],
    ).fetchall()


def fixture_relations(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    return relations_in(conn, FIXTURE_SCHEMAS)


def describe_every_relation(target: Target, command_name: str, schemas: tuple[str, ...]) -> None:
    """Run ``command_name`` (\\d or \\d+) on every relation of ``schemas``; psql must agree."""
    relations = relations_in(target.conn, schemas)
    commands = [rf"{command_name} {pattern_for(schema, name)}" for schema, name, _ in relations]
    results, found = differences(target, commands)
    described = sum(len(result.frame) for result in results)
    cells_compared = sum(result.frame.size for result in results)
    footers = sum(len(result.footer or []) for result in results)
    print(
        f"\n{command_name} of {'/'.join(schemas)} on server {target.version}, psql "
        f"{[major_version(p) for p in target.psqls]}: {len(relations)} relations, "
        f"{described} columns ({cells_compared} cells), {footers} footer entries compared"
    )
    assert not found, "\n".join(found)


def test_the_fixture_has_every_kind_of_relation(target: Target) -> None:
    kinds = {kind for _, _, kind in fixture_relations(target.conn)}
    assert {"r", "p", "v", "m", "S", "i", "I", "c", "f"} <= kinds


@pytest.mark.parametrize("command_name", [r"\d", r"\d+"])
def test_d_matches_psql_for_every_relation_of_the_fixture(
    target: Target, command_name: str
) -> None:
    describe_every_relation(target, command_name, FIXTURE_SCHEMAS)


@pytest.mark.parametrize("command_name", [r"\d", r"\d+"])
def test_d_matches_psql_for_every_system_catalog_relation(
    target: Target, command_name: str
) -> None:
    """The catalogs themselves: shared tablespaces, replica identity NOTHING, views with rules."""
    describe_every_relation(target, command_name, SYSTEM_SCHEMAS)


LIST_COMMANDS = [
    r"\dt lpm_fx*.*",
    r"\dt+ lpm_fx.*",
    r"\dv lpm_fx.*",
    r"\dm lpm_fx.*",
    r"\di lpm_fx.*",
    r"\ds lpm_fx.*",
    r"\dE lpm_fx.*",
    r"\dn lpm_fx*",
    r"\df lpm_fx.*",
    r"\dT lpm_fx.*",
    r"\dD lpm_fx.*",
    r"\dp lpm_fx.*",
    r"\dx file_fdw",
    r"\dy",
    r"\db",
    r"\des",
    r"\dew file_fdw",
    r"\dv+ lpm_fx.*",
    r"\dm+ lpm_fx.*",
    r"\di+ lpm_fx.*",
    r"\ds+ lpm_fx.*",
    r"\dE+ lpm_fx.*",
    r"\dn+ lpm_fx*",
    r"\df+ lpm_fx.*",
    r"\dT+ lpm_fx.*",
    r"\dD+ lpm_fx.*",
    r"\dx+ file_fdw",
    r"\dy+",
    r"\des+",
    r"\dew+",
    r"\dtS",
    r"\dvS",
    r"\diS pg_catalog.*",
    r"\dfS pg_catalog.a*",
    r"\dTS",
    r"\dTS+ pg_catalog.*",
    r"\dnS+",
    r"\dpS pg_catalog.pg_*",
    r"\dconfig *work_mem*",
    r"\dconfig+ work_mem",
    r"\dconfig Time*",
]


@pytest.mark.parametrize("command", LIST_COMMANDS)
def test_list_commands_match_psql(target: Target, command: str) -> None:
    _, found = differences(target, [command])
    assert not found, "\n".join(found)


def test_du_matches_psql_for_the_current_role(target: Target) -> None:
    _, found = differences(target, [rf"\du {target.conn.info.user}"])
    assert not found, "\n".join(found)


def test_l_matches_psql_for_the_fixture_database(target: Target) -> None:
    _, found = differences(target, [rf"\l {target.conn.info.dbname}"])
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "function", ["lpm_fx.add_one", "lpm_fx.reset_scratch", "lpm_fx.mood_rank", "lpm_fx.touch"]
)
def test_sf_gives_psqls_text(target: Target, function: str) -> None:
    result = ours(target, rf"\sf {function}")
    for psql in target.psqls:
        (printed,) = run_psql(target, psql, [rf"\sf {function}"])
        assert "\n".join(result.frame["Source code"]) == printed


# ---------------------------------------------------------------- issue 15, named


def test_bug_15_virtual_generated_columns_read_as_psql_18_prints_them(target: Target) -> None:
    tables = {name for _, name, _ in fixture_relations(target.conn)}
    if target.version < 180000:
        assert "shapes" not in tables  # VIRTUAL needs 18: fixture_schema_pg18.sql is not loaded
        return
    columns = ours(target, r"\d lpm_fx.shapes").frame.set_index("Column")["Default"]
    assert columns["area"] == "generated always as (w * h)"
    assert columns["perimeter"] == "generated always as (2::numeric * (w + h)) stored"


def test_bug_15_partitioned_tables_and_partitions_have_psqls_footers(target: Target) -> None:
    parent = ours(target, r"\d lpm_fx.orders").footer or []
    assert parent[0] == "Partition key: RANGE (placed)"
    assert parent[-1] == r"Number of partitions: 3 (Use \d+ to list them.)"
    middle = ours(target, r"\d lpm_fx_sales.orders_2025").footer or []
    assert middle[:2] == [
        "Partition of: lpm_fx.orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "Partition key: RANGE (placed)",
    ]
    assert ours(target, r"\d lpm_fx_sales.orders_old").footer[0] == (  # type: ignore[index]
        "Partition of: lpm_fx.orders DEFAULT"
    )
    assert ours(target, r"\d lpm_fx.empty_parent").footer == [
        "Partition key: LIST (k)",
        "Number of partitions: 0",
    ]


def test_bug_15_dx_and_l_have_psql_18s_columns(target: Target) -> None:
    extensions = ours(target, r"\dx file_fdw").frame
    assert list(extensions.columns) == [
        "Name",
        "Version",
        "Default version",
        "Schema",
        "Description",
    ]
    assert extensions.loc[0, "Default version"] == extensions.loc[0, "Version"]
    databases = ours(target, rf"\l {target.conn.info.dbname}").frame
    assert {"Locale Provider", "Locale", "ICU Rules"} <= set(databases.columns)
    assert databases.loc[0, "Locale Provider"] == "libc"
