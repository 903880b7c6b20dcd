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

**Cost.** A randomisation check compares each image's original map with one map
per randomised layer, so each measure is split into the features of one map
(:attr:`Measure.features`: the ranks; SSIM's local means and variances; the HOG
vector), computed once per map, and a cheap comparison of two maps' features
(:attr:`Measure.compare`). The ranks are one ``argsort`` (ties take the mean of
their ranks, so the order among them does not matter); SSIM filters each map
twice (mean and mean of squares) and a pair once (mean of the product), where
scikit-image's ``structural_similarity`` filters five times per pair; the HOG
cell histograms are a Numba pass and the block normalisation one vectorised step
over all blocks (scikit-image's ``hog`` normalises block by block in Python,
two thirds of its time on a 102-pixel map). The numbers are scikit-image's and SciPy's
(``tests/test_randomisation.py`` keeps their plain calls as references, to
1e-12): the HOG histograms accumulate in float32 as scikit-image's Cython kernel
does, cell by cell in the same pixel order.

SSIM and HOG are scikit-image's definitions (0.26) and, as before, are computed
only when scikit-image is installed (the optional ``[compare]`` extra,
``pip install "bowlrp[compare]"``); the Spearman measures need only SciPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.ndimage import uniform_filter

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
    """Average ranks (1..n, ties sharing the mean of their ranks) of a map's pixels, float64 (n,).

    SciPy's ``rankdata(method="average")``: sort once; a run of equal values at sorted
    positions ``s .. e - 1`` (0-based) gets ``(s + 1 + e) / 2``.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    ranks = np.empty(x.size)
    if x.size:
        _average_ranks(x, np.argsort(x), ranks)  # any sort: tied values share one rank, whatever their order
    return ranks


@njit(cache=True)
def _average_ranks(x, order, out):  # pragma: no cover - Numba
    """``out[order[k]]`` = the mean 1-based sorted position of the run of equal values at k."""
    n = x.size
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and x[order[stop]] == x[order[start]]:
            stop += 1
        rank = (start + stop + 1) / 2.0
        for k in range(start, stop):
            out[order[k]] = rank
        start = stop


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
    """Structural similarity of ``|a| / max|a|`` and ``|b| / max|b|`` (scikit-image's definition).

    ``SSIM = (2 mu_a mu_b + c1)(2 s_ab + c2) / ((mu_a^2 + mu_b^2 + c1)(s_a^2 + s_b^2 + c2))``
    with the means, sample variances and covariance over 7 x 7 windows (smaller odd
    windows for maps under 7 pixels a side; ``scipy.ndimage.uniform_filter``, reflected
    at the border), ``c1 = (0.01)^2``, ``c2 = (0.03)^2`` (data range 1), averaged over
    the pixels at least half a window from the border. Maps need at least 3 pixels a side.
    """
    a, b = _pair(a, b)
    return _ssim_compare(ssim_features(a), ssim_features(b))


@dataclass(frozen=True)
class SSIMFeatures:
    """What SSIM needs of one map: ``|R| / max|R|``, its local means and sample variances.

    Attributes
    ----------
    unit : ndarray (H, W)
        ``|R| / max|R|``.
    mean : ndarray (H, W)
        ``mu = uniform_filter(unit, w)``.
    variance : ndarray (H, W)
        ``w^2 / (w^2 - 1) * (uniform_filter(unit^2, w) - mu mu)``.
    window : int
        ``w``.
    """

    unit: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    window: int


def _ssim_window(shape: tuple[int, ...]) -> int:
    side = min(shape)
    if side < 3:
        raise ValueError(f"SSIM needs maps of at least 3 x 3 pixels, got {shape}")
    return min(7, side if side % 2 else side - 1)


def ssim_features(a) -> SSIMFeatures:
    """The per-map statistics of SSIM (:class:`SSIMFeatures`), in scikit-image's arithmetic."""
    unit = _unit_magnitude(a)
    w = _ssim_window(unit.shape)
    cov_norm = w * w / (w * w - 1)
    mean = uniform_filter(unit, size=w)
    square = uniform_filter(unit * unit, size=w)
    return SSIMFeatures(unit, mean, cov_norm * (square - mean * mean), w)


def _ssim_compare(fa: SSIMFeatures, fb: SSIMFeatures) -> float:
    """SSIM of two maps from their statistics: one more filter (of the product) per pair."""
    if fa.unit.shape != fb.unit.shape:
        raise ValueError(
            f"maps must be two (H, W) arrays of one shape, got {fa.unit.shape} and {fb.unit.shape}"
        )
    w = fa.window
    cov_norm = w * w / (w * w - 1)
    ux, uy = fa.mean, fb.mean
    vxy = cov_norm * (uniform_filter(fa.unit * fb.unit, size=w) - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, fa.variance + fb.variance + c2
    s = (a1 * a2) / (b1 * b2)
    pad = (w - 1) // 2
    inner = s[pad : s.shape[0] - pad, pad : s.shape[1] - pad]
    return float(inner.mean(dtype=np.float64))


#: HOG's settings: orientation bins, cells per block (a side), the L2-Hys clip and epsilon
HOG_ORIENTATIONS, HOG_BLOCK, HOG_CLIP, HOG_EPS = 9, 2, 0.2, 1e-5


@njit(cache=True)
def _hog_cells(magnitude, orientation, cell, n_rows, n_cols, n_bins, out):  # pragma: no cover - Numba
    """Cell histograms ``out[r, c, i]``: the mean over the cell's pixels of the magnitude of
    those whose orientation (degrees, [0, 180)) is in ``[180 i / n_bins, 180 (i + 1) / n_bins)``.

    As scikit-image's ``hog_histograms`` (0.26): cell (r, c) is the pixels
    ``r cell .. r cell + cell - 1`` (rows; columns alike; the offsets
    ``-(cell // 2) .. (cell + 1) // 2 - 1`` around ``cell // 2 + r cell``), each sum
    accumulates in float32 in row-major pixel order and is divided by ``cell^2`` in float32.
    """
    height, width = magnitude.shape
    half, stop = cell // 2, (cell + 1) // 2
    area = np.float32(cell * cell)
    per_bin = 180.0 / n_bins
    totals = np.zeros(n_bins, dtype=np.float32)
    # one pass over each cell's pixels in row-major order; each bin's sum sees its pixels in
    # that order, as scikit-image's one pass per bin does
    for yi in range(n_rows):
        y = half + yi * cell
        for xi in range(n_cols):
            x = half + xi * cell
            totals[:] = 0.0
            for dy in range(-half, stop):
                r = y + dy
                if r < 0 or r >= height:
                    continue
                for dx in range(-half, stop):
                    c = x + dx
                    if c < 0 or c >= width:
                        continue
                    o = orientation[r, c]
                    for i in range(n_bins):  # the bin with end <= o < start (none for o = 180)
                        if o < per_bin * (i + 1) and o >= per_bin * i:
                            totals[i] = np.float32(np.float64(totals[i]) + magnitude[r, c])
                            break
            for i in range(n_bins):
                out[yi, xi, i] = totals[i] / area


def hog_features(a) -> np.ndarray:
    """HOG features of ``|a| / max|a|`` (scikit-image's ``hog`` definition), flattened.

    9 orientations, cells of ``min(8, side // 2)`` pixels, 2 x 2 cell blocks, L2-Hys:
    central differences ``g_r, g_c`` (0 on the border rows / columns), magnitude
    ``hypot(g_c, g_r)``, orientation ``atan2(g_r, g_c)`` in degrees modulo 180, the cell
    histograms of the magnitude per orientation bin (:func:`_hog_cells`), and for every
    block ``v`` (its 2 x 2 cells' histograms):
    ``v <- v / sqrt(|v|^2 + eps^2)``, ``v <- min(v, 0.2)``, ``v <- v / sqrt(|v|^2 + eps^2)``.
    Maps need 4 pixels a side. Returns shape (blocks_r * blocks_c * 2 * 2 * 9,).
    """
    unit = _unit_magnitude(a)
    side = min(unit.shape)
    if side < 4:
        raise ValueError(f"HOG similarity needs maps of at least 4 x 4 pixels, got {unit.shape}")
    cell = min(8, side // 2)
    g_row = np.zeros_like(unit)
    g_row[1:-1, :] = unit[2:, :] - unit[:-2, :]
    g_col = np.zeros_like(unit)
    g_col[:, 1:-1] = unit[:, 2:] - unit[:, :-2]
    magnitude = np.hypot(g_col, g_row)
    orientation = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    n_rows, n_cols = unit.shape[0] // cell, unit.shape[1] // cell
    cells = np.zeros((n_rows, n_cols, HOG_ORIENTATIONS))
    _hog_cells(magnitude, orientation, cell, n_rows, n_cols, HOG_ORIENTATIONS, cells)
    k = HOG_BLOCK
    out = np.empty((n_rows - k + 1, n_cols - k + 1, k, k, HOG_ORIENTATIONS))
    _hog_blocks(cells, k, HOG_CLIP, HOG_EPS, out)
    return out.ravel()


@njit(cache=True)
def _hog_blocks(cells, k, clip, eps, out):  # pragma: no cover - Numba
    """L2-Hys of every block of ``k x k`` cells: ``out[r, c]`` from ``cells[r : r + k, c : c + k]``."""
    b_rows, b_cols = out.shape[0], out.shape[1]
    n_bins = cells.shape[2]
    for r in range(b_rows):
        for c in range(b_cols):
            block = out[r, c]
            total = 0.0
            for dr in range(k):
                for dc in range(k):
                    for i in range(n_bins):
                        v = cells[r + dr, c + dc, i]
                        block[dr, dc, i] = v
                        total += v * v
            scale = np.sqrt(total + eps * eps)
            total = 0.0
            for dr in range(k):
                for dc in range(k):
                    for i in range(n_bins):
                        v = min(block[dr, dc, i] / scale, clip)
                        block[dr, dc, i] = v
                        total += v * v
            scale = np.sqrt(total + eps * eps)
            for dr in range(k):
                for dc in range(k):
                    for i in range(n_bins):
                        block[dr, dc, i] /= scale


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
    "ssim": Measure("ssim", ssim_features, _ssim_compare),
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
