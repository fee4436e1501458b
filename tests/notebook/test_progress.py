"""The progress line of a long query: when it appears, what it says, how it ends.

The rules (lunepool_magic/progress.py) are tested with a recording line;
what a notebook receives is tested in a real kernel against the real
server (display_data, then update_display_data messages with the same
display_id, settling into a summary), and the terminal form through a shell
whose stderr is a terminal. A query made slow with pg_sleep per row takes at
least as long as its sleeps add up to, so "slower than the threshold" holds
on any machine.
"""

from __future__ import annotations

import contextlib
import io
import queue
import time
from typing import Any

import pytest
from support.shell import Shell, ip_fixture  # noqa: F401

from lunepool_magic.notebook.progress import QueryProgress, TerminalLine, progress_text

# 100 rows, 20 ms of sleep each: at least 2 s on the server, and it streams
# (it reads FROM something), so it goes through the COPY path that reports.
SLOW_QUERY = "SELECT g, pg_sleep(0.02) AS slept FROM generate_series(1, 100) AS g"


class Recorder:
    """A Line that remembers what was drawn, in order."""

    def __init__(self) -> None:
        self.drawn: list[tuple[str, str]] = []

    def show(self, text: str) -> None:
        self.drawn.append(("show", text))

    def update(self, text: str) -> None:
        self.drawn.append(("update", text))

    def close(self, text: str) -> None:
        self.drawn.append(("close", text))


# ------------------------------------------------------------------ the rules


def test_nothing_is_drawn_for_a_query_faster_than_the_threshold() -> None:
    line = Recorder()
    progress = QueryProgress(line, after=1.0)
    progress(0, 0, 0.25)
    progress(5000, 120_000, 0.5)
    progress(10_000, 240_000, 0.99)
    progress.finish()
    assert line.drawn == []
    assert not progress.shown


def test_the_line_appears_at_the_threshold_updates_and_settles() -> None:
    line = Recorder()
    progress = QueryProgress(line, after=1.0)
    progress(0, 0, 0.5)
    progress(0, 0, 1.0)
    progress(250_000, 12_500_000, 1.25)
    progress(1_000_000, 50_000_000, 2.5)
    progress.finish()
    progress.finish()  # once only
    assert line.drawn == [
        ("show", "Query running: 1.00 s, no rows yet"),
        ("update", "Query running: 1.25 s, 250,000 rows (12.5 MB, 10.0 MB/s)"),
        ("update", "Query running: 2.50 s, 1,000,000 rows (50.0 MB, 20.0 MB/s)"),
        ("close", "Query done: 2.50 s, 1,000,000 rows (50.0 MB, 20.0 MB/s)"),
    ]


def test_a_failed_query_settles_into_stopped_counting_time_to_the_end() -> None:
    line = Recorder()
    progress = QueryProgress(line, after=0.0)
    progress(1, 40, 3.0)
    time.sleep(0.05)  # the interrupt comes after the last report
    progress.finish(failed=True)
    kind, text = line.drawn[-1]
    assert kind == "close" and text.endswith(" s, 1 row received"), text
    took = float(text.removeprefix("Query stopped after ").split(" s,")[0])
    assert 3.05 <= took < 10, text


def test_progress_text_units() -> None:
    assert progress_text(0, 0, 0.0, "done") == "Query done: 0.00 s, 0 rows (0 B)"
    assert progress_text(3, 900, 0.5, "done") == "Query done: 0.50 s, 3 rows (900 B, 2 kB/s)"
    assert (
        progress_text(40_000_000, 2_500_000_000, 75.0)
        == "Query running: 1 min 15 s, 40,000,000 rows (2.50 GB, 33.3 MB/s)"
    )


def test_terminal_line_redraws_in_place_and_ends_the_line() -> None:
    stream = io.StringIO()
    line = TerminalLine(stream)
    line.show("Query running: 1.00 s, no rows yet")
    line.update("Query running: 1.25 s, 9 rows (1 kB)")
    line.close("Query done: 1.50 s, 9 rows")
    assert stream.getvalue() == (
        "\rQuery running: 1.00 s, no rows yet"
        "\rQuery running: 1.25 s, 9 rows (1 kB)"
        # padded over the longer line before it
        "\rQuery done: 1.50 s, 9 rows          \n"
    )


# ------------------------------------------------------------- in the shell


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_on_a_terminal(ip: Shell, source: str) -> tuple[Any, str]:
    err = TerminalStream()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        result = ip.shell.run_cell(source, store_history=False)
    return result, err.getvalue()


def test_terminal_ipython_shows_the_line_on_stderr(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.progress_after = 0.5")
    result, err = _run_on_a_terminal(ip, f"%sql {SLOW_QUERY}")
    assert result.success
    assert len(result.result) == 100
    assert err.startswith("\rQuery running: "), repr(err)
    last = err.rstrip("\n").rsplit("\r", 1)[-1].rstrip()
    assert last.startswith("Query done: "), repr(err)
    assert ", 100 rows (" in last, repr(err)


def test_no_line_when_stderr_is_not_a_terminal(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.progress_after = 0")
    run = ip.ok(f"%sql {SLOW_QUERY}")
    assert "Query" not in run.text


def test_progress_after_none_turns_it_off(ip: Shell) -> None:
    ip.ok("%config LunepoolMagic.progress_after = None")
    result, err = _run_on_a_terminal(ip, f"%sql {SLOW_QUERY}")
    assert result.success
    assert err == ""


# ------------------------------------------------------------ in a notebook


def _progress_messages(outputs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(message type, display_id, text) of the display messages of a cell."""
    return [
        (o["msg_type"], o["content"]["transient"]["display_id"], o["content"]["data"]["text/plain"])
        for o in outputs
        if o["msg_type"] in ("display_data", "update_display_data")
    ]


@pytest.mark.kernel
def test_notebook_progress_updates_in_place_and_settles(kernel: Any) -> None:
    kernel.ok("%config LunepoolMagic.progress_after = 0.5")
    reply = kernel.ok(f"%sql {SLOW_QUERY}")
    shown = _progress_messages(reply.outputs)
    kinds = [kind for kind, _, _ in shown]
    assert kinds[0] == "display_data" and kinds.count("display_data") == 1, shown
    assert len(kinds) >= 2 and set(kinds[1:]) == {"update_display_data"}, shown
    assert len({display_id for _, display_id, _ in shown}) == 1, "one line, redrawn"
    assert shown[0][2].startswith("Query running: "), shown
    assert shown[-1][2].startswith("Query done: ") and ", 100 rows (" in shown[-1][2], shown
    # The result comes after the line, as usual.
    assert reply.outputs[-1]["msg_type"] == "execute_result"
    assert "[100 rows x 2 columns]" in reply.outputs[-1]["content"]["data"]["text/plain"]


@pytest.mark.kernel
def test_notebook_shows_nothing_for_a_fast_query(kernel: Any) -> None:
    kernel.ok("%sql SELECT 1")  # connect first: that cell says where to
    reply = kernel.ok("%sql SELECT g FROM generate_series(1, 1000) AS g")
    assert [o["msg_type"] for o in reply.outputs] == ["execute_result"]


@pytest.mark.kernel
def test_notebook_progress_settles_into_stopped_when_interrupted(kernel: Any) -> None:
    kernel.ok("%config LunepoolMagic.progress_after = 0")
    msg_id = kernel.submit(
        "%sql SELECT g, pg_sleep(0.05) AS slept FROM generate_series(1, 1000) AS g"
    )
    # Interrupt once the line is on screen: the message says the query is streaming.
    before = []
    deadline = time.monotonic() + 30
    while not any(o["msg_type"] == "display_data" for o in before):
        try:
            msg = kernel.client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no progress line within 30 s: {before}")
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] != "status":
            before.append({"msg_type": msg["msg_type"], "content": msg["content"]})
    kernel.manager.interrupt_kernel()
    reply = kernel.collect(msg_id)
    assert reply.status == "error"
    shown = _progress_messages(before + reply.outputs)
    assert shown[-1][2].startswith("Query stopped after "), shown
    assert "Interrupted: query cancelled on the server." in reply.text
