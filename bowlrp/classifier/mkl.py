"""lp-norm multiple kernel learning on top of libsvm (Kloft et al., JMLR 2011).

Alternates an SVM solve on the combined kernel ``K = sum_u beta_u K_u`` with
the closed-form update of the kernel weights from the per-kernel norms

    ||w_u||^2 = beta_u^2 a^T K_u a,          a_i = alpha_i y_i
    beta_u    = ||w_u||^(2/(p+1)) / (sum_u' ||w_u'||^(2p/(p+1)))^(1/p)

so that ``||beta||_p = 1``. ``p = 1`` gives sparse weights, large ``p``
approaches uniform weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.svm import SVC


@dataclass
class BinarySolution:
    """One binary (one-vs-rest) problem solved: ``f(x) = b + sum_u beta_u sum_i a_i k_u(x_i, x)``."""

    dual: np.ndarray  # (n_train,) a_i = alpha_i y_i, zero off the support
    intercept: float
    kernel_weights: np.ndarray  # (U,)
    n_iter: int
    converged: bool


def uniform_weights(n_kernels: int) -> np.ndarray:
    return np.full(n_kernels, 1.0 / n_kernels)


def _solve_svm(K, y01, C, class_weight, tol):
    svc = SVC(kernel="precomputed", C=C, class_weight=class_weight, tol=tol)
    svc.fit(K, y01)
    dual = np.zeros(K.shape[0])
    dual[svc.support_] = svc.dual_coef_[0]
    return dual, float(svc.intercept_[0])


def fit_binary(
    grams: list[np.ndarray],
    y01: np.ndarray,
    C: float,
    norm,
    *,
    max_iter: int = 50,
    tol: float = 1e-3,
    class_weight=None,
    svm_tol: float = 1e-3,
) -> BinarySolution:
    """Solve one binary problem with ``len(grams)`` kernels.

    Parameters
    ----------
    grams : list of ndarray (n, n)
        One training Gram matrix per kernel.
    y01 : ndarray (n,)
        Labels in {0, 1}; ``f > 0`` means class 1.
    norm : "uniform" or float >= 1
        ``uniform``: ``beta_u = 1/U``, one SVM solve. Otherwise the MKL norm ``p``.
    tol : float
        Stop when the largest change of a kernel weight is below ``tol``.
    """
    U = len(grams)
    if U == 1 or norm == "uniform" or norm is None:
        beta = uniform_weights(U) if U > 1 else np.ones(1)
        K = sum(b * G for b, G in zip(beta, grams))
        dual, b = _solve_svm(K, y01, C, class_weight, svm_tol)
        return BinarySolution(dual, b, beta, 1, True)
    p = float(norm)
    if p < 1:
        raise ValueError(f"the MKL norm p must be >= 1 or 'uniform', got {norm}")
    beta = np.full(U, U ** (-1.0 / p))
    converged = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        K = sum(b * G for b, G in zip(beta, grams))
        dual, b = _solve_svm(K, y01, C, class_weight, svm_tol)
        w2 = np.array([beta[u] ** 2 * dual @ grams[u] @ dual for u in range(U)])
        w2 = np.maximum(w2, 0.0)
        if not np.any(w2 > 0):
            break
        w = np.sqrt(w2)
        new = w ** (2.0 / (p + 1)) / np.sum(w ** (2.0 * p / (p + 1))) ** (1.0 / p)
        change = np.max(np.abs(new - beta))
        beta = new
        if change < tol:
            converged = True
            break
    K = sum(b_ * G for b_, G in zip(beta, grams))
    dual, b = _solve_svm(K, y01, C, class_weight, svm_tol)
    return BinarySolution(dual, b, beta, n_iter, converged)
