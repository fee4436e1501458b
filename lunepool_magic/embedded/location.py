"""Where a data directory lives: the per-user default, and the paths the server can use.

The default is the user's data folder (``$XDG_DATA_HOME`` or
``~/.local/share``, ``%LOCALAPPDATA%`` on Windows) plus ``lunepool_magic/pg<major>``,
since a cluster only works with its own major version; as root, a root-owned
folder outside every home (root.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lunepool_magic.embedded import root

_APP_NAME = "lunepool_magic"
# pg_ctl hands the data and socket directories to a shell, and PostgreSQL reads
# unix_socket_directories as a comma-separated list: these characters break them.
_UNSAFE_CHARACTERS = frozenset(" \t\n\r\"'\\$`;&|<>()*?[]{}!#,")


def default_data_dir(major: str) -> Path:
    """The default data directory for PostgreSQL ``major`` (not created)."""
    name = f"pg{major}"
    if root.is_root():
        return root.root_base() / name
    return _user_data_dir() / _APP_NAME / name


def _user_data_dir() -> Path:
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(local) / _APP_NAME  # platformdirs' layout: <author>\<app>
    if sys.platform == "darwin":
        # Not "~/Library/Application Support": pg_ctl's shell cannot carry its space.
        return Path.home() / ".local" / "share"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    return Path(xdg) if xdg else Path.home() / ".local" / "share"


def resolve(data_dir: str | os.PathLike[str] | None, major: str) -> Path:
    """Absolute, symlink-free path of ``data_dir`` (default: ``default_data_dir``)."""
    path = default_data_dir(major) if data_dir is None else Path(data_dir).expanduser()
    return path.resolve()


def refuse_unsafe(pgdata: Path) -> None:
    """Raise if the path holds characters that the server's command line cannot carry."""
    if os.name != "nt" and any(char in _UNSAFE_CHARACTERS for char in str(pgdata)):
        raise ValueError(
            f"the embedded server cannot use {pgdata}: pg_ctl passes the path through a shell "
            "and PostgreSQL splits socket directories at commas, so it must not contain "
            "spaces or shell characters; pass a data_dir without them"
        )
