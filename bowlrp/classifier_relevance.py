"""Step 1 of the relevance pass: from ``f(x)`` to the feature dimensions (SPEC 2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .exceptions import RuleError
from .rules import Decomposition, Taylor, require


@dataclass
class DimensionRelevance:
    """Relevance of the feature dimensions for one image and one target.

    ``relevance.sum() + bias + residual == score`` (to rounding).
    """

    score: float
    relevance: np.ndarray      # (V,) all channels concatenated
    bias: float
    residual: float
    root: np.ndarray | None = None
    root_distance: float | None = None
    root_value: float | None = None


def default_rule(clf):
    return Decomposition() if all(k.decomposable for k in clf.kernels_) else Taylor()


def _explained_function(clf, task: int, sign: float):
    def g(points: np.ndarray) -> np.ndarray:
        F = clf.decision_function(points)
        F = F[:, task] if F.ndim == 2 else F
        return sign * F
    return g


def _channel_terms(clf, u, task, x):
    s = clf.channel_slices_[u]
    return clf.kernel_weights_[task, u] * clf.kernels_[u].dimension_terms(
        clf.support_vectors_[:, s], clf.dual_coef_[task], x[s])


def decompose(clf, x: np.ndarray, task: int, sign: float, rule: Decomposition) -> DimensionRelevance:
    """Exact: ``R_d = beta_u sum_i a_i k_d(s_{i,d}, x_d)``, ``R_b = b``."""
    bad = [k.name for k in clf.kernels_ if not k.decomposable]
    if bad:
        raise RuleError(
            f"Decomposition needs sum-decomposable kernels; {', '.join(bad)} is not: use Taylor()"
        )
    R = np.concatenate([_channel_terms(clf, u, task, x) for u in range(len(clf.kernels_))])
    R *= sign
    bias = sign * float(clf.intercept_[task])
    score = float(R.sum() + bias)
    if rule.bias == "spread":
        R = R + bias / R.size
        bias = 0.0
    return DimensionRelevance(score=score, relevance=R, bias=bias, residual=0.0)


def find_root(g, x: np.ndarray, candidates: np.ndarray, rule: Taylor):
    """Bisection towards ``g = 0`` on the segments from ``x`` to opposite-sign candidates.

    Returns (root (V,), |root - x|, g(root)).
    """
    gx = float(g(x[None, :])[0])
    gc = g(candidates)
    opposite = candidates[np.sign(gc) == -np.sign(gx)] if gx != 0 else candidates[:0]
    if gx == 0:
        return x.copy(), 0.0, 0.0
    if len(opposite) == 0:
        raise RuleError(
            "no reference point is predicted with the opposite sign, so no root for the Taylor "
            "expansion can be found; pass Taylor(reference_points=...) with such points"
        )
    dist = np.linalg.norm(opposite - x, axis=1)
    order = np.argsort(dist)[: rule.n_candidates]
    far = opposite[order]
    lo = np.zeros(len(far))   # gamma of the opposite end: point = x + (1 - gamma)... see below
    hi = np.ones(len(far))    # gamma = 1 is x itself
    # point(gamma) = gamma x + (1 - gamma) s ; sign at gamma = 0 opposite to g(x)
    for _ in range(rule.max_iter):
        mid = 0.5 * (lo + hi)
        pts = mid[:, None] * x[None, :] + (1 - mid)[:, None] * far
        gm = g(pts)
        same = np.sign(gm) == np.sign(gx)
        hi = np.where(same, mid, hi)
        lo = np.where(same, lo, mid)
        if np.all(np.abs(gm) <= rule.tol):
            break
    pts = hi[:, None] * x[None, :] + (1 - hi)[:, None] * far
    gv = g(pts)
    pts_lo = lo[:, None] * x[None, :] + (1 - lo)[:, None] * far
    gv_lo = g(pts_lo)
    use_lo = np.abs(gv_lo) < np.abs(gv)
    pts = np.where(use_lo[:, None], pts_lo, pts)
    gv = np.where(use_lo, gv_lo, gv)
    ok = np.abs(gv) <= rule.tol
    pool = np.flatnonzero(ok) if ok.any() else np.array([int(np.argmin(np.abs(gv)))])
    dists = np.linalg.norm(pts[pool] - x, axis=1)
    best = pool[int(np.argmin(dists))]
    return pts[best], float(np.linalg.norm(pts[best] - x)), float(gv[best])


def taylor(clf, x: np.ndarray, task: int, sign: float, rule: Taylor) -> DimensionRelevance:
    """``R_d = (x - x~)_d dg/dx_d(x~)`` at a root ``x~`` of ``g = sign f_task``.

    Channels whose kernel is sum-decomposable get the exact difference
    ``T_d(x) - T_d(x~)`` instead of the linearisation.
    """
    g = _explained_function(clf, task, sign)
    if rule.reference_points is not None:
        candidates = np.asarray(rule.reference_points, dtype=np.float64)
        if candidates.ndim != 2 or candidates.shape[1] != x.size:
            raise ValueError(f"reference_points must have shape (m, {x.size})")
    else:
        candidates = np.vstack([clf.reference_X_, clf.support_vectors_])
    root, distance, root_value = find_root(g, x, candidates, rule)
    parts = []
    for u, kernel in enumerate(clf.kernels_):
        s = clf.channel_slices_[u]
        if kernel.decomposable:
            parts.append(sign * (_channel_terms(clf, u, task, x) - _channel_terms(clf, u, task, root)))
        else:
            grad = clf.kernel_weights_[task, u] * kernel.gradient(
                clf.support_vectors_[:, s], clf.dual_coef_[task], root[s])
            parts.append(sign * (x[s] - root[s]) * grad)
    R = np.concatenate(parts)
    score = float(g(x[None, :])[0])
    bias = root_value
    residual = score - float(R.sum()) - bias
    if rule.bias == "spread":
        R = R + bias / R.size
        bias = 0.0
    return DimensionRelevance(score=score, relevance=R, bias=bias, residual=residual,
                              root=root, root_distance=distance, root_value=root_value)


def classifier_relevance(clf, x, task: int = 0, sign: float = 1.0, rule=None) -> DimensionRelevance:
    """Relevance of the feature dimensions of ``x`` (V,) for task ``task`` of a KernelSVC."""
    rule = default_rule(clf) if rule is None else rule
    require(rule, (Decomposition, Taylor), "KernelSVC")
    x = np.asarray(x, dtype=np.float64).ravel()
    if isinstance(rule, Decomposition):
        return decompose(clf, x, task, sign, rule)
    bad = [k.name for k in clf.kernels_ if not (k.differentiable or k.decomposable)]
    if bad:  # pragma: no cover - every shipped kernel is one or the other
        raise RuleError(f"Taylor needs differentiable kernels; {', '.join(bad)} is not")
    return taylor(clf, x, task, sign, rule)
