"""Robustness: do small input changes change the explanation? Max-sensitivity and a local Lipschitz estimate.

For an image ``x``, its map ``e(x)`` and ``samples`` perturbed copies
``x'_s = clip(x + delta_s, 0, 1)`` with ``delta_s`` uniform in ``[-radius, radius]``
per pixel (the L-infinity ball of Yeh et al. 2019), explained for the same target:

* max-sensitivity (Yeh et al. 2019)::

      SENS_max = max_s || e(x'_s) - e(x) ||_F / || e(x) ||_F

* local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018)::

      L = max_s || e(x'_s) - e(x) ||_2 / || x'_s - x ||_2

Lower is better for both. Every map is first divided by its own largest ``|R|``,
as Quantus's default ``normalise_by_max`` does, so the numbers do not depend on the
score's scale (max-sensitivity does not anyway). Both come from the same perturbed
explanations. Quantus draws separate noise for the two (uniform, radius 0.2 for
max-sensitivity; Gaussian, std 0.1 for the Lipschitz estimate) and 200 samples;
bowlrp's defaults are 10 samples within radius 0.02 (2 % of the grey range):
**cost** ``samples + 1`` explanations per image for both metrics together.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._utils.validation import as_float_image
from .explainers import Explainer, explain_maps, explainer_name, resolve_targets
from .results import MetricResult


def _unit_max(m: np.ndarray) -> np.ndarray:
    top = np.abs(m).max()
    return m / top if top > 0 else m


def sensitivity_ratios(
    original_map: np.ndarray, original: np.ndarray, perturbed_maps, perturbed
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample ``||e' - e||_F / ||e||_F`` and ``||e' - e||_2 / ||x' - x||_2`` (maps max-normalised)."""
    e = _unit_max(np.asarray(original_map, dtype=np.float64))
    norm_e = np.linalg.norm(e)
    sens, lip = [], []
    for m, xp in zip(perturbed_maps, perturbed):
        d = np.linalg.norm(_unit_max(np.asarray(m, dtype=np.float64)) - e)
        dx = np.linalg.norm(np.asarray(xp, dtype=np.float64) - original)
        sens.append(d / norm_e if norm_e > 0 else np.nan)
        lip.append(d / dx if dx > 0 else np.nan)
    return np.array(sens), np.array(lip)


def robustness(
    pipeline,
    images,
    explainer: Explainer = "lrp",
    target=None,
    *,
    samples: int = 10,
    radius: float = 0.02,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, MetricResult]:
    """Max-sensitivity and local Lipschitz estimate per image, from one set of perturbed explanations.

    Parameters
    ----------
    pipeline : fitted Pipeline
    images : list of images
    explainer : method name or callable (:mod:`bowlrp.evaluation.explainers`)
    target : class label or None (each image's predicted class; the perturbed
        copies are explained for the same class)
    samples : perturbed copies per image
    radius : half-width of the uniform noise added to every pixel (images in [0, 1])
    seed : seeds the noise and seeded explainers
    progress : called with 1 after each image

    Returns
    -------
    dict
        ``{"max_sensitivity": MetricResult, "local_lipschitz": MetricResult}``, lower is better;
        ``curves`` (n, samples) hold the per-sample ratios.

    Notes
    -----
    Cost: ``samples + 1`` explanations per image (an LRP explanation costs about
    a forward pass; occlusion one forward pass per block).
    """
    if samples < 1 or radius <= 0:
        raise ValueError(f"need samples >= 1 and radius > 0, got {samples} and {radius}")
    imgs = [as_float_image(im) for im in images]
    targets = resolve_targets(pipeline, imgs, target)
    rng = np.random.default_rng(seed)
    sens_rows, lip_rows = [], []
    for img, t in zip(imgs, targets):
        perturbed = [np.clip(img + rng.uniform(-radius, radius, img.shape), 0.0, 1.0) for _ in range(samples)]
        maps = explain_maps(pipeline, [img, *perturbed], explainer, t, seed)
        s, lip = sensitivity_ratios(maps[0], img, maps[1:], perturbed)
        sens_rows.append(s)
        lip_rows.append(lip)
        if progress is not None:
            progress(1)
    sens, lip = np.array(sens_rows), np.array(lip_rows)
    params = {"samples": samples, "radius": radius, "noise": "uniform", "seed": seed}
    method = explainer_name(explainer)
    with np.errstate(all="ignore"):
        return {
            "max_sensitivity": MetricResult(
                "max_sensitivity", np.nanmax(sens, axis=1), False, params, method, sens
            ),
            "local_lipschitz": MetricResult(
                "local_lipschitz", np.nanmax(lip, axis=1), False, params, method, lip
            ),
        }
