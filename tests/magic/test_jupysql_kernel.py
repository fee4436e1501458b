"""A JupySQL-style page through a real Jupyter kernel: each form's result or exact one-line message.

The shell tests (test_jupysql_*.py) cover every form; this one runs the
everyday ones where users meet them, in a kernel, where a UsageError is a
failed cell whose message is one stderr line.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.kernel


def test_a_jupysql_page_runs_in_a_kernel(kernel: Any) -> None:
    kernel.ok(
        "%%sql\nCREATE TEMP TABLE tracks AS SELECT g AS id, g % 4 AS genre, 100 + g AS secs "
        "FROM generate_series(1, 40) g"
    )
    kernel.ok("%%sql --save g1 --no-execute\nSELECT * FROM tracks WHERE genre = 1")
    kernel.ok("r = %sql SELECT count(*) AS n FROM g1")
    assert kernel.value("int(r.iat[0, 0])") == 10
    kernel.ok("low = 130")
    kernel.ok("r = %sql SELECT count(*) FROM tracks WHERE secs > {{low}}")
    assert kernel.value("int(r.iat[0, 0])") == 10
    kernel.ok("p = %sqlcmd profile --table tracks")
    assert kernel.value("int(p.loc['max', 'secs'])") == 140
    kernel.ok("ok = %sqlcmd test --table tracks --column id --unique")
    assert kernel.value("ok") is True
    kernel.ok("import matplotlib; matplotlib.use('Agg')")
    kernel.ok("ax = %sqlplot histogram --table tracks --column secs --bins 4")
    assert sum(kernel.value("[float(p.get_height()) for p in ax.patches]")) == 40
    kernel.ok("%config SqlMagic.autolimit = 5")
    kernel.ok("r = %sql SELECT * FROM tracks")
    assert kernel.value("len(r)") == 5
    kernel.ok("r = %sql SELECT 1 AS a")
    assert kernel.value("r.dict()") == {"a": [1]}


def test_refusals_are_one_line_in_a_kernel(kernel: Any) -> None:
    reply = kernel.run("%sql --interact n SELECT {{n}}")
    assert reply.status == "error"
    assert reply.stream("stderr").startswith(
        "UsageError: --interact (JupySQL's widgets) is not available"
    )
    kernel.ok("t = 'tracks'")
    reply = kernel.run("%sql SELECT * FROM {{t}}")
    assert reply.status == "error"
    assert reply.stream("stderr").count("\n") == 1
    assert "write {{ t | identifier }} for a table or column name" in reply.stream("stderr")
