"""Run small, latency-bound work in the calling thread only.

An incremental re-encoding step is a few milliseconds of small products (a
GEMM over ~1,500 descriptors, Numba passes over them). Waking BLAS and
OpenMP worker threads for such work costs more than it saves, and on a
machine with as many busy threads as cores (2 cores, another job running)
threads that wait for a descheduled partner -- or OpenMP workers still
spinning while OpenBLAS wants the cores -- made a step 3 to 5 times slower
than the same work in one thread. :func:`single_threaded` limits BLAS (via
threadpoolctl, a scikit-learn dependency) and Numba to one thread for the
duration of a block. The parallel Numba passes split their work into a fixed
number of chunks whatever the thread count, so they give the same bits; BLAS
matrix products split rows and columns, not inner products, across threads,
while a threaded long dot product may sum in another order (a rounding-level
difference).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba
from threadpoolctl import ThreadpoolController

_controller = None
_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None


def _blas_controller():
    """A threadpoolctl controller over the BLAS libraries loaded now (created once)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def _enter_blas_limit() -> None:
    """The first of overlapping blocks limits BLAS to one thread (under a lock)."""
    global _blas_users, _blas_limiter
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = _blas_controller().limit(limits=1)
        _blas_users += 1


def _leave_blas_limit() -> None:
    """The last of overlapping blocks restores the limits the first one found."""
    global _blas_users, _blas_limiter
    with _blas_lock:
        _blas_users -= 1
        if _blas_users == 0 and _blas_limiter is not None:
            _blas_limiter.restore_original_limits()
            _blas_limiter = None


@contextmanager
def single_threaded() -> Iterator[None]:
    """BLAS and Numba parallel regions run in the calling thread inside the block.

    The limits are restored on exit. The BLAS limit is process-wide (as any
    threadpoolctl limit), the Numba one applies to the calling thread. Blocks that
    overlap in several threads (Dask's threads workers, joblib's threading backend)
    share one BLAS limit, counted: the last block to leave restores the thread count
    the first one found. (Each block saving and restoring on its own, the block that
    left second restored the other's "1" and left the whole process on one BLAS
    thread, so a later fit on the driver gave other last bits.)
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    _enter_blas_limit()
    try:
        yield
    finally:
        _leave_blas_limit()
        numba.set_num_threads(previous)
