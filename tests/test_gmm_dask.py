"""The streamed GMM's E-step on Dask workers (bowlrp.runs.dask_em) is the serial fit.

Default: a 2-worker threads cluster in this process. Slow: 2 worker processes.
"""

import contextlib
import os
import signal
import time
import warnings

import numpy as np
import pytest

from bowlrp import GMMVocabulary
from bowlrp.encoding.gmm import kmeans_plusplus_start, streamed_em, using_estep
from bowlrp.runs.dask_em import DaskEStep
from tests.test_gmm_streamed import mixture_data

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")

#: the brief's tolerance, for the vocabulary (its PCA runs outside the E-step); the EM fits
#: themselves are asserted equal bit for bit (chunk sums added in chunk order, every product of
#: a chunk in one BLAS thread: a worker process, started with one BLAS thread, gives the same bits)
RTOL = 1e-12


def assert_same_fit(a, b):
    assert a.n_iter == b.n_iter and a.converged == b.converged
    for x, y in ((a.means, b.means), (a.covariances, b.covariances), (a.weights, b.weights)):
        np.testing.assert_array_equal(x, y)
    assert a.lower_bound == b.lower_bound


def two_workers(processes: bool):
    from distributed import Client, LocalCluster  # dask.distributed: only for these tests

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None)
    return Client(cluster), cluster


def check_dask_estep_is_the_serial_fit(client):
    X = mixture_data(n=6000)
    start = kmeans_plusplus_start(X, 8, 1e-6, random_state=0)
    serial = streamed_em(X, *start, max_iter=100, chunk_size=700)  # 9 chunks, a ragged last one
    estep = DaskEStep(client)
    dask = streamed_em(X, *start, max_iter=100, chunk_size=700, estep=estep)
    assert estep.iterations_ == serial.n_iter > 2  # every iteration's E-step ran on the cluster
    assert estep.workers_ == 2  # the chunks were spread over both workers
    assert_same_fit(dask, serial)
    deadline = time.time() + 10  # releasing is asynchronous
    while any(client.has_what().values()) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(client.has_what().values()), "the scattered chunks were not released"


def test_dask_estep_on_two_threads_workers_is_the_serial_fit(threads):
    check_dask_estep_is_the_serial_fit(threads)


def test_gmm_vocabulary_fit_takes_the_dask_estep_from_the_context(threads):
    X = mixture_data(n=3000, seed=1)
    serial = GMMVocabulary(8, pca_components=4, backend="streamed", random_state=0).fit(X)
    estep = DaskEStep(threads)
    with using_estep(estep):
        dask = GMMVocabulary(8, pca_components=4, backend="streamed", random_state=0).fit(X)
    assert estep.iterations_ == serial.n_iter_ == dask.n_iter_
    for name in ("means_", "covariances_", "weights_"):
        a, b = getattr(dask, name), getattr(serial, name)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * np.abs(b).max())


@pytest.mark.slow
def test_dask_estep_on_two_worker_processes_is_the_serial_fit():
    client, cluster = two_workers(True)
    try:
        check_dask_estep_is_the_serial_fit(client)
    finally:
        client.close()
        cluster.close()


@pytest.mark.slow
def test_a_worker_killed_during_the_em_loses_nothing():
    """SIGKILL of a worker holding chunks: they are scattered again, the iteration rerun, same fit."""
    client, cluster = two_workers(True)
    try:
        X = mixture_data(n=6000)
        start = kmeans_plusplus_start(X, 8, 1e-6, random_state=0)
        serial = streamed_em(X, *start, max_iter=100, chunk_size=700)
        estep = DaskEStep(client)
        killed = []

        @contextlib.contextmanager
        def killing(chunks):
            with estep(chunks) as run:

                def run_and_kill(W, const):
                    if estep.iterations_ == 2 and not killed:
                        pid = sorted(client.run(os.getpid).values())[0]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    return run(W, const)

                yield run_and_kill

        dask = streamed_em(X, *start, max_iter=100, chunk_size=700, estep=killing)
        assert killed, "no worker was killed; nothing was tested"
        assert estep.rescattered_ >= 1  # the lost chunks were sent again, the iteration rerun
        assert_same_fit(dask, serial)
    finally:
        client.close()
        cluster.close()
