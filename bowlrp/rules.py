"""LRP rules as small immutable value objects, one family per step.

Classifier -> dimensions (SPEC 2, step 1):
    :class:`Decomposition` (exact, sum-decomposable kernels) and
    :class:`Taylor` (first-order expansion at a searched root).
Dimensions -> descriptors (step 2):
    :class:`Epsilon`, :class:`AlphaBeta`, :class:`AbsZ` (sign-blind baseline),
    :class:`WinnerTakeAll` (max pooling).
Descriptors -> pixels (step 3):
    :class:`Flat`, :class:`SIFTBins` (thesis D.1: per spatial bin) and
    :class:`Contribution` (by each pixel's share of the descriptor's mass).

A stage given a rule it does not implement raises :class:`~bowlrp.exceptions.RuleError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .exceptions import RuleError

BIAS_MODES = ("separate", "spread")


@dataclass(frozen=True)
class Decomposition:
    """Exact split of ``f(x)`` over dimensions for sum-decomposable kernels.

    ``R_d = beta_u sum_i a_i k_d(s_{i,d}, x_d)``, ``R_b = b``; with
    ``bias="spread"`` the bias is added uniformly, ``R_d += b / V``.
    """

    bias: str = "separate"

    def __post_init__(self):
        if self.bias not in BIAS_MODES:
            raise RuleError(f"bias must be one of {BIAS_MODES}, got {self.bias!r}")


@dataclass(frozen=True, eq=False)
class Taylor:
    """First-order Taylor expansion at a root ``x~`` (``f(x~) = 0``) near ``x``.

    ``R_d = (x - x~)_d df/dx_d(x~)`` for differentiable kernels (channels with
    a sum-decomposable, non-differentiable kernel in an MKL mix get the exact
    difference ``T_d(x) - T_d(x~)``). The root is searched by bisection on the
    segments from ``x`` to the ``n_candidates`` nearest reference points of
    opposite predicted sign, until ``|f| <= tol``; the root nearest ``x`` is used.

    Parameters
    ----------
    n_candidates : int
    tol : float
    max_iter : int
        Bisection steps per segment.
    reference_points : ndarray (m, V) or None
        Candidate points in feature space; None uses the model's stored
        reference set and support vectors.
    bias : {"separate", "spread"}
        What to do with the (tiny) ``f(x~)``.
    """

    n_candidates: int = 50
    tol: float = 1e-5
    max_iter: int = 100
    reference_points: np.ndarray | None = None
    bias: str = "separate"

    def __post_init__(self):
        if self.bias not in BIAS_MODES:
            raise RuleError(f"bias must be one of {BIAS_MODES}, got {self.bias!r}")
        if self.n_candidates < 1 or self.tol <= 0 or self.max_iter < 1:
            raise RuleError("Taylor needs n_candidates >= 1, tol > 0 and max_iter >= 1")


@dataclass(frozen=True)
class Epsilon:
    """``R_{l<-d} = z_ld / (z_d + eps sign(z_d)) R_d`` (eps = 0: the plain z-rule)."""

    epsilon: float = 0.0

    def __post_init__(self):
        if not (self.epsilon >= 0 and np.isfinite(self.epsilon)):
            raise RuleError(f"epsilon must be a finite number >= 0, got {self.epsilon}")


@dataclass(frozen=True)
class AlphaBeta:
    """``R_{l<-d} = (alpha z+_ld / z+_d - beta z-_ld / z-_d) R_d`` with ``alpha - beta = 1``.

    Where a dimension has contributions of one sign only, that part carries
    all of ``R_d`` (the conserving limit of the formula).
    """

    alpha: float = 2.0
    beta: float = 1.0

    def __post_init__(self):
        if not np.isclose(self.alpha - self.beta, 1.0) or self.beta < 0:
            raise RuleError(
                f"AlphaBeta needs alpha - beta = 1 and beta >= 0, got alpha={self.alpha}, "
                f"beta={self.beta}"
            )


@dataclass(frozen=True)
class AbsZ:
    """Sign-blind baseline ``R_{l<-d} = |z_ld| / sum_l' |z_l'd| R_d``."""


@dataclass(frozen=True)
class WinnerTakeAll:
    """Max pooling: all of ``R_d`` to the descriptor(s) attaining the maximum (ties split)."""


@dataclass(frozen=True)
class Flat:
    """``R_p = sum_{l: p in area(l)} R_l / |area(l)|``."""


@dataclass(frozen=True)
class SIFTBins:
    """Thesis D.1: relevance per descriptor dimension, each SIFT spatial bin spread over
    its own ``b x b`` pixels (16x finer than :class:`Flat`). Fisher-vector channels over
    SIFT only; ``epsilon`` stabilises the step back through the PCA."""

    epsilon: float = 0.0


@dataclass(frozen=True)
class Contribution:
    """Each descriptor's relevance to the pixels in proportion to the mass they gave it.

    For dense SIFT, pixel ``p`` adds ``w_lkp = m_p g_l(p) s_lk(p) o_k(p)`` to
    dimension ``k`` of descriptor ``l`` (gradient magnitude x Gaussian window x
    bilinear spatial x orientation weight, as the backend computes it);
    ``R_p = sum_l R_l w_lp / sum_p' w_lp'`` with ``w_lp = sum_k w_lkp``, or, per
    dimension first, ``R_p = sum_lk R_lk w_lkp / sum_p' w_lkp'`` (docs/pixel_rules.md).

    Parameters
    ----------
    weighting : {"full", "window", "gradient"}
        ``window`` drops the magnitude, ``gradient`` the Gaussian window.
    per_dimension : bool or None
        Relevance per descriptor dimension first; None: when the encoder is
        differentiable in the descriptor (Fisher vectors).
    through_blur : bool
        Map the weights back through the blurs the extractor applied (exact adjoint).
    epsilon : float
        Stabiliser of the step back through a PCA (per-dimension mode).

    Channels that are not dense SIFT (colour quantiles) stay :class:`Flat`.
    """

    weighting: str = "full"
    per_dimension: bool | None = None
    through_blur: bool = True
    epsilon: float = 0.0

    def __post_init__(self):
        if self.weighting not in ("full", "window", "gradient"):
            raise RuleError(f"weighting must be 'full', 'window' or 'gradient', got {self.weighting!r}")
        if not (self.epsilon >= 0 and np.isfinite(self.epsilon)):
            raise RuleError(f"epsilon must be a finite number >= 0, got {self.epsilon}")


CLASSIFIER_RULES = (Decomposition, Taylor)
DESCRIPTOR_RULES = (Epsilon, AlphaBeta, AbsZ, WinnerTakeAll)
PIXEL_RULES = (Flat, SIFTBins, Contribution)


def parse_rule(text: str):
    """Rule from command-line text: ``epsilon=1``, ``alphabeta=2,1``, ``absz``, ``flat``..."""
    name, _, arg = text.strip().lower().partition("=")
    if name.startswith("contribution"):  # contribution, contribution=window, contribution-gradient
        variant = (arg or name.partition("-")[2] or "full").strip()
        return Contribution(weighting=variant)
    values = [float(v) for v in arg.split(",") if v.strip()] if arg else []
    table = {
        "epsilon": Epsilon, "eps": Epsilon, "alphabeta": AlphaBeta, "ab": AlphaBeta,
        "absz": AbsZ, "wta": WinnerTakeAll, "winnertakeall": WinnerTakeAll, "flat": Flat,
        "siftbins": SIFTBins, "decomposition": Decomposition, "taylor": Taylor,
    }
    if name not in table:
        raise RuleError(f"unknown rule {text!r}; try epsilon=1, alphabeta=2,1, absz, flat")
    cls = table[name]
    try:
        if cls is AlphaBeta and len(values) == 1:
            return AlphaBeta(values[0], values[0] - 1.0)
        return cls(*values)
    except TypeError:
        raise RuleError(f"rule {text!r} takes different arguments") from None


def require(rule, allowed: tuple, stage: str):
    """Raise RuleError unless ``rule`` is an instance of one of ``allowed``."""
    if not isinstance(rule, allowed):
        names = ", ".join(c.__name__ for c in allowed)
        raise RuleError(f"{stage} does not support the rule {rule!r}; use one of: {names}")
    return rule
