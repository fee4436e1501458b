"""binder/ makes the notebooks run on mybinder.org with no setup.

mybinder.org cannot be reached from here, so binder/ is proved two ways:

1. ``jupyter-repo2docker --no-build`` (what mybinder.org runs; offline, it only
   prints the Dockerfile it would build) picks up our steps: Python from
   ``runtime.txt``, ``requirements.txt`` installed after the repository is
   copied in (it installs the package from the repository), ``postBuild`` run
   as the notebook user.
2. The steps are replayed in a fresh virtual environment as a non-root user,
   whose home directory holds a copy of the repository, as on mybinder.org:
   install what the image's base environment has (ipykernel), then
   ``pip install -r binder/requirements.txt`` from the repository, run
   ``binder/postBuild``, and run the notebooks under nbval (through
   ``binder/start`` if there is one). They must all pass. As root, the
   replay runs as the system user ``lunepool-binder``, created if missing.

The replay installs everything from the package index into an empty
environment, then runs the notebooks: one and a half to four minutes here
(pip's cache is kept between runs in ``<tmp>/lunepool_magic-binder-pip-cache``
where the index allows caching). It is marked ``binder``: ``-m "not binder"``
leaves it out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
BINDER = REPO / "binder"
REPLAY_USER = "lunepool-binder"
# What mybinder.org's base environment provides that binder/ relies on, and
# what the replay adds to run the notebooks as tests.
BASE_ENVIRONMENT = ["ipykernel"]
TEST_HARNESS = ["pytest", "nbval"]
# Copied with the repository only if git cannot list its files.
_NOT_COPIED = (".git", ".venv", "venv", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis")
_ENV_PASSED_ON = re.compile(r"PIP_\w+|(?:HTTPS?|NO|ALL)_PROXY|SSL_CERT_\w+", re.IGNORECASE)


def _runtime_python() -> str:
    """The Python version binder/runtime.txt asks for, e.g. '3.11'."""
    text = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", text)
    assert match, f"binder/runtime.txt should read python-X.Y, not {text!r}"
    return match.group(1)


# --------------------------------------------------------------------------- repo2docker


def _unescape(name: str) -> str:
    """repo2docker's escaped file names ('-2e' for '.') back to text."""
    return re.sub(r"-([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def _user_at(lines: list[str], index: int) -> str:
    """The USER a Dockerfile's line ``index`` runs as."""
    users = [line.strip() for line in lines[:index] if line.startswith("USER ")]
    return users[-1] if users else "USER root"


def test_repo2docker_picks_up_the_binder_steps(tmp_path: Path) -> None:
    if importlib.util.find_spec("repo2docker") is None:
        pytest.skip("jupyter-repo2docker is not installed (pip install jupyter-repo2docker)")
    # mybinder.org builds as user jovyan, uid 1000 (the default is the caller's uid).
    command = [sys.executable, "-m", "repo2docker", "--no-build"]
    command += ["--user-id", "1000", "--user-name", "jovyan", str(REPO)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    dockerfile, log = done.stdout, done.stderr
    lines = dockerfile.splitlines()

    def line_of(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"no line matching {pattern!r} in the Dockerfile:\n{dockerfile}"
        return found[-1]

    # Python from runtime.txt: the conda environment of that version.
    version = _runtime_python()
    assert f"python={version}" in log or f"environment.py-{version}-" in _unescape(dockerfile)
    # requirements.txt refers to the repository itself ('.'), so repo2docker
    # copies the whole repository before installing it, as the notebook user.
    copy_repo = line_of(r"^COPY --chown=1000:1000 src/ \$\{REPO_DIR\}/$")
    install = line_of(r'pip install --no-cache-dir -r "binder/requirements\.txt"')
    assert copy_repo < install
    assert _user_at(lines, install) == "USER ${NB_USER}"
    # postBuild after the install, as the notebook user too.
    post_build = line_of(r"^RUN \./binder/postBuild$")
    assert install < post_build
    assert _user_at(lines, post_build) == "USER ${NB_USER}"
    # A start script only if we have one.
    assert ("binder/start" in dockerfile) == (BINDER / "start").exists()


# --------------------------------------------------------------------------- the replay


@dataclass
class _User:
    """Who runs the replay: a non-root user (uid None: the current, non-root one)."""

    name: str
    uid: int | None
    gid: int | None

    def run(
        self,
        command: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        timeout: float,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        ids = {}
        if self.uid is not None:
            ids = {"user": self.uid, "group": self.gid, "extra_groups": []}
        done = subprocess.run(
            command,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **ids,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} failed (exit {done.returncode}):\n"
                f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}",
                pytrace=False,
            )
        return done

    def own(self, path: Path) -> None:
        if self.uid is None:
            return
        for directory, dirs, files in os.walk(path):
            os.chown(directory, self.uid, self.gid)
            for name in dirs + files:
                os.chown(os.path.join(directory, name), self.uid, self.gid, follow_symlinks=False)


def _replay_user() -> _User:
    if os.geteuid() != 0:
        import pwd

        return _User(pwd.getpwuid(os.geteuid()).pw_name, None, None)
    import pwd

    try:
        entry = pwd.getpwnam(REPLAY_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        options = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        options += ["--shell", "/usr/sbin/nologin"]
        subprocess.run([useradd, *options, REPLAY_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(REPLAY_USER)
    return _User(REPLAY_USER, entry.pw_uid, entry.pw_gid)


def _pip_cache(user: _User) -> Path | None:
    """A pip cache kept between replays, owned by the replay user; None if unsafe."""
    path = Path(tempfile.gettempdir()) / "lunepool_magic-binder-pip-cache"
    uid = os.geteuid() if user.uid is None else user.uid
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
        if user.uid is not None:
            os.chown(path, user.uid, user.gid)
    info = path.lstat()
    if path.is_symlink() or info.st_uid != uid:
        return None  # someone else's: do without a cache
    return path


def _copy_repository(dest: Path) -> None:
    """The files a clone would have (tracked and new, not ignored), as on mybinder.org."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*_NOT_COPIED))
        return
    dest.mkdir()
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the work tree, or a submodule
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _python_for(user: _User, env: dict[str, str], cwd: Path) -> str:
    """A Python of runtime.txt's version that ``user`` can run and make venvs with."""
    version = _runtime_python()
    candidates = [sys.executable, shutil.which(f"python{version}"), f"/usr/bin/python{version}"]
    tried = []
    for python in dict.fromkeys(c for c in candidates if c):
        check = "import sys, ensurepip, venv; print('%d.%d' % sys.version_info[:2])"
        try:
            done = user.run([python, "-c", check], env=env, cwd=cwd, timeout=60, check=False)
        except OSError as err:
            tried.append(f"{python}: {err}")
            continue
        if done.returncode == 0 and done.stdout.strip() == version:
            return python
        tried.append(f"{python}: {(done.stdout + done.stderr).strip()[-200:]}")
    pytest.fail(
        f"no Python {version} with venv that {user.name} can run; tried:\n  "
        + "\n  ".join(tried)
        + f"\n(on Debian: apt-get install python{version}-venv)",
        pytrace=False,
    )


def _code_cells() -> int:
    return sum(
        cell.cell_type == "code"
        for path in sorted((REPO / "notebooks").glob("*.ipynb"))
        for cell in nbformat.read(path, as_version=4).cells
    )


def _stop_embedded_server(user: _User, python: Path, env: dict[str, str], home: Path) -> None:
    """Stop the embedded server the notebooks started, if it still runs."""
    script = (
        "from lunepool_magic import embedded\n"
        "if embedded.status().running:\n"
        "    embedded.start(); embedded.stop()\n"
    )
    with contextlib.suppress(Exception):
        user.run([str(python), "-c", script], env=env, cwd=home, timeout=120, check=False)
    # Last resort: the postmaster of a data directory under the replay's home.
    for pid_file in home.glob(".local/share/lunepool_magic/pg*/postmaster.pid"):
        with contextlib.suppress(Exception):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)


@contextlib.contextmanager
def _scratch_dir() -> Iterator[Path]:
    # Short: the server's socket lives under the home directory (~100 bytes max).
    path = Path(tempfile.mkdtemp(prefix="lpm-binder-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.binder
def test_binder_replay_runs_the_notebooks() -> None:
    started = time.monotonic()
    user = _replay_user()
    with _scratch_dir() as base:
        home = base / "home"  # the repository is the home directory, as on mybinder.org
        venv = base / "venv"
        _copy_repository(home)
        user.own(base)
        env = {
            "HOME": str(home),
            "USER": user.name,
            "LOGNAME": user.name,
            "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
        }
        env.update({k: v for k, v in os.environ.items() if _ENV_PASSED_ON.fullmatch(k)})
        cache = _pip_cache(user)
        if cache is not None:
            env["PIP_CACHE_DIR"] = str(cache)
        else:
            env["PIP_NO_CACHE_DIR"] = "1"

        base_python = _python_for(user, env, home)
        user.run([base_python, "-m", "venv", str(venv)], env=env, cwd=home, timeout=300)
        python = venv / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        # 1. The image's base environment. 2. binder/requirements.txt, from the
        # repository, as repo2docker runs it. 3. postBuild. 4. Test tools.
        user.run([*pip, *BASE_ENVIRONMENT], env=env, cwd=home, timeout=1200)
        user.run([*pip, "-r", "binder/requirements.txt"], env=env, cwd=home, timeout=1200)
        post_build = home / "binder" / "postBuild"
        post_build.chmod(0o755)  # repo2docker does the same
        user.run([str(post_build)], env=env, cwd=home, timeout=600)
        user.run([*pip, *TEST_HARNESS], env=env, cwd=home, timeout=1200)
        installed = time.monotonic()

        command = [str(python), "-m", "pytest", "notebooks", "-q", "-p", "no:cacheprovider"]
        start = home / "binder" / "start"
        if start.exists():
            start.chmod(0o755)
            command = [str(start), *command]
        try:
            done = user.run(command, env=env, cwd=home, timeout=900, check=False)
        finally:
            _stop_embedded_server(user, python, env, home)

    output = done.stdout + done.stderr
    assert done.returncode == 0, f"the notebooks failed in the replay:\n{output[-12000:]}"
    expected = _code_cells()
    assert re.search(rf"\b{expected} passed\b", output), output[-3000:]
    print(
        f"binder replay as {user.name}: install and postBuild "
        f"{installed - started:.0f} s, notebooks {time.monotonic() - installed:.0f} s"
    )
