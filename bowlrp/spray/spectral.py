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

import math
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import kneighbors_graph
from sklearn.utils import check_random_state

from .._utils.validation import plain_value
from ..image import as_maps, common_shape, pool_maps

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


def knn_affinity(X: np.ndarray, n_neighbors: int) -> scipy.sparse.csr_matrix:
    """Binary k-nearest-neighbour graph (Euclidean), symmetrised by the maximum.

    ``A_ij = 1`` iff ``j`` is among the ``k`` nearest neighbours of ``i`` (not ``i``
    itself); ``W = max(A, A^T)``. Sparse (n, n), about ``k n`` to ``2 k n`` entries.
    """
    k = int(min(max(1, n_neighbors), len(X) - 1))
    A = kneighbors_graph(X, k, mode="connectivity", include_self=False)
    return A.maximum(A.T).tocsr()


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
        How many of the smallest Laplacian eigenvalues to compute.
    n_clusters : "eigengap" or int
        Number of clusters: from the largest eigengap, or fixed.
    perplexity : float, default 7
        t-SNE perplexity (clipped to ``(n - 1) / 3`` for small sets).
    early_exaggeration : float, default 6
    embedding : bool, default True
        Compute the t-SNE embedding (the slowest step on large sets).
    random_state : int, RandomState or None
        Seeds spectral clustering's k-means and t-SNE.

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
        t-SNE coordinates.
    cluster_maps_ : ndarray (n_clusters_, grid, grid)
        Mean pooled, normalised map per cluster.
    shape_ : (H, W)
        The shape all maps were resized to.
    n_neighbors_ : int
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

    def features(self, maps) -> np.ndarray:
        """Pooled and normalised maps, (n, grid * grid): what the graph is built on."""
        maps = as_maps(maps)
        shape = getattr(self, "shape_", None) or common_shape(m.shape for m in maps)
        return normalize_pooled(pool_maps(maps, self.grid, shape), self.normalize)

    def fit(self, maps, y=None):
        """Cluster relevance maps.

        Parameters
        ----------
        maps : (n, H, W) array or list of 2-D arrays (shapes may differ), n >= 3
        y : ignored
        """
        self._check_params()
        maps = as_maps(maps)
        if len(maps) < 3:
            raise ValueError(f"SpRAy needs at least 3 relevance maps, got {len(maps)}")
        shape = common_shape(m.shape for m in maps)
        return self.fit_pooled(pool_maps(maps, self.grid, shape), shape)

    def fit_pooled(self, pooled, shape: tuple[int, int] | None = None):
        """Cluster maps already pooled with :func:`pool_maps` (n, grid, grid).

        Lets callers stream maps from disk (pool one at a time) instead of
        holding every full-size map in memory.
        """
        self._check_params()
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
        W = knn_affinity(X, self.n_neighbors_)
        n_values = int(min(self.n_eigenvalues, n))
        fixed = 0 if self.n_clusters == "eigengap" else int(self.n_clusters)
        values, vectors = laplacian_eigenvalues(W, min(max(n_values, fixed), n))
        values = values[:n_values]
        self.eigenvalues_ = values
        gap_k, gap = eigengap(values)
        if self.n_clusters == "eigengap":
            n_clusters = gap_k
        else:
            n_clusters = int(min(self.n_clusters, n))
            gaps = np.diff(values)
            gap = float(gaps[n_clusters - 1]) if n_clusters - 1 < len(gaps) else 0.0
        self.n_clusters_, self.eigengap_ = int(n_clusters), float(gap)
        if n_clusters == 1:
            labels = np.zeros(n, dtype=np.int64)
        elif n > _DENSE_EIGEN_MAX:
            labels = _kmeans_on_eigenvectors(W, vectors[:, :n_clusters], n_clusters, rng)
        else:
            sc = SpectralClustering(
                n_clusters=n_clusters,
                affinity="precomputed",
                assign_labels="cluster_qr",
                random_state=rng.randint(2**31 - 1),
            )
            with warnings.catch_warnings():  # disconnected graphs are what SpRAy looks for
                warnings.filterwarnings("ignore", message="Graph is not fully connected")
                labels = sc.fit_predict(W)
        self.labels_ = _relabel_by_size(labels)
        self.n_clusters_ = int(self.labels_.max()) + 1  # fewer than asked if a cluster came out empty
        self.cluster_maps_ = np.stack(
            [X[self.labels_ == c].mean(axis=0) for c in range(self.n_clusters_)]
        ).reshape(self.n_clusters_, self.grid, self.grid)
        self.embedding_ = self._tsne(X, rng) if self.embedding else None
        return self

    def _tsne(self, X: np.ndarray, rng) -> np.ndarray:
        n = len(X)
        perplexity = float(min(self.perplexity, max(1.0, (n - 1) / 3.0)))
        if n > 50 and X.shape[1] > 50:  # t-SNE's neighbour search on 50 PCA components
            X = PCA(50, random_state=rng.randint(2**31 - 1)).fit_transform(X)
        tsne = TSNE(
            2,
            perplexity=perplexity,
            early_exaggeration=self.early_exaggeration,
            init="pca",
            random_state=rng.randint(2**31 - 1),
        )
        return tsne.fit_transform(X)

    def fit_predict(self, maps, y=None, **kwargs) -> np.ndarray:
        """``fit(maps).labels_``."""
        return self.fit(maps).labels_


def _kmeans_on_eigenvectors(W, vectors: np.ndarray, k: int, rng) -> np.ndarray:
    """Spectral clustering's last step for large graphs, on eigenvectors already computed.

    As scikit-learn's ``spectral_embedding`` + k-means (Ng, Jordan and Weiss):
    rows of ``D^-1/2 U`` normalised to unit length, then ``KMeans(k)``.
    (``SpectralClustering`` would solve the eigenproblem again by shift-invert
    ARPACK, which is slow on large kNN graphs.)
    """
    degree = np.asarray(W.sum(axis=1)).ravel()
    emb = vectors / np.sqrt(degree)[:, None]
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-300)
    return KMeans(k, n_init=10, random_state=rng.randint(2**31 - 1)).fit_predict(emb)


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size (ties: first occurrence)."""
    labels = np.asarray(labels)
    values, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], first[i]))
    mapping = {values[i]: new for new, i in enumerate(order)}
    return np.array([mapping[v] for v in labels], dtype=np.int64)


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
