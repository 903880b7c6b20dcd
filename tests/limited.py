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


# Runs ``python <args>`` in-process and, at exit, writes the process's own high-water RSS
# (``VmHWM``) to the file named by BOWLRP_PEAK_FILE. ``ru_maxrss`` of a child cannot be used:
# Linux carries the RSS of the forked parent (a pytest process of 1.5 GB late in the suite)
# over ``execve`` into the child's maximum.
_TRAMPOLINE = r"""
import atexit, os, runpy, sys
def _peak():
    try:
        with open("/proc/self/status") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        with open(os.environ["BOWLRP_PEAK_FILE"], "w") as fh:
            fh.write(str(kb * 1024))
    except Exception:
        pass
atexit.register(_peak)
args = sys.argv[1:]
if args[0] == "-c":
    sys.argv = ["-c", *args[2:]]
    exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
elif args[0] == "-m":
    sys.argv = [args[1], *args[2:]]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
"""


def run_limited(args: list[str], limit: int = 2 * GIB, timeout: float = 300, env=None, cwd=None) -> Result:
    """``sys.executable *args`` with ``RLIMIT_AS = limit``; exit code, output and peak RSS.

    ``args`` is ``["-c", code, ...]``, ``["-m", module, ...]`` or ``[script, ...]``; the peak
    is the child's own ``VmHWM`` (``ru_maxrss`` if the child died before writing it).
    """

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
    peak_file = tempfile.NamedTemporaryFile(prefix="bowlrp-peak-", delete=False)
    peak_file.close()
    env["BOWLRP_PEAK_FILE"] = peak_file.name
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, *args],
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            preexec_fn=set_limit,
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
        try:
            peak = int(open(peak_file.name).read() or usage.ru_maxrss * 1024)
        except ValueError:
            peak = usage.ru_maxrss * 1024
        finally:
            os.unlink(peak_file.name)
        return Result(
            code,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            peak,
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
