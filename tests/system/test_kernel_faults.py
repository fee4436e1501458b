"""A real kernel runs notebook cells in a loop while backends are killed and the server restarts.

The loop is ``benchmarks/kernel_chaos.py`` (its docstring lists the cells,
the faults and the checks): here it runs against this test's own server
(``private_server``, restarted once by the fault thread) behind a breakable
proxy, for ``LUNEPOOL_KERNEL_LOOP_SECONDS`` seconds (20 by default; the
full minute is ``python benchmarks/kernel_chaos.py --seconds 60``). Every
cell must succeed with the right output or show a clear error; at the end
the kernel and its pool must be healthy and, once the kernel is shut down,
none of its backends may remain. The figures are printed (``pytest -s``)
and shown in full when a check fails.

The seed (``LUNEPOOL_KERNEL_LOOP_SEED``, default 7) fixes which cells run
and which faults are drawn; when they land depends on timing, and every
check holds whatever the timing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_client")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import kernel_chaos  # noqa: E402
from support.proxy import BreakableProxy  # noqa: E402

pytestmark = pytest.mark.kernel

SECONDS = float(os.environ.get("LUNEPOOL_KERNEL_LOOP_SECONDS", "20"))
SEED = int(os.environ.get("LUNEPOOL_KERNEL_LOOP_SEED", "7"))


def test_kernel_cells_under_kills_and_a_restart_succeed_or_fail_clearly(
    private_server: Any, tmp_path: Path
) -> None:
    with BreakableProxy.for_url(private_server.url) as proxy:
        loop = kernel_chaos.KernelLoop(
            server=private_server, proxy=proxy, seconds=SECONDS, seed=SEED, work_dir=tmp_path
        )
        figures = loop.run()
    report = figures.report()
    print(report)
    assert figures.failed_checks == [], report
    # The loop did meet the faults it is about, and came through them.
    assert figures.faults["restart"] == 1, report
    assert figures.errors, report  # some cells did fail, and clearly (checked above)
    assert figures.stats is not None and figures.stats["in_use"] == 0, report


def test_judge_error_tells_a_clear_error_from_a_traceback() -> None:
    """The loop's notion of "clear" rejects what it must (so that a pass means something)."""
    clear = kernel_chaos.Reply(
        "error",
        [
            {
                "msg_type": "error",
                "content": {
                    "ename": "SqlCellError",
                    "evalue": "",
                    "traceback": [
                        "FATAL:  terminating connection due to administrator command",
                        "(SQLSTATE 57P01)",
                    ],
                },
            }
        ],
    )
    assert kernel_chaos.judge_error(clear) == ("backend terminated (57P01)", None)

    traceback = kernel_chaos.Reply(
        "error",
        [
            {
                "msg_type": "error",
                "content": {
                    "ename": "UnicodeEncodeError",
                    "evalue": "surrogates not allowed",
                    "traceback": [
                        "-" * 75,
                        "UnicodeEncodeError                  Traceback (most recent call last)",
                        'File ".../session.py", line 250, in run',
                    ],
                },
            }
        ],
    )
    kind, problem = kernel_chaos.judge_error(traceback)
    assert kind is None
    assert problem is not None
    assert "undocumented error class UnicodeEncodeError" in problem
    assert "a Python traceback" in problem
    assert "no 'ERROR:  message' first line" in problem

    flood = kernel_chaos.Reply(
        "error",
        [
            {
                "msg_type": "error",
                "content": {
                    "ename": "SqlCellError",
                    "evalue": "",
                    "traceback": ["ERROR:  unterminated quoted string at or near \"'" + "a" * 9000],
                },
            }
        ],
    )
    assert "characters of error" in str(kernel_chaos.judge_error(flood)[1])
