"""Run the tutorial notebooks again and store their new outputs.

    python notebooks/refresh_outputs.py                 # every notebook here
    python notebooks/refresh_outputs.py 02-the-pool.ipynb

The stored outputs are what a reader sees on GitHub and what nbval compares
against (``pytest`` runs them), so refresh them whenever a change alters what
a notebook prints, then read the diff and run ``pytest notebooks``.

Each notebook runs top to bottom in a fresh kernel of *this* Python, on the
embedded server: ``DATABASE_URL`` is removed from the kernel's environment, as
the notebooks are meant to be run by a newcomer with nothing configured. The
outputs are then tidied for publishing:

* the embedded server's socket directory (a path of this machine) is written
  as ``~/.local/share/lunepool_magic/pg<N>``, where it lives for a normal user;
* as root, the one-time ``RootModeWarning`` is not shown (the kernel ignores
  it), since readers do not run notebooks as root.

Anything else that looks machine-specific (a home directory, a temp path)
stops the script before it writes, as does a cell that fails without being
tagged ``raises-exception``.

Needs nbclient (``pip install nbclient``), which is not a test dependency.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# The socket directory of the embedded server, inside a connection target:
# postgresql://postgres@[/home/me/.local/share/lunepool_magic/pg18]/postgres
SOCKET_DIR_RE = re.compile(r"\[/[^\]\s]*?lunepool_magic[^\]\s]*?/pg(\d+)\]")
SOCKET_DIR_SHOWN = r"[~/.local/share/lunepool_magic/pg\1]"

# Paths that must not be published.
FORBIDDEN_RE = re.compile(r"/root\b|/home/|/Users/|/tmp/|/var/folders/|\\Users\\")

# RootModeWarning (a UserWarning) by its message, which starts with "lunepool_magic":
# -W/PYTHONWARNINGS cannot name the class, as filters are read before the
# package is importable.
ROOT_WARNING_FILTER = "ignore:lunepool_magic:UserWarning"


def kernel_manager_class() -> type:
    """A KernelManager whose kernel is this Python, whatever kernelspecs are installed."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager
    from traitlets import default

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    class ThisPythonKernel(KernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return ThisPythonSpecs()

    return ThisPythonKernel


def kernel_environment() -> None:
    """Set the environment the kernel inherits: no DATABASE_URL; as root, no root warning."""
    os.environ.pop("DATABASE_URL", None)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        current = os.environ.get("PYTHONWARNINGS")
        os.environ["PYTHONWARNINGS"] = (
            f"{current},{ROOT_WARNING_FILTER}" if current else ROOT_WARNING_FILTER
        )


def tidy(value: Any) -> Any:
    """``value`` (an output field: str, list of str, dict) with the socket dir rewritten."""
    if isinstance(value, str):
        return SOCKET_DIR_RE.sub(SOCKET_DIR_SHOWN, value)
    if isinstance(value, list):
        return [tidy(v) for v in value]
    if isinstance(value, dict):
        return {k: tidy(v) for k, v in value.items()}
    return value


def texts(output: dict[str, Any]) -> list[str]:
    """The text an output shows (images left out)."""
    found = []
    if "text" in output:
        found.append(output["text"])
    for key, value in output.get("data", {}).items():
        if key.startswith("text/"):
            found.append(value if isinstance(value, str) else "".join(value))
    if "evalue" in output:
        found.append(output["evalue"])
        found.extend(output.get("traceback", []))
    return found


def refresh(path: Path) -> None:
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_manager_class=kernel_manager_class(),
        allow_error_names=(),
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    # Cells tagged raises-exception may fail; any other failure stops here.
    client.execute()
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.outputs = [nbformat.from_dict(tidy(dict(output))) for output in cell.outputs]
        for output in cell.outputs:
            for text in texts(output):
                match = FORBIDDEN_RE.search(text)
                if match:
                    problems.append(f"cell {index}: machine-specific path {match.group()!r}")
    if problems:
        raise SystemExit(f"{path.name}: not written:\n  " + "\n  ".join(problems))
    nbformat.write(nb, path)
    print(f"{path.name}: outputs refreshed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook files (default: all here)")
    args = parser.parse_args(argv)
    paths = [Path(p).resolve() for p in args.notebooks] or sorted(HERE.glob("[0-9]*.ipynb"))
    kernel_environment()
    for path in paths:
        refresh(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
