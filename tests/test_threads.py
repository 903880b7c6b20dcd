"""`single_threaded`: one BLAS and one Numba thread inside the block, the limits restored after it,
also when blocks overlap in several threads."""

import json
import os
import subprocess
import sys

import numba

from bowlrp._utils.threads import _blas_controller, single_threaded


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in _blas_controller().info()]


def test_blocks_limit_blas_and_numba_and_restore_them():
    before, numba_before = _blas_threads(), numba.get_num_threads()
    with single_threaded():
        assert all(n == 1 for n in _blas_threads())
        assert numba.get_num_threads() == 1
    assert _blas_threads() == before and numba.get_num_threads() == numba_before


RACE = """
import json, threading
from bowlrp._utils.threads import _blas_controller, single_threaded

def blas_threads():
    return [lib["num_threads"] for lib in _blas_controller().info()]

before = blas_threads()
steps = {name: threading.Event() for name in ("a in", "b in", "a may leave", "a out", "b may leave")}

def a():
    with single_threaded():
        steps["a in"].set()
        steps["a may leave"].wait(10)
    steps["a out"].set()

def b():
    steps["a in"].wait(10)
    with single_threaded():
        steps["b in"].set()
        steps["b may leave"].wait(10)

threads = [threading.Thread(target=a), threading.Thread(target=b)]
for t in threads:
    t.start()
steps["b in"].wait(10)
steps["a may leave"].set()
steps["a out"].wait(10)
during = blas_threads()
steps["b may leave"].set()
for t in threads:
    t.join(20)
print(json.dumps({"before": before, "during": during, "after": blas_threads()}))
"""


def test_overlapping_blocks_in_two_threads_restore_the_blas_limit_of_before():
    """Thread a enters, b enters, a leaves (b still limited), b leaves: the count of before is back.

    In a fresh process, read from its main thread, which sets no limit itself (OpenBLAS 0.3.31
    reports its own count to a thread that has set one). The old code, each block saving and
    restoring on its own, left the process on one BLAS thread ("after" [1]): a later fit on
    the driver then summed in another order and gave other last bits."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    run = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["before"] == [2] * len(seen["before"])
    assert seen["during"] == [1] * len(seen["before"])  # a's exit did not lift b's limit
    assert seen["after"] == seen["before"]
