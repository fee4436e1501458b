"""Build hook: build the JupyterLab extension with npm, or say in one line why not.

Wheels (and sdists) always carry the built extension: it is built here with
hatch-jupyter-builder's npm builder unless it is already built, and a
missing build is an error. An editable install on a machine without npm
(or where the build fails, e.g. without network for npm) skips it with one
line instead, since everything but the highlighting works.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from hatch_jupyter_builder import npm_builder
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

HERE = Path(__file__).resolve().parent
BUILT = HERE.parent / "lunepool_magic" / "labextension"
BUILT_MARKER = BUILT / "static" / "style.js"


class LabExtensionHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            if shutil.which("npm") is None:
                print(
                    "lunepool_magic: npm not found, so the JupyterLab extension that highlights "
                    "%%sql cells is not built (completion and the magics work without it).",
                    file=sys.stderr,
                )
                return
            try:
                npm_builder(
                    self.target_name,
                    version,
                    path=str(HERE),
                    build_cmd="build",
                    source_dir=str(HERE / "src"),
                    build_dir=str(BUILT),
                )
            except Exception as exc:  # no network for npm, an old Node.js, ...
                reason = (
                    str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                )
                print(
                    f"lunepool_magic: the JupyterLab extension was not built ({reason}); "
                    "completion and the magics work without it.",
                    file=sys.stderr,
                )
            return
        if not BUILT_MARKER.exists():
            npm_builder(self.target_name, version, path=str(HERE), build_cmd="build:prod")
        if not BUILT_MARKER.exists():
            raise RuntimeError(f"the JupyterLab extension was not built: {BUILT_MARKER} is missing")
