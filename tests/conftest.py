"""Shared test fixtures: real PostgreSQL servers, a breakable proxy, PgBouncer.

* ``pg_url`` (session): ``DATABASE_URL`` if set, else an embedded server in a
  temporary data directory, stopped and deleted at the end of the session.
* ``pg_admin``: an autocommit psycopg connection to ``pg_url`` for checks and
  surgery (pg_stat_activity, pg_terminate_backend), closed after the test.
* ``private_server``: an embedded server of the test's own (``.url``,
  ``.stop()``, ``.start()``, ``.restart()``), for tests that stop, restart or
  break the server; always embedded, whatever ``DATABASE_URL`` says.
* ``tcp_proxy``: a ``BreakableProxy`` in front of ``pg_url`` (``.url``,
  ``.drop_all()``, ``.refuse()``, ``.accept()``, ``.stall()``).
* ``pgbouncer_url``: a real PgBouncer in transaction mode in front of
  ``pg_url``; skipped if pgbouncer is not installed.
* ``kernel``: a real Jupyter kernel (support/kernel.py) with the extension
  loaded and ``DATABASE_URL`` set to ``pg_url``; shut down after the test.

``LUNEPOOL_CI_STRICT=1`` turns every skip into a failure (support/strict.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

# support/ is imported as a top-level package, whatever --import-mode says.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.pgbouncer import PgBouncer, find_pgbouncer  # noqa: E402
from support.proxy import BreakableProxy  # noqa: E402
from support.servers import EmbeddedServer  # noqa: E402

pytest_plugins = ["pytester", "support.strict", "support.passwords"]


def pytest_configure(config: pytest.Config) -> None:
    # The one-line "running as root" notice is for notebook users; here it is noise.
    config.addinivalue_line("filterwarnings", "ignore::lunepool_magic.embedded.RootModeWarning")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use PgBouncer can be selected or left out with -m [not] pgbouncer.
    for item in items:
        if "pgbouncer_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pgbouncer)


def _masked(url: str) -> str:
    """``url`` without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo("", **params)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a real, running PostgreSQL server for the whole session.

    ``DATABASE_URL`` if set (CI), else an embedded server of this session's
    own, so a laptop needs nothing but pip packages. An unreachable
    ``DATABASE_URL`` fails loudly rather than skipping.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as err:
            pytest.fail(f"DATABASE_URL ({_masked(url)}) does not answer: {err}", pytrace=False)
        yield url
        return
    with EmbeddedServer() as server:
        yield server.url


@pytest.fixture
def pg_admin(pg_url: str) -> Iterator[psycopg.Connection]:
    """Autocommit connection to ``pg_url`` for checks and surgery; closed after the test."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def _private_server_template() -> Iterator[Path]:
    """A stopped, freshly initialised data directory that private servers copy."""
    server = EmbeddedServer()
    try:
        server.stop()
        yield server.data_dir
    finally:
        server.close()


@pytest.fixture
def private_server(_private_server_template: Path) -> Iterator[EmbeddedServer]:
    """An embedded server of this test's own, free to stop, restart or break.

    ``.url`` (unchanged across restarts), ``.stop()``, ``.start()``,
    ``.restart()``, ``.running``, ``.server_pid``, ``.data_dir``. Stopped and
    deleted after the test.
    """
    with EmbeddedServer(template=_private_server_template) as server:
        yield server


@pytest.fixture
def tcp_proxy(pg_url: str) -> Iterator[BreakableProxy]:
    """A breakable loopback TCP proxy in front of ``pg_url``; closed after the test.

    For a proxy in front of another server: ``BreakableProxy.for_url(url)``.
    """
    with BreakableProxy.for_url(pg_url) as proxy:
        yield proxy


@pytest.fixture
def pgbouncer_url(pg_url: str) -> Iterator[str]:
    """URL through a real PgBouncer (pool_mode=transaction) in front of ``pg_url``'s server.

    Same user, password and database as ``pg_url``. Skipped when pgbouncer is
    not installed (a failure under LUNEPOOL_CI_STRICT=1).
    """
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    with PgBouncer(pg_url, pool_mode="transaction") as bouncer:
        yield bouncer.url


@pytest.fixture
def kernel(pg_url: str, tmp_path: Path) -> Iterator[Any]:
    """A real kernel (``support.kernel.Kernel``) with ``%load_ext lunepool_magic`` done.

    ``DATABASE_URL`` is ``pg_url``; the kernel is shut down after the test.
    Skipped when jupyter_client is not installed.
    """
    pytest.importorskip("jupyter_client")
    from support.kernel import start_kernel

    with start_kernel(pg_url, tmp_path) as started:
        yield started
