"""Layer 2 -> 3 support: visual vocabularies fitted on sampled training descriptors.

Both vocabularies accept either a list of :class:`~bowlrp.Descriptors` (one per
image; an even share of ``max_descriptors`` is drawn from each) or a plain
(N, D) array of descriptors, and can reduce the descriptors with PCA first
(the Fisher-vector baseline reduces SIFT from 128 to 80 dimensions).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from tqdm.auto import tqdm

from .._utils.fitted import fitted_array, fitted_number, prefixed, refuse
from ..descriptors.geometry import Descriptors
from .gmm import kmeans_plusplus_start, streamed_em

#: ``backend="sklearn"`` streams the EM (float32 chunks) above this many descriptor x component
#: pairs; below, scikit-learn's ``GaussianMixture`` holds ~6 (N, K) float64 arrays (<= 1.6 GB).
STREAM_ABOVE = 2**25

#: Tolerance on the sum of a loaded GMM's priors (they are renormalised to 1 at fit time).
PRIOR_SUM_TOLERANCE = 1e-6

#: Descriptors per block of the PCA backward pass (its temporaries stay in cache).
_PCA_BLOCK = 512
#: Descriptors per block of :meth:`_VocabularyMixin.project` (a 2 MB float64 block of 128-D rows).
_PROJECT_BLOCK = 2048


def sample_descriptors(
    X, max_descriptors: int | None, random_state=None, verbose: bool = False
) -> np.ndarray:
    """Stack descriptors for vocabulary fitting, at most ``max_descriptors`` rows.

    Parameters
    ----------
    X : list of Descriptors or ndarray (N, D)
    max_descriptors : int or None
        Cap on the number of rows; drawn evenly per image, then uniformly.

    Returns
    -------
    ndarray, shape (M, D), float64
    """
    rng = check_random_state(random_state)
    if isinstance(X, Descriptors):
        X = [X]
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], Descriptors):
        dims = {d.n_features for d in X}
        if len(dims) != 1:
            raise ValueError(f"descriptor sets have different dimensions {sorted(dims)}")
        per_image = None
        if max_descriptors is not None:
            per_image = max(1, int(np.ceil(max_descriptors / len(X))))
        chunks = []
        for d in tqdm(X, desc="sampling descriptors", disable=not verbose, leave=False):
            data = d.data
            if per_image is not None and len(data) > per_image:
                data = data[rng.choice(len(data), per_image, replace=False)]
            chunks.append(data)
        data = np.concatenate(chunks).astype(np.float64)
    else:
        data = check_array(X, dtype=np.float64)
    if max_descriptors is not None and len(data) > max_descriptors:
        data = data[rng.choice(len(data), max_descriptors, replace=False)]
    if not np.all(np.isfinite(data)):
        raise ValueError("descriptors contain NaN or infinite values")
    return data


class _VocabularyMixin:
    """Shared PCA handling of the vocabularies."""

    def _fit_projection(self, data: np.ndarray) -> np.ndarray:
        if self.pca_components is None:
            self.pca_ = None
            return data
        if self.pca_components > data.shape[1]:
            raise ValueError(
                f"pca_components={self.pca_components} exceeds the descriptor dimension {data.shape[1]}"
            )
        self.pca_ = PCA(n_components=self.pca_components, random_state=self.random_state)
        projected = self.pca_.fit_transform(data)
        # sklearn may leave components_ as a strided view of its SVD; a saved and loaded
        # model holds a contiguous copy, and BLAS rounds differently on the two layouts
        self.pca_.components_ = np.ascontiguousarray(self.pca_.components_)
        return projected

    @property
    def has_projection(self) -> bool:
        """Whether descriptors are projected by a fitted PCA before the words / Gaussians."""
        return getattr(self, "pca_", None) is not None

    def randomise_projection(self, rng: np.random.Generator) -> bool:
        """Replace the PCA's components by a Haar-random orthonormal frame of the same shape.

        For the model-randomisation check (:mod:`bowlrp.evaluation.randomisation`), on a
        *copy* of a fitted vocabulary: the PCA's mean is kept, so the projection stays a
        valid one of the same shape, ``Q^T`` with ``Q`` (D, k) from the QR decomposition
        of a standard normal matrix, columns signed so that ``diag(R) > 0``.
        Returns False (nothing changed) when the vocabulary has no PCA.
        """
        if not self.has_projection:
            return False
        k, dim = self.pca_.components_.shape
        q, r = np.linalg.qr(rng.standard_normal((dim, k)))
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]
        self.pca_.components_ = np.ascontiguousarray(q.T)
        return True

    def _check_projection(self) -> int:
        """Check ``n_features_in_`` and the PCA (ModelFileError); return the vocabulary's dimension."""
        n_in = fitted_number(self, "n_features_in_", integer=True, low=1)
        pca = getattr(self, "pca_", None)
        if pca is None:
            if self.pca_components is not None:
                raise refuse(self, "pca_", f"is None but pca_components is {self.pca_components!r}")
            return n_in
        if not isinstance(pca, PCA):
            raise refuse(self, "pca_", f"must be a PCA or None, got {type(pca).__name__}")
        if self.pca_components is None:
            raise refuse(self, "pca_", "is set but pca_components is None")
        k = fitted_number(self, "pca_components", integer=True, low=1, high=n_in)
        fitted_array(self, "pca_.mean_", shape=(n_in,), value=getattr(pca, "mean_", None))
        fitted_array(self, "pca_.components_", shape=(k, n_in), value=getattr(pca, "components_", None))
        return k

    def project(self, data: np.ndarray) -> np.ndarray:
        """Descriptors in vocabulary space (after PCA if any), float64, shape (N, D').

        ``y = (l - m) W^T`` with the PCA's mean ``m`` (D,) and components ``W`` (D', D);
        the centring reads float32 descriptors directly (no float64 copy of ``l`` first),
        with the same float64 values as ``l.astype(float64) - m``, in row blocks of
        ``_PROJECT_BLOCK`` descriptors.
        """
        check_is_fitted(self)
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != self.n_features_in_:
            raise ValueError(f"descriptors must have {self.n_features_in_} columns, got shape {data.shape}")
        if self.pca_ is None:
            return np.asarray(data, dtype=np.float64)
        mean, W = self.pca_.mean_, self.pca_.components_
        out = np.empty((data.shape[0], W.shape[0]))
        # row blocks: the float64 centred rows stay in cache and no (N, D) float64 copy
        # is allocated (a fresh large array is a fresh mapping whose pages fault in)
        centred = np.empty((min(_PROJECT_BLOCK, data.shape[0]), data.shape[1]))
        for start in range(0, data.shape[0], _PROJECT_BLOCK):
            rows = slice(start, min(start + _PROJECT_BLOCK, data.shape[0]))
            c = centred[: rows.stop - start]
            np.subtract(data[rows], mean, out=c, dtype=np.float64)
            np.matmul(c, W.T, out=out[rows])
        return out

    def relevance(
        self,
        R: np.ndarray,
        descriptors: Descriptors,
        epsilon: float = 0.0,
        projected: np.ndarray | None = None,
    ) -> np.ndarray:
        """Relevance per original descriptor dimension from the relevance per PCA dimension.

        The backward pass of the PCA this vocabulary owns (identity without one). With
        centred inputs ``l - m`` and ``y = W (l - m)``:
        ``R_j = sum_i W_ij (l_j - m_j) / (y_i + eps sign y_i) R_i``, exact for eps = 0
        (relevance of a ``y_i = 0`` row, which no input explains, is spread evenly).

        Parameters
        ----------
        R : ndarray (N, P)
            Relevance per projected dimension of each descriptor.
        descriptors : Descriptors (N, D)
            The descriptors the projection was computed from.
        epsilon : float
        projected : ndarray (N, P) or None
            ``y`` as the forward pass computed it (:meth:`project` of ``descriptors.data``,
            e.g. a Fisher-vector trace's ``codes["data"]``), which saves one of the two
            products; None: computed here.

        Returns
        -------
        ndarray (N, D); rows sum to those of ``R`` for ``epsilon = 0``.

        Notes
        -----
        Row blocks of ``_PCA_BLOCK`` descriptors: two (rows, D) x (D, P) products per block
        (one with ``projected``) and no (N, D) array besides the output.
        """
        pca = getattr(self, "pca_", None)
        if pca is None:
            return R
        R = np.asarray(R, dtype=np.float64)
        data = descriptors.data
        W = pca.components_
        N, D = data.shape
        out = np.empty((N, D))
        # row blocks of _PCA_BLOCK descriptors: the centred rows, y and the ratios stay in
        # cache and nothing of size (N, D) is built but the output (plain-loop reference:
        # tests/test_fast_relevance_paths.py)
        block = min(N, _PCA_BLOCK)
        centred = np.empty((block, D))
        for start in range(0, N, _PCA_BLOCK):
            rows = slice(start, min(start + _PCA_BLOCK, N))
            c = centred[: rows.stop - start]
            np.subtract(data[rows], pca.mean_, out=c)
            denom = c @ W.T if projected is None else np.array(projected[rows], dtype=np.float64)
            if epsilon != 0.0:
                denom += epsilon * np.where(denom >= 0, 1.0, -1.0)
            R_rows = R[rows]
            ratio = np.divide(R_rows, denom, out=np.zeros_like(denom), where=denom != 0)
            o = out[rows]
            np.matmul(ratio, W, out=o)
            o *= c
            dead = denom == 0
            if dead.any():
                o += (R_rows * dead).sum(axis=1, keepdims=True) / D
        return out

    def _prepare(self, X, fitting: bool):
        if isinstance(X, (list, tuple, Descriptors)) and (
            isinstance(X, Descriptors) or (X and isinstance(X[0], Descriptors))
        ):
            data = sample_descriptors(X, self.max_descriptors, self.random_state, self.verbose)
            if fitting:
                self.n_features_in_ = data.shape[1]
            return data
        if fitting:
            data = validate_data(self, X, dtype=np.float64, reset=True)
            rng = check_random_state(self.random_state)
            if self.max_descriptors is not None and len(data) > self.max_descriptors:
                data = data[rng.choice(len(data), self.max_descriptors, replace=False)]
            return data
        return validate_data(self, X, dtype=np.float64, reset=False)


class KMeansVocabulary(ClusterMixin, TransformerMixin, _VocabularyMixin, BaseEstimator):
    """k-means visual words (scikit-learn), optionally after PCA.

    Parameters
    ----------
    n_words : int
        Number of visual words ``V``.
    pca_components : int or None
        Reduce descriptors with PCA first.
    max_descriptors : int or None
        Cap on the descriptors used for fitting (default 100 000).
    algorithm : {"minibatch", "full"}
        ``MiniBatchKMeans`` (fast, default) or ``KMeans``.
    reservoir_size : int
        Training descriptors kept with the model (raw, float32), from which
        descriptor-replacement perturbation draws (``sample``).
    random_state : int, RandomState or None
    verbose : bool
        Progress while sampling.

    Attributes
    ----------
    cluster_centers_ : ndarray (n_words, D')
    pca_ : PCA or None
    reservoir_ : ndarray (<= reservoir_size, D) float32
    """

    def __init__(
        self,
        n_words: int = 128,
        pca_components: int | None = None,
        max_descriptors: int | None = 100_000,
        algorithm: str = "minibatch",
        reservoir_size: int = 2000,
        random_state=None,
        verbose: bool = False,
    ):
        self.n_words = n_words
        self.pca_components = pca_components
        self.max_descriptors = max_descriptors
        self.algorithm = algorithm
        self.reservoir_size = reservoir_size
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Fit the words on a list of Descriptors or an (N, D) array."""
        if self.algorithm not in ("minibatch", "full"):
            raise ValueError(f"algorithm must be 'minibatch' or 'full', got {self.algorithm!r}")
        data = self._prepare(X, fitting=True)
        if len(data) < self.n_words:
            raise ValueError(f"n_words={self.n_words} exceeds n_samples={len(data)} (descriptors available)")
        rng = check_random_state(self.random_state)
        keep = rng.choice(len(data), min(len(data), int(self.reservoir_size)), replace=False)
        self.reservoir_ = data[np.sort(keep)].astype(np.float32)
        data = self._fit_projection(data)
        if self.algorithm == "minibatch":
            km = MiniBatchKMeans(
                n_clusters=self.n_words, random_state=self.random_state, n_init=3, batch_size=4096
            )
        else:
            km = KMeans(n_clusters=self.n_words, random_state=self.random_state, n_init=1)
        km.fit(data)
        self.cluster_centers_ = km.cluster_centers_.astype(np.float64)
        self.labels_ = km.labels_
        self.inertia_ = float(km.inertia_)
        return self

    def check_fitted(self, where: str | None = None) -> None:
        """Refuse fitted attributes the encoders cannot use safely (one-line ModelFileError).

        ``cluster_centers_`` finite (n_words, D') with ``D'`` the PCA's output or
        ``n_features_in_``; the PCA's ``mean_`` (D,) and ``components_`` (D', D) finite;
        the reservoir (m, D) finite; ``labels_`` word indices. An unfitted vocabulary
        passes. Cost O(size of the attributes); ``where`` prefixes the message.
        """
        if "cluster_centers_" not in self.__dict__:
            return
        with prefixed(where):
            dim = self._check_projection()
            n_words = fitted_number(self, "n_words", integer=True, low=1)
            fitted_array(self, "cluster_centers_", shape=(n_words, dim))
            if "reservoir_" in self.__dict__:
                fitted_array(self, "reservoir_", shape=(None, self.n_features_in_))
            if "labels_" in self.__dict__:
                labels = fitted_array(self, "labels_", kinds="iu", shape=(None,), low=0)
                if labels.size and labels.max() >= n_words:
                    raise refuse(self, "labels_", f"holds word {labels.max()} of {n_words}")

    def transform(self, X) -> np.ndarray:
        """Squared Euclidean distances of (N, D) descriptors to the words, shape (N, V)."""
        data = self.project(self._prepare(X, fitting=False))
        return squared_distances(data, self.cluster_centers_)

    def predict(self, X) -> np.ndarray:
        """Index of the nearest word of each descriptor, shape (N,)."""
        return np.argmin(self.transform(X), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` raw descriptors drawn (with replacement) from the training reservoir."""
        check_is_fitted(self, "reservoir_")
        return self.reservoir_[rng.integers(0, len(self.reservoir_), n)]


class GMMVocabulary(TransformerMixin, _VocabularyMixin, BaseEstimator):
    """Diagonal Gaussian mixture for Fisher vectors, optionally after PCA.

    Parameters
    ----------
    n_components : int
        Number of Gaussians ``K``.
    pca_components : int or None
    max_descriptors : int or None
    covariance_floor : float
        Added to every variance (scikit-learn's ``reg_covar``).
    backend : {"sklearn", "streamed", "vlfeat"}
        ``"sklearn"`` (default, seeded): scikit-learn's EM from its k-means++ start;
        ``GaussianMixture`` itself when ``N * K <= STREAM_ABOVE``, else the same
        algorithm streamed over float32 chunks (:func:`~bowlrp.encoding.gmm.streamed_em`,
        float64 sums; never an (N, K) array: 1M x 80 descriptors, K = 256 fit in
        < 2 GB instead of ~13 GB). ``"streamed"``: always streamed. ``"vlfeat"``:
        VLFeat's EM (needs the [vlfeat] extra; VLFeat's ``gmm`` takes no seed).
    max_iter : int
    random_state, verbose

    Attributes
    ----------
    means_ : ndarray (K, D')
    covariances_ : ndarray (K, D') diagonal variances
    weights_ : ndarray (K,) priors
    pca_ : PCA or None
    """

    def __init__(
        self,
        n_components: int = 64,
        pca_components: int | None = None,
        max_descriptors: int | None = 100_000,
        covariance_floor: float = 1e-6,
        backend: str = "sklearn",
        max_iter: int = 100,
        random_state=None,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.pca_components = pca_components
        self.max_descriptors = max_descriptors
        self.covariance_floor = covariance_floor
        self.backend = backend
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Fit the mixture on a list of Descriptors or an (N, D) array."""
        if self.backend not in ("sklearn", "streamed", "vlfeat"):
            raise ValueError(f"backend must be 'sklearn', 'streamed' or 'vlfeat', got {self.backend!r}")
        data = self._prepare(X, fitting=True)
        if len(data) < self.n_components:
            raise ValueError(
                f"n_components={self.n_components} exceeds n_samples={len(data)} (descriptors available)"
            )
        data = self._fit_projection(data)
        streamed = self.backend == "streamed" or (
            self.backend == "sklearn" and len(data) * self.n_components > STREAM_ABOVE
        )
        if self.backend == "vlfeat":
            from cyvlfeat.gmm import gmm  # optional: the [vlfeat] extra

            means, covars, priors, _, _ = gmm(
                data.astype(np.float64), self.n_components, max_num_iterations=self.max_iter
            )
            self.means_ = np.asarray(means, dtype=np.float64)
            self.covariances_ = np.asarray(covars, dtype=np.float64) + self.covariance_floor
            self.weights_ = np.asarray(priors, dtype=np.float64)
            self.n_iter_ = self.max_iter
        elif streamed:
            data = data.astype(np.float32)  # the float64 projection is released here
            start = kmeans_plusplus_start(data, self.n_components, self.covariance_floor, self.random_state)
            fit = streamed_em(
                data, *start, reg_covar=self.covariance_floor, max_iter=self.max_iter, verbose=self.verbose
            )
            if not fit.converged:
                warnings.warn(
                    f"GMM EM did not converge in {self.max_iter} iterations; raise max_iter",
                    ConvergenceWarning,
                    stacklevel=2,
                )
            self.means_, self.covariances_, self.weights_ = fit.means, fit.covariances, fit.weights
            self.n_iter_ = fit.n_iter
        else:
            gm = GaussianMixture(
                n_components=self.n_components,
                covariance_type="diag",
                reg_covar=self.covariance_floor,
                max_iter=self.max_iter,
                random_state=self.random_state,
                init_params="k-means++",
            )
            gm.fit(data)
            self.means_ = gm.means_.astype(np.float64)
            self.covariances_ = gm.covariances_.astype(np.float64)
            self.weights_ = gm.weights_.astype(np.float64)
            self.n_iter_ = gm.n_iter_
        self.weights_ = self.weights_ / self.weights_.sum()
        return self

    def check_fitted(self, where: str | None = None) -> None:
        """Refuse fitted attributes the Fisher encoder cannot use safely (one-line ModelFileError).

        ``means_`` finite (K, D'), ``covariances_`` finite and > 0 (K, D'), ``weights_``
        (priors) finite, > 0 and summing to 1 within :data:`PRIOR_SUM_TOLERANCE`, with
        ``K = n_components`` and ``D'`` the PCA's output or ``n_features_in_``; the PCA as
        for :class:`KMeansVocabulary`. An unfitted vocabulary passes. Cost O(size of the
        attributes); ``where`` prefixes the message.
        """
        if "means_" not in self.__dict__:
            return
        with prefixed(where):
            dim = self._check_projection()
            k = fitted_number(self, "n_components", integer=True, low=1)
            fitted_array(self, "means_", shape=(k, dim))
            fitted_array(self, "covariances_", shape=(k, dim), low=0.0, strict=True)
            priors = fitted_array(self, "weights_", shape=(k,), low=0.0, strict=True)
            total = float(priors.sum())
            if abs(total - 1.0) > PRIOR_SUM_TOLERANCE:
                raise refuse(self, "weights_", f"sum to {total!r}, priors must sum to 1")

    def transform(self, X) -> np.ndarray:
        """Posterior probabilities of each component, shape (N, K)."""
        data = self.project(self._prepare(X, fitting=False))
        return posteriors(data, self.means_, self.covariances_, self.weights_)

    def predict(self, X) -> np.ndarray:
        return np.argmax(self.transform(X), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` descriptors drawn from the mixture, mapped back to raw descriptor space.

        Samples are drawn in the vocabulary space (after PCA) and mapped back with
        the PCA's inverse, so projecting them again returns the drawn samples.
        """
        check_is_fitted(self, "means_")
        k = rng.choice(len(self.weights_), size=n, p=self.weights_)
        z = self.means_[k] + rng.standard_normal((n, self.means_.shape[1])) * np.sqrt(self.covariances_[k])
        if self.pca_ is not None:
            z = z @ self.pca_.components_ + self.pca_.mean_
        return z.astype(np.float32)


def squared_distances(data: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``||l - b_d||^2`` for all descriptors and words, shape (N, V), clipped at 0."""
    d2 = (
        np.einsum("ij,ij->i", data, data)[:, None]
        - 2.0 * data @ centers.T
        + np.einsum("ij,ij->i", centers, centers)[None, :]
    )
    return np.maximum(d2, 0.0)


def log_gaussians(data, means, variances, weights) -> np.ndarray:
    """``log pi_k + log N(l; mu_k, diag sigma_k^2)``, shape (N, K), via BLAS."""
    inv = 1.0 / variances
    const = (
        np.log(weights)
        - 0.5 * (data.shape[1] * np.log(2 * np.pi) + np.log(variances).sum(axis=1))
        - 0.5 * np.einsum("kd,kd->k", means * means, inv)
    )
    return const[None, :] - 0.5 * (data * data) @ inv.T + data @ (means * inv).T


def posteriors(data, means, variances, weights) -> np.ndarray:
    """GMM posteriors ``gamma_k(l)``, shape (N, K), rows summing to one."""
    log_p = log_gaussians(data, means, variances, weights)
    log_p -= log_p.max(axis=1, keepdims=True)
    p = np.exp(log_p)
    p /= p.sum(axis=1, keepdims=True)
    return p
