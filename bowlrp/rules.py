"""LRP rules as small immutable value objects, one family per step.

Classifier -> dimensions (docs/math.md §2, step 1):
    :class:`Decomposition` (exact, sum-decomposable kernels) and
    :class:`Taylor` (first-order expansion at a searched root) and
    :class:`Neuralized` (the kernel SVM as a network of detection units and pooling).
Dimensions -> descriptors (step 2):
    :class:`Epsilon`, :class:`AlphaBeta`, :class:`AbsZ` (sign-blind baseline),
    :class:`WinnerTakeAll` (max pooling); :class:`Neon` wraps one of them for word
    mappings and goes on inside each descriptor, to its dimensions (docs/neon.md).
Descriptors -> pixels (step 3):
    :class:`Flat`, :class:`SIFTBins` (thesis D.1: per spatial bin) and
    :class:`Contribution` (by each pixel's share of the descriptor's mass).

A stage given a rule it does not implement raises :class:`~bowlrp.exceptions.RuleError`.
"""

from __future__ import annotations

import ast
import dataclasses
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


NEURALIZED_VARIANTS = ("midpoint", "gi", "hybrid")


@dataclass(frozen=True)
class Neuralized:
    """The exponential-kernel SVM as a neural network (docs/neuralized.md; Bley et al. 2025).

    ``f = f+ - f-`` (terms of positive and negative dual coefficient; the intercept
    joins the side of its sign) is explained through ``g = log f+ - log f-``, whose sign
    is ``f``'s: detection units ``h_mn`` between units of opposite sign, exact
    log-sum-exp min / max pooling. The relevance of ``g`` is scaled to ``f`` by the
    logarithmic mean ``(f+ - f-) / (log f+ - log f-) > 0``; what the rule leaves
    unexplained (unit biases, pooling entropies) is the bias relevance.

    Parameters
    ----------
    variant : {"midpoint", "gi", "hybrid"}
        ``midpoint``: each detection unit split per dimension (for RBF its first-order
        term at the midpoint of its two support vectors); ``gi``: gradient x input of
        ``g``; ``hybrid``: ``(1 - eta) gi + eta midpoint``.
    eta : float
        Share of the midpoint rule in ``hybrid`` (0.1, the value the authors' code recommends).
    bias : {"separate", "spread"}
        Keep the unexplained part as bias relevance, or add it uniformly to the dimensions.
    """

    variant: str = "midpoint"
    eta: float = 0.1
    bias: str = "separate"

    def __post_init__(self):
        if self.variant not in NEURALIZED_VARIANTS:
            raise RuleError(f"variant must be one of {NEURALIZED_VARIANTS}, got {self.variant!r}")
        if not (np.isfinite(self.eta) and 0.0 <= self.eta <= 1.0):
            raise RuleError(f"eta must be a number in [0, 1], got {self.eta}")
        if self.bias not in BIAS_MODES:
            raise RuleError(f"bias must be one of {BIAS_MODES}, got {self.bias!r}")


@dataclass(frozen=True)
class Epsilon:
    """``R_{l<-d} = z_ld / (z_d + eps sign(z_d)) R_d`` (eps = 0: the plain z-rule).

    What ``eps`` absorbs, ``sum_d R_d eps / (|z_d| + eps)``, depends on the
    scale of the pooled values ``z_d``: an l1-normalised BoW histogram of V
    words has ``z_d ~ 1/V``, so ``Epsilon(1.0)`` absorbs nearly everything
    there. With ``relative=True`` the stabiliser is ``eps * mean_d |z_d|``
    (over the dimensions some descriptor reached), the same share of the
    typical pooled value whatever the mapping and normalisation; the absorbed
    relevance is reported as ``Explanation.absorbed`` (docs/math.md, step 2).
    """

    epsilon: float = 0.0
    relative: bool = False

    def __post_init__(self):
        if not (self.epsilon >= 0 and np.isfinite(self.epsilon)):
            raise RuleError(f"epsilon must be a finite number >= 0, got {self.epsilon}")
        if not isinstance(self.relative, (bool, np.bool_)):
            raise RuleError(f"relative must be True or False, got {self.relative!r}")

    def stabiliser(self, pooled: np.ndarray, reached: np.ndarray) -> float:
        """The absolute ``eps`` used for pooled values ``z_d`` (V,)."""
        if not self.relative or self.epsilon == 0:
            return float(self.epsilon)
        typical = np.abs(pooled[reached]).mean() if reached.any() else 0.0
        return float(self.epsilon * typical)


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
                f"AlphaBeta needs alpha - beta = 1 and beta >= 0, got alpha={self.alpha}, beta={self.beta}"
            )


@dataclass(frozen=True)
class AbsZ:
    """Sign-blind baseline ``R_{l<-d} = |z_ld| / sum_l' |z_l'd| R_d``."""


@dataclass(frozen=True)
class WinnerTakeAll:
    """Max pooling: all of ``R_d`` to the descriptor(s) attaining the maximum (ties split)."""


@dataclass(frozen=True)
class Neon:
    """NEON inside the descriptor, for word mappings (docs/neon.md; Kauffmann et al., TNNLS 2022).

    Step 2 as ``rule`` gives it (per descriptor and word ``R_lk``), then on to the
    descriptor's dimensions through the neuralised assignment of descriptor ``x`` to
    word ``k``: detection units ``h_kj(x) = ||x - c_j||^2 - ||x - c_k||^2 = w_kj.x + b_kj``
    for the competitors ``j``, soft-min pooled with stiffness ``beta`` to ``f_k(x)``,
    and the midpoint rule ``R_i = sum_j p_j (x_i - m_kj,i) w_kj,i / h_kj R_lk``
    (``m_kj = (c_k + c_j) / 2``, ``p_j`` the soft-min weights), which conserves
    ``sum_i R_i = R_lk`` per descriptor and word. Read by pixel rules that take
    relevance per descriptor dimension (``Contribution(per_dimension=True)``,
    ``SIFTBins``); with other pixel rules the descriptors get ``rule``'s relevance.

    Parameters
    ----------
    beta : float or None
        Stiffness of the soft-min over competitors. None: a soft assignment's own
        ``beta`` (then ``sigmoid(beta f_k) = m_k`` exactly); for hard and rank
        mappings ``1 / E[f_k(x)]`` over the vocabulary's stored training descriptors.
    rule : Epsilon, AlphaBeta, AbsZ, WinnerTakeAll or None
        The step-2 rule for pooled dimensions to descriptors and words (None: the
        encoder's default). In text, ``neon=rule:absz``.
    """

    beta: float | None = None
    rule: object = None

    def __post_init__(self):
        beta = self.beta
        if isinstance(beta, str):
            beta = None if beta.strip().lower() in ("", "auto", "none") else beta
        if beta is not None:
            try:
                beta = float(beta)
            except (TypeError, ValueError):
                raise RuleError(f"Neon beta must be a number > 0 or None, got {self.beta!r}") from None
            if not (np.isfinite(beta) and beta > 0):
                raise RuleError(f"Neon beta must be a finite number > 0 or None, got {self.beta!r}")
        object.__setattr__(self, "beta", beta)
        rule = self.rule
        if isinstance(rule, str):
            rule = parse_rule(rule)
        if rule is not None and not isinstance(rule, (Epsilon, AlphaBeta, AbsZ, WinnerTakeAll)):
            raise RuleError(
                f"Neon's rule is a step-2 rule (Epsilon, AlphaBeta, AbsZ, WinnerTakeAll), got {rule!r}"
            )
        object.__setattr__(self, "rule", rule)


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
        Relevance per descriptor dimension first (Fisher vectors only); None: when
        the encoder is differentiable in the descriptor. Default False: on the
        Fisher-vector model of ``make compare-experiment`` the per-dimension form
        was far less faithful (AOPC 0.96 against 1.80 per descriptor, uniform noise;
        0.31 against 1.38 under blur), as was ``SIFTBins``.
    through_blur : bool
        Map the weights back through the blurs the extractor applied (exact adjoint).
    epsilon : float
        Stabiliser of the step back through a PCA (per-dimension mode).

    Channels that are not dense SIFT (colour quantiles) stay :class:`Flat`.
    """

    weighting: str = "full"
    per_dimension: bool | None = False
    through_blur: bool = True
    epsilon: float = 0.0

    def __post_init__(self):
        if self.weighting not in ("full", "window", "gradient"):
            raise RuleError(f"weighting must be 'full', 'window' or 'gradient', got {self.weighting!r}")
        if not (self.epsilon >= 0 and np.isfinite(self.epsilon)):
            raise RuleError(f"epsilon must be a finite number >= 0, got {self.epsilon}")


CLASSIFIER_RULES = (Decomposition, Taylor, Neuralized)
DESCRIPTOR_RULES = (Epsilon, AlphaBeta, AbsZ, WinnerTakeAll, Neon)
PIXEL_RULES = (Flat, SIFTBins, Contribution)


_RULE_NAMES = {
    "epsilon": "Epsilon",
    "eps": "Epsilon",
    "alphabeta": "AlphaBeta",
    "ab": "AlphaBeta",
    "absz": "AbsZ",
    "wta": "WinnerTakeAll",
    "winnertakeall": "WinnerTakeAll",
    "flat": "Flat",
    "siftbins": "SIFTBins",
    "decomposition": "Decomposition",
    "taylor": "Taylor",
    "contribution": "Contribution",
    "neuralized": "Neuralized",
    "neuralised": "Neuralized",
    "neon": "Neon",
}


def _rule_classes() -> dict:
    return {c.__name__: c for c in (*CLASSIFIER_RULES, *DESCRIPTOR_RULES, *PIXEL_RULES)}


def _convert(field, value, text: str):
    default = field.default
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise RuleError(f"rule {text!r}: {field.name} must be true or false, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RuleError(f"rule {text!r}: {field.name} must be a number, got {value!r}") from None
        if not np.isfinite(number):
            raise RuleError(f"rule {text!r}: {field.name} must be finite, got {value!r}")
        if isinstance(default, int):
            if number != int(number) or abs(number) > 1_000_000:
                raise RuleError(
                    f"rule {text!r}: {field.name} must be a whole number up to 1000000, got {value!r}"
                )
            return int(number)
        return number
    return value if not isinstance(value, str) else value.strip()


def parse_rule(text: str):
    """A rule from text, spelled as on the command line or as in Python.

    Accepted: ``epsilon=1``, ``epsilon=0.1,relative``, ``alphabeta=2,1`` (or
    ``alphabeta=2``: beta = alpha - 1), ``absz``, ``wta``, ``flat``,
    ``siftbins``, ``decomposition=spread``, ``taylor=50,1e-5``, ``integrated``
    (``integrated=N``: the path-integrated gradient with N nodes), ``contribution``,
    ``neuralized`` (``neuralized-gi``, ``neuralized=hybrid,0.2``), ``neon`` (``neon=0.5``:
    beta; ``neon=rule:absz``),
    ``name=field:value,...``, and the Python spelling of the README,
    ``Epsilon(1.0)``, ``Decomposition(bias="spread")``, ``AlphaBeta(2, 1)``
    (read as literals; nothing is evaluated).

    Raises
    ------
    RuleError
        Unknown rule, wrong arguments; one line.
    """
    raw = str(text).strip()
    classes = _rule_classes()
    args: list = []
    kwargs: dict = {}
    if raw.endswith(")") and "(" in raw:
        try:
            node = ast.parse(raw, mode="eval").body
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                raise ValueError
            name = node.func.id
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except (SyntaxError, ValueError, TypeError):
            raise RuleError(f"cannot read the rule {text!r}; write e.g. Epsilon(1.0) or epsilon=1") from None
        cls_name = name if name in classes else _RULE_NAMES.get(name.lower())
    else:
        name, _, arg = raw.partition("=")
        name, dash, variant = name.strip().lower().partition("-")
        if dash and variant:  # contribution-gradient: the first field given after a dash
            arg = f"{variant},{arg}" if arg else variant
        cls_name = _RULE_NAMES.get(name)
        if name == "integrated":  # integrated or integrated=N: the path-integrated gradient
            nodes = _convert(
                next(f for f in dataclasses.fields(Taylor) if f.name == "nodes"), arg.strip() or 16, text
            )
            try:
                return integrated_gradient(nodes)
            except RuleError:
                raise
            except Exception as exc:
                raise RuleError(f"rule {text!r}: {exc}") from None
        for item in (v.strip() for v in arg.split(",")) if arg else []:
            if not item:
                continue
            key, sep, value = item.partition(":")
            if sep:
                kwargs[key.strip()] = value.strip()
            else:
                args.append(item)
    if cls_name is None:
        raise RuleError(
            f"unknown rule {text!r}; try epsilon=1, alphabeta=2,1, absz, wta, flat, "
            "siftbins, contribution, decomposition, taylor, integrated, neuralized, neon"
        )
    cls = classes[cls_name]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    by_name = {f.name: f for f in fields}
    values: dict = {}
    positional = []
    for a in args:  # a bare word naming a boolean field switches it on (epsilon=0.1,relative)
        if isinstance(a, str) and a in by_name and isinstance(by_name[a].default, bool):
            values[a] = True
        else:
            positional.append(a)
    if len(positional) > len(fields):
        raise RuleError(
            f"rule {text!r} takes at most {len(fields)} values "
            f"({', '.join(f.name for f in fields) or 'none'})"
        )
    for f, a in zip(fields, positional):
        values[f.name] = _convert(f, a, text)
    for key, a in kwargs.items():
        if key not in by_name:
            raise RuleError(
                f"rule {text!r}: {cls_name} has no parameter {key!r} (it has {', '.join(by_name) or 'none'})"
            )
        values[key] = _convert(by_name[key], a, text)
    if cls is AlphaBeta and list(values) == ["alpha"]:
        values["beta"] = values["alpha"] - 1.0
    try:
        return cls(**values)
    except RuleError:
        raise
    except Exception as exc:
        raise RuleError(f"rule {text!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None


def require(rule, allowed: tuple, stage: str):
    """Raise RuleError unless ``rule`` is an instance of one of ``allowed``."""
    if not isinstance(rule, allowed):
        names = ", ".join(c.__name__ for c in allowed)
        raise RuleError(f"{stage} does not support the rule {rule!r}; use one of: {names}")
    return rule
