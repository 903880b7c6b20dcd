"""Region perturbation and AOPC (thesis chapter 3; docs/math.md §4).

Blocks of ``m x m`` pixels are ordered by their summed relevance — most
relevant first (MoRF), least relevant first (LeRF) or at random — and
replaced one after another; after each step the model is re-evaluated:

    AOPC = 1/(L+1) < sum_{k=0..L} f(x^(0)) - f(x^(k)) >

The image is re-encoded incrementally (``IncrementalImage``) unless
``incremental=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .._utils.validation import as_float_image
from .incremental import IncrementalImage

ORDERINGS = ("morf", "lerf", "random")


def _uniform(block, rng, original):
    return rng.random(block.shape)


def _constant(value):
    def perturb(block, rng, original):
        return np.full(block.shape, value)

    return perturb


def _blur(sigma):
    def perturb(block, rng, original):
        return original

    perturb.blur_sigma = sigma
    return perturb


def _flip(block, rng, original):
    return 1.0 - block


def make_perturbation(name: str | Callable, value: float = 0.5, sigma: float = 4.0) -> Callable:
    """A perturbation ``f(block, rng, blurred_block) -> new block``.

    ``uniform``: uniform noise in [0, 1] (seeded); ``constant``: ``value``;
    ``blur``: the block of the image blurred with ``sigma``; ``flip``: ``1 - x``
    (pixel flipping for binary images, with ``block=1``). A callable is used as is.
    """
    if callable(name):
        return name
    table = {"uniform": _uniform, "constant": _constant(value), "blur": _blur(sigma), "flip": _flip}
    if name not in table:
        raise ValueError(f"unknown perturbation {name!r}; use one of {sorted(table)}")
    return table[name]


def block_grid(shape: tuple[int, int], size: int) -> np.ndarray:
    """Non-overlapping blocks covering the image, as rows (r0, r1, c0, c1); edge blocks may be smaller."""
    if size < 1:
        raise ValueError(f"block size must be >= 1, got {size}")
    H, W = shape
    return np.array(
        [(r, min(r + size, H), c, min(c + size, W)) for r in range(0, H, size) for c in range(0, W, size)],
        dtype=np.int64,
    )


def block_scores(heatmap: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Summed relevance of each block (summed-area table)."""
    S = np.zeros((heatmap.shape[0] + 1, heatmap.shape[1] + 1))
    S[1:, 1:] = heatmap.cumsum(0).cumsum(1)
    r0, r1, c0, c1 = blocks.T
    return S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]


def order_blocks(scores: np.ndarray, ordering: str, rng: np.random.Generator) -> np.ndarray:
    """Block indices in perturbation order (ties broken at random, seeded)."""
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
    jitter = rng.random(scores.size)
    if ordering == "random":
        return np.argsort(jitter)
    key = -scores if ordering == "morf" else scores
    return np.lexsort((jitter, key))


def aopc(curves: np.ndarray) -> np.ndarray:
    """AOPC of each curve ``f(x^(0)), ..., f(x^(L))`` (last axis): mean of f0 - fk over k = 0..L."""
    curves = np.asarray(curves, dtype=np.float64)
    return (curves[..., :1] - curves).mean(axis=-1)


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error over the first axis (images), after averaging repeats."""
    v = np.asarray(values, dtype=np.float64)
    per_image = v.reshape(v.shape[0], -1).mean(axis=1) if v.ndim > 1 else v
    n = per_image.size
    if n < 2 and v.ndim > 1:  # one image: the spread over repeats
        reps = v.reshape(-1)
        return float(reps.mean()), float(reps.std(ddof=1) / np.sqrt(reps.size)) if reps.size > 1 else 0.0
    return float(per_image.mean()), float(per_image.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def perturbation_curve(
    pipeline,
    image,
    order: np.ndarray,
    blocks: np.ndarray,
    steps: int,
    perturbation: Callable,
    rng: np.random.Generator,
    target=None,
    incremental: bool = True,
    start: IncrementalImage | None = None,
) -> np.ndarray:
    """``f(x^(k))`` for k = 0..steps, replacing ``blocks[order[k-1]]`` at step k.

    ``start``: optionally, an :class:`IncrementalImage` of this pipeline, image and
    target, left unchanged; the curve starts from a copy of it instead of a forward
    pass (curves of one image share their start, see :func:`region_perturbation`).
    """
    img = as_float_image(image)
    blurred = None
    if getattr(perturbation, "blur_sigma", None):
        blurred = cv2.GaussianBlur(img, (0, 0), perturbation.blur_sigma)
    if start is None:
        state = IncrementalImage(pipeline, img, target)
    else:
        if start.pipeline is not pipeline or not np.array_equal(start.image, img):
            raise ValueError("start must be an IncrementalImage of this pipeline and image")
        same_target = start.requested_target is None if target is None else start.target == target
        if not same_target:
            raise ValueError(
                f"start explains {start.target!r} (asked for "
                f"{start.requested_target!r}), not target {target!r}"
            )
        state = start.copy()
    values = [state.score]
    for k in range(min(steps, len(order))):
        r0, r1, c0, c1 = blocks[order[k]]
        current = state.image[r0:r1, c0:c1]
        original = blurred[r0:r1, c0:c1] if blurred is not None else current
        new = np.clip(perturbation(current, rng, original), 0.0, 1.0)
        if incremental:
            values.append(state.set_block(r0, r1, c0, c1, new))
        else:
            state.image[r0:r1, c0:c1] = new
            values.append(state.full_score())
    return np.array(values)


@dataclass
class PerturbationResult:
    """Curves (n_images, repeats, steps + 1) and AOPC per ordering / method."""

    curves: dict[str, np.ndarray]
    aopc: dict[str, tuple[float, float]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        width = max(len(k) for k in self.aopc) if self.aopc else 6
        lines = [f"{'method':{width}s}  AOPC      stderr"]
        for k, (m, s) in sorted(self.aopc.items(), key=lambda kv: -kv[1][0]):
            lines.append(f"{k:{width}s}  {m:+.5f}  {s:.5f}")
        return "\n".join(lines)


def region_perturbation(
    pipeline,
    images,
    heatmaps,
    orderings=("morf", "lerf", "random"),
    block: int = 9,
    steps: int = 100,
    repeats: int = 10,
    perturbation="uniform",
    seed: int = 0,
    target=None,
    incremental: bool = True,
    progress: Callable[[int], None] | None = None,
) -> PerturbationResult:
    """Region perturbation curves and AOPC for each ordering.

    Parameters
    ----------
    pipeline : fitted Pipeline
    images : list of images
    heatmaps : list of (H, W) relevance maps, one per image (for the target class)
    orderings : subset of ("morf", "lerf", "random")
    block, steps, repeats : block side, perturbation steps L, repetitions
    perturbation : name or callable (see :func:`make_perturbation`)
    seed : int, makes noise and random orders reproducible
    progress : callable(int) or None
        Called with the number of perturbation steps just done (for progress bars).
    """
    perturb = make_perturbation(perturbation)
    if len(images) != len(heatmaps):
        raise ValueError(f"{len(images)} images but {len(heatmaps)} heatmaps")
    seeds = np.random.SeedSequence(seed).spawn(len(images))
    curves = {o: np.zeros((len(images), repeats, steps + 1)) for o in orderings}
    for i, (image, heat) in enumerate(zip(images, heatmaps)):
        img = as_float_image(image)
        blocks = block_grid(img.shape[:2], block)
        scores = block_scores(np.asarray(heat, dtype=np.float64), blocks)
        if steps > len(blocks):
            raise ValueError(f"{steps} steps but only {len(blocks)} blocks of {block} pixels")
        start = IncrementalImage(pipeline, img, target)  # shared by the image's curves
        for r, child in enumerate(seeds[i].spawn(repeats)):
            for o, ochild in zip(orderings, child.spawn(len(orderings))):
                rng = np.random.default_rng(ochild)
                order = order_blocks(scores, o, rng)
                curves[o][i, r] = perturbation_curve(
                    pipeline, img, order, blocks, steps, perturb, rng, target, incremental, start=start
                )
                if progress is not None:
                    progress(steps)
    result = PerturbationResult(
        curves,
        settings={
            "block": block,
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
            "perturbation": perturbation if isinstance(perturbation, str) else "custom",
        },
    )
    for o, c in curves.items():
        result.aopc[o] = mean_and_stderr(aopc(c))
    return result


def occlusion_map(
    pipeline,
    image,
    block: int = 9,
    perturbation="uniform",
    seed: int = 0,
    target=None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Relevance of each block = f(x) - f(x with that block alone perturbed), spread over it.

    Every block is tried on the incremental state without committing it;
    ``progress(1)`` is called after each block.
    """
    perturb = make_perturbation(perturbation)
    img = as_float_image(image)
    state = IncrementalImage(pipeline, img, target)
    rng = np.random.default_rng(seed)
    blurred = None
    if getattr(perturb, "blur_sigma", None):
        blurred = cv2.GaussianBlur(img, (0, 0), perturb.blur_sigma)
    heat = np.zeros(img.shape[:2])
    for r0, r1, c0, c1 in block_grid(img.shape[:2], block):
        current = img[r0:r1, c0:c1]
        original = blurred[r0:r1, c0:c1] if blurred is not None else current
        new = np.clip(perturb(current, rng, original), 0, 1)
        drop = state.score - state.set_block(r0, r1, c0, c1, new, commit=False)
        heat[r0:r1, c0:c1] = drop / ((r1 - r0) * (c1 - c0))
        if progress is not None:
            progress(1)
    return heat
