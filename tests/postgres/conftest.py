"""Fixtures for the wrapper's tests: the oldest server the tests compare against.

* ``pg15_url`` (session): a Debian PostgreSQL 15 server of this session's own
  (support/pg15.py), stopped and deleted at the end. Skipped when the
  ``postgresql-15`` package is not installed (a failure under
  LUNEPOOL_CI_STRICT=1).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.pg15 import DebianServer, find_pg15


@pytest.fixture(scope="session")
def pg15_url() -> Iterator[str]:
    """URL of a running PostgreSQL 15 server (superuser ``postgres``, Unix socket)."""
    if find_pg15() is None:
        pytest.skip("PostgreSQL 15 is not installed (Debian: apt-get install postgresql-15)")
    with DebianServer() as server:
        yield server.url
