"""Faithfulness beyond AOPC: pixel flipping, IROF, faithfulness correlation, MoRF / LeRF and the area between.

Every metric scores the sign-adjusted target score ``f(x)`` of perturbed images
through the incremental re-encoding (:func:`~bowlrp.evaluation.scattered.set_pixels`:
only the descriptors a changed pixel touches are recomputed), or with
``incremental=False`` through a full forward pass (the same numbers to rounding).

* pixel flipping (Bach et al. 2015): pixels removed cumulatively, most relevant
  first (or least, ``order="lerf"``), ``ceil(fraction n / steps)`` per step, each
  replaced by a baseline; the value is the mean height of the curve
  ``f(x^(0)), ..., f(x^(steps))`` over the removed fraction (trapezoid rule).
* IROF (Rieger & Hansen 2020): SLIC superpixels (scikit-image) removed
  cumulatively in order of their mean relevance, each filled with the image's
  mean; the value is the area over the curve ``f(x^(k)) / f(x)``:
  ``1 - mean height`` over the removed fraction of segments. Higher is better.
* faithfulness correlation (Bhatt et al. 2020): ``runs`` random subsets of
  ``subset_size`` pixels, each replaced by the baseline alone; the Pearson
  correlation over the subsets of ``sum_{p in subset} R_p`` with
  ``f(x) - f(x_subset)``. Higher is better.
* MoRF / LeRF of region perturbation and the area between
  (:func:`region_morf_lerf`, :func:`area_between`).

Baselines (Quantus's names): ``"black"`` the image's minimum, ``"mean"`` its
mean, ``"uniform"`` noise in [0, 1] (seeded), or a number. The definitions and
where they differ from Quantus's are in ``docs/evaluation.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._utils.validation import as_float_image
from .baselines import slic_segments
from .explainers import Explainer, explainer_name, maps_or_explain
from .incremental import IncrementalImage
from .perturbation import aopc, region_perturbation
from .results import MetricResult
from .road import curve_area
from .scattered import evaluate_pixels


def baseline_values(baseline: str | float, image: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Values for ``k`` removed pixels of ``image``: shape (k,) or (k, C).

    ``"black"``: the image's minimum; ``"white"``: its maximum; ``"mean"``: its mean;
    ``"uniform"``: uniform noise in [0, 1]; a number: that value.
    """
    shape = (k,) + image.shape[2:]
    if isinstance(baseline, int | float):
        return np.full(shape, float(baseline))
    table = {"black": image.min, "white": image.max, "mean": image.mean}
    if baseline == "uniform":
        return rng.random(shape)
    if baseline not in table:
        raise ValueError(
            f"unknown baseline {baseline!r}; use 'black', 'white', 'mean', 'uniform' or a number"
        )
    return np.full(shape, float(table[baseline]()))


def _ranked(heatmap: np.ndarray, order: str) -> np.ndarray:
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    flat = np.asarray(heatmap, dtype=np.float64).ravel()
    return np.argsort(-flat if order == "morf" else flat, kind="stable")


def pixel_flipping(
    pipeline,
    images,
    explainer: Explainer = "lrp",
    target=None,
    *,
    maps=None,
    order: str = "morf",
    steps: int = 50,
    fraction: float = 1.0,
    baseline: str | float = "black",
    seed: int = 0,
    incremental: bool = True,
    progress: Callable[[int], None] | None = None,
) -> MetricResult:
    """Pixel-wise flipping curve and its mean height per image.

    Parameters
    ----------
    pipeline : fitted Pipeline
    images : list of images
    explainer, target, maps : as :func:`bowlrp.evaluation.road.road`
    order : "morf" (most relevant first) or "lerf"
    steps : number of steps; each removes ``ceil(fraction n / steps)`` pixels
    fraction : share of the ``n`` pixels removed at the last step, in (0, 1]
    baseline : "black", "white", "mean", "uniform" or a number (:func:`baseline_values`)
    seed : seeds the uniform baseline
    incremental : incremental re-encoding (True) or full forward passes
    progress : called with 1 after each model evaluation

    Returns
    -------
    MetricResult
        ``values[i] = curve_area(f_i, x)`` with ``x`` the removed fraction after each step;
        lower is better for MoRF, higher for LeRF. ``curves`` (n, steps + 1).

    Notes
    -----
    Cost: ``steps`` model evaluations per image. Quantus's default removes one
    pixel per step over all pixels (``features_in_step=1``); bowlrp's ``steps``
    groups them, so one curve costs ``steps`` evaluations, not ``n``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    method = explainer_name(explainer) if maps is None else None
    imgs = [as_float_image(im) for im in images]
    maps = maps_or_explain(pipeline, imgs, explainer, target, maps, seed)
    seeds = np.random.SeedSequence(seed).spawn(len(imgs))
    curves = np.zeros((len(imgs), steps + 1))
    areas = np.zeros(len(imgs))
    for i, (img, heat) in enumerate(zip(imgs, maps)):
        rng = np.random.default_rng(seeds[i])
        ranked = _ranked(heat, order)
        n = ranked.size
        per = int(np.ceil(fraction * n / steps))
        state = IncrementalImage(pipeline, img, target)
        curves[i, 0] = state.score
        xs = np.zeros(steps + 1)  # removed fraction after each step
        for k in range(steps):
            chosen = ranked[k * per : min((k + 1) * per, int(round(fraction * n)))]
            mask = np.zeros(n, dtype=bool)
            mask[chosen] = True
            mask = mask.reshape(img.shape[:2])
            values = baseline_values(baseline, img, chosen.size, rng)  # i.i.d., so in any pixel order
            curves[i, k + 1] = (
                evaluate_pixels(state, mask, values, True, incremental) if chosen.size else curves[i, k]
            )
            xs[k + 1] = min((k + 1) * per, round(fraction * n)) / n
            if progress is not None:
                progress(1)
        areas[i] = curve_area(curves[i], xs)
    params = {"order": order, "steps": steps, "fraction": fraction, "baseline": baseline, "seed": seed}
    return MetricResult(f"pixel_flipping_{order}", areas, order == "lerf", params, method, curves)


def irof(
    pipeline,
    images,
    explainer: Explainer = "lrp",
    target=None,
    *,
    maps=None,
    n_segments: int = 50,
    baseline: str | float = "mean",
    seed: int = 0,
    incremental: bool = True,
    progress: Callable[[int], None] | None = None,
) -> MetricResult:
    """Iterative Removal of Features: area over the normalised curve of removing superpixels.

    Parameters
    ----------
    n_segments : SLIC's ``n_segments`` (:func:`~bowlrp.evaluation.baselines.slic_segments`)
    baseline : fill of a removed superpixel (default: the original image's mean)
    other parameters : as :func:`pixel_flipping`

    Returns
    -------
    MetricResult
        ``values[i] = 1 - curve_area(f_i / f_i[0], x)``, ``x = k / S`` for ``S`` segments,
        higher is better; NaN where ``f(x) <= 0`` (the ratio has no meaning).
        ``curves`` (n, max S + 1) of ``f_i / f_i[0]``, NaN-padded.

    Notes
    -----
    Segments are ordered by their mean relevance, descending, as Quantus does.
    Quantus divides by the model's output for the class (a probability there);
    bowlrp's ``f`` is a decision value, so images with ``f(x) <= 0`` get NaN.
    Cost: ``S`` model evaluations per image.
    """
    method = explainer_name(explainer) if maps is None else None
    imgs = [as_float_image(im) for im in images]
    maps = maps_or_explain(pipeline, imgs, explainer, target, maps, seed)
    seeds = np.random.SeedSequence(seed).spawn(len(imgs))
    rows, vals = [], []
    for i, (img, heat) in enumerate(zip(imgs, maps)):
        rng = np.random.default_rng(seeds[i])
        segments = slic_segments(img, n_segments, seed=seed)
        S = int(segments.max()) + 1
        area = np.bincount(segments.ravel(), minlength=S)
        mean_rel = np.bincount(segments.ravel(), np.asarray(heat, dtype=np.float64).ravel(), S) / np.maximum(
            area, 1
        )
        order = np.argsort(-mean_rel, kind="stable")
        state = IncrementalImage(pipeline, img, target)
        curve = [state.score]
        for s in order:
            mask = segments == s
            fill = baseline_values(baseline, img, int(mask.sum()), rng)
            curve.append(evaluate_pixels(state, mask, fill, True, incremental))
            if progress is not None:
                progress(1)
        curve = np.array(curve)
        if curve[0] > 0:
            ratio = curve / curve[0]
            vals.append(1.0 - curve_area(ratio, np.arange(S + 1) / S))
        else:
            ratio = np.full(curve.shape, np.nan)
            vals.append(np.nan)
        rows.append(ratio)
    width = max(r.size for r in rows)
    curves = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        curves[i, : r.size] = r
    params = {"n_segments": n_segments, "baseline": baseline, "seed": seed}
    return MetricResult("irof", np.array(vals), True, params, method, curves)


def faithfulness_correlation(
    pipeline,
    images,
    explainer: Explainer = "lrp",
    target=None,
    *,
    maps=None,
    runs: int = 50,
    subset_size: int = 224,
    baseline: str | float = "black",
    seed: int = 0,
    incremental: bool = True,
    progress: Callable[[int], None] | None = None,
) -> MetricResult:
    """Pearson correlation of a random subset's summed relevance with the score drop it causes.

    Parameters
    ----------
    runs : number of random subsets per image (Quantus: 100)
    subset_size : pixels per subset (Quantus: 224)
    other parameters : as :func:`pixel_flipping`

    Returns
    -------
    MetricResult
        ``values[i] = corr_s(sum_{p in A_s} R_p, f(x) - f(x_{A_s}))`` over the subsets
        ``A_s``, higher is better; NaN if either side is constant.

    Notes
    -----
    Cost: ``runs`` model evaluations per image. Scattered subsets touch most
    descriptors, so incremental re-encoding saves little here (BENCHMARKS.md).
    """
    method = explainer_name(explainer) if maps is None else None
    imgs = [as_float_image(im) for im in images]
    maps = maps_or_explain(pipeline, imgs, explainer, target, maps, seed)
    seeds = np.random.SeedSequence(seed).spawn(len(imgs))
    vals, curves = [], np.zeros((len(imgs), 2, runs))
    for i, (img, heat) in enumerate(zip(imgs, maps)):
        rng = np.random.default_rng(seeds[i])
        flat = np.asarray(heat, dtype=np.float64).ravel()
        if subset_size > flat.size:
            raise ValueError(f"subset_size {subset_size} exceeds the image's {flat.size} pixels")
        state = IncrementalImage(pipeline, img, target)
        f0 = state.score
        for s in range(runs):
            chosen = np.sort(rng.choice(flat.size, subset_size, replace=False))
            mask = np.zeros(flat.size, dtype=bool)
            mask[chosen] = True
            fill = baseline_values(baseline, img, subset_size, rng)
            f = evaluate_pixels(state, mask.reshape(img.shape[:2]), fill, False, incremental)
            curves[i, :, s] = flat[chosen].sum(), f0 - f
            if progress is not None:
                progress(1)
        a, d = curves[i]
        vals.append(np.corrcoef(a, d)[0, 1] if a.std() > 0 and d.std() > 0 else np.nan)
    params = {"runs": runs, "subset_size": subset_size, "baseline": baseline, "seed": seed}
    return MetricResult("faithfulness_correlation", np.array(vals), True, params, method, curves)


def area_between(morf: MetricResult, lerf: MetricResult) -> MetricResult:
    """Area between the LeRF and the MoRF curve per image (higher is better).

    ``values[i] = lerf.values[i] - morf.values[i]``: the curves' mean heights
    share their x axis, so this is the mean height of ``f_LeRF - f_MoRF``
    (for AOPC results, ``AOPC_MoRF - AOPC_LeRF``, the same thing).

    Raises
    ------
    ValueError
        The two results are not a MoRF and a LeRF result of one metric over the same images.
    """
    name_m, name_l = morf.name, lerf.name
    base = name_m.removesuffix("_morf")
    if not (name_m.endswith("_morf") and name_l == base + "_lerf") or morf.values.shape != lerf.values.shape:
        raise ValueError(
            f"area_between needs a *_morf and the matching *_lerf result, got {name_m} and {name_l}"
        )
    if base == "aopc":  # AOPC counts drops: MoRF high, LeRF low
        values = morf.values - lerf.values
    else:
        values = lerf.values - morf.values
    params = {k: v for k, v in morf.params.items() if k != "order"}
    return MetricResult(f"{base}_area_between", values, True, params, morf.method)


def region_morf_lerf(
    pipeline,
    images,
    explainer: Explainer = "lrp",
    target=None,
    *,
    maps=None,
    block: int = 9,
    steps: int = 20,
    repeats: int = 1,
    perturbation: str = "uniform",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, MetricResult]:
    """AOPC of region perturbation most and least relevant first, and the area between.

    :func:`~bowlrp.evaluation.region_perturbation` with ``orderings=("morf", "lerf")``
    (incremental re-encoding). Returns ``{"aopc_morf", "aopc_lerf", "aopc_area_between"}``:
    AOPC MoRF higher is better, AOPC LeRF lower is better, the area between
    (``AOPC_MoRF - AOPC_LeRF``) higher is better. Values are per image, averaged over repeats.
    """
    method = explainer_name(explainer) if maps is None else None
    imgs = [as_float_image(im) for im in images]
    maps = maps_or_explain(pipeline, imgs, explainer, target, maps, seed)
    r = region_perturbation(
        pipeline,
        imgs,
        maps,
        ("morf", "lerf"),
        block,
        steps,
        repeats,
        perturbation,
        seed,
        target,
        progress=progress,
    )
    params = {"block": block, "steps": steps, "repeats": repeats, "perturbation": perturbation, "seed": seed}
    out = {}
    for o in ("morf", "lerf"):
        per_image = aopc(r.curves[o]).mean(axis=1)
        out[f"aopc_{o}"] = MetricResult(
            f"aopc_{o}", per_image, o == "morf", {**params, "order": o}, method, r.curves[o].mean(axis=1)
        )
    out["aopc_area_between"] = area_between(out["aopc_morf"], out["aopc_lerf"])
    return out
