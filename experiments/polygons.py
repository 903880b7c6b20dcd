"""Polygons versus round shapes: train, measure, explain, test faithfulness (PLoS ONE 2015 Fig 6).

    python experiments/polygons.py --out experiments/results/polygons

Trains the two models of the paper (thesis 2.4.3) from ``configs/polygons_hik.yaml``
and ``configs/polygons_chi2.yaml`` on non-overlapping 102 x 102 crops of generated
scenes. Both configs share the Bag-of-Words stages (only the kernel differs), so
the vocabularies are fitted and the training crops encoded once, and each model
fits its own MKL SVM on the same features. Then, per model:

* **accuracy** on held-out crops taken every 34 pixels from other scenes (the
  thesis' test protocol), positive iff a polygon's centre of mass lies inside;
* **localisation**: test scenes explained tile by tile (102 x 102 every 34 pixels,
  class "polygon", heatmaps averaged), and where the relevance falls;
* **region perturbation** (docs/math.md §4) on ``--eval-tiles`` held-out crops, half
  positive and half negative, drawn with the seed: blocks of 9 x 9 pixels are
  replaced most relevant first (MoRF) by uniform noise or by the blurred image;
  AOPC per method with its standard error over tiles, and the *paired*
  differences per tile (each LRP rule minus occlusion, minus random) with theirs;
* for the chi2 model, the **Taylor block** (issue 13): per classifier rule, the
  residual ``|f(x) - f(x~) - sum_d R_d| / |f(x)|`` (median, 90th percentile) and
  the root distance ``||x - x~||`` on the same tiles.

Outputs in ``--out``: ``metrics.json`` (the schema is :data:`SCHEMA`, documented
in docs/polygons_experiment.md; no timings, so two runs give identical files),
``timings.json`` (seconds per stage, model file sizes), ``region_perturbation.json``
(per-tile AOPC and mean curves), ``region_perturbation.png`` (mean curves with
bands of one standard error), ``figure.png`` (input | HIK | chi2) and the model files.

A rerun into the same ``--out`` reuses the saved models of the same settings
(:func:`saved_models`; ``--refit`` fits anew) and, per evaluated tile, every method's
stored results (``partial/<model>/tile<index>.json``, :func:`cached_methods`): a method
added to :func:`lrp_methods` is the only one computed on the finished tiles.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bowlrp import image as pictures  # noqa: E402
from bowlrp._utils.parallel import map_images  # noqa: E402
from bowlrp.datasets import polygons as polygon_data  # noqa: E402
from bowlrp.datasets.polygons import STRIDE, TILE, generate, save_scenes, tile_dataset  # noqa: E402
from bowlrp.model_files import load, save  # noqa: E402
from bowlrp.pipeline import Pipeline  # noqa: E402
from bowlrp.rules import (  # noqa: E402
    NEURALIZED_VARIANTS,
    Contribution,
    Decomposition,
    Epsilon,
    Flat,
    Neon,
    Neuralized,
    SIFTBins,
    Taylor,
    integrated_gradient,
)

CONFIGS = {"hik": "polygons_hik", "chi2": "polygons_chi2"}
SCHEMA = "bowlrp.polygons-metrics/3"
PERTURBATIONS = ("uniform", "blur")
BLOCK = 9
_FITTED_STAGES = ("channel_names_", "extractors_", "encoders_", "channel_sizes_", "n_descriptors_sampled_")


def log(msg: str) -> None:
    print(f"[polygons] {msg}", flush=True)


def lrp_methods(kernel: str) -> dict:
    """Every LRP rule combination compared on one model: name -> [step 1, step 2, step 3 rule].

    Step 2 is ``Epsilon(0)`` throughout (for l1-normalised rank mappings the alpha-beta
    and |z| rules coincide with it: the contributions are non-negative), except
    ``integrated-eps1``. Step 3 is ``Flat`` (no suffix) or ``Contribution()`` (suffix
    ``+contribution``; the polygons' descriptors are rotated, so this is the rotated
    fast path).

    ``+neon``: the :class:`~bowlrp.rules.Neon` descriptor rule (docs/neon.md) after
    ``Epsilon(0)``: each descriptor's relevance for its words goes on to its 128 SIFT
    dimensions through the neuralised rank assignment, and a pixel rule that reads
    dimensions puts each dimension on its pixels: ``+neon+contribution`` is
    ``Contribution(per_dimension=True)`` (each dimension's own gradient mass, through the
    rotated descriptors' geometry), ``+neon+siftbins`` is ``SIFTBins`` (each spatial bin's
    relevance flat over its own rotated ``b x b`` square). With ``Flat`` or a per-descriptor
    ``Contribution()`` a ``Neon`` rule changes nothing (the descriptors get the wrapped
    rule's relevance), so those are not measured twice. Without ``Neon`` the rank mappings
    have no relevance per dimension and refuse both per-dimension pixel rules.

    HIK (sum-decomposable): the exact decomposition (the default), with either pixel rule.
    ``Taylor`` is not needed there (exact) and ``Neuralized`` is refused (not an
    exponential kernel).

    Exponential chi2 (differentiable, docs/taylor.md, docs/neuralized.md):
    first-order Taylor at the segment root (the paper's rule), at the boundary root,
    the path-integrated gradient (16 nodes, segment root; the default), the integrated
    gradient with eps = 1 at the descriptor step, and the neuralised SVM (variants
    ``midpoint``, ``gi``, ``hybrid`` with eta 0.1) - all with ``Flat``; ``Contribution``
    with the default and with each neuralised variant. Left out: ``Contribution`` after
    first-order Taylor at the segment root (its AOPC was within 0.004 of the
    integrated gradient's in the previous snapshot), after the boundary root (the least faithful
    step 1, and 6.6x the default's cost) and after ``integrated-eps1`` (eps = 1 absorbs
    most relevance at step 2, the least faithful variant).

    NEON (both pixel rules) follows the step 1 of each model's default: the exact
    decomposition (HIK), the neuralised SVM ``hybrid`` (the package's exp-chi2 default)
    and the integrated gradient (the paired reference of :data:`DEFAULT_METHOD`).
    Adding a method to this table recomputes only that method on tiles a previous run
    finished (:func:`cached_methods`).
    """
    neon = Neon(rule=Epsilon(0.0))
    neon_pixels = {"+neon+contribution": Contribution(per_dimension=True), "+neon+siftbins": SIFTBins()}
    if kernel == "hik":
        methods = {
            "lrp-eps0": [Decomposition(), Epsilon(0.0), Flat()],
            "lrp-eps0+contribution": [Decomposition(), Epsilon(0.0), Contribution()],
        }
        for suffix, pixel in neon_pixels.items():
            methods[f"lrp-eps0{suffix}"] = [Decomposition(), neon, pixel]
        return methods
    methods = {
        "taylor-segment": [Taylor(), Epsilon(0.0), Flat()],
        "taylor-boundary": [Taylor(root="boundary", n_candidates=5), Epsilon(0.0), Flat()],
        "integrated": [integrated_gradient(), Epsilon(0.0), Flat()],
        "integrated-eps1": [integrated_gradient(), Epsilon(1.0), Flat()],
        "integrated+contribution": [integrated_gradient(), Epsilon(0.0), Contribution()],
    }
    for variant in NEURALIZED_VARIANTS:
        methods[f"neuralized-{variant}"] = [Neuralized(variant), Epsilon(0.0), Flat()]
    for variant in NEURALIZED_VARIANTS:
        methods[f"neuralized-{variant}+contribution"] = [Neuralized(variant), Epsilon(0.0), Contribution()]
    for suffix, pixel in neon_pixels.items():
        methods[f"neuralized-hybrid{suffix}"] = [Neuralized("hybrid"), neon, pixel]
        methods[f"integrated{suffix}"] = [integrated_gradient(), neon, pixel]
    return methods


#: The paired reference per model: the package's default rule when the recorded run was made
#: (that run then made neuralized-hybrid+contribution the exp-chi2 default; the reference stays
#: until the next recorded run, whose metrics.json names it in default_method).
DEFAULT_METHOD = {"hik": "lrp-eps0", "chi2": "integrated"}


def descriptor_half_side(pipe: Pipeline) -> int:
    """Half the side (4 b) of the largest SIFT descriptor in the pipeline."""
    sizes = [max(np.atleast_1d(ex.bin_sizes)) for ex in pipe.extractors_ if hasattr(ex, "bin_sizes")]
    return int(round(2 * max(sizes))) if sizes else 0


def localisation(heatmap: np.ndarray, scene, dilate: int) -> dict:
    """Where the relevance of one scene falls; means use the heatmap divided by max |R|."""
    h = heatmap / (np.abs(heatmap).max() or 1.0)
    polygon_ids = scene.polygon_ids()
    poly = np.isin(scene.mask, list(polygon_ids))
    rnd = (scene.mask > 0) & ~poly
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    poly_dil = cv2.dilate(poly.astype(np.uint8), kernel) > 0
    any_dil = cv2.dilate((scene.mask > 0).astype(np.uint8), kernel) > 0
    positive = np.maximum(h, 0)
    shape_means = {
        s["id"]: float(h[scene.mask == s["id"]].mean()) for s in scene.shapes if np.any(scene.mask == s["id"])
    }
    polys = [m for i, m in shape_means.items() if i in polygon_ids]
    rounds = [m for i, m in shape_means.items() if i not in polygon_ids]
    return {
        "positive_share_on_polygons": float(positive[poly_dil].sum() / max(positive.sum(), 1e-300)),
        "dilated_polygon_area_share": float(poly_dil.mean()),
        "mean_on_polygons": float(h[poly].mean()) if poly.any() else None,
        "mean_on_round": float(h[rnd].mean()) if rnd.any() else None,
        "mean_on_background": float(h[~any_dil].mean()),
        "polygons_positive": [m > 0 for m in polys],
        "round_negative": [m < 0 for m in rounds],
    }


def summarise_localisation(per_scene: list[dict]) -> dict:
    def mean(key):
        vals = [s[key] for s in per_scene if s[key] is not None]
        return float(np.mean(vals)) if vals else None

    polys = [b for s in per_scene for b in s["polygons_positive"]]
    rounds = [b for s in per_scene for b in s["round_negative"]]
    return {
        "positive_share_on_polygons": mean("positive_share_on_polygons"),
        "dilated_polygon_area_share": mean("dilated_polygon_area_share"),
        "mean_relevance_on_polygons": mean("mean_on_polygons"),
        "mean_relevance_on_round": mean("mean_on_round"),
        "mean_relevance_on_background": mean("mean_on_background"),
        "fraction_polygons_positive": float(np.mean(polys)) if polys else None,
        "fraction_round_negative": float(np.mean(rounds)) if rounds else None,
        "n_polygons": len(polys),
        "n_round": len(rounds),
    }


def mean_se(values) -> dict:
    """``{"mean", "stderr", "n"}`` of per-tile values (standard error of the mean, ddof = 1)."""
    v = np.asarray(values, dtype=np.float64)
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None
    return {"mean": float(v.mean()), "stderr": se, "n": int(v.size)}


def quantiles(values) -> dict:
    v = np.asarray([a for a in values if a is not None], dtype=np.float64)
    if v.size == 0:
        return {"median": None, "p90": None, "mean": None, "max": None, "n": 0}
    return {
        "median": float(np.median(v)),
        "p90": float(np.quantile(v, 0.9)),
        "mean": float(v.mean()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def select_tiles(labels: np.ndarray, n_tiles: int, seed: int) -> np.ndarray:
    """Indices of ``n_tiles`` held-out tiles, half positive and half negative, drawn with ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 16]))
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = min(len(pos), (n_tiles + 1) // 2)
    n_neg = min(len(neg), n_tiles - n_pos)
    return np.sort(
        np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)])
    )


def positive_share(heatmap: np.ndarray, region: np.ndarray) -> float | None:
    """``sum_{p in region} max(R_p, 0) / sum_p max(R_p, 0)``; None without positive relevance."""
    positive = np.maximum(heatmap, 0.0)
    total = float(positive.sum())
    return float(positive[region].sum() / total) if total > 0 else None


def tile_faithfulness(
    pipe,
    tile,
    methods: dict,
    perturbations,
    steps: int,
    seed: int,
    region: np.ndarray | None = None,
    prior: dict | None = None,
    timing_reference: tuple[str, list] | None = None,
) -> dict:
    """One tile: explanations, Taylor diagnostics and MoRF curves of every method.

    Every method of one tile and perturbation uses the same noise seed (common
    random numbers), so per-tile differences between methods measure the order,
    not the noise. With ``region`` (bool (H, W): the tile's dilated polygons), the
    share of each method's positive relevance inside it (:func:`positive_share`;
    occlusion as ``occlusion-<perturbation>``) is in ``out["localisation"]``.
    ``out["seconds"]`` holds the forward pass (``forward``) and each method's
    explain time on that trace, each the best of two calls one after the other in this
    process (the first call of a process compiles the Numba kernels);
    ``out["ratios"][m]`` is method ``m``'s time over the reference method's
    (``"default"``; the reference is named in ``"reference"``) and over the forward pass
    (``"forward"``), timed in the same call.

    With ``prior`` (this tile's stored result from an earlier call with the same model,
    tile and settings) only ``methods`` are computed: occlusion, the random ordering,
    the score and the occlusion localisation are ``prior``'s, and the result holds
    ``methods`` only (merge it with :func:`merge_tile`). ``timing_reference``
    (name, rules) is then explained too, for timing only, so that the new methods'
    ``ratios`` are measured against the reference in one process and one call.
    """
    from bowlrp.evaluation import occlusion_map, region_perturbation
    from bowlrp.explanation import explain_trace

    seconds = []
    for _ in range(2):  # best of two: the first call of a process compiles Numba kernels
        t0 = time.perf_counter()
        trace = pipe.forward_one(tile)
        seconds.append(time.perf_counter() - t0)
    out = {"score": None, "taylor": {}, "curves": {}, "seconds": {"forward": min(seconds)}}
    heatmaps = {}
    timed = dict(methods)
    if timing_reference is not None and timing_reference[0] not in timed:
        timed[timing_reference[0]] = timing_reference[1]
    for name, rules in timed.items():
        seconds = []
        for _ in range(2):
            t0 = time.perf_counter()
            e = explain_trace(pipe, trace, 1, rules)
            seconds.append(time.perf_counter() - t0)
        if name not in methods:  # the reference, timed only
            out["seconds"][f"reference:{name}"] = min(seconds)
            continue
        out["seconds"][name] = min(seconds)
        heatmaps[name] = e.heatmap
        out["score"] = e.score
        if e.root_distance is not None:
            out["taylor"][name] = {
                "relative_residual": abs(e.residual) / max(abs(e.score), 1e-300),
                "root_distance": float(e.root_distance),
            }
    if prior is not None and not np.isclose(out["score"], prior["score"], rtol=1e-9, atol=1e-12):
        raise ValueError(
            f"f(x) = {out['score']!r} differs from the stored {prior['score']!r}: "
            "the stored tile was made with another model"
        )
    reference = timing_reference[0] if timing_reference is not None else next(iter(methods))
    ref_seconds = out["seconds"].get(reference, out["seconds"].get(f"reference:{reference}"))
    out["ratios"] = {
        m: {
            "default": out["seconds"][m] / ref_seconds,
            "forward": out["seconds"][m] / out["seconds"]["forward"],
            "reference": reference,
        }
        for m in methods
    }
    first = next(iter(heatmaps.values()))
    located = {}
    for pert in perturbations:
        t0 = time.perf_counter()
        maps = dict(heatmaps)
        if prior is None:
            maps["occlusion"] = occlusion_map(pipe, tile, BLOCK, pert, seed, 1)
            located[f"occlusion-{pert}"] = maps["occlusion"]
            out["seconds"][f"occlusion-{pert}"] = time.perf_counter() - t0
        curves, seen = {}, {}
        extra = [("random", first)] if prior is None else []
        for m, heat in [*maps.items(), *extra]:
            ordering = "random" if m == "random" else "morf"
            key = (ordering, heat.tobytes())
            if key not in seen:  # identical heatmaps share one curve
                r = region_perturbation(pipe, [tile], [heat], (ordering,), BLOCK, steps, 1, pert, seed, 1)
                seen[key] = r.curves[ordering][0, 0]
            curves[m] = seen[key]
        out["curves"][pert] = curves
        out["seconds"][f"perturbation-{pert}"] = time.perf_counter() - t0
    if region is not None and region.any():
        out["localisation"] = {m: positive_share(h, region) for m, h in {**heatmaps, **located}.items()} | {
            "area_share": float(region.mean())
        }
    return out


def _method_names(result: dict) -> list[str]:
    """The LRP methods a stored tile result holds (the curves of its first perturbation)."""
    curves = next(iter(result["curves"].values()))
    return [m for m in curves if m not in ("occlusion", "random")]


def merge_tile(prior: dict, new: dict) -> dict:
    """The union of two results of one tile: ``prior`` with ``new``'s methods added.

    ``new`` is a :func:`tile_faithfulness` result made with ``prior=prior``: its methods'
    curves, explain seconds, ratios, Taylor diagnostics and localisation join ``prior``'s;
    everything shared (score, occlusion, random, the forward pass) stays ``prior``'s.
    """
    added = _method_names(new)
    return {
        "score": prior["score"],
        "taylor": {**prior.get("taylor", {}), **new.get("taylor", {})},
        "curves": {p: {**c, **{m: new["curves"][p][m] for m in added}} for p, c in prior["curves"].items()},
        "seconds": {**prior["seconds"], **{m: new["seconds"][m] for m in added}},
        "ratios": {**prior.get("ratios", {}), **new["ratios"]},
        **(
            {"localisation": {**prior["localisation"], **{m: new["localisation"][m] for m in added}}}
            if "localisation" in prior
            else {}
        ),
    }


def restrict_tile(result: dict, order) -> dict:
    """The part of a tile's result that belongs to the methods ``order``, every per-method
    block in that order (then occlusion and random), as one call computing them all stores it."""
    held = set(_method_names(result))
    order = list(order)

    def pick(block: dict, tail=()) -> dict:
        return {m: block[m] for m in [*order, *tail] if m in block}

    def shared(block: dict) -> dict:
        return {k: v for k, v in block.items() if k not in held}

    out = {
        "score": result["score"],
        "taylor": pick(result.get("taylor", {})),
        "curves": {p: pick(c, ("occlusion", "random")) for p, c in result["curves"].items()},
        "seconds": shared(result["seconds"]) | pick(result["seconds"]),
    }
    if "ratios" in result:
        out["ratios"] = pick(result["ratios"])
    if "localisation" in result:
        out["localisation"] = pick(result["localisation"]) | shared(result["localisation"])
    return out


def tile_task(
    item, pipe, methods: dict, default: str, partial: Path, key: str, legacy_key, perturbations, steps, seed
) -> dict:
    """One evaluated tile ``item = (index, crop, dilated polygons)``: :func:`tile_faithfulness`
    of ``methods`` through the tile's file in ``partial`` (:func:`cached_methods`); the noise
    seed is ``seed + index``, the cost reference ``default``."""
    index, tile, region = item
    return cached_methods(
        partial / f"tile{index:05d}.json",
        key,
        {m: repr(r) for m, r in methods.items()},
        lambda names, prior: tile_faithfulness(
            pipe,
            tile,
            {m: methods[m] for m in names},
            perturbations,
            steps,
            seed + index,
            region,
            prior=prior,
            timing_reference=(default, methods[default]),
        ),
        legacy_key,
    )


def tile_regions(scenes, indices, dilate: int, tile: int = TILE, stride: int = STRIDE) -> dict:
    """Index of a held-out crop -> its dilated polygon mask (bool (tile, tile)).

    The crops are numbered as :func:`bowlrp.datasets.polygons.overlapping_tiles` numbers
    them (scene by scene, rows then columns every ``stride`` pixels); the polygons are
    dilated by ``dilate`` pixels on the whole scene, then cropped.
    """
    wanted = {int(i) for i in indices}
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
    out, k = {}, 0
    for s in scenes:
        poly = np.isin(s.mask, list(s.polygon_ids())).astype(np.uint8)
        dil = cv2.dilate(poly, kernel) > 0
        H, W = s.image.shape
        for r in range(0, H - tile + 1, stride):
            for c in range(0, W - tile + 1, stride):
                if k in wanted:
                    out[k] = dil[r : r + tile, c : c + tile]
                k += 1
    return out


def run_key(clf, eval_features: np.ndarray, settings: dict) -> str:
    """Digest of the fitted classifier, the evaluated tiles' features and the settings."""
    import hashlib

    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for a in (clf.support_vectors_, clf.dual_coef_, clf.intercept_, clf.kernel_weights_, eval_features):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


def cached_tile(path: Path, key: str, compute) -> dict:
    """The result stored at ``path`` if it was made with ``key``, else ``compute()``, stored atomically.

    A killed run resumes with the tiles it finished; a result made with another
    model or other settings is recomputed, never reused. (The one-key cache of the
    Fisher and neuralised experiments; this experiment keys per method:
    :func:`cached_methods`.)
    """
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                return stored["result"]
        except (OSError, ValueError):
            pass
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = json.loads(json.dumps(result, default=lambda a: np.asarray(a).tolist()))
    _write_json(path, {"key": key, "result": plain})
    return plain


def cached_methods(path: Path, key: str, methods: dict, compute, legacy_key=None) -> dict:
    """One tile's result for ``methods``, reusing what ``path`` holds; computes only what is missing.

    The file (written atomically) is ``{"key", "methods", "result"}``: ``key`` names the
    model, the evaluated tiles and the settings (:func:`run_key` without the methods), ``methods``
    maps each method it holds to ``repr`` of its rules. A method whose name and rules are
    stored under ``key`` is reused as it is; the others are computed by
    ``compute(names, prior)`` (``prior``: the stored result, whose occlusion and random
    curves they are paired with; None: compute everything) and added to the file. So a
    killed run resumes with the tiles it finished, adding a method to the table computes
    only that method, and a result made with another model, tile or settings, or a
    method whose rules changed, is recomputed, never reused. Methods the file holds that
    ``methods`` does not ask for stay in the file.

    ``legacy_key(reprs)``: the key a file written before the per-method keys (one key over
    all its methods, no ``"methods"``) carries if it was made with ``reprs``; such a file
    is reused when its key matches with the current rules of its methods.

    Parameters
    ----------
    methods : dict
        Method name -> ``repr`` of its rules, in the order of the table.

    Returns
    -------
    dict
        The result for ``methods`` only (:func:`restrict_tile`), as plain JSON values, and
        ``"computed"``: the methods this call computed (not stored).
    """
    prior, held = None, {}
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            result = stored["result"]
            if "methods" in stored:
                held = dict(stored["methods"]) if stored["key"] == key else {}
            elif legacy_key is not None:
                names = _method_names(result)
                reprs = {n: methods[n] for n in names if n in methods}
                held = reprs if len(reprs) == len(names) and stored["key"] == legacy_key(reprs) else {}
            held = {m: r for m, r in held.items() if methods.get(m, r) == r}  # changed rules: not reused
            if held:
                prior = restrict_tile(result, list(held))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
            prior, held = None, {}
    missing = [m for m in methods if m not in held]
    if prior is None:
        result, held = compute(list(methods), None), {}
    elif missing:
        result = merge_tile(prior, compute(missing, prior))
    else:
        return restrict_tile(prior, list(methods)) | {"computed": []}
    plain = json.loads(json.dumps(result, default=lambda a: np.asarray(a).tolist()))
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"key": key, "methods": {**held, **{m: methods[m] for m in missing}}, "result": plain})
    return restrict_tile(plain, list(methods)) | {"computed": missing}


def summarise_faithfulness(
    per_tile: list[dict], perturbations, default: str | None = None
) -> tuple[dict, dict]:
    """(metrics block, curves block): AOPC per method and paired differences per perturbation.

    ``paired_differences[m][ref]`` is the mean over tiles of ``AOPC_m - AOPC_ref`` with its
    standard error, for ``ref`` in occlusion, random and (with ``default``, for every other
    LRP method) ``"default"``: the method that is the package's default rule.
    """
    from bowlrp.evaluation.perturbation import aopc

    block, curves_out = {}, {}
    for pert in perturbations:
        methods = list(per_tile[0]["curves"][pert])
        curves = {m: np.stack([t["curves"][pert][m] for t in per_tile]) for m in methods}
        per_tile_aopc = {m: aopc(c) for m, c in curves.items()}
        table = {}
        for m in methods:
            s = mean_se(per_tile_aopc[m])
            table[m] = {"aopc": s["mean"], "stderr": s["stderr"], "n_tiles": s["n"]}
        paired = {}
        for m in methods:
            if m in ("occlusion", "random"):
                continue
            refs = {"occlusion": "occlusion", "random": "random"}
            if default is not None and m != default:
                refs["default"] = default
            paired[m] = {
                ref: {"mean": d["mean"], "stderr": d["stderr"]}
                for ref, other in refs.items()
                for d in [mean_se(per_tile_aopc[m] - per_tile_aopc[other])]
            }
        paired["occlusion"] = {
            "random": {
                k: v
                for k, v in mean_se(per_tile_aopc["occlusion"] - per_tile_aopc["random"]).items()
                if k != "n"
            }
        }
        block[pert] = {"methods": table, "paired_differences": paired}
        drops = {m: c[:, :1] - c for m, c in curves.items()}
        curves_out[pert] = {
            m: {
                "mean_drop": d.mean(0).tolist(),
                "stderr_drop": (d.std(0, ddof=1) / np.sqrt(len(d))).tolist(),
                "aopc_per_tile": per_tile_aopc[m].tolist(),
            }
            for m, d in drops.items()
        }
    return block, curves_out


def summarise_tile_localisation(per_tile: list[dict], default: str | None = None) -> dict | None:
    """Share of positive relevance on the dilated polygons of the evaluated tiles, per method.

    Over the tiles with a polygon pixel and some positive relevance for that method:
    ``{"area_share", "n_tiles", "methods": {m: {"mean", "stderr", "n"}},
    "paired_minus_default": {m: {"mean", "stderr", "n"}}}`` (the paired difference over
    the tiles where both have a value). None when no tile has a polygon.
    """
    tiles = [t["localisation"] for t in per_tile if t.get("localisation")]
    if not tiles:
        return None
    names = [m for m in tiles[0] if m != "area_share"]
    methods, paired = {}, {}
    for m in names:
        values = [t[m] for t in tiles if t[m] is not None]
        methods[m] = mean_se(values) if values else None
        if default is not None and m != default and default in tiles[0]:
            both = [t[m] - t[default] for t in tiles if t[m] is not None and t[default] is not None]
            paired[m] = mean_se(both) if both else None
    return {
        "area_share": float(np.mean([t["area_share"] for t in tiles])),
        "n_tiles": len(tiles),
        "methods": methods,
        "paired_minus_default": paired,
    }


def summarise_cost(per_tile: list[dict], methods, default: str) -> dict:
    """Explain time per tile: median seconds, and the median over tiles of the ratio to the
    default's time and to the forward pass of the same tile (one process, one after the other).

    The per-tile ratios are the tile's ``ratios`` when their reference is ``default`` (a method
    added to finished tiles is timed with the default and the forward pass again, in its own
    call); otherwise ``seconds[m] / seconds[default]`` and ``seconds[m] / seconds["forward"]``,
    which are paired for methods computed in one call with the default, and only
    approximately (two calls) for a method added later against another reference."""
    out = {}
    for m in methods:
        sec = np.array([t["seconds"][m] for t in per_tile])
        to_default, to_forward = [], []
        for t in per_tile:
            r = (t.get("ratios") or {}).get(m)
            if r is None or r.get("reference") != default:  # from the seconds (see above)
                s = t["seconds"]
                r = {"default": s[m] / s[default], "forward": s[m] / s["forward"] if "forward" in s else None}
            to_default.append(r["default"])
            to_forward.append(np.nan if r["forward"] is None else r["forward"])
        fwd = np.array(to_forward, dtype=np.float64)
        out[m] = {
            "median_seconds": float(np.median(sec)),
            "median_ratio_to_default": float(np.median(to_default)),
            "median_ratio_to_forward": float(np.nanmedian(fwd)) if np.isfinite(fwd).any() else None,
        }
    return out


def summarise_taylor(per_tile: list[dict]) -> dict:
    names = list(per_tile[0]["taylor"])
    return {
        m: {
            "relative_residual": quantiles([t["taylor"][m]["relative_residual"] for t in per_tile]),
            "root_distance": quantiles([t["taylor"][m]["root_distance"] for t in per_tile]),
        }
        for m in names
    }


def highlighted_methods(model_curves: dict, reference: str | None, n_best: int = 3) -> list[str]:
    """The curves a panel draws in colour: the paired reference, the ``n_best`` LRP rules by
    mean AOPC under any perturbation, occlusion and random (the others are drawn in grey)."""
    rules = [m for m in next(iter(model_curves.values())) if m not in ("occlusion", "random")]
    best = sorted(
        rules,
        key=lambda m: -max(np.mean(model_curves[p][m]["aopc_per_tile"]) for p in model_curves),
    )[:n_best]
    chosen = ([reference] if reference in rules else []) + [m for m in best if m != reference]
    return chosen + ["occlusion", "random"]


def plot_curves(curves: dict, path: Path, steps: int) -> None:
    """Per model x perturbation: mean MoRF curves f(x0) - f(xk) with one-standard-error bands
    and, beside them, every method's AOPC with its standard error.

    The curve panel draws the paired reference (:data:`DEFAULT_METHOD`), the three rules
    with the highest AOPC, occlusion and random in colour, and every other rule as a thin
    grey line without a band, so that a table of 17 rules stays readable; the bar panel
    names them all."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bowlrp._utils.atomic import atomic_write_bytes

    models = list(curves)
    perts = list(next(iter(curves.values())))
    n_methods = max(len(curves[m][p]) for m in models for p in perts)
    fig, axes = plt.subplots(
        len(models),
        2 * len(perts),
        figsize=(11 * len(perts), max(4.6, 0.28 * n_methods + 1.2) * len(models)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.35, 1.0] * len(perts)},
    )
    palette = plt.get_cmap("tab10").colors
    for i, model in enumerate(models):
        shown = highlighted_methods(curves[model], DEFAULT_METHOD.get(model))
        colours = {
            m: palette[k % 10] for k, m in enumerate(x for x in shown if x not in ("occlusion", "random"))
        }
        colours.update({"occlusion": "black", "random": "black"})
        for j, pert in enumerate(perts):
            ax, bars = axes[i][2 * j], axes[i][2 * j + 1]
            data = curves[model][pert]
            for m, d in data.items():  # grey first, so the highlighted curves are drawn on top
                if m in shown:
                    continue
                ax.plot(np.array(d["mean_drop"]), "-", color="0.7", lw=0.8, zorder=1)
            for m in shown:
                d = data[m]
                mean, se = np.array(d["mean_drop"]), np.array(d["stderr_drop"])
                ks = np.arange(mean.size)
                style = {"occlusion": "--", "random": ":"}.get(m, "-")
                label = f"{m} (AOPC {np.mean(d['aopc_per_tile']):.2f})"
                if m == DEFAULT_METHOD.get(model):
                    label += ", reference"
                ax.plot(ks, mean, style, color=colours[m], lw=1.8, label=label, zorder=3)
                ax.fill_between(ks, mean - se, mean + se, color=colours[m], alpha=0.15, zorder=2)
            n = len(next(iter(data.values()))["aopc_per_tile"])
            others = len(data) - len(shown)
            ax.set_title(
                f"{model}: MoRF {BLOCK}x{BLOCK} {pert}, {n} tiles (band: ±1 s.e.)"
                + (f"\ngrey: the other {others} rule{'s' if others > 1 else ''}" if others else "")
            )
            ax.set_xlabel("perturbation step k")
            ax.set_ylabel("f(x0) - f(xk)")
            ax.set_xlim(0, steps)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
            order = sorted(data, key=lambda m: np.mean(data[m]["aopc_per_tile"]))
            values = [np.asarray(data[m]["aopc_per_tile"], float) for m in order]
            means = [v.mean() for v in values]
            sems = [v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0 for v in values]
            bars.barh(
                np.arange(len(order)),
                means,
                xerr=sems,
                color=[colours.get(m, "0.75") if m not in ("occlusion", "random") else "0.3" for m in order],
                error_kw={"lw": 0.8},
            )
            bars.set_yticks(np.arange(len(order)), order, fontsize=8)
            bars.axvline(0, color="k", lw=0.6)
            bars.set_xlabel("AOPC (mean ± s.e. over tiles)")
            bars.set_title(f"{model}, {pert}: every method")
            bars.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def saved_models(out: Path, models, metrics: dict) -> dict | None:
    """The pipelines an earlier run saved in ``out``, if it was made with the same data and configs.

    That run's ``metrics.json`` must agree with ``metrics`` (the new run's, before any
    model) on the seed, the words override, the training data and, per model, the
    config; and every ``polygons_<model>.pkl`` must be there. Else None (fit anew).
    The files are read with :func:`bowlrp.model_files.load` (the exact type allowlist).
    """
    paths = {n: out / f"polygons_{n}.pkl" for n in models}
    try:
        earlier = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    same = (
        earlier.get("settings", {}).get("seed") == metrics["settings"]["seed"]
        and earlier.get("settings", {}).get("words_override") == metrics["settings"]["words_override"]
        and all(earlier.get("data", {}).get(k) == metrics["data"][k] for k in ("train_scenes", "train_tiles"))
        and all(earlier.get("models", {}).get(n, {}).get("config") == CONFIGS[n] for n in models)
    )
    if not same or not all(p.is_file() for p in paths.values()):
        return None
    return {n: load(p) for n, p in paths.items()}


def fit_models(X, y, models, overrides: dict) -> tuple[dict, dict]:
    """Fit one pipeline per config sharing the Bag-of-Words stages; returns (pipes, seconds).

    The configs must agree on everything but the kernels (checked), so the
    vocabularies are fitted and the training crops described and encoded once.
    """
    pipes = {name: Pipeline.from_config(CONFIGS[name], **overrides) for name in models}

    def stages(p):
        return {k: v for k, v in p.get_params(deep=True).items() if "__extractor" in k or "__encoder" in k}

    first = pipes[models[0]]
    for name in models[1:]:
        if repr(stages(pipes[name])) != repr(stages(first)) or pipes[name].random_state != first.random_state:
            raise ValueError(
                f"configs {CONFIGS[models[0]]} and {CONFIGS[name]} differ in more "
                "than the kernel; they cannot share features"
            )
    t0 = time.perf_counter()
    # fit's own path (private): describe once, keep the descriptors for the encoding
    cached = first._fit_vocabularies(X)
    F = first._features_from_cache(X, cached)
    del cached
    seconds = {"vocabularies_and_features": time.perf_counter() - t0}
    for name, pipe in pipes.items():
        for attr in _FITTED_STAGES:
            setattr(pipe, attr, getattr(first, attr))
        t0 = time.perf_counter()
        log(f"[{name}] fitting the SVM on {len(F)} feature vectors")
        pipe.fit_classifier(F, y)
        seconds[f"svm_{name}"] = time.perf_counter() - t0
    return pipes, seconds


def run(
    out_dir,
    n_train: int = 60,
    n_test: int = 3,
    n_val: int = 6,
    seed: int = 0,
    n_words: int | None = None,
    n_jobs: int | None = 2,
    models=("hik", "chi2"),
    n_figure: int = 3,
    verbose: bool = True,
    n_eval_tiles: int = 40,
    eval_steps: int = 30,
    eval_perturbations=PERTURBATIONS,
    refit: bool = False,
) -> dict:
    """The whole experiment; returns the metrics (also written to ``out_dir/metrics.json``).

    The models of an earlier run in ``out_dir`` are reused (:func:`saved_models`) unless
    ``refit``; finished tiles of the region perturbation are reused per method
    (:func:`cached_methods`).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    models = tuple(models)
    log(f"generating {n_train} training, {n_val} held-out and {n_test} test scenes (seed {seed})")
    train_scenes = generate(seed, n_train)
    val_scenes = generate(seed + 5000, n_val)
    test_scenes = generate(seed + 1000, n_test)
    save_scenes(test_scenes[:n_figure], out / "test_scenes", "test")
    X, y = tile_dataset(train_scenes)
    Xt, yt, owner = polygon_data.overlapping_tiles(val_scenes)
    log(f"{len(X)} training tiles ({y.mean():.0%} positive), {len(Xt)} held-out tiles (every {STRIDE} px)")
    overrides = {"n_jobs": n_jobs, "verbose": verbose}
    if n_words is not None:
        overrides["n_words"] = n_words
    eval_idx = select_tiles(yt, n_eval_tiles, seed) if n_eval_tiles else np.zeros(0, int)
    metrics = {
        "schema": SCHEMA,
        "settings": {
            "seed": seed,
            "words_override": n_words,
            "explained_class": "polygon (1)",
            "region_perturbation": {
                "block": BLOCK,
                "steps": eval_steps,
                "ordering": "morf",
                "repeats": 1,
                "tiles": len(eval_idx),
                "perturbations": list(eval_perturbations),
                "blur_sigma": 4.0,
            },
        },
        "data": {
            "train_scenes": n_train,
            "heldout_scenes": n_val,
            "test_scenes": n_test,
            "train_tiles": len(X),
            "train_positive_share": float(y.mean()),
            "heldout_tiles": len(Xt),
            "heldout_positive_share": float(yt.mean()),
            "heldout_stride": STRIDE,
            "tile": TILE,
            "eval_tiles": len(eval_idx),
            "eval_positive": int(yt[eval_idx].sum()),
        },
        "models": {},
    }
    timings: dict = {"seconds": {}, "model_bytes": {}}
    pipes = None if refit else saved_models(out, models, metrics)
    if pipes is None:
        pipes, fit_seconds = fit_models(X, y, models, overrides)
        timings["seconds"]["fit"] = fit_seconds
    else:
        log(
            f"reusing the models of {out / 'metrics.json'}: " + ", ".join(f"polygons_{n}.pkl" for n in models)
        )
        for pipe in pipes.values():
            pipe.set_params(n_jobs=n_jobs, verbose=verbose)
        timings["reused_models"] = [f"polygons_{n}.pkl" for n in models]
    t0 = time.perf_counter()
    first = pipes[models[0]]
    first.set_params(verbose=False)
    Ft = first.features(Xt)  # the held-out crops, encoded once for both models
    timings["seconds"]["encode_heldout"] = time.perf_counter() - t0
    heatmaps, curves_all, faith_tiles = {}, {}, {}
    scene_scores = {}  # model -> f(x) of each test scene (mean over its tiles), shown on the figures
    for name in models:
        pipe = pipes[name]
        pipe.set_params(verbose=False)
        clf = pipe.classifier_
        accuracy = float(clf.score(Ft, yt))
        stderr = float(np.sqrt(accuracy * (1 - accuracy) / len(yt)))
        # overlapping crops of one scene are correlated: the spread of per-scene accuracies
        correct = clf.predict(Ft) == yt
        per_scene = [float(correct[owner == k].mean()) for k in range(n_val)]
        stderr_scenes = float(np.std(per_scene, ddof=1) / np.sqrt(n_val)) if n_val > 1 else None
        log(f"[{name}] held-out tile accuracy {accuracy:.4f} +- {stderr:.4f} ({len(yt)} tiles)")
        model_path = out / f"polygons_{name}.pkl"
        if "reused_models" not in timings:
            save(pipe, model_path)
        timings["model_bytes"][name] = model_path.stat().st_size
        t0 = time.perf_counter()
        maps, scene_scores[name] = [], []
        for s in tqdm(test_scenes, desc=f"[{name}] explaining test scenes", disable=not verbose):
            e = pipe.explain([s.image], target=1, tile=TILE, stride=STRIDE)[0]
            maps.append(e.heatmap)
            scene_scores[name].append(float(e.score))
        timings["seconds"][f"explain_test_scenes_{name}"] = time.perf_counter() - t0
        heatmaps[name] = maps
        dilate = descriptor_half_side(pipe)
        located = [localisation(h, s, dilate) for h, s in zip(maps, test_scenes)]
        entry = {
            "config": CONFIGS[name],
            "kernels": [type(k).__name__ for k in clf.kernels_],
            "accuracy": {
                "value": accuracy,
                "stderr": stderr,
                "stderr_scenes": stderr_scenes,
                "n_tiles": len(yt),
                "n_scenes": n_val,
            },
            "kernel_weights": clf.kernel_weights_[0].tolist(),
            "n_support_vectors": int(clf.support_vectors_.shape[0]),
            "localisation": {"dilation_pixels": dilate, **summarise_localisation(located)},
            "region_perturbation": None,
        }
        if len(eval_idx):
            t0 = time.perf_counter()
            family = "hik" if name == "hik" else "chi2"
            methods, default = lrp_methods(family), DEFAULT_METHOD[family]
            regions = tile_regions(val_scenes, eval_idx, dilate)
            entry["default_method"] = default
            entry["methods"] = {m: [type(r).__name__ for r in rules] for m, rules in methods.items()}
            log(f"[{name}] region perturbation on {len(eval_idx)} tiles ({int(yt[eval_idx].sum())} positive)")
            settings = {
                "steps": eval_steps,
                "seed": seed,
                "block": BLOCK,
                "perturbations": list(eval_perturbations),
                "localisation_dilation": dilate,
            }
            key = run_key(clf, Ft[eval_idx], {**settings, "methods": "per-method"})

            def legacy_key(reprs, clf=clf, features=Ft[eval_idx], settings=settings):
                return run_key(clf, features, {**settings, "methods": reprs})

            task = functools.partial(
                tile_task,
                pipe=pipe,
                methods=methods,
                default=default,
                partial=out / "partial" / name,
                key=key,
                legacy_key=legacy_key,
                perturbations=tuple(eval_perturbations),
                steps=eval_steps,
                seed=seed,
            )
            per_tile = map_images(
                task,
                [(int(i), Xt[i], regions[int(i)]) for i in eval_idx],
                n_jobs,
                f"[{name}] region perturbation",
                verbose,
            )
            entry["region_perturbation"], curves_all[name] = summarise_faithfulness(
                per_tile, eval_perturbations, default
            )
            entry["tile_localisation"] = summarise_tile_localisation(per_tile, default)
            if any(t["taylor"] for t in per_tile):
                entry["taylor"] = summarise_taylor(per_tile)
            faith_tiles[name] = per_tile
            timings["seconds"][f"region_perturbation_{name}"] = time.perf_counter() - t0
            done = sum(len(t["computed"]) for t in per_tile)
            timings.setdefault("tile_methods", {})[name] = {
                "computed": done,
                "reused": len(per_tile) * len(methods) - done,
            }
            timings["seconds"][f"explain_per_tile_median_{name}"] = {
                m: float(np.median([t["seconds"][m] for t in per_tile])) for m in methods
            }
            timings.setdefault("explain_cost", {})[name] = summarise_cost(per_tile, methods, default)
        metrics["models"][name] = entry
    if set(models) >= {"hik", "chi2"}:
        metrics["chi2_minus_hik_accuracy_points"] = 100 * (
            metrics["models"]["chi2"]["accuracy"]["value"] - metrics["models"]["hik"]["accuracy"]["value"]
        )
    if curves_all:
        _write_json(
            out / "region_perturbation.json",
            {
                "settings": metrics["settings"]["region_perturbation"],
                "tiles": [int(i) for i in eval_idx],
                "labels": [int(yt[i]) for i in eval_idx],
                "scores": {n: [t["score"] for t in faith_tiles[n]] for n in faith_tiles},
                "curves": curves_all,
            },
        )
        plot_curves(curves_all, out / "region_perturbation.png", eval_steps)
    rows = []
    for i, scene in enumerate(test_scenes[:n_figure]):
        norm = pictures.normalize_heatmaps([heatmaps[m][i] for m in models])
        gap = np.ones((scene.image.shape[0] + 14, 6, 3))  # 14: the panels' title strips
        parts = [pictures.label_panel(np.repeat(scene.image[:, :, None], 3, axis=2), f"test scene {i}")]
        for m, h in zip(models, norm):
            title = f"{m}, polygon: mean tile f(x) = {scene_scores[m][i]:+.3g}"
            parts += [gap, pictures.label_panel(pictures.colorize(h, "jet") / 255.0, title)]
            triplet = pictures.triplet(scene.image, h, scale=1.0)  # h is already in [-1, 1]
            pictures.save_png(
                out / f"scene{i}_{m}_triplet.png",
                pictures.with_colorbar(pictures.label_panel(triplet, title)),
            )
            overlay = pictures.overlay(scene.image, h, scale=1.0)
            pictures.save_png(out / f"scene{i}_{m}_overlay.png", pictures.label_panel(overlay, title))
        rows.append(np.hstack(parts))
    if rows:
        figure = np.vstack([np.vstack([r, np.ones((6, r.shape[1], 3))]) for r in rows])[:-6]
        pictures.save_png(out / "figure.png", pictures.with_colorbar(figure, "jet"))
    _write_json(out / "metrics.json", metrics)
    timings["seconds"]["total"] = time.perf_counter() - t_start
    timings["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}
    _write_json(out / "timings.json", timings)
    log(
        f"done in {timings['seconds']['total']:.0f} s ({timings['seconds']['total'] / 60:.1f} min); "
        f"wrote {out / 'metrics.json'}, {out / 'timings.json'} and the figures"
    )
    metrics["_seconds_total"] = timings["seconds"]["total"]
    return metrics


def print_summary(m: dict) -> None:
    def num(x, fmt="+.4f"):
        return "-" if x is None else format(x, fmt)

    for name, r in m["models"].items():
        loc, acc = r["localisation"], r["accuracy"]
        print(
            f"{name:5s} accuracy {acc['value']:.4f} ± {acc['stderr']:.4f}  positive share on "
            f"polygons {num(loc['positive_share_on_polygons'], '.2f')} (area "
            f"{num(loc['dilated_polygon_area_share'], '.2f')})  mean relevance polygons "
            f"{num(loc['mean_relevance_on_polygons'])} round {num(loc['mean_relevance_on_round'])} "
            f"background {num(loc['mean_relevance_on_background'])}"
        )
        for pert, block in (r["region_perturbation"] or {}).items():
            print(f"      AOPC (MoRF, {BLOCK}x{BLOCK} {pert}, ± s.e.; paired minus occlusion / random):")
            for meth, a in block["methods"].items():
                p = block["paired_differences"].get(meth, {})
                diffs = "  ".join(f"{ref} {d['mean']:+.3f} ± {d['stderr']:.3f}" for ref, d in p.items())
                print(f"        {meth:16s} {a['aopc']:.3f} ± {a['stderr']:.3f}  {diffs}")
        for meth, t in (r.get("taylor") or {}).items():
            res, dist = t["relative_residual"], t["root_distance"]
            print(
                f"      {meth:16s} residual/|f| median {res['median']:.2e} p90 {res['p90']:.2e}  "
                f"root distance median {dist['median']:.4f}"
            )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "experiments/results/polygons"))
    ap.add_argument("--train-scenes", type=int, default=60)
    ap.add_argument("--test-scenes", type=int, default=3, help="scenes explained tile by tile")
    ap.add_argument(
        "--heldout-scenes", type=int, default=6, help="scenes for tile accuracy (169 crops each, every 34 px)"
    )
    ap.add_argument("--eval-tiles", type=int, default=40, help="held-out tiles for region perturbation")
    ap.add_argument("--eval-steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--words", type=int, default=None, help="override the words per scale")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--models", default="hik,chi2", help="comma-separated subset of hik,chi2")
    ap.add_argument(
        "--perturbations", default=",".join(PERTURBATIONS), help="comma-separated subset of uniform,blur"
    )
    ap.add_argument(
        "--refit", action="store_true", help="fit the models even if --out holds those of the same settings"
    )
    args = ap.parse_args(argv)
    m = run(
        args.out,
        args.train_scenes,
        args.test_scenes,
        args.heldout_scenes,
        args.seed,
        args.words,
        args.n_jobs,
        models=tuple(args.models.split(",")),
        n_figure=min(3, args.test_scenes),
        n_eval_tiles=args.eval_tiles,
        eval_steps=args.eval_steps,
        eval_perturbations=tuple(args.perturbations.split(",")),
        refit=args.refit,
    )
    print_summary(m)
    print(f"total time {m['_seconds_total']:.0f} s ({m['_seconds_total'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
