"""The streamed GMM's E-step on Dask workers: one task per chunk, the sums added on the driver.

:func:`bowlrp.encoding.gmm.streamed_em` visits its descriptors in fixed chunks and
adds the chunks' E-step sums (:func:`~bowlrp.encoding.gmm.em_chunk_sums`) in chunk
order; where each chunk's sums are computed is its :data:`~bowlrp.encoding.gmm.EStep`
hook. :class:`DaskEStep` is that hook on a cluster::

    with using_estep(DaskEStep(client)):
        GMMVocabulary(256, backend="streamed").fit(sample)   # the E-step on the workers

1. Once per fit, the chunks (float32 rows) are scattered to the workers
   (``client.scatter``, spread over them, not broadcast): each worker holds its
   share of the sample for every iteration.
2. Per iteration, the parameters ``W`` (2D, K) and ``c`` (K,) of the E-step go to
   the workers once (``scatter(..., broadcast=True)``); one task per chunk computes
   ``em_chunk_sums(chunk, W, c, threads=1)`` where its chunk lives, in one thread (a
   worker is one thread); the driver gathers the sums *in chunk order*.
3. The driver adds them in that order (in ``streamed_em``): each chunk's sums are
   the same function of the same rows and parameters in every process (fixed
   blocks inside a chunk added in order, every product in one BLAS thread), so
   the fit is the serial fit's, bit for bit, for any number of workers.

A chunk lost with a worker (killed, restarted) is scattered again from the driver
(which keeps the sample) and the iteration is run again, at most
``retries`` times: the iteration's sums do not depend on which worker computed them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import numpy as np

from ..encoding.gmm import ChunkSums, EStepRun, em_chunk_sums

__all__ = ["DaskEStep"]


def _estep_task(chunk: np.ndarray, W: np.ndarray, const: np.ndarray) -> ChunkSums:
    """A Dask task: :func:`~bowlrp.encoding.gmm.em_chunk_sums` of one chunk, its blocks in this thread.

    A worker is one thread; ``em_chunk_sums`` runs its products in one BLAS thread
    itself, and its sums do not depend on how many blocks run at once.
    """
    return em_chunk_sums(chunk, W, const, threads=1)


class DaskEStep:
    """An :data:`~bowlrp.encoding.gmm.EStep` on a Dask cluster (see the module).

    Parameters
    ----------
    client : distributed.Client
    retries : int
        Times an iteration is run again after its tasks failed or lost their chunk
        (the chunks are scattered again from the driver first).

    Attributes
    ----------
    iterations_ : int
        Iterations run by the last fit (tasks submitted ``iterations_ * n_chunks``).
    workers_ : int
        Workers that held the last fit's chunks when they were scattered.
    rescattered_ : int
        Times the last fit scattered its chunks again (an iteration failed, e.g. a worker died).
    """

    def __init__(self, client, retries: int = 3):
        self.client = client
        self.retries = retries

    @contextlib.contextmanager
    def __call__(self, chunks: list[np.ndarray]) -> Iterator[EStepRun]:
        """Scatter ``chunks`` once; yield ``run(W, const)`` -> the chunks' sums in chunk order."""
        client = self.client
        tag = uuid.uuid4().hex[:8]
        self.iterations_ = self.rescattered_ = 0
        held = {"chunks": client.scatter(list(chunks), hash=False)}
        self.workers_ = len({w for where in client.who_has(held["chunks"]).values() for w in where})

        def iteration(W: np.ndarray, const: np.ndarray) -> list[ChunkSums]:
            params = client.scatter([W, const], broadcast=True, hash=False)
            futures = [
                client.submit(
                    _estep_task,
                    chunk,
                    *params,
                    key=f"bowlrp-gmm-estep-{tag}-{self.iterations_}-{i}",
                    pure=False,
                )
                for i, chunk in enumerate(held["chunks"])
            ]
            try:
                return client.gather(futures)  # a list in submission order: chunk order
            finally:
                client.cancel(futures + params)

        def run(W: np.ndarray, const: np.ndarray) -> list[ChunkSums]:
            for attempt in range(int(self.retries) + 1):
                try:
                    sums = iteration(W, const)
                    break
                except Exception:  # noqa: BLE001 - a lost chunk or worker: scatter again, retry
                    if attempt == int(self.retries):
                        raise
                    client.cancel(held["chunks"])
                    held["chunks"] = client.scatter(list(chunks), hash=False)
                    self.rescattered_ += 1
            self.iterations_ += 1
            return sums

        try:
            yield run
        finally:
            client.cancel(held["chunks"])
