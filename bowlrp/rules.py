"""LRP rules as small immutable value objects, one family per step.

Classifier -> dimensions (SPEC 2, step 1):
    :class:`Decomposition` (exact, sum-decomposable kernels) and
    :class:`Taylor` (first-order expansion at a searched root).
Dimensions -> descriptors (step 2):
    :class:`Epsilon`, :class:`AlphaBeta`, :class:`AbsZ` (sign-blind baseline),
    :class:`WinnerTakeAll` (max pooling).
Descriptors -> pixels (step 3):
    :class:`Flat` and :class:`SIFTBins` (thesis D.1: per spatial bin).

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
    """Expansion of ``f`` between a root ``x~`` (``f(x~) = 0``) near ``x`` and ``x`` (docs/taylor.md).

    ``nodes = 0`` (first order): ``R_d = (x - x~)_d df/dx_d(x~)``.
    ``nodes = n >= 1`` (path-integrated gradient, n-node Gauss-Legendre):
    ``R_d = (x - x~)_d sum_j w_j df/dx_d(x~ + t_j (x - x~))``, which sums to
    ``f(x) - f(x~)`` up to the quadrature error (reported as the residual).
    Channels with a sum-decomposable kernel in an MKL mix get the exact
    difference ``T_d(x) - T_d(x~)`` either way.

    Roots: ``root="segment"`` searches the segments from ``x`` to the
    ``n_candidates`` nearest reference points of opposite predicted sign
    (false position until ``|f| <= tol``) and takes the root nearest ``x``;
    ``root="boundary"`` then walks on the decision boundary from the
    ``n_starts`` nearest segment roots towards the constrained nearest root
    ``argmin ||x~ - x|| s.t. f(x~) = 0, x~ in C`` (bracketed SQP, at most
    ``walk_iter`` steps each), never farther than the segment root. ``C`` is
    the valid feature domain per channel: ``auto`` (simplex for l1-normalised
    non-negative histograms, orthant for non-negative features, free
    otherwise), or one of ``free``, ``nonnegative``, ``simplex``.

    Parameters
    ----------
    n_candidates : int
    tol : float
    max_iter : int
        False-position steps per segment.
    reference_points : ndarray (m, V) or None
        Candidate points in feature space; None uses the model's stored
        reference set and support vectors.
    bias : {"separate", "spread"}
        What to do with the (tiny) ``f(x~)``.
    root : {"segment", "boundary"}
    nodes : int
        0: first order at the root; n >= 1: n-node Gauss-Legendre path integral.
    domain : {"auto", "free", "nonnegative", "simplex"}
    n_starts, walk_iter : int
        Boundary walk: number of segment roots to start from, steps per start.
    """

    n_candidates: int = 50
    tol: float = 1e-5
    max_iter: int = 100
    reference_points: np.ndarray | None = None
    bias: str = "separate"
    root: str = "segment"
    nodes: int = 0
    domain: str = "auto"
    n_starts: int = 3
    walk_iter: int = 30

    def __post_init__(self):
        if self.bias not in BIAS_MODES:
            raise RuleError(f"bias must be one of {BIAS_MODES}, got {self.bias!r}")
        if self.n_candidates < 1 or self.tol <= 0 or self.max_iter < 1:
            raise RuleError("Taylor needs n_candidates >= 1, tol > 0 and max_iter >= 1")
        if self.root not in ("segment", "boundary"):
            raise RuleError(f"root must be 'segment' or 'boundary', got {self.root!r}")
        if self.domain not in ("auto", "free", "nonnegative", "simplex"):
            raise RuleError(f"domain must be auto, free, nonnegative or simplex, got {self.domain!r}")
        if int(self.nodes) != self.nodes or self.nodes < 0 or self.n_starts < 1 or self.walk_iter < 0:
            raise RuleError("Taylor needs an integer nodes >= 0, n_starts >= 1 and walk_iter >= 0")


def integrated_gradient(nodes: float = 16, root: str = "segment", n_candidates: int = 50) -> Taylor:
    """The path-integrated gradient, ``integrated=N`` on the CLI (docs/taylor.md).

    ``Taylor(root=root, nodes=nodes, n_candidates=n_candidates)``. From the segment root by
    default: on the chi2 polygons model it kept the first-order rule's AOPC while the
    (6x nearer) boundary root lowered it; ``root="boundary"`` walks with 5 candidates
    as well as with 50.
    """
    if int(nodes) != nodes:
        raise RuleError(f"the number of quadrature nodes must be an integer, got {nodes}")
    return Taylor(root=root, nodes=int(nodes), n_candidates=int(n_candidates))


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


CLASSIFIER_RULES = (Decomposition, Taylor)
DESCRIPTOR_RULES = (Epsilon, AlphaBeta, AbsZ, WinnerTakeAll)
PIXEL_RULES = (Flat, SIFTBins)


def parse_rule(text: str):
    """Rule from command-line text: ``epsilon=1``, ``alphabeta=2,1``, ``absz``, ``flat``..."""
    name, _, arg = text.strip().lower().partition("=")
    values = [float(v) for v in arg.split(",") if v.strip()] if arg else []
    table = {
        "epsilon": Epsilon, "eps": Epsilon, "alphabeta": AlphaBeta, "ab": AlphaBeta,
        "absz": AbsZ, "wta": WinnerTakeAll, "winnertakeall": WinnerTakeAll, "flat": Flat,
        "siftbins": SIFTBins, "decomposition": Decomposition, "taylor": Taylor,
        "integrated": integrated_gradient,
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
