"""Descriptor-replacement perturbation (thesis appendix C.2).

Descriptors are ordered by their relevance (most relevant first) and
replaced in batches by draws from the model's vocabulary: samples of the GMM
(Fisher vectors) or of the training descriptors kept with a k-means
vocabulary. The pooled vector is updated incrementally, the model
re-evaluated after each batch; repeated with different draws.
"""

from __future__ import annotations

import numpy as np

from .incremental import IncrementalImage
from .perturbation import PerturbationResult, aopc, mean_and_stderr


def descriptor_order(explanation, rng: np.random.Generator, ordering: str = "morf") -> np.ndarray:
    """(channel, row) pairs of all descriptors in perturbation order, shape (N_total, 2)."""
    pairs, scores = [], []
    for u, c in enumerate(explanation.channels):
        pairs.append(
            np.column_stack([np.full(len(c.descriptor_relevance), u), np.arange(len(c.descriptor_relevance))])
        )
        scores.append(c.descriptor_relevance)
    pairs = np.vstack(pairs)
    scores = np.concatenate(scores)
    jitter = rng.random(scores.size)
    if ordering == "random":
        return pairs[np.argsort(jitter)]
    key = -scores if ordering == "morf" else scores
    return pairs[np.lexsort((jitter, key))]


def replacement_curve(
    pipeline, image, order: np.ndarray, batch: int, steps: int, rng: np.random.Generator, target=None
) -> np.ndarray:
    """``f`` after each batch of replaced descriptors, k = 0..steps."""
    state = IncrementalImage(pipeline, image, target)
    values = [state.score]
    for k in range(steps):
        chunk = order[k * batch : (k + 1) * batch]
        if len(chunk) == 0:
            break
        for u in np.unique(chunk[:, 0]):
            rows = chunk[chunk[:, 0] == u, 1]
            vocab = pipeline.encoders_[u].vocabulary_
            state.set_descriptors(int(u), rows, vocab.sample(rows.size, rng))
        values.append(state.score)
    return np.array(values)


def descriptor_replacement(
    pipeline,
    images,
    explanations,
    orderings=("morf", "random"),
    batch: int = 100,
    steps: int = 100,
    repeats: int = 5,
    seed: int = 0,
    target=None,
    progress=None,
) -> PerturbationResult:
    """Curves, AOPC and the fraction of images whose predicted label flipped.

    ``explanations`` are the images' Explanations (their descriptor relevance
    sets the order). ``steps * batch`` descriptors are replaced at most.
    ``progress(k)``, if given, is called with the steps done after each curve.
    """
    if len(images) != len(explanations):
        raise ValueError(f"{len(images)} images but {len(explanations)} explanations")
    seeds = np.random.SeedSequence(seed).spawn(len(images))
    n_total = [sum(len(c.descriptor_relevance) for c in e.channels) for e in explanations]
    steps = min(steps, int(np.ceil(min(n_total) / batch)))
    curves = {o: np.zeros((len(images), repeats, steps + 1)) for o in orderings}
    for i, (image, e) in enumerate(zip(images, explanations)):
        for r, child in enumerate(seeds[i].spawn(repeats)):
            for o, ochild in zip(orderings, child.spawn(len(orderings))):
                rng = np.random.default_rng(ochild)
                order = descriptor_order(e, rng, o)
                curves[o][i, r] = replacement_curve(
                    pipeline, image, order, batch, steps, rng, e.target if target is None else target
                )
                if progress is not None:
                    progress(steps)
    result = PerturbationResult(
        curves, settings={"batch": batch, "steps": steps, "repeats": repeats, "seed": seed}
    )
    for o, c in curves.items():
        result.aopc[o] = mean_and_stderr(aopc(c))
        flipped = (c[..., 0] > 0) & (c[..., -1] <= 0)
        result.settings.setdefault("flip_fraction", {})[o] = float(flipped.mean())
    return result
