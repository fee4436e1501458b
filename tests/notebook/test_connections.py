"""The notebook's connection registry, driven without a shell, against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from support.backends import wait_gone

from lunepool_magic.notebook.connections import DEFAULT_ALIAS, LIST_COLUMNS, Connections
from lunepool_magic.notebook.messages import CellUsageError


@dataclass
class Settings:
    max_connections: int = 2
    acquire_timeout: float | None = 10.0
    autoconnect: bool = True


@pytest.fixture
def registry() -> Iterator[Connections]:
    connections = Connections(Settings())
    yield connections
    connections.close_all()


def _with_password(url: str, password: str) -> str:
    return make_conninfo(url, password=password)


def test_connect_names_the_target_and_makes_it_current(registry: Connections, pg_url: str) -> None:
    session, out, err = registry.connect(pg_url, "wh")
    assert registry.current_alias == "wh" and registry.sessions == {"wh": session}
    assert out == [f"Connected to {session.target} as 'wh'."]
    assert err == []
    assert session.pool.stats().size == 1  # opened at once: a bad target fails here


def test_connecting_the_same_target_again_keeps_the_session(
    registry: Connections, pg_url: str
) -> None:
    first, _, _ = registry.connect(pg_url, None)
    again, out, _ = registry.connect(pg_url, None)
    assert again is first and out == []
    assert registry.current_alias == DEFAULT_ALIAS


def test_a_password_in_the_cell_gets_a_note_and_never_an_echo(
    registry: Connections, pg_url: str
) -> None:
    url = _with_password(pg_url, "Sekr3t-pw")
    session, out, err = registry.connect(url, "pw")
    assert len(err) == 1 and "saved in the notebook" in err[0]
    assert "Sekr3t-pw" not in " ".join(out + err) + session.target


def test_an_unknown_alias_names_the_known_ones(registry: Connections, pg_url: str) -> None:
    registry.connect(pg_url, "one")
    with pytest.raises(CellUsageError, match=r"no connection named 'two' \(connections: 'one'\)"):
        registry.named("two")


def test_an_unparsable_target_is_refused_without_repeating_it(registry: Connections) -> None:
    with pytest.raises(CellUsageError) as caught:
        registry.connect("host='unclosed password=Sekr3t", None)
    assert "Sekr3t" not in str(caught.value)
    assert "not repeated here" in str(caught.value)


def test_autoconnect_uses_database_url(
    registry: Connections, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    session, out, err = registry.current()
    assert session.source == "DATABASE_URL" and err == []
    assert out == [f"Connected to {session.target} (from DATABASE_URL) as 'default'."]
    assert registry.current()[1:] == ([], [])  # the second time it is simply current


def test_without_autoconnect_a_cell_needs_a_connection(pg_url: str) -> None:
    registry = Connections(Settings(autoconnect=False))
    with pytest.raises(CellUsageError, match="not connected"):
        registry.current()


def test_the_listing_has_one_row_per_alias_with_pool_numbers(
    registry: Connections, pg_url: str
) -> None:
    registry.connect(pg_url, "a")
    registry.connect(pg_url, "b")
    frame = registry.listing(None)
    assert list(frame.index) == ["a", "b"]
    assert list(frame.columns) == LIST_COLUMNS[1:]
    assert frame.loc["b", "current"] == "*" and frame.loc["a", "current"] == ""
    assert frame.loc["a", "size"] == 1 and frame.loc["a", "max_size"] == 2


def test_closing_the_current_one_makes_the_newest_other_current(
    registry: Connections, pg_url: str, pg_admin: psycopg.Connection
) -> None:
    registry.connect(pg_url, "a")
    session, _, _ = registry.connect(pg_url, "b")
    with session.pool.connection() as conn:
        pid = conn.info.backend_pid
    assert registry.close(None, None) == "Closed 'b'; current connection: 'a'."
    assert registry.current_alias == "a" and list(registry.sessions) == ["a"]
    wait_gone(pg_admin, pid)  # its pool is closed: the server sees the goodbye


def test_nothing_to_close_says_so(registry: Connections) -> None:
    with pytest.raises(CellUsageError, match="nothing to close"):
        registry.close(None, None)


def test_a_sqlalchemy_driver_url_connects_and_says_the_driver_is_ignored(
    registry: Connections, pg_url: str
) -> None:
    # JupySQL notebooks spell URLs postgresql+psycopg2://; libpq does not know "+psycopg2".
    params = conninfo_to_dict(pg_url)
    query = "&".join(
        f"{k}={quote(str(params[k]), safe='')}" for k in ("host", "port") if k in params
    )
    url = f"postgresql+psycopg2://{params.get('user', '')}:Sekr3t-pw@/{params['dbname']}?{query}"
    session, out, err = registry.connect(url, "sa")
    assert err[0] == (
        "Note: the URL's +psycopg2 driver part is ignored (lunepool_magic uses psycopg 3)."
    )
    assert "Sekr3t-pw" not in " ".join(out + err) + session.target
    with session.pool.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_embedded_servers_warning_is_one_clean_line_and_still_filterable() -> None:
    import warnings

    from lunepool_magic.embedded import RootModeWarning
    from lunepool_magic.notebook.connections import _quietly

    def start() -> str:
        warnings.warn("lunepool_magic: running as root, ...", RootModeWarning, stacklevel=2)
        return "postgresql://x"

    with warnings.catch_warnings():
        warnings.simplefilter("always", RootModeWarning)  # the suite ignores it elsewhere
        url, notes = _quietly(start)
    assert url == "postgresql://x"
    assert notes == ["RootModeWarning: lunepool_magic: running as root, ..."]  # no path, no source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RootModeWarning)
        assert _quietly(start)[1] == []  # the user's filter still decides
    assert warnings.showwarning is not None and warnings.showwarning.__name__ != "note"
