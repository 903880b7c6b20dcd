"""Complexity: how concentrated is a map? Sparseness (Gini) and complexity (entropy), no model.

For a map ``R`` with ``n`` pixels and ``a = |R|`` sorted ascending (``a_(1) <= ... <= a_(n)``):

* sparseness (Chalasani et al. 2020), the Gini index::

      G = sum_i (2 i - n - 1) a_(i) / (n sum_i a_(i))      in [0, 1 - 1/n], higher is sparser

* complexity (Bhatt et al. 2020), the entropy of the relevance distribution::

      p = a / sum a,   C = -sum_i p_i log p_i             in [0, log n], lower is simpler

Both use ``|R|`` (Quantus's default ``abs=True``): a large negative relevance is as
much "evidence" as a positive one. Quantus's defaults also max-normalise the map
first, which neither metric notices. Quantus adds ``1e-7`` to every ``a`` before
the Gini index (so an all-zero map gets 0, not 0 / 0), and computes
``p log(p + 1e-12)``; bowlrp's values are exact, and a map without relevance
(``sum a = 0``) gets NaN: it is neither sparse nor dense. On max-normalised maps
the two agree to ~1e-7 (``tests/test_quantus_agreement.py``).
"""

from __future__ import annotations

import numpy as np

from .results import MetricResult


def _abs_flat(maps) -> list[np.ndarray]:
    return [np.abs(np.asarray(m, dtype=np.float64)).ravel() for m in maps]


def gini(a: np.ndarray) -> float:
    """Gini index of non-negative values ``a`` (1-D); NaN if they sum to zero."""
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    n, total = a.size, a.sum()
    if total == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * a).sum() / (n * total))


def entropy(a: np.ndarray) -> float:
    """Shannon entropy (nats) of non-negative ``a`` normalised to sum 1 (0 log 0 = 0); NaN for a zero sum."""
    a = np.asarray(a, dtype=np.float64).ravel()
    total = a.sum()
    if total == 0:
        return float("nan")
    p = a[a > 0] / total
    return float(-(p * np.log(p)).sum())


def sparseness(maps, method: str | None = None) -> MetricResult:
    """Gini index of ``|R|`` per map (higher is better: sparser maps are easier to read)."""
    return MetricResult(
        "sparseness", np.array([gini(a) for a in _abs_flat(maps)]), True, {"abs": True}, method
    )


def complexity(maps, method: str | None = None) -> MetricResult:
    """Entropy of ``|R| / sum |R|`` per map in nats (lower is better: fewer pixels carry the relevance)."""
    return MetricResult(
        "complexity", np.array([entropy(a) for a in _abs_flat(maps)]), False, {"abs": True}, method
    )


#: every complexity metric by name (``maps -> MetricResult``)
COMPLEXITY_METRICS = {"sparseness": sparseness, "complexity": complexity}
