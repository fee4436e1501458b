"""``%%sql --background df <<``: queries on other connections, in threads, against a real server.

Jobs are held at a known point with advisory locks: ``pg_admin`` takes a
session lock, the job's statement waits for the same lock, so a test knows
the job is running (the server shows it waiting) until it releases the lock.
No sleeps as synchronisation: waits are for server-side or job state, with
deadlines. The last tests drive a real kernel (``kernel`` fixture): where a
notice printed from a job's thread arrives, and that kernel shutdown cancels
running jobs on the server.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from support.shell import (  # noqa: F401 (ip_fixture provides the `ip` fixture)
    APPLICATION_NAME,
    Shell,
    active_queries,
    interrupt_main_after,
    ip_fixture,
    wait_for,
)

from lunepool_magic.magic import LunepoolMagic
from lunepool_magic.notebook.jobs import Job, JobState
from lunepool_magic.notebook.options import OptionError, parse_line

DEADLINE = 15.0


class Gate:
    """An advisory lock held by pg_admin: statements that take it wait until opened."""

    def __init__(self, admin: psycopg.Connection) -> None:
        self.admin = admin
        self.key = random.randrange(1, 2**31)
        self.closed = False

    @property
    def sql(self) -> str:
        """What a job runs to wait at the gate (a transaction lock: gone after the statement)."""
        return f"pg_advisory_xact_lock({self.key})"

    def close(self) -> None:
        self.admin.execute("SELECT pg_advisory_lock(%s)", [self.key])
        self.closed = True

    def open(self) -> None:
        if self.closed:
            self.admin.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            self.closed = False

    def waiting(self) -> list[tuple[int, str]]:
        """Our backends waiting at this gate."""
        return active_queries(self.admin, f"%{self.sql}%")


@pytest.fixture
def gate(pg_admin: psycopg.Connection) -> Iterator[Gate]:
    g = Gate(pg_admin)
    g.close()
    try:
        yield g
    finally:
        g.open()


def job(ip: Shell, number: int) -> Job:
    table = ip.magics._jobs
    assert table is not None
    found = table.get(number)
    assert found is not None
    return found


def finished(ip: Shell, number: int) -> bool:
    return job(ip, number).finished


# ---------------------------------------------------------------- running


def test_background_returns_at_once_and_sets_the_variable_when_done(ip: Shell, gate: Gate) -> None:
    foreground_pid = ip.backend_pid()
    started = ip.ok(f"%%sql --background lpm_bg <<\nSELECT {gate.sql}, 42 AS answer")
    assert started.out.startswith("[1] running in the background (server pid ")
    assert "lpm_bg is set when it finishes" in started.out
    assert started.value is None
    wait_for(gate.waiting, DEADLINE, "the job to wait at the gate")
    assert "lpm_bg" not in ip.user_ns
    listing = ip.value("%sql --jobs")
    assert listing.loc[1, "state"] == "running" and listing.loc[1, "variable"] == "lpm_bg"
    assert job(ip, 1).pid != foreground_pid
    assert ip.scalar("%sql SELECT 7") == 7  # the notebook goes on meanwhile

    gate.open()
    waited = ip.ok("%sql --wait 1")
    assert waited.out.startswith("[1] done in ")
    assert "lpm_bg = 1 row × 2 columns" in waited.out
    assert ip.user_ns["lpm_bg"]["answer"].tolist() == [42]
    listing = ip.value("%sql --jobs")
    assert listing.loc[1, "state"] == "done" and listing.loc[1, "rows"] == 1
    assert ip.session().background_pool.stats().in_use == 0


def test_several_jobs_run_at_once_up_to_the_pool_size(
    ip: Shell, gate: Gate, pg_admin: psycopg.Connection
) -> None:
    ip.ok("%config LunepoolMagic.max_connections = 3")
    for n in range(3):
        ip.ok(f"%%sql --background lpm_j{n} <<\nSELECT {gate.sql}, {n} AS n")
    wait_for(lambda: len(gate.waiting()) == 3, DEADLINE, "three jobs at the gate at once")
    refused = ip.fail(f"%sql --background SELECT {gate.sql}")
    assert "no connection free for another background job on 'default': 3 jobs" in refused.text
    assert "HINT:  wait for one to finish" in refused.text
    assert "Traceback" not in refused.text
    assert ip.scalar("%sql SELECT 1") == 1  # the cells keep their own connection
    assert ip.value("%sql").loc["default", "jobs"] == 3

    gate.open()
    ip.ok("%sql --wait")
    assert [ip.user_ns[f"lpm_j{n}"]["n"].item() for n in range(3)] == [0, 1, 2]
    stats = ip.session().background_pool.stats()
    assert (stats.in_use, stats.max_size, stats.broken) == (0, 3, 0)


def test_a_job_never_runs_on_the_pinned_transaction(ip: Shell) -> None:
    ip.ok("%sql BEGIN")
    pinned = ip.backend_pid()
    started = ip.ok("%sql --background lpm_pid << SELECT pg_backend_pid() AS pid")
    assert "does not see this notebook's open transaction" in started.err
    ip.ok("%sql --wait")
    assert int(ip.user_ns["lpm_pid"]["pid"].item()) != pinned
    assert ip.session().transaction == "open"
    ip.ok("%sql ROLLBACK")


def test_a_job_without_a_variable_returns_its_rows_on_wait(ip: Shell) -> None:
    ip.ok("%sql --background SELECT 5 AS five")
    waited = ip.ok("%sql --wait 1")
    assert "in no variable: %sql --wait 1 returns them" in waited.out
    assert waited.value["five"].tolist() == [5]
    again = ip.ok("%sql --wait 1")  # a finished job: says how it ended, again
    assert again.value["five"].tolist() == [5]


def test_a_statement_without_rows_and_an_open_transaction(
    ip: Shell, pg_admin: psycopg.Connection
) -> None:
    table = f"lpm_bg_{random.randrange(10**9)}"  # other runs may share the server
    try:
        ip.ok(f"%sql --background CREATE TABLE {table} (x int)")
        assert "[1] done in" in ip.ok("%sql --wait").out
        ip.ok(f"%%sql --background lpm_none <<\nINSERT INTO {table} VALUES (1)")
        done = ip.ok("%sql --wait")
        assert "INSERT 0 1; lpm_none = None (no result set)" in done.out
        assert ip.user_ns["lpm_none"] is None
        ip.ok(f"%%sql --background\nBEGIN;\nINSERT INTO {table} VALUES (2)")
        left = ip.ok("%sql --wait")
        assert "left a transaction open; it was rolled back" in left.err
        rows = pg_admin.execute(f"SELECT x FROM {table} ORDER BY x").fetchall()
        assert rows == [(1,)]
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {table}")


def test_wait_reports_a_job_that_ended_before_it(ip: Shell) -> None:
    ip.ok("%sql --background lpm_quick << SELECT 1 AS one")
    wait_for(lambda: finished(ip, 1), DEADLINE, "the job to end")
    waited = ip.ok("%sql --wait")  # no number: running jobs and those no cell reported
    assert "[1] done in" in waited.out and "lpm_quick = 1 row × 1 column" in waited.out
    assert "No background job to wait for" in ip.ok("%sql --wait").out


def test_server_notices_of_a_job_are_kept_and_shown(ip: Shell) -> None:
    ip.ok("%sql --background DO $$ BEGIN RAISE NOTICE 'hello from the job'; END $$")
    waited = ip.ok("%sql --wait")
    assert "NOTICE:  hello from the job" in waited.err
    assert job(ip, 1).warnings == ["NOTICE:  hello from the job"]


# ---------------------------------------------------------------- failures


def test_a_failed_job_keeps_its_error_and_wait_raises_it(ip: Shell) -> None:
    ip.ok("%%sql --background lpm_fail <<\nSELECT 1;\nSELECT * FROM lpm_no_such_table")
    failed = ip.fail("%sql --wait 1")
    text = failed.text
    assert "[1] failed after" in text and "(lpm_fail not set)" in text
    assert 'ERROR:  relation "lpm_no_such_table" does not exist' in text
    assert "LINE 3: SELECT * FROM lpm_no_such_table" in text  # the %%sql line is line 1
    assert "(SQLSTATE 42P01 in statement 2 of 2 (line 3); statement 1 ran)" in text
    assert "Traceback" not in text
    assert "lpm_fail" not in ip.user_ns
    listing = ip.value("%sql --jobs")
    assert listing.loc[1, "state"] == "failed"
    assert listing.loc[1, "error"] == 'ERROR:  relation "lpm_no_such_table" does not exist'
    assert job(ip, 1).state is JobState.FAILED


def test_a_job_keeps_the_row_limit_and_says_it_cut_the_result(ip: Shell) -> None:
    """Jobs used to ignore --limit and row_limit (the README said they kept them)."""
    ip.ok("%sql --background --limit 3 lpm_cut << SELECT g FROM generate_series(1, 10) g")
    done = ip.ok("%sql --wait 1")
    assert "lpm_cut = 3 rows × 1 column (the first rows only: the result has more;" in done.out
    assert ip.user_ns["lpm_cut"]["g"].tolist() == [1, 2, 3]
    ip.ok("%config LunepoolMagic.row_limit = 2")
    ip.ok("%sql --background --output arrow lpm_arrow << SELECT g FROM generate_series(1, 10) g")
    assert "lpm_arrow = 2 rows × 1 column (the first rows only" in ip.ok("%sql --wait 2").out
    assert ip.user_ns["lpm_arrow"].column("g").to_pylist() == [1, 2]
    ip.ok("%sql --background lpm_all << SELECT g FROM generate_series(1, 2) g")
    whole = ip.ok("%sql --wait 3")
    assert "lpm_all = 2 rows × 1 column" in whole.out and "first rows only" not in whole.out


def test_a_job_past_the_memory_budget_fails_in_one_line_and_keeps_nothing(ip: Shell) -> None:
    """Jobs used to fetch without max_result_memory: a huge background result could
    take the kernel down with it."""
    ip.ok("%config LunepoolMagic.max_result_memory = '30 MB'")
    big = "SELECT g, repeat('x', 500) AS t FROM generate_series(1, 2000000) AS g"
    ip.ok(f"%sql --background lpm_big << {big}")
    failed = ip.fail("%sql --wait 1")
    assert "[1] failed after" in failed.text and "(lpm_big not set)" in failed.text
    assert "ERROR:  the result passed max_result_memory (30.0 MB) at " in failed.text
    assert "Traceback" not in failed.text
    assert "lpm_big" not in ip.user_ns
    assert job(ip, 1).state is JobState.FAILED and job(ip, 1).traceback == ""
    ip.ok("%sql --background lpm_after << SELECT 1 AS one")  # the job pool's connection works
    ip.ok("%sql --wait 2")
    assert ip.user_ns["lpm_after"]["one"].tolist() == [1]


def test_the_thread_prints_the_notice_when_nobody_waits(ip: Shell, gate: Gate) -> None:
    ip.ok(f"%%sql --background lpm_note <<\nSELECT {gate.sql}")
    ip.ok(f"%%sql --background\nSELECT {gate.sql};\nSELECT * FROM lpm_no_such_table")
    wait_for(lambda: len(gate.waiting()) == 2, DEADLINE, "both jobs at the gate")
    ip.user_ns["lpm_open_gate"] = gate.open
    # A cell that runs while both jobs end: their notices land in its output.
    run = ip.ok(
        "import time\n"
        "lpm_jobs = get_ipython().magics_manager.registry['LunepoolMagic']._jobs\n"
        "lpm_open_gate()\n"
        "t = time.monotonic()\n"
        "while not all(j.notified for j in lpm_jobs.jobs()) and time.monotonic() - t < 15:\n"
        "    time.sleep(0.01)\n"
    )
    assert "[1] done in" in run.out and "lpm_note = 1 row × 1 column" in run.out
    assert "[2] failed after" in run.err
    assert 'relation "lpm_no_such_table" does not exist' in run.err


def test_notify_prints_the_summary_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    done = Job(3, "default", "df", "SELECT 1", 1)
    done.state, done.rows, done.columns = JobState.DONE, 1000, 2
    LunepoolMagic._notify(done)
    failed = Job(4, "default", None, "SELECT x", 1)
    failed.state, failed.error_lines = JobState.FAILED, ["ERROR:  boom", "(SQLSTATE XX000)"]
    LunepoolMagic._notify(failed)
    out, err = capsys.readouterr()
    assert out.startswith("[3] done in ") and out.endswith(": df = 1,000 rows × 2 columns\n")
    assert err.splitlines()[0].startswith("[4] failed after ")
    assert err.splitlines()[1:] == ["ERROR:  boom", "(SQLSTATE XX000)"]


# ---------------------------------------------------------------- cancelling


def test_cancel_stops_the_query_on_the_server(ip: Shell, gate: Gate) -> None:
    ip.ok(f"%%sql --background lpm_cancelled <<\nSELECT {gate.sql}")
    wait_for(gate.waiting, DEADLINE, "the job at the gate")
    cancelled = ip.ok("%sql --cancel 1")
    assert cancelled.out.startswith("[1] cancelled after ")
    assert "(lpm_cancelled not set)" in cancelled.out
    assert not gate.waiting()  # stopped on the server, not just forgotten
    assert "lpm_cancelled" not in ip.user_ns
    assert ip.value("%sql --jobs").loc[1, "state"] == "cancelled"
    assert "had already finished (cancelled)" in ip.ok("%sql --cancel 1").out
    # The connection survived the cancel and serves the next job.
    ip.ok("%sql --background lpm_after << SELECT 1 AS one")
    ip.ok("%sql --wait 2")
    assert ip.user_ns["lpm_after"]["one"].item() == 1
    assert ip.session().background_pool.stats().broken == 0


def test_cancel_all_and_nothing_to_cancel(ip: Shell, gate: Gate) -> None:
    assert "No background job is running." in ip.ok("%sql --cancel").out
    ip.ok(f"%sql --background SELECT {gate.sql}")
    ip.ok(f"%sql --background SELECT {gate.sql}")
    wait_for(lambda: len(gate.waiting()) == 2, DEADLINE, "two jobs at the gate")
    out = ip.ok("%sql --cancel all").out
    assert "[1] cancelled after" in out and "[2] cancelled after" in out
    assert not gate.waiting()


def test_a_late_cancel_never_reaches_the_next_borrower(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.max_connections = 1")
    ip.ok("%sql --background SELECT 1")
    ip.ok("%sql --wait 1")
    table = ip.magics._jobs
    assert table is not None
    first = job(ip, 1)
    assert table.cancel([first], timeout=1.0) == []  # finished: no request is sent
    ip.ok("%sql --background lpm_next << SELECT pg_sleep(0.2), 2 AS two")
    ip.ok("%sql --wait 2")
    assert job(ip, 2).state is JobState.DONE
    assert job(ip, 1).state is JobState.DONE


def test_interrupting_wait_cancels_the_jobs_on_the_server(ip: Shell, gate: Gate) -> None:
    ip.ok(f"%sql --background SELECT {gate.sql}")
    wait_for(gate.waiting, DEADLINE, "the job at the gate")
    waiting_job = job(ip, 1)
    with interrupt_main_after(lambda: waiting_job._claimed):
        run = ip.fail("%sql --wait 1")
    assert "Interrupted: cancelled background job(s) [1] on the server." in run.text
    assert "[1] cancelled after" in run.text
    assert "Traceback" not in run.text and "KeyboardInterrupt" not in run.text
    assert not gate.waiting()
    assert waiting_job.state is JobState.CANCELLED


def test_close_and_unload_cancel_running_jobs(ip: Shell, gate: Gate, pg_url: str) -> None:
    ip.ok(f'%sql "{pg_url}" --alias lpm_second')
    ip.ok(f"%sql --alias lpm_second --background SELECT {gate.sql}")
    wait_for(gate.waiting, DEADLINE, "the job at the gate")
    closed = ip.ok("%sql --close lpm_second")
    assert "(its background jobs [1] were cancelled)" in closed.out
    assert not gate.waiting()

    ip.ok(f"%sql --background SELECT {gate.sql}")
    wait_for(gate.waiting, DEADLINE, "the job at the gate")
    pending = job(ip, 2)
    ip.ok("%unload_ext lunepool_magic")
    assert not gate.waiting()
    assert pending.state is JobState.CANCELLED
    assert not pending.notified  # shutting down: no notices
    ip.ok("%load_ext lunepool_magic")


# ---------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%sql --jobs SELECT 1", "--jobs takes no SQL"),
        ("%%sql --jobs\nSELECT 1", "%%sql --jobs takes no SQL"),
        ("%sql --wait 99", "there is no background job 99"),
        ("%sql --background", "--background needs a statement"),
        ("%sql --background --analyze SELECT 1", "cannot be combined"),
        ("%sql --cancel 7 --out x", "stores nothing in a variable"),
    ],
)
def test_usage_errors(ip: Shell, cell: str, message: str) -> None:
    run = ip.fail(cell)
    assert message in run.text


def test_nothing_yet(ip: Shell) -> None:
    assert "No background jobs yet" in ip.ok("%sql --jobs").out
    assert "No background job to wait for" in ip.ok("%sql --wait").out


def test_job_options_parse() -> None:
    assert parse_line("--jobs").jobs
    assert parse_line("--wait").wait and parse_line("--wait").job is None
    assert parse_line("--wait 12").job == "12"
    assert parse_line("--cancel all").job == "all"
    parsed = parse_line("--background --alias wh df << SELECT 1")
    assert (parsed.background, parsed.alias, parsed.out, parsed.sql) == (
        True,
        "wh",
        "df",
        "SELECT 1",
    )
    with pytest.raises(OptionError):
        parse_line("--wait 3 SELECT 1")


# ---------------------------------------------------------------- a real kernel


def _read_until(kernel: Any, msg_id: str, predicate: Any, timeout: float = DEADLINE) -> list[dict]:
    """IOPub messages of ``msg_id`` until ``predicate(messages)`` is true."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while not predicate(messages):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; got {messages!r}")
        msg = kernel.client.get_iopub_msg(timeout=remaining)
        if msg["parent_header"].get("msg_id") == msg_id:
            messages.append(msg)
    return messages


def _streams(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


@pytest.mark.kernel
def test_kernel_notice_arrives_in_the_cell_that_is_running(kernel: Any, gate: Gate) -> None:
    kernel.ok(f"%%sql --background lpm_k <<\nSELECT {gate.sql}, 7 AS seven")
    wait_for(gate.waiting, DEADLINE, "the job at the gate")
    msg_id = kernel.submit(
        "import time\n"
        "lpm_job = get_ipython().magics_manager.registry['LunepoolMagic']._jobs.get(1)\n"
        "print('waiting for the job', flush=True)\n"
        "t = time.monotonic()\n"
        "while not lpm_job.notified and time.monotonic() - t < 15:\n"
        "    time.sleep(0.01)\n"
        "print('seen', lpm_job.state)\n"
    )
    _read_until(kernel, msg_id, lambda ms: "waiting for the job" in _streams(ms))
    gate.open()
    reply = kernel.collect(msg_id)
    assert reply.status == "ok"
    assert "[1] done in" in reply.text and "lpm_k = 1 row × 2 columns" in reply.text
    assert "seen done" in reply.text
    assert kernel.value("int(lpm_k['seven'].item())") == 7


@pytest.mark.kernel
def test_kernel_shutdown_cancels_running_jobs_on_the_server(
    kernel: Any, gate: Gate, pg_admin: psycopg.Connection
) -> None:
    kernel.ok(f"%sql --background SELECT {gate.sql}")
    waiting = wait_for(gate.waiting, DEADLINE, "the job at the gate")
    pids = [pid for pid, _ in waiting]
    kernel.client.stop_channels()
    kernel.manager.shutdown_kernel(now=False)  # a shutdown request, as Jupyter sends
    assert not kernel.manager.is_alive()
    wait_for(lambda: not gate.waiting(), 10, "the job's statement to stop")

    def alive() -> bool:
        rows = pg_admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND application_name = %s",
            (pids, APPLICATION_NAME),
        ).fetchone()
        return bool(rows[0])

    wait_for(lambda: not alive(), 10, "the job's backend to exit")
    with contextlib.suppress(Exception):
        gate.open()


def test_cancel_reaches_a_job_on_the_copy_fast_path(ip: Shell, gate: Gate) -> None:
    # A statement that reads FROM something is fetched through COPY: cancelled all the same.
    ip.ok(f"%%sql --background lpm_copy <<\nSELECT g, {gate.sql} FROM generate_series(1, 3) g")
    wait_for(gate.waiting, DEADLINE, "the job at the gate")
    assert "[1] cancelled after" in ip.ok("%sql --cancel 1").out
    assert not gate.waiting()
    ip.ok(f"%%sql --background lpm_copy <<\nSELECT g, {gate.sql} FROM generate_series(1, 3) g")
    wait_for(gate.waiting, DEADLINE, "the job at the gate")
    gate.open()
    ip.ok("%sql --wait 2")
    assert ip.user_ns["lpm_copy"]["g"].tolist() == [1, 2, 3]
    assert ip.session().background_pool.stats().broken == 0


# ---------------------------------------------------------------- JupyterLab


def _lab_missing() -> str | None:
    from support.jupyterlab import missing

    return missing()


_EMPTY_NOTEBOOK = {
    "cells": [{"cell_type": "markdown", "id": "first", "metadata": {},
               "source": "Background jobs"}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


@pytest.mark.skipif(_lab_missing() is not None, reason=f"JupyterLab e2e {_lab_missing()}")
def test_jupyterlab_shows_notices_in_the_latest_cell(
    pg_url: str, gate: Gate, tmp_path: Any
) -> None:
    """Where a job's notice lands in JupyterLab: the cell running when the job ends, or the
    most recently run one if the kernel is idle (ipykernel routes output from other threads
    to the latest request; JupyterLab appends it to that cell's output)."""
    import json
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from playwright.sync_api import expect, sync_playwright
    from support.jupyterlab import JupyterLab, NotebookPage, launch_chromium

    repo = Path(__file__).resolve().parents[2]
    work = Path(tempfile.mkdtemp(prefix="lpm-lab-"))
    (work / "nb").mkdir()
    (work / "nb" / "jobs.ipynb").write_text(json.dumps(_EMPTY_NOTEBOOK))
    env = {"DATABASE_URL": pg_url, "PYTHONPATH": os.pathsep.join([str(repo)])}
    server = JupyterLab(work / "nb", home=work / "jupyter", log=tmp_path / "lab.log", env=env)
    try:
        server.start()
        with sync_playwright() as playwright:
            context = launch_chromium(
                playwright, server.home / "chromium", {"width": 1280, "height": 900}
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(30_000)
                page.goto(server.url("lab/tree/jobs.ipynb"))
                nb = NotebookPage(page)
                nb.wait_for_kernel(timeout=60)

                def output_of(index: int) -> Any:
                    return nb.cell(index).locator(".jp-OutputArea-output").last

                nb.append_code_cell("%load_ext lunepool_magic")
                nb.wait_until_run_done(timeout=30)
                # 1. The job ends while the kernel is idle: the latest cell (its own) shows it.
                idle = nb.append_code_cell(f"%%sql --background lpm_lab <<\nSELECT {gate.sql}")
                nb.wait_until_run_done(timeout=30)
                wait_for(gate.waiting, DEADLINE, "the job at the gate")
                gate.open()
                expect(output_of(idle)).to_contain_text("[1] done in", timeout=15_000)

                # 2. The job ends while another cell runs: that cell shows it.
                gate.close()
                nb.append_code_cell(f"%sql --background SELECT {gate.sql}")
                nb.wait_until_run_done(timeout=30)
                wait_for(gate.waiting, DEADLINE, "the second job at the gate")
                running = nb.append_code_cell(
                    "import time; job = get_ipython().magics_manager.registry"
                    "['LunepoolMagic']._jobs.get(2); print('polling', flush=True)\n"
                    "t = time.monotonic()\n"
                    "while not job.notified and time.monotonic() - t < 15: time.sleep(0.01)"
                )
                expect(output_of(running)).to_contain_text("polling", timeout=15_000)
                gate.open()
                expect(nb.cell(running)).to_contain_text("[2] done in", timeout=15_000)
                nb.wait_until_run_done(timeout=30)
            finally:
                context.close()
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
