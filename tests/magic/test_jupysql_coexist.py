"""JupySQL loaded first: %sql, %sqlcmd, %sqlplot and SqlMagic stay its own; the first line says so.

JupySQL itself is never installed next to the package (its lab plugin
would interfere with the editor tests); a stand-in extension with JupySQL's
package name (``sql``) and magics class name (``SqlMagic``) takes its place,
loaded with %load_ext into a real shell.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.shell import Shell, make_shell

STAND_IN = """
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class


@magics_class
class SqlMagic(Magics):
    @line_cell_magic
    def sql(self, line, cell=None):
        return "jupysql's %sql"

    @line_magic
    def sqlcmd(self, line):
        return "jupysql's %sqlcmd"


def load_ipython_extension(ip):
    ip.register_magics(SqlMagic)
"""


@pytest.fixture
def both(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "__init__.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    shell = Shell(make_shell())
    manager = shell.shell.magics_manager
    try:
        yield shell
    finally:
        shell.run("%unload_ext lunepool_magic")
        manager.registry.pop("SqlMagic", None)
        for kind in ("line", "cell"):
            for name in ("sql", "sqlcmd"):
                manager.magics[kind].pop(name, None)
        shell.shell.extension_manager.loaded.discard("sql")
        sys.modules.pop("sql", None)


def test_jupysql_keeps_its_magics_and_the_first_line_says_so(both: Shell) -> None:
    both.ok("%load_ext sql")
    loaded = both.ok("%load_ext lunepool_magic")
    assert loaded.out.splitlines()[0] == (
        "%sql belongs to JupySQL (or ipython-sql), loaded first; "
        "lunepool_magic answers as %lunesql / %%lunesql."
    )
    assert both.value("%sql SELECT 1") == "jupysql's %sql"
    assert both.value("%sqlcmd tables") == "jupysql's %sqlcmd"
    assert both.scalar("%lunesql SELECT 1") == 1
    assert "sqlplot" not in both.shell.magics_manager.magics["line"]
    settings = [c for c in both.shell.configurables if type(c).__name__ == "SqlMagic"]
    assert [type(c).__module__ for c in settings] == ["sql"]  # JupySQL's SqlMagic only


def test_with_jupysql_loaded_no_resultset_notes_and_no_import_finder(both: Shell) -> None:
    # Its ResultSet iterates rows and its `sql` package imports: nothing of ours may interfere.
    from lunepool_magic.notebook.jupysql_import import MissingJupySQL

    transformers = list(both.shell.ast_transformers)
    input_transformers = list(both.shell.input_transformers_post)
    both.ok("%load_ext sql")
    both.ok("%load_ext lunepool_magic")
    assert both.shell.input_transformers_post == input_transformers
    assert not any(isinstance(f, MissingJupySQL) for f in sys.meta_path)
    assert both.magics.results is None
    both.ok("result = %lunesql SELECT 1 AS a")
    run = both.ok("for row in result: pass\nk = result.keys")
    assert "note:" not in run.text
    assert both.shell.ast_transformers == transformers
