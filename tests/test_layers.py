"""The layers of ../shared/DESIGN.md hold: contracts checked, light imports stay light."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "numpy", "pyarrow", "IPython", "traitlets")


def _modules_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


def test_the_import_contracts_in_pyproject_are_kept() -> None:
    lint = shutil.which("lint-imports") or pytest.fail("import-linter is not installed")
    run = subprocess.run([lint], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_the_postgres_wrapper_loads_no_dataframe_library_until_a_frame_is_built() -> None:
    loaded = _modules_after(
        "import lunepool_magic.postgres\nfrom lunepool_magic.postgres import create_pool"
    )
    assert "psycopg" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_asking_for_query_loads_pandas() -> None:
    # The other side of the lazy import: the name still works.
    loaded = _modules_after("from lunepool_magic.postgres import query\nassert callable(query)")
    assert "pandas" in loaded


@pytest.mark.parametrize(
    "module", ["lunepool_magic.pool", "lunepool_magic.sqltext", "lunepool_magic.units"]
)
def test_the_bottom_layer_loads_the_standard_library_only(module: str) -> None:
    # What the interpreter itself loads at start-up (site hooks) is not the module's.
    loaded = _modules_after(f"import {module}") - _modules_after("pass")
    third_party = loaded - set(sys.stdlib_module_names) - {"lunepool_magic"}
    assert not third_party, third_party


def test_the_embedded_server_package_loads_nothing_else_of_ours() -> None:
    script = (
        "import lunepool_magic.embedded, sys\n"
        "print(sorted(m for m in sys.modules if m.startswith('lunepool_magic.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    assert all(m.startswith("lunepool_magic.embedded") for m in eval(out)), out
