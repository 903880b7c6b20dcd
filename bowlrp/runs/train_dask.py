"""Training on Dask: :func:`bowlrp.training.train`'s three stages as tasks on a cluster.

``bowlrp-train --workers N`` (a LocalCluster of N processes, one thread each),
``--scheduler tcp://host:8786`` (a running cluster whose workers reach the
images and the store) or ``client=`` (a ``distributed.Client`` you hold) all
run :func:`bowlrp.training.train` with :class:`DaskStages`; only where each
stage's work runs differs from the serial run (:class:`bowlrp.training.SerialStages`),
and the model is the same:

1. **Vocabularies.** First the store is claimed for the run's config and images
   (:func:`~bowlrp.runs.training_store.claim_training_store`): a store of another
   training is refused before anything is fitted, and a store that already keeps
   this training's vocabularies gives them back (read with :func:`bowlrp.load`'s
   allowlist): a rerun never fits them again. Otherwise describing every image and
   drawing its descriptor sample are tasks: :meth:`Pipeline.fit_vocabularies` itself
   runs with joblib's Dask backend (``joblib.parallel_config(backend="dask")``), so
   each image keeps the sample its seed draws in the serial run. PCA, k-means and the
   GMM's start run on the driver, with a fixed number of BLAS threads (the count BLAS
   had when this module was imported: a refit gives the same bits even after a
   threads cluster's tasks left the process-wide limit elsewhere); a streamed GMM's
   E-step runs on the workers (:class:`~bowlrp.runs.dask_em.DaskEStep`: one task per
   chunk, the sums added in chunk order on the driver, the serial fit's bits). The
   fitted stages are then saved into the store before any feature is written.
2. **Features.** The images are cut into blocks of ``rows_per_block``; one task
   per block describes and encodes its images (:meth:`Pipeline.features`, the
   serial code) and writes the float32 rows into the training store
   (:mod:`bowlrp.runs.training_store`) itself, then the block's ``done`` marker.
   A rerun after ``kill -9`` of the driver skips finished blocks; a killed worker's
   task is run again by the scheduler.
3. **Classifier.** Kernels are fitted on the driver (a width from a sample of
   rows); the Gram matrices are computed in row tiles as tasks that read their
   two row blocks from the store (one tile when the data set's rows fit in
   :data:`GRAM_TILE_BYTES`: then the tile is the serial Gram matrix, bit for
   bit); libsvm (``SVC(kernel="precomputed")`` through
   :func:`bowlrp.classifier.mkl.fit_binary`) runs on the driver.

The store lives where ``store`` says (``bowlrp-train``: ``<out>.features.zarr``
or ``--store DIR``); it is locked for the run and removed after a successful
run unless ``keep_store``; after a failure or an interrupt it stays for the rerun.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_info, threadpool_limits
from tqdm.auto import tqdm

from .._utils.threads import single_threaded
from .._utils.validation import display_path
from ..classifier.svm import KernelSVC
from ..encoding.gmm import using_estep
from ..exceptions import BowlrpError
from ..pipeline import Pipeline, seeded
from .dask_em import DaskEStep
from .distributed import check_local_workers, dask_client
from .store import store_lock
from .training_store import (
    VOCABULARY_ATTRIBUTES,
    TrainingStore,
    claim_training_store,
    config_fingerprint,
    images_fingerprint,
    load_vocabularies,
    record_vocabularies,
    remove_training_store,
    save_vocabularies,
    stages_fingerprint,
)

#: Images per feature task (one block of rows of the store, one writer).
ROWS_PER_BLOCK = 4
#: float32 bytes of the two row blocks one Gram task reads (rows per tile = this / (8 d)).
GRAM_TILE_BYTES = 1 << 28
_FLOAT_TYPES = (np.float64, np.float32)
#: BLAS threads of the driver's vocabulary fit: BLAS's own count when this module was
#: imported (before any cluster ran a task in this process), so every fit sums alike.
DRIVER_BLAS_THREADS = max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] or [1])

_logger = logging.getLogger(__name__)


class TrainingTaskError(BowlrpError, RuntimeError):
    """Images could not be encoded on the cluster (one line naming the first)."""


def default_store(out) -> Path:
    """Where ``bowlrp-train --workers/--scheduler`` keeps the features: ``<out>.features.zarr``."""
    out = Path(os.fspath(out))
    return out.with_name(out.name + ".features.zarr")


# -- tasks (run on the workers) -----------------------------------------------------------------
def _features_task(model: Pipeline, location: str, block: int, images: list) -> dict:
    """A Dask task: encode ``images`` (block ``block``), write their rows and the block's marker.

    Runs in one thread (:func:`~bowlrp._utils.threads.single_threaded`: Numba's parallel
    passes split their work into fixed chunks, so the rows are the serial run's bits).

    Returns ``{"block", "status": "written" | "failed", "error"?, "seconds"}``; a bad
    image is reported (its block is left unwritten), never raised.
    """
    started = time.perf_counter()
    store = TrainingStore.open(location)
    rows = []
    for image in images:
        try:
            with single_threaded():  # a worker is one thread: Numba's parallel passes too
                rows.append(model.features([image])[0])
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the image, the run goes on
            first = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            shown = display_path(image) if isinstance(image, (str, os.PathLike)) else "an image array"
            return {"block": block, "status": "failed", "error": f"{shown}: {first}"}
    store.write_block(block, np.stack(rows))
    return {"block": block, "status": "written", "seconds": time.perf_counter() - started}


def _gram_task(kernels: list, slices: list, location: str, rows: tuple, cols: tuple) -> list[np.ndarray]:
    """A Dask task: the Gram tile ``k_u(X[rows], X[cols])`` of every channel ``u``, float64.

    ``rows == cols``: the diagonal tile ``k_u(X[rows])`` (as the serial fit computes it).
    """
    store = TrainingStore.open(location)
    A = store.read(*rows)
    B = A if rows == cols else store.read(*cols)
    with single_threaded():  # a worker is one thread: BLAS and Numba's parallel loops too
        if rows == cols:
            return [k.gram(A[:, s]) for k, s in zip(kernels, slices)]
        return [k.gram(A[:, s], B[:, s]) for k, s in zip(kernels, slices)]


def _run_tasks(client, func, argsets: Sequence[tuple], *, desc: str, weights, progress: bool, retries: int):
    """Submit ``func(*args)`` for every ``args``; results in order, with a progress bar of ``weights``."""
    from distributed import as_completed  # dask.distributed: ~0.6 s to import, only for clusters

    run_id = uuid.uuid4().hex[:8]
    futures = {
        client.submit(func, *args, key=f"bowlrp-train-{desc}-{run_id}-{i}", retries=retries, pure=False): i
        for i, args in enumerate(argsets)
    }
    results: list = [None] * len(argsets)
    with tqdm(total=int(sum(weights)), desc=desc, disable=not progress, file=sys.stderr, leave=False) as bar:
        for future in as_completed(list(futures)):
            i = futures[future]
            results[i] = future.result()
            bar.update(int(weights[i]))
            future.release()
    return results


def gram_tiles(n: int, d: int, tile_bytes: int = GRAM_TILE_BYTES) -> list[tuple[tuple, tuple]]:
    """The upper-triangle tiles ``((r0, r1), (c0, c1))`` of an (n, n) Gram matrix over d float32 features.

    Rows per tile ``b = max(1, tile_bytes // (8 d))`` (two float32 row blocks of ``b x d`` per task):
    depends on the data only, never on the number of workers, so every cluster computes
    the same tiles. ``b >= n``: one tile, the whole matrix.
    """
    b = max(1, min(n, int(tile_bytes) // (8 * max(1, d))))
    edges = [(s, min(n, s + b)) for s in range(0, n, b)]
    return [(edges[i], edges[j]) for i in range(len(edges)) for j in range(i, len(edges))]


class DaskStages:
    """Where :func:`bowlrp.training.train` runs its stages: on a Dask cluster (see the module).

    Parameters
    ----------
    workers : int or None
        A LocalCluster of this many processes (one thread each), at most the usable cores.
    scheduler : str or None
        The address of a running Dask scheduler (``tcp://host:8786``) instead; its
        workers must reach the images and ``store``.
    client : distributed.Client or None
        A client you hold (not closed here).
    store : path or None
        The training store (:mod:`bowlrp.runs.training_store`). None: a new temporary
        folder (local clusters only).
    keep_store : bool
        Keep the store after a successful run (it is always kept after a failed one).
    rows_per_block : int
        Images per feature task.
    retries : int
        Dask retries of a task whose worker raised.
    progress : bool
        Progress bars (tqdm) per stage.
    em_on_workers : bool
        Run a streamed GMM's E-step on the workers (:class:`~bowlrp.runs.dask_em.DaskEStep`);
        False: on the driver. Same vocabularies either way.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        scheduler: str | None = None,
        client=None,
        store=None,
        keep_store: bool = False,
        rows_per_block: int = ROWS_PER_BLOCK,
        retries: int = 3,
        progress: bool = False,
        em_on_workers: bool = True,
    ):
        self.workers = workers
        self.scheduler = scheduler
        self.client = client
        self.store = store
        self.keep_store = keep_store
        self.rows_per_block = rows_per_block
        self.retries = retries
        self.progress = progress
        self.em_on_workers = em_on_workers

    def check(self) -> DaskStages:
        """Refuse settings that cannot run (one-line ValueError), before any work; returns self."""
        if sum(v is not None for v in (self.workers, self.scheduler, self.client)) != 1:
            raise ValueError("give exactly one of workers, scheduler and client")
        if self.workers is not None:
            check_local_workers(self.workers)
        if self.store is None and self.scheduler is not None:
            raise ValueError("training on a Dask scheduler needs a store its workers reach (--store DIR)")
        if int(self.rows_per_block) < 1:
            raise ValueError(f"rows_per_block must be at least 1, got {self.rows_per_block}")
        return self

    @contextlib.contextmanager
    def running(self, report: Callable[[str], None] | None = None) -> Iterator[DaskStages]:
        """Start (or join) the cluster, lock the store; on success remove it unless ``keep_store``."""
        self.check()
        say = report or _logger.info
        self._say = say
        with dask_client(self.workers, self.scheduler, self.client) as client:
            self._client = client
            location = (
                str(self.store) if self.store is not None else tempfile.mkdtemp(suffix=".features.zarr")
            )
            self.location_ = location
            existed = self.store is not None and Path(location).exists()
            self._opened = ok = False
            self._stages = None
            try:
                with store_lock(location, "bowlrp-train"):
                    yield self
                ok = True
            finally:
                self._client = None
                path = Path(location)
                if ok and not self.keep_store:
                    if remove_training_store(location):
                        say(f"removed the training store {display_path(location)}")
                elif not ok and not existed and path.is_dir() and not any(path.iterdir()):
                    path.rmdir()  # the run made the folder and stopped before writing into it
                elif not ok and self._opened:
                    say(
                        f"the vocabularies and features written so far stay in {display_path(location)}; "
                        "train again to resume"
                    )

    def fit_vocabularies(self, pipe: Pipeline, images: list) -> None:
        """The fitted vocabularies of ``pipe``: read from the store if it keeps them, else fitted.

        The store is claimed for ``pipe``'s config and ``images`` first (a store of
        another training is refused before anything is fitted). A store that keeps
        this training's vocabularies gives them back
        (:func:`~bowlrp.runs.training_store.load_vocabularies`); otherwise
        :meth:`Pipeline.fit_vocabularies` runs with its per-image describing and sampling
        as Dask tasks (joblib's Dask backend: each image's sample is drawn with its
        serial seed), the GMM E-step on the workers, the rest on the driver with
        :data:`DRIVER_BLAS_THREADS`; the fitted stages are saved into the store and
        read back. Either way ``pipe`` gets the stored stages (its attributes
        :data:`~bowlrp.runs.training_store.VOCABULARY_ATTRIBUTES`).
        """
        n = len(images)
        run = {"config": config_fingerprint(pipe), "images": images_fingerprint(images)}
        stages = claim_training_store(self.location_, run, n, int(self.rows_per_block))
        self._opened = True
        if stages is not None:
            stored = load_vocabularies(self.location_, stages)
            self._say(f"vocabularies read from {display_path(self.location_)}, not fitted again")
        else:
            self._fit_vocabularies_here(pipe, images)
            stored = save_vocabularies(self.location_, pipe)
            stages = stages_fingerprint(stored)
            record_vocabularies(self.location_, stages, int(sum(stored.channel_sizes_)))
        for name in VOCABULARY_ATTRIBUTES:
            setattr(pipe, name, getattr(stored, name))
        self._stages = (pipe, run, stages)

    def _fit_vocabularies_here(self, pipe: Pipeline, images: list) -> None:
        """:meth:`Pipeline.fit_vocabularies`: describing as tasks, the E-step on the workers."""
        n_jobs = pipe.n_jobs
        pipe.set_params(n_jobs=-1)  # map_images hands work to joblib only when n_jobs asks for it
        estep = DaskEStep(self._client, retries=self.retries) if self.em_on_workers else None
        try:
            with (
                joblib.parallel_config(backend="dask", client=self._client, retries=self.retries),
                threadpool_limits(limits=DRIVER_BLAS_THREADS, user_api="blas"),
                using_estep(estep),
            ):
                pipe.fit_vocabularies(images)
        finally:
            pipe.set_params(n_jobs=n_jobs)

    def features(self, pipe: Pipeline, images: list) -> np.ndarray:
        """Encode ``images`` as tasks into the store (resuming finished blocks); the (n, d) float32 rows."""
        check_is_fitted(pipe, "encoders_")
        n, d = len(images), int(sum(pipe.channel_sizes_))
        run = {"config": config_fingerprint(pipe), "images": images_fingerprint(images)}
        recorded = getattr(self, "_stages", None)
        if recorded is not None and recorded[0] is pipe and recorded[1] == run:
            stages = recorded[2]  # the stored vocabularies' hash (pipe's stages are them)
        else:
            stages = stages_fingerprint(pipe)
        fingerprint = {**run, "stages": stages}
        store = TrainingStore.create(self.location_, fingerprint, n, d, int(self.rows_per_block))
        self._opened = True
        done = store.done_blocks()
        todo = [b for b in range(store.n_blocks) if not done[b]]
        if len(todo) < store.n_blocks:
            self._say(
                f"{store.n_blocks - len(todo)} of {store.n_blocks} blocks of features written before, kept"
            )
        if todo:
            model = copy.copy(pipe)  # the tasks' copy: one thread, no bars; the pipeline itself unchanged
            model.set_params(n_jobs=None, verbose=False)
            head = self._client.scatter(model, broadcast=True, hash=False)
            argsets = [(head, self.location_, b, images[slice(*store.block_rows(b))]) for b in todo]
            statuses = _run_tasks(
                self._client,
                _features_task,
                argsets,
                desc="encoding",
                weights=[len(a[3]) for a in argsets],
                progress=self.progress,
                retries=self.retries,
            )
            failed = [s for s in statuses if s["status"] != "written"]
            if failed:
                raise TrainingTaskError(
                    f"{failed[0]['error']} ({len(failed)} of {len(todo)} blocks failed; the others are kept "
                    f"in {display_path(self.location_)}: fix or leave out the image and train again)"
                )
        return store.read()

    def fit_classifier(
        self,
        pipe: Pipeline,
        X: np.ndarray,
        y: np.ndarray,
        task_mask=None,
        compress_linear: bool | str = False,
    ) -> None:
        """:meth:`Pipeline.fit_classifier` with the Gram matrices computed in tiles as Dask tasks.

        ``X`` (n, d) must be the rows :meth:`features` returned (the tasks read them from
        the store). Kernels are fitted here (on ``X``); tiles of :func:`gram_tiles` are
        tasks; libsvm runs here (:meth:`KernelSVC.fit_from_grams`, ``task_mask`` and
        ``compress_linear`` as :meth:`KernelSVC.fit`).
        """
        check_is_fitted(pipe, "encoders_")
        classifier = pipe.classifier if pipe.classifier is not None else KernelSVC()
        svc = seeded(clone(classifier), pipe.random_state)
        svc.set_params(channel_sizes=pipe.channel_sizes_)
        X = np.asarray(X)
        svc.fit_kernels(X)
        kernels, slices = svc.kernels_, svc.channel_slices_
        n = X.shape[0]
        tiles = gram_tiles(n, X.shape[1])
        argsets = [(kernels, slices, self.location_, rows, cols) for rows, cols in tiles]
        results = _run_tasks(
            self._client,
            _gram_task,
            argsets,
            desc="Gram tiles",
            weights=[1] * len(argsets),
            progress=self.progress,
            retries=self.retries,
        )
        grams = [np.empty((n, n)) for _ in slices]
        for ((r0, r1), (c0, c1)), parts in zip(tiles, results):
            for G, tile in zip(grams, parts):
                G[r0:r1, c0:c1] = tile
                if (r0, r1) != (c0, c1):
                    G[c0:c1, r0:r1] = tile.T
        pipe.classifier_ = svc.fit_from_grams(X, y, grams, task_mask, compress_linear)
        pipe.classes_ = pipe.classifier_.classes_


__all__ = [
    "GRAM_TILE_BYTES",
    "ROWS_PER_BLOCK",
    "DaskStages",
    "TrainingTaskError",
    "default_store",
    "gram_tiles",
]
