"""Layer 4 kernels with vectorised Gram matrices and the terms LRP needs.

Every kernel states whether it is sum-decomposable,
``k(x, y) = sum_d k_d(x_d, y_d)`` (then :meth:`Kernel.dimension_terms` gives
``sum_i a_i k_d(s_{i,d}, x_d)`` exactly), or differentiable (then
:meth:`Kernel.gradient` gives ``d/dx sum_i a_i k(s_i, x)`` for the Taylor
expansion). Gram matrices of the memory-bound kernels (intersection, chi2)
are computed by parallel Numba loops over rows, the others by BLAS.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from .._utils.fitted import fitted_array, fitted_number, prefixed, refuse
from .._utils.mapped import all_finite, release_pages

_MIN, _CHI2, _CHI2DIST = 0, 1, 2


@njit(cache=True, inline="always")
def _term(a, b, op):
    """One dimension's term: min(a, b), 2ab/(a+b) or (a-b)^2/(a+b), with 0/0 := 0."""
    if op == _MIN:
        return a if a < b else b
    t = a + b
    if t == 0.0:
        return 0.0
    if op == _CHI2:
        return 2.0 * a * b / t
    return (a - b) * (a - b) / t


@njit(cache=True, inline="always")
def _accumulate_terms(acc, a, column, op):
    """``acc[j] += term(a, column[j])`` for every j, branch-free so the loop vectorises.

    The same arithmetic as :func:`_term` (for ``a + b = 0`` both ``a`` and ``b``
    are 0, so dividing by 1 instead gives the same 0), hence bit-identical terms.
    """
    if op == _MIN:
        for j in range(column.shape[0]):
            b = np.float64(column[j])
            acc[j] += a if a < b else b
    elif op == _CHI2:
        for j in range(column.shape[0]):
            b = np.float64(column[j])
            t = a + b
            acc[j] += 2.0 * a * b / (t if t != 0.0 else 1.0)
    else:
        for j in range(column.shape[0]):
            b = np.float64(column[j])
            t = a + b
            acc[j] += (a - b) * (a - b) / (t if t != 0.0 else 1.0)


@njit(cache=True, parallel=True)
def _gram_elementwise_block(X, YT, op):
    """``out[i, j] = sum_d term(X[i, d], YT[d, j])`` (n, m), rows in parallel.

    ``YT`` is a block of the second argument, transposed, so that the inner
    loop runs over its rows with the sum over d in its natural order: every
    entry is the same float64 sum, term by term, as the row-by-row loop.
    """
    n, m = X.shape[0], YT.shape[1]
    out = np.zeros((n, m))
    for i in prange(n):
        acc = np.zeros(m)
        for d in range(X.shape[1]):
            _accumulate_terms(acc, np.float64(X[i, d]), YT[d], op)
        out[i] = acc
    return out


@njit(cache=True)
def _gram_elementwise_block_serial(X, YT, op):
    """:func:`_gram_elementwise_block` in one thread: for small products, threads cost more."""
    n, m = X.shape[0], YT.shape[1]
    out = np.zeros((n, m))
    for i in range(n):
        acc = out[i]
        for d in range(X.shape[1]):
            _accumulate_terms(acc, np.float64(X[i, d]), YT[d], op)
    return out


_SERIAL_TERMS = 1 << 23  # below this many terms (~10 ms) thread start-up costs more than it saves
_COLUMN_BLOCK = 512  # rows of the second argument transposed at a time (bounded extra memory)


def _elementwise(X, Y, op):
    """Gram matrix ``K[i, j] = sum_d term(X_id, Y_jd)`` of an elementwise kernel, shape (n, m).

    ``Y`` is taken in blocks of ``_COLUMN_BLOCK`` rows, each transposed once
    (``V x 512`` extra values at most); small products run in one thread.
    """
    n, m = X.shape[0], Y.shape[0]
    out = np.empty((n, m))
    gram = _gram_elementwise_block_serial if n * m * X.shape[1] < _SERIAL_TERMS else _gram_elementwise_block
    for start in range(0, m, _COLUMN_BLOCK):
        YT = np.ascontiguousarray(Y[start : start + _COLUMN_BLOCK].T)
        out[:, start : start + _COLUMN_BLOCK] = gram(X, YT, op)
    return out


@njit(cache=True)
def _terms_elementwise(S, coef, x, op):
    """T_d = sum_i coef_i term(S_id, x_d)."""
    n_sv, V = S.shape
    out = np.zeros(V)
    for i in range(n_sv):
        if coef[i] == 0.0:
            continue
        for d in range(V):
            out[d] += coef[i] * _term(np.float64(S[i, d]), np.float64(x[d]), op)
    return out


@njit(cache=True)
def _chi2_exp_gradient(S, weights, x, sigma):
    """sum_i w_i sigma (4 s_i^2 / (s_i + x)^2 - 1), elementwise over d (0/0 := 0)."""
    n_sv, V = S.shape
    out = np.zeros(V)
    for i in range(n_sv):
        w = weights[i]
        if w == 0.0:
            continue
        for d in range(V):
            t = S[i, d] + x[d]
            g = -1.0
            if t != 0.0:
                g = 4.0 * S[i, d] * S[i, d] / (t * t) - 1.0
            out[d] += w * sigma * g
    return out


_BLOCK_BYTES = 1 << 27  # float64 working memory of one block of a blocked Gram matrix


@njit(cache=True)
def _chi2_exp_gradients(S, W, X, sigma):
    """Row p: sum_i W_pi sigma (4 s_i^2 / (s_i + x_p)^2 - 1), elementwise over d (0/0 := 0)."""
    n, V = X.shape
    out = np.zeros((n, V))
    for p in range(n):
        for i in range(S.shape[0]):
            w = W[p, i]
            if w == 0.0:
                continue
            ws = w * sigma
            for d in range(V):
                t = S[i, d] + X[p, d]
                t = t if t != 0.0 else 1.0  # t = 0 only where S[i, d] = 0: g = -1 either way
                out[p, d] += ws * (4.0 * S[i, d] * S[i, d] / (t * t) - 1.0)
    return out


def _as_2d(X, name="X"):
    """A 2-D float64 array, or float32 kept as is (no copy of large feature matrices)."""
    X = np.asarray(X)
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    X = np.ascontiguousarray(X, dtype=dtype)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
    if not all_finite(X, _BLOCK_BYTES):  # row blocks; a memory-mapped X's pages released after each
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def blocked_inner(X, Y, transform=None) -> np.ndarray:
    """``sum_d g(X_id) g(Y_jd)`` in float64, shape (n, m), for ``g`` = ``transform`` or identity.

    Float64 inputs without a transform go to one BLAS call. Otherwise (float32
    features, e.g. Fisher vectors of a whole data set) the feature columns are
    taken in blocks of at most ``_BLOCK_BYTES`` of float64 working memory:
    ``K += g(X[:, b]) g(Y[:, b])^T`` -- so memory never holds a float64 copy
    of the feature matrices; the pages of a memory-mapped ``X`` or ``Y`` are released
    after each block (:func:`bowlrp._utils.mapped.release_pages`), so neither does the
    resident set hold the file.
    """
    if transform is None and X.dtype == np.float64 and Y.dtype == np.float64:
        return X @ Y.T
    n, m, d = X.shape[0], Y.shape[0], X.shape[1]
    out = np.zeros((n, m))
    width = max(1, _BLOCK_BYTES // (8 * max(1, n + m)))
    for start in range(0, d, width):
        a = X[:, start : start + width].astype(np.float64)
        b = a if Y is X else Y[:, start : start + width].astype(np.float64)
        if transform is not None:
            a = transform(a)
            b = a if Y is X else transform(b)
        out += a @ b.T
        release_pages(X)
        release_pages(Y)
    return out


def _check_non_negative(X, kernel):
    if X.size and X.min() < 0:
        raise ValueError(
            f"the {kernel} kernel needs non-negative features (histograms); got a minimum of "
            f"{X.min():.3g} — use a linear or RBF kernel for signed features such as Fisher vectors"
        )


class Kernel(BaseEstimator):
    """Base class. Subclasses set ``decomposable`` / ``differentiable`` and implement ``_gram``."""

    decomposable = False
    differentiable = False
    #: the kernel is defined on histograms only (its features must be >= 0)
    needs_non_negative = False
    name = "kernel"

    def fit(self, X, y=None):
        """Fit data-dependent parameters (e.g. a default width); returns self."""
        self.fitted_ = True
        return self

    def check_fitted(self, where: str | None = None) -> None:
        """Refuse fitted attributes this kernel cannot compute with (one-line ModelFileError).

        Cheap (no Gram matrix); ``where`` prefixes the message (e.g. a model file's name).
        """
        with prefixed(where):
            self._check_fitted()

    def _check_fitted(self) -> None:
        if getattr(self, "fitted_", True) is not True:
            raise refuse(self, "fitted_", "must be True")

    def gram(self, X, Y=None) -> np.ndarray:
        """Gram matrix ``K[i, j] = k(X_i, Y_j)``, shape (n, m), float64."""
        X = _as_2d(X)
        Y = X if Y is None else _as_2d(Y, "Y")
        if X.shape[1] != Y.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features and Y {Y.shape[1]}")
        return self._gram(X, Y)

    def __call__(self, X, Y=None) -> np.ndarray:
        return self.gram(X, Y)

    def dimension_terms(self, S: np.ndarray, coef: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``T_d = sum_i coef_i k_d(S_{i,d}, x_d)`` with ``sum_d T_d = sum_i coef_i k(S_i, x)``.

        Only for sum-decomposable kernels; shape (V,).
        """
        raise TypeError(f"the {self.name} kernel is not sum-decomposable")

    def gradient(self, S: np.ndarray, coef: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``d/dx sum_i coef_i k(S_i, x)``, shape (V,). Only for differentiable kernels."""
        raise TypeError(f"the {self.name} kernel is not differentiable")

    def gradients(self, S: np.ndarray, coef: np.ndarray, X: np.ndarray) -> np.ndarray:
        """:meth:`gradient` at every row of ``X`` (n, V): shape (n, V)."""
        X = _as_2d(X)
        return np.vstack([self.gradient(S, coef, x) for x in X]) if len(X) else np.zeros(X.shape)


class Linear(Kernel):
    """``k(x, y) = sum_d x_d y_d``."""

    decomposable = True
    differentiable = True
    name = "linear"

    def _gram(self, X, Y):
        return blocked_inner(X, Y)

    def dimension_terms(self, S, coef, x):
        return (coef @ S) * x

    def gradient(self, S, coef, x):
        return coef @ S

    def gradients(self, S, coef, X):
        return np.broadcast_to(coef @ S, np.shape(X)).copy()


class _ElementwiseKernel(Kernel):
    """Sum-decomposable kernels of non-negative features computed by the Numba loops."""

    needs_non_negative = True

    decomposable = True
    _op = _MIN

    def _gram(self, X, Y):
        _check_non_negative(X, self.name)
        _check_non_negative(Y, self.name)
        return _elementwise(X, Y, self._op)

    def dimension_terms(self, S, coef, x):
        return _terms_elementwise(
            _as_2d(S), np.asarray(coef, np.float64), np.asarray(x, np.float64), self._op
        )


class HistogramIntersection(_ElementwiseKernel):
    """``k(x, y) = sum_d min(x_d, y_d)`` for non-negative features."""

    name = "histogram intersection"
    _op = _MIN


class AdditiveChi2(_ElementwiseKernel):
    """``k(x, y) = sum_d 2 x_d y_d / (x_d + y_d)`` (0/0 := 0), non-negative features."""

    name = "additive chi2"
    _op = _CHI2


class Hellinger(Kernel):
    """``k(x, y) = sum_d sqrt(x_d y_d)`` for non-negative features."""

    needs_non_negative = True

    decomposable = True
    name = "hellinger"

    def _gram(self, X, Y):
        _check_non_negative(X, self.name)
        _check_non_negative(Y, self.name)
        return blocked_inner(X, Y, np.sqrt)

    def dimension_terms(self, S, coef, x):
        return (coef @ np.sqrt(S)) * np.sqrt(x)


def _mean_pair_statistic(X, statistic, max_samples, random_state):
    rng = check_random_state(random_state)
    if len(X) > max_samples:
        X = X[rng.choice(len(X), max_samples, replace=False)]
    D = statistic(np.asarray(X, dtype=np.float64))
    n = len(X)
    if n < 2:
        return float(D.mean())
    return float(D[~np.eye(n, dtype=bool)].mean())


class _WidthKernel(Kernel):
    """Differentiable kernels with a width ``sigma`` that ``fit`` can set from the data."""

    differentiable = True

    def __init__(self, sigma="auto", max_samples: int = 1000, random_state=0):
        self.sigma = sigma
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X, y=None):
        X = self._validated(_as_2d(X))
        if self.sigma == "auto":
            mean = _mean_pair_statistic(X, self._pair_distances, self.max_samples, self.random_state)
            self.sigma_ = self._width_from_mean(mean) if mean > 0 else 1.0
        else:
            self.sigma_ = float(self.sigma)
            if not self.sigma_ > 0:
                raise ValueError(f"sigma must be > 0, got {self.sigma}")
        return self

    def _validated(self, X):
        return X

    def _check_fitted(self) -> None:
        super()._check_fitted()
        fitted_number(self, "sigma_", low=0.0, strict=True)


class ExponentialChi2(_WidthKernel):
    """``k(x, y) = exp(-sigma sum_d (x_d - y_d)^2 / (x_d + y_d))`` (0/0 := 0).

    Parameters
    ----------
    sigma : float or "auto"
        ``auto``: ``1 / mean chi2 distance`` over pairs of training samples
        (at most ``max_samples`` of them), the customary default.
    """

    needs_non_negative = True

    name = "exponential chi2"

    def _validated(self, X):
        _check_non_negative(X, self.name)
        return X

    @staticmethod
    def _pair_distances(A):
        return _elementwise(A, A, _CHI2DIST)

    @staticmethod
    def _width_from_mean(mean):
        return 1.0 / mean

    def _gram(self, X, Y):
        _check_non_negative(X, self.name)
        _check_non_negative(Y, self.name)
        return np.exp(-self.sigma_ * _elementwise(X, Y, _CHI2DIST))

    def gradient(self, S, coef, x):
        S = _as_2d(S)
        x = np.asarray(x, np.float64)
        k = self._gram(S, x[None, :])[:, 0]
        return _chi2_exp_gradient(S, np.asarray(coef, np.float64) * k, x, self.sigma_)

    def gradients(self, S, coef, X):
        S, X = _as_2d(S), _as_2d(X)
        W = np.asarray(coef, np.float64)[None, :] * self._gram(X, S)
        return _chi2_exp_gradients(S, W, X, self.sigma_)


class RBF(_WidthKernel):
    """``k(x, y) = exp(-||x - y||^2 / sigma^2)``.

    Parameters
    ----------
    sigma : float or "auto"
        ``auto``: ``sigma^2`` = mean squared distance between training samples.
    """

    name = "rbf"

    @staticmethod
    def _pair_distances(A):
        return _squared_euclidean_self(A)

    @staticmethod
    def _width_from_mean(mean):
        return float(np.sqrt(mean))

    def _gram(self, X, Y):
        d2 = _squared_norms(X)[:, None] - 2 * blocked_inner(X, Y) + _squared_norms(Y)[None, :]
        return np.exp(-np.maximum(d2, 0.0) / self.sigma_**2)

    def gradient(self, S, coef, x):
        S = _as_2d(S)
        x = np.asarray(x, np.float64)
        w = np.asarray(coef, np.float64) * self._gram(S, x[None, :])[:, 0]
        return 2.0 / self.sigma_**2 * (w @ S - w.sum() * x)

    def gradients(self, S, coef, X):
        S, X = _as_2d(S), _as_2d(X)
        W = np.asarray(coef, np.float64)[None, :] * self._gram(X, S)
        return 2.0 / self.sigma_**2 * (W @ S - W.sum(axis=1)[:, None] * X)


def _squared_norms(A) -> np.ndarray:
    if A.dtype == np.float64:
        return np.einsum("ij,ij->i", A, A)
    return np.array([float(np.dot(r.astype(np.float64), r.astype(np.float64))) for r in A])


def _squared_euclidean_self(A):
    sq = np.einsum("ij,ij->i", A, A)
    return np.maximum(sq[:, None] - 2 * A @ A.T + sq[None, :], 0.0)


KERNELS = {
    "linear": Linear,
    "hik": HistogramIntersection,
    "intersection": HistogramIntersection,
    "chi2": AdditiveChi2,
    "additive_chi2": AdditiveChi2,
    "exp_chi2": ExponentialChi2,
    "exponential_chi2": ExponentialChi2,
    "rbf": RBF,
    "hellinger": Hellinger,
}


def make_kernel(spec) -> Kernel:
    """A kernel object from a name (see ``KERNELS``) or a Kernel instance (returned as is)."""
    if isinstance(spec, Kernel):
        return spec
    if isinstance(spec, str) and spec.lower() in KERNELS:
        return KERNELS[spec.lower()]()
    raise ValueError(f"unknown kernel {spec!r}; choose one of {sorted(KERNELS)} or pass a Kernel")


__all__ = [
    "AdditiveChi2",
    "ExponentialChi2",
    "Hellinger",
    "HistogramIntersection",
    "KERNELS",
    "Kernel",
    "Linear",
    "RBF",
    "blocked_inner",
    "fitted_array",
    "fitted_number",
    "make_kernel",
]
