"""Throwaway embedded PostgreSQL servers for tests.

Every server here is ``lunepool_magic.embedded`` with its own temporary data
directory, so a test that stops, restarts or breaks it disturbs nobody else.
Data directories live in short ``/tmp/lpm-*`` paths, so that the Unix socket
sits in the data directory (a longer path moves it to a short private
folder), and outside any home, which the server's OS user cannot enter when
the tests run as root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lunepool_magic import embedded

__all__ = ["EmbeddedServer", "copy_data_dir", "make_data_dir_root"]


def make_data_dir_root(prefix: str = "lpm-") -> Path:
    """A fresh short temp folder to hold one data directory.

    0755, not mkdtemp's 0700: as root the server runs as another OS user that
    must traverse it.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def copy_data_dir(source: Path, dest: Path) -> None:
    """Copy a stopped cluster, keeping its owner (the service OS user when root)."""
    shutil.copytree(source, dest, symlinks=True)
    (dest / "postmaster.pid").unlink(missing_ok=True)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        owner = source.stat()
        for directory, _dirs, files in os.walk(dest):
            os.chown(directory, owner.st_uid, owner.st_gid)
            for name in files:
                os.lchown(os.path.join(directory, name), owner.st_uid, owner.st_gid)


class EmbeddedServer:
    """An embedded server of one owner (a test or the session), in its own temp dir.

    ``url`` stays the same across ``stop()``/``start()``/``restart()`` (the
    socket lives in the data directory). ``close()`` stops it and deletes the
    data. ``template``: a stopped data directory to copy instead of running
    initdb (faster, and the same cluster every time).
    """

    def __init__(self, *, template: Path | None = None) -> None:
        self.root = make_data_dir_root()
        self.data_dir = self.root / "data"
        if template is not None:
            copy_data_dir(template, self.data_dir)
        self.url = embedded.start(self.data_dir)

    @property
    def running(self) -> bool:
        """True if the server is up."""
        return embedded.status(self.data_dir).running

    @property
    def server_pid(self) -> int | None:
        """PID of the postmaster, or None when stopped."""
        return embedded.status(self.data_dir).server_pid

    def start(self) -> str:
        """Start the server if it is not running; return its URL."""
        self.url = embedded.start(self.data_dir)
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are terminated)."""
        embedded.stop(self.data_dir)

    def restart(self) -> str:
        """Stop and start again: a new postmaster, every old connection is gone."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its data. Idempotent."""
        if self.root.exists():
            try:
                embedded.stop(self.data_dir)
            finally:
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EmbeddedServer {self.data_dir}>"
