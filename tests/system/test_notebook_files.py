"""The stored notebooks are fit to publish: what a reader sees on GitHub.

nbval (``pytest`` runs it on notebooks/) checks that each notebook still
produces its stored outputs; these tests check the stored files themselves,
without a kernel: one clean top-to-bottom run, errors only where a cell is
meant to fail, nothing of the machine that made them (home directories,
temporary paths, passwords), short outputs, and working links between them.
To make new outputs: ``python notebooks/refresh_outputs.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9]*.ipynb"))

# Paths of the machine that ran the notebook, and passwords in connection strings.
FORBIDDEN = re.compile(
    r"/root\b|/home/|/Users/|/tmp/|/var/folders/"
    r"|postgres(?:ql)?://[^@/\s:]*:[^@/\s]+@|password\s*=",
    re.IGNORECASE,
)
MAX_OUTPUT_LINES = 40
MAX_FILE_BYTES = 250_000


def _texts(output: dict[str, Any]) -> list[str]:
    found = []
    if "text" in output:
        found.append(output["text"])
    for key, value in output.get("data", {}).items():
        if key.startswith("text/"):
            found.append(value)
    if output.get("output_type") == "error":
        found.append(output.get("evalue", ""))
        found.extend(output.get("traceback", []))
    return found


def test_the_tutorial_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01-quickstart.ipynb",
        "02-the-pool.ipynb",
        "03-parameters-and-safety.ipynb",
        "04-transactions-and-failures.ipynb",
        "05-large-results.ipynb",
        "06-coming-from-jupysql.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_is_one_clean_run(path: Path) -> None:
    assert path.stat().st_size < MAX_FILE_BYTES
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert "widgets" not in nb.metadata
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    # Run top to bottom in one fresh kernel.
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    for number, cell in enumerate(code):
        where = f"{path.name}, code cell {number}"
        assert "execution" not in cell.metadata, f"{where}: timing metadata"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        # IPython shows a magic's UsageError as one stderr line, not as an error output.
        usage = [
            o
            for o in cell.outputs
            if o.output_type == "stream"
            and o.name == "stderr"
            and o.text.startswith("UsageError: ")
        ]
        if "raises-exception" in cell.metadata.get("tags", []):
            assert errors or usage, f"{where}: tagged raises-exception but stored without an error"
        else:
            assert not errors, f"{where}: stored with an error: {errors[0].evalue}"
        for output in cell.outputs:
            for text in _texts(output):
                match = FORBIDDEN.search(text)
                assert match is None, f"{where}: machine-specific or secret: {match.group()!r}"
                assert "\x1b[" not in text, f"{where}: a Python traceback is stored"
                if output.get("data", {}).get("text/html") is not text:
                    lines = text.count("\n")
                    assert lines <= MAX_OUTPUT_LINES, f"{where}: {lines} lines of output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_links_between_notebooks_work(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for target in re.findall(r"\]\(([^)#\s]+\.ipynb)\)", cell.source):
            assert (path.parent / target).exists(), f"{path.name}: broken link to {target}"
