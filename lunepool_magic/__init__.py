"""lunepool_magic: PostgreSQL from Jupyter through a fair, thread-safe pool.

``%load_ext lunepool_magic`` registers ``%sql`` / ``%%sql`` (and ``%lunesql``, ``%jupysql``).
Importing the package stays light: IPython, psycopg and pandas are imported
only when the extension is loaded or first used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext lunepool_magic``: register the magics."""
    from lunepool_magic.magic import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext`` / ``%reload_ext``: close the pools, remove the magics."""
    from lunepool_magic.magic import unload

    unload(ipython)
