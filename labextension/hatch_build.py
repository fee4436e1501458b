"""Build hook: build the JupyterLab extension with npm, or say in one line why not.

The extension (labextension/, TypeScript) is built with hatch-jupyter-builder's
npm builder into lunepool_magic/labextension/, from where the wheel ships it
to share/jupyter/labextensions/. A build that cannot run (no npm, no network
for npm, an old Node.js) is skipped with one line, since everything but
the highlighting works without it: ``pip install -e .`` on a machine
without Node.js, or mybinder.org installing the repository. Release and CI
builds set ``LUNEPOOL_REQUIRE_LABEXTENSION=1``, which makes a missing
extension an error instead (.ci/check_labextension.sh does).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hatch_jupyter_builder import npm_builder
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

HERE = Path(__file__).resolve().parent
BUILT = HERE.parent / "lunepool_magic" / "labextension"


class LabExtensionHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        required = os.environ.get("LUNEPOOL_REQUIRE_LABEXTENSION") == "1"
        if version != "editable" and (BUILT / "package.json").exists():
            return  # built already (an sdist carries it): no Node.js needed
        try:
            if shutil.which("npm") is None:
                raise RuntimeError("npm not found")
            if version == "editable":  # a development build, redone only when src/ changed
                npm_builder(
                    self.target_name,
                    version,
                    path=str(HERE),
                    build_cmd="build",
                    source_dir=str(HERE / "src"),
                    build_dir=str(BUILT),
                )
            else:
                npm_builder(self.target_name, version, path=str(HERE), build_cmd="build:prod")
        except Exception as exc:
            if required:
                raise
            lines = str(exc).strip().splitlines()
            reason = lines[-1] if lines else type(exc).__name__
            print(
                f"lunepool_magic: the JupyterLab extension that highlights %%sql cells was not "
                f"built ({reason}); completion and the magics work without it.",
                file=sys.stderr,
            )
