"""copy_to_file() and ``%sql --to FILE`` (issue 16): stream a query into a file.

Each file is read back with pyarrow, polars and pandas and compared with the
in-memory result of the same query (``query(output=...)``), over test_fetch.py's
type matrices and with batches made tiny so that a file takes many. A CSV file
must be byte for byte what the server's own ``COPY ... (FORMAT csv, HEADER)``
gives. Ctrl-C (a real SIGINT in the main thread, sent once rows flow) cancels
on the server and leaves no file, and no half file, under the target name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from support.interrupts import ctrl_c_once_rows_flow
from support.shell import Shell, active_queries, ip_fixture, wait_for  # noqa: F401
from test_fetch import BINARY_MATRIX, EXOTIC_MATRIX

from lunepool_magic.postgres import tofile as tofile_module
from lunepool_magic.postgres.errors import NoResultSetError
from lunepool_magic.postgres.fetch import plan as fetch_plan
from lunepool_magic.postgres.fetch import transfer as fetch_transfer
from lunepool_magic.postgres.statement import query
from lunepool_magic.postgres.tofile import copy_to_file
from lunepool_magic.units import size

TINY = 4096  # bytes per batch: many batches


@pytest.fixture(scope="module")
def shared_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def conn(shared_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    yield shared_conn
    shared_conn.execute("RESET ALL")


def read_back(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    return pa.ipc.open_file(path).read_all()


def assert_same_table(got: pa.Table, want: pa.Table) -> None:
    """Same names, types and values (NaN equal to NaN, bits aside)."""
    assert got.column_names == want.column_names
    assert got.schema.types == want.schema.types
    for name, a, b in zip(want.column_names, got.columns, want.columns, strict=True):
        a, b = a.combine_chunks(), b.combine_chunks()
        if pa.types.is_floating(b.type):
            assert pc.is_nan(a).equals(pc.is_nan(b)), name
            a, b = pc.if_else(pc.is_nan(a), 0, a), pc.if_else(pc.is_nan(b), 0, b)
        assert a.equals(b), name


MATRICES = {
    "binary": BINARY_MATRIX,
    "exotic": EXOTIC_MATRIX,
    "many": "SELECT g, g / 7.0 AS n, repeat('é', g % 23) AS t, g % 3 = 0 AS b,"
    " '2021-01-01'::date + g AS d FROM generate_series(1, 20000) AS g",
}


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".feather"])
@pytest.mark.parametrize("matrix", list(MATRICES))
def test_the_file_reads_back_as_the_in_memory_result(
    conn: psycopg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    matrix: str,
) -> None:
    monkeypatch.setattr(fetch_transfer, "BLOCK_BYTES", 2000)
    statement = MATRICES[matrix]
    target = tmp_path / f"out{suffix}"
    written = copy_to_file(conn, statement, target, batch_bytes=TINY)
    want = query(conn, statement, output="arrow")
    assert written.rows == want.num_rows and written.bytes == target.stat().st_size
    assert_same_table(read_back(target), want)
    if matrix == "many" and suffix == ".parquet":
        assert pq.ParquetFile(target).num_row_groups > 10  # written in batches
        assert pl.read_parquet(target).equals(query(conn, statement, output="polars"))
        pd.testing.assert_frame_equal(pd.read_parquet(target), want.to_pandas())
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def _server_csv(conn: psycopg.Connection, statement: str) -> bytes:
    with conn.cursor().copy(f"COPY ({statement}) TO STDOUT (FORMAT csv, HEADER)") as copy:
        return b"".join(bytes(chunk) for chunk in copy)


@pytest.mark.parametrize("matrix", list(MATRICES))
def test_a_csv_file_is_the_servers_csv(
    conn: psycopg.Connection, tmp_path: Path, matrix: str
) -> None:
    target = tmp_path / "out.csv"
    written = copy_to_file(conn, MATRICES[matrix], target, batch_bytes=TINY)
    assert target.read_bytes() == _server_csv(conn, MATRICES[matrix])
    assert written.rows == len(query(conn, MATRICES[matrix]))


def test_csv_reads_back_with_pandas(conn: psycopg.Connection, tmp_path: Path) -> None:
    statement = "SELECT g, g * 0.5 AS half, 'x' || g AS t FROM generate_series(1, 5000) AS g"
    target = tmp_path / "out.csv"
    copy_to_file(conn, statement, target)
    back = pd.read_csv(target)
    want = query(conn, statement)
    assert back["g"].tolist() == want["g"].tolist()
    assert back["t"].tolist() == want["t"].tolist()
    assert [float(v) for v in back["half"]] == [float(v) for v in want["half"]]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_limit(conn: psycopg.Connection, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    statement = "SELECT g FROM generate_series(1, 1000) AS g"
    written = copy_to_file(conn, statement, target, limit=10, batch_bytes=64)
    assert written.rows == 10 and written.truncated is True
    if suffix == ".csv":
        assert target.read_text().splitlines() == ["g", *map(str, range(1, 11))]
    else:
        assert pq.read_table(target).column("g").to_pylist() == list(range(1, 11))
    whole = copy_to_file(conn, statement, target, limit=1000)
    assert whole.rows == 1000 and whole.truncated is False


def test_statements_copy_does_not_take_are_run_and_written(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    conn.execute("CREATE TEMP TABLE lpm_tofile (id int, note text)")
    target = tmp_path / "returned.parquet"
    written = copy_to_file(
        conn, "INSERT INTO lpm_tofile VALUES (1, 'a'), (2, NULL) RETURNING *", target
    )
    assert written.rows == 2
    assert pq.read_table(target).to_pylist() == [
        {"id": 1, "note": "a"},
        {"id": 2, "note": None},
    ]
    csv = tmp_path / "shown.csv"
    copy_to_file(conn, "SHOW TimeZone", csv)
    assert csv.read_text().splitlines()[0] == "TimeZone"
    with pytest.raises(NoResultSetError, match="no rows to write"):
        copy_to_file(conn, "DELETE FROM lpm_tofile WHERE false", tmp_path / "none.parquet")
    assert not (tmp_path / "none.parquet").exists()
    conn.execute("DROP TABLE lpm_tofile")


def test_bad_names(conn: psycopg.Connection, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.parquet, \.arrow, \.feather or \.csv"):
        copy_to_file(conn, "SELECT 1", tmp_path / "out.xlsx")


def test_a_type_that_changes_midway_is_a_clear_error_and_leaves_nothing(
    conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_transfer, "BLOCK_BYTES", 2000)
    target = tmp_path / "out.parquet"
    statement = (
        "SELECT CASE WHEN g < 9000 THEN g::numeric ELSE g / 3.0 END AS n"
        " FROM generate_series(1, 10000) AS g"
    )
    with pytest.raises(ValueError, match=r"column 'n' changed type while streaming .* n::text"):
        copy_to_file(conn, statement, target, batch_bytes=TINY)
    assert list(tmp_path.iterdir()) == []
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("route", ["auto", "csv"])
def test_ctrl_c_cancels_and_leaves_no_half_file(
    conn: psycopg.Connection,
    pg_admin: psycopg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
    route: str,
) -> None:
    if route == "csv":
        monkeypatch.setattr(fetch_plan, "BINARY_WIRE", {})
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"the previous file")  # an earlier run's file stays as it was
    with ctrl_c_once_rows_flow() as on_progress, pytest.raises(KeyboardInterrupt):
        copy_to_file(
            conn,
            "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000000) AS g",
            target,
            on_progress=on_progress,
            batch_bytes=1 << 20,
        )
    wait_for(lambda: not active_queries(pg_admin, "%50000000%"), timeout=5, what="the cancel")
    assert target.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert query(conn, "SELECT 1 AS one").iat[0, 0] == 1


def test_the_magic_writes_and_says_so(ip: Shell, tmp_path: Path) -> None:
    target = tmp_path / "cells.parquet"
    run = ip.ok(f"%sql --to {target} SELECT g FROM generate_series(1, 1234) AS g")
    assert run.value is None
    last = run.out.splitlines()[-1]
    # Sizes are written as every message writes them (lunepool_magic.units).
    assert last.startswith(f"Wrote 1,234 rows ({size(target.stat().st_size)}) to {target}")
    assert last.endswith(" s.")
    assert pq.read_table(target).num_rows == 1234
    spaced = tmp_path / "with space.csv"
    ip.ok(f'%%sql --to "{spaced}" --limit 5\nSELECT g FROM generate_series(1, 10) AS g')
    assert spaced.read_text().splitlines() == ["g", "1", "2", "3", "4", "5"]
    for line, message in (
        (f"%sql --to {tmp_path}/x.xlsx SELECT 1", "must end in .parquet"),
        (f"%sql --to {tmp_path}/nowhere/x.csv SELECT 1", "does not exist"),
        (f"%sql --to {tmp_path}/x.csv", "--to needs a statement"),
        (f"%sql --to {tmp_path}/x.csv --out v SELECT 1", "does not go with --out"),
    ):
        failed = ip.fail(line)
        assert message in str(failed.error), (line, failed.error)
    assert sorted(os.listdir(tmp_path)) == ["cells.parquet", "with space.csv"]


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".csv"])
def test_a_link_planted_under_the_temporary_name_is_never_written_through(
    conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    # On a shared machine the folder may be /tmp: another user who could guess the
    # temporary name could put a link there to a file of ours. The name is random;
    # here it is made known, and the file is created only if it is new.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    monkeypatch.setattr(tofile_module.uuid, "uuid4", lambda: uuid.UUID(int=0))
    target = tmp_path / f"out{suffix}"
    temp = target.with_name(f".{target.name}.{os.getpid()}-00000000.part")
    temp.symlink_to(victim)
    with pytest.raises(FileExistsError, match="someone put it there"):
        copy_to_file(conn, "SELECT g FROM generate_series(1, 100) AS g", target)
    assert victim.read_text() == "precious"
    assert temp.is_symlink()  # not ours to delete either
    assert not target.exists()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert query(conn, "SELECT 1 AS one").iat[0, 0] == 1


def test_the_magic_says_a_file_error_in_one_line(
    ip: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tofile_module.uuid, "uuid4", lambda: uuid.UUID(int=0))
    target = tmp_path / "out.csv"
    target.with_name(f".out.csv.{os.getpid()}-00000000.part").symlink_to(tmp_path / "victim")
    failed = ip.fail(f"%sql --to {target} SELECT g FROM generate_series(1, 100) AS g")
    assert str(failed.error).splitlines() == [
        f"ERROR:  could not write {str(target)!r}: a file or link already has the temporary "
        "name beside it, not made here (the name is random: someone put it there); nothing "
        "was written",
        "(no file was made under that name)",
    ]
    assert not (tmp_path / "victim").exists()  # the dangling link was not followed
    assert ip.scalar("%sql SELECT 1") == 1


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_rename_that_fails_at_the_end_leaves_no_temporary_file(
    conn: psycopg.Connection, tmp_path: Path, suffix: str
) -> None:
    target = tmp_path / f"taken{suffix}"
    target.mkdir()  # the name is a folder: the last step, the rename, fails
    with pytest.raises(IsADirectoryError):
        copy_to_file(conn, "SELECT g FROM generate_series(1, 100) AS g", target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.is_dir() and list(target.iterdir()) == []
    assert query(conn, "SELECT 1 AS one").iat[0, 0] == 1
