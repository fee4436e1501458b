"""No password in any output: every connect, error and listing path, through a real kernel.

Issue 14, section 3. A distinctive password goes through the URL and conninfo
forms, DATABASE_URL, create_pool(), SQLAlchemy's ``+driver`` URL, bad
percent-encoding, a space, ``@`` and ``:`` in a password, a wrong password, an
unreachable host, ``show_traceback``, ``%xmode Verbose`` and background jobs,
with every logger at DEBUG printing into the cell. Every output the kernel
sends is saved as a notebook, and the file is searched for the password. The
cells' sources are the user's own text (the password typed there is the
user's; the magic's note says so) and are left out of the search.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, output_from_msg
from support.kernel import start_kernel
from support.passwords import ROLE, PasswordServer

pytestmark = pytest.mark.kernel


def _url(server: PasswordServer, userinfo: str, scheme: str = "postgresql") -> str:
    port = f"&port={server.port}" if server.port else ""
    return f"{scheme}://{userinfo}@/{server.dbname}?host={quote(server.host, safe='')}{port}"


def test_no_path_shows_the_password(password_server: PasswordServer, tmp_path: Path) -> None:
    secret = password_server.password  # Pw-<hex>: the server really checks it
    quoted = quote(secret, safe="")
    good = _url(password_server, f"{ROLE}:{quoted}")
    wrong = f"Wr0ng{secret[3:]}"  # distinctive too, and refused by the server
    conninfo = password_server.conninfo(secret)
    cells = [
        "import logging, sys\nlogging.basicConfig(level=logging.DEBUG, stream=sys.stdout, "
        "force=True)\nimport os",
        # DATABASE_URL, malformed then right, before anything is connected.
        f"os.environ['DATABASE_URL'] = {_url(password_server, f'{ROLE}:{secret}%zz')!r}",
        "%sql SELECT 1",
        f"os.environ['DATABASE_URL'] = {good!r}",
        "%sql SELECT current_user",
        f"%sql {good} --alias url",
        f"%sql {json.dumps(conninfo)} --alias kv",
        f"%sql {_url(password_server, f'{ROLE}:{quoted}', 'postgresql+psycopg2')} --alias sa",
        f"%sql {_url(password_server, f'{ROLE}:{secret}%zz')} --alias pct",
        f"%sql {_url(password_server, f'{ROLE}:{secret[:6]} {secret[6:]}')} --alias space",
        f"%sql {_url(password_server, f'{ROLE}:{secret[:6]}@{secret[6:]}')} --alias at",
        f"%sql {_url(password_server, f'{ROLE}:{secret[:6]}:{secret[6:]}')} --alias colon",
        f"%sql {_url(password_server, f'{ROLE}:{wrong}')} --alias wrong",
        f"%sql postgresql://{ROLE}:{quoted}@127.0.0.1:1/db --alias nowhere",
        "%sql",  # the listing
        "%sql --alias url SELECT 1/0",
        "%config LunepoolMagic.show_traceback = True",
        "%sql --alias url SELECT 1/0",
        f"%sql {_url(password_server, f'{ROLE}:{wrong}')} --alias wrong2",
        # Plain Python, with the secrets in variables as users keep them (IPython
        # echoes a cell's own source and, under %xmode Verbose, its variables).
        f"good, bad, kv, pw = {good!r}, {_url(password_server, f'{ROLE}:{secret}%zz')!r}, "
        f"{password_server.conninfo(None)!r}, {secret!r}",
        "from lunepool_magic.postgres import create_pool\n"
        "pool = create_pool(good)\nprint(repr(pool), pool.stats())\n"
        "with pool.connection() as conn: print(conn.info.dsn)",
        "create_pool(bad)",
        "create_pool(kv, user='lpm_secret_keeper', password=pw).with_connection(lambda c: 1/0)",
        "create_pool(kv, user='lpm_secret_keeper', password=pw + 'x').with_connection(print)",
        "%xmode Verbose",
        (f"%sql {_url(password_server, ROLE)} --password --alias prompted", wrong),
        (f"%sql {_url(password_server, ROLE)} --password --alias prompted", secret),
        "%sql --alias prompted SELECT 1/0",
        "%%sql --alias url --background job <<\nSELECT 1/0",
        "%sql --wait",
        "%%sql --alias url --background job2 <<\nSELECT 42 AS answer",
        "%sql --wait",
        "print(repr(get_ipython().magics_manager.registry['LunepoolMagic'].sessions))",
    ]
    notebook = new_notebook()
    with start_kernel(good, tmp_path) as kernel:
        for item in cells:
            source, typed = item if isinstance(item, tuple) else (item, None)
            msg_id = kernel.submit(source)
            if typed is not None:  # --password: the kernel asks through the stdin channel
                request = kernel.client.get_stdin_msg(timeout=30)
                assert request["msg_type"] == "input_request"
                assert request["content"]["password"] is True
                kernel.client.input(typed)
            reply = kernel.collect(msg_id, timeout=60)
            cell = new_code_cell(source)
            cell.outputs = [
                output_from_msg({"header": {"msg_type": o["msg_type"]}, "content": o["content"]})
                for o in reply.outputs
                if o["msg_type"] != "update_display_data"
            ]
            notebook.cells.append(cell)
    saved = tmp_path / "leaks.ipynb"
    nbformat.write(notebook, saved)

    outputs = json.dumps([cell.outputs for cell in nbformat.read(saved, as_version=4).cells])
    pieces = {secret, quoted, secret[6:], wrong}
    leaks = [
        (n, o)
        for n, cell in enumerate(notebook.cells)
        for o in cell.outputs
        if any(p in json.dumps(o) for p in pieces)
    ]
    assert not leaks, f"a password shows in the saved outputs: {leaks}"
    assert not [p for p in pieces if p in outputs]
    # The paths really ran: the right password logged in, the others failed clearly.
    for expected in (
        "could not parse DATABASE_URL",
        "Connected to postgresql://lpm_secret_keeper@",
        "driver part is ignored",
        "percent-encoded token",
        "seems to hold a space",
        "more than one '@'",
        "password authentication failed",
        "division by zero",
        "Traceback (most recent call last)",  # show_traceback, masked
        "ConnectionStringError: invalid connection parameters",
        "[2] done",  # the second background job
    ):
        assert expected in outputs, expected
