"""End to end: the quickstart in a real JupyterLab, driven in headless Chromium.

What a person does: open ``notebooks/01-quickstart.ipynb`` in JupyterLab,
Run > Run All Cells, read the page; then type ``%sql SELECT pg_sleep(60)``
into a new cell, run it, press the toolbar's stop button, run one more
cell, then a slow query. Everything is checked in the page (the DOM
JupyterLab renders), and on the server through ``pg_admin``:

* every code cell ran, in order, and shows what the stored notebook shows:
  the same kinds of output (a DataFrame as an HTML table, printed status,
  a plot), the same table values and text; ``%%sql`` says where it
  connected, in the magic's own words; nothing on stderr (the quickstart has
  no cell that is meant to fail);
* the stop button cancels the running query on the server within seconds,
  the cell says so in one line (no traceback), and the next cell runs on
  the same kernel and renders its table;
* a query that streams for longer than ``progress_after`` shows one
  progress line above its table, settled into its summary;
* shutting JupyterLab down ends the kernel and its server connections.

The server runs on 127.0.0.1 with a random token on a port the OS picks,
on a temporary copy of notebooks/ with the stored outputs removed (so every
output on the page is new), with ``DATABASE_URL`` = ``pg_url`` and this
checkout on ``PYTHONPATH``; its kernel is this Python. A screenshot of the
finished notebook (or of the page when the test failed) is written to the
test's ``tmp_path`` and its path printed; the server's log lies beside it.

Needs JupyterLab and Playwright (pip) and Debian's Chromium (apt); skipped
with the reason when one is missing, a failure under ``LUNEPOOL_CI_STRICT=1``.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from support.jupyterlab import (
    STDERR,
    STDOUT,
    CellView,
    JupyterLab,
    NotebookPage,
    clear_outputs,
    copy_notebooks,
    launch_chromium,
    missing,
)
from support.shell import APPLICATION_NAME, active_queries, wait_for

from lunepool_magic.postgres.conninfo import describe_target

# A skip mark, not a skip at import: in strict mode a skipped collection is
# an error that stops the whole run; a skipped test fails alone.
_MISSING = missing()
pytestmark = pytest.mark.skipif(
    _MISSING is not None, reason=f"end-to-end JupyterLab test {_MISSING}"
)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
QUICKSTART = "01-quickstart.ipynb"
# nbval's rule format: "regex: ..." on one line, "replace: ..." on the next.
SANITIZE_RULES = re.findall(
    r"^regex: (.*)$\n^replace: (.*)$",
    (NOTEBOOKS / "nbval-sanitize.cfg").read_text(),
    flags=re.MULTILINE,
)

SLEEP_CELL = "%sql SELECT pg_sleep(60)"
NEXT_CELL = "%sql SELECT 41 + 1 AS answer"
# At least 1.5 s on the server (30 rows x 50 ms), streamed: past the 0.5 s threshold.
PROGRESS_CELLS = (
    "%config LunepoolMagic.progress_after = 0.5",
    "%sql SELECT g, pg_sleep(0.05) AS slept FROM generate_series(1, 30) AS g",
)
# The magic's own line for an interrupted query (Session._failure in session.py).
CANCELLED = "Interrupted: query cancelled on the server."
VIEWPORT = {"width": 1280, "height": 900}


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def lab(pg_url: str, tmp_path: Path) -> Iterator[JupyterLab]:
    """JupyterLab on a copy of notebooks/ (quickstart outputs cleared), kernel env from here."""
    work = Path(tempfile.mkdtemp(prefix="lpm-lab-"))
    try:
        copy_notebooks(NOTEBOOKS, work / "notebooks")
        clear_outputs(work / "notebooks" / QUICKSTART)
        _build_font_cache()
        server = JupyterLab(
            work / "notebooks",
            home=work / "jupyter",
            log=tmp_path / "jupyterlab.log",
            env={
                "DATABASE_URL": pg_url,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
            },
        )
        try:
            server.start()
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def notebook(lab: JupyterLab) -> Iterator[NotebookPage]:
    """The quickstart open in JupyterLab in headless Chromium, its kernel started and idle."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, lab.home / "chromium-profile", VIEWPORT)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            page.goto(lab.url(f"lab/tree/{QUICKSTART}"))
            nb = NotebookPage(page)
            try:
                nb.wait_for_kernel(timeout=60)
            except BaseException:
                print(f"the notebook's kernel did not start; JupyterLab's log: {lab.log}")
                raise
            page.keyboard.press("Control+b")  # hide the file browser: a wider notebook
            yield nb
        finally:
            context.close()


def _build_font_cache() -> None:
    # Else the kernel's first plot may print "Matplotlib is building the font
    # cache" on stderr. Without matplotlib, the plot cell fails and says so.
    with contextlib.suppress(ImportError):
        import matplotlib.font_manager  # noqa: F401


# ------------------------------------------------------------------ the test


def test_quickstart_in_jupyterlab_then_the_stop_button_cancels_the_query(
    lab: JupyterLab,
    notebook: NotebookPage,
    pg_url: str,
    pg_admin: psycopg.Connection,
    tmp_path: Path,
) -> None:
    screenshot = tmp_path / "quickstart-in-jupyterlab.png"
    try:
        _check_kernel_is_this_python(lab)
        before = _our_backends(pg_admin)

        notebook.run_all()
        notebook.wait_until_run_done(timeout=120)
        _check_quickstart(notebook, pg_url)

        _check_stop_button_cancels(notebook, pg_admin)
        _check_next_cell_runs(notebook)
        _check_progress_line(notebook)
        kernel_backends = _our_backends(pg_admin) - before
        assert kernel_backends, "the kernel's connections are not in pg_stat_activity"

        # Only the cancelled cell shows anything on stderr.
        errors = [c for c in notebook.code_cells() if any(o.mime == STDERR for o in c.outputs)]
        assert [c.source for c in errors] == [SLEEP_CELL], notebook.describe()
    except BaseException:
        with contextlib.suppress(Exception):
            notebook.screenshot(screenshot)
            print(f"screenshot of the failed run: {screenshot}")
        print(f"JupyterLab's log: {lab.log}")
        raise
    notebook.screenshot(screenshot)
    print(f"screenshot of the finished notebook: {screenshot}")

    # Shutting JupyterLab down ends the kernel, whose pools say goodbye to the server.
    assert lab.close() == [], "the kernel outlived JupyterLab (killed now)"
    wait_for(
        lambda: not _our_backends(pg_admin) & kernel_backends,
        timeout=10,
        what=f"the kernel's server connections {sorted(kernel_backends)} to close",
    )


# ------------------------------------------------------------------ checks


def _check_kernel_is_this_python(lab: JupyterLab) -> None:
    """The notebook's session runs the python3 kernelspec, and its process is sys.executable."""
    sessions = lab.api("GET", "/api/sessions")
    assert [(s["path"], s["kernel"]["name"]) for s in sessions] == [(QUICKSTART, "python3")]
    if not os.path.isdir("/proc"):
        return  # the kernelspec's argv was checked when the server started
    kernels = lab.kernel_processes()
    assert len(kernels) == 1, f"expected one kernel process, found {kernels}"
    [command] = kernels.values()
    assert command[:3] == [sys.executable, "-m", "ipykernel_launcher"], command


def _check_quickstart(notebook: NotebookPage, pg_url: str) -> None:
    stored = [
        c
        for c in json.loads((NOTEBOOKS / QUICKSTART).read_text())["cells"]
        if c["cell_type"] == "code"
    ]
    # Precondition: no quickstart cell is meant to fail; errors anywhere are failures.
    tagged = [c for c in stored if "raises-exception" in c.get("metadata", {}).get("tags", [])]
    assert not tagged, "the quickstart now has cells meant to fail: update this test"

    cells = notebook.code_cells()
    page = notebook.describe()
    assert [c.source for c in cells] == ["".join(c["source"]) for c in stored], page
    # Run All ran every code cell once, top to bottom, in a fresh kernel.
    assert [c.execution_count for c in cells] == list(range(1, len(stored) + 1)), page
    assert not [c for c in cells if any(o.mime == STDERR for o in c.outputs)], (
        f"error output on the page:\n{page}"
    )

    # The first %%sql cell: our status line, then the DataFrame as an HTML table.
    target = describe_target(conninfo_to_dict(pg_url))
    status = f"Connected to {target} (from DATABASE_URL) as 'default'."
    first = _cell(cells, "%%sql\nSELECT 'Hello from PostgreSQL'")
    assert [o.mime for o in first.outputs] == [STDOUT, "text/html"], first.describe()
    assert first.texts(STDOUT).strip() == status
    assert first.outputs[1].tables == [
        [["", "greeting", "answer"], ["0", "Hello from PostgreSQL", "42"]]
    ], first.describe()

    # Every cell shows what the stored notebook shows (nbval keeps those
    # right): same kinds of output, same table values, same text, up to what
    # nbval's rules let vary (a job's server pid, a temporary schema's number).
    for cell, saved in zip(cells, stored, strict=True):
        _check_like_stored(cell, saved)


def _check_like_stored(cell: CellView, saved: dict[str, Any]) -> None:
    expected = [_shown(o) for o in saved["outputs"]]
    where = f"cell {cell.source!r}: page shows\n{cell.describe()}"
    assert [o.mime for o in cell.outputs] == [mime for mime, _ in expected], where
    if "nbval-ignore-output" in saved.get("metadata", {}).get("tags", []):
        return  # times, for one: only the kinds of output are the same
    for shown, (mime, data) in zip(cell.outputs, expected, strict=True):
        if mime == STDOUT:
            assert _sanitized(shown.text.rstrip("\n")) == _sanitized(data.rstrip("\n")), where
        elif mime == "text/html" and "<table" in data:
            assert _sanitized_tables(shown.tables) == _sanitized_tables(_html_tables(data)), where
        elif mime == "text/html":  # a plan: preformatted text
            text = html.unescape(re.sub(r"<[^>]*>", "", data))
            assert _sanitized(shown.text.strip()) == _sanitized(text.strip()), where
        elif mime == "text/plain":
            assert _sanitized(shown.text.strip()) == _sanitized(data.strip()), where
        elif mime.startswith("image/"):
            assert shown.images == 1, where


def _sanitized(text: str) -> str:
    """``text`` rewritten by the notebooks' nbval rules, as nbval compares outputs."""
    for pattern, replacement in SANITIZE_RULES:
        text = re.sub(pattern, replacement, text)
    return text


def _sanitized_tables(tables: list[list[list[str]]]) -> list[list[list[str]]]:
    return [[[_sanitized(cell) for cell in row] for row in table] for table in tables]


def _shown(output: dict[str, Any]) -> tuple[str, str]:
    """The mime type JupyterLab renders a stored output as, and its data."""
    if output["output_type"] == "stream":
        return (STDOUT if output["name"] == "stdout" else STDERR), "".join(output["text"])
    if output["output_type"] == "error":
        return STDERR, "\n".join(output["traceback"])
    data = output["data"]
    for mime in ("text/html", "image/png", "text/plain"):  # richest first, as JupyterLab picks
        if mime in data:
            value = data[mime]
            return mime, "".join(value) if isinstance(value, list) else value
    raise AssertionError(f"unexpected stored output {sorted(data)}")


def _check_stop_button_cancels(notebook: NotebookPage, pg_admin: psycopg.Connection) -> None:
    """Run pg_sleep(60), press stop: cancelled on the server, said in one line."""
    from playwright.sync_api import expect

    index = notebook.append_code_cell(SLEEP_CELL)
    wait_for(
        lambda: active_queries(pg_admin, "%pg_sleep(60)%"),
        timeout=30,
        what="pg_sleep(60) to run on the server",
    )
    cell = notebook.cell(index)
    expect(cell.locator(".jp-InputArea-prompt")).to_have_text("[*]:")

    pressed = time.monotonic()
    notebook.interrupt()
    expect(
        cell.locator(f".jp-OutputArea-output[data-mime-type='{STDERR}']"),
        f"10 s after the stop button, the cell shows no {CANCELLED!r}",
    ).to_have_text(CANCELLED, timeout=10_000)
    wait_for(
        lambda: not active_queries(pg_admin, "%pg_sleep%"),
        timeout=5,
        what="no pg_sleep running on the server",
    )
    assert time.monotonic() - pressed < 15, "the query ran on instead of being cancelled"
    notebook.wait_until_run_done(timeout=15)

    view = notebook.cells()[index]
    assert view.execution_count is not None, view.describe()
    assert [(o.mime, o.text.strip()) for o in view.outputs] == [(STDERR, CANCELLED)], (
        f"the stopped cell must show only {CANCELLED!r}:\n{view.describe()}"
    )


def _check_next_cell_runs(notebook: NotebookPage) -> None:
    from playwright.sync_api import expect

    index = notebook.append_code_cell(NEXT_CELL)
    table = notebook.cell(index).locator(".jp-OutputArea-output[data-mime-type='text/html'] table")
    expect(table, f"{NEXT_CELL!r} shows no table").to_be_visible(timeout=30_000)
    notebook.wait_until_run_done(timeout=30)
    view = notebook.cells()[index]
    assert [o.mime for o in view.outputs] == ["text/html"], view.describe()
    assert view.outputs[0].tables == [[["", "answer"], ["0", "42"]]], view.describe()


def _check_progress_line(notebook: NotebookPage) -> None:
    """A slow streamed query shows one progress line, redrawn in place, then its table."""
    from playwright.sync_api import expect

    notebook.append_code_cell(PROGRESS_CELLS[0])
    notebook.wait_until_run_done(timeout=30)
    index = notebook.append_code_cell(PROGRESS_CELLS[1])
    table = notebook.cell(index).locator(".jp-OutputArea-output[data-mime-type='text/html'] table")
    expect(table, "the slow query shows no table").to_be_visible(timeout=30_000)
    notebook.wait_until_run_done(timeout=30)
    view = notebook.cells()[index]
    assert [o.mime for o in view.outputs] == ["text/plain", "text/html"], view.describe()
    line = view.outputs[0].text.strip()
    assert line.startswith("Query done: ") and ", 30 rows (" in line, view.describe()


# ------------------------------------------------------------------ helpers


def _our_backends(admin: psycopg.Connection) -> set[int]:
    """Server processes of the magic's connections (by application_name)."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APPLICATION_NAME,)
    ).fetchall()
    return {int(pid) for (pid,) in rows}


def _cell(cells: list[CellView], source_start: str) -> CellView:
    found = [c for c in cells if c.source.startswith(source_start)]
    assert len(found) == 1, f"the quickstart has {len(found)} cells starting {source_start!r}"
    return found[0]


class _Tables(HTMLParser):
    """Rows of cell texts of every <table> in an HTML string, as the page test reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _html_tables(html: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables
