"""What the check for JupySQL's ResultSet forms adds to a cell (notebook/resultforms.py).

Before each cell runs, the extension reads its text (an input transformer)
and walks its AST once only when the text names a live result where a form
could be (``in NAME``, ``list(NAME)``, ``NAME.plot(``, ``NAME.keys``) for a note not yet
shown, or has a ``%sql`` line. This script times ``shell.run_cell`` of a
500-line cell in one in-process IPython shell (history and output cache off,
stdout to /dev/null), with the check installed and with it taken out (as when
JupySQL is loaded), interleaved round by round; a ratio is the median of the
per-round ratios, and the added time per cell is the median of the per-round
differences. No server is needed: the result the walk looks for is a
DataFrame put into the registry by hand.

Cells:

- *plain*: 500 assignments: the text scan finds no candidate name;
- *loops*: 400 assignments and 100 one-line ``for`` loops over a list, with
  a result alive under another name: the scan finds a name, not a result;
- *walked*: the loops cell with ``# for row in result:`` as its first line:
  the text names the result, the AST has no form there, so no note is
  shown and every run walks the tree (the worst case: IPython also walks it
  again, ``fix_missing_locations``, while an AST transformer is on).

    python benchmarks/bench_resultforms.py [--calls 50] [--rounds 9]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time


def cells() -> dict[str, str]:
    plain = "\n".join(f"v{i} = {i} * 2 + len('abc')" for i in range(500))
    loops = "\n".join(
        f"for item in values: total{i} = item" if i % 5 == 0 else f"v{i} = {i} * 2"
        for i in range(500)
    )
    return {
        "plain": plain,
        "loops": "values = [1, 2]\n" + loops,
        "walked": "# for row in result:\nvalues = [1, 2]\n" + loops,
    }


def bench(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    cfg = Config()
    cfg.HistoryAccessor.enabled = False
    cfg.InteractiveShell.cache_size = 0
    shell = InteractiveShell.instance(config=cfg)
    devnull = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the benchmark)
    with contextlib.redirect_stdout(devnull):
        shell.run_line_magic("load_ext", "lunepool_magic")
    magics = shell.magics_manager.registry["LunepoolMagic"]
    check = magics._jupysql.check
    result = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    magics.results.remember(result)
    shell.user_ns["result"] = result

    def install(on: bool) -> None:
        for hooks, hook in (
            (shell.ast_transformers, check),
            (shell.input_transformers_post, check.scan_text),
        ):
            if on and hook not in hooks:
                hooks.append(hook)
            elif not on and hook in hooks:
                hooks.remove(hook)

    def time_cell(src: str) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            outcome = shell.run_cell(src, store_history=False)
        if not outcome.success:
            raise RuntimeError(f"cell failed: {outcome.error_in_exec!r}")
        return (time.perf_counter() - t0) / calls * 1e3

    sources = cells()
    samples: dict[str, dict[str, list[float]]] = {
        name: {"with": [], "without": []} for name in sources
    }
    with contextlib.redirect_stdout(devnull):
        for src in sources.values():  # warm-up
            for on in (True, False):
                install(on)
                time_cell(src)
        for _ in range(rounds):
            for name, src in sources.items():
                for on in (True, False):
                    install(on)
                    samples[name]["with" if on else "without"].append(time_cell(src))
    install(True)
    assert check.shown == set(), check.shown  # no cell holds a form: the check stays due
    with contextlib.redirect_stdout(devnull):
        shell.run_line_magic("unload_ext", "lunepool_magic")

    report: dict[str, dict[str, float]] = {}
    for name, s in samples.items():
        pairs = list(zip(s["with"], s["without"], strict=True))
        report[name] = {
            "without_ms": statistics.median(s["without"]),
            "with_ms": statistics.median(s["with"]),
            "added_ms": statistics.median(w - wo for w, wo in pairs),
            "ratio": statistics.median(w / wo for w, wo in pairs),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="cells per batch")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    args = parser.parse_args()
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    report = bench(args.calls, args.rounds)
    print(f"500-line cell, {args.rounds} rounds x {args.calls} cells (load {load})")
    print(f"{'cell':<8}{'without ms':>12}{'with ms':>10}{'added ms':>10}{'ratio':>8}")
    for name, r in report.items():
        print(
            f"{name:<8}{r['without_ms']:>12.3f}{r['with_ms']:>10.3f}"
            f"{r['added_ms']:>10.3f}{r['ratio']:>8.3f}"
        )


if __name__ == "__main__":
    main()
