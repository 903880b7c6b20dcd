"""Run Python code in a subprocess under an address-space limit and report its peak memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass

GIB = 1 << 30


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes (ru_maxrss of the child)


def run_limited(args: list[str], limit: int = 2 * GIB, timeout: float = 300, env=None, cwd=None) -> Result:
    """``sys.executable *args`` with ``RLIMIT_AS = limit``; exit code, output and peak RSS."""

    def set_limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
        **(env or {}),
    }
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, *args], stdout=out, stderr=err, env=env, cwd=cwd, preexec_fn=set_limit
        )
        try:
            _, status, usage = _wait4(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        return Result(
            code,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            usage.ru_maxrss * 1024,
        )


def _wait4(proc, timeout):
    import time

    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.02)
