"""Word mappings over a k-means vocabulary: hard, rank and soft assignment.

Each descriptor's mapping is kept as a short sparse code, ``indices (N, s)``
and ``weights (N, s)`` with ``m_d(l) = weights[l, j]`` for ``d = indices[l, j]``
(``s = 1`` hard, ``s = n`` rank, ``s = V`` soft), from which the relevance pass
recomputes ``z_ld = m_d(l)^p / N_c`` without an N x V matrix. With the rule
:class:`~bowlrp.rules.Neon` the relevance of each descriptor's words goes on to the
descriptor's dimensions (:mod:`~bowlrp.encoding.neon`, docs/neon.md).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
from numba import njit
from sklearn.base import clone

from ..exceptions import RuleError
from ..rules import AbsZ, AlphaBeta, Epsilon, Neon, WinnerTakeAll, require
from .base import Encoder, coefficients_from_rule
from .neon import nearest_margin_beta, neon_relevance
from .pooling import pool_words
from .vocabulary import KMeansVocabulary

_CHUNK = 8192

#: the default NEON stiffness of each fitted vocabulary (``_WordEncoder.neon_beta``), keyed
#: weakly by the vocabulary and checked against the arrays it was computed from
_NEON_BETA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def nearest_words(data: np.ndarray, centers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` nearest words of each descriptor, nearest first (ties: lower index first).

    Squared distances ``||l||^2 - 2 l.b_d + ||b_d||^2`` (clipped at 0, as
    :func:`~bowlrp.encoding.vocabulary.squared_distances`) from one BLAS product per chunk,
    then a Numba pass keeps each row's ``n`` smallest by insertion (O(V) per row
    for small ``n``, instead of a partition and a sort).

    Returns
    -------
    indices : ndarray (N, n) int32
    distances : ndarray (N, n) float64, squared Euclidean
    """
    N = data.shape[0]
    n = min(int(n), centers.shape[0])
    idx = np.empty((N, n), dtype=np.int32)
    dist = np.empty((N, n), dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    cc = np.einsum("ij,ij->i", centers, centers)
    for start in range(0, N, _CHUNK):
        chunk = data[start : start + _CHUNK]
        xx = np.einsum("ij,ij->i", chunk, chunk)
        _smallest(
            2.0 * chunk @ centers.T, xx, cc, idx[start : start + len(chunk)], dist[start : start + len(chunk)]
        )
    return idx, dist


@njit(cache=True)
def _smallest(products, xx, cc, idx, dist):
    """Per row: the n smallest ``max(xx_i - products_ij + cc_j, 0)``, ascending, into idx/dist.

    The row's distances are formed first in a branch-free (vectorised) loop; the
    insertion pass then mostly compares against the current n-th smallest.
    """
    rows, V = products.shape
    n = idx.shape[1]
    row = np.empty(V)
    for i in range(rows):
        x = xx[i]
        for j in range(V):
            row[j] = max(x - products[i, j] + cc[j], 0.0)
        filled = 0
        worst = np.inf
        for j in range(V):
            d = row[j]
            if filled == n and d >= worst:
                continue
            pos = filled if filled < n else n - 1
            while pos > 0 and dist[i, pos - 1] > d:
                if pos < n:
                    dist[i, pos] = dist[i, pos - 1]
                    idx[i, pos] = idx[i, pos - 1]
                pos -= 1
            dist[i, pos] = d
            idx[i, pos] = j
            if filled < n:
                filled += 1
            worst = dist[i, n - 1]


class _WordEncoder(Encoder):
    """Shared parts of hard / rank / soft mappings with p-means pooling."""

    _vocabulary_type = KMeansVocabulary
    #: NEON competitors of the word in slot t: the words ranked after it (hard, rank)
    #: or the other words of the code (soft assignment)
    _neon_after: bool = True

    def _make_vocabulary(self):
        if isinstance(self.vocabulary, (int, np.integer)):
            return KMeansVocabulary(n_words=int(self.vocabulary), random_state=self.random_state)
        if not isinstance(self.vocabulary, KMeansVocabulary):
            raise TypeError("vocabulary must be an int (number of words) or a KMeansVocabulary")

        return clone(self.vocabulary)

    def _block_size(self) -> int:
        return self.vocabulary_.cluster_centers_.shape[0]

    def _pooling_exponent(self) -> tuple[float, bool]:
        if self.pooling == "max" or (isinstance(self.pooling, float) and math.isinf(self.pooling)):
            return 1.0, True
        p = float(self.pooling)
        if not p > 0:
            raise ValueError(f"pooling must be a positive exponent p or 'max', got {self.pooling!r}")
        return p, False

    def _check_params(self) -> None:
        self._pooling_exponent()

    def _codes(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def compute_codes(self, data: np.ndarray) -> dict:
        """Sparse word codes of raw descriptors (N, D): ``indices`` and ``weights`` (N, s).

        ``data`` keeps a reference to the raw descriptors (no copy), which the NEON
        relevance pass projects again.
        """
        indices, weights = self._codes(self.vocabulary_.project(data))
        return {"indices": indices, "weights": weights, "data": data}

    def pooled_sums(self, codes: dict, cell_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Pooled statistics of the given descriptors (cells divide by the image's ``N_c``)."""
        p, use_max = self._pooling_exponent()
        return pool_words(
            codes["indices"], codes["weights"], cell_ids, counts, self.block_size_, len(counts), p, use_max
        )

    @staticmethod
    def take_codes(codes: dict, rows) -> dict:
        return {"indices": codes["indices"][rows], "weights": codes["weights"][rows]}

    @staticmethod
    def put_codes(codes: dict, rows, new: dict, inplace: bool = False) -> dict:
        """Codes with rows replaced; ``inplace`` overwrites the arrays of ``codes``."""
        if inplace:
            out = codes
        else:
            out = {"indices": codes["indices"].copy(), "weights": codes["weights"].copy()}
        out["indices"][rows] = new["indices"]
        out["weights"][rows] = new["weights"]
        return out

    @property
    def additive_pooling(self) -> bool:
        return not self._pooling_exponent()[1]

    def support_counts(self, codes: dict, cell_ids: np.ndarray) -> np.ndarray:
        hit = codes["weights"] != 0
        dims = [
            (cell_ids[:, lev][:, None] * self.block_size_ + codes["indices"])[hit]
            for lev in range(cell_ids.shape[1])
        ]
        return np.bincount(np.concatenate(dims), minlength=self.n_features_out_)

    def clear_unsupported(self, pooled: np.ndarray, support: np.ndarray) -> np.ndarray:
        pooled[support == 0] = 0.0
        return pooled

    def finish_exponent(self) -> float | None:
        """``1/p`` of p-means pooling (1 for max pooling): pooled statistics are non-negative."""
        if (
            type(self).finish is not Encoder.finish
            or type(self)._finish_pooling is not _WordEncoder._finish_pooling
        ):
            return None
        p, use_max = self._pooling_exponent()
        return 1.0 if use_max or p == 1.0 else 1.0 / p

    def _finish_pooling(self, pooled: np.ndarray) -> np.ndarray:
        p, use_max = self._pooling_exponent()
        if use_max or p == 1.0:
            return pooled
        return pooled ** (1.0 / p)

    def default_rule(self):
        return WinnerTakeAll() if self._pooling_exponent()[1] else Epsilon(0.0)

    def offers_dimension_relevance(self, rule) -> bool:
        """Whether ``relevance(..., rule, per_dimension=True)`` works: with :class:`Neon` only."""
        return isinstance(rule, Neon)

    def _descriptor_relevance(self, R, trace, rule, per_dimension):
        neon = rule if isinstance(rule, Neon) else None
        if per_dimension and neon is None:
            raise RuleError(
                f"{type(self).__name__} has relevance per descriptor dimension only with the "
                "descriptor rule Neon() (SIFTBins needs a Fisher-vector channel otherwise); use Flat"
            )
        if neon is not None:
            rule = self.default_rule() if neon.rule is None else neon.rule
        codes = trace.codes
        n, s = codes["indices"].shape
        slots = np.zeros((n, s) if per_dimension else (0, 0))
        p, use_max = self._pooling_exponent()
        if use_max:
            require(rule, (WinnerTakeAll,), f"{type(self).__name__} with max pooling")
            out, uniform = _winner_take_all(
                codes["indices"], codes["weights"], trace.cell_ids, trace.pooled, self.block_size_, R, slots
            )
        else:
            require(rule, (Epsilon, AlphaBeta, AbsZ), f"{type(self).__name__} with p-means pooling")
            z = trace.pooled
            # word mappings are non-negative: z+_d = z_d and z-_d = 0
            a, b, uniform = coefficients_from_rule(R, z, z > 0, z, np.zeros_like(z), rule)
            out = _word_relevance(
                codes["indices"],
                codes["weights"],
                trace.cell_ids,
                trace.cell_counts,
                self.block_size_,
                p,
                a,
                b,
                uniform,
                slots,
            )
        if not per_dimension:
            return out
        return out, self._neon(codes, slots, np.full(n, uniform / n), neon)

    def neon_beta(self, rule: Neon, data: np.ndarray | None = None) -> float:
        """The soft-min stiffness NEON uses: ``rule.beta``, else the mapping's default.

        Hard and rank mappings: ``1 / E[f(x)]`` over the vocabulary's stored training
        descriptors (``reservoir_``; ``data``, in vocabulary space, when it holds none).
        """
        if rule.beta is not None:
            return float(rule.beta)
        vocabulary = self.vocabulary_
        reservoir = getattr(vocabulary, "reservoir_", None)
        if reservoir is None or len(reservoir) == 0:
            if data is None or len(data) == 0 or len(vocabulary.cluster_centers_) < 2:
                return 1.0
            return nearest_margin_beta(data, vocabulary.cluster_centers_)
        # once per fitted vocabulary: the arrays it was computed from are the key
        pca = getattr(vocabulary, "pca_", None)
        key = (vocabulary.cluster_centers_, reservoir, None if pca is None else pca.components_)
        cached = _NEON_BETA.get(vocabulary)
        if cached is not None and all(a is b for a, b in zip(cached[0], key)):
            return cached[1]
        beta = 1.0
        if len(vocabulary.cluster_centers_) >= 2:
            beta = nearest_margin_beta(vocabulary.project(reservoir), vocabulary.cluster_centers_)
        _NEON_BETA[vocabulary] = (key, beta)
        return beta

    def _neon(self, codes: dict, slots: np.ndarray, uniform: np.ndarray, rule: Neon) -> np.ndarray:
        """NEON relevance (N, D') in vocabulary space from the relevance of each code slot."""
        if "data" not in codes:
            raise RuleError(
                f"{type(self).__name__}: this trace keeps no descriptors (made before NEON); "
                "encode the image again"
            )
        vocabulary = self.vocabulary_
        x = None
        reservoir = getattr(vocabulary, "reservoir_", None)
        if rule.beta is None and (reservoir is None or len(reservoir) == 0):
            x = vocabulary.project(codes["data"])  # the default beta reads these descriptors
        # projected block by block inside (no (N, D') copy when the vocabulary has a PCA)
        return neon_relevance(
            codes["data"],
            vocabulary.cluster_centers_,
            codes["indices"],
            slots,
            uniform,
            self._neon_after,
            self.neon_beta(rule, x),
            project=vocabulary.project,
        )


_COMMON_PARAMS = """
    vocabulary : int or KMeansVocabulary
        Number of k-means words (fitted with ``random_state``) or a vocabulary
        estimator (cloned and fitted on the training descriptors).
    pooling : float or "max"
        p-means exponent: ``x_d = ((1/N) sum_l m_d(l)^p)^(1/p)``; 1 is mean
        pooling, "max" max pooling.
    pyramid : sequence of (rows, cols)
        Spatial pyramid levels; each cell owns a block of ``V`` dimensions.
    normalization : str or None
        Steps from ``l1``, ``l2``, ``power``, ``cell-l2`` joined by ``+``.
    power : float
        Exponent of the ``power`` step (signed power).
    random_state : int or None
"""


class HardAssignment(_WordEncoder):
    __doc__ = (
        """Hard vector quantisation: ``m_d(l) = 1`` for the nearest word, else 0.

    Parameters
    ----------"""
        + _COMMON_PARAMS
    )

    def __init__(
        self, vocabulary=128, pooling=1.0, pyramid=((1, 1),), normalization="l1", power=0.5, random_state=None
    ):
        self.vocabulary = vocabulary
        self.pooling = pooling
        self.pyramid = pyramid
        self.normalization = normalization
        self.power = power
        self.random_state = random_state

    def _codes(self, data):
        indices, _ = nearest_words(data, self.vocabulary_.cluster_centers_, 1)
        return indices, np.ones(indices.shape)


class RankMapping(_WordEncoder):
    __doc__ = (
        """Rank mapping: ``m_d(l) = base^(-rk_d(l))`` for the ``n_nearest`` nearest words.

    ``rk_d(l)`` is the rank (1 = nearest) of word ``d`` among the Euclidean
    distances from ``l`` to all words (polygons: base 2, n 4; VOC 2009: base 2.4, n 8).

    Parameters
    ----------
    base : float
    n_nearest : int"""
        + _COMMON_PARAMS
    )

    def __init__(
        self,
        vocabulary=128,
        base=2.0,
        n_nearest=4,
        pooling=1.0,
        pyramid=((1, 1),),
        normalization="l1",
        power=0.5,
        random_state=None,
    ):
        self.vocabulary = vocabulary
        self.base = base
        self.n_nearest = n_nearest
        self.pooling = pooling
        self.pyramid = pyramid
        self.normalization = normalization
        self.power = power
        self.random_state = random_state

    def _check_params(self):
        super()._check_params()
        if not 1 < self.base < math.inf:
            raise ValueError(f"base must be a finite number > 1, got {self.base}")
        if int(self.n_nearest) < 1:
            raise ValueError(f"n_nearest must be >= 1, got {self.n_nearest}")

    def _codes(self, data):
        n = min(int(self.n_nearest), self.vocabulary_.cluster_centers_.shape[0])
        indices, _ = nearest_words(data, self.vocabulary_.cluster_centers_, n)
        ranks = np.arange(1, n + 1, dtype=np.float64)
        weights = np.broadcast_to(float(self.base) ** (-ranks), indices.shape)
        return indices, np.ascontiguousarray(weights)


class SoftAssignment(_WordEncoder):
    __doc__ = (
        """Soft codebook: ``m_d(l) = exp(-beta ||l - b_d||^2) / sum_d' exp(-beta ||l - b_d'||^2)``.

    Parameters
    ----------
    beta : float
        Smoothing; larger is harder.
    n_nearest : int or None
        Keep only the nearest words (normalised over them: localised soft
        assignment); None keeps all ``V`` words, the formula of docs/math.md §1."""
        + _COMMON_PARAMS
    )

    def __init__(
        self,
        vocabulary=128,
        beta=1.0,
        n_nearest=None,
        pooling=1.0,
        pyramid=((1, 1),),
        normalization="l1",
        power=0.5,
        random_state=None,
    ):
        self.vocabulary = vocabulary
        self.beta = beta
        self.n_nearest = n_nearest
        self.pooling = pooling
        self.pyramid = pyramid
        self.normalization = normalization
        self.power = power
        self.random_state = random_state

    _neon_after = False

    def neon_beta(self, rule: Neon, data: np.ndarray | None = None) -> float:
        """``rule.beta``, else this assignment's ``beta``: then ``m_k = sigmoid(beta f_k(x))``."""
        return float(self.beta) if rule.beta is None else float(rule.beta)

    def _check_params(self):
        super()._check_params()
        if not 0 < self.beta < math.inf:
            raise ValueError(f"beta must be a finite number > 0, got {self.beta}")
        if self.n_nearest is not None and int(self.n_nearest) < 1:
            raise ValueError(f"n_nearest must be None or >= 1, got {self.n_nearest}")

    def _codes(self, data):
        V = self.vocabulary_.cluster_centers_.shape[0]
        n = V if self.n_nearest is None else min(int(self.n_nearest), V)
        indices, d2 = nearest_words(data, self.vocabulary_.cluster_centers_, n)
        logits = -float(self.beta) * (d2 - d2[:, :1])
        weights = np.exp(logits)
        weights /= weights.sum(axis=1, keepdims=True)
        return indices, weights


@njit(cache=True)
def _word_relevance(indices, weights, cell_ids, cell_counts, n_words, p, a, b, uniform, slots):
    """R_l = sum_{lev, j} z_lj (a or b)[cell*V + idx] + uniform / N.

    ``slots`` (N, s), or (0, 0) to skip: each code slot's part ``sum_lev z_lj (a or b)[...]``.
    """
    n, s = indices.shape
    keep = slots.shape[0] > 0
    out = np.full(n, uniform / n)
    for l in range(n):
        acc = 0.0
        for lev in range(cell_ids.shape[1]):
            c = cell_ids[l, lev]
            base = c * n_words
            inv = 1.0 / cell_counts[c]
            for j in range(s):
                m = weights[l, j]
                if m == 0.0:
                    continue
                z = (m if p == 1.0 else m**p) * inv
                d = base + indices[l, j]
                part = z * (a[d] if z > 0 else b[d])
                acc += part
                if keep:
                    slots[l, j] += part
        out[l] += acc
    return out


@njit(cache=True)
def _winner_take_all(indices, weights, cell_ids, pooled, n_words, R, slots):
    """Max pooling: R_d split among the descriptors attaining max_l m_d(l) (> 0).

    Returns (R_l (N,), the relevance of the unreached dimensions, spread as ``/ N`` in R_l);
    ``slots`` (N, s), or (0, 0) to skip, gets each code slot's part.
    """
    n, s = indices.shape
    keep = slots.shape[0] > 0
    ties = np.zeros(pooled.shape[0])
    for l in range(n):
        for lev in range(cell_ids.shape[1]):
            base = cell_ids[l, lev] * n_words
            for j in range(s):
                d = base + indices[l, j]
                if weights[l, j] > 0 and weights[l, j] == pooled[d]:
                    ties[d] += 1.0
    uniform = 0.0
    for d in range(pooled.shape[0]):
        if ties[d] == 0:
            uniform += R[d]
    out = np.full(n, uniform / n)
    for l in range(n):
        for lev in range(cell_ids.shape[1]):
            base = cell_ids[l, lev] * n_words
            for j in range(s):
                d = base + indices[l, j]
                if weights[l, j] > 0 and weights[l, j] == pooled[d]:
                    out[l] += R[d] / ties[d]
                    if keep:
                        slots[l, j] += R[d] / ties[d]
    return out, uniform
