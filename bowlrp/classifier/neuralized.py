"""Step 1 by the neuralised kernel SVM (docs/neuralized.md).

A kernel SVM with exponential kernels (RBF, exponential chi2, and MKL mixes of them),

    f(x) = b + sum_u beta_u sum_i a_i exp(-D_u(s_i, x)),

is a difference of two sums of positive terms, ``f = f+ - f-``: the terms with
``a_i > 0`` (and the intercept if ``b > 0``) and those with ``a_i < 0`` (and
``-b`` if ``b < 0``). Each term is a *unit* ``m`` with log activation

    A_m(x) = log alpha_m - sum_d c_md(x),      alpha_m = beta_u |a_i|,

where ``c_md`` is the kernel's distance term in dimension ``d`` (RBF:
``(x_d - s_d)^2 / sigma^2``; exponential chi2: ``sigma (x_d - s_d)^2 / (x_d + s_d)``;
0 outside the unit's channel; the intercept unit has no distance terms). The
neuralised SVM (Bley, Kauffmann, Krug, Mueller, Montavon 2025) is

    g(x) = log f+(x) - log f-(x) = LSE_m A_m - LSE_n B_n
         = LSE_m  softmin_n  h_mn(x),          h_mn = A_m - B_n,

detection units ``h_mn`` between pairs of units of opposite sign followed by
(exact, log-sum-exp) min and max pooling. ``sign g = sign f`` exactly.

Relevance flows back through the pooling in proportion to the pooling weights,
which factorise: ``p_m = exp(A_m - LSE A)`` and ``q_n = exp(B_n - LSE B)``
(the soft-min over ``n`` does not depend on ``m``). So the ``|P| x |N|`` pairs
are never formed: every rule costs ``O(n_units x V)``, as one decision value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import RuleError
from ..rules import Neuralized
from .kernels import RBF, ExponentialChi2

#: Largest number of (support vector x dimension) terms formed at once.
_BLOCK_TERMS = 1 << 22


@dataclass
class NeuralizedRelevance:
    """Relevance of the log-ratio ``g = log f+ - log f-`` for one sample and task.

    ``relevance.sum() + unexplained == value``; ``scale * value`` is the decision
    value ``f`` explained (``scale``, the logarithmic mean of ``f+`` and ``f-``, is > 0).
    """

    relevance: np.ndarray  # (V,)
    value: float  # g(x)
    unexplained: float  # value - relevance.sum(): unit biases and pooling entropies
    scale: float  # (f+ - f-) / (log f+ - log f-)
    log_positive: float  # log f+(x)
    log_negative: float  # log f-(x)
    n_positive: int  # units in the max pool (intercept included)
    n_negative: int  # units in the min pool


def _distance_terms(kernel, S: np.ndarray, x: np.ndarray, derivative: bool):
    """``c (n, V)`` and, if asked, ``dc/dx (n, V)`` of one kernel channel (see module doc)."""
    if isinstance(kernel, RBF):
        diff = x[None, :] - S
        width = kernel.sigma_**2
        return diff * diff / width, (2.0 / width) * diff if derivative else None
    if isinstance(kernel, ExponentialChi2):
        den = x[None, :] + S
        positive = den > 0
        safe = np.where(positive, den, 1.0)
        diff = x[None, :] - S
        c = kernel.sigma_ * np.where(positive, diff * diff / safe, 0.0)
        if not derivative:
            return c, None
        ratio = np.where(positive, S / safe, 0.0)
        return c, kernel.sigma_ * (1.0 - 4.0 * ratio * ratio)
    raise RuleError(
        f"Neuralized explains RBF and exponential chi2 kernels (and MKL mixes of them), "
        f"not the {kernel.name} kernel: use Decomposition() or integrated"
    )


def _units(clf, task: int, sign: float):
    """Per channel: ``(kernel, slice, S (n_u, V_u), log alpha (n_u,), unit sign (n_u,))``
    and the intercept ``sign b`` of the explained function ``sign f_task``."""
    coef = sign * np.asarray(clf.dual_coef_[task], dtype=np.float64)
    keep = np.flatnonzero(coef != 0)
    every = keep.size == coef.size
    out = []
    for u, kernel in enumerate(clf.kernels_):
        beta = float(clf.kernel_weights_[task, u])
        s = clf.channel_slices_[u]
        if beta <= 0 or not keep.size:
            out.append((kernel, s, np.zeros((0, s.stop - s.start)), np.zeros(0), np.zeros(0)))
            continue
        S = clf.support_vectors_[:, s] if every else clf.support_vectors_[keep, s]
        c = coef if every else coef[keep]
        out.append((kernel, s, np.asarray(S, dtype=np.float64), np.log(beta) + np.log(np.abs(c)), np.sign(c)))
    return out, sign * float(clf.intercept_[task])


def _blocks(n: int, width: int):
    step = max(1, _BLOCK_TERMS // max(width, 1))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _log_activations(
    units, x: np.ndarray, cache: dict | None = None, derivative: bool = False
) -> list[np.ndarray]:
    """``A_m(x)`` of every unit, per channel; when one block holds a channel's terms, they
    (and, with ``derivative``, their derivatives) are kept in ``cache[u] = (c, dc)``."""
    out = []
    for u, (kernel, s, S, log_alpha, _) in enumerate(units):
        A = log_alpha.copy()
        blocks = _blocks(len(S), S.shape[1])
        keep = cache is not None and len(blocks) == 1
        for a, b in blocks:
            c, dc = _distance_terms(kernel, S[a:b], x[s], derivative=derivative and keep)
            A[a:b] -= c.sum(axis=1)
            if keep:
                cache[u] = (c, dc)
        out.append(A)
    return out


def _lse(a: np.ndarray) -> float:
    """``log sum exp a`` of a non-empty 1-d array."""
    top = float(a.max())
    return top + float(np.log(np.exp(a - top).sum()))


def _pools(units, bias: float, activations: list[np.ndarray]):
    """``(log f+, log f-, n+, n-)`` from the units' log activations and the intercept."""
    signs = np.concatenate([unit[4] for unit in units])
    A = np.concatenate(activations)
    pos, neg = A[signs > 0], A[signs < 0]
    if bias > 0:
        pos = np.append(pos, np.log(bias))
    elif bias < 0:
        neg = np.append(neg, np.log(-bias))
    if not pos.size or not neg.size:
        side = "positive" if not pos.size else "negative"
        raise RuleError(
            f"Neuralized needs terms of both signs; this task has no {side} support vector "
            "(nor intercept): use integrated"
        )
    return _lse(pos), _lse(neg), pos.size, neg.size


def logarithmic_mean(log_a: float, log_b: float) -> float:
    """``(a - b) / (log a - log b)`` from ``log a``, ``log b`` (``a`` if equal), any difference."""
    d = abs(log_a - log_b)
    top = max(log_a, log_b)
    if d == 0:
        return float(np.exp(top))
    return float(np.exp(top) * (-np.expm1(-d)) / d)


def neuralized_value(clf, X, task: int = 0, sign: float = 1.0) -> np.ndarray:
    """``g(x) = log f+(x) - log f-(x)`` (n,) of the explained function ``sign f_task`` for rows of X.

    ``sign g == sign f`` wherever ``f != 0``; computed in log space, so it stays finite
    where every kernel value underflows.
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    units, bias = _units(clf, task, sign)
    out = np.empty(len(X))
    for k, x in enumerate(X):
        lp, ln, _, _ = _pools(units, bias, _log_activations(units, x))
        out[k] = lp - ln
    return out


def neuralized(clf, x: np.ndarray, task: int, sign: float, rule: Neuralized) -> NeuralizedRelevance:
    """Relevance of ``g = log f+ - log f-`` of ``sign f_task`` on the dimensions of ``x`` (V,).

    With ``omega_m = p_m`` for units of the max pool and ``-q_n`` for those of the min
    pool (pooling weights, see module doc):

    - ``midpoint``: each detection unit split exactly per dimension,
      ``R_d = sum_mn p_m q_n (c_nd - c_md) = -sum_m omega_m c_md`` (for RBF, the first-order
      term of ``h_mn`` at the midpoint of its two support vectors);
    - ``gi`` (gradient x input): ``R_d = x_d dg/dx_d = -x_d sum_m omega_m dc_md/dx_d``;
    - ``hybrid``: ``(1 - eta) gi + eta midpoint``.

    Cost: one pass over the ``n_sv x V`` distance terms (two when they do not fit in one block).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("the features contain NaN or infinite values")
    units, bias = _units(clf, task, sign)
    want_mid = rule.variant in ("midpoint", "hybrid")
    want_gi = rule.variant in ("gi", "hybrid")
    cache: dict = {}
    activations = _log_activations(units, x, cache, derivative=want_gi)
    lp, ln, n_pos, n_neg = _pools(units, bias, activations)
    mid = np.zeros(x.size)
    gi = np.zeros(x.size)
    for u, ((kernel, s, S, _, signs), A) in enumerate(zip(units, activations)):
        if not len(S):
            continue
        omega = np.where(signs > 0, np.exp(A - lp), -np.exp(A - ln))
        for a, b in _blocks(len(S), S.shape[1]):
            if u in cache:
                c, dc = cache[u]
            else:
                c, dc = _distance_terms(kernel, S[a:b], x[s], derivative=want_gi)
            if want_mid:
                mid[s] -= omega[a:b] @ c
            if want_gi:
                gi[s] -= omega[a:b] @ dc
    gi *= x
    if rule.variant == "midpoint":
        R = mid
    elif rule.variant == "gi":
        R = gi
    else:
        R = (1.0 - rule.eta) * gi + rule.eta * mid
    value = lp - ln
    return NeuralizedRelevance(
        relevance=R,
        value=value,
        unexplained=value - float(R.sum()),
        scale=logarithmic_mean(lp, ln),
        log_positive=lp,
        log_negative=ln,
        n_positive=n_pos,
        n_negative=n_neg,
    )
