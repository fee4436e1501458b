"""From ``%load_ext lunepool_magic`` to the first ``%sql SELECT 1`` result, server start included.

Each sample is a fresh process on a fresh "machine": an empty ``HOME`` (a
regular user's default data directory lives under it) and an empty
``TMPDIR`` (root's data directory and its copy of the binaries live under
it), so the first sample of a machine runs initdb. ``DATABASE_URL`` is unset.
Variants, interleaved round by round:

- *cold*: ``%load_ext``, then ``%sql SELECT 1`` on a machine where the server never ran;
- *cold+prepare*: the same, with ``embedded.prepare()`` right after ``%load_ext``
  (what ``%load_ext`` would call), so initdb runs in the background;
- *cold+prepare+imports*: the same, and the first cell imports psycopg and
  pandas before it waits for the server, so the imports overlap initdb;
- *cold+prepare+pause*: the first ``%sql`` comes after the background start
  ended, as when the user types the query meanwhile (only its second
  column counts: the first includes the pause);
- *warm*: a later kernel: the data directory exists, the server is stopped;
- *attach*: another kernel's server is running;
- *start()*: ``embedded.start()`` alone on a fresh machine, no IPython.

Printed: the median of R rounds of ``%load_ext`` + first ``%sql`` (the
figure the 2 s goal is about) and of the first ``%sql`` alone. Run it as
the user whose figures you want (root and a regular user differ: as root the
server runs as another OS user and the binaries are copied once)::

    python benchmarks/bench_cold_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_FIRST_CELL = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
started = time.perf_counter()
shell.run_line_magic("load_ext", "lunepool_magic")
if sys.argv[1].startswith("prepare"):
    from lunepool_magic import embedded
    embedded.prepare()
if sys.argv[1] == "prepare+imports":
    import pandas, psycopg  # what the first cell imports anyway, while initdb runs
if sys.argv[1] == "prepare+pause":  # the user types the first query meanwhile
    from lunepool_magic.embedded import server
    server._prepare_thread.join()
loaded = time.perf_counter()
frame = shell.run_line_magic("sql", "SELECT 1 AS one")
done = time.perf_counter()
assert int(frame.iloc[0, 0]) == 1
print("RESULT " + json.dumps({"total": done - started, "first_sql": done - loaded}))
"""

_START_ONLY = """
import json, time
started = time.perf_counter()
from lunepool_magic import embedded
url = embedded.start()
print("RESULT " + json.dumps({"total": time.perf_counter() - started, "first_sql": 0.0}))
embedded.stop()
"""

_HOLDER = """
import sys
from lunepool_magic import embedded
embedded.start()
print("attached", flush=True)
sys.stdin.readline()
embedded.stop()
"""


class Machine:
    """A fresh HOME and TMPDIR, as on a machine where the server never ran."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lpm-cold-"))
        self.root.chmod(0o755)  # as root, the server's OS user must traverse TMPDIR
        for name in ("home", "tmp"):
            (self.root / name).mkdir(mode=0o755)
            (self.root / name).chmod(0o755)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PG"))}
        env.pop("DATABASE_URL", None)
        env.update(HOME=str(self.root / "home"), TMPDIR=str(self.root / "tmp"))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_repo(), env.get("PYTHONPATH")]))
        return env

    def run(self, code: str, arg: str = "") -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, "-c", code, arg],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"sample failed: {done.stderr.strip()[-2000:]}")
        return json.loads(lines[-1][len("RESULT ") :])

    def attach_sample(self) -> dict[str, float]:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER],
            env=self.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            if holder.stdout.readline() != "attached\n":
                raise SystemExit("the holder process could not start the server")
            return self.run(_FIRST_CELL, "plain")
        finally:
            holder.communicate("\n", timeout=60)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _repo() -> str:
    return str(Path(__file__).resolve().parents[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="samples per variant (default 5)")
    args = parser.parse_args()
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        first = Machine()
        try:
            samples.setdefault("cold", []).append(first.run(_FIRST_CELL, "plain"))
            samples.setdefault("warm", []).append(first.run(_FIRST_CELL, "plain"))
            samples.setdefault("attach", []).append(first.attach_sample())
        finally:
            first.remove()
        for variant, code, arg in (
            ("cold+prepare", _FIRST_CELL, "prepare"),
            ("cold+prepare+imports", _FIRST_CELL, "prepare+imports"),
            ("cold+prepare+pause", _FIRST_CELL, "prepare+pause"),
            ("start() alone, cold", _START_ONLY, ""),
        ):
            machine = Machine()
            try:
                samples.setdefault(variant, []).append(machine.run(code, arg))
            finally:
                machine.remove()
    who = "root" if hasattr(os, "geteuid") and os.geteuid() == 0 else "a regular user"
    print(f"as {who}, median of {args.rounds} (seconds): %load_ext + first %sql | first %sql")
    for variant, runs in samples.items():
        total = statistics.median(run["total"] for run in runs)
        first_sql = statistics.median(run["first_sql"] for run in runs)
        print(f"  {variant:<20} {total:6.2f} | {first_sql:6.2f}")


if __name__ == "__main__":
    main()
