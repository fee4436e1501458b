"""A real JupyterLab server and a headless Chromium page that drives it, for end-to-end tests.

* :class:`JupyterLab` starts ``python -m jupyterlab`` (this Python) on
  127.0.0.1 with a random token and a port the OS picks, serving a folder of
  notebooks. Everything Jupyter would read or write of the user's own lives
  in a private folder: config, data, runtime files, IPython profile, lab
  settings and workspaces. Its ``python3`` kernelspec runs ``sys.executable``
  (checked through the server's API), so the kernel is this environment
  whatever kernels are installed. ``close()`` asks the server to shut down
  (kernels first), and kills what is left.
* :class:`NotebookPage` is one notebook open in JupyterLab, read and driven
  through the page only: menus, the toolbar, the keyboard, and what the DOM
  shows (:meth:`NotebookPage.cells` reads every cell's source, prompt and
  rendered outputs in one go).
* :func:`launch_chromium` is Debian's Chromium (``/usr/bin/chromium``) under
  Playwright, headless, with a fresh profile; Playwright's own browser
  download is not used. :func:`missing` says what is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "CellView",
    "JupyterLab",
    "NotebookPage",
    "OutputView",
    "clear_outputs",
    "copy_notebooks",
    "launch_chromium",
    "missing",
]

#: Debian's Chromium (``apt-get install chromium``).
CHROMIUM = "/usr/bin/chromium"
#: Headless, and quiet: no first-run UI, no calls home (the network is closed here).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]

STDOUT = "application/vnd.jupyter.stdout"
STDERR = "application/vnd.jupyter.stderr"  # stream stderr and error outputs alike

# JupyterLab settings for the test's user: no "official Jupyter news?" toast
# over the notebook (and no request for it).
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def missing() -> str | None:
    """Why the end-to-end test cannot run here (what to install), or None."""
    import importlib.util

    needs = []
    if importlib.util.find_spec("jupyterlab") is None:
        needs.append("JupyterLab (pip install jupyterlab)")
    if importlib.util.find_spec("playwright") is None:
        needs.append("Playwright for Python (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        needs.append(f"Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    if not needs:
        return None
    return "needs " + ", ".join(needs)


# ------------------------------------------------------------------ server


class JupyterLab:
    """``jupyter lab`` serving ``notebook_dir``; its private files go in ``home``.

    ``env`` is added to this process's environment for the server, and so
    for its kernels. ``log`` is the server's output (and its kernels').
    """

    def __init__(self, notebook_dir: Path, home: Path, log: Path, env: dict[str, str]) -> None:
        self.notebook_dir = notebook_dir
        self.home = home
        self.log = log
        self.token = secrets.token_hex(24)
        self.base_url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._kernel_pids: set[int] = set()
        self._env = env

    # -- start

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until its API answers; check the kernelspec."""
        dirs = {
            name: self.home / name
            for name in ("config", "data", "runtime", "path", "ipython", "settings", "workspaces")
        }
        for directory in dirs.values():
            directory.mkdir(parents=True, exist_ok=True)
        self._write_kernelspec(dirs["path"] / "kernels" / "python3")
        for name, settings in _LAB_SETTINGS.items():
            target = dirs["settings"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(settings))

        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # a user's kernel plots inline
        env.update(self._env)
        env.update(
            # Searched before the user's and the environment's folders: our kernelspec wins.
            JUPYTER_PATH=os.pathsep.join(
                filter(None, [str(dirs["path"]), env.get("JUPYTER_PATH")])
            ),
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            IPYTHONDIR=str(dirs["ipython"]),  # no profile, no startup files
        )
        argv = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",  # the OS picks a free port; read back from the runtime file
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.notebook_dir}",
            "--ServerApp.terminals_enabled=False",
            f"--LabApp.user_settings_dir={dirs['settings']}",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            argv.append("--allow-root")
        with open(self.log, "wb") as log:
            # Its own session: a Ctrl-C in the terminal reaches pytest, whose
            # cleanup shuts the server down in order.
            self.proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        info_file = dirs["runtime"] / f"jpserver-{self.proc.pid}.json"
        info: dict[str, Any] = {}

        def read_info() -> bool:  # the file may be there but not yet written in full
            with contextlib.suppress(OSError, ValueError):
                info.update(json.loads(info_file.read_text()))
            return "url" in info

        self._wait(read_info, timeout, "the server's runtime file")
        self.base_url = info["url"].rstrip("/")
        self._wait(lambda: self._answers("/api/status"), timeout, "the server's API")
        self._check_kernelspec()

    def _write_kernelspec(self, spec_dir: Path) -> None:
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "interrupt_mode": "signal",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))

    def _check_kernelspec(self) -> None:
        specs = self.api("GET", "/api/kernelspecs")
        argv = specs["kernelspecs"]["python3"]["spec"]["argv"]
        if argv[0] != sys.executable:
            raise AssertionError(
                f"JupyterLab's python3 kernel would run {argv[0]!r}, not this Python "
                f"({sys.executable}): check JUPYTER_PATH"
            )

    def _answers(self, path: str) -> bool:
        try:
            self.api("GET", path, timeout=2)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def _wait(self, ready: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with status {self.proc.returncode} while waiting for "
                    f"{what}; its log ({self.log}) ends:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"JupyterLab: no {what} after {timeout} s; its log ({self.log}) ends:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    # -- use

    def url(self, path: str) -> str:
        """The page ``path`` (e.g. ``lab/tree/x.ipynb``), logged in with the token."""
        return f"{self.base_url}/{path}?token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10.0) -> Any:
        """A REST call with the token; the decoded JSON answer (None if empty)."""
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method in ("POST", "PUT", "PATCH") else None,
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def kernel_processes(self) -> dict[int, list[str]]:
        """The server's kernel processes (Linux: from /proc): pid -> command line."""
        found: dict[int, list[str]] = {}
        if self.proc is None or not os.path.isdir("/proc"):
            return found
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                if ppid != self.proc.pid:
                    continue
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            command = [a.decode(errors="replace") for a in argv if a]
            if "ipykernel_launcher" in command:
                found[int(entry.name)] = command
        self._kernel_pids.update(found)
        return found

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- stop

    def close(self, timeout: float = 20.0) -> list[int]:
        """Shut the server down, which shuts its kernels down first.

        Returns the kernels (seen by :meth:`kernel_processes`) that outlived
        the server, killed now: normally none.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return []
        if proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
            except (OSError, urllib.error.URLError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        leftover = [pid for pid in sorted(self._kernel_pids) if _is_kernel(pid)]
        for pid in leftover:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return leftover


def _is_kernel(pid: int) -> bool:
    try:
        return b"ipykernel_launcher" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # gone


# ------------------------------------------------------------------ browser


def launch_chromium(playwright: Any, profile: Path, viewport: dict[str, int]) -> Any:
    """Debian's Chromium, headless, with a fresh profile in ``profile``: a BrowserContext."""
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport=viewport,
    )


@dataclass
class OutputView:
    """One rendered output of a cell, as the page shows it."""

    mime: str  # data-mime-type: text/html, application/vnd.jupyter.stdout, image/png, ...
    text: str  # its text content
    tables: list[list[list[str]]] = field(default_factory=list)  # <table>s: rows of cell texts
    images: int = 0  # <img> elements


@dataclass
class CellView:
    """One cell, as the page shows it."""

    kind: str  # "code", "markdown" or "raw"
    source: str  # the editor's text (code cells; rendered markdown shows none)
    prompt: str  # "[3]:", "[*]:", "[ ]:" or ""
    outputs: list[OutputView]

    @property
    def execution_count(self) -> int | None:
        match = re.fullmatch(r"\[(\d+)\]:", self.prompt)
        return int(match.group(1)) if match else None

    def texts(self, mime: str) -> str:
        """The text of all outputs of type ``mime``, one after the other."""
        return "".join(o.text for o in self.outputs if o.mime == mime)

    def describe(self) -> str:
        shown = "\n".join(f"    {o.mime}: {o.text.strip()[:300]!r}" for o in self.outputs)
        return f"{self.prompt or '[ ]:'} {self.source[:70]!r}\n{shown or '    (no output)'}"


# Reads every cell of the notebook in the page. textContent, not innerText:
# cells outside the viewport are not laid out (content-visibility) but are
# in the DOM.
_CELLS_JS = """
(panel) => [...panel.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell => ({
    kind: cell.classList.contains('jp-CodeCell') ? 'code'
        : cell.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw',
    source: [...cell.querySelectorAll('.jp-InputArea-editor .cm-line')]
        .map(line => line.textContent).join('\\n'),
    prompt: (cell.querySelector('.jp-InputArea-prompt')?.textContent ?? '').trim(),
    outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(out => ({
      mime: out.getAttribute('data-mime-type') ?? '',
      text: out.textContent,
      tables: [...out.querySelectorAll('table')].map(table =>
        [...table.querySelectorAll('tr')].map(tr =>
          [...tr.children].map(c => c.textContent.trim()))),
      images: out.querySelectorAll('img').length,
    })),
  }))
"""

# True once a run has finished: the kernel is idle and no cell is queued or
# running ("[*]:"), and at least one cell has run since the outputs were cleared.
_RUN_DONE_JS = """
(panel) => {
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
      .map(p => p.textContent.trim());
  return indicator?.getAttribute('data-status') === 'idle'
      && !prompts.includes('[*]:')
      && prompts.some(p => /^\\[\\d+\\]:$/.test(p));
}
"""


class NotebookPage:
    """A notebook open in JupyterLab, driven through the page like a person would."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    # -- reading

    def cells(self) -> list[CellView]:
        """Every cell: kind, source, prompt and rendered outputs."""
        raw = self.panel.evaluate(_CELLS_JS)
        return [
            CellView(
                c["kind"],
                c["source"],
                c["prompt"],
                [OutputView(o["mime"], o["text"], o["tables"], o["images"]) for o in c["outputs"]],
            )
            for c in raw
        ]

    def cell(self, index: int) -> Any:
        """The Locator of cell ``index`` (counting all cells, from 0)."""
        return self.panel.locator(".jp-Notebook .jp-Cell").nth(index)

    def code_cells(self) -> list[CellView]:
        return [c for c in self.cells() if c.kind == "code"]

    def describe(self) -> str:
        """All code cells, for failure messages."""
        return "\n".join(c.describe() for c in self.code_cells())

    # -- waiting

    def wait_for_kernel(self, timeout: float) -> None:
        """Until the notebook's kernel is started, connected and idle."""
        self.panel.locator(
            ".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status='idle']"
        ).wait_for(timeout=timeout * 1000)
        self.page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for(
            timeout=timeout * 1000
        )

    def wait_until_run_done(self, timeout: float) -> None:
        """Until the kernel is idle and no cell is queued or running."""
        self.page.wait_for_function(
            _RUN_DONE_JS, arg=self.panel.element_handle(), timeout=timeout * 1000
        )

    # -- acting

    def run_all(self) -> None:
        """Run > Run All Cells, from the menu bar."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    def append_code_cell(self, source: str) -> int:
        """Select the last cell, insert a code cell below (B), type ``source``, run it.

        Ctrl+Enter runs the cell in place and leaves it selected in command
        mode. Returns the new cell's index (counting all cells).
        """
        from playwright.sync_api import expect

        last = self.panel.locator(".jp-Notebook .jp-Cell").last
        last.locator(".jp-InputPrompt").click()
        keyboard = self.page.keyboard
        keyboard.press("Escape")  # command mode
        count = self.panel.locator(".jp-Notebook .jp-Cell").count()
        keyboard.press("b")
        self.panel.locator(".jp-Notebook .jp-Cell").nth(count).wait_for()
        keyboard.press("Enter")  # edit mode, in the new cell
        keyboard.type(source)
        expect(
            self.cell(count).locator(".jp-InputArea-editor .cm-line"),
            f"the new cell does not hold what was typed, {source!r}",
        ).to_have_text(source.split("\n"))
        keyboard.press("Control+Enter")
        return count

    def interrupt(self) -> None:
        """The toolbar's stop button (Interrupt the kernel)."""
        self.panel.locator(
            ".jp-NotebookPanel-toolbar [data-command='notebook:interrupt-kernel']"
        ).click()

    def screenshot(self, path: Path, max_height: int = 12000) -> None:
        """The whole notebook in one picture: the window grows to fit it, then shrinks back."""
        size = self.page.viewport_size
        scroller = self.panel.locator(".jp-WindowedPanel-outer")
        # How much taller the window must be for the last cell to show in full.
        missing_px = scroller.evaluate(
            """(outer) => {
                const cells = outer.querySelectorAll('.jp-Cell');
                const last = cells[cells.length - 1];
                const bottom = last.getBoundingClientRect().bottom
                    - outer.getBoundingClientRect().top + outer.scrollTop;
                return Math.ceil(bottom - outer.clientHeight + 24);
            }"""
        )
        height = min(max_height, size["height"] + max(0, missing_px))
        self.page.set_viewport_size({"width": size["width"], "height": height})
        self.page.wait_for_function(
            "(want) => document.documentElement.clientHeight >= want", arg=height
        )
        scroller.evaluate("(outer) => { outer.scrollTop = 0; }")
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(size)


def copy_notebooks(source: Path, dest: Path) -> None:
    """``source`` into ``dest``, without caches and checkpoints."""
    shutil.copytree(
        source,
        dest,
        ignore=shutil.ignore_patterns(".ruff_cache", ".ipynb_checkpoints", "__pycache__"),
    )


def clear_outputs(notebook: Path) -> None:
    """Remove the stored outputs and execution counts: what shows after a run is new."""
    data = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    notebook.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
