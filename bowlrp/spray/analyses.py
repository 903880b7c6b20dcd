"""SpRAy's analyses on one spectrum: several clusterings and embeddings, as CoRelAy computes them.

Given the kNN graph ``W`` and the ``m`` eigenvectors ``U`` (n, m) of
``L_sym = I - D^-1/2 W D^-1/2`` for its smallest eigenvalues, the
**spectral embedding** is ``E = D^-1/2 U`` (scikit-learn's
``spectral_embedding`` convention, ``D = diag(sum_j W_ij)``), and the
clusterings work on its rows normalised to unit length,
``Z_i = E_i / ||E_i||`` (Ng, Jordan and Weiss 2002):

- ``spectral-k<K>``: spectral clustering into ``K`` groups, the assignment of
  :class:`~bowlrp.spray.SpRAy`'s ``labels_`` (column-pivoted QR rotation of
  ``E[:, :K]``, Damle et al. 2019, scikit-learn's ``cluster_qr``, up to
  1,500 maps; k-means on ``Z[:, :K]`` above);
- ``kmeans-k<K>``: k-means with ``K`` centres on the first ``K`` columns of
  ``E`` (not normalised: the random-walk embedding of Shi and Malik);
- ``agglomerative-k<K>``: Ward linkage on the pooled maps themselves (first 50
  principal components), one tree cut into each ``K`` (SciPy's ``ward`` +
  ``fcluster``; a random subset of ``AGGLOMERATIVE_MAX`` maps above that size,
  see :func:`ward_clusterings`). Not on the spectral embedding: all ``m``
  columns of it mix the modes inside each group with those between groups,
  and Ward on them split planted groups (adjusted Rand 0.2-0.6 where the
  others reach 1.0);
- ``hdbscan``: scikit-learn's HDBSCAN on the rows of ``Z`` restricted to the
  eigengap's number of columns (at least 2: the columns that separate the
  groups; label -1: noise);
- ``dbscan``: DBSCAN on the same rows with ``eps`` the median distance of a point to its
  ``min_samples``-th neighbour unless given (label -1: noise).

Each clustering is renumbered by decreasing cluster size (noise stays -1) and
gets two numbers: its silhouette on the pooled maps (their first 50 principal
components; on at most 2,000 maps drawn with a
fixed seed; NaN with fewer than two clusters) and the eigengap
``lambda_{K+1} - lambda_K`` at its number of clusters ``K`` (NaN when
``K + 1 > m``): how strongly the spectrum itself supports ``K`` groups.

Embeddings for pictures: ``tsne`` (openTSNE's FFT-accelerated t-SNE when
``openTSNE`` is installed and there are at least ``OPENTSNE_MIN`` maps, else
scikit-learn's Barnes-Hut t-SNE), ``umap`` (``umap-learn``, optional).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.cluster.hierarchy
from sklearn.cluster import DBSCAN, HDBSCAN, KMeans
from sklearn.cluster._spectral import cluster_qr  # the QR assignment of SpectralClustering
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

__all__ = [
    "CLUSTERINGS", "EMBEDDINGS", "OPENTSNE_MIN", "AGGLOMERATIVE_MAX", "clustering_eigengap",
    "clustering_names", "cluster_family", "relabel_by_size", "row_normalized", "silhouette",
    "spectral_assignment", "spectral_embedding", "tsne_embedding", "umap_embedding", "have_umap",
    "have_opentsne", "resolve_tsne_backend", "ward_clusterings", "reduced", "OPENTSNE_FFT_MIN",
    "OPENTSNE_INTS_IN_INTERVAL",
]  # fmt: skip

CLUSTERINGS = ("spectral", "kmeans", "agglomerative", "hdbscan", "dbscan")
EMBEDDINGS = ("spectral", "tsne", "umap")
DENSE_EIGEN_MAX = 1500  # the same threshold as spectral.py's eigensolver: QR assignment below, k-means above
OPENTSNE_MIN = 2000  # "auto": openTSNE from this many maps on; below, scikit-learn's Barnes-Hut is quick
OPENTSNE_FFT_MIN = 5000  # openTSNE's FFT gradients from here; below, its own Barnes-Hut (less overhead)
OPENTSNE_INTS_IN_INTERVAL = (
    2  # FFT grid cells 2 embedding units wide (openTSNE's default 1): see tsne_embedding
)
AGGLOMERATIVE_MAX = 4000  # Ward's exact tree: n^2 / 2 distances; above, a tree on a random subset
SILHOUETTE_SAMPLE = 2000


def spectral_embedding(W, vectors: np.ndarray) -> np.ndarray:
    """``E = D^-1/2 U`` (n, m): eigenvectors of ``L_sym`` scaled by the inverse square root of the degree."""
    degree = np.asarray(W.sum(axis=1)).ravel()
    return vectors / np.sqrt(degree)[:, None]


def row_normalized(E: np.ndarray) -> np.ndarray:
    """Rows of ``E`` scaled to unit Euclidean length (rows of zeros stay zero)."""
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.maximum(norms, 1e-300)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size (ties: first occurrence); -1 (noise) stays -1."""
    labels = np.asarray(labels)
    out = np.full(len(labels), -1, dtype=np.int64)
    keep = labels >= 0
    if not keep.any():
        return out
    values, first, counts = np.unique(labels[keep], return_index=True, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], first[i]))
    lookup = {values[i]: new for new, i in enumerate(order)}
    out[keep] = [lookup[v] for v in labels[keep]]
    return out


def spectral_assignment(E: np.ndarray, k: int, seed: int, dense_max: int = DENSE_EIGEN_MAX) -> np.ndarray:
    """Spectral clustering of the first ``k`` columns of the spectral embedding ``E`` into ``k`` groups.

    Up to ``dense_max`` maps: scikit-learn's ``cluster_qr`` (what
    ``SpectralClustering(assign_labels="cluster_qr")`` does with the same
    eigenvectors; deterministic, invariant to the signs and rotations of the
    eigenvectors). Above: ``KMeans(k, n_init=10)`` on the unit-length rows
    (Ng, Jordan and Weiss), the assignment SpRAy used for large sets before.
    """
    if k == 1:
        return np.zeros(len(E), dtype=np.int64)
    if len(E) <= dense_max:
        return np.asarray(cluster_qr(E[:, :k]), dtype=np.int64)
    return KMeans(k, n_init=10, random_state=seed).fit_predict(row_normalized(E[:, :k]))


def clustering_names(clusterings, k_range: tuple[int, int], n: int) -> list[tuple[str, str, int | None]]:
    """``(name, family, k)`` of every clustering asked for, ``k`` capped at ``n - 1``."""
    lo, hi = int(k_range[0]), int(min(k_range[1], n - 1))
    out = []
    for family in clusterings:
        if family in ("spectral", "kmeans", "agglomerative"):
            out += [(f"{family}-k{k}", family, k) for k in range(lo, hi + 1)]
        else:
            out.append((family, family, None))
    return out


def cluster_family(
    family: str,
    E: np.ndarray,
    X: np.ndarray,
    ks: list[int],
    seed: int,
    min_samples: int,
    min_cluster_size: int | None = None,
    eps: float | None = None,
    dense_max: int = DENSE_EIGEN_MAX,
    n_dims: int | None = None,
) -> dict[int | None, np.ndarray]:
    """One family of clusterings of the spectral embedding ``E`` (n, m) or the pooled maps ``X`` (n, d).

    Returns ``{k: labels}``.

    ``ks`` lists the numbers of clusters for the k-families; ``hdbscan`` and
    ``dbscan`` ignore it, run on the unit-length rows of the first ``n_dims``
    columns of ``E`` (default: all; SpRAy gives the eigengap's ``k``, at least
    2) and return ``{None: labels}``. Labels are raw
    (not yet renumbered by size).
    """
    n = len(E)
    Z = row_normalized(E[:, : max(2, n_dims)] if n_dims else E)
    if family == "spectral":
        return {k: spectral_assignment(E, k, seed, dense_max) for k in ks}
    if family == "kmeans":
        return {k: KMeans(k, n_init=4, random_state=seed).fit_predict(E[:, :k]) for k in ks}
    if family == "agglomerative":
        return ward_clusterings(X, ks, seed)
    if family == "hdbscan":
        size = min_cluster_size or max(5, math.ceil(n / 100))
        size = int(min(max(2, size), n))
        labels = HDBSCAN(
            min_cluster_size=size, min_samples=min(min_samples, n - 1) or None, copy=True
        ).fit_predict(Z)
        return {None: labels}
    if family == "dbscan":
        k = int(min(max(1, min_samples), n - 1))
        if eps is None:
            dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z)
            eps = float(np.median(dist[:, k])) or 1e-12
        return {None: DBSCAN(eps=eps, min_samples=k).fit_predict(Z)}
    raise ValueError(f"unknown clustering {family!r}; choose from {CLUSTERINGS}")


def ward_clusterings(X: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
    """Ward's agglomerative clustering of the pooled maps ``X`` (n, d), its tree cut into each ``k``.

    On ``X`` itself (its first 50 principal components when ``d > 50``): one
    tree (SciPy's ``ward``) serves every ``k`` (``fcluster(maxclust=k)``).
    Ward's exact tree needs all ``n (n - 1) / 2`` distances (``O(n^2)`` time
    and memory), so above ``AGGLOMERATIVE_MAX`` maps the tree is built on a
    random subset of that many maps (``seed``) and every other map joins the
    cut's cluster with the nearest mean.
    """
    n = len(X)
    X = reduced(X, seed)
    rows = np.arange(n)
    if n > AGGLOMERATIVE_MAX:
        rows = np.sort(np.random.RandomState(seed).choice(n, AGGLOMERATIVE_MAX, replace=False))
    tree = scipy.cluster.hierarchy.ward(X[rows])
    out = {}
    for k in ks:
        sub = scipy.cluster.hierarchy.fcluster(tree, k, criterion="maxclust") - 1
        if len(rows) == n:
            out[k] = sub
            continue
        means = np.stack([X[rows[sub == c]].mean(axis=0) for c in range(sub.max() + 1)])
        d2 = (X * X).sum(1)[:, None] - 2 * X @ means.T + (means * means).sum(1)[None, :]
        labels = d2.argmin(axis=1)
        labels[rows] = sub
        out[k] = labels
    return out


def reduced(X: np.ndarray, seed: int) -> np.ndarray:
    """The first 50 principal components of ``X`` (n, d) when ``d > 50`` and ``n > 50``, else ``X``."""
    if X.shape[1] > 50 and len(X) > 50:
        return PCA(50, random_state=seed).fit_transform(X)
    return X


def silhouette(Z: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette of ``labels`` on ``Z`` (noise left out; at most ``SILHOUETTE_SAMPLE`` maps, seed 0).

    NaN when fewer than two clusters (or fewer than 3 non-noise maps) remain.
    """
    keep = labels >= 0
    found = np.unique(labels[keep])
    if len(found) < 2 or len(found) >= keep.sum():
        return float("nan")
    sample = SILHOUETTE_SAMPLE if keep.sum() > SILHOUETTE_SAMPLE else None
    return float(silhouette_score(Z[keep], labels[keep], sample_size=sample, random_state=0))


def clustering_eigengap(eigenvalues: np.ndarray, labels: np.ndarray) -> float:
    """``lambda_{K+1} - lambda_K`` for ``K`` the clusters found (noise left out); NaN when not computed."""
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if k < 1 or k >= len(eigenvalues):
        return float("nan")
    return float(eigenvalues[k] - eigenvalues[k - 1])


def have_opentsne() -> bool:
    """Whether the optional ``openTSNE`` can be imported."""
    try:
        import openTSNE  # noqa: F401  # optional extra bowlrp[spray]: FFT t-SNE
    except ImportError:
        return False
    return True


def have_umap() -> bool:
    """Whether the optional ``umap-learn`` can be imported."""
    try:
        import umap  # noqa: F401  # optional extra bowlrp[spray]: UMAP embeddings
    except ImportError:
        return False
    return True


def tsne_embedding(
    X: np.ndarray,
    perplexity: float,
    early_exaggeration: float,
    seeds: tuple[int, int],
    backend: str = "auto",
) -> tuple[np.ndarray, str]:
    """2-D t-SNE of the pooled maps ``X`` (n, d); returns ``(coordinates (n, 2), backend used)``.

    The neighbour search runs on 50 PCA components when ``n > 50`` and
    ``d > 50``. ``backend``: ``"sklearn"`` (Barnes-Hut, ``O(n log n)`` per
    iteration), ``"opentsne"`` (one thread; FFT-interpolated gradients,
    ``O(n)`` per iteration, from ``OPENTSNE_FFT_MIN`` maps on, its Barnes-Hut
    below, where the FFT grid's fixed cost dominates), or ``"auto"``: openTSNE when it is installed and
    ``n >= OPENTSNE_MIN``, else scikit-learn (so small sets give the same
    coordinates as before openTSNE was used). Perplexity is clipped to
    ``(n - 1) / 3``.

    openTSNE finds the input neighbours exactly (scikit-learn's brute force on
    the 50 components: deterministic, and at 10,000 maps quicker than Annoy),
    and its FFT interpolation grid has cells ``OPENTSNE_INTS_IN_INTERVAL = 2``
    embedding units wide instead of 1: a quarter of the grid points, so each
    gradient's FFTs cost a quarter. On the benchmark's 10,000 planted maps the
    t-SNE took 22.8 CPU s instead of 63.1 (one thread), with KL divergence
    3.911 against 3.802 with openTSNE's defaults (+2.9 %; BENCHMARKS.md, SpRAy);
    ``tests/test_spray_analyses.py::test_coarser_fft_grid_keeps_the_kl_divergence``
    holds it within 5 %.
    """
    n = len(X)
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    if n > 50 and X.shape[1] > 50:
        X = PCA(50, random_state=seeds[0]).fit_transform(X)
    backend = resolve_tsne_backend(backend, n)
    if backend == "opentsne":
        import openTSNE  # optional extra bowlrp[spray]; checked by have_opentsne

        tsne = openTSNE.TSNE(
            n_components=2,
            perplexity=perplexity,
            early_exaggeration=early_exaggeration,
            initialization="pca",
            negative_gradient_method="fft" if n >= OPENTSNE_FFT_MIN else "bh",
            ints_in_interval=OPENTSNE_INTS_IN_INTERVAL,
            neighbors="exact",
            n_jobs=1,
            random_state=seeds[1],
            verbose=False,
        )
        return np.asarray(tsne.fit(np.ascontiguousarray(X, dtype=np.float64))), backend
    tsne = TSNE(
        2, perplexity=perplexity, early_exaggeration=early_exaggeration, init="pca", random_state=seeds[1]
    )
    return tsne.fit_transform(X), backend


def resolve_tsne_backend(backend: str, n: int) -> str:
    """The t-SNE implementation ``backend`` stands for with ``n`` maps: ``"sklearn"`` or ``"opentsne"``.

    ``"auto"``: openTSNE when installed and ``n >= OPENTSNE_MIN``, else scikit-learn.
    """
    if backend == "auto":
        return "opentsne" if n >= OPENTSNE_MIN and have_opentsne() else "sklearn"
    if backend == "opentsne":
        if not have_opentsne():
            raise ValueError("tsne_backend='opentsne' needs openTSNE: pip install 'bowlrp[spray]'")
        return backend
    if backend != "sklearn":
        raise ValueError(f"tsne_backend must be 'auto', 'sklearn' or 'opentsne', got {backend!r}")
    return backend


def umap_embedding(X: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    """2-D UMAP of the pooled maps ``X`` (n, d) (``umap-learn``; ``n_neighbors`` at least 2)."""
    import umap  # optional extra bowlrp[spray]; SpRAy checks have_umap first

    k = int(min(max(2, n_neighbors), len(X) - 1))
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state": wanted
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        reducer = umap.UMAP(
            n_components=2, n_neighbors=k, random_state=seed, init="random" if len(X) < 10 else "spectral"
        )
        return np.asarray(reducer.fit_transform(X), dtype=np.float64)
