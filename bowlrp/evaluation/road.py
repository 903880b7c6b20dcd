"""ROAD: RemOve And Debias (Rong et al. 2022), removed pixels filled by noisy linear imputation.

For each fraction ``p`` the ``p n`` most relevant pixels (MoRF) or least relevant
pixels (LeRF) of the original image are removed and filled in by
:func:`noisy_linear_imputation`, and the model scores the imputed image; no
retraining. Each fraction starts from the original image (the removed sets are
nested, the imputed values are not: each fill solves its own system).

Noisy linear imputation: every removed pixel is the weighted mean of its eight
neighbours (weight 1/6 for the four direct, 1/12 for the four diagonal ones;
neighbours outside the image are left out and the weights renormalised), removed
neighbours being unknowns themselves::

    w_i x_i - sum_{j in N(i), removed} w_ij x_j = sum_{j in N(i), kept} w_ij v_j,
    w_i = sum_{j in N(i)} w_ij

one sparse linear system over the removed pixels (per colour channel), solved
with ``scipy.sparse.linalg.spsolve``; then Gaussian noise of standard deviation
``noise`` (0.01) is added. Quantus 0.6's ``noisy_linear_imputation`` solves the
same system (``tests/test_quantus_agreement.py``); bowlrp clips the result to
[0, 1], the range of every bowlrp image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from .._utils.validation import as_float_image
from .explainers import Explainer, explainer_name, maps_or_explain
from .incremental import IncrementalImage
from .results import MetricResult
from .scattered import evaluate_pixels

#: (row offset, column offset, weight) of the eight neighbours
NEIGHBOURS = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def linear_imputation(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The removed pixels' values of the noiseless linear imputation, shape (k,) or (k, C).

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, C)
    mask : ndarray (H, W) bool, the removed pixels (not all of them)

    Returns
    -------
    ndarray
        Values of the ``k`` removed pixels in row-major order.

    Raises
    ------
    ValueError
        Every pixel is removed (nothing to impute from).
    """
    H, W = mask.shape
    idx = np.flatnonzero(mask)
    k = idx.size
    if k == mask.size:
        raise ValueError("ROAD cannot impute an image whose every pixel is removed; use fractions < 1")
    flat = image.reshape(H * W, -1).astype(np.float64)
    var = np.full(H * W, -1, dtype=np.int64)
    var[idx] = np.arange(k)
    r, c = np.divmod(idx, W)
    diag = np.zeros(k)
    rows, cols, vals = [], [], []
    rhs = np.zeros((k, flat.shape[1]))
    for dr, dc, w in NEIGHBOURS:
        rr, cc = r + dr, c + dc
        ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
        diag[ok] += w
        j = rr[ok] * W + cc[ok]
        i = np.flatnonzero(ok)
        unknown = var[j] >= 0
        rows.append(i[unknown])
        cols.append(var[j[unknown]])
        vals.append(np.full(unknown.sum(), -w))
        np.add.at(rhs, i[~unknown], w * flat[j[~unknown]])
    rows.append(np.arange(k))
    cols.append(np.arange(k))
    vals.append(diag)
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(k, k)).tocsc()
    x = spsolve(A, rhs)
    x = np.asarray(x).reshape(k, -1)
    return x[:, 0] if image.ndim == 2 else x


def noisy_linear_imputation(
    image: np.ndarray, mask: np.ndarray, noise: float = 0.01, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``image`` with the pixels of ``mask`` imputed linearly plus N(0, noise²), clipped to [0, 1]."""
    rng = np.random.default_rng(0) if rng is None else rng
    out = np.asarray(image, dtype=np.float64).copy()
    fill = linear_imputation(out, mask)
    out[mask] = np.clip(fill + noise * rng.standard_normal(fill.shape), 0.0, 1.0)
    return out


def removal_masks(heatmap: np.ndarray, fractions: Sequence[float], order: str) -> list[np.ndarray]:
    """Masks of the ``round(p n)`` most (``"morf"``) or least (``"lerf"``) relevant pixels per fraction.

    Pixels are ranked by a stable sort of ``-R`` (MoRF) or ``R`` (LeRF), ties in pixel order.
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    flat = np.asarray(heatmap, dtype=np.float64).ravel()
    ranked = np.argsort(-flat if order == "morf" else flat, kind="stable")
    masks = []
    for p in fractions:
        if not 0 < p < 1:
            raise ValueError(f"ROAD fractions must lie in (0, 1), got {p}")
        m = np.zeros(flat.size, dtype=bool)
        m[ranked[: int(round(p * flat.size))]] = True
        masks.append(m.reshape(heatmap.shape))
    return masks


def curve_area(curve: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mean height of curves (last axis) over ``x``, trapezoid rule: ``trapz(curve, x) / (x[-1] - x[0])``."""
    return np.trapezoid(curve, x, axis=-1) / (x[-1] - x[0])


def road(
    pipeline,
    images,
    explainer: Explainer = "lrp",
    target=None,
    *,
    maps=None,
    order: str = "morf",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    noise: float = 0.01,
    seed: int = 0,
    incremental: bool = True,
    progress: Callable[[int], None] | None = None,
) -> MetricResult:
    """ROAD curve and its area per image, most (``"morf"``) or least (``"lerf"``) relevant first.

    Parameters
    ----------
    pipeline : fitted Pipeline
    images : list of images
    explainer : method name or callable (:mod:`bowlrp.evaluation.explainers`), used if ``maps`` is None
    target : class label or None (each image's predicted class)
    maps : list of (H, W) maps or None
    order : "morf" or "lerf"
    fractions : fractions of pixels removed, each in (0, 1)
    noise : standard deviation of the imputation noise
    seed : seeds the noise (one generator per image)
    incremental : score through incremental re-encoding (True) or a full forward pass
    progress : called with 1 after each model evaluation

    Returns
    -------
    MetricResult
        ``values[i] = curve_area(f_i, [0, *fractions])`` where ``f_i = (f(x), f(x_p1), ...)``
        is the sign-adjusted score of the target; ``curves`` (n, 1 + len(fractions)).
        Lower is better for MoRF (the score falls fast), higher for LeRF.
        ``params["accuracy"]`` holds the share of images still scored positive
        (still predicted as the target) at each fraction, Quantus's ROAD number.

    Notes
    -----
    Cost: ``len(fractions)`` sparse solves and model evaluations per image.
    """
    method = explainer_name(explainer) if maps is None else None
    imgs = [as_float_image(im) for im in images]
    maps = maps_or_explain(pipeline, imgs, explainer, target, maps, seed)
    x = np.array([0.0, *fractions])
    seeds = np.random.SeedSequence(seed).spawn(len(imgs))
    curves = np.zeros((len(imgs), x.size))
    for i, (img, heat) in enumerate(zip(imgs, maps)):
        rng = np.random.default_rng(seeds[i])
        state = IncrementalImage(pipeline, img, target)
        curves[i, 0] = state.score
        for k, m in enumerate(removal_masks(heat, fractions, order)):
            filled = noisy_linear_imputation(img, m, noise, rng)
            curves[i, k + 1] = evaluate_pixels(state, m, filled, False, incremental)
            if progress is not None:
                progress(1)
    accuracy = (curves[:, 1:] > 0).mean(axis=0).tolist()
    params = {"order": order, "fractions": list(map(float, fractions)), "noise": noise, "seed": seed}
    return MetricResult(
        f"road_{order}",
        curve_area(curves, x),
        order == "lerf",
        {**params, "accuracy": accuracy},
        method,
        curves,
    )
