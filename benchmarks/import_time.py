"""CPU time of ``import bowlrp`` and of every program's ``--help`` (issue 25, item 4).

    PYTHONPATH=. python benchmarks/import_time.py [--runs 5] [--tree /path/to/other/checkout]

Each case runs ``--runs`` times in a fresh interpreter; the table gives the median CPU
time (user + system, from ``resource.getrusage(RUSAGE_CHILDREN)``) and wall time, and
the interpreter's own start (``python -c pass``) for reference. CPU time is what the
targets name (``--help`` <= 0.5 s, ``import bowlrp`` <= 1 s on an idle machine); wall time
grows with the machine's load, so the 1-minute load average is printed too.
``python -X importtime -c "import bowlrp"`` says where the rest goes.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _console_script(module: str) -> list[str]:
    """What the installed ``bowlrp-*`` script runs: ``main()`` of the program's module."""
    return ["-c", f"import sys; from {module} import main; sys.exit(main())"]


PROGRAMS = ("explain", "evaluate", "train", "spray")
#: case name -> arguments after the interpreter
CASES: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import bowlrp": ["-c", "import bowlrp"],
    "bowlrp --help": ["-m", "bowlrp", "--help"],
    **{f"bowlrp-{p} --help": [*_console_script(f"bowlrp.cli.{p}"), "--help"] for p in PROGRAMS},
    "python -m bowlrp.explain --help": ["-m", "bowlrp.explain", "--help"],
    "python -m bowlrp.spray --help": ["-m", "bowlrp.spray", "--help"],
}


def measure(args: list[str], tree: Path) -> tuple[float, float, int]:
    """CPU seconds (user + system), wall seconds and exit code of one fresh interpreter running ``args``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall, done.returncode


def table(tree: Path, runs: int) -> list[tuple[str, float | None, float | None]]:
    """(case, median CPU s, median wall s) of every case; None where the case fails (no such program)."""
    rows = []
    for name, args in CASES.items():
        samples = [measure(args, tree) for _ in range(runs)]
        if any(code != 0 for _, _, code in samples):
            rows.append((name, None, None))
            continue
        cpu, wall, _ = zip(*samples)
        rows.append((name, statistics.median(cpu), statistics.median(wall)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per case (the median is shown)")
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to time")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"tree {args.tree}, {args.runs} runs per case, load average {load:.2f} on {os.cpu_count()} CPUs")
    print(f"{'case':34s} {'CPU s':>7s} {'wall s':>7s}")
    for name, cpu, wall in table(args.tree, args.runs):
        shown = "    n/a     n/a" if cpu is None else f"{cpu:7.2f} {wall:7.2f}"
        print(f"{name:34s} {shown}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
