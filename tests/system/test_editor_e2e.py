"""End to end: SQL highlighting and Tab completion of ``%%sql`` cells in JupyterLab.

A notebook with a ``%%sql`` cell, a Python cell, a Markdown cell and a
Python cell holding a ``%sql`` line, opened in JupyterLab in headless
Chromium with the extension built from labextension/ (``npm run build:prod``
writes it to lunepool_magic/labextension/; the build hook does it on install):

* the SQL cell's editor speaks SQL (CodeMirror's ``data-language``) and its
  keywords carry the SQL highlighter's token classes; the Python cells speak
  Python; the Markdown cell renders; the ``%sql`` line stays Python;
* editing the SQL cell's first line away from ``%%sql`` turns it to Python,
  and back again;
* in a new ``%%sql`` cell, typing a partial column name and Tab shows the
  completer with the columns and their kind.

JupySQL's lab plugin (installed with the bench extra) would highlight
``%%sql`` cells by itself, so the test first checks that it is not in the
server's environment. Screenshots go to the test's ``tmp_path``; with
``LUNEPOOL_README_SCREENSHOT=path`` the completion screenshot is also
written there (docs/images/editor.png is made that way).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.jupyterlab import JupyterLab, NotebookPage, launch_chromium, missing

_MISSING = missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"editor e2e test {_MISSING}")

REPO = Path(__file__).resolve().parents[2]
EXTENSION = "lunepool-magic-highlight"
BUILT = REPO / "lunepool_magic" / "labextension"
NOTEBOOK = "editor.ipynb"
VIEWPORT = {"width": 1100, "height": 760}

SQL_CELL = "%%sql\nSELECT id, total FROM editor_orders WHERE total > 10 ORDER BY id"
PYTHON_CELL = "def double(x):\n    return 2 * x"
MARKDOWN_CELL = "# Orders\n\nThe *big* ones."
LINE_MAGIC_CELL = "big = %sql SELECT count(*) FROM editor_orders WHERE total > 10\nprint(big)"

# Language and token classes of one cell's editor, as CodeMirror rendered it.
_EDITOR_JS = """
(cell) => {
  const content = cell.querySelector('.cm-content');
  const spans = [...cell.querySelectorAll('.cm-line span')];
  return {
    language: content ? content.getAttribute('data-language') : null,
    tokens: spans.map(s => [s.textContent, s.className]),
  };
}
"""


def _notebook_json() -> dict[str, Any]:
    def code(source: str) -> dict[str, Any]:
        return {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": source,
        }

    return {
        "cells": [
            code("%load_ext lunepool_magic"),
            code(SQL_CELL),
            code(PYTHON_CELL),
            {"cell_type": "markdown", "metadata": {}, "source": MARKDOWN_CELL},
            code(LINE_MAGIC_CELL),
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python", "codemirror_mode": {"name": "ipython"}},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture
def lab(pg_url: str, tmp_path: Path) -> Iterator[JupyterLab]:
    """JupyterLab serving the test notebook, with the built extension on its JUPYTER_PATH."""
    if not (BUILT / "package.json").exists():
        pytest.fail(
            f"the JupyterLab extension is not built ({BUILT} is missing): "
            "cd labextension && npm install && npm run build:prod",
            pytrace=False,
        )
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "DROP TABLE IF EXISTS editor_orders;"
            "CREATE TABLE editor_orders"
            " (id int, customer_id int, customer_name text, total numeric);"
            "INSERT INTO editor_orders VALUES"
            " (1, 7, 'Ada', 12), (2, 8, 'Bob', 30), (3, 7, 'Ada', 5)"
        )
    work = Path(tempfile.mkdtemp(prefix="lpm-editor-"))
    try:
        (work / "notebooks").mkdir()
        (work / "notebooks" / NOTEBOOK).write_text(json.dumps(_notebook_json(), indent=1))
        extensions = work / "extensions"
        (extensions / "labextensions").mkdir(parents=True)
        (extensions / "labextensions" / EXTENSION).symlink_to(BUILT)
        server = JupyterLab(
            work / "notebooks",
            home=work / "jupyter",
            log=tmp_path / "jupyterlab.log",
            env={
                "DATABASE_URL": pg_url,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
                "JUPYTER_PATH": str(extensions),
            },
        )
        try:
            server.start()
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("DROP TABLE IF EXISTS editor_orders")


def _extension_listing(lab: JupyterLab) -> str:
    """``jupyter labextension list`` as the server sees its extensions."""
    env = dict(os.environ)
    env.update(
        JUPYTER_PATH=os.pathsep.join(
            [str(lab.home / "path"), str(lab.notebook_dir.parent / "extensions")]
        ),
        JUPYTER_CONFIG_DIR=str(lab.home / "config"),
        JUPYTER_DATA_DIR=str(lab.home / "data"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout + done.stderr


def _editor(nb: NotebookPage, index: int) -> dict[str, Any]:
    return nb.cell(index).evaluate(_EDITOR_JS)


def _class_of(editor: dict[str, Any], word: str) -> str:
    """The highlighter's class on ``word`` ("" when it is plain text, in no span)."""
    return next((c for text, c in editor["tokens"] if text == word), "")


def _wait_for_language(nb: NotebookPage, index: int, language: str) -> None:
    nb.cell(index).locator(f".cm-content[data-language='{language}']").wait_for(timeout=10_000)


def _wait_for_catalog(lab: JupyterLab) -> None:
    """Wait in the notebook's kernel for the catalog read its first SQL cell started.

    Through a second client of the same kernel (silent: nothing shows in
    the notebook), the way ``%sql --refresh`` would wait.
    """
    from jupyter_client import BlockingKernelClient

    (session,) = lab.api("GET", "/api/sessions")
    client = BlockingKernelClient(
        connection_file=str(lab.home / "runtime" / f"kernel-{session['kernel']['id']}.json")
    )
    client.load_connection_file()
    client.start_channels()
    try:
        reply = client.execute_interactive(
            "from lunepool_magic import completer as _c\n"
            "_s = get_ipython().magics_manager.registry['LunepoolMagic'].sessions['default']\n"
            "assert _c._installed[get_ipython()].cache.wait(_s.pool, 30) is not None",
            silent=True,
            timeout=60,
        )
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()


def test_sql_cells_are_highlighted_as_sql_and_tab_completes_columns(
    lab: JupyterLab, tmp_path: Path
) -> None:
    listing = _extension_listing(lab)
    assert "jupysql" not in listing.lower(), (
        "JupySQL's lab plugin is installed and would highlight %%sql cells itself:\n" + listing
    )
    assert EXTENSION in listing and "enabled" in listing, listing

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        context = launch_chromium(playwright, lab.home / "chromium-profile", VIEWPORT)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        nb = NotebookPage(page)
        try:
            page.goto(lab.url(f"lab/tree/{NOTEBOOK}"))
            nb.wait_for_kernel(timeout=60)
            page.keyboard.press("Control+b")  # hide the file browser
            nb.run_all()
            nb.wait_until_run_done(timeout=60)

            # Highlighting: SQL in the %%sql cell, Python elsewhere, Markdown rendered.
            _wait_for_language(nb, 1, "sql")
            # JupyterLab's highlight style gives each token kind one generated
            # class: a keyword's is the one Python's `def` gets.
            python = _editor(nb, 2)
            assert python["language"] == "python", python
            keyword = _class_of(python, "def")
            assert keyword and _class_of(python, "return") == keyword, python
            sql = _editor(nb, 1)
            for word in ("SELECT", "FROM", "WHERE", "ORDER", "BY"):
                assert _class_of(sql, word) == keyword, (word, sql)
            assert _class_of(sql, "editor_orders") != keyword, sql
            heading = nb.cell(3).locator(".jp-RenderedMarkdown h1")
            expect(heading).to_have_attribute("data-jupyter-id", "Orders")
            expect(nb.cell(3).locator(".jp-RenderedMarkdown em")).to_have_text("big")
            line_magic = _editor(nb, 4)
            assert line_magic["language"] == "python", line_magic  # a %sql line stays Python
            assert _class_of(line_magic, "SELECT") != keyword, line_magic
            page.screenshot(path=str(tmp_path / "highlighting.png"))

            # The first line decides: not %%sql -> Python, %%sql again -> SQL.
            editor = nb.cell(1).locator(".cm-content")
            editor.click()
            page.keyboard.press("Control+Home")
            page.keyboard.press("Shift+End")
            page.keyboard.type("# no longer SQL")
            _wait_for_language(nb, 1, "python")
            assert _class_of(_editor(nb, 1), "SELECT") != keyword
            page.keyboard.press("Control+Home")
            page.keyboard.press("Shift+End")
            page.keyboard.type("%%sql")
            _wait_for_language(nb, 1, "sql")
            page.keyboard.press("Escape")

            # Completion: a partial column name, Tab, the completer lists the columns.
            _wait_for_catalog(lab)
            index = len(nb.cells())
            last = nb.panel.locator(".jp-Notebook .jp-Cell").last
            last.locator(".jp-InputPrompt").click()
            page.keyboard.press("Escape")
            page.keyboard.press("b")
            nb.cell(index).wait_for()
            page.keyboard.press("Enter")
            page.keyboard.type("%%sql\nSELECT customer")
            page.keyboard.type(" FROM editor_orders")
            for _ in " FROM editor_orders":
                page.keyboard.press("ArrowLeft")
            page.keyboard.press("Tab")
            completer = page.locator(".jp-Completer")
            expect(completer).to_be_visible()
            items = completer.locator(".jp-Completer-item")
            expect(items.locator(".jp-Completer-match")).to_have_text(
                ["customer_id", "customer_name"]
            )
            for item in range(2):  # the kind from the kernel's reply, as JupyterLab shows it
                expect(items.nth(item)).to_contain_text("column")
            _wait_for_language(nb, index, "sql")
            shot = tmp_path / "completion.png"
            page.screenshot(path=str(shot))
            readme_shot = os.environ.get("LUNEPOOL_README_SCREENSHOT")
            if readme_shot:
                # The cells and the completer, without the window around them.
                clip = {"x": 40, "y": 95, "width": 720, "height": 545}
                page.screenshot(path=readme_shot, clip=clip)
            print(f"screenshots: {tmp_path}")
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"failure screenshot: {tmp_path / 'failure.png'}; log: {lab.log}")
            raise
        finally:
            context.close()
