"""Explanations: the relevance pass from ``f(x)`` down to pixels, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import plotting
from ._utils.parallel import map_images
from ._utils.validation import as_float_image, plain_value
from .classifier.relevance import DimensionRelevance, classifier_relevance
from .classifier.relevance import default_rule as default_classifier_rule
from .descriptors.geometry import Descriptors
from .exceptions import RuleError
from .image import DEFAULT_PERCENTILE
from .rules import CLASSIFIER_RULES, DESCRIPTOR_RULES, PIXEL_RULES, Contribution, Flat, Neuralized, require


@dataclass
class ChannelRelevance:
    """Relevance of one feature channel of one image."""

    name: str
    descriptors: Descriptors
    descriptor_relevance: np.ndarray  # (N,)
    dimension_relevance: np.ndarray  # (V_u,)
    heatmap: np.ndarray  # (H, W)


@dataclass
class Explanation:
    """Why the model scored one image as it did, pixel by pixel.

    ``heatmap.sum() + bias_relevance + absorbed + residual == score`` to rounding, where
    ``absorbed`` is what an epsilon stabiliser took and ``residual`` the Taylor remainder.

    Attributes
    ----------
    score : float
        ``f(x)`` of the explained target (negated for the negative class of a binary model).
    target : class label explained
    heatmap : ndarray (H, W) float64, channels summed
    channels : list of ChannelRelevance
    bias_relevance : float
    residual : float
    absorbed : float
    rules : dict
    root_distance : float or None
        Distance in feature space to the Taylor root.
    extra : dict
        More numbers (tiled explanations: ``tile``, ``stride``, ``tile_scores``,
        ``tile_relevance_sum``, ``scene_score``).
    target_name : str or None
        The class's name (``str(target)``, or the data set's class name of a
        multi-label model trained by ``bowlrp-train``, whose labels are indices).
    """

    score: float
    target: object
    heatmap: np.ndarray
    channels: list[ChannelRelevance]
    bias_relevance: float
    residual: float
    absorbed: float
    rules: dict
    root_distance: float | None = None
    extra: dict = field(default_factory=dict)
    target_name: str | None = None

    @property
    def descriptor_relevance(self) -> dict[str, tuple[Descriptors, np.ndarray]]:
        """Per channel: (descriptors with geometry, relevance (N,))."""
        return {c.name: (c.descriptors, c.descriptor_relevance) for c in self.channels}

    @property
    def dimension_relevance(self) -> dict[str, np.ndarray]:
        """Per channel: relevance of the BoW / FV dimensions (V_u,)."""
        return {c.name: c.dimension_relevance for c in self.channels}

    def plot(
        self,
        ax=None,
        kind: str = "heatmap",
        image=None,
        colormap: str = "bwr",
        clip: float | str | None = DEFAULT_PERCENTILE,
        title: bool | str = True,
        colorbar: bool = True,
    ):
        """Draw the raw relevance with matplotlib, scaled as the CLI's PNGs; returns the Axes.

        ``kind``: ``"heatmap"``, ``"overlay"`` (needs ``image``) or ``"triplet"``
        (heatmap | heatmap on the image's edges | image where relevance is positive;
        needs ``image``). ``clip``: the percentile of ``|R|`` drawn at full colour
        (``"max"``: no clipping). ``colormap``: ``"bwr"``, ``"seismic"``,
        ``"coldnhot"`` (black at zero, fire for positive), ``"fire"``, ... See
        :func:`bowlrp.plotting.plot_explanation`.
        """
        return plotting.plot_explanation(self, ax, kind, image, colormap, clip, title, colorbar)

    def _repr_png_(self) -> bytes:
        """The heatmap as PNG bytes: how Jupyter shows an explanation."""
        return plotting.explanation_png(self)

    def __repr__(self) -> str:
        return plotting.explanation_repr(self)

    def conservation(self) -> dict[str, float]:
        """Sums at each layer (they should agree up to bias, absorbed and residual)."""
        dims = sum(float(c.dimension_relevance.sum()) for c in self.channels)
        desc = sum(float(c.descriptor_relevance.sum()) for c in self.channels)
        return {
            "score": self.score,
            "dimensions": dims,
            "descriptors": desc,
            "pixels": float(self.heatmap.sum()),
            "bias": self.bias_relevance,
            "absorbed": self.absorbed,
            "residual": self.residual,
        }

    def summary(self) -> dict:
        """JSON-friendly numbers (no arrays)."""
        return {
            "target": plain_value(self.target),
            "target_name": str(plain_value(self.target)) if self.target_name is None else self.target_name,
            "score": self.score,
            "bias_relevance": self.bias_relevance,
            "residual": self.residual,
            "absorbed": self.absorbed,
            "root_distance": self.root_distance,
            "heatmap_sum": float(self.heatmap.sum()),
            "rules": _rules_text(self.rules),
            "adds_up": (
                "tile_relevance_sum + bias_relevance + absorbed + residual = score (means over tiles; "
                "heatmap_sum is the sum of the per-pixel mean of overlapping tiles)"
                if "tile_relevance_sum" in self.extra
                else "heatmap_sum + bias_relevance + absorbed + residual = score"
            ),
            **{k: plain_value(v) for k, v in self.extra.items()},
        }


def _rules_text(rules: dict) -> dict:
    """``{"classifier": "Decomposition()", "descriptors": {"sift": "Epsilon(...)"}, ...}``:
    each rule's repr, per channel where a step has one rule per channel."""
    out = {}
    for step, rule in rules.items():
        if isinstance(rule, dict):
            out[step] = {str(name): repr(r) for name, r in rule.items()}
        else:
            out[step] = repr(rule)
    return out


# -- targets: a class label, its name or its index ------------------------------------------


def class_names(classifier, config=None) -> list[str]:
    """The display name of each of ``classifier.classes_``, in order.

    A multi-label model trained by ``bowlrp-train`` has the labels ``0..k-1`` and the
    class names in ``config["dataset"]["trained_classes"]``; every other model's names
    are its labels as text.
    """
    classes = [plain_value(c) for c in getattr(classifier, "classes_", [])]
    dataset = config.get("dataset") if isinstance(config, dict) else None
    trained = dataset.get("trained_classes") if isinstance(dataset, dict) else None
    if (
        getattr(classifier, "multilabel_", False)
        and isinstance(trained, list)
        and len(trained) == len(classes)
        and all(isinstance(n, str) for n in trained)
    ):
        return list(trained)
    return [str(c) for c in classes]


def resolve_target(classifier, target, config=None):
    """The label of ``classifier.classes_`` that ``target`` names, as a plain Python value.

    Tried in this order: the label itself (``"cat"``, ``1`` for labels ``[0, 1]``), its
    name (:func:`class_names`; labels as text, so ``"1"`` names the label ``1``), its
    index into ``classes_`` (an ``int``, or a string of digits). Labels win over
    indices: for labels ``[1, 2]`` the target ``1`` is the label ``1``.

    Parameters
    ----------
    classifier : fitted classifier with ``classes_`` (none: ``target`` is returned as it is)
    target : label, name, index or None
        None stays None (the predicted class, decided per image).
    config : dict or None
        The pipeline's config (class names of multi-label models).

    Raises
    ------
    ValueError
        One line listing the class names and the index range.
    """
    if target is None or getattr(classifier, "classes_", None) is None:
        return target
    labels = [plain_value(c) for c in classifier.classes_]
    value = plain_value(target)
    if not isinstance(value, (bool, np.ndarray, list, tuple, dict)):
        for label in labels:
            if (
                type(label) is not bool
                and label == value
                and (isinstance(value, str) == isinstance(label, str))
            ):
                return label
    names = class_names(classifier, config)
    if isinstance(value, str) and value in names:
        return labels[names.index(value)]
    index = None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value)
    if index is not None and 0 <= index < len(labels):
        return labels[index]
    raise ValueError(
        f"unknown target {value!r}; classes are {names} (a name, or an index 0..{len(labels) - 1})"
    )


def resolve_rules(rules) -> dict:
    """Normalise the ``rules`` argument to ``{"classifier", "descriptors", "pixels"}``.

    Accepts None, one rule object (placed at the step it belongs to), a list of
    them (at most one per step: two rules for one step raise ``RuleError``), or a
    dict with those keys.
    """
    out = {"classifier": None, "descriptors": None, "pixels": None}
    if rules is None:
        return out
    if isinstance(rules, dict):
        unknown = set(rules) - set(out)
        if unknown:
            raise RuleError(f"unknown rule step(s) {sorted(unknown)}; use {sorted(out)}")
        out.update(rules)
        return out
    items = rules if isinstance(rules, (list, tuple)) else [rules]
    given: dict[str, object] = {}
    for rule in items:
        if isinstance(rule, CLASSIFIER_RULES):
            step = "classifier"
        elif isinstance(rule, DESCRIPTOR_RULES):
            step = "descriptors"
        elif isinstance(rule, PIXEL_RULES):
            step = "pixels"
        else:
            raise RuleError(f"{rule!r} is not a bowlrp rule")
        if step in given:
            raise RuleError(
                f"two rules for the {step} step: {given[step]!r} and {rule!r}; give one rule per step "
                "(compare rules with one explain call each)"
            )
        given[step] = out[step] = rule
    return out


#: Relative size below which a relevance sum's difference is rounding, not absorption.
_ROUNDING = 1e-12


def default_pixel_rule(classifier_rule):
    """The pixel rule used when none is given: ``Contribution()`` after ``Neuralized``
    (the pair ``make polygons-experiment`` chose for exp-chi2 models), else ``Flat()``.
    Channels that are not SIFT project flat whatever the rule."""
    return Contribution() if isinstance(classifier_rule, Neuralized) else Flat()


def explain_trace(pipeline, trace, target=None, rules=None) -> Explanation:
    """Relevance pass for one image whose forward trace is ``trace`` (an ImageTrace).

    The three steps of docs/math.md §2, each owned by its stage:

    1. the classifier: ``f(x)`` to the feature dimensions, ``R_d`` and the bias;
    2. per channel, the encoder: ``R_d`` to the descriptors, ``R_l`` (or to each
       descriptor dimension, back through the vocabulary's PCA, when the pixel rule
       reads them);
    3. the extractor: descriptors to pixels, ``R_p``.
    """
    steps = resolve_rules(rules)
    clf = pipeline.classifier_
    task, sign = clf.task_and_sign(trace.features, target)
    crule = steps["classifier"] or default_classifier_rule(clf)
    require(crule, CLASSIFIER_RULES, "the classifier step")
    prule = require(steps["pixels"] or default_pixel_rule(crule), PIXEL_RULES, "the pixel step")
    # step 1
    dims: DimensionRelevance = classifier_relevance(clf, trace.features, task, sign, crule)
    heatmap = np.zeros(trace.image_shape)
    channels = []
    used_descriptor_rules = {}
    absorbed = 0.0
    for u, ct in enumerate(trace.channels):
        extractor, encoder = pipeline.extractors_[u], pipeline.encoders_[u]
        R_u = dims.relevance[clf.channel_slices_[u]]
        drule = steps["descriptors"] or encoder.default_rule()
        used_descriptor_rules[ct.name] = drule
        # step 2 (to each descriptor dimension when the pixel rule reads them: through the PCA)
        if _wants_dimensions(extractor, prule, ct, encoder, drule):
            R_l, R_projected = encoder.relevance(R_u, ct.encoding, drule, per_dimension=True)
            R_below = encoder.vocabulary_.relevance(
                R_projected,
                ct.descriptors,
                getattr(prule, "epsilon", 0.0),
                projected=encoder.projected_descriptors(ct.encoding),
            )
        else:
            R_l = R_below = encoder.relevance(R_u, ct.encoding, drule)
        # step 3
        hm = extractor.relevance(R_below, ct.descriptors, prule, image=trace.image)
        absorbed += float(R_u.sum() - hm.sum())
        heatmap += hm
        channels.append(ChannelRelevance(ct.name, ct.descriptors, R_l, R_u, hm))
    # what no rule absorbed but rounding left behind (1e-16 of the relevance) is not absorbed
    if abs(absorbed) <= _ROUNDING * float(np.abs(dims.relevance).sum()):
        absorbed = 0.0
    label = plain_value(clf.target_label(task, sign))
    names = class_names(clf, getattr(pipeline, "config", None))
    labels = [plain_value(c) for c in getattr(clf, "classes_", [])]
    return Explanation(
        score=dims.score,
        target=label,
        target_name=names[labels.index(label)] if label in labels else str(label),
        heatmap=heatmap,
        channels=channels,
        bias_relevance=dims.bias,
        residual=dims.residual,
        absorbed=absorbed,
        rules={"classifier": crule, "descriptors": used_descriptor_rules, "pixels": prule},
        root_distance=dims.root_distance,
    )


def _wants_dimensions(extractor, rule, channel_trace, encoder, descriptor_rule=None) -> bool:
    """Whether step 3 of this channel reads relevance per descriptor dimension (the extractor
    says, given what the encoder offers under the descriptor rule: word mappings with
    ``Neon``); one-line errors that name the channel."""
    offered = bool(encoder.offers_dimension_relevance(descriptor_rule))
    over = channel_trace.descriptors.channel or "descriptors"
    try:
        wanted = extractor.wants_dimension_relevance(rule, offered)
    except RuleError as exc:
        raise RuleError(f"channel {channel_trace.name!r} ({over}): {exc}") from None
    if wanted and not offered:
        name = type(rule).__name__ + (" with per_dimension=True" if hasattr(rule, "per_dimension") else "")
        hint = f"; use {type(rule).__name__}(per_dimension=False)" if hasattr(rule, "per_dimension") else ""
        raise RuleError(
            f"{name} needs a Fisher-vector channel over SIFT: channel {channel_trace.name!r} is "
            f"{type(encoder).__name__} over {over}, which has no per-dimension relevance{hint}"
            + " or give the descriptor rule Neon()"
        )
    return wanted


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts covering ``[0, length)``: every ``stride``, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def check_tiling(tile: int | None, stride: int | None) -> None:
    """Refuse tile settings that would leave pixels unexplained; one-line ValueError.

    Parameters
    ----------
    tile : int or None
        Tile side in pixels (None: no tiling, and then no ``stride`` either).
    stride : int or None
        Distance between tile origins (None: ``tile``).

    Raises
    ------
    ValueError
        A non-positive ``tile`` or ``stride``, a ``stride`` without ``tile``, or a
        ``stride`` larger than ``tile`` (the pixels between two tiles would never
        be explained: zero relevance, whatever they hold).
    """
    if tile is None:
        if stride is not None:
            raise ValueError(f"tile stride {stride} given without a tile; name the tile side too")
        return
    if tile < 1 or (stride is not None and stride < 1):
        raise ValueError(f"tile and stride must be positive, got tile {tile} and stride {stride}")
    if stride is not None and stride > tile:
        raise ValueError(
            f"tile stride {stride} is larger than the tile {tile}: the pixels between tiles would never "
            f"be explained; choose a stride of at most {tile}"
        )


def _explain_tiles(pipeline, crops, target, rules) -> list[Explanation]:
    return [explain_trace(pipeline, pipeline.forward_one(c), target, rules) for c in crops]


def tile_weights(height: int, width: int, floor: float = 0.05) -> np.ndarray:
    """Per-pixel weight of a tile's relevance where tiles overlap, shape (height, width).

    ``w(i, j) = v_H(i) v_W(j)`` with ``v_n(i) = floor + sin^2(pi (i + 1/2) / n)``: high in
    the tile's middle, low at its border, where no descriptor of the tile is centred
    and its relevance is thin. Averaging overlapping tiles with these weights hides
    the tile borders (plain averaging shows them as seams); a pixel covered by one
    tile keeps that tile's value.
    """

    def profile(n: int) -> np.ndarray:
        return floor + np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2

    return np.outer(profile(height), profile(width))


def explain_tiled(pipeline, image, tile: int, stride: int, target=None, rules=None) -> Explanation:
    """Explain an image as a grid of overlapping tiles; heatmaps averaged per pixel.

    Every tile is explained for the same target: the one given, or else the
    class the model predicts for the whole image (one more forward pass). The
    heatmap is the weighted per-pixel mean of the tiles' heatmaps
    (:func:`tile_weights`: a tile counts less near its border).

    What adds up: ``score``, ``bias_relevance``, ``residual`` and ``absorbed`` are
    means over the tiles, and ``extra["tile_relevance_sum"]`` (the mean over tiles
    of each tile's heatmap sum) satisfies ``tile_relevance_sum + bias_relevance +
    absorbed + residual == score``. The heatmap's own sum does not: where tiles
    overlap a pixel is their mean, not their sum, so ``heatmap.sum()`` is
    ``extra["heatmap_sum"]`` of a picture, not a decomposition of ``score``.
    ``extra`` also holds ``scene_score`` (``f`` of the whole image for the target),
    ``tile``, ``stride`` and ``tile_scores`` (each tile's origin and score).
    Tiles are processed in parallel chunks when the pipeline has ``n_jobs``. A
    ``stride`` larger than ``tile`` is refused (:func:`check_tiling`).
    """
    check_tiling(tile, stride)
    img = as_float_image(image)
    H, W = img.shape[:2]
    origins = [(r, c) for r in tile_origins(H, tile, stride) for c in tile_origins(W, tile, stride)]
    crops = [img[r : r + tile, c : c + tile] for r, c in origins]
    clf = pipeline.classifier_
    scene = pipeline.forward_one(img).features
    task, sign = clf.task_and_sign(scene, target)
    if target is None:
        target = clf.target_label(task, sign)
    decision = np.asarray(clf.decision_function(scene.reshape(1, -1)), dtype=np.float64).reshape(-1)
    scene_score = float(sign * decision[task])
    n_jobs = pipeline.n_jobs if pipeline.n_jobs not in (None, 0) else 1
    n_chunks = 1 if n_jobs == 1 else min(len(crops), 4 * (n_jobs if n_jobs > 0 else 2))
    chunks = [list(part) for part in np.array_split(np.arange(len(crops)), n_chunks)]
    results = map_images(
        lambda idx: _explain_tiles(pipeline, [crops[i] for i in idx], target, rules),
        chunks,
        n_jobs if n_chunks > 1 else None,
        "explaining tiles",
        False,
    )
    parts = [e for chunk in results for e in chunk]
    total = np.zeros((H, W))
    cover = np.zeros((H, W))
    for (r, c), e in zip(origins, parts):
        h, w = e.heatmap.shape
        weight = tile_weights(h, w)  # (an image side shorter than the tile: one crop that long)
        total[r : r + h, c : c + w] += weight * e.heatmap
        cover[r : r + h, c : c + w] += weight
    heatmap = total / np.where(cover > 0, cover, 1)
    first = parts[0]
    return Explanation(
        score=float(np.mean([e.score for e in parts])),
        target=first.target,
        target_name=first.target_name,
        heatmap=heatmap,
        channels=[],
        bias_relevance=float(np.mean([e.bias_relevance for e in parts])),
        residual=float(np.mean([e.residual for e in parts])),
        absorbed=float(np.mean([e.absorbed for e in parts])),
        rules=first.rules,
        extra={
            "tile": tile,
            "stride": stride,
            "scene_score": scene_score,
            "tile_relevance_sum": float(np.mean([e.heatmap.sum() for e in parts])),
            "tile_scores": [(r, c, e.score) for (r, c), e in zip(origins, parts)],
        },
    )
