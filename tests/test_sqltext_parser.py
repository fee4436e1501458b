"""split_statements against PostgreSQL's own parser, on a large body of real SQL.

The referee is pglast (libpg_query: the parser of PostgreSQL 18, as a
library). For every text of the corpus both split it; every statement the
parser finds must be one of ours, ending where the parser's ends (the ``;``
or the end of the text) and starting where it starts or earlier by comments
only (ours keep a leading comment with the statement it precedes), and we
must find no statement the parser does not.

The corpus is assembled at test time from what the machine has, so nothing
big is committed:

* the SQL files PostgreSQL ships: the embedded server's share folder (its
  ``information_schema.sql``, extension scripts) and Debian's
  ``/usr/share/postgresql/*`` when installed, psql meta-commands removed;
* tests/data/sql/*.sql, written for this (routines, rules, quoting; the
  fixture schema);
* pg_dump output of the fixture schema (schema, then data as INSERTs);
* cells generated from all those statements, joined by separators with
  comments and blank lines in them.

Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pglast import parser
from support.fixture_schema import SQL_DATA_DIR, client_program, embedded_bin_dir, fixture_database

from lunepool_magic.sqltext import split_statements

# psql meta-commands on a line of their own (\echo, \quit, pg_dump's \restrict).
_META_LINE = re.compile(r"^\\.*$", re.MULTILINE)
# Extension scripts are templates: CREATE EXTENSION fills these in.
_EXTENSION_SCHEMA = re.compile(r"@extschema(?::\w+)?@")

_BLANKS = " \t\n\r\f\v"


def _as_plain_sql(text: str) -> str:
    text = _META_LINE.sub("", text)
    text = _EXTENSION_SCHEMA.sub("public", text)
    return text.replace("@extowner@", "postgres")


def shipped_sql_files() -> list[Path]:
    """PostgreSQL's own .sql files: the embedded server's, and Debian's if installed."""
    roots = [embedded_bin_dir().parent / "share", *Path("/usr/share/postgresql").glob("*")]
    files = []
    for root in roots:
        files += sorted(root.glob("*.sql")) + sorted(root.glob("extension/*.sql"))
    return files


def compare(text: str) -> tuple[int, int, list[str]]:
    """(statements the parser found, how many of ours match them, the differences)."""
    ends = {s.end: s.start for s in split_statements(text)}
    reference = []
    for piece in parser.split(text, with_parser=True, only_slices=True):
        reference.append((piece.start, len(text[: piece.stop].rstrip(_BLANKS))))
    matched, problems = 0, []
    for start, end in reference:
        ours_start = ends.pop(end, None)
        # Ours may start earlier, by comments only: they stay with the statement.
        if (
            ours_start is not None
            and ours_start <= start
            and not split_statements(text[ours_start:start])
        ):
            matched += 1
        else:
            problems.append(f"parser's statement not ours: {text[start:end][:120]!r}")
    problems += [f"ours, not the parser's: {text[s:e][:120]!r}" for e, s in ends.items()]
    return len(reference), matched, problems


@pytest.fixture(scope="module")
def dumps(pg_url: str) -> Iterator[dict[str, str]]:
    """pg_dump output of the fixture schema: the schema, then the data as INSERTs."""
    with fixture_database(pg_url) as url, psycopg.connect(url) as conn:
        pg_dump = client_program("pg_dump", conn.info.server_version)
        outputs = {}
        for label, options in (
            ("schema", ["--schema-only"]),
            ("data", ["--data-only", "--column-inserts", "--rows-per-insert=2"]),
        ):
            done = subprocess.run(
                [str(pg_dump), "--no-owner", *options, "-d", url],
                capture_output=True,
                text=True,
                check=True,
            )
            outputs[f"pg_dump --{label}"] = done.stdout
        yield outputs


def corpus(dumps: dict[str, str]) -> dict[str, str]:
    texts = {str(path): path.read_text(encoding="utf-8") for path in shipped_sql_files()}
    texts |= {str(path): path.read_text() for path in sorted(SQL_DATA_DIR.glob("*.sql"))}
    texts |= dumps
    return {name: _as_plain_sql(text) for name, text in texts.items()}


_SEPARATORS = [
    ";", ";\n", ";\n\n", " ; ", ";  -- a comment; with a semicolon\n",
    ";\n/* a block ; comment */\n", "\n;\n", ";\t--\n", ";;\n", "\n\n;",
]  # fmt: skip


def generated_cells(statements: list[str], count: int) -> list[str]:
    """``count`` cells of 1 to 5 statements, with comments and blanks between (seeded)."""
    chooser = random.Random(15)
    cells = []
    for _ in range(count):
        cell = chooser.choice(["", "-- a cell\n", "/* hint */ ", "\n\n"])
        for i in range(chooser.randint(1, 5)):
            if i:
                separator = chooser.choice(_SEPARATORS)
                # A statement ending in a line comment would swallow a `;` after it.
                if "--" in cell.rsplit("\n", 1)[-1]:
                    separator = "\n" + separator
                cell += separator
            cell += chooser.choice(statements)
        if chooser.random() < 0.5:
            cell += chooser.choice(_SEPARATORS)
        cells.append(cell)
    return cells


def test_split_statements_agrees_with_postgresqls_parser(dumps: dict[str, str]) -> None:
    texts = corpus(dumps)
    assert len(shipped_sql_files()) >= 100  # the embedded server alone ships about 200
    compared = matched = 0
    problems: list[str] = []
    statements: list[str] = []
    for name, text in texts.items():
        n, m, found = compare(text)
        compared, matched = compared + n, matched + m
        problems += [f"{name}: {p}" for p in found]
        statements += [text[p] for p in parser.split(text, with_parser=True, only_slices=True)]
    cells = generated_cells(statements, 8000)
    cell_statements = 0
    for i, cell in enumerate(cells):
        n, m, found = compare(cell)
        compared, matched, cell_statements = compared + n, matched + m, cell_statements + n
        problems += [f"generated cell {i}: {p}" for p in found]
    print(
        f"\n{len(texts)} texts ({sum(map(len, texts.values())):,} characters) and "
        f"{len(cells)} generated cells ({cell_statements:,} statements): "
        f"{matched:,} of {compared:,} statements split as PostgreSQL's parser splits them"
    )
    assert compared > 20_000
    assert not problems, "\n".join(problems[:50])
