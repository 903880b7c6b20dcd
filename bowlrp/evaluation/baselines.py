"""Peer explainers to hold bowlrp's LRP against: LIME, SHAP (Partition, Kernel), occlusion.

Each method is a library function ``f(pipeline, image, target, ...) -> BaselineResult``
with the heatmap (H, W), the number of model evaluations (images scored) and the
seconds it took. LIME and SHAP run through the real ``lime`` and ``shap``
packages and superpixels come from scikit-image's SLIC: install the optional
extra ``pip install "bowlrp[compare]"``.

Settings (the defaults of :func:`explain_baseline`):

* ``lime``: ``lime_image.LimeImageExplainer`` on SLIC superpixels
  (``n_segments=50, compactness=10, sigma=1``, channel axis none for grey images),
  ``num_samples`` perturbed images, hidden superpixels filled with their mean
  (LIME's default ``hide_color=None``), the linear model's coefficients.
* ``kernel-shap``: ``shap.KernelExplainer`` over the same superpixels (all-hidden
  background, same mean fill), ``nsamples`` model evaluations.
* ``shap-partition``: ``shap.Explainer`` with the ``shap.maskers.Image("blur(k, k)")``
  masker (Partition explainer over a pixel hierarchy), ``max_evals`` evaluations.
* ``occlusion-uniform`` / ``occlusion-blur``: :func:`~bowlrp.evaluation.occlusion_map`,
  one block at a time (one evaluation per block).

Superpixel methods give each superpixel's value divided by its area to its pixels
(additive attributions, as LRP's heatmap), so a block's sum is its share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._utils.validation import as_float_image
from .perturbation import block_grid, occlusion_map

BASELINES = ("lime", "shap-partition", "kernel-shap", "occlusion-uniform", "occlusion-blur")


def compare_extra_available() -> bool:
    """Whether lime, shap and scikit-image (the ``[compare]`` extra) can be imported."""
    try:
        import lime.lime_image  # noqa: F401 - optional: the [compare] extra (all three)
        import shap  # noqa: F401
        import skimage.segmentation  # noqa: F401
    except Exception:
        return False
    return True


def _require_extra(method: str) -> None:
    if not compare_extra_available():
        raise ImportError(
            f"the {method!r} baseline needs lime, shap and scikit-image: "
            'pip install "bowlrp[compare]" (make install does it)'
        )


@dataclass
class BaselineResult:
    """A peer method's heatmap and its cost."""

    method: str
    heatmap: np.ndarray
    evaluations: int
    seconds: float
    settings: dict = field(default_factory=dict)


class ScoreFunction:
    """``f`` of the target class for a batch of images, counting the images scored.

    Accepts (n, H, W), (n, H, W, 1) or (n, H, W, 3) arrays; grey models get the
    first channel (the peers are given grey images replicated to three channels).
    """

    def __init__(self, pipeline, target, grey: bool):
        self.pipeline = pipeline
        self.grey = grey
        clf = pipeline.classifier_
        self.task, self.sign = clf.task_and_sign(None, target) if target is not None else (0, 1.0)
        self.calls = 0

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float64)
        if images.ndim == 4 and self.grey:
            images = images[..., 0]
        self.calls += len(images)
        F = np.asarray(self.pipeline.decision_function([np.clip(im, 0, 1) for im in images]))
        F = F if F.ndim == 1 else F[:, self.task]
        return self.sign * F


def _target(pipeline, image, target):
    clf = pipeline.classifier_
    trace = pipeline.forward_one(image)
    task, sign = clf.task_and_sign(trace.features, target)
    return clf.target_label(task, sign)


def slic_segments(
    image: np.ndarray, n_segments: int = 50, compactness: float = 10.0, sigma: float = 1.0, seed: int = 0
) -> np.ndarray:
    """SLIC superpixels of a [0, 1] image (scikit-image), labels 0..S-1, shape (H, W)."""
    from skimage.segmentation import slic  # optional: the [compare] extra

    grey = image.ndim == 2
    labels = slic(
        image,
        n_segments=n_segments,
        compactness=compactness,
        sigma=sigma,
        channel_axis=None if grey else -1,
        start_label=0,
    )
    _, labels = np.unique(labels, return_inverse=True)
    return labels.reshape(image.shape[:2])


def _segment_heatmap(segments: np.ndarray, values: np.ndarray) -> np.ndarray:
    area = np.bincount(segments.ravel(), minlength=values.size).astype(np.float64)
    return (np.asarray(values, dtype=np.float64) / np.maximum(area, 1))[segments]


def _segment_means(image: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Each pixel replaced by the mean of its superpixel (LIME's ``hide_color=None`` fill)."""
    out = np.empty_like(image)
    n = segments.max() + 1
    flat = segments.ravel()
    area = np.maximum(np.bincount(flat, minlength=n), 1)
    chans = image.reshape(-1, 1 if image.ndim == 2 else image.shape[2])
    means = np.stack([np.bincount(flat, chans[:, k], n) / area for k in range(chans.shape[1])], 1)
    out[...] = means[flat].reshape(image.shape)
    return out


def lime_map(
    pipeline,
    image,
    target=None,
    num_samples: int = 1000,
    n_segments: int = 50,
    batch_size: int = 50,
    seed: int = 0,
) -> BaselineResult:
    """LIME (``lime_image``) on SLIC superpixels; see the module docstring for the settings."""
    _require_extra("lime")
    from lime import lime_image  # optional: the [compare] extra

    img = as_float_image(image)
    target = _target(pipeline, img, target)
    f = ScoreFunction(pipeline, target, img.ndim == 2)
    rgb = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img
    segments = slic_segments(img, n_segments, seed=seed)
    t0 = time.perf_counter()
    explainer = lime_image.LimeImageExplainer(random_state=seed)
    exp = explainer.explain_instance(
        rgb,
        lambda batch: f(batch)[:, None],
        labels=(0,),
        top_labels=None,
        hide_color=None,
        num_samples=num_samples,
        batch_size=batch_size,
        segmentation_fn=lambda _: segments,
        random_seed=seed,
    )
    values = np.zeros(segments.max() + 1)
    for s, w in exp.local_exp[0]:
        values[s] = w
    seconds = time.perf_counter() - t0
    return BaselineResult(
        "lime",
        _segment_heatmap(segments, values),
        f.calls,
        seconds,
        {"num_samples": num_samples, "n_segments": int(segments.max() + 1), "hide_color": "superpixel mean"},
    )


def kernel_shap_map(
    pipeline, image, target=None, nsamples: int = 1000, n_segments: int = 50, seed: int = 0
) -> BaselineResult:
    """KernelSHAP over SLIC superpixels, hidden ones filled with their mean."""
    _require_extra("kernel-shap")
    import shap  # optional: the [compare] extra

    img = as_float_image(image)
    target = _target(pipeline, img, target)
    f = ScoreFunction(pipeline, target, img.ndim == 2)
    segments = slic_segments(img, n_segments, seed=seed)
    fill = _segment_means(img, segments)
    S = segments.max() + 1

    def masked(z):
        z = np.atleast_2d(z)
        keep = z[:, segments] > 0.5  # (n, H, W)
        if img.ndim == 3:
            keep = keep[..., None]
        return f(np.where(keep, img[None], fill[None]))

    t0 = time.perf_counter()
    # KernelExplainer samples coalitions with NumPy's global generator: seed it, then restore
    saved = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        explainer = shap.KernelExplainer(masked, np.zeros((1, S)))
        values = np.asarray(explainer.shap_values(np.ones((1, S)), nsamples=nsamples, silent=True))
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    seconds = time.perf_counter() - t0
    return BaselineResult(
        "kernel-shap",
        _segment_heatmap(segments, values.reshape(-1)[:S]),
        f.calls,
        seconds,
        {"nsamples": nsamples, "n_segments": int(S), "hide": "superpixel mean"},
    )


def shap_partition_map(
    pipeline, image, target=None, max_evals: int = 1000, blur: int = 9, batch_size: int = 50
) -> BaselineResult:
    """SHAP's Partition explainer with the ``Image("blur(k, k)")`` masker (pixel hierarchy)."""
    _require_extra("shap-partition")
    import shap  # optional: the [compare] extra

    img = as_float_image(image)
    target = _target(pipeline, img, target)
    f = ScoreFunction(pipeline, target, img.ndim == 2)
    x = img[:, :, None] if img.ndim == 2 else img
    masker = shap.maskers.Image(f"blur({blur},{blur})", x.shape)
    t0 = time.perf_counter()
    explainer = shap.Explainer(lambda batch: f(batch)[:, None], masker, output_names=["f"])
    sv = explainer(x[None].astype(np.float64), max_evals=max_evals, batch_size=batch_size, silent=True)
    values = np.asarray(sv.values)[0]  # (H, W, C, 1)
    heat = values.reshape(x.shape[0], x.shape[1], -1).sum(axis=2)
    seconds = time.perf_counter() - t0
    return BaselineResult(
        "shap-partition", heat, f.calls, seconds, {"max_evals": max_evals, "masker": f"blur({blur},{blur})"}
    )


def occlusion_baseline(
    pipeline, image, target=None, block: int = 9, perturbation: str = "uniform", seed: int = 0
) -> BaselineResult:
    """Occlusion (one block perturbed at a time, incremental re-encoding)."""
    img = as_float_image(image)
    t0 = time.perf_counter()
    heat = occlusion_map(pipeline, img, block, perturbation, seed, target)
    seconds = time.perf_counter() - t0
    n = len(block_grid(img.shape[:2], block)) + 1
    return BaselineResult(
        f"occlusion-{perturbation}", heat, n, seconds, {"block": block, "perturbation": perturbation}
    )


def explain_baseline(
    method: str, pipeline, image, target=None, samples: int = 1000, block: int = 9, seed: int = 0
) -> BaselineResult:
    """One peer method by name (:data:`BASELINES`); ``samples`` = LIME samples, KernelSHAP
    nsamples or Partition max_evals."""
    if method == "lime":
        return lime_map(pipeline, image, target, samples, seed=seed)
    if method == "kernel-shap":
        return kernel_shap_map(pipeline, image, target, samples, seed=seed)
    if method == "shap-partition":
        return shap_partition_map(pipeline, image, target, samples, blur=block)
    if method in ("occlusion-uniform", "occlusion-blur"):
        return occlusion_baseline(pipeline, image, target, block, method.split("-")[1], seed)
    raise ValueError(f"unknown baseline {method!r}; use one of {BASELINES}")
