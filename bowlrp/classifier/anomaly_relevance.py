"""Step 1 of the relevance pass for the anomaly detectors of :mod:`.anomaly` (``docs/anomaly.md``).

The explained function is ``g = sign * f`` with ``sign = -1`` for the anomaly
score (the default) and ``+1`` for the normality ``f``.

One-class SVM: ``f(x) = sum_i alpha_i k(s_i, x) - rho`` has the form of an SVM
expansion, so :func:`bowlrp.classifier.relevance.decompose` gives thesis eq. A.9,
``R_d = sign * beta_u sum_i alpha_i k_d(s_{i,d}, x_d)``, ``R_b = -sign * rho``.

SVDD: ``-f(x) = a(x) - r^2`` (eq. A.12) splits exactly for sum-decomposable kernels (eq. A.13)

    A_d(x) = beta_u [ k_d(x_d, x_d) - 2 sum_i alpha_i k_d(s_{i,d}, x_d)
                      + sum_ij alpha_i alpha_j k_d(s_{i,d}, s_{j,d}) ]
    R_d = -sign * A_d(x),      R_b = sign * r^2,

a per-dimension squared distance to the centre (``A_d >= 0`` for kernels whose
``k_d`` are positive definite, such as min, 2ab/(a+b), sqrt(ab), ab). With
``Taylor`` the expansion point is a root ``x~`` of ``g`` (on the sphere) and
``R_d = -sign (A_d(x) - A_d(x~))`` for decomposable channels,
``R_d = -sign (x - x~)_d da/dx_d(x~)`` for differentiable ones, which must have a
constant ``k(x, x)`` (RBF, exponential chi2) so that ``da/dx = -2 sum_i alpha_i dk(s_i, x)/dx``.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import RuleError
from ..rules import Decomposition, Taylor, require
from .relevance import DimensionRelevance, decompose, default_rule, find_root, root_candidates, taylor


def _self_terms(kernel, x: np.ndarray) -> np.ndarray:
    """``k_d(x_d, x_d)`` (V,) of a sum-decomposable kernel."""
    return kernel.dimension_terms(x[None, :], np.ones(1), x)


def center_terms(kernel, S: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``c_d = sum_ij alpha_i alpha_j k_d(S_{i,d}, S_{j,d})`` (V,) of a sum-decomposable kernel.

    ``sum_d c_d = alpha^T K alpha``; one pass of ``dimension_terms`` per support vector.
    """
    out = np.zeros(S.shape[1])
    for j in np.flatnonzero(alpha):
        out += alpha[j] * kernel.dimension_terms(S, alpha, S[j])
    return out


def svdd_center_terms(det) -> list:
    """Per channel: the centre's terms ``beta_u c_d`` (decomposable kernels) or None."""
    alpha = det.dual_coef_[0]
    out = []
    for u, (kernel, s) in enumerate(zip(det.kernels_, det.channel_slices_)):
        if kernel.decomposable:
            out.append(det.kernel_weights_[0, u] * center_terms(kernel, det.support_vectors_[:, s], alpha))
        else:
            out.append(None)
    return out


def svdd_dimension_terms(det, u: int, x: np.ndarray, with_center: bool = True) -> np.ndarray:
    """``A_d(x)`` of eq. A.13 for channel ``u`` (sum-decomposable kernel), shape (V_u,)."""
    s = det.channel_slices_[u]
    kernel = det.kernels_[u]
    xs = x[s]
    A = _self_terms(kernel, xs) - 2.0 * kernel.dimension_terms(
        det.support_vectors_[:, s], det.dual_coef_[0], xs
    )
    A = det.kernel_weights_[0, u] * A
    if with_center:
        A = A + det.center_dimension_terms_[u]
    return A


def _spread(R: np.ndarray, bias: float, rule) -> tuple[np.ndarray, float]:
    if rule.bias == "spread":
        return R + bias / R.size, 0.0
    return R, bias


def svdd_decompose(det, x: np.ndarray, sign: float, rule: Decomposition) -> DimensionRelevance:
    """Exact (eq. A.13): ``R_d = -sign A_d(x)``, ``R_b = sign r^2``."""
    bad = [k.name for k in det.kernels_ if not k.decomposable]
    if bad:
        raise RuleError(
            f"Decomposition needs sum-decomposable kernels; {', '.join(bad)} is not: use Taylor()"
        )
    R = -sign * np.concatenate([svdd_dimension_terms(det, u, x) for u in range(len(det.kernels_))])
    bias = sign * det.radius2_
    score = float(R.sum() + bias)
    R, bias = _spread(R, bias, rule)
    return DimensionRelevance(score=score, relevance=R, bias=bias, residual=0.0)


def svdd_taylor(det, x: np.ndarray, sign: float, rule: Taylor) -> DimensionRelevance:
    """``R_d = g`` split at a root ``x~`` of ``g = sign f`` (exact differences where decomposable)."""

    def g(points):
        return sign * det.decision_function(points)

    candidates, g_candidates = root_candidates(det, x, 0, sign, rule)
    root, distance, root_value = find_root(g, x, candidates, rule, g_candidates)
    alpha = det.dual_coef_[0]
    parts = []
    for u, kernel in enumerate(det.kernels_):
        s = det.channel_slices_[u]
        if kernel.decomposable:
            dA = svdd_dimension_terms(det, u, x, False) - svdd_dimension_terms(det, u, root, False)
            parts.append(-sign * dA)
            continue
        if not kernel.differentiable:  # pragma: no cover - every shipped kernel is one or the other
            raise RuleError(f"Taylor needs differentiable kernels; {kernel.name} is not")
        diag = kernel.gram(np.vstack([x[s], root[s]]))
        if not np.isclose(diag[0, 0], diag[1, 1], rtol=1e-12, atol=1e-12):
            raise RuleError(
                f"Taylor for SVDD needs a constant k(x, x); the {kernel.name} kernel "
                "has none: use a decomposable kernel with Decomposition()"
            )
        grad_a = (
            -2.0 * det.kernel_weights_[0, u] * kernel.gradient(det.support_vectors_[:, s], alpha, root[s])
        )
        parts.append(-sign * (x[s] - root[s]) * grad_a)
    R = np.concatenate(parts)
    score = float(g(x[None, :])[0])
    bias = root_value
    residual = score - float(R.sum()) - bias
    R, bias = _spread(R, bias, rule)
    return DimensionRelevance(
        score=score,
        relevance=R,
        bias=bias,
        residual=residual,
        root=root,
        root_distance=distance,
        root_value=root_value,
    )


def one_class_relevance(det, x, task: int = 0, sign: float = -1.0, rule=None) -> DimensionRelevance:
    """Relevance of the feature dimensions of ``x`` (V,) for ``sign * f(x)`` of a one-class SVM.

    ``f`` is an SVM expansion, so the classifier's own decomposition and Taylor
    expansion apply (thesis eq. A.9).
    """
    rule = default_rule(det) if rule is None else rule
    require(rule, (Decomposition, Taylor), type(det).__name__)
    x = np.asarray(x, dtype=np.float64).ravel()
    if isinstance(rule, Decomposition):
        return decompose(det, x, task, sign, rule)
    return taylor(det, x, task, sign, rule)


def svdd_relevance(det, x, task: int = 0, sign: float = -1.0, rule=None) -> DimensionRelevance:
    """Relevance of the feature dimensions of ``x`` (V,) for ``sign * f(x)`` of a kernel SVDD
    (eq. A.13; ``task`` is unused, the detector has one output)."""
    rule = default_rule(det) if rule is None else rule
    require(rule, (Decomposition, Taylor), type(det).__name__)
    x = np.asarray(x, dtype=np.float64).ravel()
    if isinstance(rule, Decomposition):
        return svdd_decompose(det, x, sign, rule)
    return svdd_taylor(det, x, sign, rule)


def anomaly_relevance(det, x, task: int = 0, sign: float = -1.0, rule=None) -> DimensionRelevance:
    """Relevance of the feature dimensions of ``x`` (V,) for ``sign * f(x)`` of a detector
    (its own :meth:`dimension_relevance`: :func:`one_class_relevance` or :func:`svdd_relevance`)."""
    return det.dimension_relevance(x, task, sign, rule)


__all__ = [
    "anomaly_relevance",
    "center_terms",
    "one_class_relevance",
    "svdd_decompose",
    "svdd_dimension_terms",
    "svdd_relevance",
    "svdd_taylor",
]
