"""SpRAy on a Dask cluster: maps read and pooled on the workers, the graph in row blocks.

The local analyses (:func:`bowlrp.spray.report.analyse_heatmaps`,
:func:`~bowlrp.spray.report.analyse_store`) read and pool one map after the
other in this process; given ``client=`` (a ``distributed.Client``) they use
this module:

1. the maps are read and sum-pooled onto the grid on the workers, in blocks of
   ``POOL_BLOCK`` records per task (:func:`pool_on_dask`): a heatmap folder's
   ``.npy`` files by path, a relevance store's heatmaps by the store's location
   and the record's id (only the pooled ``(n, grid, grid)`` maps come back);
   a store whose grid is the one asked for gives its pooled maps as they are;
2. :meth:`SpRAy.fit_pooled(..., client=client) <bowlrp.spray.SpRAy.fit_pooled>`
   finds the k nearest neighbours in row blocks of ``KNN_BLOCK`` (one task
   each, the pooled maps sent to every worker once), solves the sparse
   eigenproblem here, on the driver, and runs each clustering family and the
   t-SNE embedding as a task of its own.

Every step gives what the local path gives (tests/test_spray_dask.py):
the same pooled maps, the same graph, so the same eigenvectors, clusterings
and embeddings. A record that cannot be read is reported through ``on_skip``
and left out, as locally.

Start a client with :func:`bowlrp.runs.distributed.dask_client` (``workers``
local processes or a ``scheduler`` address); ``bowlrp-spray --workers N``
and ``--scheduler ADDR`` do.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..runs import store as store_module
from .heatmap_files import HeatmapFileError, HeatmapRecord, OnSkip, load_map, skip_or_raise
from .spectral import common_shape, pool_maps

__all__ = ["POOL_BLOCK", "pool_block", "pool_on_dask", "pool_records_on_dask"]

POOL_BLOCK = 512  # records per pooling task: ~4 MB of 32 x 32 maps, a few hundred kB back


def _store_index(record: HeatmapRecord) -> int:
    """The position of ``record.target`` among its store record's targets (its heatmap's index)."""
    return [str(t) for t in record.meta["targets"]].index(record.target)


def pool_block(
    records: list[HeatmapRecord], grid: int, shape: tuple[int, int], location: str | None = None
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """A Dask task: read and pool ``records`` (m, grid, grid); returns the pooled maps and the failures.

    Parameters
    ----------
    records : list of HeatmapRecord
        Records of a heatmap folder (read from ``record.npy``) or, with
        ``location``, of a relevance store (read by id; their ``loader`` is not used).
    grid : int
    shape : (H, W)
        The common shape maps are resized to (:func:`bowlrp.image.pool_maps`);
        None: each map is pooled in its own shape (a store's maps).
    location : str or None
        The relevance store's location, opened once per task.

    Returns
    -------
    pooled : ndarray (m_read, grid, grid) float64, the records read, in order
    failures : list of (position in ``records``, one-line message)
    """
    store = None if location is None else store_module.open(location)
    pooled, failures = [], []
    for j, r in enumerate(records):
        if store is not None:
            r = HeatmapRecord(
                r.npy, r.json, r.stem, r.target, r.meta, r.shape,
                loader=lambda r=r: store.heatmap(r.stem, _store_index(r)),
            )  # fmt: skip
        try:
            pooled.append(pool_maps([load_map(r)], grid, r.shape if shape is None else shape)[0])
        except HeatmapFileError as exc:
            failures.append((j, str(exc)))
    return (np.stack(pooled) if pooled else np.zeros((0, grid, grid))), failures


def pool_on_dask(
    client,
    records: list[HeatmapRecord],
    grid: int,
    shape: tuple[int, int] | None = None,
    *,
    location: str | None = None,
    on_skip: OnSkip | None = None,
    quiet: bool = False,
    block: int = POOL_BLOCK,
) -> tuple[np.ndarray, list[HeatmapRecord]]:
    """Pooled maps (n, grid, grid) of ``records``, read and pooled in blocks as Dask tasks.

    What :func:`bowlrp.spray.report.pool_records` gives (``shape`` given or the
    common shape of the records read; a store's maps, ``location`` given and
    ``shape`` None, each in its own shape), with the unreadable records
    reported through ``on_skip`` (None: the first one raises) and left out.

    Returns
    -------
    pooled : ndarray (n_read, grid, grid) float64
    kept : the records read, in the order of ``pooled``
    """
    blocks = [records[a : a + block] for a in range(0, len(records), block)]
    futures = [client.submit(pool_block, b, grid, shape, location, pure=False) for b in blocks]
    parts, kept = [], []
    bar = tqdm(
        total=len(records), desc="pooling heatmaps on Dask", leave=False, disable=quiet or len(records) < 20
    )
    for b, future in zip(blocks, futures):
        pooled, failures = future.result()
        bad = dict(failures)
        for j, r in enumerate(b):
            if j in bad:
                skip_or_raise(on_skip, r.stem if location is not None else r.npy, HeatmapFileError(bad[j]))
            else:
                kept.append(r)
        parts.append(pooled)
        bar.update(len(b))
    bar.close()
    pooled = np.concatenate(parts) if parts else np.zeros((0, grid, grid))
    return pooled, kept


def pool_records_on_dask(
    client, records: list[HeatmapRecord], grid: int, quiet: bool = False, on_skip: OnSkip | None = None
) -> tuple[np.ndarray, tuple[int, int], list[HeatmapRecord]]:
    """:func:`bowlrp.spray.report.pool_records` on Dask: (pooled (n, grid, grid), common shape, kept).

    Maps are resized to the records' most common shape; when unreadable records
    change that shape, the rest are pooled again in the new one (as locally).
    """
    shape = common_shape(r.shape for r in records)
    pooled, kept = pool_on_dask(client, records, grid, shape, on_skip=on_skip, quiet=quiet)
    if len(kept) < len(records) and kept and common_shape(r.shape for r in kept) != shape:
        shape = common_shape(r.shape for r in kept)  # the most common shape changed: pool again
        pooled, kept = pool_on_dask(client, kept, grid, shape, on_skip=on_skip, quiet=quiet)
    return pooled, shape, kept
