"""Explainers by name or as a user's callable: one way for every metric to get heatmaps.

An explainer is

* a method name: ``"lrp"`` (the pipeline's default rules), an LRP rule of
  ``bowlrp-evaluate`` (:data:`~bowlrp.evaluation.runner.LRP_METHODS`, e.g.
  ``"lrp-eps1"``), ``"occlusion"`` (= ``"occlusion-uniform"``), ``"occlusion-blur"``,
  a peer of :mod:`~bowlrp.evaluation.baselines` (``"lime"``, ``"kernel-shap"``,
  ``"shap-partition"``), or ``"random"`` (uniform noise, seeded per image); or
* a callable ``explainer(model, images, targets) -> list of (H, W) maps``, Quantus's
  ``explain_func`` convention: ``images`` a list of float images in [0, 1] and
  ``targets`` the list of class labels explained (the predicted class of each
  image when no target is given).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from .._utils.validation import as_float_image
from ..rules import parse_rule
from .baselines import explain_baseline
from .perturbation import occlusion_map
from .runner import LRP_METHODS, PEER_METHODS

Explainer = str | Callable

#: every method name :func:`explain_maps` understands
METHOD_NAMES = (
    "lrp",
    *LRP_METHODS,
    "occlusion",
    "occlusion-uniform",
    "occlusion-blur",
    *PEER_METHODS,
    "random",
)


def explainer_name(explainer: Explainer) -> str:
    """A method's name, or a callable's ``__name__`` (its class name for a callable object)."""
    if isinstance(explainer, str):
        return explainer
    return getattr(explainer, "__name__", type(explainer).__name__)


def resolve_targets(pipeline, images: Sequence[np.ndarray], target=None) -> list:
    """The class label explained for each image: ``target`` for all, or each image's prediction."""
    if target is not None:
        return [pipeline.resolve_target(target)] * len(images)
    return list(pipeline.predict(list(images)))


def random_map(image: np.ndarray, seed: int) -> np.ndarray:
    """A map of uniform noise in [0, 1), shape (H, W): the ``"random"`` explainer.

    Seeded by ``seed`` and the image's bytes, so it is reproducible, differs between
    images, and differs between an image and a perturbed copy of it (a robustness
    check of a random map must not find it perfectly stable).
    """
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:8], "big")])
    return rng.random(image.shape[:2])


def explain_maps(
    pipeline,
    images,
    explainer: Explainer = "lrp",
    target=None,
    seed: int = 0,
    block: int = 9,
    samples: int = 1000,
    *,
    targets: Sequence | None = None,
) -> list[np.ndarray]:
    """Heatmaps (H, W) float64 of ``images`` by ``explainer`` (a name or a callable).

    Parameters
    ----------
    pipeline : fitted Pipeline
    images : list of images (arrays or paths)
    explainer : str or callable
        See the module docstring.
    target : class label or None
        None explains each image's predicted class.
    targets : sequence of class labels, one per image, or None
        Explain image ``i`` for ``targets[i]`` (e.g. the original model's prediction,
        kept while the model is randomised); excludes ``target``.
    seed : int
        Seeds the random maps, occlusion's noise and the peers' sampling (the same
        seed for every image, so an explainer is a fixed function of the image).
    block : int
        Occlusion's block side in pixels (and the Partition explainer's blur).
    samples : int
        Model evaluations of the peers (LIME samples, KernelSHAP nsamples, Partition max_evals).

    Returns
    -------
    list of ndarray (H, W)

    Raises
    ------
    ValueError
        An unknown method name, or a callable that returned maps of the wrong number or shape.
    """
    imgs = [as_float_image(im) for im in images]
    if targets is not None:
        if target is not None:
            raise ValueError("give target (one for all images) or targets (one per image), not both")
        if len(targets) != len(imgs):
            raise ValueError(f"{len(imgs)} images but {len(targets)} targets")
    if callable(explainer):
        targets = resolve_targets(pipeline, imgs, target) if targets is None else list(targets)
        maps = [np.asarray(m, dtype=np.float64) for m in explainer(pipeline, imgs, targets)]
        if len(maps) != len(imgs) or any(m.shape != im.shape[:2] for m, im in zip(maps, imgs)):
            raise ValueError(
                f"explainer {explainer_name(explainer)!r} must return one (H, W) map per image; "
                f"got shapes {[m.shape for m in maps][:3]} for images {[im.shape[:2] for im in imgs][:3]}"
            )
        return maps
    if explainer not in METHOD_NAMES:
        raise ValueError(f"unknown explainer {explainer!r}; use one of {list(METHOD_NAMES)} or a callable")
    if explainer == "random":
        return [random_map(im, seed) for im in imgs]
    per_image = [target] * len(imgs) if targets is None else list(targets)
    if explainer == "lrp" or explainer in LRP_METHODS:
        rules = None if explainer == "lrp" else parse_rule(LRP_METHODS[explainer])
        if targets is None:  # one call: the pipeline explains the batch
            return [np.asarray(e.heatmap, dtype=np.float64) for e in pipeline.explain(imgs, target, rules)]
        return [
            np.asarray(pipeline.explain([im], t, rules)[0].heatmap, dtype=np.float64)
            for im, t in zip(imgs, per_image)
        ]
    if explainer.startswith("occlusion"):
        how = "uniform" if explainer == "occlusion" else explainer.split("-", 1)[1]
        return [occlusion_map(pipeline, im, block, how, seed, t) for im, t in zip(imgs, per_image)]
    return [
        explain_baseline(explainer, pipeline, im, t, samples, block, seed).heatmap
        for im, t in zip(imgs, per_image)
    ]


def maps_or_explain(pipeline, images, explainer: Explainer, target, maps, seed: int = 0) -> list[np.ndarray]:
    """``maps`` as float64 arrays if given (one per image), else :func:`explain_maps`."""
    if maps is None:
        return explain_maps(pipeline, images, explainer, target, seed)
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    if len(maps) != len(images):
        raise ValueError(f"{len(images)} images but {len(maps)} maps")
    return maps
