"""A private server where one role must log in with a password (SCRAM).

The shared test server may trust every local client (the embedded server
does), so a wrong password would prove nothing there. ``password_server`` is a
module-scoped fixture: import it into a test module to use it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

WAIT = 10.0  # upper bound of every wait below; reached only when a test fails
ROLE = "lpm_secret_keeper"


class PasswordServer:
    """A private server where ``ROLE`` must log in with ``password``."""

    def __init__(self, url: str, password: str) -> None:
        self.params = conninfo_to_dict(url)
        self.password = password
        # Where the server listens (a socket directory for the embedded server).
        self.host = str(self.params.get("host") or "")
        self.port = str(self.params.get("port") or "")
        self.dbname = str(self.params.get("dbname") or "postgres")

    def url(self, password: str) -> str:
        """A URL with the password in its user info, as users paste them."""
        port = f"&port={self.port}" if self.port else ""
        return (
            f"postgresql://{ROLE}:{quote(password, safe='')}@/{self.dbname}"
            f"?host={quote(self.host, safe='')}{port}"
        )

    def conninfo(self, password: str | None) -> str:
        """The same as a key=value string; no password at all if ``password`` is None."""
        params = {k: v for k, v in self.params.items() if k in ("host", "port", "dbname")}
        if password is not None:
            params["password"] = password
        return make_conninfo("", **params, user=ROLE)


@pytest.fixture(scope="module")
def password_server(_private_server_template: Path) -> Iterator[PasswordServer]:
    """One private server for the module (what ``private_server`` makes, shared here:
    these tests do not stop or break it, and a server costs about a second)."""
    from support.servers import EmbeddedServer

    password = f"Pw-{uuid.uuid4().hex}"
    with EmbeddedServer(template=_private_server_template) as server:
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(password)
                )
            )
            hba = Path(admin.execute("SHOW hba_file").fetchone()[0])
            # First matching line wins: SCRAM for our role, trust for the rest.
            rules = f"local all {ROLE} scram-sha-256\nhost all {ROLE} all scram-sha-256\n"
            hba.write_text(rules + hba.read_text())
            admin.execute("SELECT pg_reload_conf()")
        password_server = PasswordServer(server.url, password)
        _wait_until_password_required(password_server)
        yield password_server


def _wait_until_password_required(server: PasswordServer) -> None:
    """The reload is asynchronous: wait until a login without password is refused."""
    no_password = server.conninfo(None)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            psycopg.connect(no_password, connect_timeout=2).close()
        except psycopg.OperationalError:
            return
        if time.monotonic() > deadline:
            pytest.fail("the server still lets the role in without a password")
        time.sleep(0.01)
