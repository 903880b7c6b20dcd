"""Step 1 of the relevance pass: from ``f(x)`` to the feature dimensions (docs/math.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import RuleError
from ..rules import Decomposition, Neuralized, Taylor, integrated_gradient, require
from .kernels import ExponentialChi2
from .neuralized import neuralized
from .roots import boundary_root, infer_domain, segment_roots


@dataclass
class DimensionRelevance:
    """Relevance of the feature dimensions for one image and one target.

    ``relevance.sum() + bias + residual == score`` (to rounding).
    """

    score: float
    relevance: np.ndarray  # (V,) all channels concatenated
    bias: float
    residual: float
    root: np.ndarray | None = None
    root_distance: float | None = None
    root_value: float | None = None
    root_info: dict | None = None


def default_rule(clf):
    """The step-1 rule used when none is given, chosen by measurement (``make
    polygons-experiment``, README "Choosing the default rule").

    ``Decomposition()`` for sum-decomposable kernels (exact); ``Neuralized("hybrid")``
    for SVMs whose kernels are all exponential chi2 (on the polygons model: AOPC
    +0.093 +- 0.042 over the integrated gradient under blur, +0.029 +- 0.090 under
    uniform noise, 0.38x its cost; explained with the ``Contribution`` pixel rule);
    else the path-integrated gradient from the segment root (``integrated_gradient()``,
    conservation up to quadrature error: RBF models, whose rules were not measured,
    and the anomaly detectors, which have their own step 1).
    """
    if all(k.decomposable for k in clf.kernels_):
        return Decomposition()
    if not hasattr(clf, "dimension_relevance") and all(isinstance(k, ExponentialChi2) for k in clf.kernels_):
        return Neuralized("hybrid")
    return integrated_gradient()


def _explained_function(clf, task: int, sign: float):
    """``P (m, V) -> g(P) = sign f_task(P)`` (m,), the dual expansion of one task only.

    The support vectors of each channel are sliced (and checked) once here, not
    at every one of the many evaluations a root search makes.
    """
    channels = [
        (
            kernel,
            clf.channel_slices_[u],
            float(clf.kernel_weights_[task, u]),
            np.ascontiguousarray(clf.support_vectors_[:, clf.channel_slices_[u]]),
        )
        for u, kernel in enumerate(clf.kernels_)
    ]
    coef = np.asarray(clf.dual_coef_[task], dtype=np.float64)

    def g(points: np.ndarray) -> np.ndarray:
        P = np.atleast_2d(np.asarray(points, dtype=np.float64))
        if not np.all(np.isfinite(P)):
            raise ValueError("points contain NaN or infinite values")
        F = np.full(len(P), float(clf.intercept_[task]))
        for kernel, s, weight, support in channels:
            F += weight * (kernel._gram(np.ascontiguousarray(P[:, s]), support) @ coef)
        return sign * F

    return g


def _channel_terms(clf, u, task, x):
    s = clf.channel_slices_[u]
    return clf.kernel_weights_[task, u] * clf.kernels_[u].dimension_terms(
        clf.support_vectors_[:, s], clf.dual_coef_[task], x[s]
    )


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

    Each segment ``x + t (s - x)`` brackets a sign change; Illinois false
    position shrinks all brackets at once (one batched evaluation of ``g`` per
    step) until ``|g| <= tol`` (:func:`bowlrp.classifier.roots.segment_roots`). Of the
    roots found, the one nearest ``x`` is returned.

    Returns
    -------
    root : (V,), distance ``|root - x|``, ``g(root)``
    """
    roots, dist, values = segment_roots(
        g, x, candidates, rule.n_candidates, rule.tol, rule.max_iter, g_candidates, keep=1
    )
    return roots[0], float(dist[0]), float(values[0])


def _gradient_function(clf, task: int, sign: float):
    """``Z (n, V) -> grad g`` (n, V) for ``g = sign f_task``; 0 on non-differentiable channels."""

    def grad(Z: np.ndarray) -> np.ndarray:
        Z = np.atleast_2d(Z)
        out = np.zeros(Z.shape)
        for u, kernel in enumerate(clf.kernels_):
            if not kernel.differentiable:
                continue
            s = clf.channel_slices_[u]
            out[:, s] = (sign * clf.kernel_weights_[task, u]) * kernel.gradients(
                clf.support_vectors_[:, s], clf.dual_coef_[task], Z[:, s]
            )
        return out

    return grad


def gauss_legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``t_j`` and weights ``w_j`` of the ``nodes``-point Gauss-Legendre rule on [0, 1]."""
    u, w = np.polynomial.legendre.leggauss(nodes)
    return 0.5 * (u + 1.0), 0.5 * w


def root_candidates(clf, x: np.ndarray, task: int, sign: float, rule: Taylor):
    """Points to search roots towards: ``rule.reference_points`` or the model's opposite-sign set.

    Returns ``(candidates (m, V), g(candidates) or None)``.
    """
    if rule.reference_points is not None:
        candidates = np.asarray(rule.reference_points, dtype=np.float64)
        if candidates.ndim != 2 or candidates.shape[1] != x.size:
            raise ValueError(f"reference_points must have shape (m, {x.size})")
        return candidates, None
    return clf.candidate_points(task, sign)


def taylor_root(clf, x: np.ndarray, task: int, sign: float, rule: Taylor, g=None, gx=None):
    """The root of :func:`taylor`: ``(root, distance, g(root), info)``.

    ``info`` holds ``segment_distance`` (today's root) and, for
    ``root="boundary"``, ``walk_steps``, ``stationarity`` and ``domain``.
    """
    g = _explained_function(clf, task, sign) if g is None else g
    gx = float(g(x[None, :])[0]) if gx is None else gx
    candidates, g_candidates = root_candidates(clf, x, task, sign, rule)
    keep = 1 if rule.root == "segment" else rule.n_starts
    roots, dist, values = segment_roots(
        g, x, candidates, rule.n_candidates, rule.tol, rule.max_iter, g_candidates, gx, keep=keep
    )
    info = {"segment_distance": float(dist[0])}
    if rule.root == "segment" or dist[0] == 0:
        return roots[0], float(dist[0]), float(values[0]), info
    domain = infer_domain(clf.channel_slices_, x, candidates, rule.domain)
    grad = _gradient_function(clf, task, sign)
    k = rule.n_starts
    walk = boundary_root(
        g,
        lambda z: grad(z)[0],
        x,
        roots[:k],
        values[:k],
        domain,
        rule.tol,
        rule.max_iter,
        rule.walk_iter,
        gx=gx,
    )
    info.update(walk_steps=walk.n_steps, stationarity=walk.stationarity, domain=list(domain.kinds))
    return walk.root, walk.distance, walk.value, info


def taylor(clf, x: np.ndarray, task: int, sign: float, rule: Taylor) -> DimensionRelevance:
    """Expansion of ``g = sign f_task`` from a root ``x~`` to ``x`` (docs/taylor.md).

    Differentiable channels: ``R_d = (x - x~)_d dg/dx_d(x~)`` (``rule.nodes = 0``)
    or ``R_d = (x - x~)_d sum_j w_j dg/dx_d(x~ + t_j (x - x~))`` (Gauss-Legendre,
    ``rule.nodes`` nodes). Channels whose kernel is sum-decomposable get the
    exact difference ``T_d(x) - T_d(x~)`` instead. ``residual = g(x) - sum R - g(x~)``
    is what the linearisation (or quadrature) leaves unexplained.
    """
    g = _explained_function(clf, task, sign)
    score = float(g(x[None, :])[0])
    root, distance, root_value, info = taylor_root(clf, x, task, sign, rule, g, score)
    if rule.nodes == 0:
        points, weights = root[None, :], np.ones(1)
    else:
        t, weights = gauss_legendre(int(rule.nodes))
        points = root[None, :] + t[:, None] * (x - root)[None, :]
    need_grad = any(not k.decomposable for k in clf.kernels_)
    mean_grad = weights @ _gradient_function(clf, task, sign)(points) if need_grad else None
    parts = []
    for u, kernel in enumerate(clf.kernels_):
        s = clf.channel_slices_[u]
        if kernel.decomposable:
            parts.append(sign * (_channel_terms(clf, u, task, x) - _channel_terms(clf, u, task, root)))
        else:
            parts.append((x[s] - root[s]) * mean_grad[s])
    R = np.concatenate(parts)
    bias = root_value
    residual = score - float(R.sum()) - bias
    if rule.bias == "spread":
        R = R + bias / R.size
        bias = 0.0
    return DimensionRelevance(
        score=score,
        relevance=R,
        bias=bias,
        residual=residual,
        root=root,
        root_distance=distance,
        root_value=root_value,
        root_info=info,
    )


def neuralized_relevance(clf, x: np.ndarray, task: int, sign: float, rule: Neuralized) -> DimensionRelevance:
    """The neuralised SVM's relevance (docs/neuralized.md), on the scale of ``g = sign f_task``.

    The relevance of ``log f+ - log f-`` is multiplied by the logarithmic mean
    ``L = (f+ - f-) / (log f+ - log f-) > 0``, so ``sum R + bias = g(x)``: ``bias`` is
    ``L`` times what the rule leaves unexplained (unit biases, pooling entropies),
    ``residual`` only rounding. ``root_info`` holds the neuralised value and ``L``.
    """
    score = float(_explained_function(clf, task, sign)(x[None, :])[0])
    out = neuralized(clf, x, task, sign, rule)
    R = out.scale * out.relevance
    bias = out.scale * out.unexplained
    residual = score - float(R.sum()) - bias
    if rule.bias == "spread":
        R = R + bias / R.size
        bias = 0.0
    info = {
        "neuralized_value": out.value,
        "scale": out.scale,
        "log_positive": out.log_positive,
        "log_negative": out.log_negative,
        "units": [out.n_positive, out.n_negative],
    }
    return DimensionRelevance(score=score, relevance=R, bias=bias, residual=residual, root_info=info)


def classifier_relevance(clf, x, task: int = 0, sign: float = 1.0, rule=None) -> DimensionRelevance:
    """Relevance of the feature dimensions of ``x`` (V,) for task ``task`` of a KernelSVC."""
    if hasattr(clf, "dimension_relevance"):  # models with their own step 1 (bowlrp.classifier.anomaly)
        return clf.dimension_relevance(x, task, sign, rule)
    rule = default_rule(clf) if rule is None else rule
    require(rule, (Decomposition, Taylor, Neuralized), "KernelSVC")
    x = np.asarray(x, dtype=np.float64).ravel()
    if isinstance(rule, Decomposition):
        return decompose(clf, x, task, sign, rule)
    if isinstance(rule, Neuralized):
        return neuralized_relevance(clf, x, task, sign, rule)
    bad = [k.name for k in clf.kernels_ if not (k.differentiable or k.decomposable)]
    if bad:  # pragma: no cover - every shipped kernel is one or the other
        raise RuleError(f"Taylor needs differentiable kernels; {', '.join(bad)} is not")
    return taylor(clf, x, task, sign, rule)
