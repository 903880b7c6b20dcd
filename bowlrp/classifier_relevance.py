"""Step 1 of the relevance pass: from ``f(x)`` to the feature dimensions (docs/math.md §2)."""

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


def find_root(g, x: np.ndarray, candidates: np.ndarray, rule: Taylor, g_candidates=None):
    """A root of ``g`` on the segments from ``x`` to the nearest opposite-sign candidates.

    Each segment ``x(t) = t x + (1 - t) s`` (``t = 1`` is ``x``) brackets a sign
    change; the Illinois variant of false position shrinks all brackets at
    once (one batched evaluation of ``g`` per step) until ``|g| <= tol``. Of
    the roots found, the one nearest ``x`` is returned.

    Returns
    -------
    root : (V,), distance ``|root - x|``, ``g(root)``
    """
    gx = float(g(x[None, :])[0])
    if gx == 0:
        return x.copy(), 0.0, 0.0
    gc = g(candidates) if g_candidates is None else g_candidates
    opposite = np.sign(gc) == -np.sign(gx)
    if not opposite.any():
        raise RuleError(
            "no reference point is predicted with the opposite sign, so no root for the Taylor "
            "expansion can be found; pass Taylor(reference_points=...) with such points"
        )
    far, g_far = candidates[opposite], gc[opposite]
    order = np.argsort(np.linalg.norm(far - x, axis=1))[: rule.n_candidates]
    far, g_far = far[order], g_far[order]
    m = len(far)
    t_lo, g_lo = np.zeros(m), g_far.copy()          # opposite sign end
    t_hi, g_hi = np.ones(m), np.full(m, gx)          # x's end
    t_best, g_best = t_hi.copy(), g_hi.copy()
    side = np.zeros(m, dtype=np.int8)                # which end moved last (Illinois)
    for _ in range(rule.max_iter):
        active = np.abs(g_best) > rule.tol
        if not active.any():
            break
        idx = np.flatnonzero(active)
        denom = g_hi[idx] - g_lo[idx]
        t_new = np.where(denom != 0, t_lo[idx] - g_lo[idx] * (t_hi[idx] - t_lo[idx]) / denom,
                         0.5 * (t_lo[idx] + t_hi[idx]))
        # guard against stagnation at an end of the bracket
        width = t_hi[idx] - t_lo[idx]
        t_new = np.clip(t_new, t_lo[idx] + 1e-3 * width, t_hi[idx] - 1e-3 * width)
        pts = t_new[:, None] * x[None, :] + (1 - t_new)[:, None] * far[idx]
        g_new = g(pts)
        same_as_x = np.sign(g_new) == np.sign(gx)
        for j, i in enumerate(idx):
            if same_as_x[j]:
                t_hi[i], g_hi[i] = t_new[j], g_new[j]
                if side[i] == 1:
                    g_lo[i] *= 0.5
                side[i] = 1
            else:
                t_lo[i], g_lo[i] = t_new[j], g_new[j]
                if side[i] == -1:
                    g_hi[i] *= 0.5
                side[i] = -1
            if abs(g_new[j]) < abs(g_best[i]):
                t_best[i], g_best[i] = t_new[j], g_new[j]
    ok = np.abs(g_best) <= rule.tol
    pool = np.flatnonzero(ok) if ok.any() else np.array([int(np.argmin(np.abs(g_best)))])
    roots = t_best[pool, None] * x[None, :] + (1 - t_best[pool])[:, None] * far[pool]
    dists = np.linalg.norm(roots - x, axis=1)
    j = int(np.argmin(dists))
    return roots[j], float(dists[j]), float(g_best[pool[j]])


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
        g_candidates = None
    else:
        candidates, g_candidates = clf.candidate_points(task, sign)
    root, distance, root_value = find_root(g, x, candidates, rule, g_candidates)
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
    if hasattr(clf, "dimension_relevance"):  # models with their own step 1 (bowlrp.anomaly)
        return clf.dimension_relevance(x, task, sign, rule)
    rule = default_rule(clf) if rule is None else rule
    require(rule, (Decomposition, Taylor), "KernelSVC")
    x = np.asarray(x, dtype=np.float64).ravel()
    if isinstance(rule, Decomposition):
        return decompose(clf, x, task, sign, rule)
    bad = [k.name for k in clf.kernels_ if not (k.differentiable or k.decomposable)]
    if bad:  # pragma: no cover - every shipped kernel is one or the other
        raise RuleError(f"Taylor needs differentiable kernels; {', '.join(bad)} is not")
    return taylor(clf, x, task, sign, rule)
