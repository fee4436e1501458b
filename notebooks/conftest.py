"""pytest settings for the tutorial notebooks, which nbval runs and checks.

pyproject.toml's addopts turn nbval on (``--nbval``: every ``.ipynb`` that
pytest collects is a test, one item per code cell, outputs compared with the
stored ones), run the kernels on this Python (``--nbval-current-env``) and
pass ``nbval-sanitize.cfg``. This file adds what options cannot say:

* the ``notebook`` marker on every notebook cell (``-m "not notebook"``
  leaves them out);
* the sanitize file is found from any working directory (addopts give it
  relative to the repository root);
* as root, the kernels do not show the embedded server's one-time
  ``RootModeWarning``: it would be an extra stderr output that the stored
  notebooks (made as a normal user sees them) do not have;
* matplotlib's font cache is built before the first kernel starts, so that
  its one-time "building the font cache" message cannot appear in a cell;
* nbval kills each kernel when its notebook is done, so the embedded server
  that the notebooks started is never told they left; at the end of the
  session it is stopped, unless a live process (your own Jupyter, say) still
  uses it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Generator

import pytest

# The embedded server's RootModeWarning, by its message (it starts with
# "lunepool_magic"): PYTHONWARNINGS is read before the package can be
# imported, so it cannot name the class.
_ROOT_WARNING_FILTER = "ignore:lunepool_magic:UserWarning"

_state = {"kernels_started": False}


def _is_notebook_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "notebook: a cell of a notebook in notebooks/, run by nbval")
    sanitize = getattr(config.option, "nbval_sanitize_with", None)
    if sanitize and not os.path.isabs(sanitize) and not os.path.exists(sanitize):
        # addopts name it relative to the repository root; pytest may run elsewhere.
        candidate = config.rootpath / sanitize
        if candidate.exists():
            config.option.nbval_sanitize_with = str(candidate)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_notebook_cell(item):
            item.add_marker(pytest.mark.notebook)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Around the setup that starts a notebook's kernel: its environment and the font cache."""
    if not _is_notebook_cell(item):
        return (yield)
    if not _state["kernels_started"]:
        _state["kernels_started"] = True
        _build_font_cache()
    saved = os.environ.get("PYTHONWARNINGS")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.environ["PYTHONWARNINGS"] = (
            f"{saved},{_ROOT_WARNING_FILTER}" if saved else _ROOT_WARNING_FILTER
        )
    try:
        return (yield)
    finally:
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved


def _build_font_cache() -> None:
    # Importing font_manager builds the cache. Without matplotlib, the
    # notebooks that plot fail and say so.
    with contextlib.suppress(ImportError):
        import matplotlib.font_manager  # noqa: F401


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _state["kernels_started"] or os.environ.get("DATABASE_URL"):
        return
    from lunepool_magic import embedded

    status = embedded.status()
    if not status.running or status.users:
        return  # not running, or still in use by a live process
    # Only killed kernels were attached: attach and detach, which stops it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            embedded.start()
        finally:
            embedded.stop()
