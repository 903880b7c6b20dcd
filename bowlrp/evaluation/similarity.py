"""Similarity of two relevance maps, for the randomisation sanity checks (Adebayo et al. 2018).

Every measure takes two maps of the same shape (H, W) and returns one number,
1 for maps that agree (the original map compared with itself) and about 0 for
unrelated maps:

* ``spearman``: Spearman rank correlation of ``|R|`` (the default of the checks,
  as in Adebayo et al.'s "absolute value" maps and Quantus 0.6's MPRT, ``abs=True``);
* ``spearman-signed``: Spearman rank correlation of the signed relevance ``R``
  (a map that only changes sign scores -1 here and 1 on ``spearman``);
* ``ssim``: structural similarity (scikit-image's ``structural_similarity``,
  7 x 7 uniform window) of ``|R| / max |R|`` of each map (data range 1);
* ``hog``: Pearson correlation of the histograms of oriented gradients
  (scikit-image's ``hog``: 9 orientations, cells of ``min(8, side // 2)``
  pixels, blocks of 2 x 2 cells) of ``|R| / max |R|`` of each map.

The rank and Pearson correlations are undefined for a constant map (no ranks,
no variance). They are defined here as 1 when both maps are constant (nothing
tells them apart) and 0 when only one is (no rank information is shared), so a
check never averages NaN.

SSIM and HOG need scikit-image (the optional ``[compare]`` extra,
``pip install "bowlrp[compare]"``); the Spearman measures need only SciPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

#: The measures by name; each is ``f(a, b) -> float`` on two (H, W) maps.
SIMILARITY_NAMES = ("spearman", "spearman-signed", "ssim", "hog")


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"maps must be two (H, W) arrays of one shape, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("maps hold NaN or infinite values")
    return a, b


def _constant_case(a: np.ndarray, b: np.ndarray) -> float | None:
    """1 if both arrays are constant, 0 if one is, None if neither (a correlation exists)."""
    ca = a.size == 0 or np.all(a == a.flat[0])
    cb = b.size == 0 or np.all(b == b.flat[0])
    if ca and cb:
        return 1.0
    if ca or cb:
        return 0.0
    return None


def rank_features(a) -> np.ndarray:
    """Average ranks (1..n, ties sharing the mean of their ranks) of a map's pixels, float64 (n,)."""
    return rankdata(np.asarray(a, dtype=np.float64).ravel())


def spearman_signed(a, b) -> float:
    """Spearman rank correlation of the signed maps, ``rho(rank(a), rank(b))`` over pixels.

    The Pearson correlation of the average ranks (ties take the mean of their
    ranks), as SciPy's ``spearmanr``. Parameters: two (H, W) maps; returns a float
    in [-1, 1].
    """
    a, b = _pair(a, b)
    return pearson(rank_features(a), rank_features(b))


def spearman(a, b) -> float:
    """Spearman rank correlation of ``|a|`` and ``|b|`` (magnitudes, signs ignored)."""
    a, b = _pair(a, b)
    return pearson(rank_features(np.abs(a)), rank_features(np.abs(b)))


def _unit_magnitude(a: np.ndarray) -> np.ndarray:
    """``|a| / max |a|`` in [0, 1] (a zero map stays zero)."""
    m = np.abs(np.asarray(a, dtype=np.float64))
    top = float(m.max()) if m.size else 0.0
    return m / top if top > 0 else m


def ssim(a, b) -> float:
    """Structural similarity of ``|a| / max|a|`` and ``|b| / max|b|`` (scikit-image).

    ``SSIM = (2 mu_a mu_b + c1)(2 s_ab + c2) / ((mu_a^2 + mu_b^2 + c1)(s_a^2 + s_b^2 + c2))``
    averaged over 7 x 7 windows (smaller odd windows for maps under 7 pixels a
    side), data range 1. Maps need at least 3 pixels a side.
    """
    a, b = _pair(a, b)
    return _ssim_of_units(_unit_magnitude(a), _unit_magnitude(b))


def _ssim_of_units(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity  # optional: the [compare] extra

    side = min(a.shape)
    if side < 3:
        raise ValueError(f"SSIM needs maps of at least 3 x 3 pixels, got {a.shape}")
    window = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, win_size=window, data_range=1.0))


def hog_features(a) -> np.ndarray:
    """HOG features of ``|a| / max|a|``: 9 orientations, cells of ``min(8, side // 2)`` pixels,
    2 x 2 cell blocks (L2-Hys), flattened (scikit-image's ``hog``). Maps need 4 pixels a side."""
    a = np.asarray(a, dtype=np.float64)
    from skimage.feature import hog  # optional: the [compare] extra

    side = min(a.shape)
    if side < 4:
        raise ValueError(f"HOG similarity needs maps of at least 4 x 4 pixels, got {a.shape}")
    cell = min(8, side // 2)
    return hog(
        _unit_magnitude(a),
        orientations=9,
        pixels_per_cell=(cell, cell),
        cells_per_block=(2, 2),
        feature_vector=True,
    )


def pearson(u, v) -> float:
    """Pearson correlation of two vectors (1 if both constant, 0 if one is)."""
    u = np.asarray(u, dtype=np.float64).ravel()
    v = np.asarray(v, dtype=np.float64).ravel()
    fixed = _constant_case(u, v)
    if fixed is not None:
        return fixed
    u = u - u.mean()
    v = v - v.mean()
    return float(np.clip(u @ v / np.sqrt((u @ u) * (v @ v)), -1.0, 1.0))


def hog_similarity(a, b) -> float:
    """Pearson correlation of the HOG features of two maps (Adebayo et al. 2018, section 4)."""
    a, b = _pair(a, b)
    return pearson(hog_features(a), hog_features(b))


@dataclass(frozen=True)
class Measure:
    """A similarity as ``compare(features(a), features(b))``: the features of a map are
    computed once and reused against every map it is compared with (the original map
    of a randomisation check meets one map per layer)."""

    name: str
    features: Callable[[np.ndarray], object]
    compare: Callable[[object, object], float]

    def __call__(self, a, b) -> float:
        a, b = _pair(a, b)
        return self.compare(self.features(a), self.features(b))


_MEASURES = {
    "spearman": Measure("spearman", lambda a: rank_features(np.abs(a)), pearson),
    "spearman-signed": Measure("spearman-signed", rank_features, pearson),
    "ssim": Measure("ssim", _unit_magnitude, _ssim_of_units),
    "hog": Measure("hog", hog_features, pearson),
}


def similarity_function(name: str) -> Measure:
    """The measure named ``name`` (one of :data:`SIMILARITY_NAMES`); ValueError otherwise.

    A :class:`Measure` is called as ``f(a, b)`` on two (H, W) maps."""
    if name not in _MEASURES:
        raise ValueError(f"unknown similarity {name!r}; choose from {', '.join(SIMILARITY_NAMES)}")
    return _MEASURES[name]


def scikit_image_available() -> bool:
    """Whether scikit-image (SSIM, HOG) can be imported."""
    try:
        import skimage.feature  # noqa: F401 - optional: the [compare] extra
        import skimage.metrics  # noqa: F401
    except ImportError:
        return False
    return True
