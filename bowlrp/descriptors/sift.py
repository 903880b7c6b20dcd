"""Dense SIFT on a regular grid with exact pixel geometry (OpenCV or VLFeat backend).

Geometry (``b`` = bin size in pixels, ``c`` = descriptor centre):

* One descriptor is a 4x4 grid of spatial bins x 8 orientations (128 values
  per colour channel). Its nominal patch is the square ``[c - 2b, c + 2b]``
  (side ``4b``); with ``support="full"`` the area is ``[c - 2.5b, c + 2.5b]``,
  the reach of the bilinear bin weights (VLFeat: exactly the pixels whose
  value changes the descriptor, checked in the tests).
* Centres: for all bin sizes one shared grid per step, starting at
  ``floor(1.5 (b_max - b)) + 1.5 b`` as VLFeat's ``phow`` does, ending at
  ``H - 1 - 1.5 b`` (rows; columns alike). The OpenCV backend rounds centres
  down to whole pixels (OpenCV rounds keypoints itself).
* OpenCV: ``KeyPoint(x, y, size=2b/3, angle)``, whose bin width is
  ``1.5 size = b``. OpenCV describes keypoints on its base image, smoothed to
  sigma 1.6 on top of any ``smooth`` pre-smoothing, so a pixel influences
  descriptors somewhat beyond the full support.
* Rotation (``rotate=True``, OpenCV only): each grid point gets the dominant
  gradient orientation ``t`` of a 36-bin histogram of ``atan2(dI/drow, dI/dcol)``
  weighted by gradient magnitude and a Gaussian of sigma ``b/2``; the support
  is then the square rotated by ``t`` (pixel test in ``geometry``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from joblib import Parallel, delayed
from numba import njit
from sklearn.base import BaseEstimator, TransformerMixin

from .._utils.fitted import refuse
from .._utils.validation import as_float_image, as_image_list
from ..exceptions import ImageError, ModelFileError, RuleError
from ..rules import Contribution, SIFTBins
from ._color import COLOR_MODES, color_channels, to_grey
from .base import ExtractorMixin
from .contribution import contribution
from .geometry import ROTATED_SQUARE, SIFT_DIMENSIONS, SQUARE, Descriptors
from .pixel_rules import sift_bins

BACKENDS = ("auto", "vlfeat", "opencv")
#: Largest bin size, and smoothing scale ``bin size / magnification``, a loaded model may ask
#: for (the papers use 4 to 10 pixels; a model file is data from strangers)
MAX_BIN_SIZE = 1024.0
OPENCV_BASE_SIGMA = float(np.sqrt(1.6**2 - 0.5**2))  # SIFT's base blur, no upsampling


def vlfeat_available() -> bool:
    """Whether cyvlfeat (VLFeat) can be imported."""
    try:
        import cyvlfeat.sift  # noqa: F401 - optional: the [vlfeat] extra
    except Exception:
        return False
    return True


def grid_centers(length: int, bin_size: float, step: int, max_bin_size: float) -> np.ndarray:
    """Descriptor centres along one axis of ``length`` pixels (VLFeat phow convention)."""
    start = math.floor(1.5 * (max_bin_size - bin_size)) + 1.5 * bin_size
    stop = length - 1 - 1.5 * bin_size
    if stop < start - 1e-9:
        return np.empty(0)
    return start + step * np.arange(int(math.floor((stop - start) / step + 1e-9)) + 1)


@njit(cache=True)
def _reflect101(i: int, n: int) -> int:
    """OpenCV's default border (``BORDER_REFLECT_101``): ... 2 1 | 0 1 2 ... n-1 | n-2 ..."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    return period - i if i > n - 1 else i


@njit(cache=True)
def _orientation_histograms(magnitude, lower, frac, rows, cols, kernel, n_bins):
    """``hist[p, k] = sum_(r, c) k(r - r_p) k(c - c_p) m(r, c) o_k(r, c)`` (reflect-101 borders).

    The Gaussian-smoothed soft orientation maps read at the points only: the value
    ``GaussianBlur(m o_k)[r_p, c_p]`` without blurring whole maps.
    """
    H, W = magnitude.shape
    half = kernel.size // 2
    hist = np.zeros((rows.size, n_bins))
    for p in range(rows.size):
        for dr in range(-half, half + 1):
            r = _reflect101(rows[p] + dr, H)
            kr = kernel[dr + half]
            for dc in range(-half, half + 1):
                c = _reflect101(cols[p] + dc, W)
                w = kr * kernel[dc + half] * magnitude[r, c]
                k = lower[r, c]
                f = frac[r, c]
                hist[p, k] += w * (1.0 - f)
                hist[p, (k + 1) % n_bins] += w * f
    return hist


def orientation_histograms(
    grey: np.ndarray, rows: np.ndarray, cols: np.ndarray, bin_size: float, n_bins: int = 36
) -> np.ndarray:
    """Gradient-orientation histograms at integer points, shape (n, n_bins), float64.

    The gradient angle ``atan2(dI/drow, dI/dcol)`` (image coordinates, rows down) is
    soft-binned into ``n_bins`` bins weighted by the gradient magnitude ``m``, and
    each bin's map ``m o_k`` is smoothed by a Gaussian of sigma ``b/2`` (1.5 x the
    keypoint sigma ``b/3``; OpenCV's kernel and reflect-101 border) and read at the
    points: ``hist[p, k] = sum_q G(q - p) m(q) o_k(q)``, evaluated at the points only.
    """
    img = grey.astype(np.float32)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=1) * 0.5
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=1) * 0.5
    magnitude = np.hypot(gx, gy)
    position = (np.arctan2(gy, gx) % (2 * np.pi)) * (n_bins / (2 * np.pi))
    lower = np.floor(position).astype(np.int64) % n_bins
    frac = (position - np.floor(position)).astype(np.float32)
    sigma = 0.5 * bin_size
    kernel = cv2.getGaussianKernel(int(round(8 * sigma + 1)) | 1, sigma, cv2.CV_64F).ravel()
    return _orientation_histograms(
        magnitude,
        lower,
        frac,
        np.asarray(rows, dtype=np.int64),
        np.asarray(cols, dtype=np.int64),
        kernel,
        n_bins,
    )


def dominant_orientations(
    grey: np.ndarray, rows: np.ndarray, cols: np.ndarray, bin_size: float, n_bins: int = 36
) -> np.ndarray:
    """Dominant gradient orientation (radians) at integer points, as SIFT's detector does.

    The :func:`orientation_histograms` at the points, circularly smoothed with
    [1, 4, 6, 4, 1]/16, and the peak refined by a parabola.
    """
    hist = orientation_histograms(grey, rows, cols, bin_size, n_bins)
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16
    smooth = sum(kernel[j] * np.roll(hist, j - 2, axis=1) for j in range(5))
    peak = np.argmax(smooth, axis=1)
    idx = np.arange(rows.size)
    left = smooth[idx, (peak - 1) % n_bins]
    right = smooth[idx, (peak + 1) % n_bins]
    centre = smooth[idx, peak]
    denom = left - 2 * centre + right
    offset = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0)
    return ((peak + offset) * (2 * np.pi / n_bins)) % (2 * np.pi)


@njit(cache=True)
def _gradient_maps(base, opencv, angles, mag, ang):
    """Gradient magnitude and angle of one float32 channel in one pass, written into ``mag``
    and (when ``angles``) ``ang``, both (H, W) float64.

    With ``I`` = ``base`` (H, W) read as float64, rows ``r`` and columns ``c``:

    * OpenCV (``opencv=True``): ``gx = I[r, c+1] - I[r, c-1]`` for ``1 <= c <= W-2``,
      ``gy = I[r-1, c] - I[r+1, c]`` for ``1 <= r <= H-2`` (rows up), 0 elsewhere, so
      the outer ring keeps its one existing difference;
    * VLFeat (``opencv=False``): ``np.gradient`` along each axis, ``gx = (I[r, c+1] -
      I[r, c-1]) / 2`` inside, ``I[r, 1] - I[r, 0]`` and ``I[r, W-1] - I[r, W-2]`` at the
      border (0 when ``W == 1``), ``gy`` alike down the rows (rows down);

    ``mag = hypot(gx, gy)``; ``ang = atan2(gy, gx) mod 2 pi`` when ``angles`` (else
    ``ang`` is not touched). Same operations in the same order as the NumPy expressions
    :meth:`DenseSIFT.gradient_maps` ran before this kernel (libm ``hypot`` and ``atan2``),
    so bit for bit the same, without their four (H, W) temporaries. The libm ``hypot``
    call is most of the cost (2.8 ms of a 375 x 500 tile; ``sqrt(gx * gx + gy * gy)``
    takes 0.15 ms but differs from it by one unit in the last place on 1.6 % of its pixels).
    """
    height, width = base.shape
    two_pi = 2.0 * np.pi
    for r in range(height):
        for c in range(width):
            gx = 0.0
            gy = 0.0
            if opencv:
                if 1 <= c <= width - 2:
                    gx = np.float64(base[r, c + 1]) - np.float64(base[r, c - 1])
                if 1 <= r <= height - 2:
                    gy = np.float64(base[r - 1, c]) - np.float64(base[r + 1, c])
            else:
                if width > 1:
                    if c == 0:
                        gx = np.float64(base[r, 1]) - np.float64(base[r, 0])
                    elif c == width - 1:
                        gx = np.float64(base[r, c]) - np.float64(base[r, c - 1])
                    else:
                        gx = (np.float64(base[r, c + 1]) - np.float64(base[r, c - 1])) / 2.0
                if height > 1:
                    if r == 0:
                        gy = np.float64(base[1, c]) - np.float64(base[0, c])
                    elif r == height - 1:
                        gy = np.float64(base[r, c]) - np.float64(base[r - 1, c])
                    else:
                        gy = (np.float64(base[r + 1, c]) - np.float64(base[r - 1, c])) / 2.0
            mag[r, c] = math.hypot(gx, gy)
            if angles:
                ang[r, c] = math.atan2(gy, gx) % two_pi


class DenseSIFT(ExtractorMixin, TransformerMixin, BaseEstimator):
    """Dense SIFT descriptors on a regular grid at one or several bin sizes.

    Parameters
    ----------
    bin_sizes : sequence of float
        SIFT spatial bin sizes ``b`` in pixels (nominal patch side ``4b``).
        Scale ``sigma`` in the papers' sense is ``b/3``.
    steps : int or sequence of int
        Grid step in pixels, one per bin size or one for all.
    color : {"grey", "opponent", "rgb"}
        Channels described; descriptors of one location are concatenated
        (``D = 128 * n_channels``).
    backend : {"auto", "vlfeat", "opencv"}
        ``auto`` uses VLFeat when cyvlfeat is installed and the options allow
        it (no rotation), else OpenCV. The resolved backend is ``backend_``.
    rotate : bool
        Rotate each descriptor to the dominant gradient orientation (OpenCV).
    smooth : bool
        Pre-smooth with ``sigma = sqrt((b / magnification)^2 - 1/4)`` before
        each bin size, as VLFeat's ``phow``.
    magnification : float
        Ratio bin size / smoothing sigma for ``smooth``.
    support : {"nominal", "full"}
        Which pixel set is recorded as ``area(l)``: the ``4b`` square or the
        ``5b`` reach of the bilinear bin weights.
    fast : bool
        VLFeat's fast (flat-window) dsift.
    n_jobs : int or None
        Images described in parallel (joblib).

    Notes
    -----
    ``forward(images) -> (descriptors, traces)`` and ``relevance(R, trace,
    rule, image=None)`` (``Flat``, ``SIFTBins`` or ``Contribution``) make this
    layer 2 of the relevance pass; see
    :class:`~bowlrp.descriptors.base.ExtractorMixin`.
    """

    pixel_rules = (SIFTBins, Contribution)

    def __init__(
        self,
        bin_sizes: Sequence[float] = (4, 6, 8, 10),
        steps: int | Sequence[int] = 3,
        color: str = "grey",
        backend: str = "auto",
        rotate: bool = False,
        smooth: bool = True,
        magnification: float = 6.0,
        support: str = "nominal",
        fast: bool = True,
        n_jobs: int | None = None,
    ):
        self.bin_sizes = bin_sizes
        self.steps = steps
        self.color = color
        self.backend = backend
        self.rotate = rotate
        self.smooth = smooth
        self.magnification = magnification
        self.support = support
        self.fast = fast
        self.n_jobs = n_jobs

    # -- sklearn API -------------------------------------------------------
    def fit(self, X=None, y=None):
        """Check the parameters and resolve the backend (no learning)."""
        self._check_params()
        if self.backend == "auto":
            self.backend_ = "vlfeat" if (vlfeat_available() and not self.rotate) else "opencv"
        else:
            self.backend_ = self.backend
        if self.backend_ == "vlfeat" and not vlfeat_available():
            raise ImportError(
                "backend='vlfeat' needs cyvlfeat: install the [vlfeat] extra (make install as root)"
            )
        if self.backend_ == "vlfeat" and self.rotate:
            raise ValueError("rotate=True is implemented with backend='opencv' only")
        return self

    def transform(self, X) -> list[Descriptors]:
        """Describe each image. ``X``: one image or a list (arrays or paths)."""
        if not hasattr(self, "backend_"):
            self.fit()
        images = as_image_list(X)
        if self.n_jobs in (None, 1) or len(images) < 2:
            return [self.describe(im) for im in images]
        return Parallel(n_jobs=self.n_jobs)(delayed(self.describe)(im) for im in images)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        return tags

    #: ``transform`` fits a SIFT extractor itself; ``backend_`` marks a fitted one
    _fitted_marker = "backend_"

    def _check_fitted_parameters(self, checked) -> None:
        """Finite bin sizes and magnification with ``bin size`` and ``bin size / magnification``
        at most :data:`MAX_BIN_SIZE`, and ``backend_`` one of the implemented backends
        (``backend`` itself unless "auto")."""
        sizes, _ = checked
        try:
            magnification = float(self.magnification)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ModelFileError(f"{type(self).__name__} parameters are invalid: {exc}") from None
        if not all(math.isfinite(b) and b <= MAX_BIN_SIZE for b in sizes):
            raise refuse(self, "bin_sizes", f"must be finite and at most {MAX_BIN_SIZE:g}")
        if not (
            math.isfinite(magnification) and magnification > 0 and max(sizes) / magnification <= MAX_BIN_SIZE
        ):
            raise refuse(self, "magnification", f"must be finite and >= max(bin_sizes) / {MAX_BIN_SIZE:g}")
        backend = self.__dict__["backend_"]
        if backend not in ("vlfeat", "opencv") or self.backend not in ("auto", backend):
            raise refuse(self, "backend_", f"is {backend!r}, not a backend for backend={self.backend!r}")
        if backend == "vlfeat" and self.rotate:
            raise refuse(self, "backend_", "is 'vlfeat' but rotate=True needs 'opencv'")

    def output_dimension(self) -> int:
        """Descriptor dimension ``D = 128 * n_channels`` of this colour mode."""
        return SIFT_DIMENSIONS * (1 if self.color in ("grey", "gray") else 3)

    # -- work ----------------------------------------------------------------
    def _check_params(self) -> tuple[list[float], list[int]]:
        sizes = [float(b) for b in np.atleast_1d(self.bin_sizes)]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"bin_sizes must be >= 1 pixel, got {self.bin_sizes}")
        steps = [int(s) for s in np.atleast_1d(self.steps)]
        if len(steps) == 1:
            steps = steps * len(sizes)
        if len(steps) != len(sizes) or min(steps) < 1:
            raise ValueError("steps must be one positive integer or one per bin size")
        if self.color not in COLOR_MODES:
            raise ValueError(f"color must be one of {COLOR_MODES}, got {self.color!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.support not in ("nominal", "full"):
            raise ValueError(f"support must be 'nominal' or 'full', got {self.support!r}")
        return sizes, steps

    def describe(self, image) -> Descriptors:
        """Descriptors of one image (array or path)."""
        if not hasattr(self, "backend_"):
            self.fit()
        sizes, steps = self._check_params()
        img = as_float_image(image)
        height, width = img.shape[:2]
        b_max = max(sizes)
        channels = color_channels(img, self.color)
        parts = []
        for b, step in zip(sizes, steps):
            rows = grid_centers(height, b, step, b_max)
            cols = grid_centers(width, b, step, b_max)
            if rows.size == 0 or cols.size == 0:
                continue
            if self.backend_ == "vlfeat":
                parts.append(self._vlfeat_scale(channels, b, step, b_max, (height, width)))
            else:
                parts.append(self._opencv_scale(channels, img, b, rows, cols))
        if not parts:
            need = int(math.ceil(3 * min(sizes) + math.floor(1.5 * (b_max - min(sizes))) + 1))
            raise ImageError(
                f"image of {height}x{width} pixels is smaller than one SIFT descriptor "
                f"(needs at least {need}x{need} for bin size {min(sizes):g})"
            )
        out = Descriptors.concatenate(parts)
        out.channel = f"sift-{self.color}"
        return out

    # -- subsets, for incremental re-encoding -------------------------------------
    def influence_radius(self, bin_size: float) -> float:
        """Chebyshev radius (pixels) beyond which a pixel cannot change a descriptor of bin size b.

        Support reach: 2.5 b, which already includes VLFeat's central differences
        (single-pixel test), times sqrt 2 when rotated, + 1 pixel for OpenCV's
        gradients; plus the kernel radius of each Gaussian blur applied before
        (OpenCV sizes float kernels as round(8 sigma + 1) | 1): phow smoothing and
        OpenCV's own base blur (sigma^2 = 1.6^2 - 0.5^2); plus 1 pixel of margin.
        """

        def blur_radius(sigma: float) -> int:
            return (int(round(8 * sigma + 1)) | 1) // 2 if sigma > 0 else 0

        opencv = getattr(self, "backend_", "opencv") == "opencv"
        reach = 2.5 * bin_size * (np.sqrt(2.0) if self.rotate else 1.0) + (1.0 if opencv else 0.0)
        if self.smooth:
            reach += blur_radius(np.sqrt(max((bin_size / self.magnification) ** 2 - 0.25, 0.0)))
        if opencv:
            reach += blur_radius(np.sqrt(1.6**2 - 0.5**2))
        return float(np.ceil(reach)) + 1.0

    def describe_at(self, image, reference: Descriptors, rows) -> np.ndarray:
        """Recompute the descriptors ``rows`` of ``reference`` on (a changed) ``image``.

        Each bin size is described on a crop around the selected centres, with a
        margin of the influence radius (which composes the support's reach with
        the blurs' reach) plus 2 pixels, on the grid of the full image. OpenCV:
        equal to :meth:`describe` on the whole image, bit for bit. VLFeat
        convolves with running sums that start at the image origin, so in exact
        mode (``fast=False``) its crops start at (0, 0) and are bit-exact; in fast
        mode the float32 integral images round differently on any crop (up to
        ~6e-4 of 255, which can flip a word assignment), so the cheaper local
        crop is used.

        Returns
        -------
        ndarray (len(rows), D) float32
        """
        if not hasattr(self, "backend_"):
            self.fit()
        img = as_float_image(image)
        height, width = img.shape[:2]
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, reference.n_features), dtype=np.float32)
        sizes, steps = self._check_params()
        step_of = dict(zip(sizes, steps))
        b_max = max(sizes)
        for b in np.unique(reference.scales[rows]):
            pick = np.flatnonzero(reference.scales[rows] == b)
            centers = reference.centers[rows[pick]]
            margin = int(np.ceil(self.influence_radius(b))) + 2
            anchored = self.backend_ == "vlfeat" and not self.fast  # exact mode only
            r0 = 0 if anchored else max(0, int(np.floor(centers[:, 0].min())) - margin)
            r1 = min(height, int(np.ceil(centers[:, 0].max())) + margin + 1)
            c0 = 0 if anchored else max(0, int(np.floor(centers[:, 1].min())) - margin)
            c1 = min(width, int(np.ceil(centers[:, 1].max())) + margin + 1)
            crop = img[r0:r1, c0:c1]
            channels = color_channels(crop, self.color)
            if self.backend_ == "vlfeat":
                part = self._vlfeat_at(channels, b, step_of[float(b)], b_max, centers - [r0, c0])
            else:
                rr = np.floor(centers[:, 0]).astype(np.int64) - r0
                cc = np.floor(centers[:, 1]).astype(np.int64) - c0
                part = self._opencv_descriptors(channels, crop, b, rr, cc)[0]
            out[pick] = part
        return out

    def _vlfeat_at(self, channels, b, step, b_max, centers) -> np.ndarray:
        from cyvlfeat.sift import dsift  # optional: the [vlfeat] extra

        first = centers - 1.5 * b  # upper-left bin centres of the wanted frames
        bounds = np.array(
            [first[:, 0].min(), first[:, 1].min(), first[:, 0].max() + 3 * b, first[:, 1].max() + 3 * b],
            dtype=np.float64,
        )
        blocks, frames = [], None
        for channel in channels:
            f, d = dsift(
                self._smoothed(channel, b),
                step=int(step),
                size=int(b),
                bounds=bounds,
                fast=self.fast,
                float_descriptors=True,
            )
            frames = f
            blocks.append(np.asarray(d, dtype=np.float32))
        data = np.hstack(blocks)
        # centres lie on a half-pixel grid: match frames by integer keys of twice the position
        span = int(np.ceil(2 * max(frames[:, 1].max(), centers[:, 1].max()))) + 2

        def key(points):
            twice = np.rint(2 * points).astype(np.int64)
            return twice[:, 0] * span + twice[:, 1]

        frame_keys = key(frames[:, :2])
        order = np.argsort(frame_keys)
        wanted = key(centers)
        pos = np.searchsorted(frame_keys, wanted, sorter=order)
        picked = order[np.minimum(pos, order.size - 1)]
        if not np.array_equal(frame_keys[picked], wanted):  # pragma: no cover - would be a bug
            raise RuntimeError("VLFeat frames do not match the requested descriptor grid")
        return data[picked]

    def wants_dimension_relevance(self, rule, offered: bool) -> bool:
        """``SIFTBins`` always reads relevance per dimension; ``Contribution`` when its
        ``per_dimension`` says so (None: when the encoder ``offered`` it)."""
        self._check_rule(rule)
        if isinstance(rule, SIFTBins):
            return True
        if isinstance(rule, Contribution):
            return offered if rule.per_dimension is None else bool(rule.per_dimension)
        return False

    def _pixel_relevance(self, R, trace, rule, image):
        if isinstance(rule, SIFTBins):
            if R.ndim != 2:
                raise RuleError(
                    f"SIFTBins needs relevance per descriptor dimension (N, D), got shape {R.shape}"
                )
            return sift_bins(trace, R.sum(axis=1), R)
        if image is None:
            raise RuleError(
                "the contribution rule needs the image the descriptors were computed on "
                "(relevance(..., image=...); Pipeline.forward_one keeps it in the trace)"
            )
        per_dim = R if R.ndim == 2 else None
        R_l = R.sum(axis=1) if R.ndim == 2 else R
        return contribution(trace, self, image, R_l, per_dim, rule.weighting, rule.through_blur)

    def gradient_maps(
        self, image: np.ndarray, b: float, angles: bool = True
    ) -> tuple[list, list, list[float]]:
        """Gradient magnitude and angle maps of every channel, as the extractor's backend sees them.

        OpenCV: the phow-smoothed channel rounded to uint8, blurred by SIFT's base
        sigma ``sqrt(1.6^2 - 0.5^2)``, central differences ``I(r, c+1) - I(r, c-1)`` and
        ``I(r-1, c) - I(r+1, c)`` (rows up), angle ``atan2(dy, dx)``. VLFeat: the
        phow-smoothed channel, ``(I(x+1) - I(x-1)) / 2`` (one-sided at the border),
        angle ``atan2(d/drow, d/dcol)``. Both in one compiled pass
        (:func:`_gradient_maps`), equal bit for bit to the NumPy formulas.

        Returns
        -------
        magnitudes, angles : lists of (H, W) float64, one per channel
        sigmas : the blurs between the input pixels and these maps, in order
            (``angles=False``: the angle maps are all zero, for callers that do not read them)
        """
        channels = color_channels(image, self.color)
        smooth = 0.0
        if self.smooth:
            smooth = float(np.sqrt(max((b / self.magnification) ** 2 - 0.25, 0.0)))
        mags, angs = [], []
        opencv = self.backend_ == "opencv"
        for channel in channels:
            sm = self._smoothed(channel, b)
            if opencv:
                u8 = np.clip(np.rint(sm * 255.0), 0, 255).astype(np.uint8)
                base = cv2.GaussianBlur(
                    u8.astype(np.float32), (0, 0), OPENCV_BASE_SIGMA, sigmaY=OPENCV_BASE_SIGMA
                )
            else:
                base = np.ascontiguousarray(sm, dtype=np.float32)
            mag = np.empty(base.shape)
            # angles=False: calloc'd zeros, whose pages are never touched by the callers
            ang = np.empty(base.shape) if angles else np.zeros(base.shape)
            _gradient_maps(base, opencv, angles, mag, ang)
            mags.append(mag)
            angs.append(ang)
        sigmas = [smooth, OPENCV_BASE_SIGMA] if opencv else [smooth]
        return mags, angs, sigmas

    def _smoothed(self, channel: np.ndarray, b: float) -> np.ndarray:
        if not self.smooth:
            return channel.astype(np.float32)
        sigma2 = (b / self.magnification) ** 2 - 0.25
        if sigma2 <= 0:
            return channel.astype(np.float32)
        return cv2.GaussianBlur(channel.astype(np.float32), (0, 0), math.sqrt(sigma2))

    def _half_width(self, b: float) -> float:
        return (2.5 if self.support == "full" else 2.0) * b

    def _opencv_descriptors(self, channels, img, b, rr, cc) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV descriptors at integer points: (data (n, D) float32, orientations (n,))."""
        if self.rotate:
            grey = self._smoothed(to_grey(img), b)
            theta = dominant_orientations(grey, rr, cc, b)
        else:
            theta = np.zeros(rr.size)
        angles = np.degrees(theta)
        size = 2.0 * b / 3.0
        sift = cv2.SIFT_create()
        blocks = []
        for channel in channels:
            u8 = np.clip(np.rint(self._smoothed(channel, b) * 255.0), 0, 255).astype(np.uint8)
            keypoints = [cv2.KeyPoint(float(c), float(r), size, float(a)) for r, c, a in zip(rr, cc, angles)]
            kept, desc = sift.compute(u8, keypoints)
            if desc is None or len(kept) != len(keypoints):
                raise RuntimeError("OpenCV dropped keypoints; descriptor rows would not match")
            blocks.append(desc.astype(np.float32))
        return np.hstack(blocks), theta

    def _opencv_scale(self, channels, img, b, rows, cols) -> Descriptors:
        rows_i = np.floor(rows).astype(np.int64)
        cols_i = np.floor(cols).astype(np.int64)
        rr, cc = np.meshgrid(rows_i, cols_i, indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        data, theta = self._opencv_descriptors(channels, img, b, rr, cc)
        n = rr.size
        return Descriptors(
            data=data,
            centers=np.column_stack([rr, cc]).astype(np.float64),
            half_widths=np.full(n, self._half_width(b)),
            orientations=theta,
            shapes=np.full(n, ROTATED_SQUARE if self.rotate else SQUARE, dtype=np.int8),
            scales=np.full(n, b),
            image_shape=img.shape[:2],
        )

    def _vlfeat_scale(self, channels, b, step, b_max, shape) -> Descriptors:
        from cyvlfeat.sift import dsift  # optional: the [vlfeat] extra

        height, width = shape
        off = math.floor(1.5 * (b_max - b))
        bounds = np.array([off, off, height - 1, width - 1], dtype=np.float64)
        blocks, frames = [], None
        for channel in channels:
            f, d = dsift(
                self._smoothed(channel, b),
                step=int(step),
                size=int(b),
                bounds=bounds,
                fast=self.fast,
                float_descriptors=True,
            )
            frames = f
            blocks.append(np.asarray(d, dtype=np.float32))
        n = frames.shape[0]
        return Descriptors(
            data=np.hstack(blocks),
            centers=np.asarray(frames[:, :2], dtype=np.float64),
            half_widths=np.full(n, self._half_width(b)),
            orientations=np.zeros(n),
            shapes=np.full(n, SQUARE, dtype=np.int8),
            scales=np.full(n, b),
            image_shape=shape,
        )
