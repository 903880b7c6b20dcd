"""Spectral Relevance Analysis (SpRAy): the prediction strategies of a model over a data set.

SpRAy (Lapuschkin et al. 2019; thesis chapter 6; ``docs/spray.md``) clusters
relevance maps instead of looking at them one at a time:

1. every map is resized to one shape and sum-pooled onto a ``grid x grid``
   array, then normalised per map (``l1``, ``l2`` or not at all);
2. a k-nearest-neighbour graph over the pooled maps (k = ceil(ln n) by
   default), binary, symmetrised by the maximum: ``W = max(A, A^T)``;
3. the smallest eigenvalues ``0 = lambda_1 <= lambda_2 <= ...`` of the
   normalised symmetric Laplacian ``L_sym = I - D^-1/2 W D^-1/2``,
   ``D = diag(sum_j W_ij)``; a large gap ``lambda_{k+1} - lambda_k`` says the
   maps fall into ``k`` groups (``k`` disconnected groups give ``k`` zeros);
4. spectral clustering of the graph into that many groups, and a t-SNE
   embedding of the pooled maps for pictures.

A group of images the model explains with the same, unusual evidence (a
watermark in one corner, a frame, a text stamp) shows up as a tight cluster
separated by an eigengap. :func:`rank_classes` ranks classes by how small
their second eigenvalue is (thesis Fig. 6.5), i.e. how strongly their maps
split into separate strategies.

Run as a program: ``python -m bowlrp.spray --heatmaps DIR --out REPORT/``
(:mod:`bowlrp.spray.__main__`, the same as ``bowlrp spray``).
"""

from __future__ import annotations

import contextlib
import math
import time
import tracemalloc
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state

from .._utils.validation import plain_value
from ..image import as_maps, common_shape, pool_maps
from .analyses import (
    CLUSTERINGS,
    EMBEDDINGS,
    OPENTSNE_INTS_IN_INTERVAL,
    cluster_family,
    clustering_eigengap,
    clustering_names,
    have_umap,
    reduced,
    relabel_by_size,
    resolve_tsne_backend,
    silhouette,
    spectral_assignment,
    spectral_embedding,
    tsne_embedding,
    umap_embedding,
)
from .cache import StageCache, array_digest, stage_key

NORMALIZATIONS = ("l1", "l2", None)
_DENSE_EIGEN_MAX = 1500  # below this many maps a dense eigensolver is faster and exact


def normalize_pooled(pooled: np.ndarray, norm: str | None) -> np.ndarray:
    """Per-map normalisation of pooled maps (n, ...): divide by ``sum |x|`` (l1) or
    ``sqrt(sum x^2)`` (l2); maps of all zeros stay zero. Returns (n, prod(...))."""
    X = pooled.reshape(len(pooled), -1).astype(np.float64, copy=True)
    if norm is None:
        return X
    if norm == "l1":
        scale = np.abs(X).sum(axis=1)
    elif norm == "l2":
        scale = np.sqrt((X * X).sum(axis=1))
    else:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {norm!r}")
    scale[scale == 0] = 1.0
    return X / scale[:, None]


KNN_BLOCK = 2048  # query rows per block of the kNN search (a multiple of scikit-learn's 256-row chunks)


def knn_rows(X: np.ndarray, n_neighbors: int, start: int, stop: int) -> np.ndarray:
    """Indices (stop - start, k) of the ``k`` nearest neighbours (Euclidean) of rows ``start:stop`` of ``X``.

    Exactly what ``NearestNeighbors(n_neighbors=k).fit(X).kneighbors()`` gives
    those rows (the point itself left out; when more than ``k`` duplicates of a
    point tie with it, the first of them is dropped instead, as scikit-learn
    does). One row block of :func:`knn_affinity`, run as a Dask task by
    :mod:`bowlrp.spray.distributed`: every row's answer depends on ``X`` and
    that row only, so the blocks of any partition give the same graph.
    """
    k = int(min(max(1, n_neighbors), len(X) - 1))
    nn = NearestNeighbors(n_neighbors=k).fit(X)
    ind = nn.kneighbors(X[start:stop], n_neighbors=k + 1, return_distance=False)
    mask = ind != np.arange(start, stop)[:, None]
    mask[np.all(mask, axis=1), 0] = False  # no self among the k + 1: drop the first duplicate
    return ind[mask].reshape(stop - start, k)


def affinity_from_rows(rows: np.ndarray) -> scipy.sparse.csr_matrix:
    """``W = max(A, A^T)`` (n, n) for the binary kNN graph ``A`` whose row ``i`` has ones at ``rows[i]``."""
    n, k = rows.shape
    A = scipy.sparse.csr_matrix(
        (np.ones(n * k), rows.ravel().astype(np.intp, copy=False), np.arange(0, n * k + 1, k)), shape=(n, n)
    )
    W = A.maximum(A.T).tocsr()
    W.sort_indices()  # one order whatever the order of tied neighbours: the same sums in every product
    return W


def knn_affinity(X: np.ndarray, n_neighbors: int, client=None) -> scipy.sparse.csr_matrix:
    """Binary k-nearest-neighbour graph (Euclidean), symmetrised by the maximum.

    ``A_ij = 1`` iff ``j`` is among the ``k`` nearest neighbours of ``i`` (not ``i``
    itself); ``W = max(A, A^T)``. Sparse (n, n), about ``k n`` to ``2 k n`` entries,
    column indices sorted in every row.

    The neighbours are found in row blocks of ``KNN_BLOCK`` (:func:`knn_rows`):
    here one after the other, or, with a ``distributed.Client``, as one Dask
    task per block (``X`` sent to every worker once); the graph is the same.
    """
    n = len(X)
    k = int(min(max(1, n_neighbors), n - 1))
    blocks = [(a, min(a + KNN_BLOCK, n)) for a in range(0, n, KNN_BLOCK)]
    if client is None:
        rows = [knn_rows(X, k, a, b) for a, b in blocks]
    else:
        shared = client.scatter(X, broadcast=True, hash=False)  # a new key: an old one may be on its way out
        rows = client.gather([client.submit(knn_rows, shared, k, a, b, pure=False) for a, b in blocks])
    return affinity_from_rows(np.concatenate(rows))


def laplacian_eigenvalues(W, n_eigenvalues: int) -> tuple[np.ndarray, np.ndarray]:
    """The smallest eigenvalues (ascending) and eigenvectors of ``L_sym = I - D^-1/2 W D^-1/2``.

    Dense ``scipy.linalg.eigh`` for small graphs; for large ones ARPACK
    (``scipy.sparse.linalg.eigsh``) on ``S = D^-1/2 W D^-1/2``: the largest
    eigenvalues ``mu`` of ``S`` are ``1 - lambda`` for the smallest ``lambda``
    of ``L_sym``. Only sparse products, no factorisation (shift-invert on
    ``L_sym`` took minutes at n = 10,000: the LU of a kNN graph fills in).
    Isolated vertices (degree 0) cannot occur in a kNN graph.
    """
    n = W.shape[0]
    m = int(min(n_eigenvalues, n))
    W = scipy.sparse.csr_matrix(W, dtype=np.float64)
    if n <= _DENSE_EIGEN_MAX or m >= n - 1:
        L = scipy.sparse.csgraph.laplacian(W, normed=True)
        values, vectors = scipy.linalg.eigh(L.toarray(), subset_by_index=[0, m - 1])
    else:
        scale = scipy.sparse.diags(1.0 / np.sqrt(np.asarray(W.sum(axis=1)).ravel()))
        S = (scale @ W @ scale).tocsr()
        v0 = np.random.RandomState(0).uniform(-1, 1, n)
        mu, vectors = scipy.sparse.linalg.eigsh(S, k=m, which="LA", v0=v0)
        values = 1.0 - mu
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
    return np.clip(values, 0.0, None), vectors


def eigengap(eigenvalues: np.ndarray) -> tuple[int, float]:
    """``k = argmax_i (lambda_{i+1} - lambda_i)`` (1-based) and that gap.

    ``k`` is the number of groups the spectrum suggests; ``k = 1`` means one
    connected cloud.
    """
    ev = np.asarray(eigenvalues, dtype=np.float64)
    if len(ev) < 2:
        return 1, 0.0
    gaps = np.diff(ev)
    i = int(np.argmax(gaps))
    return i + 1, float(gaps[i])


class SpRAy(ClusterMixin, BaseEstimator):
    """Spectral Relevance Analysis of a set of relevance maps.

    Parameters
    ----------
    grid : int, default 20
        Maps are resized to one shape and sum-pooled onto ``grid x grid``.
    normalize : {None, "l1", "l2"}, default None
        Per-map normalisation of the pooled maps. None (keep each map's
        magnitude) separated the planted shortcut best on the shortcut data
        set; see ``docs/spray.md``.
    n_neighbors : int or None
        k of the kNN affinity graph; None: ``ceil(ln n)``.
    n_eigenvalues : int, default 10
        How many of the smallest Laplacian eigenvalues to report
        (``eigenvalues_``); enough for ``k_range`` are computed.
    n_clusters : "eigengap" or int
        Number of clusters of ``labels_``: from the largest eigengap, or fixed.
    perplexity : float, default 7
        t-SNE perplexity (clipped to ``(n - 1) / 3`` for small sets).
    early_exaggeration : float, default 6
    embedding : bool, default True
        Compute the costly embeddings named in ``embeddings`` (t-SNE, UMAP);
        False skips them (``rank_classes`` does). The spectral embedding is always kept.
    random_state : int, RandomState or None
        Seeds the clusterings and the embeddings.
    clusterings : tuple of str, default ("spectral", "kmeans", "agglomerative", "hdbscan")
        Families of ``clusterings_`` (:mod:`bowlrp.spray.analyses`): ``"spectral"``,
        ``"kmeans"``, ``"agglomerative"`` (one clustering per ``k`` in ``k_range``),
        ``"hdbscan"``, ``"dbscan"``. ``()``: only ``labels_``.
    k_range : (int, int), default (2, 10)
        Smallest and largest ``k`` (inclusive) of the k-families (capped at ``n - 1``).
    embeddings : tuple of str, default ("spectral", "tsne")
        Embeddings of ``embeddings_``: ``"spectral"``, ``"tsne"``, ``"umap"``
        (needs ``umap-learn``: ``pip install 'bowlrp[spray]'``).
    tsne_backend : {"auto", "sklearn", "opentsne"}, default "auto"
        ``"auto"``: openTSNE (FFT) from 2,000 maps on when installed, else
        scikit-learn's Barnes-Hut (small sets: the coordinates of earlier versions).
    min_cluster_size : int or None
        HDBSCAN's smallest cluster; None: ``max(5, ceil(n / 100))``.
    dbscan_eps : float or None
        DBSCAN's radius on the unit-length spectral embedding; None: the median
        distance of a map to its ``n_neighbors_``-th neighbour there.
    cache : path or None
        Directory of the stage cache (:mod:`bowlrp.spray.cache`): pooling,
        affinity, eigendecomposition, clusterings and embeddings are stored as
        HDF5 files keyed by a hash of the input maps and the stage's
        parameters, and read back by later fits. None: no cache.

    Attributes
    ----------
    labels_ : ndarray (n,) int
        Cluster of each map, numbered by decreasing cluster size.
    eigenvalues_ : ndarray (n_eigenvalues,)
        Smallest eigenvalues of ``L_sym``, ascending.
    n_clusters_ : int
        Clusters found: the eigengap's position for ``n_clusters="eigengap"``
        (or the int given), fewer only if the clustering left one empty.
    eigengap_ : float
        ``lambda_{k+1} - lambda_k`` at ``k = n_clusters_`` (0 when undefined).
    embedding_ : ndarray (n, 2) or None
        t-SNE coordinates (``embeddings_["tsne"]``).
    cluster_maps_ : ndarray (n_clusters_, grid, grid)
        Mean pooled, normalised map per cluster of ``labels_``.
    clusterings_ : dict str -> ndarray (n,) int
        Every clustering asked for, by name (``"spectral-k3"``, ``"kmeans-k4"``,
        ``"agglomerative-k2"``, ``"hdbscan"``, ``"dbscan"``), numbered by
        decreasing cluster size, -1 for noise (HDBSCAN, DBSCAN).
        ``clusterings_[f"spectral-k{n_clusters_}"]`` equals ``labels_``.
    clustering_k_ : dict str -> int
        Clusters of each clustering (noise not counted).
    clustering_scores_ : dict str -> float
        Silhouette of each clustering on the pooled maps (their first 50
        principal components; NaN with fewer than two clusters).
    clustering_eigengaps_ : dict str -> float
        ``lambda_{K+1} - lambda_K`` at each clustering's ``K`` (NaN when not computed).
    embeddings_ : dict str -> ndarray (n, d)
        ``"spectral"``: ``D^-1/2 U`` (n, m) for the ``m`` computed eigenvectors;
        ``"tsne"``, ``"umap"``: (n, 2).
    spectral_eigenvalues_ : ndarray (m,)
        The eigenvalues of the columns of ``embeddings_["spectral"]``.
    tsne_backend_ : str or None
        ``"sklearn"`` or ``"opentsne"`` (None without t-SNE).
    cache_info_ : dict
        ``{"hits": {stage: count}, "misses": {stage: count}}`` of this fit.
    shape_ : (H, W)
        The shape all maps were resized to.
    n_neighbors_ : int
    stage_seconds_ : dict str -> {"cpu": float, "wall": float}
        Time of each stage of this fit (``pooling``, ``affinity``, ``eigen``,
        one per clustering family, ``scores`` (silhouettes), ``tsne``, ``umap``;
        stages read from the cache take the reading time): CPU seconds of this
        process (on Dask the workers' are not counted) and wall seconds.
    stage_memory_ : dict str -> int
        Peak traced memory of each stage in bytes above its start, when
        :mod:`tracemalloc` was tracing during the fit (else empty).
    """

    def __init__(
        self,
        grid: int = 20,
        normalize: str | None = None,
        n_neighbors: int | None = None,
        n_eigenvalues: int = 10,
        n_clusters="eigengap",
        perplexity: float = 7.0,
        early_exaggeration: float = 6.0,
        embedding: bool = True,
        random_state=None,
        clusterings: tuple[str, ...] = ("spectral", "kmeans", "agglomerative", "hdbscan"),
        k_range: tuple[int, int] = (2, 10),
        embeddings: tuple[str, ...] = ("spectral", "tsne"),
        tsne_backend: str = "auto",
        min_cluster_size: int | None = None,
        dbscan_eps: float | None = None,
        cache=None,
    ):
        self.grid = grid
        self.normalize = normalize
        self.n_neighbors = n_neighbors
        self.n_eigenvalues = n_eigenvalues
        self.n_clusters = n_clusters
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.embedding = embedding
        self.random_state = random_state
        self.clusterings = clusterings
        self.k_range = k_range
        self.embeddings = embeddings
        self.tsne_backend = tsne_backend
        self.min_cluster_size = min_cluster_size
        self.dbscan_eps = dbscan_eps
        self.cache = cache

    def _check_params(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if (
            not (isinstance(self.n_clusters, (int, np.integer)) and self.n_clusters >= 1)
            and self.n_clusters != "eigengap"
        ):
            raise ValueError(f"n_clusters must be 'eigengap' or a positive int, got {self.n_clusters!r}")
        if int(self.n_eigenvalues) < 2:
            raise ValueError(f"n_eigenvalues must be at least 2, got {self.n_eigenvalues}")
        unknown = [c for c in self.clusterings if c not in CLUSTERINGS]
        if isinstance(self.clusterings, str) or unknown:
            raise ValueError(f"clusterings must be a tuple of {CLUSTERINGS}, got {self.clusterings!r}")
        unknown = [e for e in self.embeddings if e not in EMBEDDINGS]
        if isinstance(self.embeddings, str) or unknown:
            raise ValueError(f"embeddings must be a tuple of {EMBEDDINGS}, got {self.embeddings!r}")
        lo_hi = tuple(self.k_range) if np.ndim(self.k_range) == 1 else ()
        if (
            len(lo_hi) != 2
            or not all(isinstance(k, (int, np.integer)) for k in lo_hi)
            or not 1 <= lo_hi[0] <= lo_hi[1]
        ):
            raise ValueError(f"k_range must be two ints 1 <= low <= high, got {self.k_range!r}")
        if self.tsne_backend not in ("auto", "sklearn", "opentsne"):
            raise ValueError(
                f"tsne_backend must be 'auto', 'sklearn' or 'opentsne', got {self.tsne_backend!r}"
            )
        if self.embedding and "umap" in self.embeddings and not have_umap():
            raise ValueError(
                "the UMAP embedding needs umap-learn: pip install 'bowlrp[spray]' (or leave out umap)"
            )
        if self.min_cluster_size is not None and int(self.min_cluster_size) < 2:
            raise ValueError(f"min_cluster_size must be at least 2, got {self.min_cluster_size}")
        if self.dbscan_eps is not None and not float(self.dbscan_eps) > 0:
            raise ValueError(f"dbscan_eps must be positive, got {self.dbscan_eps}")

    def features(self, maps) -> np.ndarray:
        """Pooled and normalised maps, (n, grid * grid): what the graph is built on."""
        maps = as_maps(maps)
        shape = getattr(self, "shape_", None) or common_shape(m.shape for m in maps)
        return normalize_pooled(pool_maps(maps, self.grid, shape), self.normalize)

    def fit(self, maps, y=None, client=None):
        """Cluster relevance maps.

        Parameters
        ----------
        maps : (n, H, W) array or list of 2-D arrays (shapes may differ), n >= 3
        y : ignored
        client : distributed.Client or None
            Run the kNN graph (in row blocks), the clusterings and the embeddings
            as Dask tasks; the eigendecomposition stays here. Same result as
            without (see :mod:`bowlrp.spray.distributed` for reading and pooling
            maps on the workers).
        """
        self._check_params()
        maps = as_maps(maps)
        if len(maps) < 3:
            raise ValueError(f"SpRAy needs at least 3 relevance maps, got {len(maps)}")
        shape = common_shape(m.shape for m in maps)
        cache, clock = StageCache(self.cache), StageClock()
        key = stage_key(array_digest(*maps), "pooling", {"grid": int(self.grid), "shape": list(shape)})
        hit = cache.get("pooling", key)
        if hit is not None and hit.get("pooled", np.empty(0)).shape == (len(maps), self.grid, self.grid):
            pooled = hit["pooled"]
        else:
            with clock("pooling"):
                pooled = pool_maps(maps, self.grid, shape)
            cache.put("pooling", key, {"grid": int(self.grid), "shape": list(shape)}, {"pooled": pooled})
        return self._fit_pooled(pooled, shape, cache, client, clock)

    def fit_pooled(self, pooled, shape: tuple[int, int] | None = None, client=None):
        """Cluster maps already pooled with :func:`pool_maps` (n, grid, grid).

        Lets callers stream maps from disk (pool one at a time, or in blocks on
        Dask workers: :mod:`bowlrp.spray.distributed`) instead of holding every
        full-size map in memory. ``client``: as in :meth:`fit`.
        """
        self._check_params()
        return self._fit_pooled(pooled, shape, StageCache(self.cache), client, StageClock())

    def _fit_pooled(self, pooled, shape, cache: StageCache, client=None, clock: StageClock | None = None):
        clock = clock or StageClock()
        pooled = np.asarray(pooled, dtype=np.float64)
        if pooled.ndim != 3 or pooled.shape[1:] != (self.grid, self.grid):
            raise ValueError(f"pooled maps must have shape (n, {self.grid}, {self.grid}), got {pooled.shape}")
        if not np.all(np.isfinite(pooled)):
            raise ValueError("pooled maps contain NaN or infinite values")
        n = len(pooled)
        if n < 3:
            raise ValueError(f"SpRAy needs at least 3 relevance maps, got {n}")
        rng = check_random_state(self.random_state)
        self.shape_ = tuple(shape) if shape is not None else None
        X = normalize_pooled(pooled, self.normalize)
        k = self.n_neighbors if self.n_neighbors is not None else math.ceil(math.log(n))
        self.n_neighbors_ = int(min(max(1, k), n - 1))
        input_key = array_digest(pooled)
        graph = {"normalize": self.normalize, "n_neighbors": self.n_neighbors_}
        affinity_key = stage_key(input_key, "affinity", graph)
        with clock("affinity"):
            W = _cached_affinity(cache, affinity_key, graph, X, self.n_neighbors_, client)

        n_values = int(min(self.n_eigenvalues, n))
        fixed = 0 if self.n_clusters == "eigengap" else int(self.n_clusters)
        families = tuple(dict.fromkeys(self.clusterings))
        k_max = int(self.k_range[1]) if {"spectral", "kmeans", "agglomerative"} & set(families) else 0
        m = int(min(max(n_values, fixed, k_max + 1), n))
        with clock("eigen"):
            all_values, vectors = _cached_eigen(cache, stage_key(affinity_key, "eigen", {}), W, m)
        values = all_values[:n_values]
        self.eigenvalues_ = values
        gap_k, gap = eigengap(values)
        if self.n_clusters == "eigengap":
            n_clusters = gap_k
        else:
            n_clusters = int(min(self.n_clusters, n))
            gaps = np.diff(values)
            gap = float(gaps[n_clusters - 1]) if n_clusters - 1 < len(gaps) else 0.0
        self.n_clusters_, self.eigengap_ = int(n_clusters), float(gap)
        E = spectral_embedding(W, vectors)
        # seeds drawn in the order of earlier versions (labels, then t-SNE), then the new analyses
        seed_labels = rng.randint(2**31 - 1) if n_clusters > 1 else 0
        run_tsne = bool(self.embedding) and "tsne" in self.embeddings
        pca_seed = rng.randint(2**31 - 1) if run_tsne and n > 50 and X.shape[1] > 50 else 0
        tsne_seed = rng.randint(2**31 - 1) if run_tsne else 0
        seed_more = rng.randint(2**31 - 1)
        eigen_key = stage_key(affinity_key, "eigen", {"m": m})

        tsne = None
        if run_tsne:  # first, so that on Dask it runs on a worker while the clusterings run
            tsne = self._tsne(cache, input_key, X, (pca_seed, tsne_seed), client)
        self._cluster_all(
            cache, eigen_key, E, X, all_values, families, seed_labels, seed_more, n, client, clock
        )
        name = f"spectral-k{n_clusters}"
        if name in self.clusterings_:
            labels = self.clusterings_[name]
        else:
            labels = relabel_by_size(spectral_assignment(E, n_clusters, seed_labels, _DENSE_EIGEN_MAX))
        self.labels_ = labels
        self.n_clusters_ = int(self.labels_.max()) + 1  # fewer than asked if a cluster came out empty
        self.cluster_maps_ = np.stack(
            [X[self.labels_ == c].mean(axis=0) for c in range(self.n_clusters_)]
        ).reshape(self.n_clusters_, self.grid, self.grid)

        self.embeddings_ = {"spectral": E} if "spectral" in self.embeddings else {}
        self.spectral_eigenvalues_ = all_values
        self.embedding_, self.tsne_backend_ = None, None
        if tsne is not None:
            with clock("tsne"):
                emb, self.tsne_backend_ = tsne()
            self.embedding_ = self.embeddings_["tsne"] = emb
        if self.embedding and "umap" in self.embeddings:
            params = {
                "normalize": self.normalize,
                "n_neighbors": max(self.n_neighbors_, 15),
                "seed": seed_more,
            }
            key = stage_key(input_key, "umap", params)
            hit = cache.get("umap", key)
            if hit is not None and hit.get("embedding", np.empty(0)).shape == (n, 2):
                emb = hit["embedding"]
            else:
                with clock("umap"):
                    emb = umap_embedding(X, params["n_neighbors"], seed_more)
                cache.put("umap", key, params, {"embedding": emb})
            self.embeddings_["umap"] = emb
        self.cache_info_ = {"hits": dict(cache.hits), "misses": dict(cache.misses)}
        self.stage_seconds_, self.stage_memory_ = clock.seconds, clock.memory
        return self

    def _tsne(self, cache: StageCache, input_key: str, X: np.ndarray, seeds: tuple[int, int], client):
        """A function giving ``(t-SNE coordinates (n, 2), backend)``: cached, started on Dask, or run here."""
        n = len(X)
        backend = resolve_tsne_backend(self.tsne_backend, n)
        params = {
            "normalize": self.normalize, "perplexity": float(self.perplexity),
            "early_exaggeration": float(self.early_exaggeration), "seeds": list(seeds), "backend": backend,
        }  # fmt: skip
        if backend == "opentsne":  # exact neighbours and a coarser FFT grid since 0.x: a new key
            params["opentsne"] = {"neighbors": "exact", "ints_in_interval": OPENTSNE_INTS_IN_INTERVAL}
        key = stage_key(input_key, "tsne", params)
        hit = cache.get("tsne", key)
        if hit is not None and hit.get("embedding", np.empty(0)).shape == (n, 2):
            return lambda: (hit["embedding"], backend)
        args = (X, self.perplexity, self.early_exaggeration, seeds, backend)
        future = None if client is None else client.submit(tsne_embedding, *args, pure=False)

        def result():
            emb, _ = tsne_embedding(*args) if future is None else future.result()
            cache.put("tsne", key, params, {"embedding": emb})
            return emb, backend

        return result

    def _cluster_all(
        self, cache, eigen_key, E, X, all_values, families, seed_labels, seed_more, n, client=None, clock=None
    ) -> None:
        clock = clock or StageClock()
        """``clusterings_`` and their numbers, one cache entry (and, on Dask, one task) per family."""
        n_dims = max(2, eigengap(all_values[: int(min(self.n_eigenvalues, n))])[0])
        names = clustering_names(families, self.k_range, n)
        self.clusterings_, self.clustering_k_ = {}, {}
        self.clustering_scores_, self.clustering_eigengaps_ = {}, {}
        todo = []  # (family, key, params, cached result or None)
        for family in families:
            ks = [k for _, fam, k in names if fam == family and k is not None]
            if family in ("spectral", "kmeans", "agglomerative") and not ks:
                continue
            seed = seed_labels if family == "spectral" else seed_more
            params = {
                "family": family, "ks": ks, "seed": int(seed), "min_samples": self.n_neighbors_,
                "min_cluster_size": self.min_cluster_size, "eps": self.dbscan_eps,
                "qr_assignment": n <= _DENSE_EIGEN_MAX, "n_dims": n_dims,
            }  # fmt: skip
            key = stage_key(eigen_key, "clustering", params)
            hit = cache.get("clustering", key)
            found = None
            if hit is not None and all(v.shape == (n,) for v in hit.values()):
                found = {(None if name == "labels" else int(name[1:])): v for name, v in hit.items()}
            todo.append((family, key, params, found))
        args = {
            family: (family, E, X, params["ks"], params["seed"], self.n_neighbors_, self.min_cluster_size,
                     self.dbscan_eps, _DENSE_EIGEN_MAX, n_dims)
            for family, _, params, found in todo if found is None
        }  # fmt: skip
        if client is not None and args:
            shared = {"E": client.scatter(E, hash=False), "X": client.scatter(X, hash=False)}
            futures = {
                f: client.submit(cluster_family, a[0], shared["E"], shared["X"], *a[3:], pure=False)
                for f, a in args.items()
            }
        with clock("scores"):
            F = reduced(X, seed_more) if families else X  # the silhouettes' space
        for family, key, params, found in todo:
            if found is None:
                with clock(family):
                    found = futures[family].result() if client is not None else cluster_family(*args[family])
                found = {k: relabel_by_size(v) for k, v in found.items()}
                cache.put(
                    "clustering",
                    key,
                    params,
                    {("labels" if k is None else f"k{k}"): v for k, v in found.items()},
                )
            for k, labels in sorted(found.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
                name = family if k is None else f"{family}-k{k}"
                labels = np.asarray(labels, dtype=np.int64)
                self.clusterings_[name] = labels
                self.clustering_k_[name] = int(labels.max()) + 1 if (labels >= 0).any() else 0
                with clock("scores"):
                    self.clustering_scores_[name] = silhouette(F, labels)
                self.clustering_eigengaps_[name] = clustering_eigengap(all_values, labels)

    def fit_predict(self, maps, y=None, **kwargs) -> np.ndarray:
        """``fit(maps).labels_``."""
        return self.fit(maps).labels_


class StageClock:
    """Seconds (process CPU and wall) and traced memory of the stages of one fit.

    ``with clock("eigen"): ...`` adds the time spent inside to ``seconds["eigen"]``
    (``{"cpu": s, "wall": s}``; CPU of this process only, not of Dask workers).
    While :mod:`tracemalloc` traces, ``memory[stage]`` is the largest peak of
    traced memory above the level at the stage's start, in bytes (the
    benchmark turns tracing on; a fit does not).
    """

    def __init__(self):
        self.seconds: dict[str, dict[str, float]] = {}
        self.memory: dict[str, int] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        tracing = tracemalloc.is_tracing()
        if tracing:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            spent = self.seconds.setdefault(stage, {"cpu": 0.0, "wall": 0.0})
            spent["cpu"] += time.process_time() - cpu
            spent["wall"] += time.perf_counter() - wall
            if tracing:
                peak = tracemalloc.get_traced_memory()[1] - base
                self.memory[stage] = max(self.memory.get(stage, 0), int(peak))


def _cached_affinity(
    cache: StageCache, key: str, params: dict, X: np.ndarray, k: int, client=None
) -> scipy.sparse.csr_matrix:
    """:func:`knn_affinity` of ``X``, read from / written to the stage cache."""
    n = len(X)
    hit = cache.get("affinity", key)
    if hit is not None and set(hit) >= {"data", "indices", "indptr"} and len(hit["indptr"]) == n + 1:
        try:
            return scipy.sparse.csr_matrix((hit["data"], hit["indices"], hit["indptr"]), shape=(n, n))
        except ValueError:  # inconsistent arrays: computed again below
            pass
    W = knn_affinity(X, k, client)
    cache.put("affinity", key, params, {"data": W.data, "indices": W.indices, "indptr": W.indptr})
    return W


def _cached_eigen(cache: StageCache, key: str, W, m: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`laplacian_eigenvalues` ``(W, m)``; a cached solve of at least ``m`` pairs is reused."""
    n = W.shape[0]
    hit = cache.get("eigen", key)
    if hit is not None and {"values", "vectors"} <= set(hit):
        values, vectors = hit["values"], hit["vectors"]
        if values.ndim == 1 and vectors.shape == (n, len(values)) and len(values) >= m:
            return values[:m], vectors[:, :m]
    values, vectors = laplacian_eigenvalues(W, m)
    cache.put("eigen", key, {"m": m}, {"values": values, "vectors": vectors})
    return values, vectors


def rank_classes(maps_by_class: dict, n_shown: int = 5, **params) -> list[dict]:
    """Rank classes by how strongly their relevance maps split into separate strategies.

    Each class's maps are analysed with ``SpRAy(**params)`` (no t-SNE); classes
    are ordered by their second-smallest eigenvalue ``lambda_2`` ascending (a
    small ``lambda_2`` means a nearly disconnected group of maps; thesis
    Fig. 6.5), ties broken by the larger eigengap.

    Parameters
    ----------
    maps_by_class : dict class -> maps (array or list of 2-D arrays)
        Each class's maps: the images of that class (e.g. predicted as it),
        explained for it. A binary model's two targets on the same images give
        negated maps, the same SpRAy and a warning.
    n_shown : int
        Eigenvalues reported per class.
    **params : SpRAy parameters

    Returns
    -------
    list of dict, best candidates first, with keys ``rank`` (1-based),
    ``class``, ``n_maps``, ``lambda_2``, ``eigenvalues`` (the ``n_shown``
    smallest), ``n_clusters`` (eigengap position), ``eigengap``.
    """
    _warn_negated_classes(maps_by_class)
    params = {**params, "embedding": False}
    fitted = {cls: SpRAy(**params).fit(maps) for cls, maps in maps_by_class.items()}
    return ranking(fitted, n_shown)


def _warn_negated_classes(maps_by_class: dict) -> None:
    """Warn when one class's maps are another's negated: a binary model's two targets.

    A binary SVM has one decision function; explaining ``classes_[0]`` negates the
    relevance of ``classes_[1]`` on the same images, and SpRAy (which sees only the
    pattern, whatever its sign after normalisation) answers the same for both.
    """
    classes = list(maps_by_class)
    as_lists = {c: as_maps(maps_by_class[c]) for c in classes}
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            ma, mb = as_lists[a], as_lists[b]
            if len(ma) == len(mb) and all(
                x.shape == z.shape and np.allclose(x, -z, rtol=1e-9, atol=0) for x, z in zip(ma, mb)
            ):
                warnings.warn(
                    f"the maps of class {plain_value(b)!r} are those of {plain_value(a)!r} negated (the two "
                    "targets of a binary model on the same images): their SpRAy is the same; give each class "
                    "the maps of its own images",
                    UserWarning,
                    stacklevel=3,
                )


def ranking(fitted: dict, n_shown: int = 5) -> list[dict]:
    """The table of :func:`rank_classes` from already fitted SpRAy estimators (class -> SpRAy)."""
    rows = []
    for cls, sp in fitted.items():
        ev = sp.eigenvalues_
        rows.append(
            {
                "class": cls,
                "n_maps": len(sp.labels_),
                "lambda_2": float(ev[1]) if len(ev) > 1 else 0.0,
                "eigenvalues": [float(v) for v in ev[:n_shown]],
                "n_clusters": sp.n_clusters_,
                "eigengap": sp.eigengap_,
            }
        )
    rows.sort(key=lambda r: (r["lambda_2"], -r["eigengap"]))
    return [{"rank": i, **r} for i, r in enumerate(rows, 1)]
